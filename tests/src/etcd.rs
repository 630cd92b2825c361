//! A real etcd for one test: Debian's `etcd-server` (scripts/setup.sh
//! installs it), with its own loopback ports and data folders, never the
//! system service; every member stopped on drop. One member, or a cluster of
//! several on ports the test chose.

use crate::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One etcd member.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running etcd cluster on loopback ports.
pub struct Etcd {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}

fn etcd_binary() -> PathBuf {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

impl Etcd {
    /// Starts a one-member etcd.
    pub fn start() -> Etcd {
        Etcd::start_cluster(1)
    }

    /// Starts an etcd cluster of `size` members and waits until it has a
    /// leader.
    pub fn start_cluster(size: usize) -> Etcd {
        let members = (0..size)
            .map(|i| Member { name: format!("m{i}"), client_port: free_port(), peer_port: free_port(), child: None })
            .collect();
        let mut etcd = Etcd { members, dir: tempfile::tempdir().expect("tempdir") };
        for i in 0..size {
            etcd.spawn_member(i, "new");
        }
        etcd.wait_healthy();
        etcd
    }

    /// The client URLs of every member, comma-separated: `oort serve
    /// --cluster`'s argument.
    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect::<Vec<_>>().join(",")
    }

    /// Kills every member (SIGKILL, as a crash would) and waits for them.
    pub fn kill(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }

    /// Starts every stopped member again on its ports and data, and waits
    /// for a leader.
    pub fn restart(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn_member(i, "existing");
            }
        }
        self.wait_healthy();
    }

    /// Kills one member.
    pub fn kill_member(&mut self, i: usize) {
        self.stop_member(i);
    }

    fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn_member(&mut self, i: usize, state: &str) {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .expect("etcd log");
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(etcd_binary())
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", "oort-test"])
            // Short elections: a test waits for a leader after every restart.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (scripts/setup.sh installs etcd-server)");
        self.members[i].child = Some(child);
    }

    /// Waits (up to 20 s) until every running member reports itself healthy,
    /// which it does only once the cluster has a leader.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let addr = format!("127.0.0.1:{}", m.client_port);
            loop {
                let healthy = crate::http(&addr, "GET", "/health", None, None)
                    .is_some_and(|(status, body)| status == 200 && body.contains("true"));
                if healthy {
                    break;
                }
                assert!(Instant::now() < deadline, "etcd member {} is not healthy: {}", m.name, self.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Every member's log, for a failed assertion's message.
    pub fn log(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name))).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!("--- {} ---\n{}", m.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
