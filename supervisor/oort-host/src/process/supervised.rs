//! A plugin process kept alive: restarted after a crash with eKuiper's
//! `restartStrategy`, reported as a crash loop when it keeps failing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oort_proto::plugin::v1 as pb;
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tonic::transport::Channel;

use super::{start, stop, LaunchSpec, ProcessError, RestartStrategy, RuntimeDir, StderrTail, Timeouts};

/// The observable state of a supervised process.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ProcessStatus {
    Starting,
    Running { pid: u32 },
    Restarting { attempt: u32, reason: String },
    Failed { reason: String },
    Stopped,
}

/// What the process module needs from its owner, without knowing what it is.
#[tonic::async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// A fresh secret token for the next process, already registered with the
    /// State service.
    fn issue_token(&self) -> String;
    /// The process that held `token` is gone.
    fn revoke_token(&self, token: &str);
    /// Runs after every successful handshake, before the process is published:
    /// re-opens the instances a restarted process must serve again.
    async fn started(&self, live: &Live) -> Result<(), String>;
    /// The process ended unexpectedly (a crash, a limit); it may be restarted.
    fn crashed(&self) {}
}

/// A handshaken process that callers may use.
#[derive(Clone)]
pub struct Live {
    pub pid: u32,
    /// Bumped on every (re)start: calls made on an older generation failed with it.
    pub generation: u64,
    pub channel: Channel,
    pub describe: Arc<pb::DescribeResponse>,
    pub token: String,
    /// The socket of the framed Exec path, when the process serves it.
    pub framed: Option<Arc<std::path::Path>>,
}

#[derive(Clone)]
struct Published {
    status: ProcessStatus,
    /// Shared, not cloned per call: a call takes the running process as it
    /// begins (its channel, token and sockets) for the price of a counter.
    live: Option<Arc<Live>>,
}

/// What the monitor shares with the handle besides the published status.
#[derive(Default)]
struct Shared {
    /// The current process's watch entry, for its resource use.
    watched: Option<Arc<super::watchdog::Watched>>,
    /// Why the process last ended unexpectedly.
    last_failure: Option<String>,
    /// When it last ended unexpectedly.
    last_failure_at: Option<tokio::time::Instant>,
}

/// One plugin process and the task that keeps it alive.
pub struct Supervised {
    spec: LaunchSpec,
    published: watch::Receiver<Published>,
    restarts: Arc<AtomicU32>,
    stop: Arc<Notify>,
    done: watch::Receiver<bool>,
    tail: StderrTail,
    shared: Arc<Mutex<Shared>>,
}

impl Supervised {
    /// Starts the process and waits for its first handshake. A first start that
    /// fails is reported as an error rather than retried: a plugin that cannot
    /// start at all is a configuration problem, not a crash.
    pub async fn start(
        spec: LaunchSpec,
        runtime: Arc<RuntimeDir>,
        timeouts: Timeouts,
        strategy: RestartStrategy,
        hooks: Arc<dyn Hooks>,
    ) -> Result<Supervised, ProcessError> {
        let tail = StderrTail::default();
        let token = hooks.issue_token();
        let running = match start(&spec, &runtime, token.clone(), timeouts, &tail).await {
            Ok(r) => r,
            Err(e) => {
                hooks.revoke_token(&token);
                return Err(e);
            }
        };
        let live = Live {
            pid: running.pid,
            generation: 1,
            channel: running.channel.clone(),
            describe: Arc::new(running.describe.clone()),
            token: running.token.clone(),
            framed: running.framed_socket(),
        };
        if let Err(reason) = hooks.started(&live).await {
            hooks.revoke_token(&token);
            stop(running, timeouts.stop_grace).await;
            return Err(ProcessError::Mismatch { path: spec.path.clone(), reason });
        }
        let (tx, rx) =
            watch::channel(Published { status: ProcessStatus::Running { pid: live.pid }, live: Some(Arc::new(live)) });
        let (done_tx, done_rx) = watch::channel(false);
        let stop_signal = Arc::new(Notify::new());
        let restarts = Arc::new(AtomicU32::new(0));
        let shared = Arc::new(Mutex::new(Shared {
            watched: Some(running.watched.clone()),
            last_failure: None,
            last_failure_at: None,
        }));
        let monitor = Monitor {
            shared: shared.clone(),
            spec: spec.clone(),
            runtime,
            timeouts,
            strategy,
            hooks,
            tx,
            restarts: restarts.clone(),
            stop: stop_signal.clone(),
            tail: tail.clone(),
        };
        tokio::spawn(async move {
            monitor.run(running).await;
            let _ = done_tx.send(true);
        });
        Ok(Supervised { spec, published: rx, restarts, stop: stop_signal, done: done_rx, tail, shared })
    }

    /// The process to call now. Waits while it is (re)starting; fails when it is
    /// stopped or gave up after a crash loop.
    pub async fn live(&self) -> Result<Arc<Live>, ProcessError> {
        let mut rx = self.published.clone();
        loop {
            {
                let p = rx.borrow_and_update();
                match (&p.status, &p.live) {
                    (ProcessStatus::Running { .. }, Some(live)) => return Ok(live.clone()),
                    (ProcessStatus::Failed { reason }, _) => {
                        return Err(ProcessError::CrashLoop {
                            name: self.spec.name.clone(),
                            crashes: self.restarts(),
                            last: reason.clone(),
                            stderr: self.tail.lines(),
                        })
                    }
                    (ProcessStatus::Stopped, _) => return Err(ProcessError::Stopped { name: self.spec.name.clone() }),
                    _ => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(ProcessError::Stopped { name: self.spec.name.clone() });
            }
        }
    }

    /// The current status.
    pub fn status(&self) -> ProcessStatus {
        self.published.borrow().status.clone()
    }

    /// The pid of the running process, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.published.borrow().live.as_ref().map(|l| l.pid)
    }

    /// The running process, without waiting for a restart to finish.
    pub fn current(&self) -> Option<Arc<Live>> {
        self.published.borrow().live.clone()
    }

    /// How many times the process has been restarted after a crash.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// The resource use of the current process tree at the watchdog's last
    /// sample.
    pub fn usage(&self) -> Option<super::Usage> {
        lock(&self.shared).watched.as_ref().map(|w| w.usage())
    }

    /// Why the process last ended unexpectedly (a crash, a limit), if it ever did.
    pub fn last_failure(&self) -> Option<String> {
        lock(&self.shared).last_failure.clone()
    }

    /// Why the process ended unexpectedly, if it did at or after `since`:
    /// a call that failed on a dying process can name the cause, even when
    /// the process died just before the call began.
    pub fn failure_since(&self, since: tokio::time::Instant) -> Option<String> {
        let shared = lock(&self.shared);
        shared.last_failure_at.filter(|at| *at >= since).and(shared.last_failure.clone())
    }

    /// Why the process ended unexpectedly at or after `since`, waiting up to
    /// `wait` for its monitor to notice (it publishes a new status when it
    /// does, so this wakes on that change rather than polling). `Err` when the
    /// process gave up (a crash loop): that is the better
    /// explanation of a failed call. `Ok(None)` when it did not end.
    pub async fn ended_since(
        &self,
        since: tokio::time::Instant,
        wait: Duration,
    ) -> Result<Option<String>, ProcessError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.published.clone();
        loop {
            let gave_up = matches!(rx.borrow_and_update().status, ProcessStatus::Failed { .. });
            if gave_up {
                self.live().await?;
            }
            if let Some(failure) = self.failure_since(since) {
                return Ok(Some(failure));
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(self.failure_since(since)),
            }
        }
    }

    /// What it was started as.
    pub fn spec(&self) -> &LaunchSpec {
        &self.spec
    }

    /// Kills the running process and its group at once, so that nothing it is
    /// still doing lands after this: its monitor then restarts it as after a
    /// crash, reopening every instance with its state. For work that could not
    /// be ended any other way, e.g. a sink write still running after its
    /// instance failed to close in time.
    pub fn fence(&self, why: &str) {
        if let Some(pid) = self.pid() {
            tracing::warn!(plugin = %self.spec.name, pid, "killing the plugin process: {why}");
            let _ = super::sys::signal_group(pid, libc::SIGKILL);
        }
    }

    /// Stops the process (Shutdown RPC, SIGTERM, SIGKILL) and waits until it is
    /// reaped and its socket removed.
    pub async fn stop(&self) {
        self.stop.notify_one();
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a process ended: the limit that ended it, else its exit status.
fn exit_reason(spec: &LaunchSpec, running: &super::Running, exit: std::io::Result<std::process::ExitStatus>) -> String {
    if let Some(limit) = running.limit_reason(&spec.name, &spec.limits, exit.as_ref().ok().copied()) {
        return limit;
    }
    match exit {
        Ok(status) => format!("exited unexpectedly ({status})"),
        Err(e) => format!("could not be waited on: {e}"),
    }
}

struct Monitor {
    shared: Arc<Mutex<Shared>>,
    spec: LaunchSpec,
    runtime: Arc<RuntimeDir>,
    timeouts: Timeouts,
    strategy: RestartStrategy,
    hooks: Arc<dyn Hooks>,
    tx: watch::Sender<Published>,
    restarts: Arc<AtomicU32>,
    stop: Arc<Notify>,
    tail: StderrTail,
}

/// A process that stays up this long has recovered: its failure count resets.
const STABLE_AFTER: Duration = Duration::from_secs(5);

impl Monitor {
    async fn run(self, first: super::Running) {
        let mut running = first;
        let mut generation = 1u64;
        let mut failures = 0u32;
        loop {
            let started_at = tokio::time::Instant::now();
            let exit = tokio::select! {
                status = running.child.wait() => status,
                _ = self.stop.notified() => {
                    self.publish(ProcessStatus::Stopped, None);
                    let token = running.token.clone();
                    stop(running, self.timeouts.stop_grace).await;
                    self.hooks.revoke_token(&token);
                    return;
                }
            };
            // The process is gone: withdraw it, kill what it left in its group,
            // remove its socket, and restart per the strategy.
            let reason = exit_reason(&self.spec, &running, exit);
            {
                let mut shared = lock(&self.shared);
                shared.last_failure = Some(reason.clone());
                shared.last_failure_at = Some(tokio::time::Instant::now());
            }
            self.hooks.revoke_token(&running.token);
            self.hooks.crashed();
            drop(running);
            tracing::warn!(plugin = %self.spec.name, rule = ?self.spec.rule, "plugin process {reason}");
            if started_at.elapsed() >= STABLE_AFTER {
                failures = 0;
            }
            let mut last = reason;
            running = loop {
                if failures >= self.strategy.attempts {
                    let reason = format!("{last}; gave up after {failures} restart attempts");
                    tracing::error!(plugin = %self.spec.name, "plugin crash loop: {reason}; stderr: {:?}", self.tail.lines());
                    self.publish(ProcessStatus::Failed { reason }, None);
                    // Stay around so that stop() still completes.
                    self.stop.notified().await;
                    self.publish(ProcessStatus::Stopped, None);
                    return;
                }
                self.publish(ProcessStatus::Restarting { attempt: failures + 1, reason: last.clone() }, None);
                let delay = self.strategy.delay_for(failures);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.stop.notified() => {
                        self.publish(ProcessStatus::Stopped, None);
                        return;
                    }
                }
                failures += 1;
                self.restarts.fetch_add(1, Ordering::SeqCst);
                match self.restart(generation + 1).await {
                    Ok(r) => break r,
                    Err(e) => last = e,
                }
            };
            generation += 1;
        }
    }

    async fn restart(&self, generation: u64) -> Result<super::Running, String> {
        let token = self.hooks.issue_token();
        let running = match start(&self.spec, &self.runtime, token.clone(), self.timeouts, &self.tail).await {
            Ok(r) => r,
            Err(e) => {
                self.hooks.revoke_token(&token);
                return Err(e.to_string());
            }
        };
        let live = Live {
            pid: running.pid,
            generation,
            channel: running.channel.clone(),
            describe: Arc::new(running.describe.clone()),
            token,
            framed: running.framed_socket(),
        };
        if let Err(e) = self.hooks.started(&live).await {
            self.hooks.revoke_token(&live.token);
            stop(running, self.timeouts.stop_grace).await;
            return Err(format!("restarted process could not reopen its instances: {e}"));
        }
        tracing::info!(plugin = %self.spec.name, pid = live.pid, generation, "plugin process restarted");
        lock(&self.shared).watched = Some(running.watched.clone());
        self.publish(ProcessStatus::Running { pid: live.pid }, Some(live));
        Ok(running)
    }

    fn publish(&self, status: ProcessStatus, live: Option<Live>) {
        let _ = self.tx.send(Published { status, live: live.map(Arc::new) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_multiplier_up_to_the_cap() {
        let s = RestartStrategy { attempts: 5, delay: 100, multiplier: 2.0, max_delay: 500, jitter_factor: 0.0 };
        let got: Vec<u64> = (0..5).map(|n| s.delay_for(n).as_millis() as u64).collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500]);
    }

    #[test]
    fn jitter_stays_within_its_factor() {
        let s = RestartStrategy { attempts: 1, delay: 1000, multiplier: 1.0, max_delay: 1000, jitter_factor: 0.1 };
        for _ in 0..200 {
            let d = s.delay_for(0).as_millis();
            assert!((900..=1100).contains(&d), "{d}");
        }
    }

    #[test]
    fn ekuiper_json_shape_parses() {
        let s: RestartStrategy =
            serde_json::from_str(r#"{"attempts":3,"delay":50,"multiplier":1.5,"maxDelay":1000,"jitterFactor":0.2}"#)
                .unwrap();
        assert_eq!(s, RestartStrategy { attempts: 3, delay: 50, multiplier: 1.5, max_delay: 1000, jitter_factor: 0.2 });
        let d: RestartStrategy = serde_json::from_str("{}").unwrap();
        assert_eq!(d, RestartStrategy::default());
    }
}
