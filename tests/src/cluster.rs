//! A three-node Oort cluster on one machine for tests and benches: a real
//! etcd, three `oort serve --cluster` nodes with their own data folders, one
//! shared checkpoint store (`file://`, or `s3://` on an [`S3Server`]), and
//! rules at qos 2 copying a growing
//! JSON-lines input into one output file each, so that an output can be
//! compared with the input exactly.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{Daemon, Etcd, PluginsDir, S3Server};

pub struct Cluster {
    pub etcd: Etcd,
    plugins: PluginsDir,
    /// Checkpoints, the input and the outputs: what every node reaches.
    shared: tempfile::TempDir,
    data: Vec<tempfile::TempDir>,
    pub nodes: Vec<Option<Daemon>>,
    lease_s: u32,
    store: Store,
}

/// Where the nodes publish their checkpoints.
enum Store {
    /// `file://` on a folder of `shared`.
    Folder,
    /// `s3://…` with the environment that reaches the server.
    S3 { url: String, env: Vec<(&'static str, String)> },
}

pub const IDS: [&str; 3] = ["a", "b", "c"];

impl Cluster {
    /// Starts three nodes with a shared folder as their checkpoint store.
    pub fn start(etcd: Etcd, lease_s: u32) -> Cluster {
        Cluster::start_with(etcd, lease_s, Store::Folder)
    }

    /// Starts three nodes whose checkpoint store is `s3://oort/<prefix>` on
    /// `s3`.
    pub fn start_on_s3(etcd: Etcd, lease_s: u32, s3: &S3Server, prefix: &str) -> Cluster {
        let url = format!("s3://{}/{prefix}", crate::s3::BUCKET);
        Cluster::start_with(etcd, lease_s, Store::S3 { url, env: s3.env() })
    }

    fn start_with(etcd: Etcd, lease_s: u32, store: Store) -> Cluster {
        let plugins = PluginsDir::new();
        plugins.add("sources", "file", "file");
        plugins.add("sinks", "file", "file");
        let shared = tempfile::tempdir().unwrap();
        std::fs::create_dir(shared.path().join("out")).unwrap();
        std::fs::File::create(shared.path().join("in.jsonl")).unwrap();
        let data = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut c = Cluster { etcd, plugins, shared, data, nodes: vec![None, None, None], lease_s, store };
        for i in 0..3 {
            c.start_node(i);
        }
        c
    }

    pub fn start_node(&mut self, i: usize) {
        let (store, env) = match &self.store {
            Store::Folder => (format!("file://{}", self.shared.path().join("checkpoints").display()), vec![]),
            Store::S3 { url, env } => (url.clone(), env.clone()),
        };
        let endpoints = self.etcd.endpoints();
        let lease = self.lease_s.to_string();
        let args =
            ["--cluster", &endpoints, "--node-id", IDS[i], "--lease-ttl-s", &lease, "--checkpoint-store", &store];
        let data = self.data[i].path().join("d");
        self.nodes[i] = Some(Daemon::start_in_with_env(self.plugins.path(), &data, &args, &env));
    }

    pub fn node(&self, i: usize) -> &Daemon {
        self.nodes[i].as_ref().expect("a running node")
    }

    pub fn any(&self) -> &Daemon {
        self.nodes.iter().flatten().next().expect("a running node")
    }

    pub fn input(&self) -> PathBuf {
        self.shared.path().join("in.jsonl")
    }

    pub fn output(&self, rule: &str) -> PathBuf {
        self.shared.path().join("out").join(format!("{rule}.jsonl"))
    }

    pub fn logs(&self) -> String {
        self.nodes.iter().flatten().map(|d| d.log()).collect::<Vec<_>>().join("\n-----\n")
    }

    /// Creates the stream and `count` rules, through the nodes in turn.
    pub fn create_rules(&self, count: usize) -> Vec<String> {
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
    pub fn rules(&self, via: &Daemon) -> Vec<(String, String, Option<String>)> {
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
    /// them running at least half its fair share when there are ten rules or
    /// more per node (placement rebalances);
    /// returns how long that took and the rules per node.
    pub fn wait_running(&self, count: usize, on: &[&str], within: Duration) -> (Duration, Vec<usize>) {
        let start = Instant::now();
        loop {
            let rules = self.rules(self.any());
            let placed_well =
                rules.iter().all(|(_, s, n)| s == "running" && n.as_deref().is_some_and(|n| on.contains(&n)));
            let per_node: Vec<usize> =
                on.iter().map(|n| rules.iter().filter(|r| r.2.as_deref() == Some(n)).count()).collect();
            // Balance is asked of enough rules for hashing to spread them.
            let balanced = count < 10 * on.len() || per_node.iter().all(|n| *n >= count / on.len() / 2);
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
    pub fn check_outputs(&self, rules: &[String], lines: u64, within: Duration) {
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
pub struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(path: &Path, per_tick: u64) -> Writer {
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

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Stops writing; returns how many lines were written.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.written()
    }
}

impl Drop for Writer {
    /// A test that fails before `finish` stops the writing thread too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn wait_written(w: &Writer, lines: u64) {
    while w.written() < lines {
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn signal(d: &Daemon, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &d.child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}
