//! A plugin that misbehaves on request, for the integration tests.
//!
//! `OORT_FIXTURE_MODE` picks the behaviour:
//! - `ok` (default): a well-behaved function plugin (see below);
//! - `exit-at-start`: writes a line to stderr and exits with status 3;
//! - `hang-handshake`: never listens;
//! - `wrong-protocol`: answers health and Describe, claiming protocol 99;
//! - `wrong-name`: answers health and Describe with another plugin's name;
//! - `garbage`: listens on its socket and answers every connection with
//!   bytes that are not HTTP/2;
//! - `lying-describe`: answers health and Describe, claiming functions
//!   `whoami` and `ghost` and a source, but serves none of them;
//! - `spawn-children`: before serving (`ok`), starts a child in its own
//!   process group that ignores SIGTERM and a child that calls `setsid`,
//!   both `sleep 600`, and appends `group <pid>` and `setsid <pid>` lines to
//!   the file `OORT_FIXTURE_PIDFILE`;
//! - `hang-exec`: serves as `ok`, but every function call never returns;
//! - `memory-hog`: serves as `ok`; the first function call starts a thread
//!   that allocates and touches 16 MiB every 20 ms, up to 2 GiB;
//! - `fork-bomb`: serves as `ok`; the first function call starts a thread
//!   that starts `sleep 60` children as fast as it can, up to 10 000;
//! - `oversized`: serves as `ok`, but every function returns an 80 MiB
//!   string, beyond the supervisor's 64 MiB message limit.
//!
//! `OORT_FIXTURE_NAME` is the plugin name it reports (default `fixture`),
//! `OORT_FIXTURE_EXPORT` is `constructor` (default), `singleton` (the
//! functions; the sink stays a constructor) or `shared` (singleton functions
//! and a shared sink: one process for every rule).
//!
//! Functions in `ok` mode: `whoami()` returns the pid; `sleep(ms)` sleeps;
//! `steal(instance, key)` calls the supervisor's State service directly for
//! another instance's counter and returns what it got (or the error text);
//! `tally(key)` increments a counter through the direct State service (and,
//! when the new count equals `OORT_FIXTURE_DIE_AT` and the file
//! `OORT_FIXTURE_MARKER` does not exist yet, creates that file and exits
//! before answering the batch: a crash mid-batch, once).
//! It also exports a sink that sleeps `delayMs` per batch, and `closeDelayMs`
//! in `Close` (a plugin slow to stop).
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
    close_delay: Duration,
}

impl Sink for SlowSink {
    fn open(&mut self, _ctx: &Context, props: &Props) -> Result<(), BoxError> {
        let ms = props.get("delayMs").and_then(Value::as_i64).unwrap_or(100);
        self.delay = Duration::from_millis(ms.max(0) as u64);
        let close_ms = props.get("closeDelayMs").and_then(Value::as_i64).unwrap_or(0);
        self.close_delay = Duration::from_millis(close_ms.max(0) as u64);
        Ok(())
    }

    fn close(&mut self, ctx: &Context) -> Result<(), BoxError> {
        if !self.close_delay.is_zero() {
            ctx.logger().info(format_args!("slow sink closing in {:?}", self.close_delay));
            std::thread::sleep(self.close_delay);
        }
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

/// A function that misbehaves per the fixture's mode when called, and
/// otherwise does what `inner` does.
struct Misbehave<F> {
    mode: &'static str,
    inner: F,
}

impl<F: Function> Function for Misbehave<F> {
    fn exec(&self, ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        match self.mode {
            "hang-exec" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            "memory-hog" => start_once(hog),
            "fork-bomb" => start_once(fork_bomb),
            "oversized" => return Ok(Value::String("x".repeat(80 << 20))),
            _ => {}
        }
        self.inner.exec(ctx, args)
    }
}

/// Starts `work` on a thread, once per process.
fn start_once(work: fn()) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(work);
    });
}

/// Allocates and touches 16 MiB every 20 ms, up to 2 GiB (a bound, so a
/// supervisor that fails to stop it cannot take the machine down).
fn hog() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    while hoard.len() < 128 {
        hoard.push(vec![0x5a; 16 << 20]);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3600));
    drop(hoard);
}

/// Starts `sleep 60` children as fast as it can, up to 10 000 (a bound, and
/// each child ends by itself within a minute, so a supervisor that fails to
/// stop the bomb cannot take the machine down).
fn fork_bomb() {
    let mut children = Vec::new();
    let mut failures = 0;
    while children.len() < 10_000 && failures < 1_000 {
        match std::process::Command::new("sleep")
            .arg("60")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => children.push(child),
            Err(_) => {
                failures += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    std::thread::sleep(Duration::from_secs(3600));
}

/// Starts the two children of `spawn-children` and records their pids.
fn spawn_children() {
    use std::io::Write;
    let quiet = |c: &mut std::process::Command| {
        c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    };
    let mut stubborn = std::process::Command::new("sh");
    stubborn.args(["-c", "trap '' TERM; exec sleep 600"]);
    quiet(&mut stubborn);
    let stubborn = stubborn.spawn().expect("spawn the SIGTERM-ignoring child");
    // `setsid` calls setsid(2) and execs in place (it is not a group leader).
    let mut escapee = std::process::Command::new("setsid");
    escapee.args(["sleep", "600"]);
    quiet(&mut escapee);
    let escapee = escapee.spawn().expect("spawn the setsid child");
    if let Ok(path) = std::env::var("OORT_FIXTURE_PIDFILE") {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("pid file");
        writeln!(f, "group {}\nsetsid {}", stubborn.id(), escapee.id()).expect("write pid file");
    }
    // The children are never waited for: the supervisor must deal with them.
    std::mem::forget(stubborn);
    std::mem::forget(escapee);
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
        "wrong-protocol" => raw_plugin(name, 99, &[]),
        "wrong-name" => raw_plugin("somebody-else".into(), oort_proto::PROTOCOL_VERSION, &[]),
        "lying-describe" => raw_plugin(
            name,
            oort_proto::PROTOCOL_VERSION,
            &[(pb::Kind::Function, "ghost"), (pb::Kind::Source, "ghostSource")],
        ),
        "garbage" => garbage(),
        "spawn-children" => spawn_children(),
        _ => {}
    }
    let mode: &'static str = mode.leak();
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
    let export = std::env::var("OORT_FIXTURE_EXPORT").unwrap_or_default();
    let singleton = matches!(export.as_str(), "singleton" | "shared");
    let mut plugin = Plugin::new(&name, "0.0.1");
    plugin = if singleton {
        plugin
            .function("whoami", Export::singleton(Misbehave { mode, inner: WhoAmI }))
            .function("sleep", Export::singleton(Misbehave { mode, inner: Sleep }))
            .function("steal", Export::singleton(Steal))
            .function("tally", Export::singleton(Tally))
    } else {
        plugin
            .function("whoami", Export::constructor(move || Misbehave { mode, inner: WhoAmI }))
            .function("sleep", Export::constructor(move || Misbehave { mode, inner: Sleep }))
            .function("steal", Export::constructor(|| Steal))
            .function("tally", Export::constructor(|| Tally))
    };
    if export == "shared" {
        serve(plugin.sink(Export::shared(SlowSink::default)));
    }
    serve(plugin.sink(Export::constructor(SlowSink::default)));
}

/// Answers every connection on the plugin socket with bytes that are not
/// HTTP/2, and never anything else.
fn garbage() -> ! {
    use std::io::Write;
    let socket = std::env::var("OORT_PLUGIN_SOCKET").expect("started by the supervisor");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    for mut conn in listener.incoming().flatten() {
        let _ = conn.write_all(b"\x00\xffHTTP/0.9 418 I'm a teapot\r\n\r\n\xde\xad\xbe\xef garbage garbage");
    }
    std::process::exit(0)
}

/// A plugin written without the SDK that lies in its Describe: it exports
/// `whoami` plus `extra` symbols, and serves no extension service at all.
fn raw_plugin(name: String, protocol_version: u32, extra: &[(pb::Kind, &str)]) -> ! {
    struct Liar(String, u32, Vec<pb::Symbol>);
    #[tonic::async_trait]
    impl pb::plugin_server::Plugin for Liar {
        async fn describe(
            &self,
            _: tonic::Request<pb::DescribeRequest>,
        ) -> Result<tonic::Response<pb::DescribeResponse>, tonic::Status> {
            Ok(tonic::Response::new(pb::DescribeResponse {
                name: self.0.clone(),
                version: "0.0.1".into(),
                symbols: self.2.clone(),
                protocol_version: self.1,
                sdk_name: "raw".into(),
                sdk_version: "0".into(),
                encodings: vec![],
                framed_exec: false,
                state_version: 0,
            }))
        }
        async fn migrate_state(
            &self,
            _: tonic::Request<pb::MigrateStateRequest>,
        ) -> Result<tonic::Response<pb::MigrateStateResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("a raw plugin keeps no state"))
        }
        async fn shutdown(
            &self,
            _: tonic::Request<pb::ShutdownRequest>,
        ) -> Result<tonic::Response<pb::ShutdownResponse>, tonic::Status> {
            std::process::exit(0)
        }
    }
    let symbols: Vec<pb::Symbol> = [(pb::Kind::Function, "whoami")]
        .iter()
        .chain(extra)
        .map(|(kind, name)| pb::Symbol {
            kind: *kind as i32,
            name: name.to_string(),
            mode: pb::ExportMode::Constructor as i32,
            is_aggregate: false,
        })
        .collect();
    let socket = std::env::var("OORT_PLUGIN_SOCKET").expect("started by the supervisor");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let _ = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(pb::plugin_server::PluginServer::new(Liar(name, protocol_version, symbols)))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    });
    std::process::exit(0)
}
