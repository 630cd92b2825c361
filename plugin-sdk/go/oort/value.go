package oort

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

// maxDepth bounds how deeply lists and maps may nest, which also stops a
// cyclic structure from recursing forever.
const maxDepth = 100

// Normalize returns v as it looks after a trip over the wire: nil, bool,
// int64, uint64, float64, string, []byte, []any or map[string]any, converted
// recursively. It fails for values that have no wire form (see ToValue rules
// in the package doc).
func Normalize(v any) (any, error) {
	p, err := toValue(v)
	if err != nil {
		return nil, err
	}
	return fromValue(p), nil
}

// toValue converts a Go value to its wire form.
//
//   - nil, and nil pointers, slices and maps → null
//   - bool → bool
//   - every signed integer type → int; every unsigned integer type (uint8
//     too, outside []byte) → uint, so that unsigned values round-trip and
//     values above math.MaxInt64 are carried at all
//   - float32, float64 → float
//   - string → string; []byte → bytes
//   - slices and arrays → list; maps with string keys → map
//   - json.Number → int when it is integral and fits int64, uint when it is
//     integral and fits uint64, float otherwise
//   - time.Time → string in RFC 3339 with nanoseconds (eKuiper's JSON form)
//   - named types of the kinds above convert as their underlying kind;
//     pointers convert as what they point to.
func toValue(v any) (*pb.Value, error) {
	return toValueDepth(v, 0)
}

func toValueDepth(v any, depth int) (*pb.Value, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("value nests deeper than %d levels", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		return nullValue(), nil
	case *pb.Value:
		if x == nil {
			return nullValue(), nil
		}
		return x, nil
	case bool:
		return &pb.Value{Kind: &pb.Value_Bool{Bool: x}}, nil
	case int:
		return intValue(int64(x)), nil
	case int8:
		return intValue(int64(x)), nil
	case int16:
		return intValue(int64(x)), nil
	case int32:
		return intValue(int64(x)), nil
	case int64:
		return intValue(x), nil
	case uint8:
		return uintValue(uint64(x)), nil
	case uint16:
		return uintValue(uint64(x)), nil
	case uint32:
		return uintValue(uint64(x)), nil
	case uint:
		return uintValue(uint64(x)), nil
	case uint64:
		return uintValue(x), nil
	case float32:
		return floatValue(float64(x)), nil
	case float64:
		return floatValue(x), nil
	case string:
		return stringValue(x), nil
	case []byte:
		if x == nil {
			return nullValue(), nil
		}
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: x}}, nil
	case []any:
		if x == nil {
			return nullValue(), nil
		}
		items := make([]*pb.Value, len(x))
		for i, item := range x {
			p, err := toValueDepth(item, depth+1)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			items[i] = p
		}
		return &pb.Value{Kind: &pb.Value_List{List: &pb.ValueList{Items: items}}}, nil
	case map[string]any:
		if x == nil {
			return nullValue(), nil
		}
		entries, err := toValueMapDepth(x, depth+1)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Map{Map: &pb.ValueMap{Entries: entries}}}, nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return intValue(i), nil
		}
		// Integers above int64's range (e.g. ids in JSON payloads) stay exact.
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return uintValue(u), nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("json.Number %q is not a number", string(x))
		}
		return floatValue(f), nil
	case time.Time:
		return stringValue(x.Format(time.RFC3339Nano)), nil
	}
	return reflectValue(reflect.ValueOf(v), depth)
}

// reflectValue converts the types the fast path does not know: named types,
// typed slices and maps, pointers.
func reflectValue(rv reflect.Value, depth int) (*pb.Value, error) {
	switch rv.Kind() {
	case reflect.Bool:
		return &pb.Value{Kind: &pb.Value_Bool{Bool: rv.Bool()}}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intValue(rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return uintValue(rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return floatValue(rv.Float()), nil
	case reflect.String:
		return stringValue(rv.String()), nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nullValue(), nil
		}
		return toValueDepth(rv.Elem().Interface(), depth+1)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nullValue(), nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			return &pb.Value{Kind: &pb.Value_Bytes{Bytes: b}}, nil
		}
		items := make([]*pb.Value, rv.Len())
		for i := range items {
			p, err := toValueDepth(rv.Index(i).Interface(), depth+1)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			items[i] = p
		}
		return &pb.Value{Kind: &pb.Value_List{List: &pb.ValueList{Items: items}}}, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("cannot convert a %s: map keys must be strings", rv.Type())
		}
		if rv.IsNil() {
			return nullValue(), nil
		}
		entries := make(map[string]*pb.Value, rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			k := iter.Key().String()
			p, err := toValueDepth(iter.Value().Interface(), depth+1)
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
			entries[k] = p
		}
		return &pb.Value{Kind: &pb.Value_Map{Map: &pb.ValueMap{Entries: entries}}}, nil
	case reflect.Invalid:
		return nullValue(), nil
	}
	return nil, fmt.Errorf("cannot convert a %s to an Oort value", rv.Type())
}

func toValueMap(m map[string]any) (map[string]*pb.Value, error) {
	return toValueMapDepth(m, 0)
}

func toValueMapDepth(m map[string]any, depth int) (map[string]*pb.Value, error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[string]*pb.Value, len(m))
	for k, v := range m {
		p, err := toValueDepth(v, depth)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		out[k] = p
	}
	return out, nil
}

func nullValue() *pb.Value           { return &pb.Value{Kind: &pb.Value_Null{Null: true}} }
func intValue(i int64) *pb.Value     { return &pb.Value{Kind: &pb.Value_Int{Int: i}} }
func floatValue(f float64) *pb.Value { return &pb.Value{Kind: &pb.Value_Float{Float: f}} }
func stringValue(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_String_{String_: s}} }

func uintValue(u uint64) *pb.Value { return &pb.Value{Kind: &pb.Value_Uint{Uint: u}} }

// fromValue converts a wire value to Go: nil, bool, int64, uint64, float64,
// string, []byte, []any or map[string]any. A value with no case set is nil.
func fromValue(v *pb.Value) any {
	switch k := v.GetKind().(type) {
	case *pb.Value_Bool:
		return k.Bool
	case *pb.Value_Int:
		return k.Int
	case *pb.Value_Uint:
		return k.Uint
	case *pb.Value_Float:
		return k.Float
	case *pb.Value_String_:
		return k.String_
	case *pb.Value_Bytes:
		if k.Bytes == nil {
			return []byte{}
		}
		return k.Bytes
	case *pb.Value_List:
		items := k.List.GetItems()
		out := make([]any, len(items))
		for i, item := range items {
			out[i] = fromValue(item)
		}
		return out
	case *pb.Value_Map:
		return fromValueMap(k.Map.GetEntries())
	}
	return nil
}

func fromValueMap(m map[string]*pb.Value) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = fromValue(v)
	}
	return out
}

// typeName is the short name of a wire value's type, for error messages
// (the same names the Rust SDK uses).
func typeName(v *pb.Value) string {
	switch v.GetKind().(type) {
	case *pb.Value_Bool:
		return "bool"
	case *pb.Value_Int:
		return "int"
	case *pb.Value_Uint:
		return "uint"
	case *pb.Value_Float:
		return "float"
	case *pb.Value_String_:
		return "string"
	case *pb.Value_Bytes:
		return "bytes"
	case *pb.Value_List:
		return "list"
	case *pb.Value_Map:
		return "map"
	}
	return "null"
}

func recordToPB(r Record) (*pb.Record, error) {
	fields, err := toValueMap(r.Fields)
	if err != nil {
		return nil, fmt.Errorf("field %w", err)
	}
	meta, err := toValueMap(r.Metadata)
	if err != nil {
		return nil, fmt.Errorf("metadata %w", err)
	}
	var ts int64
	if !r.Timestamp.IsZero() {
		ts = r.Timestamp.UnixMilli()
	}
	return &pb.Record{Fields: fields, Metadata: meta, TimestampMs: ts}, nil
}

func recordFromPB(r *pb.Record) Record {
	out := Record{Fields: fromValueMap(r.GetFields()), Metadata: fromValueMap(r.GetMetadata())}
	if ms := r.GetTimestampMs(); ms != 0 {
		out.Timestamp = time.UnixMilli(ms)
	}
	return out
}

// ToInt returns v as an int64 when it is an integer of any Go type that fits
// int64 (an unsigned value above math.MaxInt64 does not), a float with no
// fraction (within ±2^53), or a json.Number holding such an integer.
func ToInt(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) <= 1<<53 {
			return int64(x), true
		}
		return 0, false
	case float32:
		return ToInt(float64(x))
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, true
		}
		return 0, false
	}
	p, err := toValue(v)
	if err != nil {
		return 0, false
	}
	switch k := p.GetKind().(type) {
	case *pb.Value_Int:
		return k.Int, true
	case *pb.Value_Uint:
		if k.Uint <= math.MaxInt64 {
			return int64(k.Uint), true
		}
	}
	return 0, false
}

// ToFloat returns v as a float64 when it is a number of any Go type (an
// integer beyond ±2^53 to the nearest float64).
func ToFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string, bool, nil:
		return 0, false
	}
	if i, ok := ToInt(v); ok {
		return float64(i), true
	}
	// Unsigned values above math.MaxInt64 (ToInt refuses them).
	if p, err := toValue(v); err == nil {
		if u, ok := p.GetKind().(*pb.Value_Uint); ok {
			return float64(u.Uint), true
		}
	}
	return 0, false
}
