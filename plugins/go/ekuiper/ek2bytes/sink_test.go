package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/serve"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

func TestPayloadsAreAppendedAndFailuresAreItemErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.txt")
	ctx := oort.NewTestContext("r1", "sink_0")
	k := serve.NewSink(GetSink())
	ps, ok := k.(oort.PayloadSink)
	if !ok {
		t.Fatal("ek2bytes must ask the supervisor for payloads")
	}
	if err := k.Open(ctx, map[string]any{"path": path, "sendSingle": true}); err != nil {
		t.Fatal(err)
	}
	if err := ps.CollectPayloads(ctx, [][]byte{[]byte(`{"a":1}`), []byte(`[{"a":2},{"a":3}]`)}); err != nil {
		t.Fatal(err)
	}
	err := ps.CollectPayloads(ctx, [][]byte{[]byte(`{"word":"fail"}`), []byte("plain text"), []byte(`{"word":"failure"}`)})
	var items oort.ItemErrors
	if !errors.As(err, &items) || len(items) != 3 || items[0] == nil || items[1] != nil || items[2] != nil {
		t.Fatalf("want only the first payload refused, got %v", err)
	}
	if got := items[0].Error(); got != `refused payload {"word":"fail"}` {
		t.Fatalf("item error %q", got)
	}
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\"a\":1}\n[{\"a\":2},{\"a\":3}]\nplain text\n{\"word\":\"failure\"}\n"
	if string(b) != want {
		t.Fatalf("file holds %q, want %q", b, want)
	}
	if err := serve.NewSink(GetSink()).Open(ctx, map[string]any{}); err == nil {
		t.Fatal("a missing path must fail Open")
	}
}
