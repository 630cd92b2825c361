//! The plugin host: which process serves which rule, and the typed calls on it.
//!
//! Constructor plugins get one process per (rule, plugin file); singleton
//! plugins share one process per plugin file, with instances multiplexed by
//! instance id. Whether a plugin is a singleton is learnt from its first
//! `Describe`: it is one when every symbol it exports is a singleton.
//!
//! Architecture invariant: the host never touches a process directly; it asks
//! the process module for a [`Supervised`] handle and makes gRPC calls on the
//! channel that handle publishes. Every call has a deadline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use oort_proto::plugin::v1 as pb;
use oort_proto::{Record, Value};
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::Streaming;

use crate::catalog::{Catalog, PluginFile, PluginKind};
use crate::process::{
    Hooks, LaunchSpec, Limits, Live, ProcessError, ProcessStatus, RestartStrategy, RuntimeDir, Supervised, Timeouts,
    Usage,
};
use crate::rule::ArgInfo;
use crate::state::{ProcessKey, StateRegistry};

/// Why a plugin call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    #[error("no {kind} plugin named {name:?} in the catalog")]
    UnknownPlugin { kind: &'static str, name: String },
    #[error("no function plugin exports a function named {0:?}")]
    UnknownFunction(String),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("plugin {plugin}: {call} timed out after {timeout:?}")]
    Timeout { plugin: String, call: &'static str, timeout: std::time::Duration },
    #[error("plugin {plugin}: {call} failed: {message}")]
    Call { plugin: String, call: &'static str, message: String },
    #[error("plugin {plugin} broke the protocol: {reason}")]
    Protocol { plugin: String, reason: String },
}

/// How the host is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub plugins_dir: PathBuf,
    pub timeouts: Timeouts,
}

/// One open instance, remembered so that a restarted process can reopen it.
#[derive(Clone)]
enum OpenSpec {
    Function { spec: pb::InstanceSpec },
    Source { spec: pb::InstanceSpec, datasource: String, props: std::collections::BTreeMap<String, pb::Value> },
    Sink { spec: pb::InstanceSpec, props: std::collections::BTreeMap<String, pb::Value> },
}

type Instances = Arc<Mutex<HashMap<String, OpenSpec>>>;

/// Processes by plugin file and rule; the rule is `None` for a shared process.
type Entries = HashMap<(PathBuf, Option<String>), Arc<Entry>>;

struct Entry {
    key: ProcessKey,
    process: Supervised,
    instances: Instances,
    singleton: bool,
    rule: Option<String>,
}

/// Finds plugins, runs their processes and opens instances on them.
pub struct Host {
    config: HostConfig,
    catalog: RwLock<Catalog>,
    runtime: Arc<RuntimeDir>,
    state: Arc<StateRegistry>,
    entries: tokio::sync::Mutex<Entries>,
    next_key: AtomicU64,
    /// Per rule, the `pluginLimits` overrides by folded plugin name.
    rule_limits: Mutex<HashMap<String, HashMap<String, Limits>>>,
}

/// What `describe` reports about a plugin: eKuiper's `{"name","version"}` plus
/// what Oort knows about the file and its processes.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: String,
    /// The version of the file that runs, leading `v` dropped; empty when the
    /// file carries none.
    pub version: String,
    pub kind: PluginKind,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
    /// `constructor` or `singleton`, once a process has described itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    pub file: PathBuf,
    pub sha256: String,
    pub other_versions: Vec<String>,
    pub processes: Vec<ProcessInfo>,
}

/// One running process of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    pub pid: Option<u32>,
    /// The rule it serves, or `None` for a shared (singleton) process.
    pub rule: Option<String>,
    pub restarts: u32,
    pub status: ProcessStatus,
    pub instances: usize,
    /// The limits it runs with.
    pub limits: Limits,
    /// Its tree's resource use at the last sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Why it last ended unexpectedly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

impl Host {
    /// Scans the plugins folder and prepares the runtime directory. No process
    /// starts until an instance is opened.
    pub fn new(config: HostConfig, runtime: Arc<RuntimeDir>, state: Arc<StateRegistry>) -> Host {
        let catalog = Catalog::scan(&config.plugins_dir);
        for e in catalog.errors() {
            tracing::warn!("plugin catalog: {e}");
        }
        Host {
            config,
            catalog: RwLock::new(catalog),
            runtime,
            state,
            entries: tokio::sync::Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(1),
            rule_limits: Mutex::default(),
        }
    }

    /// Sets a rule's per-plugin limit overrides (its `pluginLimits` option),
    /// used by the processes started for the rule from now on. A shared
    /// (singleton) process runs with the limits of the rule that started it.
    pub fn set_rule_limits(&self, rule: &str, limits: &std::collections::BTreeMap<String, Limits>) {
        let folded = limits.iter().map(|(name, l)| (crate::catalog::fold(name), *l)).collect();
        lock(&self.rule_limits).insert(rule.to_string(), folded);
    }

    /// The limits a process of `file` started for `rule` runs with.
    fn limits_for(&self, file: &PluginFile, rule: &str) -> Limits {
        let rules = lock(&self.rule_limits);
        let over = rules.get(rule).and_then(|m| m.get(&crate::catalog::fold(&file.name)));
        Limits::resolve(file.metadata.as_ref().and_then(|m| m.limits.as_ref()), over)
    }

    /// The State registry shared with the State service.
    pub fn state(&self) -> &Arc<StateRegistry> {
        &self.state
    }

    /// The runtime directory holding every socket.
    pub fn runtime_dir(&self) -> &Path {
        self.runtime.path()
    }

    fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the plugins folder (a file was added, replaced or removed).
    /// Running processes keep running the file they started from, and the
    /// functions they declared stay registered.
    pub async fn rescan(&self) {
        // Reading the folder (and hashing new or changed files) is blocking
        // I/O: keep it off the async workers that answer every other request.
        // Files unchanged since the last scan keep their hash instead of being
        // read again.
        let dir = self.config.plugins_dir.clone();
        let previous = self.catalog().hash_cache();
        let Ok(mut catalog) = tokio::task::spawn_blocking(move || Catalog::rescan(&dir, &previous)).await else {
            tracing::error!("plugin catalog: the scan of {} failed", self.config.plugins_dir.display());
            return;
        };
        for e in catalog.errors() {
            tracing::warn!("plugin catalog: {e}");
        }
        for entry in self.entries.lock().await.values() {
            if let Some(live) = entry.process.current() {
                let functions = exported(&live.describe, pb::Kind::Function);
                if !functions.is_empty() {
                    let _ = catalog.register_functions(&entry.process.spec().name, &functions);
                }
            }
        }
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = catalog;
    }

    /// Problems found in the plugins folder, as messages naming the file.
    pub fn catalog_errors(&self) -> Vec<String> {
        self.catalog().errors().iter().map(ToString::to_string).collect()
    }

    /// Why a plugin file of this kind and name is in the folder but not in
    /// the catalog, when it is: e.g. `found <path> but it is not executable
    /// (mode 0644)`.
    pub fn catalog_problem(&self, kind: PluginKind, name: &str) -> Option<String> {
        let dir = self.config.plugins_dir.join(kind.dir_name());
        let named = |path: &Path| {
            path.parent() == Some(dir.as_path())
                && path.file_name().and_then(|f| f.to_str()).is_some_and(|f| {
                    let stem = f.strip_suffix(".json").unwrap_or(f);
                    let base = stem.split_once('@').map_or(stem, |(n, _)| n);
                    crate::catalog::fold(base) == crate::catalog::fold(name)
                })
        };
        self.catalog().errors().iter().find_map(|e| match e {
            crate::catalog::CatalogError::NotExecutable { path } if named(path) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path).map(|m| format!(" (mode {:04o})", m.permissions().mode() & 0o7777));
                Some(format!("found {} but it is not executable{}", path.display(), mode.unwrap_or_default()))
            }
            crate::catalog::CatalogError::EmptyVersion { path }
            | crate::catalog::CatalogError::BadMetadata { path, .. }
            | crate::catalog::CatalogError::Io { path, .. }
                if named(path) =>
            {
                Some(e.to_string())
            }
            _ => None,
        })
    }

    /// Whether the catalog has a plugin of this kind under this name.
    pub fn has_plugin(&self, kind: PluginKind, name: &str) -> bool {
        self.catalog().get(kind, name).is_some()
    }

    /// Whether some function plugin exports `function`.
    pub fn has_function(&self, function: &str) -> bool {
        self.catalog().function_owner(function).is_some()
    }

    /// The name of the function plugin that exports `function`.
    pub fn function_plugin(&self, function: &str) -> Option<String> {
        self.catalog().function_owner(function).map(|p| p.name.clone())
    }

    /// Names of every plugin of a kind, sorted.
    pub fn list(&self, kind: PluginKind) -> Vec<String> {
        self.catalog().list(kind).into_iter().map(|p| p.name.clone()).collect()
    }

    /// Like [`Host::describe`], but a plugin missing from the catalog is looked
    /// for once more after a rescan of the plugins directory, so a file copied
    /// in by hand is found without a restart.
    pub async fn describe_rescanning(&self, kind: PluginKind, name: &str) -> Option<PluginInfo> {
        if let Some(info) = self.describe(kind, name).await {
            return Some(info);
        }
        self.rescan().await;
        self.describe(kind, name).await
    }

    /// What runs for a plugin: the file, its version and its processes.
    pub async fn describe(&self, kind: PluginKind, name: &str) -> Option<PluginInfo> {
        let file = self.catalog().get(kind, name).cloned()?;
        let entries = self.entries.lock().await;
        let mut processes = Vec::new();
        let mut mode = None;
        let mut functions: Vec<String> =
            file.metadata.as_ref().map(|m| m.functions.iter().map(|f| f.name.clone()).collect()).unwrap_or_default();
        for ((path, _), entry) in entries.iter() {
            if path != &file.path {
                continue;
            }
            mode = Some(if entry.singleton { "singleton" } else { "constructor" });
            if let Some(live) = entry.process.current() {
                if kind == PluginKind::Function && functions.is_empty() {
                    functions = exported(&live.describe, pb::Kind::Function);
                }
            }
            processes.push(ProcessInfo {
                pid: entry.process.pid(),
                rule: entry.rule.clone(),
                restarts: entry.process.restarts(),
                status: entry.process.status(),
                instances: lock(&entry.instances).len(),
                limits: entry.process.spec().limits,
                usage: entry.process.usage(),
                last_failure: entry.process.last_failure(),
            });
        }
        if kind == PluginKind::Function && functions.is_empty() {
            functions.push(file.name.clone());
        }
        if kind != PluginKind::Function {
            functions.clear();
        }
        Some(PluginInfo {
            name: file.name.clone(),
            version: file.version.as_ref().map(|v| v.as_str().to_string()).unwrap_or_default(),
            kind,
            functions,
            mode,
            file: file.path.clone(),
            sha256: file.sha256.clone(),
            other_versions: file.other_versions.clone(),
            processes,
        })
    }

    /// The plugin file serving a function name.
    fn function_file(&self, function: &str) -> Result<PluginFile, HostError> {
        self.catalog().function_owner(function).cloned().ok_or_else(|| HostError::UnknownFunction(function.into()))
    }

    fn plugin_file(&self, kind: PluginKind, name: &str) -> Result<PluginFile, HostError> {
        self.catalog()
            .get(kind, name)
            .cloned()
            .ok_or_else(|| HostError::UnknownPlugin { kind: kind.as_str(), name: name.into() })
    }

    /// The process that serves `rule` for `file`: the shared one of a
    /// singleton plugin, the rule's own one otherwise; started on first use.
    async fn acquire(
        &self,
        file: &PluginFile,
        kind: PluginKind,
        rule: &str,
        strategy: RestartStrategy,
    ) -> Result<Arc<Entry>, HostError> {
        let running = |entries: &Entries| {
            entries
                .get(&(file.path.clone(), None))
                .or_else(|| entries.get(&(file.path.clone(), Some(rule.to_string()))))
                .cloned()
        };
        if let Some(e) = running(&*self.entries.lock().await) {
            return Ok(e);
        }
        // The process starts without the map lock held: a plugin slow to
        // handshake (up to the start timeout) must not hold up other rules,
        // listings and describes. Two rules racing to start one singleton
        // plugin may both start it; the second to finish stops its own.
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let instances: Instances = Arc::default();
        let hooks = Arc::new(EntryHooks {
            key,
            state: self.state.clone(),
            instances: instances.clone(),
            timeouts: self.config.timeouts,
        });
        let spec = LaunchSpec {
            path: file.path.clone(),
            name: file.name.clone(),
            version: file.version.as_ref().map(|v| v.as_str().to_string()).unwrap_or_default(),
            kind: match kind {
                PluginKind::Source => pb::Kind::Source,
                PluginKind::Sink => pb::Kind::Sink,
                PluginKind::Function => pb::Kind::Function,
            },
            rule: Some(rule.to_string()),
            limits: self.limits_for(file, rule),
        };
        let process = Supervised::start(spec, self.runtime.clone(), self.config.timeouts, strategy, hooks).await?;
        let live = process.live().await?;
        let singleton = !live.describe.symbols.is_empty()
            && live.describe.symbols.iter().all(|s| s.mode == pb::ExportMode::Singleton as i32);
        if kind == PluginKind::Function {
            let functions = exported(&live.describe, pb::Kind::Function);
            let registered =
                self.catalog.write().unwrap_or_else(|e| e.into_inner()).register_functions(&file.name, &functions);
            if let Err(e) = registered {
                process.stop().await;
                return Err(HostError::Protocol { plugin: file.name.clone(), reason: e.to_string() });
            }
        }
        let rule_key = if singleton { None } else { Some(rule.to_string()) };
        let mut entries = self.entries.lock().await;
        if let Some(e) = running(&entries) {
            drop(entries);
            process.stop().await;
            return Ok(e);
        }
        let entry = Arc::new(Entry { key, process, instances, singleton, rule: rule_key.clone() });
        entries.insert((file.path.clone(), rule_key), entry.clone());
        Ok(entry)
    }

    /// Stops a process once its last instance is closed.
    async fn release(&self, entry: &Arc<Entry>) {
        if !lock(&entry.instances).is_empty() {
            return;
        }
        let mut entries = self.entries.lock().await;
        // Re-check under the map lock: another rule may have opened an instance.
        if !lock(&entry.instances).is_empty() {
            return;
        }
        entries.retain(|_, e| !Arc::ptr_eq(e, entry));
        drop(entries);
        entry.process.stop().await;
    }

    async fn open(&self, entry: Arc<Entry>, open: OpenSpec) -> Result<(String, Arc<Entry>, bool), HostError> {
        let id = instance_spec(&open).instance_id.clone();
        self.state.assign(&id, entry.key);
        let mut open = open;
        set_state(&mut open, self.state.entries(&id));
        lock(&entry.instances).insert(id.clone(), open.clone());
        let result = async {
            let live = entry.process.live().await?;
            open_on(&live, &open, self.config.timeouts, &entry.process.spec().name).await
        }
        .await;
        match result {
            Ok(declared) => Ok((id, entry, declared)),
            Err(e) => {
                lock(&entry.instances).remove(&id);
                self.release(&entry).await;
                Err(e)
            }
        }
    }

    /// Asks a function plugin whether a call's arguments are acceptable.
    pub async fn validate_function(&self, function: &str, args: &[ArgInfo]) -> Result<Option<String>, HostError> {
        let args: Vec<pb::ArgSpec> = args
            .iter()
            .map(|a| pb::ArgSpec {
                expression: a.expression.clone(),
                literal: a.literal.clone().map(Into::into),
                column: a.column.clone(),
            })
            .collect();
        let file = self.function_file(function)?;
        // Validation runs on the shared process when there is one, else on a
        // short-lived process of its own.
        let rule = "__validate";
        let entry = self
            .acquire(&file, PluginKind::Function, rule, RestartStrategy { attempts: 0, ..Default::default() })
            .await?;
        let result = async {
            let symbol = exported_symbol(&entry, function)?;
            let live = entry.process.live().await?;
            let mut client = pb::function_client::FunctionClient::new(live.channel.clone());
            let req = pb::ValidateRequest { symbol, args };
            let resp = call(&file.name, "Validate", self.config.timeouts, client.validate(req)).await?;
            Ok(Some(resp.error).filter(|e| !e.is_empty()))
        }
        .await;
        self.release(&entry).await;
        result
    }

    /// Opens an instance of `function` for one call site of a rule.
    pub async fn open_function(
        &self,
        rule: &str,
        operator: &str,
        function: &str,
        strategy: RestartStrategy,
    ) -> Result<FunctionInstance, HostError> {
        let file = self.function_file(function)?;
        let entry = self.acquire(&file, PluginKind::Function, rule, strategy).await?;
        let symbol = match exported_symbol(&entry, function) {
            Ok(symbol) => symbol,
            Err(e) => {
                self.release(&entry).await;
                return Err(e);
            }
        };
        let spec = new_spec(rule, operator, &symbol);
        let (id, entry, _) = self.open(entry, OpenSpec::Function { spec }).await?;
        let plugin = file.name;
        Ok(FunctionInstance {
            id,
            symbol,
            plugin: plugin.clone(),
            entry,
            state: self.state.clone(),
            timeouts: self.config.timeouts,
            stream: BatchStream::new(&plugin, "Exec", self.config.timeouts.call, |r: &pb::ExecResult| r.seq),
            turns: Turns::default(),
            retries: strategy,
            watch: CallWatch::default(),
        })
    }

    /// Opens an instance of a source plugin for a rule.
    pub async fn open_source(
        &self,
        rule: &str,
        plugin: &str,
        datasource: &str,
        props: HashMap<String, Value>,
        strategy: RestartStrategy,
    ) -> Result<SourceInstance, HostError> {
        let file = self.plugin_file(PluginKind::Source, plugin)?;
        let entry = self.acquire(&file, PluginKind::Source, rule, strategy).await?;
        let spec = new_spec(rule, "source", &file.name);
        let props = props.into_iter().map(|(k, v)| (k, v.into())).collect();
        let (id, entry, rewindable) =
            self.open(entry, OpenSpec::Source { spec, datasource: datasource.into(), props }).await?;
        Ok(SourceInstance {
            id,
            plugin: file.name,
            entry,
            state: self.state.clone(),
            timeouts: self.config.timeouts,
            rewindable,
            watch: Arc::default(),
        })
    }

    /// Opens an instance of a sink plugin for one action of a rule.
    pub async fn open_sink(
        &self,
        rule: &str,
        operator: &str,
        plugin: &str,
        props: HashMap<String, Value>,
        strategy: RestartStrategy,
    ) -> Result<SinkInstance, HostError> {
        let file = self.plugin_file(PluginKind::Sink, plugin)?;
        let entry = self.acquire(&file, PluginKind::Sink, rule, strategy).await?;
        let spec = new_spec(rule, operator, &file.name);
        let props = props.into_iter().map(|(k, v)| (k, v.into())).collect();
        let (id, entry, _) = self.open(entry, OpenSpec::Sink { spec, props }).await?;
        let plugin = file.name;
        Ok(SinkInstance {
            id,
            plugin: plugin.clone(),
            entry,
            state: self.state.clone(),
            timeouts: self.config.timeouts,
            stream: BatchStream::new(&plugin, "Write", self.config.timeouts.call, |a: &pb::WriteAck| a.seq),
            watch: CallWatch::default(),
        })
    }

    /// Closes an instance and stops its process when nothing else uses it.
    async fn close(&self, id: &str, entry: &Arc<Entry>) {
        let removed = lock(&entry.instances).remove(id);
        if removed.is_some() {
            if let Ok(live) = entry.process.live().await {
                let req = pb::CloseRequest { instance_id: id.to_string() };
                let name = &entry.process.spec().name;
                let t = self.config.timeouts;
                let result = match removed {
                    Some(OpenSpec::Function { .. }) => {
                        call(name, "Close", t, pb::function_client::FunctionClient::new(live.channel).close(req)).await
                    }
                    Some(OpenSpec::Source { .. }) => {
                        call(name, "Close", t, pb::source_client::SourceClient::new(live.channel).close(req)).await
                    }
                    Some(OpenSpec::Sink { .. }) => {
                        call(name, "Close", t, pb::sink_client::SinkClient::new(live.channel).close(req)).await
                    }
                    None => Ok(pb::CloseResponse {}),
                };
                if let Err(e) = result {
                    tracing::warn!(instance = id, "close failed: {e}");
                }
            }
        }
        self.release(entry).await;
    }

    /// Closes a function instance.
    pub async fn close_function(&self, f: &FunctionInstance) {
        // End the batch stream first: a plugin drains open streams before it exits.
        f.stream.reset().await;
        self.close(&f.id, &f.entry).await;
    }

    /// Closes a source instance.
    pub async fn close_source(&self, s: &SourceInstance) {
        self.close(&s.id, &s.entry).await;
    }

    /// Closes a sink instance.
    pub async fn close_sink(&self, s: &SinkInstance) {
        s.stream.reset().await;
        self.close(&s.id, &s.entry).await;
    }

    /// Stops every process, all at once.
    pub async fn shutdown(&self) {
        let mut stops = tokio::task::JoinSet::new();
        for (_, entry) in self.entries.lock().await.drain() {
            stops.spawn(async move { entry.process.stop().await });
        }
        while stops.join_next().await.is_some() {}
    }
}

/// What a rule status shows about the process serving one of its instances.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessView {
    pub plugin: String,
    pub status: ProcessStatus,
    pub limits: Limits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

impl ProcessView {
    fn of(entry: &Entry) -> ProcessView {
        ProcessView {
            plugin: entry.process.spec().name.clone(),
            status: entry.process.status(),
            limits: entry.process.spec().limits,
            usage: entry.process.usage(),
            last_failure: entry.process.last_failure(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn exported(describe: &pb::DescribeResponse, kind: pb::Kind) -> Vec<String> {
    describe.symbols.iter().filter(|s| s.kind == kind as i32).map(|s| s.name.clone()).collect()
}

/// The function's name exactly as the plugin exports it: SQL function names
/// are case-insensitive, plugin symbols are not.
fn exported_symbol(entry: &Entry, function: &str) -> Result<String, HostError> {
    let live =
        entry.process.current().ok_or_else(|| ProcessError::Stopped { name: entry.process.spec().name.clone() })?;
    exported(&live.describe, pb::Kind::Function)
        .into_iter()
        .find(|name| name.eq_ignore_ascii_case(function))
        .ok_or_else(|| HostError::UnknownFunction(function.to_string()))
}

fn new_spec(rule: &str, operator: &str, symbol: &str) -> pb::InstanceSpec {
    pb::InstanceSpec {
        instance_id: format!("{rule}/{operator}"),
        symbol: symbol.to_string(),
        rule_id: rule.to_string(),
        operator_id: operator.to_string(),
        state: Vec::new(),
    }
}

fn instance_spec(open: &OpenSpec) -> &pb::InstanceSpec {
    match open {
        OpenSpec::Function { spec } | OpenSpec::Source { spec, .. } | OpenSpec::Sink { spec, .. } => spec,
    }
}

fn set_state(open: &mut OpenSpec, state: Vec<pb::StateEntry>) {
    match open {
        OpenSpec::Function { spec } | OpenSpec::Source { spec, .. } | OpenSpec::Sink { spec, .. } => spec.state = state,
    }
}

/// Runs one unary call with the call deadline, mapping every failure to a
/// `HostError` that names the plugin and the call.
async fn call<T>(
    plugin: &str,
    name: &'static str,
    timeouts: Timeouts,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, HostError> {
    match tokio::time::timeout(timeouts.call, fut).await {
        Err(_) => Err(HostError::Timeout { plugin: plugin.into(), call: name, timeout: timeouts.call }),
        Ok(Err(status)) => Err(HostError::Call { plugin: plugin.into(), call: name, message: status_message(&status) }),
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}

/// A status's message, or its code when the plugin sent none (a service it
/// claimed in Describe but does not serve answers `Unimplemented` and nothing
/// more).
fn status_message(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?} ({})", status.code(), status.code().description())
    } else {
        status.message().to_string()
    }
}

/// Opens an instance on a live process. Returns what the plugin declared:
/// `rewindable` for a source, `transactional` for a sink, false for a function.
async fn open_on(live: &Live, open: &OpenSpec, timeouts: Timeouts, plugin: &str) -> Result<bool, HostError> {
    Ok(match open.clone() {
        OpenSpec::Function { spec } => {
            let mut c = pb::function_client::FunctionClient::new(live.channel.clone());
            call(plugin, "Open", timeouts, c.open(pb::OpenFunctionRequest { instance: Some(spec) })).await?;
            false
        }
        OpenSpec::Source { spec, datasource, props } => {
            let mut c = pb::source_client::SourceClient::new(live.channel.clone());
            call(plugin, "Open", timeouts, c.open(pb::OpenSourceRequest { instance: Some(spec), datasource, props }))
                .await?
                .rewindable
        }
        OpenSpec::Sink { spec, props } => {
            let mut c = pb::sink_client::SinkClient::new(live.channel.clone());
            call(plugin, "Open", timeouts, c.open(pb::OpenSinkRequest { instance: Some(spec), props }))
                .await?
                .transactional
        }
    })
}

struct EntryHooks {
    key: ProcessKey,
    state: Arc<StateRegistry>,
    instances: Instances,
    timeouts: Timeouts,
}

#[tonic::async_trait]
impl Hooks for EntryHooks {
    fn issue_token(&self) -> String {
        self.state.issue_token(self.key)
    }

    fn revoke_token(&self, token: &str) {
        self.state.revoke_token(token);
    }

    async fn started(&self, live: &Live) -> Result<(), String> {
        let opens: Vec<OpenSpec> = lock(&self.instances).values().cloned().collect();
        for mut open in opens {
            let id = instance_spec(&open).instance_id.clone();
            // A restarted process resumes from the supervisor's copy of the
            // state; what the dead process wrote for unanswered batches is void.
            self.state.discard_staged(&id, None);
            set_state(&mut open, self.state.entries(&id));
            open_on(live, &open, self.timeouts, &live.describe.name).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The result of one row of a function batch.
pub type RowOutcome = Result<Value, String>;

/// A long-lived stream on which every request gets exactly one response, in
/// order. Several requests may be in flight: a caller sends its batch and
/// waits for its own answer, so the next caller can encode and send while the
/// plugin works (protocol v1 requires answers in request order, which every
/// plugin that handles its stream in a loop gives). Broken or timed-out streams
/// are discarded, never reused: after a failure nobody knows which response
/// comes next, and every request still waiting on that stream fails with it.
struct BatchStream<Req, Resp> {
    plugin: String,
    call_name: &'static str,
    timeout: std::time::Duration,
    response_seq: fn(&Resp) -> u64,
    /// The open stream; held while sending, so requests go out in `seq` order
    /// and their waiters queue in the same order.
    open: tokio::sync::Mutex<Option<Pipe<Req, Resp>>>,
    seq: AtomicU64,
    pipes: AtomicU64,
}

/// One open stream: its request sender, the answers still owed in order, and
/// the task that reads responses and hands each to its waiter.
struct Pipe<Req, Resp> {
    id: u64,
    tx: mpsc::Sender<Req>,
    waiting: Arc<Mutex<Waiting<Resp>>>,
    generation: u64,
    reader: tokio::task::JoinHandle<()>,
}

impl<Req, Resp> Drop for Pipe<Req, Resp> {
    fn drop(&mut self) {
        // Dropping the waiters' senders fails every request still in flight.
        self.reader.abort();
    }
}

/// The waiters of a stream's requests, oldest first; `closed` once the reader
/// is gone, so that nobody queues behind a stream that will never answer.
struct Waiting<Resp> {
    queue: std::collections::VecDeque<(u64, tokio::sync::oneshot::Sender<Result<Resp, Broken>>)>,
    closed: bool,
}

/// Why a stream stopped answering.
#[derive(Debug, Clone)]
enum Broken {
    /// It ended or failed.
    Call(String),
    /// The plugin answered out of order or unasked.
    Protocol(String),
}

impl<Req: Send + 'static, Resp: Send + 'static> BatchStream<Req, Resp> {
    fn new(
        plugin: &str,
        call_name: &'static str,
        timeout: std::time::Duration,
        response_seq: fn(&Resp) -> u64,
    ) -> Self {
        BatchStream {
            plugin: plugin.to_string(),
            call_name,
            timeout,
            response_seq,
            open: tokio::sync::Mutex::new(None),
            seq: AtomicU64::new(0),
            pipes: AtomicU64::new(0),
        }
    }

    /// Ends the stream, if one is open.
    async fn reset(&self) {
        *self.open.lock().await = None;
    }

    /// Ends the stream if it is still the one with this id.
    async fn discard(&self, pipe: u64) {
        let mut open = self.open.lock().await;
        if open.as_ref().is_some_and(|p| p.id == pipe) {
            *open = None;
        }
    }

    /// Sends the request built for the next sequence number and waits for its
    /// response, all within the call deadline. The first request is queued
    /// before the call starts, so a server that sends its response headers only
    /// with its first response (grpc-go's default) cannot deadlock us.
    ///
    /// With `may_open` false a caller only joins a stream that is open: the
    /// answer is `None` when there is none (see [`FunctionInstance::exec`]).
    async fn round_trip<Fut>(
        &self,
        live: &Live,
        may_open: bool,
        request: impl FnOnce(u64) -> Req,
        start: impl FnOnce(tonic::transport::Channel, tokio_stream::wrappers::ReceiverStream<Req>) -> Fut,
    ) -> Result<Option<Resp>, HostError>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<Streaming<Resp>>, tonic::Status>>,
    {
        let (plugin, call_name, timeout) = (self.plugin.as_str(), self.call_name, self.timeout);
        let failed = |message: String| HostError::Call { plugin: plugin.to_string(), call: call_name, message };
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || HostError::Timeout { plugin: plugin.to_string(), call: call_name, timeout };
        let (answer, pipe) = match tokio::time::timeout_at(deadline, self.send(live, may_open, request, start)).await {
            Ok(Ok(Some(sent))) => sent,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(message)) => return Err(failed(message)),
            Err(_) => {
                self.reset().await;
                return Err(timed_out());
            }
        };
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(Ok(response))) => Ok(Some(response)),
            Ok(Ok(Err(Broken::Protocol(reason)))) => {
                self.discard(pipe).await;
                Err(HostError::Protocol { plugin: plugin.to_string(), reason })
            }
            Ok(Ok(Err(Broken::Call(message)))) => {
                self.discard(pipe).await;
                Err(failed(message))
            }
            Ok(Err(_)) => Err(failed("stream closed".into())),
            Err(_) => {
                self.discard(pipe).await;
                Err(timed_out())
            }
        }
    }

    /// Queues a waiter and sends the request, opening the stream first if
    /// needed and allowed. Returns the waiter's receiver and the id of the
    /// stream used.
    async fn send<Fut>(
        &self,
        live: &Live,
        may_open: bool,
        request: impl FnOnce(u64) -> Req,
        start: impl FnOnce(tonic::transport::Channel, tokio_stream::wrappers::ReceiverStream<Req>) -> Fut,
    ) -> Result<Option<(tokio::sync::oneshot::Receiver<Result<Resp, Broken>>, u64)>, String>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<Streaming<Resp>>, tonic::Status>>,
    {
        let mut open = self.open.lock().await;
        let usable = |p: &Pipe<Req, Resp>| p.generation == live.generation && !lock(&p.waiting).closed;
        if !open.as_ref().is_some_and(usable) {
            *open = None;
            if !may_open {
                return Ok(None);
            }
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (answer_tx, answer) = tokio::sync::oneshot::channel();
        if let Some(pipe) = open.as_ref() {
            // Reserve first: between queueing the waiter and sending there is
            // no await, so a caller that gives up cannot leave a waiter
            // behind for a request that was never sent.
            let permit = pipe.tx.reserve().await.map_err(|_| "stream closed".to_string())?;
            lock(&pipe.waiting).queue.push_back((seq, answer_tx));
            permit.send(request(seq));
            return Ok(Some((answer, pipe.id)));
        }
        let (tx, rx) = mpsc::channel(4);
        tx.send(request(seq)).await.map_err(|_| "stream closed".to_string())?;
        let responses = start(live.channel.clone(), tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let waiting = Arc::new(Mutex::new(Waiting { queue: [(seq, answer_tx)].into(), closed: false }));
        let reader = tokio::spawn(read_answers(responses, waiting.clone(), self.response_seq, self.call_name));
        let id = self.pipes.fetch_add(1, Ordering::Relaxed);
        *open = Some(Pipe { id, tx, waiting, generation: live.generation, reader });
        Ok(Some((answer, id)))
    }
}

/// Hands each response of a stream to the oldest waiter; on the first broken
/// promise (the stream ends or fails, or answers out of order) fails every
/// waiter and closes.
async fn read_answers<Resp>(
    mut responses: Streaming<Resp>,
    waiting: Arc<Mutex<Waiting<Resp>>>,
    response_seq: fn(&Resp) -> u64,
    call_name: &'static str,
) {
    let failure = loop {
        let response = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => break Broken::Call("stream ended".into()),
            Err(s) => break Broken::Call(s.message().to_string()),
        };
        let next = lock(&waiting).queue.pop_front();
        let Some((seq, waiter)) = next else {
            break Broken::Protocol(format!(
                "{call_name} sent batch {} that nobody asked for",
                response_seq(&response)
            ));
        };
        if response_seq(&response) != seq {
            let broken =
                Broken::Protocol(format!("{call_name} answered batch {seq} with batch {}", response_seq(&response)));
            let _ = waiter.send(Err(broken.clone()));
            break broken;
        }
        let _ = waiter.send(Ok(response));
    };
    let mut waiting = lock(&waiting);
    waiting.closed = true;
    for (_, waiter) in waiting.queue.drain(..) {
        let _ = waiter.send(Err(failure.clone()));
    }
}

/// The calls in flight on one instance, so that a status can say which
/// instance is stuck, in which call, and since when.
#[derive(Default)]
pub struct CallWatch {
    state: Mutex<CallWatchState>,
}

#[derive(Default)]
struct CallWatchState {
    next: u64,
    open: std::collections::BTreeMap<u64, (&'static str, std::time::SystemTime, std::time::Instant)>,
    /// Timeouts since the oldest call in flight began.
    timeouts: u32,
}

/// The oldest call in flight on an instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outstanding {
    pub call: &'static str,
    /// When it began, in ms since the epoch.
    pub since_ms: u64,
    /// How long it has been running.
    pub for_ms: u64,
    /// Attempts of it that timed out so far.
    pub timeouts: u32,
}

/// Ends the tracking of one call when dropped.
pub struct CallGuard<'a> {
    watch: &'a CallWatch,
    ticket: u64,
}

impl CallWatch {
    /// Tracks one call until the guard is dropped.
    pub fn begin(&self, call: &'static str) -> CallGuard<'_> {
        let mut s = lock(&self.state);
        let ticket = s.next;
        s.next += 1;
        s.open.insert(ticket, (call, std::time::SystemTime::now(), std::time::Instant::now()));
        CallGuard { watch: self, ticket }
    }

    /// Counts a timed-out attempt; returns how many there were since the
    /// oldest call in flight began.
    fn timed_out(&self) -> u32 {
        let mut s = lock(&self.state);
        s.timeouts += 1;
        s.timeouts
    }

    /// The oldest call in flight, if any.
    pub fn oldest(&self) -> Option<Outstanding> {
        let s = lock(&self.state);
        let (call, since, started) = s.open.values().next()?;
        Some(Outstanding {
            call,
            since_ms: since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            for_ms: started.elapsed().as_millis() as u64,
            timeouts: s.timeouts,
        })
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.watch.state);
        s.open.remove(&self.ticket);
        if s.open.is_empty() {
            s.timeouts = 0;
        }
    }
}

/// Logs a timed-out attempt: the first of a call at WARN, so an operator
/// learns of a hung plugin at once, not when the retries are exhausted.
fn note_timeout(watch: &CallWatch, plugin: &str, instance: &str, error: &HostError, retries: &str) {
    let n = watch.timed_out();
    if n == 1 {
        tracing::warn!(
            plugin,
            instance,
            "{error}; the instance is reported as stuck in the rule status while it is retried ({retries})"
        );
    } else {
        tracing::debug!(plugin, instance, attempt = n, "{error}");
    }
}

/// An open function instance: batches of argument rows in, results out.
pub struct FunctionInstance {
    id: String,
    symbol: String,
    plugin: String,
    entry: Arc<Entry>,
    state: Arc<StateRegistry>,
    timeouts: Timeouts,
    stream: BatchStream<oort_proto::wire::EncodedBatch, pb::ExecResult>,
    turns: Turns,
    /// How often, and after which delays, a failed batch is retried.
    retries: RestartStrategy,
    watch: CallWatch,
}

/// Tickets that order overlapping calls: each call takes the next one, and
/// [`Turn::wait_for_earlier`] waits until every call with a smaller ticket has
/// finished (succeeded, failed for good, or been dropped).
#[derive(Default)]
struct Turns {
    next: AtomicU64,
    /// Tickets finished out of order, above the watermark.
    finished: Mutex<std::collections::BTreeSet<u64>>,
    /// Every ticket below this has finished.
    watermark: tokio::sync::watch::Sender<u64>,
}

struct Turn<'a> {
    turns: &'a Turns,
    ticket: u64,
}

impl Turns {
    fn take(&self) -> Turn<'_> {
        Turn { turns: self, ticket: self.next.fetch_add(1, Ordering::Relaxed) }
    }
}

impl Turn<'_> {
    async fn wait_for_earlier(&self) {
        let mut watermark = self.turns.watermark.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = watermark.wait_for(|w| *w >= self.ticket).await;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut finished = lock(&self.turns.finished);
        finished.insert(self.ticket);
        self.turns.watermark.send_modify(|w| {
            while finished.remove(&*w) {
                *w += 1;
            }
        });
    }
}

impl FunctionInstance {
    /// The instance id, which is also its state scope.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How often its process was restarted after a crash.
    pub fn restarts(&self) -> u32 {
        self.entry.process.restarts()
    }

    /// The plugin serving it (metrics and status label).
    pub fn plugin(&self) -> &str {
        &self.entry.process.spec().name
    }

    /// Whether its process is up and handshaken right now.
    pub fn connected(&self) -> bool {
        matches!(self.entry.process.status(), crate::process::ProcessStatus::Running { .. })
    }

    /// The function's name as the plugin exports it.
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// The oldest batch call in flight, retries included.
    pub fn outstanding(&self) -> Option<Outstanding> {
        self.watch.oldest()
    }

    /// The serving process's status, limits and resource use.
    pub fn process(&self) -> ProcessView {
        ProcessView::of(&self.entry)
    }

    /// The pid of the process serving it right now.
    pub fn pid(&self) -> Option<u32> {
        self.entry.process.pid()
    }

    /// Runs one batch. A batch that fails as a whole (the process crashed, the
    /// stream broke, the call timed out) is retried after the instance is
    /// reopened with the supervisor's copy of its state: whatever the failed
    /// attempt changed in the plugin's resident state is discarded, so nothing
    /// is counted twice. The first retry follows at once, the others after the
    /// delays of the instance's restart strategy, up to its `attempts`; a
    /// crash loop or a stopped process ends the call at once.
    ///
    /// Calls may overlap (the rule pipeline keeps two batches in flight): they
    /// go out, and see the instance's state, in the order they were made. So
    /// that a failure cannot reorder them, a call opens a new stream, and a
    /// failed call recovers, only once every earlier call has finished; until
    /// then later calls wait instead of overtaking on the new stream.
    pub async fn exec(&self, rows: &[Vec<Value>]) -> Result<Vec<RowOutcome>, HostError> {
        let _outstanding = self.watch.begin("Exec");
        // A process that died up to a second before the call began may be
        // why it fails: its socket is gone before its monitor notices.
        let now = tokio::time::Instant::now();
        let since = now.checked_sub(std::time::Duration::from_secs(1)).unwrap_or(now);
        let turn = self.turns.take();
        let first = match self.exec_once(rows, false).await {
            Ok(Some(cells)) => Ok(cells),
            Ok(None) => {
                turn.wait_for_earlier().await;
                self.exec_opening(rows).await
            }
            Err(e) => Err(e),
        };
        let mut last = match first {
            Err(e @ (HostError::Call { .. } | HostError::Timeout { .. } | HostError::Protocol { .. })) => e,
            other => return other,
        };
        let attempts = self.retries.attempts.max(1);
        if matches!(last, HostError::Timeout { .. }) {
            note_timeout(&self.watch, &self.plugin, &self.id, &last, &format!("up to {attempts} more times"));
        }
        turn.wait_for_earlier().await;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(self.retries.delay_for(attempt - 1)).await;
            }
            tracing::debug!(plugin = %self.plugin, instance = %self.id, attempt, "retrying a failed batch: {last}");
            let result = match self.resync().await {
                Ok(()) => self.exec_opening(rows).await,
                Err(e) => Err(e),
            };
            last = match result {
                Err(e @ (HostError::Call { .. } | HostError::Timeout { .. } | HostError::Protocol { .. })) => e,
                other => return other,
            };
            if matches!(last, HostError::Timeout { .. }) {
                note_timeout(
                    &self.watch,
                    &self.plugin,
                    &self.id,
                    &last,
                    &format!("up to {} more times", attempts - attempt - 1),
                );
            }
        }
        // When the process died under the call (a crash, a limit), its
        // monitor says why, which beats "connection refused"; it may need a
        // moment to notice. A process that gave up is the explanation
        // whenever it died.
        for _ in 0..20 {
            if let ProcessStatus::Failed { .. } = self.entry.process.status() {
                if let Err(e) = self.entry.process.live().await {
                    return Err(e.into());
                }
            }
            if let Some(failure) = self.entry.process.failure_since(since) {
                return Err(HostError::Call {
                    plugin: self.plugin.clone(),
                    call: "Exec",
                    message: format!("{last}; the plugin process ended: {failure}"),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(last)
    }

    /// Closes and reopens the instance on its (possibly restarted) process,
    /// handing it the supervisor's copy of its state.
    pub async fn resync(&self) -> Result<(), HostError> {
        self.stream.reset().await;
        let live = self.entry.process.live().await?;
        let open = lock(&self.entry.instances).get(&self.id).cloned();
        let Some(mut open) = open else {
            return Err(HostError::Call {
                plugin: self.plugin.clone(),
                call: "Open",
                message: "the instance is closed".into(),
            });
        };
        // The failed attempt's writes through the State service go with it;
        // the retry gets a new seq, so late writes tagged with an old one are refused.
        self.state.discard_staged(&self.id, Some(self.stream.seq.load(Ordering::Relaxed)));
        set_state(&mut open, self.state.entries(&self.id));
        let mut client = pb::function_client::FunctionClient::new(live.channel.clone());
        let close = pb::CloseRequest { instance_id: self.id.clone() };
        // The restart hook may already have reopened it; a missing instance is fine.
        let _ = call(&self.plugin, "Close", self.timeouts, client.close(close)).await;
        open_on(&live, &open, self.timeouts, &self.plugin).await.map(|_| ())
    }

    /// One attempt; `None` when `may_open` is false and no stream is open.
    /// Encoding the borrowed rows is the one copy an attempt needs; a retry
    /// encodes again instead of keeping a second copy around.
    async fn exec_once(&self, rows: &[Vec<Value>], may_open: bool) -> Result<Option<Vec<RowOutcome>>, HostError> {
        let live = self.entry.process.live().await?;
        let n = rows.len();
        // Encoded here, in the caller's task and outside the stream's lock,
        // straight from the borrowed rows; the sequence number goes last.
        let encoded = oort_proto::wire::BatchBody::exec(&self.id, rows);
        let result = self
            .stream
            .round_trip(
                &live,
                may_open,
                |seq| encoded.with_seq(seq),
                |channel, input| oort_proto::wire::exec_stream(channel, input, 64 << 20),
            )
            .await?;
        let Some(result) = result else { return Ok(None) };
        if result.results.len() != n {
            return Err(HostError::Protocol {
                plugin: self.plugin.clone(),
                reason: format!("answered a batch of {n} rows with {} results", result.results.len()),
            });
        }
        self.state
            .accept(&self.id, Some(result.seq), result.mutations)
            .map_err(|e| HostError::Protocol { plugin: self.plugin.clone(), reason: e.to_string() })?;
        Ok(Some(
            result
                .results
                .into_iter()
                .map(|r| match r.outcome {
                    Some(pb::row_result::Outcome::Value(v)) => Ok(v.into()),
                    Some(pb::row_result::Outcome::Error(e)) => Err(e),
                    None => Ok(Value::Null),
                })
                .collect(),
        ))
    }

    /// An attempt that may open a stream, so it always has an answer.
    async fn exec_opening(&self, rows: &[Vec<Value>]) -> Result<Vec<RowOutcome>, HostError> {
        self.exec_once(rows, true).await?.ok_or_else(|| HostError::Call {
            plugin: self.plugin.clone(),
            call: "Exec",
            message: "no stream".into(),
        })
    }
}

/// One batch from a source.
#[derive(Debug)]
pub struct SourceBatch {
    pub records: Vec<Record>,
    pub offset: Option<Value>,
    /// Problems the source went past; they count as its exceptions.
    pub exceptions: Vec<String>,
}

/// An open source instance.
pub struct SourceInstance {
    id: String,
    plugin: String,
    entry: Arc<Entry>,
    state: Arc<StateRegistry>,
    timeouts: Timeouts,
    rewindable: bool,
    /// A `Read` whose process stopped answering health checks.
    watch: Arc<CallWatch>,
}

impl SourceInstance {
    /// A `Read` is tracked here while its process answers neither a batch
    /// nor a health check within the call timeout.
    pub fn call_watch(&self) -> &CallWatch {
        &self.watch
    }

    /// The pid of the process serving it right now.
    pub fn pid(&self) -> Option<u32> {
        self.entry.process.pid()
    }

    /// How often its process was restarted after a crash.
    pub fn restarts(&self) -> u32 {
        self.entry.process.restarts()
    }

    /// The plugin serving it (metrics and status label).
    pub fn plugin(&self) -> &str {
        &self.entry.process.spec().name
    }

    /// Whether its process is up and handshaken right now.
    pub fn connected(&self) -> bool {
        matches!(self.entry.process.status(), crate::process::ProcessStatus::Running { .. })
    }

    /// The serving process's status, limits and resource use.
    pub fn process(&self) -> ProcessView {
        ProcessView::of(&self.entry)
    }

    /// Whether the source declared that it can replay from an offset.
    pub fn rewindable(&self) -> bool {
        self.rewindable
    }

    /// Repositions the source to just after `offset`, an offset it reported.
    pub async fn rewind(&self, offset: Value) -> Result<(), HostError> {
        let live = self.entry.process.live().await?;
        let mut client = pb::source_client::SourceClient::new(live.channel.clone());
        // The source replays from `offset`: writes staged for batches it never
        // delivered would be made again.
        self.state.discard_staged(&self.id, None);
        let req = pb::RewindRequest { instance_id: self.id.clone(), offset: Some(offset.into()) };
        call(&self.plugin, "Rewind", self.timeouts, client.rewind(req)).await?;
        Ok(())
    }

    /// Starts reading: batches arrive on the returned receiver until the
    /// stream ends or fails. HTTP/2 flow control stops the plugin when the
    /// receiver is not drained.
    pub async fn read(&self, max_batch: u32) -> Result<mpsc::Receiver<Result<SourceBatch, HostError>>, HostError> {
        let live = self.entry.process.live().await?;
        let mut client = pb::source_client::SourceClient::new(live.channel.clone()).max_decoding_message_size(64 << 20);
        let request = pb::ReadRequest { instance_id: self.id.clone(), max_batch };
        let (tx, rx) = mpsc::channel(2);
        let state = self.state.clone();
        let id = self.id.clone();
        let plugin = self.plugin.clone();
        let plugin_name = self.plugin.clone();
        let failed = move |s: tonic::Status| HostError::Call {
            plugin: plugin.clone(),
            call: "Read",
            message: s.message().to_string(),
        };
        // No deadline on a source: a quiet source and a hung one look alike,
        // and a server may hold its response headers until its first batch.
        // What tells them apart is the process: after a call timeout without
        // a batch, its health service is asked, and a process that does not
        // answer that either is reported stuck until it answers again.
        let watch = self.watch.clone();
        let probe = HealthProbe { channel: live.channel.clone(), timeout: self.timeouts.call };
        tokio::spawn(async move {
            let mut hung: Option<CallGuard<'_>> = None;
            let mut quiet = std::pin::pin!(tokio::time::sleep(probe.timeout));
            let mut read = std::pin::pin!(client.read(request));
            let opened = loop {
                tokio::select! {
                    r = &mut read => break r,
                    _ = tx.closed() => return,
                    _ = &mut quiet => probe.check(&watch, &mut hung, &plugin_name, &id, quiet.as_mut()).await,
                }
            };
            let mut stream = match opened {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    let _ = tx.send(Err(failed(s))).await;
                    return;
                }
            };
            loop {
                // A receiver that went away ends the call, so the plugin stops
                // reading for nobody (and a Rewind that follows is not raced
                // by the old reader).
                let message = tokio::select! {
                    _ = tx.closed() => break,
                    m = stream.message() => m,
                    _ = &mut quiet => {
                        probe.check(&watch, &mut hung, &plugin_name, &id, quiet.as_mut()).await;
                        continue;
                    }
                };
                hung = None;
                quiet.as_mut().reset(tokio::time::Instant::now() + probe.timeout);
                let item = match message {
                    Ok(Some(b)) => match state.accept(&id, None, b.mutations) {
                        Err(e) => Err(HostError::Protocol { plugin: plugin_name.clone(), reason: e.to_string() }),
                        Ok(()) => Ok(SourceBatch {
                            records: b.records.into_iter().map(Into::into).collect(),
                            offset: b.offset.map(Into::into),
                            exceptions: b.exceptions,
                        }),
                    },
                    Ok(None) => break,
                    Err(s) => Err(failed(s)),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

/// Asks a plugin process whether it still answers, for a source that has
/// sent nothing for a while.
struct HealthProbe {
    channel: tonic::transport::Channel,
    timeout: std::time::Duration,
}

impl HealthProbe {
    /// Marks the read stuck when the process does not answer within the
    /// timeout (warning once), clears it when it does, and re-arms `quiet`.
    async fn check<'w>(
        &self,
        watch: &'w CallWatch,
        hung: &mut Option<CallGuard<'w>>,
        plugin: &str,
        instance: &str,
        quiet: std::pin::Pin<&mut tokio::time::Sleep>,
    ) {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
        let answered = matches!(tokio::time::timeout(self.timeout, health.check(request)).await, Ok(Ok(_)));
        if answered {
            *hung = None;
        } else {
            if hung.is_none() {
                *hung = Some(watch.begin("Read"));
            }
            let error = HostError::Timeout { plugin: plugin.into(), call: "Read", timeout: self.timeout };
            note_timeout(watch, plugin, instance, &error, "its process answers no health check either; the read waits");
        }
        quiet.reset(tokio::time::Instant::now() + self.timeout);
    }
}

/// An open sink instance.
pub struct SinkInstance {
    id: String,
    plugin: String,
    entry: Arc<Entry>,
    state: Arc<StateRegistry>,
    timeouts: Timeouts,
    stream: BatchStream<oort_proto::wire::EncodedBatch, pb::WriteAck>,
    watch: CallWatch,
}

impl SinkInstance {
    /// The writes in flight: the pipeline holds a [`CallGuard`] from the
    /// first attempt of a batch to its last retry.
    pub fn call_watch(&self) -> &CallWatch {
        &self.watch
    }

    /// The serving process's status, limits and resource use.
    pub fn process(&self) -> ProcessView {
        ProcessView::of(&self.entry)
    }

    /// The pid of the process serving it right now.
    pub fn pid(&self) -> Option<u32> {
        self.entry.process.pid()
    }

    /// How often its process was restarted after a crash.
    pub fn restarts(&self) -> u32 {
        self.entry.process.restarts()
    }

    /// The plugin serving it (metrics and status label).
    pub fn plugin(&self) -> &str {
        &self.entry.process.spec().name
    }

    /// Whether its process is up and handshaken right now.
    pub fn connected(&self) -> bool {
        matches!(self.entry.process.status(), crate::process::ProcessStatus::Running { .. })
    }

    /// Two-phase commit, phase one: makes everything written durable and
    /// returns the sink's handle for checkpoint `id`.
    pub async fn pre_commit(&self, id: u64) -> Result<Value, HostError> {
        let live = self.entry.process.live().await?;
        let mut client = pb::sink_client::SinkClient::new(live.channel.clone());
        let req = pb::PreCommitRequest { instance_id: self.id.clone(), checkpoint_id: id };
        let resp = call(&self.plugin, "PreCommit", self.timeouts, client.pre_commit(req)).await?;
        Ok(resp.handle.map(Into::into).unwrap_or_default())
    }

    /// Two-phase commit, phase two: checkpoint `id` is durable; make it final.
    /// Also the recover-and-commit call after a restore.
    pub async fn commit(&self, id: u64, handle: Value) -> Result<(), HostError> {
        let live = self.entry.process.live().await?;
        let mut client = pb::sink_client::SinkClient::new(live.channel.clone());
        let req = pb::CommitRequest { instance_id: self.id.clone(), checkpoint_id: id, handle: Some(handle.into()) };
        call(&self.plugin, "Commit", self.timeouts, client.commit(req)).await?;
        Ok(())
    }

    /// Two-phase commit, the other phase two: checkpoint `id` will never be
    /// durable (another sink failed its pre-commit, or the store its write);
    /// discard what its pre-commit prepared.
    pub async fn abort(&self, id: u64, handle: Value) -> Result<(), HostError> {
        let live = self.entry.process.live().await?;
        let mut client = pb::sink_client::SinkClient::new(live.channel.clone());
        let req = pb::CommitRequest { instance_id: self.id.clone(), checkpoint_id: id, handle: Some(handle.into()) };
        call(&self.plugin, "Abort", self.timeouts, client.abort(req)).await?;
        Ok(())
    }

    /// Writes one batch and waits for the sink's acknowledgement. The batch is
    /// borrowed: a failed write is retried with the same records, and several
    /// sinks share one batch.
    pub async fn write(&self, records: &[Record]) -> Result<(), HostError> {
        let live = self.entry.process.live().await?;
        let encoded = oort_proto::wire::BatchBody::write(&self.id, records);
        let ack = self
            .stream
            .round_trip(
                &live,
                true,
                |seq| encoded.with_seq(seq),
                |channel, input| oort_proto::wire::write_stream(channel, input, 64 << 20),
            )
            .await
            .inspect_err(|e| {
                if matches!(e, HostError::Timeout { .. }) {
                    note_timeout(&self.watch, &self.plugin, &self.id, e, "until it succeeds");
                }
            })
            .and_then(|ack| {
                ack.ok_or_else(|| HostError::Call {
                    plugin: self.plugin.clone(),
                    call: "Write",
                    message: "no stream".into(),
                })
            })
            .inspect_err(|_| {
                // An unacknowledged batch never happened: neither did its writes.
                self.state.discard_staged(&self.id, Some(self.stream.seq.load(Ordering::Relaxed)));
            })?;
        self.state
            .accept(&self.id, Some(ack.seq), ack.mutations)
            .map_err(|e| HostError::Protocol { plugin: self.plugin.clone(), reason: e.to_string() })?;
        if ack.error.is_empty() {
            Ok(())
        } else {
            Err(HostError::Call { plugin: self.plugin.clone(), call: "Write", message: ack.error })
        }
    }
}
