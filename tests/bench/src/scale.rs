//! Scenario i: the cost per rule as rules grow. N rules on the real daemon,
//! each `bench` source → `echo(n)` → `null` sink on one stream, created over
//! REST one after another: how fast they are created, how many processes
//! serve them, and the memory of the daemon and its plugins in all (PSS, so
//! that pages shared between processes count once).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value as Json};

use crate::report::{mb, met, rate, Table};
use crate::rules::{rule, Bench, NULL_IN};
use crate::Opts;

/// The process and its descendants, from `/proc/*/stat` parent links.
fn descendants(root: u32) -> Result<Vec<u32>> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The fields after the command's closing parenthesis: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    Ok(tree)
}

/// (PSS, RSS) in kB of one process, from `/proc/<pid>/smaps_rollup`.
fn pss_rss_kb(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> Result<u64> {
        let line = text.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name} line"))?;
        Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
    };
    Ok((field("Pss:")?, field("Rss:")?))
}

/// One size: create `n` rules, wait until every one has delivered a record,
/// then read the processes and their memory.
fn measure(n: usize, shared: bool) -> Result<Json> {
    let b = Bench::start()?;
    // A slow source (10 records/s per instance), so that N rules measure what
    // rules cost to hold, not to run.
    let option = if shared { r#", SHARED="true""# } else { "" };
    b.stream(&format!(r#"CREATE STREAM s () WITH (TYPE="bench", count="100000000", rate="10"{option})"#))?;
    let created = Instant::now();
    for i in 0..n {
        b.create_rule(&rule(&format!("r{i}"), "SELECT echo(n) AS e FROM s", 0, json!({ "bufferLength": 64 })))?;
    }
    let took = created.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 10);
    for i in 0..n {
        loop {
            let status = b.status(&format!("r{i}"))?;
            if status[NULL_IN].as_u64().unwrap_or(0) > 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("rule r{i} delivered nothing: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let daemon = b.daemon.child.id();
    let tree = descendants(daemon)?;
    let (mut pss, mut rss) = (0, 0);
    for pid in &tree {
        if let Ok((p, r)) = pss_rss_kb(*pid) {
            pss += p;
            rss += r;
        }
    }
    let (daemon_pss, _) = pss_rss_kb(daemon)?;
    Ok(json!({
        "rules": n, "shared_stream": shared, "create_seconds": took.as_secs_f64(), "rules_per_s": n as f64 / took.as_secs_f64(),
        "processes": tree.len(), "pss_kb": pss, "rss_kb": rss, "daemon_pss_kb": daemon_pss,
    }))
}

/// Scenario i.
pub fn scale(opts: &Opts) -> Result<Json> {
    let sizes: &[usize] = if opts.quick { &[10, 100] } else { &[10, 100, 1000] };
    let mut table = Table::new(
        "i. Cost per rule (N rules of bench source → echo(n) → null sink on one stream, qos 0, 10 records/s per source instance)",
        &[
            ("rules", true),
            ("stream", false),
            ("created in", true),
            ("rules/s", true),
            ("processes (daemon + reaper + plugins)", true),
            ("PSS in all", true),
            ("of which daemon", true),
            ("RSS in all", true),
            ("PSS per rule", true),
            ("targets (1000 rules)", false),
        ],
    );
    let mut cells = Vec::new();
    for (&n, shared) in sizes.iter().flat_map(|n| [(n, false), (n, true)]) {
        let r = measure(n, shared)?;
        let pss = r["pss_kb"].as_u64().unwrap_or(0);
        let per_s = r["rules_per_s"].as_f64().unwrap_or(0.0);
        let target = if n == 1000 {
            format!("≤ 500 MB PSS: {}; ≥ 200 rules/s: {}", met(pss <= 500 * 1024), met(per_s >= 200.0))
        } else {
            String::new()
        };
        table.row(vec![
            n.to_string(),
            if shared { "SHARED".into() } else { "instance per rule".into() },
            format!("{:.2} s", r["create_seconds"].as_f64().unwrap_or(0.0)),
            rate(per_s),
            r["processes"].to_string(),
            mb(pss),
            mb(r["daemon_pss_kb"].as_u64().unwrap_or(0)),
            mb(r["rss_kb"].as_u64().unwrap_or(0)),
            format!("{:.0} kB", pss as f64 / n as f64),
            target,
        ]);
        cells.push(r);
    }
    table.print();
    println!(
        "The bundled sources and sinks are exported `Export::shared` (a fresh object per rule in one process) and \
         echo is a singleton, so the plugin processes do not grow with the rules. Without SHARED each rule opens its \
         own source instance (in the one bench process); on a SHARED stream one instance feeds every rule.\n"
    );
    Ok(json!({ "cells": cells }))
}
