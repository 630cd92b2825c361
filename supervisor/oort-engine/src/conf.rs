//! eKuiper's source configurations: `<conf-dir>/<type>.json`, one JSON object
//! of named sections (`default`, and one per conf key a stream's `CONF_KEY`
//! names), each an object of source properties. eKuiper keeps these in
//! `etc/sources/<type>.yaml` and edits them with
//! `PUT /metadata/sources/{type}/confKeys/{key}`; so does Oort, in JSON.
//!
//! A write goes to a temporary file beside the configuration, is synced and
//! renamed over it, so a crash leaves the old file or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::EngineError;

fn file(dir: &Path, source_type: &str) -> Result<PathBuf, EngineError> {
    if !oort_core::names::is_valid_name(source_type) {
        return Err(EngineError::Invalid(format!(
            "invalid source type {source_type:?}: names must match ^[A-Za-z0-9_-]+$"
        )));
    }
    Ok(dir.join(format!("{source_type}.json")))
}

/// Every section of a source type's configuration; an empty object when it
/// has none.
pub(crate) fn read(dir: &Path, source_type: &str) -> Result<Map<String, Json>, EngineError> {
    let path = file(dir, source_type)?;
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(EngineError::Invalid(format!("cannot read {}: {e}", path.display()))),
    };
    match serde_json::from_slice(&bytes) {
        Ok(Json::Object(sections)) => Ok(sections),
        Ok(_) => Err(EngineError::Invalid(format!("source configuration {} is not a JSON object", path.display()))),
        Err(e) => Err(EngineError::Invalid(format!("source configuration {} is not valid JSON: {e}", path.display()))),
    }
}

/// Sets conf key `key` of a source type to `props` (a JSON object),
/// replacing what it held.
pub(crate) fn put_key(dir: &Path, source_type: &str, key: &str, props: Json) -> Result<(), EngineError> {
    if !oort_core::names::is_valid_name(key) {
        return Err(EngineError::Invalid(format!("invalid conf key {key:?}: names must match ^[A-Za-z0-9_-]+$")));
    }
    if !props.is_object() {
        return Err(EngineError::Invalid(format!("conf key {key}: the properties must be a JSON object")));
    }
    let mut sections = read(dir, source_type)?;
    sections.insert(key.to_string(), props);
    write(dir, source_type, sections)
}

/// Removes conf key `key` of a source type; `Ok(false)` when it had none.
pub(crate) fn delete_key(dir: &Path, source_type: &str, key: &str) -> Result<bool, EngineError> {
    let mut sections = read(dir, source_type)?;
    if sections.remove(key).is_none() {
        return Ok(false);
    }
    write(dir, source_type, sections)?;
    Ok(true)
}

fn write(dir: &Path, source_type: &str, sections: Map<String, Json>) -> Result<(), EngineError> {
    write_json(&file(dir, source_type)?, sections)
}

/// Writes `object` to `path` through a synced temporary beside it.
fn write_json(path: &Path, object: Map<String, Json>) -> Result<(), EngineError> {
    let failed = |e: std::io::Error| EngineError::Invalid(format!("cannot write {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(failed)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("conf");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut out = std::fs::File::create(&tmp).map_err(failed)?;
    let text = serde_json::to_vec_pretty(&Json::Object(object)).expect("JSON values serialize");
    out.write_all(&text).and_then(|()| out.sync_all()).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

/// One of eKuiper's shared connections (its `/connections`): a named set of
/// properties of one plugin type that sources and sinks take with
/// `connectionSelector: "<id>"`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    pub id: String,
    /// The source or sink plugin it is for (`mqtt`).
    pub typ: String,
    pub props: Map<String, Json>,
}

/// Every connection in `<conf>/connections.json`, by id.
pub(crate) fn read_connections(path: &Path) -> Result<std::collections::BTreeMap<String, Connection>, EngineError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(EngineError::Invalid(format!("cannot read {}: {e}", path.display()))),
    };
    let all: Map<String, Json> = serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Invalid(format!("connections file {} is not valid: {e}", path.display())))?;
    all.into_iter()
        .map(|(id, v)| {
            serde_json::from_value::<Connection>(v)
                .map(|c| (id.clone(), c))
                .map_err(|e| EngineError::Invalid(format!("connection {id} in {} is not valid: {e}", path.display())))
        })
        .collect()
}

/// Creates (`create`: refused when it exists) or replaces (refused when it
/// does not) one connection.
pub(crate) fn put_connection(path: &Path, connection: Connection, create: bool) -> Result<(), EngineError> {
    if !oort_core::names::is_valid_name(&connection.id) {
        return Err(EngineError::Invalid(format!(
            "invalid connection id {:?}: ids must match ^[A-Za-z0-9_-]+$",
            connection.id
        )));
    }
    if !oort_core::names::is_valid_name(&connection.typ) {
        return Err(EngineError::Invalid(format!("connection {}: invalid typ {:?}", connection.id, connection.typ)));
    }
    let mut all = read_connections(path)?;
    match (all.contains_key(&connection.id), create) {
        (true, true) => return Err(EngineError::ConnectionExists { id: connection.id }),
        (false, false) => return Err(EngineError::UnknownConnection { id: connection.id }),
        _ => {}
    }
    all.insert(connection.id.clone(), connection);
    write_connections(path, all)
}

pub(crate) fn delete_connection(path: &Path, id: &str) -> Result<(), EngineError> {
    let mut all = read_connections(path)?;
    if all.remove(id).is_none() {
        return Err(EngineError::UnknownConnection { id: id.to_string() });
    }
    write_connections(path, all)
}

fn write_connections(path: &Path, all: std::collections::BTreeMap<String, Connection>) -> Result<(), EngineError> {
    let object =
        all.into_iter().map(|(id, c)| (id, serde_json::to_value(c).expect("a connection serializes"))).collect();
    write_json(path, object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conf_keys_are_put_replaced_and_deleted_in_the_types_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), "mqtt").unwrap().is_empty());
        put_key(dir.path(), "mqtt", "local", json!({"server": "tcp://127.0.0.1:1883"})).unwrap();
        put_key(dir.path(), "mqtt", "other", json!({"qos": 1})).unwrap();
        put_key(dir.path(), "mqtt", "local", json!({"server": "tcp://127.0.0.1:1884"})).unwrap();
        let on_disk: Json = serde_json::from_slice(&std::fs::read(dir.path().join("mqtt.json")).unwrap()).unwrap();
        assert_eq!(on_disk, json!({"local": {"server": "tcp://127.0.0.1:1884"}, "other": {"qos": 1}}));
        assert!(delete_key(dir.path(), "mqtt", "other").unwrap());
        assert!(!delete_key(dir.path(), "mqtt", "other").unwrap());
        assert_eq!(
            Json::Object(read(dir.path(), "mqtt").unwrap()),
            json!({"local": {"server": "tcp://127.0.0.1:1884"}})
        );
        for (t, k, props, want) in [
            ("../x", "k", json!({}), "invalid source type"),
            ("mqtt", "a b", json!({}), "invalid conf key"),
            ("mqtt", "k", json!([1]), "must be a JSON object"),
        ] {
            let err = put_key(dir.path(), t, k, props).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        assert!(read(dir.path(), "bad").unwrap_err().to_string().contains("not valid JSON"));
    }

    #[test]
    fn connections_are_created_replaced_and_deleted_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connections.json");
        let conn = |id: &str, server: &str| Connection {
            id: id.into(),
            typ: "mqtt".into(),
            props: json!({ "server": server }).as_object().unwrap().clone(),
        };
        put_connection(&path, conn("c1", "tcp://a:1883"), true).unwrap();
        assert!(matches!(put_connection(&path, conn("c1", "x"), true), Err(EngineError::ConnectionExists { .. })));
        assert!(matches!(put_connection(&path, conn("c2", "x"), false), Err(EngineError::UnknownConnection { .. })));
        put_connection(&path, conn("c1", "tcp://b:1883"), false).unwrap();
        assert_eq!(read_connections(&path).unwrap()["c1"], conn("c1", "tcp://b:1883"));
        assert!(put_connection(&path, conn("a b", "x"), true)
            .unwrap_err()
            .to_string()
            .contains("invalid connection id"));
        delete_connection(&path, "c1").unwrap();
        assert!(matches!(delete_connection(&path, "c1"), Err(EngineError::UnknownConnection { .. })));
        assert!(read_connections(&path).unwrap().is_empty());
    }
}
