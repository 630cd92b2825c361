package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// output is one instance's file.
type output struct {
	path string
	file *os.File
	w    *bufio.Writer
}

// sink keeps one output per instance, so that one object can serve every
// rule when it is exported as a singleton.
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
