//! A cluster that loses nodes keeps every rule, exactly once: a real etcd,
//! three `oort serve --cluster` nodes with their own data folders, one shared
//! checkpoint store (`--checkpoint-store file://…`), and rules at qos 2 that
//! copy a growing JSON-lines file into one output file each. Whatever
//! happens to the nodes (kill -9 and rejoin, a rolling restart, a node
//! paused past its lease and resumed, etcd restarted), every output file
//! must end up exactly the input: nothing lost, nothing repeated.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oort_tests::{Daemon, Etcd, PluginsDir};
use serde_json::{json, Value};

struct Cluster {
    etcd: Etcd,
    plugins: PluginsDir,
    /// Checkpoints, the input and the outputs: what every node reaches.
    shared: tempfile::TempDir,
    data: Vec<tempfile::TempDir>,
    nodes: Vec<Option<Daemon>>,
    lease_s: u32,
}

const IDS: [&str; 3] = ["a", "b", "c"];

impl Cluster {
    fn start(etcd: Etcd, lease_s: u32) -> Cluster {
        let plugins = PluginsDir::new();
        plugins.add("sources", "file", "file");
        plugins.add("sinks", "file", "file");
        let shared = tempfile::tempdir().unwrap();
        std::fs::create_dir(shared.path().join("out")).unwrap();
        std::fs::File::create(shared.path().join("in.jsonl")).unwrap();
        let data = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut c = Cluster { etcd, plugins, shared, data, nodes: vec![None, None, None], lease_s };
        for i in 0..3 {
            c.start_node(i);
        }
        c
    }

    fn start_node(&mut self, i: usize) {
        let store = format!("file://{}", self.shared.path().join("checkpoints").display());
        let endpoints = self.etcd.endpoints();
        let lease = self.lease_s.to_string();
        let args = ["--cluster", &endpoints, "--node-id", IDS[i], "--lease-ttl-s", &lease, "--checkpoint-store", &store];
        self.nodes[i] = Some(Daemon::start_in(self.plugins.path(), &self.data[i].path().join("d"), &args));
    }

    fn node(&self, i: usize) -> &Daemon {
        self.nodes[i].as_ref().expect("a running node")
    }

    fn any(&self) -> &Daemon {
        self.nodes.iter().flatten().next().expect("a running node")
    }

    fn input(&self) -> PathBuf {
        self.shared.path().join("in.jsonl")
    }

    fn output(&self, rule: &str) -> PathBuf {
        self.shared.path().join("out").join(format!("{rule}.jsonl"))
    }

    fn logs(&self) -> String {
        self.nodes.iter().flatten().map(|d| d.log()).collect::<Vec<_>>().join("\n-----\n")
    }

    /// Creates the stream and `count` rules, through the nodes in turn.
    fn create_rules(&self, count: usize) -> Vec<String> {
        let sql = format!(r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="{}")"#, self.input().display());
        let (status, body) = self.any().http("POST", "/streams", Some(&json!({ "sql": sql }).to_string()));
        assert_eq!(status, 201, "{body}");
        let live: Vec<&Daemon> = self.nodes.iter().flatten().collect();
        (0..count)
            .map(|i| {
                let id = format!("r{i:03}");
                let rule = json!({
                    "id": id, "sql": "SELECT n FROM s",
                    "actions": [{"file": {"path": self.output(&id).display().to_string()}}],
                    "options": {"qos": 2, "checkpointInterval": 500}
                });
                let (status, body) = live[i % live.len()].http("POST", "/rules", Some(&rule.to_string()));
                assert_eq!(status, 201, "rule {id}: {body}");
                id
            })
            .collect()
    }

    /// `GET /rules` from node `via`: (id, status, node) of every rule.
    fn rules(&self, via: &Daemon) -> Vec<(String, String, Option<String>)> {
        let (status, body) = via.http("GET", "/rules", None);
        assert_eq!(status, 200, "{body}");
        let list: Value = serde_json::from_str(&body).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["status"].as_str().unwrap().to_string(),
                    r["node"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    /// Waits until all `count` rules run, on the nodes in `on` only, each of
    /// them running at least half its fair share (placement rebalances);
    /// returns how long that took and the rules per node.
    fn wait_running(&self, count: usize, on: &[&str], within: Duration) -> (Duration, Vec<usize>) {
        let start = Instant::now();
        loop {
            let rules = self.rules(self.any());
            let placed_well = rules.iter().all(|(_, s, n)| s == "running" && n.as_deref().is_some_and(|n| on.contains(&n)));
            let per_node: Vec<usize> =
                on.iter().map(|n| rules.iter().filter(|r| r.2.as_deref() == Some(n)).count()).collect();
            let balanced = per_node.iter().all(|n| *n >= count / on.len() / 2);
            if rules.len() == count && placed_well && balanced {
                return (start.elapsed(), per_node);
            }
            if start.elapsed() > within {
                let waiting: Vec<_> = rules.iter().filter(|(_, s, n)| s != "running" || n.is_none()).take(10).collect();
                panic!("after {within:?}, rules not running on {on:?}: {waiting:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every rule's output holds `lines` lines, then checks it
    /// is exactly the input.
    fn check_outputs(&self, rules: &[String], lines: u64, within: Duration) {
        let want: String = (0..lines).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        let start = Instant::now();
        for id in rules {
            loop {
                let got = std::fs::read_to_string(self.output(id)).unwrap_or_default();
                if got == want {
                    break;
                }
                if start.elapsed() > within || got.len() > want.len() {
                    let first_bad = got.lines().zip(want.lines()).position(|(g, w)| g != w);
                    panic!(
                        "rule {id}: {} lines, want {lines}; first difference at line {first_bad:?}; \
                         status {:?}\n{}",
                        got.lines().count(),
                        self.rules(self.any()).into_iter().find(|r| &r.0 == id),
                        self.logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Appends `{"n": i}` lines to the input, `per_tick` every 100 ms, until
/// stopped; the count written so far is in `written`.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(path: &Path, per_tick: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        let (s, w) = (stop.clone(), written.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let from = w.load(Ordering::SeqCst);
                let batch: String = (from..from + per_tick).map(|n| format!("{{\"n\":{n}}}\n")).collect();
                file.write_all(batch.as_bytes()).unwrap();
                w.store(from + per_tick, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Writer { stop, written, thread: Some(thread) }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Stops writing; returns how many lines were written.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.written()
    }
}

fn wait_written(w: &Writer, lines: u64) {
    while w.written() < lines {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(d: &Daemon, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &d.child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

#[test]
fn three_hundred_rules_survive_a_killed_node_its_rejoin_and_a_rolling_restart_exactly_once() {
    let mut c = Cluster::start(Etcd::start(), 5);
    let writer = Writer::start(&c.input(), 5);
    let rules = c.create_rules(300);
    let (took, per_node) = c.wait_running(300, &IDS, Duration::from_secs(60));
    println!("300 rules running on three nodes after {took:?}: {per_node:?}");
    assert!(per_node.iter().all(|n| (75..=125).contains(n)), "placement is balanced by count: {per_node:?}");
    let status = c.node(1).get_json("/cluster");
    assert_eq!(status["rules"], 300, "{status}");
    assert_eq!(status["unassigned"], 0, "{status}");

    // Any node answers for any rule: a status call is forwarded to the owner.
    let owned_by_c = c.rules(c.node(0)).into_iter().find(|r| r.2.as_deref() == Some("c")).unwrap().0;
    let remote = c.node(0).get_json(&format!("/rules/{owned_by_c}/status"));
    assert_eq!(remote["status"], "running", "{remote}");

    // kill -9 one node while records flow: its rules run again on the others.
    wait_written(&writer, writer.written() + 20);
    let mut killed = c.nodes[2].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let (took, per_node) = c.wait_running(300, &["a", "b"], Duration::from_secs(30));
    println!("after kill -9 of c: all 300 rules running on a and b after {took:?}: {per_node:?}");
    drop(killed);

    // It rejoins, and takes its share again.
    c.start_node(2);
    let (took, per_node) = c.wait_running(300, &IDS, Duration::from_secs(30));
    println!("c rejoined: rebalanced after {took:?}: {per_node:?}");
    assert!(per_node[2] >= 50, "the node that rejoined runs its share again: {per_node:?}");

    // A rolling restart: each node stops cleanly and comes back.
    for i in 0..3 {
        assert!(c.nodes[i].as_mut().unwrap().terminate().success());
        c.nodes[i] = None;
        let others: Vec<&str> = (0..3).filter(|j| *j != i).map(|j| IDS[j]).collect();
        c.wait_running(300, &others, Duration::from_secs(30));
        c.start_node(i);
        c.wait_running(300, &IDS, Duration::from_secs(30));
    }
    let lines = writer.finish();
    c.check_outputs(&rules, lines, Duration::from_secs(60));
}

#[test]
fn a_node_paused_past_its_lease_writes_nothing_more_and_rules_survive_an_etcd_restart() {
    let mut c = Cluster::start(Etcd::start(), 2);
    let writer = Writer::start(&c.input(), 5);
    let rules = c.create_rules(30);
    c.wait_running(30, &IDS, Duration::from_secs(30));
    let paused: Vec<String> =
        c.rules(c.node(0)).into_iter().filter(|r| r.2.as_deref() == Some("c")).map(|r| r.0).collect();
    assert!(!paused.is_empty());

    // SIGSTOP past the lease: the others take its rules over while it sleeps.
    signal(c.node(2), "-STOP");
    let (took, _) = c.wait_running(30, &["a", "b"], Duration::from_secs(20));
    println!("c paused: its rules running on a and b after {took:?}");
    wait_written(&writer, writer.written() + 30);
    // It wakes up still running them: its sinks are fenced, its checkpoints
    // refused, and it gives them up.
    signal(c.node(2), "-CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !paused.iter().all(|r| c.node(2).log().contains(&format!("rule given up rule={r} "))) {
        assert!(Instant::now() < deadline, "the resumed node kept its lost rules:\n{}", c.node(2).log());
        std::thread::sleep(Duration::from_millis(100));
    }
    c.wait_running(30, &IDS, Duration::from_secs(30));
    // It gave every one of them up without releasing (it no longer owned
    // them); what it did meanwhile was refused (its sinks' fences, its
    // checkpoints' pointer moves), as the outputs below prove.
    let log = c.node(2).log();
    for r in &paused {
        assert!(log.contains(&format!("rule given up rule={r} released=false")), "{r}:\n{log}");
    }

    // etcd goes away: the rules run on (records keep flowing to the
    // outputs); when it is back, the nodes coordinate again.
    c.etcd.kill();
    let before: Vec<u64> = rules.iter().map(|r| std::fs::metadata(c.output(r)).map_or(0, |m| m.len())).collect();
    std::thread::sleep(Duration::from_secs(4));
    let grown = rules
        .iter()
        .zip(&before)
        .filter(|(r, b)| std::fs::metadata(c.output(r)).map_or(0, |m| m.len()) > **b)
        .count();
    assert_eq!(grown, rules.len(), "every rule kept writing while etcd was down");
    assert_eq!(c.node(0).http("GET", "/rules", None).0, 503);
    c.etcd.restart();
    c.wait_running(30, &IDS, Duration::from_secs(30));
    let lines = writer.finish();
    c.check_outputs(&rules, lines, Duration::from_secs(60));
    // The output files of the paused node's rules carry the new owners' fences.
    for r in &paused {
        let fence = std::fs::read_to_string(format!("{}.fence", c.output(r).display())).unwrap();
        assert!(fence.trim().parse::<u64>().unwrap() > 0, "{r}: {fence}");
    }
}
