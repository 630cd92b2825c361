//! eKuiper's shared connections (`/connections`): named properties of one
//! plugin type, kept in `<data-dir>/conf/connections.json`, that a stream's
//! source (through its conf key or `WITH` options) or a rule's sink takes with
//! `connectionSelector: "<id>"`. The daemon merges the connection's
//! properties under the operator's own when the rule starts; the plugin makes
//! the actual connection. A connection's status is that of the plugin
//! processes using it.

use std::collections::BTreeMap;

use oort_proto::Value;

pub use crate::conf::Connection;
use crate::{conf, Engine, EngineError, RunState};

/// The property naming a connection, as in eKuiper.
pub const CONNECTION_SELECTOR: &str = "connectionSelector";

/// A connection with what uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionReport {
    pub connection: Connection,
    /// Running rules whose source or sinks use it.
    pub ref_count: usize,
    /// `connected` when every plugin process using it is up, `disconnected`
    /// when one is not, `unused` when no running rule uses it.
    pub status: &'static str,
}

impl Engine {
    fn connections_file(&self) -> std::path::PathBuf {
        self.conf_dir.parent().unwrap_or(&self.conf_dir).join("connections.json")
    }

    /// Merges the connection `props` names (if any) under `props`: the
    /// operator's own properties win. `whose` names the operator in errors.
    pub(crate) fn with_connection(
        &self,
        props: &mut BTreeMap<String, Value>,
        plugin: &str,
        whose: &str,
    ) -> Result<(), EngineError> {
        let id = match props.get(CONNECTION_SELECTOR) {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::String(id)) => id.clone(),
            Some(other) => {
                return Err(EngineError::Invalid(format!(
                    "{whose}: {CONNECTION_SELECTOR} must be a connection id, got a {}",
                    other.type_name()
                )))
            }
        };
        let all = conf::read_connections(&self.connections_file())?;
        let connection = all.get(&id).ok_or_else(|| {
            EngineError::Invalid(format!("{whose}: {CONNECTION_SELECTOR} {id:?} names no connection"))
        })?;
        if !connection.typ.eq_ignore_ascii_case(plugin) {
            return Err(EngineError::Invalid(format!(
                "{whose}: connection {id} is for {}, not {plugin}",
                connection.typ
            )));
        }
        for (k, v) in &connection.props {
            props.entry(k.clone()).or_insert_with(|| Value::from_json(v));
        }
        Ok(())
    }

    /// The connection ids a rule's source and sinks name, by operator.
    async fn selectors(&self, plan: &oort_sql::RulePlan) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(stream) = self.get_stream(&plan.select.stream).await {
            if let Ok(props) = self.source_props_unresolved(&stream) {
                if let Some(Value::String(id)) = props.get(CONNECTION_SELECTOR) {
                    out.push(("source".to_string(), id.clone()));
                }
            }
        }
        for (i, action) in plan.actions.iter().enumerate() {
            if let Some(Value::String(id)) = action.props.get(CONNECTION_SELECTOR) {
                out.push((format!("sink_{i}_{}", action.sink), id.clone()));
            }
        }
        out
    }

    /// Every connection with its use and status.
    pub async fn connections(&self) -> Result<Vec<ConnectionReport>, EngineError> {
        let all = conf::read_connections(&self.connections_file())?;
        let plans: Vec<(String, oort_sql::RulePlan, std::sync::Arc<crate::RuleStatus>)> = {
            let rules = self.rules.lock().await;
            rules.iter().map(|(id, e)| (id.clone(), e.plan.clone(), e.status.clone())).collect()
        };
        // Per connection: the running rules using it and whether each of their operators on it is up.
        let mut uses: BTreeMap<String, (usize, bool)> = BTreeMap::new();
        for (_, plan, status) in plans {
            let report = status.report();
            if report.state != RunState::Running {
                continue;
            }
            let mut counted = std::collections::BTreeSet::new();
            for (operator, id) in self.selectors(&plan).await {
                let up = report.plugins.iter().any(|p| p.operator == operator && p.connected);
                let entry = uses.entry(id.clone()).or_insert((0, true));
                if counted.insert(id) {
                    entry.0 += 1;
                }
                entry.1 &= up;
            }
        }
        Ok(all
            .into_values()
            .map(|connection| {
                let (ref_count, up) = uses.get(&connection.id).copied().unwrap_or((0, true));
                let status = match (ref_count, up) {
                    (0, _) => "unused",
                    (_, true) => "connected",
                    (_, false) => "disconnected",
                };
                ConnectionReport { connection, ref_count, status }
            })
            .collect())
    }

    pub async fn connection(&self, id: &str) -> Result<ConnectionReport, EngineError> {
        self.connections()
            .await?
            .into_iter()
            .find(|c| c.connection.id == id)
            .ok_or_else(|| EngineError::UnknownConnection { id: id.to_string() })
    }

    /// Creates a connection (`create`) or replaces one; a replaced
    /// connection takes effect when the rules using it next start.
    pub fn put_connection(&self, connection: Connection, create: bool) -> Result<(), EngineError> {
        conf::put_connection(&self.connections_file(), connection, create)
    }

    /// Deletes a connection no rule names.
    pub async fn delete_connection(&self, id: &str) -> Result<(), EngineError> {
        let plans: Vec<(String, oort_sql::RulePlan)> =
            self.rules.lock().await.iter().map(|(rid, e)| (rid.clone(), e.plan.clone())).collect();
        let mut users = Vec::new();
        for (rule, plan) in plans {
            if self.selectors(&plan).await.iter().any(|(_, used)| used == id) {
                users.push(rule);
            }
        }
        if !users.is_empty() {
            return Err(EngineError::ConnectionInUse { id: id.to_string(), rules: users });
        }
        conf::delete_connection(&self.connections_file(), id)
    }
}
