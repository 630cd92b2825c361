//! A plugin that misbehaves on request, for the integration tests.
//!
//! `OORT_FIXTURE_MODE` picks the behaviour:
//! - `ok` (default): a well-behaved function plugin (see below);
//! - `exit-at-start`: writes a line to stderr and exits with status 3;
//! - `hang-handshake`: never listens;
//! - `wrong-protocol`: answers health and Describe, claiming protocol 99;
//! - `wrong-name`: answers health and Describe with another plugin's name.
//!
//! `OORT_FIXTURE_NAME` is the plugin name it reports (default `fixture`),
//! `OORT_FIXTURE_EXPORT` is `constructor` (default) or `singleton`.
//!
//! Functions in `ok` mode: `whoami()` returns the pid; `sleep(ms)` sleeps;
//! `steal(instance, key)` calls the supervisor's State service directly for
//! another instance's counter and returns what it got (or the error text);
//! `tally(key)` increments a counter through the direct State service (and,
//! when the new count equals `OORT_FIXTURE_DIE_AT` and the file
//! `OORT_FIXTURE_MARKER` does not exist yet, creates that file and exits
//! before answering the batch: a crash mid-batch, once).
//! It also exports a sink that sleeps `delayMs` per batch.
use std::time::Duration;

use oort_plugin::{serve, BoxError, Context, Export, Function, Plugin, Props, Record, Sink, Value};
use oort_proto::plugin::v1 as pb;
use oort_proto::state::v1 as spb;

struct WhoAmI;
impl Function for WhoAmI {
    fn exec(&self, _ctx: &Context, _args: &[Value]) -> Result<Value, BoxError> {
        Ok(Value::Int(std::process::id() as i64))
    }
}

struct Sleep;
impl Function for Sleep {
    fn exec(&self, _ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        let ms = args.first().and_then(Value::as_i64).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms as u64));
        Ok(Value::Int(ms))
    }
}

/// A sink that takes `delayMs` (default 100) per batch: the slow consumer of
/// the backpressure tests.
#[derive(Default)]
struct SlowSink {
    delay: Duration,
}

impl Sink for SlowSink {
    fn open(&mut self, _ctx: &Context, props: &Props) -> Result<(), BoxError> {
        let ms = props.get("delayMs").and_then(Value::as_i64).unwrap_or(100);
        self.delay = Duration::from_millis(ms.max(0) as u64);
        Ok(())
    }

    fn collect(&mut self, _ctx: &Context, _records: &[Record]) -> Result<(), BoxError> {
        std::thread::sleep(self.delay);
        Ok(())
    }
}

/// Connects to the State service the way a raw-gRPC plugin would.
async fn state_client() -> Result<(spb::state_client::StateClient<tonic::transport::Channel>, String), BoxError> {
    let socket = std::env::var("OORT_STATE_SOCKET")?;
    let token = std::env::var("OORT_STATE_TOKEN")?;
    let channel = tonic::transport::Endpoint::from_static("http://state")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(socket).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await?;
    Ok((spb::state_client::StateClient::new(channel), token))
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("oort-token", token.parse().expect("tokens are hex"));
    req
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(f)
}

struct Steal;
impl Function for Steal {
    fn exec(&self, _ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        let instance = args.first().and_then(Value::as_str).ok_or("steal(instance, key)")?.to_string();
        let key = args.get(1).and_then(Value::as_str).ok_or("steal(instance, key)")?.to_string();
        block_on(async move {
            let (mut client, token) = state_client().await?;
            let req = spb::GetCounterRequest { instance_id: instance, key };
            Ok(match client.get_counter(with_token(req, &token)).await {
                Ok(r) => Value::Int(r.into_inner().count),
                Err(status) => Value::String(format!("{:?}: {}", status.code(), status.message())),
            })
        })
    }
}

struct Tally;
impl Function for Tally {
    fn exec(&self, ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        let key = args.first().and_then(Value::as_str).ok_or("tally(key)")?.to_string();
        let instance = ctx.instance_id().to_string();
        block_on(async move {
            let (mut client, token) = state_client().await?;
            let req = spb::IncrCounterRequest { instance_id: instance, key, amount: 1 };
            let count = client.incr_counter(with_token(req, &token)).await?.into_inner().count;
            die_once_at(count);
            Ok(Value::Int(count))
        })
    }
}

/// Exits (status 9, mid-batch) the first time `count` reaches `OORT_FIXTURE_DIE_AT`.
fn die_once_at(count: i64) {
    let die_at = std::env::var("OORT_FIXTURE_DIE_AT").ok().and_then(|v| v.parse::<i64>().ok());
    let Ok(marker) = std::env::var("OORT_FIXTURE_MARKER") else { return };
    if die_at == Some(count) && std::fs::OpenOptions::new().write(true).create_new(true).open(&marker).is_ok() {
        eprintln!("fixture: exiting at count {count} as asked");
        std::process::exit(9);
    }
}

fn main() {
    let mode = std::env::var("OORT_FIXTURE_MODE").unwrap_or_else(|_| "ok".into());
    let name = std::env::var("OORT_FIXTURE_NAME").unwrap_or_else(|_| "fixture".into());
    match mode.as_str() {
        "exit-at-start" => {
            eprintln!("fixture: exiting at start as asked");
            std::process::exit(3);
        }
        "hang-handshake" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "wrong-protocol" => raw_plugin(name, 99),
        "wrong-name" => raw_plugin("somebody-else".into(), oort_proto::PROTOCOL_VERSION),
        _ => {}
    }
    println!("fixture-hello-stdout");
    {
        use std::io::Write;
        // Lines a careless plugin might write: invalid UTF-8, and a multi-byte
        // character across the supervisor's level-detection window.
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(b"\xff\xfe not utf-8\n");
        let _ = writeln!(err, "{}\u{00e9}\u{00e9}\u{00e9} accents", "x".repeat(47));
    }
    eprintln!("fixture-hello-stderr");
    let singleton = std::env::var("OORT_FIXTURE_EXPORT").as_deref() == Ok("singleton");
    let mut plugin = Plugin::new(&name, "0.0.1");
    plugin = if singleton {
        plugin
            .function("whoami", Export::singleton(WhoAmI))
            .function("sleep", Export::singleton(Sleep))
            .function("steal", Export::singleton(Steal))
            .function("tally", Export::singleton(Tally))
    } else {
        plugin
            .function("whoami", Export::constructor(|| WhoAmI))
            .function("sleep", Export::constructor(|| Sleep))
            .function("steal", Export::constructor(|| Steal))
            .function("tally", Export::constructor(|| Tally))
    };
    serve(plugin.sink(Export::constructor(SlowSink::default)));
}

/// A plugin written without the SDK that lies in its Describe.
fn raw_plugin(name: String, protocol_version: u32) -> ! {
    struct Liar(String, u32);
    #[tonic::async_trait]
    impl pb::plugin_server::Plugin for Liar {
        async fn describe(
            &self,
            _: tonic::Request<pb::DescribeRequest>,
        ) -> Result<tonic::Response<pb::DescribeResponse>, tonic::Status> {
            Ok(tonic::Response::new(pb::DescribeResponse {
                name: self.0.clone(),
                version: "0.0.1".into(),
                symbols: vec![pb::Symbol {
                    kind: pb::Kind::Function as i32,
                    name: "whoami".into(),
                    mode: pb::ExportMode::Constructor as i32,
                    is_aggregate: false,
                }],
                protocol_version: self.1,
                sdk_name: "raw".into(),
                sdk_version: "0".into(),
            }))
        }
        async fn shutdown(
            &self,
            _: tonic::Request<pb::ShutdownRequest>,
        ) -> Result<tonic::Response<pb::ShutdownResponse>, tonic::Status> {
            std::process::exit(0)
        }
    }
    let socket = std::env::var("OORT_PLUGIN_SOCKET").expect("started by the supervisor");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let _ = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(pb::plugin_server::PluginServer::new(Liar(name, protocol_version)))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    });
    std::process::exit(0)
}
