//! The rest of eKuiper's REST surface that its clients call: `GET /`, a
//! rule's topology, and the ruleset's export and import.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value as Json_};

use super::rest::{json_object, kind, ApiError, ApiResult, AppState};
use oort_engine::Ruleset;

/// `GET /`: eKuiper's `version`, `os`, `arch` (Go's names) and
/// `upTimeSeconds`.
pub(super) async fn about(State(app): State<AppState>) -> Json<Json_> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "os": std::env::consts::OS,
        "arch": arch,
        "upTimeSeconds": app.started.elapsed().as_secs(),
    }))
}

/// `GET /rules/{id}/topo`: `{"sources": [...], "edges": {op: [next, ...]}}`.
pub(super) async fn rule_topology(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Json_>> {
    let topo = app.engine.topology(&id).await?;
    Ok(Json(json!({"sources": topo.sources, "edges": topo.edges})))
}

/// `GET /data/export`: every stream and rule in eKuiper's export shape.
pub(super) async fn export(State(app): State<AppState>) -> Json<Json_> {
    let set = app.engine.export().await;
    Json(json!({"streams": set.streams, "tables": {}, "rules": set.rules}))
}

/// `POST /data/import` with `{"content": "<an export, as text>"}` (eKuiper's
/// body; the export as an object is accepted too). Streams, then rules; one
/// that exists is replaced. 200 when everything went in, else 400; the body
/// says, per stream and rule, `ok` or why not.
pub(super) async fn import(State(app): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let request = json_object(&body)?;
    if request.contains_key("file") {
        return Err(ApiError::bad_request(
            "importing from a file path is not supported: send the export as \"content\"",
        ));
    }
    let content = match request.get("content") {
        Some(Json_::String(text)) => serde_json::from_str::<Json_>(text)
            .map_err(|e| ApiError::bad_request(format!("content is not valid JSON: {e}")))?,
        Some(object @ Json_::Object(_)) => object.clone(),
        _ => return Err(ApiError::bad_request("missing field \"content\": the export to import")),
    };
    let section = |key: &str| -> ApiResult<std::collections::BTreeMap<String, String>> {
        match content.get(key) {
            None | Some(Json_::Null) => Ok(Default::default()),
            Some(Json_::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Json_::String(s) => Ok((k.clone(), s.clone())),
                    // A rule given as an object rather than as its JSON text.
                    Json_::Object(_) if key == "rules" => Ok((k.clone(), v.to_string())),
                    _ => Err(ApiError::bad_request(format!("{key}.{k} must be a string"))),
                })
                .collect(),
            Some(_) => Err(ApiError::bad_request(format!("{key} must be an object"))),
        }
    };
    if content.get("tables").and_then(Json_::as_object).is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request("tables are not supported yet: the import contains some"));
    }
    let set = Ruleset { streams: section("streams")?, rules: section("rules")? };
    let report = app.engine.import(set).await;
    let words = |m: &std::collections::BTreeMap<String, Option<String>>| -> serde_json::Map<String, Json_> {
        m.iter().map(|(k, v)| (k.clone(), json!(v.as_deref().unwrap_or("ok")))).collect()
    };
    let status = if report.is_complete() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((status, Json(json!({"streams": words(&report.streams), "rules": words(&report.rules)}))).into_response())
}

// ----- plugin metadata and functions -----

/// eKuiper's `GET /metadata/{sources|sinks|functions}`: every plugin of the
/// kind with its `about`.
pub(super) async fn list_metadata(State(app): State<AppState>, Path(k): Path<String>) -> ApiResult<Json<Json_>> {
    let kind = kind(&k)?;
    app.host.rescan().await;
    let list: Vec<Json_> = app
        .host
        .list(kind)
        .into_iter()
        .map(|name| {
            let about = match app.host.metadata(kind, &name) {
                Some(Ok(m)) => m.about.unwrap_or(Json_::Null),
                _ => Json_::Null,
            };
            json!({ "name": name, "about": about })
        })
        .collect();
    Ok(Json(Json_::Array(list)))
}

/// eKuiper's `GET /metadata/{sources|sinks|functions}/{name}`: the plugin's
/// metadata file (`about`, `properties`, `functions`, …); a metadata file
/// that is not valid is an error saying why.
pub(super) async fn describe_metadata(
    State(app): State<AppState>,
    Path((k, name)): Path<(String, String)>,
) -> ApiResult<Json<Json_>> {
    let kind = kind(&k)?;
    app.host.rescan().await;
    match app.host.metadata(kind, &name) {
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no {} plugin named {name:?}", kind.as_str()))),
        Some(Err(problem)) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, problem)),
        Some(Ok(m)) => {
            let mut v = serde_json::to_value(&m)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            if let Json_::Object(o) = &mut v {
                o.insert("name".into(), json!(name));
            }
            Ok(Json(v))
        }
    }
}

/// eKuiper's `GET /plugins/udfs`: every function name plugins export.
pub(super) async fn list_udfs(State(app): State<AppState>) -> Json<Vec<String>> {
    app.host.rescan().await;
    Json(app.host.functions().into_iter().map(|(f, _)| f).collect())
}

/// eKuiper's `GET /plugins/udfs/{name}`: the plugin exporting a function.
pub(super) async fn describe_udf(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Json_>> {
    app.host.rescan().await;
    let wanted = name.to_lowercase();
    match app.host.functions().into_iter().find(|(f, _)| *f == wanted) {
        Some((_, plugin)) => Ok(Json(json!({ "name": name, "plugin": plugin }))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no plugin exports a function named {name:?}"))),
    }
}

// ----- source conf keys -----

/// eKuiper's `GET /metadata/sources/yaml/{type}`: the type's conf keys and
/// their properties.
pub(super) async fn source_conf(
    State(app): State<AppState>,
    Path(source_type): Path<String>,
) -> ApiResult<Json<Json_>> {
    Ok(Json(Json_::Object(app.engine.source_conf(&source_type)?)))
}

/// eKuiper's `PUT /metadata/sources/{type}/confKeys/{key}` with the
/// properties as a JSON object.
pub(super) async fn put_conf_key(
    State(app): State<AppState>,
    Path((source_type, key)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<String> {
    let props = Json_::Object(json_object(&body)?);
    app.engine.put_conf_key(&source_type, &key, props)?;
    Ok(format!("conf key {key} of source {source_type} is set"))
}

/// eKuiper's `DELETE /metadata/sources/{type}/confKeys/{key}`.
pub(super) async fn delete_conf_key(
    State(app): State<AppState>,
    Path((source_type, key)): Path<(String, String)>,
) -> ApiResult<String> {
    app.engine.delete_conf_key(&source_type, &key)?;
    Ok(format!("conf key {key} of source {source_type} is deleted"))
}
