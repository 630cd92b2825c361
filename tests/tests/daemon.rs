//! The real `oort` binary: REST, CLI, shutdown, and what a SIGKILLed
//! supervisor leaves behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oort_tests::{alive, bin, json, kill9, list_services, sockets_under, Daemon, PluginsDir};

fn start_daemon(plugins: &PluginsDir, extra: &[&str]) -> Daemon {
    Daemon::start(plugins.path(), extra)
}

fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    oort_tests::http(addr, method, path, token, None)
}

fn cli(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    d.cli(args)
}

fn demo_plugins() -> PluginsDir {
    let p = PluginsDir::new();
    p.add("functions", "echo@v1.9.0", "echo");
    p.add("functions", "echo@v1.10.0", "echo");
    p.add("functions", "accumulateWordCount", "accumulateWordCount");
    p.add("sources", "random@v2.0.0", "random");
    p.add("sinks", "log", "log");
    p.add("sinks", "file", "file");
    p
}

#[test]
fn rest_lists_and_describes_plugins_in_ekuipers_shape() {
    let plugins = demo_plugins();
    let d = start_daemon(&plugins, &[]);
    let (status, body) = http(&d.addr, "GET", "/plugins/functions", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(json(&body), serde_json::json!(["accumulateWordCount", "echo"]));

    let (status, body) = http(&d.addr, "GET", "/plugins/functions/echo", None).unwrap();
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["name"], "echo");
    assert_eq!(v["version"], "1.10.0");
    assert_eq!(v["functions"], serde_json::json!(["echo"]));
    assert!(v["file"].as_str().unwrap().ends_with("functions/echo@v1.10.0"));
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(v["other_versions"], serde_json::json!(["1.9.0"]));

    let (status, body) = http(&d.addr, "GET", "/plugins/sources/random", None).unwrap();
    assert_eq!((status, json(&body)["version"].clone()), (200, serde_json::json!("2.0.0")));

    let (status, body) = http(&d.addr, "GET", "/plugins/sinks/nope", None).unwrap();
    assert_eq!(status, 404);
    assert!(json(&body)["error"].as_str().unwrap().contains("no sink plugin named \"nope\""), "{body}");
    let (status, body) = http(&d.addr, "GET", "/plugins/widgets", None).unwrap();
    assert_eq!(status, 404);
    assert!(json(&body)["error"].as_str().unwrap().contains("unknown plugin kind"), "{body}");
}

#[test]
fn the_cli_prints_tables_json_and_one_line_errors() {
    let plugins = demo_plugins();
    let d = start_daemon(&plugins, &[]);
    let (ok, out, _) = cli(&d, &["plugin", "list", "function"]);
    assert!(ok);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["accumulateWordCount", "echo"]);

    let (ok, out, _) = cli(&d, &["plugin", "describe", "function", "echo"]);
    assert!(ok);
    assert!(out.contains("version:   1.10.0"), "{out}");
    assert!(out.contains("processes: none running"), "{out}");

    let (ok, out, _) = cli(&d, &["plugin", "describe", "source", "random", "--json"]);
    assert!(ok);
    assert_eq!(json(&out)["version"], "2.0.0");

    let (ok, _, err) = cli(&d, &["plugin", "describe", "sink", "nope"]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no sink plugin named \"nope\""), "{err}");
}

#[test]
fn a_plugin_dropped_into_the_folder_is_found_without_a_restart() {
    let plugins = demo_plugins();
    let d = start_daemon(&plugins, &[]);
    assert_eq!(http(&d.addr, "GET", "/plugins/functions/countPlusOne", None).unwrap().0, 404);
    plugins.add("functions", "countPlusOne@v0.3.0", "countPlusOne");
    let (status, body) = http(&d.addr, "GET", "/plugins/functions/countPlusOne", None).unwrap();
    assert_eq!((status, json(&body)["version"].clone()), (200, serde_json::json!("0.3.0")), "{body}");
    plugins.add("functions", "countPlusOne@v0.10.0", "countPlusOne");
    let (_, body) = http(&d.addr, "GET", "/plugins/functions", None).unwrap();
    assert_eq!(json(&body), serde_json::json!(["accumulateWordCount", "countPlusOne", "echo"]));
    let (_, body) = http(&d.addr, "GET", "/plugins/functions/countPlusOne", None).unwrap();
    assert_eq!(json(&body)["version"], "0.10.0", "newer file takes effect: {body}");
}

#[test]
fn a_bearer_token_guards_everything_but_ping() {
    let plugins = demo_plugins();
    let d = start_daemon(&plugins, &["--api-token", "s3cret"]);
    assert_eq!(http(&d.addr, "GET", "/plugins/functions", None).unwrap().0, 401);
    assert_eq!(http(&d.addr, "GET", "/plugins/functions", Some("wrong")).unwrap().0, 401);
    assert_eq!(http(&d.addr, "GET", "/plugins/functions", Some("s3cret")).unwrap().0, 200);
    assert_eq!(http(&d.addr, "GET", "/ping", None).unwrap().0, 200);
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let plugins = demo_plugins();
    let mut d = start_daemon(&plugins, &[]);
    let rt = d.runtime_root.path().join("rt");
    assert!(!sockets_under(&rt).is_empty(), "the State socket is in the runtime folder");
    let pid = d.child.id();
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(sockets_under(&rt).is_empty(), "sockets left: {:?}", sockets_under(&rt));
}

#[test]
fn the_grpc_endpoint_serves_health_and_reflection() {
    let plugins = demo_plugins();
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("admin.sock");
    let d = start_daemon(&plugins, &["--grpc-addr", &format!("unix:{}", sock.display())]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, services) = rt.block_on(async {
        let channel = oort_host::process::connect_unix(&sock).await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let req = tonic_health::pb::HealthCheckRequest { service: String::new() };
        (health.check(req).await.unwrap().into_inner().status, list_services(&sock).await)
    });
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    assert_eq!(services, vec!["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "oort.admin.v1.Admin"]);
    drop(d);
}

/// Starts `oort-test-host` with the given `<rule>:<function>` instances and
/// returns it with the pids it printed.
fn start_host(
    plugins: &PluginsDir,
    root: &std::path::Path,
    instances: &[&str],
) -> (Child, Vec<u32>, std::path::PathBuf) {
    let mut child = Command::new(bin("oort-test-host"))
        .arg(plugins.path())
        .arg(root)
        .args(instances)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut pids = Vec::new();
    let mut runtime = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(p) = line.strip_prefix("PID ") {
            pids.push(p.parse().unwrap());
        } else if let Some(r) = line.strip_prefix("RUNTIME ") {
            runtime = Some(r.into());
        } else if line == "READY" {
            break;
        }
    }
    (child, pids, runtime.expect("runtime path"))
}

#[test]
fn a_sigkilled_supervisor_takes_every_plugin_and_plugin_socket_with_it() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "accumulateWordCount", "accumulateWordCount");
    plugins.add("functions", "echo", "echo");
    let root = tempfile::tempdir().unwrap();
    let (mut host, pids, runtime) =
        start_host(&plugins, &root.path().join("rt"), &["r1:accumulateWordCount", "r2:accumulateWordCount", "r1:echo"]);
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| alive(*p)));
    let plugin_sockets = oort_tests::plugin_sockets(&runtime).len();
    assert_eq!(plugin_sockets, 3, "one socket per process (echo is a singleton, but serves r1 only here)");

    kill9(host.id());
    let _ = host.wait();
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survivors: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(survivors.is_empty(), "plugins outlived the supervisor: {survivors:?}");
    let left: Vec<_> = sockets_under(&runtime).into_iter().filter(|s| !s.ends_with("state.sock")).collect();
    assert!(left.is_empty(), "plugin sockets outlived their processes: {left:?}");

    // The dead supervisor's own folder (with its state.sock) is removed by the
    // next supervisor that starts on the same runtime root.
    let (mut next, _, _) = start_host(&plugins, &root.path().join("rt"), &[]);
    assert!(!runtime.exists(), "stale runtime folder {} survived a restart", runtime.display());
    kill9(next.id());
    let _ = next.wait();
}

#[test]
fn plugin_stdout_and_stderr_reach_the_supervisor_log_tagged() {
    let plugins = PluginsDir::new();
    plugins.add_fixture("functions", "fixture", &[]);
    std::fs::write(plugins.path().join("functions/fixture.json"), r#"{"functions":[{"name":"whoami"}]}"#).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (mut host, pids, _) = start_host(&plugins, &root.path().join("rt"), &["r9:whoami"]);
    let mut stderr = BufReader::new(host.stderr.take().unwrap());
    let mut seen = (false, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut line = String::new();
    while !(seen.0 && seen.1) && Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let tagged = line.contains("plugin=\"fixture\"") || line.contains("plugin=fixture");
        let tagged = tagged && line.contains(&format!("pid={}", pids[0])) && line.contains("r9");
        if tagged && line.contains("fixture-hello-stdout") {
            seen.0 = true;
        }
        if tagged && line.contains("fixture-hello-stderr") {
            seen.1 = true;
        }
    }
    kill9(host.id());
    let _ = host.wait();
    assert_eq!(seen, (true, true), "plugin output not forwarded with plugin, pid and rule tags");
}
