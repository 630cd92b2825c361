//! Upgrades that must not simply go through, through the real daemon with
//! real plugin processes: a plugin's new state version migrates the rule's
//! state (its SDK hook), a version that cannot read the state stops the
//! upgrade and the rule stays on its version (also across a restart), and a
//! version that lacks the rule's function or crash-loops is rolled back
//! automatically, reported in the rule's status and the daemon's log; after
//! an upgrade ran through its grace period, old versions no rule uses go.
//!
//! The plugin is `oort-stateful` (tests/src/bin/stateful.rs): each version a
//! wrapper script that sets its label, state version, counter key, migration
//! and faults.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use oort_tests::{Daemon, PluginsDir};
use serde_json::{json, Value};

/// Installs `stateful@<version>` behaving per `env`.
fn install(p: &PluginsDir, version: &str, env: &[(&str, &str)]) {
    p.add_with_env("functions", &format!("stateful@{version}"), "oort-stateful", env);
}

fn append_rows(path: &Path, from: u64, to: u64) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for n in from..to {
        writeln!(f, "{}", json!({ "n": n })).unwrap();
    }
}

/// Starts a qos 2 rule `tally` counting rows with `stateful()`, reading
/// `input` and writing `out`.
fn start_tally(d: &Daemon, input: &Path, out: &Path) {
    let sql = format!(r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="{}")"#, input.display());
    let (code, body) = d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string()));
    assert_eq!(code, 201, "{body}");
    let rule = json!({
        "id": "tally",
        "sql": "SELECT n, stateful() AS s FROM s",
        "actions": [{"file": {"path": out.display().to_string()}}],
        "options": {"qos": 2, "checkpointInterval": 100},
    });
    let (code, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(code, 201, "{body}");
}

/// Checks that output lines `from..to` (rows `from..to`, in order) were
/// answered by `label` and carry the count `n + 1`: the state went on.
fn assert_counted(lines: &[Value], from: usize, to: usize, label: &str) {
    for (n, line) in lines.iter().enumerate().take(to).skip(from) {
        assert_eq!(line["n"], json!(n), "{line}");
        assert_eq!(line["s"], json!({"label": label, "n": n + 1}), "row {n}: {line}");
    }
}

/// The message of an error answer, or the body.
fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string())
}

/// The versions `describe` lists, with the rules running each and whether
/// the version is held back.
fn versions(d: &Daemon) -> Vec<(String, Vec<String>, bool)> {
    let info = d.get_json("/plugins/functions/stateful");
    info["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions in {info}"))
        .iter()
        .map(|v| {
            let rules = v["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
            (v["version"].as_str().unwrap().to_string(), rules, v["held"].as_bool().unwrap_or(false))
        })
        .collect()
}

fn wait_versions(d: &Daemon, want: &[(&str, &[&str], bool)]) {
    let want: Vec<(String, Vec<String>, bool)> =
        want.iter().map(|(v, r, h)| (v.to_string(), r.iter().map(|r| r.to_string()).collect(), *h)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while versions(d) != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(versions(d), want);
}

fn upgrade_note(d: &Daemon) -> String {
    d.get_json("/rules/tally/status")["upgrade"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_new_state_version_migrates_the_state_and_one_that_cannot_read_it_stops_the_upgrade_not_the_rule() {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    install(&p, "1.0.0", &[("STATEFUL_LABEL", "v1"), ("STATEFUL_STATE_VERSION", "1")]);
    let data = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(p.path(), data.path(), &["--upgrade-grace-ms", "1000"]);
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    append_rows(&input, 0, 10);
    start_tally(&d, &input, &out);
    let lines = d.wait_lines("tally", &out, 10);
    assert_counted(&lines, 0, 10, "v1");

    // 2.0.0 keeps its counter under another key, state version 2, and
    // migrates version 1's state: the count goes on.
    install(
        &p,
        "2.0.0",
        &[
            ("STATEFUL_LABEL", "v2"),
            ("STATEFUL_STATE_VERSION", "2"),
            ("STATEFUL_KEY", "total"),
            ("STATEFUL_MIGRATE_FROM", "count"),
        ],
    );
    let (code, body) = d.http("POST", "/plugins/functions/stateful/upgrade", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Rules tally moved"), "{body}");
    wait_versions(&d, &[("2.0.0", &["tally"], false), ("1.0.0", &[], false)]);
    append_rows(&input, 10, 20);
    let lines = d.wait_lines("tally", &out, 20);
    assert_counted(&lines, 10, 20, "v2");

    // 3.0.0 declares state version 3 and has no migration: the upgrade
    // stops at the rule, which keeps running on 2.0.0 with its state.
    install(&p, "3.0.0", &[("STATEFUL_LABEL", "v3"), ("STATEFUL_STATE_VERSION", "3"), ("STATEFUL_KEY", "total")]);
    let (code, body) = d.http("POST", "/plugins/functions/stateful/upgrade", None);
    assert_eq!(code, 409, "{body}");
    let said = message(&body);
    assert!(said.contains("stopped at rule tally"), "{said}");
    assert!(said.contains("(state version 3) refused the state of version 2"), "{said}");
    assert!(said.contains("has no state migration"), "{said}");
    let note = upgrade_note(&d);
    assert!(note.contains("to 3.0.0 stopped") && note.contains("refused the state of version 2"), "{note}");
    wait_versions(&d, &[("3.0.0", &[], false), ("2.0.0", &["tally"], false), ("1.0.0", &[], false)]);
    append_rows(&input, 20, 30);
    let lines = d.wait_lines("tally", &out, 30);
    assert_counted(&lines, 20, 30, "v2");
    assert!(d.log().contains("refused the state of version 2"), "{}", d.log());

    // The refusal outlives the daemon: the rule restarts on 2.0.0 from its
    // checkpoint, whose state is marked version 2.
    assert!(d.terminate().success());
    let d = Daemon::start_in(p.path(), data.path(), &["--upgrade-grace-ms", "1000"]);
    wait_versions(&d, &[("3.0.0", &[], false), ("2.0.0", &["tally"], false), ("1.0.0", &[], false)]);
    append_rows(&input, 30, 40);
    let lines = d.wait_lines("tally", &out, 40);
    assert_eq!(lines.len(), 40, "rows repeated");
    assert_counted(&lines, 30, 40, "v2");

    // 3.1.0 migrates version 2's state: the rule moves on by itself.
    install(
        &p,
        "3.1.0",
        &[
            ("STATEFUL_LABEL", "v3.1"),
            ("STATEFUL_STATE_VERSION", "3"),
            ("STATEFUL_KEY", "sum"),
            ("STATEFUL_MIGRATE_FROM", "total"),
        ],
    );
    let (code, body) = d.http("POST", "/plugins/functions/stateful/upgrade", None);
    assert_eq!(code, 200, "{body}");
    append_rows(&input, 40, 50);
    let lines = d.wait_lines("tally", &out, 50);
    assert_counted(&lines, 40, 50, "v3.1");
    assert_eq!(upgrade_note(&d), "", "a successful move clears the note");
    // Once 3.1.0 ran through its grace period, the older versions no rule
    // runs or pins are removed, but for the newest of them (what a rollback
    // goes back to).
    wait_versions(&d, &[("3.1.0", &["tally"], false), ("3.0.0", &[], false)]);
    assert!(d.log().contains("removed a plugin version no rule runs"), "{}", d.log());
}

#[test]
fn a_version_without_the_function_or_that_crash_loops_is_rolled_back_automatically() {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    install(&p, "1.0.0", &[("STATEFUL_LABEL", "v1")]);
    let d = Daemon::start(p.path(), &["--upgrade-grace-ms", "5000", "--plugin-scan-interval-ms", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    append_rows(&input, 0, 10);
    start_tally(&d, &input, &out);
    d.wait_lines("tally", &out, 10);

    // 2.0.0 exports another function: its Describe does not have the one
    // the rule calls. Refused before the rule moves, and held back.
    install(&p, "2.0.0", &[("STATEFUL_LABEL", "v2"), ("STATEFUL_FUNCTION", "renamed")]);
    let (code, body) = d.http("POST", "/plugins/functions/stateful/upgrade", None);
    assert_eq!(code, 409, "{body}");
    let said = message(&body);
    assert!(said.contains("Version 2.0.0 of plugin stateful was rolled back automatically"), "{said}");
    assert!(said.contains("could not take over rule tally"), "{said}");
    wait_versions(&d, &[("2.0.0", &[], true), ("1.0.0", &["tally"], false)]);
    assert!(upgrade_note(&d).contains("stateful 2.0.0 was rolled back automatically"), "{}", upgrade_note(&d));
    append_rows(&input, 10, 20);
    let lines = d.wait_lines("tally", &out, 20);
    assert_counted(&lines, 10, 20, "v1");

    // 3.0.0 starts and opens fine but dies on every call: the rule moves,
    // the version crash-loops within the grace period, and it is rolled
    // back; the rule goes on from its checkpoint on 1.0.0, nothing lost or
    // repeated.
    install(&p, "3.0.0", &[("STATEFUL_LABEL", "v3"), ("STATEFUL_CRASH", "1")]);
    let (code, body) = d.http("POST", "/plugins/functions/stateful/upgrade", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Rules tally moved"), "{body}");
    append_rows(&input, 20, 30);
    wait_versions(&d, &[("3.0.0", &[], true), ("2.0.0", &[], true), ("1.0.0", &["tally"], false)]);
    let note = upgrade_note(&d);
    assert!(note.contains("stateful 3.0.0 was rolled back automatically"), "{note}");
    let lines = d.wait_lines("tally", &out, 30);
    assert_eq!(lines.len(), 30, "rows repeated");
    assert_counted(&lines, 20, 30, "v1");
    assert!(d.log().contains("plugin version rolled back automatically"), "{}", d.log());

    // 4.0.0 fails its handshake (it exits at start): rolled back before the
    // rule moves.
    p.add_fixture(
        "functions",
        "stateful@4.0.0",
        &[("OORT_FIXTURE_MODE", "exit-at-start"), ("OORT_FIXTURE_NAME", "stateful")],
    );
    let (code, body) = d.http("POST", "/plugins/functions/stateful/upgrade", None);
    assert_eq!(code, 409, "{body}");
    assert!(message(&body).contains("Version 4.0.0 of plugin stateful was rolled back automatically"), "{body}");
    wait_versions(
        &d,
        &[("4.0.0", &[], true), ("3.0.0", &[], true), ("2.0.0", &[], true), ("1.0.0", &["tally"], false)],
    );
    append_rows(&input, 30, 40);
    let lines = d.wait_lines("tally", &out, 40);
    assert_counted(&lines, 30, 40, "v1");
}
