//! Scenarios a (function throughput) and b (single-row latency): the same
//! `echo` called in-process (the ceiling), as raw frames over a Unix socket
//! (the IPC floor), through Oort (`Host` + the real `echo` plugin) and, when
//! built, through hashicorp/go-plugin (one unary gRPC call per batch, `goplugin`).

use std::hint::black_box;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use oort_host::process::RestartStrategy;
use oort_host::{DataEncoding, FunctionInstance};
use oort_proto::Value;
use oort_tests::{PluginsDir, TestHost};
use prost::Message;
use serde_json::{json, Value as Json};

use crate::goplugin;
use crate::ipc::EchoClient;
use crate::report::{met, pct, quantile, rate, us, Table};
use crate::{bench_timeouts, cpu_secs, ctx_switches, Opts};

const BATCHES: [usize; 4] = [1, 16, 256, 4096];
/// The 100-byte string payload.
const TEXT100: &str =
    "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs, said the sphinx";

#[derive(Clone, Copy)]
enum Payload {
    Int,
    Text100,
}

impl Payload {
    fn name(self) -> &'static str {
        match self {
            Payload::Int => "echo(int)",
            Payload::Text100 => "echo(100-byte string)",
        }
    }

    /// The `-payload` of `echo-host` (8 bytes or 100 bytes per row).
    fn go_name(self) -> &'static str {
        match self {
            Payload::Int => "int",
            Payload::Text100 => "string100",
        }
    }

    fn rows(self, n: usize) -> Vec<Vec<Value>> {
        (0..n)
            .map(|i| match self {
                Payload::Int => vec![Value::Int(i as i64 * 7919)],
                Payload::Text100 => vec![Value::String(TEXT100.to_string())],
            })
            .collect()
    }
}

/// The bytes Oort puts on the wire for this batch (the request message), from
/// the encoder the host itself uses.
fn encoded(rows: &[Vec<Value>]) -> Vec<u8> {
    oort_proto::wire::BatchBody::exec("bench/fn_0_echo", rows).with_seq(1).encode_to_vec()
}

/// The bytes of the same batch as Arrow columns, as the host sends it once
/// the stream has the schema.
fn encoded_columns(rows: &[Vec<Value>]) -> Result<Vec<u8>> {
    let batch = oort_proto::columns::args_batch(rows).context("echo's rows fit one column")?;
    let message = oort_proto::columns::batch_message(&batch)?;
    Ok(oort_proto::wire::BatchBody::exec_columns("bench/fn_0_echo", message).with_seq(1).encode_to_vec())
}

/// The in-process equivalent of the `echo` plugin's `exec`.
#[inline(never)]
fn echo(args: &[Value]) -> Result<Value, String> {
    Ok(args.first().cloned().unwrap_or_default())
}

/// Rows per second of the in-process loop: the batch is cloned (Oort's `exec`
/// takes it by value) and every row goes through `echo`.
fn in_process(rows: &[Vec<Value>], dur: Duration) -> f64 {
    let start = Instant::now();
    let mut done = 0u64;
    loop {
        for _ in 0..64 {
            let batch = black_box(rows.to_vec());
            let out: Vec<Result<Value, String>> = batch.iter().map(|r| echo(r)).collect();
            black_box(out);
        }
        done += 64 * rows.len() as u64;
        if start.elapsed() >= dur {
            return done as f64 / start.elapsed().as_secs_f64();
        }
    }
}

fn raw_socket(client: &mut EchoClient, rows: usize, dur: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < dur {
        client.round_trip()?;
        done += rows as u64;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Calls `exec` with `rows` until `dur` has passed since `start`; the rows done.
async fn exec_until(f: &FunctionInstance, rows: &[Vec<Value>], start: Instant, dur: Duration) -> Result<u64> {
    let mut done = 0u64;
    while start.elapsed() < dur {
        let out = f.exec(rows).await?;
        if out.len() != rows.len() {
            bail!("echo answered {} rows with {}", rows.len(), out.len());
        }
        done += rows.len() as u64;
    }
    Ok(done)
}

async fn oort(f: &FunctionInstance, rows: &[Vec<Value>], dur: Duration) -> Result<f64> {
    let start = Instant::now();
    let done = exec_until(f, rows, start, dur).await?;
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Two callers on one instance, so two batches are in flight, as a rule's
/// pipeline keeps them: the host encodes the next batch while the plugin
/// works on the previous one.
async fn oort_two_in_flight(f: &FunctionInstance, rows: &[Vec<Value>], dur: Duration) -> Result<f64> {
    let start = Instant::now();
    let (a, b) = tokio::join!(exec_until(f, rows, start, dur), exec_until(f, rows, start, dur));
    Ok((a? + b?) as f64 / start.elapsed().as_secs_f64())
}

/// Calls `exec_columns` with `arrays` (`n` rows each), as a rule on columns
/// calls a function, until `dur` has passed since `start`; the rows done.
async fn columns_until(
    f: &FunctionInstance,
    arrays: &[oort_proto::columns::ArrayRef],
    n: usize,
    start: Instant,
    dur: Duration,
) -> Result<u64> {
    let mut done = 0u64;
    while start.elapsed() < dur {
        let answered = match f.exec_columns(arrays, n).await? {
            oort_host::Answer::Column(column, _) => column.len(),
            oort_host::Answer::Rows(rows) => rows.len(),
        };
        if answered != n {
            bail!("echo answered {n} rows with {answered}");
        }
        done += n as u64;
    }
    Ok(done)
}

/// The engine's path for a rule on columns: argument arrays in, the result
/// array out, two batches in flight.
async fn oort_columns_two_in_flight(
    f: &FunctionInstance,
    arrays: &[oort_proto::columns::ArrayRef],
    n: usize,
    dur: Duration,
) -> Result<f64> {
    let start = Instant::now();
    let (a, b) = tokio::join!(columns_until(f, arrays, n, start, dur), columns_until(f, arrays, n, start, dur));
    Ok((a? + b?) as f64 / start.elapsed().as_secs_f64())
}

/// A host serving the real `echo` plugin (through `launcher` when given, e.g.
/// `taskset -c 0`), with one instance open, its batches sent per `encoding`
/// on the framed Exec path (gRPC when `grpc_only`).
async fn echo_instance(
    launcher: Option<&str>,
    encoding: DataEncoding,
    grpc_only: bool,
) -> Result<(PluginsDir, TestHost, FunctionInstance)> {
    let plugins = PluginsDir::new();
    match launcher {
        None => {
            plugins.add("functions", "echo", "echo");
        }
        Some(launcher) => {
            let script = format!("#!/bin/sh\nexec {launcher} '{}' \"$@\"\n", oort_tests::bin("echo").display());
            let path = plugins.path().join("functions").join("echo");
            std::fs::write(&path, script)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let host = TestHost::with_transport(plugins.path(), bench_timeouts(), encoding, !grpc_only);
    let f = host.host.open_function("bench", "fn_0_echo", "echo", RestartStrategy::default()).await?;
    f.exec(&[vec![Value::Int(1)]]).await.context("first echo call")?;
    Ok((plugins, host, f))
}

/// Scenario a. Each cell is measured in rounds that alternate the methods
/// (the go-plugin baseline: a fresh `echo-host` run per round), and keeps
/// each method's best round (the least disturbed one on a shared machine). On this kind of VM a small round trip is bimodal: ~4 µs
/// when the scheduler keeps both ends on one vCPU, ~50–60 µs when the peer
/// must be woken on the other vCPU; table b has the pinned, same-CPU floor.
pub async fn throughput(opts: &Opts) -> Result<Json> {
    let (rounds, dur) = if opts.quick { (1, Duration::from_millis(150)) } else { (3, Duration::from_millis(500)) };
    let warm = if opts.quick { Duration::from_millis(30) } else { Duration::from_millis(200) };
    let (_rows_plugins, rows_host, rows_f) = echo_instance(None, DataEncoding::Rows, false).await?;
    let (_plugins, host, f) = echo_instance(None, DataEncoding::Auto, false).await?;
    let plugin_pid = f.pid().context("echo pid")?;
    let mut client = EchoClient::start(&[])?;
    let go_host = goplugin::host();
    let mut table = Table::new(
        &format!(
            "a. Function throughput (rows/s, one caller, batches of N rows; best of {rounds} × {} ms)",
            dur.as_millis()
        ),
        &[
            ("call", false),
            ("batch", true),
            ("bytes/batch rows / Arrow", true),
            ("in-process", true),
            ("raw socket", true),
            ("Oort rows", true),
            ("Oort auto", true),
            ("Oort auto, 2 in flight", true),
            ("Oort columns (rule on columns), 2 in flight", true),
            ("auto/rows", true),
            ("Oort/raw", true),
            (goplugin::NAME, true),
            ("Oort/go-plugin", true),
            ("Oort CPU ns/row host+plugin", true),
            ("targets at 4096", false),
        ],
    );
    let mut cells = Vec::new();
    for payload in [Payload::Int, Payload::Text100] {
        for batch in BATCHES {
            let rows = payload.rows(batch);
            let arrays = oort_proto::columns::args_batch(&rows).context("echo's rows as columns")?.columns().to_vec();
            let columns_before = f.columnar_batches();
            let (row_bytes, bytes) = (encoded(&rows), encoded_columns(&rows)?);
            client.set_payload(&bytes);
            tokio::task::block_in_place(|| -> Result<()> {
                in_process(&rows, warm);
                raw_socket(&mut client, batch, warm).map(drop)
            })?;
            oort(&f, &rows, warm).await?;
            oort(&rows_f, &rows, warm).await?;
            let (mut inproc, mut raw, mut oort_rate, mut go_rate, mut two_rate) = (0f64, 0f64, 0f64, 0f64, 0f64);
            let (mut rows_rate, mut columns_rate) = (0f64, 0f64);
            let (mut host_cpu, mut plugin_cpu, mut oort_rows) = (0f64, 0f64, 0f64);
            for _ in 0..rounds {
                let (i, r) = tokio::task::block_in_place(|| -> Result<(f64, f64)> {
                    // A fresh echo server each round: a new chance of the
                    // scheduler's placement of the two ends.
                    client = EchoClient::start(&[])?;
                    client.set_payload(&bytes);
                    raw_socket(&mut client, batch, warm / 4)?;
                    let raw = raw_socket(&mut client, batch, dur)?;
                    Ok((in_process(&rows, dur), raw))
                })?;
                rows_rate = rows_rate.max(oort(&rows_f, &rows, dur).await?);
                let (h0, p0) = (cpu_secs(std::process::id())?, cpu_secs(plugin_pid)?);
                let t = Instant::now();
                let o = oort(&f, &rows, dur).await?;
                oort_rows += o * t.elapsed().as_secs_f64();
                host_cpu += cpu_secs(std::process::id())? - h0;
                plugin_cpu += cpu_secs(plugin_pid)? - p0;
                two_rate = two_rate.max(oort_two_in_flight(&f, &rows, dur).await?);
                columns_rate = columns_rate.max(oort_columns_two_in_flight(&f, &arrays, batch, dur).await?);
                (inproc, raw, oort_rate) = (inproc.max(i), raw.max(r), oort_rate.max(o));
                if let Ok(exe) = &go_host {
                    let g =
                        tokio::task::block_in_place(|| goplugin::throughput(exe, batch, payload.go_name(), dur, warm))?;
                    go_rate = go_rate.max(g);
                }
            }
            let sent_columns = f.columnar_batches() - columns_before;
            if batch >= oort_host::COLUMNS_FROM_ROWS && sent_columns == 0 {
                bail!("the Arrow instance sent no batch of {batch} rows as columns");
            }
            let best = oort_rate.max(two_rate).max(columns_rate);
            let (go_cell, go_ratio) = match go_host {
                Ok(_) => (rate(go_rate), format!("{:.1}×", best / go_rate)),
                Err(_) => ("n/a".to_string(), "n/a".to_string()),
            };
            let (host_ns, plugin_ns) = (host_cpu / oort_rows * 1e9, plugin_cpu / oort_rows * 1e9);
            // The rule pipeline keeps two batches in flight, and a rule on
            // columns hands the function its arrays: the targets are judged
            // on the best of the Arrow columns.
            let target = match (batch, payload) {
                (4096, Payload::Int) => format!(
                    "≥ 3× go-plugin: {}; ≥ 25 % raw: {}",
                    met(go_host.is_ok() && best >= 3.0 * go_rate),
                    met(best >= 0.25 * raw)
                ),
                (4096, Payload::Text100) => {
                    format!("≥ 3× go-plugin: {}", met(go_host.is_ok() && best >= 3.0 * go_rate))
                }
                _ => String::new(),
            };
            table.row(vec![
                payload.name().into(),
                batch.to_string(),
                format!("{} / {}", row_bytes.len(), bytes.len()),
                rate(inproc),
                rate(raw),
                rate(rows_rate),
                rate(oort_rate),
                rate(two_rate),
                rate(columns_rate),
                format!("{:.1}×", oort_rate / rows_rate),
                pct(best / raw),
                go_cell,
                go_ratio,
                format!("{host_ns:.0} + {plugin_ns:.0}"),
                target,
            ]);
            cells.push(json!({
                "call": payload.name(), "batch": batch, "bytes_per_batch": bytes.len(),
                "row_bytes_per_batch": row_bytes.len(),
                "in_process_rows_per_s": inproc, "raw_socket_rows_per_s": raw, "oort_rows_per_s": oort_rate,
                "oort_row_encoding_rows_per_s": rows_rate,
                "oort_two_in_flight_rows_per_s": two_rate,
                "oort_columns_two_in_flight_rows_per_s": columns_rate,
                "goplugin_rows_per_s": go_host.is_ok().then_some(go_rate),
                "oort_host_cpu_ns_per_row": host_ns, "oort_plugin_cpu_ns_per_row": plugin_ns,
            }));
        }
    }
    let rust_arrow_4096 = cells
        .iter()
        .find(|c| c["call"] == "echo(int)" && c["batch"] == 4096)
        .and_then(|c| c["oort_rows_per_s"].as_f64())
        .unwrap_or(f64::NAN);
    host.host.close_function(&f).await;
    host.host.shutdown().await;
    rows_host.host.close_function(&rows_f).await;
    rows_host.host.shutdown().await;
    table.print();
    println!(
        "Oort rows: the host sends the row messages (`--data-encoding rows`); Oort auto: the default, Arrow IPC \
         columns from {} rows up (rows below), which echo answers with its argument column (`exec_columns`); \
         Oort columns: `FunctionInstance::exec_columns` with the argument arrays, as a rule on columns calls it \
         (the arrays are encoded as they are and the answer's array is kept, no value per row). \
         The raw socket moves the Arrow request's bytes. Raw socket at small batches: a round trip is ~4 µs when both ends share a vCPU and ~50-60 µs \
         when the peer is woken on the other vCPU; table b has the pinned, same-CPU floor.",
        oort_host::COLUMNS_FROM_ROWS
    );
    match &go_host {
        Ok(_) => println!(
            "{}: a hashicorp/go-plugin host (echo-host) calling its gRPC plugin (echo-plugin), one unary Echo call \
             per batch (repeated bytes, 8 or 100 bytes per row); a fresh run per round.\n",
            goplugin::NAME
        ),
        Err(reason) => println!("hashicorp go-plugin (gRPC) baseline: not measured: {reason}\n"),
    }
    let python = python_functions(rounds, dur, warm, rust_arrow_4096).await?;
    Ok(json!({
        "rounds": rounds, "round_seconds": dur.as_secs_f64(), "cells": cells,
        "goplugin_not_measured": go_host.err(), "python": python,
    }))
}

/// Table a2: the Python SDK's `pyecho` plugin at 4096 rows: the vectorized
/// `echo` (pyarrow arrays in and out) and the row API's `echo_rows`, each on
/// both encodings, against the Rust `echo` on Arrow.
async fn python_functions(rounds: usize, dur: Duration, warm: Duration, rust_rate: f64) -> Result<Json> {
    let exe = oort_tests::bin_dir().join("python").join("pyecho");
    if !exe.exists() {
        println!("a2. Python functions: not measured: {} is missing (scripts/build-python.sh)\n", exe.display());
        return Ok(json!({ "not_measured": "pyecho missing" }));
    }
    let mut table = Table::new(
        &format!("a2. Python functions, echo(int) at 4096 rows (rows/s; best of {rounds} × {} ms)", dur.as_millis()),
        &[
            ("function", false),
            ("encoding", false),
            ("rows/s", true),
            ("vs Rust echo (Arrow)", true),
            ("target", false),
        ],
    );
    let rows = Payload::Int.rows(4096);
    let mut results = Vec::new();
    for (symbol, encoding, label) in [
        ("echo", DataEncoding::Auto, "vectorized (pyarrow), Arrow"),
        ("echo_rows", DataEncoding::Auto, "row API, Arrow"),
        ("echo_rows", DataEncoding::Rows, "row API, rows"),
    ] {
        let plugins = PluginsDir::new();
        let dest = plugins.path().join("functions").join("pyecho");
        std::fs::copy(&exe, &dest)?;
        std::fs::copy(exe.with_extension("json"), plugins.path().join("functions").join("pyecho.json"))?;
        let host = TestHost::with_encoding(plugins.path(), bench_timeouts(), encoding);
        let f = host.host.open_function("bench", "fn_0", symbol, RestartStrategy::default()).await?;
        oort(&f, &rows, warm).await?;
        let mut best = 0f64;
        for _ in 0..rounds {
            best = best.max(oort(&f, &rows, dur).await?);
        }
        host.host.close_function(&f).await;
        host.host.shutdown().await;
        let ratio = best / rust_rate;
        let target = if symbol == "echo" { format!("≥ 50 %: {}", met(ratio >= 0.5)) } else { "reported".into() };
        table.row(vec![symbol.into(), label.into(), rate(best), pct(ratio), target]);
        results.push(json!({ "function": symbol, "encoding": label, "rows_per_s": best, "vs_rust_arrow": ratio }));
    }
    table.print();
    println!("pyecho: plugins/python/oort_plugins/pyecho.py; its echo returns the argument array itself.\n");
    Ok(json!(results))
}

/// Single-row round trips: raw socket, then Oort. Samples in nanoseconds.
struct Samples {
    raw: Vec<u64>,
    /// Oort on the framed Exec path.
    oort: Vec<u64>,
    /// Oort with the framed path off: the gRPC stream.
    grpc: Vec<u64>,
    /// Context switches during the kept Oort calls: (this process, the plugin).
    oort_switches: (u64, u64),
    /// Context switches during the kept raw round trips: (this process, the echo server).
    raw_switches: (u64, u64),
}

impl Samples {
    fn summary(&mut self) -> Json {
        self.raw.sort_unstable();
        self.oort.sort_unstable();
        self.grpc.sort_unstable();
        let q = |v: &[u64], p: f64| quantile(v, p) as f64 / 1e3;
        let per = |x: u64| x as f64 / self.raw.len().max(1) as f64;
        json!({
            "oort_switches_per_call": [per(self.oort_switches.0), per(self.oort_switches.1)],
            "raw_switches_per_call": [per(self.raw_switches.0), per(self.raw_switches.1)],
            "samples": self.raw.len(),
            "raw_p50_us": q(&self.raw, 0.5), "raw_p99_us": q(&self.raw, 0.99),
            "oort_p50_us": q(&self.oort, 0.5), "oort_p99_us": q(&self.oort, 0.99),
            "oort_grpc_p50_us": q(&self.grpc, 0.5), "oort_grpc_p99_us": q(&self.grpc, 0.99),
        })
    }
}

async fn single_row(pinned: bool, n: usize) -> Result<Json> {
    let launcher = pinned.then_some("taskset -c 0");
    let (_plugins, host, f) = echo_instance(launcher, DataEncoding::Auto, false).await?;
    let (_grpc_plugins, grpc_host, g) = echo_instance(launcher, DataEncoding::Auto, true).await?;
    let mut instances = [Some(f), Some(g)];
    let mut client = EchoClient::start(if pinned { &["taskset", "-c", "0"] } else { &[] })?;
    let rows = Payload::Int.rows(1);
    client.set_payload(&encoded(&rows));
    let mut s = Samples {
        raw: Vec::with_capacity(n),
        oort: Vec::with_capacity(n),
        grpc: Vec::with_capacity(n),
        oort_switches: (0, 0),
        raw_switches: (0, 0),
    };
    let plugin = instances[0].as_ref().and_then(|f| f.pid()).context("echo pid")?;
    let (me, server) = (std::process::id(), client.pid());
    let switches = |other: u32| -> Result<(u64, u64)> { Ok((ctx_switches(me)?, ctx_switches(other)?)) };
    // Ten blocks per method, alternating, so that both see the same machine
    // load; the first block of each is a warm-up and is not kept.
    let block = n / 10;
    for b in 0..11 {
        let keep = b > 0;
        let before = switches(server)?;
        tokio::task::block_in_place(|| -> Result<()> {
            for _ in 0..block {
                let t = Instant::now();
                client.round_trip()?;
                if keep {
                    s.raw.push(t.elapsed().as_nanos() as u64);
                }
            }
            Ok(())
        })?;
        let after = switches(server)?;
        if keep {
            s.raw_switches.0 += after.0 - before.0;
            s.raw_switches.1 += after.1 - before.1;
        }
        for (i, slot) in instances.iter_mut().enumerate() {
            let f = slot.take().context("instance")?;
            let before = switches(plugin)?;
            // On a runtime worker, as a rule's pipeline calls it in the daemon
            // (a call from `block_on`'s thread is woken through a worker: one
            // more hop).
            let rows = rows.clone();
            let (f, times) = tokio::spawn(async move {
                let mut times = Vec::with_capacity(block);
                for _ in 0..block {
                    let t = Instant::now();
                    f.exec(&rows).await?;
                    times.push(t.elapsed().as_nanos() as u64);
                }
                anyhow::Ok((f, times))
            })
            .await??;
            *slot = Some(f);
            let after = switches(plugin)?;
            if keep && i == 0 {
                s.oort.extend(times);
                s.oort_switches.0 += after.0 - before.0;
                s.oort_switches.1 += after.1 - before.1;
            } else if keep {
                s.grpc.extend(times);
            }
        }
    }
    let [f, g] = instances;
    for (host, f) in [(&host, f), (&grpc_host, g)] {
        if let Some(f) = f {
            host.host.close_function(&f).await;
        }
        host.host.shutdown().await;
    }
    Ok(s.summary())
}

fn samples(opts: &Opts) -> usize {
    if opts.quick {
        2_000
    } else {
        20_000
    }
}

/// `--latency-child`: the pinned half of scenario b, run by a copy of this
/// executable started under `taskset -c 0`; prints its result as one JSON line.
pub async fn latency_child(opts: &Opts) -> Result<()> {
    let result = single_row(true, samples(opts)).await?;
    println!("{result}");
    Ok(())
}

fn pinned_run(opts: &Opts) -> Result<Json> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new("taskset");
    cmd.args(["-c", "0"]).arg(&exe).arg("--latency-child");
    if opts.quick {
        cmd.arg("--quick");
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output().context("run taskset")?;
    if !out.status.success() {
        bail!("the pinned latency run failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("no result from the pinned run")?;
    Ok(serde_json::from_str(line)?)
}

fn taskset_available() -> bool {
    std::process::Command::new("taskset")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Scenario b.
pub async fn latency(opts: &Opts) -> Result<Json> {
    let n = samples(opts);
    let unpinned = single_row(false, n).await?;
    let pinned = if taskset_available() { Some(tokio::task::block_in_place(|| pinned_run(opts))?) } else { None };
    // The go-plugin baseline, after Oort's runs: unpinned, then with the host
    // (and the plugin it starts, which inherits the affinity) on CPU 0.
    let warm = if opts.quick { Duration::from_millis(30) } else { Duration::from_millis(200) };
    let go = goplugin::host().and_then(|exe| {
        tokio::task::block_in_place(|| -> Result<(Json, Option<Json>)> {
            let unpinned = goplugin::latency(&exe, &[], n, warm)?;
            let pinned =
                if pinned.is_some() { Some(goplugin::latency(&exe, &["taskset", "-c", "0"], n, warm)?) } else { None };
            Ok((unpinned, pinned))
        })
        .map_err(|e| format!("{e:#}"))
    });
    let mut table = Table::new(
        "b. Single-row call latency (µs; one row per call, one caller)",
        &[
            ("variant", false),
            ("raw socket p50", true),
            ("raw socket p99", true),
            ("Oort p50", true),
            ("Oort p99", true),
            ("Oort over gRPC p50", true),
            ("go-plugin (gRPC) p50", true),
            ("go-plugin (gRPC) p99", true),
            ("Oort p50 / raw p50", true),
            ("Oort p50 / go-plugin p50", true),
            ("context switches per call: raw / Oort", true),
            ("issue 15: ≤ 2×", false),
            ("target ≤ 1.5×", false),
        ],
    );
    let switches = |pair: &Json| {
        let g = |i: usize| pair[i].as_f64().unwrap_or(f64::NAN);
        format!("{:.1}", g(0) + g(1))
    };
    let go_rows = match &go {
        Ok((u, p)) => [Some(u), p.as_ref()],
        Err(_) => [None, None],
    };
    for ((name, r), go_r) in
        [("unpinned", Some(&unpinned)), ("pinned to CPU 0", pinned.as_ref())].into_iter().zip(go_rows)
    {
        match r {
            Some(r) => {
                let g = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                let ratio = g("oort_p50_us") / g("raw_p50_us");
                let (go_p50, go_p99, go_ratio) = match go_r {
                    Some(go_r) => {
                        let p50 = go_r["p50_us"].as_f64().unwrap_or(f64::NAN);
                        let p99 = go_r["p99_us"].as_f64().unwrap_or(f64::NAN);
                        (us(p50), us(p99), format!("{:.2}×", g("oort_p50_us") / p50))
                    }
                    None => ("n/a".to_string(), "n/a".to_string(), "n/a".to_string()),
                };
                table.row(vec![
                    name.into(),
                    us(g("raw_p50_us")),
                    us(g("raw_p99_us")),
                    us(g("oort_p50_us")),
                    us(g("oort_p99_us")),
                    us(g("oort_grpc_p50_us")),
                    go_p50,
                    go_p99,
                    format!("{ratio:.1}×"),
                    go_ratio,
                    format!("{} / {}", switches(&r["raw_switches_per_call"]), switches(&r["oort_switches_per_call"])),
                    met(ratio <= 2.0),
                    met(ratio <= 1.5),
                ]);
            }
            None => {
                let na = "n/a (taskset missing)".to_string();
                let mut row = vec![name.to_string()];
                row.extend(std::iter::repeat_n(na, 12));
                table.row(row);
            }
        }
    }
    table.print();
    let goplugin = match go {
        Ok((u, p)) => {
            println!(
                "{}: {n} one-row calls of a hashicorp/go-plugin host (echo-host) to its gRPC plugin, one unary Echo \
                 call each; pinned: `taskset -c 0 echo-host` (the plugin inherits the affinity).\n",
                goplugin::NAME
            );
            json!({ "unpinned": u, "pinned": p })
        }
        Err(reason) => {
            println!("hashicorp go-plugin (gRPC) baseline: not measured: {reason}\n");
            json!({ "not_measured": reason })
        }
    };
    Ok(json!({ "unpinned": unpinned, "pinned": pinned, "goplugin": goplugin }))
}
