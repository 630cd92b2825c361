package oort

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

// maxReadBatch bounds ReadRequest.max_batch, as the Rust SDK does.
const maxReadBatch = 65536

// instance is one opened object of an exported symbol.
type instance struct {
	id     string
	symbol string
	ctx    *instanceContext
	cancel context.CancelFunc

	fn   Function
	src  Source
	sink Sink

	// obj serializes the calls on a source or sink object; singletons share
	// one lock between all their instances.
	obj *sync.Mutex
	// batch keeps one batch of this instance in flight at a time, so that the
	// mutations taken after a batch are that batch's.
	batch sync.Mutex
	// closed is set when the instance closes, before its object's Close
	// runs; a call that finds it set under obj must not touch the object.
	closed atomic.Bool
}

// errClosed is what a call racing with Close gets.
func (in *instance) errClosed() error {
	return status.Errorf(codes.NotFound, "instance %q is closed", in.id)
}

// server holds the plugin's instances and implements the four services.
type server struct {
	plugin   Plugin
	protocol uint32
	root     context.Context

	mu        sync.Mutex
	instances map[string]*instance

	stopOnce sync.Once
	stop     chan struct{}
	graceMs  atomic.Uint32
}

func newServer(p Plugin, protocol uint32, root context.Context) *server {
	return &server{plugin: p, protocol: protocol, root: root, instances: map[string]*instance{}, stop: make(chan struct{})}
}

func (s *server) register(g *grpc.Server) {
	pb.RegisterPluginServer(g, pluginService{s: s})
	pb.RegisterFunctionServer(g, functionService{s: s})
	pb.RegisterSourceServer(g, sourceService{s: s})
	pb.RegisterSinkServer(g, sinkService{s: s})
}

// requestStop asks Serve to stop; it never blocks.
func (s *server) requestStop(graceMs uint32) {
	s.stopOnce.Do(func() {
		s.graceMs.Store(graceMs)
		close(s.stop)
	})
}

func (s *server) get(id string) *instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.instances[id]
}

func (s *server) function(id string) (*instance, error) {
	if in := s.get(id); in != nil && in.fn != nil {
		return in, nil
	}
	return nil, status.Errorf(codes.NotFound, "no open function instance %q", id)
}

func (s *server) source(id string) (*instance, error) {
	if in := s.get(id); in != nil && in.src != nil {
		return in, nil
	}
	return nil, status.Errorf(codes.NotFound, "no open source instance %q", id)
}

func (s *server) sink(id string) (*instance, error) {
	if in := s.get(id); in != nil && in.sink != nil {
		return in, nil
	}
	return nil, status.Errorf(codes.NotFound, "no open sink instance %q", id)
}

// exists fails with ALREADY_EXISTS when id is open.
func (s *server) exists(id string) error {
	if s.get(id) != nil {
		return status.Errorf(codes.AlreadyExists, "instance %q is already open", id)
	}
	return nil
}

// insert adds an opened instance, or fails when a concurrent Open of the same
// id won the race.
func (s *server) insert(in *instance) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.instances[in.id]; ok {
		return status.Errorf(codes.AlreadyExists, "instance %q is already open", in.id)
	}
	s.instances[in.id] = in
	return nil
}

func (s *server) close(id string) error {
	s.mu.Lock()
	in := s.instances[id]
	delete(s.instances, id)
	s.mu.Unlock()
	if in == nil {
		return status.Errorf(codes.NotFound, "no open instance %q", id)
	}
	if err := closeInstance(in); err != nil {
		return status.Errorf(codes.Internal, "close %q: %v", id, err)
	}
	return nil
}

// closeAll closes every instance, as Shutdown and SIGTERM require.
func (s *server) closeAll() {
	s.mu.Lock()
	all := s.instances
	s.instances = map[string]*instance{}
	s.mu.Unlock()
	for id, in := range all {
		if err := closeInstance(in); err != nil {
			processLogger.Warnf("close of instance %q failed during shutdown: %v", id, err)
		}
	}
}

// closeInstance ends the instance's context (which stops its Read stream) and
// calls the object's Close.
func closeInstance(in *instance) error {
	in.closed.Store(true)
	in.cancel()
	switch {
	case in.src != nil:
		in.obj.Lock()
		defer in.obj.Unlock()
		return guard(func() error { return in.src.Close(in.ctx) })
	case in.sink != nil:
		in.obj.Lock()
		defer in.obj.Unlock()
		return guard(func() error { return in.sink.Close(in.ctx) })
	}
	return nil
}

// guard runs user code, turning a panic into an error so that one bad call
// does not take the process down.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

func checkSpec(spec *pb.InstanceSpec) error {
	if spec == nil {
		return status.Error(codes.InvalidArgument, "missing instance spec")
	}
	if spec.GetInstanceId() == "" {
		return status.Error(codes.InvalidArgument, "instance_id must not be empty")
	}
	return nil
}

// makeObject returns the object for a new instance (or a probe) of an export.
func makeObject(e Export) (obj any, err error) {
	err = guard(func() error {
		obj = e.make()
		return nil
	})
	if err == nil && obj == nil {
		err = errors.New("the constructor returned nil")
	}
	return obj, err
}

// sendHeaders sends the response headers at once. grpc-go otherwise sends them
// lazily with the first message; the supervisor copes, but early headers tell
// it sooner that the stream is up.
func sendHeaders(stream grpc.ServerStream) {
	_ = stream.SendHeader(metadata.MD{})
}

// ---------------------------------------------------------------------------
// Plugin
// ---------------------------------------------------------------------------

type pluginService struct {
	pb.UnimplementedPluginServer
	s *server
}

func exportMode(e Export) pb.ExportMode {
	if e.singleton {
		return pb.ExportMode_EXPORT_MODE_SINGLETON
	}
	return pb.ExportMode_EXPORT_MODE_CONSTRUCTOR
}

func (p pluginService) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	plugin := p.s.plugin
	var symbols []*pb.Symbol
	for _, name := range plugin.functionNames() {
		e := plugin.Functions[name]
		aggregate := false
		if obj, err := makeObject(e); err == nil {
			if f, ok := obj.(Function); ok {
				_ = guard(func() error {
					aggregate = f.IsAggregate()
					return nil
				})
			}
		}
		symbols = append(symbols, &pb.Symbol{
			Kind: pb.Kind_KIND_FUNCTION, Name: name, Mode: exportMode(e), IsAggregate: aggregate,
		})
	}
	if plugin.Source.IsSet() {
		symbols = append(symbols, &pb.Symbol{Kind: pb.Kind_KIND_SOURCE, Name: plugin.Name, Mode: exportMode(plugin.Source)})
	}
	if plugin.Sink.IsSet() {
		symbols = append(symbols, &pb.Symbol{Kind: pb.Kind_KIND_SINK, Name: plugin.Name, Mode: exportMode(plugin.Sink)})
	}
	return &pb.DescribeResponse{
		Name:            plugin.Name,
		Version:         plugin.Version,
		Symbols:         symbols,
		ProtocolVersion: p.s.protocol,
		SdkName:         SDKName,
		SdkVersion:      SDKVersion,
		// Every function reads and answers columns: the SDK converts for
		// those written against the row API.
		Encodings:    []pb.Encoding{pb.Encoding_ENCODING_ARROW_IPC},
		StateVersion: plugin.StateVersion,
	}, nil
}

func (p pluginService) MigrateState(_ context.Context, req *pb.MigrateStateRequest) (*pb.MigrateStateResponse, error) {
	return p.s.migrateState(req)
}

func (p pluginService) Shutdown(_ context.Context, req *pb.ShutdownRequest) (*pb.ShutdownResponse, error) {
	// Answer at once; Serve does the stopping.
	p.s.requestStop(req.GetGraceMs())
	return &pb.ShutdownResponse{}, nil
}

// ---------------------------------------------------------------------------
// Function
// ---------------------------------------------------------------------------

type functionService struct {
	pb.UnimplementedFunctionServer
	s *server
}

func (f functionService) export(symbol string) (Export, error) {
	e, ok := f.s.plugin.Functions[symbol]
	if !ok || !e.IsSet() {
		return Export{}, status.Errorf(codes.NotFound, "plugin %s exports no function %q", f.s.plugin.Name, symbol)
	}
	return e, nil
}

func newFunction(e Export, symbol string) (Function, error) {
	obj, err := makeObject(e)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "cannot make function %q: %v", symbol, err)
	}
	fn, ok := obj.(Function)
	if !ok {
		return nil, status.Errorf(codes.Internal, "function %q: a %T is not an oort.Function", symbol, obj)
	}
	return fn, nil
}

func (f functionService) Validate(_ context.Context, req *pb.ValidateRequest) (*pb.ValidateResponse, error) {
	e, err := f.export(req.GetSymbol())
	if err != nil {
		return nil, err
	}
	fn, err := newFunction(e, req.GetSymbol())
	if err != nil {
		return nil, err
	}
	args := make([]ArgSpec, len(req.GetArgs()))
	for i, a := range req.GetArgs() {
		args[i] = ArgSpec{Expression: a.GetExpression(), Column: a.GetColumn()}
		if a.Literal != nil {
			args[i].IsLiteral = true
			args[i].Literal = fromValue(a.Literal)
		}
	}
	resp := &pb.ValidateResponse{}
	if err := guard(func() error { return fn.Validate(args) }); err != nil {
		resp.Error = err.Error()
		if resp.Error == "" {
			resp.Error = fmt.Sprintf("%s refused its arguments", req.GetSymbol())
		}
	}
	return resp, nil
}

func (f functionService) Open(_ context.Context, req *pb.OpenFunctionRequest) (*pb.OpenResponse, error) {
	spec := req.GetInstance()
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	e, err := f.export(spec.GetSymbol())
	if err != nil {
		return nil, err
	}
	if err := f.s.exists(spec.GetInstanceId()); err != nil {
		return nil, err
	}
	fn, err := newFunction(e, spec.GetSymbol())
	if err != nil {
		return nil, err
	}
	ctx, cancel := newContext(f.s.root, spec)
	in := &instance{id: spec.GetInstanceId(), symbol: spec.GetSymbol(), ctx: ctx, cancel: cancel, fn: fn}
	if err := f.s.insert(in); err != nil {
		cancel()
		return nil, err
	}
	return &pb.OpenResponse{}, nil
}

func (f functionService) Exec(stream pb.Function_ExecServer) error {
	sendHeaders(stream)
	// Arrow schemas are remembered per stream, in each direction.
	var cols columnStream
	for {
		batch, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		cols.note(batch.GetArrowSchema())
		in, err := f.s.function(batch.GetInstanceId())
		if err != nil {
			return err
		}
		var res *pb.ExecResult
		if len(batch.GetArrow()) == 0 {
			res = in.exec(batch)
		} else {
			rec, err := cols.decode(batch.GetArrow())
			if err != nil {
				// Without the batch the row count is unknown, so no answer
				// can be right: end the stream, as for an unknown instance.
				return status.Errorf(codes.InvalidArgument, "batch %d of %q has unreadable Arrow columns: %v", batch.GetSeq(), in.id, err)
			}
			res = in.execArrow(batch, rec, &cols)
			rec.Release()
		}
		if err := stream.Send(res); err != nil {
			return err
		}
	}
}

// exec runs one row batch: exactly one result per row, in order, and the
// mutations the batch made.
func (in *instance) exec(batch *pb.ExecBatch) *pb.ExecResult {
	in.batch.Lock()
	defer in.batch.Unlock()
	rows := batch.GetRows()
	results := make([]*pb.RowResult, len(rows))
	for i, row := range rows {
		args := make([]any, len(row.GetArgs()))
		for j, a := range row.GetArgs() {
			args[j] = fromValue(a)
		}
		results[i] = in.execRow(args)
	}
	in.ctx.logExceptions()
	return &pb.ExecResult{Seq: batch.GetSeq(), Results: results, Mutations: in.ctx.takeMutations()}
}

func (in *instance) execRow(args []any) (result *pb.RowResult) {
	defer func() {
		if r := recover(); r != nil {
			result = rowError(fmt.Sprintf("%s panicked: %v", in.symbol, r))
		}
	}()
	out, ok := in.fn.Exec(args, in.ctx)
	if !ok {
		return rowError(failureText(out, in.symbol))
	}
	v, err := toValue(out)
	if err != nil {
		return rowError(fmt.Sprintf("%s returned a value Oort cannot carry: %v", in.symbol, err))
	}
	return &pb.RowResult{Outcome: &pb.RowResult_Value{Value: v}}
}

func rowError(msg string) *pb.RowResult {
	return &pb.RowResult{Outcome: &pb.RowResult_Error{Error: msg}}
}

// failureText is the row error for Exec's (result, false): the error's text,
// or the value's string form.
func failureText(result any, symbol string) string {
	var text string
	switch r := result.(type) {
	case nil:
	case error:
		text = r.Error()
	case string:
		text = r
	default:
		text = fmt.Sprint(r)
	}
	if text == "" {
		text = symbol + " failed"
	}
	return text
}

func (f functionService) Close(_ context.Context, req *pb.CloseRequest) (*pb.CloseResponse, error) {
	if err := f.s.close(req.GetInstanceId()); err != nil {
		return nil, err
	}
	return &pb.CloseResponse{}, nil
}

// ---------------------------------------------------------------------------
// Source
// ---------------------------------------------------------------------------

type sourceService struct {
	pb.UnimplementedSourceServer
	s *server
}

func (in *instance) rewindable() bool {
	switch in.src.(type) {
	case Rewindable, RewindableWithContext:
		return true
	}
	return false
}

func (src sourceService) Open(_ context.Context, req *pb.OpenSourceRequest) (*pb.OpenSourceResponse, error) {
	spec := req.GetInstance()
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	e := src.s.plugin.Source
	if !e.IsSet() {
		return nil, status.Error(codes.Unimplemented, "this plugin exports no source")
	}
	if err := src.s.exists(spec.GetInstanceId()); err != nil {
		return nil, err
	}
	obj, err := makeObject(e)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "source open failed: cannot make the source: %v", err)
	}
	source, ok := obj.(Source)
	if !ok {
		return nil, status.Errorf(codes.Internal, "a %T is not an oort.Source", obj)
	}
	ctx, cancel := newContext(src.s.root, spec)
	in := &instance{id: spec.GetInstanceId(), symbol: spec.GetSymbol(), ctx: ctx, cancel: cancel, src: source, obj: e.lock}
	if in.obj == nil {
		in.obj = &sync.Mutex{}
	}
	props := fromValueMap(req.GetProps())
	in.obj.Lock()
	err = guard(func() error { return source.Open(ctx, req.GetDatasource(), props) })
	in.obj.Unlock()
	if err != nil {
		cancel()
		return nil, status.Errorf(codes.FailedPrecondition, "source open failed: %v", err)
	}
	if err := src.s.insert(in); err != nil {
		_ = closeInstance(in)
		return nil, err
	}
	return &pb.OpenSourceResponse{Rewindable: in.rewindable()}, nil
}

func (src sourceService) Read(req *pb.ReadRequest, stream pb.Source_ReadServer) error {
	in, err := src.s.source(req.GetInstanceId())
	if err != nil {
		return err
	}
	limit := int(min(max(req.GetMaxBatch(), 1), maxReadBatch))
	// Columns only when the supervisor accepts them and the source offers
	// them; the schema state belongs to this stream.
	var cols *columnStream
	if _, ok := in.src.(ColumnSource); ok && req.GetAcceptArrow() {
		cols = &columnStream{}
	}
	sendHeaders(stream)
	for {
		select {
		case <-in.ctx.Done():
			// The instance was closed, or the process is stopping.
			return nil
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		default:
		}
		batch, err := in.read(limit, cols)
		if err != nil {
			if in.ctx.Err() != nil {
				return nil
			}
			return status.Errorf(codes.Internal, "source read failed: %v", err)
		}
		if batch == nil {
			// Nothing to send. Read should have waited for data; a short
			// pause keeps a source that returns at once from spinning.
			time.Sleep(time.Millisecond)
			continue
		}
		if err := stream.Send(batch); err != nil {
			return err
		}
	}
}

// read calls Read, or ReadColumns when cols is set (then GetOffset, under
// the same lock) once, and returns the batch to send, or nil when there is
// nothing to send.
func (in *instance) read(limit int, cols *columnStream) (*pb.RecordBatch, error) {
	in.batch.Lock()
	defer in.batch.Unlock()
	var records []Record
	var columns arrow.RecordBatch
	var offset any
	in.obj.Lock()
	if in.closed.Load() {
		in.obj.Unlock()
		return nil, nil
	}
	err := guard(func() error {
		var err error
		if cols != nil {
			if columns, err = readColumns(in.src.(ColumnSource), in.ctx, limit); err != nil {
				return err
			}
			if columns != nil && columns.NumRows() > int64(limit) {
				return fmt.Errorf("ReadColumns returned %d rows, more than the %d asked for", columns.NumRows(), limit)
			}
		}
		if columns == nil {
			if records, err = in.src.Read(in.ctx, limit); err != nil {
				return err
			}
			if len(records) > limit {
				return fmt.Errorf("Read returned %d records, more than the %d asked for", len(records), limit)
			}
		}
		switch r := in.src.(type) {
		case Rewindable:
			offset, err = r.GetOffset()
		case RewindableWithContext:
			offset, err = r.GetOffset(in.ctx)
		}
		if err != nil {
			return fmt.Errorf("GetOffset: %w", err)
		}
		return nil
	})
	in.obj.Unlock()
	if columns != nil {
		defer columns.Release()
	}
	mutations := in.ctx.takeMutations()
	if err != nil {
		return nil, err
	}
	exceptions := in.ctx.takeExceptions()
	rows := len(records)
	if columns != nil {
		rows = int(columns.NumRows())
	}
	if rows == 0 && len(mutations) == 0 && len(exceptions) == 0 {
		return nil, nil
	}
	batch := &pb.RecordBatch{Mutations: mutations, Exceptions: exceptions}
	if columns != nil && rows > 0 {
		if err := checkFields(columns); err != nil {
			return nil, fmt.Errorf("ReadColumns: %w", err)
		}
		if batch.ArrowSchema, batch.Arrow, err = cols.encodeBatch(columns); err != nil {
			return nil, fmt.Errorf("ReadColumns returned columns the SDK cannot encode: %w", err)
		}
	} else {
		batch.Records = make([]*pb.Record, len(records))
		for i, r := range records {
			p, err := recordToPB(r)
			if err != nil {
				return nil, fmt.Errorf("record %d: %w", i, err)
			}
			batch.Records[i] = p
		}
	}
	if in.rewindable() {
		v, err := toValue(offset)
		if err != nil {
			return nil, fmt.Errorf("offset: %w", err)
		}
		batch.Offset = v
	}
	return batch, nil
}

// readColumns calls ReadColumns; a typed nil (say a nil arrow.RecordBatch
// implementation) in the interface counts as nil, and a batch returned with
// an error is released.
func readColumns(src ColumnSource, ctx StreamContext, limit int) (arrow.RecordBatch, error) {
	rec, err := src.ReadColumns(ctx, limit)
	if v := reflect.ValueOf(rec); rec != nil && v.Kind() == reflect.Pointer && v.IsNil() {
		rec = nil
	}
	if err != nil && rec != nil {
		rec.Release()
		rec = nil
	}
	return rec, err
}

func (src sourceService) Rewind(_ context.Context, req *pb.RewindRequest) (*pb.RewindResponse, error) {
	in, err := src.s.source(req.GetInstanceId())
	if err != nil {
		return nil, err
	}
	offset := fromValue(req.GetOffset())
	in.batch.Lock()
	defer in.batch.Unlock()
	in.obj.Lock()
	defer in.obj.Unlock()
	if in.closed.Load() {
		return nil, in.errClosed()
	}
	err = guard(func() error {
		switch r := in.src.(type) {
		case Rewindable:
			return r.Rewind(offset)
		case RewindableWithContext:
			return r.Rewind(in.ctx, offset)
		}
		return errors.New("this source is not rewindable")
	})
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "rewind failed: %v", err)
	}
	return &pb.RewindResponse{}, nil
}

func (src sourceService) Close(_ context.Context, req *pb.CloseRequest) (*pb.CloseResponse, error) {
	if err := src.s.close(req.GetInstanceId()); err != nil {
		return nil, err
	}
	return &pb.CloseResponse{}, nil
}

// ---------------------------------------------------------------------------
// Sink
// ---------------------------------------------------------------------------

type sinkService struct {
	pb.UnimplementedSinkServer
	s *server
}

func (k sinkService) Open(_ context.Context, req *pb.OpenSinkRequest) (*pb.OpenSinkResponse, error) {
	spec := req.GetInstance()
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	e := k.s.plugin.Sink
	if !e.IsSet() {
		return nil, status.Error(codes.Unimplemented, "this plugin exports no sink")
	}
	if err := k.s.exists(spec.GetInstanceId()); err != nil {
		return nil, err
	}
	obj, err := makeObject(e)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "sink open failed: cannot make the sink: %v", err)
	}
	sink, ok := obj.(Sink)
	if !ok {
		return nil, status.Errorf(codes.Internal, "a %T is not an oort.Sink", obj)
	}
	ctx, cancel := newContext(k.s.root, spec)
	in := &instance{id: spec.GetInstanceId(), symbol: spec.GetSymbol(), ctx: ctx, cancel: cancel, sink: sink, obj: e.lock}
	if in.obj == nil {
		in.obj = &sync.Mutex{}
	}
	props := fromValueMap(req.GetProps())
	in.obj.Lock()
	err = guard(func() error { return sink.Open(ctx, props) })
	in.obj.Unlock()
	if err != nil {
		cancel()
		return nil, status.Errorf(codes.FailedPrecondition, "sink open failed: %v", err)
	}
	if err := k.s.insert(in); err != nil {
		_ = closeInstance(in)
		return nil, err
	}
	_, transactional := sink.(TwoPhaseCommit)
	_, wantsPayloads := sink.(PayloadSink)
	// Payloads win: the supervisor never sends columns to a sink that wants
	// payloads, so such a sink does not claim to take them.
	_, takesArrow := sink.(ColumnSink)
	takesArrow = takesArrow && !wantsPayloads
	return &pb.OpenSinkResponse{Transactional: transactional, WantsPayloads: wantsPayloads, TakesArrow: takesArrow}, nil
}

func (k sinkService) Write(stream pb.Sink_WriteServer) error {
	sendHeaders(stream)
	// Arrow schemas are remembered per stream.
	var cols columnStream
	for {
		batch, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		cols.note(batch.GetArrowSchema())
		in, err := k.s.sink(batch.GetInstanceId())
		if err != nil {
			return err
		}
		var ack *pb.WriteAck
		if len(batch.GetArrow()) == 0 {
			ack = in.write(batch, nil)
		} else {
			rec, err := cols.decode(batch.GetArrow())
			if err != nil {
				// Retrying the same bytes cannot help: end the stream, as
				// Exec does.
				return status.Errorf(codes.InvalidArgument, "batch %d of %q has unreadable Arrow columns: %v", batch.GetSeq(), in.id, err)
			}
			ack = in.write(batch, rec)
			rec.Release()
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

// write hands one batch to Collect, CollectPayloads or, for a batch that came
// as columns (decoded in columns), CollectColumns, and acknowledges it with
// its mutations and, when the sink reported them, its per-item errors.
func (in *instance) write(batch *pb.WriteBatch, columns arrow.RecordBatch) *pb.WriteAck {
	in.batch.Lock()
	defer in.batch.Unlock()
	// A payload sink gets the payloads, unless the batch carries records
	// (a supervisor that predates payloads): Collect is then the fallback.
	payloadSink, wantsPayloads := in.sink.(PayloadSink)
	usePayloads := wantsPayloads && len(batch.GetRecords()) == 0 && columns == nil
	columnSink, takesColumns := in.sink.(ColumnSink)
	var collect func() error
	var items int
	switch {
	case columns != nil && takesColumns:
		items = int(columns.NumRows())
		collect = func() error { return columnSink.CollectColumns(in.ctx, columns) }
	case columns != nil:
		// Only a supervisor that ignored takes_arrow sends this: Collect
		// gets the records the columns stand for.
		records, err := recordsOf(columns)
		if err != nil {
			return &pb.WriteAck{Seq: batch.GetSeq(), Error: fmt.Sprintf("unreadable Arrow columns: %v", err), Mutations: in.ctx.takeMutations()}
		}
		items = len(records)
		collect = func() error { return in.sink.Collect(in.ctx, records) }
	case usePayloads:
		payloads := batch.GetPayloads()
		items = len(payloads)
		collect = func() error { return payloadSink.CollectPayloads(in.ctx, payloads) }
	default:
		records := make([]Record, len(batch.GetRecords()))
		for i, r := range batch.GetRecords() {
			records[i] = recordFromPB(r)
		}
		items = len(records)
		collect = func() error { return in.sink.Collect(in.ctx, records) }
	}
	in.obj.Lock()
	err := fmt.Errorf("instance %q is closed", in.id)
	if !in.closed.Load() {
		err = guard(collect)
	}
	in.obj.Unlock()
	in.ctx.logExceptions()
	ack := &pb.WriteAck{Seq: batch.GetSeq(), Mutations: in.ctx.takeMutations()}
	var itemErrs ItemErrors
	switch {
	case err == nil:
	case errors.As(err, &itemErrs) && len(itemErrs) == items:
		ack.ItemErrors = make([]string, items)
		for i, e := range itemErrs {
			if e != nil {
				// "" would mean delivered.
				if ack.ItemErrors[i] = e.Error(); ack.ItemErrors[i] == "" {
					ack.ItemErrors[i] = "item failed"
				}
			}
		}
	case errors.As(err, &itemErrs):
		ack.Error = fmt.Sprintf("the sink reported %d item results for a batch of %d items", len(itemErrs), items)
	default:
		ack.Error = err.Error()
		if ack.Error == "" {
			ack.Error = "collect failed"
		}
	}
	return ack
}

// twoPhase runs a checkpoint call on the sink. For a sink that does not take
// part in checkpoints it does nothing and succeeds, as the Rust SDK does.
func (k sinkService) twoPhase(id, what string, checkpoint uint64, call func(*instance, TwoPhaseCommit) error) error {
	in, err := k.s.sink(id)
	if err != nil {
		return err
	}
	in.batch.Lock()
	defer in.batch.Unlock()
	tpc, ok := in.sink.(TwoPhaseCommit)
	if !ok {
		return nil
	}
	in.obj.Lock()
	defer in.obj.Unlock()
	if in.closed.Load() {
		return in.errClosed()
	}
	if err := guard(func() error { return call(in, tpc) }); err != nil {
		return status.Errorf(codes.Internal, "%s of checkpoint %d failed: %v", what, checkpoint, err)
	}
	return nil
}

func (k sinkService) PreCommit(_ context.Context, req *pb.PreCommitRequest) (*pb.PreCommitResponse, error) {
	id := req.GetCheckpointId()
	handle := nullValue()
	err := k.twoPhase(req.GetInstanceId(), "pre-commit", id, func(in *instance, tpc TwoPhaseCommit) error {
		h, err := tpc.PreCommit(in.ctx, id)
		if err != nil {
			return err
		}
		if handle, err = toValue(h); err != nil {
			return fmt.Errorf("handle: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &pb.PreCommitResponse{Handle: handle}, nil
}

func (k sinkService) Commit(_ context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	id, handle := req.GetCheckpointId(), fromValue(req.GetHandle())
	err := k.twoPhase(req.GetInstanceId(), "commit", id, func(in *instance, tpc TwoPhaseCommit) error {
		return tpc.Commit(in.ctx, id, handle)
	})
	if err != nil {
		return nil, err
	}
	return &pb.CommitResponse{}, nil
}

func (k sinkService) Abort(_ context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	id, handle := req.GetCheckpointId(), fromValue(req.GetHandle())
	err := k.twoPhase(req.GetInstanceId(), "abort", id, func(in *instance, tpc TwoPhaseCommit) error {
		return tpc.Abort(in.ctx, id, handle)
	})
	if err != nil {
		return nil, err
	}
	return &pb.CommitResponse{}, nil
}

func (k sinkService) Close(_ context.Context, req *pb.CloseRequest) (*pb.CloseResponse, error) {
	if err := k.s.close(req.GetInstanceId()); err != nil {
		return nil, err
	}
	return &pb.CloseResponse{}, nil
}
