//! The rest of eKuiper's REST surface that its clients call: `GET /`, a
//! rule's topology, and the ruleset's export and import.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value as Json_};

use super::rest::{json_object, ApiError, ApiResult, AppState};
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
