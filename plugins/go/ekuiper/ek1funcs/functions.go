// Functions written against eKuiper 1.x's native plugin API (pkg/api), as an
// eKuiper plugin writes them: only the import path differs. main.go is the
// Oort-specific part.
package main

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
)

// toFloat accepts the number types eKuiper hands to functions.
func toFloat(v interface{}) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	}
	return 0, false
}

// point returns a struct: its JSON tags name the result's fields.
type point struct {
	X    float64 `json:"x"`
	Y    float64 `json:"y"`
	Dist float64 `json:"dist"`
}

type pointFunc struct{}

func (f pointFunc) Validate(args []interface{}) error {
	if len(args) != 2 {
		return fmt.Errorf("ek1Point function only supports 2 parameters but got %d", len(args))
	}
	return nil
}

func (f pointFunc) Exec(args []interface{}, ctx api.FunctionContext) (interface{}, bool) {
	x, ok := toFloat(args[0])
	if !ok {
		return fmt.Errorf("args[0] is not a number, got %v", args[0]), false
	}
	y, ok := toFloat(args[1])
	if !ok {
		return fmt.Errorf("args[1] is not a number, got %v", args[1]), false
	}
	return point{X: x, Y: y, Dist: math.Hypot(x, y)}, true
}

func (f pointFunc) IsAggregate() bool { return false }

// Ek1Point is exported as an instance, eKuiper's `var` export style.
var Ek1Point pointFunc

// sumFunc is an aggregate: args[0] holds the group's values.
type sumFunc struct{}

func (f *sumFunc) Validate(args []interface{}) error {
	if len(args) != 1 {
		return fmt.Errorf("ek1Sum function only supports 1 parameter but got %d", len(args))
	}
	return nil
}

func (f *sumFunc) Exec(args []interface{}, ctx api.FunctionContext) (interface{}, bool) {
	values, ok := args[0].([]interface{})
	if !ok {
		return fmt.Errorf("ek1Sum expects a group of values, got %T", args[0]), false
	}
	total := 0.0
	for _, v := range values {
		if n, ok := toFloat(v); ok {
			total += n
		}
	}
	ctx.GetLogger().Debugf("ek1Sum over %d values: %v", len(values), total)
	return total, true
}

func (f *sumFunc) IsAggregate() bool { return true }

// Ek1Sum is exported as a constructor, eKuiper's other export style.
func Ek1Sum() api.Function { return &sumFunc{} }

// lastWordsFunc keeps the last three words it saw in its state, as a typed
// []string, and counts its calls.
type lastWordsFunc struct{}

func (f *lastWordsFunc) Validate(args []interface{}) error {
	if len(args) != 1 {
		return fmt.Errorf("ek1LastWords function only supports 1 parameter but got %d", len(args))
	}
	return nil
}

func (f *lastWordsFunc) Exec(args []interface{}, ctx api.FunctionContext) (interface{}, bool) {
	word, ok := args[0].(string)
	if !ok {
		return fmt.Errorf("args[0] is not a string, got %v", args[0]), false
	}
	var words []string
	s, err := ctx.GetState("words")
	if err != nil {
		return err, false
	}
	if s != nil {
		if words, ok = s.([]string); !ok {
			return fmt.Errorf("state words is a %T, not a []string", s), false
		}
	}
	words = append(words, word)
	if len(words) > 3 {
		words = words[len(words)-3:]
	}
	if err := ctx.PutState("words", words); err != nil {
		return err, false
	}
	if err := ctx.IncrCounter("calls", 1); err != nil {
		return err, false
	}
	calls, err := ctx.GetCounter("calls")
	if err != nil {
		return err, false
	}
	return map[string]interface{}{"words": strings.Join(words, " "), "calls": calls}, true
}

func (f *lastWordsFunc) IsAggregate() bool { return false }

func Ek1LastWords() api.Function { return &lastWordsFunc{} }

// hashFunc returns the 64-bit FNV-1a hash of its string argument as a uint64,
// as eKuiper functions return unsigned results (many are above 2^63).
type hashFunc struct{}

func (f hashFunc) Validate(args []interface{}) error {
	if len(args) != 1 {
		return fmt.Errorf("ek1Hash function only supports 1 parameter but got %d", len(args))
	}
	return nil
}

func (f hashFunc) Exec(args []interface{}, ctx api.FunctionContext) (interface{}, bool) {
	s, ok := args[0].(string)
	if !ok {
		return fmt.Errorf("args[0] is not a string, got %v", args[0]), false
	}
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64(), true
}

func (f hashFunc) IsAggregate() bool { return false }

var Ek1Hash hashFunc

// hashHexFunc formats a uint64 (such as ek1Hash's result) as 16 hex digits; it
// type-asserts its argument as eKuiper code does.
type hashHexFunc struct{}

func (f hashHexFunc) Validate(args []interface{}) error {
	if len(args) != 1 {
		return fmt.Errorf("ek1HashHex function only supports 1 parameter but got %d", len(args))
	}
	return nil
}

func (f hashHexFunc) Exec(args []interface{}, ctx api.FunctionContext) (interface{}, bool) {
	h, ok := args[0].(uint64)
	if !ok {
		return fmt.Errorf("ek1HashHex expects a uint64, got %T", args[0]), false
	}
	return fmt.Sprintf("%016x", h), true
}

func (f hashHexFunc) IsAggregate() bool { return false }

var Ek1HashHex hashHexFunc
