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

/// A string property, `None` when absent.
pub fn string_prop(props: &Props, key: &str) -> Result<Option<String>, BoxError> {
    match props.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("property {key} must be a string, got {}", other.type_name()).into()),
    }
}

/// A positive number of milliseconds, `default` when absent.
pub fn millis_prop(props: &Props, key: &str, default: u64) -> Result<std::time::Duration, BoxError> {
    match props.get(key) {
        None => Ok(std::time::Duration::from_millis(default)),
        Some(v) => match v.as_i64() {
            Some(ms) if ms > 0 => Ok(std::time::Duration::from_millis(ms as u64)),
            _ => Err(format!("property {key} must be a positive number of milliseconds, got {}", v.to_json()).into()),
        },
    }
}

/// The HTTP connectors' `headers` (an object; a value that is not a string
/// is sent as its JSON text).
pub fn headers_prop(props: &Props) -> Result<Vec<(String, String)>, BoxError> {
    match props.get("headers") {
        None => Ok(Vec::new()),
        Some(Value::Map(m)) => Ok(m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k.clone(), s.clone()),
                other => (k.clone(), other.to_json().to_string()),
            })
            .collect()),
        Some(other) => Err(format!("property headers must be an object, got {}", other.type_name()).into()),
    }
}

/// The content type eKuiper's `bodyType` names: `json` (the default) or `text`.
pub fn body_type_prop(props: &Props) -> Result<&'static str, BoxError> {
    match string_prop(props, "bodyType")?.as_deref() {
        None | Some("json") => Ok("application/json"),
        Some("text") => Ok("text/plain"),
        Some(other) => Err(format!("property bodyType must be json or text, got {other:?}").into()),
    }
}

/// The upper-cased `method` (`default` when absent), one of `allowed`.
pub fn method_prop(props: &Props, default: &str, allowed: &[&str]) -> Result<String, BoxError> {
    let method = string_prop(props, "method")?.unwrap_or_else(|| default.into()).to_uppercase();
    if !allowed.contains(&method.as_str()) {
        return Err(format!("property method: unknown HTTP method {method:?}").into());
    }
    Ok(method)
}

/// Checks that `url` is an `http://` or `https://` URL with a host.
pub fn check_http_url(url: &str) -> Result<(), BoxError> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("url {url:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!("url {url:?} must be an http:// or https:// URL").into());
    }
    Ok(())
}
