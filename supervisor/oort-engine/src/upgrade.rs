//! Moving running rules between versions of a plugin: upgrades, rollbacks,
//! and the automatic rollback of a version that does not take.
//!
//! A rule moves by a restart on the version it would start with now: from
//! its last checkpoint when it checkpoints (qos 1 and 2: nothing lost, and at
//! qos 2 nothing repeated), with the state the supervisor holds otherwise.
//! Before a rule moves, the new version must start, describe itself as the
//! plugin (every function the rule calls exported) and accept the rule's
//! state (`Host::check_upgrade`); after it moved, its instances must open.
//! A version failing either is held back (a rollback, persisted) and the
//! rules already moved go back. For a grace period after the last move, a
//! version whose processes crash twice, or whose moved rule fails, is rolled
//! back the same way. A version that refuses a rule's state only stops the
//! upgrade: the rule keeps running on the version it has.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oort_host::catalog::PluginKind;
use oort_host::HostError;
use oort_store::Namespace;

use crate::{Engine, EngineError, RunState};

/// How long a version is watched after rules moved to it, unless the daemon
/// is told otherwise.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Unexpected exits of a new version's processes, within the grace period,
/// that make a crash loop.
const CRASH_LOOP: u64 = 2;

/// How often a moved rule and the new version are looked at.
const POLL: Duration = Duration::from_millis(20);

/// What an upgrade did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UpgradeOutcome {
    /// The rules moved to the version they start with now.
    pub moved: Vec<String>,
    /// The rule the upgrade stopped at, and why: the new version refused its
    /// state. The rule runs on as it was; the rules after it were not moved.
    pub refused: Option<(String, String)>,
    /// The version held back, and why: it could not take over a rule. The
    /// rules moved to it went back.
    pub rolled_back: Option<(String, String)>,
}

impl Engine {
    /// Moves the running rules that use plugin `name` onto the version they
    /// would start with now (the newest, or the newest their pin accepts),
    /// one at a time, checking each move (see the module's comment). The
    /// versions moved to are watched for the grace period in the background.
    pub async fn upgrade(self: &Arc<Self>, kind: PluginKind, name: &str) -> UpgradeOutcome {
        self.host.rescan().await;
        let mut out = UpgradeOutcome::default();
        let mut watched: Vec<(String, String)> = Vec::new();
        let mut crashes_before: BTreeMap<String, u64> = BTreeMap::new();
        for id in self.users_of(kind, name).await {
            if !self.runs_outdated(&id, kind, name).await {
                continue;
            }
            let functions = self.functions_from(&id, kind, name).await;
            let version = match self.host.check_upgrade(&id, kind, name, &functions).await {
                Ok(version) => version,
                Err(e @ HostError::StateRefused { .. }) => {
                    let version = self.host.version_for(&id, kind, name).unwrap_or_default();
                    let why = format!(
                        "the upgrade of {} plugin {name} to {version} stopped: {e}; the rule stays on the version it \
                         has (also after a restart) until a version that accepts its state is installed",
                        kind.as_str()
                    );
                    tracing::warn!(rule = %id, "{why}");
                    let refusal = Refusal { rule: id.clone(), kind, name: name.to_string(), version };
                    if let Err(e) = self.remember_refusal(&refusal) {
                        tracing::error!(rule = %id, "the refusal could not be stored: {e}");
                    }
                    self.note_upgrade(&id, Some(why)).await;
                    out.refused = Some((id, e.to_string()));
                    break;
                }
                Err(e) => {
                    let version = self.host.version_for(&id, kind, name).unwrap_or_default();
                    let why = format!("it could not take over rule {id}: {e}");
                    let mut affected = out.moved.clone();
                    affected.push(id);
                    out.rolled_back = Some((version.clone(), why.clone()));
                    self.roll_back_automatically(kind, name, &version, &why, &affected).await;
                    return out;
                }
            };
            crashes_before.entry(version.clone()).or_insert_with(|| self.host.crashes(kind, name, &version));
            tracing::info!(rule = %id, plugin = name, kind = kind.as_str(), %version, "moving the rule to another plugin version");
            if let Err(e) = self.restart_rule(&id).await {
                tracing::warn!(rule = %id, plugin = name, "the rule could not move to version {version}: {e}");
                continue;
            }
            self.note_upgrade(&id, None).await;
            out.moved.push(id.clone());
            watched.push((id.clone(), version.clone()));
            if let Err(why) = self.settled(&id).await {
                let why = format!("rule {id} failed on it: {why}");
                out.rolled_back = Some((version.clone(), why.clone()));
                self.roll_back_automatically(kind, name, &version, &why, &out.moved).await;
                return out;
            }
        }
        if !watched.is_empty() {
            let engine = self.clone();
            let name = name.to_string();
            tokio::spawn(async move { engine.watch_upgrade(kind, &name, watched, crashes_before).await });
        }
        out
    }

    /// Rolls a plugin back: its current version (what unpinned rules start
    /// with) is held back, persistently, and the running rules move to the
    /// version before it. Returns the version held back and the rules moved.
    pub async fn rollback(&self, kind: PluginKind, name: &str) -> Result<(String, Vec<String>), EngineError> {
        self.host.rescan().await;
        let current = self
            .host
            .current_version(kind, name)
            .ok_or_else(|| EngineError::UnknownPlugin { kind: kind.as_str(), name: name.to_string() })?;
        self.hold(kind, name, &current)?;
        tracing::warn!(plugin = name, kind = kind.as_str(), version = %current, "plugin version rolled back");
        Ok((current, self.move_back(kind, name).await))
    }

    /// Lets a rolled-back version run again: its file is gone.
    pub fn forget_hold(&self, kind: PluginKind, name: &str, version: &str) -> Result<(), EngineError> {
        self.host.unhold(kind, name, version);
        Ok(self.store.delete(Namespace::HeldVersions, &held_key(kind, name, version))?)
    }

    /// Holds `version` back, persistently, unless no other version could run.
    fn hold(&self, kind: PluginKind, name: &str, version: &str) -> Result<(), EngineError> {
        self.host.hold(kind, name, version);
        if self.host.current_version(kind, name).is_none() {
            self.host.unhold(kind, name, version);
            return Err(EngineError::NothingToRollBackTo {
                kind: kind.as_str(),
                name: name.to_string(),
                version: version.to_string(),
            });
        }
        self.store.put(Namespace::HeldVersions, &held_key(kind, name, version), b"{}")?;
        Ok(())
    }

    /// Holds back a version that did not take, moves its rules back, and
    /// says so in the log and in the status of every rule it affected.
    async fn roll_back_automatically(
        &self,
        kind: PluginKind,
        name: &str,
        version: &str,
        why: &str,
        affected: &[String],
    ) {
        let note = match self.hold(kind, name, version) {
            Ok(()) => {
                tracing::error!(plugin = name, kind = kind.as_str(), %version, "plugin version rolled back automatically: {why}");
                format!("{} plugin {name} {version} was rolled back automatically: {why}", kind.as_str())
            }
            Err(e) => {
                tracing::error!(plugin = name, kind = kind.as_str(), %version, "plugin version failed ({why}) and cannot be rolled back: {e}");
                format!("{} plugin {name} {version} failed ({why}) and cannot be rolled back: {e}", kind.as_str())
            }
        };
        for id in affected {
            self.note_upgrade(id, Some(note.clone())).await;
        }
        self.move_back(kind, name).await;
    }

    /// Moves the running rules of a plugin that run another version than
    /// they would start with now (a version was held back), unless that
    /// version refuses a rule's state: such a rule stays where it is.
    async fn move_back(&self, kind: PluginKind, name: &str) -> Vec<String> {
        let mut moved = Vec::new();
        for id in self.users_of(kind, name).await {
            if !self.runs_outdated(&id, kind, name).await {
                continue;
            }
            let functions = self.functions_from(&id, kind, name).await;
            if let Err(e) = self.host.check_upgrade(&id, kind, name, &functions).await {
                let why = format!("the rule stays on its version of {} plugin {name}: {e}", kind.as_str());
                tracing::warn!(rule = %id, "{why}");
                self.note_upgrade(&id, Some(why)).await;
                continue;
            }
            match self.restart_rule(&id).await {
                Ok(()) => moved.push(id),
                Err(e) => tracing::warn!(rule = %id, plugin = name, "the rule could not move: {e}"),
            }
        }
        moved
    }

    /// Waits until the run a rule just started opened every instance (`Ok`)
    /// or failed, for at most the grace period.
    async fn settled(&self, id: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.upgrade_grace;
        loop {
            let Some(status) = self.rules.lock().await.get(id).map(|e| e.status.clone()) else {
                return Ok(());
            };
            if let Some(reason) = run_failure(&status) {
                return Err(reason);
            }
            if status.runs().0 > 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("its instances did not open within {:?}", self.upgrade_grace));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Watches the versions rules were moved to for the grace period: a
    /// version whose processes crash [`CRASH_LOOP`] times, or a moved rule
    /// that fails, rolls its version back.
    async fn watch_upgrade(
        &self,
        kind: PluginKind,
        name: &str,
        moved: Vec<(String, String)>,
        crashes_before: BTreeMap<String, u64>,
    ) {
        let deadline = Instant::now() + self.upgrade_grace;
        while Instant::now() < deadline {
            tokio::time::sleep(POLL * 5).await;
            for (version, before) in &crashes_before {
                let crashes = self.host.crashes(kind, name, version).saturating_sub(*before);
                if crashes >= CRASH_LOOP {
                    let why = format!(
                        "its processes ended unexpectedly {crashes} times within {:?} of the upgrade",
                        self.upgrade_grace
                    );
                    let affected = rules_on(&moved, version);
                    self.roll_back_automatically(kind, name, version, &why, &affected).await;
                    return;
                }
            }
            for (id, version) in &moved {
                let Some(status) = self.rules.lock().await.get(id).map(|e| e.status.clone()) else { continue };
                if let Some(reason) = run_failure(&status) {
                    let why =
                        format!("rule {id} failed on it within {:?} of the upgrade: {reason}", self.upgrade_grace);
                    self.roll_back_automatically(kind, name, version, &why, &rules_on(&moved, version)).await;
                    return;
                }
            }
        }
        tracing::info!(plugin = name, kind = kind.as_str(), "the upgraded plugin ran through its grace period");
        if self.remove_unused_versions {
            self.remove_unused_versions(kind, name, crashes_before.keys()).await;
        }
    }

    /// Removes the versions of a plugin older than the newest of `moved_to`
    /// (the versions an upgrade moved rules to) that no rule runs and no pin
    /// selects, except the newest of them: the version `oort plugin
    /// rollback` goes back to.
    async fn remove_unused_versions(&self, kind: PluginKind, name: &str, moved_to: impl Iterator<Item = &String>) {
        self.host.rescan().await;
        let Some(info) = self.host.describe(kind, name).await else { return };
        let moved_to: Vec<&String> = moved_to.collect();
        // Newest first: the first listed version rules moved to.
        let Some(current) = info.versions.iter().position(|v| moved_to.contains(&&v.version)) else { return };
        let mut pinned = Vec::new();
        for (_, req) in self.pins_on(kind, name).await {
            pinned.extend(self.host.resolve_pin(kind, name, &req).ok());
        }
        let older = info.versions.iter().skip(current + 1);
        let mut rollback_target_seen = false;
        for v in older {
            if !v.held && !rollback_target_seen {
                rollback_target_seen = true;
                continue;
            }
            if !v.rules.is_empty() || pinned.contains(&v.version) {
                continue;
            }
            let (dir, n, file) = (self.host.plugins_dir().to_path_buf(), name.to_string(), v.file.clone());
            let removed =
                tokio::task::spawn_blocking(move || oort_host::install::remove_version(&dir, kind, &n, &file)).await;
            match removed {
                Ok(Ok(())) => {
                    tracing::info!(plugin = name, kind = kind.as_str(), version = %v.version, "removed a plugin version no rule runs");
                    if v.held {
                        if let Err(e) = self.forget_hold(kind, name, &v.version) {
                            tracing::warn!(plugin = name, "the end of a hold could not be stored: {e}");
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(plugin = name, version = %v.version, "an unused version could not be removed: {e}")
                }
                Err(e) => {
                    tracing::warn!(plugin = name, version = %v.version, "an unused version could not be removed: {e}")
                }
            }
        }
        self.host.rescan().await;
    }

    /// Whether rule `id` should run and runs another version of the plugin
    /// than it would start with now.
    async fn runs_outdated(&self, id: &str, kind: PluginKind, name: &str) -> bool {
        let running = self.rules.lock().await.get(id).is_some_and(|e| e.run.is_some() && e.stored.running);
        running && self.host.outdated(id, kind, name).await
    }

    /// The functions of plugin `name` that rule `id` calls (none for a source
    /// or sink plugin).
    async fn functions_from(&self, id: &str, kind: PluginKind, name: &str) -> Vec<String> {
        if kind != PluginKind::Function {
            return Vec::new();
        }
        let rules = self.rules.lock().await;
        let Some(entry) = rules.get(id) else { return Vec::new() };
        let mut functions: Vec<String> = entry
            .plan
            .select
            .calls
            .iter()
            .filter(|c| {
                self.host
                    .function_plugin(&c.function)
                    .is_some_and(|p| oort_core::names::fold(&p) == oort_core::names::fold(name))
            })
            .map(|c| c.function.clone())
            .collect();
        functions.sort();
        functions.dedup();
        functions
    }

    /// Keeps a rule off a version that refused its state, persistently.
    fn remember_refusal(&self, r: &Refusal) -> Result<(), EngineError> {
        r.apply(&self.host);
        let key = format!("{}/{}", r.rule, held_key(r.kind, &r.name, &r.version));
        let value = serde_json::to_vec(r).expect("a refusal serializes");
        Ok(self.store.put(Namespace::RefusedVersions, &key, &value)?)
    }

    /// Forgets the versions that refused a rule's state (its state is gone).
    pub(crate) fn forget_refusals(&self, id: &str) -> Result<(), EngineError> {
        self.host.clear_refusals(id);
        for (key, value) in self.store.list(Namespace::RefusedVersions)? {
            if serde_json::from_slice::<Refusal>(&value).map_or(true, |r| r.rule == id) {
                self.store.delete(Namespace::RefusedVersions, &key)?;
            }
        }
        Ok(())
    }

    async fn note_upgrade(&self, id: &str, note: Option<String>) {
        if let Some(entry) = self.rules.lock().await.get_mut(id) {
            entry.upgrade_note = note;
        }
    }
}

/// A plugin version that refused a rule's state, as stored.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Refusal {
    rule: String,
    #[serde(with = "kind_dir")]
    kind: PluginKind,
    name: String,
    version: String,
}

impl Refusal {
    pub(crate) fn apply(&self, host: &oort_host::Host) {
        host.refuse_for_rule(&self.rule, self.kind, &self.name, &self.version);
    }
}

/// A plugin kind stored as its folder name (`functions`, `sources`, `sinks`).
mod kind_dir {
    use oort_host::catalog::PluginKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kind: &PluginKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.dir_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PluginKind, D::Error> {
        let dir = String::deserialize(d)?;
        PluginKind::from_dir_name(&dir).ok_or_else(|| serde::de::Error::custom(format!("no plugin kind {dir:?}")))
    }
}

/// Why the rule's current run (or a restart of it) failed, if one did: it
/// stopped in `error`, or a run ended in a failure and the rule restarts.
fn run_failure(status: &crate::RuleStatus) -> Option<String> {
    if let RunState::Failed(reason) = status.state() {
        return Some(reason);
    }
    let (_, failed, why) = status.runs();
    (failed > 0).then(|| why.unwrap_or_default())
}

/// The rules of `moved` that went to `version`.
fn rules_on(moved: &[(String, String)], version: &str) -> Vec<String> {
    moved.iter().filter(|(_, v)| v == version).map(|(id, _)| id.clone()).collect()
}

/// The store key of a held version, `<kind dir>/<folded name>@<version>`.
fn held_key(kind: PluginKind, name: &str, version: &str) -> String {
    format!("{}/{}@{version}", kind.dir_name(), oort_core::names::fold(name))
}
