// Package serve runs eKuiper 1.x-style extensions (package
// github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api) as an Oort plugin.
// It is what a ported plugin's `main` calls:
//
//	func main() { serve.Functions(map[string]api.Function{"geohashEncode": &geohashEncode{}}) }
//	func main() { serve.Source("random", func() api.Source { return &randomSource{} }) }
//	func main() { serve.Sink("file", func() api.Sink { return &fileSink{} }) }
//
// The plugin's name is the executable's file name (without "@version");
// Source and Sink take it explicitly, as the source or sink is named after it.
package serve

import (
	"fmt"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/internal/compat"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// Version is reported as the plugin's version (informational).
var Version = "1.0.0"

// Functions serves the functions, each shared by every rule as eKuiper shares
// an exported function object (one process for all rules). Never returns.
func Functions(functions map[string]api.Function) {
	oort.Serve(FunctionsPlugin(compat.PluginName(), functions))
}

// FunctionsPlugin is the oort.Plugin that Functions serves.
func FunctionsPlugin(name string, functions map[string]api.Function) oort.Plugin {
	exports := make(map[string]oort.Export, len(functions))
	for fname, f := range functions {
		switch f := f.(type) {
		case nil:
			exports[fname] = oort.Export{}
		case perInstance:
			exports[fname] = oort.Constructor(func() oort.Function { return NewFunction(f.make()) })
		default:
			exports[fname] = oort.Singleton(NewFunction(f))
		}
	}
	return oort.Plugin{Name: name, Version: Version, Functions: exports}
}

// Source serves a source named name; newSource makes one per rule (eKuiper's
// `func Random() api.Source` export). Never returns.
func Source(name string, newSource func() api.Source) {
	oort.Serve(SourcePlugin(name, newSource))
}

// SourcePlugin is the oort.Plugin that Source serves.
func SourcePlugin(name string, newSource func() api.Source) oort.Plugin {
	return oort.Plugin{Name: name, Version: Version, Source: oort.Constructor(func() oort.Source {
		return NewSource(newSource())
	})}
}

// Sink serves a sink named name; newSink makes one per rule action. Never
// returns.
func Sink(name string, newSink func() api.Sink) {
	oort.Serve(SinkPlugin(name, newSink))
}

// SinkPlugin is the oort.Plugin that Sink serves.
func SinkPlugin(name string, newSink func() api.Sink) oort.Plugin {
	return oort.Plugin{Name: name, Version: Version, Sink: oort.Constructor(func() oort.Sink {
		return NewSink(newSink())
	})}
}

// RegisterStateType registers the type of v (a struct, or any named type; a
// pointer registers what it points to), as eKuiper plugins do with
// gob.Register: a value of it put into state, or a slice, map or pointer of
// it, reads back as that type after a plugin restart too, where an
// unregistered struct reads back as a map[string]any. Structs are rebuilt
// from that map with encoding/json, so their JSON tags apply. Call it before
// the state is read, e.g. from init.
func RegisterStateType(v any) { compat.RegisterStateType(v) }

// PerInstance exports a function through its constructor, eKuiper's
// `func MyFunc() api.Function` export style: every call site of every rule gets
// a fresh object, so fields of the object are never shared (the plugin then
// runs one process per rule). A plain api.Function value in the map is one
// object shared by every rule instead.
//
//	serve.Functions(map[string]api.Function{"count": serve.PerInstance(NewCount)})
func PerInstance(newFunction func() api.Function) api.Function {
	return perInstance{make: newFunction, Function: newFunction()}
}

// perInstance marks a constructor export; its methods are a sample object's.
type perInstance struct {
	api.Function
	make func() api.Function
}

// function adapts an api.Function to oort.Function.
type function struct {
	f    api.Function
	ctxs *compat.ContextCache[*streamContext]
}

// NewFunction adapts an eKuiper 1.x function to an oort.Function.
func NewFunction(f api.Function) oort.Function {
	return &function{f: f, ctxs: compat.NewContextCache(newContext)}
}

func (a *function) Validate(specs []oort.ArgSpec) error {
	args := make([]any, len(specs))
	for i, s := range specs {
		args[i] = s
	}
	return a.f.Validate(args)
}

func (a *function) Exec(args []any, ctx oort.FunctionContext) (any, bool) {
	result, ok := a.f.Exec(args, a.ctxs.Get(ctx))
	if !ok {
		return result, false
	}
	p, err := compat.Plain(result)
	if err != nil {
		return err, false
	}
	return p, true
}

func (a *function) IsAggregate() bool { return a.f.IsAggregate() }

// source adapts a push-style api.Source to Oort's pull-style Source: Open
// runs in its own goroutine and fills a bounded buffer that Read drains.
type source struct {
	src      api.Source
	ctx      *streamContext
	cancel   func()
	consumer chan api.SourceTuple
	errCh    chan error
	done     chan struct{}
	pending  compat.Pending
}

// NewSource adapts an eKuiper 1.x source to an oort.Source.
func NewSource(src api.Source) oort.Source { return &source{src: src} }

func (s *source) Open(o oort.StreamContext, datasource string, props map[string]any) error {
	if err := s.src.Configure(datasource, compat.SourceProps(props)); err != nil {
		return err
	}
	root := newContext(o)
	ctx, cancel := root.WithCancel()
	s.ctx, s.cancel = ctx.(*streamContext), cancel
	s.consumer = make(chan api.SourceTuple, compat.BufferLength(props))
	s.errCh = make(chan error, 1)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		defer func() {
			if r := recover(); r != nil {
				select {
				case s.errCh <- fmt.Errorf("source Open panicked: %v", r):
				default:
				}
			}
		}()
		s.src.Open(s.ctx, s.consumer, s.errCh)
	}()
	return nil
}

func (s *source) Read(o oort.StreamContext, max int) ([]oort.Record, error) {
	// An error on errCh stops the rule at once, as in eKuiper.
	select {
	case err := <-s.errCh:
		return nil, err
	default:
	}
	return s.pending.Take(max, func(int) []oort.Record {
		return compat.Drain(o, s.consumer, max, s.convert)
	}), nil
}

func (s *source) convert(t api.SourceTuple, out []oort.Record) []oort.Record {
	if t == nil {
		return out
	}
	fields, err := compat.PlainMap(t.Message())
	if err != nil {
		s.ctx.SetError(fmt.Errorf("source tuple dropped: %w", err))
		return out
	}
	meta, err := compat.PlainMap(t.Meta())
	if err != nil {
		meta = nil
	}
	r := oort.Record{Fields: fields, Metadata: meta}
	if ts, ok := t.(interface{ Timestamp() time.Time }); ok {
		r.Timestamp = ts.Timestamp()
	}
	return append(out, r)
}

func (s *source) Close(oort.StreamContext) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	err := s.src.Close(s.ctx)
	// Give Open a moment to notice ctx.Done() and return.
	select {
	case <-s.done:
	case <-time.After(time.Second):
	}
	return err
}

// sink adapts an api.Sink to oort.Sink.
type sink struct {
	snk        api.Sink
	ctx        *streamContext
	sendSingle bool
}

// NewSink adapts an eKuiper 1.x sink to an oort.Sink.
func NewSink(snk api.Sink) oort.Sink { return &sink{snk: snk} }

func (k *sink) Open(o oort.StreamContext, props map[string]any) error {
	k.ctx = newContext(o)
	if t, ok := props["dataTemplate"].(string); ok {
		k.ctx.dataTemplate = t
	}
	if b, ok := props["sendSingle"].(bool); ok {
		k.sendSingle = b
	}
	if err := k.snk.Configure(compat.SinkProps(props)); err != nil {
		return err
	}
	return k.snk.Open(k.ctx)
}

func (k *sink) Collect(_ oort.StreamContext, records []oort.Record) error {
	if k.sendSingle {
		for _, r := range records {
			if err := k.snk.Collect(k.ctx, r.Fields); err != nil {
				return err
			}
		}
		return nil
	}
	rows := make([]map[string]any, len(records))
	for i, r := range records {
		rows[i] = r.Fields
	}
	return k.snk.Collect(k.ctx, rows)
}

func (k *sink) Close(oort.StreamContext) error {
	if k.ctx == nil {
		return nil
	}
	return k.snk.Close(k.ctx)
}
