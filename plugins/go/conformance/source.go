package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// idle is the longest one Read call waits when there is nothing to emit.
const idle = 50 * time.Millisecond

type cursor struct {
	next, count int64
}

// source keeps one cursor per instance, so that one object can serve every
// rule when it is exported as a singleton. It implements
// oort.RewindableWithContext for the same reason: eKuiper's Rewindable does
// not say which instance is asked. It is an oort.ColumnSource too:
// ReadColumns reads the same records as Read, as one Int64 column "n".
type source struct {
	mu      sync.Mutex
	cursors map[string]*cursor
}

func newSource() *source { return &source{cursors: map[string]*cursor{}} }

func (s *source) cursor(ctx oort.StreamContext) (*cursor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cursors[ctx.GetInstanceId()]
	if !ok {
		return nil, fmt.Errorf("conformance source: instance %q is not open", ctx.GetInstanceId())
	}
	return c, nil
}

func (s *source) Open(ctx oort.StreamContext, _ string, props map[string]any) error {
	n := int64(100)
	if v, ok := props["count"]; ok {
		var isInt bool
		if n, isInt = oort.ToInt(v); !isInt {
			return errors.New("count must be an integer")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursors[ctx.GetInstanceId()] = &cursor{count: n}
	return nil
}

func (s *source) Read(ctx oort.StreamContext, max int) ([]oort.Record, error) {
	c, err := s.cursor(ctx)
	if err != nil {
		return nil, err
	}
	if c.next >= c.count {
		select {
		case <-ctx.Done():
		case <-time.After(idle):
		}
		return nil, nil
	}
	out := make([]oort.Record, 0, min(int64(max), c.count-c.next))
	for ; c.next < c.count && len(out) < max; c.next++ {
		out = append(out, oort.Record{Fields: map[string]any{"n": c.next}})
	}
	return out, nil
}

// nSchema is the schema of ReadColumns's batches: one Int64 column, "n".
var nSchema = arrow.NewSchema([]arrow.Field{{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, nil)

// ReadColumns reads what Read would, advancing the same cursor, as one Int64
// column "n". When nothing is left it idles as Read does and returns a batch
// of no rows (nil would make the SDK call Read, which would idle again).
func (s *source) ReadColumns(ctx oort.StreamContext, max int) (arrow.RecordBatch, error) {
	c, err := s.cursor(ctx)
	if err != nil {
		return nil, err
	}
	if c.next >= c.count {
		select {
		case <-ctx.Done():
		case <-time.After(idle):
		}
	}
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	if c.next < c.count {
		b.Reserve(int(min(int64(max), c.count-c.next)))
	}
	for ; c.next < c.count && b.Len() < max; c.next++ {
		b.Append(c.next)
	}
	col := b.NewArray()
	defer col.Release()
	return array.NewRecordBatch(nSchema, []arrow.Array{col}, int64(col.Len())), nil
}

func (s *source) GetOffset(ctx oort.StreamContext) (any, error) {
	c, err := s.cursor(ctx)
	if err != nil {
		return nil, err
	}
	return c.next, nil
}

func (s *source) Rewind(ctx oort.StreamContext, offset any) error {
	c, err := s.cursor(ctx)
	if err != nil {
		return err
	}
	k, ok := oort.ToInt(offset)
	if !ok || k < 0 || k > c.count {
		return fmt.Errorf("offset %v is outside 0..=%d", offset, c.count)
	}
	c.next = k
	return nil
}

func (s *source) Close(ctx oort.StreamContext) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cursors, ctx.GetInstanceId())
	return nil
}
