// Package serve runs eKuiper 2.x-style extensions (package
// github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api) as an Oort plugin.
// It is what a ported plugin's `main` calls:
//
//	func main() { serve.Functions(map[string]api.Function{"scale": scale{}}) }
//	func main() { serve.Source("poll", func() api.Source { return &pollSource{} }) }
//	func main() { serve.Sink("file", func() api.Sink { return &fileSink{} }) }
//
// A source must also implement TupleSource, BytesSource, PullTupleSource or
// PullBytesSource, and a sink TupleCollector or BytesCollector; Serve checks
// this at start. A bytes source's payloads are decoded per the stream's
// format, as eKuiper's runtime does: json, binary or delimited (see
// payloadDecoder). A BytesCollector runs in payload mode: the supervisor encodes
// the rule's output per the action's format, dataTemplate and sendSingle, each
// payload is one Collect, and a Collect error is that payload's error. The plugin's name is the executable's file name (without
// "@version"); Source and Sink take it explicitly.
package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/internal/compat"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// Version is reported as the plugin's version (informational).
var Version = "1.0.0"

// DefaultInterval paces a pull source whose stream sets no interval.
const DefaultInterval = 10 * time.Second

// Functions serves the functions, each shared by every rule (one process for
// all rules). Never returns.
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

// Source serves a source named name; newSource makes one per rule. Never
// returns.
func Source(name string, newSource func() api.Source) {
	check(newSource != nil, func() error { _, err := kindOfSource(newSource()); return err })
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
	check(newSink != nil, func() error { return kindOfSink(newSink()) })
	oort.Serve(SinkPlugin(name, newSink))
}

// SinkPlugin is the oort.Plugin that Sink serves.
func SinkPlugin(name string, newSink func() api.Sink) oort.Plugin {
	return oort.Plugin{Name: name, Version: Version, Sink: oort.Constructor(func() oort.Sink {
		return NewSink(newSink())
	})}
}

func check(ok bool, f func() error) {
	if !ok {
		return
	}
	if err := f(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", compat.PluginName(), err)
		os.Exit(1)
	}
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

// NewFunction adapts an eKuiper 2.x function to an oort.Function.
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
	result, ok := a.f.Exec(a.ctxs.Get(ctx), args)
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

type sourceKind int

const (
	pushTuples sourceKind = iota
	pushBytes
	pullTuples
	pullBytes
)

func kindOfSource(s api.Source) (sourceKind, error) {
	switch s.(type) {
	case api.TupleSource:
		return pushTuples, nil
	case api.BytesSource:
		return pushBytes, nil
	case api.PullTupleSource:
		return pullTuples, nil
	case api.PullBytesSource:
		return pullBytes, nil
	}
	return 0, fmt.Errorf("the source is a %T, which implements none of api.TupleSource, api.BytesSource, api.PullTupleSource, api.PullBytesSource", s)
}

func kindOfSink(s api.Sink) error {
	switch s.(type) {
	case api.TupleCollector, api.BytesCollector:
		return nil
	}
	return fmt.Errorf("the sink is a %T, which implements neither api.TupleCollector nor api.BytesCollector", s)
}

// source adapts an eKuiper 2.x source to Oort's pull-style Source. What the
// source ingests (pushed by Subscribe, or by Pull at every interval) goes
// into a bounded buffer that Read drains; ingest blocks while the buffer is
// full (back-pressure).
type source struct {
	src     api.Source
	kind    sourceKind
	ctx     *streamContext
	cancel  func()
	buf     chan oort.Record
	pending compat.Pending
	wg      sync.WaitGroup
	format  string
	// decode turns a bytes source's payload into what a TupleIngest takes,
	// per the stream's format (set by Open for bytes sources only).
	decode func(payload []byte) (any, error)
}

// NewSource adapts an eKuiper 2.x source to an oort.Source.
func NewSource(src api.Source) oort.Source { return &source{src: src} }

func (s *source) Open(o oort.StreamContext, datasource string, props map[string]any) error {
	kind, err := kindOfSource(s.src)
	if err != nil {
		return err
	}
	s.kind = kind
	configs := compat.SourceProps(props)
	if _, ok := configs["datasource"]; !ok && datasource != "" {
		configs["datasource"] = datasource
	}
	s.format = "json"
	if f, ok := props["format"].(string); ok && f != "" {
		// The supervisor lowercases FORMAT already; eKuiper's format names
		// are case-insensitive, so a direct caller's "JSON" means json too.
		s.format = strings.ToLower(f)
	}
	if kind == pushBytes || kind == pullBytes {
		// Checked before Provision, so that a stream with a format this
		// layer cannot decode fails at rule start rather than dropping
		// every payload.
		if s.decode, err = payloadDecoder(s.format, props); err != nil {
			return err
		}
	}
	interval := DefaultInterval
	if kind == pullTuples || kind == pullBytes {
		if interval, err = compat.Interval(props["interval"], DefaultInterval); err != nil {
			return err
		}
		if interval <= 0 {
			return errors.New("interval must be positive for a pull source")
		}
	}
	root := newContext(o)
	ctx, cancel := root.WithCancel()
	s.ctx, s.cancel = ctx.(*streamContext), cancel
	s.buf = make(chan oort.Record, compat.BufferLength(props))
	if err := s.src.Provision(s.ctx, configs); err != nil {
		return err
	}
	if err := s.src.Connect(s.ctx, s.statusChange); err != nil {
		return err
	}
	switch kind {
	case pushTuples:
		return s.src.(api.TupleSource).Subscribe(s.ctx, s.ingestTuple, s.ingestError)
	case pushBytes:
		return s.src.(api.BytesSource).Subscribe(s.ctx, s.ingestBytes, s.ingestError)
	}
	s.wg.Add(1)
	go s.pullLoop(interval)
	return nil
}

func (s *source) pullLoop(interval time.Duration) {
	defer s.wg.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case trigger := <-ticker.C:
			err := guard(func() {
				if s.kind == pullTuples {
					s.src.(api.PullTupleSource).Pull(s.ctx, trigger, s.ingestTuple, s.ingestError)
				} else {
					s.src.(api.PullBytesSource).Pull(s.ctx, trigger, s.ingestBytes, s.ingestError)
				}
			})
			if err != nil {
				s.ctx.SetError(err)
			}
		}
	}
}

func guard(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Pull panicked: %v", r)
		}
	}()
	f()
	return nil
}

func (s *source) statusChange(status, message string) {
	if status == api.ConnectionDisconnected {
		s.ctx.GetLogger().Warnf("source %s: %s", status, message)
	} else {
		s.ctx.GetLogger().Debugf("source %s: %s", status, message)
	}
}

func (s *source) ingestError(_ api.StreamContext, err error) { s.ctx.SetError(err) }

// push puts one record into the buffer, waiting while it is full; records
// ingested after the instance closed are dropped.
func (s *source) push(r oort.Record) {
	select {
	case s.buf <- r:
	case <-s.ctx.Done():
	}
}

func (s *source) ingestTuple(_ api.StreamContext, data any, meta map[string]any, ts time.Time) {
	m, err := compat.PlainMap(meta)
	if err != nil {
		m = nil
	}
	one := func(fields any) {
		f, err := compat.PlainMap(fields)
		if err != nil {
			s.ctx.SetError(fmt.Errorf("ingested data dropped: %w", err))
			return
		}
		s.push(oort.Record{Fields: f, Metadata: m, Timestamp: ts})
	}
	switch d := data.(type) {
	case []map[string]any:
		for _, f := range d {
			one(f)
		}
	case api.MessageTupleList:
		for _, f := range d.ToMaps() {
			one(f)
		}
	case api.ReadonlyMessage:
		one(d.ToMap())
	case []any:
		for _, f := range d {
			one(f)
		}
	default:
		one(data)
	}
}

// ingestBytes decodes a payload per the stream's format, as eKuiper's
// runtime does for a bytes source; a payload that does not decode is reported
// (SetError) and skipped, and the source goes on.
func (s *source) ingestBytes(ctx api.StreamContext, payload []byte, meta map[string]any, ts time.Time) {
	v, err := s.decode(payload)
	if err != nil {
		s.ctx.SetError(err)
		return
	}
	s.ingestTuple(ctx, v, meta, ts)
}

// payloadDecoder returns the decoder of a bytes source's payloads for format,
// configured from the stream's properties (delimiter and fields for
// delimited), or an error naming the formats there are.
func payloadDecoder(format string, props map[string]any) (func([]byte) (any, error), error) {
	switch format {
	case "json":
		return decodeJSON, nil
	case "binary":
		return decodeBinary, nil
	case "delimited":
		delimiter := ","
		switch d := props["delimiter"].(type) {
		case nil:
		case string:
			// An empty delimiter means the default, as in eKuiper's
			// converter (strings.Split would otherwise split every rune).
			if d != "" {
				delimiter = d
			}
		default:
			return nil, fmt.Errorf("delimiter must be a string, got %T", d)
		}
		fields, err := fieldNames(props["fields"])
		if err != nil {
			return nil, err
		}
		return func(payload []byte) (any, error) { return decodeDelimited(payload, delimiter, fields), nil }, nil
	}
	return nil, fmt.Errorf("format %q is not supported for a bytes source (json, binary, delimited)", format)
}

// decodeJSON decodes one JSON value; numbers stay json.Number, so that
// integers beyond float64's precision keep their digits. An array becomes one
// row per element (ingestTuple's []any case), an object one row.
func decodeJSON(payload []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("payload is not json: %w", err)
	}
	return v, nil
}

// decodeBinary is eKuiper's binary format: the whole payload in field
// "self". The bytes are copied because the record waits in the buffer after
// ingest returns, while the source may reuse its slice (e.g. a read buffer).
func decodeBinary(payload []byte) (any, error) {
	return map[string]any{"self": bytes.Clone(payload)}, nil
}

// decodeDelimited is eKuiper's delimited format, one row per line: the values
// between delimiters, named by fields in order (values beyond the last field
// are dropped, as eKuiper does) or col0, col1, … without fields. Values stay
// strings: eKuiper leaves typing to the stream's schema. Lines end at "\n"
// (a "\r" before it is dropped too); empty lines, e.g. after a trailing
// newline, give no row, so an empty payload gives none.
func decodeDelimited(payload []byte, delimiter string, fields []string) any {
	var rows []map[string]any
	for _, line := range strings.Split(string(payload), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		values := strings.Split(line, delimiter)
		row := make(map[string]any, len(values))
		for i, v := range values {
			if fields == nil {
				row["col"+strconv.Itoa(i)] = v
			} else if i < len(fields) {
				row[fields[i]] = v
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// fieldNames reads the delimited format's column names: a list of strings
// (as a stream's YAML or JSON gives it) or one comma-separated string (as a
// WITH option gives it); nil when absent, meaning col0, col1, ….
func fieldNames(v any) ([]string, error) {
	var names []string
	switch f := v.(type) {
	case nil:
		return nil, nil
	case string:
		if strings.TrimSpace(f) == "" {
			return nil, nil
		}
		for _, n := range strings.Split(f, ",") {
			names = append(names, strings.TrimSpace(n))
		}
	case []string:
		names = f
	case []any:
		for _, e := range f {
			n, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("fields must be a list of strings or a comma-separated string, got an element %v (%T)", e, e)
			}
			names = append(names, n)
		}
	default:
		return nil, fmt.Errorf("fields must be a list of strings or a comma-separated string, got %T", v)
	}
	for _, n := range names {
		if n == "" {
			return nil, fmt.Errorf("fields has an empty name: %q", v)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	return names, nil
}

func (s *source) Read(o oort.StreamContext, max int) ([]oort.Record, error) {
	return s.pending.Take(max, func(max int) []oort.Record {
		return compat.Drain(o, s.buf, max, func(r oort.Record, out []oort.Record) []oort.Record {
			return append(out, r)
		})
	}), nil
}

func (s *source) Close(oort.StreamContext) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	err := s.src.Close(s.ctx)
	s.wg.Wait()
	return err
}

// sink adapts an eKuiper 2.x TupleCollector to oort.Sink: every record
// becomes one Collect call.
type sink struct {
	snk api.Sink
	ctx *streamContext
}

// bytesSink adapts an eKuiper 2.x BytesCollector: it is an oort.PayloadSink,
// so the supervisor encodes the items (per the action's format,
// dataTemplate, sendSingle, fields and delimiter, as eKuiper's runtime does)
// and every payload becomes one Collect call.
type bytesSink struct{ sink }

// NewSink adapts an eKuiper 2.x sink to an oort.Sink; for a BytesCollector
// it is also an oort.PayloadSink.
func NewSink(snk api.Sink) oort.Sink {
	if _, ok := snk.(api.BytesCollector); ok {
		return &bytesSink{sink{snk: snk}}
	}
	return &sink{snk: snk}
}

func (k *sink) Open(o oort.StreamContext, props map[string]any) error {
	if err := kindOfSink(k.snk); err != nil {
		return err
	}
	k.ctx = newContext(o)
	if err := k.snk.Provision(k.ctx, compat.SinkProps(props)); err != nil {
		return err
	}
	return k.snk.Connect(k.ctx, func(status, message string) {
		if status == api.ConnectionDisconnected {
			k.ctx.GetLogger().Warnf("sink %s: %s", status, message)
		}
	})
}

// Collect hands each record to a TupleCollector; the first error fails the
// batch.
func (k *sink) Collect(_ oort.StreamContext, records []oort.Record) error {
	c, ok := k.snk.(api.TupleCollector)
	if !ok {
		return fmt.Errorf("the sink is a %T, not an api.TupleCollector", k.snk)
	}
	for _, r := range records {
		if err := c.Collect(k.ctx, &tuple{fields: r.Fields, meta: r.Metadata, created: r.Timestamp}); err != nil {
			return err
		}
	}
	return nil
}

func (k *sink) Close(oort.StreamContext) error {
	if k.ctx == nil {
		return nil
	}
	return k.snk.Close(k.ctx)
}

// Collect is only called with records by a supervisor that does not encode
// payloads; the encoding is the supervisor's job, so such a batch fails.
func (k *bytesSink) Collect(oort.StreamContext, []oort.Record) error {
	return errors.New("this sink is an api.BytesCollector and takes payloads, but the supervisor sent records: it predates payload sinks (OpenSinkResponse.wants_payloads)")
}

// CollectPayloads hands each payload to Collect as a RawTuple. The payloads
// are independent items, as in eKuiper: all are collected, and those whose
// Collect failed are reported one by one (oort.ItemErrors), the others
// counting as delivered.
func (k *bytesSink) CollectPayloads(_ oort.StreamContext, payloads [][]byte) error {
	c := k.snk.(api.BytesCollector)
	var errs oort.ItemErrors
	for i, p := range payloads {
		err := c.Collect(k.ctx, &rawTuple{raw: p})
		if err == nil {
			continue
		}
		if errs == nil {
			errs = make(oort.ItemErrors, len(payloads))
		}
		errs[i] = err
	}
	if errs == nil {
		return nil
	}
	return errs
}
