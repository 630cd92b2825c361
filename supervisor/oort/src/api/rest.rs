//! The REST admin API, in eKuiper's shapes where they overlap: `/streams`,
//! `/rules`, `/plugins`, and Prometheus' `/metrics`. Errors are JSON
//! `{"error": "<message>"}` with a 4xx status for anything the request got
//! wrong and 5xx for local failures, including the ones axum itself answers
//! (a body over the size limit, a malformed path).
//!
//! `--api-token` guards every path but `/ping`, `/metrics` included: a
//! Prometheus scrape config sends it with `authorization: {credentials: …}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value as Json_};

use super::cluster;
use super::report::{rule_state_word, status_json};
use oort_engine::{Engine, EngineError, ErrorKind};
use oort_host::catalog::PluginKind;
use oort_host::install::{self, InstallError, InstallRequest};
use oort_host::Host;

/// Options of the REST API.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// When set, every request but `/ping` (`/metrics` too) must carry
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
}

/// An error as the API reports it: a status code and a JSON `{"error": ...}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let status = match e.kind() {
            // eKuiper answers a duplicate stream or rule with 400, and its
            // clients test for it.
            ErrorKind::Invalid | ErrorKind::Exists => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<InstallError> for ApiError {
    fn from(e: InstallError) -> ApiError {
        let status = if e.is_client_error() { StatusCode::BAD_REQUEST } else { StatusCode::INTERNAL_SERVER_ERROR };
        ApiError::new(status, e.to_string())
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) host: Arc<Host>,
    pub(super) engine: Arc<Engine>,
    pub(super) plugins_dir: Arc<std::path::Path>,
    /// This node's cluster membership, in cluster mode.
    pub(super) cluster: Option<Arc<oort_cluster::Membership>>,
    /// When the daemon started serving, for `GET /`'s uptime.
    pub(super) started: std::time::Instant,
    /// The API token, which requests forwarded to another node carry.
    pub(super) token: Option<Arc<str>>,
}

impl AppState {
    /// The cluster to send a request to instead of answering it here: in
    /// cluster mode, unless another node forwarded it.
    pub(super) fn cluster_for(&self, headers: &HeaderMap) -> Option<&oort_cluster::Membership> {
        self.cluster.as_deref().filter(|_| !super::cluster::is_forwarded(headers))
    }
}

/// The REST routes.
pub fn router(
    host: Arc<Host>,
    engine: Arc<Engine>,
    cluster: Option<Arc<oort_cluster::Membership>>,
    plugins_dir: std::path::PathBuf,
    config: ApiConfig,
) -> Router {
    let token = config.bearer_token.map(Arc::<str>::from);
    let api_token = token.clone();
    Router::new()
        .route("/streams", post(create_stream).get(list_streams))
        .route("/streams/{name}", get(describe_stream).delete(drop_stream))
        .route("/rules", post(create_rule).get(list_rules))
        .route("/rules/{id}", get(describe_rule).put(update_rule).delete(delete_rule))
        .route("/rules/{id}/status", get(rule_status))
        .route("/rules/{id}/{action}", post(rule_action))
        .route("/plugins/{kind}", get(list_plugins).post(install_plugin))
        .route("/plugins/{kind}/{name}", get(describe_plugin).delete(remove_plugin))
        .route("/plugins/{kind}/{name}/upgrade", post(upgrade_plugin))
        .route("/plugins/{kind}/{name}/rollback", post(rollback_plugin))
        .route("/metrics", get(metrics))
        .route("/", get(super::ekuiper::about))
        .route("/rules/{id}/topo", get(super::ekuiper::rule_topology))
        .route("/data/export", get(super::ekuiper::export))
        .route("/data/import", post(super::ekuiper::import))
        .route("/connections", get(super::ekuiper::list_connections).post(super::ekuiper::create_connection))
        .route(
            "/connections/{id}",
            get(super::ekuiper::describe_connection)
                .put(super::ekuiper::update_connection)
                .delete(super::ekuiper::delete_connection),
        )
        .route("/metadata/sources/yaml/{type}", get(super::ekuiper::source_conf))
        .route(
            "/metadata/sources/{type}/confKeys/{key}",
            put(super::ekuiper::put_conf_key).delete(super::ekuiper::delete_conf_key),
        )
        .route("/metadata/{kind}", get(super::ekuiper::list_metadata))
        .route("/metadata/{kind}/{name}", get(super::ekuiper::describe_metadata))
        .route("/plugins/udfs", get(super::ekuiper::list_udfs))
        .route("/plugins/portables", get(super::ekuiper::list_portables).post(super::ekuiper::install_portable))
        .route(
            "/plugins/portables/{name}",
            get(super::ekuiper::describe_portable).delete(super::ekuiper::remove_portable),
        )
        .route("/plugins/udfs/{name}", get(super::ekuiper::describe_udf))
        .route("/cluster", get(cluster_status))
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move { authorize(token.as_deref(), req, next).await }
        }))
        .route("/ping", get(|| async { StatusCode::OK }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(AppState {
            host,
            engine,
            plugins_dir: plugins_dir.into(),
            cluster,
            started: std::time::Instant::now(),
            token: api_token,
        })
}

async fn authorize(token: Option<&str>, req: Request, next: Next) -> Response {
    if let Some(expected) = token {
        let given = super::bearer(req.headers().get("authorization").and_then(|v| v.to_str().ok()));
        if !super::token_matches(given, expected) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
        }
    }
    next.run(req).await
}

/// Turns the plain-text errors axum's extractors answer with (413 for a body
/// over the limit, 400 for a bad path or body, …) into the API's JSON shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    // These bodies are one short sentence; the cap only guards the rewrite.
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message =
        if text.is_empty() { status.canonical_reason().unwrap_or("request failed").to_lowercase() } else { text };
    ApiError::new(status, message).into_response()
}

/// Parses a JSON request body into an object, with a 400 naming the problem.
pub(super) fn json_object(body: &[u8]) -> ApiResult<serde_json::Map<String, Json_>> {
    match serde_json::from_slice::<Json_>(body) {
        Ok(Json_::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

pub(super) fn required_string(obj: &serde_json::Map<String, Json_>, key: &str) -> ApiResult<String> {
    match obj.get(key) {
        Some(Json_::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(format!("field {key:?} must be a non-empty string"))),
        None => Err(ApiError::bad_request(format!("missing field {key:?}"))),
    }
}

pub(super) fn created(message: String) -> Response {
    (StatusCode::CREATED, message).into_response()
}

// ----- streams -----

async fn create_stream(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let sql = required_string(&json_object(&body)?, "sql")?;
    if let Some(c) = app.cluster_for(&headers) {
        return cluster::create_stream(&app, c, &sql).await;
    }
    let def = app.engine.create_stream(&sql).await?;
    Ok(created(format!("Stream {} is created.", def.name)))
}

async fn list_streams(State(app): State<AppState>) -> Json<Vec<String>> {
    Json(app.engine.list_streams().await)
}

async fn describe_stream(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Json_>> {
    let def = app.engine.get_stream(&name).await?;
    let fields: Vec<Json_> = def
        .fields
        .iter()
        .map(|f| json!({"Name": f.name, "FieldType": serde_json::to_value(f.field_type).unwrap_or_default()}))
        .collect();
    Ok(Json(json!({"Name": def.name, "StreamFields": fields, "Options": def.options, "Statement": def.sql})))
}

/// `?force=true` drops a stream even while rules use it, as eKuiper does.
#[derive(Debug, Default, serde::Deserialize)]
struct DropStreamQuery {
    #[serde(default)]
    force: bool,
}

async fn drop_stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<DropStreamQuery>,
) -> ApiResult<String> {
    if let Some(c) = app.cluster_for(&headers) {
        return cluster::drop_stream(&app, c, &name, q.force).await;
    }
    app.engine.drop_stream(&name, q.force).await?;
    Ok(format!("Stream {name} is dropped."))
}

// ----- rules -----

async fn create_rule(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    if let Some(c) = app.cluster_for(&headers) {
        return cluster::create_rule(&app, c, &body).await;
    }
    let id = app.engine.create_rule(&body).await?;
    Ok(created(format!("Rule {id} was created successfully.")))
}

/// Every rule with its state; in cluster mode, every rule of the cluster
/// with the node that runs it.
async fn list_rules(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Json_>> {
    if let Some(c) = app.cluster_for(&headers) {
        return Ok(Json(cluster::list_rules(&app, c).await?));
    }
    let rules = app.engine.list_rules().await;
    Ok(Json(Json_::Array(
        rules.iter().map(|(id, state)| json!({"id": id, "status": rule_state_word(state)})).collect(),
    )))
}

async fn describe_rule(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    if let Some(c) = app.cluster_for(&headers) {
        return Ok(Json(cluster::describe_rule(c, &id).await?).into_response());
    }
    Ok(Json(app.engine.get_rule(&id).await?).into_response())
}

async fn update_rule(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<String> {
    if let Some(c) = app.cluster_for(&headers) {
        return cluster::update_rule(&app, c, &id, &body).await;
    }
    app.engine.update_rule(&id, &body).await?;
    Ok(format!("Rule {id} was updated successfully."))
}

async fn delete_rule(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<String> {
    if let Some(c) = app.cluster_for(&headers) {
        return cluster::delete_rule(c, &id).await;
    }
    app.engine.delete_rule(&id).await?;
    Ok(format!("Rule {id} is dropped."))
}

/// In cluster mode, the answer of the node that owns rule `id` when that is
/// another node.
pub(super) async fn from_owner(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
    method: &str,
    path: &str,
) -> ApiResult<Option<Response>> {
    let Some(c) = app.cluster_for(headers) else { return Ok(None) };
    match cluster::owner_elsewhere(c, id).await? {
        Some(addr) => Ok(Some(cluster::forward(app, &addr, method, path, None).await?)),
        None => Ok(None),
    }
}

async fn rule_status(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    if let Some(answer) = from_owner(&app, &headers, &id, "GET", &format!("/rules/{id}/status")).await? {
        return Ok(answer);
    }
    Ok(Json(status_json(&app.engine.rule_status(&id).await?)).into_response())
}

async fn rule_action(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<Response> {
    if let (Some(c), "start" | "stop") = (app.cluster_for(&headers), action.as_str()) {
        cluster::set_running(c, &id, action == "start").await.map_err(|e| e.into_api(&id))?;
        let done = if action == "start" { "started" } else { "stopped" };
        return Ok(format!("Rule {id} was {done}.").into_response());
    }
    if matches!(action.as_str(), "restart" | "reset-state") {
        if let Some(answer) = from_owner(&app, &headers, &id, "POST", &format!("/rules/{id}/{action}")).await? {
            return Ok(answer);
        }
    }
    let done = match action.as_str() {
        "start" => {
            app.engine.start_rule(&id).await?;
            "started"
        }
        "stop" => {
            app.engine.stop_rule(&id).await?;
            "stopped"
        }
        "restart" => {
            app.engine.restart_rule(&id).await?;
            "restarted"
        }
        "reset-state" => {
            app.engine.reset_state(&id).await?;
            "reset to an empty state"
        }
        other => {
            let msg = format!("unknown rule action {other:?}: use start, stop, restart or reset-state");
            return Err(ApiError::new(StatusCode::NOT_FOUND, msg));
        }
    };
    Ok(format!("Rule {id} was {done}.").into_response())
}

// ----- metrics -----

async fn metrics(State(app): State<AppState>) -> ApiResult<Response> {
    let text = super::metrics::render(&app.engine)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response())
}

// ----- plugins -----

pub(super) fn kind(path: &str) -> ApiResult<PluginKind> {
    PluginKind::from_dir_name(path).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("unknown plugin kind {path:?}: use sources, sinks or functions"))
    })
}

async fn list_plugins(State(app): State<AppState>, Path(k): Path<String>) -> ApiResult<Json<Vec<String>>> {
    let kind = kind(&k)?;
    // Operators install plugins by dropping files into the folder: a listing
    // always reflects the folder as it is now.
    app.host.rescan().await;
    Ok(Json(app.host.list(kind)))
}

async fn describe_plugin(
    State(app): State<AppState>,
    Path((k, name)): Path<(String, String)>,
) -> ApiResult<Json<oort_host::PluginInfo>> {
    let kind = kind(&k)?;
    match app.host.describe_rescanning(kind, &name).await {
        Some(info) => Ok(Json(info)),
        None => {
            // A file that is there but unusable (not executable, say) is the
            // likeliest reason; say so rather than a bare "not found".
            let why = app.host.catalog_problem(kind, &name).map(|p| format!(": {p}")).unwrap_or_default();
            Err(ApiError::new(StatusCode::NOT_FOUND, format!("no {} plugin named {name:?}{why}", kind.as_str())))
        }
    }
}

/// Installs a plugin here; in cluster mode, then on every other live node
/// too (each fetches `file` itself), so that any node can run its rules.
async fn install_plugin(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(k): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let kind = kind(&k)?;
    let obj = json_object(&body)?;
    let sha256 = match obj.get("sha256") {
        None | Some(Json_::Null) => None,
        Some(Json_::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("field \"sha256\" must be a string")),
    };
    let req =
        InstallRequest { kind, name: required_string(&obj, "name")?, file: required_string(&obj, "file")?, sha256 };
    let dir = app.plugins_dir.clone();
    let installed = tokio::task::spawn_blocking(move || install::install(&dir, &req))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("install task failed: {e}")))??;
    app.host.rescan().await;
    if let Some(c) = app.cluster_for(&headers) {
        // Another node that has it already (a shared plugins folder) is fine.
        let present = |status: u16, answer: &str| status == 400 && answer.contains("already installed");
        cluster::on_other_nodes(&app, c, "POST", &format!("/plugins/{k}"), Some(body), present).await?;
    }
    Ok(created(format!("Plugin {} is created.", installed.name)))
}

/// Refuses to remove plugin `name` while `users` (rule ids) use it.
pub(super) fn not_in_use(name: &str, users: Vec<String>) -> ApiResult<()> {
    if users.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("plugin {name} is used by rules {}; delete them first", users.join(", ")),
        ))
    }
}

/// `DELETE /plugins/{kind}/{name}?version=<v>`: one version only.
#[derive(Debug, Default, serde::Deserialize)]
struct RemoveQuery {
    version: Option<String>,
}

async fn remove_plugin(
    State(app): State<AppState>,
    Path((k, name)): Path<(String, String)>,
    Query(query): Query<RemoveQuery>,
) -> ApiResult<String> {
    let kind = kind(&k)?;
    if let Some(version) = query.version {
        return remove_version(&app, kind, &name, &version).await;
    }
    not_in_use(&name, app.engine.users_of(kind, &name).await)?;
    let dir = app.plugins_dir.clone();
    let n = name.clone();
    tokio::task::spawn_blocking(move || install::remove(&dir, kind, &n))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("remove task failed: {e}")))??;
    app.host.rescan().await;
    Ok(format!("Plugin {name} is deleted."))
}

/// `GET /cluster`: this node and every live node of its cluster, with the
/// seconds left on each one's lease.
async fn cluster_status(State(app): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let Some(cluster) = &app.cluster else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this node does not run in a cluster: start it with `oort serve --cluster <etcd endpoints> --node-id <id>`",
        ));
    };
    let unavailable = |e: oort_cluster::ClusterError| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let nodes = cluster.nodes().await.map_err(unavailable)?;
    let view = cluster.view().await.map_err(unavailable)?;
    let nodes: Vec<serde_json::Value> = nodes
        .into_iter()
        .map(|n| {
            let rules = view.owners.values().filter(|o| o.node == n.record.id).count();
            serde_json::json!({
                "rules": rules,
                "id": n.record.id,
                "apiAddr": n.record.api_addr,
                "capacity": n.record.capacity,
                "labels": n.record.labels,
                "registeredMs": n.record.registered_ms,
                "lease": n.lease,
                "ttlLeftS": n.ttl_left,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "node": cluster.node_id(),
        "leaseTtlS": cluster.lease_ttl_secs(),
        "nodes": nodes,
        "rules": view.rules.len(),
        "unassigned": view.rules.keys().filter(|id| !view.owners.contains_key(*id)).count(),
    })))
}

/// `POST /plugins/{kind}/{name}/upgrade`: moves the running rules that use
/// the plugin onto the version they would start with now.
async fn upgrade_plugin(State(app): State<AppState>, Path((k, name)): Path<(String, String)>) -> ApiResult<String> {
    let kind = kind(&k)?;
    app.host.rescan().await;
    if !app.host.has_plugin(kind, &name) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no {} plugin named {name:?}", kind.as_str())));
    }
    let outcome = app.engine.upgrade(kind, &name).await;
    let moved = match outcome.moved.is_empty() {
        true => String::new(),
        false => format!(" Rules {} moved.", outcome.moved.join(", ")),
    };
    if let Some((version, why)) = outcome.rolled_back {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Version {version} of plugin {name} was rolled back automatically: {why}.{moved}"),
        ));
    }
    if let Some((rule, why)) = outcome.refused {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("The upgrade of plugin {name} stopped at rule {rule}, which keeps its version: {why}.{moved}"),
        ));
    }
    Ok(match outcome.moved.is_empty() {
        true => format!("No rule of plugin {name} runs another version than its own."),
        false => format!("Rules {} moved to their version of plugin {name}.", outcome.moved.join(", ")),
    })
}

/// `POST /plugins/{kind}/{name}/rollback`: holds the plugin's current
/// version back and moves its running rules to the version before it.
async fn rollback_plugin(State(app): State<AppState>, Path((k, name)): Path<(String, String)>) -> ApiResult<String> {
    let kind = kind(&k)?;
    let (held, moved) = app.engine.rollback(kind, &name).await?;
    let now = app.host.current_version(kind, &name).unwrap_or_default();
    Ok(match moved.is_empty() {
        true => format!("Version {held} of plugin {name} is held back; new rules get {now}."),
        false => format!("Version {held} of plugin {name} is held back; rules {} moved to {now}.", moved.join(", ")),
    })
}

/// Removes one installed version of a plugin, unless a rule runs it or its
/// pin selects it (409): removing the only version is removing the plugin.
async fn remove_version(app: &AppState, kind: PluginKind, name: &str, version: &str) -> ApiResult<String> {
    app.host.rescan().await;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no {} plugin named {name:?}", kind.as_str()));
    let info = app.host.describe(kind, name).await.ok_or_else(not_found)?;
    let wanted = oort_host::catalog::Version::parse(version);
    let Some(installed) = info.versions.iter().find(|v| v.version == wanted.as_str()) else {
        let have: Vec<&str> = info.versions.iter().map(|v| v.version.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{} plugin {name} has no version {:?} (installed: {})",
                kind.as_str(),
                wanted.as_str(),
                have.join(", ")
            ),
        ));
    };
    if info.versions.len() == 1 {
        not_in_use(name, app.engine.users_of(kind, name).await)?;
    }
    let label = format!("{name}@{}", installed.version);
    let mut pinned = Vec::new();
    for (rule, req) in app.engine.pins_on(kind, name).await {
        if app.host.resolve_pin(kind, name, &req).ok().as_deref() == Some(installed.version.as_str()) {
            pinned.push(format!("{rule} (options.plugins.{name} = \"{req}\")"));
        }
    }
    if !pinned.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{label} is the version pinned by rules {}; change or remove their pins first", pinned.join(", ")),
        ));
    }
    if !installed.rules.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{label} still runs for rules {}; restart them to move them to the newest version first",
                installed.rules.join(", ")
            ),
        ));
    }
    let (dir, n, file) = (app.plugins_dir.clone(), name.to_string(), installed.file.clone());
    tokio::task::spawn_blocking(move || install::remove_version(&dir, kind, &n, &file))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("remove task failed: {e}")))??;
    if installed.held {
        app.engine.forget_hold(kind, name, &installed.version)?;
    }
    app.host.rescan().await;
    Ok(format!("Plugin {label} is deleted."))
}
