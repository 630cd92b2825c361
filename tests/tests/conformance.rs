//! The cross-language conformance suite: one scenario list, run against the
//! `conformance` reference plugin of every SDK (Rust, Go, Python) and against
//! a plugin written on the raw generated Python stubs, each as real processes
//! over real sockets under a real supervisor host.
//!
//! Every (scenario, language) cell runs in its own plugins folder and host.
//! The test prints a scenario × language table (✓ passed, ✗ failed, – not
//! applicable) and then fails listing every failed cell. A language whose
//! executable is missing fails every one of its cells: CI builds them all
//! (`cargo build --release --workspace --bins`, `bash scripts/build-go.sh`,
//! `bash scripts/build-python.sh`).
//!
//! To run part of the matrix while debugging, set `OORT_CONFORMANCE_SCENARIOS`
//! (scenario ids, e.g. `source,sink`) and/or `OORT_CONFORMANCE_LANGUAGES`
//! (e.g. `go,python`), comma-separated.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_core::ArgInfo;
use oort_host::catalog::PluginKind;
use oort_host::process::{RestartStrategy, Timeouts};
use oort_host::{DataEncoding, FunctionInstance, Host, RowOutcome, COLUMNS_FROM_ROWS};
use oort_proto::plugin::v1 as pb;
use oort_proto::{Record, Value};
use oort_tests::{
    alive, bin_dir, fast_timeouts, kill9, list_services, sockets_under, wait_until, PluginsDir, TestHost,
};

/// The functions every conformance plugin exports.
const FUNCTIONS: [&str; 6] = ["cf_agg", "cf_count", "cf_echo", "cf_fail", "cf_pid", "cf_state"];

/// The metadata installed for a language that ships none: the plugin exports
/// several functions, so the supervisor must learn their names from it.
const DEFAULT_METADATA: &str = r#"{
  "about": {"description": {"en_US": "Reference plugin of the cross-language conformance suite"}},
  "functions": [
    {"name": "cf_agg"}, {"name": "cf_count"}, {"name": "cf_echo"}, {"name": "cf_fail"}, {"name": "cf_pid"},
    {"name": "cf_state"}
  ]
}"#;

/// How long one cell may take before it counts as hung.
const CELL_TIMEOUT: Duration = Duration::from_secs(60);

/// Bounded waits inside scenarios.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Languages
// ---------------------------------------------------------------------------

/// One implementation of the conformance plugin.
struct Language {
    name: &'static str,
    /// How the host sends function batches: `Rows`, or `Auto` (Arrow columns
    /// to a plugin that lists them).
    encoding: DataEncoding,
    exe: PathBuf,
    /// The metadata shipped next to the executable, if the build writes one.
    metadata: Option<PathBuf>,
    build: &'static str,
    /// Whether it exports the `conformance` source and sink.
    source_and_sink: bool,
    /// Scenario ids that apply.
    applies: fn(&str) -> bool,
}

impl Language {
    fn metadata_text(&self) -> String {
        match &self.metadata {
            Some(p) => std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())),
            None => DEFAULT_METADATA.to_string(),
        }
    }
}

/// `<dir>/<name>.json` when it exists.
fn shipped_metadata(exe: &Path) -> Option<PathBuf> {
    let name = exe.file_name()?.to_str()?;
    Some(exe.with_file_name(format!("{name}.json"))).filter(|p| p.is_file())
}

fn languages() -> Vec<Arc<Language>> {
    let dir = bin_dir();
    let full = |_: &str| true;
    // The raw-stub plugin is the function side only: no source, no sink, and
    // no OORT_CONFORMANCE_SINGLETON switch.
    let raw = |id: &str| !matches!(id, "modes" | "source" | "sink" | "columns_io");
    // The columnar encoding concerns function batches: every scenario that
    // calls functions runs again with the host sending Arrow columns.
    let functions = |id: &str| {
        matches!(
            id,
            "handshake"
                | "modes"
                | "validate"
                | "batches"
                | "state"
                | "restore"
                | "aggregate"
                | "columns"
                | "columns_io"
        )
    };
    let raw_functions =
        |id: &str| matches!(id, "handshake" | "validate" | "batches" | "state" | "restore" | "aggregate" | "columns");
    let lang = |name, exe: PathBuf, build, source_and_sink, encoding, applies: fn(&str) -> bool| {
        Arc::new(Language { name, encoding, metadata: shipped_metadata(&exe), exe, build, source_and_sink, applies })
    };
    let (rows, arrow) = (DataEncoding::Rows, DataEncoding::Auto);
    let cargo = "cargo build --release --workspace --bins";
    vec![
        // Rust's build writes no metadata: DEFAULT_METADATA stands in.
        lang("rust", dir.join("conformance"), cargo, true, rows, full),
        lang("rust/arrow", dir.join("conformance"), cargo, true, arrow, functions),
        lang("go", dir.join("go/conformance"), "bash scripts/build-go.sh", true, rows, full),
        lang("go/arrow", dir.join("go/conformance"), "bash scripts/build-go.sh", true, arrow, functions),
        lang("python", dir.join("python/conformance"), "bash scripts/build-python.sh", true, rows, full),
        lang("py/arrow", dir.join("python/conformance"), "bash scripts/build-python.sh", true, arrow, functions),
        lang("raw-python", dir.join("python/raw_conformance"), "bash scripts/build-python.sh", false, rows, raw),
        // Written from docs/protocol.md with pyarrow, no SDK: the columnar
        // section alone suffices.
        lang(
            "raw/arrow",
            dir.join("python/raw_conformance"),
            "bash scripts/build-python.sh",
            false,
            arrow,
            raw_functions,
        ),
    ]
}

// ---------------------------------------------------------------------------
// One cell: its language, and the hosts it started (shut down at its end)
// ---------------------------------------------------------------------------

struct Cell {
    lang: Arc<Language>,
    envs: Mutex<Vec<Arc<Env>>>,
    notes: Mutex<Vec<String>>,
}

/// A plugins folder with the language's plugin installed, and a host on it.
struct Env {
    /// Kept so that the folder lives as long as the host.
    _plugins: PluginsDir,
    t: TestHost,
}

impl Env {
    fn host(&self) -> &Host {
        &self.t.host
    }
}

impl Cell {
    /// A fresh plugins folder holding the plugin under each `kinds` folder as
    /// `conformance` (+ `conformance.json`), run with `env` set, and a host.
    fn env(&self, kinds: &[&str], env: &[(&str, &str)], timeouts: Timeouts) -> Arc<Env> {
        let plugins = PluginsDir::new();
        let metadata = self.lang.metadata_text();
        for kind in kinds {
            let dest = plugins.path().join(kind).join("conformance");
            if env.is_empty() {
                std::fs::copy(&self.lang.exe, &dest).expect("copy plugin");
            } else {
                // As PluginsDir::add_fixture: a wrapper that sets the environment.
                let mut script = String::from("#!/bin/sh\n");
                for (k, v) in env {
                    script.push_str(&format!("export {k}='{v}'\n"));
                }
                script.push_str(&format!("exec '{}' \"$@\"\n", self.lang.exe.display()));
                std::fs::write(&dest, script).expect("write wrapper");
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            }
            std::fs::write(plugins.path().join(kind).join("conformance.json"), &metadata).expect("metadata");
        }
        let t = TestHost::with_encoding(plugins.path(), timeouts, self.lang.encoding);
        let e = Arc::new(Env { _plugins: plugins, t });
        self.envs.lock().unwrap().push(e.clone());
        e
    }

    fn note(&self, text: String) {
        self.notes.lock().unwrap().push(text);
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn s(text: &str) -> Value {
    Value::from(text)
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn props(entries: &[(&str, Value)]) -> HashMap<String, Value> {
    entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

async fn open_fn(e: &Env, rule: &str, function: &str) -> FunctionInstance {
    open_at(e, rule, "op0", function).await
}

async fn open_at(e: &Env, rule: &str, operator: &str, function: &str) -> FunctionInstance {
    e.host()
        .open_function(rule, operator, function, RestartStrategy::default())
        .await
        .unwrap_or_else(|err| panic!("open {function} for {rule}: {err}"))
}

/// The conformance sink of rule r1, writing its lines to `path`.
async fn open_lines_sink(e: &Env, path: &Path) -> oort_host::SinkInstance {
    e.host()
        .open_sink("r1", "sink_0", "conformance", props(&[("path", s(path.to_str().unwrap()))]), Default::default())
        .await
        .expect("open sink")
}

/// One row through `f`.
async fn call(f: &FunctionInstance, args: Vec<Value>) -> RowOutcome {
    let out = f.exec(std::slice::from_ref(&args)).await.unwrap_or_else(|e| panic!("{}{args:?}: {e}", f.symbol()));
    assert_eq!(out.len(), 1, "one row, one result: {out:?}");
    out.into_iter().next().unwrap()
}

/// The only plugin socket under the host's runtime folder.
fn plugin_socket(host: &Host) -> PathBuf {
    let socks = oort_tests::plugin_sockets(host.runtime_dir());
    assert_eq!(socks.len(), 1, "expected one plugin socket, found {socks:?}");
    socks.into_iter().next().unwrap()
}

async fn channel(socket: &Path) -> tonic::transport::Channel {
    oort_host::process::connect_unix(socket).await.unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()))
}

async fn describe_direct(socket: &Path) -> pb::DescribeResponse {
    let mut client = pb::plugin_client::PluginClient::new(channel(socket).await);
    tokio::time::timeout(WAIT, client.describe(pb::DescribeRequest {}))
        .await
        .expect("Describe timed out")
        .expect("Describe")
        .into_inner()
}

async fn health(socket: &Path, service: &str) -> i32 {
    use tonic_health::pb::health_client::HealthClient;
    let mut client = HealthClient::new(channel(socket).await);
    let req = tonic_health::pb::HealthCheckRequest { service: service.to_string() };
    tokio::time::timeout(WAIT, client.check(req))
        .await
        .expect("Health/Check timed out")
        .expect("Health/Check")
        .into_inner()
        .status
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;

fn symbols(d: &pb::DescribeResponse, kind: pb::Kind) -> Vec<&pb::Symbol> {
    d.symbols.iter().filter(|s| s.kind == kind as i32).collect()
}

fn names(d: &pb::DescribeResponse, kind: pb::Kind) -> Vec<String> {
    let mut v: Vec<String> = symbols(d, kind).iter().map(|s| s.name.clone()).collect();
    v.sort();
    v
}

/// Whether every object in one line of JSON has its keys in byte order.
fn keys_sorted(line: &str) -> bool {
    // One entry per open object or array: (is object, last key seen).
    let mut stack: Vec<(bool, Option<String>)> = Vec::new();
    let mut expect_key = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' => {
                stack.push((true, None));
                expect_key = true;
            }
            '[' => {
                stack.push((false, None));
                expect_key = false;
            }
            '}' | ']' => {
                stack.pop();
                expect_key = false;
            }
            ',' => expect_key = matches!(stack.last(), Some((true, _))),
            '"' => {
                let mut text = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            text.push(c);
                            text.extend(chars.next());
                        }
                        '"' => break,
                        _ => text.push(c),
                    }
                }
                if expect_key {
                    let Some((_, last)) = stack.last_mut() else { return false };
                    if last.as_ref().is_some_and(|l| *l >= text) {
                        return false;
                    }
                    *last = Some(text);
                    expect_key = false;
                }
            }
            _ => {}
        }
    }
    true
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

type Run = fn(Arc<Cell>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

struct Scenario {
    id: &'static str,
    title: &'static str,
    run: Run,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario { id: "handshake", title: "1 handshake + Describe", run: |c| Box::pin(handshake(c)) },
        Scenario { id: "refusal", title: "2 protocol refusal", run: |c| Box::pin(protocol_refusal(c)) },
        Scenario { id: "describe", title: "3 describe (supervisor)", run: |c| Box::pin(describe(c)) },
        Scenario { id: "modes", title: "4 constructor/singleton", run: |c| Box::pin(modes(c)) },
        Scenario { id: "validate", title: "5 validate", run: |c| Box::pin(validate(c)) },
        Scenario { id: "batches", title: "6 batches, 2 in flight", run: |c| Box::pin(batches(c)) },
        Scenario { id: "state", title: "7 state calls + scope", run: |c| Box::pin(state(c)) },
        Scenario { id: "restore", title: "8 restore after kill -9", run: |c| Box::pin(restore(c)) },
        Scenario { id: "source", title: "9 source + rewind", run: |c| Box::pin(source(c)) },
        Scenario { id: "sink", title: "10 sink 2-phase commit", run: |c| Box::pin(sink(c)) },
        Scenario { id: "shutdown", title: "11 graceful shutdown", run: |c| Box::pin(shutdown(c)) },
        Scenario { id: "reflection", title: "12 health + reflection", run: |c| Box::pin(reflection(c)) },
        Scenario { id: "aggregate", title: "13 aggregate function", run: |c| Box::pin(aggregate(c)) },
        Scenario { id: "columns", title: "14 columnar batches", run: |c| Box::pin(columns(c)) },
        Scenario { id: "columns_io", title: "15 columnar source + sink", run: |c| Box::pin(columns_io(c)) },
    ]
}

/// Scenario 1: the plugin starts, reaches SERVING, and describes itself.
async fn handshake(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let _f = open_fn(&e, "r1", "cf_echo").await;
    let socket = plugin_socket(e.host());
    assert_eq!(health(&socket, "").await, SERVING, "Health/Check{{service: \"\"}}");
    let d = describe_direct(&socket).await;
    assert_eq!(d.name, "conformance");
    assert_eq!(d.protocol_version, 1);
    assert_eq!(names(&d, pb::Kind::Function), FUNCTIONS, "function symbols");
    if c.lang.source_and_sink {
        assert_eq!(names(&d, pb::Kind::Source), ["conformance"], "source symbol");
        assert_eq!(names(&d, pb::Kind::Sink), ["conformance"], "sink symbol");
    }
    assert!(!d.sdk_name.is_empty(), "sdk_name is empty");
    c.note(format!("sdk {} {}", d.sdk_name, d.sdk_version));
}

/// Scenario 2: run by hand with only protocol 2 on offer: exit 78, a stderr line, no socket.
async fn protocol_refusal(c: Arc<Cell>) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.sock");
    let child = tokio::process::Command::new(&c.lang.exe)
        .env("OORT_PLUGIN_SOCKET", &socket)
        .env("OORT_PROTOCOL_VERSIONS", "2")
        .env("OORT_PLUGIN_NAME", "conformance")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let out = tokio::time::timeout(WAIT, child.wait_with_output()).await.expect("did not exit").expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "exit status {}; stderr: {stderr}", out.status);
    assert!(!stderr.trim().is_empty(), "nothing on stderr");
    assert!(!socket.exists(), "the socket was created");
    c.note(format!("refusal: {}", stderr.lines().next().unwrap_or_default()));
}

/// Scenario 3: the supervisor's describe lists the six functions, and the mode once a process ran.
async fn describe(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let before = e.host().describe(PluginKind::Function, "conformance").await.expect("in the catalog");
    let mut functions = before.functions.clone();
    functions.sort();
    assert_eq!(functions, FUNCTIONS, "functions before any process");
    assert_eq!(before.mode, None);
    assert_eq!(e.host().function_plugin("CF_ECHO").as_deref(), Some("conformance"));
    let _f = open_fn(&e, "r1", "cf_echo").await;
    let after = e.host().describe(PluginKind::Function, "conformance").await.expect("in the catalog");
    let mut functions = after.functions.clone();
    functions.sort();
    assert_eq!(functions, FUNCTIONS, "functions after an open");
    assert_eq!(after.mode, Some("constructor"));
    assert_eq!(after.processes.len(), 1);
    assert_eq!(after.processes[0].instances, 1);
}

async fn pid_of(f: &FunctionInstance) -> u32 {
    match call(f, vec![]).await {
        Ok(Value::Int(p)) => {
            let p = u32::try_from(p).expect("a pid");
            assert_eq!(Some(p), f.pid(), "cf_pid answers the pid the supervisor started");
            p
        }
        other => panic!("cf_pid() = {other:?}"),
    }
}

/// Scenario 4: two rules get two processes; with the singleton switch the process is
/// shared only if every symbol became a singleton.
async fn modes(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let a = open_fn(&e, "r1", "cf_pid").await;
    let d = describe_direct(&plugin_socket(e.host())).await;
    assert!(
        d.symbols.iter().all(|s| s.mode == pb::ExportMode::Constructor as i32),
        "every symbol is a constructor by default: {:?}",
        d.symbols
    );
    let b = open_fn(&e, "r2", "cf_pid").await;
    let (pa, pb_) = (pid_of(&a).await, pid_of(&b).await);
    assert_ne!(pa, pb_, "constructor: one process per rule");
    let info = e.host().describe(PluginKind::Function, "conformance").await.unwrap();
    assert_eq!(info.mode, Some("constructor"));
    assert_eq!(info.processes.len(), 2);
    e.host().shutdown().await;

    let e = c.env(&["functions"], &[("OORT_CONFORMANCE_SINGLETON", "1")], fast_timeouts());
    let a = open_fn(&e, "r1", "cf_pid").await;
    let d = describe_direct(&plugin_socket(e.host())).await;
    let single = |s: &&pb::Symbol| s.mode == pb::ExportMode::Singleton as i32;
    let functions = symbols(&d, pb::Kind::Function);
    assert!(functions.iter().all(single), "the switch makes every function a singleton: {functions:?}");
    let others: Vec<_> = d.symbols.iter().filter(|s| s.kind != pb::Kind::Function as i32).collect();
    assert!(!others.iter().any(single), "the source and sink stay constructors: {others:?}");
    // The documented rule: shared only when every symbol is a singleton.
    let shared = !d.symbols.is_empty() && d.symbols.iter().all(|s| single(&s));
    let b = open_fn(&e, "r2", "cf_pid").await;
    let (pa, pb_) = (pid_of(&a).await, pid_of(&b).await);
    assert_eq!(pa == pb_, shared, "pids {pa} and {pb_}; every symbol a singleton: {shared}");
    let info = e.host().describe(PluginKind::Function, "conformance").await.unwrap();
    assert_eq!(info.mode, Some(if shared { "singleton" } else { "constructor" }));
    c.note(format!("singleton switch: mode {}, {} processes", info.mode.unwrap_or("?"), info.processes.len()));
}

/// Scenario 5: validate runs the plugin's check.
async fn validate(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let column = ArgInfo { expression: "a".into(), literal: None, column: Some("a".into()) };
    let literal = ArgInfo { expression: "1".into(), literal: Some(Value::Int(1)), column: None };
    let two = e
        .host()
        .validate_function("cf_echo", &[column.clone(), literal], &Default::default())
        .await
        .expect("validate")
        .problem;
    let err = two.expect("two arguments must be refused");
    assert!(err.contains("cf_echo expects 1 argument, got 2"), "{err}");
    let one = e.host().validate_function("cf_echo", &[column], &Default::default()).await.expect("validate").problem;
    assert_eq!(one, None);
}

/// Scenario 6: per-row errors, every Value variant round-trips exactly, and two
/// batches in flight on one instance are answered in order.
async fn batches(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let fail = open_fn(&e, "r1", "cf_fail").await;
    let rows = vec![vec![s("ok")], vec![s("bad1")], vec![Value::Int(3)], vec![s("bad2")]];
    let out = fail.exec(&rows).await.expect("cf_fail batch");
    assert_eq!(out, vec![Ok(s("ok")), Err("cf_fail: bad1".into()), Ok(Value::Int(3)), Err("cf_fail: bad2".into())]);

    let echo = open_at(&e, "r1", "op1", "cf_echo").await;
    let values = vec![
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(0),
        Value::Int(-7),
        Value::Int(i64::MAX),
        Value::Int(i64::MIN),
        Value::Float(2.5),
        Value::Float(-1.0e300),
        Value::Float(0.1),
        s(""),
        s("héllo ✓ \"q\""),
        Value::Bytes(vec![0, 1, 255]),
        Value::Bytes(vec![]),
        Value::List(vec![]),
        Value::List(vec![Value::Int(1), s("a"), Value::Null, Value::Float(1.0)]),
        Value::Map(BTreeMap::new()),
        map(&[("a", Value::Int(1)), ("b", Value::List(vec![map(&[("c", Value::Bytes(vec![7]))])]))]),
    ];
    let rows: Vec<Vec<Value>> = values.iter().map(|v| vec![v.clone()]).collect();
    let out = echo.exec(&rows).await.expect("cf_echo batch");
    assert_eq!(out.len(), values.len());
    let wrong: Vec<String> = values
        .iter()
        .zip(&out)
        .filter(|(v, o)| o.as_ref() != Ok(*v))
        .map(|(v, o)| format!("{v:?} came back as {o:?}"))
        .collect();
    assert!(wrong.is_empty(), "cf_echo does not round-trip: {}", wrong.join("; "));

    // Two batches in flight on one instance, as a rule's pipeline sends them:
    // answered in order, each seeing the state the previous one left.
    use futures_util::stream::{FuturesOrdered, StreamExt};
    let count = open_at(&e, "r1", "op2", "cf_count").await;
    let rows = vec![vec![s("k")]; 3];
    let (mut in_flight, mut seen, mut sent) = (FuturesOrdered::new(), Vec::new(), 0);
    while seen.len() < 60 {
        while in_flight.len() < 2 && sent < 20 {
            in_flight.push_back(count.exec(&rows));
            sent += 1;
        }
        seen.extend(in_flight.next().await.expect("a batch in flight").expect("cf_count batch"));
    }
    let want: Vec<RowOutcome> = (1..=60).map(|i| Ok(Value::Int(i))).collect();
    assert_eq!(seen, want, "cf_count over 20 batches of 3 rows, two in flight");
}

/// Scenario 14: batches of at least `COLUMNS_FROM_ROWS` rows whose columns
/// have one type each go as Arrow columns to a plugin that lists them (and as
/// rows otherwise), and come back exactly; a batch that mixes types goes as
/// rows on the same instance.
async fn columns(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let echo = open_at(&e, "r1", "op1", "cf_echo").await;
    let d = describe_direct(&plugin_socket(e.host())).await;
    let lists_arrow = d.encodings.contains(&(pb::Encoding::ArrowIpc as i32));
    assert!(lists_arrow, "every conformance plugin lists Arrow; Describe.encodings: {:?}", d.encodings);
    let columns: Vec<Vec<Value>> = vec![
        vec![Value::Int(1), Value::Null, Value::Int(i64::MIN), Value::Int(i64::MAX)],
        vec![Value::Uint(u64::MAX), Value::Uint(1 << 63), Value::Null],
        vec![Value::Float(-0.5), Value::Float(1e300), Value::Null, Value::Float(0.1)],
        vec![s(""), s("héllo ✓"), Value::Null],
        vec![Value::Bytes(vec![0, 255]), Value::Bytes(vec![]), Value::Null],
        vec![Value::Bool(true), Value::Null, Value::Bool(false)],
        vec![Value::Null, Value::Null],
    ];
    // Batches big enough to go as columns: each column's values repeated.
    let columns: Vec<Vec<Value>> =
        columns.iter().map(|c| c.iter().cycle().take(COLUMNS_FROM_ROWS + 1).cloned().collect()).collect();
    for column in &columns {
        let rows: Vec<Vec<Value>> = column.iter().map(|v| vec![v.clone()]).collect();
        let out = echo.exec(&rows).await.expect("cf_echo batch");
        let want: Vec<RowOutcome> = column.iter().cloned().map(Ok).collect();
        assert_eq!(out, want, "cf_echo over one column");
    }
    let sent_as_columns = echo.columnar_batches();
    let expected = if c.lang.encoding == DataEncoding::Auto { columns.len() as u64 } else { 0 };
    assert_eq!(sent_as_columns, expected, "batches sent as Arrow columns");
    // A column that mixes types goes as rows, on the same stream.
    let mixed: Vec<Vec<Value>> = [Value::Int(1), s("a"), Value::List(vec![Value::Int(2)])]
        .iter()
        .cycle()
        .take(COLUMNS_FROM_ROWS + 1)
        .map(|v| vec![v.clone()])
        .collect();
    let out = echo.exec(&mixed).await.expect("cf_echo mixed batch");
    assert_eq!(out, mixed.iter().map(|r| Ok(r[0].clone())).collect::<Vec<_>>());
    assert_eq!(echo.columnar_batches(), sent_as_columns, "a mixed batch goes as rows");
    // A row-API function gets columns converted by its SDK: cf_fail's row
    // errors and values are the same in either encoding.
    let fail = open_at(&e, "r1", "op2", "cf_fail").await;
    let args = [s("ok"), s("bad1"), Value::Null, s("bad2")];
    let rows: Vec<Vec<Value>> = args.iter().cycle().take(4 * COLUMNS_FROM_ROWS).map(|v| vec![v.clone()]).collect();
    let out = fail.exec(&rows).await.expect("cf_fail");
    let want = [Ok(s("ok")), Err("cf_fail: bad1".into()), Ok(Value::Null), Err("cf_fail: bad2".into())];
    assert_eq!(out, want.iter().cloned().cycle().take(rows.len()).collect::<Vec<RowOutcome>>());
    assert_eq!(fail.columnar_batches(), u64::from(expected > 0), "cf_fail's batch went as columns");
    // Then the first column again: a schema the stream has seen before
    // comes back after a different one.
    let rows: Vec<Vec<Value>> = columns[0].iter().map(|v| vec![v.clone()]).collect();
    let out = echo.exec(&rows).await.expect("cf_echo batch after a schema change");
    assert_eq!(out, columns[0].iter().cloned().map(Ok).collect::<Vec<_>>());
    // A list column, as a rule on columns passes a source's on: it arrives
    // as a List column (rows with the row path) and comes back the same.
    use oort_proto::columns::arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
    use oort_proto::columns::ArrayRef;
    let mut ints = ListBuilder::new(Int64Builder::new());
    let mut strings = ListBuilder::new(StringBuilder::new());
    for i in 0..COLUMNS_FROM_ROWS as i64 {
        match i % 4 {
            0 => ints.append_null(),
            1 => ints.append(true),
            _ => ints.append_value([Some(i), None, Some(-i)]),
        }
        strings.append_value([Some(format!("s{i}")), None]);
    }
    let lists: [ArrayRef; 2] = [Arc::new(ints.finish()), Arc::new(strings.finish())];
    let before = echo.columnar_batches();
    for list in lists {
        let want: Vec<RowOutcome> =
            oort_proto::columns::values_of(list.as_ref()).unwrap().into_iter().map(Ok).collect();
        let got = match echo.exec_columns(std::slice::from_ref(&list), list.len()).await.expect("cf_echo lists") {
            oort_host::Answer::Rows(outcomes) => outcomes,
            oort_host::Answer::Column(column, errors) => {
                assert!(errors.is_empty(), "{errors:?}");
                oort_proto::columns::values_of(column.as_ref()).unwrap().into_iter().map(Ok).collect()
            }
        };
        assert_eq!(got, want, "cf_echo over a list column");
    }
    assert_eq!(echo.columnar_batches() - before, if expected > 0 { 2 } else { 0 }, "list columns went as columns");
}

/// Scenario 15: the source's batches come as Arrow columns when the host
/// takes them (rows otherwise), the sink takes a batch of columns (records
/// otherwise), and the records and lines are the same either way.
async fn columns_io(c: Arc<Cell>) {
    use oort_proto::columns;
    let e = c.env(&["sources", "sinks"], &[], fast_timeouts());
    let count = 300;
    let src = e
        .host()
        .open_source("r1", "conformance", "", props(&[("count", Value::Int(count))]), RestartStrategy::default())
        .await
        .expect("open source");
    let mut rx = src.read(100).await.expect("read");
    let mut ns = Vec::new();
    while ns.len() < count as usize {
        let batch = tokio::time::timeout(WAIT, rx.recv()).await.expect("a batch in time").expect("open").expect("ok");
        let records = match &batch.columns {
            Some(c) => columns::records_of(c).expect("records of the source's columns"),
            None => batch.records,
        };
        ns.extend(records.iter().map(|r| r.fields.get("n").and_then(Value::as_i64).expect("n")));
        assert_eq!(batch.offset, Some(Value::Int(ns.len() as i64)), "the offset after the batch");
    }
    assert_eq!(ns, (0..count).collect::<Vec<_>>());
    let auto = c.lang.encoding == DataEncoding::Auto;
    let columnar = src.columnar_batches();
    assert!(if auto { columnar > 0 } else { columnar == 0 }, "{columnar} source batches came as columns");
    drop(rx);
    e.host().close_source(&src).await;

    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("out.jsonl");
    let sink = open_lines_sink(&e, &path).await;
    assert_eq!(sink.takes_columns(), auto, "the sink takes columns when the host sends them");
    let records: Vec<Record> = (0..100)
        .map(|i| {
            let mut fields = BTreeMap::from([("n".to_string(), Value::Int(i))]);
            if i % 3 != 0 {
                fields.insert("s".into(), s(&format!("x{i} ✓")));
            }
            Record::from_fields(fields)
        })
        .collect();
    let batch = columns::records_batch(&records).expect("one type per field");
    sink.write_columns(&batch).await.expect("write columns");
    assert_eq!(sink.columnar_batches(), u64::from(auto), "batches written as columns");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let want: Vec<serde_json::Value> = records.iter().map(Record::fields_to_json).collect();
    assert_eq!(lines, want, "the sink's lines: a field null in a column is absent");
    e.host().close_sink(&sink).await;
}

/// Scenario 7: the five state calls, scoped per instance, mirrored in the supervisor.
async fn state(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let st = open_fn(&e, "r1", "cf_state").await;
    assert_eq!(call(&st, vec![s("put"), s("k"), s("v")]).await, Ok(Value::Bool(true)), "put k v");
    assert_eq!(call(&st, vec![s("get"), s("k")]).await, Ok(s("v")), "get k");
    match call(&st, vec![s("counter"), s("k")]).await {
        Err(msg) if msg.contains("not a counter") => {}
        other => panic!("counter on a value: {other:?}, want a row error mentioning \"not a counter\""),
    }
    assert_eq!(call(&st, vec![s("incr"), s("n"), Value::Int(5)]).await, Ok(Value::Int(5)), "incr n 5");
    assert_eq!(call(&st, vec![s("incr"), s("n"), Value::Int(-2)]).await, Ok(Value::Int(3)), "incr n -2");
    assert_eq!(call(&st, vec![s("delete"), s("k")]).await, Ok(Value::Bool(true)), "delete k");
    assert_eq!(call(&st, vec![s("get"), s("k")]).await, Ok(Value::Null), "get k after delete");
    let count = open_fn(&e, "r2", "cf_count").await;
    assert_eq!(call(&count, vec![s("n")]).await, Ok(Value::Int(1)), "r2 must not see r1's counter");
    let id = st.id().to_string();
    assert_eq!(e.host().state().counter(&id, "n"), Ok(3), "the supervisor's copy of {id}");
    assert_eq!(e.host().state().get(&id, "k"), None, "the supervisor's copy of {id} after delete");
    assert_eq!(e.host().state().counter(count.id(), "n"), Ok(1));
}

/// Scenario 8: a killed process comes back with its state.
async fn restore(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let f = open_fn(&e, "r1", "cf_count").await;
    let out = f.exec(&vec![vec![s("x")]; 3]).await.expect("cf_count batch");
    assert_eq!(out, vec![Ok(Value::Int(1)), Ok(Value::Int(2)), Ok(Value::Int(3))]);
    let old = f.pid().expect("a pid");
    kill9(old);
    assert!(wait_until(WAIT, || f.pid().is_some_and(|p| p != old)).await, "no new process after kill -9");
    assert_eq!(call(&f, vec![s("x")]).await, Ok(Value::Int(4)), "the state came back with Open");
    assert_eq!(f.restarts(), 1);
    assert!(!alive(old));
}

type Batches = tokio::sync::mpsc::Receiver<Result<oort_host::SourceBatch, oort_host::HostError>>;

/// Receives batches until `n` records came, returning (n of each record, offset after each batch).
async fn take(rx: &mut Batches, n: usize) -> (Vec<i64>, Vec<Value>) {
    let (mut ns, mut offsets) = (Vec::new(), Vec::new());
    while ns.len() < n {
        let batch = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no batch within {WAIT:?}; got {ns:?}"))
            .unwrap_or_else(|| panic!("the Read stream ended after {ns:?}"))
            .unwrap_or_else(|e| panic!("read: {e}"));
        for r in &batch.records {
            ns.push(r.fields.get("n").and_then(Value::as_i64).unwrap_or_else(|| panic!("record {r:?}")));
        }
        offsets.push(batch.offset.unwrap_or_else(|| panic!("a batch without an offset after {ns:?}")));
    }
    (ns, offsets)
}

/// Scenario 9: batches with increasing offsets, then a rewind of the same (host)
/// instance once its Read stream has ended.
///
/// The first stream is ended by killing the process, the path §4.5 documents
/// (the stream breaks, the instance is reopened, Rewind, Read again). Dropping
/// the receiver is not enough: the host's reader task keeps the gRPC stream
/// open until the next batch arrives, and an SDK whose old Read loop is still
/// running (Rust's, Go's) then hands the rewound records to the dead stream.
async fn source(c: Arc<Cell>) {
    let e = c.env(&["sources"], &[], fast_timeouts());
    let src = e
        .host()
        .open_source("r1", "conformance", "", props(&[("count", Value::Int(10))]), RestartStrategy::default())
        .await
        .expect("open source");
    let mut rx = src.read(4).await.expect("read");
    let (ns, offsets) = take(&mut rx, 10).await;
    assert_eq!(ns, (0..10).collect::<Vec<_>>());
    assert!(offsets.iter().all(|o| matches!(o, Value::Int(_))), "offsets {offsets:?}");
    let ints: Vec<i64> = offsets.iter().filter_map(Value::as_i64).collect();
    assert!(ints.windows(2).all(|w| w[0] < w[1]), "offsets do not increase: {offsets:?}");
    assert_eq!(offsets.last(), Some(&Value::Int(10)), "offsets {offsets:?}");

    let old = src.pid().expect("a pid");
    kill9(old);
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(Err(_)) | None) => {}
        Ok(Some(Ok(b))) => panic!("a batch after the count was reached: {b:?}"),
        Err(_) => panic!("the Read stream of a killed process did not end"),
    }
    drop(rx);
    assert!(wait_until(WAIT, || src.pid().is_some_and(|p| p != old)).await, "no new process after kill -9");
    src.rewind(Value::Int(4)).await.expect("rewind");
    let mut rx = src.read(4).await.expect("read again");
    let (ns, offsets) = take(&mut rx, 6).await;
    assert_eq!(ns, (4..10).collect::<Vec<_>>(), "records after rewind(4)");
    assert_eq!(offsets.last(), Some(&Value::Int(10)), "offsets {offsets:?}");
    drop(rx);
    e.host().close_source(&src).await;
}

/// Scenario 10: a transactional sink: lines written, PreCommit's handle, Commit's note.
async fn sink(c: Arc<Cell>) {
    let e = c.env(&["sinks"], &[], fast_timeouts());
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("out.jsonl");
    let sink = open_lines_sink(&e, &path).await;
    let rec = |fields: &[(&str, Value)]| {
        Record::from_fields(fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    };
    let records = [
        rec(&[("s", s("x")), ("n", Value::Int(1)), ("f", Value::Float(2.5))]),
        rec(&[
            ("z", Value::Bool(true)),
            ("a", Value::Null),
            ("m", map(&[("b", Value::Int(-1)), ("a", Value::List(vec![Value::Int(1), s("two"), Value::Float(3.25)]))])),
        ]),
        rec(&[("q", s("é\"\\\n")), ("b", Value::Bytes(vec![0, 255])), ("e", Value::Float(1.0e20))]),
    ];
    sink.write(&records[..2]).await.expect("write 1");
    sink.write(&records[2..]).await.expect("write 2");
    let handle = sink.pre_commit(1).await.expect("pre_commit");
    let len = std::fs::metadata(&path).expect("the sink's file").len() as i64;
    assert_eq!(handle, Value::Int(len), "PreCommit's handle is the file length");
    sink.commit(1, handle).await.expect("commit");
    let commits = std::fs::read_to_string(format!("{}.commits", path.display())).expect("the .commits file");
    assert!(commits.lines().any(|l| l == format!("commit 1 {len}")), "{commits:?} lacks \"commit 1 {len}\"");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let want = [
        serde_json::json!({"f": 2.5, "n": 1, "s": "x"}),
        serde_json::json!({"a": null, "m": {"a": [1, "two", 3.25], "b": -1}, "z": true}),
        serde_json::json!({"b": [0, 255], "e": 1.0e20, "q": "é\"\\\n"}),
    ];
    for (line, want) in lines.iter().zip(want) {
        let got: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(got, want, "line {line}");
        assert!(keys_sorted(line), "keys not sorted: {line}");
    }
    e.host().close_sink(&sink).await;
}

/// Scenario 11: shutdown with an open instance and a used Exec stream is quick and clean.
async fn shutdown(c: Arc<Cell>) {
    // Default timeouts: a plugin ignoring the Shutdown RPC would take a 2 s grace.
    let e = c.env(&["functions"], &[], Timeouts::default());
    let f = open_fn(&e, "r1", "cf_echo").await;
    assert_eq!(call(&f, vec![Value::Int(1)]).await, Ok(Value::Int(1)));
    let pid = f.pid().expect("a pid");
    let started = Instant::now();
    e.host().shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
    assert!(!alive(pid), "pid {pid} survived the shutdown");
    let left: Vec<_> =
        sockets_under(e.host().runtime_dir()).into_iter().filter(|p| !p.ends_with("state.sock")).collect();
    assert!(left.is_empty(), "sockets left: {left:?}");
    c.note(format!("shutdown {took:.0?}"));
}

/// Scenario 12: health for "", and reflection listing the plugin services (Source and
/// Sink only for a plugin that exports a source and a sink).
async fn reflection(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let _f = open_fn(&e, "r1", "cf_echo").await;
    let socket = plugin_socket(e.host());
    assert_eq!(health(&socket, "").await, SERVING);
    let services = list_services(&socket).await;
    let mut wanted = vec!["grpc.health.v1.Health", "oort.plugin.v1.Function", "oort.plugin.v1.Plugin"];
    if c.lang.source_and_sink {
        wanted.extend(["oort.plugin.v1.Sink", "oort.plugin.v1.Source"]);
    }
    for want in wanted {
        assert!(services.iter().any(|s| s == want), "reflection lacks {want}: {services:?}");
    }
}

/// Scenario 13: `cf_agg` is an aggregate (Describe's `is_aggregate`, seen by
/// validate and open), answers one row per group, each argument the group's
/// list, with a per-row error for a non-list, and counts the groups it answered
/// in its state.
async fn aggregate(c: Arc<Cell>) {
    let e = c.env(&["functions"], &[], fast_timeouts());
    let column = ArgInfo { expression: "v".into(), literal: None, column: Some("v".into()) };
    let agg = e
        .host()
        .validate_function("cf_agg", std::slice::from_ref(&column), &Default::default())
        .await
        .expect("validate cf_agg");
    assert_eq!(agg.problem, None, "cf_agg(v)");
    assert!(agg.is_aggregate, "validate: cf_agg is an aggregate");
    let echo = e
        .host()
        .validate_function("cf_echo", std::slice::from_ref(&column), &Default::default())
        .await
        .expect("validate cf_echo");
    assert!(!echo.is_aggregate, "validate: cf_echo is not an aggregate");
    let two = e
        .host()
        .validate_function("cf_agg", &[column.clone(), column], &Default::default())
        .await
        .expect("validate")
        .problem;
    let err = two.expect("two arguments must be refused");
    assert!(err.contains("cf_agg expects 1 argument, got 2"), "{err}");

    let f = open_fn(&e, "r1", "cf_agg").await;
    assert!(f.is_aggregate(), "an opened cf_agg instance is an aggregate");
    let d = describe_direct(&plugin_socket(e.host())).await;
    let marked: Vec<_> = symbols(&d, pb::Kind::Function).iter().filter(|s| s.is_aggregate).map(|s| &s.name).collect();
    assert_eq!(marked, ["cf_agg"], "the function symbols marked is_aggregate");

    // One window emission: one row per group, each argument the group's values.
    let list = |items: Vec<Value>| vec![Value::List(items)];
    let rows = vec![
        list(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
        list(vec![]),
        list(vec![Value::Int(4), Value::Null, s("x")]),
        vec![Value::Int(7)],
    ];
    let out = f.exec(&rows).await.expect("cf_agg batch");
    let result = |n, sum| Ok(map(&[("n", Value::Int(n)), ("sum", Value::Int(sum))]));
    let want = vec![result(3, 6), result(0, 0), result(3, 4), Err("cf_agg expects a list, got int".into())];
    assert_eq!(out, want, "cf_agg over three groups and a non-list");
    let id = f.id().to_string();
    assert_eq!(e.host().state().counter(&id, "groups"), Ok(3), "the supervisor's copy of {id}: one per group answered");
}

// ---------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------

enum Outcome {
    NotApplicable,
    Passed,
    Failed(String),
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()),
        Err(e) => e.to_string(),
    }
}

async fn run_cell(scenario: &Scenario, lang: &Arc<Language>) -> (Outcome, Vec<String>, Duration) {
    let started = Instant::now();
    if !(lang.applies)(scenario.id) {
        return (Outcome::NotApplicable, Vec::new(), Duration::ZERO);
    }
    if !lang.exe.exists() {
        let msg = format!("{} is not built: run `{}`", lang.exe.display(), lang.build);
        return (Outcome::Failed(msg), Vec::new(), Duration::ZERO);
    }
    let cell = Arc::new(Cell { lang: lang.clone(), envs: Mutex::default(), notes: Mutex::default() });
    let mut task = tokio::spawn((scenario.run)(cell.clone()));
    let outcome = match tokio::time::timeout(CELL_TIMEOUT, &mut task).await {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(e)) => Outcome::Failed(panic_message(e)),
        Err(_) => {
            task.abort();
            Outcome::Failed(format!("did not finish within {CELL_TIMEOUT:?}"))
        }
    };
    // Stop whatever the scenario left running, even when it failed.
    let envs: Vec<Arc<Env>> = std::mem::take(&mut *cell.envs.lock().unwrap());
    for e in &envs {
        e.host().shutdown().await;
    }
    drop(envs);
    let notes = std::mem::take(&mut *cell.notes.lock().unwrap());
    (outcome, notes, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_language_behaves_the_same() {
    let started = Instant::now();
    let wanted = |var: &str, name: &str| match std::env::var(var) {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|w| w.trim() == name),
        _ => true,
    };
    let langs: Vec<_> = languages().into_iter().filter(|l| wanted("OORT_CONFORMANCE_LANGUAGES", l.name)).collect();
    let scenarios: Vec<_> = scenarios().into_iter().filter(|s| wanted("OORT_CONFORMANCE_SCENARIOS", s.id)).collect();
    for l in &langs {
        let meta = match &l.metadata {
            Some(p) => p.display().to_string(),
            None => "none shipped: the suite writes one listing the six functions".into(),
        };
        if l.exe.exists() {
            println!("{:<12} {} (metadata: {meta})", l.name, l.exe.display());
        } else {
            println!("{:<12} MISSING {}: build it with `{}`", l.name, l.exe.display(), l.build);
        }
    }

    // results[scenario][language]
    let mut results: Vec<Vec<Outcome>> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for sc in &scenarios {
        let mut row = Vec::new();
        for l in &langs {
            let (outcome, cell_notes, took) = run_cell(sc, l).await;
            if !matches!(outcome, Outcome::NotApplicable) {
                let mark = if matches!(outcome, Outcome::Passed) { "ok" } else { "FAILED" };
                println!("  {:<26} {:<12} {mark} in {took:.0?}", sc.title, l.name);
            }
            notes.extend(cell_notes.into_iter().map(|n| format!("{:<10} {n}", l.name)));
            row.push(outcome);
        }
        results.push(row);
    }

    let width = 26;
    let mut table = format!("\n{:<width$}", "scenario");
    for l in &langs {
        table.push_str(&format!(" {:^10}", l.name));
    }
    table.push('\n');
    let mut failed = Vec::new();
    for (sc, row) in scenarios.iter().zip(&results) {
        table.push_str(&format!("{:<width$}", sc.title));
        for (l, o) in langs.iter().zip(row) {
            let mark = match o {
                Outcome::NotApplicable => "–",
                Outcome::Passed => "✓",
                Outcome::Failed(msg) => {
                    failed.push(format!("[{} × {}] {msg}", sc.title, l.name));
                    "✗"
                }
            };
            table.push_str(&format!(" {mark:^10}"));
        }
        table.push('\n');
    }
    println!("{table}");
    for n in &notes {
        println!("note: {n}");
    }
    println!("conformance suite took {:.1?}", started.elapsed());
    assert!(failed.is_empty(), "{} failed cell(s):\n{}", failed.len(), failed.join("\n"));
}
