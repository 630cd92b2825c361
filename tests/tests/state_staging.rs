//! Writes a plugin makes through the State service belong to the batch it is
//! handling: a batch whose answer never arrived is retried, and its writes
//! must not count twice (issue 10, defect 11).

use oort_host::process::RestartStrategy;
use oort_proto::Value;
use oort_tests::{fast_timeouts, PluginsDir, TestHost};

fn counts(outcomes: Vec<Result<Value, String>>) -> Vec<i64> {
    outcomes
        .into_iter()
        .map(|o| match o {
            Ok(Value::Int(n)) => n,
            other => panic!("tally answered {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_killed_mid_batch_counts_each_row_once() {
    let plugins = PluginsDir::new();
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("died");
    let marker_str = marker.to_str().unwrap();
    // The fixture increments through the State service per row and exits
    // (once, exit status 9) right after the 7th increment, before answering its batch.
    plugins.add_fixture("functions", "fixture", &[("OORT_FIXTURE_DIE_AT", "7"), ("OORT_FIXTURE_MARKER", marker_str)]);
    std::fs::write(plugins.path().join("functions/fixture.json"), r#"{"functions":[{"name":"tally"}]}"#).unwrap();
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let tally = t.host.open_function("r1", "fn_0_tally", "tally", RestartStrategy::default()).await.unwrap();
    let batch = vec![vec![Value::from("n")]; 3];
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.extend(counts(tally.exec(&batch).await.unwrap()));
    }
    assert!(marker.exists(), "the plugin was killed mid-batch");
    assert_eq!(tally.restarts(), 1);
    assert_eq!(seen, (1..=15).collect::<Vec<_>>(), "every row counted once, in order");
    assert_eq!(t.host.state().counter("r1/fn_0_tally", "n"), Ok(15));
    // What a restart or a checkpoint would hand on is the accepted count too.
    let entries = t.host.state().entries("r1/fn_0_tally");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry, Some(oort_proto::plugin::v1::state_entry::Entry::Counter(15)));
    t.host.shutdown().await;
}
