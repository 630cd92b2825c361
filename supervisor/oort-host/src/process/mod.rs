//! Plugin processes: spawn, handshake, health, logs, restart and stop.
//!
//! Architecture invariant: this is the only module that spawns, signals or
//! waits on a child process. Everything else holds a [`Supervised`] handle and
//! talks gRPC over the channel it hands out.
//!
//! A plugin process lives in its own process group, dies with the supervisor
//! (parent-death signal), listens on a socket inside the supervisor's private
//! runtime directory, and has its socket removed when it is reaped. Its whole
//! tree (its group, and every descendant, also those that left the group with
//! `setsid`) is watched against its [`Limits`] and killed on every stop.

// The one module allowed to spawn and signal processes (supervisor/clippy.toml
// forbids it elsewhere).
#![allow(clippy::disallowed_methods)]

mod cgroup;
mod guard;
mod log_line;
mod runtime_dir;
mod spawner;
mod supervised;
mod sys;
mod tree;
mod watchdog;

use std::collections::VecDeque;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use oort_proto::plugin::v1 as pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::{Channel, Endpoint};
use tracing::field::display;

pub use guard::{install_daemon_guard, reaper_main, REAPER_COMMAND};
pub use oort_core::{format_bytes, parse_bytes, Limits, RestartStrategy};
pub use runtime_dir::RuntimeDir;
pub use supervised::{Hooks, Live, ProcessStatus, Supervised};
pub use watchdog::{ProcessUsage, Usage};

/// How many of a plugin's last stderr lines are kept for crash reports.
const STDERR_TAIL: usize = 20;

/// Everything needed to start one plugin process.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The executable, or the script `interpreter` runs.
    pub path: PathBuf,
    /// The program that runs `path`, for a script (a portable Python plugin).
    pub interpreter: Option<PathBuf>,
    /// The working directory, when not the supervisor's (a portable package's folder).
    pub workdir: Option<PathBuf>,
    /// The plugin name the catalog expects `Describe` to report.
    pub name: String,
    /// The version from the file name, for log tags.
    pub version: String,
    /// The kind the catalog found it under; `Describe` must export it.
    pub kind: pb::Kind,
    /// The rule it is started for, or `None` for a shared process (log tag).
    pub rule: Option<String>,
    /// Resource limits of the process and its descendants, already resolved
    /// (see [`Limits::resolve`]).
    pub limits: Limits,
}

/// Timeouts of the process lifecycle.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From spawn to health SERVING plus a successful Describe.
    pub start: Duration,
    /// Every single call on a plugin, including one batch round trip.
    pub call: Duration,
    /// From the Shutdown RPC to SIGTERM, and from SIGTERM to SIGKILL.
    pub stop_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { start: Duration::from_secs(10), call: Duration::from_secs(5), stop_grace: Duration::from_secs(2) }
    }
}

/// Why a plugin process could not be started or used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start plugin {name} ({path}): {reason}")]
    Spawn { name: String, path: PathBuf, reason: String },
    #[error("plugin {name} exited during its handshake ({status}){}", tail_suffix(.stderr))]
    ExitedAtStart { name: String, status: String, stderr: Vec<String> },
    #[error("plugin {name} did not become ready within {timeout:?}{}", tail_suffix(.stderr))]
    StartTimeout { name: String, timeout: Duration, stderr: Vec<String> },
    #[error("plugin file {path} is not the plugin it claims: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("plugin {name} is in a crash loop: it exited {crashes} times; last error: {last}{}", tail_suffix(.stderr))]
    CrashLoop { name: String, crashes: u32, last: String, stderr: Vec<String> },
    #[error("plugin {name} is stopped")]
    Stopped { name: String },
    #[error("plugin {name} restarted while the call was in flight")]
    Restarted { name: String },
}

fn tail_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; last stderr lines: {}", lines.join(" | "))
    }
}

/// A started, handshaken plugin process. Dropping it kills its whole tree.
pub(crate) struct Running {
    pub(crate) pid: u32,
    pub(crate) channel: Channel,
    pub(crate) describe: pb::DescribeResponse,
    pub(crate) token: String,
    socket: PathBuf,
    child: tokio::process::Child,
    pub(crate) watched: Arc<watchdog::Watched>,
    /// Set once `stop` has killed the tree, so that drop need not again.
    tree_killed: bool,
    /// Its own cgroup, with cgroup v2 (killed and removed on drop).
    cgroup: Option<cgroup::PluginCgroup>,
}

impl Running {
    /// Why the process ended, when a limit ended it: the watchdog's finding,
    /// the kernel's OOM killer in its cgroup, or SIGXCPU.
    pub(crate) fn limit_reason(
        &self,
        name: &str,
        limits: &Limits,
        status: Option<std::process::ExitStatus>,
    ) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        if let Some(v) = self.watched.violation() {
            return Some(v);
        }
        let pid = self.pid;
        if let (Some(cg), Some(max)) = (&self.cgroup, limits.memory) {
            if cg.oom_kills() > 0 {
                return Some(format!(
                    "plugin {name} (pid {pid}) exceeded its memory limit of {} (killed by the kernel in its cgroup)",
                    format_bytes(max)
                ));
            }
        }
        if status.and_then(|s| s.signal()) == Some(libc::SIGXCPU) {
            return Some(format!(
                "plugin {name} (pid {pid}) exceeded its CPU limit of {} s",
                limits.cpu_seconds.unwrap_or_default()
            ));
        }
        None
    }

    /// The socket of the framed Exec path, when the plugin said in `Describe`
    /// that it serves one.
    pub(crate) fn framed_socket(&self) -> Option<Arc<Path>> {
        self.describe.framed_exec.then(|| Arc::from(framed_socket(&self.socket)))
    }
}

/// Where a plugin listening on `socket` is asked to serve the framed Exec
/// path: beside it, in the same private runtime directory.
fn framed_socket(socket: &Path) -> PathBuf {
    socket.with_extension("frames")
}

impl Drop for Running {
    fn drop(&mut self) {
        // Last line of defence: never leave a process, a descendant of it, or
        // a socket behind.
        let _ = sys::signal_group(self.pid, libc::SIGKILL);
        if !self.tree_killed {
            self.watched.kill_tree();
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(framed_socket(&self.socket));
    }
}

/// The resource limits of a spec, as rlimits set before `exec`. Memory and
/// processes are enforced on the whole tree by the watchdog; the data limit is
/// a per-process backstop against a burst between two samples, set well above
/// the memory limit because it counts reserved (not yet resident) memory such
/// as thread stacks. No RLIMIT_NPROC: it counts every process of the *user*,
/// not of the plugin, so it would fail a plugin's forks because of unrelated
/// processes (and root ignores it).
fn rlimits(limits: &Limits) -> Vec<sys::Rlimit> {
    let mut out = Vec::new();
    if let Some(m) = limits.memory {
        out.push(sys::Rlimit::Data(m.saturating_mul(2).max(m.saturating_add(512 << 20))));
    }
    if let Some(c) = limits.cpu_seconds {
        out.push(sys::Rlimit::Cpu(c.max(1)));
    }
    if let Some(f) = limits.open_files {
        out.push(sys::Rlimit::OpenFiles(f.clamp(16, sys::open_files_hard_limit().max(16))));
    }
    out
}

/// Recent stderr lines of one plugin, shared with its log forwarder.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == STDERR_TAIL {
            q.pop_front();
        }
        q.push_back(line);
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// Starts one process and completes the handshake: health SERVING, then a
/// Describe that matches the spec.
pub(crate) async fn start(
    spec: &LaunchSpec,
    runtime: &RuntimeDir,
    token: String,
    timeouts: Timeouts,
    tail: &StderrTail,
) -> Result<Running, ProcessError> {
    let socket = runtime.new_socket_path();
    let mut cmd = match &spec.interpreter {
        Some(interpreter) => {
            let mut cmd = std::process::Command::new(interpreter);
            cmd.arg(&spec.path);
            cmd
        }
        None => std::process::Command::new(&spec.path),
    };
    if let Some(dir) = &spec.workdir {
        cmd.current_dir(dir);
    }
    cmd.env("OORT_PLUGIN_SOCKET", &socket)
        .env("OORT_FRAMED_SOCKET", framed_socket(&socket))
        .env("OORT_PROTOCOL_VERSIONS", oort_proto::PROTOCOL_VERSION.to_string())
        .env("OORT_STATE_SOCKET", runtime.state_socket())
        .env("OORT_STATE_TOKEN", &token)
        .env("OORT_PLUGIN_NAME", &spec.name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let cgroup = match cgroup::active().map(|c| c.create(&spec.limits)).transpose() {
        Ok(c) => c,
        Err(e) => {
            return Err(ProcessError::Spawn {
                name: spec.name.clone(),
                path: spec.path.clone(),
                reason: format!("cannot create its cgroup: {e}"),
            })
        }
    };
    let cgroup_procs =
        cgroup.as_ref().and_then(|c| std::ffi::CString::new(c.procs_file().into_os_string().into_vec()).ok());
    let setup = sys::ChildSetup { rlimits: rlimits(&spec.limits), cgroup_procs };
    let mut child = spawner::spawn(cmd, setup).await.map_err(|e| ProcessError::Spawn {
        name: spec.name.clone(),
        path: spec.path.clone(),
        reason: e.to_string(),
    })?;
    let pid = child.id().unwrap_or_default();
    let watched = watchdog::watch(pid, &spec.name, spec.limits);
    forward_logs(&mut child, spec, pid, tail.clone());

    let mut running = Running {
        pid,
        channel: Endpoint::from_static("http://plugin").connect_lazy(),
        describe: pb::DescribeResponse::default(),
        token,
        socket,
        child,
        watched,
        tree_killed: false,
        cgroup,
    };
    let handshake = handshake(spec, &mut running, timeouts);
    match tokio::time::timeout(timeouts.start, handshake).await {
        Ok(Ok(())) => Ok(running),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            Err(ProcessError::StartTimeout { name: spec.name.clone(), timeout: timeouts.start, stderr: tail.lines() })
        }
    }
    .map_err(|e| match e {
        // Give the log forwarder a moment so the report carries the plugin's last words.
        ProcessError::ExitedAtStart { name, status, .. } => {
            ProcessError::ExitedAtStart { name, status, stderr: tail.lines() }
        }
        other => other,
    })
}

async fn handshake(spec: &LaunchSpec, running: &mut Running, timeouts: Timeouts) -> Result<(), ProcessError> {
    // Poll for readiness: a connection to the socket, then health SERVING. The
    // back-off starts at 1 ms so that a fast plugin is ready in a few ms.
    let mut wait = Duration::from_millis(1);
    let channel = loop {
        if let Some(status) = running.child.try_wait().ok().flatten() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Err(ProcessError::ExitedAtStart {
                name: spec.name.clone(),
                status: status.to_string(),
                stderr: vec![],
            });
        }
        if running.socket.exists() {
            if let Ok(channel) = connect_unix(&running.socket).await {
                if health(&channel, timeouts.call).await == Some(true) {
                    break channel;
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
    };
    let mut client = pb::plugin_client::PluginClient::new(channel.clone());
    let describe = tokio::time::timeout(timeouts.call, client.describe(pb::DescribeRequest {}))
        .await
        .map_err(|_| ProcessError::Mismatch { path: spec.path.clone(), reason: "Describe timed out".into() })?
        .map_err(|s| ProcessError::Mismatch {
            path: spec.path.clone(),
            reason: format!("Describe failed: {}", s.message()),
        })?
        .into_inner();
    check_describe(spec, &describe)?;
    running.channel = channel;
    running.describe = describe;
    Ok(())
}

/// Refuses a plugin whose name, kinds or protocol version do not match what
/// the catalog expects.
fn check_describe(spec: &LaunchSpec, d: &pb::DescribeResponse) -> Result<(), ProcessError> {
    let mismatch = |reason: String| ProcessError::Mismatch { path: spec.path.clone(), reason };
    if d.protocol_version != oort_proto::PROTOCOL_VERSION {
        return Err(mismatch(format!(
            "it speaks protocol version {}, the supervisor speaks {}",
            d.protocol_version,
            oort_proto::PROTOCOL_VERSION
        )));
    }
    if !same_plugin_name(&d.name, &spec.name) {
        return Err(mismatch(format!("it describes itself as {:?}, the file is named {:?}", d.name, spec.name)));
    }
    if !d.symbols.iter().any(|s| s.kind == spec.kind as i32) {
        return Err(mismatch(format!("it exports no {} symbol", spec.kind.as_str_name())));
    }
    Ok(())
}

/// eKuiper lets the first letter of a plugin's file name be either case.
fn same_plugin_name(a: &str, b: &str) -> bool {
    oort_core::names::fold(a) == oort_core::names::fold(b)
}

/// Connects one HTTP/2 channel to a gRPC server on a Unix socket.
pub async fn connect_unix(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://plugin")
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
}

/// Logs one plugin line as one event of the supervisor's log, at its level.
macro_rules! plugin_event {
    ($level:expr, $($field:tt)*) => {
        match $level {
            log_line::Level::Error => tracing::error!(target: "oort::plugin", $($field)*),
            log_line::Level::Warn => tracing::warn!(target: "oort::plugin", $($field)*),
            log_line::Level::Info => tracing::info!(target: "oort::plugin", $($field)*),
            log_line::Level::Debug => tracing::debug!(target: "oort::plugin", $($field)*),
            log_line::Level::Trace => tracing::trace!(target: "oort::plugin", $($field)*),
        }
    };
}

/// Forwards every stdout/stderr line of the plugin as one tracing event,
/// tagged with plugin, rule (absent for a shared process), pid and, when the
/// file name has one, version. A line in the SDKs' format is logged at its own
/// level, without its own timestamp and level (see `log_line`).
fn forward_logs(child: &mut tokio::process::Child, spec: &LaunchSpec, pid: u32, tail: StderrTail) {
    let tags = Arc::new((spec.name.clone(), spec.version.clone(), spec.rule.clone()));
    if let Some(out) = child.stdout.take() {
        let tags = tags.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(out);
            let mut raw = Vec::new();
            while reader.read_until(b'\n', &mut raw).await.is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&raw).trim_end_matches(['\n', '\r']).to_string();
                raw.clear();
                let (plugin, version, rule) = &*tags;
                let (rule, version) = (rule.as_deref().map(display), Some(version.as_str()).filter(|v| !v.is_empty()));
                let version = version.map(display);
                tracing::info!(target: "oort::plugin", plugin = %plugin, rule, pid, version, stream = "stdout", "{line}");
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(async move {
            let mut reader = BufReader::new(err);
            let mut raw = Vec::new();
            // Read bytes, not strings: a plugin may write anything, and one
            // invalid UTF-8 line must not end the forwarding.
            while reader.read_until(b'\n', &mut raw).await.is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&raw).trim_end_matches(['\n', '\r']).to_string();
                raw.clear();
                let (plugin, version, rule) = &*tags;
                let read = log_line::parse(&line, rule.as_deref());
                let message = read.message;
                let (rule, version) = (rule.as_deref().map(display), Some(version.as_str()).filter(|v| !v.is_empty()));
                let version = version.map(display);
                plugin_event!(read.level, plugin = %plugin, rule, pid, version, "{message}");
                tail.push(line);
            }
        });
    }
}

/// Stops a process: Shutdown RPC, then SIGTERM, then SIGKILL after the grace
/// period, each to the whole process group; then kills whatever is left of
/// its tree (children in its group that ignore SIGTERM, descendants that left
/// the group with `setsid`). Returns once it is reaped.
pub(crate) async fn stop(mut running: Running, grace: Duration) {
    // Read the tree while every parent link is intact: once the plugin exits,
    // its children are re-parented and no longer look like its own.
    let watched = running.watched.clone();
    let _ = tokio::task::spawn_blocking(move || watched.refresh()).await;
    let mut client = pb::plugin_client::PluginClient::new(running.channel.clone());
    let req = pb::ShutdownRequest { grace_ms: grace.as_millis() as u32 };
    let _ = tokio::time::timeout(grace, client.shutdown(req)).await;
    if tokio::time::timeout(grace, running.child.wait()).await.is_err() {
        let _ = sys::signal_group(running.pid, libc::SIGTERM);
        if tokio::time::timeout(grace, running.child.wait()).await.is_err() {
            let _ = sys::signal_group(running.pid, libc::SIGKILL);
            let _ = running.child.wait().await;
        }
    }
    // Children the plugin left in its cgroup, group or tree go too.
    if let Some(cg) = &running.cgroup {
        cg.kill();
    }
    let _ = sys::signal_group(running.pid, libc::SIGKILL);
    let watched = running.watched.clone();
    let _ = tokio::task::spawn_blocking(move || watched.kill_tree()).await;
    running.tree_killed = true;
    drop(running);
}

/// Asks a plugin's `grpc.health.v1` service for its overall status: `None`
/// when it does not answer within `timeout`, else whether it is SERVING. The
/// handshake waits for SERVING; a source's health probe only needs an answer.
pub async fn health(channel: &Channel, timeout: Duration) -> Option<bool> {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let response = tokio::time::timeout(timeout, client.check(request)).await.ok()?.ok()?;
    Some(response.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
}

/// Whether a pid is alive, for tests and status reports.
pub fn is_alive(pid: u32) -> bool {
    sys::process_exists(pid)
}
