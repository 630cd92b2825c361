//! The `mqtt` connector plugin through the real daemon against a real
//! mosquitto (each test starts its own on a free loopback port): messages go
//! from `mosquitto_pub` through a rule to `mosquitto_sub`, topic wildcards,
//! properties refused when a rule is created, a broker outage, and a killed
//! plugin process.

use std::time::{Duration, Instant};

use oort_tests::{json, kill9, Broker, Daemon, PluginsDir};
use serde_json::json;

fn daemon() -> (PluginsDir, Daemon) {
    let p = PluginsDir::new();
    p.add("sources", "mqtt", "mqtt");
    p.add("sinks", "mqtt", "mqtt");
    p.add("sinks", "file", "file");
    let d = Daemon::start(p.path(), &[]);
    (p, d)
}

fn create_stream(d: &Daemon, sql: &str) {
    let (code, body) = d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string()));
    assert_eq!(code, 201, "{sql}: {body}");
}

fn create_rule(d: &Daemon, rule: serde_json::Value) {
    let (code, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(code, 201, "{rule}: {body}");
}

/// Publishes `message(i)` to `topic(i)` for i = start, start + 1, … every
/// 50 ms until `done()` (a subscription made by a rule that is starting
/// cannot be waited for from outside), at most for `timeout`. Returns the
/// next i.
fn publish_until(
    broker: &Broker,
    start: usize,
    timeout: Duration,
    topic: impl Fn(usize) -> String,
    message: impl Fn(usize) -> String,
    mut done: impl FnMut() -> bool,
) -> usize {
    let deadline = Instant::now() + timeout;
    let mut i = start;
    while !done() {
        assert!(Instant::now() < deadline, "nothing arrived after {} messages", i - start);
        broker.publish(&topic(i), &message(i), 1);
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    i
}

#[test]
fn messages_go_from_a_wildcard_topic_through_a_rule_to_an_mqtt_topic() {
    let broker = Broker::start();
    let (_p, d) = daemon();
    let server = broker.url();
    create_stream(
        &d,
        &format!(
            r#"CREATE STREAM devices (t bigint, dev string) WITH (DATASOURCE="devices/+/messages", TYPE="mqtt", FORMAT="json", server="{server}")"#
        ),
    );
    create_rule(
        &d,
        json!({"id": "double", "sql": "SELECT t * 2 AS t2, dev FROM devices WHERE t >= 0",
            "actions": [{"mqtt": {"server": server, "topic": "results/double", "sendSingle": true, "qos": 1}}]}),
    );
    let mut sub = broker.subscribe("results/double", 8);
    // Two devices on the wildcard's level; every third message has t < 0,
    // which WHERE drops.
    let dev = |i: usize| format!("d{}", i % 2 + 1);
    let t = |i: usize| if i % 3 == 2 { -1 } else { i as i64 };
    publish_until(
        &broker,
        0,
        Duration::from_secs(30),
        |i| format!("devices/{}/messages", dev(i)),
        |i| json!({"t": t(i), "dev": dev(i)}).to_string(),
        || sub.done(),
    );
    let got: Vec<serde_json::Value> = sub.lines().iter().map(|l| json(l)).collect();
    assert_eq!(got.len(), 8, "{got:?}\n{}", d.log());
    for m in &got {
        let t2 = m["t2"].as_i64().unwrap_or_else(|| panic!("no t2 in {m}"));
        assert!(t2 >= 0 && t2 % 2 == 0, "{m}: WHERE and t * 2");
        let i = (t2 / 2) as usize;
        assert_eq!(m["dev"], dev(i), "{m}: the device the message was published for");
    }
    let devices: std::collections::BTreeSet<&str> = got.iter().filter_map(|m| m["dev"].as_str()).collect();
    assert_eq!(devices.len(), 2, "both topics the wildcard matches: {got:?}");
    // In order: each device's messages arrive as published.
    let ts: Vec<i64> = got.iter().map(|m| m["t2"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "in publishing order: {ts:?}");
}

#[test]
fn a_multi_level_wildcard_and_an_array_payload_reach_a_file_sink() {
    let broker = Broker::start();
    let (_p, d) = daemon();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("all.jsonl");
    // The server from a conf key, as eKuiper users keep it.
    let conf = json!({"server": broker.url(), "qos": 1});
    let (code, body) = d.http("PUT", "/metadata/sources/mqtt/confKeys/local", Some(&conf.to_string()));
    assert!(code == 200 || code == 201, "{body}");
    create_stream(&d, r#"CREATE STREAM all_sensors () WITH (DATASOURCE="sensors/#", TYPE="mqtt", CONF_KEY="local")"#);
    create_rule(
        &d,
        json!({"id": "all", "sql": "SELECT * FROM all_sensors",
            "actions": [{"file": {"path": path.display().to_string()}}]}),
    );
    let lines = || oort_tests::json_lines(&path);
    publish_until(
        &broker,
        0,
        Duration::from_secs(30),
        |i| format!("sensors/floor{}/room/{i}", i % 3),
        |i| json!([{"n": i, "part": 0}, {"n": i, "part": 1}]).to_string(),
        || lines().len() >= 6,
    );
    let got = d.wait_lines("all", &path, 6);
    // Every message's two objects, in order, as two records.
    for pair in got.chunks(2).filter(|c| c.len() == 2) {
        assert_eq!(pair[0]["n"], pair[1]["n"], "{got:?}");
        assert_eq!((pair[0]["part"].as_i64(), pair[1]["part"].as_i64()), (Some(0), Some(1)), "{got:?}");
    }
    // A message that is not JSON is an exception of the source, not a crash.
    broker.publish("sensors/bad", "not json", 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = d.get_json("/rules/all/status");
        if status.to_string().contains("not JSON") {
            assert_eq!(status["status"], "running", "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "no exception reported: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_mqtt_properties_are_refused_when_the_rule_is_created() {
    let broker = Broker::start();
    let (_p, d) = daemon();
    let server = broker.url();
    let out = tempfile::tempdir().unwrap();
    let file = json!({"file": {"path": out.path().join("x.jsonl").display().to_string()}});
    let cases = [
        (r#"server="http://127.0.0.1:1883""#, "unknown scheme"),
        (r#"server="tcp://127.0.0.1:notaport""#, "port"),
        // (The message is inside a JSON string: its quotes are escaped.)
        (r#"qso="1""#, r#"unknown property \"qso\""#),
        (r#"certificationPath="/nonexistent.pem""#, "certificationPath"),
        (r#"qos="3""#, "qos must be 0, 1 or 2"),
    ];
    for (i, (option, expected)) in cases.iter().enumerate() {
        let stream = format!("bad{i}");
        create_stream(&d, &format!(r#"CREATE STREAM {stream} () WITH (DATASOURCE="in/{i}", TYPE="mqtt", {option})"#));
        let rule = json!({"id": format!("r{i}"), "sql": format!("SELECT * FROM {stream}"), "actions": [file]});
        let (code, body) = d.http("POST", "/rules", Some(&rule.to_string()));
        assert_eq!(code, 400, "{option}: {body}");
        assert!(body.contains(expected), "{option}: expected {expected:?} in {body}");
    }
    create_stream(&d, &format!(r#"CREATE STREAM good () WITH (DATASOURCE="in/good", TYPE="mqtt", server="{server}")"#));
    let sinks = [
        (json!({"server": server}), "topic is required"),
        (json!({"server": server, "topic": "a/+"}), "wildcards"),
        (json!({"server": server, "topic": "a", "retained": "yes"}), "retained must be true or false"),
    ];
    for (i, (props, expected)) in sinks.iter().enumerate() {
        let rule = json!({"id": format!("s{i}"), "sql": "SELECT * FROM good", "actions": [{"mqtt": props}]});
        let (code, body) = d.http("POST", "/rules", Some(&rule.to_string()));
        assert_eq!(code, 400, "{props}: {body}");
        assert!(body.contains(expected), "{props}: expected {expected:?} in {body}");
    }
    // None of them left a rule behind, and nothing is crash-looping.
    let rules = d.get_json("/rules");
    assert_eq!(rules.as_array().map(Vec::len), Some(0), "{rules}");
}

#[test]
fn rules_keep_running_through_a_broker_outage_and_a_killed_plugin() {
    let mut broker = Broker::start();
    let (_p, d) = daemon();
    let server = broker.url();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("out.jsonl");
    create_stream(
        &d,
        &format!(r#"CREATE STREAM s (n bigint) WITH (DATASOURCE="outage/in", TYPE="mqtt", server="{server}")"#),
    );
    create_rule(
        &d,
        json!({"id": "keep", "sql": "SELECT n FROM s", "actions": [
            {"file": {"path": path.display().to_string()}},
            {"mqtt": {"server": server, "topic": "outage/out", "sendSingle": true}}]}),
    );
    let count = || oort_tests::json_lines(&path).len();
    let message = |i: usize| json!({ "n": i }).to_string();
    let topic = |_| "outage/in".to_string();
    let next = publish_until(&broker, 0, Duration::from_secs(30), topic, message, || count() >= 3);

    // The broker goes away for 5 s: the rule stays running.
    broker.stop();
    std::thread::sleep(Duration::from_secs(5));
    let status = d.get_json("/rules/keep/status");
    assert_eq!(status["status"], "running", "{status}");
    broker.restart();
    // Both the source and the sink reconnect: new messages reach the file
    // and the broker's subscribers again.
    let before = count();
    let mut sub = broker.subscribe("outage/out", 3);
    let next = publish_until(&broker, next + 1000, Duration::from_secs(30), topic, message, || {
        count() >= before + 3 && sub.done()
    });
    let got = sub.lines();
    assert!(got.iter().all(|l| json(l)["n"].as_u64().is_some_and(|n| n >= 1000)), "{got:?}");

    // kill -9 of the plugin serving the source: it is restarted and
    // subscribes again.
    let status = d.get_json("/rules/keep/status");
    let plugins = status["plugins"].as_array().cloned().unwrap_or_default();
    let source = plugins.iter().find(|p| p["operator"] == "source").and_then(|p| p["pid"].as_u64());
    let pid = source.unwrap_or_else(|| panic!("no source pid in {status}")) as u32;
    kill9(pid);
    let before = count();
    publish_until(&broker, next + 1000, Duration::from_secs(30), topic, message, || count() >= before + 3);
    let status = d.get_json("/rules/keep/status");
    assert_eq!(status["status"], "running", "{status}");
    let ns: Vec<u64> = oort_tests::json_lines(&path).iter().filter_map(|r| r["n"].as_u64()).collect();
    assert!(ns.windows(2).all(|w| w[0] < w[1]), "in order, none twice: {ns:?}");
}
