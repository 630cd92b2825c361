package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// recording is an Oort instance context that records reported exceptions.
type recording struct {
	oort.StreamContext
	mu         sync.Mutex
	exceptions []string
}

func (r *recording) ReportException(m string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exceptions = append(r.exceptions, m)
}

func (r *recording) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.exceptions)
}

func newRecording() *recording { return &recording{StreamContext: oort.NewTestContext("r1", "op_1")} }

type addFunc struct{}

func (addFunc) Validate(args []any) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2, got %d", len(args))
	}
	return nil
}
func (addFunc) IsAggregate() bool { return false }
func (addFunc) Exec(ctx api.FunctionContext, args []any) (any, bool) {
	a, _ := oort.ToInt(args[0])
	b, _ := oort.ToInt(args[1])
	return struct {
		Sum  int64  `json:"sum"`
		Rule string `json:"rule"`
	}{a + b, ctx.GetRuleId()}, true
}

func TestFunctionAdapter(t *testing.T) {
	a := NewFunction(addFunc{})
	if err := a.Validate(make([]oort.ArgSpec, 1)); err == nil {
		t.Fatal("want the function's error")
	}
	got, ok := a.Exec([]any{int64(2), int64(3)}, oort.NewTestContext("r7", "op_1"))
	if !ok || !reflect.DeepEqual(got, map[string]any{"sum": json.Number("5"), "rule": "r7"}) {
		t.Fatalf("Exec = %#v, %v", got, ok)
	}
	p := FunctionsPlugin("f", map[string]api.Function{"add": addFunc{}, "fresh": PerInstance(func() api.Function { return addFunc{} })})
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	if !p.Functions["add"].IsSingleton() || p.Functions["fresh"].IsSingleton() {
		t.Fatal("a value is a singleton, PerInstance a constructor")
	}
}

// pull counts its pulls.
type pull struct {
	configs map[string]any
	status  string
	pulls   atomic.Int64
	closed  atomic.Bool
}

func (p *pull) Provision(_ api.StreamContext, configs map[string]any) error {
	p.configs = configs
	return nil
}
func (p *pull) Connect(_ api.StreamContext, sch api.StatusChangeHandler) error {
	p.status = api.ConnectionConnected
	sch(api.ConnectionConnected, "")
	return nil
}
func (p *pull) Pull(ctx api.StreamContext, trigger time.Time, ingest api.TupleIngest, ingestError api.ErrorIngest) {
	n := p.pulls.Add(1)
	ingest(ctx, map[string]any{"n": n}, map[string]any{"m": 1}, trigger)
	if n == 2 {
		ingestError(ctx, errors.New("second pull failed"))
	}
}
func (p *pull) Close(api.StreamContext) error { p.closed.Store(true); return nil }

func readN(t *testing.T, src oort.Source, ctx oort.StreamContext, n, max int) []oort.Record {
	t.Helper()
	var got []oort.Record
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d records", len(got), n)
		}
		batch, err := src.Read(ctx, max)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) > max {
			t.Fatalf("batch of %d > %d", len(batch), max)
		}
		got = append(got, batch...)
	}
	return got
}

func TestPullSourceIsPulledEveryInterval(t *testing.T) {
	p := &pull{}
	src := NewSource(p)
	ctx := newRecording()
	start := time.Now()
	if err := src.Open(ctx, "ds", map[string]any{"interval": int64(30), "x": int64(1)}); err != nil {
		t.Fatal(err)
	}
	if p.configs["x"] != 1 || p.configs["datasource"] != "ds" || p.status != api.ConnectionConnected {
		t.Fatalf("Provision got %#v", p.configs)
	}
	got := readN(t, src, ctx, 4, 10)
	if elapsed := time.Since(start); elapsed < 4*30*time.Millisecond-5*time.Millisecond {
		t.Fatalf("4 pulls took only %v", elapsed)
	}
	for i, r := range got {
		if r.Fields["n"] != int64(i+1) || r.Metadata["m"] != 1 || r.Timestamp.IsZero() {
			t.Fatalf("record %d: %#v", i, r)
		}
	}
	if ctx.count() != 1 {
		t.Fatalf("ingestError reports an exception: %v", ctx.exceptions)
	}
	if err := src.Close(ctx); err != nil || !p.closed.Load() {
		t.Fatal("Close")
	}
	n := p.pulls.Load()
	time.Sleep(80 * time.Millisecond)
	if p.pulls.Load() != n {
		t.Fatal("pulled after Close")
	}
	if err := NewSource(&pull{}).Open(newRecording(), "", map[string]any{"interval": "soon"}); err == nil {
		t.Fatal("a bad interval must fail Open")
	}
}

// push ingests every shape a TupleIngest accepts, from its own goroutine,
// until its WithCancel context is done.
type push struct {
	cancel  func()
	done    chan struct{}
	ingests atomic.Int64
}

type reading struct {
	V int `json:"v"`
}

func (p *push) Provision(api.StreamContext, map[string]any) error        { return nil }
func (p *push) Connect(api.StreamContext, api.StatusChangeHandler) error { return nil }
func (p *push) Close(api.StreamContext) error                            { p.cancel(); <-p.done; return nil }
func (p *push) Subscribe(ctx api.StreamContext, ingest api.TupleIngest, _ api.ErrorIngest) error {
	sub, cancel := ctx.WithCancel()
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		ingest(sub, map[string]any{"v": 1}, nil, time.Time{})
		ingest(sub, []map[string]any{{"v": 2}, {"v": 3}}, nil, time.Time{})
		ingest(sub, reading{V: 4}, nil, time.Time{})
		ingest(sub, NewTuple(map[string]any{"v": 5}, nil, time.Time{}), nil, time.Time{})
		for i := 6; ; i++ {
			select {
			case <-sub.Done():
				return
			default:
			}
			ingest(sub, map[string]any{"v": i}, nil, time.Time{})
			p.ingests.Add(1)
		}
	}()
	return nil
}

func TestPushSourceIsBufferedWithBackPressure(t *testing.T) {
	p := &push{}
	src := NewSource(p)
	ctx := newRecording()
	if err := src.Open(ctx, "", map[string]any{"bufferLength": int64(8)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := p.ingests.Load(); n > 8 {
		t.Fatalf("%d ingests went past a buffer of 8", n)
	}
	got := readN(t, src, ctx, 40, 7)
	for i, r := range got[:40] {
		if v, _ := oort.ToInt(r.Fields["v"]); v != int64(i+1) {
			t.Fatalf("record %d: %#v", i, r.Fields)
		}
	}
	// Close returns although the source is blocked on a full buffer.
	closed := make(chan error)
	go func() { closed <- src.Close(ctx) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close hung")
	}
}

// bytesPush ingests its payloads in order from Subscribe, with a metadata
// map, then nothing more.
type bytesPush struct{ payloads []string }

func (bytesPush) Provision(api.StreamContext, map[string]any) error        { return nil }
func (bytesPush) Connect(api.StreamContext, api.StatusChangeHandler) error { return nil }
func (bytesPush) Close(api.StreamContext) error                            { return nil }
func (b bytesPush) Subscribe(ctx api.StreamContext, ingest api.BytesIngest, _ api.ErrorIngest) error {
	for _, p := range b.payloads {
		ingest(ctx, []byte(p), map[string]any{"topic": "t"}, time.Time{})
	}
	return nil
}

// bytesPull emits one payload per pull, reusing its slice as a network
// source reusing a read buffer would.
type bytesPull struct {
	buf   []byte
	pulls atomic.Int64
}

func (*bytesPull) Provision(api.StreamContext, map[string]any) error        { return nil }
func (*bytesPull) Connect(api.StreamContext, api.StatusChangeHandler) error { return nil }
func (*bytesPull) Close(api.StreamContext) error                            { return nil }
func (b *bytesPull) Pull(ctx api.StreamContext, trigger time.Time, ingest api.BytesIngest, _ api.ErrorIngest) {
	n := b.pulls.Add(1)
	b.buf = append(b.buf[:0], fmt.Sprintf("p%d", n)...)
	ingest(ctx, b.buf, nil, trigger)
}

// decodeAll runs a bytes source ingesting payloads with props and returns
// the first n records and the exceptions reported by then.
func decodeAll(t *testing.T, props map[string]any, n int, payloads ...string) ([]oort.Record, []string) {
	t.Helper()
	src := NewSource(bytesPush{payloads: payloads})
	ctx := newRecording()
	if err := src.Open(ctx, "", props); err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	got := readN(t, src, ctx, n, 100)
	if len(got) != n {
		t.Fatalf("want %d records, got %d: %#v", n, len(got), got)
	}
	if more, _ := src.Read(ctx, 100); len(more) != 0 {
		t.Fatalf("want %d records, got more: %#v", n, more)
	}
	ctx.mu.Lock()
	defer ctx.mu.Unlock()
	return got, append([]string(nil), ctx.exceptions...)
}

func fieldsOf(records []oort.Record) []map[string]any {
	out := make([]map[string]any, len(records))
	for i, r := range records {
		out[i] = r.Fields
	}
	return out
}

func TestBytesSourceDecodesJSON(t *testing.T) {
	// No format is json, as is "JSON": the layer lowercases.
	for _, props := range []map[string]any{nil, {"format": "JSON"}} {
		got, exceptions := decodeAll(t, props, 4,
			`{"big":12963433097944239317}`, `[{"a":1},{"a":2}]`, `not json`, `{"a":`, `{"c":"x"}`)
		want := []map[string]any{
			{"big": json.Number("12963433097944239317")}, {"a": json.Number("1")}, {"a": json.Number("2")}, {"c": "x"},
		}
		if !reflect.DeepEqual(fieldsOf(got), want) {
			t.Fatalf("got %#v", fieldsOf(got))
		}
		if got[0].Metadata["topic"] != "t" {
			t.Fatalf("metadata %#v", got[0].Metadata)
		}
		// Each bad payload is one exception, and the source goes on.
		if len(exceptions) != 2 || !strings.Contains(exceptions[0], "payload is not json") {
			t.Fatalf("exceptions %q", exceptions)
		}
	}
	// A payload that is JSON but not an object (nor a list of objects) is
	// dropped with an exception too.
	got, exceptions := decodeAll(t, map[string]any{"format": "json"}, 1, `42`, `{"a":3}`)
	if got[0].Fields["a"] != json.Number("3") || len(exceptions) != 1 {
		t.Fatalf("got %#v, exceptions %q", got, exceptions)
	}
}

func TestBytesSourceDecodesBinary(t *testing.T) {
	// Any payload is valid, even one that is not text, or empty.
	got, exceptions := decodeAll(t, map[string]any{"format": "binary"}, 3, "\x00\xff{", "", `{"a":1}`)
	want := []map[string]any{{"self": []byte("\x00\xff{")}, {"self": []byte{}}, {"self": []byte(`{"a":1}`)}}
	if !reflect.DeepEqual(fieldsOf(got), want) || len(exceptions) != 0 {
		t.Fatalf("got %#v, exceptions %q", fieldsOf(got), exceptions)
	}
	if got[2].Metadata["topic"] != "t" {
		t.Fatalf("metadata %#v", got[2].Metadata)
	}
}

func TestBinaryPayloadIsCopied(t *testing.T) {
	p := &bytesPull{}
	src := NewSource(p)
	ctx := newRecording()
	if err := src.Open(ctx, "", map[string]any{"format": "binary", "interval": int64(5)}); err != nil {
		t.Fatal(err)
	}
	// Let several pulls overwrite the source's slice before reading.
	time.Sleep(40 * time.Millisecond)
	got := readN(t, src, ctx, 3, 3)
	if err := src.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i, r := range got[:3] {
		if want := fmt.Sprintf("p%d", i+1); string(r.Fields["self"].([]byte)) != want {
			t.Fatalf("record %d: %q, want %q", i, r.Fields["self"], want)
		}
	}
}

func TestBytesSourceDecodesDelimited(t *testing.T) {
	// Without fields: col0, col1, …, every value a string.
	got, exceptions := decodeAll(t, map[string]any{"format": "delimited"}, 4,
		"1,a b,2.5", "x\ny,z\r\n\n", "", "only")
	want := []map[string]any{
		{"col0": "1", "col1": "a b", "col2": "2.5"},
		{"col0": "x"}, {"col0": "y", "col1": "z"},
		{"col0": "only"},
	}
	if !reflect.DeepEqual(fieldsOf(got), want) || len(exceptions) != 0 {
		t.Fatalf("got %#v, exceptions %q", fieldsOf(got), exceptions)
	}
	if got[2].Metadata["topic"] != "t" {
		t.Fatalf("each line's row has the payload's metadata: %#v", got[2].Metadata)
	}

	// Fields as a list (YAML) or a comma-separated string (a WITH option),
	// and another delimiter. Missing values are missing fields; values
	// beyond the last field are dropped, as eKuiper does.
	for _, fields := range []any{[]any{"id", "name"}, " id , name", []string{"id", "name"}} {
		got, _ := decodeAll(t, map[string]any{"format": "delimited", "delimiter": "|", "fields": fields}, 3,
			"7|ann", "8", "9|bo|extra|more")
		want := []map[string]any{{"id": "7", "name": "ann"}, {"id": "8"}, {"id": "9", "name": "bo"}}
		if !reflect.DeepEqual(fieldsOf(got), want) {
			t.Fatalf("fields %#v: got %#v", fields, fieldsOf(got))
		}
	}

	// A multi-character delimiter; an empty one is the default ",".
	got, _ = decodeAll(t, map[string]any{"format": "delimited", "delimiter": "::"}, 1, "a::b,c")
	if !reflect.DeepEqual(got[0].Fields, map[string]any{"col0": "a", "col1": "b,c"}) {
		t.Fatalf("got %#v", got[0].Fields)
	}
	got, _ = decodeAll(t, map[string]any{"format": "delimited", "delimiter": ""}, 1, "a,b")
	if !reflect.DeepEqual(got[0].Fields, map[string]any{"col0": "a", "col1": "b"}) {
		t.Fatalf("got %#v", got[0].Fields)
	}
}

func TestBytesSourceRefusesWhatItCannotDecode(t *testing.T) {
	open := func(src api.Source, props map[string]any) error {
		return NewSource(src).Open(newRecording(), "", props)
	}
	for _, src := range []api.Source{bytesPush{}, &bytesPull{}} {
		err := open(src, map[string]any{"format": "protobuf", "interval": int64(10)})
		if err == nil || err.Error() != `format "protobuf" is not supported for a bytes source (json, binary, delimited)` {
			t.Fatalf("%T: %v", src, err)
		}
	}
	for _, props := range []map[string]any{
		{"format": "delimited", "delimiter": int64(9)},
		{"format": "delimited", "fields": []any{"a", int64(1)}},
		{"format": "delimited", "fields": "a,,b"},
		{"format": "delimited", "fields": int64(3)},
	} {
		if err := open(bytesPush{}, props); err == nil {
			t.Fatalf("props %#v must fail Open", props)
		}
	}
	// A tuple source decodes nothing: the format and the delimited
	// properties are only handed to Provision.
	tuples, ctx := NewSource(&push{}), newRecording()
	if err := tuples.Open(ctx, "", map[string]any{"format": "protobuf", "fields": int64(3)}); err != nil {
		t.Fatal(err)
	}
	if err := tuples.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

type notASource struct{}

func (notASource) Provision(api.StreamContext, map[string]any) error        { return nil }
func (notASource) Connect(api.StreamContext, api.StatusChangeHandler) error { return nil }
func (notASource) Close(api.StreamContext) error                            { return nil }

func TestSourceMustHaveAnIngestTrait(t *testing.T) {
	if err := NewSource(notASource{}).Open(newRecording(), "", nil); err == nil {
		t.Fatal("want an error naming the traits")
	}
	if err := NewSink(notASource{}).Open(newRecording(), nil); err == nil {
		t.Fatal("want an error naming the collectors")
	}
}

type tupleSink struct {
	rows    []map[string]any
	meta    []map[string]any
	configs map[string]any
}

func (s *tupleSink) Provision(_ api.StreamContext, c map[string]any) error    { s.configs = c; return nil }
func (s *tupleSink) Connect(api.StreamContext, api.StatusChangeHandler) error { return nil }
func (s *tupleSink) Close(api.StreamContext) error                            { return nil }
func (s *tupleSink) Collect(_ api.StreamContext, item api.MessageTuple) error {
	s.rows = append(s.rows, item.ToMap())
	s.meta = append(s.meta, item.(api.MetaInfo).AllMeta())
	if v, ok := item.Value("fail", ""); ok && v == true {
		return errors.New("refused")
	}
	return nil
}
func (s *tupleSink) CollectList(ctx api.StreamContext, items api.MessageTupleList) error {
	return errors.New("not called")
}

// rawSink keeps the payloads it collects and refuses those containing
// "fail".
type rawSink struct {
	raw     []string
	configs map[string]any
}

func (s *rawSink) Provision(_ api.StreamContext, c map[string]any) error    { s.configs = c; return nil }
func (s *rawSink) Connect(api.StreamContext, api.StatusChangeHandler) error { return nil }
func (s *rawSink) Close(api.StreamContext) error                            { return nil }
func (s *rawSink) Collect(_ api.StreamContext, item api.RawTuple) error {
	if strings.Contains(string(item.Raw()), "fail") {
		return fmt.Errorf("refused %s", item.Raw())
	}
	s.raw = append(s.raw, string(item.Raw()))
	return nil
}

func TestSinkAdapters(t *testing.T) {
	ctx := oort.NewTestContext("r1", "sink_0")
	records := []oort.Record{
		{Fields: map[string]any{"a": int64(1)}, Metadata: map[string]any{"topic": "t"}},
		{Fields: map[string]any{"a": int64(2)}},
	}
	ts := &tupleSink{}
	k := NewSink(ts)
	if err := k.Open(ctx, map[string]any{"n": int64(3)}); err != nil {
		t.Fatal(err)
	}
	if ts.configs["n"] != 3.0 {
		t.Fatalf("Provision got %#v", ts.configs)
	}
	if err := k.Collect(ctx, records); err != nil {
		t.Fatal(err)
	}
	if len(ts.rows) != 2 || ts.rows[1]["a"] != int64(2) || ts.meta[0]["topic"] != "t" {
		t.Fatalf("rows %#v meta %#v", ts.rows, ts.meta)
	}
	if err := k.Collect(ctx, []oort.Record{{Fields: map[string]any{"fail": true}}}); err == nil || err.Error() != "refused" {
		t.Fatalf("Collect error %v", err)
	}

	if _, ok := k.(oort.PayloadSink); ok {
		t.Fatal("a TupleCollector takes records, not payloads")
	}
	if err := SinkPlugin("t", func() api.Sink { return &tupleSink{} }).Check(); err != nil {
		t.Fatal(err)
	}
}

func TestBytesCollectorTakesPayloads(t *testing.T) {
	ctx := oort.NewTestContext("r1", "sink_0")
	bs := &rawSink{}
	k := NewSink(bs)
	ps, ok := k.(oort.PayloadSink)
	if !ok {
		t.Fatal("a BytesCollector asks for payloads")
	}
	// The encoding properties reach Provision as they are; the supervisor
	// applies them.
	if err := k.Open(ctx, map[string]any{"format": "json", "sendSingle": true, "dataTemplate": "{{.a}}"}); err != nil {
		t.Fatal(err)
	}
	if bs.configs["sendSingle"] != true || bs.configs["dataTemplate"] != "{{.a}}" {
		t.Fatalf("Provision got %#v", bs.configs)
	}
	// Every payload is one Collect, as is; all are collected.
	if err := ps.CollectPayloads(ctx, [][]byte{[]byte(`[{"a":1},{"a":2}]`), []byte("a is 3")}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(bs.raw, []string{`[{"a":1},{"a":2}]`, "a is 3"}) {
		t.Fatalf("raw %q", bs.raw)
	}
	// A failing Collect is that payload's error only.
	err := ps.CollectPayloads(ctx, [][]byte{[]byte(`{"fail":1}`), []byte(`{"a":4}`), []byte(`"fail"`)})
	var items oort.ItemErrors
	if !errors.As(err, &items) || len(items) != 3 || items[1] != nil ||
		items[0].Error() != `refused {"fail":1}` || items[2].Error() != `refused "fail"` {
		t.Fatalf("item errors %#v", err)
	}
	if bs.raw[len(bs.raw)-1] != `{"a":4}` {
		t.Fatalf("the payload after a failed one is collected too: %q", bs.raw)
	}
	// Records mean a supervisor that does not encode: the batch fails.
	if err := k.Collect(ctx, []oort.Record{{Fields: map[string]any{"a": 1}}}); err == nil || !strings.Contains(err.Error(), "takes payloads") {
		t.Fatalf("records to a bytes sink: %v", err)
	}
}

type visit struct {
	Count int      `json:"count"`
	Pages []string `json:"pages"`
}

func TestRegisteredStateTypesReadBackAfterARestart(t *testing.T) {
	RegisterStateType(visit{})
	o := oort.NewTestContext("r1", "op_1")
	if err := Wrap(o).PutState("v", []visit{{Count: 2, Pages: []string{"/"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := Wrap(oort.ReopenTestContext(o)).GetState("v")
	if err != nil || !reflect.DeepEqual(got, []visit{{Count: 2, Pages: []string{"/"}}}) {
		t.Fatalf("got %#v, %v", got, err)
	}
}
