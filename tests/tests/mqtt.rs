//! The `mqtt` connector plugin through the real daemon against a real
//! mosquitto (each test starts its own on free loopback ports): messages go
//! from `mosquitto_pub` through a rule to `mosquitto_sub`, topic wildcards,
//! properties refused when a rule is created, a broker outage, a killed
//! plugin process, many messages at qos 1 through the pipelined sink, TLS
//! (with client certificates, bad files, an untrusted broker and
//! `insecureSkipVerify`) and MQTT 5 (with a message the broker refuses).

use std::time::{Duration, Instant};

use oort_tests::{json, kill9, Broker, Daemon, PluginsDir, Subscriber};
use serde_json::json;

fn daemon() -> (PluginsDir, Daemon) {
    let p = PluginsDir::new();
    p.add("sources", "mqtt", "mqtt");
    p.add("sinks", "mqtt", "mqtt");
    p.add("sinks", "file", "file");
    p.add("sinks", "log", "log");
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
        // TLS properties with a server that is not TLS (the default one).
        (r#"certificationPath="/nonexistent.pem""#, "property certificationPath is for TLS"),
        (r#"server="ws://127.0.0.1:8083""#, "websockets are not supported"),
        (r#"protocolVersion="6""#, "protocolVersion must be 3.1.1 or 5"),
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
    assert_sinks_refused(&d, &sinks);
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
    let status = d.get_json("/rules/keep/status");
    assert_eq!(status["source_s_0_connection_status"], 1, "{status}");
    assert!(status["source_s_0_connection_last_connected_time"].as_u64() > Some(0), "{status}");

    // The broker goes away for 5 s: the rule stays running, and its status
    // says the source is connecting again, and why (eKuiper's 0).
    broker.stop();
    std::thread::sleep(Duration::from_secs(5));
    let status = d.get_json("/rules/keep/status");
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["source_s_0_connection_status"], 0, "{status}");
    assert!(status["source_s_0_connection_last_disconnected_time"].as_u64() > Some(0), "{status}");
    let why = status["source_s_0_connection_last_disconnected_message"].as_str().unwrap_or_default();
    assert!(!why.is_empty(), "{status}");
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
    assert_eq!(d.get_json("/rules/keep/status")["source_s_0_connection_status"], 1);

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

/// Polls `rule`'s status until its text contains `expected`, at most
/// `timeout`; calls `meanwhile` between polls (to publish, say).
fn wait_status(d: &Daemon, rule: &str, expected: &str, timeout: Duration, mut meanwhile: impl FnMut()) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let status = d.get_json(&format!("/rules/{rule}/status")).to_string();
        if status.contains(expected) {
            return status;
        }
        assert!(Instant::now() < deadline, "no {expected:?} in rule {rule}'s status: {status}\nlog:\n{}", d.log());
        meanwhile();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each mqtt action's properties refuse a rule on stream `good` with the
/// expected words, and no rule is left behind.
fn assert_sinks_refused(d: &Daemon, sinks: &[(serde_json::Value, &str)]) {
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

/// A stream's properties are checked by a trial open when the stream or a
/// rule reading it is created: either must be refused with `expected`.
fn assert_stream_refused(d: &Daemon, name: &str, with: &str, expected: &str) {
    let sql = format!(r#"CREATE STREAM {name} () WITH (DATASOURCE="in/{name}", TYPE="mqtt", {with})"#);
    let (code, body) = d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string()));
    let (code, body) = match code {
        201 => {
            let rule =
                json!({"id": format!("r_{name}"), "sql": format!("SELECT * FROM {name}"), "actions": [{"log": {}}]});
            d.http("POST", "/rules", Some(&rule.to_string()))
        }
        _ => (code, body),
    };
    assert_eq!(code, 400, "{with}: {body}");
    assert!(body.contains(expected), "{with}: expected {expected:?} in {body}");
}

/// Publishes `n` messages at qos 1 through a rule with an mqtt source and
/// an mqtt sink at qos 1 and the rule's `options`; every one must arrive
/// once, in order, within 30 s. Returns the rule's status.
fn through_the_pipelined_sink(n: usize, options: serde_json::Value) -> serde_json::Value {
    let broker = Broker::start();
    let (_p, d) = daemon();
    let server = broker.url();
    create_stream(
        &d,
        &format!(
            r#"CREATE STREAM many (n bigint) WITH (DATASOURCE="many/in", TYPE="mqtt", server="{server}", qos="1")"#
        ),
    );
    create_rule(
        &d,
        json!({"id": "many", "sql": "SELECT n FROM many",
            "actions": [{"mqtt": {"server": server, "topic": "many/out", "qos": 1, "sendSingle": true}}],
            "options": options}),
    );
    // The subscriber at qos 0: at qos 1 the broker's deliveries to it were
    // seen to stall (Nagle's algorithm against delayed acknowledgements)
    // while messages came in small batches, and this tests the rule.
    let sub = broker.subscribe_at("many/out", 1_000_000_000, 0);
    let numbers = |sub: &Subscriber| -> Vec<i64> {
        sub.lines().iter().filter_map(|l| json(l)["n"].as_i64()).filter(|n| *n >= 0).collect()
    };
    // Probes (n < 0) until one comes out: the rule's source and sink and the
    // subscriber are all connected. Every probe is out of the way before the
    // messages: one source, one sink, one topic keep the order.
    publish_until(
        &broker,
        0,
        Duration::from_secs(20),
        |_| "many/in".into(),
        |_| r#"{"n":-1}"#.into(),
        || !sub.lines().is_empty(),
    );
    let lines: Vec<String> = (0..n).map(|i| json!({ "n": i }).to_string()).collect();
    let started = Instant::now();
    broker.publish_lines("many/in", &lines, 1);
    let deadline = started + Duration::from_secs(30);
    while numbers(&sub).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let got = numbers(&sub);
    assert_eq!(got.len(), n, "{} of {n} arrived; status: {}", got.len(), d.get_json("/rules/many/status"));
    assert!(got.iter().enumerate().all(|(i, &m)| m == i as i64), "in order, each once");
    eprintln!("{n} messages at qos 1 through the rule in {took:?} ({:.0}/s)", n as f64 / took.as_secs_f64());
    d.get_json("/rules/many/status")
}

#[test]
fn many_messages_at_qos_1_go_through_the_pipelined_sink_in_order() {
    // Batches of up to 4096: each returns once the one before it is
    // acknowledged.
    through_the_pipelined_sink(20_000, json!({"bufferLength": 4096}));
}

#[test]
fn a_checkpointed_rule_waits_for_the_sinks_acknowledgements_at_each_checkpoint() {
    // At each checkpoint the sink waits for every acknowledgement (its
    // pre-commit). None may fail: a failure is an exception of the sink and
    // restarts the rule, which would lose or repeat messages.
    let status = through_the_pipelined_sink(10_000, json!({"bufferLength": 4096, "qos": 1, "checkpointInterval": 100}));
    assert!(status["checkpoint_last_id"].as_u64() > Some(1), "checkpoints were taken: {status}");
    assert_eq!(status["sink_mqtt_0_0_exceptions_total"], 0, "{status}");
}

#[test]
fn messages_go_through_a_rule_over_tls_with_client_certificates() {
    let broker = Broker::start_tls(true);
    let (_p, d) = daemon();
    let (ca, cert, key) = (broker.file("ca.pem"), broker.file("client.pem"), broker.file("client.key"));
    let tls_port = broker.tls_port.unwrap();
    create_stream(
        &d,
        &format!(
            r#"CREATE STREAM secure (n bigint) WITH (DATASOURCE="tls/in", TYPE="mqtt", server="{}", rootCaPath="{ca}", certificationPath="{cert}", privateKeyPath="{key}")"#,
            broker.tls_url()
        ),
    );
    // The sink by name (the certificate is for localhost too) and another
    // of eKuiper's schemes.
    create_rule(
        &d,
        json!({"id": "tls", "sql": "SELECT n * 10 AS n10 FROM secure",
            "actions": [{"mqtt": {"server": format!("mqtts://localhost:{tls_port}"), "topic": "tls/out", "sendSingle": true,
                "qos": 2, "rootCaPath": ca, "certificationPath": cert, "privateKeyPath": key}}]}),
    );
    let mut sub = broker.subscribe("tls/out", 3);
    let topic = |_| "tls/in".to_string();
    publish_until(&broker, 1, Duration::from_secs(20), topic, |i| json!({ "n": i }).to_string(), || sub.done());
    let got: Vec<i64> = sub.lines().iter().filter_map(|l| json(l)["n10"].as_i64()).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|n| n % 10 == 0 && *n > 0), "{got:?}");
    // Both went over the TLS listener (the test's own clients use the plain
    // one).
    let log = broker.log();
    let over_tls = log.matches(&format!(" on port {tls_port}.")).count();
    assert!(over_tls >= 2, "the plugin's clients on port {tls_port}:\n{log}");

    // Without a client certificate the broker refuses the connection; the
    // source reports it as an exception and the rule keeps running.
    create_stream(
        &d,
        &format!(
            r#"CREATE STREAM anonymous (n bigint) WITH (DATASOURCE="tls/in", TYPE="mqtt", server="{}", rootCaPath="{ca}")"#,
            broker.tls_url()
        ),
    );
    create_rule(&d, json!({"id": "anonymous", "sql": "SELECT n FROM anonymous", "actions": [{"log": {}}]}));
    let status = wait_status(&d, "anonymous", "the connection failed", Duration::from_secs(15), || {});
    assert!(status.contains(r#""status":"running""#), "{status}");
}

#[test]
fn bad_tls_properties_are_refused_when_the_rule_is_created() {
    let broker = Broker::start_tls(false);
    let (_p, d) = daemon();
    let files = tempfile::tempdir().unwrap();
    let not_pem = files.path().join("not-pem.txt");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let not_pem = not_pem.display().to_string();
    let server = broker.tls_url();
    let (ca, cert, key) = (broker.file("ca.pem"), broker.file("client.pem"), broker.file("client.key"));
    let other_key = broker.file("server.key");
    let cases = [
        (
            format!(r#"server="{server}", rootCaPath="/nonexistent/ca.pem""#),
            "property rootCaPath: cannot read /nonexistent/ca.pem".to_string(),
        ),
        (
            format!(r#"server="{server}", rootCaPath="{not_pem}""#),
            format!("property rootCaPath: {not_pem} holds no PEM certificate"),
        ),
        (
            format!(r#"server="{server}", rootCaPath="{ca}", certificationPath="{cert}""#),
            "property certificationPath needs privateKeyPath".to_string(),
        ),
        (
            format!(r#"server="{server}", rootCaPath="{ca}", certificationPath="{cert}", privateKeyPath="{ca}""#),
            format!("property privateKeyPath: {ca} holds no PEM private key"),
        ),
        (
            format!(r#"server="{server}", rootCaPath="{ca}", certificationPath="{not_pem}", privateKeyPath="{key}""#),
            format!("property certificationPath: {not_pem} holds no PEM certificate"),
        ),
        // A key that is not the certificate's.
        (
            format!(
                r#"server="{server}", rootCaPath="{ca}", certificationPath="{cert}", privateKeyPath="{other_key}""#
            ),
            "are not a usable certificate and key".to_string(),
        ),
        (
            format!(r#"server="{server}", insecureSkipVerify="maybe""#),
            "insecureSkipVerify must be true or false".to_string(),
        ),
        (format!(r#"server="{}", rootCaPath="{ca}""#, broker.url()), "property rootCaPath is for TLS".to_string()),
    ];
    for (i, (with, expected)) in cases.iter().enumerate() {
        assert_stream_refused(&d, &format!("bad{i}"), with, expected);
    }
    // The sink's files are read when the rule is created too.
    create_stream(
        &d,
        &format!(r#"CREATE STREAM good () WITH (DATASOURCE="in/good", TYPE="mqtt", server="{}")"#, broker.url()),
    );
    let sinks = [
        (
            json!({"server": server, "topic": "out", "rootCaPath": "/nonexistent/ca.pem"}),
            "cannot read /nonexistent/ca.pem",
        ),
        (json!({"server": server, "topic": "out", "rootCaPath": not_pem}), "holds no PEM certificate"),
        (json!({"server": server, "topic": "out", "privateKeyPath": key}), "privateKeyPath needs certificationPath"),
    ];
    assert_sinks_refused(&d, &sinks);
}

#[test]
fn insecure_skip_verify_accepts_a_broker_the_client_does_not_trust() {
    let broker = Broker::start_tls(false);
    let (_p, d) = daemon();
    let server = broker.tls_url();
    // Trusting only a CA that did not sign the broker's certificate: the
    // connection is refused, reported by the source, and the rule runs on.
    let other_ca = broker.file("other-ca.pem");
    create_stream(
        &d,
        &format!(
            r#"CREATE STREAM untrusted (n bigint) WITH (DATASOURCE="skip/in", TYPE="mqtt", server="{server}", rootCaPath="{other_ca}")"#
        ),
    );
    create_rule(&d, json!({"id": "untrusted", "sql": "SELECT n FROM untrusted", "actions": [{"log": {}}]}));
    let status = wait_status(&d, "untrusted", "invalid peer certificate", Duration::from_secs(15), || {});
    assert!(status.contains(r#""status":"running""#), "{status}");

    // With insecureSkipVerify the same trust connects, source and sink.
    create_stream(
        &d,
        &format!(
            r#"CREATE STREAM skipping (n bigint) WITH (DATASOURCE="skip/in", TYPE="mqtt", server="{server}", rootCaPath="{other_ca}", insecureSkipVerify="true")"#
        ),
    );
    create_rule(
        &d,
        json!({"id": "skipping", "sql": "SELECT n FROM skipping",
            "actions": [{"mqtt": {"server": server, "topic": "skip/out", "sendSingle": true, "insecureSkipVerify": true}}]}),
    );
    let mut sub = broker.subscribe("skip/out", 3);
    let topic = |_| "skip/in".to_string();
    publish_until(&broker, 0, Duration::from_secs(20), topic, |i| json!({ "n": i }).to_string(), || sub.done());
    assert_eq!(sub.lines().len(), 3, "{:?}", sub.lines());
}

#[test]
fn mqtt_5_source_and_sink_and_a_message_the_broker_refuses() {
    // Anonymous clients may use v5/… only: a publish elsewhere is refused,
    // which MQTT 5 says in its PUBACK.
    let broker = Broker::start_with_acl("topic readwrite v5/#\n");
    let (_p, d) = daemon();
    let server = broker.url();
    create_stream(
        &d,
        &format!(
            r#"CREATE STREAM five (n bigint) WITH (DATASOURCE="v5/in", TYPE="mqtt", server="{server}", protocolVersion="5", clientid="v5-source")"#
        ),
    );
    create_rule(
        &d,
        json!({"id": "five", "sql": "SELECT n FROM five",
            "actions": [{"mqtt": {"server": server, "topic": "v5/out", "sendSingle": true, "qos": 2,
                "protocolVersion": "5.0", "clientid": "v5-sink"}}]}),
    );
    let mut sub = broker.subscribe("v5/out", 3);
    let topic = |_| "v5/in".to_string();
    let next =
        publish_until(&broker, 0, Duration::from_secs(20), topic, |i| json!({ "n": i }).to_string(), || sub.done());
    let got: Vec<u64> = sub.lines().iter().filter_map(|l| json(l)["n"].as_u64()).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    // mosquitto logs each client's protocol: p5 is MQTT 5 (p2 is 3.1.1).
    let log = broker.log();
    for client in ["v5-source", "v5-sink"] {
        assert!(log.contains(&format!("as {client} (p5,")), "{client} on MQTT 5:\n{log}");
    }

    // A sink whose messages the broker refuses fails its batches with the
    // reason code rather than counting them as delivered.
    create_rule(
        &d,
        json!({"id": "refused", "sql": "SELECT n FROM five",
            "actions": [{"mqtt": {"server": server, "topic": "denied/out", "sendSingle": true, "protocolVersion": "5"}}]}),
    );
    let mut i = next;
    let status = wait_status(&d, "refused", "NotAuthorized", Duration::from_secs(20), || {
        broker.publish("v5/in", &json!({ "n": i }).to_string(), 1);
        i += 1;
    });
    assert!(status.contains("the broker refused"), "{status}");
    assert!(status.contains(r#""status":"running""#), "{status}");
}

#[test]
fn binary_payloads_credentials_and_a_retained_message() {
    // eKuiper's FORMAT="binary": a payload that is not JSON goes through as
    // bytes (field `self`), and the sink's format binary publishes them as
    // they came; the client connects with `username`/`password`; `retained`
    // makes the broker keep the last message for subscribers to come.
    let broker = Broker::start();
    let (_p, d) = daemon();
    let server = broker.url();
    create_stream(
        &d,
        &format!(
            r#"CREATE STREAM raw () WITH (DATASOURCE="bin/in", TYPE="mqtt", FORMAT="binary", server="{server}", clientid="bin-source", username="alice", password="s3cret")"#
        ),
    );
    create_rule(
        &d,
        json!({"id": "bytes", "sql": "SELECT self FROM raw",
            "actions": [{"mqtt": {"server": server, "topic": "bin/out", "format": "binary", "retained": true, "sendSingle": true}}]}),
    );
    let mut sub = broker.subscribe("bin/out", 1);
    publish_until(
        &broker,
        0,
        Duration::from_secs(30),
        |_| "bin/in".into(),
        |_| "not json, 7 bytes?".into(),
        || sub.done(),
    );
    assert_eq!(sub.lines(), vec!["not json, 7 bytes?".to_string()]);
    // A subscriber that comes later gets the retained message at once.
    let mut late = broker.subscribe("bin/out", 1);
    assert_eq!(late.wait(Duration::from_secs(10)), vec!["not json, 7 bytes?".to_string()]);
    // mosquitto logs each client's user name.
    let log = broker.log();
    assert!(log.contains("as bin-source (p2,") && log.contains("u'alice'"), "the source's credentials:\n{log}");
    assert_eq!(d.get_json("/rules/bytes/status")["status"], "running");
}
