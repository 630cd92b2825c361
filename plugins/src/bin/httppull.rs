//! The `httppull` source, after eKuiper's: every `interval` ms it sends a
//! request to `url` + the stream's `DATASOURCE` (a path, or empty) and emits
//! the JSON response: an object is one record, an array of objects one record
//! each.
//!
//! Properties, with eKuiper's names: `url` (required unless `DATASOURCE` is a
//! whole `http(s)://` URL), `method` (default GET), `interval` (ms, default
//! 10000), `timeout` (ms, default 5000), `headers` (an object of strings),
//! `body` (sent as is), `bodyType` (`json`, the default, or `text`: the
//! content type of `body`), `incremental` (true: a response equal to the
//! previous one is not emitted again), `responseType` (`code`, the default:
//! the HTTP status says whether the request succeeded; `body`: the response
//! body's `code` field does, 200 meaning success). A failed request, a
//! timeout or a response that is not JSON is an exception of the source (in
//! `rule status`); the next request goes at the next interval. An unknown
//! property, a bad URL or method refuses the rule when it is created.
use std::time::{Duration, Instant};

use oort_plugin::{serve, BoxError, Context, Export, Plugin, Props, Record, Source, Value};
use oort_plugins::{body_type_prop, check_http_url, headers_prop, method_prop, millis_prop, string_prop};

const KNOWN: [&str; 9] =
    ["url", "method", "interval", "timeout", "headers", "body", "bodyType", "incremental", "responseType"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum ResponseType {
    Code,
    Body,
}

struct HttpPull {
    agent: ureq::Agent,
    url: String,
    method: String,
    interval: Duration,
    headers: Vec<(String, String)>,
    body: Option<(Vec<u8>, &'static str)>,
    incremental: bool,
    response_type: ResponseType,
    last: Option<Vec<u8>>,
    next: Instant,
}

impl Default for HttpPull {
    fn default() -> Self {
        HttpPull {
            agent: ureq::Agent::new_with_defaults(),
            url: String::new(),
            method: "GET".into(),
            interval: Duration::from_secs(10),
            headers: Vec::new(),
            body: None,
            incremental: false,
            response_type: ResponseType::Code,
            last: None,
            next: Instant::now(),
        }
    }
}

impl Source for HttpPull {
    fn open(&mut self, _ctx: &Context, datasource: &str, props: &Props) -> Result<(), BoxError> {
        oort_plugins::refuse_unknown("httppull", props, &KNOWN)?;
        let base = string_prop(props, "url")?.unwrap_or_default();
        self.url = if datasource.starts_with("http://") || datasource.starts_with("https://") {
            datasource.to_string()
        } else if base.is_empty() {
            return Err("property url is required (or a DATASOURCE that is a whole http:// URL)".into());
        } else {
            format!("{}{}", base.trim_end_matches('/'), if datasource.is_empty() { "" } else { datasource })
        };
        check_http_url(&self.url)?;
        self.method = method_prop(props, "GET", &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])?;
        self.interval = millis_prop(props, "interval", 10_000)?;
        let timeout = millis_prop(props, "timeout", 5_000)?;
        self.headers = headers_prop(props)?;
        let content_type = body_type_prop(props)?;
        self.body = string_prop(props, "body")?.map(|b| (b.into_bytes(), content_type));
        self.incremental = match props.get("incremental") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(format!("property incremental must be true or false, got {}", other.to_json()).into())
            }
        };
        self.response_type = match string_prop(props, "responseType")?.as_deref() {
            None | Some("code") => ResponseType::Code,
            Some("body") => ResponseType::Body,
            Some(other) => return Err(format!("property responseType must be code or body, got {other:?}").into()),
        };
        let config = ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build();
        self.agent = ureq::Agent::new_with_config(config);
        self.next = Instant::now();
        Ok(())
    }

    fn read(&mut self, ctx: &Context, out: &mut Vec<Record>, _max: usize) -> Result<(), BoxError> {
        let now = Instant::now();
        if now < self.next {
            // Back within 100 ms even for long intervals, so a close is noticed.
            std::thread::sleep((self.next - now).min(Duration::from_millis(100)));
            return Ok(());
        }
        self.next = now + self.interval;
        match self.pull() {
            Ok(Some(body)) => oort_plugins::json_records(ctx, "the response", &body, oort_plugins::now_ms(), out),
            Ok(None) => {}
            Err(e) => ctx.report_exception(format!("{} {}: {e}", self.method, self.url)),
        }
        Ok(())
    }
}

impl HttpPull {
    /// One request: the body to emit, `None` when it is the same as the last
    /// one and the source is incremental.
    fn pull(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut req = ureq::http::Request::builder().method(self.method.as_str()).uri(&self.url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let body = match &self.body {
            Some((bytes, content_type)) => {
                req = req.header("content-type", *content_type);
                bytes.clone()
            }
            None => Vec::new(),
        };
        let req = req.body(body).map_err(|e| e.to_string())?;
        let mut resp = self.agent.run(req).map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp.body_mut().with_config().limit(64 << 20).read_to_vec().map_err(|e| e.to_string())?;
        if self.response_type == ResponseType::Code && !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
        }
        if self.response_type == ResponseType::Body {
            let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|j| j.get("code").and_then(serde_json::Value::as_i64));
            if code != Some(200) {
                return Err(format!("the response body's code is {code:?}, not 200"));
            }
        }
        if self.incremental && self.last.as_ref() == Some(&bytes) {
            return Ok(None);
        }
        self.last = Some(bytes.clone());
        Ok(Some(bytes))
    }
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    serve(Plugin::new("httppull", env!("CARGO_PKG_VERSION")).source(Export::shared(HttpPull::default)));
}
