//! The columnar encoding of the data path: Oort [`Value`]s to and from Apache
//! Arrow arrays, and the Arrow IPC messages that carry them (docs/protocol.md,
//! "Columnar batches (Arrow IPC)").
//!
//! A batch travels as one IPC *record-batch message*; its schema travels as a
//! separate *schema message* only when it is new on a stream, so each side
//! keeps, per stream, a [`SchemaSent`] for what it sends and a
//! [`BatchDecoder`] for what it receives.
//!
//! Only columns of one scalar type are written (null, bool, int, uint, float,
//! string, bytes); a batch with lists, maps or a column that mixes types goes
//! as rows instead ([`args_batch`] says `None`). Reading accepts more: every
//! integer and float width, the large string and binary types, lists and
//! structs, which is what other languages' Arrow libraries produce naturally.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, UInt64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, NullArray, RecordBatchOptions};
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::{write_message, DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_schema::{DataType, Field, Schema};
use prost::bytes::Bytes;

pub use arrow_array::{self, ArrayRef, RecordBatch};
pub use arrow_schema;
pub use arrow_schema::SchemaRef;

use crate::value::Value;

/// Why a columnar message could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// The bytes are not the Arrow IPC messages the protocol describes.
    #[error("undecodable Arrow IPC message: {0}")]
    Ipc(String),
    /// A record batch arrived on a stream that has not sent its schema.
    #[error("a columnar batch arrived before any Arrow schema on its stream")]
    NoSchema,
    /// A column whose type has no Oort value.
    #[error("column {column} has Arrow type {data_type}, which has no Oort value")]
    Unsupported { column: String, data_type: String },
}

fn ipc(e: impl std::fmt::Display) -> ColumnError {
    ColumnError::Ipc(e.to_string())
}

/// The kind of a column built from values: the one scalar type of its
/// non-null values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Int,
    Uint,
    Float,
    String,
    Bytes,
}

fn kind_of(value: &Value) -> Option<Kind> {
    Some(match value {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) => Kind::Int,
        Value::Uint(_) => Kind::Uint,
        Value::Float(_) => Kind::Float,
        Value::String(_) => Kind::String,
        Value::Bytes(_) => Kind::Bytes,
        Value::List(_) | Value::Map(_) => return None,
    })
}

/// An Arrow array of `len` values, when they share one scalar type (nulls
/// allowed); `None` when they mix types or hold lists or maps.
pub fn column_of<'a, I>(values: I, len: usize) -> Option<ArrayRef>
where
    I: Iterator<Item = &'a Value> + Clone,
{
    let mut kind = Kind::Null;
    for v in values.clone() {
        match (kind, kind_of(v)?) {
            (_, Kind::Null) => {}
            (Kind::Null, k) => kind = k,
            (k, l) if k == l => {}
            _ => return None,
        }
    }
    // One builder loop for every kind: `$x => $value` says how a value of
    // the variant goes in (by copy for numbers, by reference for text).
    macro_rules! build {
        ($builder:expr, $variant:ident, $x:ident => $value:expr) => {{
            let mut b = $builder;
            for v in values {
                match v {
                    Value::$variant($x) => b.append_value($value),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Some(match kind {
        Kind::Null => Arc::new(NullArray::new(len)),
        Kind::Bool => build!(BooleanBuilder::with_capacity(len), Bool, x => *x),
        Kind::Int => build!(Int64Builder::with_capacity(len), Int, x => *x),
        Kind::Uint => build!(UInt64Builder::with_capacity(len), Uint, x => *x),
        Kind::Float => build!(Float64Builder::with_capacity(len), Float, x => *x),
        Kind::String => build!(StringBuilder::with_capacity(len, len * 8), String, x => x),
        Kind::Bytes => build!(BinaryBuilder::with_capacity(len, len * 8), Bytes, x => x),
    })
}

/// The argument rows of a function batch as columns named `"0"`, `"1"`, …,
/// when every argument column has one scalar type; `None` otherwise (the
/// batch then goes as rows).
pub fn args_batch(rows: &[Vec<Value>]) -> Option<RecordBatch> {
    let width = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|r| r.len() != width) {
        return None;
    }
    let mut fields = Vec::with_capacity(width);
    let mut columns = Vec::with_capacity(width);
    for i in 0..width {
        let column = column_of(rows.iter().map(|r| &r[i]), rows.len())?;
        fields.push(Field::new(i.to_string(), column.data_type().clone(), true));
        columns.push(column);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options).ok()
}

/// Argument columns of `rows` rows each as a function batch: columns named
/// `"0"`, `"1"`, …
pub fn arguments(columns: &[ArrayRef], rows: usize) -> Result<RecordBatch, ColumnError> {
    let fields: Vec<Field> =
        columns.iter().enumerate().map(|(i, c)| Field::new(i.to_string(), c.data_type().clone(), true)).collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns.to_vec(), &options).map_err(ipc)
}

/// Whether the supervisor sends columns of this type to plugins (function
/// arguments, sink batches): the one scalar type per Oort value kind, and
/// lists of one of them (as a source sent them). Columns of other types
/// (narrower integers, nested lists, structs) are converted first.
pub fn sendable(data_type: &DataType) -> bool {
    fn scalar(data_type: &DataType) -> bool {
        matches!(
            data_type,
            DataType::Boolean
                | DataType::Int64
                | DataType::UInt64
                | DataType::Float64
                | DataType::Utf8
                | DataType::Binary
        )
    }
    match data_type {
        DataType::Null => true,
        DataType::List(item) => scalar(item.data_type()),
        other => scalar(other),
    }
}

/// A batch of one column named `name`.
pub fn single_column(name: &str, column: ArrayRef) -> Result<RecordBatch, ColumnError> {
    let schema = Schema::new(vec![Field::new(name, column.data_type().clone(), true)]);
    RecordBatch::try_new(Arc::new(schema), vec![column]).map_err(ipc)
}

/// The value at `row` of `array`.
pub fn value_at(array: &dyn Array, row: usize) -> Result<Value, ColumnError> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Value::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => Value::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::Uint(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => Value::Uint(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => Value::Uint(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => Value::Uint(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(row).into()),
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(row).to_vec()),
        DataType::List(_) => Value::List(values_of(array.as_list::<i32>().value(row).as_ref())?),
        DataType::LargeList(_) => Value::List(values_of(array.as_list::<i64>().value(row).as_ref())?),
        DataType::Struct(fields) => {
            let array = array.as_struct();
            let mut map = BTreeMap::new();
            for (field, column) in fields.iter().zip(array.columns()) {
                map.insert(field.name().clone(), value_at(column.as_ref(), row)?);
            }
            Value::Map(map)
        }
        other => {
            return Err(ColumnError::Unsupported { column: String::new(), data_type: other.to_string() });
        }
    })
}

/// Checks a batch of records as columns: every column of a type with an
/// Oort value (nested types included), and no field name twice.
pub fn check_fields(schema: &Schema) -> Result<(), ColumnError> {
    fn readable(dt: &DataType) -> bool {
        match dt {
            DataType::List(f) | DataType::LargeList(f) => readable(f.data_type()),
            DataType::Struct(fields) => fields.iter().all(|f| readable(f.data_type())),
            dt => matches!(
                dt,
                DataType::Null
                    | DataType::Boolean
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Binary
                    | DataType::LargeBinary
            ),
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for field in schema.fields() {
        if !seen.insert(field.name()) {
            return Err(ColumnError::Ipc(format!("field {} appears twice in the schema", field.name())));
        }
        if !readable(field.data_type()) {
            return Err(ColumnError::Unsupported {
                column: field.name().clone(),
                data_type: field.data_type().to_string(),
            });
        }
    }
    Ok(())
}

/// Every value of `array`, in order. Typed loops for the common scalar
/// types; [`value_at`] for the rest.
pub fn values_of(array: &dyn Array) -> Result<Vec<Value>, ColumnError> {
    fn collect<T>(array: &dyn Array, each: impl Fn(usize) -> T, wrap: impl Fn(T) -> Value) -> Vec<Value> {
        (0..array.len()).map(|i| if array.is_null(i) { Value::Null } else { wrap(each(i)) }).collect()
    }
    Ok(match array.data_type() {
        DataType::Null => vec![Value::Null; array.len()],
        DataType::Int64 => {
            let a = array.as_primitive::<Int64Type>();
            collect(array, |i| a.value(i), Value::Int)
        }
        DataType::UInt64 => {
            let a = array.as_primitive::<UInt64Type>();
            collect(array, |i| a.value(i), Value::Uint)
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            collect(array, |i| a.value(i), Value::Float)
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            collect(array, |i| a.value(i).to_string(), Value::String)
        }
        _ => (0..array.len()).map(|i| value_at(array, i)).collect::<Result<_, _>>()?,
    })
}

/// The rows of a batch, each a list of its columns' values.
pub fn rows_of(batch: &RecordBatch) -> Result<Vec<Vec<Value>>, ColumnError> {
    let mut rows = vec![Vec::with_capacity(batch.num_columns()); batch.num_rows()];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let values = values_of(column.as_ref()).map_err(|e| name_column(e, field.name()))?;
        for (row, value) in rows.iter_mut().zip(values) {
            row.push(value);
        }
    }
    Ok(rows)
}

/// The records of a batch whose columns are fields: one record per row, a
/// field per column, a null cell read as an absent field (a columnar batch
/// cannot tell them apart). No metadata, no event time.
pub fn records_of(batch: &RecordBatch) -> Result<Vec<crate::value::Record>, ColumnError> {
    let mut records = vec![crate::value::Record::default(); batch.num_rows()];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let values = values_of(column.as_ref()).map_err(|e| name_column(e, field.name()))?;
        for (record, value) in records.iter_mut().zip(values) {
            if !matches!(value, Value::Null) {
                record.fields.insert(field.name().clone(), value);
            }
        }
    }
    Ok(records)
}

/// Records as a batch of columns, one per field name (sorted, a record
/// without the field null in it), when every field holds one scalar type;
/// `None` otherwise (the batch then goes as rows). Metadata and event times
/// are not carried.
pub fn records_batch(records: &[crate::value::Record]) -> Option<RecordBatch> {
    let mut names: Vec<&String> = Vec::new();
    if let Some(first) = records.first() {
        names.extend(first.fields.keys());
    }
    // Records of one stream mostly share their fields: only look further
    // when one differs from the first.
    if records.iter().any(|r| r.fields.len() != names.len() || !r.fields.keys().eq(names.iter().copied())) {
        let all: std::collections::BTreeSet<&String> = records.iter().flat_map(|r| r.fields.keys()).collect();
        names = all.into_iter().collect();
    }
    let null = Value::Null;
    let mut fields = Vec::with_capacity(names.len());
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        let column = column_of(records.iter().map(|r| r.fields.get(name).unwrap_or(&null)), records.len())?;
        fields.push(Field::new(name.as_str(), column.data_type().clone(), true));
        columns.push(column);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(records.len()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options).ok()
}

/// The rows of `batch` where `keep` is true (all of them without a copy
/// when every row is kept).
pub fn keep_rows(batch: RecordBatch, keep: &[bool]) -> Result<RecordBatch, ColumnError> {
    if keep.iter().all(|k| *k) {
        return Ok(batch);
    }
    let mask = arrow_array::BooleanArray::from(keep.to_vec());
    arrow_select::filter::filter_record_batch(&batch, &mask).map_err(ipc)
}

fn name_column(e: ColumnError, name: &str) -> ColumnError {
    match e {
        ColumnError::Unsupported { data_type, .. } => ColumnError::Unsupported { column: name.into(), data_type },
        other => other,
    }
}

/// The IPC schema message of `schema`.
pub fn schema_message(schema: &Schema) -> Bytes {
    let options = IpcWriteOptions::default();
    let mut tracker = DictionaryTracker::new(false);
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(schema, &mut tracker, &options);
    let mut out = Vec::with_capacity(encoded.ipc_message.len() + 16);
    // Writing to a Vec cannot fail.
    let _ = write_message(&mut out, encoded, &options);
    Bytes::from(out)
}

/// The IPC record-batch message of `batch` (its schema goes separately).
pub fn batch_message(batch: &RecordBatch) -> Result<Bytes, ColumnError> {
    let options = IpcWriteOptions::default();
    let mut tracker = DictionaryTracker::new(false);
    let (dictionaries, encoded) = IpcDataGenerator::default()
        .encode(batch, &mut tracker, &options, &mut IpcWriteContext::default())
        .map_err(ipc)?;
    if !dictionaries.is_empty() {
        return Err(ColumnError::Ipc("dictionary-encoded columns are not part of the protocol".into()));
    }
    let mut out = Vec::with_capacity(encoded.ipc_message.len() + encoded.arrow_data.len() + 16);
    write_message(&mut out, encoded, &options).map_err(ipc)?;
    Ok(Bytes::from(out))
}

/// The IPC end-of-stream marker: the continuation token and a zero length.
const END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// What one side of a stream last sent as its schema, so that the schema
/// message goes only with the first batch and when it changes.
#[derive(Debug, Default, Clone)]
pub struct SchemaSent(Option<SchemaRef>);

impl SchemaSent {
    /// The schema message to send with a batch of `schema`, if the other side
    /// does not have it yet.
    pub fn message_if_new(&mut self, schema: &SchemaRef) -> Option<Bytes> {
        if self.0.as_ref().is_some_and(|s| s == schema) {
            return None;
        }
        self.0 = Some(schema.clone());
        Some(schema_message(schema))
    }
}

/// The receiving side of one stream: the last schema it was sent, ready to
/// decode the record batches that follow it.
#[derive(Debug, Default)]
pub struct BatchDecoder(Option<StreamDecoder>);

impl BatchDecoder {
    /// Decodes one batch: `schema` is the message's schema bytes (empty when
    /// the stream's last schema applies), `batch` its record-batch bytes.
    pub fn decode(&mut self, schema: &Bytes, batch: &Bytes) -> Result<RecordBatch, ColumnError> {
        let result = self.decode_inner(schema, batch);
        if result.is_err() {
            // A decoder that stopped inside a message cannot read the next
            // one: the stream's schema has to come again.
            self.0 = None;
        }
        result
    }

    fn decode_inner(&mut self, schema: &Bytes, batch: &Bytes) -> Result<RecordBatch, ColumnError> {
        if !schema.is_empty() {
            // The decoder takes the schema in when the next message begins
            // (a schema message has an empty body), so it is fed here and
            // checked once the batch has been read.
            let mut decoder = StreamDecoder::new();
            let mut buffer = Buffer::from(schema.clone());
            if decoder.decode(&mut buffer).map_err(ipc)?.is_some() {
                return Err(ColumnError::Ipc("arrow_schema holds a record batch".into()));
            }
            self.0 = Some(decoder);
        }
        let decoder = self.0.as_mut().ok_or(ColumnError::NoSchema)?;
        let expected = message_len(batch)?;
        if batch.len() != expected {
            return Err(ColumnError::Ipc(format!(
                "arrow holds {} bytes, its record-batch message {expected}",
                batch.len()
            )));
        }
        let mut buffer = Buffer::from(batch.clone());
        let mut decoded = decoder.decode(&mut buffer).map_err(ipc)?;
        if decoded.is_none() && buffer.is_empty() {
            // A batch without columns has an empty body, which the decoder
            // reads only when more bytes follow: an end-of-stream marker,
            // left unread, completes it.
            let mut end = Buffer::from(END_OF_STREAM.to_vec());
            decoded = decoder.decode(&mut end).map_err(ipc)?;
        }
        match decoded {
            Some(_) if !buffer.is_empty() => Err(ColumnError::Ipc("arrow holds more than one message".into())),
            Some(b) => Ok(b),
            None => Err(ColumnError::Ipc("arrow holds no complete record batch".into())),
        }
    }
}

/// The length of the encapsulated IPC message at the start of `bytes`: the
/// continuation marker, the flatbuffer length, the flatbuffer, the body.
fn message_len(bytes: &[u8]) -> Result<usize, ColumnError> {
    let short = || ColumnError::Ipc("arrow is shorter than an IPC message header".into());
    let header = bytes.get(..8).ok_or_else(short)?;
    if header[..4] != END_OF_STREAM[..4] {
        return Err(ColumnError::Ipc("arrow does not begin with the IPC continuation marker".into()));
    }
    let meta = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let flatbuffer = bytes.get(8..8 + meta).ok_or_else(short)?;
    let message = arrow_ipc::root_as_message(flatbuffer).map_err(ipc)?;
    let body = usize::try_from(message.bodyLength()).map_err(ipc)?;
    Ok(8 + meta + body)
}

/// Decodes a batch that carries its own schema (`schema` then `batch`).
pub fn decode_with_schema(schema: &Bytes, batch: &Bytes) -> Result<RecordBatch, ColumnError> {
    if schema.is_empty() {
        return Err(ColumnError::NoSchema);
    }
    BatchDecoder::default().decode(schema, batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(batch: &RecordBatch) -> RecordBatch {
        let schema = schema_message(&batch.schema());
        let body = batch_message(batch).unwrap();
        let mut decoder = BatchDecoder::default();
        let first = decoder.decode(&schema, &body).unwrap();
        // The same stream's next batch comes without its schema.
        let second = decoder.decode(&Bytes::new(), &body).unwrap();
        assert_eq!(first, second);
        first
    }

    #[test]
    fn records_round_trip_through_columns_with_nulls_as_absent_fields() {
        use crate::value::Record;
        let record = |fields: &[(&str, Value)]| Record {
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            ..Record::default()
        };
        let records = vec![
            record(&[("a", Value::Int(1)), ("s", Value::String("x".into()))]),
            record(&[("a", Value::Int(2))]),
            record(&[("b", Value::Float(0.5)), ("s", Value::String("y".into()))]),
        ];
        let batch = records_batch(&records).expect("one type per field");
        let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["a", "b", "s"], "one column per field, sorted");
        assert_eq!(records_of(&round_trip(&batch)).unwrap(), records);
        // A field of two types has no column: the batch goes as rows.
        let mixed = vec![record(&[("a", Value::Int(1))]), record(&[("a", Value::String("1".into()))])];
        assert!(records_batch(&mixed).is_none());
        assert!(records_batch(&[record(&[("l", Value::List(vec![]))])]).is_none());
        // A batch of empty records keeps its row count.
        let empty = records_batch(&[Record::default(), Record::default()]).unwrap();
        assert_eq!((empty.num_rows(), records_of(&round_trip(&empty)).unwrap().len()), (2, 2));
    }

    #[test]
    fn scalar_columns_round_trip_through_ipc_exactly() {
        let rows = vec![
            vec![
                Value::Int(-3),
                Value::Uint(u64::MAX),
                Value::Float(0.5),
                Value::String("a".into()),
                Value::Bytes(vec![0, 255]),
                Value::Bool(true),
                Value::Null,
            ],
            vec![Value::Null, Value::Null, Value::Null, Value::Null, Value::Null, Value::Null, Value::Null],
            vec![
                Value::Int(i64::MAX),
                Value::Uint(1),
                Value::Float(-1e300),
                Value::String("ü ✓".into()),
                Value::Bytes(vec![]),
                Value::Bool(false),
                Value::Null,
            ],
        ];
        let batch = args_batch(&rows).expect("scalar columns");
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["0", "1", "2", "3", "4", "5", "6"]);
        assert_eq!(batch.column(1).data_type(), &DataType::UInt64);
        assert_eq!(batch.column(6).data_type(), &DataType::Null);
        assert_eq!(rows_of(&round_trip(&batch)).unwrap(), rows);
    }

    #[test]
    fn mixed_or_nested_columns_stay_rows() {
        assert!(args_batch(&[vec![Value::Int(1)], vec![Value::Float(1.0)]]).is_none());
        assert!(args_batch(&[vec![Value::List(vec![])]]).is_none());
        assert!(args_batch(&[vec![Value::Int(1)], vec![]]).is_none(), "ragged rows");
    }

    #[test]
    fn a_batch_without_arguments_keeps_its_row_count() {
        let batch = args_batch(&[vec![], vec![], vec![]]).unwrap();
        assert_eq!(batch.num_columns(), 0);
        assert_eq!(round_trip(&batch).num_rows(), 3);
    }

    #[test]
    fn results_of_other_widths_lists_and_structs_are_read() {
        use arrow_array::{Int32Array, ListArray, StructArray};
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![Some(7), None]));
        assert_eq!(values_of(ints.as_ref()).unwrap(), [Value::Int(7), Value::Null]);
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), None]), None]);
        assert_eq!(values_of(&list).unwrap(), [Value::List(vec![Value::Int(1), Value::Null]), Value::Null]);
        let s = StructArray::from(vec![(
            Arc::new(Field::new("k", DataType::Int32, true)),
            Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
        )]);
        let rows = values_of(&round_trip(&single_column("result", Arc::new(s)).unwrap()).column(0).clone()).unwrap();
        assert_eq!(rows[1], Value::Map([("k".to_string(), Value::Null)].into()));
    }

    #[test]
    fn garbage_and_missing_schemas_are_clear_errors() {
        let batch = args_batch(&[vec![Value::Int(1)]]).unwrap();
        let body = batch_message(&batch).unwrap();
        assert_eq!(BatchDecoder::default().decode(&Bytes::new(), &body), Err(ColumnError::NoSchema));
        let err = decode_with_schema(&Bytes::from_static(b"\xff\xff\xff\xffjunkjunk"), &body).unwrap_err();
        assert!(matches!(err, ColumnError::Ipc(_)), "{err}");
        let schema = schema_message(&batch.schema());
        let err = BatchDecoder::default().decode(&schema, &body.slice(..body.len() - 8)).unwrap_err();
        assert!(err.to_string().contains("arrow holds 248 bytes, its record-batch message 256"), "{err}");
    }

    #[test]
    fn the_schema_goes_once_per_stream_and_again_when_it_changes() {
        let ints = args_batch(&[vec![Value::Int(1)]]).unwrap();
        let strings = args_batch(&[vec![Value::String("x".into())]]).unwrap();
        let mut sent = SchemaSent::default();
        assert!(sent.message_if_new(&ints.schema()).is_some());
        assert!(sent.message_if_new(&ints.schema()).is_none());
        assert!(sent.message_if_new(&strings.schema()).is_some());
    }
}
