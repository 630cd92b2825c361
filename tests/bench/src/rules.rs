//! Scenarios on the real daemon (`oort serve`, driven over REST): end-to-end
//! rule throughput (c), latency at a steady rate (d) and recovery after a
//! plugin is killed (g).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use oort_tests::{Daemon, PluginsDir};
use serde_json::{json, Value as Json};

use crate::report::{self, met, ms, rate, us, Table};
use crate::{cpu_secs, plugins_with, Opts};

/// The sink counter the end-to-end scenarios watch (first action, `null` sink).
pub(crate) const NULL_IN: &str = "sink_null_0_0_records_in_total";

pub(crate) struct Bench {
    pub(crate) daemon: Daemon,
    plugins: PluginsDir,
}

impl Bench {
    pub(crate) fn start() -> Result<Bench> {
        Bench::start_wrapped(&[])
    }

    /// A daemon started through `wrapper` (e.g. `["env", "NAME=value"]`),
    /// which must exec its arguments so that the child's pid is the daemon's.
    pub(crate) fn start_wrapped(wrapper: &[&str]) -> Result<Bench> {
        Bench::start_with(wrapper, &[])
    }

    /// A daemon started with extra `oort serve` arguments (and a wrapper).
    pub(crate) fn start_with(wrapper: &[&str], args: &[&str]) -> Result<Bench> {
        let plugins = plugins_with(&[
            ("sources", "bench"),
            ("sinks", "null"),
            ("sinks", "latency"),
            ("functions", "echo"),
            ("functions", "countPlusOne"),
            ("functions", "accumulateWordCount"),
        ]);
        let daemon = if wrapper.is_empty() {
            Daemon::start(plugins.path(), args)
        } else {
            Daemon::start_wrapped(wrapper, plugins.path(), args)
        };
        Ok(Bench { daemon, plugins })
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        oort_tests::http(&self.daemon.addr, method, path, None, body)
            .ok_or_else(|| anyhow!("the daemon did not answer {method} {path}"))
    }

    pub(crate) fn expect(&self, method: &str, path: &str, body: Option<&str>) -> Result<String> {
        let (status, text) = self.request(method, path, body)?;
        if !(200..300).contains(&status) {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(text)
    }

    pub(crate) fn stream(&self, sql: &str) -> Result<()> {
        self.expect("POST", "/streams", Some(&json!({ "sql": sql }).to_string())).map(drop)
    }

    pub(crate) fn create_rule(&self, rule: &Json) -> Result<()> {
        self.expect("POST", "/rules", Some(&rule.to_string())).map(drop)
    }

    pub(crate) fn delete_rule(&self, id: &str) -> Result<()> {
        self.expect("DELETE", &format!("/rules/{id}"), None).map(drop)
    }

    pub(crate) fn status(&self, id: &str) -> Result<Json> {
        let text = self.expect("GET", &format!("/rules/{id}/status"), None)?;
        let status: Json = serde_json::from_str(&text)?;
        if status["status"] == "error" {
            bail!("rule {id} failed: {}\n{}", status["message"], self.daemon.log());
        }
        Ok(status)
    }

    fn sink_count(&self, id: &str) -> Result<u64> {
        self.status(id)?[NULL_IN].as_u64().with_context(|| format!("rule {id}: no {NULL_IN} in its status"))
    }
}

pub(crate) fn rule(id: &str, sql: &str, qos: u8, extra: Json) -> Json {
    let mut options = json!({ "qos": qos, "bufferLength": 4096 });
    if let (Json::Object(o), Json::Object(e)) = (&mut options, extra) {
        o.extend(e);
    }
    json!({ "id": id, "sql": sql, "actions": [{ "null": {} }], "options": options })
}

/// One timed run and the CPU time each process spent on it.
pub(crate) struct Run {
    pub(crate) took: Duration,
    /// (operator, CPU seconds): `oort` for the daemon, then each plugin process.
    pub(crate) cpu: Vec<(String, f64)>,
    /// The rule's status when the run ended.
    pub(crate) status: Json,
}

/// Creates the rule and waits until the status counter `counter` (e.g. its
/// sink's [`NULL_IN`]) reaches `n`; the time runs from just before the create
/// request. The rule is deleted at the end.
pub(crate) fn timed_run(b: &Bench, rule: &Json, counter: &str, n: u64) -> Result<Run> {
    let id = rule["id"].as_str().context("rule id")?;
    let daemon = b.daemon.child.id();
    let daemon_cpu = cpu_secs(daemon)?;
    let start = Instant::now();
    b.create_rule(rule)?;
    let deadline = start + Duration::from_secs(600);
    let mut plugins = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let status = b.status(id)?;
        if let Some(list) = status["plugins"].as_array().filter(|l| !l.is_empty()) {
            plugins = list.clone();
        }
        if status[counter].as_u64().with_context(|| format!("rule {id}: no {counter} in its status"))? >= n {
            let took = start.elapsed();
            // The plugin processes of this rule started with it (the function
            // may be shared and started earlier: its CPU time is counted whole).
            let mut cpu = vec![("oort".to_string(), cpu_secs(daemon)? - daemon_cpu)];
            for p in &plugins {
                if let (Some(op), Some(pid)) = (p["operator"].as_str(), p["pid"].as_u64()) {
                    cpu.push((op.to_string(), cpu_secs(pid as u32).unwrap_or(f64::NAN)));
                }
            }
            b.delete_rule(id)?;
            return Ok(Run { took, cpu, status });
        }
        if Instant::now() > deadline {
            bail!("rule {id}: {counter} did not reach {n} within 10 minutes");
        }
    }
}

/// Scenario c: each rule on the row path (`--data-encoding rows`) and on
/// columns (the default), in one run, on two daemons side by side.
pub fn end_to_end(opts: &Opts) -> Result<Json> {
    let n: u64 = if opts.quick { 200_000 } else { 1_000_000 };
    let runs = if opts.quick { 1 } else { 3 };
    let daemons = [("rows", Bench::start_with(&[], &["--data-encoding", "rows"])?), ("columns", Bench::start()?)];
    for (_, b) in &daemons {
        b.stream(&format!(r#"CREATE STREAM s () WITH (TYPE="bench", count="{n}")"#))?;
    }
    let checkpoints = json!({ "checkpointInterval": 1000 });
    let cases = [
        ("countPlusOne(l), qos 0", "SELECT countPlusOne(l) AS c FROM s", 0, json!({})),
        ("countPlusOne(l), qos 2, 1 s checkpoints", "SELECT countPlusOne(l) AS c FROM s", 2, checkpoints.clone()),
        ("echo(text), qos 0 (stateless)", "SELECT echo(text) AS w FROM s", 0, json!({})),
        ("accumulateWordCount(text, ' '), qos 0", "SELECT accumulateWordCount(text, ' ') AS w FROM s", 0, json!({})),
        ("echo(n), n WHERE n % 2 = 0, qos 0", "SELECT echo(n) AS e, n FROM s WHERE n % 2 = 0", 0, json!({})),
    ];
    // What each case's sink receives: the last one keeps half the records.
    let expected = |i: usize| if i == 4 { n / 2 } else { n };
    let mut out = Vec::new();
    let mut table = Table::new(
        &format!("c. End-to-end rule throughput (bench source → rule → null sink, {n} records, bufferLength 4096, median of {runs})"),
        &[
            ("rule", false),
            ("path", false),
            ("records/s", true),
            ("runs", false),
            ("CPU µs/record: oort + source + function + sink", true),
            ("target", false),
        ],
    );
    // Round robin over the cases and paths, so that a change in the
    // machine's load between runs affects every case alike (the ratios stay
    // meaningful).
    let cells = cases.len() * daemons.len();
    let mut each: Vec<Vec<f64>> = vec![Vec::new(); cells];
    let mut cpu: Vec<Vec<(String, f64)>> = vec![Vec::new(); cells];
    for r in 0..runs {
        for (i, (_, sql, qos, extra)) in cases.iter().enumerate() {
            for (d, (_, b)) in daemons.iter().enumerate() {
                let id = format!("e2e{i}_{d}_{r}");
                let cell = i * daemons.len() + d;
                let run = timed_run(b, &rule(&id, sql, *qos, extra.clone()), NULL_IN, expected(i))?;
                each[cell].push(n as f64 / run.took.as_secs_f64());
                for (k, (op, secs)) in run.cpu.into_iter().enumerate() {
                    match cpu[cell].get_mut(k) {
                        Some(c) => c.1 += secs,
                        None => cpu[cell].push((op, secs)),
                    }
                }
            }
        }
    }
    let mut rates = vec![0.0; cells];
    for (i, (name, sql, qos, _)) in cases.iter().enumerate() {
        for (d, (path, _)) in daemons.iter().enumerate() {
            let cell = i * daemons.len() + d;
            let per_record: Vec<(String, f64)> =
                cpu[cell].iter().map(|(op, secs)| (op.clone(), secs / (n as f64 * runs as f64) * 1e6)).collect();
            let total: f64 = per_record.iter().map(|(_, x)| x).sum();
            let median = report::median(each[cell].clone());
            rates[cell] = median;
            let target =
                if i == 0 && *path == "columns" { format!("≥ 1 M: {}", met(median >= 1e6)) } else { String::new() };
            let list: Vec<String> = each[cell].iter().map(|x| rate(*x)).collect();
            let parts: Vec<String> = per_record.iter().map(|(_, x)| format!("{x:.2}")).collect();
            table.row(vec![
                name.to_string(),
                path.to_string(),
                rate(median),
                list.join(", "),
                format!("{} = {total:.2}", parts.join(" + ")),
                target,
            ]);
            let cpu_json: serde_json::Map<String, Json> =
                per_record.iter().map(|(op, x)| (op.clone(), json!(x))).collect();
            out.push(json!({
                "rule": name, "sql": sql, "qos": qos, "path": path, "records_per_s": median, "runs": each[cell],
                "cpu_us_per_record": cpu_json,
            }));
        }
    }
    // Cell (case, path): path 0 rows, 1 columns.
    let at = |case: usize, path: usize| rates[case * daemons.len() + path];
    let columns_ratio = at(0, 1) / at(0, 0);
    let echo_ratio = at(4, 1) / at(4, 0);
    let qos_ratio = at(1, 1) / at(0, 1);
    let state_ratio = at(3, 1) / at(2, 1);
    table.print();
    println!(
        "**columns vs rows, countPlusOne(l): {columns_ratio:.2}×** (target ≥ 3×: {}); echo(n) with WHERE: {echo_ratio:.2}×",
        met(columns_ratio >= 3.0)
    );
    println!(
        "**accumulateWordCount vs stateless (columns): {:.0} %** (target ≥ 50 %: {})",
        state_ratio * 100.0,
        met(state_ratio >= 0.5)
    );
    println!(
        "**qos 2 (1 s checkpoints) vs qos 0 (columns): {:.0} %** (target ≥ 70 %: {})\n",
        qos_ratio * 100.0,
        met(qos_ratio >= 0.7)
    );
    Ok(json!({
        "records": n, "runs": runs, "rules": out, "columns_vs_rows": columns_ratio, "echo_columns_vs_rows": echo_ratio,
        "accumulate_vs_stateless": state_ratio, "qos2_vs_qos0": qos_ratio,
    }))
}

/// Scenario d.
pub fn steady_latency(opts: &Opts) -> Result<Json> {
    let secs = if opts.quick { 2 } else { 5 };
    let rate_per_s = 10_000;
    let b = Bench::start()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("latency.jsonl");
    b.stream(&format!(r#"CREATE STREAM lat () WITH (TYPE="bench", count="1000000000", rate="{rate_per_s}")"#))?;
    let r = json!({
        "id": "steady", "sql": "SELECT echo(n) AS n, t FROM lat",
        "actions": [{ "latency": { "path": path.to_string_lossy() } }],
        "options": { "qos": 0 },
    });
    b.create_rule(&r)?;
    std::thread::sleep(Duration::from_secs(secs));
    b.expect("POST", "/rules/steady/stop", None)?;
    let result = latency_report(&path)?;
    let g = |k: &str| result[k].as_f64().unwrap_or(f64::NAN);
    let mut table = Table::new(
        &format!(
            "d. Latency at a steady {} records/s (bench → echo(n) → latency sink, qos 0, {secs} s)",
            rate(rate_per_s as f64)
        ),
        &[
            ("records", true),
            ("achieved rate", true),
            ("p50 µs", true),
            ("p99 µs", true),
            ("max µs", true),
            ("target p99 ≤ 2 ms", false),
        ],
    );
    table.row(vec![
        format!("{}", g("count")),
        format!("{}/s", rate(g("count") / secs as f64)),
        us(g("p50_us")),
        us(g("p99_us")),
        us(g("max_us")),
        met(g("p99_us") <= 2000.0),
    ]);
    table.print();
    Ok(json!({ "rate": rate_per_s, "seconds": secs, "sink": result }))
}

/// The last line the `latency` sink wrote to `path` (it writes one when its
/// rule stops), waiting up to 10 s for it.
pub(crate) fn latency_report(path: &std::path::Path) -> Result<Json> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(l) = text.lines().last() {
            break l.to_string();
        }
        if Instant::now() > deadline {
            bail!("the latency sink wrote nothing to {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(serde_json::from_str(&line)?)
}

/// The pid of the rule's function plugin process, from its status.
fn function_pid(b: &Bench, id: &str) -> Result<Option<u32>> {
    let status = b.status(id)?;
    let plugins = status["plugins"].as_array().context("no plugins list in the status")?;
    Ok(plugins
        .iter()
        .find(|p| p["operator"].as_str().is_some_and(|o| o.starts_with("fn_")))
        .and_then(|p| p["pid"].as_u64())
        .map(|p| p as u32))
}

/// Scenario g.
pub fn recovery(opts: &Opts) -> Result<Json> {
    let trials = if opts.quick { 2 } else { 5 };
    let b = Bench::start()?;
    b.stream(r#"CREATE STREAM rec () WITH (TYPE="bench", count="1000000000", rate="2000")"#)?;
    b.create_rule(&json!({
        "id": "rec", "sql": "SELECT echo(n) AS n FROM rec", "actions": [{ "null": {} }], "options": { "qos": 0 },
    }))?;
    let mut times = Vec::new();
    let mut killed: Option<u32> = None;
    for trial in 0..trials {
        // Wait for a fresh process with records flowing; after a restart, stay
        // up longer than the supervisor's 5 s stability window so that every
        // kill is a first failure (restart delay 100 ms, not a back-off).
        let settle = if trial == 0 { Duration::from_millis(500) } else { Duration::from_millis(5_500) };
        std::thread::sleep(settle);
        let pid = loop {
            match function_pid(&b, "rec")? {
                Some(p) if Some(p) != killed => break p,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let before = b.sink_count("rec")?;
        std::thread::sleep(Duration::from_millis(100));
        if b.sink_count("rec")? <= before {
            bail!("recovery: records are not flowing before the kill");
        }
        let t0 = Instant::now();
        oort_tests::kill9(pid);
        killed = Some(pid);
        // Batches already past the function still reach the sink: let them land.
        std::thread::sleep(Duration::from_millis(20));
        let settled = b.sink_count("rec")?;
        let deadline = t0 + Duration::from_secs(30);
        let took = loop {
            if b.sink_count("rec")? > settled {
                break t0.elapsed();
            }
            if Instant::now() > deadline {
                bail!("recovery: no record reached the sink within 30 s of the kill\n{}", b.daemon.log());
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        times.push(took);
    }
    let median = report::median(times.iter().map(|t| t.as_secs_f64()).collect());
    let mut table = Table::new(
        &format!(
            "g. Recovery after kill -9 of the function plugin (bench 2 k/s → echo → null, qos 0, median of {trials})"
        ),
        &[("median", true), ("trials", false), ("target ≤ 500 ms", false)],
    );
    let list: Vec<String> = times.iter().map(|t| ms(*t)).collect();
    table.row(vec![ms(Duration::from_secs_f64(median)), list.join(", "), met(median <= 0.5)]);
    table.print();
    Ok(json!({
        "median_ms": median * 1e3,
        "trials_ms": times.iter().map(|t| t.as_secs_f64() * 1e3).collect::<Vec<_>>(),
    }))
}

/// Scenario k: how long a rule is paused while it moves to a new version of
/// its function plugin (`POST /plugins/functions/echo/upgrade`): from the
/// request until a record reaches the sink again, at qos 0 (the host's state
/// carried) and at qos 2 (restored from the last checkpoint, the source
/// rewound). Each round copies in a new version of `echo`, lists the
/// plugins (which reads and hashes it), then times the upgrade request.
pub fn upgrade_pause(opts: &Opts) -> Result<Json> {
    let rounds = if opts.quick { 3 } else { 20 };
    let b = Bench::start()?;
    let functions = b.plugins.path().join("functions");
    // The copies come from outside the plugins folder: an upgrade that ran
    // through its grace period removes the old versions no rule runs, the
    // unversioned `echo` among them.
    let pristine = b.plugins.path().join("echo.pristine");
    std::fs::copy(functions.join("echo"), &pristine)?;
    b.stream(r#"CREATE STREAM up () WITH (TYPE="bench", count="1000000000", rate="2000")"#)?;
    let mut version = 0;
    let mut table = Table::new(
        &format!(
            "k. Plugin upgrade pause (bench 2 k/s → echo(n) → null; a new echo version per round, moved to by \
             POST /plugins/functions/echo/upgrade; {rounds} rounds)"
        ),
        &[("rule", false), ("p50", true), ("p99", true), ("max", true), ("target p99 ≤ 50 ms", false)],
    );
    let mut results = serde_json::Map::new();
    for (label, qos, extra) in [
        ("qos 0 (the host's state)", 0u8, json!({})),
        ("qos 2, 100 ms checkpoints (restored, source rewound)", 2, json!({ "checkpointInterval": 100 })),
    ] {
        let id = format!("up{qos}");
        b.create_rule(&rule(&id, "SELECT echo(n) AS n FROM up", qos, extra))?;
        std::thread::sleep(Duration::from_millis(500));
        let mut pauses = Vec::new();
        for _ in 0..rounds {
            version += 1;
            std::fs::copy(&pristine, functions.join(format!("echo@1.0.{version}")))?;
            // Listing reads the folder and hashes the new file: not part of
            // the pause, which is the rule's (the old version runs meanwhile).
            b.expect("GET", "/plugins/functions", None)?;
            let before = b.sink_count(&id)?;
            let flowing = Instant::now() + Duration::from_secs(10);
            while b.sink_count(&id)? <= before {
                if Instant::now() > flowing {
                    bail!("upgrade pause: records are not flowing before the upgrade\n{}", b.daemon.log());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // The pause is the longest time without a record reaching the
            // sink while the upgrade runs: records keep flowing while the
            // new version is checked (a trial process), and stop from the
            // old run's stop until the new run's first record. The new run's
            // counters start from 0: any change to a count above 0 is a
            // record.
            let addr = b.daemon.addr.clone();
            let mut request = Some(std::thread::spawn(move || {
                oort_tests::http(&addr, "POST", "/plugins/functions/echo/upgrade", None, None)
            }));
            let (mut last, mut last_record, mut longest) = (b.sink_count(&id)?, Instant::now(), Duration::ZERO);
            let mut answered = false;
            let deadline = Instant::now() + Duration::from_secs(30);
            let took = loop {
                let now = b.sink_count(&id)?;
                let at = Instant::now();
                if now != last && now > 0 {
                    longest = longest.max(at - last_record);
                    last_record = at;
                    if answered {
                        break longest;
                    }
                }
                last = now;
                if let Some(done) = request.take_if(|r| r.is_finished()) {
                    let said = done.join().map_err(|_| anyhow!("the upgrade request panicked"))?;
                    let said = said.map(|(_, body)| body).unwrap_or_default();
                    if !said.contains(&id) {
                        bail!("upgrade pause: the rule did not move: {said}");
                    }
                    answered = true;
                }
                if at > deadline {
                    bail!("upgrade pause: no record within 30 s of the upgrade\n{}", b.daemon.log());
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            pauses.push(took);
            std::thread::sleep(Duration::from_millis(200));
        }
        b.delete_rule(&id)?;
        pauses.sort();
        let (p50, p99, max) = (
            report::quantile(&pauses, 0.5),
            report::quantile(&pauses, 0.99),
            *pauses.last().unwrap_or(&Duration::ZERO),
        );
        table.row(vec![label.to_string(), ms(p50), ms(p99), ms(max), met(p99 <= Duration::from_millis(50))]);
        results.insert(
            format!("qos{qos}"),
            json!({
                "p50_ms": p50.as_secs_f64() * 1e3,
                "p99_ms": p99.as_secs_f64() * 1e3,
                "max_ms": max.as_secs_f64() * 1e3,
                "rounds_ms": pauses.iter().map(|t| t.as_secs_f64() * 1e3).collect::<Vec<_>>(),
            }),
        );
    }
    table.print();
    println!(
        "The pause is the longest time without a record reaching the null sink from the upgrade request until \
         the first record after it answered (the status polled every ms; the new run's counters start from 0). \
         Records flow while the new version is checked on a trial process (start, Describe, the state accepted); \
         the pause is the rule's restart: stop, a new process of the new version (spawn, handshake), open, and at \
         qos 2 the restore and rewind. The new file was read and hashed before, by a listing.\n"
    );
    Ok(Json::Object(results))
}
