//! A real `oort serve` for tests, and a minimal HTTP/1.1 client for its REST API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::bin;
use crate::free_port;

/// A running `oort serve`, killed on drop. Its log goes to `log_path()`.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    pub runtime_root: tempfile::TempDir,
    _data: Option<tempfile::TempDir>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts a daemon on a fresh data folder.
    pub fn start(plugins: &Path, extra: &[&str]) -> Daemon {
        let data = tempfile::tempdir().expect("tempdir");
        let mut d = Daemon::start_in(plugins, data.path(), extra);
        d._data = Some(data);
        d
    }

    /// Starts a daemon on a fresh data folder through a wrapper command,
    /// e.g. `["prlimit", "--nofile=1024:"]`, which must exec its arguments.
    pub fn start_wrapped(wrapper: &[&str], plugins: &Path, extra: &[&str]) -> Daemon {
        let data = tempfile::tempdir().expect("tempdir");
        let mut d = Daemon::spawn(wrapper, plugins, data.path(), extra, &[]);
        d._data = Some(data);
        d
    }

    /// Starts a daemon on `data_dir`, which the caller keeps.
    pub fn start_in(plugins: &Path, data_dir: &Path, extra: &[&str]) -> Daemon {
        Daemon::spawn(&[], plugins, data_dir, extra, &[])
    }

    /// Starts a daemon on `data_dir` with extra environment variables.
    pub fn start_in_with_env(plugins: &Path, data_dir: &Path, extra: &[&str], env: &[(&str, String)]) -> Daemon {
        Daemon::spawn(&[], plugins, data_dir, extra, env)
    }

    fn spawn(wrapper: &[&str], plugins: &Path, data_dir: &Path, extra: &[&str], env: &[(&str, String)]) -> Daemon {
        let runtime_root = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(runtime_root.path().join("daemon.log")).expect("log file");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin("oort"));
                c
            }
            None => Command::new(bin("oort")),
        };
        let child = cmd
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .arg("--plugins-dir")
            .arg(plugins)
            .arg("--runtime-dir")
            .arg(runtime_root.path().join("rt"))
            .args(["--rest-addr", &addr])
            .args(extra)
            .env("OORT_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn oort");
        let d = Daemon { child, addr, data_dir: data_dir.to_path_buf(), runtime_root, _data: None };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(&d.addr, "GET", "/ping", None, None).map(|(s, _)| s) != Some(200) {
            assert!(Instant::now() < deadline, "the daemon did not answer /ping; log:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// Where the daemon's log goes.
    pub fn log_path(&self) -> PathBuf {
        self.runtime_root.path().join("daemon.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// One request; panics when the daemon does not answer.
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(&self.addr, method, path, None, body).unwrap_or_else(|| panic!("no answer to {method} {path}"))
    }

    /// A GET that must succeed with JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.http("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        json(&body)
    }

    /// Kills the daemon with SIGKILL, waits (up to 5 s) until the plugin
    /// processes of `rule` have died with it, and returns its log.
    pub fn crash(mut self, rule: &str) -> String {
        let pids = self.plugin_pids(rule);
        crate::kill9(self.child.id());
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|p| crate::alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.log()
    }

    /// The pids of the plugin processes serving `rule`, per its status
    /// (none while the rule or the daemon is between processes).
    pub fn plugin_pids(&self, rule: &str) -> Vec<u32> {
        let (status, body) = self.http("GET", &format!("/rules/{rule}/status"), None);
        if status != 200 {
            return Vec::new();
        }
        json(&body)["plugins"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["pid"].as_u64()).map(|p| p as u32).collect())
            .unwrap_or_default()
    }

    /// Waits until the JSON-lines file `path` holds at least `n` lines and
    /// returns them; on timeout (30 s) fails with `rule`'s status and the log.
    pub fn wait_lines(&self, rule: &str, path: &Path, n: usize) -> Vec<serde_json::Value> {
        self.wait_for_lines(rule, path, n, json_lines)
    }

    /// [`Daemon::wait_lines`] for a file of plain text lines.
    pub fn wait_text_lines(&self, rule: &str, path: &Path, n: usize) -> Vec<String> {
        self.wait_for_lines(rule, path, n, |p| {
            std::fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect()
        })
    }

    fn wait_for_lines<T>(&self, rule: &str, path: &Path, n: usize, read: impl Fn(&Path) -> Vec<T>) -> Vec<T> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = read(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} has {} of {n} lines; status: {}\nlog:\n{}",
                path.display(),
                got.len(),
                self.http("GET", &format!("/rules/{rule}/status"), None).1,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the `oort` CLI against this daemon: (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(bin("oort"))
            .args(args)
            .args(["--server", &format!("http://{}", self.addr)])
            .output()
            .expect("run oort");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        self.child.wait().expect("wait")
    }
}

/// The lines of a JSON-lines file (none when it does not exist yet).
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(json).collect()
}

/// One HTTP/1.1 request; `None` when nothing listens.
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Parses JSON or panics with the text.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}
