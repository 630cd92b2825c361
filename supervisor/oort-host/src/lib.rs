//! The plugin host: the only crate that starts, signals or waits on a
//! process. It finds plugin files ([`catalog`]), installs them ([`install`]),
//! runs them ([`process`]), scopes their state calls ([`state`]) and decides
//! which process serves which rule, with typed, deadline-bounded calls on the
//! instances (this file and the ones below).
//!
//! Constructor plugins get one process per (rule, plugin file); singleton
//! plugins share one process per plugin file, with instances multiplexed by
//! instance id. Whether a plugin is a singleton is learnt from its first
//! `Describe`: it is one when every symbol it exports is a singleton.
//!
//! Architecture invariant: the registry never touches a process directly; it
//! asks the process module for a [`Supervised`] handle and makes gRPC calls on
//! the channel that handle publishes. Every unary call and every batch round
//! trip has a deadline; a source's `Read` stream has none (a quiet source and
//! a hung one look alike), and a health probe reports a process that stops
//! answering.
//!
//! # Files
//! - `lib.rs`: the registry: processes by (plugin file, rule), acquire and
//!   release, opening instances, `describe`.
//! - [`calls`]: one unary call with its deadline, opening an instance on a
//!   process, the restart hooks that reopen instances.
//! - [`stream`]: the pipelined batch transport shared by `Exec` and `Write`.
//! - [`turns`]: the tickets that keep overlapping calls in order.
//! - [`watch`]: the calls in flight per instance, for `stuck` in rule status.
//! - [`function`], [`source`], [`sink`]: the instance handles.
//! - [`catalog`], [`install`], [`process`], [`state`]: see each module.
#![deny(unsafe_code)]

pub mod catalog;
pub mod install;
pub mod process;
pub mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use oort_proto::plugin::v1 as pb;
use oort_proto::{Record, Value};
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::Streaming;

use crate::catalog::{Catalog, PluginFile, PluginKind};
use crate::process::{
    Hooks, LaunchSpec, Limits, Live, ProcessError, RestartStrategy, RuntimeDir, Supervised, Timeouts,
};
use crate::state::{ProcessKey, StateRegistry};
use oort_core::ArgInfo;

mod calls;
mod framed;
mod function;
mod sink;
mod source;
mod stream;
mod turns;
mod views;
mod watch;

use calls::*;
pub use function::{Answer, FunctionInstance, RowOutcome, Validation, COLUMNS_FROM_ROWS};
pub use sink::{SinkInstance, Written};
pub use source::{ConnectionState, SourceBatch, SourceInstance, SourceState, UpstreamConnection};
use stream::*;
use turns::*;
pub use views::{PluginInfo, ProcessInfo, ProcessView};
use watch::note_timeout;
pub use watch::{CallGuard, CallWatch, Outstanding};

/// What a successful trial open is remembered by: the binary, the
/// datasource and the properties (sorted).
fn opened_key(file: &PluginFile, datasource: &str, props: &HashMap<String, Value>) -> String {
    let props: std::collections::BTreeMap<&String, serde_json::Value> =
        props.iter().map(|(k, v)| (k, v.to_json())).collect();
    let props = serde_json::to_string(&props).unwrap_or_default();
    format!("{}\n{}\n{datasource}\n{props}", file.kind.as_str(), file.sha256)
}

/// Why a plugin call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    #[error("no {kind} plugin named {name:?} in the catalog")]
    UnknownPlugin { kind: &'static str, name: String },
    #[error("no function plugin exports a function named {0:?}")]
    UnknownFunction(String),
    /// Every installed version of the plugin was rolled back.
    #[error("every installed version of {kind} plugin {name:?} is held back by a rollback; install a newer one or remove a held one")]
    AllHeld { kind: &'static str, name: String },
    /// A rule pins a plugin (its `plugins` option) to versions none of
    /// which is installed.
    #[error("{kind} plugin {name:?} is pinned to {wanted}, but no installed version matches (installed: {installed})")]
    NoPinnedVersion { kind: &'static str, name: String, wanted: String, installed: String },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("plugin {plugin}: {call} timed out after {timeout:?}")]
    Timeout { plugin: String, call: &'static str, timeout: std::time::Duration },
    #[error("plugin {plugin}: {call} failed: {message}")]
    Call { plugin: String, call: &'static str, message: String },
    #[error("plugin {plugin} broke the protocol: {reason}")]
    Protocol { plugin: String, reason: String },
    /// The plugin's own `open` refused the instance (`FAILED_PRECONDITION`
    /// from `Open`): its properties or its datasource, most often.
    #[error("plugin {plugin} refused to open the instance: {message}")]
    Refused { plugin: String, message: String },
    /// The plugin refused state written under another of its state versions
    /// (`MigrateState` answered `FAILED_PRECONDITION`, or is not served).
    #[error("plugin {plugin} (state version {to}) refused the state of version {from}: {message}")]
    StateRefused { plugin: String, from: u32, to: u32, message: String },
}

impl HostError {
    /// True when no retry can help: the plugin's process gave up after its
    /// restart strategy (a crash loop) or was stopped. The engine ends the
    /// rule instead of retrying the call.
    pub fn is_fatal(&self) -> bool {
        matches!(self, HostError::Process(ProcessError::CrashLoop { .. } | ProcessError::Stopped { .. }))
    }
}

/// How the host is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub plugins_dir: PathBuf,
    pub timeouts: Timeouts,
    /// The interpreter of portable plugins written in Python.
    pub python: PathBuf,
    /// How function batches travel to plugins that can take columns.
    pub data_encoding: DataEncoding,
    /// Whether `Exec` batches use the framed path of a plugin that offers
    /// it (docs/protocol.md, "The framed Exec path"); gRPC otherwise. Kept
    /// selectable so that both paths are measured and tested side by side.
    pub framed_exec: bool,
}

/// The data-path encoding the host uses with plugins that list Arrow IPC in
/// their `Describe` (docs/protocol.md, "Columnar batches").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DataEncoding {
    /// Columns whenever the plugin takes them, the batch has at least
    /// [`COLUMNS_FROM_ROWS`] rows and fits the column types; rows otherwise.
    #[default]
    Auto,
    /// Always rows: the protocol's baseline, kept selectable so that both
    /// paths can be measured and tested side by side.
    Rows,
}

/// One open instance, remembered so that a restarted process can reopen it.
#[derive(Clone)]
enum OpenSpec {
    Function { spec: pb::InstanceSpec },
    Source { spec: pb::InstanceSpec, datasource: String, props: std::collections::BTreeMap<String, pb::Value> },
    Sink { spec: pb::InstanceSpec, props: std::collections::BTreeMap<String, pb::Value> },
}

impl OpenSpec {
    fn spec(&self) -> &pb::InstanceSpec {
        match self {
            OpenSpec::Function { spec } | OpenSpec::Source { spec, .. } | OpenSpec::Sink { spec, .. } => spec,
        }
    }
}

type Instances = Arc<Mutex<HashMap<String, OpenSpec>>>;

/// Processes by plugin file, part and rule; the rule is `None` for a shared
/// process. The part (`<kind dir>/<folded name>`) tells apart the processes
/// of one portable package's executable, which serves each part separately.
type Entries = HashMap<(PathBuf, String, Option<String>), Arc<Entry>>;

/// A rule's pins: plugin name (as the rule writes it) to the versions it
/// accepts.
pub type Pins = std::collections::BTreeMap<String, semver::VersionReq>;

/// The pin of `plugin` among `pins`, matching the first letter in either case.
fn pinned<'a>(pins: &'a Pins, plugin: &str) -> Option<&'a semver::VersionReq> {
    let folded = oort_core::names::fold(plugin);
    pins.iter().find(|(name, _)| oort_core::names::fold(name) == folded).map(|(_, req)| req)
}

fn no_pinned_version(catalog: &Catalog, kind: PluginKind, name: &str, wanted: &semver::VersionReq) -> HostError {
    let installed: Vec<&str> = catalog
        .versions(kind, name)
        .iter()
        .map(|f| f.version.as_ref().map_or("(no version)", |v| v.as_str()))
        .collect();
    HostError::NoPinnedVersion {
        kind: kind.as_str(),
        name: name.to_string(),
        wanted: wanted.to_string(),
        installed: if installed.is_empty() { "none".to_string() } else { installed.join(", ") },
    }
}

/// A plugin version's key in the host's sets: kind, folded name, version
/// as reported.
fn version_key(kind: PluginKind, name: &str, version: &str) -> VersionKey {
    (kind, oort_core::names::fold(name), version.to_string())
}

fn part_key(kind: PluginKind, name: &str) -> String {
    format!("{}/{}", kind.dir_name(), oort_core::names::fold(name))
}

struct Entry {
    key: ProcessKey,
    process: Supervised,
    instances: Instances,
    singleton: bool,
    rule: Option<String>,
    /// Callers that acquired the entry and have not yet opened their
    /// instance on it (or given up): a release in between (a validation's
    /// short use of a shared process ending, say) must not stop the process
    /// under them.
    acquiring: std::sync::atomic::AtomicUsize,
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
    /// Versions rolled back: kept on disk, but no rule starts on them
    /// (kind, folded name, version as reported).
    held: Mutex<std::collections::BTreeSet<VersionKey>>,
    /// Per rule, the plugin versions that refused its state: it never
    /// starts on them (kind, folded name, version).
    refused: Mutex<HashMap<String, std::collections::BTreeSet<VersionKey>>>,
    /// Per rule, the versions it accepts by folded plugin name (its
    /// `plugins` option).
    rule_pins: Mutex<HashMap<String, HashMap<String, semver::VersionReq>>>,
    /// The rules that checkpoint (`set_rule_checkpointing`).
    checkpointing_rules: Mutex<std::collections::HashSet<String>>,
    /// The fencing tokens of the rules this node owns in a cluster.
    fencing_tokens: Mutex<HashMap<String, u64>>,
    /// Trial opens that succeeded, by plugin binary (its SHA-256), kind,
    /// datasource and properties: a thousand rules on one stream are
    /// validated once, not a thousand times.
    opened_fine: Mutex<std::collections::HashSet<String>>,
    /// Unexpected process exits per plugin version.
    crashes: Arc<CrashCounts>,
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
            rule_pins: Mutex::default(),
            held: Mutex::default(),
            refused: Mutex::default(),
            checkpointing_rules: Mutex::default(),
            fencing_tokens: Mutex::default(),
            opened_fine: Mutex::default(),
            crashes: Arc::default(),
        }
    }

    /// How many times processes of a plugin version ended unexpectedly since
    /// the daemon started.
    pub fn crashes(&self, kind: PluginKind, name: &str, version: &str) -> u64 {
        lock(&self.crashes).get(&version_key(kind, name, version)).copied().unwrap_or(0)
    }

    /// Checks that the version `rule` would run now for plugin `name` can
    /// take over from the one it runs, before the rule is moved: a process
    /// of it starts and describes itself as the plugin (every function in
    /// `functions` exported), and accepts the state of the rule's open
    /// instances of the plugin (migrating what another state version wrote;
    /// the result is dropped, the real open migrates again). Runs on a trial
    /// process of its own unless the plugin's shared one runs. Returns the
    /// version checked.
    pub async fn check_upgrade(
        &self,
        rule: &str,
        kind: PluginKind,
        name: &str,
        functions: &[String],
    ) -> Result<String, HostError> {
        let file = self.plugin_file_for(kind, name, rule)?;
        static CHECKS: AtomicU64 = AtomicU64::new(0);
        let trial = format!("__upgrade-{}", CHECKS.fetch_add(1, Ordering::Relaxed));
        let entry = self.acquire(&file, kind, &trial, RestartStrategy { attempts: 0, ..Default::default() }).await?;
        let part = part_key(kind, &file.name);
        let result = async {
            for function in functions {
                exported_function(&entry, function)?;
            }
            let live = entry.process.live().await?;
            let opens: Vec<OpenSpec> = {
                let entries = self.entries.lock().await;
                entries
                    .iter()
                    .filter(|((_, p, _), _)| *p == part)
                    .flat_map(|(_, e)| {
                        lock(&e.instances)
                            .values()
                            .filter(|o| instance_spec(o).rule_id == rule)
                            .cloned()
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            for open in &opens {
                state_for(&live, &self.state, open, self.config.timeouts, &file.name).await?;
            }
            Ok(())
        }
        .await;
        self.give_up(&entry).await;
        result.map(|()| file.version_label())
    }

    /// Sets a rule's per-plugin limit overrides (its `pluginLimits` option),
    /// used by the processes started for the rule from now on. A shared
    /// (singleton) process runs with the limits of the rule that started it.
    pub fn set_rule_limits(&self, rule: &str, limits: &std::collections::BTreeMap<String, Limits>) {
        let folded = limits.iter().map(|(name, l)| (oort_core::names::fold(name), *l)).collect();
        lock(&self.rule_limits).insert(rule.to_string(), folded);
    }

    /// Sets the plugin versions a rule accepts (its `plugins` option: plugin
    /// name to a SemVer requirement), used by every instance opened for the
    /// rule from now on: it runs the newest installed version that matches.
    pub fn set_rule_pins(&self, rule: &str, pins: &Pins) {
        let folded = pins.iter().map(|(name, req)| (oort_core::names::fold(name), req.clone())).collect();
        lock(&self.rule_pins).insert(rule.to_string(), folded);
    }

    /// Forgets what was set for a rule that is gone (limits, pins,
    /// checkpointing).
    pub fn forget_rule(&self, rule: &str) {
        lock(&self.rule_limits).remove(rule);
        lock(&self.rule_pins).remove(rule);
        lock(&self.checkpointing_rules).remove(rule);
        lock(&self.fencing_tokens).remove(rule);
        lock(&self.refused).remove(rule);
    }

    /// Keeps `rule` off a plugin version that refused its state: the rule
    /// starts on the newest other version its pin accepts.
    pub fn refuse_for_rule(&self, rule: &str, kind: PluginKind, name: &str, version: &str) {
        lock(&self.refused).entry(rule.to_string()).or_default().insert(version_key(kind, name, version));
    }

    /// Lets a rule start on every version again (its state was reset).
    pub fn clear_refusals(&self, rule: &str) {
        lock(&self.refused).remove(rule);
    }

    /// The version of a plugin that a pin selects: `Ok(version)` (empty for
    /// a file without one), or why none can run.
    pub fn resolve_pin(&self, kind: PluginKind, name: &str, wanted: &semver::VersionReq) -> Result<String, HostError> {
        let file = self.plugin_file_pinned(kind, name, Some(wanted), &|_| true)?;
        Ok(file.version_label())
    }

    /// Holds back a version of a plugin (a rollback): no instance opens on
    /// it from now on; the previous version is the newest one.
    pub fn hold(&self, kind: PluginKind, name: &str, version: &str) {
        lock(&self.held).insert(version_key(kind, name, version));
    }

    /// Lets a held version run again (its file was removed, say).
    pub fn unhold(&self, kind: PluginKind, name: &str, version: &str) {
        lock(&self.held).remove(&version_key(kind, name, version));
    }

    fn is_held(&self, kind: PluginKind, file: &PluginFile) -> bool {
        lock(&self.held).contains(&version_key(kind, &file.name, &file.version_label()))
    }

    /// The installed versions of a plugin that may run, newest first.
    fn runnable(&self, kind: PluginKind, name: &str) -> Vec<PluginFile> {
        self.catalog().versions(kind, name).iter().filter(|f| !self.is_held(kind, f)).cloned().collect()
    }

    /// The version unpinned rules of a plugin start with: the newest not
    /// held back.
    pub fn current_version(&self, kind: PluginKind, name: &str) -> Option<String> {
        let file = self.runnable(kind, name).into_iter().next()?;
        Some(file.version_label())
    }

    /// The version `rule` would start with now for a plugin (empty for a
    /// file without one).
    pub fn version_for(&self, rule: &str, kind: PluginKind, name: &str) -> Option<String> {
        let file = self.plugin_file_for(kind, name, rule).ok()?;
        Some(file.version_label())
    }

    /// The file `rule` runs for a plugin: the newest, or the newest its pin
    /// accepts, of the versions that did not refuse its state.
    fn plugin_file_for(&self, kind: PluginKind, name: &str, rule: &str) -> Result<PluginFile, HostError> {
        let pin = lock(&self.rule_pins).get(rule).and_then(|pins| pins.get(&oort_core::names::fold(name)).cloned());
        let refused = lock(&self.refused).get(rule).cloned().unwrap_or_default();
        let accepted = |f: &PluginFile| !refused.contains(&version_key(kind, name, &f.version_label()));
        match self.plugin_file_pinned(kind, name, pin.as_ref(), &accepted) {
            // Every version it may run refused its state: the newest is where
            // it fails with that reason, rather than "no such plugin".
            Err(HostError::NoPinnedVersion { .. } | HostError::AllHeld { .. }) if !refused.is_empty() => {
                self.plugin_file_pinned(kind, name, pin.as_ref(), &|_| true)
            }
            found => found,
        }
    }

    /// The newest file of a plugin that `pin` accepts (any, without one).
    fn plugin_file_pinned(
        &self,
        kind: PluginKind,
        name: &str,
        pin: Option<&semver::VersionReq>,
        accepted: &dyn Fn(&PluginFile) -> bool,
    ) -> Result<PluginFile, HostError> {
        let runnable: Vec<PluginFile> = self.runnable(kind, name).into_iter().filter(|f| accepted(f)).collect();
        if runnable.is_empty() {
            return Err(match self.catalog().get(kind, name) {
                Some(_) => HostError::AllHeld { kind: kind.as_str(), name: name.into() },
                None => HostError::UnknownPlugin { kind: kind.as_str(), name: name.into() },
            });
        }
        let Some(wanted) = pin else { return Ok(runnable[0].clone()) };
        runnable
            .into_iter()
            .find(|f| f.accepted_by(wanted))
            .ok_or_else(|| no_pinned_version(&self.catalog(), kind, name, wanted))
    }

    /// Whether `rule` has an instance on a process of plugin `name` that
    /// runs another file than the one the rule would start now (a newer
    /// version arrived, or its pin selects another).
    pub async fn outdated(&self, rule: &str, kind: PluginKind, name: &str) -> bool {
        let Ok(wanted) = self.plugin_file_for(kind, name, rule) else { return false };
        let part = part_key(kind, &wanted.name);
        let entries = self.entries.lock().await;
        entries.iter().any(|((path, entry_part, _), entry)| {
            *entry_part == part
                && *path != wanted.path
                && lock(&entry.instances).values().any(|open| open.spec().rule_id == rule)
        })
    }

    /// The file that runs for new rules without a pin, per plugin: what
    /// changes when a newer version arrives.
    pub fn newest_files(&self) -> std::collections::BTreeMap<(PluginKind, String), PathBuf> {
        let names: Vec<(PluginKind, String)> = [PluginKind::Source, PluginKind::Sink, PluginKind::Function]
            .into_iter()
            .flat_map(|kind| self.catalog().list(kind).into_iter().map(|f| (kind, f.name.clone())).collect::<Vec<_>>())
            .collect();
        names
            .into_iter()
            .filter_map(|(kind, name)| {
                let file = self.runnable(kind, &name).into_iter().next()?;
                Some(((kind, name), file.path))
            })
            .collect()
    }

    /// Records whether `rule` checkpoints (qos 1 or 2), which every instance
    /// opened for it from now on is told (`InstanceSpec.checkpointing`).
    pub fn set_rule_checkpointing(&self, rule: &str, checkpointing: bool) {
        let mut rules = lock(&self.checkpointing_rules);
        match checkpointing {
            true => rules.insert(rule.to_string()),
            false => rules.remove(rule),
        };
    }

    fn checkpointing(&self, rule: &str) -> bool {
        lock(&self.checkpointing_rules).contains(rule)
    }

    /// Records the fencing token of a rule this node owns in a cluster
    /// (`InstanceSpec.fencing_token`): every instance opened for it from now
    /// on carries it. `0` clears it.
    pub fn set_rule_fencing_token(&self, rule: &str, token: u64) {
        let mut tokens = lock(&self.fencing_tokens);
        match token {
            0 => tokens.remove(rule),
            t => tokens.insert(rule.to_string(), t),
        };
    }

    fn rule_run(&self, rule: &str) -> calls::RuleRun {
        calls::RuleRun {
            checkpointing: self.checkpointing(rule),
            fencing_token: lock(&self.fencing_tokens).get(rule).copied().unwrap_or(0),
        }
    }

    /// The limits a process of `file` started for `rule` runs with.
    fn limits_for(&self, file: &PluginFile, rule: &str) -> Limits {
        let rules = lock(&self.rule_limits);
        let over = rules.get(rule).and_then(|m| m.get(&oort_core::names::fold(&file.name)));
        Limits::resolve(file.metadata.as_ref().and_then(|m| m.limits.as_ref()), over)
    }

    /// The State registry shared with the State service.
    pub fn state(&self) -> &Arc<StateRegistry> {
        &self.state
    }

    /// The plugins folder.
    pub fn plugins_dir(&self) -> &Path {
        &self.config.plugins_dir
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
                    oort_core::names::fold(base) == oort_core::names::fold(name)
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

    /// What the catalog refused of a portable package (its manifest, its
    /// executable, a part named like an installed plugin), if anything.
    pub fn package_problem(&self, package: &str) -> Option<String> {
        let problems: Vec<String> = self
            .catalog()
            .errors()
            .iter()
            .filter(|e| match e {
                crate::catalog::CatalogError::BadPortable { package: p, .. }
                | crate::catalog::CatalogError::PortableConflict { package: p, .. } => {
                    oort_core::names::fold(p) == oort_core::names::fold(package)
                }
                _ => false,
            })
            .map(ToString::to_string)
            .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// Whether a portable package provides this plugin (rather than a file
    /// of its own in the kind folder).
    pub fn is_portable_part(&self, kind: PluginKind, name: &str) -> bool {
        self.catalog().get(kind, name).is_some_and(|f| f.portable.is_some())
    }

    /// One portable package by name (first letter in either case).
    pub fn portable(&self, name: &str) -> Option<(String, catalog::PortableManifest, PathBuf)> {
        let key = oort_core::names::fold(name);
        self.portables().into_iter().find(|(n, _, _)| oort_core::names::fold(n) == key)
    }

    /// The portable packages installed: each one's name, manifest and folder.
    pub fn portables(&self) -> Vec<(String, catalog::PortableManifest, PathBuf)> {
        self.catalog().portables().map(|(n, m, d)| (n.to_string(), m.clone(), d.to_path_buf())).collect()
    }

    /// Every SQL function plugins export, with the plugin exporting it (eKuiper's `/plugins/udfs`).
    pub fn functions(&self) -> Vec<(String, String)> {
        self.catalog().functions()
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
        let installed = self.catalog().versions(kind, name).to_vec();
        let current = self.runnable(kind, name).first().map(|f| f.path.clone());
        let entries = self.entries.lock().await;
        let mut processes = Vec::new();
        let mut mode = None;
        let mut functions: Vec<String> =
            file.metadata.as_ref().map(|m| m.functions.iter().map(|f| f.name.clone()).collect()).unwrap_or_default();
        // Every process of the plugin, whichever version it runs: a rule keeps
        // the version it started with when a newer file is dropped in.
        let same_plugin = |path: &Path, entry: &Entry| {
            path.parent() == file.path.parent()
                && oort_core::names::fold(&entry.process.spec().name) == oort_core::names::fold(&file.name)
        };
        let part = part_key(kind, &file.name);
        for ((path, entry_part, _), entry) in entries.iter() {
            if *entry_part != part || !same_plugin(path, entry) {
                continue;
            }
            if path == &file.path {
                mode = Some(if entry.singleton { "singleton" } else { "constructor" });
            }
            if let Some(live) = entry.process.current() {
                if kind == PluginKind::Function && functions.is_empty() {
                    functions = exported(&live.describe, pb::Kind::Function);
                }
            }
            let version = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('@'))
                .map(|(_, v)| catalog::Version::parse(v).as_str().to_string())
                .unwrap_or_default();
            processes.push(ProcessInfo {
                file: path.clone(),
                version,
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
        let versions = installed
            .iter()
            .map(|v| {
                let mut rules: Vec<String> = entries
                    .iter()
                    .filter(|((path, entry_part, _), _)| *path == v.path && *entry_part == part)
                    .flat_map(|(_, entry)| {
                        lock(&entry.instances).values().map(|open| open.spec().rule_id.clone()).collect::<Vec<_>>()
                    })
                    .filter(|rule| !rule.starts_with("__validate"))
                    .collect();
                rules.sort();
                rules.dedup();
                views::VersionInfo {
                    version: v.version_label(),
                    file: v.path.clone(),
                    newest: current.as_ref() == Some(&v.path),
                    held: self.is_held(kind, v),
                    rules,
                }
            })
            .collect();
        if kind == PluginKind::Function && functions.is_empty() {
            functions.push(file.name.clone());
        }
        if kind != PluginKind::Function {
            functions.clear();
        }
        Some(PluginInfo {
            name: file.name.clone(),
            version: file.version_label(),
            kind,
            functions,
            mode,
            file: file.path.clone(),
            sha256: file.sha256.clone(),
            other_versions: file.other_versions.clone(),
            versions,
            processes,
            about: file.metadata.as_ref().and_then(|m| m.about.clone()),
            properties: file.metadata.as_ref().map(|m| m.properties.clone()).unwrap_or_default(),
            metadata_problem: self.metadata_problem(kind, &file.name),
            portable: file.portable.clone(),
        })
    }

    /// Why a plugin's metadata file could not be read, if it could not.
    pub fn metadata_problem(&self, kind: PluginKind, name: &str) -> Option<String> {
        let dir = self.config.plugins_dir.join(kind.dir_name());
        self.catalog().errors().iter().find_map(|e| match e {
            // In the kind folder, or in a portable package's kind folder.
            crate::catalog::CatalogError::BadMetadata { path, .. }
                if (path.parent() == Some(dir.as_path())
                    || path.parent().and_then(|p| p.file_name()) == Some(std::ffi::OsStr::new(kind.dir_name())))
                    && path.file_stem().and_then(|f| f.to_str()).map(oort_core::names::fold)
                        == Some(oort_core::names::fold(name)) =>
            {
                Some(e.to_string())
            }
            _ => None,
        })
    }

    /// Why function plugins' metadata files could not be read, one line each.
    pub fn function_metadata_problems(&self) -> Vec<String> {
        let names = self.list(PluginKind::Function);
        names.iter().filter_map(|name| self.metadata_problem(PluginKind::Function, name)).collect()
    }

    /// A plugin's metadata as eKuiper's `GET /metadata/{kind}/{name}` serves
    /// it: `None` for no such plugin, an empty object for a plugin without a
    /// metadata file, an error for a metadata file that is not valid.
    pub fn metadata(&self, kind: PluginKind, name: &str) -> Option<Result<catalog::Metadata, String>> {
        let file = self.catalog().get(kind, name).cloned()?;
        Some(match (file.metadata, self.metadata_problem(kind, &file.name)) {
            (_, Some(problem)) => Err(problem),
            (Some(m), None) => Ok(m),
            (None, None) => Ok(catalog::Metadata::default()),
        })
    }

    /// The plugin file serving a function name.
    fn function_file(&self, function: &str) -> Result<PluginFile, HostError> {
        self.catalog().function_owner(function).cloned().ok_or_else(|| HostError::UnknownFunction(function.into()))
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
        let part = part_key(kind, &file.name);
        let running = |entries: &Entries| {
            entries
                .get(&(file.path.clone(), part.clone(), None))
                .or_else(|| entries.get(&(file.path.clone(), part.clone(), Some(rule.to_string()))))
                .cloned()
        };
        if let Some(e) = running(&*self.entries.lock().await) {
            e.acquiring.fetch_add(1, Ordering::SeqCst);
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
            crashes: self.crashes.clone(),
            version: version_key(kind, &file.name, &file.version_label()),
        });
        let spec = LaunchSpec {
            // A portable Python package's program is a script its interpreter runs, in the package folder.
            interpreter: file.portable.as_ref().filter(|p| p.is_python()).map(|_| self.config.python.clone()),
            workdir: file.portable.as_ref().map(|p| p.dir.clone()),
            // Absolute: a relative path would be looked up from the package folder it runs in.
            path: std::path::absolute(&file.path).unwrap_or_else(|_| file.path.clone()),
            name: file.name.clone(),
            version: file.version_label(),
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
            e.acquiring.fetch_add(1, Ordering::SeqCst);
            drop(entries);
            process.stop().await;
            return Ok(e);
        }
        let acquiring = std::sync::atomic::AtomicUsize::new(1);
        let entry = Arc::new(Entry { key, process, instances, singleton, rule: rule_key.clone(), acquiring });
        entries.insert((file.path.clone(), part, rule_key), entry.clone());
        Ok(entry)
    }

    /// Ends an acquisition that opens no instance, then releases.
    async fn give_up(&self, entry: &Arc<Entry>) {
        entry.acquiring.fetch_sub(1, Ordering::SeqCst);
        self.release(entry).await;
    }

    /// Stops a process once its last instance is closed and nobody is about
    /// to open one.
    async fn release(&self, entry: &Arc<Entry>) {
        let unused = || lock(&entry.instances).is_empty() && entry.acquiring.load(Ordering::SeqCst) == 0;
        if !unused() {
            return;
        }
        let mut entries = self.entries.lock().await;
        // Re-check under the map lock, which acquisitions take: another rule
        // may have acquired the entry or opened an instance meanwhile.
        if !unused() {
            return;
        }
        entries.retain(|_, e| !Arc::ptr_eq(e, entry));
        drop(entries);
        entry.process.stop().await;
    }

    async fn open(&self, entry: Arc<Entry>, open: OpenSpec) -> Result<(String, Arc<Entry>, Declared), HostError> {
        let id = instance_spec(&open).instance_id.clone();
        self.state.assign(&id, entry.key);
        lock(&entry.instances).insert(id.clone(), open.clone());
        // The instance now keeps the process: the acquisition is over.
        entry.acquiring.fetch_sub(1, Ordering::SeqCst);
        let result = async {
            let live = entry.process.live().await?;
            open_with_state(&live, &self.state, open, self.config.timeouts, &entry.process.spec().name).await
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

    /// Opens a source instance with these properties and closes it again, so
    /// that a rule whose source refuses them is refused when it is created,
    /// not left to fail at every restart. `Ok(Some(why))` when the plugin's
    /// `open` refused; an error when the plugin could not be asked. A
    /// success is remembered per `scope` (the stream), binary, datasource and
    /// properties: the rules after the first on a stream skip the trial.
    pub async fn validate_source(
        &self,
        scope: &str,
        plugin: &str,
        datasource: &str,
        props: HashMap<String, Value>,
        pins: &Pins,
    ) -> Result<Option<String>, HostError> {
        let file = self.plugin_file_pinned(PluginKind::Source, plugin, pinned(pins, plugin), &|_| true)?;
        let seen = format!("{scope}\n{}", opened_key(&file, datasource, &props));
        let props = props.into_iter().map(|(k, v)| (k, v.into())).collect();
        let open = |spec| OpenSpec::Source { spec, datasource: datasource.into(), props };
        self.try_open(&file, seen, PluginKind::Source, open).await
    }

    /// [`Host::validate_source`] for a sink's properties.
    pub async fn validate_sink(
        &self,
        plugin: &str,
        props: HashMap<String, Value>,
        pins: &Pins,
    ) -> Result<Option<String>, HostError> {
        let file = self.plugin_file_pinned(PluginKind::Sink, plugin, pinned(pins, plugin), &|_| true)?;
        let seen = opened_key(&file, "", &props);
        let props = props.into_iter().map(|(k, v)| (k, v.into())).collect();
        self.try_open(&file, seen, PluginKind::Sink, |spec| OpenSpec::Sink { spec, props }).await
    }

    /// Opens and closes one instance under a validation rule id of its own
    /// (on the shared process when there is one, else on a short-lived one),
    /// unless the same binary opened the same properties fine before.
    async fn try_open(
        &self,
        file: &PluginFile,
        seen: String,
        kind: PluginKind,
        open: impl FnOnce(pb::InstanceSpec) -> OpenSpec,
    ) -> Result<Option<String>, HostError> {
        if lock(&self.opened_fine).contains(&seen) {
            return Ok(None);
        }
        static VALIDATIONS: AtomicU64 = AtomicU64::new(0);
        let rule = format!("__validate-{}", VALIDATIONS.fetch_add(1, Ordering::Relaxed));
        let entry = self.acquire(file, kind, &rule, RestartStrategy { attempts: 0, ..Default::default() }).await?;
        let result = match self.open(entry, open(new_spec(&rule, "validate", &file.name, RuleRun::default()))).await {
            Ok((id, entry, _)) => {
                self.close(&id, &entry).await;
                let mut fine = lock(&self.opened_fine);
                // Bounded: rules with ever-new properties do not grow it forever.
                if fine.len() >= 4096 {
                    fine.clear();
                }
                fine.insert(seen);
                Ok(None)
            }
            Err(HostError::Refused { message, .. }) => Ok(Some(message)),
            Err(e) => Err(e),
        };
        self.state.forget_rule(&rule);
        result
    }

    /// Asks a function plugin whether a call's arguments are acceptable, and
    /// learns from its `Describe` whether the function is an aggregate.
    pub async fn validate_function(
        &self,
        function: &str,
        args: &[ArgInfo],
        pins: &Pins,
    ) -> Result<Validation, HostError> {
        let args: Vec<pb::ArgSpec> = args
            .iter()
            .map(|a| pb::ArgSpec {
                expression: a.expression.clone(),
                literal: a.literal.clone().map(Into::into),
                column: a.column.clone(),
            })
            .collect();
        let owner = self.function_file(function)?;
        let file = self.plugin_file_pinned(PluginKind::Function, &owner.name, pinned(pins, &owner.name), &|_| true)?;
        // Validation runs on the shared process when there is one, else on a
        // short-lived process of its own.
        let rule = "__validate";
        let entry = self
            .acquire(&file, PluginKind::Function, rule, RestartStrategy { attempts: 0, ..Default::default() })
            .await?;
        let result = async {
            let (symbol, is_aggregate) = exported_function(&entry, function)?;
            let live = entry.process.live().await?;
            let mut client = pb::function_client::FunctionClient::new(live.channel.clone());
            let req = pb::ValidateRequest { symbol, args };
            let resp = call(&file.name, "Validate", self.config.timeouts, client.validate(req)).await?;
            Ok(Validation { problem: Some(resp.error).filter(|e| !e.is_empty()), is_aggregate })
        }
        .await;
        self.give_up(&entry).await;
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
        let owner = self.function_file(function)?;
        let file = self.plugin_file_for(PluginKind::Function, &owner.name, rule)?;
        let entry = self.acquire(&file, PluginKind::Function, rule, strategy).await?;
        let (symbol, is_aggregate) = match exported_function(&entry, function) {
            Ok(found) => found,
            Err(e) => {
                self.give_up(&entry).await;
                return Err(e);
            }
        };
        let spec = new_spec(rule, operator, &symbol, self.rule_run(rule));
        let (id, entry, _) = self.open(entry, OpenSpec::Function { spec }).await?;
        let plugin = file.name;
        Ok(FunctionInstance {
            id,
            symbol,
            is_aggregate,
            plugin: plugin.clone(),
            entry,
            state: self.state.clone(),
            timeouts: self.config.timeouts,
            stream: BatchStream::new(&plugin, "Exec", self.config.timeouts.call, |r: &pb::ExecResult| r.seq)
                .carrying_schema(function::carry_result_schema),
            framed: self.config.framed_exec.then(|| framed::FramedStream::new(&plugin, self.config.timeouts.call)),
            framed_batches: AtomicU64::new(0),
            columns: self.config.data_encoding == DataEncoding::Auto,
            columnar_batches: AtomicU64::new(0),
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
        let file = self.plugin_file_for(PluginKind::Source, plugin, rule)?;
        let entry = self.acquire(&file, PluginKind::Source, rule, strategy).await?;
        let spec = new_spec(rule, "source", &file.name, self.rule_run(rule));
        let props = props.into_iter().map(|(k, v)| (k, v.into())).collect();
        let (id, entry, rewindable) =
            self.open(entry, OpenSpec::Source { spec, datasource: datasource.into(), props }).await?;
        Ok(SourceInstance {
            id,
            plugin: file.name,
            entry,
            state: self.state.clone(),
            timeouts: self.config.timeouts,
            rewindable: rewindable.capable,
            acks_on_checkpoint: rewindable.acks_on_checkpoint && self.checkpointing(rule),
            checkpointed_unsupported: Arc::default(),
            watch: Arc::default(),
            columns: self.config.data_encoding == DataEncoding::Auto,
            columnar_batches: Arc::default(),
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
        let file = self.plugin_file_for(PluginKind::Sink, plugin, rule)?;
        let entry = self.acquire(&file, PluginKind::Sink, rule, strategy).await?;
        let spec = new_spec(rule, operator, &file.name, self.rule_run(rule));
        let props = props.into_iter().map(|(k, v)| (k, v.into())).collect();
        let (id, entry, declared) = self.open(entry, OpenSpec::Sink { spec, props }).await?;
        let plugin = file.name;
        Ok(SinkInstance {
            id,
            wants_payloads: declared.wants_payloads,
            columns: declared.takes_arrow && self.config.data_encoding == DataEncoding::Auto,
            columnar_batches: AtomicU64::new(0),
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
        let is_sink = matches!(removed, Some(OpenSpec::Sink { .. }));
        if removed.is_some() {
            if let Ok(live) = entry.process.live().await {
                let req = pb::CloseRequest { instance_id: id.to_string() };
                let name = &entry.process.spec().name;
                let t = self.config.timeouts;
                let result = match removed {
                    Some(OpenSpec::Function { .. }) => {
                        call(
                            name,
                            "Close",
                            t,
                            pb::function_client::FunctionClient::new(live.channel.clone()).close(req),
                        )
                        .await
                    }
                    Some(OpenSpec::Source { .. }) => {
                        call(name, "Close", t, pb::source_client::SourceClient::new(live.channel.clone()).close(req))
                            .await
                    }
                    Some(OpenSpec::Sink { .. }) => {
                        call(name, "Close", t, pb::sink_client::SinkClient::new(live.channel.clone()).close(req)).await
                    }
                    None => Ok(pb::CloseResponse {}),
                };
                match result {
                    // A sink instance that does not close in time may still
                    // be writing (Close waits for its Write). In a process
                    // of its own, the stop below ends that; a shared process
                    // lives on, and the write could land after the rule's
                    // recovery has truncated or rewritten the output. Kill it:
                    // the other rules' instances reopen on the new process.
                    Err(e @ HostError::Timeout { .. }) if entry.rule.is_none() && is_sink => {
                        entry.process.fence(&format!("sink instance {id} did not close in time ({e})"));
                    }
                    Err(e) => tracing::warn!(instance = id, "close failed: {e}"),
                    Ok(_) => {}
                }
            }
        }
        self.release(entry).await;
    }

    /// Closes a function instance.
    pub async fn close_function(&self, f: &FunctionInstance) {
        // End the batch stream first: a plugin drains open streams before it exits.
        f.reset_transport().await;
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
