package portable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/internal/compat"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/serve"
	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// The end-to-end tests run this test binary as the plugin: with
// childEnv set, TestMain calls Start instead of running the tests, the way a
// portable plugin's main does.
const childEnv = "OORT_PORTABLE_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "nofuncs":
		c := testConfig()
		c.Functions = nil
		Start(os.Args, c)
	default:
		Start(os.Args, testConfig())
	}
	// Start never returns; this is in case it ever does.
	os.Exit(3)
}

// seqSource sends {"src": name, "i": i} for i < count, then waits for Close.
type seqSource struct {
	name  string
	count int
}

func (s *seqSource) Configure(_ string, props map[string]interface{}) error {
	s.count = 3
	if n, ok := props["count"].(int); ok {
		s.count = n
	}
	return nil
}

func (s *seqSource) Open(ctx api.StreamContext, consumer chan<- api.SourceTuple, _ chan<- error) {
	for i := range s.count {
		select {
		case consumer <- api.NewDefaultSourceTuple(map[string]interface{}{"src": s.name, "i": i}, nil):
		case <-ctx.Done():
			return
		}
	}
	<-ctx.Done()
}

func (s *seqSource) Close(api.StreamContext) error { return nil }

type memSink struct{ data []interface{} }

func (m *memSink) Configure(map[string]interface{}) error { return nil }
func (m *memSink) Open(api.StreamContext) error           { return nil }
func (m *memSink) Close(api.StreamContext) error          { return nil }
func (m *memSink) Collect(_ api.StreamContext, data interface{}) error {
	m.data = append(m.data, data)
	return nil
}

type upper struct{}

func (upper) Validate(args []interface{}) error {
	if len(args) != 1 {
		return fmt.Errorf("upper expects 1 argument, got %d", len(args))
	}
	return nil
}

func (upper) Exec(args []interface{}, _ api.FunctionContext) (interface{}, bool) {
	return strings.ToUpper(fmt.Sprint(args[0])), true
}

func (upper) IsAggregate() bool { return false }

// calls counts its own calls: a shared object would count across call sites.
type calls struct{ n int64 }

func (c *calls) Validate([]interface{}) error { return nil }
func (c *calls) Exec([]interface{}, api.FunctionContext) (interface{}, bool) {
	c.n++
	return c.n, true
}
func (c *calls) IsAggregate() bool { return false }

var made atomic.Int64

func testConfig() *PluginConfig {
	return &PluginConfig{
		Name:    "mirror",
		Version: "2.0.0",
		Sources: map[string]func() api.Source{
			"tick": func() api.Source { return &seqSource{name: "tick"} },
			"both": func() api.Source { return &seqSource{name: "both"} },
		},
		Sinks: map[string]func() api.Sink{
			"mem":  func() api.Sink { return &memSink{} },
			"both": func() api.Sink { return &memSink{} },
		},
		Functions: map[string]func() api.Function{
			"upper": func() api.Function { return upper{} },
			"calls": func() api.Function { made.Add(1); return &calls{} },
		},
	}
}

func functionNames(p oort.Plugin) []string {
	var out []string
	for name := range p.Functions {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func TestBuildServesTheSourceOrSinkNamedAsStarted(t *testing.T) {
	c := testConfig()
	for _, tc := range []struct {
		as           string
		source, sink bool
	}{{"tick", true, false}, {"mem", false, true}, {"both", true, true}} {
		p, err := Build(c, tc.as)
		if err != nil {
			t.Fatalf("%s: %v", tc.as, err)
		}
		if p.Name != tc.as || p.Version != "2.0.0" || len(p.Functions) != 0 {
			t.Fatalf("%s: %+v", tc.as, p)
		}
		if p.Source.IsSet() != tc.source || p.Sink.IsSet() != tc.sink {
			t.Fatalf("%s: source %v sink %v", tc.as, p.Source.IsSet(), p.Sink.IsSet())
		}
		// One object per rule, from the constructor, as eKuiper makes them.
		if (tc.source && p.Source.IsSingleton()) || (tc.sink && p.Sink.IsSingleton()) {
			t.Fatalf("%s: a source or sink must be a constructor export", tc.as)
		}
	}
}

func TestBuildServesEveryFunctionOtherwise(t *testing.T) {
	made.Store(0)
	for _, as := range []string{"mirror", "mirror_funcs"} {
		p, err := Build(testConfig(), as)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != as || p.Source.IsSet() || p.Sink.IsSet() || !reflect.DeepEqual(functionNames(p), []string{"calls", "upper"}) {
			t.Fatalf("%s: %+v", as, p)
		}
		for name, e := range p.Functions {
			if e.IsSingleton() {
				t.Fatalf("%s: function %s must be a constructor export (serve.PerInstance)", as, name)
			}
		}
	}
	// serve.PerInstance makes one sample object up front (for IsAggregate);
	// the rest are made per call site.
	if n := made.Load(); n != 2 {
		t.Fatalf("made %d objects for two builds", n)
	}
	if _, err := Build(testConfig(), "tick"); err != nil || made.Load() != 2 {
		t.Fatalf("serving a source must not make functions: %v, %d", err, made.Load())
	}
}

func TestBuildTakesTheNameFromTheSupervisor(t *testing.T) {
	t.Setenv(compat.PluginNameEnv, "mem")
	if p, err := Build(testConfig(), ""); err != nil || p.Name != "mem" || !p.Sink.IsSet() {
		t.Fatalf("with OORT_PLUGIN_NAME=mem: %+v, %v", p, err)
	}
	if p, err := Build(testConfig(), "tick"); err != nil || p.Name != "tick" {
		t.Fatalf("an explicit name wins: %+v, %v", p, err)
	}
	t.Setenv(compat.PluginNameEnv, "")
	if p, err := Build(testConfig(), ""); err != nil || p.Name != "mirror" || len(p.Functions) != 2 {
		t.Fatalf("without OORT_PLUGIN_NAME the package's name: %+v, %v", p, err)
	}
	c := testConfig()
	c.Version = ""
	if p, _ := Build(c, ""); p.Version != serve.Version {
		t.Fatalf("default version %q", p.Version)
	}
}

func TestBuildRefusesWhatItCannotServe(t *testing.T) {
	noFuncs := testConfig()
	noFuncs.Functions = nil
	nilCtor := testConfig()
	nilCtor.Sinks["broken"] = nil
	clash := testConfig()
	clash.Sources["mirror"] = clash.Sources["tick"]
	for _, tc := range []struct {
		c    *PluginConfig
		as   string
		want string
	}{
		{noFuncs, "nope", `plugin mirror was started as "nope", which is none of its sources (both, tick) or sinks (both, mem), and it exports no function`},
		{&PluginConfig{Name: "empty"}, "", `plugin empty was started as "empty", which is none of its sources (none) or sinks (none), and it exports no function`},
		{nil, "x", "portable: the PluginConfig is nil"},
		{nilCtor, "tick", `sink "broken" has a nil constructor`},
		{clash, "tick", `a source or sink is named "mirror" like the plugin, whose functions are served under that name: rename one`},
		{testConfig(), "bad name", `plugin name "bad name" does not match ^[A-Za-z0-9_-]+$`},
	} {
		_, err := Build(tc.c, tc.as)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Build(%q): %v\nwant %s", tc.as, err, tc.want)
		}
	}
	// Without functions, a known source or sink is still served.
	if _, err := Build(noFuncs, "tick"); err != nil {
		t.Fatal(err)
	}
}

func TestStartExitsOnABadConfigurationAndServesOtherwise(t *testing.T) {
	var served []string
	var code []int
	serveFn := func(p oort.Plugin) { served = append(served, p.Name) }
	exit := func(c int) { code = append(code, c) }
	noFuncs := testConfig()
	noFuncs.Functions = nil

	t.Setenv(compat.PluginNameEnv, "nope")
	start(noFuncs, serveFn, exit)
	if len(served) != 0 || !reflect.DeepEqual(code, []int{1}) {
		t.Fatalf("served %v, exit %v", served, code)
	}
	t.Setenv(compat.PluginNameEnv, "tick")
	start(noFuncs, serveFn, exit)
	if !reflect.DeepEqual(served, []string{"tick"}) || len(code) != 1 {
		t.Fatalf("served %v, exit %v", served, code)
	}
}

// child is this test binary started as the plugin's part `as`.
type child struct {
	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	stderr bytes.Buffer
}

func startChild(t *testing.T, mode, as string) *child {
	t.Helper()
	dir, err := os.MkdirTemp("", "oort-portable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "p.sock")
	c := &child{cmd: exec.Command(os.Args[0])}
	c.cmd.Env = append(os.Environ(), childEnv+"="+mode, "OORT_PLUGIN_SOCKET="+socket, "OORT_PROTOCOL_VERSIONS=1", compat.PluginNameEnv+"="+as)
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
	c.conn, err = grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin did not become ready; stderr: %s", c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *child) describe(t *testing.T, ctx context.Context) string {
	t.Helper()
	d, err := pb.NewPluginClient(c.conn).Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var symbols []string
	for _, s := range d.GetSymbols() {
		symbols = append(symbols, fmt.Sprintf("%s:%s:%s", strings.TrimPrefix(s.GetKind().String(), "KIND_"), s.GetName(), strings.TrimPrefix(s.GetMode().String(), "EXPORT_MODE_")))
	}
	sort.Strings(symbols)
	return fmt.Sprintf("%s %s %v", d.GetName(), d.GetVersion(), symbols)
}

func (c *child) shutdown(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := pb.NewPluginClient(c.conn).Shutdown(ctx, &pb.ShutdownRequest{GraceMs: 2000}); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr: %s", err, c.stderr.String())
	}
}

func str(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_String_{String_: s}} }

func TestStartServesTheSourceItWasStartedAs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := startChild(t, "all", "tick")
	if got := c.describe(t, ctx); got != "tick 2.0.0 [SOURCE:tick:CONSTRUCTOR]" {
		t.Fatalf("Describe: %s", got)
	}
	src := pb.NewSourceClient(c.conn)
	spec := &pb.InstanceSpec{InstanceId: "r1/source", Symbol: "tick", RuleId: "r1", OperatorId: "source"}
	if _, err := src.Open(ctx, &pb.OpenSourceRequest{Instance: spec, Props: map[string]*pb.Value{"count": {Kind: &pb.Value_Int{Int: 2}}}}); err != nil {
		t.Fatal(err)
	}
	read, err := src.Read(ctx, &pb.ReadRequest{InstanceId: "r1/source", MaxBatch: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 2 {
		b, err := read.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.GetRecords() {
			got = append(got, fmt.Sprintf("%s/%d", r.GetFields()["src"].GetString_(), r.GetFields()["i"].GetInt()))
		}
	}
	if fmt.Sprint(got) != "[tick/0 tick/1]" {
		t.Fatalf("records %v", got)
	}
	if _, err := src.Close(ctx, &pb.CloseRequest{InstanceId: "r1/source"}); err != nil {
		t.Fatal(err)
	}
	c.shutdown(t, ctx)
}

func TestStartServesTheSourceAndSinkOfOneName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := startChild(t, "all", "both")
	if got := c.describe(t, ctx); got != "both 2.0.0 [SINK:both:CONSTRUCTOR SOURCE:both:CONSTRUCTOR]" {
		t.Fatalf("Describe: %s", got)
	}
	c.shutdown(t, ctx)
}

func TestStartServesTheFunctionsPerCallSite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := startChild(t, "all", "mirror")
	if got := c.describe(t, ctx); got != "mirror 2.0.0 [FUNCTION:calls:CONSTRUCTOR FUNCTION:upper:CONSTRUCTOR]" {
		t.Fatalf("Describe: %s", got)
	}
	fn := pb.NewFunctionClient(c.conn)
	if v, err := fn.Validate(ctx, &pb.ValidateRequest{Symbol: "upper"}); err != nil || v.GetError() != "upper expects 1 argument, got 0" {
		t.Fatalf("Validate: %v %v", v, err)
	}
	exec := func(id, symbol string, args ...*pb.Value) []string {
		t.Helper()
		rule, op, _ := strings.Cut(id, "/")
		if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: &pb.InstanceSpec{InstanceId: id, Symbol: symbol, RuleId: rule, OperatorId: op}}); err != nil {
			t.Fatal(err)
		}
		stream, err := fn.Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&pb.ExecBatch{InstanceId: id, Seq: 1, Rows: []*pb.ArgRow{{Args: args}, {Args: args}}}); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.CloseSend()
		var out []string
		for _, r := range res.GetResults() {
			if v := r.GetValue(); v.GetString_() != "" {
				out = append(out, v.GetString_())
			} else {
				out = append(out, fmt.Sprint(v.GetInt()))
			}
		}
		return out
	}
	if got := exec("r1/op_1", "upper", str("hi")); fmt.Sprint(got) != "[HI HI]" {
		t.Fatalf("upper: %v", got)
	}
	// Two call sites, two objects: each counts from 1.
	if a, b := exec("r1/op_2", "calls"), exec("r2/op_1", "calls"); fmt.Sprint(a, b) != "[1 2] [1 2]" {
		t.Fatalf("calls: %v %v", a, b)
	}
	c.shutdown(t, ctx)
}

func TestStartExitsWithOneLineOnAnUnknownName(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=nofuncs", "OORT_PLUGIN_SOCKET=/nonexistent/p.sock", "OORT_PROTOCOL_VERSIONS=1", compat.PluginNameEnv+"=nope")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v", err)
	}
	want := `nope: plugin mirror was started as "nope", which is none of its sources (both, tick) or sinks (both, mem), and it exports no function` + "\n"
	if stderr.String() != want {
		t.Fatalf("stderr %q\nwant   %q", stderr.String(), want)
	}
}
