//! Streams and rules at run time: the registry the API manages, persisted in
//! the store, and one pipeline task per running rule, with the typed
//! [`RuleReport`] the API layer turns into JSON or protobuf.
//!
//! Architecture invariant: the engine reaches plugins only through the host
//! crate's instance handles and the disk only through the store crate; it
//! builds no wire or JSON shapes of its own.
//!
//! Architecture invariant: the engine validates a rule completely before it
//! changes anything (stream, plugins, function arguments through the plugin's
//! own `Validate`), so a refused request leaves no trace.
//!
//! Locking: the registry maps are locked only for moments, never across a
//! plugin call, a process stop or a parse. Operations that start or stop one
//! rule are serialized per rule (`RuleEntry::life`), so a rule whose plugins
//! take seconds to stop delays requests about that rule only; `GET /rules`,
//! status calls and other rules go on. Parsing (SQL, rule JSON, `CREATE
//! STREAM`) runs on the blocking pool, off the async workers that serve the
//! API.
#![forbid(unsafe_code)]

mod conf;
mod connections;
mod error;
mod forward;
mod memory;
pub mod metrics;
mod payload;
mod pipeline;
mod publish;
mod ruleset;
mod shared;
mod status;
mod upgrade;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::sync::{watch, Mutex};

pub use connections::{Connection, ConnectionReport, CONNECTION_SELECTOR};
pub use error::{EngineError, ErrorKind};
use oort_host::catalog::PluginKind;
use oort_host::Host;
use oort_sql::{parse_stream, RuleDef, RulePlan, StreamDef};
use oort_store::{Namespace, Store};
use pipeline::stopped;
pub use publish::{CheckpointPublisher, PublishError};
pub use ruleset::{ImportReport, Ruleset, Topology};
pub use status::{EventTimeReport, PluginProcess, RuleReport, RuleStatus, RunState};
pub use upgrade::UpgradeOutcome;

/// How a rule is persisted: its definition and whether it should run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRule {
    rule: RuleDef,
    running: bool,
}

struct RuleEntry {
    stored: StoredRule,
    plan: RulePlan,
    status: Arc<RuleStatus>,
    run: Option<RunHandle>,
    /// Held by every operation that starts, stops, replaces or deletes this
    /// rule, for its whole duration, so that they happen one at a time
    /// without holding the registry lock.
    life: Arc<Mutex<()>>,
    /// Why a stored rule no longer plans (saved by a version with laxer
    /// checks): it is kept, shown as `error` with this reason, and never runs
    /// until it is updated or deleted.
    unplannable: Option<String>,
    /// What the last plugin upgrade did to the rule when it did not simply
    /// move it (reported in its status until a later upgrade moves it).
    upgrade_note: Option<String>,
}

struct RunHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The stream and rule registry.
pub struct Engine {
    store: Arc<Store>,
    host: Arc<Host>,
    /// `<data-dir>/conf/sources`: per-source-type JSON files for `CONF_KEY`.
    conf_dir: PathBuf,
    streams: Mutex<BTreeMap<String, StreamDef>>,
    rules: Mutex<BTreeMap<String, RuleEntry>>,
    /// The one source instance of each `SHARED` stream some rule reads.
    shared: Arc<shared::SharedSources>,
    /// The built-in `memory` topics that chain rules.
    memory: Arc<memory::MemoryTopics>,
    /// How long a plugin version that rules were moved to is watched after an
    /// upgrade: a crash loop or a failing rule within it rolls it back.
    upgrade_grace: std::time::Duration,
    /// Whether an upgrade that ran through its grace period removes the old
    /// versions no rule runs or pins (all but the one a rollback goes to).
    remove_unused_versions: bool,
    /// In cluster mode, where every completed checkpoint is published.
    publisher: Option<Arc<dyn CheckpointPublisher>>,
}

impl Engine {
    /// Loads every stream and rule from the store. Rules are not started: call
    /// [`Engine::resume`].
    pub fn load(store: Arc<Store>, host: Arc<Host>, conf_dir: PathBuf) -> Result<Engine, EngineError> {
        let mut streams = BTreeMap::new();
        for (name, bytes) in store.list(Namespace::Streams)? {
            let sql = String::from_utf8(bytes)
                .map_err(|e| EngineError::Corrupt { what: format!("stream {name}"), reason: e.to_string() })?;
            // A stream saved by a version with laxer checks (a repeated WITH
            // option, say) must not keep the daemon from starting: it is left
            // in the store, unloaded, until it is created again.
            match parse_stream(&sql) {
                Ok(def) => {
                    streams.insert(name, def);
                }
                Err(e) => {
                    tracing::error!(stream = %name, "the stored stream is no longer valid and is not loaded: {e}")
                }
            }
        }
        let mut rules = BTreeMap::new();
        for (id, bytes) in store.list(Namespace::Rules)? {
            let corrupt = |reason: String| EngineError::Corrupt { what: format!("rule {id}"), reason };
            let stored: StoredRule = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
            // A rule that plans no more must not keep the daemon from starting
            // (nor, worse, crash it on every start): it is kept in `error`.
            let (plan, unplannable) = match stored.rule.plan() {
                Ok(plan) => (plan, None),
                Err(e) => {
                    let reason = format!("the stored rule is no longer valid: {e}");
                    tracing::error!(rule = %id, "{reason}");
                    (RulePlan::unplannable(stored.rule.clone()), Some(reason))
                }
            };
            let status = Arc::new(RuleStatus::new(&plan));
            if let Some(reason) = &unplannable {
                status.set_state(RunState::Failed(reason.clone()));
            }
            rules.insert(
                id,
                RuleEntry { stored, plan, status, run: None, life: Arc::default(), unplannable, upgrade_note: None },
            );
        }
        for (key, value) in store.list(Namespace::RefusedVersions)? {
            match serde_json::from_slice::<upgrade::Refusal>(&value) {
                Ok(r) => r.apply(&host),
                Err(e) => tracing::warn!(key, "a stored state refusal cannot be read ({e}); ignored"),
            }
        }
        for (key, _) in store.list(Namespace::HeldVersions)? {
            match parse_held_key(&key) {
                Some((kind, name, version)) => host.hold(kind, &name, &version),
                None => tracing::warn!(key, "a stored rollback names no plugin version; ignored"),
            }
        }
        Ok(Engine {
            store,
            host,
            conf_dir,
            streams: Mutex::new(streams),
            rules: Mutex::new(rules),
            shared: Arc::default(),
            memory: Arc::default(),
            upgrade_grace: upgrade::DEFAULT_GRACE,
            remove_unused_versions: true,
            publisher: None,
        })
    }

    /// Sets how long a plugin version is watched after rules moved to it
    /// (default 10 s): see [`Engine::upgrade`].
    pub fn with_upgrade_grace(mut self, grace: std::time::Duration) -> Engine {
        self.upgrade_grace = grace;
        self
    }

    /// Keeps every installed version after upgrades instead of removing the
    /// old ones no rule runs or pins.
    pub fn keeping_unused_versions(mut self) -> Engine {
        self.remove_unused_versions = false;
        self
    }

    /// Publishes every completed checkpoint through `publisher` before the
    /// sinks commit it (cluster mode).
    pub fn publishing_checkpoints(mut self, publisher: Arc<dyn CheckpointPublisher>) -> Engine {
        self.publisher = Some(publisher);
        self
    }

    /// Replaces a rule's local checkpoints with `checkpoint` (`(id, bytes)`,
    /// checked to decode as that rule's checkpoint `id`), or removes them:
    /// in cluster mode, before a node starts a rule it took over, the
    /// checkpoint the cluster published is the one to restore, whatever this
    /// node kept from an earlier time it ran the rule.
    pub fn install_checkpoint(&self, rule: &str, checkpoint: Option<(u64, &[u8])>) -> Result<(), EngineError> {
        self.store.delete_checkpoints(rule)?;
        if let Some((id, bytes)) = checkpoint {
            oort_store::checkpoint::decode(rule, id, bytes)
                .map_err(|reason| EngineError::Corrupt { what: format!("checkpoint {id} of rule {rule}"), reason })?;
            self.store.write_checkpoint(rule, id, bytes)?;
        }
        Ok(())
    }

    /// Checks a rule as [`Engine::create_rule`] would, without creating it:
    /// returns its id. (A cluster node checks a rule before it stores the
    /// definition in etcd, for the owner to create.)
    pub async fn check_rule(&self, body: &[u8]) -> Result<String, EngineError> {
        let (def, plan) = parse_rule(body).await?;
        self.validate(plan).await?;
        Ok(def.id)
    }

    /// Starts every rule that was running when the daemon last stopped.
    pub async fn resume(&self) {
        let ids: Vec<String> = {
            let rules = self.rules.lock().await;
            rules.iter().filter(|(_, e)| e.stored.running).map(|(id, _)| id.clone()).collect()
        };
        for id in ids {
            let started = match self.lifecycle(&id).await {
                Ok(_life) => self.start_run(&id).await,
                Err(e) => Err(e),
            };
            if let Err(e) = started {
                tracing::error!(rule = %id, "cannot resume rule: {e}");
            }
        }
    }

    /// Takes the lifecycle lock of a rule (see [`RuleEntry::life`]). Fails
    /// when the rule does not exist, or was deleted while this waited.
    async fn lifecycle(&self, id: &str) -> Result<tokio::sync::OwnedMutexGuard<()>, EngineError> {
        let life = self.rules.lock().await.get(id).map(|e| e.life.clone()).ok_or_else(|| no_rule(id))?;
        let guard = life.clone().lock_owned().await;
        match self.rules.lock().await.get(id) {
            Some(e) if Arc::ptr_eq(&e.life, &life) => Ok(guard),
            _ => Err(no_rule(id)),
        }
    }

    /// Stops a rule's run, if any, without holding the registry lock while
    /// its plugin processes stop. The caller holds the rule's lifecycle lock.
    async fn stop_run(&self, id: &str) {
        let taken = {
            let mut rules = self.rules.lock().await;
            rules.get_mut(id).map(|e| (e.run.take(), e.status.clone()))
        };
        if let Some((run, status)) = taken {
            stop_handle(run, &status).await;
        }
    }

    // ----- streams -----

    /// `CREATE STREAM …`.
    pub async fn create_stream(&self, sql: &str) -> Result<StreamDef, EngineError> {
        let sql = sql.to_string();
        let def = off_the_workers(move || parse_stream(&sql)).await??;
        let exists = || EngineError::StreamExists { name: def.name.clone() };
        if self.streams.lock().await.contains_key(&def.name) {
            return Err(exists());
        }
        let ty = def.source_type();
        if memory::is_memory(ty) {
            memory::check_filter(def.datasource())
                .map_err(|why| EngineError::Invalid(format!("stream {}: {why}", def.name)))?;
        } else if !self.host.has_plugin(PluginKind::Source, ty) {
            self.host.rescan().await;
            if !self.host.has_plugin(PluginKind::Source, ty) {
                return Err(EngineError::UnknownSource { name: def.name.clone(), plugin: ty.to_string() });
            }
        }
        self.source_props(&def)?;
        let mut streams = self.streams.lock().await;
        if streams.contains_key(&def.name) {
            return Err(exists());
        }
        self.store.put(Namespace::Streams, &def.name, def.sql.as_bytes())?;
        streams.insert(def.name.clone(), def.clone());
        Ok(def)
    }

    pub async fn list_streams(&self) -> Vec<String> {
        self.streams.lock().await.keys().cloned().collect()
    }

    pub async fn get_stream(&self, name: &str) -> Result<StreamDef, EngineError> {
        self.streams
            .lock()
            .await
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownStream { name: name.to_string() })
    }

    /// Drops a stream; one that rules use only when `force`d (eKuiper's
    /// `?force=true`): the running rules go on with the definition they
    /// started with, and fail at their next start.
    pub async fn drop_stream(&self, name: &str, force: bool) -> Result<(), EngineError> {
        let rules = self.rules.lock().await;
        let users: Vec<String> =
            rules.iter().filter(|(_, e)| e.plan.select.stream == name).map(|(id, _)| id.clone()).collect();
        if !users.is_empty() && !force {
            return Err(EngineError::StreamInUse { name: name.to_string(), rules: users });
        }
        let mut streams = self.streams.lock().await;
        if !streams.contains_key(name) {
            return Err(EngineError::UnknownStream { name: name.to_string() });
        }
        self.store.delete(Namespace::Streams, name)?;
        streams.remove(name);
        Ok(())
    }

    /// The source's properties: the `CONF_KEY` section of
    /// `<data-dir>/conf/sources/<type>.json` (over its `default` section), then
    /// the stream's own extra `WITH` options on top.
    fn source_props(&self, def: &StreamDef) -> Result<BTreeMap<String, oort_proto::Value>, EngineError> {
        let mut props = self.source_props_unresolved(def)?;
        self.with_connection(&mut props, def.source_type(), &format!("stream {}", def.name))?;
        Ok(props)
    }

    /// The source's properties before a `connectionSelector` is resolved.
    fn source_props_unresolved(&self, def: &StreamDef) -> Result<BTreeMap<String, oort_proto::Value>, EngineError> {
        let mut props = BTreeMap::new();
        let conf = conf::read(&self.conf_dir, def.source_type())?;
        let mut sections = vec!["default"];
        if let Some(key) = def.conf_key() {
            if !conf.contains_key(key) {
                return Err(EngineError::Invalid(format!(
                    "stream {}: CONF_KEY {key:?} has no section in {} (set one with PUT /metadata/sources/{}/confKeys/{key})",
                    def.name,
                    self.conf_dir.join(format!("{}.json", def.source_type())).display(),
                    def.source_type()
                )));
            }
            sections.push(key);
        }
        for section in sections {
            if let Some(serde_json::Value::Object(m)) = conf.get(section) {
                for (k, v) in m {
                    props.insert(k.clone(), oort_proto::Value::from_json(v));
                }
            }
        }
        props.extend(def.source_props());
        // eKuiper hands its sources the stream's FORMAT as property `format`
        // (a source decoding binary payloads reads it); json when not given.
        let format = def.format().unwrap_or_else(|| "json".to_string());
        props.entry("format".to_string()).or_insert(oort_proto::Value::String(format));
        Ok(props)
    }

    /// eKuiper's `GET /metadata/sources/yaml/{type}`: every section of a
    /// source type's configuration.
    pub fn source_conf(&self, source_type: &str) -> Result<serde_json::Map<String, Json>, EngineError> {
        conf::read(&self.conf_dir, source_type)
    }

    /// eKuiper's `PUT /metadata/sources/{type}/confKeys/{key}`: sets a conf
    /// key that streams name with `CONF_KEY` (read when a rule starts).
    pub fn put_conf_key(&self, source_type: &str, key: &str, props: Json) -> Result<(), EngineError> {
        conf::put_key(&self.conf_dir, source_type, key, props)
    }

    /// eKuiper's `DELETE /metadata/sources/{type}/confKeys/{key}`.
    pub fn delete_conf_key(&self, source_type: &str, key: &str) -> Result<(), EngineError> {
        if conf::delete_key(&self.conf_dir, source_type, key)? {
            Ok(())
        } else {
            Err(EngineError::UnknownConfKey { source_type: source_type.into(), key: key.into() })
        }
    }

    // ----- rules -----

    /// Checks everything a rule names, asking function plugins to validate
    /// their arguments; returns the plan, made again when some plugin
    /// function turns out to be an aggregate.
    async fn validate(&self, plan: RulePlan) -> Result<RulePlan, EngineError> {
        let stream = plan.select.stream.as_str();
        let def = self
            .streams
            .lock()
            .await
            .get(stream)
            .cloned()
            .ok_or_else(|| EngineError::Invalid(format!("unknown stream {stream:?} in FROM")))?;
        if plan.event_time.is_some() && plan.select.grouping.is_some() && def.timestamp_field().is_none() {
            return Err(EngineError::Invalid(format!(
                "isEventTime needs the stream's event time field: CREATE STREAM {stream} (…) WITH (TIMESTAMP=\"ts\", …)"
            )));
        }
        if def.is_shared() && plan.qos >= 1 {
            return Err(EngineError::Invalid(format!(
                "stream {stream} is SHARED: one source instance feeds every rule on it and cannot be rewound for \
                 one rule, so its rules cannot checkpoint (qos {}); use qos 0, or a stream without SHARED",
                plan.qos
            )));
        }
        let memory_source = memory::is_memory(def.source_type());
        if !memory_source && !self.host.has_plugin(PluginKind::Source, def.source_type()) {
            return Err(EngineError::Invalid(format!(
                "stream {stream}: no source plugin named {:?}",
                def.source_type()
            )));
        }
        for (i, action) in plan.actions.iter().enumerate() {
            if memory::is_memory(&action.sink) {
                memory::sink_topic(&action.props).map_err(|why| EngineError::Invalid(format!("action {i}: {why}")))?;
            } else if !self.host.has_plugin(PluginKind::Sink, &action.sink) {
                return Err(EngineError::Invalid(format!("unknown sink {:?} in actions", action.sink)));
            }
        }
        self.check_pins(&plan, def.source_type()).await?;
        // The source and sinks open an instance with the rule's properties
        // and close it: one whose `open` refuses them (a bad server URL, an
        // unknown property) refuses the rule now, instead of failing it at
        // every restart. A plugin that cannot be asked (it crashes, say) is
        // left for the run to report. The host remembers a success per stream
        // (and per sink properties), so a thousand rules on a stream make one
        // trial: a second rule on a stream whose source holds something
        // exclusive (httppush's path) fails at its run, not here.
        let source_type = def.source_type();
        let props = self.source_props(&def)?.into_iter().collect();
        let trial = match memory_source {
            true => Ok(None),
            false => {
                let scope = format!("stream {stream}");
                self.host.validate_source(&scope, source_type, def.datasource(), props, &plan.plugin_pins).await
            }
        };
        match trial {
            Ok(Some(why)) => {
                return Err(EngineError::Invalid(format!(
                    "stream {stream}: source {source_type} refused to open: {why}"
                )))
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(stream, "source {source_type} could not validate the stream's properties: {e}"),
        }
        for (i, action) in plan.actions.iter().enumerate().filter(|(_, a)| !memory::is_memory(&a.sink)) {
            let mut props = action.props.clone();
            let id = &plan.def.id;
            self.with_connection(&mut props, &action.sink, &format!("rule {id}: action {i} ({})", action.sink))?;
            match self.host.validate_sink(&action.sink, props.into_iter().collect(), &plan.plugin_pins).await {
                Ok(Some(why)) => {
                    return Err(EngineError::Invalid(format!(
                        "action {i}: sink {} refused to open: {why}",
                        action.sink
                    )))
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(rule = %id, "sink {} could not validate action {i}'s properties: {e}", action.sink)
                }
            }
        }
        let mut aggregates = oort_sql::AggregateFunctions::new();
        for call in &plan.select.calls {
            if !self.host.has_function(&call.function) {
                // A plugin file copied in by hand is found without a restart.
                self.host.rescan().await;
            }
            if !self.host.has_function(&call.function) {
                // The likeliest cause when a plugin was meant to export it: its
                // metadata's function list could not be read.
                let why = self.host.function_metadata_problems();
                let why = if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) };
                return Err(EngineError::Invalid(format!("unknown function {:?}{why}", call.function)));
            }
            match self.host.validate_function(&call.function, &call.args, &plan.plugin_pins).await {
                Ok(oort_host::Validation { problem: Some(problem), .. }) => {
                    return Err(EngineError::Invalid(format!("function {}: {problem}", call.function)))
                }
                Ok(v) => {
                    if v.is_aggregate {
                        aggregates.insert(call.function.to_lowercase());
                    }
                }
                Err(e) => {
                    return Err(EngineError::Invalid(format!("function {} cannot be validated: {e}", call.function)))
                }
            }
        }
        if aggregates.is_empty() {
            return Ok(plan);
        }
        let def = plan.def;
        Ok(off_the_workers(move || def.plan_with(&aggregates)).await??)
    }

    /// Checks a rule's `plugins` option: each names a plugin the rule uses,
    /// and an installed version of it matches.
    async fn check_pins(&self, plan: &RulePlan, source_type: &str) -> Result<(), EngineError> {
        if plan.plugin_pins.is_empty() {
            return Ok(());
        }
        let mut used: Vec<(PluginKind, String)> = Vec::new();
        if !memory::is_memory(source_type) {
            used.push((PluginKind::Source, source_type.to_string()));
        }
        for action in plan.actions.iter().filter(|a| !memory::is_memory(&a.sink)) {
            used.push((PluginKind::Sink, action.sink.clone()));
        }
        for call in &plan.select.calls {
            if !self.host.has_function(&call.function) {
                self.host.rescan().await;
            }
            if let Some(owner) = self.host.function_plugin(&call.function) {
                used.push((PluginKind::Function, owner));
            }
        }
        let fold = oort_core::names::fold;
        for (name, wanted) in &plan.plugin_pins {
            let mut kinds = used.iter().filter(|(_, n)| fold(n) == fold(name)).map(|(k, _)| *k).peekable();
            if kinds.peek().is_none() {
                let mut names: Vec<&str> = used.iter().map(|(_, n)| n.as_str()).collect();
                names.sort();
                names.dedup();
                return Err(EngineError::Invalid(format!(
                    "options.plugins: the rule uses no plugin named {name:?} (it uses {})",
                    names.join(", ")
                )));
            }
            for kind in kinds {
                self.host
                    .resolve_pin(kind, name, wanted)
                    .map_err(|e| EngineError::Invalid(format!("options.plugins: {e}")))?;
            }
        }
        Ok(())
    }

    /// Creates a rule and, unless `triggered` is false, starts it.
    pub async fn create_rule(&self, body: &[u8]) -> Result<String, EngineError> {
        let (def, plan) = parse_rule(body).await?;
        if self.rules.lock().await.contains_key(&def.id) {
            return Err(EngineError::RuleExists { id: def.id.clone() });
        }
        let plan = self.validate(plan).await?;
        let life = Arc::new(Mutex::new(()));
        // Uncontended: nobody else can see the entry before it is inserted.
        let _life = life.clone().lock_owned().await;
        let id = def.id.clone();
        let running = {
            let mut rules = self.rules.lock().await;
            if rules.contains_key(&def.id) {
                return Err(EngineError::RuleExists { id: def.id.clone() });
            }
            let stored = StoredRule { running: def.triggered.unwrap_or(true), rule: def };
            self.store.put(Namespace::Rules, &id, &serde_json::to_vec(&stored).expect("a rule serializes"))?;
            let status = Arc::new(RuleStatus::new(&plan));
            let running = stored.running;
            rules.insert(
                id.clone(),
                RuleEntry { stored, plan, status, run: None, life, unplannable: None, upgrade_note: None },
            );
            running
        };
        if running {
            self.start_run(&id).await?;
        }
        Ok(id)
    }

    /// Replaces a rule's definition; a running rule restarts with it.
    pub async fn update_rule(&self, id: &str, body: &[u8]) -> Result<(), EngineError> {
        let (def, plan) = parse_rule(body).await?;
        if def.id != id {
            return Err(EngineError::Invalid(format!("the rule's id {:?} does not match the URL's {id:?}", def.id)));
        }
        if !self.rules.lock().await.contains_key(id) {
            return Err(no_rule(id));
        }
        let plan = self.validate(plan).await?;
        let _life = self.lifecycle(id).await?;
        let running = self.rules.lock().await.get(id).map(|e| e.stored.running).ok_or_else(|| no_rule(id))?;
        self.stop_run(id).await;
        // A new definition is a new rule: its old checkpoints do not apply.
        self.discard_state(id)?;
        let stored = StoredRule { rule: def, running };
        self.store.put(Namespace::Rules, id, &serde_json::to_vec(&stored).expect("a rule serializes"))?;
        {
            let mut rules = self.rules.lock().await;
            let entry = rules.get_mut(id).ok_or_else(|| no_rule(id))?;
            entry.stored = stored;
            entry.status = Arc::new(RuleStatus::new(&plan));
            entry.plan = plan;
            entry.run = None;
            entry.unplannable = None;
        }
        if running {
            self.start_run(id).await?;
        }
        Ok(())
    }

    /// Stops and deletes a rule, with its state.
    pub async fn delete_rule(&self, id: &str) -> Result<(), EngineError> {
        let _life = self.lifecycle(id).await?;
        self.stop_run(id).await;
        // A new rule with the same id starts from nothing (eKuiper bug #871).
        self.discard_state(id)?;
        self.store.delete(Namespace::Rules, id)?;
        self.rules.lock().await.remove(id);
        self.host.forget_rule(id);
        Ok(())
    }

    pub async fn start_rule(&self, id: &str) -> Result<(), EngineError> {
        let _life = self.lifecycle(id).await?;
        self.set_running(id, true).await?;
        self.start_run(id).await
    }

    pub async fn stop_rule(&self, id: &str) -> Result<(), EngineError> {
        let _life = self.lifecycle(id).await?;
        self.set_running(id, false).await?;
        self.stop_run(id).await;
        Ok(())
    }

    /// Deletes a rule's checkpoints and forgets its in-memory state.
    fn discard_state(&self, id: &str) -> Result<(), EngineError> {
        self.store.delete_checkpoints(id)?;
        self.host.state().forget_rule(id);
        // Without state, no version has anything to refuse.
        self.forget_refusals(id)
    }

    /// Discards a rule's checkpoints and state, the operator's explicit choice
    /// after a checkpoint could not be restored. A running rule restarts empty.
    pub async fn reset_state(&self, id: &str) -> Result<(), EngineError> {
        let _life = self.lifecycle(id).await?;
        let running = self.rules.lock().await.get(id).map(|e| e.stored.running).ok_or_else(|| no_rule(id))?;
        self.stop_run(id).await;
        self.discard_state(id)?;
        if running {
            self.start_run(id).await?;
        }
        Ok(())
    }

    pub async fn restart_rule(&self, id: &str) -> Result<(), EngineError> {
        let _life = self.lifecycle(id).await?;
        self.set_running(id, true).await?;
        self.stop_run(id).await;
        self.start_run(id).await
    }

    async fn set_running(&self, id: &str, running: bool) -> Result<(), EngineError> {
        let mut rules = self.rules.lock().await;
        let entry = rules.get_mut(id).ok_or_else(|| no_rule(id))?;
        if entry.stored.running != running {
            entry.stored.running = running;
            self.store.put(Namespace::Rules, id, &serde_json::to_vec(&entry.stored).expect("a rule serializes"))?;
        }
        Ok(())
    }

    /// Starts a rule's pipeline unless it runs. The caller holds the rule's
    /// lifecycle lock.
    async fn start_run(&self, id: &str) -> Result<(), EngineError> {
        let stream_name = {
            let rules = self.rules.lock().await;
            let entry = rules.get(id).ok_or_else(|| no_rule(id))?;
            if let Some(reason) = &entry.unplannable {
                entry.status.set_state(RunState::Failed(reason.clone()));
                return Err(EngineError::CannotStart { id: id.to_string(), reason: reason.clone() });
            }
            entry.plan.select.stream.clone()
        };
        let stream = self.get_stream(&stream_name).await?;
        let source_props = self.source_props(&stream)?;
        let mut sink_props = Vec::new();
        {
            let rules = self.rules.lock().await;
            let entry = rules.get(id).ok_or_else(|| no_rule(id))?;
            for (i, action) in entry.plan.actions.iter().enumerate() {
                let mut props = action.props.clone();
                self.with_connection(&mut props, &action.sink, &format!("rule {id}: action {i} ({})", action.sink))?;
                sink_props.push(props);
            }
        }
        let mut rules = self.rules.lock().await;
        let entry = rules.get_mut(id).ok_or_else(|| no_rule(id))?;
        if entry.run.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Ok(());
        }
        // A fresh status per run: metrics restart at zero, like eKuiper's.
        entry.status = Arc::new(RuleStatus::new(&entry.plan));
        let status = entry.status.clone();
        status.set_state(RunState::Running);
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = pipeline::RunContext {
            plan: entry.plan.clone(),
            stream,
            source_props,
            sink_props,
            host: self.host.clone(),
            store: self.store.clone(),
            status: status.clone(),
            stop: stop_rx,
            shared: self.shared.clone(),
            memory: self.memory.clone(),
            publisher: self.publisher.clone(),
        };
        let rule = id.to_string();
        let task = tokio::spawn(async move {
            let strategy = ctx.plan.restart;
            let mut attempt = 0;
            loop {
                let started = std::time::Instant::now();
                let outcome = pipeline::run(ctx.clone()).await;
                if let Err(f) = &outcome {
                    status.run_failed(&f.reason);
                }
                match outcome {
                    Ok(()) => {
                        status.set_state(RunState::Stopped);
                        return;
                    }
                    Err(f) if f.recoverable && attempt < strategy.attempts => {
                        // A run that lasted a while was healthy: start counting afresh.
                        if started.elapsed() > std::time::Duration::from_secs(10) {
                            attempt = 0;
                        }
                        let delay = strategy.delay_for(attempt);
                        attempt += 1;
                        tracing::warn!(%rule, attempt, "rule restarts from its last checkpoint in {delay:?}: {}", f.reason);
                        status.source.exception(format!("restarting from the last checkpoint: {}", f.reason));
                        let mut stop = ctx.stop.clone();
                        tokio::select! {
                            _ = stopped(&mut stop) => {
                                status.set_state(RunState::Stopped);
                                return;
                            }
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                    Err(f) => {
                        tracing::error!(%rule, "rule failed: {}", f.reason);
                        status.set_state(RunState::Failed(f.reason));
                        return;
                    }
                }
            }
        });
        entry.run = Some(RunHandle { stop: stop_tx, task });
        Ok(())
    }

    /// Every rule with its status, eKuiper's `GET /rules` shape.
    /// Every rule's id and state.
    pub async fn list_rules(&self) -> Vec<(String, RunState)> {
        self.rules.lock().await.iter().map(|(id, e)| (id.clone(), e.status.state())).collect()
    }

    /// A rule's definition as given.
    pub async fn get_rule(&self, id: &str) -> Result<RuleDef, EngineError> {
        let rules = self.rules.lock().await;
        rules.get(id).map(|e| e.stored.rule.clone()).ok_or_else(|| no_rule(id))
    }

    /// A rule's state, operator numbers, checkpoint and plugin processes.
    pub async fn rule_status(&self, id: &str) -> Result<RuleReport, EngineError> {
        let rules = self.rules.lock().await;
        let (status, note) =
            rules.get(id).map(|e| (e.status.clone(), e.upgrade_note.clone())).ok_or_else(|| no_rule(id))?;
        drop(rules);
        Ok(RuleReport { upgrade: note, ..status.report() })
    }

    /// Stops every rule without changing whether it should run, so that the
    /// next start of the daemon resumes them.
    pub async fn shutdown(&self) {
        let runs: Vec<_> = {
            let mut rules = self.rules.lock().await;
            rules.values_mut().map(|e| (e.run.take(), e.status.clone())).collect()
        };
        // All at once: each may wait out its plugins' grace periods.
        futures_util::future::join_all(runs.into_iter().map(|(run, status)| async move {
            stop_handle(run, &status).await;
        }))
        .await;
    }

    /// Every rule's id with its current status object, for metrics scrapes.
    pub async fn statuses(&self) -> Vec<(String, Arc<RuleStatus>)> {
        self.rules.lock().await.iter().map(|(id, e)| (id.clone(), e.status.clone())).collect()
    }

    /// The rules that use plugin `name` and pin its version, with their pins.
    pub async fn pins_on(&self, kind: PluginKind, name: &str) -> Vec<(String, semver::VersionReq)> {
        let users = self.users_of(kind, name).await;
        let rules = self.rules.lock().await;
        let fold = oort_core::names::fold;
        users
            .into_iter()
            .filter_map(|id| {
                let pins = &rules.get(&id)?.plan.plugin_pins;
                let (_, req) = pins.iter().find(|(n, _)| fold(n) == fold(name))?;
                Some((id, req.clone()))
            })
            .collect()
    }

    pub async fn users_of(&self, kind: PluginKind, name: &str) -> Vec<String> {
        // Rules before streams, the order `drop_stream` takes them in.
        let rules = self.rules.lock().await;
        let streams = self.streams.lock().await;
        rules
            .iter()
            .filter(|(_, e)| match kind {
                PluginKind::Sink => e.plan.actions.iter().any(|a| a.sink.eq_ignore_ascii_case(name)),
                PluginKind::Source => {
                    streams.get(&e.plan.select.stream).is_some_and(|s| s.source_type().eq_ignore_ascii_case(name))
                }
                PluginKind::Function => {
                    e.plan.select.calls.iter().any(|c| self.host.function_plugin(&c.function).as_deref() == Some(name))
                }
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn no_rule(id: &str) -> EngineError {
    EngineError::UnknownRule { id: id.to_string() }
}

async fn stop_handle(run: Option<RunHandle>, status: &RuleStatus) {
    if let Some(run) = run {
        let _ = run.stop.send(true);
        let _ = run.task.await;
    }
    if status.state() == RunState::Running {
        status.set_state(RunState::Stopped);
    }
}

/// Runs CPU-bound parsing on the blocking pool: a huge statement must not
/// occupy one of the few async workers that answer every other request.
async fn off_the_workers<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Invalid(format!("the request could not be parsed: the parser failed ({e})")))
}

/// A rule's JSON parsed and planned, off the async workers.
async fn parse_rule(body: &[u8]) -> Result<(RuleDef, RulePlan), EngineError> {
    let body = body.to_vec();
    off_the_workers(move || -> Result<(RuleDef, RulePlan), EngineError> {
        let def = RuleDef::from_json(&body)?;
        let plan = def.plan()?;
        Ok((def, plan))
    })
    .await?
}

/// The plugin version of a stored rollback's key, `<kind dir>/<name>@<version>`.
fn parse_held_key(key: &str) -> Option<(PluginKind, String, String)> {
    let (dir, rest) = key.split_once('/')?;
    let (name, version) = rest.split_once('@')?;
    Some((PluginKind::from_dir_name(dir)?, name.to_string(), version.to_string()))
}
