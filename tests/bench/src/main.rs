//! `oort-bench`: Oort's benchmark harness. Every scenario measures Oort next to
//! its baselines in the same run, prints one table and adds its numbers to a
//! JSON file. See BENCHMARKS.md for what each scenario measures and how.
//!
//! ```text
//! oort-bench [--quick] [--only <scenario>] [--out <file.json>]
//! ```
//!
//! Scenarios, in order: `function` (a), `latency` (b), `e2e` (c), `steady` (d),
//! `coldstart` (e), `memory` (f), `recovery` (g), `windows` (h); `--only` takes a
//! name or its letter.
//!
//! Layout: `function` (a, b), `rules` (c, d, g on the real daemon), `windows`
//! (h, on the real daemon), `startup` (e, f), `ipc` (the raw-socket echo
//! baseline), `goplugin` (the hashicorp/go-plugin baseline of a and b),
//! `report` (tables).
#![forbid(unsafe_code)]

mod cluster;
mod function;
mod goplugin;
mod ipc;
mod mqtt;
mod report;
mod rules;
mod scale;
mod startup;
mod windows;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use oort_host::process::Timeouts;
use oort_tests::PluginsDir;
use serde_json::{json, Value as Json};

/// Command-line options shared by every scenario.
pub struct Opts {
    pub quick: bool,
}

const SCENARIOS: [(&str, char, &str); 12] = [
    ("function", 'a', "function throughput"),
    ("latency", 'b', "single-row latency"),
    ("e2e", 'c', "end-to-end rule throughput"),
    ("steady", 'd', "latency at a steady rate"),
    ("coldstart", 'e', "plugin cold start"),
    ("memory", 'f', "memory"),
    ("recovery", 'g', "recovery after kill -9"),
    ("windows", 'h', "windows: throughput, memory, latency"),
    ("scale", 'i', "cost per rule as rules grow"),
    ("mqtt", 'j', "MQTT through a rule vs the broker alone"),
    ("upgrade", 'k', "plugin upgrade pause"),
    ("cluster", 'l', "what a cluster asks of etcd"),
];

const USAGE: &str = "usage: oort-bench [--quick] [--only <scenario>] [--out <file.json>]
scenarios: function (a), latency (b), e2e (c), steady (d), coldstart (e), memory (f), recovery (g),
           windows (h), scale (i), mqtt (j), upgrade (k), cluster (l)";

/// Generous timeouts: a benchmark on a loaded machine must not fail on a deadline.
pub fn bench_timeouts() -> Timeouts {
    Timeouts { start: Duration::from_secs(20), call: Duration::from_secs(30), stop_grace: Duration::from_secs(2) }
}

/// The RSS of a process in kB, from `/proc/<pid>/status`.
pub fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

/// RSS split into anonymous and file-backed pages, and the thread count, from `/proc/<pid>/status`.
pub fn mem_detail(pid: u32) -> Result<Json> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    Ok(json!({
        "rss_kb": field("VmRSS:"),
        "rss_anon_kb": field("RssAnon:"),
        "rss_file_kb": field("RssFile:"),
        "threads": field("Threads:"),
    }))
}

/// Context switches (voluntary and not) of every thread of a process so far.
pub fn ctx_switches(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else { continue };
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:") {
                total += line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    Ok(total)
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/<pid>/stat` (clock ticks of 10 ms).
pub fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields.get(11).context("utime")?.parse::<u64>()? + fields.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

/// A plugins folder holding a copy of each workspace binary, as (kind, name).
pub fn plugins_with(entries: &[(&str, &str)]) -> PluginsDir {
    let plugins = PluginsDir::new();
    for (kind, name) in entries {
        plugins.add(kind, name, name);
    }
    plugins
}

/// Copies a plugin built elsewhere (and its metadata file, if any) into a plugins folder.
pub fn add_external(plugins: &PluginsDir, kind: &str, exe: &Path) -> Result<()> {
    let name = exe.file_name().context("plugin file name")?;
    std::fs::copy(exe, plugins.path().join(kind).join(name))?;
    let meta = exe.with_extension("json");
    if let Some(meta_name) = meta.file_name().filter(|_| meta.exists()) {
        std::fs::copy(&meta, plugins.path().join(kind).join(meta_name))?;
    }
    Ok(())
}

/// `oort_tests` finds the workspace binaries next to the *parent* of the
/// running executable's folder (test executables live in `<target>/release/deps/`).
/// Run from `<target>/release/`, this executable re-executes itself from a
/// hard link (or copy) in `deps/`, so that everything it starts is found.
fn run_from_deps() -> Result<()> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable folder")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        return Ok(());
    }
    let deps = dir.join("deps");
    if !deps.is_dir() {
        bail!("{} has no deps/ folder: run oort-bench from its cargo target folder", dir.display());
    }
    let link = deps.join("oort-bench");
    let tmp = deps.join(format!(".oort-bench.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(&exe, &tmp).is_err() {
        std::fs::copy(&exe, &tmp).context("copy oort-bench into deps/")?;
    }
    std::fs::rename(&tmp, &link)?;
    let err = std::process::Command::new(&link).args(std::env::args_os().skip(1)).exec();
    Err(err).context("re-execute from deps/")
}

fn machine() -> Json {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut out = PathBuf::from("bench-results.json");
    let mut echo_server: Option<PathBuf> = None;
    let mut latency_child = false;
    let mut memory_child: Option<usize> = None;
    let text = |a: Option<OsString>, flag: &str| -> Result<String> {
        a.and_then(|s| s.into_string().ok()).with_context(|| format!("{flag} needs a value\n{USAGE}"))
    };
    while let Some(arg) = args.next() {
        match arg.to_str().unwrap_or("") {
            "--quick" => quick = true,
            "--only" => only = Some(text(args.next(), "--only")?),
            "--out" => out = PathBuf::from(text(args.next(), "--out")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            // Internal modes: children of a benchmark run.
            "--echo-server" => echo_server = Some(PathBuf::from(text(args.next(), "--echo-server")?)),
            "--latency-child" => latency_child = true,
            "--memory-child" => memory_child = Some(text(args.next(), "--memory-child")?.parse()?),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if let Some(socket) = echo_server {
        return ipc::serve(&socket);
    }
    run_from_deps()?;
    let opts = Opts { quick };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if latency_child {
        return rt.block_on(function::latency_child(&opts));
    }
    if let Some(n) = memory_child {
        return rt.block_on(startup::memory_child(n));
    }

    let selected: Vec<&str> = match &only {
        None => SCENARIOS.iter().map(|s| s.0).collect(),
        Some(o) => {
            let found = SCENARIOS.iter().find(|(name, letter, _)| o == name || o.len() == 1 && o.starts_with(*letter));
            match found {
                Some((name, _, _)) => vec![name],
                None => bail!("unknown scenario {o:?}\n{USAGE}"),
            }
        }
    };
    let machine = machine();
    println!(
        "# Oort benchmarks{}\n\nmachine: {} vCPUs, {}, kernel {}; load average at start: {}\n",
        if quick { " (--quick)" } else { "" },
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        load(),
    );
    let started = Instant::now();
    let mut results = serde_json::Map::new();
    for name in selected {
        let load_before = load();
        let t = Instant::now();
        let result = match name {
            "function" => rt.block_on(function::throughput(&opts)),
            "latency" => rt.block_on(function::latency(&opts)),
            "e2e" => rules::end_to_end(&opts),
            "steady" => rules::steady_latency(&opts),
            "coldstart" => rt.block_on(startup::cold_start(&opts)),
            "memory" => startup::memory(&opts),
            "recovery" => rules::recovery(&opts),
            "windows" => windows::windows(&opts),
            "scale" => scale::scale(&opts),
            "mqtt" => mqtt::mqtt(&opts),
            "upgrade" => rules::upgrade_pause(&opts),
            "cluster" => cluster::cluster(&opts),
            other => bail!("no scenario {other}"),
        };
        let mut result = result.with_context(|| format!("scenario {name}"))?;
        let load_after = load();
        println!(
            "_load average before / after: {load_before} / {load_after}; took {:.1} s_\n",
            t.elapsed().as_secs_f64()
        );
        if let Json::Object(o) = &mut result {
            o.insert("load_before".into(), json!(load_before));
            o.insert("load_after".into(), json!(load_after));
            o.insert("seconds".into(), json!(t.elapsed().as_secs_f64()));
        }
        results.insert(name.to_string(), result);
    }
    let doc = json!({
        "quick": quick,
        "machine": machine,
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "total_seconds": started.elapsed().as_secs_f64(),
        "scenarios": results,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("write {}", out.display()))?;
    println!("results: {} ({:.0} s in all)", out.display(), started.elapsed().as_secs_f64());
    Ok(())
}
