//! The REST API in cluster mode: one API for the whole cluster, from any
//! node. Stream and rule definitions go to etcd (checked here first, as a
//! single node would check them), and every node's reconcile loop applies
//! them; a request about a running rule (its status, a restart, its
//! topology) is forwarded to the node that owns it; `GET /rules` lists every
//! rule with its node.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json_};

use super::report::rule_state_word;
use super::rest::{created, ApiError, ApiResult, AppState};
use oort_cluster::{ClusterError, ClusterView, Expect, Membership, RuleRecord};

/// Marks a request one node forwarded to another: it is answered where it
/// arrives, never forwarded again.
pub(super) const FORWARDED: &str = "x-oort-forwarded";

fn unavailable(e: ClusterError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the cluster cannot be reached: {e}"))
}

pub(super) fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED)
}

async fn view(c: &Membership) -> ApiResult<ClusterView> {
    c.view().await.map_err(unavailable)
}

// ----- definitions -----

pub(super) async fn create_stream(app: &AppState, c: &Membership, sql: &str) -> ApiResult<Response> {
    // Created here first: the full check, and this node has it at once.
    let def = app.engine.create_stream(sql).await?;
    if !c.put_stream(&def.name, sql, Expect::Absent).await.map_err(unavailable)? {
        return Err(ApiError::bad_request(format!("stream {} already exists in the cluster", def.name)));
    }
    Ok(created(format!("Stream {} is created.", def.name)))
}

pub(super) async fn drop_stream(app: &AppState, c: &Membership, name: &str, force: bool) -> ApiResult<String> {
    let view = view(c).await?;
    if !view.streams.contains_key(name) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no stream named {name:?}")));
    }
    if !force {
        let users: Vec<&String> =
            view.rules.iter().filter(|(_, r)| rule_reads(&r.rule, name)).map(|(id, _)| id).collect();
        if !users.is_empty() {
            return Err(ApiError::bad_request(format!(
                "stream {name} is used by rules {users:?}: delete them first, or drop it with ?force=true"
            )));
        }
    }
    c.delete_stream(name).await.map_err(unavailable)?;
    let _ = app.engine.drop_stream(name, force).await;
    Ok(format!("Stream {name} is dropped."))
}

/// Whether a rule's SQL names `stream` (a word match: good enough to
/// refuse dropping a stream a rule reads).
fn rule_reads(rule: &Json_, stream: &str) -> bool {
    let sql = rule.get("sql").and_then(Json_::as_str).unwrap_or_default().to_lowercase();
    let stream = stream.to_lowercase();
    sql.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == stream)
}

fn parse_body(body: &[u8]) -> ApiResult<Json_> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// Checks a rule as a single node would, against the cluster's streams.
async fn check_rule(app: &AppState, c: &Membership, body: &[u8]) -> ApiResult<String> {
    crate::cluster::create_missing_streams(&app.engine, &view(c).await?).await;
    Ok(app.engine.check_rule(body).await?)
}

pub(super) async fn create_rule(app: &AppState, c: &Membership, body: &[u8]) -> ApiResult<Response> {
    let id = check_rule(app, c, body).await?;
    let rule = parse_body(body)?;
    let running = rule.get("triggered").and_then(Json_::as_bool).unwrap_or(true);
    if !c.put_rule(&id, &RuleRecord { rule, running }, Expect::Absent).await.map_err(unavailable)? {
        return Err(ApiError::bad_request(format!("rule {id} already exists")));
    }
    Ok(created(format!("Rule {id} was created successfully.")))
}

pub(super) async fn update_rule(app: &AppState, c: &Membership, id: &str, body: &[u8]) -> ApiResult<String> {
    let checked = check_rule(app, c, body).await?;
    if checked != id {
        return Err(ApiError::bad_request(format!("the rule's id {checked:?} does not match the URL's {id:?}")));
    }
    let running = view(c).await?.rules.get(id).map(|r| r.running).ok_or_else(|| no_rule(id))?;
    let record = RuleRecord { rule: parse_body(body)?, running };
    if !c.replace_rule(id, &record).await.map_err(unavailable)? {
        return Err(no_rule(id));
    }
    Ok(format!("Rule {id} was updated successfully."))
}

pub(super) async fn delete_rule(c: &Membership, id: &str) -> ApiResult<String> {
    if !c.delete_rule(id).await.map_err(unavailable)? {
        return Err(no_rule(id));
    }
    Ok(format!("Rule {id} is dropped."))
}

/// Why a rule's `running` could not be set in the cluster.
pub(super) enum SetRunningError {
    NoRule,
    Unavailable(ClusterError),
}

/// `start` and `stop`: the rule's `running` in etcd; its owner follows.
/// (Shared by REST and the gRPC admin service, which map the error each.)
pub(super) async fn set_running(c: &Membership, id: &str, running: bool) -> Result<(), SetRunningError> {
    let view = c.view().await.map_err(SetRunningError::Unavailable)?;
    let mut record = view.rules.get(id).cloned().ok_or(SetRunningError::NoRule)?;
    if record.running != running {
        record.running = running;
        if !c.put_rule(id, &record, Expect::Present).await.map_err(SetRunningError::Unavailable)? {
            return Err(SetRunningError::NoRule);
        }
    }
    Ok(())
}

impl SetRunningError {
    pub(super) fn into_api(self, id: &str) -> ApiError {
        match self {
            SetRunningError::NoRule => no_rule(id),
            SetRunningError::Unavailable(e) => unavailable(e),
        }
    }
}

pub(super) async fn describe_rule(c: &Membership, id: &str) -> ApiResult<Json_> {
    view(c).await?.rules.get(id).map(|r| r.rule.clone()).ok_or_else(|| no_rule(id))
}

fn no_rule(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no rule with id {id:?}"))
}

// ----- running rules -----

/// Where a request about rule `id` is answered: `None` here, else the
/// owner's API address.
pub(super) async fn owner_elsewhere(c: &Membership, id: &str) -> ApiResult<Option<String>> {
    let view = view(c).await?;
    if !view.rules.contains_key(id) {
        return Err(no_rule(id));
    }
    let owner = view.owners.get(id).ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("rule {id} is being placed on a node; try again"))
    })?;
    if owner.node == c.node_id() {
        return Ok(None);
    }
    let node = view.nodes.iter().find(|n| n.id == owner.node).ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("rule {id}'s node {} is leaving; try again", owner.node))
    })?;
    Ok(Some(node.api_addr.clone()))
}

/// Sends a request on to another node and answers with its answer.
pub(super) async fn forward(
    app: &AppState,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Bytes>,
) -> ApiResult<Response> {
    let (status, content_type, bytes) = call_node(app, addr, method, path, body, FORWARD_TIMEOUT).await?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, bytes).into_response();
    if let Some(ct) = content_type.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(axum::http::header::CONTENT_TYPE, ct);
    }
    Ok(response)
}

/// Sends the same request to every other live node (a plugin install,
/// which each node applies to its own plugins folder). An answer
/// `fine` accepts besides 2xx counts as done; any other, or a node that does
/// not answer, makes the whole call fail with each node's answer, after
/// this node and the others applied it (repeating the call is safe: a node
/// that has it already answers as `fine` expects).
pub(super) async fn on_other_nodes(
    app: &AppState,
    c: &Membership,
    method: &str,
    path: &str,
    body: Option<Bytes>,
    fine: impl Fn(u16, &str) -> bool,
) -> ApiResult<()> {
    let view = view(c).await?;
    let others = view.nodes.iter().filter(|n| n.id != c.node_id());
    let answers = futures_util::future::join_all(others.map(|n| {
        let body = body.clone();
        async move { (n.id.clone(), call_node(app, &n.api_addr, method, path, body, INSTALL_TIMEOUT).await) }
    }))
    .await;
    let mut failed = Vec::new();
    for (node, answer) in answers {
        match answer {
            Ok((status, _, bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                if !(200..300).contains(&status) && !fine(status, &text) {
                    failed.push(format!("node {node} answered {status}: {}", text.trim()));
                }
            }
            Err(e) => failed.push(format!("node {node}: {}", e.message())),
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("done on node {} but not on every node: {}", c.node_id(), failed.join("; ")),
    ))
}

/// How long another node may take to install a plugin (it downloads it).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a forwarded request may take (a restart waits for the rule's
/// plugins to stop).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `GET /rules` waits for each node's list: a node that is paused
/// or cut off must not hold the whole listing up.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

async fn call_node(
    app: &AppState,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Bytes>,
    timeout: Duration,
) -> ApiResult<(u16, Option<String>, Vec<u8>)> {
    let url = format!("http://{addr}{path}");
    let mut req = ureq::http::Request::builder().method(method).uri(&url).header(FORWARDED, "1");
    if let Some(t) = &app.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let bad_gateway = |e: String| ApiError::new(StatusCode::BAD_GATEWAY, format!("node at {addr}: {e}"));
    let req = req.body(body.map(|b| b.to_vec()).unwrap_or_default()).map_err(|e| bad_gateway(e.to_string()))?;
    // ureq blocks: one request, off the async workers.
    tokio::task::spawn_blocking(move || {
        let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build();
        let mut resp = ureq::Agent::new_with_config(config).run(req).map_err(|e| e.to_string())?;
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = resp.body_mut().with_config().limit(64 << 20).read_to_vec().map_err(|e| e.to_string())?;
        Ok::<_, String>((resp.status().as_u16(), content_type, bytes))
    })
    .await
    .map_err(|e| bad_gateway(e.to_string()))?
    .map_err(bad_gateway)
}

/// `GET /rules`: every rule of the cluster with its state and node. Each
/// node is asked for the rules it runs (for 2 s at most); a rule no node
/// owns yet is `waiting for a node`, one whose node did not answer is
/// `unknown: …`.
pub(super) async fn list_rules(app: &AppState, c: &Membership) -> ApiResult<Json_> {
    let view = view(c).await?;
    let me = c.node_id();
    let mut states: std::collections::BTreeMap<String, String> = app
        .engine
        .list_rules()
        .await
        .iter()
        .map(|(id, state)| (id.clone(), rule_state_word(state).to_string()))
        .collect();
    let others = view.nodes.iter().filter(|n| n.id != me);
    let answers = futures_util::future::join_all(others.map(|n| async move {
        (n.id.clone(), call_node(app, &n.api_addr, "GET", "/rules", None, LIST_TIMEOUT).await)
    }))
    .await;
    let mut remote: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> = Default::default();
    for (node, answer) in answers {
        let Ok((200, _, bytes)) = answer else { continue };
        let Ok(Json_::Array(rules)) = serde_json::from_slice::<Json_>(&bytes) else { continue };
        let map = rules
            .iter()
            .filter_map(|r| Some((r.get("id")?.as_str()?.to_string(), r.get("status")?.as_str()?.to_string())))
            .collect::<std::collections::BTreeMap<String, String>>();
        remote.insert(node, map);
    }
    let rules: Vec<Json_> = view
        .rules
        .keys()
        .map(|id| {
            let node = view.owners.get(id).map(|o| o.node.clone());
            let status = match &node {
                Some(n) if n == me => states.remove(id),
                Some(n) => remote.get(n).and_then(|m| m.get(id).cloned()),
                None => None,
            }
            .unwrap_or_else(|| match &node {
                Some(_) => "unknown: its node did not answer".to_string(),
                None => "waiting for a node".to_string(),
            });
            json!({"id": id, "status": status, "node": node})
        })
        .collect();
    Ok(Json_::Array(rules))
}
