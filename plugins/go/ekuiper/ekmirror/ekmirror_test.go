package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/portable"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/serve"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

func TestSourceEmitsCountTuplesThenStops(t *testing.T) {
	src := serve.NewSource(EkMirrorSrc())
	ctx := oort.NewTestContext("r1", "source")
	// Props as the supervisor sends them (int64); the layer makes them ints.
	if err := src.Open(ctx, "", map[string]any{"count": int64(3), "interval": int64(5)}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		batch, err := src.Read(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range batch {
			got = append(got, r.Fields)
		}
	}
	want := []map[string]any{{"seq": 0, "text": "m0"}, {"seq": 1, "text": "m1"}, {"seq": 2, "text": "m2"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	// Then nothing, but the source stays open until Close.
	for range 3 {
		if batch, err := src.Read(ctx, 10); err != nil || len(batch) != 0 {
			t.Fatalf("after count: %v, %v", batch, err)
		}
	}
	if err := src.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSourceRefusesBadProperties(t *testing.T) {
	for _, props := range []map[string]any{{"count": "x"}, {"count": int64(-1)}, {"interval": 1.5}} {
		if err := EkMirrorSrc().Configure("", props); err == nil {
			t.Errorf("%v: want an error", props)
		}
	}
	// An integral float64 is an integer (a property that went through JSON).
	if err := EkMirrorSrc().Configure("", map[string]any{"count": 2.0, "interval": 0}); err != nil {
		t.Fatal(err)
	}
}

func TestSinkAppendsJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	if err := os.WriteFile(path, []byte("{\"before\":true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := oort.NewTestContext("r1", "sink_0")
	records := []oort.Record{{Fields: map[string]any{"seq": int64(0), "text": "m0"}}, {Fields: map[string]any{"seq": int64(1), "text": "m1"}}}

	// A batch: one line per row.
	k := serve.NewSink(EkMirrorSink())
	if err := k.Open(ctx, map[string]any{"path": path}); err != nil {
		t.Fatal(err)
	}
	if err := k.Collect(ctx, records); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// sendSingle: one Collect, one line per row too.
	k = serve.NewSink(EkMirrorSink())
	if err := k.Open(ctx, map[string]any{"path": path, "sendSingle": true}); err != nil {
		t.Fatal(err)
	}
	if err := k.Collect(ctx, records[1:]); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"before":true}
{"seq":0,"text":"m0"}
{"seq":1,"text":"m1"}
{"seq":1,"text":"m1"}
`
	if string(b) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", b, want)
	}
	if err := serve.NewSink(EkMirrorSink()).Open(ctx, map[string]any{}); err == nil || err.Error() != "property path is required" {
		t.Fatalf("no path: %v", err)
	}
}

func TestFunctions(t *testing.T) {
	ctx := serve.NewTestContext("r1", "op_1")
	rev, dbl := EkReverse(), EkDouble()
	for _, tc := range []struct {
		got, want any
		ok        bool
	}{
		{first(rev.Exec([]any{"héllo"}, ctx)), "olléh", true},
		{first(rev.Exec([]any{""}, ctx)), "", true},
		{first(rev.Exec([]any{nil}, ctx)), nil, true},
		{first(dbl.Exec([]any{int64(21)}, ctx)), int64(42), true},
		{first(dbl.Exec([]any{1.25}, ctx)), 2.5, true},
		{first(dbl.Exec([]any{nil}, ctx)), nil, true},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("got %#v, want %#v", tc.got, tc.want)
		}
	}
	for _, bad := range []struct {
		f    func() (any, bool)
		want string
	}{
		{func() (any, bool) { return rev.Exec([]any{int64(1)}, ctx) }, "ekreverse expects a string, got int64"},
		{func() (any, bool) { return dbl.Exec([]any{"x"}, ctx) }, "ekdouble expects a number, got string"},
		{func() (any, bool) { return dbl.Exec([]any{int64(math.MaxInt64)}, ctx) }, "ekdouble(9223372036854775807) overflows int64"},
	} {
		got, ok := bad.f()
		if err, isErr := got.(error); ok || !isErr || err.Error() != bad.want {
			t.Errorf("got %#v, %v; want the error %q", got, ok, bad.want)
		}
	}
	if rev.Validate(nil) == nil || dbl.Validate([]any{1, 2}) == nil || rev.Validate([]any{1}) != nil {
		t.Fatal("Validate must want exactly one argument")
	}
	if rev.IsAggregate() || dbl.IsAggregate() {
		t.Fatal("not aggregates")
	}
}

func first(v any, _ bool) any { return v }

// The package's files describe the same symbols as the config main serves,
// and every part builds.
func TestManifestMatchesTheConfig(t *testing.T) {
	var manifest struct {
		Version, Language, Executable string
		Sources, Sinks, Functions     []string
	}
	readJSON(t, "ekmirror.json", &manifest)
	c := config()
	if manifest.Version != "v1.0.0" || manifest.Language != "go" || manifest.Executable != "ekmirror" {
		t.Fatalf("manifest %+v", manifest)
	}
	if !sameNames(manifest.Sources, c.Sources) || !sameNames(manifest.Sinks, c.Sinks) || !sameNames(manifest.Functions, c.Functions) {
		t.Fatalf("manifest %+v does not list the config's symbols", manifest)
	}
	var funcs struct {
		About struct {
			Author      struct{ Name string }
			Description map[string]string
		}
		Functions []struct{ Name string }
	}
	readJSON(t, "functions/ekmirror.json", &funcs)
	var fnames []string
	for _, f := range funcs.Functions {
		fnames = append(fnames, f.Name)
	}
	if funcs.About.Author.Name != "Oort" || funcs.About.Description["en_US"] != "portable example" || !sameNames(fnames, c.Functions) {
		t.Fatalf("functions/ekmirror.json: %+v", funcs)
	}
	var sink struct {
		Properties []struct {
			Name     string
			Optional bool
		}
	}
	readJSON(t, "sinks/ekmirrorsink.json", &sink)
	if len(sink.Properties) != 1 || sink.Properties[0].Name != "path" || sink.Properties[0].Optional {
		t.Fatalf("sinks/ekmirrorsink.json: %+v", sink)
	}

	parts := map[string]string{"ekmirrorsrc": "source", "ekmirrorsink": "sink", "ekmirror": "functions ekdouble ekreverse"}
	for as, want := range parts {
		p, err := portable.Build(c, as)
		if err != nil {
			t.Fatalf("%s: %v", as, err)
		}
		var got []string
		if p.Source.IsSet() {
			got = append(got, "source")
		}
		if p.Sink.IsSet() {
			got = append(got, "sink")
		}
		if len(p.Functions) > 0 {
			got = append(got, "functions")
			var names []string
			for f := range p.Functions {
				names = append(names, f)
			}
			sort.Strings(names)
			got = append(got, names...)
		}
		if p.Name != as || strings.Join(got, " ") != want {
			t.Fatalf("%s: %s %v", as, p.Name, got)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func sameNames[T any](names []string, m map[string]T) bool {
	if len(names) != len(m) {
		return false
	}
	for _, n := range names {
		if _, ok := m[n]; !ok {
			return false
		}
	}
	return true
}
