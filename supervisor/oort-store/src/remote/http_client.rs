//! The HTTP client under the S3 checkpoint store: `object_store` builds and
//! signs each request (its `aws-base` and `ring` features), and this sends
//! it with `ureq`, the workspace's one HTTP client, so the build carries no
//! second HTTP and TLS stack (object_store's own client is reqwest with
//! aws-lc, a C library built with cmake).
//!
//! ureq is blocking: each request runs on tokio's blocking pool. Checkpoint
//! objects are small and a node sends a few per second, so whole bodies in
//! memory and a thread per request in flight are the simple, right size.

use std::io::ErrorKind as IoKind;
use std::time::Duration;

use http_body_util::BodyExt as _;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
};
use object_store::ClientOptions;

/// Bounds one request: object_store retries what fails or times out.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response body read (a checkpoint, or a listing page).
const MAX_RESPONSE_BYTES: u64 = 1 << 30;

/// Gives object_store a [`UreqService`].
#[derive(Debug, Default)]
pub(super) struct UreqConnector;

impl HttpConnector for UreqConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let config = ureq::Agent::config_builder()
            // object_store reads the status itself (it retries 5xx, maps 404).
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build();
        Ok(HttpClient::new(UreqService { agent: ureq::Agent::new_with_config(config) }))
    }
}

#[derive(Debug)]
struct UreqService {
    agent: ureq::Agent,
}

#[async_trait::async_trait]
impl HttpService for UreqService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes().to_vec();
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || send(&agent, parts, body))
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?
    }
}

fn send(agent: &ureq::Agent, parts: http::request::Parts, body: Vec<u8>) -> Result<HttpResponse, HttpError> {
    // GET, HEAD and DELETE carry no body: ureq refuses one on HEAD.
    let response = if body.is_empty() && !matches!(parts.method, http::Method::PUT | http::Method::POST) {
        agent.run(http::Request::from_parts(parts, ()))
    } else {
        agent.run(http::Request::from_parts(parts, body))
    }
    .map_err(error)?;
    let (parts, body) = response.into_parts();
    let bytes = body.into_with_config().limit(MAX_RESPONSE_BYTES).read_to_vec().map_err(error)?;
    Ok(HttpResponse::from_parts(parts, HttpResponseBody::from(bytes)))
}

/// Sorts ureq's errors into the kinds object_store decides retries by.
fn error(e: ureq::Error) -> HttpError {
    let kind = match &e {
        ureq::Error::Timeout(_) => HttpErrorKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => HttpErrorKind::Connect,
        ureq::Error::Io(io) => match io.kind() {
            IoKind::ConnectionRefused | IoKind::NotConnected | IoKind::AddrNotAvailable => HttpErrorKind::Connect,
            IoKind::TimedOut => HttpErrorKind::Timeout,
            IoKind::ConnectionReset | IoKind::ConnectionAborted | IoKind::BrokenPipe | IoKind::UnexpectedEof => {
                HttpErrorKind::Interrupted
            }
            _ => HttpErrorKind::Request,
        },
        ureq::Error::Protocol(_) => HttpErrorKind::Request,
        _ => HttpErrorKind::Unknown,
    };
    HttpError::new(kind, e)
}
