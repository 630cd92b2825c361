//! The admin APIs under pressure and attack, through the real daemon: the
//! token guards gRPC as it guards REST, every error is JSON, and one slow
//! request never stalls the others.

use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oort_proto::admin::v1 as pb;
use oort_proto::admin::v1::admin_client::AdminClient;
use oort_tests::{http, json, Daemon, PluginsDir};

const TOKEN: &str = "s3cret-token";

fn plugins() -> PluginsDir {
    let p = PluginsDir::new();
    p.add("sources", "random", "random");
    p.add("sinks", "log", "log");
    p.add_fixture("sinks", "slow", &[("OORT_FIXTURE_NAME", "slow")]);
    p
}

/// Polls `f` every 20 ms until it is true, failing after 10 s with `what`.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create_rule(addr: &str, token: Option<&str>, rule: serde_json::Value) {
    let sql = r#"CREATE STREAM s () WITH (TYPE="random", interval="20")"#;
    let stream = serde_json::json!({ "sql": sql }).to_string();
    let (status, body) = http(addr, "POST", "/streams", token, Some(&stream)).unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(addr, "POST", "/rules", token, Some(&rule.to_string())).unwrap();
    assert_eq!(status, 201, "{body}");
}

fn rule_state(addr: &str, token: Option<&str>, id: &str) -> String {
    let (status, body) = http(addr, "GET", &format!("/rules/{id}/status"), token, None).unwrap();
    assert_eq!(status, 200, "{body}");
    json(&body)["status"].as_str().unwrap_or_default().to_string()
}

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

#[test]
fn the_grpc_admin_api_requires_the_token_and_health_and_reflection_stay_open() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("admin.sock");
    let d = Daemon::start(plugins.path(), &["--api-token", TOKEN, "--grpc-addr", &format!("unix:{}", sock.display())]);
    let rule = serde_json::json!({"id": "r1", "sql": "SELECT * FROM s", "actions": [{"log": {}}]});
    create_rule(&d.addr, Some(TOKEN), rule);
    assert_eq!(rule_state(&d.addr, Some(TOKEN), "r1"), "running");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = oort_host::process::connect_unix(&sock).await.unwrap();
        let mut admin = AdminClient::new(channel.clone());
        let id = || pb::RuleRequest { id: "r1".into() };
        for token in [None, Some("wrong"), Some("")] {
            let stop = admin.stop_rule(with_token(id(), token)).await.unwrap_err();
            assert_eq!(stop.code(), tonic::Code::Unauthenticated, "StopRule with {token:?}: {stop:?}");
            let start = admin.start_rule(with_token(id(), token)).await.unwrap_err();
            assert_eq!(start.code(), tonic::Code::Unauthenticated, "{start:?}");
            let status = admin.get_rule_status(with_token(id(), token)).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
            let list = pb::ListPluginsRequest { kind: "source".into() };
            let list = admin.list_plugins(with_token(list, token)).await.unwrap_err();
            assert_eq!(list.code(), tonic::Code::Unauthenticated, "{list:?}");
            let rules = admin.list_rules(with_token(pb::ListRulesRequest {}, token)).await.unwrap_err();
            assert_eq!(rules.code(), tonic::Code::Unauthenticated, "{rules:?}");
        }
        // Refused calls changed nothing.
        assert_eq!(rule_state(&d.addr, Some(TOKEN), "r1"), "running");

        // Health and reflection answer without the token.
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let check = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
        assert_eq!(check.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
        let mut reflection =
            tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let req = tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut answers = reflection.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
        assert!(answers.message().await.unwrap().is_some(), "reflection answers without a token");

        // The right token works.
        let status = admin.get_rule_status(with_token(id(), Some(TOKEN))).await.unwrap().into_inner();
        assert_eq!(status.status, "running");
        admin.stop_rule(with_token(id(), Some(TOKEN))).await.unwrap();
    });
    assert_eq!(rule_state(&d.addr, Some(TOKEN), "r1"), "stopped");
}

#[test]
fn errors_axum_answers_itself_are_json_too() {
    let plugins = plugins();
    let d = Daemon::start(plugins.path(), &[]);
    // Over the body limit: 413, with the API's error shape.
    let huge = format!(r#"{{"id":"r","sql":"{}"}}"#, "x".repeat(3 << 20));
    let (status, body) = post_while_reading(&d.addr, "/rules", &huge);
    assert_eq!(status, 413, "{body}");
    let error = json(&body);
    assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    // A rule id that is not UTF-8 in the path.
    let (status, body) = http(&d.addr, "GET", "/rules/%FF/status", None, None).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(json(&body)["error"].is_string(), "{body}");
}

#[test]
fn describing_a_plugin_that_is_not_executable_says_why() {
    let plugins = plugins();
    let file = plugins.path().join("functions").join("lazy");
    std::fs::copy(oort_tests::bin("echo"), &file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = Daemon::start(plugins.path(), &[]);
    let (status, body) = d.http("GET", "/plugins/functions/lazy", None);
    assert_eq!(status, 404, "{body}");
    let error = json(&body)["error"].as_str().unwrap_or_default().to_string();
    let expected = format!("found {} but it is not executable (mode 0644)", file.display());
    assert!(error.contains(&expected), "{error}");
}

/// A POST whose body is written by another thread while this one reads the
/// answer: a server that refuses a body early answers before reading it all.
fn post_while_reading(addr: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = std::thread::spawn(move || {
        // The server may close before taking it all: that is the point.
        let _ = writer.write_all(request.as_bytes());
    });
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) => {
                assert!(!raw.is_empty(), "no answer: {e}");
                break;
            }
        }
    }
    let _ = write.join();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A rule whose sink takes seconds to close: deleting it takes that long,
/// and meanwhile the rest of the API answers.
#[test]
fn a_slow_delete_does_not_stall_the_api() {
    let plugins = plugins();
    let d = Daemon::start(plugins.path(), &[]);
    let slow = serde_json::json!({"id": "slow", "sql": "SELECT * FROM s", "actions": [{"slow": {"delayMs": 0, "closeDelayMs": 4000}}]});
    create_rule(&d.addr, None, slow);
    let other = serde_json::json!({"id": "other", "sql": "SELECT * FROM s", "actions": [{"log": {}}]});
    let (status, body) = d.http("POST", "/rules", Some(&other.to_string()));
    assert_eq!(status, 201, "{body}");
    eventually("the slow rule to run", || {
        d.get_json("/rules/slow/status")["sink_slow_0_0_records_in_total"].as_u64().unwrap_or(0) > 0
    });

    let (done_tx, done_rx) = mpsc::channel();
    let addr = d.addr.clone();
    let delete = std::thread::spawn(move || {
        let answer = http(&addr, "DELETE", "/rules/slow", None, None);
        let _ = done_tx.send(());
        answer
    });
    // The delete is under way once the sink has been asked to close.
    eventually("the slow sink to start closing", || d.log().contains("slow sink closing"));

    let (status, body) = d.http("GET", "/rules", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(d.http("GET", "/ping", None).0, 200);
    let (status, body) = d.http("GET", "/rules/other/status", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.http("POST", "/rules/other/stop", None);
    assert_eq!(status, 200, "another rule can be stopped meanwhile: {body}");
    assert!(
        done_rx.try_recv().is_err(),
        "GET /rules, /ping and another rule's calls answered only after the slow DELETE finished"
    );

    let (status, body) = delete.join().unwrap().expect("the delete answers");
    assert_eq!(status, 200, "{body}");
    let (_, body) = d.http("GET", "/rules", None);
    assert_eq!(json(&body), serde_json::json!([{"id": "other", "status": "stopped"}]));
}
