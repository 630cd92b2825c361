//! Scenario h, windows, on the real daemon: the throughput of a windowed
//! aggregate next to the same rule without the window, the daemon's memory as
//! a window grows from 10 k to 10 M rows, and the latency from a window's end
//! to its row at the sink.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value as Json};

use crate::report::{self, mb, met, pct, rate, us, Table};
use crate::rules::{latency_report, rule, timed_run, Bench, NULL_IN};
use crate::Opts;

/// Rows taken by the rule's select: the projection of a plain rule, the
/// window of a grouped one (counted as they go in).
const SELECT_IN: &str = "op_2_project_0_records_in_total";
/// Distinct values of the group key `k` (the bench source's `keys`).
const KEYS: u64 = 1000;

/// Scenario h: the three tables.
pub fn windows(opts: &Opts) -> Result<Json> {
    let throughput = throughput(opts)?;
    let memory = memory(opts)?;
    let latency = latency(opts)?;
    Ok(json!({ "throughput": throughput, "memory": memory, "latency": latency }))
}

/// h1: a tumbling 1 s window per key against the stateless rule over the same
/// records, both timed until the select has taken every record. Round robin,
/// the order swapped every round, so that a change in the machine's load hits
/// both alike; each round's ratio is printed too.
fn throughput(opts: &Opts) -> Result<Json> {
    let n: u64 = if opts.quick { 400_000 } else { 2_000_000 };
    let runs = if opts.quick { 1 } else { 5 };
    let b = Bench::start()?;
    b.stream(&format!(r#"CREATE STREAM ws () WITH (TYPE="bench", count="{n}", keys="{KEYS}")"#))?;
    let cases = [
        ("stateless: SELECT k, x", "SELECT k, x FROM ws"),
        (
            "window: count(*), avg(x) GROUP BY k, TUMBLINGWINDOW(ss, 1)",
            "SELECT k, count(*) AS c, avg(x) AS a FROM ws GROUP BY k, TUMBLINGWINDOW(ss, 1)",
        ),
    ];
    let mut each: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut cpu: Vec<Vec<(String, f64)>> = vec![Vec::new(); cases.len()];
    let mut sink_rows: Vec<Vec<u64>> = vec![Vec::new(); cases.len()];
    for r in 0..runs {
        let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let sql = cases[i].1;
            let id = format!("wtp{i}_{r}");
            let run = timed_run(&b, &rule(&id, sql, 0, json!({})), SELECT_IN, n)?;
            each[i].push(n as f64 / run.took.as_secs_f64());
            sink_rows[i].push(run.status[NULL_IN].as_u64().unwrap_or(0));
            for (k, (op, secs)) in run.cpu.into_iter().enumerate() {
                match cpu[i].get_mut(k) {
                    Some(c) => c.1 += secs,
                    None => cpu[i].push((op, secs)),
                }
            }
        }
    }
    let mut table = Table::new(
        &format!(
            "h1. Window throughput (bench source, {KEYS} keys → rule → null sink, {n} records, bufferLength 4096, qos 0, median of {runs})"
        ),
        &[
            ("rule", false),
            ("records/s", true),
            ("runs", false),
            ("rows at the sink when timed", false),
            ("CPU µs/record: oort + source + sink", true),
        ],
    );
    let mut rates = Vec::new();
    let mut out = Vec::new();
    for (i, (name, sql)) in cases.iter().enumerate() {
        let per_record: Vec<(String, f64)> =
            cpu[i].iter().map(|(op, secs)| (op.clone(), secs / (n as f64 * runs as f64) * 1e6)).collect();
        let total: f64 = per_record.iter().map(|(_, x)| x).sum();
        let median = report::median(each[i].clone());
        rates.push(median);
        let list: Vec<String> = each[i].iter().map(|x| rate(*x)).collect();
        let sunk: Vec<String> = sink_rows[i].iter().map(|x| x.to_string()).collect();
        let parts: Vec<String> = per_record.iter().map(|(_, x)| format!("{x:.2}")).collect();
        table.row(vec![
            name.to_string(),
            rate(median),
            list.join(", "),
            sunk.join(", "),
            format!("{} = {total:.2}", parts.join(" + ")),
        ]);
        let cpu_json: serde_json::Map<String, Json> = per_record.iter().map(|(op, x)| (op.clone(), json!(x))).collect();
        out.push(json!({
            "rule": name, "sql": sql, "records_per_s": median, "runs": each[i],
            "sink_rows": sink_rows[i], "cpu_us_per_record": cpu_json,
        }));
    }
    let ratio = rates[1] / rates[0];
    let per_round: Vec<f64> = each[1].iter().zip(&each[0]).map(|(w, s)| w / s).collect();
    table.print();
    println!("Both timed from just before `POST /rules` until `{SELECT_IN}` ≥ {n}: every record taken by the select (the window's rows counted as they go in); the window rule's sink gets one row per key and window, the stateless rule's every record.\n");
    println!(
        "**window vs stateless: {}** (target ≥ 80 %: {}); round by round: {}\n",
        pct(ratio),
        met(ratio >= 0.8),
        per_round.iter().map(|r| pct(*r)).collect::<Vec<_>>().join(", ")
    );
    Ok(json!({
        "records": n, "runs": runs, "rules": out, "window_vs_stateless": ratio, "per_round_ratios": per_round,
    }))
}

/// A `/proc/<pid>/status` field in kB.
fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field} line"))?;
    Ok(line.split_whitespace().nth(1).context("a value")?.parse()?)
}

/// One pass of h2 for one window size.
struct Held {
    idle_kb: u64,
    rss_kb: u64,
    anon_kb: u64,
    peak_kb: u64,
    took: Duration,
}

/// Runs `total` records through `COUNTWINDOW(size)` grouped by the 1000 keys
/// on a fresh daemon (started through `wrapper`), and reads the daemon's
/// memory once the source has run dry and the pipeline is idle.
fn hold(wrapper: &[&str], size: u64, total: u64) -> Result<Held> {
    let b = Bench::start_wrapped(wrapper)?;
    let pid = b.daemon.child.id();
    b.stream(&format!(r#"CREATE STREAM wm () WITH (TYPE="bench", count="{total}", keys="{KEYS}")"#))?;
    // Let the daemon settle (as scenario f does) before its baseline.
    std::thread::sleep(Duration::from_millis(500));
    let idle_kb = status_kb(pid, "VmRSS:")?;
    let sql = format!("SELECT k, count(*) AS c, avg(x) AS a FROM wm GROUP BY k, COUNTWINDOW({size})");
    let id = format!("wmem{size}");
    let started = Instant::now();
    // bufferLength left at its default (1024): the rule as users write it.
    b.create_rule(&json!({ "id": id, "sql": sql, "actions": [{ "null": {} }], "options": { "qos": 0 } }))?;
    // Every full window emits one row per key.
    let expected = total / size * KEYS;
    let took = loop {
        std::thread::sleep(Duration::from_millis(20));
        let status = b.status(&id)?;
        let taken = status[SELECT_IN].as_u64().unwrap_or(0);
        let sunk = status[NULL_IN].as_u64().unwrap_or(0);
        if taken >= total && sunk >= expected {
            if taken != total || sunk != expected {
                bail!("windows: COUNTWINDOW({size}) took {taken} rows and emitted {sunk}, expected {total} and {expected}");
            }
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("windows: COUNTWINDOW({size}) did not finish in 10 minutes ({taken} rows in, {sunk} out)");
        }
    };
    // The source idles once it has run dry; what the window holds stays.
    std::thread::sleep(Duration::from_secs(1));
    let held = Held {
        idle_kb,
        rss_kb: status_kb(pid, "VmRSS:")?,
        anon_kb: status_kb(pid, "RssAnon:")?,
        peak_kb: status_kb(pid, "VmHWM:")?,
        took,
    };
    b.delete_rule(&id)?;
    Ok(held)
}

/// h2: the same records through `COUNTWINDOW(N)` for each N, a fresh daemon
/// each time, so that the window's size (and with it how many rows it emits:
/// 1000 per N records) is the only thing that differs. `total` is one short
/// of a multiple of every N: when the source has run dry, every window but
/// the last has emitted and the last holds exactly N − 1 rows. Twice per N:
/// with the allocator as shipped, and with mimalloc told to return freed
/// pages at once (`MIMALLOC_PURGE_DELAY=0`), which leaves out the pages the
/// run's batches used and freed.
fn memory(opts: &Opts) -> Result<Json> {
    let (total, sizes): (u64, &[u64]) = if opts.quick {
        (100_000 - 1, &[10_000, 100_000])
    } else {
        (10_000_000 - 1, &[10_000, 100_000, 1_000_000, 10_000_000])
    };
    const PURGE: [&str; 2] = ["env", "MIMALLOC_PURGE_DELAY=0"];
    let mut rows = Vec::new();
    for &size in sizes {
        rows.push((size, hold(&[], size, total)?, hold(&PURGE, size, total)?));
    }
    // Flat: every size within 10 % of the smallest, either way.
    let farthest = |rss: &dyn Fn(&(u64, Held, Held)) -> u64| -> f64 {
        let base = rss(&rows[0]) as f64;
        rows.iter().map(|r| rss(r) as f64 / base - 1.0).fold(0.0, |w: f64, d| if d.abs() > w.abs() { d } else { w })
    };
    let shipped = farthest(&|r| r.1.rss_kb);
    let purged = farthest(&|r| r.2.rss_kb);
    let vs = |x: u64, base: u64| format!("{:+.1} %", (x as f64 / base as f64 - 1.0) * 100.0);
    let mut table = Table::new(
        &format!(
            "h2. Daemon memory with incremental aggregates (COUNTWINDOW(N) GROUP BY {KEYS} keys, count(*) and avg(x), default bufferLength; {total} records per N, a fresh daemon each; RSS read with the window holding N − 1 rows, the pipeline idle)"
        ),
        &[
            ("N", true),
            ("windows emitted", true),
            ("rows held", true),
            ("idle RSS", true),
            ("RSS", true),
            ("vs smallest N", true),
            ("of which anon", true),
            ("peak (VmHWM)", true),
            ("RSS, MIMALLOC_PURGE_DELAY=0", true),
            ("vs smallest N", true),
            ("of which anon", true),
        ],
    );
    let mut out = Vec::new();
    let (base, base_purged) = (rows[0].1.rss_kb, rows[0].2.rss_kb);
    for (size, a, p) in &rows {
        table.row(vec![
            size.to_string(),
            (total / size).to_string(),
            (total % size).to_string(),
            mb(a.idle_kb),
            mb(a.rss_kb),
            vs(a.rss_kb, base),
            mb(a.anon_kb),
            mb(a.peak_kb),
            mb(p.rss_kb),
            vs(p.rss_kb, base_purged),
            mb(p.anon_kb),
        ]);
        let j = |h: &Held| {
            json!({
                "idle_rss_kb": h.idle_kb, "rss_kb": h.rss_kb, "anon_kb": h.anon_kb, "peak_rss_kb": h.peak_kb,
                "seconds": h.took.as_secs_f64(),
            })
        };
        out.push(json!({
            "window_rows": size, "windows_emitted": total / size, "rows_held": total % size,
            "shipped": j(a), "purge_delay_0": j(p),
        }));
    }
    table.print();
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    println!(
        "**RSS holding {} vs {} rows: {} ({} vs {}); farthest from the smallest N: {:+.1} %** (target flat within 10 %: {})",
        last.0 - 1,
        first.0 - 1,
        vs(last.1.rss_kb, first.1.rss_kb),
        mb(last.1.rss_kb),
        mb(first.1.rss_kb),
        shipped * 100.0,
        met(shipped.abs() <= 0.10)
    );
    println!(
        "**With MIMALLOC_PURGE_DELAY=0: {} ({} vs {}); farthest from the smallest N: {:+.1} %** (flat within 10 %: {})\n",
        vs(last.2.rss_kb, first.2.rss_kb),
        mb(last.2.rss_kb),
        mb(first.2.rss_kb),
        purged * 100.0,
        met(purged.abs() <= 0.10)
    );
    Ok(json!({
        "records": total, "sizes": out,
        "rss_farthest_from_smallest": shipped, "purge_delay_0_farthest_from_smallest": purged,
    }))
}

/// h3: processing-time tumbling windows of 200 ms over a paced source; each
/// output row carries `window_end()` in µs as `t`, which the `latency` sink
/// subtracts from its clock on receipt. One group per window, then 1000 (the
/// `windows` column is rows / groups).
fn latency(opts: &Opts) -> Result<Json> {
    let secs = if opts.quick { 3 } else { 25 };
    let per_s = 10_000;
    let window_ms = 200;
    let b = Bench::start()?;
    b.stream(&format!(
        r#"CREATE STREAM wl () WITH (TYPE="bench", count="1000000000", rate="{per_s}", keys="{KEYS}")"#
    ))?;
    let cases = [
        (
            "one group",
            1,
            format!("SELECT window_end() * 1000 AS t, count(*) AS c FROM wl GROUP BY TUMBLINGWINDOW(ms, {window_ms})"),
        ),
        (
            "GROUP BY k: 1000 groups",
            KEYS,
            format!(
                "SELECT k, window_end() * 1000 AS t, count(*) AS c, avg(x) AS a FROM wl GROUP BY k, TUMBLINGWINDOW(ms, {window_ms})"
            ),
        ),
    ];
    let dir = tempfile::tempdir()?;
    let mut table = Table::new(
        &format!(
            "h3. Latency from a window's end to its row at the sink (TUMBLINGWINDOW(ms, {window_ms}), processing time, bench {} records/s → latency sink, qos 0, {secs} s each)",
            rate(per_s as f64)
        ),
        &[
            ("rule", false),
            ("windows", true),
            ("rows", true),
            ("p50 µs", true),
            ("p99 µs", true),
            ("max µs", true),
            ("target p99 ≤ 5 ms", false),
        ],
    );
    let mut out = Vec::new();
    for (i, (name, groups, sql)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("wlat{i}.jsonl"));
        let id = format!("wlat{i}");
        b.create_rule(&json!({
            "id": id, "sql": sql,
            "actions": [{ "latency": { "path": path.to_string_lossy() } }],
            "options": { "qos": 0 },
        }))?;
        std::thread::sleep(Duration::from_secs(secs));
        b.expect("POST", &format!("/rules/{id}/stop"), None)?;
        let result = latency_report(&path)?;
        b.delete_rule(&id)?;
        let g = |k: &str| result[k].as_f64().unwrap_or(f64::NAN);
        if g("missing_t") != 0.0 {
            bail!("windows: {} rows without t at the latency sink", g("missing_t"));
        }
        let count = g("count");
        table.row(vec![
            name.to_string(),
            format!("{:.0}", count / *groups as f64),
            format!("{count:.0}"),
            us(g("p50_us")),
            us(g("p99_us")),
            us(g("max_us")),
            met(g("p99_us") <= 5000.0),
        ]);
        out.push(json!({ "rule": name, "sql": sql, "groups": groups, "sink": result }));
    }
    table.print();
    Ok(json!({ "rate": per_s, "window_ms": window_ms, "seconds": secs, "rules": out }))
}
