// Functions written against eKuiper 2.x's plugin contract (contract/api):
// Exec takes the context first. Only the import path differs from an eKuiper
// plugin; main.go is the Oort-specific part.
package main

import (
	"fmt"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
)

func number(v any) (float64, bool) {
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

type scaleFunc struct{}

func (scaleFunc) Validate(args []any) error {
	if len(args) != 2 {
		return fmt.Errorf("ek2Scale expects 2 arguments, got %d", len(args))
	}
	return nil
}

func (scaleFunc) Exec(ctx api.FunctionContext, args []any) (any, bool) {
	v, ok1 := number(args[0])
	k, ok2 := number(args[1])
	if !ok1 || !ok2 {
		return fmt.Errorf("ek2Scale expects numbers, got %v and %v", args[0], args[1]), false
	}
	return v * k, true
}

func (scaleFunc) IsAggregate() bool { return false }

// tagged is a struct result: its JSON tags name the fields.
type tagged struct {
	Rule  string `json:"rule"`
	Op    string `json:"op"`
	Value any    `json:"value"`
	Seen  int    `json:"seen"`
}

type tagFunc struct{}

func (tagFunc) Validate(args []any) error {
	if len(args) != 1 {
		return fmt.Errorf("ek2Tag expects 1 argument, got %d", len(args))
	}
	return nil
}

func (tagFunc) Exec(ctx api.FunctionContext, args []any) (any, bool) {
	if err := ctx.IncrCounter("seen", 1); err != nil {
		return err, false
	}
	seen, err := ctx.GetCounter("seen")
	if err != nil {
		return err, false
	}
	return &tagged{Rule: ctx.GetRuleId(), Op: ctx.GetOpId(), Value: args[0], Seen: seen}, true
}

func (tagFunc) IsAggregate() bool { return false }
