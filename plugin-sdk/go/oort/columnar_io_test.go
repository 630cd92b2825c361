package oort

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc/codes"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

// Columnar (Arrow IPC) sources and sinks, over a real socket
// (docs/protocol.md §4.5, "Columnar sources and sinks").

// namedBatch is a record batch of the given columns, named names.
func namedBatch(names []string, cols ...arrow.Array) arrow.RecordBatch {
	fields := make([]arrow.Field, len(cols))
	rows := 0
	for i, c := range cols {
		fields[i] = arrow.Field{Name: names[i], Type: c.DataType(), Nullable: true}
		rows = c.Len()
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(rows))
}

// fieldMessages encodes record columns as the supervisor does, as the Schema
// message and the RecordBatch message of an IPC stream (split from
// arrow-go's stream writer, so the SDK's encoder does not check itself).
func fieldMessages(t *testing.T, names []string, cols ...arrow.Array) (schema, batch []byte) {
	t.Helper()
	rec := namedBatch(names, cols...)
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()))
	must(t, w.Write(rec))
	stream := slices.Clone(buf.Bytes())
	must(t, w.Close())
	n := 8 + int(binary.LittleEndian.Uint32(stream[4:]))
	return stream[:n], stream[n:]
}

// fieldRows reads one columnar batch of a stream as the supervisor does (with
// the stream's last schema, kept in *schema), as rows of name → value, null
// cells left out.
func fieldRows(t *testing.T, schema *[]byte, schemaMsg, batchMsg []byte) []map[string]any {
	t.Helper()
	if len(schemaMsg) > 0 {
		*schema = schemaMsg
	}
	r, err := ipc.NewReader(bytes.NewReader(append(slices.Clone(*schema), batchMsg...)))
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	defer r.Release()
	if !r.Next() {
		t.Fatalf("no record batch: %v", r.Err())
	}
	records, err := recordsOf(r.RecordBatch())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]any, len(records))
	for i, rec := range records {
		out[i] = rec.Fields
	}
	return out
}

// columnSink is a ColumnSink: it keeps the rows of the batches it gets, in
// either encoding, and counts the columnar ones in state. A row whose "a"
// is -1 is refused on its own.
type columnSink struct {
	mu      sync.Mutex
	columns [][]map[string]any
	records [][]map[string]any
}

func (c *columnSink) Open(StreamContext, map[string]any) error { return nil }
func (c *columnSink) Close(StreamContext) error                { return nil }
func (c *columnSink) Collect(_ StreamContext, records []Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rows []map[string]any
	for _, r := range records {
		rows = append(rows, r.Fields)
	}
	c.records = append(c.records, rows)
	return nil
}
func (c *columnSink) CollectColumns(ctx StreamContext, batch arrow.RecordBatch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	rows := make([]map[string]any, batch.NumRows())
	errs := make(ItemErrors, batch.NumRows())
	refused := false
	for i := range rows {
		rows[i] = map[string]any{}
		for j, col := range batch.Columns() {
			rows[i][batch.ColumnName(j)] = goValue(col, i)
		}
		if rows[i]["a"] == int64(-1) {
			errs[i], refused = errors.New("minus one"), true
		}
	}
	c.columns = append(c.columns, rows)
	if err := ctx.IncrCounter("column batches", 1); err != nil {
		return err
	}
	if refused {
		return errs
	}
	return nil
}

func TestColumnSinkTakesArrow(t *testing.T) {
	sink := &columnSink{}
	s := start(t, Plugin{Name: "colsink", Sink: Singleton(sink)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snk := pb.NewSinkClient(s.conn)
	so, err := snk.Open(ctx, &pb.OpenSinkRequest{Instance: spec("r1/sink_0", "colsink")})
	if err != nil || !so.GetTakesArrow() || so.GetWantsPayloads() {
		t.Fatalf("a ColumnSink takes Arrow: %v %v", so, err)
	}
	write, err := snk.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(b *pb.WriteBatch) *pb.WriteAck {
		t.Helper()
		b.InstanceId = "r1/sink_0"
		must(t, write.Send(b))
		ack, err := write.Recv()
		if err != nil || ack.GetSeq() != b.GetSeq() {
			t.Fatalf("ack %v, %v", ack, err)
		}
		return ack
	}
	names := []string{"a", "b"}

	// The first columnar batch carries its schema.
	schema, msg := fieldMessages(t, names,
		column(t, arrow.PrimitiveTypes.Int64, int64(1), nil, int64(3)),
		column(t, arrow.BinaryTypes.String, "x", "y", nil))
	ack := send(&pb.WriteBatch{Seq: 0, ArrowSchema: schema, Arrow: msg})
	if ack.GetError() != "" || len(ack.GetItemErrors()) != 0 || !protoEqualMutations(ack.GetMutations(), counterMutation("column batches", 1)) {
		t.Fatalf("ack %v", ack)
	}
	// The next one comes without: the stream's schema applies.
	_, msg = fieldMessages(t, names,
		column(t, arrow.PrimitiveTypes.Int64, int64(-1), int64(5)),
		column(t, arrow.BinaryTypes.String, "é€", ""))
	ack = send(&pb.WriteBatch{Seq: 1, Arrow: msg})
	if ack.GetError() != "" || !reflect.DeepEqual(ack.GetItemErrors(), []string{"minus one", ""}) {
		t.Fatalf("item errors count one per row: %v", ack)
	}
	// A new schema replaces the old one.
	schema, msg = fieldMessages(t, []string{"u"}, column(t, arrow.PrimitiveTypes.Uint64, uint64(1<<63)))
	send(&pb.WriteBatch{Seq: 2, ArrowSchema: schema, Arrow: msg})
	// Records still go to Collect.
	rec, _ := recordToPB(Record{Fields: map[string]any{"a": 7}})
	send(&pb.WriteBatch{Seq: 3, Records: []*pb.Record{rec}})

	sink.mu.Lock()
	defer sink.mu.Unlock()
	want := [][]map[string]any{
		{{"a": int64(1), "b": "x"}, {"a": nil, "b": "y"}, {"a": int64(3), "b": nil}},
		{{"a": int64(-1), "b": "é€"}, {"a": int64(5), "b": ""}},
		{{"u": uint64(1 << 63)}},
	}
	if !reflect.DeepEqual(sink.columns, want) {
		t.Fatalf("columns\n got %v\nwant %v", sink.columns, want)
	}
	if !reflect.DeepEqual(sink.records, [][]map[string]any{{{"a": int64(7)}}}) {
		t.Fatalf("records %v", sink.records)
	}
}

func TestColumnSinkStreamsKeepTheirOwnSchema(t *testing.T) {
	s := start(t, Plugin{Name: "colsink", Sink: Singleton(&columnSink{})})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snk := pb.NewSinkClient(s.conn)
	if _, err := snk.Open(ctx, &pb.OpenSinkRequest{Instance: spec("r1/sink_0", "colsink")}); err != nil {
		t.Fatal(err)
	}
	// A new stream knows no schema: a batch without one is unreadable, and
	// the stream ends, since no answer could count its rows right.
	write, err := snk.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, msg := fieldMessages(t, []string{"a"}, column(t, arrow.PrimitiveTypes.Int64, int64(1)))
	must(t, write.Send(&pb.WriteBatch{InstanceId: "r1/sink_0", Arrow: msg}))
	if _, err := write.Recv(); code(err) != codes.InvalidArgument {
		t.Fatalf("a columnar batch before any schema: %v", err)
	}
}

func TestRecordSinkDoesNotTakeArrow(t *testing.T) {
	sink := &memorySink{}
	s := start(t, Plugin{Name: "recs", Sink: Singleton(sink)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snk := pb.NewSinkClient(s.conn)
	so, err := snk.Open(ctx, &pb.OpenSinkRequest{Instance: spec("r1/sink_0", "recs")})
	if err != nil || so.GetTakesArrow() {
		t.Fatalf("a plain Sink does not take Arrow: %v %v", so, err)
	}
	// Columns sent anyway reach Collect as the records they stand for, the
	// same as the row encoding of those records (a null cell is an absent
	// field).
	write, err := snk.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	schema, msg := fieldMessages(t, []string{"a", "b"},
		column(t, arrow.PrimitiveTypes.Int64, int64(1), nil),
		column(t, arrow.FixedWidthTypes.Boolean, nil, true))
	must(t, write.Send(&pb.WriteBatch{InstanceId: "r1/sink_0", Seq: 0, ArrowSchema: schema, Arrow: msg}))
	ack, err := write.Recv()
	if err != nil || ack.GetError() != "" {
		t.Fatalf("ack %v %v", ack, err)
	}
	r0, _ := recordToPB(Record{Fields: map[string]any{"a": 1}})
	r1, _ := recordToPB(Record{Fields: map[string]any{"b": true}})
	want := []Record{recordFromPB(r0), recordFromPB(r1)}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if !reflect.DeepEqual(sink.records, want) {
		t.Fatalf("records\n got %#v\nwant %#v", sink.records, want)
	}
}

// columnCounter is a rewindable ColumnSource emitting n = 0, 1, … count-1:
// as columns {n} while n < 4, as columns {n, tag} while n < 6, then as rows
// (ReadColumns returns nil, so Read is called).
type columnCounter struct {
	mu                sync.Mutex
	next, count       int64
	reads, columnsRan int
}

func (c *columnCounter) Open(_ StreamContext, _ string, props map[string]any) error {
	c.count, _ = ToInt(props["count"])
	return nil
}
func (c *columnCounter) Close(StreamContext) error { return nil }
func (c *columnCounter) GetOffset() (any, error)   { return c.next, nil }
func (c *columnCounter) Rewind(offset any) error   { c.next = offset.(int64); return nil }
func (c *columnCounter) Read(ctx StreamContext, max int) ([]Record, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	var out []Record
	for ; c.next < c.count && len(out) < max; c.next++ {
		out = append(out, Record{Fields: map[string]any{"n": c.next}})
	}
	if len(out) == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return out, nil
}
func (c *columnCounter) ReadColumns(_ StreamContext, max int) (arrow.RecordBatch, error) {
	c.mu.Lock()
	c.columnsRan++
	c.mu.Unlock()
	if c.next >= 6 || c.next >= c.count {
		return nil, nil
	}
	withTag := c.next >= 4
	ns := array.NewInt64Builder(memory.DefaultAllocator)
	defer ns.Release()
	tags := array.NewStringBuilder(memory.DefaultAllocator)
	defer tags.Release()
	for k := 0; k < max && c.next < c.count && (c.next >= 4) == withTag && c.next < 6; k++ {
		ns.Append(c.next)
		if c.next == 5 {
			tags.AppendNull()
		} else {
			tags.Append(fmt.Sprintf("t%d", c.next))
		}
		c.next++
	}
	if !withTag {
		return namedBatch([]string{"n"}, ns.NewArray()), nil
	}
	return namedBatch([]string{"n", "tag"}, ns.NewArray(), tags.NewArray()), nil
}

func (c *columnCounter) calls() (reads, columns int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads, c.columnsRan
}

func openCounter(t *testing.T, ctx context.Context, s *started, id string, count int64) {
	t.Helper()
	props := map[string]*pb.Value{"count": {Kind: &pb.Value_Int{Int: count}}}
	so, err := pb.NewSourceClient(s.conn).Open(ctx, &pb.OpenSourceRequest{Instance: spec(id, "colsrc"), Props: props})
	if err != nil || !so.GetRewindable() {
		t.Fatalf("Open: %v %v", so, err)
	}
}

// readBatches reads n batches of one Read stream, then cancels it.
func readBatches(t *testing.T, ctx context.Context, s *started, req *pb.ReadRequest, n int) []*pb.RecordBatch {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewSourceClient(s.conn).Read(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var out []*pb.RecordBatch
	for range n {
		b, err := stream.Recv()
		if err == io.EOF || err != nil {
			t.Fatalf("batch %d: %v", len(out), err)
		}
		out = append(out, b)
	}
	return out
}

func TestColumnSourceSendsArrowWhenAccepted(t *testing.T) {
	src := &columnCounter{}
	s := start(t, Plugin{Name: "colsrc", Source: Singleton(src)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	openCounter(t, ctx, s, "r1/source", 8)
	batches := readBatches(t, ctx, s, &pb.ReadRequest{InstanceId: "r1/source", MaxBatch: 2, AcceptArrow: true}, 4)

	var schema []byte
	wantSchema := []bool{true, false, true} // first batch, same schema, new schema
	wantRows := [][]map[string]any{
		{{"n": int64(0)}, {"n": int64(1)}},
		{{"n": int64(2)}, {"n": int64(3)}},
		{{"n": int64(4), "tag": "t4"}, {"n": int64(5)}},
	}
	for i, b := range batches[:3] {
		if len(b.GetRecords()) != 0 || len(b.GetArrow()) == 0 {
			t.Fatalf("batch %d is not columnar: %v", i, b)
		}
		if got := len(b.GetArrowSchema()) > 0; got != wantSchema[i] {
			t.Fatalf("batch %d carries a schema: %v, want %v", i, got, wantSchema[i])
		}
		if rows := fieldRows(t, &schema, b.GetArrowSchema(), b.GetArrow()); !reflect.DeepEqual(rows, wantRows[i]) {
			t.Fatalf("batch %d\n got %v\nwant %v", i, rows, wantRows[i])
		}
		if off := fromValue(b.GetOffset()); off != int64(2*(i+1)) {
			t.Fatalf("batch %d offset %v", i, off)
		}
	}
	// ReadColumns returned nil: that batch is read as rows.
	last := batches[3]
	if len(last.GetArrow()) != 0 || len(last.GetArrowSchema()) != 0 || len(last.GetRecords()) != 2 {
		t.Fatalf("batch 3 should be rows: %v", last)
	}
	if got := recordFromPB(last.GetRecords()[1]).Fields["n"]; got != int64(7) {
		t.Fatalf("last record %v", got)
	}
}

func TestColumnSourceSendsRowsUnlessArrowIsAccepted(t *testing.T) {
	src := &columnCounter{}
	s := start(t, Plugin{Name: "colsrc", Source: Singleton(src)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	openCounter(t, ctx, s, "r1/source", 4)
	batches := readBatches(t, ctx, s, &pb.ReadRequest{InstanceId: "r1/source", MaxBatch: 2}, 2)
	for i, b := range batches {
		if len(b.GetArrow()) != 0 || len(b.GetArrowSchema()) != 0 || len(b.GetRecords()) != 2 {
			t.Fatalf("batch %d should be rows: %v", i, b)
		}
		if got := recordFromPB(b.GetRecords()[0]).Fields["n"]; got != int64(2*i) {
			t.Fatalf("batch %d starts at %v", i, got)
		}
	}
	if reads, columns := src.calls(); columns != 0 || reads < 2 {
		t.Fatalf("Read ran %d times, ReadColumns %d times", reads, columns)
	}
}

// badColumns is a ColumnSource whose columns the supervisor could not read.
type badColumns struct{ columnCounter }

func (*badColumns) ReadColumns(StreamContext, int) (arrow.RecordBatch, error) {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.Append(1)
	a := b.NewArray()
	defer a.Release()
	return namedBatch([]string{"x", "x"}, a, a), nil
}

func TestColumnSourceRefusesRepeatedFields(t *testing.T) {
	s := start(t, Plugin{Name: "colsrc", Source: Constructor(func() *badColumns { return &badColumns{} })})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	openCounter(t, ctx, s, "r1/source", 4)
	stream, err := pb.NewSourceClient(s.conn).Read(ctx, &pb.ReadRequest{InstanceId: "r1/source", MaxBatch: 2, AcceptArrow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); code(err) != codes.Internal || !bytes.Contains([]byte(err.Error()), []byte(`field "x" appears twice`)) {
		t.Fatalf("repeated field: %v", err)
	}
}
