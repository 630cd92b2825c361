package main

import (
	"fmt"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// encode is geohashEncode(lat, lon[, precision]).
type encode struct{}

func (encode) Validate(args []oort.ArgSpec) error {
	if len(args) != 2 && len(args) != 3 {
		return fmt.Errorf("geohashEncode expects 2 or 3 arguments (lat, lon[, precision]), got %d", len(args))
	}
	for i, name := range []string{"latitude", "longitude"} {
		if a := args[i]; a.IsLiteral && a.Literal != nil {
			if _, ok := oort.ToFloat(a.Literal); !ok {
				return fmt.Errorf("geohashEncode: the %s must be a number, not %s", name, a.Expression)
			}
		}
	}
	if len(args) == 3 && args[2].IsLiteral {
		p, ok := oort.ToInt(args[2].Literal)
		if !ok || p < 1 || p > MaxPrecision {
			return fmt.Errorf("geohashEncode: the precision must be an integer from 1 to %d, not %s", MaxPrecision, args[2].Expression)
		}
	}
	return nil
}

func (encode) Exec(args []any, _ oort.FunctionContext) (any, bool) {
	if len(args) != 2 && len(args) != 3 {
		return fmt.Errorf("geohashEncode expects 2 or 3 arguments, got %d", len(args)), false
	}
	if args[0] == nil || args[1] == nil {
		return nil, true
	}
	lat, ok := oort.ToFloat(args[0])
	if !ok {
		return fmt.Errorf("geohashEncode: the latitude must be a number, got %v", args[0]), false
	}
	lon, ok := oort.ToFloat(args[1])
	if !ok {
		return fmt.Errorf("geohashEncode: the longitude must be a number, got %v", args[1]), false
	}
	precision := int64(MaxPrecision)
	if len(args) == 3 && args[2] != nil {
		if precision, ok = oort.ToInt(args[2]); !ok {
			return fmt.Errorf("geohashEncode: the precision must be an integer, got %v", args[2]), false
		}
		if precision < 1 || precision > MaxPrecision {
			return fmt.Errorf("geohashEncode: precision %d is outside 1…%d", precision, MaxPrecision), false
		}
	}
	hash, err := Encode(lat, lon, int(precision))
	if err != nil {
		return fmt.Errorf("geohashEncode: %w", err), false
	}
	return hash, true
}

func (encode) IsAggregate() bool { return false }

// decode is geohashDecode(hash).
type decode struct{}

func (decode) Validate(args []oort.ArgSpec) error {
	if len(args) != 1 {
		return fmt.Errorf("geohashDecode expects 1 argument (hash), got %d", len(args))
	}
	if a := args[0]; a.IsLiteral && a.Literal != nil {
		if _, ok := a.Literal.(string); !ok {
			return fmt.Errorf("geohashDecode: the geohash must be a string, not %s", a.Expression)
		}
	}
	return nil
}

func (decode) Exec(args []any, _ oort.FunctionContext) (any, bool) {
	if len(args) != 1 {
		return fmt.Errorf("geohashDecode expects 1 argument, got %d", len(args)), false
	}
	if args[0] == nil {
		return nil, true
	}
	hash, ok := args[0].(string)
	if !ok {
		return fmt.Errorf("geohashDecode: the geohash must be a string, got %v", args[0]), false
	}
	lat, lon, err := Decode(hash)
	if err != nil {
		return fmt.Errorf("geohashDecode: %w", err), false
	}
	return map[string]any{"lat": lat, "lon": lon}, true
}

func (decode) IsAggregate() bool { return false }
