package oort

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

// The instance's state lives in the plugin process: the instance is the only
// writer of its own scope, so reads never leave the process. Every change is
// also recorded as a mutation, and the server ships the recorded mutations to
// the supervisor with the batch they were made in (ExecResult, RecordBatch or
// WriteAck). The supervisor therefore always holds "state as of the last batch
// it accepted" without a round trip per call.

// ErrNotACounter is wrapped by the error of GetCounter and IncrCounter on a key
// that holds a plain value.
var ErrNotACounter = errors.New("not a counter")

// ErrCounterOverflow is wrapped by the error of an IncrCounter that would leave
// the signed 64-bit range.
var ErrCounterOverflow = errors.New("counter overflow")

type stateError struct {
	msg  string
	kind error
}

func (e *stateError) Error() string { return e.msg }
func (e *stateError) Unwrap() error { return e.kind }

func notACounter(key string, v *pb.Value) error {
	return &stateError{fmt.Sprintf("state key %q holds a %s value, not a counter", key, typeName(v)), ErrNotACounter}
}

// slot is one key of the resident state: a plain value or a counter.
type slot struct {
	value   *pb.Value // nil for a counter
	counter int64
}

// instanceContext is the StreamContext of one opened instance.
type instanceContext struct {
	context.Context
	ruleID     string
	opID       string
	instanceID string
	logger     Logger

	mu      sync.Mutex
	slots   map[string]slot
	pending []*pb.StateMutation
	// exceptions are the problems reported with ReportException and not yet
	// shipped (a source's) or logged (a function's or sink's), oldest first.
	exceptions []string
}

// maxPendingExceptions bounds the exceptions waiting for the next batch; the
// oldest are dropped first, so that a flood cannot exhaust memory.
const maxPendingExceptions = 64

func newContext(parent context.Context, spec *pb.InstanceSpec) (*instanceContext, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	c := &instanceContext{
		Context:    ctx,
		ruleID:     spec.GetRuleId(),
		opID:       spec.GetOperatorId(),
		instanceID: spec.GetInstanceId(),
		slots:      make(map[string]slot, len(spec.GetState())),
	}
	c.logger = &logger{prefix: fmt.Sprintf("rule=%s instance=%s: ", c.ruleID, c.instanceID)}
	for _, e := range spec.GetState() {
		switch entry := e.GetEntry().(type) {
		case *pb.StateEntry_Counter:
			c.slots[e.GetKey()] = slot{counter: entry.Counter}
		case *pb.StateEntry_Value:
			v := entry.Value
			if v == nil {
				v = nullValue()
			}
			c.slots[e.GetKey()] = slot{value: v}
		}
	}
	return c, cancel
}

// NewTestContext returns a context for unit-testing an extension outside the
// supervisor: state calls work as in a served instance, and Done never closes.
// instanceID is "<rule>/<operator>", e.g. "r1/op_1".
func NewTestContext(ruleID, opID string) StreamContext {
	c, _ := newContext(context.Background(), &pb.InstanceSpec{
		InstanceId: ruleID + "/" + opID, RuleId: ruleID, OperatorId: opID,
	})
	return c
}

// ReopenTestContext returns a new test context for the same instance as ctx
// (one from NewTestContext or an earlier ReopenTestContext), holding ctx's
// state as the supervisor hands it to a restarted plugin process: every value
// in its wire form, counters as counters. Use it to test that an extension
// reads its state back after a restart. It panics for any other context.
func ReopenTestContext(ctx StreamContext) StreamContext {
	c, ok := ctx.(*instanceContext)
	if !ok {
		panic(fmt.Sprintf("oort.ReopenTestContext: a %T is not a context of this SDK", ctx))
	}
	c.mu.Lock()
	keys := make([]string, 0, len(c.slots))
	for k := range c.slots {
		keys = append(keys, k)
	}
	// The supervisor hands the state over sorted by key.
	sort.Strings(keys)
	state := make([]*pb.StateEntry, len(keys))
	for i, k := range keys {
		if s := c.slots[k]; s.value == nil {
			state[i] = &pb.StateEntry{Key: k, Entry: &pb.StateEntry_Counter{Counter: s.counter}}
		} else {
			state[i] = &pb.StateEntry{Key: k, Entry: &pb.StateEntry_Value{Value: proto.Clone(s.value).(*pb.Value)}}
		}
	}
	c.mu.Unlock()
	fresh, _ := newContext(context.Background(), &pb.InstanceSpec{
		InstanceId: c.instanceID, RuleId: c.ruleID, OperatorId: c.opID, State: state,
	})
	return fresh
}

func (c *instanceContext) GetLogger() Logger     { return c.logger }
func (c *instanceContext) GetRuleId() string     { return c.ruleID }
func (c *instanceContext) GetOpId() string       { return c.opID }
func (c *instanceContext) GetInstanceId() string { return c.instanceID }

func (c *instanceContext) PutState(key string, value any) error {
	v, err := toValue(value)
	if err != nil {
		return fmt.Errorf("state key %q: %w", key, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slots[key] = slot{value: v}
	c.pending = append(c.pending, &pb.StateMutation{Key: key, Op: &pb.StateMutation_Put{Put: v}})
	return nil
}

func (c *instanceContext) GetState(key string) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.slots[key]
	switch {
	case !ok:
		return nil, nil
	case s.value == nil:
		return s.counter, nil
	default:
		// Decoding makes a fresh copy: the caller cannot change the state by
		// changing what it got.
		return fromValue(s.value), nil
	}
}

func (c *instanceContext) DeleteState(key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.slots[key]; ok {
		delete(c.slots, key)
		c.pending = append(c.pending, &pb.StateMutation{Key: key, Op: &pb.StateMutation_Delete{Delete: true}})
	}
	return nil
}

func (c *instanceContext) IncrCounter(key string, amount int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var current int64
	if s, ok := c.slots[key]; ok {
		if s.value != nil {
			return notACounter(key, s.value)
		}
		current = s.counter
	}
	delta := int64(amount)
	if (delta > 0 && current > math.MaxInt64-delta) || (delta < 0 && current < math.MinInt64-delta) {
		return &stateError{fmt.Sprintf("counter %q would overflow", key), ErrCounterOverflow}
	}
	next := current + delta
	c.slots[key] = slot{counter: next}
	// Only the newest absolute value matters: collapse consecutive increments
	// of one key instead of shipping each of them.
	if n := len(c.pending); n > 0 && c.pending[n-1].GetKey() == key {
		if _, ok := c.pending[n-1].GetOp().(*pb.StateMutation_Counter); ok {
			c.pending[n-1] = &pb.StateMutation{Key: key, Op: &pb.StateMutation_Counter{Counter: next}}
			return nil
		}
	}
	c.pending = append(c.pending, &pb.StateMutation{Key: key, Op: &pb.StateMutation_Counter{Counter: next}})
	return nil
}

func (c *instanceContext) GetCounter(key string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.slots[key]
	switch {
	case !ok:
		return 0, nil
	case s.value != nil:
		return 0, notACounter(key, s.value)
	default:
		return int(s.counter), nil
	}
}

func (c *instanceContext) ReportException(message string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.exceptions); n >= maxPendingExceptions {
		// Shift rather than reslice, so the backing array stays bounded.
		kept := copy(c.exceptions, c.exceptions[n-maxPendingExceptions+1:])
		clear(c.exceptions[kept:])
		c.exceptions = c.exceptions[:kept]
	}
	c.exceptions = append(c.exceptions, message)
}

// takeExceptions returns the exceptions reported since the last call, oldest
// first.
func (c *instanceContext) takeExceptions() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.exceptions
	c.exceptions = nil
	return e
}

// logExceptions logs the exceptions a function or sink reported, at warn
// level: only a source's travel to the supervisor.
func (c *instanceContext) logExceptions() {
	for _, e := range c.takeExceptions() {
		c.logger.Warn(e)
	}
}

// takeMutations returns the mutations recorded since the last call, in order.
func (c *instanceContext) takeMutations() []*pb.StateMutation {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.pending
	c.pending = nil
	return m
}
