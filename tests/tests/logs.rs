//! The daemon's log as a person and a machine read it: one line per plugin
//! log event, at the plugin's level, with the plugin, rule and pid once.

use std::time::{Duration, Instant};

use oort_tests::{Daemon, PluginsDir};

fn start(extra: &[&str]) -> (PluginsDir, Daemon) {
    let p = PluginsDir::new();
    p.add("sources", "random", "random");
    p.add("sinks", "log", "log");
    let d = Daemon::start(p.path(), extra);
    let stream = serde_json::json!({"sql": r#"CREATE STREAM s () WITH (TYPE="random", interval="50")"#});
    assert_eq!(d.http("POST", "/streams", Some(&stream.to_string())).0, 201);
    let rule = serde_json::json!({"id": "r7", "sql": "SELECT * FROM s", "actions": [{"log": {}}]});
    assert_eq!(d.http("POST", "/rules", Some(&rule.to_string())).0, 201);
    (p, d)
}

/// The first few log lines holding `needle`, waiting up to 10 s for them.
fn lines_with(d: &Daemon, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = d.log().lines().filter(|l| l.contains(needle)).take(3).map(String::from).collect();
        if found.len() >= 2 {
            return found;
        }
        assert!(Instant::now() < deadline, "no log line with {needle:?}; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `s` holds an RFC 3339 timestamp, as `2026-01-02T03:04:05`.
fn timestamps(s: &str) -> usize {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(19))
        .filter(|&i| {
            b[i..i + 4].iter().all(u8::is_ascii_digit) && b[i + 4] == b'-' && b[i + 10] == b'T' && b[i + 13] == b':'
        })
        .count()
}

#[test]
fn a_plugin_log_line_is_one_line_with_its_own_level_and_tags_once() {
    let (_p, d) = start(&[]);
    let lines = lines_with(&d, "sink result:");
    // Once the sink has written, its process is registered in the status.
    let pid = d.get_json("/rules/r7/status")["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["operator"] == "sink_0_log")
        .and_then(|p| p["pid"].as_u64())
        .expect("the log sink's pid");
    for line in lines {
        assert_eq!(timestamps(&line), 1, "one timestamp: {line}");
        assert_eq!(line.matches(" INFO ").count(), 1, "one level: {line}");
        assert_eq!(line.matches("rule=").count(), 1, "rule= once: {line}");
        assert!(line.contains("rule=r7"), "{line}");
        assert!(line.contains("plugin=log"), "{line}");
        assert!(line.contains(&format!("pid={pid}")), "{line}");
        assert!(!line.contains("version="), "no empty version: {line}");
        assert!(!line.contains("oort_plugin::context"), "no SDK logger name: {line}");
        assert!(line.contains("oort::plugin: sink result: {"), "the message follows the daemon's target: {line}");
    }
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let (_p, d) = start(&["--log-format", "json"]);
    let sink_lines = lines_with(&d, "sink result:");
    let log = d.log();
    let mut objects = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(v.is_object() && v["level"].is_string() && v["timestamp"].is_string(), "{line}");
        objects += 1;
    }
    assert!(objects >= 3, "{log}");
    for line in sink_lines {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "INFO", "{line}");
        assert_eq!(v["target"], "oort::plugin", "{line}");
        assert_eq!(v["plugin"], "log", "{line}");
        assert_eq!(v["rule"], "r7", "{line}");
        assert!(v["pid"].is_u64(), "{line}");
        let message = v["message"].as_str().unwrap();
        assert!(message.starts_with("sink result: {"), "{line}");
        assert_eq!(timestamps(message), 0, "no nested timestamp: {line}");
    }
}
