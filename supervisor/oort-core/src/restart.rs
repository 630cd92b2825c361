//! eKuiper's `restartStrategy` rule option: plain data here, applied by the
//! host's process supervisor.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// eKuiper's `restartStrategy`: how often and how fast to restart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RestartStrategy {
    /// Consecutive failed restarts before giving up (0: never restart).
    pub attempts: u32,
    /// First delay, in milliseconds.
    pub delay: u64,
    /// Factor applied to the delay after each failed attempt.
    pub multiplier: f64,
    /// Upper bound of the delay, in milliseconds.
    pub max_delay: u64,
    /// Random spread of each delay, as a fraction of it (0.1: ±10 %).
    pub jitter_factor: f64,
}

impl Default for RestartStrategy {
    /// Plugins restart quickly by default: a crash should cost milliseconds of
    /// processing, not eKuiper's one-second rule restart delay.
    fn default() -> Self {
        RestartStrategy { attempts: 10, delay: 100, multiplier: 2.0, max_delay: 30_000, jitter_factor: 0.1 }
    }
}

impl RestartStrategy {
    /// The delay before restart number `attempt` (0-based).
    pub fn delay_for(&self, attempt: u32) -> Duration {
        let base = self.delay as f64 * self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let capped = base.min(self.max_delay.max(self.delay) as f64);
        let jitter = self.jitter_factor.clamp(0.0, 1.0);
        let spread = if jitter > 0.0 { rand::rng().random_range(-jitter..=jitter) } else { 0.0 };
        Duration::from_millis((capped * (1.0 + spread)).max(0.0) as u64)
    }
}
