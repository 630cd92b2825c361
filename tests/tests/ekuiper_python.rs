//! eKuiper portable Python plugins on Oort (issue 16, items 1 and 7, Python):
//! `ekpy`, written in the style of eKuiper's portable Python SDK and changed
//! only in its imports (`oort_plugin.ekuiper`), runs through the real daemon
//! as a function plugin, a push source and an acking sink.
//!
//! The launchers come from `bash scripts/build-python.sh` (in
//! `$OORT_BIN/python/`, beside the workspace binaries): one program installed
//! under three names, serving the part its file name names.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oort_tests::{bin_dir, json, Daemon, PluginsDir};
use serde_json::Value as Json;

/// A launcher written by scripts/build-python.sh.
fn python(name: &str) -> PathBuf {
    let path = bin_dir().join("python").join(name);
    assert!(path.exists(), "{} is not built: run `bash scripts/build-python.sh` first", path.display());
    path
}

/// functions/ekpy (+ ekpy.json), sources/ekticker, sinks/eklines and sinks/ekbytes.
fn plugins() -> PluginsDir {
    let p = PluginsDir::new();
    for (kind, name) in [("functions", "ekpy"), ("sources", "ekticker"), ("sinks", "eklines"), ("sinks", "ekbytes")] {
        std::fs::copy(python(name), p.path().join(kind).join(name)).expect("copy launcher");
    }
    std::fs::copy(python("ekpy.json"), p.path().join("functions/ekpy.json")).expect("copy metadata");
    p
}

fn post(d: &Daemon, path: &str, body: &Json) -> (u16, String) {
    d.http("POST", path, Some(&body.to_string()))
}

fn create_stream(d: &Daemon, name: &str, with: &str) {
    let sql = format!(r#"CREATE STREAM {name} () WITH (TYPE="ekticker", {with})"#);
    let (status, body) = post(d, "/streams", &serde_json::json!({ "sql": sql }));
    assert_eq!(status, 201, "{body}\nlog:\n{}", d.log());
}

#[test]
fn a_portable_source_feeds_portable_functions_into_a_portable_sink() {
    let p = plugins();
    let out = tempfile::tempdir().unwrap();
    let d = Daemon::start(p.path(), &[]);
    // DATASOURCE and the extra options reach configure(datasource, conf);
    // "10" and "40" arrive as numbers, as eKuiper's conf does.
    create_stream(&d, "ticks", r#"DATASOURCE="w", interval="10", count="40""#);

    let rows = out.path().join("rows.jsonl");
    let rule = serde_json::json!({
        "id": "r1",
        "sql": "SELECT seq, shout(word) AS loud, clamp(seq, 3, 30) AS capped, whichrule() AS rule FROM ticks",
        "actions": [{"eklines": {"path": rows.display().to_string(), "requireAck": true}}]
    });
    let (status, body) = post(&d, "/rules", &rule);
    assert_eq!(status, 201, "{body}\nlog:\n{}", d.log());

    let got = d.wait_lines("r1", &rows, 40);
    assert_eq!(got.len(), 40, "{got:?}");
    for (k, row) in got.iter().enumerate() {
        let k = k as i64;
        assert_eq!(row["seq"], k, "{row}");
        assert_eq!(row["loud"], format!("W{k}!"), "{row}");
        assert_eq!(row["capped"].as_f64(), Some(k.clamp(3, 30) as f64), "{row}");
        assert_eq!(row["rule"], "r1", "{row}");
    }
    let status = d.get_json("/rules/r1/status");
    assert_eq!(status["status"], "running", "{status}");

    // The aggregate in a window: each count window of 10 consecutive seq
    // spans 9.
    let windows = out.path().join("windows.jsonl");
    let rule = serde_json::json!({
        "id": "r2",
        "sql": "SELECT spread(seq) AS s, count(*) AS n FROM ticks GROUP BY COUNTWINDOW(10)",
        "actions": [{"eklines": {"path": windows.display().to_string(), "sendSingle": true}}]
    });
    let (status, body) = post(&d, "/rules", &rule);
    assert_eq!(status, 201, "{body}\nlog:\n{}", d.log());
    let got = d.wait_lines("r2", &windows, 4);
    assert_eq!(got, vec![serde_json::json!({"n": 10, "s": 9}); 4]);
}

#[test]
fn a_validate_error_string_refuses_the_rule_with_its_message() {
    let p = plugins();
    let out = tempfile::tempdir().unwrap();
    let d = Daemon::start(p.path(), &[]);
    create_stream(&d, "ticks", r#"DATASOURCE="w", interval="10""#);
    let rule = serde_json::json!({
        "id": "bad",
        "sql": "SELECT clamp(seq, 1) AS c FROM ticks",
        "actions": [{"eklines": {"path": out.path().join("bad.jsonl").display().to_string()}}]
    });
    let (status, body) = post(&d, "/rules", &rule);
    assert_eq!(status, 400, "{body}");
    let message = json(&body)["error"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("clamp expects 3 arguments (value, low, high), got 2"), "{body}");
    assert_eq!(d.get_json("/rules"), serde_json::json!([]));

    // Errors the source emits with emit_error are the source's exceptions.
    create_stream(&d, "flaky", r#"DATASOURCE="f", interval="5", count="9", errorEvery="3""#);
    let rows = out.path().join("flaky.jsonl");
    let rule = serde_json::json!({
        "id": "flaky",
        "sql": "SELECT seq FROM flaky",
        "actions": [{"eklines": {"path": rows.display().to_string()}}]
    });
    let (status, body) = post(&d, "/rules", &rule);
    assert_eq!(status, 201, "{body}");
    let got = d.wait_lines("flaky", &rows, 6);
    let seqs: Vec<i64> = got.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 3, 4, 6, 7]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = d.get_json("/rules/flaky/status");
        if status["source_flaky_0_exceptions_total"] == 3 {
            assert_eq!(status["source_flaky_0_last_exception"], "tick 8 skipped", "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 16, item 4: a portable sink gets the bytes the daemon encoded per
/// the action's `format`, `dataTemplate` and `sendSingle`, one `collect` per
/// item, and with `requireAck` its `ack_error` refuses that item alone: the
/// rule counts it as an exception of the sink and goes on.
#[test]
fn a_portable_sink_gets_encoded_payloads_and_acks_each_one() {
    let p = plugins();
    let out = tempfile::tempdir().unwrap();
    let d = Daemon::start(p.path(), &[]);
    create_stream(&d, "ticks", r#"DATASOURCE="w", interval="5", count="12""#);
    let (templated, windows, csv) =
        (out.path().join("templated.txt"), out.path().join("windows.txt"), out.path().join("rows.csv"));
    let rules = [
        // One row per item through a Go template; seq 7 renders "fail" and is refused by ack_error.
        serde_json::json!({
            "id": "tpl",
            "sql": "SELECT seq, word FROM ticks",
            "actions": [{"ekbytes": {
                "path": templated.display().to_string(), "requireAck": true, "sendSingle": true,
                "dataTemplate": "{{if eq .seq 7}}fail{{else}}{{.seq}}:{{.word}}{{end}}"
            }}]
        }),
        // sendSingle false in a window: one JSON list per window, as eKuiper's Collect gets it.
        serde_json::json!({
            "id": "win",
            "sql": "SELECT seq FROM ticks GROUP BY COUNTWINDOW(4)",
            "actions": [{"ekbytes": {"path": windows.display().to_string()}}]
        }),
        // Delimited with a chosen column order, one row per item.
        serde_json::json!({
            "id": "csv",
            "sql": "SELECT seq, word FROM ticks",
            "actions": [{"ekbytes": {
                "path": csv.display().to_string(), "format": "delimited", "delimiter": ";",
                "fields": ["word", "seq"], "sendSingle": true
            }}]
        }),
    ];
    for rule in &rules {
        let (status, body) = post(&d, "/rules", rule);
        assert_eq!(status, 201, "{body}\nlog:\n{}", d.log());
    }
    // ekbytes writes every payload, also the refused one (it acks after writing).
    let got = d.wait_text_lines("tpl", &templated, 12);
    for (k, line) in got.iter().enumerate() {
        if k == 7 {
            assert_eq!(line, "fail");
        } else {
            assert_eq!(line, &format!("{k}:w{k}"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = d.get_json("/rules/tpl/status");
        if status["sink_ekbytes_0_0_exceptions_total"] == 1 {
            let last = status["sink_ekbytes_0_0_last_exception"].as_str().unwrap_or_default();
            assert!(last.contains("payload refused: it contains fail"), "{status}");
            assert_eq!(status["sink_ekbytes_0_0_records_out_total"], 11, "{status}");
            assert_eq!(status["status"], "running", "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "no refused item: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = d.wait_text_lines("win", &windows, 3);
    for (w, line) in got.iter().take(3).enumerate() {
        let want: Vec<Json> = (w * 4..w * 4 + 4).map(|s| serde_json::json!({ "seq": s })).collect();
        assert_eq!(json(line), Json::Array(want), "window {w}");
    }
    let got = d.wait_text_lines("csv", &csv, 12);
    // Strings go unquoted, columns in the order of `fields`.
    let want: Vec<String> = (0..12).map(|k| format!("w{k};{k}")).collect();
    assert_eq!(got, want);
}
