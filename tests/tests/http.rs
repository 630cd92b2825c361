//! The `httppull` and `httppush` sources and the `rest` sink through the
//! real daemon, against a local HTTP server each test starts (or, for
//! `httppush`, posting to the plugin): pulling with headers and
//! `incremental`, a failing endpoint reported as an exception, pushed
//! bodies, delivery retried through 5xx answers, a 4xx answer refusing its
//! item with a clear message, and properties refused when the rule is
//! created.

use std::time::{Duration, Instant};

use oort_tests::{http, json, Daemon, HttpServer, PluginsDir};
use serde_json::json;

fn daemon() -> (PluginsDir, Daemon) {
    let p = PluginsDir::new();
    p.add("sources", "httppull", "httppull");
    p.add("sources", "httppush", "httppush");
    p.add("sources", "random", "random");
    p.add("sinks", "rest", "rest");
    p.add("sinks", "file", "file");
    let d = Daemon::start(p.path(), &[]);
    (p, d)
}

fn post(d: &Daemon, path: &str, body: serde_json::Value) -> (u16, String) {
    d.http("POST", path, Some(&body.to_string()))
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn httppull_emits_each_new_response_and_reports_failed_requests() {
    // Every value twice in a row (incremental drops the repeat); every 7th
    // request fails with a 500.
    let server = HttpServer::start(|_, n| {
        if n % 7 == 6 {
            (500, r#"{"error":"busy"}"#.into())
        } else {
            (200, json!({ "n": n / 2 }).to_string())
        }
    });
    let (_p, d) = daemon();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("pulled.jsonl");
    let sql = format!(
        r#"CREATE STREAM pulled () WITH (TYPE="httppull", DATASOURCE="/api/data", url="{}", interval="20", incremental="true", headers='{{"X-Token":"abc"}}')"#,
        server.url()
    );
    let (code, body) = post(&d, "/streams", json!({ "sql": sql }));
    assert_eq!(code, 201, "{body}");
    let rule = json!({"id": "pull", "sql": "SELECT n FROM pulled", "actions": [{"file": {"path": path.display().to_string()}}]});
    let (code, body) = post(&d, "/rules", rule);
    assert_eq!(code, 201, "{body}");
    let lines = d.wait_lines("pull", &path, 8);
    let ns: Vec<i64> = lines.iter().map(|l| l["n"].as_i64().unwrap_or_else(|| panic!("{l}"))).collect();
    assert!(ns.windows(2).all(|w| w[0] < w[1]), "each response once (incremental): {ns:?}");
    let got = server.received();
    let first = &got[0];
    assert_eq!((first.method.as_str(), first.path.as_str()), ("GET", "/api/data"));
    assert!(first.headers.contains(&("x-token".into(), "abc".into())), "{:?}", first.headers);
    wait_for("the 500 as a source exception", Duration::from_secs(10), || {
        d.get_json("/rules/pull/status").to_string().contains("HTTP 500")
    });
    assert_eq!(d.get_json("/rules/pull/status")["status"], "running");
}

#[test]
fn rest_retries_through_5xx_and_refuses_an_item_on_4xx() {
    // /ingest fails twice with a 503, then accepts; /bad always refuses.
    let server = HttpServer::start(|req, _| match req.path.as_str() {
        "/bad" => (400, r#"{"error":"field x is not allowed"}"#.into()),
        _ => {
            let before = REQUESTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if before < 2 {
                (503, "{}".into())
            } else {
                (200, "{}".into())
            }
        }
    });
    static REQUESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (_p, d) = daemon();
    let sql = r#"CREATE STREAM r () WITH (TYPE="random", interval="50", pattern='{"x": 1}', seed="1000")"#;
    assert_eq!(post(&d, "/streams", json!({ "sql": sql })).0, 201);
    let ingest = format!("{}/ingest", server.url());
    let rule = json!({"id": "push", "sql": "SELECT x FROM r",
        "actions": [{"rest": {"url": ingest, "method": "put", "sendSingle": true, "headers": {"X-Source": "oort"}}}]});
    let (code, body) = post(&d, "/rules", rule);
    assert_eq!(code, 201, "{body}");
    let ingested = || server.received().into_iter().filter(|r| r.path == "/ingest").collect::<Vec<_>>();
    wait_for("5 delivered items", Duration::from_secs(30), || ingested().len() >= 7);
    let got = ingested();
    // The first item was refused twice (503) and sent again, unchanged.
    assert_eq!(got[0].body, got[2].body, "the retried item");
    assert_eq!(got[1].body, got[2].body, "the retried item");
    for r in &got {
        assert_eq!(r.method, "PUT");
        assert!(json(&r.body)["x"].as_i64().is_some(), "{}", r.body);
        assert!(r.headers.contains(&("x-source".into(), "oort".into())), "{:?}", r.headers);
        assert!(r.headers.contains(&("content-type".into(), "application/json".into())), "{:?}", r.headers);
    }
    let status = d.get_json("/rules/push/status");
    assert_eq!(status["status"], "running", "{status}");

    // A 4xx refuses the item with the server's answer, and the rule goes on.
    let bad = format!("{}/bad", server.url());
    let rule =
        json!({"id": "refused", "sql": "SELECT x FROM r", "actions": [{"rest": {"url": bad, "sendSingle": true}}]});
    assert_eq!(post(&d, "/rules", rule).0, 201);
    wait_for("the 400 as a sink exception", Duration::from_secs(10), || {
        d.get_json("/rules/refused/status").to_string().contains("field x is not allowed")
    });
    let status = d.get_json("/rules/refused/status");
    assert_eq!(status["status"], "running", "{status}");
    let text = status.to_string();
    assert!(text.contains("HTTP 400"), "{text}");
}

#[test]
fn bad_http_properties_are_refused_when_the_rule_is_created() {
    let (_p, d) = daemon();
    let out = tempfile::tempdir().unwrap();
    let file = json!({"file": {"path": out.path().join("x.jsonl").display().to_string()}});
    let sources = [
        (r#"url="ftp://127.0.0.1/x""#, "must be an http:// or https:// URL"),
        (r#"url="http://127.0.0.1:1", method="FETCH""#, "unknown HTTP method"),
        (r#"url="http://127.0.0.1:1", intervall="10""#, "unknown property"),
        ("", "property url is required"),
    ];
    for (i, (options, expected)) in sources.iter().enumerate() {
        let sep = if options.is_empty() { "" } else { ", " };
        let sql = format!(r#"CREATE STREAM p{i} () WITH (TYPE="httppull", DATASOURCE="/x"{sep}{options})"#);
        assert_eq!(post(&d, "/streams", json!({ "sql": sql })).0, 201);
        let rule = json!({"id": format!("p{i}"), "sql": format!("SELECT * FROM p{i}"), "actions": [file]});
        let (code, body) = post(&d, "/rules", rule);
        assert_eq!(code, 400, "{options}: {body}");
        assert!(body.contains(expected), "{options}: expected {expected:?} in {body}");
    }
    let sql = r#"CREATE STREAM ok () WITH (TYPE="random", interval="1000")"#;
    assert_eq!(post(&d, "/streams", json!({ "sql": sql })).0, 201);
    let sinks = [
        (json!({}), "property url is required"),
        (json!({"url": "http://127.0.0.1:1/x", "bodyType": "form"}), "bodyType must be json or text"),
        (json!({"url": "http://127.0.0.1:1/x", "retries": 3}), "unknown property"),
    ];
    for (i, (props, expected)) in sinks.iter().enumerate() {
        let rule = json!({"id": format!("s{i}"), "sql": "SELECT * FROM ok", "actions": [{"rest": props}]});
        let (code, body) = post(&d, "/rules", rule);
        assert_eq!(code, 400, "{props}: {body}");
        assert!(body.contains(expected), "{props}: expected {expected:?} in {body}");
    }
    assert_eq!(d.get_json("/rules").as_array().map(Vec::len), Some(0));
}

#[test]
fn httppush_takes_posted_bodies_on_its_path_and_answers_the_sender() {
    let (_p, d) = daemon();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("pushed.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let sql = format!(r#"CREATE STREAM pushed () WITH (TYPE="httppush", DATASOURCE="/api/in", server="{addr}")"#);
    assert_eq!(post(&d, "/streams", json!({ "sql": sql })).0, 201);
    let rule = json!({"id": "push", "sql": "SELECT n, n * 10 AS m FROM pushed WHERE n > 0",
        "actions": [{"file": {"path": path.display().to_string()}}]});
    let (code, body) = post(&d, "/rules", rule);
    assert_eq!(code, 201, "{body}");
    let send = |path: &str, method: &str, body: &str| http(&addr, method, path, None, Some(body)).map(|(c, _)| c);
    // The rule's instance listens once it is open.
    wait_for("the listener", Duration::from_secs(10), || send("/api/in", "POST", r#"{"n": 1}"#) == Some(200));
    assert_eq!(send("/api/in", "POST", r#"[{"n": 2}, {"n": 0}, {"n": 3}]"#), Some(200));
    assert_eq!(send("/api/in", "POST", "not json"), Some(400), "a body that is not JSON");
    assert_eq!(send("/api/in", "PUT", r#"{"n": 9}"#), Some(405), "the stream takes POST");
    assert_eq!(send("/elsewhere", "POST", r#"{"n": 9}"#), Some(404), "no stream on that path");
    let lines = d.wait_lines("push", &path, 3);
    let got: Vec<(i64, i64)> = lines.iter().map(|l| (l["n"].as_i64().unwrap(), l["m"].as_i64().unwrap())).collect();
    assert_eq!(got, [(1, 10), (2, 20), (3, 30)], "every pushed object in order, WHERE applied");

    // A second stream on the same address and path is refused; another path
    // shares the listener.
    let twin = format!(r#"CREATE STREAM twin () WITH (TYPE="httppush", DATASOURCE="/api/in", server="{addr}")"#);
    assert_eq!(post(&d, "/streams", json!({ "sql": twin })).0, 201);
    let (code, body) = post(
        &d,
        "/rules",
        json!({"id": "twin", "sql": "SELECT * FROM twin", "actions": [{"file": {"path": "/dev/null"}}]}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("already listens"), "{body}");
    // Deleting the rule frees the path and, as the last one, the port.
    assert_eq!(d.http("DELETE", "/rules/push", None).0, 200);
    wait_for("the port to close", Duration::from_secs(10), || std::net::TcpStream::connect(&addr).is_err());
}

#[test]
fn httppush_refuses_a_bad_address_when_the_rule_is_created() {
    let (_p, d) = daemon();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let cases = [("not-an-address".to_string(), "is not an address"), (busy, "cannot listen on")];
    for (i, (server, expected)) in cases.iter().enumerate() {
        let sql = format!(r#"CREATE STREAM h{i} () WITH (TYPE="httppush", DATASOURCE="/x", server="{server}")"#);
        assert_eq!(post(&d, "/streams", json!({ "sql": sql })).0, 201);
        let rule = json!({"id": format!("h{i}"), "sql": format!("SELECT * FROM h{i}"), "actions": [{"file": {"path": "/dev/null"}}]});
        let (code, body) = post(&d, "/rules", rule);
        assert_eq!(code, 400, "{server}: {body}");
        assert!(body.contains(expected), "{server}: expected {expected:?} in {body}");
    }
}
