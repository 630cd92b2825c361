package main

import (
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/serve"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

func TestFunctionsAsEKuiperCallsThem(t *testing.T) {
	ctx := serve.NewTestContext("r1", "op_1")
	if r, ok := Ek1Point.Exec([]interface{}{3.0, int64(4)}, ctx); !ok || r.(point).Dist != 5 {
		t.Fatalf("ek1Point = %#v, %v", r, ok)
	}
	if r, ok := Ek1Sum().Exec([]interface{}{[]interface{}{1.0, int64(2), nil}}, ctx); !ok || r != 3.0 {
		t.Fatalf("ek1Sum = %#v, %v", r, ok)
	}
	f := Ek1LastWords()
	var r interface{}
	for _, w := range []string{"a", "b", "c", "d"} {
		var ok bool
		if r, ok = f.Exec([]interface{}{w}, ctx); !ok {
			t.Fatalf("ek1LastWords(%q) failed: %v", w, r)
		}
	}
	m := r.(map[string]interface{})
	if m["words"] != "b c d" || m["calls"] != 4 {
		t.Fatalf("ek1LastWords = %#v", m)
	}
	// Through the adapter, as the supervisor calls it: the struct becomes a map.
	res, ok := serve.NewFunction(Ek1Point).Exec([]any{0.0, 2.0}, oort.NewTestContext("r1", "op_2"))
	if m, isMap := res.(map[string]any); !ok || !isMap || m["dist"] == nil {
		t.Fatalf("adapted ek1Point = %#v, %v", res, ok)
	}
}

func TestLastWordsKeepsItsTypedStateAcrossARestart(t *testing.T) {
	o := oort.NewTestContext("r1", "op_1")
	f := Ek1LastWords()
	for _, w := range []string{"a", "b", "c"} {
		if r, ok := f.Exec([]interface{}{w}, serve.Wrap(o)); !ok {
			t.Fatalf("ek1LastWords(%q) failed: %v", w, r)
		}
	}
	// A restarted process: a fresh function object, and the state as the
	// supervisor hands it back; the []string reads back as a []string.
	r, ok := Ek1LastWords().Exec([]interface{}{"d"}, serve.Wrap(oort.ReopenTestContext(o)))
	if !ok {
		t.Fatalf("ek1LastWords after a restart failed: %v", r)
	}
	if m := r.(map[string]interface{}); m["words"] != "b c d" || m["calls"] != 4 {
		t.Fatalf("ek1LastWords after a restart = %#v", m)
	}
}

func fnv64a(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func TestHashAndHashHex(t *testing.T) {
	ctx := serve.NewTestContext("r1", "op_1")
	if err := Ek1Hash.Validate([]interface{}{"a", "b"}); err == nil {
		t.Fatalf("ek1Hash accepted 2 arguments")
	}
	if err := Ek1HashHex.Validate([]interface{}{}); err == nil {
		t.Fatalf("ek1HashHex accepted no arguments")
	}
	above := false
	for _, s := range []string{"alpha", "beta", "gamma", "delta"} {
		r, ok := Ek1Hash.Exec([]interface{}{s}, ctx)
		h, isUint := r.(uint64)
		if !ok || !isUint || h != fnv64a(s) {
			t.Fatalf("ek1Hash(%q) = %#v, %v; want uint64 %d", s, r, ok, fnv64a(s))
		}
		above = above || h > 1<<63
		x, ok := Ek1HashHex.Exec([]interface{}{r}, ctx)
		if want := fmt.Sprintf("%016x", h); !ok || x != want {
			t.Fatalf("ek1HashHex(%d) = %#v, %v; want %q", h, x, ok, want)
		}
		t.Logf("ek1Hash(%q) = %d, ek1HashHex = %s", s, h, x)
	}
	if !above {
		t.Fatalf("no hash above 2^63 among the inputs: the uint64 range is not exercised")
	}
	// Above 2^63 and at the limit, through the adapter as the supervisor calls it.
	for _, h := range []uint64{1<<63 + 1, 1<<64 - 1} {
		res, ok := serve.NewFunction(Ek1HashHex).Exec([]any{h}, oort.NewTestContext("r1", "op_2"))
		if want := fmt.Sprintf("%016x", h); !ok || res != want {
			t.Fatalf("adapted ek1HashHex(%d) = %#v, %v", h, res, ok)
		}
	}
	if r, ok := Ek1Hash.Exec([]interface{}{int64(1)}, ctx); ok {
		t.Fatalf("ek1Hash(int64) = %#v, want an error", r)
	}
	r, ok := Ek1HashHex.Exec([]interface{}{int64(42)}, ctx)
	if err, isErr := r.(error); ok || !isErr || err.Error() != "ek1HashHex expects a uint64, got int64" {
		t.Fatalf("ek1HashHex(int64) = %#v, %v", r, ok)
	}
}
