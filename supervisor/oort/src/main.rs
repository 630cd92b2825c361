//! The `oort` binary: argument parsing and logging set-up only; everything
//! else lives in the library.
#![forbid(unsafe_code)]

// The daemon allocates per record (decoded batches, projected rows); glibc's
// malloc showed up as half of its CPU profile under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use oort::api::ApiConfig;
use oort::cli::{self, Remote};
use oort::daemon::{self, DaemonConfig};
use oort::shutdown::Shutdown;
use oort_host::catalog::PluginKind;
use oort_host::process::{RuntimeDir, Timeouts};

#[derive(Parser)]
#[command(name = "oort", version, about = "Out-of-process plugin supervisor for eKuiper-style extensions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Manage the plugins of a running daemon.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Manage streams.
    Stream {
        #[command(subcommand)]
        command: StreamCommand,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Manage rules.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The daemon's cluster (cluster mode only).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Internal: the reaper process `oort serve` starts (kills the plugin
    /// trees of a supervisor that died by SIGKILL).
    #[command(name = "__reaper", hide = true)]
    Reaper { runtime_dir: PathBuf },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Folder for the daemon's data.
    #[arg(long, env = "OORT_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Folder holding sources/, sinks/ and functions/.
    #[arg(long, env = "OORT_PLUGINS_DIR", default_value = "plugins")]
    plugins_dir: PathBuf,
    /// Address of the REST API. Loopback unless you say otherwise.
    #[arg(long, env = "OORT_REST_ADDR", default_value = "127.0.0.1:9081")]
    rest_addr: SocketAddr,
    /// Address of the gRPC endpoint (health, reflection): unix:PATH or HOST:PORT.
    #[arg(long, env = "OORT_GRPC_ADDR")]
    grpc_addr: Option<String>,
    /// Parent folder of the private socket folder [default: $XDG_RUNTIME_DIR/oort or /tmp/oort-<uid>].
    #[arg(long, env = "OORT_RUNTIME_DIR")]
    runtime_dir: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` on the REST API (all but /ping)
    /// and on every gRPC admin call (health and reflection stay open).
    #[arg(long, env = "OORT_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Time a plugin has from spawn to ready, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    start_timeout_ms: u64,
    /// Deadline of every call on a plugin, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    call_timeout_ms: u64,
    /// Log lines as text for people, or as one JSON object per line for machines.
    #[arg(long, env = "OORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The Python that runs portable plugins written in Python (it needs the
    /// oort_plugin package installed).
    #[arg(long, env = "OORT_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// How function batches travel to plugins: `auto` sends Arrow columns to
    /// plugins that take them (docs/protocol.md, "Columnar batches"), `rows`
    /// always sends the row messages.
    #[arg(long, env = "OORT_DATA_ENCODING", value_enum, default_value_t = Encoding::Auto)]
    data_encoding: Encoding,
    /// How `Exec` batches travel to function plugins: `auto` uses the framed
    /// path of plugins that offer it (docs/protocol.md, "The framed Exec
    /// path"), `grpc` always the gRPC stream.
    #[arg(long, env = "OORT_EXEC_TRANSPORT", value_enum, default_value_t = ExecTransport::Auto)]
    exec_transport: ExecTransport,
    /// What running rules do when a newer version of one of their plugins
    /// arrives: `immediate` restarts them on it from their last checkpoint,
    /// `manual` leaves them on theirs until they restart or
    /// `oort plugin upgrade` moves them. New rules always get the newest.
    #[arg(long, env = "OORT_UPGRADE", value_enum, default_value_t = Upgrade::Manual)]
    upgrade: Upgrade,
    /// How often the plugins folder is read for files copied in by hand, in
    /// milliseconds.
    #[arg(long, default_value_t = 2_000)]
    plugin_scan_interval_ms: u64,
    /// How long a plugin version that rules were moved to is watched, in
    /// milliseconds: if its processes crash twice or a moved rule fails
    /// within it, the version is rolled back automatically.
    #[arg(long, default_value_t = 10_000)]
    upgrade_grace_ms: u64,
    /// Keep every installed plugin version. By default, once an upgrade ran
    /// through its grace period, the older versions of the plugin that no
    /// rule runs or pins are removed, except the one a rollback goes to.
    #[arg(long)]
    keep_unused_versions: bool,
    /// Run as a node of a cluster coordinated by etcd: its client URLs,
    /// comma-separated (`http://127.0.0.1:2379`). Without it the daemon runs
    /// alone, as it always did.
    #[arg(long, env = "OORT_CLUSTER", value_delimiter = ',')]
    cluster: Vec<String>,
    /// This node's id in the cluster, unique among live nodes (letters,
    /// digits, '_' and '-'). Default: the host name.
    #[arg(long, env = "OORT_NODE_ID")]
    node_id: Option<String>,
    /// The lease the node's registration is bound to, in whole seconds: how
    /// long after the node stops (a crash, a pause, a cut from etcd) the
    /// others see it gone.
    #[arg(long, default_value_t = 5)]
    lease_ttl_s: u64,
    /// How many rules this node takes at most.
    #[arg(long)]
    capacity: Option<u32>,
    /// A label rules may ask for, `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Cluster mode: where every completed checkpoint is published for the
    /// other nodes to restore after a failover: `file:///shared/dir`, a
    /// folder every node mounts. Without it a rule that moves to another
    /// node starts from an empty state.
    #[arg(long, env = "OORT_CHECKPOINT_STORE")]
    checkpoint_store: Option<String>,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The live nodes, with the seconds left on each one's lease.
    Status,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("a label is key=value, not {s:?}")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Upgrade {
    Immediate,
    Manual,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExecTransport {
    Auto,
    Grpc,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Encoding {
    Auto,
    Rows,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RemoteArgs {
    /// The daemon's REST address.
    #[arg(long, global = true, env = "OORT_SERVER", default_value = "http://127.0.0.1:9081")]
    server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Bearer token for the REST API.
    #[arg(long, global = true, env = "OORT_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// List the plugins of a kind.
    List { kind: KindArg },
    /// Describe the plugin that runs under a name.
    Describe { kind: KindArg, name: String },
    /// Install a plugin from a .zip or .tar.gz (a path or an http(s) URL).
    Install {
        kind: KindArg,
        name: String,
        file: String,
        /// Expected SHA-256 of the archive, in hex.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Move the running rules that use a plugin onto the version they would
    /// start with now (the newest, or the newest their pin accepts).
    Upgrade { kind: KindArg, name: String },
    /// Hold back a plugin's current version and move its running rules to
    /// the version before it (until the held file is removed).
    Rollback { kind: KindArg, name: String },
    /// Remove every version of a plugin, or with --version one of them
    /// (refused while a rule runs it or pins it).
    Remove {
        kind: KindArg,
        name: String,
        /// Remove only this version (as `describe` lists it).
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Subcommand)]
enum StreamCommand {
    /// Create a stream: `oort stream create 'CREATE STREAM demo () WITH (TYPE="random")'`.
    Create { sql: String },
    /// List streams.
    List,
    /// Describe a stream.
    Describe { name: String },
    /// Drop a stream no rule uses.
    Drop { name: String },
}

#[derive(Subcommand)]
enum RuleCommand {
    /// Create a rule from inline JSON or `--file rule.json`.
    Create {
        /// The rule as JSON.
        #[arg(value_name = "JSON", required_unless_present = "file", conflicts_with = "file")]
        rule: Option<String>,
        /// A file holding the rule as JSON.
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// List rules and their status.
    List,
    /// Show a rule's definition.
    Describe { id: String },
    /// Show a rule's status and metrics.
    Status { id: String },
    /// Start a rule.
    Start { id: String },
    /// Stop a rule.
    Stop { id: String },
    /// Restart a rule.
    Restart { id: String },
    /// Delete a rule and its state.
    Delete { id: String },
    /// Discard a rule's checkpoints and state (after a checkpoint cannot be restored).
    ResetState { id: String },
}

impl From<RemoteArgs> for Remote {
    fn from(a: RemoteArgs) -> Remote {
        Remote { server: a.server, token: a.token, json: a.json }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Source,
    Sink,
    Function,
    /// An eKuiper portable plugin package (a zip with several sources, sinks and functions).
    Portable,
}

impl KindArg {
    /// The REST path segment: `/plugins/<dir>`.
    fn dir(self) -> &'static str {
        match self {
            KindArg::Source => PluginKind::Source.dir_name(),
            KindArg::Sink => PluginKind::Sink.dir_name(),
            KindArg::Function => PluginKind::Function.dir_name(),
            KindArg::Portable => "portables",
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Reaper { runtime_dir } = &cli.command {
        // No runtime, no logging set-up: it only waits and kills.
        return oort_host::process::reaper_main(runtime_dir);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("OORT_LOG").unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal;
    let format = match &cli.command {
        Command::Serve(a) => a.log_format,
        _ => LogFormat::Text,
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object per line, fields at the top level next to "message".
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oort: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: scripts read the first line of stderr.
            eprintln!("oort: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The machine's host name, the default node id.
fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| anyhow::anyhow!("cannot read the host name for --node-id ({e}); give --node-id"))?;
    Ok(name.trim().to_string())
}

/// Prints a command's output; a reader that went away (`| head`) is not an error.
fn print_out(out: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{out}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => {
            let config = DaemonConfig {
                data_dir: a.data_dir,
                plugins_dir: a.plugins_dir,
                runtime_root: a.runtime_dir.unwrap_or_else(RuntimeDir::default_root),
                rest_addr: a.rest_addr,
                grpc_addr: a.grpc_addr,
                api: ApiConfig { bearer_token: a.api_token },
                python: a.python,
                data_encoding: match a.data_encoding {
                    Encoding::Auto => oort_host::DataEncoding::Auto,
                    Encoding::Rows => oort_host::DataEncoding::Rows,
                },
                framed_exec: a.exec_transport == ExecTransport::Auto,
                upgrade: match a.upgrade {
                    Upgrade::Immediate => daemon::UpgradePolicy::Immediate,
                    Upgrade::Manual => daemon::UpgradePolicy::Manual,
                },
                plugin_scan_interval: Duration::from_millis(a.plugin_scan_interval_ms.max(100)),
                upgrade_grace: Duration::from_millis(a.upgrade_grace_ms),
                keep_unused_versions: a.keep_unused_versions,
                cluster: match a.cluster.is_empty() {
                    true => None,
                    false => Some(daemon::ClusterArgs {
                        endpoints: a.cluster,
                        node_id: match a.node_id {
                            Some(id) => id,
                            None => host_name()?,
                        },
                        lease_ttl: Duration::from_secs(a.lease_ttl_s),
                        capacity: a.capacity,
                        labels: a.labels.into_iter().collect(),
                        checkpoint_store: a.checkpoint_store,
                    }),
                },
                timeouts: Timeouts {
                    start: Duration::from_millis(a.start_timeout_ms),
                    call: Duration::from_millis(a.call_timeout_ms),
                    ..Timeouts::default()
                },
            };
            let shutdown = Shutdown::default();
            let signals = shutdown.clone();
            tokio::spawn(async move { signals.wait_for_signal().await });
            daemon::run(config, shutdown).await
        }
        Command::Plugin { command, remote } => {
            let r = remote.into();
            let out = match command {
                PluginCommand::List { kind } => cli::plugin_list(&r, kind.dir()).await?,
                PluginCommand::Describe { kind, name } => cli::plugin_describe(&r, kind.dir(), &name).await?,
                PluginCommand::Install { kind, name, file, sha256 } => {
                    cli::plugin_install(&r, kind.dir(), &name, &file, sha256.as_deref()).await?
                }
                PluginCommand::Upgrade { kind, name } => cli::plugin_upgrade(&r, kind.dir(), &name).await?,
                PluginCommand::Rollback { kind, name } => cli::plugin_rollback(&r, kind.dir(), &name).await?,
                PluginCommand::Remove { kind, name, version } => {
                    cli::plugin_remove(&r, kind.dir(), &name, version.as_deref()).await?
                }
            };
            print_out(&out)
        }
        Command::Stream { command, remote } => {
            let r = remote.into();
            let out = match command {
                StreamCommand::Create { sql } => cli::stream_create(&r, &sql).await?,
                StreamCommand::List => cli::stream_list(&r).await?,
                StreamCommand::Describe { name } => cli::stream_describe(&r, &name).await?,
                StreamCommand::Drop { name } => cli::stream_drop(&r, &name).await?,
            };
            print_out(&out)
        }
        Command::Rule { command, remote } => {
            let r = remote.into();
            let out = match command {
                RuleCommand::Create { rule, file } => {
                    let text = match (rule, file) {
                        (Some(j), _) => j,
                        (None, Some(f)) => std::fs::read_to_string(&f)
                            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?,
                        (None, None) => anyhow::bail!("give the rule as JSON or with --file"),
                    };
                    cli::rule_create(&r, &text).await?
                }
                RuleCommand::List => cli::rule_list(&r).await?,
                RuleCommand::Describe { id } => cli::rule_describe(&r, &id).await?,
                RuleCommand::Status { id } => cli::rule_status(&r, &id).await?,
                RuleCommand::Start { id } => cli::rule_action(&r, &id, "start").await?,
                RuleCommand::Stop { id } => cli::rule_action(&r, &id, "stop").await?,
                RuleCommand::Restart { id } => cli::rule_action(&r, &id, "restart").await?,
                RuleCommand::Delete { id } => cli::rule_delete(&r, &id).await?,
                RuleCommand::ResetState { id } => cli::rule_action(&r, &id, "reset-state").await?,
            };
            print_out(&out)
        }
        Command::Cluster { command, remote } => {
            let r = remote.into();
            let out = match command {
                ClusterCommand::Status => cli::cluster_status(&r).await?,
            };
            print_out(&out)
        }
        Command::Reaper { .. } => unreachable!("handled before the runtime starts"),
    }
}
