// Package api is eKuiper 2.x's plugin contract (github.com/lf-edge/ekuiper/contract/v2/api)
// on Oort: the same interface names and method signatures, so that an eKuiper
// 2.x Go plugin compiles against it with only its import path changed. Its
// `main` serves the extensions with package serve
// (github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/serve).
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
	PutState(key string, value any) error
	GetState(key string) (any, error)
	DeleteState(key string) error
	// ParseTemplate renders a Go text/template.
	ParseTemplate(template string, data any) (string, error)
}

// FunctionContext is the context of a function call site.
type FunctionContext interface {
	StreamContext
	GetFuncId() int
}

// Function is a function callable from SQL (2.x: the context comes first).
type Function interface {
	// Validate checks a call's arguments when a rule is created. Each
	// argument is an oort.ArgSpec (eKuiper passes ast.Expr values).
	Validate(args []any) error
	// Exec returns (result, true), or (err, false) for this row's error.
	// Struct results are encoded as encoding/json does (JSON tags apply).
	Exec(ctx FunctionContext, args []any) (any, bool)
	IsAggregate() bool
}

// Closable is the Close of a source or sink.
type Closable interface {
	Close(ctx StreamContext) error
}

// Nodelet is the lifecycle every source and sink starts with: Provision with
// the properties, and Close.
type Nodelet interface {
	Provision(ctx StreamContext, configs map[string]any) error
	Closable
}

// Connection statuses a connector reports to its StatusChangeHandler.
const (
	ConnectionConnected    = "connected"
	ConnectionConnecting   = "connecting"
	ConnectionDisconnected = "disconnected"
)

// StatusChangeHandler receives a connector's connection status changes.
type StatusChangeHandler func(status string, message string)

// Connector connects to the external system, after Provision.
type Connector interface {
	Connect(ctx StreamContext, sch StatusChangeHandler) error
}

// Source is the base of every source: Provision -> Connect -> Subscribe/Pull
// -> Close.
type Source interface {
	Nodelet
	Connector
}

// TupleIngest hands data to the rule: a map[string]any, a []map[string]any,
// a MessageTuple, a MessageTupleList, or a struct (encoded as
// encoding/json does). A zero ts means "now".
type TupleIngest func(ctx StreamContext, data any, meta map[string]any, ts time.Time)

// BytesIngest hands a payload to the rule, decoded per the stream's format
// (json only, here).
type BytesIngest func(ctx StreamContext, payload []byte, meta map[string]any, ts time.Time)

// ErrorIngest reports an error; it counts as an exception of the rule's
// source.
type ErrorIngest func(ctx StreamContext, err error)

// TupleSource is a push source of tuples.
type TupleSource interface {
	Source
	Subscribe(ctx StreamContext, ingest TupleIngest, ingestError ErrorIngest) error
}

// BytesSource is a push source of payloads.
type BytesSource interface {
	Source
	Subscribe(ctx StreamContext, ingest BytesIngest, ingestError ErrorIngest) error
}

// PullTupleSource is pulled every `interval` (property) for tuples.
type PullTupleSource interface {
	Source
	Pull(ctx StreamContext, trigger time.Time, ingest TupleIngest, ingestError ErrorIngest)
}

// PullBytesSource is pulled every `interval` (property) for payloads.
type PullBytesSource interface {
	Source
	Pull(ctx StreamContext, trigger time.Time, ingest BytesIngest, ingestError ErrorIngest)
}

// Sink is the base of every sink: Provision -> Connect -> Collect -> Close.
type Sink interface {
	Nodelet
	Connector
}

// TupleCollector is a sink of tuples: Collect for each row.
type TupleCollector interface {
	Sink
	Collect(ctx StreamContext, item MessageTuple) error
	CollectList(ctx StreamContext, items MessageTupleList) error
}

// BytesCollector is a sink of payloads: the supervisor encodes the rule's
// output as eKuiper's runtime does, per the action's format (json, delimited,
// binary), dataTemplate, sendSingle, fields and delimiter, and Collect gets
// one payload at a time (with sendSingle false one emission as a JSON array,
// with sendSingle true one row). An error from Collect is that payload's
// error: the other payloads are still collected.
type BytesCollector interface {
	Sink
	Collect(ctx StreamContext, item RawTuple) error
}

// ReadonlyMessage is one row's data.
type ReadonlyMessage interface {
	Value(key, table string) (any, bool)
	ToMap() map[string]any
}

// MessageTuple is one row a sink receives.
type MessageTuple interface {
	ReadonlyMessage
}

// MetaInfo is a row's metadata and creation time.
type MetaInfo interface {
	Meta(key, table string) (any, bool)
	Created() time.Time
	AllMeta() map[string]any
}

// MessageTupleList is several rows.
type MessageTupleList interface {
	RangeOfTuples(f func(index int, tuple MessageTuple) bool)
	Len() int
	ToMaps() []map[string]any
}

// RawTuple is an encoded row.
type RawTuple interface {
	Raw() []byte
	Replace([]byte)
}
