package main

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/serve"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// readAll reads until n records arrived, then checks that no more come.
func readAll(t *testing.T, src oort.Source, ctx oort.StreamContext, n int) []map[string]any {
	t.Helper()
	var got []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		batch, err := src.Read(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range batch {
			got = append(got, r.Fields)
		}
	}
	// The source stays quiet once its payloads are ingested.
	time.Sleep(50 * time.Millisecond)
	if more, _ := src.Read(ctx, 100); len(more) != 0 {
		t.Fatalf("records after the payloads: %#v", more)
	}
	return got
}

func TestPayloadsAreIngestedOnceInOrder(t *testing.T) {
	ctx := oort.NewTestContext("r1", "op_1")
	src := serve.NewSource(GetSource())
	// Properties as the supervisor sends them: a list as []any, numbers
	// as int64.
	props := map[string]any{
		"payloads": []any{`{"n":1}`, `[{"n":2},{"n":3}]`, `{"n":4}`},
		"interval": int64(5),
	}
	start := time.Now()
	if err := src.Open(ctx, "", props); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, src, ctx, 4)
	want := []map[string]any{{"n": json.Number("1")}, {"n": json.Number("2")}, {"n": json.Number("3")}, {"n": json.Number("4")}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	if elapsed := time.Since(start); elapsed < 10*time.Millisecond {
		t.Fatalf("3 payloads 5 ms apart took only %v", elapsed)
	}
	if err := src.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPayloadsDecodePerFormat(t *testing.T) {
	for _, tc := range []struct {
		props map[string]any
		want  []map[string]any
	}{
		{
			map[string]any{"format": "binary", "payloads": []any{"a,b", ""}},
			[]map[string]any{{"self": []byte("a,b")}, {"self": []byte{}}},
		},
		{
			map[string]any{"format": "delimited", "fields": "x,y", "payloads": []any{"1,2", "3,4\n5,6"}},
			[]map[string]any{{"x": "1", "y": "2"}, {"x": "3", "y": "4"}, {"x": "5", "y": "6"}},
		},
	} {
		ctx := oort.NewTestContext("r1", "op_1")
		src := serve.NewSource(GetSource())
		if err := src.Open(ctx, "", tc.props); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, src, ctx, len(tc.want)); !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("%v: got %#v", tc.props["format"], got)
		}
		if err := src.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCloseStopsAPendingSubscription(t *testing.T) {
	ctx := oort.NewTestContext("r1", "op_1")
	src := serve.NewSource(GetSource())
	if err := src.Open(ctx, "", map[string]any{"payloads": []any{`{"n":1}`, `{"n":2}`}, "interval": int64(60_000)}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	go func() { closed <- src.Close(ctx) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close waited for the interval")
	}
}

func TestBadPropertiesFailOpen(t *testing.T) {
	for _, props := range []map[string]any{
		{},
		{"payloads": "one"},
		{"payloads": []any{"a", int64(1)}},
		{"payloads": []any{"a"}, "interval": "soon"},
		{"payloads": []any{"a"}, "interval": 2.5},
		{"payloads": []any{"a"}, "interval": int64(-1)},
		{"payloads": []any{"a"}, "format": "protobuf"},
	} {
		ctx := oort.NewTestContext("r1", "op_1")
		if err := serve.NewSource(GetSource()).Open(ctx, "", props); err == nil {
			t.Fatalf("props %#v must fail Open", props)
		}
	}
}
