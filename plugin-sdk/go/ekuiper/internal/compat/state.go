package compat

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"time"
)

// eKuiper keeps a plugin's state in memory as it was put, and GetState returns
// it typed. Across Oort's process boundary only the plain form survives (Oort's
// dynamic values carry no Go type), so PutState also records the value's Go
// type, as a short description, under a companion key; after a restart
// GetState converts the plain value back into that type.

// TypeKeySuffix ends the companion key that records the Go type of the value
// under the key before it: PutState("words", []string{…}) also stores
// "words#oort.type" = "[]string". User keys ending in it are refused, so the
// two can never collide. Companion keys show up wherever the supervisor lists
// an instance's state.
const TypeKeySuffix = "#oort.type"

// errReservedKey is the error of a state call on a key that ends in
// TypeKeySuffix.
func errReservedKey(key string) error {
	return fmt.Errorf("state key %q: keys ending in %q are reserved for the Go type of the value under the key before it", key, TypeKeySuffix)
}

func reservedKey(key string) bool { return strings.HasSuffix(key, TypeKeySuffix) }

var timeType = reflect.TypeFor[time.Time]()

// basicTypes are the types described by their Go name.
var basicTypes = map[string]reflect.Type{}

func init() {
	for _, v := range []any{
		false, "", int(0), int8(0), int16(0), int32(0), int64(0),
		uint(0), uint8(0), uint16(0), uint32(0), uint64(0), float32(0), float64(0),
	} {
		t := reflect.TypeOf(v)
		basicTypes[t.Name()] = t
	}
	basicTypes["any"] = reflect.TypeFor[any]()
	basicTypes["time.Time"] = timeType
}

// stateTypes holds the named types registered with RegisterStateType, by their
// description: "<package path>.<name>".
var stateTypes sync.Map // string → reflect.Type

// RegisterStateType registers the type of v (a struct, or any named type; a
// pointer registers what it points to) so that a value of it, or a slice, map
// or pointer of it, put into state reads back as that type after a plugin
// restart too. It is what eKuiper plugins do with gob.Register; call it from
// an init function or main, before the state is read. Registering a type
// twice is harmless; unnamed types need no registration.
func RegisterStateType(v any) {
	t := reflect.TypeOf(v)
	if t == nil {
		panic("RegisterStateType: nil has no type")
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() != "" && t.PkgPath() != "" {
		stateTypes.Store(namedDescription(t), t)
	}
}

func namedDescription(t reflect.Type) string { return t.PkgPath() + "." + t.Name() }

// describe returns the description of t that typeOf parses back, or false
// when t cannot be rebuilt (an unregistered named type, a map whose keys are
// not strings, an array, a channel…).
func describe(t reflect.Type) (string, bool) {
	if t == nil {
		return "", false
	}
	if t == timeType {
		return "time.Time", true
	}
	if t.Name() != "" && t.PkgPath() != "" {
		name := namedDescription(t)
		_, ok := stateTypes.Load(name)
		return name, ok
	}
	if b, ok := basicTypes[t.Name()]; ok && b == t {
		return t.Name(), true
	}
	switch t.Kind() {
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return "any", true
		}
	case reflect.Pointer:
		if d, ok := describe(t.Elem()); ok {
			return "*" + d, true
		}
	case reflect.Slice:
		if d, ok := describe(t.Elem()); ok {
			return "[]" + d, true
		}
	case reflect.Map:
		if t.Key() == basicTypes["string"] {
			if d, ok := describe(t.Elem()); ok {
				return "map[string]" + d, true
			}
		}
	}
	return "", false
}

// typeOf parses a description back into its type; false when it names a type
// this process has not registered.
func typeOf(d string) (reflect.Type, bool) {
	switch {
	case strings.HasPrefix(d, "*"):
		if e, ok := typeOf(d[1:]); ok {
			return reflect.PointerTo(e), true
		}
	case strings.HasPrefix(d, "[]"):
		if e, ok := typeOf(d[2:]); ok {
			return reflect.SliceOf(e), true
		}
	case strings.HasPrefix(d, "map[string]"):
		if e, ok := typeOf(d[len("map[string]"):]); ok {
			return reflect.MapOf(basicTypes["string"], e), true
		}
	default:
		if t, ok := basicTypes[d]; ok {
			return t, true
		}
		if t, ok := stateTypes.Load(d); ok {
			return t.(reflect.Type), true
		}
	}
	return nil, false
}

// needsType reports whether a value of type t reads back differently from its
// plain form, i.e. whether it needs a companion key: the wire's own types do
// not.
func needsType(t reflect.Type) bool {
	switch t {
	case nil, basicTypes["bool"], basicTypes["string"], basicTypes["int64"], basicTypes["uint64"], basicTypes["float64"],
		reflect.TypeFor[[]byte](), reflect.TypeFor[[]any](), reflect.TypeFor[map[string]any]():
		return false
	}
	return true
}

// restore converts v, a value in its wire form (nil, bool, int64, uint64,
// float64, string, []byte, []any, map[string]any), into type t. Structs are
// decoded from their map with encoding/json, so JSON tags apply as they did
// when the value was put.
func restore(v any, t reflect.Type) (reflect.Value, error) {
	if t == timeType {
		s, ok := v.(string)
		if !ok {
			return reflect.Value{}, fmt.Errorf("a %T is not a time", v)
		}
		ts, err := time.Parse(time.RFC3339Nano, s)
		return reflect.ValueOf(ts), err
	}
	switch t.Kind() {
	case reflect.Interface:
		if v == nil {
			return reflect.Zero(t), nil
		}
		return reflect.ValueOf(v), nil
	case reflect.Pointer:
		if v == nil {
			return reflect.Zero(t), nil
		}
		e, err := restore(v, t.Elem())
		if err != nil {
			return reflect.Value{}, err
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(e)
		return p, nil
	case reflect.Struct:
		b, err := json.Marshal(v)
		if err != nil {
			return reflect.Value{}, err
		}
		p := reflect.New(t)
		if err := json.Unmarshal(b, p.Interface()); err != nil {
			return reflect.Value{}, err
		}
		return p.Elem(), nil
	}
	if v == nil {
		return reflect.Zero(t), nil
	}
	out := reflect.New(t).Elem()
	mismatch := func() (reflect.Value, error) {
		return reflect.Value{}, fmt.Errorf("a %T does not convert to a %s", v, t)
	}
	switch t.Kind() {
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return mismatch()
		}
		out.SetBool(b)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return mismatch()
		}
		out.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		switch x := v.(type) {
		case int64:
			i = x
		case uint64:
			if x > math.MaxInt64 {
				return mismatch()
			}
			i = int64(x)
		case float64:
			if x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
				return mismatch()
			}
			i = int64(x)
		default:
			return mismatch()
		}
		if out.OverflowInt(i) {
			return mismatch()
		}
		out.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		switch x := v.(type) {
		case uint64:
			u = x
		case int64:
			if x < 0 {
				return mismatch()
			}
			u = uint64(x)
		case float64:
			if x != math.Trunc(x) || x < 0 || x >= math.MaxUint64 {
				return mismatch()
			}
			u = uint64(x)
		default:
			return mismatch()
		}
		if out.OverflowUint(u) {
			return mismatch()
		}
		out.SetUint(u)
	case reflect.Float32, reflect.Float64:
		switch x := v.(type) {
		case float64:
			out.SetFloat(x)
		case int64:
			out.SetFloat(float64(x))
		case uint64:
			out.SetFloat(float64(x))
		default:
			return mismatch()
		}
	case reflect.Slice:
		if b, ok := v.([]byte); ok && t.Elem().Kind() == reflect.Uint8 {
			return reflect.ValueOf(append([]byte{}, b...)).Convert(t), nil
		}
		items, ok := v.([]any)
		if !ok {
			return mismatch()
		}
		out = reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			e, err := restore(item, t.Elem())
			if err != nil {
				return reflect.Value{}, fmt.Errorf("item %d: %w", i, err)
			}
			out.Index(i).Set(e)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return mismatch()
		}
		out = reflect.MakeMapWithSize(t, len(m))
		for k, item := range m {
			e, err := restore(item, t.Elem())
			if err != nil {
				return reflect.Value{}, fmt.Errorf("key %q: %w", k, err)
			}
			out.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
		}
	default:
		return mismatch()
	}
	return out, nil
}
