package serve

import (
	"context"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/internal/compat"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// streamContext implements api.StreamContext and api.FunctionContext on an
// Oort instance context.
type streamContext struct{ compat.Core }

func newContext(o oort.StreamContext) *streamContext {
	return &streamContext{Core: compat.NewCore(o)}
}

// NewTestContext returns a context for unit-testing eKuiper-style extensions
// outside the supervisor (see oort.NewTestContext).
func NewTestContext(ruleID, opID string) api.FunctionContext {
	return newContext(oort.NewTestContext(ruleID, opID))
}

// Wrap returns the eKuiper 2.x context of an Oort instance context.
func Wrap(o oort.StreamContext) api.FunctionContext { return newContext(o) }

func (c *streamContext) GetLogger() api.Logger { return c.Core.GetLogger() }

func (c *streamContext) WithCancel() (api.StreamContext, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.Core.Context)
	return &streamContext{Core: c.Derive(ctx)}, cancel
}

// tuple is the MessageTuple (and MetaInfo) a sink receives.
type tuple struct {
	fields  map[string]any
	meta    map[string]any
	created time.Time
}

func (t *tuple) Value(key, _ string) (any, bool) { v, ok := t.fields[key]; return v, ok }
func (t *tuple) ToMap() map[string]any           { return t.fields }
func (t *tuple) Meta(key, _ string) (any, bool)  { v, ok := t.meta[key]; return v, ok }
func (t *tuple) Created() time.Time              { return t.created }
func (t *tuple) AllMeta() map[string]any         { return t.meta }

// tupleList is a MessageTupleList.
type tupleList []*tuple

func (l tupleList) Len() int { return len(l) }
func (l tupleList) RangeOfTuples(f func(int, api.MessageTuple) bool) {
	for i, t := range l {
		if !f(i, t) {
			return
		}
	}
}
func (l tupleList) ToMaps() []map[string]any {
	out := make([]map[string]any, len(l))
	for i, t := range l {
		out[i] = t.fields
	}
	return out
}

// NewTuple makes a MessageTuple, for unit tests of sinks.
func NewTuple(fields, meta map[string]any, created time.Time) api.MessageTuple {
	return &tuple{fields: fields, meta: meta, created: created}
}

// rawTuple is the RawTuple a bytes sink receives: one payload the supervisor
// encoded. Its MetaInfo is empty (a payload carries no metadata).
type rawTuple struct {
	tuple
	raw []byte
}

func (r *rawTuple) Raw() []byte      { return r.raw }
func (r *rawTuple) Replace(b []byte) { r.raw = b }
