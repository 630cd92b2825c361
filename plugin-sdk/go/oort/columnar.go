package oort

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	pb "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/pluginv1"
)

// ColumnFunction is implemented by a Function that computes a whole batch at
// once on Apache Arrow arrays, instead of one row at a time.
//
// The supervisor may send a batch as columns (docs/protocol.md, "Columnar
// batches"); ExecColumns then gets them as received, without a per-value
// conversion. Batches that arrive as rows (aggregates, columns mixing types,
// a supervisor told to use rows) still go to Exec, so both must compute the
// same thing.
type ColumnFunction interface {
	Function
	// ExecColumns computes one batch: args holds one array per argument, in
	// argument order, each of length rows (with no arguments, args is empty
	// and rows still counts the calls). Arguments arrive as Null (every value
	// null), Boolean, Int64, Uint64, Float64, String or Binary arrays, any of
	// them with nulls. The arrays are valid during the call only: Retain one
	// to keep it, or to return it.
	//
	// It returns one array of exactly rows values, which the SDK releases
	// once it is sent. Its type must be one Oort carries: Null, Boolean,
	// Int8…Int64, Uint8…Uint64, Float32, Float64, String, LargeString,
	// Binary, LargeBinary, List or LargeList of these, or Struct of these.
	//
	// An error fails every row of the batch with the error's text, except a
	// RowErrors (possibly wrapped), which fails the rows it names and keeps
	// the array's values for the others.
	ExecColumns(args []arrow.Array, rows int, ctx FunctionContext) (arrow.Array, error)
}

// RowErrors is the error a ColumnFunction's ExecColumns returns, together
// with its result array, to fail some rows of a batch only: one entry per
// row, in order, nil for a row that succeeded, else why it failed. The
// failed rows are answered as errors (and null) whatever the array holds
// there. It may be wrapped (errors.As finds it).
//
// A RowErrors whose length differs from the batch's is a mistake of the
// function: the SDK fails the whole batch with a message saying so.
type RowErrors []error

// Error lists the failed rows, e.g. "2 of 5 rows failed: row 1: negative;
// row 4: too big".
func (e RowErrors) Error() string {
	var failed []string
	for i, err := range e {
		if err != nil {
			failed = append(failed, fmt.Sprintf("row %d: %v", i, err))
		}
	}
	if len(failed) == 0 {
		return fmt.Sprintf("all %d rows succeeded", len(e))
	}
	return fmt.Sprintf("%d of %d rows failed: %s", len(failed), len(e), strings.Join(failed, "; "))
}

// ColumnSource is implemented by a Source that can read a batch as Apache
// Arrow columns, which the supervisor then takes without a per-value
// conversion (docs/protocol.md, "Columnar sources and sinks").
//
// The SDK calls ReadColumns instead of Read when the supervisor accepts
// columns on the Read stream (ReadRequest.accept_arrow); otherwise, and
// whenever ReadColumns returns nil, it calls Read, so both must read from the
// same place. GetOffset follows either call, as it follows Read.
type ColumnSource interface {
	Source
	// ReadColumns returns up to max rows, one column per field, named after
	// the field (each name once), of a type Oort carries (as for
	// ColumnFunction's result). A null cell reaches the rule as an absent
	// field; such records have no metadata and no event time. Return nil to
	// have Read called for this batch instead, and a batch of no rows when
	// nothing is available (waiting as Read does). The SDK releases the batch
	// once it is sent. An error ends the rule's read stream, as Read's does.
	ReadColumns(ctx StreamContext, max int) (arrow.RecordBatch, error)
}

// ColumnSink is implemented by a Sink that takes batches as Apache Arrow
// columns. The SDK then answers Open with takes_arrow, and the supervisor
// may send a batch as one column per output field (sorted by name, a null
// cell for a field that is null or absent in that record) instead of
// records. Batches that come as records (outputs that mix types in a field,
// a supervisor run with --data-encoding rows) still go to Collect, so both
// must write the same thing.
type ColumnSink interface {
	Sink
	// CollectColumns accepts one columnar batch. The batch is valid during
	// the call only: Retain it (or its columns) to keep it. Errors are as
	// for Collect; an ItemErrors counts one entry per row.
	CollectColumns(ctx StreamContext, batch arrow.RecordBatch) error
}

// columnStream is the columnar state of one Exec, Read or Write stream.
// Schemas travel only when they are new on a stream, in each direction
// separately, so both ends remember the last one: received (to read the
// batches that come without one) and sent (to leave it out while it stays
// the same).
type columnStream struct {
	// inSchema is the last Schema message the supervisor sent.
	inSchema []byte
	// outSchema is the last Schema message sent to the supervisor.
	outSchema []byte
}

// note keeps the schema message a batch carries, if any.
func (cs *columnStream) note(schemaMsg []byte) {
	if len(schemaMsg) > 0 {
		cs.inSchema = schemaMsg
	}
}

// decode reads a columnar batch's record-batch message, with the stream's
// last schema; the caller releases the result. The schema message followed
// by the record-batch message is a valid IPC stream, so a stream reader does
// all the parsing.
func (cs *columnStream) decode(batchMsg []byte) (rec arrow.RecordBatch, err error) {
	if len(cs.inSchema) == 0 {
		return nil, errors.New("no Arrow schema has arrived on this stream")
	}
	// A malformed message can make the reader index out of bounds.
	defer func() {
		if r := recover(); r != nil {
			rec, err = nil, fmt.Errorf("the Arrow reader panicked: %v", r)
		}
	}()
	r, err := ipc.NewReader(io.MultiReader(bytes.NewReader(cs.inSchema), bytes.NewReader(batchMsg)))
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	defer r.Release()
	if !r.Next() {
		if err := r.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("the message holds no record batch")
	}
	rec = r.RecordBatch()
	// The reader releases its record with itself.
	rec.Retain()
	return rec, nil
}

// encode serializes a one-column answer, with the rows that have an error
// (if any) set to null. The schema message is returned only when it differs
// from the last one sent on the stream.
func (cs *columnStream) encode(result arrow.Array, rowErrs RowErrors) (schemaMsg, batchMsg []byte, err error) {
	// A hand-built array with inconsistent buffers can make nullRows panic.
	defer func() {
		if r := recover(); r != nil {
			schemaMsg, batchMsg, err = nil, nil, fmt.Errorf("the Arrow encoder panicked: %v", r)
		}
	}()
	if slices.ContainsFunc(rowErrs, func(e error) bool { return e != nil }) {
		result = nullRows(result, rowErrs)
		defer result.Release()
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "result", Type: result.DataType(), Nullable: true}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{result}, int64(result.Len()))
	defer rec.Release()
	return cs.encodeBatch(rec)
}

// encodeBatch serializes a record batch as one record-batch message, and its
// schema message when it differs from the last one sent on the stream.
func (cs *columnStream) encodeBatch(rec arrow.RecordBatch) (schemaMsg, batchMsg []byte, err error) {
	// An array built by hand with inconsistent buffers can make the encoder
	// panic; that fails the batch, not the process.
	defer func() {
		if r := recover(); r != nil {
			schemaMsg, batchMsg, err = nil, nil, fmt.Errorf("the Arrow encoder panicked: %v", r)
		}
	}()
	payload, err := ipc.GetRecordBatchPayload(rec)
	if err != nil {
		return nil, nil, err
	}
	defer payload.Release()
	var batchBuf bytes.Buffer
	if _, err := payload.WritePayload(&batchBuf); err != nil {
		return nil, nil, err
	}
	schemaPayload := ipc.GetSchemaPayload(rec.Schema(), memory.DefaultAllocator)
	defer schemaPayload.Release()
	var schemaBuf bytes.Buffer
	if _, err := schemaPayload.WritePayload(&schemaBuf); err != nil {
		return nil, nil, err
	}
	// Comparing the serialized bytes is exact: the same schema always
	// serializes the same way.
	if !bytes.Equal(schemaBuf.Bytes(), cs.outSchema) {
		cs.outSchema = schemaBuf.Bytes()
		schemaMsg = cs.outSchema
	}
	return schemaMsg, batchBuf.Bytes(), nil
}

// checkFields reports why the supervisor could not read rec's columns as
// record fields: a type Oort does not carry, or a repeated name.
func checkFields(rec arrow.RecordBatch) error {
	seen := make(map[string]bool, rec.NumCols())
	for i, f := range rec.Schema().Fields() {
		if seen[f.Name] {
			return fmt.Errorf("field %q appears twice", f.Name)
		}
		seen[f.Name] = true
		if !carried(rec.Column(i).DataType()) {
			return fmt.Errorf("field %q is an Arrow %s column, which Oort cannot carry", f.Name, rec.Column(i).DataType())
		}
	}
	return nil
}

// recordsOf converts a columnar batch to the records Collect would get: one
// per row, a field per column, a null cell read as an absent field (columns
// cannot tell them apart, and the supervisor reads them so too). A malformed
// message can make an accessor panic: that is an error, not a crash.
func recordsOf(rec arrow.RecordBatch) (records []Record, err error) {
	if err := checkFields(rec); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			records, err = nil, fmt.Errorf("unreadable Arrow columns: %v", r)
		}
	}()
	records = make([]Record, rec.NumRows())
	for i := range records {
		records[i] = Record{Fields: make(map[string]any, rec.NumCols()), Metadata: map[string]any{}}
	}
	for j, c := range rec.Columns() {
		name := rec.ColumnName(j)
		for i := range records {
			if v := goValue(c, i); v != nil {
				records[i].Fields[name] = v
			}
		}
	}
	return records, nil
}

// execArrow runs one columnar batch. A ColumnFunction gets the arrays; any
// other function gets the rows, converted to the Go values a row batch would
// have given, and answers in rows.
func (in *instance) execArrow(batch *pb.ExecBatch, rec arrow.RecordBatch, cs *columnStream) *pb.ExecResult {
	in.batch.Lock()
	defer in.batch.Unlock()
	rows := int(rec.NumRows())
	res := &pb.ExecResult{Seq: batch.GetSeq()}
	switch fn := in.fn.(type) {
	case ColumnFunction:
		// An empty batch calls nothing, as an empty row batch does.
		if rows > 0 {
			in.execColumns(fn, rec.Columns(), rows, cs, res)
		}
	default:
		res.Results = in.execColumnRows(rec.Columns(), rows)
	}
	in.ctx.logExceptions()
	res.Mutations = in.ctx.takeMutations()
	return res
}

// execColumnRows calls Exec once per row of a columnar batch.
func (in *instance) execColumnRows(cols []arrow.Array, rows int) []*pb.RowResult {
	results := make([]*pb.RowResult, rows)
	for j, c := range cols {
		if !carried(c.DataType()) {
			return failAll(rows, fmt.Sprintf("%s: argument %d arrived as an Arrow %s column, which the SDK cannot read", in.symbol, j, c.DataType()))
		}
	}
	for i := range rows {
		args, err := rowArgs(cols, i)
		if err != nil {
			results[i] = rowError(fmt.Sprintf("%s: %v", in.symbol, err))
			continue
		}
		results[i] = in.execRow(args)
	}
	return results
}

// rowArgs converts row i of the argument columns. The IPC reader does not
// check every offset of a message, so a malformed one can make an accessor
// panic: that fails the row instead of the process.
func rowArgs(cols []arrow.Array, i int) (args []any, err error) {
	defer func() {
		if r := recover(); r != nil {
			args, err = nil, fmt.Errorf("unreadable Arrow arguments in row %d: %v", i, r)
		}
	}()
	args = make([]any, len(cols))
	for j, c := range cols {
		args[j] = goValue(c, i)
	}
	return args, nil
}

// execColumns calls ExecColumns and fills res with its answer: columns, or
// rows when the whole batch failed (which needs no schema).
func (in *instance) execColumns(fn ColumnFunction, cols []arrow.Array, rows int, cs *columnStream, res *pb.ExecResult) {
	out, err := in.callColumns(fn, cols, rows)
	if out != nil {
		defer out.Release()
	}
	var rowErrs RowErrors
	switch {
	case err != nil && !errors.As(err, &rowErrs):
		res.Results = failAll(rows, failureText(err, in.symbol))
		return
	case err != nil && len(rowErrs) != rows:
		res.Results = failAll(rows, fmt.Sprintf("%s reported %d row errors for a batch of %d rows", in.symbol, len(rowErrs), rows))
		return
	case out == nil:
		res.Results = failAll(rows, fmt.Sprintf("%s returned no array", in.symbol))
		return
	case out.Len() != rows:
		res.Results = failAll(rows, fmt.Sprintf("%s returned %d values for a batch of %d rows", in.symbol, out.Len(), rows))
		return
	case !carried(out.DataType()):
		res.Results = failAll(rows, fmt.Sprintf("%s returned an Arrow %s array, which Oort cannot carry", in.symbol, out.DataType()))
		return
	}
	schemaMsg, batchMsg, err := cs.encode(out, rowErrs)
	if err != nil {
		res.Results = failAll(rows, fmt.Sprintf("%s returned an array the SDK cannot encode: %v", in.symbol, err))
		return
	}
	res.ArrowSchema, res.Arrow = schemaMsg, batchMsg
	for i, e := range rowErrs {
		if e != nil {
			res.Errors = append(res.Errors, &pb.RowError{Row: uint32(i), Message: failureText(e, in.symbol)})
		}
	}
}

// callColumns runs ExecColumns, turning a panic into a batch failure.
func (in *instance) callColumns(fn ColumnFunction, cols []arrow.Array, rows int) (out arrow.Array, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%s panicked: %v", in.symbol, r)
		}
	}()
	// A copy, so that the function cannot rearrange the record's columns.
	out, err = fn.ExecColumns(slices.Clone(cols), rows, in.ctx)
	// A nil *array.Int64 (say) in the interface is no array either.
	if v := reflect.ValueOf(out); out != nil && v.Kind() == reflect.Pointer && v.IsNil() {
		out = nil
	}
	return out, err
}

func failAll(rows int, msg string) []*pb.RowResult {
	results := make([]*pb.RowResult, rows)
	for i := range results {
		results[i] = rowError(msg)
	}
	return results
}

// nullRows returns arr with the rows that have an error set to null, as the
// protocol wants failed rows. Only the validity bitmap is new; the values
// are shared.
func nullRows(arr arrow.Array, errs RowErrors) arrow.Array {
	if arr.DataType().ID() == arrow.NULL {
		arr.Retain()
		return arr
	}
	data := arr.Data()
	offset, n := data.Offset(), data.Len()
	// The bitmap is indexed like the values, from the start of the buffers,
	// so it covers the offset too.
	bits := make([]byte, bitutil.BytesForBits(int64(offset+n)))
	for i := range n {
		bitutil.SetBitTo(bits, offset+i, errs[i] == nil && arr.IsValid(i))
	}
	buffers := slices.Clone(data.Buffers())
	buffers[0] = memory.NewBufferBytes(bits)
	nd := array.NewData(data.DataType(), n, buffers, data.Children(), array.UnknownNullCount, offset)
	defer nd.Release()
	return array.MakeFromData(nd)
}

// carried reports whether the supervisor reads a column of type t
// (docs/protocol.md): the SDK reads the same set coming in.
func carried(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.NULL, arrow.BOOL,
		arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64,
		arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT32, arrow.FLOAT64,
		arrow.STRING, arrow.LARGE_STRING, arrow.BINARY, arrow.LARGE_BINARY:
		return true
	case arrow.LIST:
		return carried(t.(*arrow.ListType).Elem())
	case arrow.LARGE_LIST:
		return carried(t.(*arrow.LargeListType).Elem())
	case arrow.STRUCT:
		for _, f := range t.(*arrow.StructType).Fields() {
			if !carried(f.Type) {
				return false
			}
		}
		return true
	}
	return false
}

// goValue is value i of arr as a row batch would have given it (see
// fromValue): nil, bool, int64, uint64, float64, string, []byte, []any or
// map[string]any. The type must be carried. Strings and bytes are copied, so
// that a value the function keeps does not pin the whole batch.
func goValue(arr arrow.Array, i int) any {
	if arr.IsNull(i) {
		return nil
	}
	switch a := arr.(type) {
	case *array.Boolean:
		return a.Value(i)
	case *array.Int8:
		return int64(a.Value(i))
	case *array.Int16:
		return int64(a.Value(i))
	case *array.Int32:
		return int64(a.Value(i))
	case *array.Int64:
		return a.Value(i)
	case *array.Uint8:
		return uint64(a.Value(i))
	case *array.Uint16:
		return uint64(a.Value(i))
	case *array.Uint32:
		return uint64(a.Value(i))
	case *array.Uint64:
		return a.Value(i)
	case *array.Float32:
		return float64(a.Value(i))
	case *array.Float64:
		return a.Value(i)
	case *array.String:
		return strings.Clone(a.Value(i))
	case *array.LargeString:
		return strings.Clone(a.Value(i))
	case *array.Binary:
		// Never nil, as fromValue gives []byte{} for empty bytes.
		return append([]byte{}, a.Value(i)...)
	case *array.LargeBinary:
		return append([]byte{}, a.Value(i)...)
	case *array.List:
		return listValue(a, i)
	case *array.LargeList:
		return listValue(a, i)
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		m := make(map[string]any, a.NumField())
		for k := range a.NumField() {
			m[st.Field(k).Name] = goValue(a.Field(k), i)
		}
		return m
	}
	// A Null array (it has no validity bitmap, so IsNull says false), or a
	// type carried rules out.
	return nil
}

func listValue(a array.ListLike, i int) []any {
	start, end := a.ValueOffsets(i)
	values := a.ListValues()
	out := make([]any, 0, end-start)
	for k := start; k < end; k++ {
		out = append(out, goValue(values, int(k)))
	}
	return out
}
