//! Scenarios on process costs: plugin cold start (e) and memory (f).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use oort_host::process::{RestartStrategy, Timeouts};
use oort_proto::Value;
use oort_tests::{Daemon, TestHost};
use serde_json::{json, Value as Json};

use crate::report::{self, mb, met, ms, Table};
use crate::{add_external, bench_timeouts, mem_detail, plugins_with, rss_kb, Opts};

/// Where the Go and Python plugins are built (`$OORT_BIN/{go,python}`).
pub fn external_bin() -> PathBuf {
    std::env::var_os("OORT_BIN").map(PathBuf::from).unwrap_or_else(oort_tests::bin_dir)
}

struct ColdCase {
    language: &'static str,
    plugin: &'static str,
    function: &'static str,
}

/// Scenario e.
pub async fn cold_start(opts: &Opts) -> Result<Json> {
    let reps = if opts.quick { 3 } else { 10 };
    let plugins = plugins_with(&[("functions", "echo"), ("functions", "accumulateWordCount")]);
    let mut cases = vec![
        ColdCase { language: "Rust", plugin: "echo (singleton)", function: "echo" },
        ColdCase { language: "Rust", plugin: "accumulateWordCount (constructor)", function: "accumulateWordCount" },
    ];
    let mut missing = Vec::new();
    for (language, path, plugin, function) in [
        ("Go", external_bin().join("go/geohash"), "geohash", "geohashEncode"),
        ("Python", external_bin().join("python/textstats"), "textstats", "wordCount"),
    ] {
        if path.exists() {
            add_external(&plugins, "functions", &path)?;
            cases.push(ColdCase { language, plugin, function });
        } else {
            missing.push((language, plugin, path));
        }
    }
    let host = TestHost::new(plugins.path(), bench_timeouts());
    let mut table = Table::new(
        &format!("e. Plugin cold start: Host::open_function on a fresh rule = spawn → health SERVING → Describe → Open (median of {reps})"),
        &[("language", false), ("plugin", false), ("median", true), ("min", true), ("max", true), ("target", false)],
    );
    let mut out = Vec::new();
    for case in &cases {
        let mut times = Vec::new();
        let mut last_pid = None;
        // One untimed start first: the executable's pages come from disk once.
        for i in 0..=reps {
            let rule = format!("cold{i}");
            let t = Instant::now();
            let f = host
                .host
                .open_function(&rule, "fn_0", case.function, RestartStrategy { attempts: 0, ..Default::default() })
                .await
                .with_context(|| format!("open {}", case.function))?;
            let took = t.elapsed();
            let pid = f.pid();
            host.host.close_function(&f).await;
            if pid.is_none() || pid == last_pid {
                bail!("cold start of {}: no new process (pid {pid:?})", case.plugin);
            }
            last_pid = pid;
            if i > 0 {
                times.push(took.as_secs_f64());
            }
        }
        let median = report::median(times.clone());
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let max = times.iter().copied().fold(0.0, f64::max);
        let target =
            if case.language == "Rust" { format!("≤ 20 ms: {}", met(median <= 0.020)) } else { String::new() };
        let d = Duration::from_secs_f64;
        table.row(vec![case.language.into(), case.plugin.into(), ms(d(median)), ms(d(min)), ms(d(max)), target]);
        out.push(json!({ "language": case.language, "plugin": case.plugin, "median_ms": median * 1e3, "runs_ms": times.iter().map(|t| t * 1e3).collect::<Vec<_>>() }));
    }
    match crate::goplugin::host() {
        Ok(go_host) => {
            let result = crate::goplugin::startup(&go_host, reps)?;
            let times: Vec<f64> = result["runs_ms"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_f64())
                .map(|t| t / 1e3)
                .collect();
            let median = report::median(times.clone());
            let min = times.iter().copied().fold(f64::INFINITY, f64::min);
            let max = times.iter().copied().fold(0.0, f64::max);
            let d = Duration::from_secs_f64;
            table.row(vec![
                crate::goplugin::NAME.into(),
                "echo-plugin: NewClient → Client → Dispense → first Echo".into(),
                ms(d(median)),
                ms(d(min)),
                ms(d(max)),
                String::new(),
            ]);
            out.push(json!({ "language": crate::goplugin::NAME, "plugin": "echo-plugin", "median_ms": median * 1e3, "runs_ms": result["runs_ms"] }));
        }
        Err(reason) => {
            table.row(vec![
                crate::goplugin::NAME.into(),
                format!("not measured: {reason}"),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    for (language, plugin, path) in &missing {
        let reason =
            format!("not measured: {} is not built (scripts/build-{}.sh)", path.display(), language.to_lowercase());
        table.row(vec![
            language.to_string(),
            plugin.to_string(),
            reason.clone(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        out.push(json!({ "language": language, "plugin": plugin, "not_measured": reason }));
    }
    host.host.shutdown().await;
    table.print();
    Ok(json!({ "reps": reps, "plugins": out }))
}

/// `--memory-child <n>`: opens `n` echo instances (one per rule) in a fresh
/// process and prints the RSS figures as one JSON line.
pub async fn memory_child(n: usize) -> Result<()> {
    let plugins = plugins_with(&[("functions", "echo")]);
    let timeouts = Timeouts { call: Duration::from_secs(5), ..bench_timeouts() };
    let host = TestHost::new(plugins.path(), timeouts);
    let me = std::process::id();
    let baseline = rss_kb(me)?;
    let strategy = RestartStrategy::default();
    let first = host.host.open_function("mem0", "fn_0_echo", "echo", strategy).await?;
    first.exec(&[vec![Value::Int(1)]]).await?;
    let plugin = first.pid().context("echo pid")?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let plugin_one = rss_kb(plugin)?;
    let plugin_one_detail = mem_detail(plugin)?;
    let mut instances = vec![first];
    let mut failure = None;
    for i in 1..n {
        let f = match host.host.open_function(&format!("mem{i}"), "fn_0_echo", "echo", strategy).await {
            Ok(f) => f,
            Err(e) => {
                failure = Some(format!("open of instance {}: {e}", i + 1));
                break;
            }
        };
        // One call, so that each instance holds its open Exec stream as in a running rule.
        if let Err(e) = f.exec(&[vec![Value::Int(i as i64)]]).await {
            failure = Some(format!("first call on instance {}: {e}", i + 1));
            break;
        }
        instances.push(f);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let line = json!({
        "instances": instances.len(),
        "failure": failure,
        "host_baseline_kb": baseline,
        "host_kb": rss_kb(me)?,
        "plugin_one_instance_kb": plugin_one,
        "plugin_one_instance": plugin_one_detail,
        "plugin_kb": rss_kb(plugin)?,
        "plugin_pid_unchanged": instances.iter().all(|f| f.pid() == Some(plugin)),
    });
    println!("{line}");
    std::process::exit(0);
}

/// Scenario f.
pub fn memory(opts: &Opts) -> Result<Json> {
    let n = if opts.quick { 200 } else { 1000 };
    // The idle daemon: no streams, no rules, no plugin process.
    let plugins = plugins_with(&[("functions", "echo")]);
    let daemon = Daemon::start(plugins.path(), &[]);
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kb(daemon.child.id())?;
    let idle_detail = mem_detail(daemon.child.id())?;
    drop(daemon);
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["--memory-child", &n.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run the memory child")?;
    if !out.status.success() {
        bail!("the memory child failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let child: Json =
        serde_json::from_str(stdout.lines().rev().find(|l| l.starts_with('{')).context("no memory child result")?)?;
    let kb = |k: &str| child[k].as_u64().unwrap_or(0);
    let opened = child["instances"].as_u64().unwrap_or(0);
    let total = kb("host_kb") + kb("plugin_kb");
    let mut table = Table::new(
        "f. Memory (RSS, VmRSS from /proc/<pid>/status)",
        &[("process", false), ("RSS", true), ("of which anon + file; threads", false), ("target", false)],
    );
    let detail = |d: &Json| {
        let g = |k: &str| d[k].as_u64().unwrap_or(0);
        format!("{} + {}; {} threads", mb(g("rss_anon_kb")), mb(g("rss_file_kb")), g("threads"))
    };
    table.row(vec![
        "idle daemon (oort serve, no rules)".into(),
        mb(idle),
        detail(&idle_detail),
        format!("≤ 25 MB: {}", met(idle <= 25 * 1024)),
    ]);
    table.row(vec![
        "one Rust plugin process (echo, 1 instance)".into(),
        mb(kb("plugin_one_instance_kb")),
        detail(&child["plugin_one_instance"]),
        format!("≤ 5 MB: {}", met(kb("plugin_one_instance_kb") <= 5 * 1024)),
    ]);
    let go_plugin_kb = crate::goplugin::host().ok().and_then(|h| crate::goplugin::startup(&h, 0).ok());
    let go_plugin_kb = go_plugin_kb.as_ref().and_then(|r| r["plugin_rss_kb"].as_u64());
    table.row(vec![
        format!("{} baseline: its echo-plugin process after one call", crate::goplugin::NAME),
        go_plugin_kb.map_or_else(|| "not measured".to_string(), mb),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        format!("host process (Host library), {opened} echo instances on {opened} rules"),
        format!(
            "{} (+{} over its {} baseline)",
            mb(kb("host_kb")),
            mb(kb("host_kb").saturating_sub(kb("host_baseline_kb"))),
            mb(kb("host_baseline_kb"))
        ),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        format!("the shared echo process serving {opened} instances"),
        mb(kb("plugin_kb")),
        String::new(),
        String::new(),
    ]);
    let target = if n == 1000 {
        format!("≤ 500 MB for 1000 rules: {}", met(total <= 500 * 1024 && opened == 1000))
    } else {
        "(1000 in the full run)".into()
    };
    table.row(vec![format!("host + shared echo, {opened} rules"), mb(total), String::new(), target]);
    table.print();
    if let Some(f) = child["failure"].as_str() {
        println!("**Only {opened} of {n} instances could be opened: {f}**\n");
    }
    Ok(
        json!({ "idle_daemon_kb": idle, "idle_daemon": idle_detail, "rules": n, "host": child, "goplugin_plugin_kb": go_plugin_kb }),
    )
}
