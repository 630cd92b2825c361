package compat

import (
	"context"
	"encoding/json"
	"reflect"
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
