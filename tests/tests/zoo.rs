//! The zoo: one misbehaving plugin per test against the real daemon. Each test
//! asserts a clear rule status (or REST error) within a bound, and that a
//! healthy rule running beside it keeps producing output.
//!
//! The misbehaviours come from the fixture plugin's modes (`src/bin/fixture.rs`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oort_tests::{alive, bin, json, kill9, Daemon, PluginsDir};
use serde_json::Value as Json;

/// A daemon with the `random` source, the `file` and `null` sinks, the fixture
/// as function plugin `fixture`, and one healthy rule writing to a file.
struct Zoo {
    daemon: Daemon,
    out: tempfile::TempDir,
    _plugins: PluginsDir,
}

const FIXTURE_FUNCTIONS: &str = r#""functions":[{"name":"whoami"},{"name":"sleep"}]"#;

impl Zoo {
    /// `env` configures the fixture; `limits` is the JSON of its metadata's
    /// `limits`, if any; `extra` goes to `oort serve`.
    fn start(env: &[(&str, &str)], limits: Option<&str>, extra: &[&str]) -> Zoo {
        let meta = match limits {
            Some(l) => format!(r#"{{{FIXTURE_FUNCTIONS},"limits":{l}}}"#),
            None => format!("{{{FIXTURE_FUNCTIONS}}}"),
        };
        Zoo::start_with_metadata(env, &meta, extra)
    }

    fn start_with_metadata(env: &[(&str, &str)], meta: &str, extra: &[&str]) -> Zoo {
        let plugins = PluginsDir::new();
        plugins.add("sources", "random", "random");
        plugins.add("sources", "file", "file");
        plugins.add("sinks", "file", "file");
        plugins.add_fixture("functions", "fixture", env);
        std::fs::write(plugins.path().join("functions/fixture.json"), meta).unwrap();
        let daemon = Daemon::start(plugins.path(), extra);
        let out = tempfile::tempdir().unwrap();
        let zoo = Zoo { daemon, out, _plugins: plugins };
        zoo.post(
            "/streams",
            r#"{"sql":"CREATE STREAM fast () WITH (TYPE=\"random\", interval=\"20\", pattern='{\"x\":1}')"}"#,
            201,
        );
        zoo.post(
            "/streams",
            r#"{"sql":"CREATE STREAM slow () WITH (TYPE=\"random\", interval=\"300\", pattern='{\"x\":1}')"}"#,
            201,
        );
        let healthy = zoo.out.path().join("healthy.jsonl");
        zoo.post(
            "/rules",
            &format!(
                r#"{{"id":"healthy","sql":"SELECT x FROM fast","actions":[{{"file":{{"path":"{}"}}}}]}}"#,
                healthy.display()
            ),
            201,
        );
        assert!(wait(Duration::from_secs(10), || lines(&healthy) > 0), "the healthy rule produced nothing");
        zoo
    }

    fn post(&self, path: &str, body: &str, expect: u16) -> String {
        let (status, text) = self.daemon.http("POST", path, Some(body));
        assert_eq!(status, expect, "POST {path} {body}: {text}\nlog:\n{}", self.daemon.log());
        text
    }

    /// Creates a rule that must be refused; returns the error message.
    fn refused(&self, rule: &str) -> String {
        let started = Instant::now();
        let (status, text) = self.daemon.http("POST", "/rules", Some(rule));
        assert_eq!(status, 400, "{text}");
        assert!(started.elapsed() < Duration::from_secs(15), "the refusal took {:?}", started.elapsed());
        json(&text)["error"].as_str().unwrap().to_string()
    }

    fn status(&self, rule: &str) -> Json {
        self.daemon.get_json(&format!("/rules/{rule}/status"))
    }

    /// Waits until the rule is in `error`; returns its status.
    fn error_within(&self, rule: &str, bound: Duration) -> Json {
        let deadline = Instant::now() + bound;
        loop {
            let s = self.status(rule);
            if s["status"] == "error" {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "rule {rule} not in error after {bound:?}: {s}\nlog:\n{}",
                self.daemon.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The healthy rule is running and still writes.
    fn assert_healthy(&self) {
        let healthy = self.out.path().join("healthy.jsonl");
        let before = lines(&healthy);
        assert!(
            wait(Duration::from_secs(5), || lines(&healthy) > before + 5),
            "the healthy rule stopped producing output; log:\n{}",
            self.daemon.log()
        );
        assert_eq!(self.status("healthy")["status"], "running");
    }

    fn bad_rule(&self, id: &str, select: &str, options: &str) -> String {
        format!(
            r#"{{"id":"{id}","sql":"{select}","actions":[{{"file":{{"path":"{}"}}}}],"options":{options}}}"#,
            self.out.path().join(format!("{id}.jsonl")).display()
        )
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

fn wait(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A small restart strategy, so that failing cases end quickly.
const ONE_RETRY: &str =
    r#"{"restartStrategy":{"attempts":1,"delay":100,"multiplier":1.0,"maxDelay":100,"jitterFactor":0}}"#;

#[test]
fn a_plugin_that_crashes_at_start_is_refused_with_its_last_words() {
    let zoo = Zoo::start(&[("OORT_FIXTURE_MODE", "exit-at-start")], None, &[]);
    let err = zoo.refused(&zoo.bad_rule("bad", "SELECT whoami() AS p FROM slow", "{}"));
    assert!(err.contains("exited during its handshake"), "{err}");
    assert!(err.contains("exiting at start as asked"), "{err}");
    zoo.assert_healthy();
}

#[test]
fn a_plugin_that_never_handshakes_is_refused_after_the_start_timeout() {
    let zoo = Zoo::start(&[("OORT_FIXTURE_MODE", "hang-handshake")], None, &["--start-timeout-ms", "1500"]);
    let err = zoo.refused(&zoo.bad_rule("bad", "SELECT whoami() AS p FROM slow", "{}"));
    assert!(err.contains("did not become ready within 1.5s"), "{err}");
    zoo.assert_healthy();
}

#[test]
fn a_plugin_that_answers_garbage_is_refused_after_the_start_timeout() {
    let zoo = Zoo::start(&[("OORT_FIXTURE_MODE", "garbage")], None, &["--start-timeout-ms", "1500"]);
    let err = zoo.refused(&zoo.bad_rule("bad", "SELECT whoami() AS p FROM slow", "{}"));
    assert!(err.contains("did not become ready within 1.5s"), "{err}");
    zoo.assert_healthy();
}

#[test]
fn a_plugin_with_a_lying_describe_is_refused_or_fails_clearly() {
    let liar = [("OORT_FIXTURE_MODE", "lying-describe")];
    let zoo = Zoo::start_with_metadata(&liar, r#"{"functions":[{"name":"whoami"},{"name":"ghost"}]}"#, &[]);
    let err = zoo.refused(&zoo.bad_rule("bad", "SELECT ghost() AS p FROM slow", "{}"));
    assert!(err.contains("function ghost cannot be validated"), "{err}");
    assert!(err.contains("Validate failed"), "{err}");
    assert!(err.contains("Unimplemented"), "the message says what went wrong: {err}");

    // As a source it is accepted (nothing to validate) and fails at its Open.
    zoo._plugins.add_fixture("sources", "fixture", &liar);
    zoo.post("/streams", r#"{"sql":"CREATE STREAM lies () WITH (TYPE=\"fixture\")"}"#, 201);
    zoo.post("/rules", &zoo.bad_rule("bad2", "SELECT * FROM lies", "{}"), 201);
    let status = zoo.error_within("bad2", Duration::from_secs(10));
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("cannot open source fixture") && msg.contains("Open failed"), "{msg}");
    zoo.assert_healthy();
}

/// Defect 3: a plugin hung inside Exec is visible at once (the status names
/// the stuck instance and since when, the log warns on the first timeout),
/// and the rule ends in `error` within the bound the restart strategy gives.
#[test]
fn a_plugin_that_hangs_in_every_call_is_reported_stuck_then_fails_within_the_bound() {
    let zoo = Zoo::start(&[("OORT_FIXTURE_MODE", "hang-exec")], None, &["--call-timeout-ms", "1000"]);
    let strategy =
        r#"{"restartStrategy":{"attempts":2,"delay":1000,"multiplier":1.0,"maxDelay":1000,"jitterFactor":0}}"#;
    let started = Instant::now();
    zoo.post("/rules", &zoo.bad_rule("hung", "SELECT whoami() AS p FROM slow", strategy), 201);
    // Bound: (attempts + 1) calls of one call timeout, the delays between
    // retries, reopening the instance (a Close and an Open of at most one
    // call timeout each) per retry, and stopping the hung process (two stop
    // grace periods): 3 * 1 s + 1 s + 2 * 2 * 1 s + 2 * 2 s = 12 s.
    let mut seen_stuck = None;
    let deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        let s = zoo.status("hung");
        if seen_stuck.is_none() {
            if let Some(stuck) = s["stuck"].as_array().and_then(|a| a.first()) {
                seen_stuck = Some((stuck.as_str().unwrap().to_string(), started.elapsed()));
                // The batch the function holds is in the source's buffer.
                assert!(s["source_slow_0_buffer_length"].as_u64().is_some_and(|n| n >= 1), "{s}");
            }
        }
        if s["status"] == "error" {
            break s;
        }
        assert!(Instant::now() < deadline, "not in error within 25 s: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    let (stuck, after) = seen_stuck.expect("the status never reported the stuck instance");
    assert!(stuck.starts_with("fn_0_whoami (plugin fixture, pid "), "{stuck}");
    assert!(stuck.contains("is stuck in Exec: in flight since 20"), "{stuck}");
    assert!(after < Duration::from_secs(5), "reported stuck only after {after:?}");
    assert!(took < Duration::from_secs(18), "error only after {took:?}");
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("Exec timed out after 1s"), "{msg}");
    assert_eq!(status["source_slow_0_buffer_length"], 0, "a failed rule keeps nothing queued: {status}");
    let log = zoo.daemon.log();
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains("Exec timed out") && l.contains("reported as stuck")),
        "no WARN line on the first timeout:\n{log}"
    );
    zoo.assert_healthy();
}

#[test]
fn a_memory_hog_is_stopped_at_its_limit_and_reported() {
    let zoo = Zoo::start(&[("OORT_FIXTURE_MODE", "memory-hog")], None, &[]);
    let options = r#"{"pluginLimits":{"fixture":{"memory":"64MiB"}},"restartStrategy":{"attempts":1,"delay":100,"multiplier":1.0,"maxDelay":100,"jitterFactor":0}}"#;
    zoo.post("/rules", &zoo.bad_rule("hog", "SELECT whoami() AS p FROM slow", options), 201);
    let status = zoo.error_within("hog", Duration::from_secs(20));
    // The rule's final message names the limit, not a failure that followed it.
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("exceeded its memory limit of 64 MiB (rss "), "{msg}\n{}", zoo.daemon.log());
    zoo.assert_healthy();
}

#[test]
fn a_fork_bomb_is_stopped_at_its_process_limit_and_reported() {
    let zoo = Zoo::start(&[("OORT_FIXTURE_MODE", "fork-bomb")], Some(r#"{"processes":32}"#), &[]);
    zoo.post("/rules", &zoo.bad_rule("bomb", "SELECT whoami() AS p FROM slow", ONE_RETRY), 201);
    let status = zoo.error_within("bomb", Duration::from_secs(20));
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("exceeded its process limit of 32 ("), "{msg}\n{}", zoo.daemon.log());
    // The bomb's children went with it.
    assert!(wait(Duration::from_secs(5), || bomb_children() == 0), "{} bomb children survive", bomb_children());
    zoo.assert_healthy();
}

/// Processes running `sleep 60`, the fork bomb's children.
fn bomb_children() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok()))
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x0060\x00"))
        .filter(|e| e.file_name().to_str().and_then(|n| n.parse().ok()).is_some_and(alive))
        .count()
}

#[test]
fn a_plugin_answering_beyond_the_message_limit_fails_clearly() {
    let zoo = Zoo::start(&[("OORT_FIXTURE_MODE", "oversized")], None, &[]);
    zoo.post("/rules", &zoo.bad_rule("big", "SELECT whoami() AS p FROM slow", ONE_RETRY), 201);
    let status = zoo.error_within("big", Duration::from_secs(20));
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("Exec failed") && msg.contains("too large"), "{msg}");
    zoo.assert_healthy();
}

/// The pids a `spawn-children` fixture recorded.
fn recorded(pidfile: &Path) -> Vec<u32> {
    std::fs::read_to_string(pidfile)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Defect 4b: children that ignore SIGTERM or left the group with `setsid`
/// die with every stop: the Validate process's, a rule stop's, a delete's.
#[test]
fn sigterm_ignoring_and_setsid_children_die_on_every_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("pids");
    let pidfile_s = pidfile.to_str().unwrap();
    let zoo = Zoo::start(&[("OORT_FIXTURE_MODE", "spawn-children"), ("OORT_FIXTURE_PIDFILE", pidfile_s)], None, &[]);
    let rule = zoo.bad_rule("kids", "SELECT whoami() AS p FROM slow", "{}");
    zoo.post("/rules", &rule, 201);
    // Validation ran in a short-lived process: its two children are gone.
    let all_dead = |pids: &[u32]| wait(Duration::from_secs(5), || pids.iter().all(|p| !alive(*p)));
    assert!(wait(Duration::from_secs(5), || recorded(&pidfile).len() >= 4), "the rule's process started no children");
    let validate = recorded(&pidfile)[..2].to_vec();
    assert!(all_dead(&validate), "the Validate process's children survive: {validate:?}");
    let running = recorded(&pidfile)[2..4].to_vec();
    assert!(running.iter().all(|p| alive(*p)));
    zoo.post("/rules/kids/stop", "", 200);
    assert!(all_dead(&running), "children survive a rule stop: {running:?}");

    zoo.post("/rules/kids/start", "", 200);
    assert!(wait(Duration::from_secs(5), || recorded(&pidfile).len() >= 6));
    let restarted = recorded(&pidfile)[4..6].to_vec();
    let (status, body) = zoo.daemon.http("DELETE", "/rules/kids", None);
    assert_eq!(status, 200, "{body}");
    assert!(all_dead(&restarted), "children survive a rule deletion: {restarted:?}");
    zoo.assert_healthy();
}

/// Starts `oort-test-host` (a supervisor with the daemon guard) with the
/// given `<rule>:<function>` instances; returns it, its runtime folder and
/// the pid of its reaper.
fn start_host(plugins: &Path, root: &Path, instances: &[&str]) -> (Child, PathBuf) {
    let mut child = Command::new(bin("oort-test-host"))
        .arg(plugins)
        .arg(root)
        .args(instances)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut runtime = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(r) = line.strip_prefix("RUNTIME ") {
            runtime = Some(PathBuf::from(r));
        } else if line == "READY" {
            break;
        }
    }
    (child, runtime.expect("runtime path"))
}

/// The children of `pid` running `__reaper`.
fn reaper_of(pid: u32) -> Option<u32> {
    let dir = std::fs::read_dir("/proc").ok()?;
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).find(|p| {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|s| s.parse().ok());
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        ppid == Some(pid) && cmd.windows(9).any(|w| w == b"__reaper\0")
    })
}

fn spawning_plugins(pidfile: &Path) -> PluginsDir {
    let plugins = PluginsDir::new();
    plugins.add_fixture(
        "functions",
        "fixture",
        &[("OORT_FIXTURE_MODE", "spawn-children"), ("OORT_FIXTURE_PIDFILE", pidfile.to_str().unwrap())],
    );
    std::fs::write(plugins.path().join("functions/fixture.json"), format!("{{{FIXTURE_FUNCTIONS}}}")).unwrap();
    plugins
}

/// Waits until the supervisor's `procs` file lists `pid` (the watchdog
/// writes it every quarter second).
fn listed(runtime: &Path, pid: u32) -> bool {
    wait(Duration::from_secs(5), || {
        std::fs::read_to_string(runtime.join("procs"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&pid.to_string()))
    })
}

/// Defect 4a: a SIGKILLed supervisor takes its plugins' children with it,
/// also one that ignores SIGTERM and one that called `setsid`.
#[test]
fn a_sigkilled_supervisor_leaves_no_child_of_a_plugin_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("pids");
    let plugins = spawning_plugins(&pidfile);
    let (mut host, runtime) = start_host(plugins.path(), &tmp.path().join("rt"), &["r1:whoami"]);
    let pids = recorded(&pidfile);
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.iter().all(|p| alive(*p)));
    assert!(listed(&runtime, pids[1]), "the setsid child is not in the procs list");
    kill9(host.id());
    let _ = host.wait();
    assert!(
        wait(Duration::from_secs(5), || pids.iter().all(|p| !alive(*p))),
        "children outlived the supervisor: {:?}",
        pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
}

/// When the reaper dies with the supervisor, the next supervisor on the same
/// runtime root kills what the dead one left.
#[test]
fn the_next_supervisor_kills_what_a_dead_supervisor_and_its_reaper_left() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("pids");
    let plugins = spawning_plugins(&pidfile);
    let root = tmp.path().join("rt");
    let (mut host, runtime) = start_host(plugins.path(), &root, &["r1:whoami"]);
    let pids = recorded(&pidfile);
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(listed(&runtime, pids[1]));
    let reaper = reaper_of(host.id()).expect("the supervisor has a reaper");
    kill9(reaper);
    kill9(host.id());
    let _ = host.wait();
    // A negative check needs time to be false: had anything killed them, it
    // would have within half a second.
    std::thread::sleep(Duration::from_millis(500));
    assert!(pids.iter().all(|p| alive(*p)), "without the reaper the children survive (the case under test)");
    let (mut next, _) = start_host(plugins.path(), &root, &[]);
    let survivors: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    kill9(next.id());
    let _ = next.wait();
    assert!(survivors.is_empty(), "the next supervisor left them alive: {survivors:?}");
    assert!(!runtime.exists());
}

/// Defect 7: the daemon raises its soft open-files limit to the hard limit,
/// and 200 rules, each with its own source and sink processes, all run.
#[test]
fn the_daemon_raises_its_open_files_limit_and_runs_200_rules() {
    let plugins = PluginsDir::new();
    plugins.add("sources", "random", "random");
    plugins.add("sinks", "null", "null");
    let hard = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
        .unwrap();
    if hard == "unlimited" || hard.parse::<u64>().unwrap() <= 4096 {
        eprintln!("skipped: the hard open-files limit ({hard}) leaves nothing to raise");
        return;
    }
    let d = Daemon::start_wrapped(&["prlimit", "--nofile=1024:"], plugins.path(), &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let soft = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().nth(3).unwrap();
    assert_eq!(soft, hard, "the soft limit was not raised:\n{limits}");
    let (s, b) = d.http(
        "POST",
        "/streams",
        Some(r#"{"sql":"CREATE STREAM s () WITH (TYPE=\"random\", interval=\"500\", pattern='{\"x\":1}')"}"#),
    );
    assert_eq!(s, 201, "{b}");
    for i in 0..200 {
        let rule = format!(r#"{{"id":"r{i}","sql":"SELECT x FROM s","actions":[{{"null":{{}}}}]}}"#);
        let (s, b) = d.http("POST", "/rules", Some(&rule));
        assert_eq!(s, 201, "rule {i}: {b}");
    }
    let all_ran = wait(Duration::from_secs(30), || {
        (0..200).all(|i| {
            let s = d.get_json(&format!("/rules/r{i}/status"));
            s["status"] == "running" && s["sink_null_0_0_records_in_total"].as_u64().unwrap_or(0) > 0
        })
    });
    let failed: Vec<Json> =
        d.get_json("/rules").as_array().unwrap().iter().filter(|r| r["status"] != "running").cloned().collect();
    assert!(all_ran, "not every rule ran; not running: {failed:?}\nlog tail: {}", tail(&d.log()));
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A source whose process stops answering (frozen with SIGSTOP here) is
/// reported stuck in `Read` within two call timeouts, while a quiet but
/// healthy source is not; the report clears once the process answers again.
#[test]
fn a_source_whose_process_stops_answering_is_reported_stuck_in_read() {
    let zoo = Zoo::start(&[], None, &["--call-timeout-ms", "1000"]);
    zoo.post("/rules", &zoo.bad_rule("frozen", "SELECT x FROM slow", "{}"), 201);
    let source_pid = || {
        let s = zoo.status("frozen");
        let source = s["plugins"].as_array().and_then(|a| a.iter().find(|p| p["operator"] == "source").cloned());
        source.and_then(|p| p["pid"].as_u64()).map(|p| p as u32)
    };
    assert!(wait(Duration::from_secs(10), || source_pid().is_some()), "the source process never started");
    let pid = source_pid().unwrap();
    // A healthy source that is quiet for longer than the call timeout (a
    // file nobody writes to) is not stuck. It is another plugin: the bundled
    // sources are shared, so every rule's `random` runs in the process
    // stopped below.
    let quiet_file = zoo.out.path().join("quiet.jsonl");
    std::fs::write(&quiet_file, "").unwrap();
    let quiet = serde_json::json!({
        "sql": format!(r#"CREATE STREAM quiet () WITH (TYPE="file", DATASOURCE="{}")"#, quiet_file.display())
    });
    zoo.post("/streams", &quiet.to_string(), 201);
    zoo.post("/rules", &zoo.bad_rule("quiet", "SELECT x FROM quiet", "{}"), 201);
    let signal = |sig: &str| {
        assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
    };
    signal("-STOP");
    let frozen_at = Instant::now();
    let stuck = loop {
        let s = zoo.status("frozen");
        if let Some(line) = s["stuck"].as_array().and_then(|a| a.first()) {
            break line.as_str().unwrap().to_string();
        }
        assert!(frozen_at.elapsed() < Duration::from_secs(6), "the frozen source was never reported stuck: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(stuck.starts_with(&format!("source (plugin random, pid {pid}) is stuck in Read")), "{stuck}");
    assert_eq!(zoo.status("frozen")["status"], "running");
    assert!(zoo.status("quiet")["stuck"].is_null(), "a quiet, healthy source was reported stuck");
    let log = zoo.daemon.log();
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains("Read timed out") && l.contains("no health check")),
        "no WARN line for the stuck read:\n{log}"
    );
    signal("-CONT");
    assert!(
        wait(Duration::from_secs(5), || zoo.status("frozen")["stuck"].is_null()),
        "the stuck report did not clear: {}",
        zoo.status("frozen")
    );
    let out = zoo.out.path().join("frozen.jsonl");
    let before = lines(&out);
    assert!(wait(Duration::from_secs(5), || lines(&out) > before), "the thawed source produced nothing");
    assert!(zoo.status("quiet")["stuck"].is_null());
    zoo.assert_healthy();
}

/// A line the file source skips (too long, not JSON) counts as an exception of
/// the rule's source, with the reason in the rule status; the rule goes on.
#[test]
fn lines_the_file_source_skips_are_counted_in_the_rule_status() {
    let zoo = Zoo::start(&[], None, &[]);
    let input = zoo.out.path().join("in.jsonl");
    let long = format!("{{\"x\":\"{}\"}}", "y".repeat(2000));
    std::fs::write(&input, format!("{{\"x\":1}}\n{long}\nnot json\n{{\"x\":2}}\n")).unwrap();
    let stream = format!(
        r#"{{"sql":"CREATE STREAM lines () WITH (TYPE=\"file\", DATASOURCE=\"{}\", maxLineLength=\"1000\")"}}"#,
        input.display()
    );
    zoo.post("/streams", &stream, 201);
    zoo.post("/rules", &zoo.bad_rule("lines", "SELECT x FROM lines", "{}"), 201);
    let out = zoo.out.path().join("lines.jsonl");
    assert!(wait(Duration::from_secs(10), || lines(&out) == 2), "the two good lines were not written");
    let status = zoo.status("lines");
    assert_eq!(status["status"], "running");
    assert_eq!(status["source_lines_0_exceptions_total"], 2, "{status}");
    let last = status["source_lines_0_last_exception"].as_str().unwrap();
    assert!(last.contains("skipping the line at byte offset ") && last.contains("not valid JSON"), "{last}");
}
