package oort

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

func testContext(state ...*pb.StateEntry) *instanceContext {
	c, _ := newContext(context.Background(), &pb.InstanceSpec{InstanceId: "r1/op_1", RuleId: "r1", OperatorId: "op_1", State: state})
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTheFiveCallsFollowEKuiperSemantics(t *testing.T) {
	c := testContext()
	if v, err := c.GetState("a"); v != nil || err != nil {
		t.Fatalf("absent key: %v, %v", v, err)
	}
	if n, err := c.GetCounter("n"); n != 0 || err != nil {
		t.Fatalf("absent counter: %v, %v", n, err)
	}
	must(t, c.IncrCounter("n", 5))
	must(t, c.IncrCounter("n", -2))
	if n, _ := c.GetCounter("n"); n != 3 {
		t.Fatalf("counter = %d", n)
	}
	if v, _ := c.GetState("n"); v != int64(3) {
		t.Fatalf("a counter reads as int64, got %#v", v)
	}
	must(t, c.PutState("a", "x"))
	if v, _ := c.GetState("a"); v != "x" {
		t.Fatalf("GetState = %#v", v)
	}
	_, err := c.GetCounter("a")
	if !errors.Is(err, ErrNotACounter) || err.Error() != `state key "a" holds a string value, not a counter` {
		t.Fatalf("GetCounter on a value: %v", err)
	}
	if err := c.IncrCounter("a", 1); !errors.Is(err, ErrNotACounter) {
		t.Fatalf("IncrCounter on a value: %v", err)
	}
	must(t, c.DeleteState("a"))
	must(t, c.DeleteState("never-there"))
	if v, _ := c.GetState("a"); v != nil {
		t.Fatalf("deleted key reads %#v", v)
	}
	// PutState replaces a counter; IncrCounter then refuses it.
	must(t, c.PutState("n", 1.5))
	if err := c.IncrCounter("n", 1); !errors.Is(err, ErrNotACounter) {
		t.Fatalf("%v", err)
	}
	must(t, c.IncrCounter("big", math.MaxInt64))
	err = c.IncrCounter("big", 1)
	if !errors.Is(err, ErrCounterOverflow) || err.Error() != `counter "big" would overflow` {
		t.Fatalf("overflow: %v", err)
	}
	must(t, c.IncrCounter("small", math.MinInt64))
	if err := c.IncrCounter("small", -1); !errors.Is(err, ErrCounterOverflow) {
		t.Fatalf("negative overflow: %v", err)
	}
	if n, _ := c.GetCounter("big"); n != math.MaxInt64 {
		t.Fatalf("a refused increment must not change the counter: %d", n)
	}
}

func TestStateHoldsWireValuesAndCopies(t *testing.T) {
	c := testContext()
	m := map[string]any{"list": []int{1, 2}}
	must(t, c.PutState("m", m))
	m["list"] = "changed after put"
	got, _ := c.GetState("m")
	want := map[string]any{"list": []any{int64(1), int64(2)}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetState = %#v", got)
	}
	got.(map[string]any)["list"] = "changed after get"
	again, _ := c.GetState("m")
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("the state changed through a returned value: %#v", again)
	}
	if err := c.PutState("bad", struct{}{}); err == nil || !strings.Contains(err.Error(), `state key "bad"`) {
		t.Fatalf("PutState of a struct: %v", err)
	}
	if len(c.takeMutations()) != 1 {
		t.Fatal("a refused PutState must record nothing")
	}
}

func mutationText(m *pb.StateMutation) string {
	switch op := m.GetOp().(type) {
	case *pb.StateMutation_Put:
		return m.GetKey() + "=put"
	case *pb.StateMutation_Delete:
		return m.GetKey() + "=delete"
	case *pb.StateMutation_Counter:
		return m.GetKey() + "=counter:" + string(rune('0'+op.Counter))
	}
	return m.GetKey() + "=?"
}

func TestMutationsAreRecordedInOrderAndCollapsedPerCounter(t *testing.T) {
	c := testContext()
	must(t, c.IncrCounter("n", 1))
	must(t, c.IncrCounter("n", 1))
	must(t, c.PutState("a", 1))
	must(t, c.DeleteState("a"))
	must(t, c.DeleteState("never-there"))
	must(t, c.IncrCounter("n", 1))
	must(t, c.IncrCounter("m", 4))
	must(t, c.IncrCounter("n", 1))
	var got []string
	for _, m := range c.takeMutations() {
		got = append(got, mutationText(m))
	}
	want := []string{"n=counter:2", "a=put", "a=delete", "n=counter:3", "m=counter:4", "n=counter:4"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mutations %v, want %v", got, want)
	}
	if m := c.takeMutations(); len(m) != 0 {
		t.Fatalf("mutations are taken once: %v", m)
	}
}

func TestRestoredStateIsVisible(t *testing.T) {
	c := testContext(
		&pb.StateEntry{Key: "n", Entry: &pb.StateEntry_Counter{Counter: 41}},
		&pb.StateEntry{Key: "v", Entry: &pb.StateEntry_Value{Value: stringValue("x")}},
		&pb.StateEntry{Key: "empty"},
	)
	must(t, c.IncrCounter("n", 1))
	if n, _ := c.GetCounter("n"); n != 42 {
		t.Fatalf("counter = %d", n)
	}
	if v, _ := c.GetState("v"); v != "x" {
		t.Fatalf("value = %#v", v)
	}
	if v, _ := c.GetState("empty"); v != nil {
		t.Fatalf("an entry with no case is skipped, got %#v", v)
	}
	ms := c.takeMutations()
	if len(ms) != 1 || !proto.Equal(ms[0], &pb.StateMutation{Key: "n", Op: &pb.StateMutation_Counter{Counter: 42}}) {
		t.Fatalf("loading state must record nothing; got %v", ms)
	}
}

func TestReopenTestContextHandsOverTheShippedState(t *testing.T) {
	c := testContext()
	must(t, c.PutState("words", []string{"a", "b"}))
	must(t, c.PutState("big", uint64(math.MaxUint64)))
	must(t, c.PutState("gone", 1))
	must(t, c.DeleteState("gone"))
	must(t, c.IncrCounter("n", 3))
	// What the supervisor would hold: the shipped mutations, applied in order.
	shipped := map[string]any{}
	for _, m := range c.takeMutations() {
		switch op := m.GetOp().(type) {
		case *pb.StateMutation_Put:
			shipped[m.GetKey()] = fromValue(op.Put)
		case *pb.StateMutation_Delete:
			delete(shipped, m.GetKey())
		case *pb.StateMutation_Counter:
			shipped[m.GetKey()] = op.Counter
		}
	}
	r := ReopenTestContext(c).(*instanceContext)
	if r == c || r.GetInstanceId() != "r1/op_1" || r.GetRuleId() != "r1" || r.GetOpId() != "op_1" {
		t.Fatalf("a fresh context of the same instance: %v", r.GetInstanceId())
	}
	got := map[string]any{}
	for k := range r.slots {
		got[k], _ = r.GetState(k)
	}
	if !reflect.DeepEqual(got, shipped) || !reflect.DeepEqual(got["words"], []any{"a", "b"}) {
		t.Fatalf("reopened state %#v, shipped %#v", got, shipped)
	}
	if n, err := r.GetCounter("n"); err != nil || n != 3 {
		t.Fatalf("the counter is still a counter: %d, %v", n, err)
	}
	if ms := r.takeMutations(); len(ms) != 0 {
		t.Fatalf("loading records nothing: %v", ms)
	}
	defer func() {
		if recover() == nil {
			t.Error("a foreign context must panic")
		}
	}()
	ReopenTestContext(struct{ StreamContext }{c})
}

func TestContextIdentityAndLogger(t *testing.T) {
	var buf bytes.Buffer
	old := logOut
	logOut = &buf
	defer func() { logOut = old }()
	c := testContext()
	if c.GetRuleId() != "r1" || c.GetOpId() != "op_1" || c.GetInstanceId() != "r1/op_1" {
		t.Fatalf("identity %q %q %q", c.GetRuleId(), c.GetOpId(), c.GetInstanceId())
	}
	c.GetLogger().Warnf("disk %d%% full\nsecond line", 93)
	c.GetLogger().Debug("hidden at the default level")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	for _, l := range lines {
		if !strings.Contains(l[:48], "WARN") || !strings.Contains(l, "rule=r1 instance=r1/op_1: ") {
			t.Errorf("line %q: the level must be in the first 48 characters, with the ids", l)
		}
	}
	if !strings.HasSuffix(lines[0], "disk 93% full") || !strings.HasSuffix(lines[1], "second line") {
		t.Errorf("lines %q", lines)
	}
}

func TestLogLevelFromOortLog(t *testing.T) {
	for filter, want := range map[string]int32{
		"": levelInfo, "debug": levelDebug, "WARN": levelWarn, "oort=debug,warn": levelDebug,
		"error": levelError, "off": levelOff, "nonsense": levelInfo, "trace": levelDebug,
	} {
		if got := parseLogLevel(filter); got != want {
			t.Errorf("%q: %d, want %d", filter, got, want)
		}
	}
}

func TestReportedExceptionsKeepTheNewest64(t *testing.T) {
	c := testContext()
	if e := c.takeExceptions(); len(e) != 0 {
		t.Fatalf("a new context has no exceptions: %q", e)
	}
	c.ReportException("first")
	c.ReportException("second")
	if e := c.takeExceptions(); !reflect.DeepEqual(e, []string{"first", "second"}) {
		t.Fatalf("exceptions %q", e)
	}
	if e := c.takeExceptions(); len(e) != 0 {
		t.Fatalf("exceptions are taken once: %q", e)
	}
	for i := range 100 {
		c.ReportException(fmt.Sprintf("e%d", i))
		if n := len(c.exceptions); n > maxPendingExceptions {
			t.Fatalf("%d exceptions pending", n)
		}
	}
	e := c.takeExceptions()
	if len(e) != 64 || e[0] != "e36" || e[63] != "e99" {
		t.Fatalf("the newest 64 must be kept, oldest first: %d, %q … %q", len(e), e[0], e[len(e)-1])
	}
	if len(c.takeMutations()) != 0 {
		t.Fatal("an exception is not a state mutation")
	}
}
