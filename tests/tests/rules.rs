//! Streams and rules end to end: the real daemon over REST and the CLI, real
//! plugin processes, real files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oort_tests::{alive, json, json_lines, kill9, Daemon, PluginsDir};
use serde_json::Value as Json;

fn plugins() -> PluginsDir {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sources", "random", "random");
    p.add("sinks", "file", "file");
    p.add("sinks", "log", "log");
    p.add("functions", "accumulateWordCount", "accumulateWordCount");
    p.add("functions", "countPlusOne", "countPlusOne");
    p.add_fixture("sinks", "slow", &[("OORT_FIXTURE_NAME", "slow")]);
    p
}

fn write_lines(path: &Path, from: usize, to: usize) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for i in from..to {
        writeln!(f, "{{\"n\":{i},\"text\":\"w{i} x y\"}}").unwrap();
    }
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup { dir: tempfile::tempdir().unwrap() }
    }
    fn input(&self) -> PathBuf {
        self.dir.path().join("in.jsonl")
    }
    fn output(&self) -> PathBuf {
        self.dir.path().join("out.jsonl")
    }
    fn stream_sql(&self) -> String {
        format!(r#"CREATE STREAM words () WITH (TYPE="file", DATASOURCE="{}", FORMAT="json")"#, self.input().display())
    }
    fn rule(&self, id: &str) -> String {
        serde_json::json!({
            "id": id,
            "sql": "SELECT n, accumulateWordCount(text, ' ') AS total, upper(text) AS shout FROM words WHERE n % 2 = 0",
            "actions": [{"file": {"path": self.output().display().to_string()}}],
            "options": {"bufferLength": 64}
        })
        .to_string()
    }
}

fn create_stream_and_rule(d: &Daemon, s: &Setup) {
    let (status, body) = d.http("POST", "/streams", Some(&serde_json::json!({"sql": s.stream_sql()}).to_string()));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, "Stream words is created.");
    let (status, body) = d.http("POST", "/rules", Some(&s.rule("r1")));
    assert_eq!(status, 201, "{body}");
}

#[test]
fn records_flow_from_a_stream_through_a_plugin_function_to_a_file_sink() {
    let p = plugins();
    let s = Setup::new();
    write_lines(&s.input(), 0, 200);
    let d = Daemon::start(p.path(), &[]);
    create_stream_and_rule(&d, &s);

    let out = d.wait_lines("r1", &s.output(), 100);
    assert_eq!(out.len(), 100, "only even n pass the filter");
    for (k, row) in out.iter().enumerate() {
        let n = 2 * k as i64;
        assert_eq!(row["n"], n);
        // Every passing row has three words; the counter accumulates.
        assert_eq!(row["total"], 3 * (k as i64 + 1), "{row}");
        assert_eq!(row["shout"], format!("W{n} X Y"));
    }
    // Appended lines are followed.
    write_lines(&s.input(), 200, 210);
    let out = d.wait_lines("r1", &s.output(), 105);
    assert_eq!(out[104]["n"], 208);

    let status = d.get_json("/rules/r1/status");
    assert_eq!(status["status"], "running");
    assert_eq!(status["source_words_0_records_out_total"], 210);
    assert_eq!(status["op_1_filter_0_records_out_total"], 105);
    assert_eq!(status["sink_file_0_0_records_in_total"], 105);
    let pids: Vec<i64> = status["plugins"].as_array().unwrap().iter().filter_map(|p| p["pid"].as_i64()).collect();
    assert_eq!(pids.len(), 3, "source, function and sink processes: {status}");
    assert_eq!(d.get_json("/rules"), serde_json::json!([{"id": "r1", "status": "running"}]));
}

#[test]
fn an_ekuiper_rule_with_double_quoted_strings_and_its_expressions_runs_unchanged() {
    // Issue 11, item 0: written as eKuiper's docs write rules, double-quoted
    // strings, backticks, `->`, `[i]`, CASE, IN, BETWEEN, LIKE and built-ins.
    let p = plugins();
    let s = Setup::new();
    let mut f = std::fs::File::create(s.input()).unwrap();
    for i in 0..20 {
        let kind = ["temp", "humidity", "noise"][i % 3];
        writeln!(
            f,
            r#"{{"n":{i},"text":"a b c","dev":{{"kind":"{kind}","readings":[{i},{}]}},"from":"d{i}"}}"#,
            i * 10
        )
        .unwrap();
    }
    drop(f);
    let d = Daemon::start(p.path(), &[]);
    let (status, body) = d.http("POST", "/streams", Some(&serde_json::json!({"sql": s.stream_sql()}).to_string()));
    assert_eq!(status, 201, "{body}");
    let sql = r#"SELECT n, accumulateWordCount(text, " ") AS total, `from`, dev->kind AS kind,
        dev->readings[-1] AS last, CASE WHEN n % 2 = 0 THEN "even" ELSE "odd" END AS parity,
        upper(substring(dev->kind, 0, 1)) AS initial, format_time(0, "YYYY-MM-dd") AS epoch
        FROM words WHERE dev->kind IN ("temp", "noise") AND n BETWEEN 3 AND 15 AND `from` LIKE "d%""#;
    let rule = serde_json::json!({
        "id": "r1",
        "sql": sql,
        "actions": [{"file": {"path": s.output().display().to_string()}}]
    });
    let (status, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(status, 201, "{body}");
    // n in 3..=15 whose kind is temp (n % 3 = 0) or noise (n % 3 = 2).
    let want: Vec<i64> = (3..=15).filter(|n| n % 3 != 1).collect();
    let out = d.wait_lines("r1", &s.output(), want.len());
    assert_eq!(out.iter().map(|r| r["n"].as_i64().unwrap()).collect::<Vec<_>>(), want);
    for (k, row) in out.iter().enumerate() {
        let n = want[k];
        let kind = if n % 3 == 0 { "temp" } else { "noise" };
        assert_eq!(row["total"], 3 * (k as i64 + 1), "the \" \" literal splits words: {row}");
        assert_eq!(row["from"], format!("d{n}"));
        assert_eq!(row["kind"], kind);
        assert_eq!(row["last"], n * 10);
        assert_eq!(row["parity"], if n % 2 == 0 { "even" } else { "odd" });
        assert_eq!(row["initial"], kind[..1].to_uppercase());
        assert_eq!(row["epoch"], "1970-01-01");
    }
    // What is not supported yet is refused with its name, and changes nothing.
    let join = serde_json::json!({
        "id": "r2",
        "sql": "SELECT words.n FROM words INNER JOIN other ON words.n = other.n",
        "actions": [{"log": {}}]
    });
    let (status, body) = d.http("POST", "/rules", Some(&join.to_string()));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("JOIN is not supported yet"), "{body}");
    assert_eq!(d.get_json("/rules").as_array().unwrap().len(), 1);
}

#[test]
fn windows_group_and_aggregate_through_the_daemon() {
    // Issue 11, items 1 and 2 (first step): count and tumbling windows,
    // GROUP BY, built-in aggregates, HAVING, window_start()/window_end().
    let p = plugins();
    let s = Setup::new();
    let mut f = std::fs::File::create(s.input()).unwrap();
    for n in 0..30 {
        writeln!(f, r#"{{"n":{n},"k":"{}"}}"#, ["a", "b", "c"][n % 3]).unwrap();
    }
    drop(f);
    let d = Daemon::start(p.path(), &[]);
    let (status, body) = d.http("POST", "/streams", Some(&serde_json::json!({"sql": s.stream_sql()}).to_string()));
    assert_eq!(status, 201, "{body}");
    let rule = |id: &str, sql: &str, qos: u8| {
        let out = s.dir.path().join(format!("{id}.jsonl"));
        let body = serde_json::json!({"id": id, "sql": sql, "actions": [{"file": {"path": out.display().to_string()}}],
            "options": {"qos": qos}});
        (d.http("POST", "/rules", Some(&body.to_string())), out)
    };
    let ((status, body), counted) = rule(
        "counted",
        "SELECT k, count(*) AS n, sum(n) AS total FROM words GROUP BY k, COUNTWINDOW(10) HAVING count(*) > 0",
        0,
    );
    assert_eq!(status, 201, "{body}");
    let ((status, body), timed) = rule(
        "timed",
        "SELECT count(*) AS n, window_start() AS ws, window_end() AS we FROM words GROUP BY TUMBLINGWINDOW(ms, 300)",
        0,
    );
    assert_eq!(status, 201, "{body}");

    // Three windows of ten rows, one row per group each, groups in order of appearance.
    let out = d.wait_lines("counted", &counted, 9);
    let first: Vec<(String, i64, i64)> = out[..3]
        .iter()
        .map(|r| (r["k"].as_str().unwrap().to_string(), r["n"].as_i64().unwrap(), r["total"].as_i64().unwrap()))
        .collect();
    assert_eq!(first, [("a".into(), 4, 18), ("b".into(), 3, 12), ("c".into(), 3, 15)]);
    assert_eq!(out.iter().map(|r| r["n"].as_i64().unwrap()).sum::<i64>(), 30);
    assert_eq!(out.iter().map(|r| r["total"].as_i64().unwrap()).sum::<i64>(), (0..30).sum::<i64>());

    // Processing-time windows: every row counted once, windows aligned to 300 ms.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = json_lines(&timed);
        let total: i64 = rows.iter().map(|r| r["n"].as_i64().unwrap()).sum();
        for r in &rows {
            let (ws, we) = (r["ws"].as_i64().unwrap(), r["we"].as_i64().unwrap());
            assert_eq!((we - ws, ws % 300), (300, 0), "{r}");
        }
        if total == 30 {
            break;
        }
        assert!(total < 30 && Instant::now() < deadline, "counted {total} of 30: {rows:?}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = d.get_json("/rules/timed/status");
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["op_2_project_0_records_in_total"], 30, "{status}");

    // Without aggregates a window emits its rows, as eKuiper's list does.
    let ((status, body), listed) = rule("listed", "SELECT * FROM words GROUP BY COUNTWINDOW(10)", 0);
    assert_eq!(status, 201, "{body}");
    let rows = d.wait_lines("listed", &listed, 30);
    assert_eq!(rows.iter().map(|r| r["n"].as_i64().unwrap()).collect::<Vec<_>>(), (0..30).collect::<Vec<_>>());

    // With checkpointing on, the window is part of each checkpoint.
    let ((status, body), durable) = rule("durable", "SELECT count(*) AS n FROM words GROUP BY COUNTWINDOW(15)", 1);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        d.wait_lines("durable", &durable, 2).iter().map(|r| r["n"].as_i64().unwrap()).collect::<Vec<_>>(),
        [15, 15]
    );
}

#[test]
fn event_time_windows_follow_the_timestamp_field_and_count_late_rows() {
    // Issue 11, item 4: TIMESTAMP and TIMESTAMP_FORMAT, isEventTime,
    // lateTolerance; windows end on the watermark; late rows are counted.
    let p = plugins();
    let s = Setup::new();
    // Seconds 1..=25 of 2024-02-29 12:00, with 9 arriving after 11 (within a
    // 2 s tolerance) and 3 arriving after 15 (late: the watermark is 13).
    let mut order: Vec<u32> = (1..=25).filter(|t| *t != 9 && *t != 3).collect();
    order.insert(order.iter().position(|t| *t == 11).unwrap() + 1, 9);
    order.insert(order.iter().position(|t| *t == 15).unwrap() + 1, 3);
    let mut f = std::fs::File::create(s.input()).unwrap();
    for t in &order {
        writeln!(f, r#"{{"x":{t},"k":"{}","ts":"2024-02-29 12:00:{t:02}"}}"#, ["a", "b"][*t as usize % 2]).unwrap();
    }
    drop(f);
    let d = Daemon::start(p.path(), &[]);
    let stream = format!(
        r#"CREATE STREAM readings () WITH (TYPE="file", DATASOURCE="{}", FORMAT="json", TIMESTAMP="ts", TIMESTAMP_FORMAT="yyyy-MM-dd HH:mm:ss")"#,
        s.input().display()
    );
    let (status, body) = d.http("POST", "/streams", Some(&serde_json::json!({ "sql": stream }).to_string()));
    assert_eq!(status, 201, "{body}");
    let out = s.output();
    let rule = serde_json::json!({"id": "late",
        "sql": "SELECT k, count(*) AS n, sum(x) AS total, window_start() AS ws FROM readings GROUP BY k, TUMBLINGWINDOW(ss, 10)",
        "actions": [{"file": {"path": out.display().to_string()}}],
        "options": {"isEventTime": true, "lateTolerance": "2s"}});
    let (status, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(status, 201, "{body}");
    // Rows up to 25 s set the watermark to 23 s: windows [0, 10) and [10, 20)
    // end; [20, 30) waits for more rows.
    let rows = d.wait_lines("late", &out, 4);
    let base = 1_709_208_000_000i64;
    let got: Vec<(String, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            let k = r["k"].as_str().unwrap().to_string();
            (k, r["n"].as_i64().unwrap(), r["total"].as_i64().unwrap(), r["ws"].as_i64().unwrap() - base)
        })
        .collect();
    // [0, 10): odd 1..9 without 3 is 1+5+7+9 = 22 (b); even 2..8 is 20 (a).
    // Groups come in the order of their first row in the window.
    assert_eq!(
        got,
        [("b".into(), 4, 22, 0), ("a".into(), 4, 20, 0), ("a".into(), 5, 70, 10_000), ("b".into(), 5, 75, 10_000)]
    );
    let status = d.get_json("/rules/late/status");
    assert_eq!(status["window_late_rows_total"], 1, "{status}");
    assert_eq!(status["window_watermark"], base + 23_000, "{status}");

    // isEventTime without the stream's TIMESTAMP is refused, saying what is missing.
    let (status, body) = d.http("POST", "/streams", Some(&serde_json::json!({"sql": s.stream_sql()}).to_string()));
    assert_eq!(status, 201, "{body}");
    let bad = serde_json::json!({"id": "untimed", "sql": "SELECT count(*) FROM words GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [{"log": {}}], "options": {"isEventTime": true}});
    let (status, body) = d.http("POST", "/rules", Some(&bad.to_string()));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("isEventTime needs the stream's event time field"), "{body}");
    let (status, body) = d.http(
        "POST",
        "/streams",
        Some(&serde_json::json!({"sql": "CREATE STREAM odd () WITH (TYPE=\"file\", TIMESTAMP=\"ts\", TIMESTAMP_FORMAT=\"EEE\")"}).to_string()),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unsupported letters"), "{body}");
}

#[test]
fn session_sliding_state_and_filtered_windows_through_the_daemon() {
    // Issue 11, item 1: eKuiper's other windows, verbatim, on event time
    // (deterministic) and in arrival order.
    let p = plugins();
    let s = Setup::new();
    let mut f = std::fs::File::create(s.input()).unwrap();
    for (x, t) in [0, 100, 200, 5_000, 5_100, 9_000].iter().enumerate() {
        writeln!(f, r#"{{"x":{},"ts":{t}}}"#, x + 1).unwrap();
    }
    drop(f);
    let d = Daemon::start(p.path(), &[]);
    let stream = format!(
        r#"CREATE STREAM ev () WITH (TYPE="file", DATASOURCE="{}", FORMAT="json", TIMESTAMP="ts")"#,
        s.input().display()
    );
    let (status, body) = d.http("POST", "/streams", Some(&serde_json::json!({ "sql": stream }).to_string()));
    assert_eq!(status, 201, "{body}");
    let rule = |id: &str, sql: &str, event_time: bool| {
        let out = s.dir.path().join(format!("{id}.jsonl"));
        let body = serde_json::json!({"id": id, "sql": sql, "actions": [{"file": {"path": out.display().to_string()}}],
            "options": {"isEventTime": event_time}});
        let (status, text) = d.http("POST", "/rules", Some(&body.to_string()));
        assert_eq!(status, 201, "{id}: {text}");
        out
    };
    let session = rule(
        "session",
        "SELECT count(*) AS n, sum(x) AS s, window_start() AS ws, window_end() AS we FROM ev \
         GROUP BY SESSIONWINDOW(ms, 1000, 60000)",
        true,
    );
    let sliding = rule(
        "sliding",
        "SELECT count(*) AS n, window_end() AS we FROM ev GROUP BY SLIDINGWINDOW(ms, 1000) OVER (WHEN x > 2)",
        true,
    );
    let state = rule("state", "SELECT count(*) AS n, sum(x) AS s FROM ev GROUP BY STATEWINDOW(x = 2, x = 5)", false);
    let filtered =
        rule("filtered", "SELECT collect(x) AS xs FROM ev GROUP BY COUNTWINDOW(2) FILTER (WHERE x % 2 = 0)", false);
    let compact = |rows: Vec<Json>| rows.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    // Sessions end 1 s after their last row; the third is still open.
    assert_eq!(
        compact(d.wait_lines("session", &session, 2)),
        [r#"{"n":3,"s":6,"we":1200,"ws":0}"#, r#"{"n":2,"s":9,"we":6100,"ws":5000}"#]
    );
    // One window per row with x > 2, over the second before it.
    assert_eq!(
        compact(d.wait_lines("sliding", &sliding, 4)),
        [r#"{"n":3,"we":200}"#, r#"{"n":1,"we":5000}"#, r#"{"n":2,"we":5100}"#, r#"{"n":1,"we":9000}"#]
    );
    assert_eq!(compact(d.wait_lines("state", &state, 1)), [r#"{"n":4,"s":14}"#]);
    // FILTER decides which rows enter the count window: 2 and 4 make one.
    assert_eq!(compact(d.wait_lines("filtered", &filtered, 1)), [r#"{"xs":[2,4]}"#]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(json_lines(&session).len(), 2, "the open session is not emitted");
    assert_eq!(json_lines(&filtered).len(), 1, "6 alone does not fill a window");
}

#[test]
fn describe_shows_the_older_version_a_running_rule_still_uses() {
    // Issue 16, item 5: a rule keeps the version it started with when a newer
    // file is dropped in, and describe must say so.
    let p = plugins();
    p.add("functions", "echo@v1.0.2", "echo");
    let s = Setup::new();
    write_lines(&s.input(), 0, 5);
    let d = Daemon::start(p.path(), &[]);
    let (status, body) = d.http("POST", "/streams", Some(&serde_json::json!({"sql": s.stream_sql()}).to_string()));
    assert_eq!(status, 201, "{body}");
    let rule = serde_json::json!({"id": "old", "sql": "SELECT echo(n) AS e FROM words",
        "actions": [{"file": {"path": s.output().display().to_string()}}]});
    let (status, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(status, 201, "{body}");
    d.wait_lines("old", &s.output(), 5);
    p.add("functions", "echo@v1.0.3", "echo");
    let (status, _) = d.http("GET", "/plugins/functions", None);
    assert_eq!(status, 200);
    let info = d.get_json("/plugins/functions/echo");
    assert_eq!(info["version"], "1.0.3", "the newest file takes effect for new rules: {info}");
    let processes = info["processes"].as_array().cloned().unwrap_or_default();
    assert!(
        processes
            .iter()
            .any(|p| p["version"] == "1.0.2" && p["file"].as_str().is_some_and(|f| f.ends_with("echo@v1.0.2"))),
        "the process of the older version is listed: {info}"
    );
    let (ok, out, err) = d.cli(&["plugin", "describe", "function", "echo"]);
    assert!(ok, "{err}");
    assert!(out.contains("1.0.2") && !out.contains("none running"), "{out}");
}

#[test]
fn stop_start_restart_and_delete_through_the_cli() {
    let p = plugins();
    let s = Setup::new();
    write_lines(&s.input(), 0, 20);
    let d = Daemon::start(p.path(), &[]);
    let (ok, out, err) = d.cli(&["stream", "create", &s.stream_sql()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "Stream words is created.");
    let rule_file = s.dir.path().join("rule.json");
    std::fs::write(&rule_file, s.rule("r1")).unwrap();
    let (ok, _, err) = d.cli(&["rule", "create", "--file", rule_file.to_str().unwrap()]);
    assert!(ok, "{err}");
    d.wait_lines("r1", &s.output(), 10);

    let (ok, out, _) = d.cli(&["rule", "list"]);
    assert!(ok && out.contains("r1") && out.contains("running"), "{out}");
    let running = d.get_json("/rules/r1/status");
    assert_eq!(running["source_words_0_connection_status"], 1, "{running}");
    assert_eq!(running["sink_file_0_0_connection_status"], 1, "{running}");
    assert_eq!(running["source_words_0_messages_processed_total"], running["source_words_0_records_in_total"]);
    assert_eq!(running["lastStopTimestamp"], 0, "{running}");
    let (ok, out, _) = d.cli(&["rule", "stop", "r1"]);
    assert!(ok, "{out}");
    // eKuiper's status keys for a stopped rule.
    let stopped = d.get_json("/rules/r1/status");
    assert_eq!(
        (&stopped["status"], &stopped["message"]),
        (&serde_json::json!("stopped"), &serde_json::json!("canceled manually")),
        "{stopped}"
    );
    let (start, stop) =
        (stopped["lastStartTimestamp"].as_u64().unwrap(), stopped["lastStopTimestamp"].as_u64().unwrap());
    assert!(start > 1_700_000_000_000 && stop >= start, "{stopped}");
    assert_eq!(stopped["nextStartTimestamp"], 0);
    write_lines(&s.input(), 20, 40);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(json_lines(&s.output()).len(), 10, "a stopped rule writes nothing");

    // A restarted qos 0 rule reads its stream again from the start.
    let (ok, _, err) = d.cli(&["rule", "start", "r1"]);
    assert!(ok, "{err}");
    d.wait_lines("r1", &s.output(), 30);
    let (ok, _, err) = d.cli(&["rule", "restart", "r1"]);
    assert!(ok, "{err}");
    assert_eq!(d.get_json("/rules/r1/status")["status"], "running");

    let (ok, out, _) = d.cli(&["rule", "status", "r1"]);
    assert!(ok && out.contains("source_words_0_records_in_total"), "{out}");
    let (ok, out, _) = d.cli(&["rule", "describe", "r1", "--json"]);
    assert!(ok);
    assert_eq!(json(&out)["id"], "r1");
    let (ok, out, _) = d.cli(&["stream", "describe", "words"]);
    assert!(ok && out.contains("DATASOURCE"), "{out}");

    let (ok, _, err) = d.cli(&["stream", "drop", "words"]);
    assert!(!ok && err.contains("used by rules r1"), "{err}");
    let status = d.get_json("/rules/r1/status");
    let pids: Vec<u32> =
        status["plugins"].as_array().unwrap().iter().filter_map(|p| p["pid"].as_u64()).map(|p| p as u32).collect();
    let (ok, _, err) = d.cli(&["rule", "delete", "r1"]);
    assert!(ok, "{err}");
    assert_eq!(d.http("GET", "/rules/r1", None).0, 404);
    assert!(pids.iter().all(|p| !alive(*p)), "a deleted rule's plugin processes are stopped");
    let (ok, _, err) = d.cli(&["stream", "drop", "words"]);
    assert!(ok, "{err}");
    let (ok, out, _) = d.cli(&["stream", "list"]);
    assert!(ok && out.trim() == "no streams", "{out}");
}

#[test]
fn a_restarted_daemon_keeps_streams_and_rules_and_resumes_running_rules() {
    let p = plugins();
    let s = Setup::new();
    write_lines(&s.input(), 0, 10);
    let data = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(p.path(), data.path(), &[]);
    create_stream_and_rule(&d, &s);
    let stopped = serde_json::json!({"id": "r2", "sql": "SELECT n FROM words", "actions": [{"log": {}}]});
    assert_eq!(d.http("POST", "/rules", Some(&stopped.to_string())).0, 201);
    assert_eq!(d.http("POST", "/rules/r2/stop", None).0, 200);
    d.wait_lines("r1", &s.output(), 5);
    assert!(d.terminate().success());
    drop(d);

    let d = Daemon::start_in(p.path(), data.path(), &[]);
    assert_eq!(d.get_json("/streams"), serde_json::json!(["words"]));
    let rules = d.get_json("/rules");
    assert_eq!(rules, serde_json::json!([{"id": "r1", "status": "running"}, {"id": "r2", "status": "stopped"}]));
    // qos 0 keeps no offsets: the resumed rule reads its file from the start.
    write_lines(&s.input(), 10, 20);
    let out = d.wait_lines("r1", &s.output(), 15);
    assert_eq!(out.last().unwrap()["n"], 18);
}

#[test]
fn every_malformed_request_is_a_4xx_that_changes_nothing() {
    let p = plugins();
    let s = Setup::new();
    write_lines(&s.input(), 0, 1);
    let d = Daemon::start(p.path(), &[]);
    create_stream_and_rule(&d, &s);
    let rule = |sql: &str, sink: &str| {
        serde_json::json!({"id": "bad", "sql": sql, "actions": [{sink: {"path": "/dev/null"}}]}).to_string()
    };
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("POST", "/rules", "{not json".into(), 400, "invalid rule JSON"),
        ("POST", "/rules", r#"{"id":"bad","actions":[{"log":{}}]}"#.into(), 400, "missing field `sql`"),
        ("POST", "/rules", rule("SELEC n FROM words", "log"), 400, "invalid SQL"),
        ("POST", "/rules", rule("SELECT nope(n) FROM words", "log"), 400, "unknown function \"nope\""),
        ("POST", "/rules", rule("SELECT n FROM nowhere", "log"), 400, "unknown stream \"nowhere\""),
        ("POST", "/rules", rule("SELECT n FROM words", "teleport"), 400, "unknown sink \"teleport\""),
        (
            "POST",
            "/rules",
            rule("SELECT accumulateWordCount(text) FROM words", "log"),
            400,
            "only supports 2 parameters",
        ),
        (
            "POST",
            "/rules",
            rule("SELECT accumulateWordCount(text, n) FROM words", "log"),
            400,
            "must be a string literal",
        ),
        ("POST", "/rules", rule("SELECT lower(a, b) FROM words", "log"), 400, "lower expects 1 argument"),
        // eKuiper answers duplicates with 400, and its clients test for it.
        ("POST", "/rules", s.rule("r1"), 400, "rule r1 already exists"),
        ("PUT", "/rules/r1", s.rule("other"), 400, "does not match"),
        ("POST", "/streams", "{}".into(), 400, "missing field \"sql\""),
        ("POST", "/streams", r#"{"sql":"CREATE STREAM x"}"#.into(), 400, "expected '('"),
        ("POST", "/streams", r#"{"sql":"CREATE STREAM x () WITH (TYPE=\"nosuch\")"}"#.into(), 400, "no source plugin"),
        ("POST", "/streams", serde_json::json!({"sql": s.stream_sql()}).to_string(), 400, "already exists"),
        ("DELETE", "/streams/words", String::new(), 409, "used by"),
        ("DELETE", "/streams/nowhere", String::new(), 404, "no stream named"),
        ("POST", "/rules/nope/start", String::new(), 404, "no rule named"),
        ("POST", "/rules/r1/explode", String::new(), 404, "unknown rule action"),
    ];
    for (method, path, body, want_status, want_msg) in cases {
        let (status, resp) = d.http(method, path, Some(&body));
        assert_eq!(status, want_status, "{method} {path} {body}: {resp}");
        let msg = json(&resp)["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(want_msg), "{method} {path} {body}: {msg}");
    }
    assert_eq!(d.get_json("/rules"), serde_json::json!([{"id": "r1", "status": "running"}]));
    assert_eq!(d.get_json("/streams"), serde_json::json!(["words"]));
    assert_eq!(d.get_json("/rules/r1")["sql"], json(&s.rule("r1"))["sql"]);
}

#[test]
fn a_forced_drop_removes_a_stream_that_rules_use() {
    // eKuiper's `DELETE /streams/{name}?force=true`: the stream goes although
    // r1 uses it, and r1 runs on with the definition it started with.
    let p = plugins();
    let s = Setup::new();
    write_lines(&s.input(), 0, 5);
    let d = Daemon::start(p.path(), &[]);
    create_stream_and_rule(&d, &s);
    assert_eq!(d.http("DELETE", "/streams/words", None).0, 409, "not without force");
    let (status, body) = d.http("DELETE", "/streams/words?force=true", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(d.get_json("/streams"), serde_json::json!([]));
    assert_eq!(d.get_json("/rules/r1/status")["status"], "running");
}

#[test]
fn a_slow_sink_slows_the_source_and_memory_stays_bounded() {
    let p = plugins();
    let d = Daemon::start(p.path(), &[]);
    let sql = r#"CREATE STREAM fast () WITH (TYPE="random", interval="0", pattern='{"x":1}')"#;
    assert_eq!(d.http("POST", "/streams", Some(&serde_json::json!({"sql": sql}).to_string())).0, 201);
    let rule = serde_json::json!({
        "id": "r1", "sql": "SELECT x FROM fast",
        "actions": [{"slow": {"delayMs": 50}}], "options": {"bufferLength": 100}
    });
    assert_eq!(d.http("POST", "/rules", Some(&rule.to_string())).0, 201);
    std::thread::sleep(Duration::from_secs(3));
    let status = d.get_json("/rules/r1/status");
    let read = status["source_fast_0_records_out_total"].as_u64().unwrap();
    let written = status["sink_slow_0_0_records_in_total"].as_u64().unwrap();
    // Unbounded, the source would have produced millions of records by now.
    // Bounded, it is ahead of the sink by at most the batches in flight: two
    // in the source stream, one being processed, two queued for the sink and
    // one being written, of at most bufferLength records each.
    assert!(written > 0, "{status}");
    assert!(read - written <= 6 * 100, "read {read}, written {written}: the source ran ahead");
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", d.child.id()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse().unwrap()))
        .unwrap();
    assert!(rss_kb < 200_000, "daemon RSS {rss_kb} kB");
}

#[test]
fn a_crashed_function_plugin_is_restarted_and_the_rule_carries_on() {
    let p = plugins();
    let s = Setup::new();
    write_lines(&s.input(), 0, 10);
    let d = Daemon::start(p.path(), &[]);
    create_stream_and_rule(&d, &s);
    d.wait_lines("r1", &s.output(), 5);
    let status = d.get_json("/rules/r1/status");
    let function =
        status["plugins"].as_array().unwrap().iter().find(|p| p["operator"] == "fn_0_accumulatewordcount").unwrap();
    let pid = function["pid"].as_u64().unwrap() as u32;
    kill9(pid);
    write_lines(&s.input(), 10, 20);
    let out = d.wait_lines("r1", &s.output(), 10);
    // The restarted process resumed from the supervisor's copy of its state.
    assert_eq!(out[9]["total"], 30, "{:?}", out[9]);
    let status = d.get_json("/rules/r1/status");
    assert_eq!(status["status"], "running");
    let function =
        status["plugins"].as_array().unwrap().iter().find(|p| p["operator"] == "fn_0_accumulatewordcount").unwrap();
    assert_eq!(function["restarts"], 1);
    assert_ne!(function["pid"].as_u64().unwrap() as u32, pid);
}

#[test]
fn a_crashed_source_resumes_after_the_last_accepted_offset() {
    let p = plugins();
    let s = Setup::new();
    write_lines(&s.input(), 0, 10);
    let d = Daemon::start(p.path(), &[]);
    create_stream_and_rule(&d, &s);
    d.wait_lines("r1", &s.output(), 5);
    let status = d.get_json("/rules/r1/status");
    let source = status["plugins"].as_array().unwrap().iter().find(|p| p["operator"] == "source").unwrap();
    kill9(source["pid"].as_u64().unwrap() as u32);
    write_lines(&s.input(), 10, 20);
    let out = d.wait_lines("r1", &s.output(), 10);
    std::thread::sleep(Duration::from_millis(300));
    let out_after = json_lines(&s.output());
    assert_eq!(out_after.len(), 10, "records were repeated after the source restarted: {out_after:?}");
    let ns: Vec<i64> = out.iter().map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (0..20).step_by(2).collect::<Vec<_>>());
}

#[test]
fn a_rule_whose_plugin_cannot_start_ends_in_error_with_the_reason() {
    let p = plugins();
    let s = Setup::new();
    write_lines(&s.input(), 0, 1);
    let d = Daemon::start(p.path(), &[]);
    create_stream_and_rule(&d, &s);
    assert_eq!(d.http("POST", "/rules/r1/stop", None).0, 200);
    // Replace the sink with one that dies at start.
    std::fs::remove_file(p.path().join("sinks/file")).unwrap();
    p.add_fixture("sinks", "file", &[("OORT_FIXTURE_MODE", "exit-at-start"), ("OORT_FIXTURE_NAME", "file")]);
    assert_eq!(d.http("POST", "/rules/r1/start", None).0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = d.get_json("/rules/r1/status");
        if status["status"] == "error" || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["status"], "error", "{status}");
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("cannot open sink file") && msg.contains("exiting at start as asked"), "{msg}");
}
