//! `oort serve`: wires catalog, processes, state and APIs together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::api::{self, ApiConfig};
use crate::cluster::{Owned, Publisher, Reconciler};
use crate::shutdown::Shutdown;
use oort_engine::Engine;
use oort_host::process::{RuntimeDir, Timeouts};
use oort_host::state::StateRegistry;
use oort_host::{Host, HostConfig};
use oort_store::{CheckpointStore, Store};

/// Everything `oort serve` is configured with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub plugins_dir: PathBuf,
    pub runtime_root: PathBuf,
    pub rest_addr: SocketAddr,
    pub grpc_addr: Option<String>,
    pub api: ApiConfig,
    pub timeouts: Timeouts,
    /// The Python of portable Python plugins.
    pub python: PathBuf,
    /// Arrow columns or rows on the function data path.
    pub data_encoding: oort_host::DataEncoding,
    /// Whether `Exec` may use a plugin's framed path.
    pub framed_exec: bool,
    /// What running rules do when a newer version of a plugin they use
    /// arrives.
    pub upgrade: UpgradePolicy,
    /// How often the plugins folder is read for files copied in by hand.
    pub plugin_scan_interval: std::time::Duration,
    /// How long a version rules moved to is watched for a crash loop.
    pub upgrade_grace: std::time::Duration,
    /// Keep every plugin version instead of removing unused old ones.
    pub keep_unused_versions: bool,
    /// Cluster mode: the etcd endpoints and this node's registration.
    pub cluster: Option<ClusterArgs>,
}

/// How `oort serve --cluster` joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterArgs {
    pub endpoints: Vec<String>,
    pub node_id: String,
    pub lease_ttl: std::time::Duration,
    pub capacity: Option<u32>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Where checkpoints are published (`file://…`).
    pub checkpoint_store: Option<String>,
}

/// What running rules do when a newer version of one of their plugins is
/// installed or copied into the plugins folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradePolicy {
    /// Each moves to it at once: restarted from its last checkpoint.
    Immediate,
    /// New rules get it; running ones keep their version until they restart
    /// or `POST /plugins/{kind}/{name}/upgrade` moves them.
    Manual,
}

/// Runs the daemon until `shutdown` fires, then stops every plugin process
/// and removes every socket before returning.
pub async fn run(config: DaemonConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    oort_store::make_private_dir(&config.data_dir)?;
    let runtime = Arc::new(RuntimeDir::create(&config.runtime_root)?);
    // Raised open-files limit, subreaper, and the reaper that kills the plugin
    // trees should this process be SIGKILLed.
    let exe = std::env::current_exe().context("cannot find the oort executable for the reaper process")?;
    oort_host::process::install_daemon_guard(&runtime, &exe).context("cannot set up plugin process hygiene")?;
    let state = Arc::new(StateRegistry::default());
    let host = Arc::new(Host::new(
        HostConfig {
            plugins_dir: config.plugins_dir.clone(),
            timeouts: config.timeouts,
            python: config.python.clone(),
            data_encoding: config.data_encoding,
            framed_exec: config.framed_exec,
        },
        runtime.clone(),
        state.clone(),
    ));

    let state_socket = api::bind_state(runtime.state_socket())
        .with_context(|| format!("cannot listen on {} for the State service", runtime.state_socket().display()))?;
    let state_task = tokio::spawn(api::serve_state(state_socket, state, shutdown.clone()));
    let store = Arc::new(Store::open(&config.data_dir.join("db"))?);
    let listener = tokio::net::TcpListener::bind(config.rest_addr)
        .await
        .with_context(|| format!("cannot listen on {} for the REST API", config.rest_addr))?;
    // In cluster mode the node registers once its REST API is bound (the
    // address it publishes answers at once), and before its engine exists:
    // the engine publishes checkpoints through the membership.
    let cluster = match &config.cluster {
        Some(c) => Some(join_cluster(c, listener.local_addr()?.to_string()).await?),
        None => None,
    };
    let mut engine = Engine::load(store, host.clone(), config.data_dir.join("conf").join("sources"))?
        .with_upgrade_grace(config.upgrade_grace);
    if config.keep_unused_versions {
        engine = engine.keeping_unused_versions();
    }
    if let Some(node) = &cluster {
        if let Some(checkpoints) = &node.checkpoints {
            let publisher = Publisher::start(node.membership.clone(), checkpoints.clone(), node.owned.clone());
            engine = engine.publishing_checkpoints(publisher);
        }
    }
    let engine = Arc::new(engine);
    tracing::info!(
        rest = %listener.local_addr()?,
        plugins = %config.plugins_dir.display(),
        runtime = %runtime.path().display(),
        "oort is serving"
    );
    // Every endpoint is bound before the REST API answers: a client that saw
    // `/ping` succeed can use the gRPC endpoint at once.
    let grpc_task = match &config.grpc_addr {
        Some(addr) => {
            let listener = api::bind_grpc(addr).await?;
            let token = config.api.bearer_token.clone();
            let membership = cluster.as_ref().map(|c| c.membership.clone());
            Some(tokio::spawn(api::serve_grpc(
                listener,
                host.clone(),
                engine.clone(),
                membership,
                token,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    // Alone, the node resumes the rules it ran; in a cluster, it runs the
    // ones it owns, which its reconcile loop decides.
    let reconcile_task = match &cluster {
        None => {
            engine.resume().await;
            None
        }
        Some(node) => {
            let reconciler = Reconciler::new(
                node.membership.clone(),
                engine.clone(),
                host.clone(),
                node.checkpoints.clone(),
                node.owned.clone(),
            );
            Some(tokio::spawn(reconciler.run(shutdown.clone())))
        }
    };
    let scan_task = tokio::spawn(watch_plugins(
        host.clone(),
        engine.clone(),
        config.upgrade,
        config.plugin_scan_interval,
        shutdown.clone(),
    ));
    let membership = cluster.as_ref().map(|c| c.membership.clone());
    let app =
        api::router(host.clone(), engine.clone(), membership.clone(), config.plugins_dir.clone(), config.api.clone());
    let stop = shutdown.clone();
    let rest_task = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.wait().await }).await
    });

    shutdown.wait().await;
    scan_task.abort();
    if let Some(task) = reconcile_task {
        let _ = task.await;
    }
    tracing::info!("shutting down: stopping rules and plugin processes");
    engine.shutdown().await;
    // Only once its rules stopped does the node leave: the nodes that take
    // them over must not start them while they still run here.
    if let Some(m) = &membership {
        m.leave().await;
    }
    host.shutdown().await;
    rest_task.await?.context("REST API failed")?;
    if let Some(t) = grpc_task {
        t.await??;
    }
    state_task.await?.context("State service failed")?;
    drop(engine);
    drop(host);
    drop(runtime);
    tracing::info!("stopped");
    Ok(())
}

/// This node in a cluster.
struct ClusterNode {
    membership: Arc<oort_cluster::Membership>,
    checkpoints: Option<CheckpointStore>,
    owned: Arc<Owned>,
}

/// How long a node waits, at start, for its checkpoint store to answer.
const STORE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn join_cluster(c: &ClusterArgs, api_addr: String) -> anyhow::Result<ClusterNode> {
    let checkpoints = match &c.checkpoint_store {
        Some(url) => {
            let store = CheckpointStore::open(url).context("cannot open the checkpoint store")?;
            // Not fatal: the store may be down for a while, and checkpoints
            // complete locally until it is back; but a wrong bucket or
            // credentials should be named at once, not at the first failover.
            // Bounded: a store that does not answer must not hold the start up.
            let problem = match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.probe()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {STORE_PROBE_TIMEOUT:?}")),
            };
            if let Some(e) = problem {
                tracing::error!(
                    "the checkpoint store {url} cannot be reached (checkpoints stay on this node until it can): {e}"
                );
            }
            Some(store)
        }
        None => {
            tracing::warn!(
                "cluster mode without --checkpoint-store: a rule that moves to another node starts from an empty state"
            );
            None
        }
    };
    let membership = oort_cluster::Membership::join(oort_cluster::ClusterConfig {
        endpoints: c.endpoints.clone(),
        node_id: c.node_id.clone(),
        lease_ttl: c.lease_ttl,
        api_addr,
        capacity: c.capacity,
        labels: c.labels.clone(),
    })
    .await
    .context("cannot join the cluster")?;
    Ok(ClusterNode { membership, checkpoints, owned: Arc::default() })
}

/// Reads the plugins folder every `interval`, so that a version copied in by
/// hand is seen without a request; under [`UpgradePolicy::Immediate`], moves
/// the running rules of every plugin whose newest file changed onto it.
async fn watch_plugins(
    host: Arc<Host>,
    engine: Arc<Engine>,
    policy: UpgradePolicy,
    interval: std::time::Duration,
    shutdown: Shutdown,
) {
    let mut newest = host.newest_files();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => return,
        }
        host.rescan().await;
        let now = host.newest_files();
        if now == newest {
            continue;
        }
        if policy == UpgradePolicy::Immediate {
            for ((kind, name), path) in &now {
                if newest.get(&(*kind, name.clone())).is_some_and(|before| before != path) {
                    // A refusal or a rollback is logged where it happens.
                    let outcome = engine.upgrade(*kind, name).await;
                    if !outcome.moved.is_empty() {
                        tracing::info!(plugin = %name, kind = kind.as_str(), file = %path.display(), rules = ?outcome.moved, "rules moved to a new plugin version");
                    }
                }
            }
        }
        newest = now;
    }
}
