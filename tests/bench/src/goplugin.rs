//! The hashicorp/go-plugin baseline of scenarios a, b, e and f: `echo-host` (a
//! go-plugin host) starts `echo-plugin` (a go-plugin gRPC plugin) and measures
//! one unary gRPC `Echo` call per batch, as go-plugin users write them, the
//! plugin's start and its memory. Both
//! are built from `tests/bench/goplugin` into `$OORT_BIN/goplugin/` by
//! `scripts/bench.sh`; each measurement is one run of `echo-host`, whose JSON
//! line is parsed here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value as Json;

/// The column header of the baseline.
pub const NAME: &str = "go-plugin (gRPC)";

/// `echo-host`, or why the baseline is not measured.
pub fn host() -> Result<PathBuf, String> {
    let dir = crate::startup::external_bin().join("goplugin");
    for exe in ["echo-host", "echo-plugin"] {
        if !dir.join(exe).exists() {
            return Err(format!(
                "{} is missing (scripts/bench.sh builds it from tests/bench/goplugin with Go)",
                dir.join(exe).display()
            ));
        }
    }
    Ok(dir.join("echo-host"))
}

/// Runs `echo-host` (through `launcher`, e.g. `taskset -c 0`, when given)
/// with `args` and returns its JSON line.
fn run(host: &Path, launcher: &[&str], args: &[String]) -> Result<Json> {
    let mut cmd = match launcher.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(host);
            c
        }
        None => Command::new(host),
    };
    let out = cmd.args(args).stdin(Stdio::null()).stderr(Stdio::inherit()).output().context("run echo-host")?;
    if !out.status.success() {
        bail!("echo-host {} failed ({})", args.join(" "), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("no JSON line from echo-host")?;
    Ok(serde_json::from_str(line)?)
}

fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Rows per second of `batch`-row calls (`payload`: `int` or `string100`) for `dur`, after `warm`.
pub fn throughput(host: &Path, batch: usize, payload: &str, dur: Duration, warm: Duration) -> Result<f64> {
    let args = [
        "-mode".into(),
        "throughput".into(),
        "-batch".into(),
        batch.to_string(),
        "-payload".into(),
        payload.into(),
        "-duration".into(),
        go_duration(dur),
        "-warmup".into(),
        go_duration(warm),
    ];
    run(host, &[], &args)?["rows_per_s"].as_f64().context("rows_per_s")
}

/// `{"p50_us", "p99_us"}` of `n` one-row calls, the host (and the plugin it starts) under `launcher`.
pub fn latency(host: &Path, launcher: &[&str], n: usize, warm: Duration) -> Result<Json> {
    let args = ["-mode".into(), "latency".into(), "-n".into(), n.to_string(), "-warmup".into(), go_duration(warm)];
    run(host, launcher, &args)
}

/// `{"runs_ms": [..], "plugin_rss_kb"}`: `n` timed starts of the plugin (one
/// untimed first), each up to its first answered call, and the RSS of the last
/// plugin process.
pub fn startup(host: &Path, n: usize) -> Result<Json> {
    run(host, &[], &["-mode".into(), "startup".into(), "-n".into(), n.to_string()])
}
