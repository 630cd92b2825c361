//! The calls in flight on each instance, so that rule status can say which
//! instance is stuck, in which call and since when.

use super::*;

/// The calls in flight on one instance, so that a status can say which
/// instance is stuck, in which call, and since when.
#[derive(Default)]
pub struct CallWatch {
    pub(super) state: Mutex<CallWatchState>,
}

#[derive(Default)]
pub(super) struct CallWatchState {
    pub(super) next: u64,
    /// Calls in flight by ticket, oldest first. A vector that keeps its
    /// capacity: tracking a call allocates nothing, as it happens per batch.
    pub(super) open: Vec<(u64, &'static str, std::time::Instant)>,
    /// Timeouts since the oldest call in flight began.
    pub(super) timeouts: u32,
}

/// The oldest call in flight on an instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outstanding {
    pub call: &'static str,
    /// When it began, in ms since the epoch.
    pub since_ms: u64,
    /// How long it has been running.
    pub for_ms: u64,
    /// Attempts of it that timed out so far.
    pub timeouts: u32,
}

/// Ends the tracking of one call when dropped.
pub struct CallGuard<'a> {
    pub(super) watch: &'a CallWatch,
    pub(super) ticket: u64,
    /// When the call began.
    pub(super) started: std::time::Instant,
}

impl CallWatch {
    /// Tracks one call until the guard is dropped.
    pub fn begin(&self, call: &'static str) -> CallGuard<'_> {
        let mut s = lock(&self.state);
        let ticket = s.next;
        s.next += 1;
        let started = std::time::Instant::now();
        s.open.push((ticket, call, started));
        CallGuard { watch: self, ticket, started }
    }

    /// Counts a timed-out attempt; returns how many there were since the
    /// oldest call in flight began.
    pub(super) fn timed_out(&self) -> u32 {
        let mut s = lock(&self.state);
        s.timeouts += 1;
        s.timeouts
    }

    /// The oldest call in flight, if any.
    pub fn oldest(&self) -> Option<Outstanding> {
        let s = lock(&self.state);
        let (_, call, started) = s.open.first()?;
        let running = started.elapsed();
        let since = std::time::SystemTime::now().checked_sub(running).unwrap_or(std::time::UNIX_EPOCH);
        Some(Outstanding {
            call,
            since_ms: since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            for_ms: running.as_millis() as u64,
            timeouts: s.timeouts,
        })
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.watch.state);
        if let Some(at) = s.open.iter().position(|(ticket, ..)| *ticket == self.ticket) {
            s.open.remove(at);
        }
        if s.open.is_empty() {
            s.timeouts = 0;
        }
    }
}

/// Logs a timed-out attempt: the first of a call at WARN, so an operator
/// learns of a hung plugin at once, not when the retries are exhausted.
pub(super) fn note_timeout(watch: &CallWatch, plugin: &str, instance: &str, error: &HostError, retries: &str) {
    let n = watch.timed_out();
    if n == 1 {
        tracing::warn!(
            plugin,
            instance,
            "{error}; the instance is reported as stuck in the rule status while it is retried ({retries})"
        );
    } else {
        tracing::debug!(plugin, instance, attempt = n, "{error}");
    }
}
