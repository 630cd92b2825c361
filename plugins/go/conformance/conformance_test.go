package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

func TestJSONMatchesSerdeJSON(t *testing.T) {
	floats := map[float64]string{
		1.0: "1.0", 0.1: "0.1", -2.5: "-2.5", 0: "0.0", math.Copysign(0, -1): "-0.0",
		43210.0: "43210.0", 43210.1: "43210.1", 10000.0: "10000.0",
		-5942736479622170.0:    "-5942736479622170.0",
		5.444310685350916e+14:  "544431068535091.6",
		1e15:                   "1000000000000000.0",
		1e16:                   "1e+16",
		1.5e16:                 "1.5e+16",
		1e-5:                   "0.00001",
		1.25e-5:                "0.0000125",
		1e-6:                   "1e-6",
		6.62607015e-34:         "6.62607015e-34",
		2.9802322387695312e-08: "2.9802322387695312e-8",
		5e-324:                 "5e-324",
		3.439070283483335e+35:  "3.439070283483335e+35",
		9.03725590277404e+160:  "9.03725590277404e+160",
		123.456:                "123.456",
		math.NaN():             "null",
		math.Inf(1):            "null",
	}
	for f, want := range floats {
		if got := string(appendFloat(nil, f)); got != want {
			t.Errorf("%v: %s, want %s", f, got, want)
		}
	}
	v := map[string]any{
		"z": int64(-1), "a": []any{true, nil, 1.5}, "m": map[string]any{"y": "q\"\\\n\t\x01\x7fé€/<>&"},
		"b": []byte{0, 255}, "u": uint64(math.MaxUint64),
	}
	want := `{"a":[true,null,1.5],"b":[0,255],"m":{"y":"q\"\\\n\t\u0001` + "\x7f" + `é€/<>&"},"u":18446744073709551615,"z":-1}`
	if got := string(appendJSON(nil, v)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := string(appendJSON(nil, map[string]any(nil))); got != "{}" {
		t.Errorf("nil fields: %s", got)
	}
}

func exec(t *testing.T, fn oort.Function, ctx oort.FunctionContext, args ...any) (any, bool) {
	t.Helper()
	return fn.Exec(args, ctx)
}

func TestFunctions(t *testing.T) {
	ctx := oort.NewTestContext("r1", "op_1")
	p := plugin(false)
	fn := func(name string) oort.Function {
		switch name {
		case "cf_echo":
			return echo{}
		case "cf_fail":
			return fail{}
		case "cf_count":
			return count{}
		case "cf_state":
			return state{}
		case "cf_agg":
			return agg{}
		}
		return pid{}
	}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	if err := fn("cf_echo").Validate([]oort.ArgSpec{{}, {}}); err == nil || err.Error() != "cf_echo expects 1 argument, got 2" {
		t.Errorf("cf_echo Validate: %v", err)
	}
	if err := fn("cf_echo").Validate([]oort.ArgSpec{{}}); err != nil {
		t.Errorf("cf_echo Validate: %v", err)
	}
	if v, ok := exec(t, fn("cf_echo"), ctx, map[string]any{"a": int64(1)}); !ok || !reflect.DeepEqual(v, map[string]any{"a": int64(1)}) {
		t.Errorf("cf_echo = %v %v", v, ok)
	}
	if v, ok := exec(t, fn("cf_fail"), ctx, "bad apple"); ok || v.(error).Error() != "cf_fail: bad apple" {
		t.Errorf("cf_fail bad = %v %v", v, ok)
	}
	if v, ok := exec(t, fn("cf_fail"), ctx, "good"); !ok || v != "good" {
		t.Errorf("cf_fail good = %v %v", v, ok)
	}
	if v, ok := exec(t, fn("cf_fail"), ctx, int64(3)); !ok || v != int64(3) {
		t.Errorf("cf_fail int = %v %v", v, ok)
	}
	for want := 1; want <= 3; want++ {
		if v, ok := exec(t, fn("cf_count"), ctx, "k"); !ok || v != want {
			t.Errorf("cf_count = %v %v, want %d", v, ok, want)
		}
	}
	st := fn("cf_state")
	steps := []struct {
		args []any
		want any
		ok   bool
	}{
		{[]any{"get", "x"}, nil, true},
		{[]any{"put", "x", "v"}, true, true},
		{[]any{"get", "x"}, "v", true},
		{[]any{"counter", "x"}, `state key "x" holds a string value, not a counter`, false},
		{[]any{"incr", "x", int64(1)}, `state key "x" holds a string value, not a counter`, false},
		{[]any{"delete", "x"}, true, true},
		{[]any{"delete", "x"}, true, true},
		{[]any{"get", "x"}, nil, true},
		{[]any{"counter", "c"}, 0, true},
		{[]any{"incr", "c", int64(5)}, 5, true},
		{[]any{"incr", "c", int64(-2)}, 3, true},
		{[]any{"get", "c"}, int64(3), true},
		{[]any{"counter", "k"}, 3, true}, // cf_count's counter, same instance
		{[]any{"put", "n"}, true, true},
		{[]any{"get", "n"}, nil, true},
		{[]any{"frob", "x"}, `unknown op "frob"`, false},
		{[]any{"incr", "c", "1"}, "incr needs an integer amount", false},
		{[]any{"get"}, "cf_state(op, key[, value])", false},
	}
	for _, s := range steps {
		v, ok := exec(t, st, ctx, s.args...)
		if !ok {
			v = v.(error).Error()
		}
		if ok != s.ok || !reflect.DeepEqual(v, s.want) {
			t.Errorf("cf_state%v = %#v, %v; want %#v, %v", s.args, v, ok, s.want, s.ok)
		}
	}
	if v, ok := exec(t, fn("cf_count"), ctx, int64(1)); ok || v.(error).Error() != "cf_count(key) needs a string key" {
		t.Errorf("cf_count(1) = %v", v)
	}
	if v, ok := exec(t, fn("cf_echo"), ctx); !ok || v != nil {
		t.Errorf("cf_echo() = %v", v)
	}
	if v, ok := exec(t, fn("cf_pid"), ctx); !ok || v != os.Getpid() {
		t.Errorf("cf_pid = %v", v)
	}
}

func TestAggregate(t *testing.T) {
	ctx := oort.NewTestContext("r1", "op_1")
	for name, f := range map[string]oort.Function{
		"cf_echo": echo{}, "cf_fail": fail{}, "cf_count": count{}, "cf_state": state{}, "cf_pid": pid{}, "cf_agg": agg{},
	} {
		if f.IsAggregate() != (name == "cf_agg") {
			t.Errorf("%s: IsAggregate %v", name, f.IsAggregate())
		}
	}
	if len(plugin(false).Functions) != 6 {
		t.Errorf("TestAggregate lists every function")
	}
	if err := (agg{}).Validate([]oort.ArgSpec{{}, {}}); err == nil || err.Error() != "cf_agg expects 1 argument, got 2" {
		t.Errorf("cf_agg Validate: %v", err)
	}
	steps := []struct {
		arg  any
		want any
		ok   bool
	}{
		{[]any{int64(1), int64(2), int64(3)}, map[string]any{"n": int64(3), "sum": int64(6)}, true},
		{[]any{}, map[string]any{"n": int64(0), "sum": int64(0)}, true},
		{[]any{int64(4), nil, "x", 2.5, true}, map[string]any{"n": int64(5), "sum": int64(4)}, true},
		{int64(7), "cf_agg expects a list, got int", false},
		{uint64(7), "cf_agg expects a list, got uint", false},
		{nil, "cf_agg expects a list, got null", false},
		{map[string]any{}, "cf_agg expects a list, got map", false},
	}
	for _, s := range steps {
		v, ok := exec(t, agg{}, ctx, s.arg)
		if !ok {
			v = v.(error).Error()
		}
		if ok != s.ok || !reflect.DeepEqual(v, s.want) {
			t.Errorf("cf_agg(%#v) = %#v, %v; want %#v, %v", s.arg, v, ok, s.want, s.ok)
		}
	}
	if n, err := ctx.GetCounter("groups"); err != nil || n != 3 {
		t.Errorf("groups = %v, %v; want one per group answered (3)", n, err)
	}
}

func TestExportModes(t *testing.T) {
	for _, singleton := range []bool{false, true} {
		p := plugin(singleton)
		for name, e := range p.Functions {
			if e.IsSingleton() != singleton {
				t.Errorf("singleton=%v: %s has IsSingleton %v", singleton, name, e.IsSingleton())
			}
		}
		if p.Source.IsSingleton() || p.Sink.IsSingleton() {
			t.Errorf("singleton=%v: the source and sink stay constructors", singleton)
		}
		if len(p.Functions) != 6 {
			t.Errorf("functions: %v", p.Functions)
		}
	}
}

func TestSourceEmitsRewindsAndIdles(t *testing.T) {
	s := newSource()
	a, b := oort.NewTestContext("r1", "source"), oort.NewTestContext("r2", "source")
	if err := s.Open(a, "", map[string]any{"count": int64(5)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(b, "", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(oort.NewTestContext("r3", "source"), "", map[string]any{"count": "many"}); err == nil || err.Error() != "count must be an integer" {
		t.Error("a string count must be refused")
	}
	read := func(ctx oort.StreamContext, max int) []int64 {
		recs, err := s.Read(ctx, max)
		if err != nil {
			t.Fatal(err)
		}
		var ns []int64
		for _, r := range recs {
			ns = append(ns, r.Fields["n"].(int64))
		}
		return ns
	}
	if got := read(a, 3); !reflect.DeepEqual(got, []int64{0, 1, 2}) {
		t.Errorf("first batch %v", got)
	}
	if off, _ := s.GetOffset(a); off != int64(3) {
		t.Errorf("offset %v", off)
	}
	if got := read(a, 3); !reflect.DeepEqual(got, []int64{3, 4}) {
		t.Errorf("second batch %v", got)
	}
	if got := read(a, 3); got != nil {
		t.Errorf("after count: %v", got)
	}
	if err := s.Rewind(a, int64(1)); err != nil {
		t.Fatal(err)
	}
	if got := read(a, 10); !reflect.DeepEqual(got, []int64{1, 2, 3, 4}) {
		t.Errorf("after rewind %v", got)
	}
	if err := s.Rewind(a, int64(6)); err == nil || err.Error() != "offset 6 is outside 0..=5" {
		t.Errorf("Rewind(6): %v", err)
	}
	for _, bad := range []any{int64(-1), int64(6), "3", 2.5, nil, true} {
		if err := s.Rewind(a, bad); err == nil {
			t.Errorf("Rewind(%#v) must fail", bad)
		}
	}
	if err := s.Rewind(a, int64(5)); err != nil {
		t.Errorf("Rewind to count: %v", err)
	}
	// The other instance is independent, with the default count.
	if got := read(b, 1000); len(got) != 100 || got[99] != 99 {
		t.Errorf("default count: %d records", len(got))
	}
	if err := s.Close(a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(a, 1); err == nil {
		t.Error("a closed instance must not read")
	}
}

func TestSinkWritesLinesAndCommits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	s := newSink()
	ctx := oort.NewTestContext("r1", "sink_0")
	if err := s.Open(ctx, map[string]any{}); err == nil || err.Error() != "the conformance sink needs `path`" {
		t.Errorf("Open without a path: %v", err)
	}
	if err := s.Open(ctx, map[string]any{"path": path}); err != nil {
		t.Fatal(err)
	}
	recs := []oort.Record{
		{Fields: map[string]any{"n": int64(1), "a": "x"}},
		{Fields: map[string]any{"f": 2.0}},
	}
	if err := s.Collect(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want := "{\"a\":\"x\",\"n\":1}\n{\"f\":2.0}\n"
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Errorf("file %q, want %q (flushed per batch)", b, want)
	}
	h, err := s.PreCommit(ctx, 7)
	if err != nil || h != int64(len(want)) {
		t.Fatalf("PreCommit = %v, %v", h, err)
	}
	if err := s.Commit(ctx, 7, h); err != nil {
		t.Fatal(err)
	}
	if err := s.Abort(ctx, 8, int64(3)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path + ".commits"); string(b) != fmt.Sprintf("commit 7 %d\nabort 8 3\n", len(want)) {
		t.Errorf("commits %q", b)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Collect(ctx, recs); err == nil {
		t.Error("a closed instance must not collect")
	}
	if err := s.Open(ctx, map[string]any{"path": filepath.Join(dir, "missing", "x")}); err == nil {
		t.Error("an unopenable path must fail")
	}
}

// TestEchoIsTheOneColumnFunction checks that cf_echo answers a columnar
// batch with exactly its argument column, for every column type the
// supervisor sends, and that no other function is columnar (they get rows).
func TestEchoIsTheOneColumnFunction(t *testing.T) {
	for name, f := range map[string]oort.Function{
		"cf_echo": echo{}, "cf_fail": fail{}, "cf_count": count{}, "cf_state": state{}, "cf_pid": pid{}, "cf_agg": agg{},
	} {
		if _, ok := f.(oort.ColumnFunction); ok != (name == "cf_echo") {
			t.Errorf("%s: ColumnFunction %v", name, ok)
		}
	}
	ctx := oort.NewTestContext("r1", "op_1")
	mem := memory.DefaultAllocator
	build := func(dt arrow.DataType, fill func(array.Builder)) arrow.Array {
		b := array.NewBuilder(mem, dt)
		defer b.Release()
		fill(b)
		return b.NewArray()
	}
	cols := []arrow.Array{
		array.NewNull(3),
		build(arrow.FixedWidthTypes.Boolean, func(b array.Builder) {
			b.(*array.BooleanBuilder).AppendValues([]bool{true, false, true}, []bool{true, true, false})
		}),
		build(arrow.PrimitiveTypes.Int64, func(b array.Builder) {
			b.(*array.Int64Builder).AppendValues([]int64{math.MinInt64, 0, 7}, []bool{true, false, true})
		}),
		build(arrow.PrimitiveTypes.Uint64, func(b array.Builder) {
			b.(*array.Uint64Builder).AppendValues([]uint64{math.MaxUint64, 1 << 63, 0}, nil)
		}),
		build(arrow.PrimitiveTypes.Float64, func(b array.Builder) {
			b.(*array.Float64Builder).AppendValues([]float64{1.5, math.Inf(1), 0}, []bool{true, true, false})
		}),
		build(arrow.BinaryTypes.String, func(b array.Builder) {
			b.(*array.StringBuilder).AppendValues([]string{"a", "", "é"}, []bool{true, true, false})
		}),
		build(arrow.BinaryTypes.Binary, func(b array.Builder) {
			b.(*array.BinaryBuilder).AppendValues([][]byte{{0, 255}, {}, nil}, []bool{true, true, false})
		}),
	}
	for _, in := range cols {
		out, err := echo{}.ExecColumns([]arrow.Array{in}, in.Len(), ctx)
		if err != nil || !arrow.TypeEqual(out.DataType(), in.DataType()) || !array.Equal(out, in) {
			t.Errorf("cf_echo(%s %v) = %v, %v", in.DataType(), in, out, err)
		}
		// The SDK releases the argument and the answer: the echo holds its
		// own reference, so the input survives both releases.
		out.Release()
		if in.Len() != 3 || in.Data().Buffers() == nil {
			t.Errorf("%s: the input lost its data", in.DataType())
		}
	}
	out, err := echo{}.ExecColumns(nil, 2, ctx)
	if err != nil || out.DataType().ID() != arrow.NULL || out.Len() != 2 {
		t.Errorf("cf_echo() = %v, %v; want 2 nulls as Exec answers null", out, err)
	}
}
