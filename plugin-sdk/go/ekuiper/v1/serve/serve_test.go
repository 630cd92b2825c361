package serve

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
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

func newRecording() *recording { return &recording{StreamContext: oort.NewTestContext("r1", "op_1")} }

type pos struct {
	Lat float64 `json:"lat"`
	Lng float64 `json:"lng"`
}

type posFunc struct{ validated []interface{} }

func (f *posFunc) Validate(args []interface{}) error {
	f.validated = args
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments, got %d", len(args))
	}
	return nil
}

func (f *posFunc) Exec(args []interface{}, ctx api.FunctionContext) (interface{}, bool) {
	if args[0] == nil {
		return errors.New("null"), false
	}
	if err := ctx.PutState("last", pos{1, 2}); err != nil {
		return err, false
	}
	s, _ := ctx.GetState("last")
	if _, ok := s.(pos); !ok {
		return fmt.Errorf("state came back as %T", s), false
	}
	return pos{Lat: args[0].(float64), Lng: args[1].(float64)}, true
}

func (f *posFunc) IsAggregate() bool { return false }

func TestFunctionAdapter(t *testing.T) {
	f := &posFunc{}
	a := NewFunction(f)
	spec := []oort.ArgSpec{{Expression: "a", Column: "a"}, {Expression: "1", IsLiteral: true, Literal: int64(1)}}
	if err := a.Validate(spec); err != nil {
		t.Fatal(err)
	}
	if len(f.validated) != 2 || f.validated[0].(oort.ArgSpec).Column != "a" {
		t.Fatalf("Validate got %#v", f.validated)
	}
	if err := a.Validate(spec[:1]); err == nil {
		t.Fatal("want the function's error")
	}
	ctx := oort.NewTestContext("r1", "op_1")
	got, ok := a.Exec([]any{1.5, 2.5}, ctx)
	if !ok || !reflect.DeepEqual(got, map[string]any{"lat": jsonNum("1.5"), "lng": jsonNum("2.5")}) {
		t.Fatalf("Exec = %#v, %v", got, ok)
	}
	if got, ok := a.Exec([]any{nil, 1.0}, ctx); ok || got.(error).Error() != "null" {
		t.Fatalf("Exec = %#v, %v", got, ok)
	}
	if a.IsAggregate() {
		t.Fatal("not an aggregate")
	}
	made := 0
	p := FunctionsPlugin("f", map[string]api.Function{"pos": f, "fresh": PerInstance(func() api.Function { made++; return &posFunc{} })})
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	if !p.Functions["pos"].IsSingleton() || p.Functions["fresh"].IsSingleton() {
		t.Fatal("a value is a singleton, PerInstance a constructor")
	}
	if made != 1 {
		t.Fatalf("PerInstance made %d objects up front", made)
	}
}

// tickSource sends n tuples as fast as the consumer takes them, then an
// error if failWith is set.
type tickSource struct {
	n        int
	failWith error
	props    map[string]interface{}
	ds       string
	sent     atomic.Int64
	closed   atomic.Bool
	returned atomic.Bool
}

func (s *tickSource) Configure(datasource string, props map[string]interface{}) error {
	s.ds, s.props = datasource, props
	n, ok := props["n"].(int) // integral source properties are ints, as from eKuiper's YAML
	if !ok || props["format"] != "json" {
		return fmt.Errorf("n must be an int, got %T (%#v)", props["n"], props)
	}
	s.n = n
	return nil
}

func (s *tickSource) Open(ctx api.StreamContext, consumer chan<- api.SourceTuple, errCh chan<- error) {
	defer s.returned.Store(true)
	for i := range s.n {
		t := api.NewDefaultSourceTupleWithTime(map[string]interface{}{"i": i, "p": pos{1, 2}}, map[string]interface{}{"ds": s.ds}, time.UnixMilli(int64(1000+i)))
		select {
		case consumer <- t:
			s.sent.Add(1)
		case <-ctx.Done():
			return
		}
	}
	if s.failWith != nil {
		errCh <- s.failWith
	}
	<-ctx.Done()
}

func (s *tickSource) Close(api.StreamContext) error { s.closed.Store(true); return nil }

func TestSourceAdapterBuffersThePushSource(t *testing.T) {
	ts := &tickSource{}
	src := NewSource(ts)
	ctx := newRecording()
	if err := src.Open(ctx, "topic", map[string]any{"n": int64(10), "bufferLength": int64(4)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := ts.sent.Load(); n != 4 {
		t.Fatalf("sent %d tuples into a buffer of 4", n)
	}
	var got []oort.Record
	for len(got) < 10 {
		batch, err := src.Read(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) > 3 {
			t.Fatalf("batch of %d", len(batch))
		}
		got = append(got, batch...)
	}
	for i, r := range got {
		if r.Fields["i"] != i || !reflect.DeepEqual(r.Fields["p"], map[string]any{"lat": jsonNum("1"), "lng": jsonNum("2")}) {
			t.Fatalf("record %d: %#v", i, r.Fields)
		}
		if r.Metadata["ds"] != "topic" || r.Timestamp.UnixMilli() != int64(1000+i) {
			t.Fatalf("record %d: %#v %v", i, r.Metadata, r.Timestamp)
		}
	}
	// Nothing more: Read returns empty within its wait.
	start := time.Now()
	if batch, err := src.Read(ctx, 3); err != nil || len(batch) != 0 || time.Since(start) > time.Second {
		t.Fatalf("Read = %v, %v after %v", batch, err, time.Since(start))
	}
	if err := src.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !ts.closed.Load() || !ts.returned.Load() {
		t.Fatal("Close must call Close and end Open")
	}
}

func TestSourceAdapterErrorEndsTheRead(t *testing.T) {
	src := NewSource(&tickSource{failWith: errors.New("lost connection")})
	ctx := newRecording()
	if err := src.Open(ctx, "", map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	var err error
	for range 50 {
		if _, err = src.Read(ctx, 10); err != nil {
			break
		}
	}
	if err == nil || err.Error() != "lost connection" {
		t.Fatalf("Read error %v", err)
	}
	_ = src.Close(ctx)
	if err := NewSource(&tickSource{}).Open(ctx, "", map[string]any{"n": "x"}); err == nil {
		t.Fatal("Configure's error must fail Open")
	}
}

type memSink struct {
	props   map[string]interface{}
	data    []interface{}
	opened  bool
	closed  bool
	encoded [][]byte
}

func (m *memSink) Configure(props map[string]interface{}) error { m.props = props; return nil }
func (m *memSink) Open(api.StreamContext) error                 { m.opened = true; return nil }
func (m *memSink) Close(api.StreamContext) error                { m.closed = true; return nil }
func (m *memSink) Collect(ctx api.StreamContext, data interface{}) error {
	m.data = append(m.data, data)
	b, _, err := ctx.TransformOutput(data)
	m.encoded = append(m.encoded, b)
	return err
}

func TestSinkAdapter(t *testing.T) {
	records := []oort.Record{{Fields: map[string]any{"a": int64(1)}}, {Fields: map[string]any{"a": int64(2)}}}
	ctx := oort.NewTestContext("r1", "sink_0")

	m := &memSink{}
	k := NewSink(m)
	if err := k.Open(ctx, map[string]any{"limit": int64(5)}); err != nil {
		t.Fatal(err)
	}
	if m.props["limit"] != 5.0 || !m.opened {
		t.Fatalf("props %#v", m.props)
	}
	if err := k.Collect(ctx, records); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{{"a": int64(1)}, {"a": int64(2)}}
	if len(m.data) != 1 || !reflect.DeepEqual(m.data[0], want) || string(m.encoded[0]) != `[{"a":1},{"a":2}]` {
		t.Fatalf("batch: %#v %s", m.data, m.encoded)
	}

	m = &memSink{}
	k = NewSink(m)
	if err := k.Open(ctx, map[string]any{"sendSingle": true, "dataTemplate": "a={{.a}}"}); err != nil {
		t.Fatal(err)
	}
	if err := k.Collect(ctx, records); err != nil {
		t.Fatal(err)
	}
	if len(m.data) != 2 || !reflect.DeepEqual(m.data[1], map[string]any{"a": int64(2)}) || string(m.encoded[1]) != "a=2" {
		t.Fatalf("single: %#v %q", m.data, m.encoded)
	}
	if err := k.Close(ctx); err != nil || !m.closed {
		t.Fatal("Close")
	}
	if err := SinkPlugin("mem", func() api.Sink { return &memSink{} }).Check(); err != nil {
		t.Fatal(err)
	}
	if err := SourcePlugin("tick", func() api.Source { return &tickSource{} }).Check(); err != nil {
		t.Fatal(err)
	}
}

func TestContextWithCancel(t *testing.T) {
	c := NewTestContext("r1", "op_1")
	child, cancel := c.WithCancel()
	if err := child.PutState("k", []int{1}); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-child.Done():
	case <-time.After(time.Second):
		t.Fatal("child not cancelled")
	}
	if c.Err() != nil {
		t.Fatal("the parent must stay live")
	}
	if v, _ := c.GetState("k"); !reflect.DeepEqual(v, []int{1}) {
		t.Fatalf("state shared with the child: %#v", v)
	}
	if c.GetInstanceId() != 0 || c.GetFuncId() != 0 || c.GetRuleId() != "r1" || c.GetOpId() != "op_1" {
		t.Fatal("identity")
	}
	m, err := c.Decode([]byte(`{"x":1}`))
	if err != nil || m["x"] != 1.0 {
		t.Fatalf("Decode = %#v, %v", m, err)
	}
}

type lastSeen struct {
	Device string `json:"device"`
	At     int64  `json:"at"`
}

func TestRegisteredStateTypesReadBackAfterARestart(t *testing.T) {
	RegisterStateType(&lastSeen{})
	o := oort.NewTestContext("r1", "op_1")
	put := map[string]interface{}{"seen": &lastSeen{Device: "d1", At: 9}, "n": 3, "ids": []uint64{1 << 63}}
	for k, v := range put {
		if err := Wrap(o).PutState(k, v); err != nil {
			t.Fatal(err)
		}
	}
	after := Wrap(oort.ReopenTestContext(o))
	for k, want := range put {
		got, err := after.GetState(k)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, %v; want %#v", k, got, err, want)
		}
	}
}
