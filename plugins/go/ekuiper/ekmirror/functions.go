package main

import (
	"fmt"
	"math"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
)

func oneArg(name string, args []interface{}) error {
	if len(args) != 1 {
		return fmt.Errorf("%s expects 1 argument, got %d", name, len(args))
	}
	return nil
}

// reverse is ekreverse(s): s with its characters (runes) in reverse order.
type reverse struct{}

func (reverse) Validate(args []interface{}) error { return oneArg("ekreverse", args) }

func (reverse) Exec(args []interface{}, _ api.FunctionContext) (interface{}, bool) {
	switch s := args[0].(type) {
	case nil:
		return nil, true // null in, null out, as SQL functions do
	case string:
		r := []rune(s)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		return string(r), true
	default:
		return fmt.Errorf("ekreverse expects a string, got %T", s), false
	}
}

func (reverse) IsAggregate() bool { return false }

// double is ekdouble(x): 2*x for an integer (int64, failing rather than
// wrapping around on overflow) or a float (float64).
type double struct{}

func (double) Validate(args []interface{}) error { return oneArg("ekdouble", args) }

func (double) Exec(args []interface{}, _ api.FunctionContext) (interface{}, bool) {
	switch x := args[0].(type) {
	case nil:
		return nil, true
	case int64:
		if x > math.MaxInt64/2 || x < math.MinInt64/2 {
			return fmt.Errorf("ekdouble(%d) overflows int64", x), false
		}
		return 2 * x, true
	case float64:
		return 2 * x, true
	default:
		return fmt.Errorf("ekdouble expects a number, got %T", x), false
	}
}

func (double) IsAggregate() bool { return false }

// EkReverse and EkDouble are the functions' constructors (eKuiper's
// NewFunctionFunc).
func EkReverse() api.Function { return reverse{} }
func EkDouble() api.Function  { return double{} }
