//! `GET /metrics` from a real daemon running a real rule, read with a real
//! Prometheus text-format parser (`prometheus-parse`).

use std::time::{Duration, Instant};

use oort_tests::{http, json, Daemon, PluginsDir};
use prometheus_parse::{Scrape, Value};

fn plugins() -> PluginsDir {
    let p = PluginsDir::new();
    p.add("sources", "random", "random");
    p.add("functions", "echo", "echo");
    p.add("sinks", "log", "log");
    p
}

fn scrape(addr: &str, token: Option<&str>) -> Scrape {
    let (status, body) = http(addr, "GET", "/metrics", token, None).expect("answer");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("a valid Prometheus text exposition")
}

/// The value of the one sample named `name` whose labels include `labels`.
fn sample(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<_> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {} samples", found.len());
    found.first().map(|x| match &x.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name}: not a plain value: {other:?}"),
    })
}

fn has_histogram(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> bool {
    s.samples.iter().any(|x| {
        x.metric == name
            && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
            && matches!(&x.value, Value::Histogram(buckets) if !buckets.is_empty())
    })
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_scrape_with_a_prometheus_parser_and_match_rule_status() {
    let plugins = plugins();
    let token = "metrics-token";
    let d = Daemon::start(plugins.path(), &["--api-token", token]);
    let t = Some(token);
    let stream = serde_json::json!({"sql": r#"CREATE STREAM s () WITH (TYPE="random", interval="10")"#});
    assert_eq!(http(&d.addr, "POST", "/streams", t, Some(&stream.to_string())).unwrap().0, 201);
    let rule = serde_json::json!({
        "id": "r1", "sql": "SELECT echo(count) AS c FROM s", "actions": [{"log": {}}],
        "options": {"qos": 1, "checkpointInterval": 200}
    });
    assert_eq!(http(&d.addr, "POST", "/rules", t, Some(&rule.to_string())).unwrap().0, 201);

    // The token guards /metrics like every other path but /ping.
    assert_eq!(http(&d.addr, "GET", "/metrics", None, None).unwrap().0, 401);

    let r1 = [("rule", "r1")];
    let first = eventually("records and a checkpoint", || {
        let s = scrape(&d.addr, t);
        let records = sample(&s, "oort_source_records_in_total", &r1)?;
        let checkpoints = sample(&s, "oort_checkpoints_total", &r1)?;
        (records > 0.0 && checkpoints > 0.0).then_some((s, records))
    });
    let (s, records) = first;

    assert_eq!(sample(&s, "oort_rule_status", &r1), Some(1.0));
    assert_eq!(sample(&s, "oort_rule_count", &[("status", "running")]), Some(1.0));
    assert_eq!(sample(&s, "oort_rule_count", &[("status", "error")]), Some(0.0));
    let project = [("rule", "r1"), ("op", "op_2_project_0")];
    assert!(sample(&s, "oort_op_records_out_total", &project).is_some_and(|v| v > 0.0));
    assert!(sample(&s, "oort_op_exceptions_total", &project).is_some());
    assert!(sample(&s, "oort_op_process_latency_us", &project).is_some());
    let sink = [("rule", "r1"), ("op", "sink_log_0_0")];
    assert!(sample(&s, "oort_sink_records_in_total", &sink).is_some());
    assert!(sample(&s, "oort_sink_buffer_length", &sink).is_some());
    assert_eq!(sample(&s, "oort_source_connection_status", &[("rule", "r1"), ("plugin", "random")]), Some(1.0));
    assert_eq!(sample(&s, "oort_sink_connection_status", &[("rule", "r1"), ("plugin", "log")]), Some(1.0));

    for plugin in ["random", "echo", "log"] {
        let p = [("rule", "r1"), ("plugin", plugin)];
        let rss = sample(&s, "oort_plugin_process_resident_memory_bytes", &p);
        assert!(rss.is_some_and(|v| v > 1_000_000.0), "{plugin}: rss {rss:?}");
        assert!(sample(&s, "oort_plugin_process_cpu_seconds_total", &p).is_some_and(|v| v >= 0.0), "{plugin}");
        assert_eq!(sample(&s, "oort_plugin_process_restarts_total", &p), Some(0.0), "{plugin}");
        assert!(sample(&s, "oort_plugin_calls_total", &p).is_some_and(|v| v > 0.0), "{plugin}: calls");
    }
    let echo = [("rule", "r1"), ("plugin", "echo")];
    assert!(has_histogram(&s, "oort_plugin_call_duration_seconds", &echo), "call latency histogram");
    assert!(has_histogram(&s, "oort_checkpoint_duration_seconds", &r1), "checkpoint duration histogram");
    assert!(sample(&s, "oort_checkpoint_size_bytes", &r1).is_some_and(|v| v > 0.0));

    // records_in grows, and `rule status` reports the same counters: read
    // between two scrapes, its number lies between theirs.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sample(&scrape(&d.addr, t), "oort_source_records_in_total", &r1).unwrap() <= records {
        assert!(Instant::now() < deadline, "records_in stays at {records}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, status) = http(&d.addr, "GET", "/rules/r1/status", t, None).unwrap();
    let status = json(&status);
    let later = sample(&scrape(&d.addr, t), "oort_source_records_in_total", &r1).unwrap();
    let reported = status["source_s_0_records_in_total"].as_f64().expect("status has the counter");
    assert!(records < later, "records_in grows: {records} then {later}");
    assert!(records <= reported && reported <= later, "{records} <= {reported} <= {later}");
    let processes = status["plugins"].as_array().unwrap();
    assert!(processes.iter().all(|p| p["rss_bytes"].as_u64().is_some_and(|v| v > 0)), "{status}");
    assert!(processes.iter().all(|p| p["calls"].as_u64().is_some()), "{status}");

    // A stopped rule reads 0.
    assert_eq!(http(&d.addr, "POST", "/rules/r1/stop", t, None).unwrap().0, 200);
    let s = scrape(&d.addr, t);
    assert_eq!(sample(&s, "oort_rule_status", &r1), Some(0.0));
    assert_eq!(sample(&s, "oort_rule_count", &[("status", "stopped")]), Some(1.0));
}
