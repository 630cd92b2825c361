//! The bundled plugins and the SDK's side of the handshake, as real processes.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::Duration;

use oort_host::process::RestartStrategy;
use oort_proto::{Record, Value};
use oort_tests::{bin, fast_timeouts, list_services, PluginsDir, TestHost};

#[test]
fn a_plugin_run_by_hand_says_what_it_is_and_exits_78() {
    let out = Command::new(bin("echo")).env_remove("OORT_PLUGIN_SOCKET").output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is an Oort plugin"), "{err}");
}

#[test]
fn a_plugin_refuses_protocol_versions_it_does_not_speak() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("echo"))
        .env("OORT_PLUGIN_SOCKET", dir.path().join("p.sock"))
        .env("OORT_PROTOCOL_VERSIONS", "2,3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("offers protocol versions \"2,3\""), "{err}");
    assert!(!dir.path().join("p.sock").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn function_batches_carry_per_row_errors() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "countPlusOne", "countPlusOne");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let f = t.host.open_function("r1", "op0", "countPlusOne", RestartStrategy::default()).await.unwrap();
    let rows = vec![
        vec![Value::List(vec![Value::Int(1), Value::Int(2)])],
        vec![Value::from("not a list")],
        vec![Value::List(vec![])],
    ];
    let out = f.exec(&rows).await.unwrap();
    assert_eq!(out[0], Ok(Value::Int(3)));
    assert_eq!(out[1], Err("arg is not a list, got string".to_string()));
    assert_eq!(out[2], Ok(Value::Int(1)));
    // A large batch is one call.
    let big: Vec<Vec<Value>> = (0..10_000).map(|i| vec![Value::List(vec![Value::Int(i)])]).collect();
    let out = f.exec(&big).await.unwrap();
    assert_eq!(out.len(), 10_000);
    assert!(out.iter().all(|r| r == &Ok(Value::Int(2))));
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_random_source_emits_records_shaped_like_its_pattern() {
    let plugins = PluginsDir::new();
    plugins.add("sources", "random", "random");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let pattern = Value::Map(BTreeMap::from([
        ("count".to_string(), Value::Int(0)),
        ("word".to_string(), Value::List(vec![Value::from("a"), Value::from("b")])),
    ]));
    let props = HashMap::from([
        ("interval".to_string(), Value::Int(1)),
        ("seed".to_string(), Value::Int(10)),
        ("pattern".to_string(), pattern),
        ("rngSeed".to_string(), Value::Int(42)),
    ]);
    let s = t.host.open_source("r1", "random", "", props, RestartStrategy::default()).await.unwrap();
    let mut rx = s.read(64).await.unwrap();
    let mut seen = 0;
    while seen < 20 {
        let batch = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap().unwrap();
        for r in batch.records {
            let count = r.fields["count"].as_i64().unwrap();
            assert!((0..10).contains(&count), "{count}");
            assert!(matches!(r.fields["word"].as_str(), Some("a" | "b")));
            assert!(r.timestamp_ms > 0);
            seen += 1;
        }
    }
    t.host.close_source(&s).await;
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_source_property_is_a_clear_open_error() {
    let plugins = PluginsDir::new();
    plugins.add("sources", "random", "random");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let props = HashMap::from([("interval".to_string(), Value::from("soon"))]);
    let err = t.host.open_source("r1", "random", "", props, RestartStrategy::default()).await.err().unwrap();
    assert!(err.to_string().contains("property interval must be an integer"), "{err}");
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_sink_writes_one_json_object_per_line() {
    let plugins = PluginsDir::new();
    plugins.add("sinks", "file", "file");
    plugins.add("sinks", "log", "log");
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("out.jsonl");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let props = HashMap::from([
        ("path".to_string(), Value::from(path.to_str().unwrap())),
        ("fsync".to_string(), Value::Bool(true)),
    ]);
    let sink = t.host.open_sink("r1", "sink_0", "file", props, RestartStrategy::default()).await.unwrap();
    let record = |i: i64| {
        Record::from_fields(BTreeMap::from([("n".to_string(), Value::Int(i)), ("s".to_string(), Value::from("x"))]))
    };
    sink.write(&[record(1), record(2)]).await.unwrap();
    sink.write(&[record(3)]).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"n\":1,\"s\":\"x\"}\n{\"n\":2,\"s\":\"x\"}\n{\"n\":3,\"s\":\"x\"}\n"
    );

    let log = t.host.open_sink("r1", "sink_1", "log", HashMap::new(), RestartStrategy::default()).await.unwrap();
    log.write(&[record(4)]).await.unwrap();

    let missing =
        t.host.open_sink("r2", "sink_0", "file", HashMap::new(), RestartStrategy::default()).await.err().unwrap();
    assert!(missing.to_string().contains("needs a string property `path`"), "{missing}");
    t.host.close_sink(&sink).await;
    t.host.shutdown().await;
}

/// A `kill -9` during a write can leave half a line that was never
/// acknowledged; the next open must not append after it.
#[tokio::test(flavor = "multi_thread")]
async fn the_file_sink_repairs_a_line_a_crash_cut_short() {
    let plugins = PluginsDir::new();
    plugins.add("sinks", "file", "file");
    let out = tempfile::tempdir().unwrap();
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let record = Record::from_fields(BTreeMap::from([("n".to_string(), Value::Int(7))]));
    // (what the file holds before the sink opens it, what it must hold after one write)
    let long_torn = format!("{{\"n\":1}}\n{{\"s\":\"{}", "x".repeat(300_000));
    let cases = [
        ("{\"n\":1}\n{\"n\":92".to_string(), "{\"n\":1}\n{\"n\":7}\n"),
        ("{\"n\":1}\n{\"n\":2}".to_string(), "{\"n\":1}\n{\"n\":2}\n{\"n\":7}\n"),
        ("{\"n\":".to_string(), "{\"n\":7}\n"),
        ("{\"n\":1}\n".to_string(), "{\"n\":1}\n{\"n\":7}\n"),
        (String::new(), "{\"n\":7}\n"),
        (long_torn, "{\"n\":1}\n{\"n\":7}\n"),
    ];
    for (i, (before, after)) in cases.iter().enumerate() {
        let path = out.path().join(format!("out{i}.jsonl"));
        std::fs::write(&path, before).unwrap();
        let props = HashMap::from([("path".to_string(), Value::from(path.to_str().unwrap()))]);
        let sink =
            t.host.open_sink("r1", &format!("sink_{i}"), "file", props, RestartStrategy::default()).await.unwrap();
        sink.write(std::slice::from_ref(&record)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), *after, "case {i}");
        t.host.close_sink(&sink).await;
    }
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_plugin_process_serves_health_and_reflection() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "echo", "echo");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let f = t.host.open_function("r1", "op0", "echo", RestartStrategy::default()).await.unwrap();
    let socket = oort_tests::plugin_sockets(t.host.runtime_dir()).into_iter().next().unwrap();
    assert_eq!(
        list_services(&socket).await,
        vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "oort.plugin.v1.Function",
            "oort.plugin.v1.Plugin",
            "oort.plugin.v1.Sink",
            "oort.plugin.v1.Source",
        ]
    );
    t.host.close_function(&f).await;
    t.host.shutdown().await;
}
