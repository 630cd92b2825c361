//! Streams and rules at run time: the registry the API manages, persisted in
//! the store, and one pipeline task per running rule.
//!
//! Architecture invariant: the engine validates a rule completely before it
//! changes anything (stream, plugins, function arguments through the plugin's
//! own `Validate`), so a refused request leaves no trace.

mod checkpoint;
mod metrics;
mod pipeline;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tokio::sync::{watch, Mutex};

use crate::catalog::PluginKind;
use crate::host::Host;
use crate::rule::{parse_stream, RuleDef, RulePlan, StreamDef};
use crate::store::{Namespace, Store, StoreError};
use pipeline::stopped;
pub use pipeline::{RuleStatus, RunState};

/// Why an engine request failed; the API maps each variant to a status code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is malformed or names something that does not exist in it.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored definition of {what} is unreadable: {reason}")]
    Corrupt { what: String, reason: String },
}

impl From<crate::rule::RuleError> for EngineError {
    fn from(e: crate::rule::RuleError) -> Self {
        EngineError::Invalid(e.0)
    }
}

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
}

impl Engine {
    /// Loads every stream and rule from the store. Rules are not started: call
    /// [`Engine::resume`].
    pub fn load(store: Arc<Store>, host: Arc<Host>, conf_dir: PathBuf) -> Result<Engine, EngineError> {
        let mut streams = BTreeMap::new();
        for (name, bytes) in store.list(Namespace::Streams)? {
            let sql = String::from_utf8(bytes)
                .map_err(|e| EngineError::Corrupt { what: format!("stream {name}"), reason: e.to_string() })?;
            let def = parse_stream(&sql)
                .map_err(|e| EngineError::Corrupt { what: format!("stream {name}"), reason: e.to_string() })?;
            streams.insert(name, def);
        }
        let mut rules = BTreeMap::new();
        for (id, bytes) in store.list(Namespace::Rules)? {
            let corrupt = |reason: String| EngineError::Corrupt { what: format!("rule {id}"), reason };
            let stored: StoredRule = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
            let plan = stored.rule.plan().map_err(|e| corrupt(e.to_string()))?;
            let status = Arc::new(RuleStatus::new(&plan));
            rules.insert(id, RuleEntry { stored, plan, status, run: None });
        }
        Ok(Engine { store, host, conf_dir, streams: Mutex::new(streams), rules: Mutex::new(rules) })
    }

    /// Starts every rule that was running when the daemon last stopped.
    pub async fn resume(&self) {
        let mut rules = self.rules.lock().await;
        let ids: Vec<String> = rules.iter().filter(|(_, e)| e.stored.running).map(|(id, _)| id.clone()).collect();
        for id in ids {
            if let Err(e) = self.start_locked(&mut rules, &id).await {
                tracing::error!(rule = %id, "cannot resume rule: {e}");
            }
        }
    }

    // ----- streams -----

    /// `CREATE STREAM …`.
    pub async fn create_stream(&self, sql: &str) -> Result<StreamDef, EngineError> {
        let def = parse_stream(sql)?;
        let mut streams = self.streams.lock().await;
        if streams.contains_key(&def.name) {
            return Err(EngineError::Conflict(format!("stream {} already exists", def.name)));
        }
        let ty = def.source_type();
        if !self.host.has_plugin(PluginKind::Source, ty) {
            self.host.rescan().await;
            if !self.host.has_plugin(PluginKind::Source, ty) {
                return Err(EngineError::Invalid(format!("stream {}: no source plugin named {ty:?}", def.name)));
            }
        }
        self.source_props(&def)?;
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
            .ok_or_else(|| EngineError::NotFound(format!("no stream named {name:?}")))
    }

    /// Drops a stream that no rule uses.
    pub async fn drop_stream(&self, name: &str) -> Result<(), EngineError> {
        let rules = self.rules.lock().await;
        let users: Vec<&str> =
            rules.iter().filter(|(_, e)| e.plan.select.stream == name).map(|(id, _)| id.as_str()).collect();
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!("stream {name} is used by rules {}", users.join(", "))));
        }
        let mut streams = self.streams.lock().await;
        if !streams.contains_key(name) {
            return Err(EngineError::NotFound(format!("no stream named {name:?}")));
        }
        self.store.delete(Namespace::Streams, name)?;
        streams.remove(name);
        Ok(())
    }

    /// The source's properties: the `CONF_KEY` section of
    /// `<data-dir>/conf/sources/<type>.json` (over its `default` section), then
    /// the stream's own extra `WITH` options on top.
    fn source_props(&self, def: &StreamDef) -> Result<BTreeMap<String, oort_proto::Value>, EngineError> {
        let mut props = BTreeMap::new();
        let file = self.conf_dir.join(format!("{}.json", def.source_type()));
        let conf: Option<Json> = match std::fs::read(&file) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::Invalid(format!("source configuration {} is not valid JSON: {e}", file.display()))
            })?),
            Err(_) => None,
        };
        let mut sections = vec!["default"];
        if let Some(key) = def.conf_key() {
            if conf.as_ref().and_then(|c| c.get(key)).is_none() {
                return Err(EngineError::Invalid(format!(
                    "stream {}: CONF_KEY {key:?} has no section in {}",
                    def.name,
                    file.display()
                )));
            }
            sections.push(key);
        }
        for section in sections {
            if let Some(serde_json::Value::Object(m)) = conf.as_ref().and_then(|c| c.get(section)) {
                for (k, v) in m {
                    props.insert(k.clone(), oort_proto::Value::from_json(v));
                }
            }
        }
        props.extend(def.source_props());
        Ok(props)
    }

    // ----- rules -----

    /// Checks everything a rule names, asking function plugins to validate
    /// their arguments.
    async fn validate(&self, plan: &RulePlan) -> Result<(), EngineError> {
        let stream = plan.select.stream.as_str();
        let def = self
            .streams
            .lock()
            .await
            .get(stream)
            .cloned()
            .ok_or_else(|| EngineError::Invalid(format!("unknown stream {stream:?} in FROM")))?;
        if !self.host.has_plugin(PluginKind::Source, def.source_type()) {
            return Err(EngineError::Invalid(format!(
                "stream {stream}: no source plugin named {:?}",
                def.source_type()
            )));
        }
        for action in &plan.actions {
            if !self.host.has_plugin(PluginKind::Sink, &action.sink) {
                return Err(EngineError::Invalid(format!("unknown sink {:?} in actions", action.sink)));
            }
        }
        for call in &plan.select.calls {
            if !self.host.has_function(&call.function) {
                return Err(EngineError::Invalid(format!("unknown function {:?}", call.function)));
            }
            match self.host.validate_function(&call.function, &call.args).await {
                Ok(None) => {}
                Ok(Some(problem)) => {
                    return Err(EngineError::Invalid(format!("function {}: {problem}", call.function)))
                }
                Err(e) => {
                    return Err(EngineError::Invalid(format!("function {} cannot be validated: {e}", call.function)))
                }
            }
        }
        Ok(())
    }

    /// Creates a rule and, unless `triggered` is false, starts it.
    pub async fn create_rule(&self, body: &[u8]) -> Result<String, EngineError> {
        let def = RuleDef::from_json(body)?;
        let plan = def.plan()?;
        if self.rules.lock().await.contains_key(&def.id) {
            return Err(EngineError::Conflict(format!("rule {} already exists", def.id)));
        }
        self.validate(&plan).await?;
        let mut rules = self.rules.lock().await;
        if rules.contains_key(&def.id) {
            return Err(EngineError::Conflict(format!("rule {} already exists", def.id)));
        }
        let id = def.id.clone();
        let stored = StoredRule { running: def.triggered.unwrap_or(true), rule: def };
        self.store.put(Namespace::Rules, &id, &serde_json::to_vec(&stored).expect("a rule serializes"))?;
        let status = Arc::new(RuleStatus::new(&plan));
        let running = stored.running;
        rules.insert(id.clone(), RuleEntry { stored, plan, status, run: None });
        if running {
            self.start_locked(&mut rules, &id).await?;
        }
        Ok(id)
    }

    /// Replaces a rule's definition; a running rule restarts with it.
    pub async fn update_rule(&self, id: &str, body: &[u8]) -> Result<(), EngineError> {
        let def = RuleDef::from_json(body)?;
        if def.id != id {
            return Err(EngineError::Invalid(format!("the rule's id {:?} does not match the URL's {id:?}", def.id)));
        }
        let plan = def.plan()?;
        if !self.rules.lock().await.contains_key(id) {
            return Err(no_rule(id));
        }
        self.validate(&plan).await?;
        let mut rules = self.rules.lock().await;
        let entry = rules.get_mut(id).ok_or_else(|| no_rule(id))?;
        let running = entry.stored.running;
        stop_entry(entry).await;
        // A new definition is a new rule: its old checkpoints do not apply.
        self.discard_state(id)?;
        let stored = StoredRule { rule: def, running };
        self.store.put(Namespace::Rules, id, &serde_json::to_vec(&stored).expect("a rule serializes"))?;
        *entry = RuleEntry { stored, status: Arc::new(RuleStatus::new(&plan)), plan, run: None };
        if running {
            self.start_locked(&mut rules, id).await?;
        }
        Ok(())
    }

    /// Stops and deletes a rule, with its state.
    pub async fn delete_rule(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.rules.lock().await;
        let entry = rules.get_mut(id).ok_or_else(|| no_rule(id))?;
        stop_entry(entry).await;
        // A new rule with the same id starts from nothing (eKuiper bug #871).
        self.discard_state(id)?;
        self.store.delete(Namespace::Rules, id)?;
        rules.remove(id);
        Ok(())
    }

    pub async fn start_rule(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.rules.lock().await;
        self.set_running(&mut rules, id, true)?;
        self.start_locked(&mut rules, id).await
    }

    pub async fn stop_rule(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.rules.lock().await;
        self.set_running(&mut rules, id, false)?;
        let entry = rules.get_mut(id).expect("checked by set_running");
        stop_entry(entry).await;
        Ok(())
    }

    /// Deletes a rule's checkpoints and forgets its in-memory state.
    fn discard_state(&self, id: &str) -> Result<(), EngineError> {
        self.store.delete_checkpoints(id)?;
        self.host.state().forget_rule(id);
        Ok(())
    }

    /// Discards a rule's checkpoints and state, the operator's explicit choice
    /// after a checkpoint could not be restored. A running rule restarts empty.
    pub async fn reset_state(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.rules.lock().await;
        let entry = rules.get_mut(id).ok_or_else(|| no_rule(id))?;
        let running = entry.stored.running;
        stop_entry(entry).await;
        self.discard_state(id)?;
        if running {
            self.start_locked(&mut rules, id).await?;
        }
        Ok(())
    }

    pub async fn restart_rule(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.rules.lock().await;
        self.set_running(&mut rules, id, true)?;
        stop_entry(rules.get_mut(id).expect("checked by set_running")).await;
        self.start_locked(&mut rules, id).await
    }

    fn set_running(&self, rules: &mut BTreeMap<String, RuleEntry>, id: &str, running: bool) -> Result<(), EngineError> {
        let entry = rules.get_mut(id).ok_or_else(|| no_rule(id))?;
        if entry.stored.running != running {
            entry.stored.running = running;
            self.store.put(Namespace::Rules, id, &serde_json::to_vec(&entry.stored).expect("a rule serializes"))?;
        }
        Ok(())
    }

    async fn start_locked(&self, rules: &mut BTreeMap<String, RuleEntry>, id: &str) -> Result<(), EngineError> {
        let entry = rules.get_mut(id).ok_or_else(|| no_rule(id))?;
        if entry.run.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Ok(());
        }
        let stream = self.get_stream(&entry.plan.select.stream).await?;
        let source_props = self.source_props(&stream)?;
        // A fresh status per run: metrics restart at zero, like eKuiper's.
        entry.status = Arc::new(RuleStatus::new(&entry.plan));
        let status = entry.status.clone();
        status.set_state(RunState::Running);
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = pipeline::RunContext {
            plan: entry.plan.clone(),
            stream,
            source_props,
            host: self.host.clone(),
            store: self.store.clone(),
            status: status.clone(),
            stop: stop_rx,
        };
        let rule = id.to_string();
        let task = tokio::spawn(async move {
            let strategy = ctx.plan.restart;
            let mut attempt = 0;
            loop {
                let started = std::time::Instant::now();
                match pipeline::run(ctx.clone()).await {
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
    pub async fn list_rules(&self) -> Vec<Json> {
        self.rules
            .lock()
            .await
            .iter()
            .map(|(id, e)| json!({"id": id, "status": status_word(&e.status.state())}))
            .collect()
    }

    /// A rule's definition as given.
    pub async fn get_rule(&self, id: &str) -> Result<RuleDef, EngineError> {
        let rules = self.rules.lock().await;
        rules.get(id).map(|e| e.stored.rule.clone()).ok_or_else(|| no_rule(id))
    }

    /// eKuiper's flat status object, plus the plugin processes serving the rule.
    pub async fn rule_status(&self, id: &str) -> Result<Json, EngineError> {
        let status = {
            let rules = self.rules.lock().await;
            rules.get(id).map(|e| e.status.clone()).ok_or_else(|| no_rule(id))?
        };
        let mut out = serde_json::Map::new();
        let state = status.state();
        out.insert("status".into(), json!(status_word(&state)));
        if let RunState::Failed(reason) = &state {
            out.insert("message".into(), json!(reason));
        }
        if let Some(w) = status.warning() {
            out.insert("warning".into(), json!(w));
        }
        let stuck = status.stuck();
        if !stuck.is_empty() {
            out.insert("stuck".into(), json!(stuck));
        }
        if let Some((id, at)) = status.last_checkpoint() {
            out.insert("checkpoint_last_id".into(), json!(id));
            out.insert("checkpoint_last_time".into(), json!(at));
        }
        status.source.report(&mut out);
        status.filter.report(&mut out);
        status.project.report(&mut out);
        for s in &status.sinks {
            s.report(&mut out);
        }
        out.insert("plugins".into(), Json::Array(status.plugins()));
        Ok(Json::Object(out))
    }

    /// Stops every rule without changing whether it should run, so that the
    /// next start of the daemon resumes them.
    pub async fn shutdown(&self) {
        let mut rules = self.rules.lock().await;
        for entry in rules.values_mut() {
            stop_entry(entry).await;
        }
    }

    /// Sinks and sources in use, by plugin, for refusing to remove them.
    pub async fn users_of(&self, kind: PluginKind, name: &str) -> Vec<String> {
        let streams = self.streams.lock().await;
        let rules = self.rules.lock().await;
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
    EngineError::NotFound(format!("no rule named {id:?}"))
}

fn status_word(s: &RunState) -> &'static str {
    match s {
        RunState::Running => "running",
        RunState::Stopped => "stopped",
        RunState::Failed(_) => "error",
    }
}

async fn stop_entry(entry: &mut RuleEntry) {
    if let Some(run) = entry.run.take() {
        let _ = run.stop.send(true);
        let _ = run.task.await;
    }
    if entry.status.state() == RunState::Running {
        entry.status.set_state(RunState::Stopped);
    }
}
