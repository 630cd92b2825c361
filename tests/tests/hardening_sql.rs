//! Issue 10: no rule or stream definition can take the daemon down. The real
//! daemon over REST, real plugin processes, a real RocksDB.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oort_store::{Namespace, Store};
use oort_tests::{json, Daemon, PluginsDir};
use serde_json::{json, Value as Json};

fn plugins() -> PluginsDir {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    p
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(n: i64) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let mut f = std::fs::File::create(dir.path().join("in.jsonl")).unwrap();
        for i in 0..n {
            writeln!(f, "{{\"n\":{i}}}").unwrap();
        }
        Files { dir }
    }
    fn input(&self) -> PathBuf {
        self.dir.path().join("in.jsonl")
    }
    fn output(&self, rule: &str) -> PathBuf {
        self.dir.path().join(format!("{rule}.jsonl"))
    }
    fn create_stream(&self, d: &Daemon) {
        let sql = format!(r#"CREATE STREAM s1 () WITH (TYPE="file", DATASOURCE="{}")"#, self.input().display());
        let (status, body) = d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string()));
        assert_eq!(status, 201, "{body}");
    }
    fn rule(&self, id: &str, sql: &str) -> String {
        json!({"id": id, "sql": sql, "actions": [{"file": {"path": self.output(id).display().to_string()}}]})
            .to_string()
    }
}

fn wait_lines(d: &Daemon, path: &Path, n: usize) -> Vec<Json> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<Json> = std::fs::read_to_string(path).unwrap_or_default().lines().map(json).collect::<Vec<_>>();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} has {} of {n} lines\nlog:\n{}", path.display(), got.len(), d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_alive(d: &Daemon) {
    assert_eq!(d.http("GET", "/ping", None).0, 200, "log:\n{}", d.log());
}

fn error_of(body: &str) -> String {
    json(body)["error"].as_str().unwrap_or_else(|| panic!("no error in {body}")).to_string()
}

#[test]
fn a_300_term_sum_and_a_300_term_and_chain_evaluate_and_the_daemon_survives() {
    // Issue 10, defect 1: both were accepted and overflowed the stack of the
    // daemon's worker on the first batch.
    let p = plugins();
    let f = Files::new(10);
    let d = Daemon::start(p.path(), &[]);
    f.create_stream(&d);
    let sum = vec!["n"; 300].join(" + ");
    let (status, body) = d.http("POST", "/rules", Some(&f.rule("sum", &format!("SELECT {sum} AS y FROM s1"))));
    assert_eq!(status, 201, "{body}");
    let and = (0..300).map(|i| format!("n > -{i}")).collect::<Vec<_>>().join(" AND ");
    let or = (0..300).map(|i| format!("n = {}", 1000 + i)).collect::<Vec<_>>().join(" OR ");
    let sql = format!("SELECT n FROM s1 WHERE {and} AND NOT ({or})");
    let (status, body) = d.http("POST", "/rules", Some(&f.rule("chain", &sql)));
    assert_eq!(status, 201, "{body}");

    let sums = wait_lines(&d, &f.output("sum"), 10);
    assert_eq!(
        sums.iter().map(|r| r["y"].as_i64().unwrap()).collect::<Vec<_>>(),
        (0..10).map(|n| 300 * n).collect::<Vec<_>>()
    );
    // `n > -0` drops row 0.
    let kept = wait_lines(&d, &f.output("chain"), 9);
    assert_eq!(kept.iter().map(|r| r["n"].as_i64().unwrap()).collect::<Vec<_>>(), (1..10).collect::<Vec<_>>());
    assert_alive(&d);
    assert_eq!(d.get_json("/rules/sum/status")["status"], "running");
}

#[test]
fn oversized_expressions_are_refused_naming_the_limit() {
    let p = plugins();
    let f = Files::new(1);
    let d = Daemon::start(p.path(), &[]);
    f.create_stream(&d);
    let cases = [
        // 100 000 terms: the POST itself used to kill the daemon.
        (format!("SELECT {} AS y FROM s1", vec!["n"; 100_000].join("+")), "bytes long; the limit is 65536"),
        (format!("SELECT n{} AS y FROM s1", " IS NULL".repeat(300)), "expression is nested 301 deep; the limit is 128"),
        (format!("SELECT {} AS y FROM s1", vec!["n"; 10_001].join("+")), "more than 10000 nodes; the limit is 10000"),
    ];
    for (sql, want) in cases {
        let (status, body) = d.http("POST", "/rules", Some(&f.rule("r1", &sql)));
        assert_eq!(status, 400, "{body}");
        assert!(error_of(&body).contains(want), "{body}");
        assert_alive(&d);
    }
    assert_eq!(d.get_json("/rules"), json!([]));
}

#[test]
fn malformed_rule_bodies_and_absurd_options_are_refused() {
    let p = plugins();
    let f = Files::new(1);
    let d = Daemon::start(p.path(), &[]);
    f.create_stream(&d);
    let out = f.output("r1").display().to_string();
    let with_options = |options: Json| {
        json!({"id": "r1", "sql": "SELECT n FROM s1", "actions": [{"file": {"path": out}}], "options": options})
            .to_string()
    };
    let cases = [
        // serde reads a struct from an array of its fields: this was a 201.
        (
            json!(["r1", "SELECT n FROM s1", [{"file": {"path": out}}]]).to_string(),
            "a rule must be a JSON object, got an array",
        ),
        ("\"r1\"".to_string(), "a rule must be a JSON object, got a string"),
        (with_options(json!({"checkpointInterval": u64::MAX})), "checkpointInterval must be at most 86400000 ms"),
        (with_options(json!({"checkpointInterval": "100000h"})), "checkpointInterval must be at most 86400000 ms"),
        (with_options(json!({"checkpointInterval": -5})), "checkpointInterval must be milliseconds"),
        (with_options(json!({"bufferLength": 0})), "bufferLength must be between 1 and 65536"),
        (with_options(json!({"restartStrategy": {"delay": u64::MAX}})), "restartStrategy.delay must be at most"),
        (with_options(json!({"restartStrategy": {"multiplier": 1e9}})), "restartStrategy.multiplier must be between"),
    ];
    for (body, want) in cases {
        let (status, answer) = d.http("POST", "/rules", Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(error_of(&answer).contains(want), "{body}: {answer}");
    }
    assert_eq!(d.get_json("/rules"), json!([]));
}

#[test]
fn create_stream_is_linear_bounded_and_refuses_duplicate_options() {
    // Issue 10, defects 6 and 10: 130 000 fields took 30 s (a quadratic
    // duplicate check), and a repeated WITH key silently kept the last value.
    let p = plugins();
    let d = Daemon::start(p.path(), &[]);
    let fields = |n: usize| (0..n).map(|i| format!("f{i} BIGINT")).collect::<Vec<_>>().join(", ");
    let create = |name: &str, n: usize| {
        let sql = format!(r#"CREATE STREAM {name} ({}) WITH (TYPE="file", DATASOURCE="/nowhere")"#, fields(n));
        d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string()))
    };
    let (status, body) = create("wide", 10_000);
    assert_eq!(status, 201, "{body}");
    assert_eq!(d.get_json("/streams/wide")["StreamFields"].as_array().unwrap().len(), 10_000);
    let (status, body) = create("wider", 10_001);
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body), "the stream declares more than 10000 fields; the limit is 10000");
    // 130 000 fields: over the statement limit (and under the body limit).
    let (status, body) = create("widest", 130_000);
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("the limit is 1048576"), "{body}");

    let dup = r#"CREATE STREAM d () WITH (TYPE="file", DATASOURCE="/a", datasource="/b")"#;
    let (status, body) = d.http("POST", "/streams", Some(&json!({ "sql": dup }).to_string()));
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body), "option datasource is given twice in WITH (option names are case-insensitive)");
    assert_alive(&d);
}

#[test]
fn a_stored_rule_that_no_longer_validates_is_loaded_in_error_not_fatal() {
    // Issue 10, defect 1 (d): rules saved by an older version with laxer
    // checks (a 300-deep expression, an absurd interval) used to crash the
    // daemon at every start, or would now keep it from starting.
    let p = plugins();
    let f = Files::new(5);
    let data = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(p.path(), data.path(), &[]);
    f.create_stream(&d);
    let (status, body) = d.http("POST", "/rules", Some(&f.rule("good", "SELECT n FROM s1")));
    assert_eq!(status, 201, "{body}");
    wait_lines(&d, &f.output("good"), 5);
    d.terminate();

    {
        let store = Store::open(&data.path().join("db")).unwrap();
        let stored = |rule: Json| serde_json::to_vec(&json!({"rule": rule, "running": true})).unwrap();
        let deep = json!({"id": "deep", "sql": format!("SELECT n{} AS y FROM s1", " IS NULL".repeat(300)),
                          "actions": [{"file": {"path": f.output("deep").display().to_string()}}]});
        store.put(Namespace::Rules, "deep", &stored(deep)).unwrap();
        let slow = json!({"id": "slow", "sql": "SELECT n FROM s1", "options": {"checkpointInterval": u64::MAX},
                          "actions": [{"file": {"path": f.output("slow").display().to_string()}}]});
        store.put(Namespace::Rules, "slow", &stored(slow)).unwrap();
    }

    let d = Daemon::start_in(p.path(), data.path(), &[]);
    let rules = d.get_json("/rules");
    assert_eq!(
        rules,
        json!([{"id": "deep", "status": "error"}, {"id": "good", "status": "running"}, {"id": "slow", "status": "error"}])
    );
    let deep = d.get_json("/rules/deep/status");
    assert!(deep["message"].as_str().unwrap().contains("expression is nested 301 deep; the limit is 128"), "{deep}");
    let slow = d.get_json("/rules/slow/status");
    assert!(slow["message"].as_str().unwrap().contains("checkpointInterval must be at most"), "{slow}");
    // It cannot be started, but it can be fixed or deleted.
    let (status, body) = d.http("POST", "/rules/deep/start", None);
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("nested 301 deep"), "{body}");
    let (status, body) = d.http("PUT", "/rules/deep", Some(&f.rule("deep", "SELECT n IS NULL AS y FROM s1")));
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.http("POST", "/rules/deep/start", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_lines(&d, &f.output("deep"), 5)[0]["y"], false);
    let (status, body) = d.http("DELETE", "/rules/slow", None);
    assert_eq!(status, 200, "{body}");
    assert_alive(&d);
}
