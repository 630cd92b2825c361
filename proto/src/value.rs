//! The dynamic [`Value`] and [`Record`] every side of the wire works with, and
//! their exact conversions to and from the generated protobuf types and JSON.
//!
//! Maps are ordered (`BTreeMap`) so that a record always serializes to the same
//! bytes: exactly-once file output is compared byte for byte.

use std::collections::BTreeMap;

use crate::plugin::v1 as pb;

/// A dynamic value, the equivalent of eKuiper's `interface{}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    /// An unsigned integer: what an SDK sent as unsigned (Go's `uint64`), or a
    /// JSON integer above `i64::MAX`. Kept as such so that it round-trips.
    Uint(u64),
    Float(f64),
    String(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

/// One record: named fields, metadata and an event time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    pub fields: BTreeMap<String, Value>,
    pub metadata: BTreeMap<String, Value>,
    /// Milliseconds since the Unix epoch; 0 when unknown.
    pub timestamp_ms: i64,
}

impl Value {
    /// The value as a string slice, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer, when it is an integer or a float with no fraction.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Uint(u) => i64::try_from(u).ok(),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => None,
        }
    }

    /// The value as a float, when it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Uint(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The value as a bool, when it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Uint(_) => "uint",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Converts to JSON. Bytes become a list of numbers, as in eKuiper's JSON
    /// encoding of `[]byte`; non-finite floats become null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Uint(u) => J::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String(s) => J::String(s.clone()),
            Value::Bytes(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// Converts from JSON. Integers that fit `i64` stay integers, larger ones up
    /// to `u64::MAX` become [`Value::Uint`] (exact, as eKuiper keeps them).
    pub fn from_json(json: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Value::Int(i),
                (None, Some(u)) => Value::Uint(u),
                (None, None) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::String(s.clone()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect()),
        }
    }
}

impl Record {
    /// A record with the given fields, no metadata and no timestamp.
    pub fn from_fields(fields: BTreeMap<String, Value>) -> Record {
        Record { fields, ..Record::default() }
    }

    /// The record's fields as one JSON object, as sinks write them.
    pub fn fields_to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
    }
}

macro_rules! from_scalar {
    ($($t:ty => $variant:ident),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::$variant(v.into()) }
        }
    )*};
}
from_scalar!(bool => Bool, i64 => Int, i32 => Int, u64 => Uint, f64 => Float, String => String, &str => String, Vec<u8> => Bytes);

impl From<Value> for pb::Value {
    fn from(v: Value) -> pb::Value {
        use pb::value::Kind;
        let kind = match v {
            Value::Null => Kind::Null(true),
            Value::Bool(b) => Kind::Bool(b),
            Value::Int(i) => Kind::Int(i),
            Value::Uint(u) => Kind::Uint(u),
            Value::Float(f) => Kind::Float(f),
            Value::String(s) => Kind::String(s),
            Value::Bytes(b) => Kind::Bytes(b),
            Value::List(l) => Kind::List(pb::ValueList { items: l.into_iter().map(Into::into).collect() }),
            Value::Map(m) => Kind::Map(pb::ValueMap { entries: m.into_iter().map(|(k, v)| (k, v.into())).collect() }),
        };
        pb::Value { kind: Some(kind) }
    }
}

impl From<pb::Value> for Value {
    fn from(v: pb::Value) -> Value {
        use pb::value::Kind;
        match v.kind {
            None | Some(Kind::Null(_)) => Value::Null,
            Some(Kind::Bool(b)) => Value::Bool(b),
            Some(Kind::Int(i)) => Value::Int(i),
            Some(Kind::Uint(u)) => Value::Uint(u),
            Some(Kind::Float(f)) => Value::Float(f),
            Some(Kind::String(s)) => Value::String(s),
            Some(Kind::Bytes(b)) => Value::Bytes(b),
            Some(Kind::List(l)) => Value::List(l.items.into_iter().map(Into::into).collect()),
            Some(Kind::Map(m)) => Value::Map(m.entries.into_iter().map(|(k, v)| (k, v.into())).collect()),
        }
    }
}

/// Converts a protobuf field map into a domain map.
pub fn map_from_pb(m: BTreeMap<String, pb::Value>) -> BTreeMap<String, Value> {
    m.into_iter().map(|(k, v)| (k, v.into())).collect()
}

/// Converts a domain map into a protobuf field map.
pub fn map_to_pb(m: BTreeMap<String, Value>) -> BTreeMap<String, pb::Value> {
    m.into_iter().map(|(k, v)| (k, v.into())).collect()
}

impl From<Record> for pb::Record {
    fn from(r: Record) -> pb::Record {
        pb::Record { fields: map_to_pb(r.fields), metadata: map_to_pb(r.metadata), timestamp_ms: r.timestamp_ms }
    }
}

impl From<pb::Record> for Record {
    fn from(r: pb::Record) -> Record {
        Record { fields: map_from_pb(r.fields), metadata: map_from_pb(r.metadata), timestamp_ms: r.timestamp_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_survives_the_wire() {
        let mut map = BTreeMap::new();
        map.insert("k".to_string(), Value::List(vec![Value::Int(-3), Value::Null]));
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Uint(u64::MAX),
            Value::Uint(7),
            Value::Float(1.5),
            Value::String("héllo".into()),
            Value::Bytes(vec![0, 255]),
            Value::Map(map),
        ];
        for v in values {
            let back: Value = pb::Value::from(v.clone()).into();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn json_round_trip_keeps_integers_integers() {
        let j = serde_json::json!({"a": 1, "b": 2.5, "c": [true, null, "x"]});
        let v = Value::from_json(&j);
        match &v {
            Value::Map(m) => assert_eq!(m["a"], Value::Int(1)),
            other => panic!("expected a map, got {other:?}"),
        }
        assert_eq!(v.to_json(), j);
    }

    #[test]
    fn json_integers_above_i64_stay_exact() {
        let j: serde_json::Value = serde_json::from_str(r#"{"h": 12963433097944239317, "n": -3}"#).unwrap();
        let v = Value::from_json(&j);
        let Value::Map(m) = &v else { panic!("expected a map, got {v:?}") };
        assert_eq!(m["h"], Value::Uint(12963433097944239317));
        assert_eq!(m["n"], Value::Int(-3));
        assert_eq!(serde_json::to_string(&v.to_json()).unwrap(), r#"{"h":12963433097944239317,"n":-3}"#);
    }
}
