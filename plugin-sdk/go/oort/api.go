package oort

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Function is a function callable from SQL, like eKuiper's api.Function.
//
// A singleton-exported Function is shared by every rule of the process, and
// Exec may be called from several goroutines at once (one per rule call site).
// A constructor-exported Function gets one object per call site, and Exec is
// never called concurrently on one object. Per-rule data belongs in the
// context's state either way.
type Function interface {
	// Validate checks a call's arguments when a rule is created. Return an
	// error naming the problem, e.g. "expects 2 arguments, got 1"; return nil
	// to accept the call.
	Validate(args []ArgSpec) error
	// Exec computes the result for one row of arguments. It returns
	// (result, true) on success. On failure it returns (err, false): the
	// result is an error, or any value whose string form is the row's error
	// message. A failure affects that row only.
	//
	// Arguments arrive as nil, bool, int64, uint64, float64, string, []byte,
	// []any or map[string]any.
	Exec(args []any, ctx FunctionContext) (any, bool)
	// IsAggregate reports whether the function aggregates over a group of rows.
	IsAggregate() bool
}

// ArgSpec is what the rule engine knows about one function argument when a
// rule is created.
type ArgSpec struct {
	// Expression is the argument as written in SQL, e.g. `name`, `'a b'` or
	// `x + 1`.
	Expression string
	// IsLiteral is true when the argument is a literal; Literal is then its
	// value (which may be nil for the literal NULL).
	IsLiteral bool
	Literal   any
	// Column is the column name when the argument is a plain column
	// reference, and "" otherwise.
	Column string
}

// Record is one record flowing through a rule.
type Record struct {
	// Fields are the record's named values.
	Fields map[string]any
	// Metadata are values about the record (e.g. a topic), kept apart from
	// its fields.
	Metadata map[string]any
	// Timestamp is the event time, with millisecond precision on the wire;
	// the zero Time means unknown.
	Timestamp time.Time
}

// Source is a source of records (pull style): the SDK calls Read in a loop
// while the rule runs.
//
// The SDK never calls the methods of one Source object concurrently: a
// singleton object shared by several rules is locked around every call.
type Source interface {
	// Open prepares the instance. datasource is the stream's DATASOURCE and
	// props are its properties.
	Open(ctx StreamContext, datasource string, props map[string]any) error
	// Read returns up to max records. It may block while nothing is
	// available but should return, possibly with nothing, within about
	// 100 ms so that a Close is noticed promptly (ctx.Done() is closed when
	// the instance closes). An error ends the rule's read stream.
	Read(ctx StreamContext, max int) ([]Record, error)
	// Close releases the instance's resources.
	Close(ctx StreamContext) error
}

// Rewindable is implemented by a Source that can replay from an offset, with
// eKuiper's method names. GetOffset is called right after each Read (under the
// same lock) and returns the offset after the last record read; Rewind
// repositions the source so that the next record read is the one after
// offset. Offsets are values like any other (int64, string, map[string]any…).
//
// Rewindable's methods carry no context: a singleton source shared by several
// rules should implement RewindableWithContext instead.
type Rewindable interface {
	GetOffset() (any, error)
	Rewind(offset any) error
}

// RewindableWithContext is Rewindable for sources that need to know which
// instance is asked, e.g. a singleton source serving several rules. A source
// implements either this or Rewindable.
type RewindableWithContext interface {
	GetOffset(ctx StreamContext) (any, error)
	Rewind(ctx StreamContext, offset any) error
}

// Sink receives the records a rule produces.
//
// The SDK never calls the methods of one Sink object concurrently: a
// singleton object shared by several rules is locked around every call.
type Sink interface {
	// Open prepares the instance with the rule action's properties.
	Open(ctx StreamContext, props map[string]any) error
	// Collect accepts one batch of records. An error fails that batch only
	// and is not retried.
	Collect(ctx StreamContext, records []Record) error
	// Close flushes and releases the instance's resources.
	Close(ctx StreamContext) error
}

// PayloadSink is implemented by a Sink that wants bytes instead of records,
// as an eKuiper sink does: the supervisor then encodes every item the way
// eKuiper's runtime encodes for its sinks, per the action's properties
// `format` (json, delimited, binary), `dataTemplate`, `sendSingle`, `fields`
// and `delimiter`, and the SDK calls CollectPayloads instead of Collect.
//
// Each payload is one item: with sendSingle false one emission of the rule (a
// window's results, or one row of a rule without a window) as a JSON array;
// with sendSingle true one row. The SDK never reuses a payload's memory, so the
// sink may keep the slices it gets.
//
// Collect stays the fallback: it receives the records of a batch that carries
// records, which only a supervisor predating payloads sends.
type PayloadSink interface {
	// CollectPayloads accepts one batch of payloads. Errors are as for
	// Collect; return an ItemErrors to report the payloads one by one.
	CollectPayloads(ctx StreamContext, payloads [][]byte) error
}

// ItemErrors is the error a Sink's Collect (or a PayloadSink's
// CollectPayloads) returns to report the items of a batch one by one, as
// eKuiper's acknowledgements do: one entry per record (or payload), in order,
// nil for an item delivered, else why it was not. The batch itself then
// counts as accepted; the supervisor counts each failed item as an exception
// of the sink and shows the last one. It may be wrapped (errors.As finds it).
//
// An ItemErrors whose length differs from the batch's is a mistake of the
// sink: the SDK fails the whole batch with a message saying so.
type ItemErrors []error

// Error lists the failed items, e.g. "2 of 5 items failed: item 1: full; item
// 4: refused".
func (e ItemErrors) Error() string {
	var failed []string
	for i, err := range e {
		if err != nil {
			failed = append(failed, fmt.Sprintf("item %d: %v", i, err))
		}
	}
	if len(failed) == 0 {
		return fmt.Sprintf("all %d items delivered", len(e))
	}
	return fmt.Sprintf("%d of %d items failed: %s", len(failed), len(e), strings.Join(failed, "; "))
}

// TwoPhaseCommit is implemented by a Sink that takes part in checkpoints
// (exactly-once delivery).
type TwoPhaseCommit interface {
	// PreCommit makes everything collected so far durable but not yet
	// visible, and returns a handle (any value) that Commit or Abort will
	// receive, possibly in a later process after a crash.
	PreCommit(ctx StreamContext, checkpointID uint64) (any, error)
	// Commit makes a pre-committed checkpoint visible.
	Commit(ctx StreamContext, checkpointID uint64, handle any) error
	// Abort discards a pre-committed checkpoint.
	Abort(ctx StreamContext, checkpointID uint64, handle any) error
}

// StreamContext is what an extension instance knows about itself, and its
// state. It is also a context.Context whose Done channel closes when the
// instance is closed or the process stops.
//
// One context exists per opened instance (per rule, operator and, for
// functions, call site). A singleton object shared by several rules receives a
// different context for each of them, so their state never mixes.
type StreamContext interface {
	context.Context
	// GetLogger returns a logger whose lines carry the rule and instance ids.
	GetLogger() Logger
	// GetRuleId returns the id of the rule this instance belongs to.
	GetRuleId() string
	// GetOpId returns the operator within the rule, e.g. "source",
	// "op_2_projection" or "sink_0".
	GetOpId() string
	// GetInstanceId returns the supervisor-assigned instance id,
	// "<rule>/<operator>".
	GetInstanceId() string

	// PutState stores value under key, replacing a value or a counter. The
	// value is converted as a function result is (see the package doc); an
	// unsupported type is an error.
	PutState(key string, value any) error
	// GetState returns the value under key, or (nil, nil) when there is
	// none. A counter reads as an int64. Values come back in their wire form
	// (ints as int64, unsigned ints as uint64, floats as float64, lists as
	// []any, maps as
	// map[string]any), as they would after a restart.
	GetState(key string) (any, error)
	// DeleteState removes key. Removing an absent key is not an error.
	DeleteState(key string) error
	// IncrCounter adds amount to the counter under key (a missing counter
	// starts at 0). It fails if key holds a plain value, or on overflow.
	IncrCounter(key string, amount int) error
	// GetCounter returns the counter under key: 0 when absent, an error
	// (ErrNotACounter) when key holds a plain value.
	GetCounter(key string) (int, error)

	// ReportException reports a problem the instance met and went past, such
	// as a malformed input line. A source's exceptions travel with its next
	// batch (one is sent even with no records): the supervisor counts each as
	// an exception of the rule's source and shows the last in the rule
	// status. Functions and sinks report per-row or per-batch errors through
	// their results instead; what they report here is logged at warn level.
	// At most 64 exceptions wait for the next batch; older ones are dropped.
	ReportException(message string)
}

// FunctionContext is the context a Function's Exec receives. It has the same
// methods as StreamContext.
type FunctionContext interface {
	StreamContext
}

// Logger writes plain lines to stderr, with the level near the start, which
// the supervisor forwards into its own log. It has eKuiper's method set.
type Logger interface {
	Debug(args ...any)
	Info(args ...any)
	Warn(args ...any)
	Error(args ...any)
	Debugln(args ...any)
	Infoln(args ...any)
	Warnln(args ...any)
	Errorln(args ...any)
	Debugf(format string, args ...any)
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
	Errorf(format string, args ...any)
}
