package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// output is one instance's file.
type output struct {
	path string
	file *os.File
	w    *bufio.Writer
}

// sink keeps one output per instance, so that one object can serve every
// rule when it is exported as a singleton. It is an oort.ColumnSink too:
// CollectColumns writes the lines Collect writes for the same records.
type sink struct {
	mu   sync.Mutex
	outs map[string]*output
}

func newSink() *sink { return &sink{outs: map[string]*output{}} }

func (s *sink) output(ctx oort.StreamContext) (*output, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.outs[ctx.GetInstanceId()]
	if !ok {
		return nil, fmt.Errorf("conformance sink: instance %q is not open", ctx.GetInstanceId())
	}
	return o, nil
}

func (s *sink) Open(ctx oort.StreamContext, props map[string]any) error {
	path, ok := props["path"].(string)
	if !ok || path == "" {
		return errors.New("the conformance sink needs `path`")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("conformance sink: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outs[ctx.GetInstanceId()] = &output{path: path, file: f, w: bufio.NewWriterSize(f, 64<<10)}
	return nil
}

func (s *sink) Collect(ctx oort.StreamContext, records []oort.Record) error {
	o, err := s.output(ctx)
	if err != nil {
		return err
	}
	var line []byte
	for _, r := range records {
		line = appendJSON(line[:0], r.Fields)
		line = append(line, '\n')
		if _, err := o.w.Write(line); err != nil {
			return fmt.Errorf("conformance sink: %w", err)
		}
	}
	// An acknowledged batch is in the file, not in this process's buffer.
	if err := o.w.Flush(); err != nil {
		return fmt.Errorf("conformance sink: %w", err)
	}
	return nil
}

// CollectColumns writes a columnar batch as Collect writes the records it
// stands for: one per row, a field per column, a null cell an absent field
// (as the SDK hands columns to a sink that takes records).
func (s *sink) CollectColumns(ctx oort.StreamContext, batch arrow.RecordBatch) error {
	records := make([]oort.Record, batch.NumRows())
	for i := range records {
		records[i] = oort.Record{Fields: make(map[string]any, batch.NumCols())}
	}
	for j, col := range batch.Columns() {
		name := batch.ColumnName(j)
		for i := range records {
			v, err := cell(col, i)
			if err != nil {
				return fmt.Errorf("conformance sink: field %q: %w", name, err)
			}
			if v != nil {
				records[i].Fields[name] = v
			}
		}
	}
	return s.Collect(ctx, records)
}

// cell is value i of arr as a row batch gives it: nil, bool, int64, uint64,
// float64, string, []byte, []any or map[string]any (a struct's null fields
// kept as nil).
func cell(arr arrow.Array, i int) (any, error) {
	if arr.IsNull(i) {
		return nil, nil
	}
	switch a := arr.(type) {
	case *array.Null:
		return nil, nil
	case *array.Boolean:
		return a.Value(i), nil
	case *array.Int8:
		return int64(a.Value(i)), nil
	case *array.Int16:
		return int64(a.Value(i)), nil
	case *array.Int32:
		return int64(a.Value(i)), nil
	case *array.Int64:
		return a.Value(i), nil
	case *array.Uint8:
		return uint64(a.Value(i)), nil
	case *array.Uint16:
		return uint64(a.Value(i)), nil
	case *array.Uint32:
		return uint64(a.Value(i)), nil
	case *array.Uint64:
		return a.Value(i), nil
	case *array.Float32:
		return float64(a.Value(i)), nil
	case *array.Float64:
		return a.Value(i), nil
	case *array.String:
		return a.Value(i), nil
	case *array.LargeString:
		return a.Value(i), nil
	case *array.Binary:
		return append([]byte{}, a.Value(i)...), nil
	case *array.LargeBinary:
		return append([]byte{}, a.Value(i)...), nil
	case *array.List:
		return listCell(a, i)
	case *array.LargeList:
		return listCell(a, i)
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		m := make(map[string]any, a.NumField())
		for k := range a.NumField() {
			v, err := cell(a.Field(k), i)
			if err != nil {
				return nil, err
			}
			m[st.Field(k).Name] = v
		}
		return m, nil
	}
	return nil, fmt.Errorf("an Arrow %s column, which the conformance sink cannot write", arr.DataType())
}

func listCell(a array.ListLike, i int) (any, error) {
	start, end := a.ValueOffsets(i)
	items := make([]any, 0, end-start)
	for k := start; k < end; k++ {
		v, err := cell(a.ListValues(), int(k))
		if err != nil {
			return nil, err
		}
		items = append(items, v)
	}
	return items, nil
}

func (s *sink) PreCommit(ctx oort.StreamContext, _ uint64) (any, error) {
	o, err := s.output(ctx)
	if err != nil {
		return nil, err
	}
	if err := o.w.Flush(); err != nil {
		return nil, err
	}
	if err := o.file.Sync(); err != nil {
		return nil, err
	}
	st, err := o.file.Stat()
	if err != nil {
		return nil, err
	}
	return st.Size(), nil
}

func (s *sink) Commit(ctx oort.StreamContext, id uint64, handle any) error {
	return s.note(ctx, "commit", id, handle)
}

func (s *sink) Abort(ctx oort.StreamContext, id uint64, handle any) error {
	return s.note(ctx, "abort", id, handle)
}

// note appends "<what> <id> <handle>" to <path>.commits and fsyncs it.
func (s *sink) note(ctx oort.StreamContext, what string, id uint64, handle any) error {
	o, err := s.output(ctx)
	if err != nil {
		return err
	}
	line := fmt.Appendf(nil, "%s %d ", what, id)
	line = append(appendJSON(line, handle), '\n')
	f, err := os.OpenFile(o.path+".commits", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(line)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func (s *sink) Close(ctx oort.StreamContext) error {
	s.mu.Lock()
	o, ok := s.outs[ctx.GetInstanceId()]
	delete(s.outs, ctx.GetInstanceId())
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return errors.Join(o.w.Flush(), o.file.Sync(), o.file.Close())
}
