//! One unary call with the call deadline, opening an instance on a live
//! process, and the hooks that reopen a restarted process's instances.

use super::*;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn exported(describe: &pb::DescribeResponse, kind: pb::Kind) -> Vec<String> {
    describe.symbols.iter().filter(|s| s.kind == kind as i32).map(|s| s.name.clone()).collect()
}

/// The function's name exactly as the plugin exports it (SQL function names
/// are case-insensitive, plugin symbols are not), and whether its `Describe`
/// calls it an aggregate.
pub(super) fn exported_function(entry: &Entry, function: &str) -> Result<(String, bool), HostError> {
    let live =
        entry.process.current().ok_or_else(|| ProcessError::Stopped { name: entry.process.spec().name.clone() })?;
    live.describe
        .symbols
        .iter()
        .find(|s| s.kind == pb::Kind::Function as i32 && s.name.eq_ignore_ascii_case(function))
        .map(|s| (s.name.clone(), s.is_aggregate))
        .ok_or_else(|| HostError::UnknownFunction(function.to_string()))
}

/// What every instance opened for a rule is told about the rule's run.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RuleRun {
    pub(super) checkpointing: bool,
    pub(super) fencing_token: u64,
}

pub(super) fn new_spec(rule: &str, operator: &str, symbol: &str, run: RuleRun) -> pb::InstanceSpec {
    pb::InstanceSpec {
        instance_id: format!("{rule}/{operator}"),
        symbol: symbol.to_string(),
        rule_id: rule.to_string(),
        operator_id: operator.to_string(),
        state: Vec::new(),
        checkpointing: run.checkpointing,
        state_version: 0,
        fencing_token: run.fencing_token,
    }
}

pub(super) fn instance_spec(open: &OpenSpec) -> &pb::InstanceSpec {
    match open {
        OpenSpec::Function { spec } | OpenSpec::Source { spec, .. } | OpenSpec::Sink { spec, .. } => spec,
    }
}

pub(super) fn set_state(open: &mut OpenSpec, state: Vec<pb::StateEntry>, version: u32) {
    match open {
        OpenSpec::Function { spec } | OpenSpec::Source { spec, .. } | OpenSpec::Sink { spec, .. } => {
            spec.state = state;
            spec.state_version = version;
        }
    }
}

/// The state an instance opens with on `live`: the supervisor's copy, first
/// migrated by the plugin (`MigrateState`) when it was written under another
/// state version than the process declares. The second half is true for a
/// migration, which [`open_with_state`] records once the open succeeded: an
/// open that fails leaves the supervisor's copy as it was.
pub(super) async fn state_for(
    live: &Live,
    state: &StateRegistry,
    open: &OpenSpec,
    timeouts: Timeouts,
    plugin: &str,
) -> Result<(Vec<pb::StateEntry>, bool), HostError> {
    let spec = instance_spec(open);
    let entries = state.entries(&spec.instance_id);
    let from = state.state_version(&spec.instance_id);
    let to = live.describe.state_version;
    if from == to || entries.is_empty() {
        return Ok((entries, false));
    }
    let req = pb::MigrateStateRequest {
        symbol: spec.symbol.clone(),
        from_version: from,
        state: entries,
        rule_id: spec.rule_id.clone(),
        operator_id: spec.operator_id.clone(),
    };
    let mut client = pb::plugin_client::PluginClient::new(live.channel.clone());
    match tokio::time::timeout(timeouts.call, client.migrate_state(req)).await {
        Ok(Ok(resp)) => Ok((resp.into_inner().state, true)),
        Ok(Err(status)) if matches!(status.code(), tonic::Code::FailedPrecondition | tonic::Code::Unimplemented) => {
            let message = match status.code() {
                tonic::Code::Unimplemented => "the plugin does not serve MigrateState".to_string(),
                _ => status_message(&status),
            };
            Err(HostError::StateRefused { plugin: plugin.into(), from, to, message })
        }
        Ok(Err(status)) => {
            Err(HostError::Call { plugin: plugin.into(), call: "MigrateState", message: status_message(&status) })
        }
        Err(_) => Err(HostError::Timeout { plugin: plugin.into(), call: "MigrateState", timeout: timeouts.call }),
    }
}

/// Opens an instance on `live` with the supervisor's copy of its state,
/// migrated first when the process declares another state version; the
/// supervisor's copy takes the migrated state and the process's state version
/// only once the open succeeded.
pub(super) async fn open_with_state(
    live: &Live,
    state: &StateRegistry,
    mut open: OpenSpec,
    timeouts: Timeouts,
    plugin: &str,
) -> Result<Declared, HostError> {
    let (entries, migrated) = state_for(live, state, &open, timeouts, plugin).await?;
    // Only a migration needs the entries again, to commit them.
    let to_commit = migrated.then(|| entries.clone());
    let version = live.describe.state_version;
    set_state(&mut open, entries, version);
    let declared = open_on(live, &open, timeouts, plugin).await?;
    let id = &instance_spec(&open).instance_id;
    match to_commit {
        Some(entries) => state.replace_migrated(id, entries, version),
        None => state.set_state_version(id, version),
    }
    Ok(declared)
}

/// Runs one unary call with the call deadline, mapping every failure to a
/// `HostError` that names the plugin and the call.
pub(super) async fn call<T>(
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
pub(super) fn status_message(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?} ({})", status.code(), status.code().description())
    } else {
        status.message().to_string()
    }
}

/// What a plugin declared when an instance opened.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Declared {
    /// `rewindable` for a source, `transactional` for a sink, false for a function.
    pub(super) capable: bool,
    /// A sink that wants encoded payloads instead of records.
    pub(super) wants_payloads: bool,
    /// A sink that takes batches as Arrow columns.
    pub(super) takes_arrow: bool,
    /// A source that acknowledges its upstream only on `Checkpointed`.
    pub(super) acks_on_checkpoint: bool,
}

/// Opens an instance on a live process and returns what the plugin declared.
/// The plugin's `open` refusing (`FAILED_PRECONDITION`) is
/// [`HostError::Refused`].
pub(super) async fn open_on(
    live: &Live,
    open: &OpenSpec,
    timeouts: Timeouts,
    plugin: &str,
) -> Result<Declared, HostError> {
    Ok(match open.clone() {
        OpenSpec::Function { spec } => {
            let mut c = pb::function_client::FunctionClient::new(live.channel.clone());
            open_call(plugin, timeouts, c.open(pb::OpenFunctionRequest { instance: Some(spec) })).await?;
            Declared::default()
        }
        OpenSpec::Source { spec, datasource, props } => {
            let mut c = pb::source_client::SourceClient::new(live.channel.clone());
            let resp =
                open_call(plugin, timeouts, c.open(pb::OpenSourceRequest { instance: Some(spec), datasource, props }))
                    .await?;
            Declared { capable: resp.rewindable, acks_on_checkpoint: resp.acks_on_checkpoint, ..Declared::default() }
        }
        OpenSpec::Sink { spec, props } => {
            let mut c = pb::sink_client::SinkClient::new(live.channel.clone());
            let resp = open_call(plugin, timeouts, c.open(pb::OpenSinkRequest { instance: Some(spec), props })).await?;
            Declared {
                capable: resp.transactional,
                wants_payloads: resp.wants_payloads,
                takes_arrow: resp.takes_arrow,
                ..Declared::default()
            }
        }
    })
}

/// [`call`] for `Open`, where `FAILED_PRECONDITION` is the plugin's own
/// `open` refusing the instance.
async fn open_call<T>(
    plugin: &str,
    timeouts: Timeouts,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, HostError> {
    match tokio::time::timeout(timeouts.call, fut).await {
        Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
            Err(HostError::Refused { plugin: plugin.into(), message: status_message(&status) })
        }
        Ok(Err(status)) => {
            Err(HostError::Call { plugin: plugin.into(), call: "Open", message: status_message(&status) })
        }
        Err(_) => Err(HostError::Timeout { plugin: plugin.into(), call: "Open", timeout: timeouts.call }),
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}

pub(super) struct EntryHooks {
    pub(super) key: ProcessKey,
    pub(super) state: Arc<StateRegistry>,
    pub(super) instances: Instances,
    pub(super) timeouts: Timeouts,
    /// Where this process's unexpected exits are counted, under its plugin
    /// version: what tells an upgrade that the new version crash-loops.
    pub(super) crashes: Arc<CrashCounts>,
    pub(super) version: VersionKey,
}

/// A plugin version: kind, folded name, version as reported.
pub(super) type VersionKey = (PluginKind, String, String);

/// Unexpected exits per plugin version since the daemon started.
pub(super) type CrashCounts = Mutex<HashMap<VersionKey, u64>>;

#[tonic::async_trait]
impl Hooks for EntryHooks {
    fn issue_token(&self) -> String {
        self.state.issue_token(self.key)
    }

    fn revoke_token(&self, token: &str) {
        self.state.revoke_token(token);
    }

    fn crashed(&self) {
        *lock(&self.crashes).entry(self.version.clone()).or_default() += 1;
    }

    async fn started(&self, live: &Live) -> Result<(), String> {
        let opens: Vec<OpenSpec> = lock(&self.instances).values().cloned().collect();
        let plugin = &live.describe.name;
        for open in opens {
            // A restarted process resumes from the supervisor's copy of the
            // state; what the dead process wrote for unanswered batches is void.
            self.state.discard_staged(&instance_spec(&open).instance_id, None);
            open_with_state(live, &self.state, open, self.timeouts, plugin).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
