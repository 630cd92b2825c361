//! The REST admin API, in eKuiper's shapes where they overlap.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::catalog::PluginKind;
use crate::host::Host;

/// Options of the REST API.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// When set, every request but `/ping` must carry `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
}

/// An error as the API reports it: a status code and a JSON `{"error": ...}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

#[derive(Clone)]
struct AppState {
    host: Arc<Host>,
}

/// The REST routes.
pub fn router(host: Arc<Host>, config: ApiConfig) -> Router {
    let token = config.bearer_token.map(Arc::<str>::from);
    Router::new()
        .route("/plugins/{kind}", get(list_plugins))
        .route("/plugins/{kind}/{name}", get(describe_plugin))
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move { authorize(token.as_deref(), req, next).await }
        }))
        .route("/ping", get(|| async { StatusCode::OK }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(AppState { host })
}

async fn authorize(token: Option<&str>, req: Request, next: Next) -> Response {
    if let Some(expected) = token {
        let given =
            req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(expected) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
        }
    }
    next.run(req).await
}

fn kind(path: &str) -> Result<PluginKind, ApiError> {
    PluginKind::from_dir_name(path).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("unknown plugin kind {path:?}: use sources, sinks or functions"))
    })
}

async fn list_plugins(State(app): State<AppState>, Path(k): Path<String>) -> Result<Json<Vec<String>>, ApiError> {
    let kind = kind(&k)?;
    // Operators install plugins by dropping files into the folder: a listing
    // always reflects the folder as it is now.
    app.host.rescan().await;
    Ok(Json(app.host.list(kind)))
}

async fn describe_plugin(
    State(app): State<AppState>,
    Path((k, name)): Path<(String, String)>,
) -> Result<Json<crate::host::PluginInfo>, ApiError> {
    let kind = kind(&k)?;
    if app.host.describe(kind, &name).await.is_none() {
        app.host.rescan().await;
    }
    app.host
        .describe(kind, &name)
        .await
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no {} plugin named {name:?}", kind.as_str())))
}
