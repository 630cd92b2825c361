//! eKuiper's `SHARED` streams through the real daemon: every rule on a shared
//! stream reads the one source instance (the same random records), a stream
//! without it gives each rule its own instance, and checkpointing rules are
//! refused on a shared stream.

use oort_tests::{Daemon, PluginsDir};
use serde_json::json;

/// `n` lines of a rule's file sink.
fn lines(d: &Daemon, rule: &str, path: &std::path::Path, n: usize) -> Vec<String> {
    d.wait_text_lines(rule, path, n).into_iter().take(n).collect()
}

fn create(d: &Daemon, body: serde_json::Value) -> (u16, String) {
    d.http("POST", "/rules", Some(&body.to_string()))
}

#[test]
fn rules_on_a_shared_stream_read_one_source_instance() {
    let p = PluginsDir::new();
    p.add("sources", "random", "random");
    p.add("sinks", "file", "file");
    let out = tempfile::tempdir().unwrap();
    let d = Daemon::start(p.path(), &[]);
    // Random floats: two instances never produce the same sequence.
    for (name, shared) in [("shared_r", "SHARED=\"true\", "), ("own_r", "")] {
        let sql = format!(
            r#"CREATE STREAM {name} () WITH (TYPE="random", {shared}interval="10", seed="1000000", pattern='{{"x": 1.0}}')"#
        );
        let (code, body) = d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string()));
        assert_eq!(code, 201, "{body}");
    }
    let path = |rule: &str| out.path().join(format!("{rule}.jsonl"));
    for (rule, stream) in [("a", "shared_r"), ("b", "shared_r"), ("c", "own_r"), ("e", "own_r")] {
        let body = json!({"id": rule, "sql": format!("SELECT x FROM {stream}"),
            "actions": [{"file": {"path": path(rule).display().to_string()}}]});
        let (code, text) = create(&d, body);
        assert_eq!(code, 201, "{text}");
    }
    // Both rules read the hub; whichever joined it second starts inside the
    // other's sequence (rules start concurrently, so either may be first), and
    // from there the two files hold the same records in the same order.
    let (a, b) = (lines(&d, "a", &path("a"), 40), lines(&d, "b", &path("b"), 40));
    let (a, b) = (d.wait_text_lines("a", &path("a"), a.len() + 40), d.wait_text_lines("b", &path("b"), b.len() + 40));
    let (first, second) = if a.contains(&b[0]) { (&a, &b) } else { (&b, &a) };
    let start = first
        .iter()
        .position(|l| *l == second[0])
        .unwrap_or_else(|| panic!("neither rule's first record is in the other's output: a {:?}, b {:?}", a[0], b[0]));
    let common = (first.len() - start).min(second.len());
    assert!(common >= 40, "only {common} records in common");
    assert_eq!(first[start..start + common], second[..common], "the same records, in order");
    // The stream's source shows in both rules' status (operator `source`).
    let source_pid = |rule: &str| {
        let status = d.get_json(&format!("/rules/{rule}/status"));
        let plugins = status["plugins"].as_array().cloned().unwrap_or_default();
        let source = plugins.iter().find(|p| p["operator"] == "source").cloned();
        source.and_then(|p| p["pid"].as_u64()).unwrap_or_else(|| panic!("{rule}: no source in {status}"))
    };
    assert_eq!(source_pid("a"), source_pid("b"), "the source's process, seen from both rules");
    // Without SHARED each rule has its own instance: different records.
    let (c, e) = (lines(&d, "c", &path("c"), 20), lines(&d, "e", &path("e"), 20));
    assert!(!c.iter().any(|l| e.contains(l)), "two instances of random gave the same record");

    // A shared source cannot be rewound for one rule: no checkpoints on it.
    let body = json!({"id": "q", "sql": "SELECT x FROM shared_r", "options": {"qos": 1},
        "actions": [{"file": {"path": path("q").display().to_string()}}]});
    let (code, text) = create(&d, body);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("stream shared_r is SHARED") && text.contains("qos 1"), "{text}");

    // The last rule to leave closes the instance; a new rule opens it again.
    for rule in ["a", "b"] {
        assert_eq!(d.http("DELETE", &format!("/rules/{rule}"), None).0, 200);
    }
    let body = json!({"id": "f", "sql": "SELECT x FROM shared_r",
        "actions": [{"file": {"path": path("f").display().to_string()}}]});
    assert_eq!(create(&d, body).0, 201);
    let f = lines(&d, "f", &path("f"), 5);
    assert!(!f.iter().any(|l| a.contains(l)), "a new instance after the last rule left");
}
