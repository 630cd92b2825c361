//! The checkpoint record: what a rule's barrier-consistent snapshot holds, and
//! its encoding in the store (protobuf `oort.store.v1.Checkpoint`).

use std::collections::BTreeMap;

use crate::pb as spb;
use oort_proto::plugin::v1 as pb;
use oort_proto::Value;
use prost::Message;

/// One snapshot of a rule, taken at a batch boundary with every sink drained.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub id: u64,
    /// The source offset after the last batch the rule accepted.
    pub source_offset: Option<Value>,
    /// Every instance's state, by instance id.
    pub instances: BTreeMap<String, Vec<pb::StateEntry>>,
    /// Every sink's pre-commit handle, by sink operator id.
    pub sink_handles: BTreeMap<String, Value>,
    /// A windowed rule's window contents, opaque here.
    pub window: Option<Value>,
}

/// Encodes a snapshot for the store.
pub fn encode(rule: &str, qos: u8, s: &Snapshot) -> Vec<u8> {
    let created_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    spb::Checkpoint {
        id: s.id,
        rule_id: rule.to_string(),
        created_ms,
        qos: qos as u32,
        source_offset: s.source_offset.clone().map(Into::into),
        instances: s.instances.iter().map(|(k, v)| (k.clone(), spb::InstanceState { entries: v.clone() })).collect(),
        sink_handles: s.sink_handles.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect(),
        window: s.window.clone().map(Into::into),
    }
    .encode_to_vec()
}

/// Decodes a stored checkpoint, checking that it is the one asked for.
pub fn decode(rule: &str, id: u64, bytes: &[u8]) -> Result<Snapshot, String> {
    let c = spb::Checkpoint::decode(bytes).map_err(|e| e.to_string())?;
    if c.id != id || c.rule_id != rule {
        return Err(format!("it claims to be checkpoint {} of rule {:?}", c.id, c.rule_id));
    }
    Ok(Snapshot {
        id: c.id,
        source_offset: c.source_offset.map(Into::into),
        instances: c.instances.into_iter().map(|(k, v)| (k, v.entries)).collect(),
        sink_handles: c.sink_handles.into_iter().map(|(k, v)| (k, v.into())).collect(),
        window: c.window.map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_survives_encoding() {
        let s = Snapshot {
            id: 7,
            source_offset: Some(Value::Int(1234)),
            instances: BTreeMap::from([(
                "r/fn_0_f".to_string(),
                vec![pb::StateEntry { key: "n".into(), entry: Some(pb::state_entry::Entry::Counter(5)) }],
            )]),
            sink_handles: BTreeMap::from([("sink_0_file".to_string(), Value::Int(99))]),
            window: Some(Value::List(vec![Value::from("count"), Value::Int(3)])),
        };
        assert_eq!(decode("r", 7, &encode("r", 2, &s)).unwrap(), s);
    }

    #[test]
    fn garbage_and_mislabelled_checkpoints_are_refused() {
        assert!(decode("r", 1, b"\xff\xff\xff garbage").is_err());
        let s = Snapshot { id: 3, ..Snapshot::default() };
        let err = decode("other", 3, &encode("r", 1, &s)).unwrap_err();
        assert!(err.contains("claims to be checkpoint 3 of rule \"r\""), "{err}");
    }
}
