//! The process supervisor against real plugin processes over real sockets.

use std::time::{Duration, Instant};

use oort_host::catalog::PluginKind;
use oort_host::process::{ProcessError, RestartStrategy, Timeouts};
use oort_host::HostError;
use oort_proto::Value;
use oort_tests::{alive, fast_timeouts, kill9, sockets_under, wait_until, PluginsDir, TestHost};

fn words(text: &str) -> Vec<Vec<Value>> {
    vec![vec![Value::from(text), Value::from(" ")]]
}

fn int(rows: Vec<Result<Value, String>>) -> i64 {
    match rows.as_slice() {
        [Ok(Value::Int(i))] => *i,
        other => panic!("expected one integer result, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn constructor_plugins_run_one_process_per_rule_with_isolated_state() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "accumulateWordCount", "accumulateWordCount");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let s = RestartStrategy::default();

    let r1 = t.host.open_function("r1", "op0", "accumulateWordCount", s).await.unwrap();
    let r2 = t.host.open_function("r2", "op0", "accumulateWordCount", s).await.unwrap();
    assert_ne!(r1.pid(), r2.pid(), "each rule gets its own process");

    assert_eq!(int(r1.exec(&words("a b c")).await.unwrap()), 3);
    assert_eq!(int(r2.exec(&words("x y")).await.unwrap()), 2);
    assert_eq!(int(r1.exec(&words("d")).await.unwrap()), 4, "rule 1 counts only its own words");

    // A second call site in the same rule has its own counter.
    let r1b = t.host.open_function("r1", "op1", "accumulateWordCount", s).await.unwrap();
    assert_eq!(r1b.pid(), r1.pid(), "one process per rule, not per call site");
    assert_eq!(int(r1b.exec(&words("e f")).await.unwrap()), 2);

    // The supervisor's copy follows the batches.
    assert_eq!(t.host.state().counter("r1/op0", "allwordcount"), Ok(4));
    assert_eq!(t.host.state().counter("r2/op0", "allwordcount"), Ok(2));

    let info = t.host.describe(PluginKind::Function, "accumulateWordCount").await.unwrap();
    assert_eq!(info.mode, Some("constructor"));
    assert_eq!(info.processes.len(), 2);

    let pids = [r1.pid().unwrap(), r2.pid().unwrap()];
    t.host.close_function(&r1).await;
    t.host.close_function(&r1b).await;
    assert!(wait_until(Duration::from_secs(3), || !alive(pids[0])).await, "a rule's last close stops its process");
    assert!(alive(pids[1]));
    t.host.shutdown().await;
    assert!(!alive(pids[1]));
    drop(r2);
}

#[tokio::test(flavor = "multi_thread")]
async fn singleton_plugins_serve_every_rule_from_one_process() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "echo", "echo");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let s = RestartStrategy::default();
    let a = t.host.open_function("r1", "op0", "echo", s).await.unwrap();
    let b = t.host.open_function("r2", "op0", "echo", s).await.unwrap();
    assert_eq!(a.pid(), b.pid());
    let rows = vec![vec![Value::Int(7)], vec![Value::from("x")], vec![Value::Null]];
    let out = a.exec(&rows).await.unwrap();
    assert_eq!(out, vec![Ok(Value::Int(7)), Ok(Value::from("x")), Ok(Value::Null)]);
    let upper = t.host.open_function("r3", "op0", "ECHO", s).await.unwrap();
    assert_eq!(upper.symbol(), "echo", "SQL function names are case-insensitive");
    let info = t.host.describe(PluginKind::Function, "echo").await.unwrap();
    assert_eq!(info.mode, Some("singleton"));
    assert_eq!(info.processes.len(), 1);
    assert_eq!(info.processes[0].instances, 3);
    t.host.shutdown().await;
}

/// Singleton sources and sinks: one process serves every rule's instance and
/// stops only once the last instance is closed.
#[tokio::test(flavor = "multi_thread")]
async fn singleton_sources_and_sinks_serve_every_rule_from_one_process() {
    use std::collections::{BTreeMap, HashMap};
    let plugins = PluginsDir::new();
    let all = [("OORT_CONFORMANCE_SINGLETON", "all")];
    plugins.add_with_env("sources", "conformance", "conformance", &all);
    plugins.add_with_env("sinks", "conformance", "conformance", &all);
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let count = HashMap::from([("count".to_string(), Value::Int(1_000_000))]);
    let s1 = t.host.open_source("r1", "conformance", "", count.clone(), RestartStrategy::default()).await.unwrap();
    let s2 = t.host.open_source("r2", "conformance", "", count, RestartStrategy::default()).await.unwrap();
    assert_eq!(s1.pid(), s2.pid(), "one process for both rules' sources");
    for source in [&s1, &s2] {
        let mut batches = source.read(10).await.unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(5), batches.recv()).await.unwrap().unwrap().unwrap();
        assert!(!batch.records.is_empty());
    }

    let out = tempfile::tempdir().unwrap();
    let path = HashMap::from([("path".to_string(), Value::from(out.path().join("o.jsonl").to_str().unwrap()))]);
    let k1 = t.host.open_sink("r1", "sink_0", "conformance", path.clone(), RestartStrategy::default()).await.unwrap();
    let k2 = t.host.open_sink("r2", "sink_0", "conformance", path, RestartStrategy::default()).await.unwrap();
    let pid = k1.pid().unwrap();
    assert_eq!(k2.pid(), Some(pid), "one process for both rules' sinks");
    let record = |n: i64| oort_proto::Record::from_fields(BTreeMap::from([("n".to_string(), Value::Int(n))]));
    k1.write(&[record(1)]).await.unwrap();
    t.host.close_sink(&k1).await;
    // The other rule's instance keeps the shared process.
    k2.write(&[record(2)]).await.unwrap();
    assert_eq!(k2.pid(), Some(pid));
    assert_eq!(std::fs::read_to_string(out.path().join("o.jsonl")).unwrap(), "{\"n\":1}\n{\"n\":2}\n");
    t.host.close_sink(&k2).await;
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)).await, "the last close stops the shared sink process");
    t.host.close_source(&s1).await;
    t.host.close_source(&s2).await;
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_with_open_batch_streams_stops_gracefully_and_quickly() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "echo", "echo");
    // Default timeouts: a plugin that ignored the Shutdown RPC would take two
    // 2 s grace periods to be SIGKILLed.
    let t = TestHost::new(plugins.path(), Timeouts::default());
    let f = t.host.open_function("r1", "op0", "echo", RestartStrategy::default()).await.unwrap();
    f.exec(&[vec![Value::Int(1)]]).await.unwrap();
    let pid = f.pid().unwrap();
    let started = Instant::now();
    t.host.shutdown().await;
    assert!(started.elapsed() < Duration::from_millis(1500), "stop took {:?}", started.elapsed());
    assert!(!alive(pid));
    drop(f);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_plugin_is_restarted_and_resumes_from_its_state() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "accumulateWordCount", "accumulateWordCount");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let f = t.host.open_function("r1", "op0", "accumulateWordCount", RestartStrategy::default()).await.unwrap();
    assert_eq!(int(f.exec(&words("a b c")).await.unwrap()), 3);
    let old = f.pid().unwrap();
    kill9(old);
    assert!(wait_until(Duration::from_secs(5), || f.pid().is_some_and(|p| p != old)).await, "restarted");
    // The restarted process got the counter back when its instance was reopened.
    assert_eq!(int(f.exec(&words("d e")).await.unwrap()), 5);
    let info = t.host.describe(PluginKind::Function, "accumulateWordCount").await.unwrap();
    assert_eq!(info.processes[0].restarts, 1);
    assert!(!alive(old));
    t.host.shutdown().await;
}

/// The rule pipeline keeps two batches in flight on one instance. Their
/// results and state changes must come out in call order, also when the
/// process is killed with both batches on the wire.
#[tokio::test(flavor = "multi_thread")]
async fn overlapping_calls_see_the_state_in_call_order_across_a_kill() {
    use futures_util::stream::{FuturesOrdered, StreamExt};
    let plugins = PluginsDir::new();
    plugins.add("functions", "accumulateWordCount", "accumulateWordCount");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let f = t.host.open_function("r1", "op0", "accumulateWordCount", RestartStrategy::default()).await.unwrap();
    let rows = words("w");
    let (calls, kill_at) = (300, 100);
    let mut in_flight = FuturesOrdered::new();
    let (mut results, mut next, mut killed) = (Vec::new(), 0, None);
    while results.len() < calls {
        while in_flight.len() < 2 && next < calls {
            in_flight.push_back(f.exec(&rows));
            next += 1;
        }
        results.push(int(in_flight.next().await.unwrap().unwrap()));
        if results.len() == kill_at {
            let pid = f.pid().unwrap();
            kill9(pid);
            killed = Some(pid);
        }
    }
    // Each call adds one word: call i (from 0) sees i + 1 words, no call is
    // counted twice or overtakes an earlier one.
    assert_eq!(results, (1..=calls as i64).collect::<Vec<_>>());
    let old = killed.unwrap();
    assert!(f.pid().is_some_and(|p| p != old), "the killed process was replaced");
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_is_reported_with_the_plugins_last_words() {
    let plugins = PluginsDir::new();
    plugins.add_fixture("functions", "fixture", &[]);
    std::fs::write(plugins.path().join("functions/fixture.json"), r#"{"functions":[{"name":"whoami"}]}"#).unwrap();
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let strategy = RestartStrategy { attempts: 2, delay: 10, multiplier: 1.0, max_delay: 10, jitter_factor: 0.0 };
    let f = t.host.open_function("r1", "op0", "whoami", strategy).await.unwrap();
    // From now on the file fails at start: every restart attempt fails.
    plugins.add_fixture("functions", "fixture", &[("OORT_FIXTURE_MODE", "exit-at-start")]);
    kill9(f.pid().unwrap());
    let err = loop {
        match f.exec(&[vec![]]).await {
            Err(e @ HostError::Process(ProcessError::CrashLoop { .. })) => break e,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let msg = err.to_string();
    assert!(msg.contains("crash loop"), "{msg}");
    assert!(msg.contains("exiting at start as asked"), "stderr tail missing: {msg}");
    t.host.shutdown().await;
}

async fn start_error(env: &[(&str, &str)], timeouts: Timeouts) -> (String, Duration, TestHost, PluginsDir) {
    let plugins = PluginsDir::new();
    plugins.add_fixture("functions", "fixture", env);
    let t = TestHost::new(plugins.path(), timeouts);
    let started = Instant::now();
    let err = match t.host.open_function("r1", "op0", "fixture", RestartStrategy::default()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a misbehaving plugin was accepted: {env:?}"),
    };
    (err, started.elapsed(), t, plugins)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_exits_at_start_is_a_clear_error() {
    let (err, _, t, _p) = start_error(&[("OORT_FIXTURE_MODE", "exit-at-start")], fast_timeouts()).await;
    assert!(err.contains("exited during its handshake"), "{err}");
    assert!(err.contains("exiting at start as asked"), "{err}");
    assert!(sockets_under(t.host.runtime_dir()).iter().all(|s| s.ends_with("state.sock")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_hangs_in_its_handshake_times_out() {
    let timeouts = Timeouts { start: Duration::from_millis(800), ..fast_timeouts() };
    let (err, took, t, _p) = start_error(&[("OORT_FIXTURE_MODE", "hang-handshake")], timeouts).await;
    assert!(err.contains("did not become ready within"), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(sockets_under(t.host.runtime_dir()).iter().all(|s| s.ends_with("state.sock")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_speaking_another_protocol_version_is_refused() {
    let (err, _, _t, _p) = start_error(&[("OORT_FIXTURE_MODE", "wrong-protocol")], fast_timeouts()).await;
    assert!(err.contains("protocol version 99"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_claiming_another_name_is_refused() {
    let (err, _, _t, _p) = start_error(&[("OORT_FIXTURE_MODE", "wrong-name")], fast_timeouts()).await;
    assert!(err.contains("somebody-else"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_never_returns_times_out_and_the_plugin_stays_usable() {
    let plugins = PluginsDir::new();
    plugins.add_fixture("functions", "fixture", &[]);
    std::fs::write(
        plugins.path().join("functions/fixture.json"),
        r#"{"functions":[{"name":"sleep"},{"name":"whoami"}]}"#,
    )
    .unwrap();
    let timeouts = Timeouts { call: Duration::from_millis(500), ..fast_timeouts() };
    let t = TestHost::new(plugins.path(), timeouts);
    // One retry: the call times out twice, then gives up.
    let once = RestartStrategy { attempts: 1, ..RestartStrategy::default() };
    let f = t.host.open_function("r1", "op0", "sleep", once).await.unwrap();
    let started = Instant::now();
    let err = f.exec(&[vec![Value::Int(30_000)]]).await.unwrap_err();
    assert!(matches!(err, HostError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(f.exec(&[vec![Value::Int(1)]]).await.unwrap(), vec![Ok(Value::Int(1))]);
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_state_service_scopes_every_call_by_the_process_token() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "accumulateWordCount", "accumulateWordCount");
    plugins.add_fixture("functions", "fixture", &[]);
    std::fs::write(
        plugins.path().join("functions/fixture.json"),
        r#"{"functions":[{"name":"steal"},{"name":"tally"}]}"#,
    )
    .unwrap();
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let s = RestartStrategy::default();
    let victim = t.host.open_function("r1", "op0", "accumulateWordCount", s).await.unwrap();
    assert_eq!(int(victim.exec(&words("a b c")).await.unwrap()), 3);

    let tally = t.host.open_function("r2", "op0", "tally", s).await.unwrap();
    let steal = t.host.open_function("r2", "op1", "steal", s).await.unwrap();
    // Direct State calls work on the caller's own instance...
    assert_eq!(int(tally.exec(&[vec![Value::from("k")]]).await.unwrap()), 1);
    assert_eq!(int(tally.exec(&[vec![Value::from("k")]]).await.unwrap()), 2);
    assert_eq!(t.host.state().counter("r2/op0", "k"), Ok(2));
    let own = steal.exec(&[vec![Value::from("r2/op0"), Value::from("k")]]).await.unwrap();
    assert_eq!(own, vec![Ok(Value::Int(2))], "an instance of the same process may be read");
    // ...and never reach another process's instance, whatever id is sent.
    let stolen = steal.exec(&[vec![Value::from("r1/op0"), Value::from("allwordcount")]]).await.unwrap();
    match stolen.as_slice() {
        [Ok(Value::String(s))] => assert!(s.starts_with("PermissionDenied"), "{s}"),
        other => panic!("the steal succeeded or failed oddly: {other:?}"),
    }
    assert_eq!(t.host.state().counter("r1/op0", "allwordcount"), Ok(3));
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_reports_the_newest_version_and_that_exact_file_runs() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "echo@v1.9.0", "echo");
    let newest = plugins.add("functions", "echo@v1.10.0", "echo");
    plugins.add("functions", "echo@v1.10.0-rc.1", "echo");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let info = t.host.describe(PluginKind::Function, "echo").await.unwrap();
    assert_eq!(info.version, "1.10.0");
    assert_eq!(info.file, newest);
    let f = t.host.open_function("r1", "op0", "echo", RestartStrategy::default()).await.unwrap();
    let exe = std::fs::read_link(format!("/proc/{}/exe", f.pid().unwrap())).unwrap();
    assert_eq!(exe, newest, "the process runs the file describe reports");
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_plugin_file_names_are_refused_with_the_file_named() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "echo", "echo");
    plugins.add("functions", "bad name", "echo");
    plugins.add("functions", "echo.so", "echo");
    plugins.add("sinks", "log@", "log");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    assert_eq!(t.host.list(PluginKind::Function), vec!["echo".to_string()]);
    assert!(t.host.list(PluginKind::Sink).is_empty());
    let errors = t.host.catalog_errors().join("\n");
    for name in ["bad name", "echo.so", "log@"] {
        assert!(errors.contains(name), "no error names {name:?}: {errors}");
    }
}

/// Defect 4b at the host: every stop kills the plugin's whole tree, also a
/// child that ignores SIGTERM and one that left the group with `setsid`;
/// the short-lived Validate process's children go too.
#[tokio::test(flavor = "multi_thread")]
async fn every_stop_kills_children_that_ignore_sigterm_or_call_setsid() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("pids");
    let plugins = PluginsDir::new();
    plugins.add_fixture(
        "functions",
        "fixture",
        &[("OORT_FIXTURE_MODE", "spawn-children"), ("OORT_FIXTURE_PIDFILE", pidfile.to_str().unwrap())],
    );
    std::fs::write(plugins.path().join("functions/fixture.json"), r#"{"functions":[{"name":"whoami"}]}"#).unwrap();
    let recorded = || -> Vec<u32> {
        std::fs::read_to_string(&pidfile)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect()
    };
    let t = TestHost::new(plugins.path(), fast_timeouts());

    assert_eq!(t.host.validate_function("whoami", &[], &Default::default()).await.unwrap().problem, None);
    let validate = recorded();
    assert_eq!(validate.len(), 2, "{validate:?}");
    assert!(
        wait_until(Duration::from_secs(3), || validate.iter().all(|p| !alive(*p))).await,
        "the Validate process's children survive: {validate:?}"
    );

    let f = t.host.open_function("r1", "op0", "whoami", RestartStrategy::default()).await.unwrap();
    let kids = recorded()[2..].to_vec();
    assert!(kids.iter().all(|p| alive(*p)));
    // Let the watchdog see the tree (the plugin and its two children) once,
    // as it would in a running daemon.
    let seen = || f.process().usage.is_some_and(|u| u.processes >= 3);
    assert!(wait_until(Duration::from_secs(3), seen).await, "the watchdog never saw the tree: {:?}", f.process().usage);
    t.host.close_function(&f).await;
    assert!(
        wait_until(Duration::from_secs(3), || kids.iter().all(|p| !alive(*p))).await,
        "children survive the stop: {kids:?}"
    );
    t.host.shutdown().await;
}

/// A plugin over its memory limit is killed by the watchdog and restarted;
/// the reason names the limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_over_its_memory_limit_is_killed_with_the_limit_named() {
    let plugins = PluginsDir::new();
    plugins.add_fixture("functions", "fixture", &[("OORT_FIXTURE_MODE", "memory-hog")]);
    std::fs::write(
        plugins.path().join("functions/fixture.json"),
        r#"{"functions":[{"name":"whoami"}],"limits":{"memory":"48MiB"}}"#,
    )
    .unwrap();
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let never = RestartStrategy { attempts: 0, ..RestartStrategy::default() };
    let f = t.host.open_function("r1", "op0", "whoami", never).await.unwrap();
    // The first call starts the hog; calls succeed until the watchdog kills it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match f.exec(&[vec![]]).await {
            Err(e) => break e.to_string(),
            Ok(_) => assert!(Instant::now() < deadline, "the hog was never stopped"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(err.contains("exceeded its memory limit of 48 MiB (rss "), "{err}");
    let info = t.host.describe(PluginKind::Function, "fixture").await.unwrap();
    assert_eq!(info.processes[0].limits.memory, Some(48 << 20));
    t.host.close_function(&f).await;
    t.host.shutdown().await;
}
