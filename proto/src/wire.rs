//! The supervisor's hot paths to plugins: an `ExecBatch` encoded straight from
//! the borrowed argument rows, a `WriteBatch` straight from the borrowed
//! records.
//!
//! Going through the generated types would copy every value into a
//! `pb::Value` (an allocation per string), every record into a map of copied
//! keys and a `Vec` per row, only for prost to copy it all again into the send
//! buffer. Encoding the wire bytes directly skips that; the bytes are exactly
//! what the generated `ExecBatch` and `WriteBatch` decode (tests below check
//! every `Value` variant).
//!
//! Both messages are `{instance_id = 1, seq = 2, repeated payload = 3}`. `seq`
//! is encoded last, since protobuf fields may come in any order: the payload
//! can be encoded before the caller knows its sequence number.

use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, DecodeContext, WireType};

use crate::plugin::v1 as pb;
use crate::value::{Record, Value};

/// An `ExecBatch` or a `WriteBatch`, already encoded: its fields, then the
/// Arrow record-batch message of a columnar batch, kept as the bytes it was
/// encoded into (the last field's value; no copy into the head). Only for
/// sending: decoding one skips every field.
#[derive(Debug, Clone, Default)]
pub struct EncodedBatch(Bytes, Bytes);

impl EncodedBatch {
    /// The encoded message in its two parts: the fields before a columnar
    /// batch's Arrow message, and that message (empty for rows). Written one
    /// after the other they are the message's encoding.
    pub fn parts(&self) -> (&[u8], &[u8]) {
        (&self.0, &self.1)
    }
}

/// The encoded fields of a batch except `seq`, the field number its Arrow
/// schema message would take (`ExecBatch` 4, `WriteBatch` 5), and for a
/// columnar batch its record-batch message with the field it goes in.
pub struct BatchBody(BytesMut, u32, Option<(u32, Bytes)>);

impl BatchBody {
    /// The fields of an `ExecBatch`: the instance id and the argument rows.
    pub fn exec(instance_id: &str, rows: &[Vec<Value>]) -> BatchBody {
        let len: usize = rows.iter().map(|row| message_field_len(3, row_len(row))).sum();
        let mut buf = start(instance_id, len);
        for row in rows {
            encode_key(3, WireType::LengthDelimited, &mut buf);
            encode_varint(row_len(row) as u64, &mut buf);
            for arg in row {
                encode_value_field(1, arg, &mut buf);
            }
        }
        BatchBody(buf, 4, None)
    }

    /// The fields of a columnar `ExecBatch`: the instance id and one Arrow
    /// IPC record-batch message of the arguments.
    pub fn exec_columns(instance_id: &str, message: Bytes) -> BatchBody {
        columns_body(instance_id, message, 5)
    }

    /// The fields of a columnar `WriteBatch`: the instance id and one Arrow
    /// IPC record-batch message of the records.
    pub fn write_columns(instance_id: &str, message: Bytes) -> BatchBody {
        columns_body(instance_id, message, 6)
    }

    /// Adds the Arrow IPC schema message (`arrow_schema`), for a columnar
    /// batch whose schema is new on its stream.
    pub fn with_schema(mut self, message: &[u8]) -> BatchBody {
        encode_key(self.1, WireType::LengthDelimited, &mut self.0);
        encode_varint(message.len() as u64, &mut self.0);
        self.0.put_slice(message);
        self
    }

    /// The fields of a `WriteBatch`: the instance id and the records.
    pub fn write(instance_id: &str, records: &[Record]) -> BatchBody {
        let len: usize = records.iter().map(|r| message_field_len(3, record_len(r))).sum();
        let mut buf = start(instance_id, len);
        for record in records {
            encode_key(3, WireType::LengthDelimited, &mut buf);
            encode_varint(record_len(record) as u64, &mut buf);
            encode_map_field(1, &record.fields, &mut buf);
            encode_map_field(2, &record.metadata, &mut buf);
            if record.timestamp_ms != 0 {
                encode_key(3, WireType::Varint, &mut buf);
                encode_varint(record.timestamp_ms as u64, &mut buf);
            }
        }
        BatchBody(buf, 5, None)
    }

    /// The fields of a `WriteBatch` for a sink that asked for payloads: the
    /// instance id and the encoded items.
    pub fn write_payloads(instance_id: &str, payloads: &[Vec<u8>]) -> BatchBody {
        let len: usize = payloads.iter().map(|p| message_field_len(4, p.len())).sum();
        let mut buf = start(instance_id, len);
        for payload in payloads {
            encode_key(4, WireType::LengthDelimited, &mut buf);
            encode_varint(payload.len() as u64, &mut buf);
            buf.put_slice(payload);
        }
        BatchBody(buf, 5, None)
    }

    /// Adds `seq` and seals the message.
    pub fn with_seq(mut self, seq: u64) -> EncodedBatch {
        if seq != 0 {
            encode_key(2, WireType::Varint, &mut self.0);
            encode_varint(seq, &mut self.0);
        }
        let tail = match self.2 {
            Some((field, message)) => {
                // The message's key and length close the head; the message
                // itself follows as it is.
                encode_key(field, WireType::LengthDelimited, &mut self.0);
                encode_varint(message.len() as u64, &mut self.0);
                message
            }
            None => Bytes::new(),
        };
        EncodedBatch(self.0.freeze(), tail)
    }
}

/// A batch of one Arrow IPC record-batch message in field `field`; its
/// schema message, when added, goes in the field before.
fn columns_body(instance_id: &str, message: Bytes, field: u32) -> BatchBody {
    BatchBody(start(instance_id, 0), field - 1, Some((field, message)))
}

/// A buffer for a batch whose payload takes `payload_len` bytes, holding the
/// instance id already.
fn start(instance_id: &str, payload_len: usize) -> BytesMut {
    // Room for `seq` too: a key and at most ten varint bytes.
    let mut buf = BytesMut::with_capacity(string_field_len(1, instance_id) + payload_len + 11);
    if !instance_id.is_empty() {
        encode_key(1, WireType::LengthDelimited, &mut buf);
        encode_varint(instance_id.len() as u64, &mut buf);
        buf.put_slice(instance_id.as_bytes());
    }
    buf
}

impl prost::Message for EncodedBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
        buf.put_slice(&self.1);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len() + self.1.len()
    }

    fn clear(&mut self) {
        (self.0, self.1) = (Bytes::new(), Bytes::new());
    }
}

/// Opens a `Function.Exec` stream that sends pre-encoded batches: the
/// hand-written sibling of the generated `FunctionClient::exec`.
pub async fn exec_stream(
    channel: tonic::transport::Channel,
    batches: impl tonic::IntoStreamingRequest<Message = EncodedBatch>,
    max_decoding_message_size: usize,
) -> Result<tonic::Response<tonic::Streaming<pb::ExecResult>>, tonic::Status> {
    stream(channel, batches, max_decoding_message_size, "oort.plugin.v1.Function", "Exec").await
}

/// Opens a `Sink.Write` stream that sends pre-encoded batches: the
/// hand-written sibling of the generated `SinkClient::write`.
pub async fn write_stream(
    channel: tonic::transport::Channel,
    batches: impl tonic::IntoStreamingRequest<Message = EncodedBatch>,
    max_decoding_message_size: usize,
) -> Result<tonic::Response<tonic::Streaming<pb::WriteAck>>, tonic::Status> {
    stream(channel, batches, max_decoding_message_size, "oort.plugin.v1.Sink", "Write").await
}

async fn stream<Resp: prost::Message + Default + Send + 'static>(
    channel: tonic::transport::Channel,
    batches: impl tonic::IntoStreamingRequest<Message = EncodedBatch>,
    max_decoding_message_size: usize,
    service: &'static str,
    method: &'static str,
) -> Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max_decoding_message_size);
    grpc.ready().await.map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let path = format!("/{service}/{method}");
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path)
        .map_err(|e| tonic::Status::internal(format!("bad method path: {e}")))?;
    let mut request = batches.into_streaming_request();
    request.extensions_mut().insert(tonic::GrpcMethod::new(service, method));
    grpc.streaming(request, path, tonic_prost::ProstCodec::<EncodedBatch, Resp>::default()).await
}

fn message_field_len(tag: u32, body: usize) -> usize {
    key_len(tag) + encoded_len_varint(body as u64) + body
}

fn string_field_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        message_field_len(tag, s.len())
    }
}

/// The body length of an `ArgRow`.
fn row_len(row: &[Value]) -> usize {
    row.iter().map(|v| message_field_len(1, value_len(v))).sum()
}

/// The body length of a `Record`.
fn record_len(r: &Record) -> usize {
    let timestamp = if r.timestamp_ms == 0 { 0 } else { key_len(3) + encoded_len_varint(r.timestamp_ms as u64) };
    map_field_len(1, &r.fields) + map_field_len(2, &r.metadata) + timestamp
}

/// A map field: one length-delimited entry per key, nothing when empty.
fn map_field_len(tag: u32, entries: &std::collections::BTreeMap<String, Value>) -> usize {
    entries.iter().map(|(k, v)| message_field_len(tag, entry_len(k, v))).sum()
}

/// The body length of a `Value` message (its oneof case is always present).
fn value_len(v: &Value) -> usize {
    match v {
        Value::Null => key_len(1) + 1,
        Value::Bool(_) => key_len(2) + 1,
        Value::Int(i) => key_len(3) + encoded_len_varint(*i as u64),
        Value::Uint(u) => key_len(9) + encoded_len_varint(*u),
        Value::Float(_) => key_len(4) + 8,
        Value::String(s) => message_field_len(5, s.len()),
        Value::Bytes(b) => message_field_len(6, b.len()),
        Value::List(items) => message_field_len(7, list_len(items)),
        Value::Map(entries) => message_field_len(8, map_len(entries)),
    }
}

fn list_len(items: &[Value]) -> usize {
    items.iter().map(|v| message_field_len(1, value_len(v))).sum()
}

fn entry_len(key: &str, value: &Value) -> usize {
    message_field_len(1, key.len()) + message_field_len(2, value_len(value))
}

fn map_len(entries: &std::collections::BTreeMap<String, Value>) -> usize {
    map_field_len(1, entries)
}

/// A `Value` as field `tag` of the enclosing message.
fn encode_value_field(tag: u32, v: &Value, buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(value_len(v) as u64, buf);
    encode_value(v, buf);
}

/// A `map<string, Value>` as field `tag`: one entry message per key.
fn encode_map_field(tag: u32, entries: &std::collections::BTreeMap<String, Value>, buf: &mut BytesMut) {
    for (key, value) in entries {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(entry_len(key, value) as u64, buf);
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(key.len() as u64, buf);
        buf.put_slice(key.as_bytes());
        encode_value_field(2, value, buf);
    }
}

fn encode_value(v: &Value, buf: &mut BytesMut) {
    match v {
        Value::Null => {
            encode_key(1, WireType::Varint, buf);
            buf.put_u8(1);
        }
        Value::Bool(b) => {
            encode_key(2, WireType::Varint, buf);
            buf.put_u8(u8::from(*b));
        }
        Value::Int(i) => {
            encode_key(3, WireType::Varint, buf);
            encode_varint(*i as u64, buf);
        }
        Value::Uint(u) => {
            encode_key(9, WireType::Varint, buf);
            encode_varint(*u, buf);
        }
        Value::Float(f) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.put_f64_le(*f);
        }
        Value::String(s) => {
            encode_key(5, WireType::LengthDelimited, buf);
            encode_varint(s.len() as u64, buf);
            buf.put_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            encode_key(6, WireType::LengthDelimited, buf);
            encode_varint(b.len() as u64, buf);
            buf.put_slice(b);
        }
        Value::List(items) => {
            encode_key(7, WireType::LengthDelimited, buf);
            encode_varint(list_len(items) as u64, buf);
            for item in items {
                encode_value_field(1, item, buf);
            }
        }
        Value::Map(entries) => {
            encode_key(8, WireType::LengthDelimited, buf);
            encode_varint(map_len(entries) as u64, buf);
            encode_map_field(1, entries, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message;

    use super::*;

    fn generated(instance_id: &str, seq: u64, rows: &[Vec<Value>]) -> pb::ExecBatch {
        pb::ExecBatch {
            instance_id: instance_id.into(),
            seq,
            rows: rows.iter().map(|r| pb::ArgRow { args: r.iter().cloned().map(Into::into).collect() }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_hand_encoded_batch_decodes_as_the_generated_one() {
        let nested = Value::Map(BTreeMap::from([
            (String::new(), Value::Null),
            ("a".into(), Value::List(vec![Value::Int(-1), Value::Map(BTreeMap::new()), Value::List(vec![])])),
            ("é".into(), Value::Bytes(vec![])),
        ]));
        let rows = vec![
            vec![Value::Null, Value::Bool(false), Value::Bool(true)],
            vec![
                Value::Int(0),
                Value::Int(i64::MIN),
                Value::Int(i64::MAX),
                Value::Uint(u64::MAX),
                Value::Float(-0.0),
                Value::Float(1e300),
            ],
            vec![Value::String(String::new()), Value::String("x".repeat(300)), Value::Bytes(vec![0, 255])],
            vec![],
            vec![nested],
        ];
        for (id, seq) in [("r/fn_0", 0), ("", 7), ("r/fn_1", u64::MAX)] {
            let bytes = BatchBody::exec(id, &rows).with_seq(seq).encode_to_vec();
            let decoded = pb::ExecBatch::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(decoded, generated(id, seq, &rows), "id {id:?}, seq {seq}");
        }
    }

    #[test]
    fn the_hand_encoded_write_batch_decodes_as_the_generated_one() {
        let records = vec![
            Record::default(),
            Record {
                fields: BTreeMap::from([
                    ("n".into(), Value::Int(-3)),
                    (String::new(), Value::String("empty key".into())),
                    ("l".into(), Value::List(vec![Value::Null, Value::Float(0.5)])),
                ]),
                metadata: BTreeMap::from([("topic".into(), Value::Bytes(vec![1, 2]))]),
                timestamp_ms: 1_700_000_000_000,
            },
            Record { timestamp_ms: -1, ..Record::default() },
        ];
        for (id, seq) in [("r/sink_0_file", 0), ("", 1), ("x", u64::MAX)] {
            let bytes = BatchBody::write(id, &records).with_seq(seq).encode_to_vec();
            let decoded = pb::WriteBatch::decode(bytes.as_slice()).expect("decodes");
            let want = pb::WriteBatch {
                instance_id: id.into(),
                seq,
                records: records.iter().cloned().map(Into::into).collect(),
                ..Default::default()
            };
            assert_eq!(decoded, want, "id {id:?}, seq {seq}");
        }
    }

    #[test]
    fn the_hand_encoded_payload_batch_decodes_as_the_generated_one() {
        let payloads = vec![b"[{\"a\":1}]".to_vec(), vec![], vec![0xff; 300]];
        let bytes = BatchBody::write_payloads("r/sink", &payloads).with_seq(9).encode_to_vec();
        let decoded = pb::WriteBatch::decode(bytes.as_slice()).expect("decodes");
        let want = pb::WriteBatch { instance_id: "r/sink".into(), seq: 9, payloads, ..Default::default() };
        assert_eq!(decoded, want);
    }

    #[test]
    fn columnar_batches_put_the_schema_before_the_batch_in_each_message() {
        let (schema, batch) = (b"schema message".to_vec(), b"batch message".to_vec());
        let write = BatchBody::write_columns("r/sink", Bytes::from(batch.clone()))
            .with_schema(&schema)
            .with_seq(4)
            .encode_to_vec();
        let decoded = pb::WriteBatch::decode(write.as_slice()).expect("decodes");
        assert_eq!((decoded.arrow_schema.as_ref(), decoded.arrow.as_ref()), (&schema[..], &batch[..]));
        assert_eq!((decoded.seq, decoded.records.len()), (4, 0));
        let exec =
            BatchBody::exec_columns("r/f", Bytes::from(batch.clone())).with_schema(&schema).with_seq(1).encode_to_vec();
        let decoded = pb::ExecBatch::decode(exec.as_slice()).expect("decodes");
        assert_eq!((decoded.arrow_schema.as_ref(), decoded.arrow.as_ref()), (&schema[..], &batch[..]));
        let without = BatchBody::write_columns("r/sink", Bytes::from(batch.clone())).with_seq(5).encode_to_vec();
        assert!(pb::WriteBatch::decode(without.as_slice()).expect("decodes").arrow_schema.is_empty());
    }
}
