package oort

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

// tally counts its successful rows in the instance's state.
type tally struct{}

func (tally) Validate(args []ArgSpec) error {
	if len(args) != 1 {
		return fmt.Errorf("tally expects 1 argument, got %d", len(args))
	}
	return nil
}

func (tally) Exec(args []any, ctx FunctionContext) (any, bool) {
	if args[0] == "bad" {
		return errors.New("bad row"), false
	}
	if args[0] == "panic" {
		panic("boom")
	}
	if err := ctx.IncrCounter("n", 1); err != nil {
		return err, false
	}
	n, err := ctx.GetCounter("n")
	if err != nil {
		return err, false
	}
	return n, true
}

func (tally) IsAggregate() bool { return false }

type sum struct{}

func (sum) Validate([]ArgSpec) error { return nil }
func (sum) IsAggregate() bool        { return true }
func (sum) Exec(args []any, _ FunctionContext) (any, bool) {
	return struct{}{}, true // not convertible: a row error
}

// counting emits {"n": i} for i < count, and is rewindable.
type counting struct {
	next, count int64
}

func (c *counting) Open(ctx StreamContext, _ string, props map[string]any) error {
	c.count, _ = ToInt(props["count"])
	return ctx.PutState("opened", true)
}

func (c *counting) Read(ctx StreamContext, max int) ([]Record, error) {
	var out []Record
	for ; c.next < c.count && len(out) < max; c.next++ {
		out = append(out, Record{Fields: map[string]any{"n": c.next}})
	}
	if len(out) == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return out, nil
}

func (c *counting) Close(StreamContext) error { return nil }
func (c *counting) GetOffset() (any, error)   { return c.next, nil }
func (c *counting) Rewind(offset any) error {
	k, ok := offset.(int64)
	if !ok || k < 0 || k > c.count {
		return fmt.Errorf("bad offset %v", offset)
	}
	c.next = k
	return nil
}

// memorySink keeps what it collects; it is transactional.
type memorySink struct {
	mu      sync.Mutex
	records []Record
	commits []string
	closed  atomic.Bool
}

func (m *memorySink) Open(StreamContext, map[string]any) error { return nil }
func (m *memorySink) Collect(ctx StreamContext, records []Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range records {
		if r.Fields["fail"] == true {
			return errors.New("refused")
		}
	}
	m.records = append(m.records, records...)
	return ctx.IncrCounter("written", len(records))
}
func (m *memorySink) Close(StreamContext) error { m.closed.Store(true); return nil }
func (m *memorySink) PreCommit(_ StreamContext, id uint64) (any, error) {
	return fmt.Sprintf("h%d", id), nil
}
func (m *memorySink) Commit(_ StreamContext, id uint64, handle any) error {
	m.commits = append(m.commits, fmt.Sprintf("commit %d %v", id, handle))
	return nil
}
func (m *memorySink) Abort(_ StreamContext, id uint64, handle any) error {
	m.commits = append(m.commits, fmt.Sprintf("abort %d %v", id, handle))
	return nil
}

// started is a plugin served in this process on a temporary socket.
type started struct {
	socket  string
	conn    *grpc.ClientConn
	signals chan os.Signal
	code    chan int
}

func start(t *testing.T, p Plugin) *started {
	t.Helper()
	dir, err := os.MkdirTemp("", "oort-go-sdk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &started{socket: filepath.Join(dir, "p1.sock"), signals: make(chan os.Signal, 2), code: make(chan int, 1)}
	env := map[string]string{"OORT_PLUGIN_SOCKET": s.socket, "OORT_PROTOCOL_VERSIONS": "1"}
	go func() {
		s.code <- serveEnv(p, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, s.signals)
	}()
	s.conn, err = grpc.NewClient("unix://"+s.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	// The supervisor's readiness loop: wait for the file, then Check.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(s.socket); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not become ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exited waits for serveEnv's exit code and checks the socket is gone.
func (s *started) exited(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case code := <-s.code:
		if code != 0 {
			t.Fatalf("exit code %d", code)
		}
	case <-time.After(within):
		t.Fatalf("the plugin did not stop within %v", within)
	}
	if _, err := os.Stat(s.socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket is still there: %v", err)
	}
}

func code(err error) codes.Code { return status.Code(err) }

func spec(id, symbol string) *pb.InstanceSpec {
	rule, op, _ := strings.Cut(id, "/")
	return &pb.InstanceSpec{InstanceId: id, Symbol: symbol, RuleId: rule, OperatorId: op}
}

func row(args ...any) *pb.ArgRow {
	r := &pb.ArgRow{}
	for _, a := range args {
		v, _ := toValue(a)
		r.Args = append(r.Args, v)
	}
	return r
}

func TestServeEndToEnd(t *testing.T) {
	sink := &memorySink{}
	plugin := Plugin{
		Name:      "testkit",
		Version:   "9.9.9",
		Functions: map[string]Export{"tally": Constructor(func() Function { return tally{} }), "sum": Singleton(sum{})},
		Source:    Constructor(func() *counting { return &counting{} }),
		Sink:      Singleton(sink),
	}
	s := start(t, plugin)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	health := healthpb.NewHealthClient(s.conn)
	for _, svc := range append([]string{""}, served...) {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, resp, err)
		}
	}

	// Describe.
	desc, err := pb.NewPluginClient(s.conn).Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.DescribeResponse{
		Name: "testkit", Version: "9.9.9", ProtocolVersion: 1, SdkName: "oort-plugin-go", SdkVersion: SDKVersion,
		Symbols: []*pb.Symbol{
			{Kind: pb.Kind_KIND_FUNCTION, Name: "sum", Mode: pb.ExportMode_EXPORT_MODE_SINGLETON, IsAggregate: true},
			{Kind: pb.Kind_KIND_FUNCTION, Name: "tally", Mode: pb.ExportMode_EXPORT_MODE_CONSTRUCTOR},
			{Kind: pb.Kind_KIND_SOURCE, Name: "testkit", Mode: pb.ExportMode_EXPORT_MODE_CONSTRUCTOR},
			{Kind: pb.Kind_KIND_SINK, Name: "testkit", Mode: pb.ExportMode_EXPORT_MODE_SINGLETON},
		},
		Encodings: []pb.Encoding{pb.Encoding_ENCODING_ARROW_IPC},
	}
	if !proto.Equal(desc, want) {
		t.Fatalf("Describe:\n got %v\nwant %v", desc, want)
	}

	// Function: Validate, Open, Exec, Close.
	fn := pb.NewFunctionClient(s.conn)
	v, err := fn.Validate(ctx, &pb.ValidateRequest{Symbol: "tally", Args: []*pb.ArgSpec{{Expression: "a"}}})
	if err != nil || v.GetError() != "" {
		t.Fatalf("Validate ok: %v %v", v, err)
	}
	v, _ = fn.Validate(ctx, &pb.ValidateRequest{Symbol: "tally"})
	if v.GetError() != "tally expects 1 argument, got 0" {
		t.Fatalf("Validate refused: %q", v.GetError())
	}
	if _, err := fn.Validate(ctx, &pb.ValidateRequest{Symbol: "nope"}); code(err) != codes.NotFound {
		t.Fatalf("Validate of an unknown symbol: %v", err)
	}
	if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: spec("r1/op_1", "tally")}); err != nil {
		t.Fatal(err)
	}
	if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: spec("r1/op_2", "sum")}); err != nil {
		t.Fatal(err)
	}
	if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: spec("r1/op_1", "tally")}); code(err) != codes.AlreadyExists {
		t.Fatalf("second Open: %v", err)
	}
	if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{}); code(err) != codes.InvalidArgument {
		t.Fatalf("Open without a spec: %v", err)
	}
	if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: spec("r1/op_9", "nope")}); code(err) != codes.NotFound {
		t.Fatalf("Open of an unknown symbol: %v", err)
	}

	exec, err := fn.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Headers come before the first batch is even sent.
	if _, err := exec.Header(); err != nil {
		t.Fatalf("headers: %v", err)
	}
	must(t, exec.Send(&pb.ExecBatch{InstanceId: "r1/op_1", Seq: 7, Rows: []*pb.ArgRow{row("a"), row("bad"), row("b"), row("panic")}}))
	res, err := exec.Recv()
	if err != nil {
		t.Fatal(err)
	}
	wantRes := &pb.ExecResult{
		Seq: 7,
		Results: []*pb.RowResult{
			{Outcome: &pb.RowResult_Value{Value: intValue(1)}},
			{Outcome: &pb.RowResult_Error{Error: "bad row"}},
			{Outcome: &pb.RowResult_Value{Value: intValue(2)}},
			{Outcome: &pb.RowResult_Error{Error: "tally panicked: boom"}},
		},
		Mutations: []*pb.StateMutation{{Key: "n", Op: &pb.StateMutation_Counter{Counter: 2}}},
	}
	if !proto.Equal(res, wantRes) {
		t.Fatalf("ExecResult:\n got %v\nwant %v", res, wantRes)
	}
	must(t, exec.Send(&pb.ExecBatch{InstanceId: "r1/op_2", Seq: 0, Rows: []*pb.ArgRow{row(1)}}))
	res, _ = exec.Recv()
	if res.GetSeq() != 0 || len(res.GetResults()) != 1 || !strings.Contains(res.GetResults()[0].GetError(), "sum returned a value Oort cannot carry") {
		t.Fatalf("unconvertible result: %v", res)
	}
	must(t, exec.Send(&pb.ExecBatch{InstanceId: "r1/op_1", Seq: 8}))
	res, _ = exec.Recv()
	if res.GetSeq() != 8 || len(res.GetResults()) != 0 || len(res.GetMutations()) != 0 {
		t.Fatalf("empty batch: %v", res)
	}
	must(t, exec.Send(&pb.ExecBatch{InstanceId: "r9/op_1", Seq: 0, Rows: []*pb.ArgRow{row(1)}}))
	if _, err := exec.Recv(); code(err) != codes.NotFound {
		t.Fatalf("unknown instance on Exec: %v", err)
	}
	if _, err := fn.Close(ctx, &pb.CloseRequest{InstanceId: "r1/op_2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fn.Close(ctx, &pb.CloseRequest{InstanceId: "r1/op_2"}); code(err) != codes.NotFound {
		t.Fatalf("second Close: %v", err)
	}

	// Source: Open, Rewind, Read, Close ends the stream.
	src := pb.NewSourceClient(s.conn)
	count, _ := toValue(5)
	opened, err := src.Open(ctx, &pb.OpenSourceRequest{Instance: spec("r2/source", "testkit"), Props: map[string]*pb.Value{"count": count}})
	if err != nil || !opened.GetRewindable() {
		t.Fatalf("source Open: %v %v", opened, err)
	}
	if _, err := src.Rewind(ctx, &pb.RewindRequest{InstanceId: "r2/source", Offset: intValue(9)}); code(err) != codes.FailedPrecondition ||
		!strings.HasPrefix(status.Convert(err).Message(), "rewind failed: ") {
		t.Fatalf("bad Rewind: %v", err)
	}
	if _, err := src.Rewind(ctx, &pb.RewindRequest{InstanceId: "r2/source", Offset: intValue(2)}); err != nil {
		t.Fatal(err)
	}
	read, err := src.Read(ctx, &pb.ReadRequest{InstanceId: "r2/source", MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := read.Header(); err != nil {
		t.Fatal(err)
	}
	var got []int64
	var offsets []int64
	var mutations []*pb.StateMutation
	for len(got) < 3 {
		b, err := read.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.GetRecords() {
			got = append(got, r.GetFields()["n"].GetInt())
		}
		offsets = append(offsets, b.GetOffset().GetInt())
		mutations = append(mutations, b.GetMutations()...)
	}
	if fmt.Sprint(got, offsets) != "[2 3 4] [4 5]" {
		t.Fatalf("records %v offsets %v", got, offsets)
	}
	// The PutState made in Open went with the first batch.
	if len(mutations) != 1 || mutations[0].GetKey() != "opened" || !mutations[0].GetPut().GetBool() {
		t.Fatalf("mutations %v", mutations)
	}
	if _, err := src.Close(ctx, &pb.CloseRequest{InstanceId: "r2/source"}); err != nil {
		t.Fatal(err)
	}
	if _, err := read.Recv(); err != io.EOF {
		t.Fatalf("Close must end the Read stream: %v", err)
	}
	r, err := src.Read(ctx, &pb.ReadRequest{InstanceId: "r2/source"})
	if err == nil {
		_, err = r.Recv()
	}
	if code(err) != codes.NotFound {
		t.Fatalf("Read of a closed instance: %v", err)
	}

	// Sink: Open, Write, PreCommit, Commit, Abort.
	snk := pb.NewSinkClient(s.conn)
	so, err := snk.Open(ctx, &pb.OpenSinkRequest{Instance: spec("r3/sink_0", "testkit")})
	if err != nil || !so.GetTransactional() {
		t.Fatalf("sink Open: %v %v", so, err)
	}
	write, err := snk.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(fields map[string]any) *pb.Record { r, _ := recordToPB(Record{Fields: fields}); return r }
	must(t, write.Send(&pb.WriteBatch{InstanceId: "r3/sink_0", Seq: 0, Records: []*pb.Record{rec(map[string]any{"a": 1}), rec(map[string]any{"a": 2})}}))
	ack, err := write.Recv()
	if err != nil || ack.GetSeq() != 0 || ack.GetError() != "" || len(ack.GetMutations()) != 1 || ack.GetMutations()[0].GetCounter() != 2 {
		t.Fatalf("ack: %v %v", ack, err)
	}
	must(t, write.Send(&pb.WriteBatch{InstanceId: "r3/sink_0", Seq: 1, Records: []*pb.Record{rec(map[string]any{"fail": true})}}))
	ack, err = write.Recv()
	if err != nil || ack.GetSeq() != 1 || ack.GetError() != "refused" {
		t.Fatalf("failed batch: %v %v", ack, err)
	}
	pre, err := snk.PreCommit(ctx, &pb.PreCommitRequest{InstanceId: "r3/sink_0", CheckpointId: 3})
	if err != nil || pre.GetHandle().GetString_() != "h3" {
		t.Fatalf("PreCommit: %v %v", pre, err)
	}
	if _, err := snk.Commit(ctx, &pb.CommitRequest{InstanceId: "r3/sink_0", CheckpointId: 3, Handle: pre.GetHandle()}); err != nil {
		t.Fatal(err)
	}
	if _, err := snk.Abort(ctx, &pb.CommitRequest{InstanceId: "r3/sink_0", CheckpointId: 4}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sink.commits) != "[commit 3 h3 abort 4 <nil>]" || len(sink.records) != 2 {
		t.Fatalf("sink saw %v and %d records", sink.commits, len(sink.records))
	}
	if _, err := src.Open(ctx, &pb.OpenSourceRequest{Instance: spec("r3/sink_0", "testkit")}); code(err) != codes.AlreadyExists {
		t.Fatalf("an id is unique across kinds: %v", err)
	}

	// Shutdown with an Exec and a Write stream still open: the process stops
	// promptly anyway, closes its instances and removes its socket.
	began := time.Now()
	if _, err := pb.NewPluginClient(s.conn).Shutdown(ctx, &pb.ShutdownRequest{GraceMs: 2000}); err != nil {
		t.Fatal(err)
	}
	s.exited(t, 2*time.Second)
	if took := time.Since(began); took > time.Second {
		t.Errorf("the stop took %v", took)
	}
	if !sink.closed.Load() {
		t.Error("the sink instance was not closed")
	}
}

func TestSourceOnlyPluginRefusesSinkOpen(t *testing.T) {
	s := start(t, Plugin{Name: "src", Source: Constructor(func() *counting { return &counting{} })})
	ctx := context.Background()
	if _, err := pb.NewSinkClient(s.conn).Open(ctx, &pb.OpenSinkRequest{Instance: spec("r/s", "src")}); code(err) != codes.Unimplemented {
		t.Fatalf("sink Open: %v", err)
	}
	if _, err := pb.NewSourceClient(s.conn).Open(ctx, &pb.OpenSourceRequest{Instance: spec("r/s", "src")}); err != nil {
		t.Fatal(err)
	}
	read, err := pb.NewSourceClient(s.conn).Read(ctx, &pb.ReadRequest{InstanceId: "r/s", MaxBatch: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := read.Header(); err != nil {
		t.Fatal(err)
	}
	// SIGTERM stops it like Shutdown, with the Read stream open.
	s.signals <- os.Interrupt
	s.exited(t, 2*time.Second)
}

func TestHandshakeRefusals(t *testing.T) {
	p := Plugin{Name: "x", Functions: map[string]Export{"f": Singleton(tally{})}}
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	if c := serveEnv(p, env(nil), nil); c != 78 {
		t.Errorf("no socket: exit %d", c)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "p.sock")
	if c := serveEnv(p, env(map[string]string{"OORT_PLUGIN_SOCKET": sock, "OORT_PROTOCOL_VERSIONS": "2, 3"}), nil); c != 78 {
		t.Errorf("no common version: exit %d", c)
	}
	if c := serveEnv(p, env(map[string]string{"OORT_PLUGIN_SOCKET": sock}), nil); c != 78 {
		t.Errorf("no versions: exit %d", c)
	}
	if v, ok := negotiate(" x, 1 ,7"); !ok || v != 1 {
		t.Errorf("negotiate: %d %v", v, ok)
	}

	// A live listener keeps its path.
	live, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if c := serveEnv(p, env(map[string]string{"OORT_PLUGIN_SOCKET": sock, "OORT_PROTOCOL_VERSIONS": "1"}), nil); c != 1 {
		t.Errorf("live listener: exit %d", c)
	}
	if _, err := bind(sock); !errors.Is(err, errInUse) {
		t.Errorf("bind over a live listener: %v", err)
	}
	// A stale file is replaced.
	live.(*net.UnixListener).SetUnlinkOnClose(false)
	live.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatal("the stale socket file should still exist")
	}
	ln, err := bind(sock)
	if err != nil {
		t.Fatalf("bind over a stale file: %v", err)
	}
	ln.Close()

	if c := serveEnv(Plugin{Name: "bad name!"}, env(nil), nil); c != 1 {
		t.Errorf("invalid plugin: exit %d", c)
	}
}

func TestCheckNamesWhatIsWrong(t *testing.T) {
	err := Plugin{
		Name:      "p",
		Functions: map[string]Export{"f": Singleton(42), "g": {}},
		Source:    Constructor(func() *memorySink { return nil }),
	}.Check()
	for _, want := range []string{
		`function "f" is a int, which does not implement oort.Function (missing method Exec)`,
		`function "g" is exported as nothing`,
		`the source is a *oort.memorySink, which does not implement oort.Source (missing method Read)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v, want it to contain %q", err, want)
		}
	}
	if err := (Plugin{Name: "p"}).Check(); err == nil || !strings.Contains(err.Error(), "exports no function") {
		t.Errorf("empty plugin: %v", err)
	}
	ok := Plugin{Name: "ok-1", Functions: map[string]Export{"f": Constructor(func() tally { return tally{} })}}
	if err := ok.Check(); err != nil {
		t.Errorf("valid plugin: %v", err)
	}
}

func TestMetadataListsEveryFunction(t *testing.T) {
	p := Plugin{
		Name:         "geo",
		Functions:    map[string]Export{"b": Singleton(tally{}), "a": Singleton(tally{})},
		About:        About{Author: Author{Name: "Jane"}, Description: map[string]string{"en_US": "Geo"}},
		FunctionHelp: map[string]FunctionHelp{"a": {Example: "a(x)", Hint: map[string]string{"en_US": "A"}}},
	}
	var m struct {
		About struct {
			Trial  bool
			Author struct{ Name string }
		}
		Functions []struct {
			Name, Example string
			Hint          map[string]string
		}
	}
	if err := json.Unmarshal(p.Metadata(), &m); err != nil {
		t.Fatal(err)
	}
	if m.About.Author.Name != "Jane" || len(m.Functions) != 2 || m.Functions[0].Name != "a" || m.Functions[0].Example != "a(x)" ||
		m.Functions[1].Name != "b" || m.Functions[1].Example != "" {
		t.Fatalf("metadata %s", p.Metadata())
	}
	if printMetadata(p, nil) || printMetadata(p, []string{"x"}) {
		t.Fatal("only --metadata prints the metadata")
	}
}

// flaky is a source that goes past problems: each Read takes the next step of
// its script and reports exceptions on the way.
type flaky struct{ step int }

func (f *flaky) Open(ctx StreamContext, _ string, _ map[string]any) error {
	ctx.ReportException("opened without a header")
	return nil
}

func (f *flaky) Read(ctx StreamContext, max int) ([]Record, error) {
	f.step++
	switch f.step {
	case 1: // records and an exception
		ctx.ReportException("line 2: malformed")
		return []Record{{Fields: map[string]any{"n": 1}}}, nil
	case 2: // an exception and no record
		ctx.ReportException("line 3: too long")
		return nil, nil
	case 3: // a flood: only the newest 64 go
		for i := range 100 {
			ctx.ReportException(fmt.Sprintf("line %d: malformed", 4+i))
		}
		return nil, nil
	case 4:
		return []Record{{Fields: map[string]any{"n": 2}}}, nil
	}
	select {
	case <-ctx.Done():
	case <-time.After(20 * time.Millisecond):
	}
	return nil, nil
}

func (f *flaky) Close(StreamContext) error { return nil }

// grumbler is a function and a sink that report an exception per call.
type grumbler struct{}

func (grumbler) Validate([]ArgSpec) error { return nil }
func (grumbler) IsAggregate() bool        { return false }
func (grumbler) Exec(args []any, ctx FunctionContext) (any, bool) {
	ctx.ReportException(fmt.Sprintf("odd row %v", args[0]))
	return args[0], true
}
func (grumbler) Open(StreamContext, map[string]any) error { return nil }
func (grumbler) Collect(ctx StreamContext, records []Record) error {
	ctx.ReportException(fmt.Sprintf("odd batch of %d", len(records)))
	return nil
}
func (grumbler) Close(StreamContext) error { return nil }

func TestSourceExceptionsTravelInRecordBatches(t *testing.T) {
	s := start(t, Plugin{Name: "flaky", Source: Constructor(func() *flaky { return &flaky{} })})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := pb.NewSourceClient(s.conn)
	if _, err := src.Open(ctx, &pb.OpenSourceRequest{Instance: spec("r1/source", "flaky")}); err != nil {
		t.Fatal(err)
	}
	read, err := src.Read(ctx, &pb.ReadRequest{InstanceId: "r1/source", MaxBatch: 10})
	if err != nil {
		t.Fatal(err)
	}
	var flood []string
	for i := range 100 {
		flood = append(flood, fmt.Sprintf("line %d: malformed", 4+i))
	}
	want := []struct {
		records    []int64
		exceptions []string
	}{
		// The exception reported in Open goes with the first batch.
		{[]int64{1}, []string{"opened without a header", "line 2: malformed"}},
		// A batch is sent for exceptions alone.
		{nil, []string{"line 3: too long"}},
		// At most 64 wait for a batch: the oldest are dropped.
		{nil, flood[len(flood)-64:]},
		{[]int64{2}, nil},
	}
	for i, w := range want {
		b, err := read.Recv()
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		var records []int64
		for _, r := range b.GetRecords() {
			records = append(records, r.GetFields()["n"].GetInt())
		}
		if !reflect.DeepEqual(records, w.records) || !reflect.DeepEqual(b.GetExceptions(), w.exceptions) {
			t.Fatalf("batch %d: records %v exceptions %q, want %v %q", i, records, b.GetExceptions(), w.records, w.exceptions)
		}
		if b.Offset != nil || len(b.GetMutations()) != 0 {
			t.Fatalf("batch %d: %v", i, b)
		}
	}
	if _, err := src.Close(ctx, &pb.CloseRequest{InstanceId: "r1/source"}); err != nil {
		t.Fatal(err)
	}
	// Nothing else was sent: the idle reads had nothing to report.
	if b, err := read.Recv(); err != io.EOF {
		t.Fatalf("after the script: %v %v", b, err)
	}
}

func TestFunctionAndSinkExceptionsAreLogged(t *testing.T) {
	var buf bytes.Buffer
	logMu.Lock()
	old := logOut
	logOut = &buf
	logMu.Unlock()
	defer func() {
		logMu.Lock()
		logOut = old
		logMu.Unlock()
	}()
	s := start(t, Plugin{Name: "grumbler", Functions: map[string]Export{"grumble": Singleton(grumbler{})}, Sink: Singleton(grumbler{})})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	fn := pb.NewFunctionClient(s.conn)
	if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: spec("r1/op_1", "grumble")}); err != nil {
		t.Fatal(err)
	}
	exec, err := fn.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	must(t, exec.Send(&pb.ExecBatch{InstanceId: "r1/op_1", Seq: 1, Rows: []*pb.ArgRow{row("a"), row("b")}}))
	res, err := exec.Recv()
	if err != nil || len(res.GetResults()) != 2 || res.GetResults()[1].GetValue().GetString_() != "b" {
		t.Fatalf("ExecResult: %v %v", res, err)
	}
	snk := pb.NewSinkClient(s.conn)
	if _, err := snk.Open(ctx, &pb.OpenSinkRequest{Instance: spec("r1/sink_0", "grumbler")}); err != nil {
		t.Fatal(err)
	}
	write, err := snk.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	must(t, write.Send(&pb.WriteBatch{InstanceId: "r1/sink_0", Seq: 0, Records: []*pb.Record{{}, {}, {}}}))
	if ack, err := write.Recv(); err != nil || ack.GetError() != "" {
		t.Fatalf("ack: %v %v", ack, err)
	}

	// The answers above were built after the logging.
	logMu.Lock()
	out := buf.String()
	logMu.Unlock()
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "rule=r1 ") {
			lines = append(lines, l)
		}
	}
	wantEnds := []string{
		"rule=r1 instance=r1/op_1: odd row a",
		"rule=r1 instance=r1/op_1: odd row b",
		"rule=r1 instance=r1/sink_0: odd batch of 3",
	}
	if len(lines) != len(wantEnds) {
		t.Fatalf("log lines %q", lines)
	}
	for i, l := range lines {
		if !strings.Contains(l[:48], "WARN") || !strings.HasSuffix(l, wantEnds[i]) {
			t.Errorf("line %q, want WARN and the suffix %q", l, wantEnds[i])
		}
	}
}

// bytesSink is a PayloadSink: it keeps the payloads it accepts, refuses those
// containing "bad" one by one, and reports per-record results from Collect
// as well (the fallback for batches of records).
type bytesSink struct {
	mu       sync.Mutex
	payloads []string
	records  int
}

func (b *bytesSink) Open(StreamContext, map[string]any) error { return nil }
func (b *bytesSink) Close(StreamContext) error                { return nil }
func (b *bytesSink) Collect(_ StreamContext, records []Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.records += len(records)
	errs := make(ItemErrors, len(records))
	for i, r := range records {
		if r.Fields["bad"] == true {
			errs[i] = errors.New("bad record")
		}
	}
	return errs
}
func (b *bytesSink) CollectPayloads(ctx StreamContext, payloads [][]byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(payloads) == 1 && string(payloads[0]) == "short" {
		return fmt.Errorf("wrapped: %w", ItemErrors{nil, nil})
	}
	if len(payloads) == 1 && string(payloads[0]) == "all" {
		return errors.New("the whole batch failed")
	}
	errs := make(ItemErrors, len(payloads))
	for i, p := range payloads {
		if bytes.Contains(p, []byte("bad")) {
			errs[i] = fmt.Errorf("refused %s", p)
			continue
		}
		b.payloads = append(b.payloads, string(p))
	}
	if err := ctx.IncrCounter("payloads", len(payloads)); err != nil {
		return err
	}
	return fmt.Errorf("collect: %w", errs)
}

func TestPayloadSinkGetsPayloadsAndAcksItems(t *testing.T) {
	sink := &bytesSink{}
	s := start(t, Plugin{Name: "bytes", Sink: Singleton(sink)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snk := pb.NewSinkClient(s.conn)
	so, err := snk.Open(ctx, &pb.OpenSinkRequest{Instance: spec("r1/sink_0", "bytes")})
	if err != nil || !so.GetWantsPayloads() || so.GetTransactional() {
		t.Fatalf("a PayloadSink asks for payloads: %v %v", so, err)
	}
	write, err := snk.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(b *pb.WriteBatch) *pb.WriteAck {
		t.Helper()
		b.InstanceId = "r1/sink_0"
		must(t, write.Send(b))
		ack, err := write.Recv()
		if err != nil || ack.GetSeq() != b.GetSeq() {
			t.Fatalf("ack %v, %v", ack, err)
		}
		return ack
	}

	// Per-item results: "" for each delivered payload, the error for the others.
	ack := send(&pb.WriteBatch{Seq: 1, Payloads: [][]byte{[]byte(`[{"a":1}]`), []byte(`{"bad":1}`), []byte(`{"a":3}`)}})
	if ack.GetError() != "" || !reflect.DeepEqual(ack.GetItemErrors(), []string{"", `refused {"bad":1}`, ""}) {
		t.Fatalf("ack %v", ack)
	}
	if len(ack.GetMutations()) != 1 || ack.GetMutations()[0].GetCounter() != 3 {
		t.Fatalf("the batch's mutations ship with its ack: %v", ack.GetMutations())
	}
	if fmt.Sprint(sink.payloads) != `[[{"a":1}] {"a":3}]` {
		t.Fatalf("payloads %v", sink.payloads)
	}
	// A plain error fails the whole batch; no item results then.
	ack = send(&pb.WriteBatch{Seq: 2, Payloads: [][]byte{[]byte("all")}})
	if ack.GetError() != "the whole batch failed" || ack.GetItemErrors() != nil {
		t.Fatalf("ack %v", ack)
	}
	// Item results that do not match the batch fail it, saying why.
	ack = send(&pb.WriteBatch{Seq: 3, Payloads: [][]byte{[]byte("short")}})
	if ack.GetError() != "the sink reported 2 item results for a batch of 1 items" || ack.GetItemErrors() != nil {
		t.Fatalf("ack %v", ack)
	}
	// Records (from a supervisor that predates payloads) go to Collect, whose
	// per-item results travel the same way.
	rec := func(fields map[string]any) *pb.Record { r, _ := recordToPB(Record{Fields: fields}); return r }
	ack = send(&pb.WriteBatch{Seq: 4, Records: []*pb.Record{rec(map[string]any{"bad": true}), rec(map[string]any{"a": 1})}})
	if ack.GetError() != "" || !reflect.DeepEqual(ack.GetItemErrors(), []string{"bad record", ""}) || sink.records != 2 {
		t.Fatalf("ack %v, %d records", ack, sink.records)
	}
	// An empty batch is an empty payload batch.
	ack = send(&pb.WriteBatch{Seq: 5})
	if ack.GetError() != "" || len(ack.GetItemErrors()) != 0 || sink.records != 2 {
		t.Fatalf("ack %v", ack)
	}
}

func TestARecordSinkDoesNotAskForPayloads(t *testing.T) {
	s := start(t, Plugin{Name: "recs", Sink: Constructor(func() *memorySink { return &memorySink{} })})
	so, err := pb.NewSinkClient(s.conn).Open(context.Background(), &pb.OpenSinkRequest{Instance: spec("r1/sink_0", "recs")})
	if err != nil || so.GetWantsPayloads() {
		t.Fatalf("Open: %v %v", so, err)
	}
}

func TestItemErrorsText(t *testing.T) {
	if got := (ItemErrors{nil, errors.New("full"), nil, errors.New("refused")}).Error(); got != "2 of 4 items failed: item 1: full; item 3: refused" {
		t.Errorf("got %q", got)
	}
	if got := (ItemErrors{nil}).Error(); got != "all 1 items delivered" {
		t.Errorf("got %q", got)
	}
}

// ---------------------------------------------------------------------------
// Columnar (Arrow IPC) batches
// ---------------------------------------------------------------------------

// cecho is a ColumnFunction that echoes its argument array and counts its
// batches in state; without arguments it answers a null per row. It notes
// what each call got, to tell which of its two methods ran.
type cecho struct {
	mu  sync.Mutex
	got []string
}

func (*cecho) Validate([]ArgSpec) error { return nil }
func (*cecho) IsAggregate() bool        { return false }
func (c *cecho) Exec(args []any, _ FunctionContext) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, fmt.Sprintf("row %v", args))
	return args[0], true
}
func (c *cecho) ExecColumns(args []arrow.Array, rows int, ctx FunctionContext) (arrow.Array, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var types []string
	for _, a := range args {
		types = append(types, a.DataType().String())
	}
	c.got = append(c.got, fmt.Sprintf("columns %d %v", rows, types))
	if err := ctx.IncrCounter("batches", 1); err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return array.NewNull(rows), nil
	}
	args[0].Retain() // the SDK releases both the arguments and the answer
	return args[0], nil
}

func (c *cecho) calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// cdouble doubles int64s column by column. Its inputs pick the ways a
// columnar call can go wrong: a negative fails that row (RowErrors, with a
// value left in the array, which the SDK must null), 13 fails the batch, 99
// answers too few values, 7 answers too few row errors, 666 panics.
type cdouble struct{}

func (cdouble) Validate([]ArgSpec) error { return nil }
func (cdouble) IsAggregate() bool        { return false }
func (cdouble) Exec([]any, FunctionContext) (any, bool) {
	return "rows are not expected here", false
}
func (cdouble) ExecColumns(args []arrow.Array, rows int, _ FunctionContext) (arrow.Array, error) {
	in, ok := args[0].(*array.Int64)
	if !ok {
		return nil, fmt.Errorf("cdouble expects int64, got %s", args[0].DataType())
	}
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	errs := make(RowErrors, rows)
	for i := range rows {
		if in.IsNull(i) {
			b.AppendNull()
			continue
		}
		switch x := in.Value(i); {
		case x == 13:
			return nil, errors.New("unlucky batch")
		case x == 99:
			b.Append(x)
			return b.NewArray(), nil
		case x == 7:
			return b.NewArray(), RowErrors{nil}
		case x == 666:
			panic("boom")
		case x < 0:
			errs[i] = fmt.Errorf("negative: %d", x)
			b.Append(x)
		default:
			b.Append(2 * x)
		}
	}
	return b.NewArray(), fmt.Errorf("cdouble: %w", errs)
}

// recorder is a row function that keeps the arguments it gets and returns
// them as a list.
type recorder struct {
	mu   sync.Mutex
	seen [][]any
}

func (*recorder) Validate([]ArgSpec) error { return nil }
func (*recorder) IsAggregate() bool        { return false }
func (r *recorder) Exec(args []any, _ FunctionContext) (any, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, args)
	return args, true
}

func (r *recorder) take() [][]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := r.seen
	r.seen = nil
	return seen
}

// column builds an array of type dt; nil values are nulls.
func column(t *testing.T, dt arrow.DataType, vals ...any) arrow.Array {
	t.Helper()
	b := array.NewBuilder(memory.DefaultAllocator, dt)
	defer b.Release()
	for _, v := range vals {
		if v == nil {
			b.AppendNull()
			continue
		}
		switch b := b.(type) {
		case *array.BooleanBuilder:
			b.Append(v.(bool))
		case *array.Int64Builder:
			b.Append(v.(int64))
		case *array.Uint64Builder:
			b.Append(v.(uint64))
		case *array.Float64Builder:
			b.Append(v.(float64))
		case *array.StringBuilder:
			b.Append(v.(string))
		case *array.BinaryBuilder:
			b.Append(v.([]byte))
		case *array.Date32Builder:
			b.Append(arrow.Date32(v.(int)))
		default:
			t.Fatalf("column: no case for %T", b)
		}
	}
	return b.NewArray()
}

// argMessages encodes argument columns as the supervisor does: columns "0",
// "1", … and rows rows, as the Schema message and the RecordBatch message of
// an IPC stream. They come from arrow-go's stream writer, split at the
// message boundary, so that the SDK's own encoder is not what checks it.
func argMessages(t *testing.T, rows int, cols ...arrow.Array) (schema, batch []byte) {
	t.Helper()
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = arrow.Field{Name: strconv.Itoa(i), Type: c.DataType(), Nullable: true}
	}
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(rows))
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()))
	must(t, w.Write(rec))
	stream := slices.Clone(buf.Bytes())
	must(t, w.Close())
	// An encapsulated message: the continuation marker, the metadata's
	// length, the metadata; a Schema message has no body.
	if binary.LittleEndian.Uint32(stream) != 0xFFFFFFFF {
		t.Fatalf("no continuation marker: % x", stream[:8])
	}
	n := 8 + int(binary.LittleEndian.Uint32(stream[4:]))
	return stream[:n], stream[n:]
}

// columnarBatch is a columnar ExecBatch; withSchema says whether it carries
// its schema.
func columnarBatch(t *testing.T, id string, seq uint64, withSchema bool, rows int, cols ...arrow.Array) *pb.ExecBatch {
	t.Helper()
	schema, batch := argMessages(t, rows, cols...)
	b := &pb.ExecBatch{InstanceId: id, Seq: seq, Arrow: batch}
	if withSchema {
		b.ArrowSchema = schema
	}
	return b
}

// answers reads the columnar answers of one stream as the supervisor does,
// keeping the last schema the plugin sent on it.
type answers struct{ schema []byte }

// column decodes res's "result" column, to be released by the caller.
func (a *answers) column(t *testing.T, res *pb.ExecResult) arrow.Array {
	t.Helper()
	if len(res.GetArrow()) == 0 || len(res.GetResults()) != 0 {
		t.Fatalf("expected a columnar answer: %v", res)
	}
	if len(res.GetArrowSchema()) > 0 {
		a.schema = res.GetArrowSchema()
	}
	r, err := ipc.NewReader(bytes.NewReader(append(slices.Clone(a.schema), res.GetArrow()...)))
	if err != nil {
		t.Fatalf("answer schema: %v", err)
	}
	defer r.Release()
	if !r.Next() {
		t.Fatalf("no record batch in the answer: %v", r.Err())
	}
	rec := r.RecordBatch()
	if rec.NumCols() != 1 || rec.ColumnName(0) != "result" {
		t.Fatalf("answer schema %v", rec.Schema())
	}
	col := rec.Column(0)
	col.Retain()
	return col
}

func counterMutation(key string, n int64) []*pb.StateMutation {
	return []*pb.StateMutation{{Key: key, Op: &pb.StateMutation_Counter{Counter: n}}}
}

func rowErrors(msg string, rows int) []*pb.RowResult {
	out := make([]*pb.RowResult, rows)
	for i := range out {
		out[i] = rowError(msg)
	}
	return out
}

func TestColumnarBatches(t *testing.T) {
	echo, rec := &cecho{}, &recorder{}
	s := start(t, Plugin{Name: "cols", Functions: map[string]Export{
		"cecho":    Singleton(echo),
		"cdouble":  Constructor(func() cdouble { return cdouble{} }),
		"tally":    Constructor(func() tally { return tally{} }),
		"recorder": Singleton(rec),
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	desc, err := pb.NewPluginClient(s.conn).Describe(ctx, &pb.DescribeRequest{})
	if err != nil || !slices.Equal(desc.GetEncodings(), []pb.Encoding{pb.Encoding_ENCODING_ARROW_IPC}) {
		t.Fatalf("Describe must list the Arrow encoding: %v %v", desc.GetEncodings(), err)
	}
	fn := pb.NewFunctionClient(s.conn)
	for _, sym := range []string{"cecho", "cdouble", "tally", "recorder"} {
		if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: spec("r1/"+sym, sym)}); err != nil {
			t.Fatal(err)
		}
	}
	exec, err := fn.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	call := func(b *pb.ExecBatch) *pb.ExecResult {
		t.Helper()
		must(t, exec.Send(b))
		res, err := exec.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetSeq() != b.GetSeq() {
			t.Fatalf("answered batch %d with %d", b.GetSeq(), res.GetSeq())
		}
		return res
	}
	var ans answers
	// expectColumn checks a columnar answer: the column's type and text,
	// whether it came with its schema, and the mutations.
	expectColumn := func(res *pb.ExecResult, typ, text string, withSchema bool, mutations []*pb.StateMutation) {
		t.Helper()
		col := ans.column(t, res)
		defer col.Release()
		if col.DataType().String() != typ || fmt.Sprint(col) != text {
			t.Errorf("answer %d: %s %v, want %s %s", res.GetSeq(), col.DataType(), col, typ, text)
		}
		if got := len(res.GetArrowSchema()) > 0; got != withSchema {
			t.Errorf("answer %d carries a schema: %v, want %v", res.GetSeq(), got, withSchema)
		}
		if !protoEqualMutations(res.GetMutations(), mutations) {
			t.Errorf("answer %d mutations %v, want %v", res.GetSeq(), res.GetMutations(), mutations)
		}
	}

	// A ColumnFunction gets the arrays and answers in columns, with its
	// mutations; the schema comes once per stream and direction.
	res := call(columnarBatch(t, "r1/cecho", 0, true, 3, column(t, arrow.PrimitiveTypes.Int64, int64(1), nil, int64(3))))
	expectColumn(res, "int64", "[1 (null) 3]", true, counterMutation("batches", 1))
	res = call(columnarBatch(t, "r1/cecho", 1, false, 2, column(t, arrow.PrimitiveTypes.Int64, int64(4), int64(5))))
	expectColumn(res, "int64", "[4 5]", false, counterMutation("batches", 2))
	// The schema changes mid-stream, in both directions.
	res = call(columnarBatch(t, "r1/cecho", 2, true, 2, column(t, arrow.BinaryTypes.String, "a", nil)))
	expectColumn(res, "utf8", `["a" (null)]`, true, counterMutation("batches", 3))
	res = call(columnarBatch(t, "r1/cecho", 3, false, 1, column(t, arrow.BinaryTypes.String, "b")))
	expectColumn(res, "utf8", `["b"]`, false, counterMutation("batches", 4))
	// Rows still go to Exec, and are answered in rows.
	res = call(&pb.ExecBatch{InstanceId: "r1/cecho", Seq: 4, Rows: []*pb.ArgRow{row("x")}})
	if len(res.GetArrow()) != 0 || len(res.GetResults()) != 1 || res.GetResults()[0].GetValue().GetString_() != "x" {
		t.Fatalf("row batch to a ColumnFunction: %v", res)
	}
	// No arguments: no columns, the row count in the batch.
	res = call(columnarBatch(t, "r1/cecho", 5, true, 3))
	expectColumn(res, "null", "[(null) (null) (null)]", true, counterMutation("batches", 5))
	// A type Oort does not carry back fails the batch's rows.
	res = call(columnarBatch(t, "r1/cecho", 6, true, 2, column(t, arrow.FixedWidthTypes.Date32, 1, 2)))
	if want := rowErrors("cecho returned an Arrow date32 array, which Oort cannot carry", 2); !equalResults(res.GetResults(), want) || len(res.GetArrow()) != 0 {
		t.Fatalf("uncarried type: %v", res)
	}
	// An empty batch calls nothing.
	res = call(columnarBatch(t, "r1/cecho", 7, true, 0, column(t, arrow.PrimitiveTypes.Int64)))
	if len(res.GetResults()) != 0 || len(res.GetArrow()) != 0 || len(res.GetMutations()) != 0 {
		t.Fatalf("empty batch: %v", res)
	}
	wantCalls := []string{"columns 3 [int64]", "columns 2 [int64]", "columns 2 [utf8]", "columns 1 [utf8]", "row [x]", "columns 3 []", "columns 2 [date32]"}
	if got := echo.calls(); !reflect.DeepEqual(got, wantCalls) {
		t.Fatalf("cecho calls\n got %q\nwant %q", got, wantCalls)
	}

	// Row errors: failed rows are null in the column and listed in errors.
	res = call(columnarBatch(t, "r1/cdouble", 0, false, 4, column(t, arrow.PrimitiveTypes.Int64, int64(1), int64(-2), nil, int64(3))))
	// The last schema sent on this stream was the null column's.
	expectColumn(res, "int64", "[2 (null) (null) 6]", true, nil)
	if len(res.GetErrors()) != 1 || res.GetErrors()[0].GetRow() != 1 || res.GetErrors()[0].GetMessage() != "negative: -2" {
		t.Fatalf("row errors: %v", res.GetErrors())
	}
	// The ways a whole batch fails: an error, a wrong length, a panic.
	for i, c := range []struct {
		in   []any
		want string
	}{
		{[]any{int64(13), int64(1)}, "unlucky batch"},
		{[]any{int64(99), int64(1)}, "cdouble returned 1 values for a batch of 2 rows"},
		{[]any{int64(7), int64(1)}, "cdouble reported 1 row errors for a batch of 2 rows"},
		{[]any{int64(666)}, "cdouble panicked: boom"},
		{[]any{"x"}, "cdouble expects int64, got utf8"},
	} {
		seq := uint64(1 + i)
		var b *pb.ExecBatch
		if s, ok := c.in[0].(string); ok {
			b = columnarBatch(t, "r1/cdouble", seq, true, 1, column(t, arrow.BinaryTypes.String, s))
		} else {
			b = columnarBatch(t, "r1/cdouble", seq, true, len(c.in), column(t, arrow.PrimitiveTypes.Int64, c.in...))
		}
		res := call(b)
		if !equalResults(res.GetResults(), rowErrors(c.want, len(c.in))) || len(res.GetArrow()) != 0 || len(res.GetErrors()) != 0 {
			t.Errorf("batch %v: %v", c.in, res)
		}
	}

	// A row function gets rows from columns, answers in rows, and its
	// mutations still travel with the batch.
	res = call(columnarBatch(t, "r1/tally", 0, true, 3, column(t, arrow.BinaryTypes.String, "a", "bad", "b")))
	wantRes := &pb.ExecResult{
		Seq: 0,
		Results: []*pb.RowResult{
			{Outcome: &pb.RowResult_Value{Value: intValue(1)}},
			{Outcome: &pb.RowResult_Error{Error: "bad row"}},
			{Outcome: &pb.RowResult_Value{Value: intValue(2)}},
		},
		Mutations: counterMutation("n", 2),
	}
	if !proto.Equal(res, wantRes) {
		t.Fatalf("row function, columnar batch:\n got %v\nwant %v", res, wantRes)
	}
	res = call(columnarBatch(t, "r1/tally", 1, true, 1, column(t, arrow.FixedWidthTypes.Date32, 1)))
	if !equalResults(res.GetResults(), rowErrors("tally: argument 0 arrived as an Arrow date32 column, which the SDK cannot read", 1)) {
		t.Fatalf("unreadable column type: %v", res)
	}

	// A row function cannot tell the encodings apart: the same values give
	// the same Go values and the same answers.
	big := uint64(1)<<63 + 5
	cols := []arrow.Array{
		column(t, arrow.PrimitiveTypes.Int64, int64(1), int64(-5), nil, int64(math.MaxInt64)),
		column(t, arrow.PrimitiveTypes.Uint64, big, uint64(0), nil, uint64(math.MaxUint64)),
		column(t, arrow.PrimitiveTypes.Float64, 1.5, math.Copysign(0, -1), nil, math.Inf(-1)),
		column(t, arrow.BinaryTypes.String, "a", "", nil, "é€"),
		column(t, arrow.BinaryTypes.Binary, []byte{0, 255}, []byte{}, nil, []byte("x")),
		column(t, arrow.FixedWidthTypes.Boolean, true, false, nil, true),
		array.NewNull(4),
	}
	var rows []*pb.ArgRow
	for i := range 4 {
		var args []any
		for _, c := range cols {
			args = append(args, goValueForRow(c, i))
		}
		rows = append(rows, row(args...))
	}
	fromRows := call(&pb.ExecBatch{InstanceId: "r1/recorder", Seq: 0, Rows: rows})
	seenRows := rec.take()
	fromCols := call(columnarBatch(t, "r1/recorder", 1, true, 4, cols...))
	seenCols := rec.take()
	if len(seenRows) != 4 || !reflect.DeepEqual(seenRows, seenCols) {
		t.Fatalf("Exec args differ:\nrows    %#v\ncolumns %#v", seenRows, seenCols)
	}
	if seenCols[0][1] != big || seenCols[1][4] == nil || len(seenCols[1][4].([]byte)) != 0 || seenCols[2][0] != nil ||
		!math.Signbit(seenCols[1][2].(float64)) {
		t.Fatalf("values %#v", seenCols)
	}
	if !equalResults(fromRows.GetResults(), fromCols.GetResults()) || len(fromCols.GetArrow()) != 0 {
		t.Fatalf("answers differ:\nrows    %v\ncolumns %v", fromRows, fromCols)
	}
	// A function without arguments gets empty argument lists, one per row.
	fromCols = call(columnarBatch(t, "r1/recorder", 2, true, 2))
	if seen := rec.take(); !reflect.DeepEqual(seen, [][]any{{}, {}}) || len(fromCols.GetResults()) != 2 {
		t.Fatalf("zero arguments: %#v %v", seen, fromCols)
	}
}

// goValueForRow is the value a test column holds at row i, read with
// arrow-go's typed accessors.
func goValueForRow(c arrow.Array, i int) any {
	if c.IsNull(i) {
		return nil
	}
	switch a := c.(type) {
	case *array.Int64:
		return a.Value(i)
	case *array.Uint64:
		return a.Value(i)
	case *array.Float64:
		return a.Value(i)
	case *array.String:
		return a.Value(i)
	case *array.Binary:
		return a.Value(i)
	case *array.Boolean:
		return a.Value(i)
	}
	return nil
}

func equalResults(a, b []*pb.RowResult) bool {
	return slices.EqualFunc(a, b, func(x, y *pb.RowResult) bool { return proto.Equal(x, y) })
}

func protoEqualMutations(a, b []*pb.StateMutation) bool {
	return slices.EqualFunc(a, b, func(x, y *pb.StateMutation) bool { return proto.Equal(x, y) })
}

func TestColumnarSchemasArePerStream(t *testing.T) {
	s := start(t, Plugin{Name: "cols", Functions: map[string]Export{"cecho": Singleton(&cecho{})}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fn := pb.NewFunctionClient(s.conn)
	if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: spec("r1/e", "cecho")}); err != nil {
		t.Fatal(err)
	}
	open := func() pb.Function_ExecClient {
		t.Helper()
		exec, err := fn.Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return exec
	}
	call := func(exec pb.Function_ExecClient, b *pb.ExecBatch) (*pb.ExecResult, error) {
		t.Helper()
		must(t, exec.Send(b))
		return exec.Recv()
	}
	ints := func() arrow.Array { return column(t, arrow.PrimitiveTypes.Int64, int64(1)) }

	a := open()
	res, err := call(a, columnarBatch(t, "r1/e", 0, true, 1, ints()))
	if err != nil || len(res.GetArrowSchema()) == 0 {
		t.Fatalf("first answer on a stream carries its schema: %v %v", res, err)
	}
	// A second stream knows no schema yet: a batch without one is unreadable.
	b := open()
	_, err = call(b, columnarBatch(t, "r1/e", 1, false, 1, ints()))
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "no Arrow schema has arrived on this stream") {
		t.Fatalf("batch without a schema on a new stream: %v", err)
	}
	// A third stream gets the answer's schema again, although the first
	// stream was sent the same one.
	c := open()
	res, err = call(c, columnarBatch(t, "r1/e", 2, true, 1, ints()))
	if err != nil || len(res.GetArrowSchema()) == 0 {
		t.Fatalf("first answer on the third stream: %v %v", res, err)
	}
	// The first stream kept its schemas in both directions.
	res, err = call(a, columnarBatch(t, "r1/e", 3, false, 1, ints()))
	if err != nil || len(res.GetArrowSchema()) != 0 || len(res.GetArrow()) == 0 {
		t.Fatalf("later answer on the first stream: %v %v", res, err)
	}
	// Garbage ends the stream with an error: no answer can count its rows.
	_, err = call(c, &pb.ExecBatch{InstanceId: "r1/e", Seq: 4, Arrow: []byte("not arrow")})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "unreadable Arrow columns") {
		t.Fatalf("garbage: %v", err)
	}
}

func TestNullRowsKeepsTheOffset(t *testing.T) {
	all := column(t, arrow.PrimitiveTypes.Int64, int64(1), int64(2), nil, int64(4), int64(5))
	sliced := array.NewSlice(all, 1, 5) // [2 (null) 4 5]
	out := nullRows(sliced, RowErrors{nil, nil, errors.New("x"), nil})
	if got := fmt.Sprint(out); got != "[2 (null) (null) 5]" {
		t.Fatalf("got %s", got)
	}
	if got := fmt.Sprint(sliced); got != "[2 (null) 4 5]" {
		t.Fatalf("the input changed: %s", got)
	}
	if got := (RowErrors{nil, errors.New("negative")}).Error(); got != "1 of 2 rows failed: row 1: negative" {
		t.Errorf("RowErrors text %q", got)
	}
}

func TestGoValueReadsNestedColumns(t *testing.T) {
	lb := array.NewListBuilder(memory.DefaultAllocator, arrow.PrimitiveTypes.Int32)
	defer lb.Release()
	vb := lb.ValueBuilder().(*array.Int32Builder)
	lb.Append(true)
	vb.Append(1)
	vb.AppendNull()
	lb.Append(true)
	lb.AppendNull()
	list := lb.NewArray()
	st, err := array.NewStructArray([]arrow.Array{list, column(t, arrow.BinaryTypes.String, "a", "b", nil)}, []string{"l", "s"})
	if err != nil {
		t.Fatal(err)
	}
	if !carried(st.DataType()) || carried(arrow.FixedWidthTypes.Date32) || carried(arrow.ListOf(arrow.FixedWidthTypes.Date32)) {
		t.Fatal("carried")
	}
	got := []any{goValue(st, 0), goValue(st, 1), goValue(st, 2)}
	want := []any{
		map[string]any{"l": []any{int64(1), nil}, "s": "a"},
		map[string]any{"l": []any{}, "s": "b"},
		map[string]any{"l": nil, "s": nil},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
}

// numbering is a function that numbers the rows it sees, per object: two
// instances that shared one object would continue each other's count.
type numbering struct{ n atomic.Int64 }

func (*numbering) Validate([]ArgSpec) error { return nil }
func (*numbering) IsAggregate() bool        { return false }
func (f *numbering) Exec([]any, FunctionContext) (any, bool) {
	return f.n.Add(1), true
}

func TestExportStyles(t *testing.T) {
	newNumbering := func() *numbering { return &numbering{} }
	for _, c := range []struct {
		name                         string
		e                            Export
		set, singleton, sharesObject bool
	}{
		{"Constructor", Constructor(newNumbering), true, false, false},
		{"Singleton", Singleton(newNumbering()), true, true, true},
		{"Shared", Shared(newNumbering), true, true, false},
		{"Shared(nil)", Shared[*numbering](nil), false, false, false},
	} {
		if c.e.IsSet() != c.set || c.e.IsSingleton() != c.singleton || c.e.SharesObject() != c.sharesObject {
			t.Errorf("%s: IsSet %v IsSingleton %v SharesObject %v, want %v %v %v", c.name,
				c.e.IsSet(), c.e.IsSingleton(), c.e.SharesObject(), c.set, c.singleton, c.sharesObject)
		}
	}
	err := Plugin{Name: "p", Functions: map[string]Export{"f": Shared(func() int { return 1 })}}.Check()
	if want := `function "f" is a int, which does not implement oort.Function (missing method Exec)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Check() = %v, want it to contain %q", err, want)
	}
	err = Plugin{Name: "p", Functions: map[string]Export{"g": {}}}.Check()
	if want := "use oort.Constructor, oort.Singleton or oort.Shared"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Check() = %v, want it to contain %q", err, want)
	}
}

// A Shared symbol is described as a singleton (one process for every rule),
// yet each instance opened on that one process gets an object of its own.
func TestSharedExportMakesAnObjectPerInstance(t *testing.T) {
	var mu sync.Mutex
	var sinks []*memorySink
	plugin := Plugin{
		Name:      "shared",
		Functions: map[string]Export{"number": Shared(func() *numbering { return &numbering{} })},
		Source:    Shared(func() *counting { return &counting{} }),
		Sink: Shared(func() *memorySink {
			mu.Lock()
			defer mu.Unlock()
			m := &memorySink{}
			sinks = append(sinks, m)
			return m
		}),
	}
	s := start(t, plugin)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	desc, err := pb.NewPluginClient(s.conn).Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []*pb.Symbol{
		{Kind: pb.Kind_KIND_FUNCTION, Name: "number", Mode: pb.ExportMode_EXPORT_MODE_SINGLETON},
		{Kind: pb.Kind_KIND_SOURCE, Name: "shared", Mode: pb.ExportMode_EXPORT_MODE_SINGLETON},
		{Kind: pb.Kind_KIND_SINK, Name: "shared", Mode: pb.ExportMode_EXPORT_MODE_SINGLETON},
	}
	if len(desc.GetSymbols()) != len(want) {
		t.Fatalf("Describe symbols %v", desc.GetSymbols())
	}
	for i, sym := range desc.GetSymbols() {
		if !proto.Equal(sym, want[i]) {
			t.Fatalf("Describe symbol %d:\n got %v\nwant %v", i, sym, want[i])
		}
	}

	// Functions: each instance numbers its own rows.
	fn := pb.NewFunctionClient(s.conn)
	for _, id := range []string{"r1/f", "r2/f"} {
		if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: spec(id, "number")}); err != nil {
			t.Fatal(err)
		}
	}
	exec, err := fn.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	numbers := func(id string, seq uint64, rows int) []int64 {
		t.Helper()
		b := &pb.ExecBatch{InstanceId: id, Seq: seq}
		for range rows {
			b.Rows = append(b.Rows, row(0))
		}
		must(t, exec.Send(b))
		res, err := exec.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, r := range res.GetResults() {
			out = append(out, r.GetValue().GetInt())
		}
		return out
	}
	got := fmt.Sprint(numbers("r1/f", 0, 2), numbers("r2/f", 0, 1), numbers("r1/f", 1, 1))
	if got != "[1 2] [1] [3]" {
		t.Fatalf("numbers %s, want [1 2] [1] [3] (an object per instance)", got)
	}
	must(t, exec.CloseSend())

	// Sources: each instance reads its own records from the start.
	src := pb.NewSourceClient(s.conn)
	count, _ := toValue(3)
	for _, id := range []string{"r1/src", "r2/src"} {
		if _, err := src.Open(ctx, &pb.OpenSourceRequest{Instance: spec(id, "shared"), Props: map[string]*pb.Value{"count": count}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"r1/src", "r2/src"} {
		read, err := src.Read(ctx, &pb.ReadRequest{InstanceId: id, MaxBatch: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for len(got) < 3 {
			b, err := read.Recv()
			if err != nil {
				t.Fatalf("%s: %v after %v", id, err, got)
			}
			for _, r := range b.GetRecords() {
				got = append(got, r.GetFields()["n"].GetInt())
			}
		}
		if fmt.Sprint(got) != "[0 1 2]" {
			t.Fatalf("%s read %v, want [0 1 2]", id, got)
		}
		if _, err := src.Close(ctx, &pb.CloseRequest{InstanceId: id}); err != nil {
			t.Fatal(err)
		}
	}

	// Sinks: two instances, two objects, each with its own records.
	snk := pb.NewSinkClient(s.conn)
	mu.Lock()
	before := len(sinks) // Describe may have made probes
	mu.Unlock()
	for _, id := range []string{"r1/sink", "r2/sink"} {
		if _, err := snk.Open(ctx, &pb.OpenSinkRequest{Instance: spec(id, "shared")}); err != nil {
			t.Fatal(err)
		}
	}
	write, err := snk.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(n int) *pb.Record { r, _ := recordToPB(Record{Fields: map[string]any{"n": n}}); return r }
	for i, b := range []*pb.WriteBatch{
		{InstanceId: "r1/sink", Seq: 0, Records: []*pb.Record{rec(1)}},
		{InstanceId: "r2/sink", Seq: 0, Records: []*pb.Record{rec(2), rec(3)}},
	} {
		must(t, write.Send(b))
		if ack, err := write.Recv(); err != nil || ack.GetError() != "" {
			t.Fatalf("batch %d: %v %v", i, ack, err)
		}
	}
	mu.Lock()
	opened := sinks[before:]
	mu.Unlock()
	if len(opened) != 2 || opened[0] == opened[1] {
		t.Fatalf("%d sink objects made for two instances", len(opened))
	}
	held := func(m *memorySink) int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.records) }
	if held(opened[0]) != 1 || held(opened[1]) != 2 {
		t.Fatalf("sink objects hold %d and %d records, want 1 and 2", held(opened[0]), held(opened[1]))
	}
	for _, id := range []string{"r1/sink", "r2/sink"} {
		if _, err := snk.Close(ctx, &pb.CloseRequest{InstanceId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if !opened[0].closed.Load() || !opened[1].closed.Load() {
		t.Fatal("each sink object is closed with its instance")
	}
}
