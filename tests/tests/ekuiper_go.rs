//! eKuiper Go plugins on Oort (issue 16, items 1 and 7, Go): the examples in
//! `plugins/go/ekuiper`, written in the style of eKuiper 1.x's native API
//! (`ek1funcs`, `ek1random`, `ek1file`) and of eKuiper 2.x's contract
//! (`ek2funcs`, `ek2poll`, `ek2push`, `ek2file`) and changed only in their
//! imports and `main`, run through the real daemon: a stream over each source,
//! rules calling the functions, into each sink.
//!
//! The executables come from `bash scripts/build-go.sh` (in `$OORT_BIN/go/`,
//! beside the workspace binaries).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oort_tests::{bin_dir, Daemon, PluginsDir};
use serde_json::{json, Value as Json};

/// An executable written by scripts/build-go.sh.
fn go(name: &str) -> PathBuf {
    let path = bin_dir().join("go").join(name);
    assert!(path.exists(), "{} is not built: run `bash scripts/build-go.sh` first", path.display());
    path
}

fn plugins() -> PluginsDir {
    let p = PluginsDir::new();
    for (kind, name) in [
        ("functions", "ek1funcs"),
        ("functions", "ek2funcs"),
        ("sources", "ek1random"),
        ("sources", "ek2poll"),
        ("sources", "ek2push"),
        ("sinks", "ek1file"),
        ("sinks", "ek2file"),
        ("sinks", "ek2bytes"),
        ("sources", "ek2bytesrc"),
    ] {
        std::fs::copy(go(name), p.path().join(kind).join(name)).expect("copy plugin");
    }
    for name in ["ek1funcs", "ek2funcs"] {
        std::fs::copy(go(&format!("{name}.json")), p.path().join("functions").join(format!("{name}.json")))
            .expect("copy metadata");
    }
    p
}

fn create(d: &Daemon, path: &str, body: Json) {
    let (status, text) = d.http("POST", path, Some(&body.to_string()));
    assert_eq!(status, 201, "POST {path} {body}: {text}\nlog:\n{}", d.log());
}

fn num(v: &Json) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn ekuiper_1x_push_source_functions_and_sink_run_unchanged() {
    let p = plugins();
    let out = tempfile::tempdir().unwrap();
    let (rows, windows) = (out.path().join("rows.jsonl"), out.path().join("windows.jsonl"));
    let d = Daemon::start(p.path(), &[]);
    create(
        &d,
        "/streams",
        json!({"sql": r#"CREATE STREAM s1 () WITH (TYPE="ek1random", DATASOURCE="dev1", interval="20")"#}),
    );
    // Scalar functions: a struct result and typed state; the sink's numeric
    // property `limit` must arrive as a float64, as eKuiper decodes a rule's
    // JSON.
    create(
        &d,
        "/rules",
        json!({
            "id": "r1",
            "sql": "SELECT n, word, ek1Point(n, 2) AS p, ek1LastWords(word) AS lw FROM s1",
            "actions": [{"ek1file": {"path": rows.display().to_string(), "limit": 1000}}]
        }),
    );
    // An aggregate, into the 2.x sink.
    create(
        &d,
        "/rules",
        json!({
            "id": "r2",
            "sql": "SELECT ek1Sum(one) AS total, count(*) AS c FROM s1 GROUP BY TUMBLINGWINDOW(ss, 1)",
            "actions": [{"ek2file": {"path": windows.display().to_string()}}]
        }),
    );

    let got = d.wait_lines("r1", &rows, 8);
    let words = ["alpha", "beta", "gamma", "delta"];
    for (k, row) in got.iter().take(8).enumerate() {
        // The source's counter state starts at 1, one tuple per interval.
        let n = k as i64 + 1;
        assert_eq!(row["n"], n, "{row}");
        assert_eq!(row["word"], words[k % 4], "{row}");
        let pt = &row["p"];
        assert_eq!((num(&pt["x"]), num(&pt["y"])), (n as f64, 2.0), "{row}");
        assert!((num(&pt["dist"]) - (n as f64).hypot(2.0)).abs() < 1e-9, "{row}");
        // GetState returned the []string as it was put: the last three words.
        let last: Vec<&str> = (k.saturating_sub(2)..=k).map(|i| words[i % 4]).collect();
        assert_eq!(row["lw"]["words"], last.join(" "), "{row}");
        assert_eq!(row["lw"]["calls"], n, "{row}");
    }

    let got = d.wait_lines("r2", &windows, 2);
    for w in &got {
        let c = w["c"].as_i64().unwrap_or_else(|| panic!("count: {w}"));
        assert!(c > 0, "{w}");
        assert_eq!(num(&w["total"]), c as f64, "ek1Sum(one) equals count(*): {w}");
    }
    for rule in ["r1", "r2"] {
        let status = d.get_json(&format!("/rules/{rule}/status"));
        assert_eq!(status["status"], "running", "{status}");
    }
}

#[test]
fn ekuiper_2x_pull_and_push_sources_function_and_sink_run_unchanged() {
    let p = plugins();
    let out = tempfile::tempdir().unwrap();
    let (pulled, pushed) = (out.path().join("pulled.jsonl"), out.path().join("pushed.jsonl"));
    let d = Daemon::start(p.path(), &[]);
    create(&d, "/streams", json!({"sql": r#"CREATE STREAM s2 () WITH (TYPE="ek2poll", interval="50", start="100")"#}));
    create(&d, "/streams", json!({"sql": r#"CREATE STREAM s3 () WITH (TYPE="ek2push", batch="2")"#}));
    create(
        &d,
        "/rules",
        json!({
            "id": "r3",
            "sql": "SELECT seq, at, ek2Scale(seq, 10) AS scaled, ek2Tag(seq) AS tag FROM s2",
            "actions": [{"ek2file": {"path": pulled.display().to_string()}}]
        }),
    );
    create(
        &d,
        "/rules",
        json!({
            "id": "r4",
            "sql": "SELECT k, label FROM s3",
            "actions": [{"ek1file": {"path": pushed.display().to_string(), "sendSingle": true}}]
        }),
    );

    let got = d.wait_lines("r3", &pulled, 6);
    for (k, row) in got.iter().take(6).enumerate() {
        // Provision got start=100 (an int, as eKuiper's YAML gives it); Pull
        // runs once per interval.
        assert_eq!(num(&row["seq"]), 100.0 + k as f64, "{row}");
        assert_eq!(num(&row["scaled"]), (100.0 + k as f64) * 10.0, "{row}");
        assert_eq!(row["tag"]["rule"], "r3", "{row}");
        assert_eq!(num(&row["tag"]["value"]), 100.0 + k as f64, "{row}");
        assert_eq!(row["tag"]["seen"], k as i64 + 1, "{row}");
    }
    let at: Vec<i64> = got.iter().take(6).map(|r| r["at"].as_i64().unwrap()).collect();
    // Five intervals of 50 ms between the first and the sixth pull (a tick
    // delayed by load shortens only the gap after it).
    assert!(at[5] - at[0] >= 200, "pulls every 50 ms: {at:?}");
    assert!(at.windows(2).all(|p| p[1] > p[0]), "one pull per tick: {at:?}");

    let got = d.wait_lines("r4", &pushed, 20);
    for (k, row) in got.iter().take(20).enumerate() {
        assert_eq!(row["k"], k as i64 + 1, "{row}");
        assert_eq!(row["label"], format!("item-{}", k + 1), "{row}");
    }
    // Every tenth item also reported an error through ingestError: an
    // exception of the rule's source.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = d.get_json("/rules/r4/status");
        if status["source_s3_0_exceptions_total"].as_i64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no source exception: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for rule in ["r3", "r4"] {
        let status = d.get_json(&format!("/rules/{rule}/status"));
        assert_eq!(status["status"], "running", "{status}");
    }
    // Stopping a rule closes the push source (Close cancels its WithCancel
    // context); the rule then restarts cleanly.
    assert_eq!(d.http("POST", "/rules/r4/stop", None).0, 200);
    assert_eq!(d.http("POST", "/rules/r4/start", None).0, 200);
    let status = d.get_json("/rules/r4/status");
    assert_eq!(status["status"], "running", "{status}");
}

/// FNV-1a, 64 bits: what ek1Hash computes in Go.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Issue 16, items 2 and 4: a Go `uint64` result (above 2^63 for most
/// words, like geohash's integers) travels through the daemon exactly, into
/// another function's `args[0].(uint64)` and out to JSON; a 2.x
/// BytesCollector gets the bytes the daemon encoded per `dataTemplate` and
/// `sendSingle`, and a Collect error refuses that item alone.
#[test]
fn uint64_results_round_trip_and_a_bytes_sink_gets_encoded_payloads() {
    let p = plugins();
    let out = tempfile::tempdir().unwrap();
    let (hashes, templated) = (out.path().join("hashes.jsonl"), out.path().join("templated.txt"));
    let d = Daemon::start(p.path(), &[]);
    create(
        &d,
        "/streams",
        json!({"sql": r#"CREATE STREAM s1 () WITH (TYPE="ek1random", DATASOURCE="dev1", interval="10")"#}),
    );
    create(
        &d,
        "/rules",
        json!({
            "id": "hash",
            "sql": "SELECT word, ek1Hash(word) AS h, ek1HashHex(ek1Hash(word)) AS hex FROM s1",
            "actions": [{"ek2bytes": {"path": hashes.display().to_string(), "sendSingle": true}}]
        }),
    );
    create(
        &d,
        "/rules",
        json!({
            "id": "tpl",
            "sql": "SELECT word FROM s1",
            "actions": [{"ek2bytes": {
                "path": templated.display().to_string(), "sendSingle": true,
                "dataTemplate": r#"{{if eq .word "gamma"}}"fail"{{else}}{{.word}}{{end}}"#
            }}]
        }),
    );
    let got = d.wait_lines("hash", &hashes, 8);
    for row in got.iter().take(8) {
        let word = row["word"].as_str().unwrap_or_else(|| panic!("{row}"));
        // Exact: serde_json reads integers above i64 as u64.
        assert_eq!(row["h"].as_u64(), Some(fnv1a(word)), "{row}");
        assert_eq!(row["hex"], format!("{:016x}", fnv1a(word)), "{row}");
    }
    assert!(got.iter().any(|r| r["h"].as_u64().is_some_and(|h| h > i64::MAX as u64)), "some hash above 2^63: {got:?}");

    // Every fourth word is gamma: refused by the sink, counted, not written.
    let lines = d.wait_text_lines("tpl", &templated, 6);
    assert_eq!(lines[..6], ["alpha", "beta", "delta", "alpha", "beta", "delta"]);
    let status = d.get_json("/rules/tpl/status");
    assert_eq!(status["status"], "running", "{status}");
    assert!(status["sink_ek2bytes_0_0_exceptions_total"].as_i64().unwrap_or(0) >= 2, "{status}");
    let last = status["sink_ek2bytes_0_0_last_exception"].as_str().unwrap_or_default();
    assert!(last.contains(r#"refused payload "fail""#), "{status}");
}

/// Issue 16, item 6: the stream's `FORMAT` reaches the source, and a 2.x
/// bytes source's payloads are decoded as eKuiper decodes them: `BINARY`
/// into field `self` (and out again through a binary sink, byte for byte),
/// `DELIMITED` into the named columns.
#[test]
fn binary_and_delimited_streams_decode_a_bytes_sources_payloads() {
    let p = plugins();
    let out = tempfile::tempdir().unwrap();
    let (raw, rows) = (out.path().join("raw.txt"), out.path().join("rows.txt"));
    let d = Daemon::start(p.path(), &[]);
    create(
        &d,
        "/streams",
        json!({"sql": r#"CREATE STREAM b () WITH (TYPE="ek2bytesrc", FORMAT="BINARY", payloads='["hello","wörld"]')"#}),
    );
    create(
        &d,
        "/streams",
        json!({"sql": r#"CREATE STREAM c () WITH (TYPE="ek2bytesrc", FORMAT="DELIMITED", delimiter=";", fields="id,name",
                         payloads='["1;ann","2;bob\n3;cy"]')"#}),
    );
    create(
        &d,
        "/rules",
        json!({"id": "bin", "sql": "SELECT self FROM b",
               "actions": [{"ek2bytes": {"path": raw.display().to_string(), "format": "binary"}}]}),
    );
    create(
        &d,
        "/rules",
        json!({"id": "csv", "sql": "SELECT id, name FROM c",
               "actions": [{"ek2bytes": {"path": rows.display().to_string(), "sendSingle": true}}]}),
    );
    assert_eq!(d.wait_text_lines("bin", &raw, 2), ["hello", "wörld"]);
    let got = d.wait_lines("csv", &rows, 3);
    assert_eq!(
        got,
        [json!({"id": "1", "name": "ann"}), json!({"id": "2", "name": "bob"}), json!({"id": "3", "name": "cy"})]
    );
}
