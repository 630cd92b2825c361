//! The rest of eKuiper's REST surface that its clients call: `GET /`, a
//! rule's topology, and the ruleset's export and import.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value as Json_};

use super::rest::{created, json_object, kind, required_string, ApiError, ApiResult, AppState};
use oort_engine::Ruleset;
use oort_host::catalog::{PluginKind, PortableManifest};
use oort_host::install;

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
pub(super) async fn rule_topology(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if let Some(answer) = super::rest::from_owner(&app, &headers, &id, "GET", &format!("/rules/{id}/topo")).await? {
        return Ok(answer);
    }
    let topo = app.engine.topology(&id).await?;
    Ok(Json(json!({"sources": topo.sources, "edges": topo.edges})).into_response())
}

/// `GET /data/export`: every stream, rule, source configuration and plugin in
/// eKuiper's export shape. A plugin is listed with the install request it came
/// from (`{"name", "file"}`); one copied into the plugins folder by hand has
/// an empty `file`.
pub(super) async fn export(State(app): State<AppState>) -> Json<Json_> {
    let set = app.engine.export().await;
    app.host.rescan().await;
    let source = |kind: Option<PluginKind>, name: &str| {
        let record = install::install_source(&app.plugins_dir, kind, name);
        let file = record.as_ref().map_or("", |r| r.file.as_str());
        json!({"name": name, "file": file}).to_string()
    };
    let mut native = serde_json::Map::new();
    for kind in PluginKind::ALL {
        for name in app.host.list(kind) {
            if !app.host.is_portable_part(kind, &name) {
                native.insert(format!("{}_{name}", kind.dir_name()), json!(source(Some(kind), &name)));
            }
        }
    }
    let portable: serde_json::Map<String, Json_> =
        app.host.portables().iter().map(|(name, _, _)| (name.clone(), json!(source(None, name)))).collect();
    Json(json!({
        "streams": set.streams, "tables": {}, "rules": set.rules, "sourceConfig": set.source_config,
        "nativePlugins": native, "portablePlugins": portable,
    }))
}

/// Installs what an import lists and is not installed yet; reports each by
/// its export key.
async fn import_plugins(
    app: &AppState,
    native: std::collections::BTreeMap<String, String>,
    portable: std::collections::BTreeMap<String, String>,
) -> serde_json::Map<String, Json_> {
    let mut report = serde_json::Map::new();
    let requests =
        native.into_iter().map(|(k, v)| (k, v, false)).chain(portable.into_iter().map(|(k, v)| (k, v, true)));
    for (key, text, is_portable) in requests {
        let outcome = import_plugin(app, &key, &text, is_portable).await;
        report.insert(key, json!(outcome.err().unwrap_or_else(|| "ok".into())));
    }
    app.host.rescan().await;
    report
}

async fn import_plugin(app: &AppState, key: &str, text: &str, is_portable: bool) -> Result<(), String> {
    let request: Json_ = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let field = |f: &str| request.get(f).and_then(Json_::as_str).unwrap_or_default().to_string();
    let (name, file) = (field("name"), field("file"));
    let kind = if is_portable {
        None
    } else {
        let dir = key.split_once('_').map(|(d, _)| d).unwrap_or_default();
        Some(PluginKind::from_dir_name(dir).ok_or(format!("{key}: expected <sources|sinks|functions>_<name>"))?)
    };
    let installed = match kind {
        Some(kind) => app.host.has_plugin(kind, &name),
        None => app.host.portable(&name).is_some(),
    };
    if installed {
        return Ok(());
    }
    if file.is_empty() {
        return Err(format!("plugin {name} is not installed and the export has no file to install it from"));
    }
    let dir = app.plugins_dir.clone();
    let sha256 = request.get("sha256").and_then(Json_::as_str).map(str::to_owned);
    tokio::task::spawn_blocking(move || match kind {
        Some(kind) => install::install(&dir, &install::InstallRequest { kind, name, file, sha256 }).map(|_| ()),
        None => install::install_portable(&dir, &name, &file, sha256.as_deref()).map(|_| ()),
    })
    .await
    .map_err(|e| format!("install task failed: {e}"))?
    .map_err(|e| e.to_string())
}

/// `POST /data/import` with `{"content": "<an export, as text>"}` (eKuiper's
/// body; the export as an object is accepted too). Streams, then rules; one
/// that exists is replaced. 200 when everything went in, else 400; the body
/// says, per stream and rule, `ok` or why not.
pub(super) async fn import(State(app): State<AppState>, body: Bytes) -> ApiResult<Response> {
    if app.cluster.is_some() {
        // An import writes one node's registry, which the cluster's
        // definitions in etcd would then overrule.
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "importing is not supported in cluster mode yet: create the streams and rules through POST /streams and \
             POST /rules, which store them for the whole cluster",
        ));
    }
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
                    Json_::Object(_) if key != "streams" => Ok((k.clone(), v.to_string())),
                    _ => Err(ApiError::bad_request(format!("{key}.{k} must be a string"))),
                })
                .collect(),
            Some(_) => Err(ApiError::bad_request(format!("{key} must be an object"))),
        }
    };
    if content.get("tables").and_then(Json_::as_object).is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request("tables are not supported yet: the import contains some"));
    }
    let set =
        Ruleset { streams: section("streams")?, rules: section("rules")?, source_config: section("sourceConfig")? };
    // Plugins first: the streams and rules name them.
    let plugins = import_plugins(&app, section("nativePlugins")?, section("portablePlugins")?).await;
    let report = app.engine.import(set).await;
    let words = |m: &std::collections::BTreeMap<String, Option<String>>| -> serde_json::Map<String, Json_> {
        m.iter().map(|(k, v)| (k.clone(), json!(v.as_deref().unwrap_or("ok")))).collect()
    };
    let complete = report.is_complete() && plugins.values().all(|v| v == "ok");
    let status = if complete { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let mut body = json!({"streams": words(&report.streams), "rules": words(&report.rules)});
    // Only what the import carried, so that a streams-and-rules import answers as before.
    if !report.source_config.is_empty() {
        body["sourceConfig"] = Json_::Object(words(&report.source_config));
    }
    if !plugins.is_empty() {
        body["plugins"] = Json_::Object(plugins);
    }
    Ok((status, Json(body)).into_response())
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

// ----- portable plugins -----

/// A package as eKuiper's `/plugins/portables` shows it: its manifest's
/// fields with the package's name.
fn portable_json(name: &str, manifest: &PortableManifest) -> Json_ {
    json!({
        "name": name,
        "version": manifest.version,
        "language": manifest.language,
        "executable": manifest.executable,
        "sources": manifest.sources,
        "sinks": manifest.sinks,
        "functions": manifest.functions,
    })
}

/// eKuiper's `GET /plugins/portables`: every installed package.
pub(super) async fn list_portables(State(app): State<AppState>) -> Json<Json_> {
    app.host.rescan().await;
    Json(Json_::Array(app.host.portables().iter().map(|(name, m, _)| portable_json(name, m)).collect()))
}

/// eKuiper's `GET /plugins/portables/{name}`.
pub(super) async fn describe_portable(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Json_>> {
    app.host.rescan().await;
    match app.host.portable(&name) {
        Some((n, m, _)) => Ok(Json(portable_json(&n, &m))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no portable plugin named {name:?}"))),
    }
}

/// eKuiper's `POST /plugins/portables` with `{"name", "file", "sha256"?}`:
/// installs an eKuiper portable plugin zip.
pub(super) async fn install_portable(State(app): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let obj = json_object(&body)?;
    let sha256 = match obj.get("sha256") {
        None | Some(Json_::Null) => None,
        Some(Json_::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("field \"sha256\" must be a string")),
    };
    let (name, file) = (required_string(&obj, "name")?, required_string(&obj, "file")?);
    let dir = app.plugins_dir.clone();
    let installed =
        tokio::task::spawn_blocking(move || install::install_portable(&dir, &name, &file, sha256.as_deref()))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("install task failed: {e}")))??;
    app.host.rescan().await;
    // What the catalog would not take from the package (a part named like an
    // installed plugin) is said now, not when a rule fails to find it.
    if let Some(problem) = app.host.package_problem(&installed.name) {
        tracing::warn!(package = %installed.name, "{problem}");
    }
    Ok(created(format!("Plugin {} is created.", installed.name)))
}

/// eKuiper's `DELETE /plugins/portables/{name}`: refused while rules use
/// any of the package's parts.
pub(super) async fn remove_portable(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<String> {
    app.host.rescan().await;
    if let Some((package, manifest, _)) = &app.host.portable(&name) {
        let parts = manifest
            .sources
            .iter()
            .map(|s| (PluginKind::Source, s.clone()))
            .chain(manifest.sinks.iter().map(|s| (PluginKind::Sink, s.clone())))
            .chain((!manifest.functions.is_empty()).then(|| (PluginKind::Function, package.clone())));
        let mut users = Vec::new();
        for (kind, part) in parts {
            users.extend(app.engine.users_of(kind, &part).await);
        }
        users.sort();
        users.dedup();
        super::rest::not_in_use(&name, users)?;
    }
    let dir = app.plugins_dir.clone();
    let n = name.clone();
    tokio::task::spawn_blocking(move || install::remove_portable(&dir, &n))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("remove task failed: {e}")))??;
    app.host.rescan().await;
    Ok(format!("Plugin {name} is deleted."))
}

// ----- shared connections -----

fn connection_json(c: &oort_engine::ConnectionReport) -> Json_ {
    json!({
        "id": c.connection.id,
        "typ": c.connection.typ,
        "props": c.connection.props,
        "status": c.status,
        "refCount": c.ref_count,
    })
}

/// eKuiper's `GET /connections`: every connection with its status.
pub(super) async fn list_connections(State(app): State<AppState>) -> ApiResult<Json<Json_>> {
    let all = app.engine.connections().await?;
    Ok(Json(Json_::Array(all.iter().map(connection_json).collect())))
}

/// eKuiper's `GET /connections/{id}`.
pub(super) async fn describe_connection(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Json_>> {
    Ok(Json(connection_json(&app.engine.connection(&id).await?)))
}

/// The body of a connection: `{"id", "typ", "props"}`; `id` may come from
/// the path.
fn connection_body(body: &[u8], path_id: Option<&str>) -> ApiResult<oort_engine::Connection> {
    let obj = json_object(body)?;
    let id = match (obj.get("id").and_then(Json_::as_str), path_id) {
        (Some(id), Some(path)) if id != path => {
            return Err(ApiError::bad_request(format!("the body's id {id:?} is not the path's {path:?}")))
        }
        (Some(id), _) => id.to_string(),
        (None, Some(path)) => path.to_string(),
        (None, None) => return Err(ApiError::bad_request("missing field \"id\"")),
    };
    let typ = required_string(&obj, "typ")?;
    let props = match obj.get("props") {
        None | Some(Json_::Null) => serde_json::Map::new(),
        Some(Json_::Object(m)) => m.clone(),
        Some(_) => return Err(ApiError::bad_request("field \"props\" must be an object")),
    };
    Ok(oort_engine::Connection { id, typ, props })
}

/// eKuiper's `POST /connections`.
pub(super) async fn create_connection(State(app): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let connection = connection_body(&body, None)?;
    let id = connection.id.clone();
    app.engine.put_connection(connection, true)?;
    Ok(created(format!("connection {id} is created")))
}

/// eKuiper's `PUT /connections/{id}`: the rules using it see the new
/// properties when they next start.
pub(super) async fn update_connection(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<String> {
    app.engine.put_connection(connection_body(&body, Some(&id))?, false)?;
    Ok(format!("connection {id} is updated"))
}

/// eKuiper's `DELETE /connections/{id}`: refused while a rule names it.
pub(super) async fn delete_connection(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<String> {
    app.engine.delete_connection(&id).await?;
    Ok(format!("connection {id} is deleted"))
}
