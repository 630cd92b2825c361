//! Checkpoints and exactly-once delivery, under real `kill -9`s of plugins and
//! of the supervisor itself.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oort_tests::{alive, json, kill9, Daemon, PluginsDir};
use serde_json::Value as Json;

fn plugins() -> PluginsDir {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    p.add("functions", "accumulateWordCount", "accumulateWordCount");
    // The conformance plugin's cf_agg: an aggregate function plugin that keeps
    // a counter in its state.
    p.add("functions", "conformance", "conformance");
    std::fs::write(p.path().join("functions/conformance.json"), r#"{"functions": [{"name": "cf_agg"}]}"#).unwrap();
    p
}

/// Row `i` of the input has `i % 5 + 1` words.
fn words(i: usize) -> usize {
    i % 5 + 1
}

fn append_input(path: &Path, from: usize, to: usize) {
    let mut buf = String::new();
    for i in from..to {
        let text: Vec<String> = (0..words(i)).map(|w| format!("w{w}")).collect();
        buf.push_str(&format!("{{\"n\":{i},\"text\":\"{}\"}}\n", text.join(" ")));
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(buf.as_bytes()).unwrap();
}

/// What a failure-free run of the rule writes for rows `0..n`.
fn expected_output(n: usize) -> String {
    let mut total = 0;
    let mut out = String::new();
    for i in 0..n {
        total += words(i);
        out.push_str(&format!("{{\"n\":{i},\"total\":{total}}}\n"));
    }
    out
}

struct Rule {
    dir: tempfile::TempDir,
    qos: u8,
    sql: &'static str,
    /// Appended to the stream's `WITH (…)`.
    stream_options: &'static str,
    /// Merged into the rule's options.
    options: Json,
}

/// The chaos rule: a stateful plugin function over every record.
const WORD_COUNT: &str = "SELECT n, accumulateWordCount(text, ' ') AS total FROM words";

impl Rule {
    fn new(qos: u8) -> Rule {
        Rule::with_sql(qos, WORD_COUNT)
    }
    fn with_sql(qos: u8, sql: &'static str) -> Rule {
        Rule { dir: tempfile::tempdir().unwrap(), qos, sql, stream_options: "", options: serde_json::json!({}) }
    }
    /// The rule on event time: a row's time is its `n`, in milliseconds.
    fn on_event_time(qos: u8, sql: &'static str) -> Rule {
        Rule {
            stream_options: r#", TIMESTAMP="n""#,
            options: serde_json::json!({"isEventTime": true, "lateTolerance": 0}),
            ..Rule::with_sql(qos, sql)
        }
    }
    fn input(&self) -> PathBuf {
        self.dir.path().join("in.jsonl")
    }
    fn output(&self) -> PathBuf {
        self.dir.path().join("out.jsonl")
    }
    fn create(&self, d: &Daemon, id: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(self.input()).unwrap();
        let sql = format!(
            r#"CREATE STREAM words () WITH (TYPE="file", DATASOURCE="{}"{})"#,
            self.input().display(),
            self.stream_options
        );
        let (status, body) = d.http("POST", "/streams", Some(&serde_json::json!({ "sql": sql }).to_string()));
        assert!(status == 201 || (status == 400 && body.contains("already exists")), "{body}");
        let mut rule = serde_json::json!({
            "id": id,
            "sql": self.sql,
            "actions": [{"file": {"path": self.output().display().to_string()}}],
            "options": {
                "qos": self.qos, "checkpointInterval": 200, "bufferLength": 256,
                "restartStrategy": {"attempts": 1000, "delay": 20, "multiplier": 1.5, "maxDelay": 500, "jitterFactor": 0.1}
            }
        });
        for (k, v) in self.options.as_object().unwrap() {
            rule["options"][k] = v.clone();
        }
        let (status, body) = d.http("POST", "/rules", Some(&rule.to_string()));
        assert_eq!(status, 201, "{body}");
    }
    fn output_text(&self) -> String {
        std::fs::read_to_string(self.output()).unwrap_or_default()
    }
}

/// Kills the daemon with SIGKILL, waits for its plugins to follow it, and
/// starts a new one on the same data folder.
fn crash_and_restart(d: Daemon, plugins: &PluginsDir, data: &Path) -> Daemon {
    let pid = d.child.id();
    // Keep the dead daemon's log for the diagnosis of a failure.
    let _ = std::fs::write(data.join(format!("daemon-{pid}.log")), d.crash("chaos"));
    Daemon::start_in(plugins.path(), data, &[])
}

/// Waits until the output stops growing at `len` bytes or more.
fn wait_output(d: &Daemon, rule: &Rule, len: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while rule.output_text().len() < len {
        assert!(
            Instant::now() < deadline,
            "output stuck at {} of {len} bytes; status {}\nlog tail:\n{}",
            rule.output_text().len(),
            d.http("GET", "/rules/chaos/status", None).1,
            d.log().lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the rule has completed a checkpoint newer than the one current
/// now, so that everything already processed is in a checkpoint.
fn wait_next_checkpoint(d: &Daemon, rule: &str) {
    let id = |d: &Daemon| d.get_json(&format!("/rules/{rule}/status"))["checkpoint_last_id"].as_u64().unwrap_or(0);
    let start = id(d);
    let deadline = Instant::now() + Duration::from_secs(10);
    while id(d) <= start + 1 {
        assert!(Instant::now() < deadline, "no new checkpoint after {start}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// JSON lines, as the `file` sink writes them.
fn jsonl(rows: impl IntoIterator<Item = Json>) -> String {
    rows.into_iter().map(|row| format!("{row}\n")).collect()
}

/// Waits for `expected`'s length of output, then requires exactly it: what a
/// failure-free run writes.
fn assert_output_is(d: &Daemon, rule: &Rule, data: &Path, expected: &str) {
    wait_output(d, rule, expected.len(), Duration::from_secs(60));
    // Give a lagging duplicate the chance to show up before comparing.
    std::thread::sleep(Duration::from_millis(500));
    let got = rule.output_text();
    if got != expected {
        let first_diff = got.lines().zip(expected.lines()).position(|(a, b)| a != b);
        let around = |text: &str| match first_diff {
            Some(i) => text.lines().skip(i.saturating_sub(2)).take(5).collect::<Vec<_>>().join("\n"),
            None => String::new(),
        };
        panic!(
            "output differs from a failure-free run: {} vs {} bytes, first differing line {first_diff:?}\n\
             got:\n{}\nexpected:\n{}\nrecoveries (every daemon's log):\n{}",
            got.len(),
            expected.len(),
            around(&got),
            around(expected),
            recovery_log(d, data)
        );
    }
}

/// The lines of every daemon's log of a chaos run that tell what was
/// restored, committed or failed, in order.
fn recovery_log(d: &Daemon, data: &Path) -> String {
    let mut logs: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(data)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("daemon-"))
        .map(|e| {
            (e.metadata().and_then(|m| m.modified()).unwrap(), std::fs::read_to_string(e.path()).unwrap_or_default())
        })
        .collect();
    logs.sort();
    logs.push((std::time::SystemTime::now(), d.log()));
    let keep =
        ["restored", "checkpoint", "fail", "restart", "rewind", "commit", "truncat", "repair", "exited", "killed"];
    logs.into_iter()
        .enumerate()
        .flat_map(|(i, (_, log))| {
            let mut lines = vec![format!("--- daemon {i}")];
            lines.extend(log.lines().filter(|l| keep.iter().any(|k| l.contains(k))).map(str::to_string));
            lines
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A small deterministic generator, so that a failing run can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Feeds `total` rows over about `feed_for` while killing a random plugin of
/// the rule every few hundred milliseconds and the supervisor `supervisor_kills`
/// times. Returns the daemon that survives and the number of plugin kills.
struct Chaos {
    daemon: Daemon,
    rule: Rule,
    _plugins: PluginsDir,
    data: tempfile::TempDir,
}

/// The chaos tests take turns: each wants the machine's two cores to itself so
/// that its kills land mid-processing rather than in a queue.
static ONE_CHAOS_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn chaos(qos: u8, seed: u64, total: usize, feed_for: Duration, supervisor_kills: usize) -> Chaos {
    chaos_of(Rule::new(qos), seed, total, feed_for, supervisor_kills)
}

fn chaos_of(rule: Rule, seed: u64, total: usize, feed_for: Duration, supervisor_kills: usize) -> Chaos {
    let p = plugins();
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_path_buf();
    let mut d = Daemon::start_in(p.path(), &data, &[]);
    rule.create(&d, "chaos");
    let mut rng = XorShift(seed);
    let chunks = 50;
    let per_chunk = total / chunks;
    let pause = feed_for / chunks as u32;
    let mut plugin_kills = 0;
    let mut supervisor_kills_done = 0;
    for c in 0..chunks {
        append_input(&rule.input(), c * per_chunk, (c + 1) * per_chunk);
        // Strike while the chunk is being processed, not only once it is done.
        let strike = Duration::from_millis(rng.next() % 40);
        std::thread::sleep(strike);
        if c > 0 && c % (chunks / (supervisor_kills + 1)) == 0 && supervisor_kills_done < supervisor_kills {
            d = crash_and_restart(d, &p, &data);
            supervisor_kills_done += 1;
            std::thread::sleep(pause.saturating_sub(strike));
            continue;
        }
        // The rule may be between processes (restoring after the previous
        // kill): wait for a live victim rather than skipping this round.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let pids = d.plugin_pids("chaos");
            if !pids.is_empty() {
                let victim = pids[(rng.next() % pids.len() as u64) as usize];
                if alive(victim) {
                    kill9(victim);
                    plugin_kills += 1;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(pause.saturating_sub(strike));
    }
    println!("seed {seed}: {plugin_kills} plugin kills, {supervisor_kills_done} supervisor kills");
    assert!(plugin_kills >= 20, "only {plugin_kills} plugin kills");
    assert_eq!(supervisor_kills_done, supervisor_kills);
    Chaos { daemon: d, rule, _plugins: p, data: data_dir }
}

#[test]
fn exactly_once_under_chaos_the_output_equals_a_failure_free_run() {
    let _turn = ONE_CHAOS_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let total = 100_000;
    // Bind the whole value: a `..` pattern would drop the plugins and data
    // directories at the end of the `let`, and a plugin restarted after that
    // finds its executable gone.
    let Chaos { daemon: d, rule, _plugins, data } = chaos(2, 0x5eed_0f0a7, total, Duration::from_secs(20), 3);
    assert_output_is(&d, &rule, data.path(), &expected_output(total));
    let status = d.get_json("/rules/chaos/status");
    assert_eq!(status["status"], "running", "{status}");
}

#[test]
fn a_count_window_under_chaos_at_qos_2_equals_a_failure_free_run() {
    // Issue 11, item 5 (first step): the window's groups and partial
    // aggregates are in every checkpoint, so a kill -9 of a plugin or of the
    // daemon neither loses nor repeats a window result.
    let _turn = ONE_CHAOS_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let total = 30_000;
    let sql = "SELECT n % 3 AS k, count(*) AS c, sum(n) AS s, min(n) AS lo, max(n) AS hi \
               FROM words GROUP BY n % 3, COUNTWINDOW(90)";
    let Chaos { daemon: d, rule, _plugins, data } =
        chaos_of(Rule::with_sql(2, sql), 0x0c04_17ed, total, Duration::from_secs(10), 2);
    // Each window of 90 rows has three groups of 30, in order of appearance.
    let expected = jsonl((0..total / 90).flat_map(|w| {
        (0..3).map(move |k| {
            let ns: Vec<usize> = (90 * w..90 * (w + 1)).filter(|n| n % 3 == k).collect();
            serde_json::json!({"k": k, "c": ns.len(), "s": ns.iter().sum::<usize>(), "lo": ns[0], "hi": ns[ns.len() - 1]})
        })
    }));
    assert_output_is(&d, &rule, data.path(), &expected);
    assert_eq!(d.get_json("/rules/chaos/status")["status"], "running");
}

#[test]
fn an_event_time_tumbling_window_with_an_aggregate_plugin_under_chaos_equals_a_failure_free_run() {
    // Issue 11, items 3 and 5: event-time windows, their watermark and an
    // aggregate plugin's calls survive kill -9s of plugins and of the daemon
    // with exactly the output of an uninterrupted run.
    let _turn = ONE_CHAOS_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let total = 30_000;
    let sql = "SELECT count(*) AS c, sum(n) AS s, cf_agg(n) AS a, window_start() AS ws \
               FROM words GROUP BY TUMBLINGWINDOW(ms, 500)";
    let Chaos { daemon: d, rule, _plugins, data } =
        chaos_of(Rule::on_event_time(2, sql), 0x7e_a7ed, total, Duration::from_secs(10), 2);
    // The last row (29 999) moves the watermark past every window but the last.
    let expected = jsonl((0..total / 500 - 1).map(|w| {
        let s: usize = (500 * w..500 * (w + 1)).sum();
        serde_json::json!({"c": 500, "s": s, "a": {"n": 500, "sum": s}, "ws": 500 * w})
    }));
    assert_output_is(&d, &rule, data.path(), &expected);
    let status = d.get_json("/rules/chaos/status");
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["window_late_rows_total"], 0, "{status}");
    assert_eq!(status["window_watermark"], total - 1, "{status}");
}

#[test]
fn an_event_time_hopping_window_under_chaos_equals_a_failure_free_run() {
    let _turn = ONE_CHAOS_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let total = 30_000;
    let sql = "SELECT count(*) AS c, sum(n) AS s, window_end() AS we FROM words GROUP BY HOPPINGWINDOW(ms, 1000, 500)";
    let Chaos { daemon: d, rule, _plugins, data } =
        chaos_of(Rule::on_event_time(2, sql), 0x0405_1e55, total, Duration::from_secs(10), 2);
    // Windows of 1 000 every 500 end at 500, 1 000, … 29 500; the first holds only 0..500.
    let expected = jsonl((500..total).step_by(500).map(|end| {
        let rows = end.saturating_sub(1000)..end;
        serde_json::json!({"c": rows.len(), "s": rows.sum::<usize>(), "we": end})
    }));
    assert_output_is(&d, &rule, data.path(), &expected);
    assert_eq!(d.get_json("/rules/chaos/status")["status"], "running");
}

#[test]
fn a_processing_time_window_under_chaos_loses_no_row_and_repeats_no_window() {
    // Issue 11, item 5: on processing time a replayed row lands in the window
    // of its replay, so the output differs from a failure-free run's, but at
    // qos 2 every row is counted exactly once and no window is written twice.
    let _turn = ONE_CHAOS_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let total = 30_000;
    let sql = "SELECT count(*) AS c, sum(n) AS s, window_start() AS ws FROM words GROUP BY TUMBLINGWINDOW(ms, 200)";
    let Chaos { daemon: d, rule, _plugins, data: _data } =
        chaos_of(Rule::with_sql(2, sql), 0x9c0c_e551, total, Duration::from_secs(10), 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let windows: Vec<Json> = rule.output_text().lines().map(json).collect();
        let counted: u64 = windows.iter().map(|w| w["c"].as_u64().unwrap()).sum();
        if counted >= total as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "{counted} of {total} rows counted\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give a duplicate the chance to show up.
    std::thread::sleep(Duration::from_millis(700));
    let windows: Vec<Json> = rule.output_text().lines().map(json).collect();
    let counted: u64 = windows.iter().map(|w| w["c"].as_u64().unwrap()).sum();
    let summed: u64 = windows.iter().map(|w| w["s"].as_u64().unwrap()).sum();
    assert_eq!((counted, summed), (total as u64, (0..total as u64).sum()), "every row counted once");
    let mut starts: Vec<i64> = windows.iter().map(|w| w["ws"].as_i64().unwrap()).collect();
    let n = starts.len();
    starts.sort_unstable();
    starts.dedup();
    assert_eq!(starts.len(), n, "a window was written twice");
    assert_eq!(d.get_json("/rules/chaos/status")["status"], "running");
}

#[test]
fn at_least_once_under_chaos_loses_nothing() {
    let _turn = ONE_CHAOS_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let total = 100_000;
    let Chaos { daemon: d, rule, _plugins, data: _data } = chaos(1, 0xa71e_a570, total, Duration::from_secs(20), 3);
    // Every row must arrive; duplicates are allowed and counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (rows, duplicates) = loop {
        let mut seen = vec![0u32; total];
        let mut lines = 0;
        for line in rule.output_text().lines() {
            let row = json(line);
            let n = row["n"].as_u64().unwrap() as usize;
            // A replayed row is an exact copy: same running total as first time.
            let want_total: usize = (0..=n).map(words).sum();
            assert_eq!(row["total"], want_total, "row {n} has a wrong total: {line}");
            seen[n] += 1;
            lines += 1;
        }
        let missing = seen.iter().filter(|c| **c == 0).count();
        if missing == 0 {
            break (lines, lines - total);
        }
        assert!(
            Instant::now() < deadline,
            "{missing} rows never arrived; status {}\nlog tail:\n{}",
            d.http("GET", "/rules/chaos/status", None).1,
            d.log().lines().rev().take(40).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("qos 1 under chaos: {rows} rows written for {total} inputs, {duplicates} duplicates");
    assert_eq!(d.get_json("/rules/chaos/status")["status"], "running");
}

#[test]
fn a_corrupt_checkpoint_stops_the_rule_with_a_clear_error_until_reset() {
    let p = plugins();
    let data = tempfile::tempdir().unwrap();
    let rule = Rule::new(1);
    append_input(&rule.input(), 0, 100);
    let mut d = Daemon::start_in(p.path(), data.path(), &[]);
    rule.create(&d, "chaos");
    wait_output(&d, &rule, expected_output(100).len(), Duration::from_secs(20));
    wait_next_checkpoint(&d, "chaos");
    assert!(d.terminate().success());
    drop(d);

    let store = oort_store::Store::open(&data.path().join("db")).unwrap();
    let ids = store.checkpoint_ids("chaos").unwrap();
    let newest = *ids.last().expect("checkpoints were taken");
    assert!(ids.len() <= 3, "only the newest 3 are kept: {ids:?}");
    store.put_checkpoint_raw("chaos", newest, b"\xde\xad\xbe\xef not a checkpoint").unwrap();
    drop(store);

    let d = Daemon::start_in(p.path(), data.path(), &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = d.get_json("/rules/chaos/status");
        if s["status"] == "error" || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["status"], "error", "{status}");
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("rule chaos") && msg.contains(&format!("checkpoint {newest}")), "{msg}");
    assert!(msg.contains("reset-state"), "{msg}");
    let before = rule.output_text().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rule.output_text().len(), before, "a rule with an unreadable checkpoint processes nothing");

    // The operator chooses to start over: an empty state, from the stream's start.
    let (ok, out, err) = d.cli(&["rule", "reset-state", "chaos"]);
    assert!(ok, "{err}");
    assert!(out.contains("reset"), "{out}");
    wait_output(&d, &rule, before + expected_output(100).len(), Duration::from_secs(20));
    let text = rule.output_text();
    assert_eq!(&text[before..], expected_output(100), "the reset rule counts from zero again");
}

#[test]
fn a_deleted_rules_checkpoints_are_gone_for_a_new_rule_with_its_id() {
    let p = plugins();
    let rule = Rule::new(1);
    append_input(&rule.input(), 0, 50);
    let d = Daemon::start(p.path(), &[]);
    rule.create(&d, "chaos");
    wait_output(&d, &rule, expected_output(50).len(), Duration::from_secs(20));
    wait_next_checkpoint(&d, "chaos");
    assert_eq!(d.http("DELETE", "/rules/chaos", None).0, 200);
    std::fs::remove_file(rule.output()).unwrap();
    // eKuiper bug #871: a new rule with the same id reused the old state.
    rule.create(&d, "chaos");
    wait_output(&d, &rule, expected_output(50).len(), Duration::from_secs(20));
    assert_eq!(rule.output_text(), expected_output(50));
}

#[test]
fn one_rule_calling_a_function_twice_has_two_counters() {
    let p = plugins();
    let rule = Rule::new(0);
    append_input(&rule.input(), 0, 10);
    let d = Daemon::start(p.path(), &[]);
    let sql = format!(r#"CREATE STREAM words () WITH (TYPE="file", DATASOURCE="{}")"#, rule.input().display());
    assert_eq!(d.http("POST", "/streams", Some(&serde_json::json!({ "sql": sql }).to_string())).0, 201);
    let def = serde_json::json!({
        "id": "twice",
        "sql": "SELECT n, accumulateWordCount(text, ' ') AS a, accumulateWordCount(concat(text, ' extra'), ' ') AS b FROM words",
        "actions": [{"file": {"path": rule.output().display().to_string()}}]
    });
    assert_eq!(d.http("POST", "/rules", Some(&def.to_string())).0, 201);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rule.output_text().lines().count() < 10 {
        assert!(Instant::now() < deadline, "no output");
        std::thread::sleep(Duration::from_millis(20));
    }
    let last: Json = json(rule.output_text().lines().last().unwrap());
    let a: usize = (0..10).map(words).sum();
    assert_eq!(last["a"], a);
    assert_eq!(last["b"], a + 10, "the second call site counts one more word per row, on its own counter");
}

#[test]
fn a_checkpointed_rule_over_a_source_that_cannot_replay_says_so() {
    let p = plugins();
    p.add("sources", "random", "random");
    let d = Daemon::start(p.path(), &[]);
    let sql = r#"CREATE STREAM r () WITH (TYPE="random", interval="50", pattern='{"text":"a b"}')"#;
    assert_eq!(d.http("POST", "/streams", Some(&serde_json::json!({ "sql": sql }).to_string())).0, 201);
    let out = tempfile::tempdir().unwrap();
    let rule = serde_json::json!({
        "id": "q", "sql": "SELECT text FROM r",
        "actions": [{"file": {"path": out.path().join("o.jsonl").display().to_string()}}],
        "options": {"qos": 1, "checkpointInterval": 100}
    });
    assert_eq!(d.http("POST", "/rules", Some(&rule.to_string())).0, 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = d.get_json("/rules/q/status");
        if s.get("warning").is_some() || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let warning = status["warning"].as_str().unwrap_or_default();
    assert!(warning.contains("source random is not rewindable") && warning.contains("not replayed"), "{status}");
    assert_eq!(status["status"], "running");
}

/// A checkpoint that cannot complete (here: one of two sinks refuses its
/// pre-commit) is aborted in every sink that did pre-commit, and the rule says
/// why it cannot go on.
#[test]
fn a_checkpoint_one_sink_refuses_is_aborted_in_the_others() {
    let p = plugins();
    p.add("sources", "conformance", "conformance");
    p.add("sinks", "conformance", "conformance");
    let d = Daemon::start(p.path(), &[]);
    let sql = r#"CREATE STREAM c () WITH (TYPE="conformance", count="1000000")"#;
    assert_eq!(d.http("POST", "/streams", Some(&serde_json::json!({ "sql": sql }).to_string())).0, 201);
    let out = tempfile::tempdir().unwrap();
    let (good, bad) = (out.path().join("good.jsonl"), out.path().join("bad.jsonl"));
    let rule = serde_json::json!({
        "id": "two", "sql": "SELECT n FROM c",
        "actions": [
            {"conformance": {"path": good.display().to_string()}},
            {"conformance": {"path": bad.display().to_string(), "failPreCommit": true}},
        ],
        "options": {"qos": 2, "checkpointInterval": 100, "restartStrategy": {"attempts": 1, "delay": 50}}
    });
    assert_eq!(d.http("POST", "/rules", Some(&rule.to_string())).0, 201);
    let commits = PathBuf::from(format!("{}.commits", good.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (notes, status) = loop {
        let notes = std::fs::read_to_string(&commits).unwrap_or_default();
        let status = d.get_json("/rules/two/status");
        if (notes.contains("abort 1 ") && status["status"] == "error") || Instant::now() > deadline {
            break (notes, status);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Checkpoint 1 (before the first record) never became durable: the good
    // sink was told to abort it and never to commit it.
    assert!(notes.lines().any(|l| l.starts_with("abort 1 ")), "{notes}");
    assert!(!notes.contains("commit 1 "), "{notes}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(status["status"] == "error" && message.contains("failPreCommit"), "{status}");
    // The refusing sink prepared nothing, so it has nothing to abort.
    let bad_notes = std::fs::read_to_string(format!("{}.commits", bad.display())).unwrap_or_default();
    assert!(!bad_notes.contains("abort"), "{bad_notes}");
}
