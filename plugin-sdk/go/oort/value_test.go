package oort

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

type celsius float64
type label string
type tags []string

// wire sends v through the protobuf encoding and back.
func wire(t *testing.T, v any) any {
	t.Helper()
	p, err := toValue(v)
	if err != nil {
		t.Fatalf("toValue(%#v): %v", v, err)
	}
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back pb.Value
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	return fromValue(&back)
}

func TestValuesSurviveTheWire(t *testing.T) {
	seven := 7
	var nilPtr *int
	cases := []struct {
		in   any
		want any
	}{
		{nil, nil},
		{true, true},
		{false, false},
		{42, int64(42)},
		{int8(-8), int64(-8)},
		{int16(16), int64(16)},
		{int32(-32), int64(-32)},
		{int64(math.MinInt64), int64(math.MinInt64)},
		// Unsigned types travel as uint and come back as uint64, also above
		// int64's range; uint8 is a number except inside []byte.
		{uint8(8), uint64(8)},
		{uint16(16), uint64(16)},
		{uint32(math.MaxUint32), uint64(math.MaxUint32)},
		{uint(3), uint64(3)},
		{uint64(math.MaxInt64), uint64(math.MaxInt64)},
		{uint64(math.MaxInt64) + 1, uint64(math.MaxInt64) + 1},
		{uint64(math.MaxUint64), uint64(math.MaxUint64)},
		{[]uint64{1, math.MaxUint64}, []any{uint64(1), uint64(math.MaxUint64)}},
		{[]any{uint8(1)}, []any{uint64(1)}},
		{map[string]uint16{"p": 8080}, map[string]any{"p": uint64(8080)}},
		{1.5, 1.5},
		{float32(0.25), 0.25},
		{math.Inf(-1), math.Inf(-1)},
		{"héllo", "héllo"},
		{"", ""},
		{[]byte{0, 1, 255}, []byte{0, 1, 255}},
		{[]byte{}, []byte{}},
		{[]any{1, "a", nil, []any{false}}, []any{int64(1), "a", nil, []any{false}}},
		{[]any{}, []any{}},
		{map[string]any{"a": 1, "b": map[string]any{"c": 2.5}}, map[string]any{"a": int64(1), "b": map[string]any{"c": 2.5}}},
		{map[string]any{}, map[string]any{}},
		// Named and typed values convert as their underlying kind.
		{celsius(21.5), 21.5},
		{label("x"), "x"},
		{tags{"a", "b"}, []any{"a", "b"}},
		{[]int{1, 2}, []any{int64(1), int64(2)}},
		{[2]float64{1, 2}, []any{1.0, 2.0}},
		{map[string]int{"n": 1}, map[string]any{"n": int64(1)}},
		{map[label]string{"k": "v"}, map[string]any{"k": "v"}},
		{[]map[string]any{{"n": 1}}, []any{map[string]any{"n": int64(1)}}},
		{&seven, int64(7)},
		{nilPtr, nil},
		{[]any(nil), nil},
		{map[string]any(nil), nil},
		{json.Number("12"), int64(12)},
		{json.Number("1.25"), 1.25},
		{json.Number("12963433097944239317"), uint64(12963433097944239317)},
		{json.Number("-12963433097944239317"), -12963433097944239317.0},
		{time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), "2025-01-02T03:04:05.000000006Z"},
	}
	for _, c := range cases {
		got := wire(t, c.in)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%#v: got %#v (%T), want %#v (%T)", c.in, got, got, c.want, c.want)
		}
	}
	if got := wire(t, math.NaN()).(float64); !math.IsNaN(got) {
		t.Errorf("NaN came back as %v", got)
	}
}

func TestUnconvertibleValuesAreErrors(t *testing.T) {
	cyclic := []any{nil}
	cyclic[0] = cyclic
	cases := []struct {
		in   any
		want string
	}{
		{struct{ A int }{1}, "cannot convert a struct"},
		{map[int]string{1: "a"}, "map keys must be strings"},
		{make(chan int), "cannot convert a chan int"},
		{map[string]any{"f": func() {}}, `key "f": cannot convert a func()`},
		{[]any{1, complex(1, 2)}, "item 1: cannot convert a complex128"},
		{cyclic, "nests deeper than"},
	}
	for _, c := range cases {
		_, err := toValue(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%T: error %v, want one containing %q", c.in, err, c.want)
		}
	}
}

func TestUnsignedTypesUseTheUintCase(t *testing.T) {
	type port uint16
	for _, in := range []any{uint8(1), uint16(1), uint32(1), uint(1), uint64(1), port(1)} {
		p, err := toValue(in)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.GetKind().(*pb.Value_Uint); !ok || typeName(p) != "uint" {
			t.Errorf("%T went out as %s", in, typeName(p))
		}
	}
	// Signed types keep the int case, and bytes stay bytes.
	for in, want := range map[any]string{int(1): "int", int64(-1): "int", string([]byte{1}): "string"} {
		if p, _ := toValue(in); typeName(p) != want {
			t.Errorf("%T went out as %s", in, typeName(p))
		}
	}
	if p, _ := toValue([]byte{1}); typeName(p) != "bytes" {
		t.Errorf("[]byte went out as %s", typeName(p))
	}
}

func TestAValueWithNoCaseIsNull(t *testing.T) {
	if got := fromValue(&pb.Value{}); got != nil {
		t.Errorf("got %#v", got)
	}
	if got := fromValue(nil); got != nil {
		t.Errorf("got %#v", got)
	}
	if got := typeName(&pb.Value{}); got != "null" {
		t.Errorf("typeName = %q", got)
	}
}

func TestRecordsConvertBothWays(t *testing.T) {
	ts := time.UnixMilli(1_700_000_000_123)
	r := Record{Fields: map[string]any{"n": 1}, Metadata: map[string]any{"topic": "t"}, Timestamp: ts}
	p, err := recordToPB(r)
	if err != nil {
		t.Fatal(err)
	}
	if p.GetTimestampMs() != 1_700_000_000_123 {
		t.Errorf("timestamp %d", p.GetTimestampMs())
	}
	back := recordFromPB(p)
	want := Record{Fields: map[string]any{"n": int64(1)}, Metadata: map[string]any{"topic": "t"}, Timestamp: ts}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("got %#v", back)
	}
	zero, _ := recordToPB(Record{})
	if zero.GetTimestampMs() != 0 || !recordFromPB(zero).Timestamp.IsZero() {
		t.Errorf("an unknown time must stay unknown")
	}
	if _, err := recordToPB(Record{Fields: map[string]any{"bad": struct{}{}}}); err == nil {
		t.Error("a struct field must be an error")
	}
}

func TestNumberHelpers(t *testing.T) {
	for _, c := range []struct {
		in   any
		want int64
		ok   bool
	}{
		{int64(3), 3, true}, {7, 7, true}, {uint8(2), 2, true}, {2.0, 2, true}, {2.5, 0, false},
		{json.Number("9"), 9, true}, {"3", 0, false}, {nil, 0, false}, {uint64(math.MaxUint64), 0, false},
		{uint64(math.MaxInt64), math.MaxInt64, true}, {uint(5), 5, true}, {json.Number("12963433097944239317"), 0, false},
	} {
		got, ok := ToInt(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("ToInt(%#v) = %d, %v", c.in, got, ok)
		}
	}
	if f, ok := ToFloat(int64(2)); !ok || f != 2 {
		t.Errorf("ToFloat(int64) = %v, %v", f, ok)
	}
	for _, c := range []struct {
		in   any
		want float64
	}{{uint64(math.MaxUint64), math.MaxUint64}, {uint32(7), 7}, {uint8(255), 255}, {json.Number("12963433097944239317"), 12963433097944239317}} {
		if f, ok := ToFloat(c.in); !ok || f != c.want {
			t.Errorf("ToFloat(%#v) = %v, %v", c.in, f, ok)
		}
	}
	if _, ok := ToFloat("2"); ok {
		t.Error("ToFloat(string) must fail")
	}
	n, err := Normalize(map[string]int{"a": 1})
	if err != nil || !reflect.DeepEqual(n, map[string]any{"a": int64(1)}) {
		t.Errorf("Normalize = %#v, %v", n, err)
	}
}
