package oort

import (
	"fmt"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

// StateMigration is what Plugin.MigrateState receives: the state of one
// instance, written under another state version, and whose it is.
type StateMigration struct {
	// Symbol is the exported symbol whose instance wrote the state: a
	// function name, or the plugin's name for its source or sink.
	Symbol string
	// FromVersion is the state version the state was written under (the
	// writing build's Plugin.StateVersion; 0 when it declared none).
	FromVersion uint32
	// RuleID and OperatorID name the instance the state belongs to, for the
	// plugin's log and messages.
	RuleID, OperatorID string
	// State maps every key of the instance's state to what it holds. It is
	// never nil, and the migration may change and return it.
	State map[string]StateSlot
}

// StateSlot is what one key of an instance's state holds, as a state
// migration sees it: a plain value (what PutState stores) or a counter (what
// IncrCounter keeps). The two stay distinct across restarts, because
// GetCounter and IncrCounter refuse a key that holds a plain value, so a
// migration says which one each key is to hold. Make one with ValueSlot or
// CounterSlot.
type StateSlot struct {
	// Value is the plain value when IsCounter is false. Coming in, it is in
	// its wire form, as GetState returns it (nil, bool, int64, uint64,
	// float64, string, []byte, []any or map[string]any); going out, it may be
	// any value PutState accepts, and converts the same way.
	Value any
	// Counter is the counter when IsCounter is true.
	Counter int64
	// IsCounter tells whether the key holds a counter or a plain value.
	IsCounter bool
}

// ValueSlot returns a slot holding the plain value v, as PutState(key, v)
// would store it.
func ValueSlot(v any) StateSlot { return StateSlot{Value: v} }

// CounterSlot returns a slot holding a counter at n, which GetCounter then
// reads and IncrCounter adds to.
func CounterSlot(n int64) StateSlot { return StateSlot{Counter: n, IsCounter: true} }

// stateFromPB converts state entries to slots. An entry with neither a value
// nor a counter is skipped, as an instance's context does.
func stateFromPB(entries []*pb.StateEntry) map[string]StateSlot {
	out := make(map[string]StateSlot, len(entries))
	for _, e := range entries {
		switch entry := e.GetEntry().(type) {
		case *pb.StateEntry_Counter:
			out[e.GetKey()] = CounterSlot(entry.Counter)
		case *pb.StateEntry_Value:
			out[e.GetKey()] = ValueSlot(fromValue(entry.Value))
		}
	}
	return out
}

// stateToPB converts slots to state entries, sorted by key as the supervisor
// hands state over.
func stateToPB(state map[string]StateSlot) ([]*pb.StateEntry, error) {
	keys := make([]string, 0, len(state))
	for k := range state {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*pb.StateEntry, len(keys))
	for i, k := range keys {
		s := state[k]
		if s.IsCounter {
			out[i] = &pb.StateEntry{Key: k, Entry: &pb.StateEntry_Counter{Counter: s.Counter}}
			continue
		}
		v, err := toValue(s.Value)
		if err != nil {
			return nil, fmt.Errorf("state key %q: %w", k, err)
		}
		out[i] = &pb.StateEntry{Key: k, Entry: &pb.StateEntry_Value{Value: v}}
	}
	return out, nil
}

// runMigration calls the hook, turning a panic into an error.
func runMigration(hook func(StateMigration) (map[string]StateSlot, error), m StateMigration) (state map[string]StateSlot, err error) {
	defer func() {
		if r := recover(); r != nil {
			state, err = nil, fmt.Errorf("the state migration panicked: %v", r)
		}
	}()
	return hook(m)
}

// migrateState answers Plugin.MigrateState. Every refusal is
// FAILED_PRECONDITION, which the supervisor takes as "this build cannot read
// the rule's state": it stops the upgrade and keeps the rule where it is.
func (s *server) migrateState(req *pb.MigrateStateRequest) (*pb.MigrateStateResponse, error) {
	p := s.plugin
	from := req.GetFromVersion()
	if p.MigrateState == nil {
		return nil, status.Errorf(codes.FailedPrecondition,
			"plugin %s (state version %d) has no state migration and cannot read state of version %d",
			p.Name, p.StateVersion, from)
	}
	processLogger.Infof("rule=%s operator=%s: migrating the state of %s from state version %d to %d (keys: %d)",
		req.GetRuleId(), req.GetOperatorId(), req.GetSymbol(), from, p.StateVersion, len(req.GetState()))
	migrated, err := runMigration(p.MigrateState, StateMigration{
		Symbol:      req.GetSymbol(),
		FromVersion: from,
		RuleID:      req.GetRuleId(),
		OperatorID:  req.GetOperatorId(),
		State:       stateFromPB(req.GetState()),
	})
	if err != nil {
		msg := err.Error()
		if msg == "" {
			msg = fmt.Sprintf("plugin %s (state version %d) refused state of version %d", p.Name, p.StateVersion, from)
		}
		return nil, status.Error(codes.FailedPrecondition, msg)
	}
	entries, err := stateToPB(migrated)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition,
			"plugin %s: the state migration from version %d returned a value Oort cannot carry: %v", p.Name, from, err)
	}
	return &pb.MigrateStateResponse{State: entries}, nil
}
