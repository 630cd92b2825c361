//! Columnar function batches through the real daemon: rules calling Rust, Go
//! and Python functions over Arrow columns write exactly what they write over
//! rows (`--data-encoding rows`), and the rule status shows which batches
//! went as columns.
//!
//! Needs the Go and Python plugins built (`bash scripts/build-go.sh`,
//! `bash scripts/build-python.sh`), as `.ci/run` does.

use std::path::PathBuf;

use oort_tests::{bin_dir, Daemon, PluginsDir};
use serde_json::json;

/// Input rows: one column of each scalar type the protocol sends as Arrow,
/// with nulls, unsigned values above i64 and non-ASCII text.
fn input(n: usize) -> String {
    (0..n)
        .map(|i| {
            let row = if i % 7 == 3 {
                json!({"i": null, "s": null, "u": null, "f": null, "b": null})
            } else {
                json!({
                    "i": i as i64 * 7919 - 500_000,
                    "s": format!("row {i} ✓"),
                    "u": u64::MAX - i as u64,
                    "f": i as f64 / 8.0,
                    "b": i % 2 == 0,
                })
            };
            format!("{row}\n")
        })
        .collect()
}

/// A plugin built by a script other than cargo's, with its metadata.
fn built(dir: &str, name: &str) -> (PathBuf, PathBuf) {
    let exe = bin_dir().join(dir).join(name);
    assert!(exe.exists(), "{} is not built (scripts/build-{dir}.sh)", exe.display());
    (exe.clone(), exe.with_extension("json"))
}

/// Runs `select` over `rows` input lines on a fresh daemon with `extra`
/// flags; returns the output lines and the rule's `plugins` status.
fn run(plugins: &PluginsDir, select: &str, rows: usize, extra: &[&str]) -> (Vec<String>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let (input_path, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input_path, input(rows)).unwrap();
    let d = Daemon::start(plugins.path(), extra);
    let stream = format!(r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="{}")"#, input_path.display());
    assert_eq!(d.http("POST", "/streams", Some(&json!({ "sql": stream }).to_string())).0, 201);
    let rule = json!({"id": "r", "sql": select, "actions": [{"file": {"path": output.display().to_string()}}]});
    let (code, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(code, 201, "{body}");
    let lines = d.wait_text_lines("r", &output, rows);
    let status = d.get_json("/rules/r/status");
    (lines, status["plugins"].clone())
}

/// The `columnar_batches` of every function in a rule's `plugins` status.
fn columnar_batches(plugins: &serde_json::Value) -> Vec<(String, u64)> {
    let list = plugins.as_array().expect("plugins list");
    list.iter()
        .filter_map(|p| Some((p["operator"].as_str()?.to_string(), p["columnar_batches"].as_u64()?)))
        .filter(|(operator, _)| operator.starts_with("fn_"))
        .collect()
}

#[test]
fn rust_and_go_functions_answer_columns_exactly_as_rows() {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    p.add("functions", "echo", "echo");
    let (go, go_meta) = built("go", "conformance");
    std::fs::copy(go, p.path().join("functions/conformance")).unwrap();
    std::fs::copy(go_meta, p.path().join("functions/conformance.json")).unwrap();
    // echo (Rust) and cf_echo (Go) answer with their argument column;
    // cf_fail (Go, row API) gets the columns converted by its SDK.
    let select = "SELECT echo(i) AS i, echo(s) AS s, cf_echo(u) AS u, cf_echo(f) AS f, echo(b) AS b, \
                  cf_fail(s) AS t FROM s";
    let rows = 600;
    let (columns, status) = run(&p, select, rows, &[]);
    let (baseline, rows_status) = run(&p, select, rows, &["--data-encoding", "rows"]);
    assert_eq!(columns.len(), rows);
    assert_eq!(columns, baseline, "the same output over Arrow columns as over rows");
    // Spot checks against the input, so that both runs cannot be wrong alike.
    let first: serde_json::Value = serde_json::from_str(&columns[0]).unwrap();
    assert_eq!(first, json!({"i": -500000, "s": "row 0 ✓", "u": u64::MAX, "f": 0.0, "b": true, "t": "row 0 ✓"}));
    let null_row: serde_json::Value = serde_json::from_str(&columns[3]).unwrap();
    assert_eq!(null_row, json!({"i": null, "s": null, "u": null, "f": null, "b": null, "t": null}));
    let used = columnar_batches(&status);
    assert_eq!(used.len(), 6, "six function call sites: {status}");
    assert!(used.iter().all(|(_, n)| *n > 0), "every call site got columns: {used:?}");
    let rows_used = columnar_batches(&rows_status);
    assert!(rows_used.iter().all(|(_, n)| *n == 0), "--data-encoding rows sends none: {rows_used:?}");
}

#[test]
fn python_vectorized_and_row_functions_answer_columns_exactly_as_rows() {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    let (py, py_meta) = built("python", "pyecho");
    std::fs::copy(py, p.path().join("functions/pyecho")).unwrap();
    std::fs::copy(py_meta, p.path().join("functions/pyecho.json")).unwrap();
    let select = "SELECT echo(i) AS i, echo(u) AS u, echo_rows(s) AS s, echo_rows(f) AS f, echo(b) AS b FROM s";
    let rows = 300;
    let (columns, status) = run(&p, select, rows, &[]);
    let (baseline, _) = run(&p, select, rows, &["--data-encoding", "rows"]);
    assert_eq!(columns, baseline, "the same output over Arrow columns as over rows");
    let last: serde_json::Value = serde_json::from_str(&columns[299]).unwrap();
    assert_eq!(
        last,
        json!({"i": 299 * 7919 - 500_000, "u": u64::MAX - 299, "s": "row 299 ✓", "f": 299.0 / 8.0, "b": false})
    );
    let used = columnar_batches(&status);
    assert!(used.len() == 5 && used.iter().all(|(_, n)| *n > 0), "every call site got columns: {used:?}");
}
