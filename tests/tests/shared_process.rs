//! `Export::shared`: one plugin process serves every rule, each instance with
//! an object of its own (unlike a singleton, whose one object every rule
//! shares), and a crash restarts every rule's instance on it.

use std::collections::HashMap;
use std::time::Duration;

use oort_host::process::RestartStrategy;
use oort_host::SourceInstance;
use oort_proto::Value;
use oort_tests::{fast_timeouts, kill9, PluginsDir, TestHost};

/// The `n` of the next `want` records a source instance sends.
async fn numbers(source: &SourceInstance, want: usize) -> Vec<i64> {
    let mut rx = source.read(4).await.expect("read");
    let mut got = Vec::new();
    while got.len() < want {
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a batch within 10 s")
            .expect("stream open")
            .expect("a batch");
        got.extend(batch.records.iter().map(|r| r.fields["n"].as_i64().expect("int n")));
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn one_process_serves_every_rule_with_an_object_per_instance() {
    let plugins = PluginsDir::new();
    plugins.add_with_env("sources", "conformance", "conformance", &[("OORT_CONFORMANCE_SINGLETON", "shared")]);
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let props = || HashMap::from([("count".to_string(), Value::Int(1000))]);
    let mut sources = Vec::new();
    for rule in ["r1", "r2", "r3"] {
        let s = t.host.open_source(rule, "conformance", "", props(), RestartStrategy::default()).await.unwrap();
        sources.push(s);
    }
    let pids: Vec<_> = sources.iter().map(|s| s.pid().expect("pid")).collect();
    assert!(pids.iter().all(|p| *p == pids[0]), "one process for three rules: {pids:?}");
    // Each instance counts from 0 on its own: three objects, not one.
    for s in &sources {
        assert_eq!(numbers(s, 8).await[..8], [0, 1, 2, 3, 4, 5, 6, 7]);
    }
    // A crash takes the three rules' instances down together; each comes
    // back on the new process.
    kill9(pids[0]);
    let restarted = async {
        loop {
            if let Some(p) = sources[0].pid().filter(|p| *p != pids[0]) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let new_pid = tokio::time::timeout(Duration::from_secs(10), restarted).await.expect("restarted within 10 s");
    for s in &sources {
        assert_eq!(s.pid(), Some(new_pid), "every instance on the new process");
        assert!(!numbers(s, 4).await.is_empty(), "reads again after the restart");
    }
    for s in sources {
        t.host.close_source(&s).await;
    }
    t.host.shutdown().await;
}

/// A sink instance whose write outlives its deadline and whose Close then
/// times out too (the SDK's Close waits for the write) may still append
/// after its rule has recovered. In a shared process nothing else would end
/// that write, so the host kills the process; the other rule's sink reopens
/// on the new one and keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn a_sink_that_cannot_close_in_time_is_fenced_by_killing_its_shared_process() {
    let plugins = PluginsDir::new();
    plugins.add_fixture("sinks", "slow", &[("OORT_FIXTURE_EXPORT", "shared"), ("OORT_FIXTURE_NAME", "slow")]);
    let timeouts = oort_host::process::Timeouts { call: Duration::from_millis(500), ..fast_timeouts() };
    let t = TestHost::new(plugins.path(), timeouts);
    let props = |ms: i64| HashMap::from([("delayMs".to_string(), Value::Int(ms))]);
    let stuck = t.host.open_sink("r1", "sink_0", "slow", props(3_000), RestartStrategy::default()).await.unwrap();
    let healthy = t.host.open_sink("r2", "sink_0", "slow", props(0), RestartStrategy::default()).await.unwrap();
    let pid = stuck.pid().expect("pid");
    assert_eq!(healthy.pid(), Some(pid), "one process for both rules");
    let record = oort_proto::Record::default();
    let written = stuck.write(std::slice::from_ref(&record)).await;
    assert!(written.is_err(), "a 3 s write against a 500 ms deadline fails: {written:?}");
    t.host.close_sink(&stuck).await;
    let restarted = async {
        loop {
            if let Some(p) = healthy.pid().filter(|p| *p != pid) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), restarted)
        .await
        .expect("the shared process was killed and restarted");
    assert!(!oort_tests::alive(pid), "the old process is gone, and its write with it");
    healthy.write(std::slice::from_ref(&record)).await.expect("the other rule's sink works on the new process");
    t.host.close_sink(&healthy).await;
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_validation_ending_never_stops_the_shared_process_a_rule_is_opening_on() {
    // A rule's validation uses a singleton's shared process briefly and
    // releases it; a rule opening its instance on the same process at that
    // moment must find it running (it once got "plugin echo is stopped").
    let plugins = PluginsDir::new();
    plugins.add("functions", "echo", "echo");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let arg = oort_core::ArgInfo { expression: "x".into(), literal: None, column: Some("x".into()) };
    let pins = oort_host::Pins::default();
    for i in 0..40 {
        let rule = format!("r{i}");
        let (validated, opened) = tokio::join!(
            t.host.validate_function("echo", std::slice::from_ref(&arg), &pins),
            t.host.open_function(&rule, "op0", "echo", RestartStrategy::default())
        );
        validated.unwrap_or_else(|e| panic!("round {i}: validate: {e}"));
        let f = opened.unwrap_or_else(|e| panic!("round {i}: open: {e}"));
        assert_eq!(f.exec(&[vec![Value::Int(i)]]).await.unwrap(), vec![Ok(Value::Int(i))]);
        // The last instance closes: the next round starts the process again.
        t.host.close_function(&f).await;
    }
    t.host.shutdown().await;
}
