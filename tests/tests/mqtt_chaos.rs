//! The `mqtt` source under `kill -9`, against a real mosquitto: at rule qos 1
//! and 2 the source keeps a persistent session and acknowledges a message to
//! the broker only once a checkpoint covers it, so killing the plugin or the
//! daemon while messages are published loses none (qos 1), and at qos 2 each
//! reaches the exactly-once `file` sink once: the broker redelivers exactly
//! what the restored checkpoint did not cover.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use oort_tests::{json, kill9, Broker, Daemon, PluginsDir};
use serde_json::json;

/// One chaos at a time: they are timing-sensitive and share the two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const MESSAGES: i64 = 3000;

fn start_daemon(p: &PluginsDir, data: &Path) -> Daemon {
    Daemon::start_in(p.path(), data, &[])
}

/// Kills the daemon with SIGKILL (its plugins follow it) and starts another
/// on the same data directory, keeping the dead one's log in `logs`.
fn crash_and_restart(d: Daemon, p: &PluginsDir, data: &Path, logs: &mut String) -> Daemon {
    logs.push_str(&d.crash("chaos"));
    start_daemon(p, data)
}

/// What a chaos run left: how many times each message arrived, and every
/// daemon's log lines about restores, checkpoints and the broker.
struct Outcome {
    counts: BTreeMap<i64, usize>,
    log: String,
}

impl Outcome {
    fn story(&self) -> String {
        story(&self.log)
    }
}

/// The lines of daemon logs about restores, checkpoints and failures.
fn story(log: &str) -> String {
    let keep = ["restor", "checkpoint", "fail", "restart", "killed", "exited"];
    log.lines().filter(|l| keep.iter().any(|k| l.contains(k))).collect::<Vec<_>>().join("\n")
}

/// How many times each `n` is in the rule's output (the markers, `n` < 0,
/// left out).
fn counts(out: &Path) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(out).unwrap_or_default().lines() {
        let n = json(line)["n"].as_i64().unwrap_or(-1);
        if n >= 0 {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts
}

fn chaos(rule_qos: u8) -> Outcome {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let broker = Broker::start();
    let p = PluginsDir::new();
    p.add("sources", "mqtt", "mqtt");
    p.add("sinks", "file", "file");
    let data = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.jsonl");
    let mut d = start_daemon(&p, data.path());
    let sql = format!(
        r#"CREATE STREAM feed (n bigint) WITH (DATASOURCE="chaos/in", TYPE="mqtt", server="{}", qos="1")"#,
        broker.url()
    );
    let (code, body) = d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string()));
    assert_eq!(code, 201, "{body}");
    let rule = json!({"id": "chaos", "sql": "SELECT n FROM feed", "actions": [{"file": {"path": out.display().to_string()}}],
        "options": {"qos": rule_qos, "checkpointInterval": 300,
                    "restartStrategy": {"attempts": 1000, "delay": 20, "multiplier": 1.5, "maxDelay": 500}}});
    let (code, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(code, 201, "{body}");
    // The session exists once a marker went through: from then on the
    // broker keeps every message for it, whatever happens to the plugin.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&out).unwrap_or_default().contains("\"n\":-1") {
        assert!(Instant::now() < deadline, "no marker went through; log:\n{}", d.log());
        broker.publish("chaos/in", r#"{"n":-1}"#, 1);
        std::thread::sleep(Duration::from_millis(100));
    }

    // Publish in chunks from another thread while this one kills.
    let port = broker.port;
    let publisher = std::thread::spawn(move || {
        for chunk in 0..(MESSAGES / 100) {
            let lines: Vec<String> = (chunk * 100..(chunk + 1) * 100).map(|n| json!({ "n": n }).to_string()).collect();
            oort_tests::publish_lines(port, "chaos/in", &lines, 1);
            std::thread::sleep(Duration::from_millis(30));
        }
    });
    let mut plugin_kills = 0;
    let mut logs = String::new();
    for round in 0..8 {
        std::thread::sleep(Duration::from_millis(250));
        if round == 4 {
            d = crash_and_restart(d, &p, data.path(), &mut logs);
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let pids = d.plugin_pids("chaos");
            if let Some(&victim) = pids.get(round % pids.len().max(1)) {
                kill9(victim);
                plugin_kills += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    publisher.join().unwrap();
    assert!(plugin_kills >= 5, "only {plugin_kills} plugin kills");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = counts(&out);
        if got.len() as i64 == MESSAGES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {MESSAGES} messages arrived; first missing: {:?}\nstatus: {}\nwhat happened:\n{}",
            got.len(),
            (0..MESSAGES).find(|n| !got.contains_key(n)),
            d.http("GET", "/rules/chaos/status", None).1,
            story(&format!("{logs}{}", d.log()))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give a late duplicate the chance to show up.
    std::thread::sleep(Duration::from_millis(700));
    let status = d.get_json("/rules/chaos/status");
    assert_eq!(status["status"], "running", "{status}");
    logs.push_str(&d.log());
    Outcome { counts: counts(&out), log: logs }
}

#[test]
fn at_qos_1_no_message_is_lost_when_the_plugin_or_the_daemon_is_killed() {
    let got = chaos(1);
    // Every message at least once (missing ones fail inside `chaos`).
    let repeated = got.counts.values().filter(|c| **c > 1).count();
    println!("qos 1: {repeated} of {MESSAGES} messages delivered more than once");
}

#[test]
fn at_qos_2_every_message_reaches_the_file_sink_exactly_once_across_kills() {
    let got = chaos(2);
    let repeated: Vec<(i64, usize)> = got.counts.iter().filter(|(_, c)| **c > 1).map(|(n, c)| (*n, *c)).collect();
    assert!(repeated.is_empty(), "messages written more than once: {repeated:?}\n{}", got.story());
}
