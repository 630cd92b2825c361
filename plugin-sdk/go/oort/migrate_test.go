package oort

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

func valueEntry(key string, v any) *pb.StateEntry {
	p, err := toValue(v)
	if err != nil {
		panic(err)
	}
	return &pb.StateEntry{Key: key, Entry: &pb.StateEntry_Value{Value: p}}
}

func counterEntry(key string, n int64) *pb.StateEntry {
	return &pb.StateEntry{Key: key, Entry: &pb.StateEntry_Counter{Counter: n}}
}

// stopped shuts the served plugin down and waits for it to exit.
func (s *started) stopped(t *testing.T) {
	t.Helper()
	if _, err := pb.NewPluginClient(s.conn).Shutdown(context.Background(), &pb.ShutdownRequest{GraceMs: 2000}); err != nil {
		t.Fatal(err)
	}
	s.exited(t, 2*time.Second)
}

// refused checks that err is FAILED_PRECONDITION with exactly msg.
func refused(t *testing.T, what string, err error, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != msg {
		t.Fatalf("%s: got %v %q, want FailedPrecondition %q", what, st.Code(), st.Message(), msg)
	}
}

func TestDescribeReportsTheStateVersion(t *testing.T) {
	for _, version := range []uint32{0, 3} {
		s := start(t, Plugin{
			Name: "versioned", StateVersion: version,
			Functions: map[string]Export{"tally": Constructor(func() Function { return tally{} })},
		})
		desc, err := pb.NewPluginClient(s.conn).Describe(context.Background(), &pb.DescribeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if desc.GetStateVersion() != version {
			t.Fatalf("Describe reports state version %d, want %d", desc.GetStateVersion(), version)
		}
		s.stopped(t)
	}
}

// TestMigrateStateRunsTheHook migrates a version-1 state to version 2 with a
// hook that renames a key, turns a plain value into a counter and a counter
// into a plain value, drops a key and passes the rest through, then opens an
// instance with the migrated state and checks that it reads it.
func TestMigrateStateRunsTheHook(t *testing.T) {
	var (
		mu  sync.Mutex
		got []StateMigration
	)
	plugin := Plugin{
		Name:         "versioned",
		StateVersion: 2,
		Functions:    map[string]Export{"tally": Constructor(func() Function { return tally{} })},
		MigrateState: func(m StateMigration) (map[string]StateSlot, error) {
			mu.Lock()
			got = append(got, StateMigration{
				Symbol: m.Symbol, FromVersion: m.FromVersion, RuleID: m.RuleID, OperatorID: m.OperatorID,
				State: copySlots(m.State),
			})
			mu.Unlock()
			if m.FromVersion != 1 {
				return nil, errors.New("unexpected version")
			}
			st := m.State
			// Version 1 called the label "name".
			st["label"] = st["name"]
			delete(st, "name")
			// Version 1 counted rows in a plain value; version 2 in a counter.
			n, ok := ToInt(st["rows"].Value)
			if ok {
				st["n"] = CounterSlot(n)
			}
			delete(st, "rows")
			// Version 1 counted hits in a counter; version 2 keeps them with
			// their origin, as a plain value.
			st["hits"] = ValueSlot(map[string]any{"count": st["hits"].Counter, "since": uint16(1)})
			delete(st, "tmp")
			return st, nil
		},
	}
	s := start(t, plugin)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	req := &pb.MigrateStateRequest{
		Symbol: "tally", FromVersion: 1, RuleId: "r1", OperatorId: "op_1",
		State: []*pb.StateEntry{
			valueEntry("name", "kitchen"),
			valueEntry("rows", 41),
			counterEntry("hits", 7),
			counterEntry("total", -3),
			valueEntry("cfg", map[string]any{"unit": "W", "limits": []any{1.5, nil, true}}),
			valueEntry("big", uint64(1<<63)),
			valueEntry("blob", []byte{0, 1, 2}),
			valueEntry("none", nil),
			valueEntry("tmp", "scratch"),
		},
	}
	resp, err := pb.NewPluginClient(s.conn).MigrateState(ctx, req)
	if err != nil {
		t.Fatal(err)
	}

	// The hook saw the state in its wire form, counters as counters.
	wantIn := StateMigration{
		Symbol: "tally", FromVersion: 1, RuleID: "r1", OperatorID: "op_1",
		State: map[string]StateSlot{
			"name":  ValueSlot("kitchen"),
			"rows":  ValueSlot(int64(41)),
			"hits":  CounterSlot(7),
			"total": CounterSlot(-3),
			"cfg":   ValueSlot(map[string]any{"unit": "W", "limits": []any{1.5, nil, true}}),
			"big":   ValueSlot(uint64(1 << 63)),
			"blob":  ValueSlot([]byte{0, 1, 2}),
			"none":  ValueSlot(nil),
			"tmp":   ValueSlot("scratch"),
		},
	}
	mu.Lock()
	calls := got
	mu.Unlock()
	if len(calls) != 1 || !reflect.DeepEqual(calls[0], wantIn) {
		t.Fatalf("the hook got\n%#v\nwant\n%#v", calls, wantIn)
	}

	// The answer is the hook's state, sorted by key, values converted as
	// PutState converts them.
	want := &pb.MigrateStateResponse{State: []*pb.StateEntry{
		valueEntry("big", uint64(1<<63)),
		valueEntry("blob", []byte{0, 1, 2}),
		valueEntry("cfg", map[string]any{"unit": "W", "limits": []any{1.5, nil, true}}),
		valueEntry("hits", map[string]any{"count": int64(7), "since": uint64(1)}),
		valueEntry("label", "kitchen"),
		counterEntry("n", 41),
		valueEntry("none", nil),
		counterEntry("total", -3),
	}}
	if !proto.Equal(resp, want) {
		t.Fatalf("MigrateState:\n got %v\nwant %v", resp, want)
	}

	// An instance opened with the migrated state reads it: tally counts on
	// from the migrated counter.
	fn := pb.NewFunctionClient(s.conn)
	open := spec("r1/op_1", "tally")
	open.State, open.StateVersion = resp.GetState(), 2
	if _, err := fn.Open(ctx, &pb.OpenFunctionRequest{Instance: open}); err != nil {
		t.Fatal(err)
	}
	exec, err := fn.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	must(t, exec.Send(&pb.ExecBatch{InstanceId: "r1/op_1", Seq: 1, Rows: []*pb.ArgRow{row("a")}}))
	res, err := exec.Recv()
	if err != nil {
		t.Fatal(err)
	}
	wantRes := &pb.ExecResult{
		Seq:       1,
		Results:   []*pb.RowResult{{Outcome: &pb.RowResult_Value{Value: intValue(42)}}},
		Mutations: counterMutation("n", 42),
	}
	if !proto.Equal(res, wantRes) {
		t.Fatalf("Exec after the migration:\n got %v\nwant %v", res, wantRes)
	}
	must(t, exec.CloseSend())

	s.stopped(t)
}

// copySlots copies the slots (the hook changes its map).
func copySlots(m map[string]StateSlot) map[string]StateSlot {
	out := make(map[string]StateSlot, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestMigrateStateRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fns := map[string]Export{"tally": Constructor(func() Function { return tally{} })}
	state := []*pb.StateEntry{counterEntry("n", 1)}

	// No hook: every other version is refused, naming both versions.
	s := start(t, Plugin{Name: "plain", StateVersion: 3, Functions: fns})
	_, err := pb.NewPluginClient(s.conn).MigrateState(ctx, &pb.MigrateStateRequest{Symbol: "tally", FromVersion: 1, State: state})
	refused(t, "without a hook", err, "plugin plain (state version 3) has no state migration and cannot read state of version 1")
	s.stopped(t)

	// A hook's error, its panic and a value it returns that Oort cannot
	// carry are refusals too; the process serves on.
	s = start(t, Plugin{Name: "picky", StateVersion: 2, Functions: fns,
		MigrateState: func(m StateMigration) (map[string]StateSlot, error) {
			switch m.FromVersion {
			case 0:
				return nil, errors.New("state of version 0 predates the unit field and cannot be converted")
			case 1:
				panic("boom")
			case 3:
				return nil, errors.New("")
			}
			return map[string]StateSlot{"bad": ValueSlot(struct{}{})}, nil
		},
	})
	client := pb.NewPluginClient(s.conn)
	for _, c := range []struct {
		from uint32
		msg  string
	}{
		{0, "state of version 0 predates the unit field and cannot be converted"},
		{1, "the state migration panicked: boom"},
		{3, "plugin picky (state version 2) refused state of version 3"},
		{4, `plugin picky: the state migration from version 4 returned a value Oort cannot carry: state key "bad": cannot convert a struct {} to an Oort value`},
	} {
		_, err := client.MigrateState(ctx, &pb.MigrateStateRequest{Symbol: "tally", FromVersion: c.from, State: state})
		refused(t, fmt.Sprintf("from version %d", c.from), err, c.msg)
	}
	if _, err := client.Describe(ctx, &pb.DescribeRequest{}); err != nil {
		t.Fatalf("the plugin stopped serving after the refusals: %v", err)
	}
	s.stopped(t)
}
