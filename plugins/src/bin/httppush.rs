//! The `httppush` source, after eKuiper's: it listens for HTTP requests and
//! emits each request's JSON body (an object is one record, an array of
//! objects one record each). The stream's `DATASOURCE` is the path
//! (`/api/data`); every instance on the same `server` address shares one
//! listener in the process, as eKuiper's streams share its one HTTP server.
//!
//! Properties: `server` (the address to listen on; default `127.0.0.1:10081`:
//! loopback unless configured otherwise), `method` (`POST`, the default, or
//! `PUT`). Answers: 200 once the body is taken; 400 for a body that is not
//! JSON objects; 404 for a path no stream listens on; 405 for another method;
//! 503 while the rule is behind (its queue of 4096 requests is full), so the
//! sender can retry. An unknown property, an address that is not one or that
//! cannot be bound refuses the rule when it is created; two streams on one
//! address and path are refused too.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use oort_plugin::{serve, BoxError, Context, Export, Plugin, Props, Record, Source, Value};

const KNOWN: [&str; 2] = ["server", "method"];

/// One path's listener: the method it takes and where its bodies go.
struct Route {
    method: Method,
    bodies: SyncSender<Bytes>,
}

/// One listening address, shared by every instance on it.
struct Server {
    routes: Mutex<HashMap<String, Route>>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn servers() -> &'static Mutex<HashMap<SocketAddr, Arc<Server>>> {
    static SERVERS: OnceLock<Mutex<HashMap<SocketAddr, Arc<Server>>>> = OnceLock::new();
    SERVERS.get_or_init(Mutex::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    /// The server on `addr`, listening; started when no instance uses it yet.
    fn on(addr: SocketAddr) -> Result<Arc<Server>, BoxError> {
        let mut all = lock(servers());
        if let Some(s) = all.get(&addr) {
            return Ok(s.clone());
        }
        // Bound here, so that an address in use fails the open.
        let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        let server = Arc::new(Server { routes: Mutex::default(), stop: Mutex::default(), thread: Mutex::default() });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = server.clone();
        let thread = std::thread::Builder::new().name(format!("httppush {addr}")).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return eprintln!("httppush: cannot start a runtime: {e}"),
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return eprintln!("httppush: {e}"),
                };
                let app = axum::Router::new()
                    .fallback(move |method: Method, uri: Uri, body: Bytes| take(served.clone(), method, uri, body));
                let stopped = async move {
                    let _ = stop_rx.await;
                };
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
                    eprintln!("httppush on {addr}: {e}");
                }
            });
        })?;
        *lock(&server.stop) = Some(stop_tx);
        *lock(&server.thread) = Some(thread);
        all.insert(addr, server.clone());
        Ok(server)
    }
}

/// Hands a request's body to the instance listening on its path.
async fn take(server: Arc<Server>, method: Method, uri: Uri, body: Bytes) -> (StatusCode, String) {
    let routes = lock(&server.routes);
    let Some(route) = routes.get(uri.path()) else {
        return (StatusCode::NOT_FOUND, format!("no stream listens on {}", uri.path()));
    };
    if route.method != method {
        return (StatusCode::METHOD_NOT_ALLOWED, format!("{} takes {}", uri.path(), route.method));
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(serde_json::Value::Array(items)) if items.iter().all(serde_json::Value::is_object) => {}
        Ok(_) => return (StatusCode::BAD_REQUEST, "the body must be a JSON object or an array of objects".into()),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")),
    }
    match route.bodies.try_send(body) {
        Ok(()) => (StatusCode::OK, "{}".into()),
        Err(TrySendError::Full(_)) => (StatusCode::SERVICE_UNAVAILABLE, "the rule is behind; try again".into()),
        Err(TrySendError::Disconnected(_)) => (StatusCode::NOT_FOUND, "the stream closed".into()),
    }
}

#[derive(Default)]
struct HttpPush {
    bodies: Option<Receiver<Bytes>>,
    at: Option<(SocketAddr, String)>,
}

impl Source for HttpPush {
    fn open(&mut self, _ctx: &Context, datasource: &str, props: &Props) -> Result<(), BoxError> {
        oort_plugins::refuse_unknown("httppush", props, &KNOWN)?;
        let server = match props.get("server") {
            None => "127.0.0.1:10081".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(format!("property server must be a string, got {}", other.type_name()).into()),
        };
        let addr: SocketAddr = server
            .parse()
            .map_err(|e| format!("property server {server:?} is not an address like 127.0.0.1:10081: {e}"))?;
        let method = match props.get("method") {
            None => Method::POST,
            Some(Value::String(m)) if m.eq_ignore_ascii_case("post") => Method::POST,
            Some(Value::String(m)) if m.eq_ignore_ascii_case("put") => Method::PUT,
            Some(other) => return Err(format!("property method must be POST or PUT, got {}", other.to_json()).into()),
        };
        if !datasource.starts_with('/') {
            return Err(format!("DATASOURCE {datasource:?} must be a path starting with /").into());
        }
        let format = props.get("format").and_then(|f| f.as_str().map(str::to_lowercase));
        if format.is_some_and(|f| f != "json") {
            return Err("the httppush source reads FORMAT json".into());
        }
        let server = Server::on(addr)?;
        let (tx, rx) = mpsc::sync_channel(4096);
        {
            let mut routes = lock(&server.routes);
            if routes.contains_key(datasource) {
                return Err(format!("another stream already listens on {addr}{datasource}").into());
            }
            routes.insert(datasource.to_string(), Route { method, bodies: tx });
        }
        self.bodies = Some(rx);
        self.at = Some((addr, datasource.to_string()));
        Ok(())
    }

    fn read(&mut self, ctx: &Context, out: &mut Vec<Record>, max: usize) -> Result<(), BoxError> {
        let Some(bodies) = &self.bodies else { return Err("the source is not open".into()) };
        let first = match bodies.recv_timeout(Duration::from_millis(100)) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => return Ok(()),
            Err(RecvTimeoutError::Disconnected) => return Err("the HTTP server stopped".into()),
        };
        let ts = oort_plugins::now_ms();
        let mut next = Some(first);
        while let Some(body) = next.take() {
            // Checked as JSON objects when the request was taken.
            oort_plugins::json_records(ctx, "a request body", &body, ts, out);
            if out.len() < max {
                next = bodies.try_recv().ok();
            }
        }
        Ok(())
    }

    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        self.bodies = None;
        let Some((addr, path)) = self.at.take() else { return Ok(()) };
        let mut all = lock(servers());
        let Some(server) = all.get(&addr).cloned() else { return Ok(()) };
        let empty = {
            let mut routes = lock(&server.routes);
            routes.remove(&path);
            routes.is_empty()
        };
        // The last stream on an address stops its server and frees the port.
        if empty {
            all.remove(&addr);
            drop(all);
            if let Some(stop) = lock(&server.stop).take() {
                let _ = stop.send(());
            }
            if let Some(thread) = lock(&server.thread).take() {
                let _ = thread.join();
            }
        }
        Ok(())
    }
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    serve(Plugin::new("httppush", env!("CARGO_PKG_VERSION")).source(Export::shared(HttpPush::default)));
}
