//! A supervisor in miniature for tests that must kill the supervisor itself:
//! it opens the requested function instances, prints their pids, then waits
//! to be killed.
//!
//! Usage: `oort-test-host <plugins-dir> <runtime-root> <rule>:<function>...`
//!
//! Like `oort serve`, it installs the daemon guard (subreaper, reaper
//! process), so it also answers the reaper's hidden subcommand.
use std::path::PathBuf;
use std::sync::Arc;

use oort_host::process::{RestartStrategy, RuntimeDir, Timeouts};
use oort_host::state::StateRegistry;
use oort_host::{Host, HostConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(oort_host::process::REAPER_COMMAND) {
        oort_host::process::reaper_main(std::path::Path::new(&args[2]));
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(host_main())
}

async fn host_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    let mut args = std::env::args().skip(1);
    let plugins = PathBuf::from(args.next().expect("plugins dir"));
    let root = PathBuf::from(args.next().expect("runtime root"));
    let runtime = Arc::new(RuntimeDir::create(&root)?);
    oort_host::process::install_daemon_guard(&runtime, &std::env::current_exe()?)?;
    let state = Arc::new(StateRegistry::default());
    let socket = oort::api::bind_state(runtime.state_socket())?;
    tokio::spawn(oort::api::serve_state(socket, state.clone(), Default::default()));
    let host = Host::new(
        HostConfig {
            plugins_dir: plugins,
            timeouts: Timeouts::default(),
            python: "python3".into(),
            data_encoding: Default::default(),
            framed_exec: true,
        },
        runtime.clone(),
        state,
    );
    println!("RUNTIME {}", runtime.path().display());
    let mut open = Vec::new();
    for (i, spec) in args.enumerate() {
        let (rule, function) = spec.split_once(':').expect("rule:function");
        let f = host.open_function(rule, &format!("op{i}"), function, RestartStrategy::default()).await?;
        println!("PID {}", f.pid().expect("running"));
        open.push(f);
    }
    println!("READY");
    std::future::pending::<()>().await;
    Ok(())
}
