//! The engine on columns, through the real daemon: the `bench` source sends
//! Arrow columns, rules without a window run `WHERE` and their select lists
//! on them (plugin functions in Rust and Go included) and hand the `file`
//! sink columns; a windowed rule takes the same batches as rows. Every rule
//! writes exactly what it writes on the row path (`--data-encoding rows`),
//! and the rule status counts the batches that went as columns.
//!
//! Needs the Go plugins built (`bash scripts/build-go.sh`), as `.ci/run` does.

use std::path::Path;

use oort_tests::{bin_dir, Daemon, PluginsDir};
use serde_json::{json, Value};

const RECORDS: i64 = 3000;

/// The rules, and how many lines each writes for the bench records 0..3000
/// (`k` = n mod 10, `x` = (n mod 100) / 4).
fn rules() -> Vec<(&'static str, &'static str, usize)> {
    let filtered = (0..RECORDS).filter(|n| n % 10 < 5 && (n % 100) as f64 / 4.0 > 1.0).count();
    vec![
        ("star", "SELECT * FROM s WHERE n % 3 = 0", (RECORDS / 3) as usize),
        ("calls", "SELECT echo(n) AS e, cf_echo(text) AS t, x * 2 AS x2, k, n FROM s WHERE k < 5 AND x > 1", filtered),
        ("lists", "SELECT countPlusOne(l) AS c, upper(text) AS u, l FROM s", RECORDS as usize),
        ("words", "SELECT accumulateWordCount(text, ' ') AS w, n FROM s WHERE n % 2 = 1", (RECORDS / 2) as usize),
        ("window", "SELECT k, count(*) AS c, sum(n) AS total FROM s GROUP BY k, COUNTWINDOW(100)", 300),
    ]
}

/// Runs every rule on a fresh daemon started with `extra`: each rule's
/// output lines and its `plugins` status.
fn run(plugins: &Path, out: &Path, extra: &[&str]) -> Vec<(Vec<String>, Value)> {
    let d = Daemon::start(plugins, extra);
    let stream = format!(r#"CREATE STREAM s () WITH (TYPE="bench", count="{RECORDS}", keys="10")"#);
    let (code, body) = d.http("POST", "/streams", Some(&json!({ "sql": stream }).to_string()));
    assert_eq!(code, 201, "{body}");
    let rules = rules();
    for (id, sql, _) in &rules {
        let path = out.join(format!("{id}.jsonl"));
        let rule = json!({"id": id, "sql": sql, "actions": [{"file": {"path": path.display().to_string()}}],
            "options": {"bufferLength": 512}});
        let (code, body) = d.http("POST", "/rules", Some(&rule.to_string()));
        assert_eq!(code, 201, "{id}: {body}");
    }
    rules
        .iter()
        .map(|(id, _, lines)| {
            let got = d.wait_text_lines(id, &out.join(format!("{id}.jsonl")), *lines);
            // No more than expected, once the rule has had time to write them.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let all = d.wait_text_lines(id, &out.join(format!("{id}.jsonl")), *lines);
            assert_eq!(all.len(), *lines, "{id} wrote more than expected: {:?}", &all[got.len().min(all.len())..]);
            (all, d.get_json(&format!("/rules/{id}/status"))["plugins"].clone())
        })
        .collect()
}

/// `columnar_batches` of the rule's operator whose name starts with `prefix`.
fn columnar(plugins: &Value, prefix: &str) -> u64 {
    let list = plugins.as_array().expect("plugins list");
    let p = list
        .iter()
        .find(|p| p["operator"].as_str().is_some_and(|o| o.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no operator {prefix}* in {plugins}"));
    p["columnar_batches"].as_u64().expect("columnar_batches")
}

#[test]
fn rules_on_columns_write_what_they_write_on_rows() {
    let p = PluginsDir::new();
    p.add("sources", "bench", "bench");
    p.add("sinks", "file", "file");
    p.add("functions", "echo", "echo");
    p.add("functions", "countPlusOne", "countPlusOne");
    p.add("functions", "accumulateWordCount", "accumulateWordCount");
    let go = bin_dir().join("go").join("conformance");
    assert!(go.exists(), "{} is not built (scripts/build-go.sh)", go.display());
    std::fs::copy(&go, p.path().join("functions/conformance")).unwrap();
    std::fs::copy(go.with_extension("json"), p.path().join("functions/conformance.json")).unwrap();

    let (dir_columns, dir_rows) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let columns = run(p.path(), dir_columns.path(), &[]);
    let rows = run(p.path(), dir_rows.path(), &["--data-encoding", "rows"]);
    for (((id, _, _), (got, status)), (want, rows_status)) in rules().iter().zip(&columns).zip(&rows) {
        assert_eq!(got, want, "{id}: columns and rows wrote different output");
        // The source sent columns to the columnar daemon only.
        assert!(columnar(status, "source") > 0, "{id}: {status}");
        assert_eq!(columnar(rows_status, "source"), 0, "{id}: {rows_status}");
        assert_eq!(columnar(rows_status, "sink"), 0, "{id}: {rows_status}");
        if *id == "window" {
            // A window takes rows: its emissions go to the sink as records.
            assert_eq!(columnar(status, "sink"), 0, "{id}: {status}");
        } else {
            assert!(columnar(status, "sink") > 0, "{id}: {status}");
        }
    }
    // Spot checks against the input, so that equal outputs are also right.
    let first = |i: usize| -> Value { serde_json::from_str(&columns[i].0[0]).unwrap() };
    assert_eq!(first(0), json!({"n": 0, "l": [0], "text": "alpha beta gamma", "k": 0, "x": 0.0}));
    assert_eq!(first(1), json!({"e": 10, "t": "alpha beta gamma", "x2": 5.0, "k": 0, "n": 10}));
    assert_eq!(first(2), json!({"c": 2, "u": "ALPHA BETA GAMMA", "l": [0]}));
    // The function calls got their arguments as the arrays received, lists
    // (countPlusOne's) included.
    assert!(
        columnar(&columns[1].1, "fn_0_echo") > 0 && columnar(&columns[1].1, "fn_1_cf_echo") > 0,
        "{}",
        columns[1].1
    );
    assert!(columnar(&columns[2].1, "fn_0_countplusone") > 0, "{}", columns[2].1);
    // A stateful function over columns: the same running totals, its
    // literal separator sent as a column.
    let words: Vec<Value> = columns[3].0.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(words[0], json!({"w": 3, "n": 1}));
    assert_eq!(words[1499], json!({"w": 4500, "n": 2999}));
    assert!(columnar(&columns[3].1, "fn_0_accumulatewordcount") > 0, "{}", columns[3].1);
}
