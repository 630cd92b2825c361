package main

import (
	"testing"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

func TestCountsAndSums(t *testing.T) {
	ctx := oort.NewTestContext("r1", "sink_0")
	c := &counterSink{}
	if err := c.Open(ctx, map[string]any{"logEvery": int64(2), "field": "v"}); err != nil {
		t.Fatal(err)
	}
	batch := []oort.Record{
		{Fields: map[string]any{"v": int64(2)}},
		{Fields: map[string]any{"v": 0.5}},
		{Fields: map[string]any{"v": "x"}},
	}
	for range 2 {
		if err := c.Collect(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := ctx.GetCounter("records"); n != 6 {
		t.Errorf("records = %d", n)
	}
	if s, _ := ctx.GetState("sum"); s != 5.0 {
		t.Errorf("sum = %v", s)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := (&counterSink{}).Open(ctx, map[string]any{"logEvery": "often"}); err == nil {
		t.Error("a string logEvery must be refused")
	}
}
