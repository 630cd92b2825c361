//! What the bundled connector plugins share: the properties the runtime
//! hands every source and sink, the check that refuses any other unknown
//! property, and JSON payloads as records. Each plugin is still its own
//! executable (`src/bin/`); this library is linked into the ones that use it.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use oort_plugin::{BoxError, Context, Props, Record, Value};

/// Properties eKuiper's runtime (and Oort's) gives every source or sink:
/// the supervisor's payload encoding, eKuiper's common sink options and the
/// connection a `connectionSelector` named. A connector does not read them
/// itself, and they are never unknown.
pub const RUNTIME_PROPS: [&str; 17] = [
    "format",
    "bufferLength",
    "sendSingle",
    "dataTemplate",
    "fields",
    "delimiter",
    "hasHeader",
    "omitIfEmpty",
    "runAsync",
    "enableCache",
    "retryInterval",
    "retryCount",
    "resendInterval",
    "concurrency",
    "schemaId",
    "payloads",
    "connectionSelector",
];

/// Refuses a property that is neither one of `known` (the connector's own)
/// nor one of [`RUNTIME_PROPS`], naming it and listing the known ones.
pub fn refuse_unknown(plugin: &str, props: &Props, known: &[&str]) -> Result<(), BoxError> {
    match props.keys().find(|k| !known.contains(&k.as_str()) && !RUNTIME_PROPS.contains(&k.as_str())) {
        Some(key) => Err(format!("unknown property {key:?}; the {plugin} properties are {}", known.join(", ")).into()),
        None => Ok(()),
    }
}

/// A JSON payload as records stamped `timestamp_ms`: an object is one
/// record, an array of objects one record each. Anything else is reported
/// as an exception of the instance (`what` names the payload) and skipped.
pub fn json_records(ctx: &Context, what: &str, payload: &[u8], timestamp_ms: i64, out: &mut Vec<Record>) {
    let record = |fields: BTreeMap<String, Value>| Record { fields, timestamp_ms, ..Record::default() };
    let json = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(json) => json,
        Err(e) => return ctx.report_exception(format!("{what} is not JSON: {e}")),
    };
    match Value::from_json(&json) {
        Value::Map(fields) => out.push(record(fields)),
        Value::List(items) => {
            for item in items {
                match item {
                    Value::Map(fields) => out.push(record(fields)),
                    other => ctx.report_exception(format!("an array item is not an object: {}", other.to_json())),
                }
            }
        }
        other => ctx.report_exception(format!("{what} is JSON but not an object: {}", other.to_json())),
    }
}

/// Milliseconds since the epoch, for records stamped on arrival.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
