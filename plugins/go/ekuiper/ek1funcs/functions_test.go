package main

import (
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
