// Package api is eKuiper 1.x's native plugin API (github.com/lf-edge/ekuiper/pkg/api)
// on Oort: the same interface names and method signatures, so that an eKuiper
// 1.x Go plugin compiles against it with only its import path changed. Its
// `main` serves the extensions with package serve
// (github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/serve).
//
// The interfaces are declared here (Oort does not depend on eKuiper's module).
// StreamContext has the subset of eKuiper's methods that a plugin calls and
// that mean something out of process; see plugin-sdk/go/README.md, "Porting".
package api

import (
	"context"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// Logger is eKuiper's logger: Debug/Info/Warn/Error with …f and …ln variants.
type Logger = oort.Logger

// StreamContext is what a source, sink or function instance knows about
// itself, and its state. It is a context.Context, done when the instance
// closes.
type StreamContext interface {
	context.Context
	GetLogger() Logger
	GetRuleId() string
	GetOpId() string
	// GetInstanceId is eKuiper's parallel-instance number; always 0 here.
	GetInstanceId() int
	GetRootPath() string
	// WithCancel returns a child context (same instance and state) and its
	// cancel function.
	WithCancel() (StreamContext, context.CancelFunc)
	// SetError reports an error the instance went past; it counts as an
	// exception of the rule.
	SetError(err error)
	IncrCounter(key string, amount int) error
	GetCounter(key string) (int, error)
	PutState(key string, value interface{}) error
	GetState(key string) (interface{}, error)
	DeleteState(key string) error
	// ParseTemplate renders a Go text/template (eKuiper's dataTemplate).
	ParseTemplate(template string, data interface{}) (string, error)
	// TransformOutput encodes a sink's data through the sink's dataTemplate
	// property (the bool is then true), or else as JSON (false).
	TransformOutput(data interface{}) ([]byte, bool, error)
	// Decode decodes a JSON payload into a map, as a source with the json
	// format does.
	Decode(data []byte) (map[string]interface{}, error)
}

// FunctionContext is the context of a function call site.
type FunctionContext interface {
	StreamContext
	GetFuncId() int
}

// Function is a function callable from SQL.
type Function interface {
	// Validate checks a call's arguments when a rule is created. Each
	// argument is an oort.ArgSpec (eKuiper passes ast.Expr values): len(args)
	// checks are unchanged.
	Validate(args []interface{}) error
	// Exec returns (result, true), or (err, false) for this row's error.
	// Results that are structs (or maps with non-string keys) are encoded
	// as encoding/json does, so their JSON tags name the fields.
	Exec(args []interface{}, ctx FunctionContext) (interface{}, bool)
	IsAggregate() bool
}

// Closable is the Close of a source or sink.
type Closable interface {
	Close(ctx StreamContext) error
}

// Source is eKuiper 1.x's push-style source: Configure, then Open in its own
// goroutine, sending tuples to consumer until ctx is done; an error sent to
// errCh stops the rule.
type Source interface {
	Open(ctx StreamContext, consumer chan<- SourceTuple, errCh chan<- error)
	Configure(datasource string, props map[string]interface{}) error
	Closable
}

// Sink is eKuiper 1.x's sink: Configure with the action's properties, Open,
// then Collect for every result: a []map[string]interface{} per batch, or a
// map[string]interface{} per row when the action sets sendSingle.
type Sink interface {
	Open(ctx StreamContext) error
	Configure(props map[string]interface{}) error
	Collect(ctx StreamContext, data interface{}) error
	Closable
}

// SourceTuple is one message a source emits.
type SourceTuple interface {
	Message() map[string]interface{}
	Meta() map[string]interface{}
}

// DefaultSourceTuple is the usual SourceTuple.
type DefaultSourceTuple struct {
	Mess map[string]interface{} `json:"message"`
	M    map[string]interface{} `json:"meta"`
	Time time.Time              `json:"timestamp"`
}

// NewDefaultSourceTuple makes a tuple stamped with the current time.
func NewDefaultSourceTuple(message map[string]interface{}, meta map[string]interface{}) *DefaultSourceTuple {
	return &DefaultSourceTuple{Mess: message, M: meta, Time: time.Now()}
}

// NewDefaultSourceTupleWithTime makes a tuple with an event time.
func NewDefaultSourceTupleWithTime(message map[string]interface{}, meta map[string]interface{}, timestamp time.Time) *DefaultSourceTuple {
	return &DefaultSourceTuple{Mess: message, M: meta, Time: timestamp}
}

func (t *DefaultSourceTuple) Message() map[string]interface{} { return t.Mess }
func (t *DefaultSourceTuple) Meta() map[string]interface{}    { return t.M }
func (t *DefaultSourceTuple) Timestamp() time.Time            { return t.Time }
