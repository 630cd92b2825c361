//! Introspection with the real `grpcurl` (installed by `scripts/setup.sh`):
//! the supervisor's admin endpoint and a plugin's socket both answer `list`,
//! `describe` and a call.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oort_tests::{json, Daemon, PluginsDir};

fn grpcurl() -> PathBuf {
    if let Some(p) = std::env::var_os("OORT_GRPCURL") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let installed = cache.join("oort/bin/grpcurl");
    assert!(installed.exists(), "{} is missing: run scripts/setup.sh", installed.display());
    installed
}

/// Runs `grpcurl -plaintext -unix [flags] <socket> <verb...>`; returns stdout,
/// failing on a non-zero exit.
fn run(socket: &Path, flags: &[&str], verb: &[&str]) -> String {
    let args: Vec<&str> = flags.iter().chain(verb).copied().collect();
    let out = Command::new(grpcurl())
        .args(["-plaintext", "-unix"])
        .args(flags)
        .arg(socket)
        .args(verb)
        .output()
        .expect("run grpcurl");
    assert!(out.status.success(), "grpcurl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn grpcurl_lists_describes_and_calls_the_supervisor_and_a_plugin() {
    let plugins = PluginsDir::new();
    plugins.add("functions", "echo", "echo");
    plugins.add("sources", "random", "random");
    plugins.add("sinks", "log", "log");
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin.sock");
    let d = Daemon::start(plugins.path(), &["--grpc-addr", &format!("unix:{}", admin.display())]);

    // The supervisor.
    let services = run(&admin, &[], &["list"]);
    for s in ["oort.admin.v1.Admin", "grpc.health.v1.Health"] {
        assert!(services.lines().any(|l| l == s), "{s} not listed: {services}");
    }
    let described = run(&admin, &[], &["describe", "oort.admin.v1.Admin"]);
    assert!(described.contains("rpc ListPlugins") && described.contains("rpc GetRuleStatus"), "{described}");
    let listed = json(&run(&admin, &["-d", r#"{"kind":"function"}"#], &["oort.admin.v1.Admin/ListPlugins"]));
    assert_eq!(listed["names"], serde_json::json!(["echo"]));

    // A plugin: start a rule so that processes run, then talk to one socket.
    let sql = r#"CREATE STREAM s () WITH (TYPE="random", interval="100")"#;
    assert_eq!(d.http("POST", "/streams", Some(&serde_json::json!({ "sql": sql }).to_string())).0, 201);
    let rule = serde_json::json!({"id": "r", "sql": "SELECT echo(count) AS c FROM s", "actions": [{"log": {}}]});
    assert_eq!(d.http("POST", "/rules", Some(&rule.to_string())).0, 201);
    let status = json(&run(&admin, &["-d", r#"{"id":"r"}"#], &["oort.admin.v1.Admin/GetRuleStatus"]));
    assert_eq!(status["status"], "running", "{status}");

    let rt = d.runtime_root.path();
    let deadline = Instant::now() + Duration::from_secs(10);
    let plugin_socket = loop {
        let socks: Vec<PathBuf> = oort_tests::plugin_sockets(rt);
        if socks.len() >= 3 {
            break socks[0].clone();
        }
        assert!(Instant::now() < deadline, "plugin sockets did not appear: {socks:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let services = run(&plugin_socket, &[], &["list"]);
    for s in ["oort.plugin.v1.Plugin", "oort.plugin.v1.Function", "grpc.health.v1.Health"] {
        assert!(services.lines().any(|l| l == s), "{s} not listed: {services}");
    }
    let described = run(&plugin_socket, &[], &["describe", "oort.plugin.v1.Plugin"]);
    assert!(described.contains("rpc Describe") && described.contains("rpc Shutdown"), "{described}");
    let me = json(&run(&plugin_socket, &["-d", "{}"], &["oort.plugin.v1.Plugin/Describe"]));
    assert!(["echo", "random", "log"].contains(&me["name"].as_str().unwrap()), "{me}");
    assert_eq!(me["protocolVersion"], 1);
    let health = json(&run(&plugin_socket, &["-d", "{}"], &["grpc.health.v1.Health/Check"]));
    assert_eq!(health["status"], "SERVING");
}
