//! eKuiper's built-in `memory` source and sink through the real daemon: one
//! rule's output feeds other rules' streams by topic, with MQTT wildcards,
//! as rows and as columns; bad topics and properties are refused when the
//! stream or rule is created.

use std::io::Write;
use std::path::Path;

use oort_tests::{Daemon, PluginsDir};
use serde_json::{json, Value};

fn daemon() -> (PluginsDir, Daemon) {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sources", "bench", "bench");
    p.add("sinks", "file", "file");
    let d = Daemon::start(p.path(), &[]);
    (p, d)
}

fn post(d: &Daemon, path: &str, body: Value) -> (u16, String) {
    d.http("POST", path, Some(&body.to_string()))
}

fn created(d: &Daemon, path: &str, body: Value) {
    let (code, answer) = post(d, path, body.clone());
    assert_eq!(code, 201, "{body}: {answer}");
}

fn file_action(path: &Path) -> Value {
    json!({"file": {"path": path.display().to_string()}})
}

#[test]
fn one_rules_output_feeds_the_streams_whose_topic_filters_match() {
    let (_p, d) = daemon();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for n in 0..100 {
        writeln!(f, "{}", json!({ "n": n })).unwrap();
    }
    drop(f);
    // The readers first: a topic keeps nothing for a subscriber to come.
    for (stream, filter) in [("plus", "chain/+/out"), ("all", "chain/#"), ("elsewhere", "other/#")] {
        let sql = format!(r#"CREATE STREAM {stream} () WITH (TYPE="memory", DATASOURCE="{filter}")"#);
        created(&d, "/streams", json!({ "sql": sql }));
    }
    let out = |name: &str| dir.path().join(format!("{name}.jsonl"));
    created(
        &d,
        "/rules",
        json!({"id": "even", "sql": "SELECT n, d FROM plus WHERE n % 2 = 0", "actions": [file_action(&out("even"))]}),
    );
    created(&d, "/rules", json!({"id": "every", "sql": "SELECT * FROM all", "actions": [file_action(&out("every"))]}));
    created(
        &d,
        "/rules",
        json!({"id": "none", "sql": "SELECT * FROM elsewhere", "actions": [file_action(&out("none"))]}),
    );
    // Two writers on two topics, one of them with a second action.
    let sql = format!(r#"CREATE STREAM numbers () WITH (TYPE="file", DATASOURCE="{}")"#, input.display());
    created(&d, "/streams", json!({ "sql": sql }));
    created(
        &d,
        "/rules",
        json!({"id": "a", "sql": "SELECT n, n * 2 AS d FROM numbers",
               "actions": [{"memory": {"topic": "chain/a/out"}}, file_action(&out("a"))]}),
    );
    created(
        &d,
        "/rules",
        json!({"id": "b", "sql": "SELECT n + 1000 AS n, 0 AS d FROM numbers",
               "actions": [{"memory": {"topic": "chain/b/out", "sendSingle": true}}]}),
    );

    let even = d.wait_lines("even", &out("even"), 100);
    let every = d.wait_lines("every", &out("every"), 200);
    d.wait_lines("a", &out("a"), 100);
    let mut got: Vec<(i64, i64)> = even.iter().map(|l| (l["n"].as_i64().unwrap(), l["d"].as_i64().unwrap())).collect();
    got.sort();
    let want: Vec<(i64, i64)> =
        (0..100).step_by(2).map(|n| (n, n * 2)).chain((0..100).step_by(2).map(|n| (n + 1000, 0))).collect();
    assert_eq!(got, want);
    let mut ns: Vec<i64> = every.iter().map(|l| l["n"].as_i64().unwrap()).collect();
    ns.sort();
    assert_eq!(ns, (0..100).chain(1000..1100).collect::<Vec<_>>());
    // Nothing more than that arrives, and nothing at all on another topic.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(out("every")).unwrap().lines().count(), 200);
    assert!(!out("none").exists() || std::fs::read_to_string(out("none")).unwrap().is_empty());
    let status = d.get_json("/rules/a/status");
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["sink_memory_0_0_records_out_total"], 100, "{status}");
    let status = d.get_json("/rules/every/status");
    assert_eq!(status["source_all_0_records_in_total"], 200, "{status}");
}

#[test]
fn columns_from_a_columnar_source_go_through_a_topic() {
    let (_p, d) = daemon();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    created(&d, "/streams", json!({"sql": r#"CREATE STREAM fed () WITH (TYPE="memory", DATASOURCE="fed")"#}));
    created(
        &d,
        "/rules",
        json!({"id": "down", "sql": "SELECT n, text FROM fed WHERE n >= 4990", "actions": [file_action(&out)]}),
    );
    created(&d, "/streams", json!({"sql": r#"CREATE STREAM gen () WITH (TYPE="bench", count="5000")"#}));
    created(
        &d,
        "/rules",
        json!({"id": "up", "sql": "SELECT n, text FROM gen", "actions": [{"memory": {"topic": "fed"}}]}),
    );
    let lines = d.wait_lines("down", &out, 10);
    let ns: Vec<i64> = lines.iter().map(|l| l["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (4990..5000).collect::<Vec<_>>());
    assert!(lines.iter().all(|l| l["text"] == "alpha beta gamma"), "{lines:?}");
}

#[test]
fn bad_topics_and_properties_are_refused_at_creation() {
    let (_p, d) = daemon();
    for (sql, why) in [
        (r#"CREATE STREAM m () WITH (TYPE="memory")"#, "needs its topic as DATASOURCE"),
        (r#"CREATE STREAM m () WITH (TYPE="memory", DATASOURCE="a/b#")"#, "a wildcard must take a whole level"),
        (r#"CREATE STREAM m () WITH (TYPE="memory", DATASOURCE="a/#/b")"#, "# must be the last level"),
    ] {
        let (code, body) = post(&d, "/streams", json!({ "sql": sql }));
        assert_eq!(code, 400, "{sql}: {body}");
        assert!(body.contains(why), "{sql}: {body}");
    }
    created(&d, "/streams", json!({"sql": r#"CREATE STREAM m () WITH (TYPE="memory", DATASOURCE="in")"#}));
    for (action, why) in [
        (json!({"memory": {}}), "needs property topic"),
        (json!({"memory": {"topic": "out/+"}}), "has no wildcards"),
        (json!({"memory": {"topic": 7}}), "must be a non-empty string"),
        (json!({"memory": {"topic": "out", "dataTemplate": "{{.n}}"}}), "takes no payload options"),
        (json!({"memory": {"topic": "out", "colour": "blue"}}), "unknown property \\\"colour\\\" of the memory sink"),
    ] {
        let (code, body) =
            post(&d, "/rules", json!({"id": "r", "sql": "SELECT * FROM m", "actions": [action.clone()]}));
        assert_eq!(code, 400, "{action}: {body}");
        assert!(body.contains(why), "{action}: {body}");
    }
}
