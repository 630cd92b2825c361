package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// accept is the Validate of the functions that check nothing.
type accept struct{}

func (accept) Validate([]oort.ArgSpec) error { return nil }
func (accept) IsAggregate() bool             { return false }

// arg returns args[i], or nil when the call has fewer arguments.
func arg(args []any, i int) any {
	if i < len(args) {
		return args[i]
	}
	return nil
}

// Argument errors use the Rust reference plugin's texts.
var (
	errCountArgs = errors.New("cf_count(key) needs a string key")
	errStateArgs = errors.New("cf_state(op, key[, value])")
	errAmount    = errors.New("incr needs an integer amount")
)

type echo struct{}

// cf_echo is the conformance plugin's one columnar function.
var _ oort.ColumnFunction = echo{}

func (echo) Validate(args []oort.ArgSpec) error {
	if len(args) != 1 {
		return fmt.Errorf("cf_echo expects 1 argument, got %d", len(args))
	}
	return nil
}

func (echo) Exec(args []any, _ oort.FunctionContext) (any, bool) {
	return arg(args, 0), true
}

// ExecColumns makes cf_echo a columnar function: a columnar batch is echoed
// as the very array that came in, which is exactly the values the row path
// echoes.
func (echo) ExecColumns(args []arrow.Array, rows int, _ oort.FunctionContext) (arrow.Array, error) {
	if len(args) == 0 {
		// Null without arguments, as Exec answers.
		return array.NewNull(rows), nil
	}
	// The SDK releases the arguments after the call and the answer after
	// sending it: returning an argument takes a reference of its own.
	args[0].Retain()
	return args[0], nil
}

func (echo) IsAggregate() bool { return false }

type fail struct{ accept }

func (fail) Exec(args []any, _ oort.FunctionContext) (any, bool) {
	x := arg(args, 0)
	if s, ok := x.(string); ok && strings.HasPrefix(s, "bad") {
		return fmt.Errorf("cf_fail: %s", s), false
	}
	return x, true
}

type count struct{ accept }

func (count) Exec(args []any, ctx oort.FunctionContext) (any, bool) {
	k, ok := arg(args, 0).(string)
	if !ok {
		return errCountArgs, false
	}
	if err := ctx.IncrCounter(k, 1); err != nil {
		return err, false
	}
	n, err := ctx.GetCounter(k)
	if err != nil {
		return err, false
	}
	return n, true
}

type state struct{ accept }

func (state) Exec(args []any, ctx oort.FunctionContext) (any, bool) {
	op, opOK := arg(args, 0).(string)
	k, keyOK := arg(args, 1).(string)
	if !opOK || !keyOK {
		return errStateArgs, false
	}
	switch op {
	case "put":
		if err := ctx.PutState(k, arg(args, 2)); err != nil {
			return err, false
		}
		return true, true
	case "get":
		v, err := ctx.GetState(k)
		if err != nil {
			return err, false
		}
		return v, true
	case "delete":
		if err := ctx.DeleteState(k); err != nil {
			return err, false
		}
		return true, true
	case "incr":
		amount, ok := oort.ToInt(arg(args, 2))
		if !ok {
			return errAmount, false
		}
		if err := ctx.IncrCounter(k, int(amount)); err != nil {
			return err, false
		}
		fallthrough
	case "counter":
		n, err := ctx.GetCounter(k)
		if err != nil {
			return err, false
		}
		return n, true
	}
	return fmt.Errorf("unknown op %q", op), false
}

// agg is the aggregate cf_agg: one row per group, its argument the group's
// values.
type agg struct{}

func (agg) Validate(args []oort.ArgSpec) error {
	if len(args) != 1 {
		return fmt.Errorf("cf_agg expects 1 argument, got %d", len(args))
	}
	return nil
}

func (agg) Exec(args []any, ctx oort.FunctionContext) (any, bool) {
	items, ok := arg(args, 0).([]any)
	if !ok {
		return fmt.Errorf("cf_agg expects a list, got %s", typeName(arg(args, 0))), false
	}
	var sum int64
	for _, v := range items {
		if i, ok := v.(int64); ok {
			sum += i // wraps on overflow, as the Rust plugin's wrapping_add
		}
	}
	if err := ctx.IncrCounter("groups", 1); err != nil {
		return err, false
	}
	return map[string]any{"n": int64(len(items)), "sum": sum}, true
}

func (agg) IsAggregate() bool { return true }

// typeName is the protocol's name of an argument's type (docs/protocol.md §4.4).
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case int64:
		return "int"
	case uint64:
		return "uint"
	case float64:
		return "float"
	case string:
		return "string"
	case []byte:
		return "bytes"
	case []any:
		return "list"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

type pid struct{ accept }

func (pid) Exec([]any, oort.FunctionContext) (any, bool) { return os.Getpid(), true }
