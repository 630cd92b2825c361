package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

type inner struct {
	A int    `json:"a"`
	B string `json:"b,omitempty"`
}

type outer struct {
	Name   string            `json:"name"`
	In     inner             `json:"in"`
	Ptr    *inner            `json:"ptr"`
	List   []inner           `json:"list"`
	Tags   map[string]string `json:"tags"`
	hidden int
}

func TestPlainTurnsStructsIntoMapsByTheirJSONTags(t *testing.T) {
	got, err := Plain(outer{Name: "x", In: inner{A: 1, B: "b"}, List: []inner{{A: 2}}, Tags: map[string]string{"k": "v"}, hidden: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "x",
		"in":   map[string]any{"a": json.Number("1"), "b": "b"},
		"ptr":  nil,
		"list": []any{map[string]any{"a": json.Number("2")}},
		"tags": map[string]any{"k": "v"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	// Every converted value is one the SDK accepts.
	if _, err := oort.Normalize(got); err != nil {
		t.Fatal(err)
	}
	// Structs inside plain maps and slices, pointers, non-string keys.
	got, err = Plain(map[string]any{"p": &inner{A: 5}, "l": []any{inner{A: 6}}, "m": map[int]string{1: "one"}, "s": []int{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]any{
		"p": map[string]any{"a": json.Number("5")},
		"l": []any{map[string]any{"a": json.Number("6")}},
		"m": map[string]any{"1": "one"},
		"s": []any{1, 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	// Plain values pass through unchanged.
	for _, v := range []any{nil, true, int64(3), 2.5, "s", []byte("b"), uint64(7)} {
		if got, err := Plain(v); err != nil || !reflect.DeepEqual(got, v) {
			t.Fatalf("Plain(%#v) = %#v, %v", v, got, err)
		}
	}
	if _, err := Plain(struct{ C chan int }{make(chan int)}); err == nil {
		t.Fatal("a channel field must be an error")
	}
}

func TestPropsDecodeNumbersAsEKuiperDoes(t *testing.T) {
	in := map[string]any{"i": int64(3), "f": 1.5, "s": "x", "m": map[string]any{"n": int64(1)}, "l": []any{int64(2), "y"}}
	// Sinks: from the rule's JSON.
	got := SinkProps(in)
	want := map[string]any{"i": 3.0, "f": 1.5, "s": "x", "m": map[string]any{"n": 1.0}, "l": []any{2.0, "y"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	// Sources: from YAML, plus the format.
	got = SourceProps(in)
	want = map[string]any{"i": 3, "f": 1.5, "s": "x", "m": map[string]any{"n": 1}, "l": []any{2, "y"}, "format": "json"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	// Unsigned numbers (the wire's uint) too.
	big := uint64(math.MaxUint64)
	if got := SinkProps(map[string]any{"u": uint64(7), "big": big}); got["u"] != 7.0 || got["big"] != float64(big) {
		t.Fatalf("got %#v", got)
	}
	if got := SourceProps(map[string]any{"u": uint64(7), "big": big}); got["u"] != 7 || got["big"] != big {
		t.Fatalf("got %#v", got)
	}
	if got := SourceProps(map[string]any{"format": "binary"}); got["format"] != "binary" {
		t.Fatalf("got %#v", got)
	}
}

func TestInterval(t *testing.T) {
	cases := []struct {
		in   any
		want time.Duration
	}{{nil, 7 * time.Second}, {int64(250), 250 * time.Millisecond}, {1000.0, time.Second}, {"40", 40 * time.Millisecond}, {"2s", 2 * time.Second}}
	for _, c := range cases {
		got, err := Interval(c.in, 7*time.Second)
		if err != nil || got != c.want {
			t.Fatalf("Interval(%#v) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	if _, err := Interval("soon", time.Second); err == nil {
		t.Fatal("want an error")
	}
}

func TestStateIsReadBackAsItWasPut(t *testing.T) {
	c := NewCore(oort.NewTestContext("r1", "op_1"))
	if err := c.PutState("words", []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	v, err := c.GetState("words")
	if err != nil {
		t.Fatal(err)
	}
	if words, ok := v.([]string); !ok || len(words) != 2 {
		t.Fatalf("got %#v", v)
	}
	// The Oort state holds the plain form, which is what a restart sees.
	if w, _ := c.O.GetState("words"); !reflect.DeepEqual(w, []any{"a", "b"}) {
		t.Fatalf("plain form %#v", w)
	}
	if err := c.PutState("pos", inner{A: 1}); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.GetState("pos"); v != (inner{A: 1}) {
		t.Fatalf("got %#v", v)
	}
	// A derived context shares the state; a counter replaces a value.
	d := c.Derive(context.Background())
	if err := d.IncrCounter("pos", 2); err == nil {
		t.Fatal("a counter over a plain value must fail, as in the SDK")
	}
	if err := d.DeleteState("pos"); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.GetState("pos"); v != nil {
		t.Fatalf("deleted key reads %#v", v)
	}
	if err := d.IncrCounter("pos", 2); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.GetCounter("pos"); n != 2 {
		t.Fatalf("counter %d", n)
	}
	if s, err := c.ParseTemplate(`{{.a}}-{{.b}}`, map[string]any{"a": 1, "b": "x"}); err != nil || s != "1-x" {
		t.Fatalf("ParseTemplate = %q, %v", s, err)
	}
}

func TestDrainIsBoundedAndPendingKeepsTheRest(t *testing.T) {
	ch := make(chan int, 3)
	sent := make(chan int, 10)
	go func() {
		for i := range 10 {
			ch <- i
			sent <- i
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if n := len(sent); n != 3 {
		t.Fatalf("producer sent %d into a buffer of 3 (back-pressure)", n)
	}
	conv := func(i int, out []oort.Record) []oort.Record {
		// Each item yields two records.
		return append(out, oort.Record{Fields: map[string]any{"i": i}}, oort.Record{Fields: map[string]any{"i": i}})
	}
	var p Pending
	got := 0
	for got < 20 {
		batch := p.Take(3, func(max int) []oort.Record { return Drain(context.Background(), ch, max, conv) })
		if len(batch) > 3 {
			t.Fatalf("batch of %d", len(batch))
		}
		got += len(batch)
	}
	if empty := Drain(context.Background(), ch, 5, conv); empty != nil {
		t.Fatalf("drained %v from an empty buffer", empty)
	}
}

type position struct {
	Lat   float64           `json:"lat"`
	Label string            `json:"label,omitempty"`
	Raw   []byte            `json:"raw"`
	At    time.Time         `json:"at"`
	In    inner             `json:"in"`
	Tags  map[string]string `json:"tags"`
	Big   uint64            `json:"big"`
}

type words []string

type unregistered struct {
	N int `json:"n"`
}

func init() {
	RegisterStateType(position{})
	RegisterStateType(&inner{}) // a pointer registers what it points to
	RegisterStateType(words(nil))
}

// restarted is what a restarted plugin process sees: a fresh Core over a
// context holding the state the first one shipped.
func restarted(c Core) Core { return NewCore(oort.ReopenTestContext(c.O)) }

func TestTypedStateSurvivesARestart(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	pos := position{Lat: 1.5, Raw: []byte{0, 255}, At: at, In: inner{A: 7, B: "b"}, Tags: map[string]string{"k": "v"}, Big: math.MaxUint64}
	values := map[string]any{
		"bool": true, "string": "s", "bytes": []byte{1, 2},
		"int": 5, "int8": int8(-8), "int16": int16(16), "int32": int32(-32), "int64": int64(math.MinInt64),
		"uint": uint(5), "uint8": uint8(255), "uint16": uint16(16), "uint32": uint32(32), "uint64": uint64(math.MaxUint64),
		"float32": float32(0.25), "float64": 2.5,
		"strings": []string{"a", "b"}, "byteses": [][]byte{{1}, {}}, "ints": []int{1, -2}, "int64s": []int64{3},
		"float64s": []float64{0.5, 2}, "anys": []any{int64(1), "x", nil, []any{true}},
		"map": map[string]any{"a": int64(1), "m": map[string]any{"f": 0.5}}, "strmap": map[string]string{"k": "v"},
		"maps":   []map[string]any{{"a": "b"}, {}},
		"time":   at,
		"struct": pos, "structPtr": &inner{A: 1}, "structs": []inner{{A: 2}, {B: "x"}},
		"structMap": map[string]*inner{"p": {A: 3}, "nil": nil}, "named": words{"w"},
		"nilStrings": []string(nil), "null": nil,
	}
	c := NewCore(oort.NewTestContext("r1", "op_1"))
	for k, v := range values {
		if err := c.PutState(k, v); err != nil {
			t.Fatalf("PutState(%q): %v", k, err)
		}
	}
	r := restarted(c)
	for k, want := range values {
		got, err := r.GetState(k)
		if err != nil {
			t.Errorf("GetState(%q): %v", k, err)
			continue
		}
		if !reflect.DeepEqual(got, want) || reflect.TypeOf(got) != reflect.TypeOf(want) {
			t.Errorf("%s: got %#v (%T), want %#v (%T)", k, got, got, want, want)
		}
	}
	// The companion keys: a description for the types the plain form loses,
	// none for the wire's own types.
	for k, want := range map[string]any{
		"strings": "[]string", "int": "int", "structPtr": "*" + reflect.TypeFor[inner]().PkgPath() + ".inner",
		"structMap": "map[string]*" + reflect.TypeFor[inner]().PkgPath() + ".inner",
		"int64":     nil, "string": nil, "bytes": nil, "anys": nil, "map": nil, "uint64": nil, "null": nil,
	} {
		if got, _ := c.O.GetState(k + TypeKeySuffix); got != want {
			t.Errorf("companion of %s: %#v, want %#v", k, got, want)
		}
	}
	// A rebuilt value is kept: the next read returns the same object.
	a, _ := r.GetState("strmap")
	b, _ := r.GetState("strmap")
	a.(map[string]string)["new"] = "x"
	if b.(map[string]string)["new"] != "x" {
		t.Error("GetState rebuilt the value twice")
	}
}

func TestUntypedStateAfterARestart(t *testing.T) {
	c := NewCore(oort.NewTestContext("r1", "op_1"))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// An unregistered struct comes back as the map of its JSON form.
	must(c.PutState("u", unregistered{N: 2}))
	if v, _ := restarted(c).GetState("u"); !reflect.DeepEqual(v, map[string]any{"n": int64(2)}) {
		t.Fatalf("unregistered struct: %#v", v)
	}
	// A later value of a wire type drops the companion.
	must(c.PutState("k", []string{"a"}))
	must(c.PutState("k", int64(4)))
	if v, _ := restarted(c).GetState("k"); v != int64(4) {
		t.Fatalf("replaced value: %#v", v)
	}
	// DeleteState drops both keys.
	must(c.PutState("d", []int{1}))
	must(c.DeleteState("d"))
	if v, _ := c.O.GetState("d" + TypeKeySuffix); v != nil {
		t.Fatalf("companion left by DeleteState: %#v", v)
	}
	// So does IncrCounter (a companion can only be left over here).
	must(c.O.PutState("n"+TypeKeySuffix, "[]string"))
	must(c.IncrCounter("n", 2))
	if v, _ := c.O.GetState("n" + TypeKeySuffix); v != nil {
		t.Fatalf("companion left by IncrCounter: %#v", v)
	}
	if v, _ := restarted(c).GetState("n"); v != int64(2) {
		t.Fatalf("counter: %#v", v)
	}
	// A type this process does not know reads back plain; a value that does
	// not fit its recorded type is an error naming the key.
	must(c.O.PutState("gone", map[string]any{"a": int64(1)}))
	must(c.O.PutState("gone"+TypeKeySuffix, "example.com/old.T"))
	must(c.O.PutState("bad", []any{"x"}))
	must(c.O.PutState("bad"+TypeKeySuffix, "[]int"))
	r := restarted(c)
	if v, err := r.GetState("gone"); err != nil || !reflect.DeepEqual(v, map[string]any{"a": int64(1)}) {
		t.Fatalf("unknown type: %#v, %v", v, err)
	}
	if _, err := r.GetState("bad"); err == nil || !strings.Contains(err.Error(), `state key "bad"`) {
		t.Fatalf("mismatch: %v", err)
	}
	// Companion keys are not user keys.
	key := "x" + TypeKeySuffix
	if err := c.PutState(key, 1); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("PutState of a reserved key: %v", err)
	}
	if _, err := c.GetState(key); err == nil {
		t.Fatal("GetState of a reserved key must fail")
	}
	if err := c.DeleteState(key); err == nil {
		t.Fatal("DeleteState of a reserved key must fail")
	}
	if err := c.IncrCounter(key, 1); err == nil {
		t.Fatal("IncrCounter of a reserved key must fail")
	}
	if _, err := c.GetCounter(key); err == nil {
		t.Fatal("GetCounter of a reserved key must fail")
	}
}

// stateCalls is an Oort context that records the state changes made on it.
type stateCalls struct {
	oort.StreamContext
	calls []string
}

func (s *stateCalls) PutState(key string, value any) error {
	s.calls = append(s.calls, fmt.Sprintf("put %s=%v", key, value))
	return s.StreamContext.PutState(key, value)
}

func (s *stateCalls) DeleteState(key string) error {
	if v, _ := s.StreamContext.GetState(key); v != nil {
		s.calls = append(s.calls, "delete "+key)
	}
	return s.StreamContext.DeleteState(key)
}

func TestTheCompanionKeyFollowsTheValue(t *testing.T) {
	o := &stateCalls{StreamContext: oort.NewTestContext("r1", "op_1")}
	c := NewCore(o)
	for _, step := range []struct {
		put  any
		want string
	}{
		{[]string{"a"}, "[put w=[a] put w#oort.type=[]string]"},
		// The same type again: the companion is not shipped again.
		{[]string{"a", "b"}, "[put w=[a b]]"},
		{map[string]int{"n": 1}, "[put w=map[n:1] put w#oort.type=map[string]int]"},
		{"plain", "[put w=plain delete w#oort.type]"},
		{"again", "[put w=again]"},
		{uint8(7), "[put w=7 put w#oort.type=uint8]"},
	} {
		o.calls = nil
		if err := c.PutState("w", step.put); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(o.calls); got != step.want {
			t.Fatalf("PutState(%#v) made %s, want %s", step.put, got, step.want)
		}
	}
}

func TestPluginNameIsTheSupervisorsNameElseTheExecutables(t *testing.T) {
	saved := os.Args
	defer func() { os.Args = saved }()
	os.Args = append([]string{"/plugins/functions/geo@v1.2.0"}, saved[1:]...)

	t.Setenv(PluginNameEnv, "")
	if got := PluginName(); got != "geo" {
		t.Fatalf("with OORT_PLUGIN_NAME empty: %q, want the executable's name without @version", got)
	}
	os.Unsetenv(PluginNameEnv) // t.Setenv restores the original value
	if got := PluginName(); got != "geo" {
		t.Fatalf("without OORT_PLUGIN_NAME: %q", got)
	}
	t.Setenv(PluginNameEnv, "ekmirrorsrc")
	if got := PluginName(); got != "ekmirrorsrc" {
		t.Fatalf("with OORT_PLUGIN_NAME set: %q", got)
	}
}
