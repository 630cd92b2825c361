//! The `rest` sink, after eKuiper's: each item the supervisor encodes (per
//! the action's `format`, `dataTemplate` and `sendSingle`) is the body of one
//! request to `url`.
//!
//! Properties, with eKuiper's names: `url` (required), `method` (default
//! POST), `headers` (an object of strings), `bodyType` (`json`, the default,
//! or `text`: the content type), `timeout` (ms per request, default 3000),
//! `debugResp` (true: log every response). A 2xx answer delivers the item. A
//! 4xx answer refuses that item alone, with the status and the start of the
//! answer, as a sink exception (sending it again would get the same answer).
//! A 5xx answer or a timeout is retried, 100 ms apart doubling, while the
//! batch's 4 s budget lasts (a batch must be answered within the daemon's
//! call timeout, 5 s by default); then the batch fails and the supervisor
//! writes it again after its own back-off, so nothing is dropped while the
//! server is down (items of the batch delivered before the failure are sent
//! again: at least once).
use std::time::Duration;

use oort_plugin::{serve, BoxError, Context, Export, ItemErrors, Plugin, Props, Record, Sink, Value};
use oort_plugins::{body_type_prop, check_http_url, headers_prop, method_prop, millis_prop, string_prop};

const KNOWN: [&str; 6] = ["url", "method", "headers", "bodyType", "timeout", "debugResp"];
/// How long one batch may take, retries included: less than the daemon's
/// default call timeout (5 s), which bounds a `Write`.
const BATCH_BUDGET: Duration = Duration::from_secs(4);

struct Rest {
    agent: ureq::Agent,
    url: String,
    method: String,
    headers: Vec<(String, String)>,
    content_type: &'static str,
    debug: bool,
}

impl Default for Rest {
    fn default() -> Self {
        Rest {
            agent: ureq::Agent::new_with_defaults(),
            url: String::new(),
            method: "POST".into(),
            headers: Vec::new(),
            content_type: "application/json",
            debug: false,
        }
    }
}

/// Why one request did not deliver its item.
enum Failed {
    /// 4xx: the server refuses this item; sending it again would not help.
    Refused(String),
    /// 5xx, a timeout, no connection: worth another try.
    Transient(String),
}

impl Sink for Rest {
    fn open(&mut self, _ctx: &Context, props: &Props) -> Result<(), BoxError> {
        oort_plugins::refuse_unknown("rest", props, &KNOWN)?;
        self.url = string_prop(props, "url")?.ok_or("property url is required")?;
        check_http_url(&self.url)?;
        self.method = method_prop(props, "POST", &["GET", "POST", "PUT", "PATCH", "DELETE"])?;
        self.headers = headers_prop(props)?;
        self.content_type = body_type_prop(props)?;
        let timeout = millis_prop(props, "timeout", 3_000)?;
        self.debug = matches!(props.get("debugResp"), Some(Value::Bool(true)));
        let config = ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build();
        self.agent = ureq::Agent::new_with_config(config);
        Ok(())
    }

    fn collect(&mut self, ctx: &Context, records: &[Record]) -> Result<(), BoxError> {
        let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.fields_to_json().to_string().into_bytes()).collect();
        let errors = self.collect_payloads(ctx, &payloads)?;
        match errors.into_iter().flatten().next() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    fn wants_payloads(&self) -> bool {
        true
    }

    fn collect_payloads(&mut self, ctx: &Context, payloads: &[Vec<u8>]) -> Result<ItemErrors, BoxError> {
        let deadline = std::time::Instant::now() + BATCH_BUDGET;
        let mut errors = vec![None; payloads.len()];
        for (item, payload) in payloads.iter().enumerate() {
            let mut delay = Duration::from_millis(100);
            let mut attempt = 1;
            loop {
                match self.send(ctx, payload) {
                    Ok(()) => break,
                    Err(Failed::Refused(why)) => {
                        errors[item] = Some(why);
                        break;
                    }
                    Err(Failed::Transient(why)) if std::time::Instant::now() + delay < deadline => {
                        ctx.logger().warn(format_args!("{why}; trying again in {} ms", delay.as_millis()));
                        std::thread::sleep(delay);
                        delay *= 2;
                        attempt += 1;
                    }
                    Err(Failed::Transient(why)) => {
                        return Err(format!("{why} ({attempt} attempts); the batch will be written again").into())
                    }
                }
            }
        }
        Ok(if errors.iter().all(Option::is_none) { Vec::new() } else { errors })
    }
}

impl Rest {
    fn send(&self, ctx: &Context, payload: &[u8]) -> Result<(), Failed> {
        let mut req = ureq::http::Request::builder().method(self.method.as_str()).uri(&self.url);
        req = req.header("content-type", self.content_type);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req.body(payload.to_vec()).map_err(|e| Failed::Refused(e.to_string()))?;
        let target = format!("{} {}", self.method, self.url);
        let mut resp = self.agent.run(req).map_err(|e| Failed::Transient(format!("{target}: {e}")))?;
        let status = resp.status();
        let body = resp.body_mut().with_config().limit(1 << 20).read_to_vec().unwrap_or_default();
        let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        if self.debug {
            ctx.logger().info(format_args!("{target}: HTTP {status}: {text}"));
        }
        match status.as_u16() {
            200..=299 => Ok(()),
            400..=499 => Err(Failed::Refused(format!("{target}: HTTP {status}: {text}"))),
            _ => Err(Failed::Transient(format!("{target}: HTTP {status}: {text}"))),
        }
    }
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    serve(Plugin::new("rest", env!("CARGO_PKG_VERSION")).sink(Export::shared(Rest::default)));
}
