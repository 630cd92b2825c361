//! Streams and rules: definitions, SQL planning, and the batch evaluation of a
//! planned rule.
//!
//! Architecture invariant: pure. This module knows nothing about processes,
//! sockets or storage; plugin functions are reached through the
//! [`expr::Functions`] trait that the runtime implements.

mod builtin;
pub mod expr;
mod sql;
mod stream;

use std::collections::BTreeMap;
use std::time::Duration;

use oort_proto::{Record, Value};
use serde::{Deserialize, Serialize};

use crate::process::RestartStrategy;
pub use expr::{Cell, Functions};
pub use sql::{parse_select, ArgInfo, CallSite, SelectField, SelectPlan};
pub use stream::{parse_stream, FieldType, StreamDef, StreamField};

/// Why a stream or rule definition is not acceptable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

impl RuleError {
    pub fn invalid(msg: impl Into<String>) -> RuleError {
        RuleError(msg.into())
    }
}

/// eKuiper's naming rule for plugins, streams and rules.
pub use crate::catalog::is_valid_name as valid_name;

/// A rule in eKuiper's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub id: String,
    pub sql: String,
    /// Each action is a one-key object: `{"<sink plugin>": {props}}`.
    pub actions: Vec<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub options: RuleOptions,
    /// eKuiper's optional display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// eKuiper's optional triggered flag: `false` creates the rule stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered: Option<bool>,
}

/// A rule's options. Options Oort does not use are kept and ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    /// Milliseconds, or a duration string such as `"1s"` or `"500ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_strategy: Option<RestartStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_length: Option<u32>,
    /// Per plugin name, resource limits over the plugin metadata's `limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_limits: Option<BTreeMap<String, crate::process::Limits>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One sink of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub sink: String,
    pub props: BTreeMap<String, Value>,
}

/// A rule after validation of everything that needs no plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct RulePlan {
    pub def: RuleDef,
    pub select: SelectPlan,
    pub actions: Vec<Action>,
    pub qos: u8,
    pub checkpoint_interval: Duration,
    pub restart: RestartStrategy,
    pub buffer_length: u32,
    /// `options.pluginLimits`: per plugin name, limits over its metadata's.
    pub plugin_limits: BTreeMap<String, crate::process::Limits>,
}

impl RuleDef {
    /// Parses a rule from its JSON text.
    pub fn from_json(text: &[u8]) -> Result<RuleDef, RuleError> {
        serde_json::from_slice(text).map_err(|e| RuleError::invalid(format!("invalid rule JSON: {e}")))
    }

    /// Checks the definition and plans its SQL.
    pub fn plan(&self) -> Result<RulePlan, RuleError> {
        if !valid_name(&self.id) {
            return Err(RuleError::invalid(format!("invalid rule id {:?}: ids must match ^[A-Za-z0-9_-]+$", self.id)));
        }
        let select = parse_select(&self.sql)?;
        if self.actions.is_empty() {
            return Err(RuleError::invalid("a rule needs at least one action"));
        }
        let mut actions = Vec::new();
        for (i, action) in self.actions.iter().enumerate() {
            let mut entries = action.iter();
            let (Some((sink, props)), None) = (entries.next(), entries.next()) else {
                return Err(RuleError::invalid(format!("action {i} must be an object with exactly one sink name")));
            };
            let props = match Value::from_json(props) {
                Value::Map(m) => m,
                _ => return Err(RuleError::invalid(format!("action {i} ({sink}): properties must be an object"))),
            };
            actions.push(Action { sink: sink.clone(), props });
        }
        let qos = self.options.qos.unwrap_or(0);
        if qos > 2 {
            return Err(RuleError::invalid(format!("qos must be 0, 1 or 2, got {qos}")));
        }
        let checkpoint_interval = match &self.options.checkpoint_interval {
            None => Duration::from_millis(300_000),
            Some(v) => parse_duration(v)?,
        };
        Ok(RulePlan {
            def: self.clone(),
            select,
            actions,
            qos,
            checkpoint_interval,
            restart: self.options.restart_strategy.unwrap_or_default(),
            buffer_length: self.options.buffer_length.unwrap_or(1024).clamp(1, 65_536),
            plugin_limits: self.options.plugin_limits.clone().unwrap_or_default(),
        })
    }
}

/// eKuiper accepts milliseconds or a Go duration string.
fn parse_duration(v: &serde_json::Value) -> Result<Duration, RuleError> {
    let bad =
        || RuleError::invalid(format!("checkpointInterval must be milliseconds or a duration like \"1s\", got {v}"));
    let d = match v {
        serde_json::Value::Number(n) => Duration::from_millis(n.as_u64().ok_or_else(bad)?),
        serde_json::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?;
            let (num, unit) = s.split_at(split);
            let n: f64 = num.parse().map_err(|_| bad())?;
            let ms = match unit {
                "ms" => n,
                "s" => n * 1e3,
                "m" => n * 60e3,
                "h" => n * 3600e3,
                _ => return Err(bad()),
            };
            Duration::from_millis(ms as u64)
        }
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(RuleError::invalid("checkpointInterval must be positive"));
    }
    Ok(d)
}

/// What one operator did with one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpOutcome {
    pub input: u64,
    pub output: u64,
    pub exceptions: u64,
    pub last_exception: Option<String>,
}

impl OpOutcome {
    fn failed(&mut self, reason: String) {
        self.exceptions += 1;
        self.last_exception = Some(reason);
    }
}

/// The result of running one batch through the filter and the projection.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub records: Vec<Record>,
    pub filter: OpOutcome,
    pub project: OpOutcome,
}

/// Runs one batch through `WHERE` and the select list. Rows whose evaluation
/// fails are dropped and counted as exceptions of that operator.
pub async fn run_batch<F: Functions>(
    plan: &SelectPlan,
    records: Vec<Record>,
    functions: &F,
) -> Result<BatchOutcome, F::Error> {
    let mut out = BatchOutcome::default();
    out.filter.input = records.len() as u64;
    let kept: Vec<Record> = match &plan.filter {
        None => records,
        Some(filter) => {
            let verdicts = expr::eval(filter, &records, functions).await?;
            let mut kept = Vec::with_capacity(records.len());
            for (record, verdict) in records.into_iter().zip(verdicts) {
                match verdict {
                    Ok(Value::Bool(true)) => kept.push(record),
                    Ok(_) => {}
                    Err(e) => out.filter.failed(e),
                }
            }
            kept
        }
    };
    out.filter.output = kept.len() as u64;
    out.project.input = kept.len() as u64;
    let mut columns = Vec::with_capacity(plan.fields.len());
    for field in &plan.fields {
        columns.push(match field {
            SelectField::Wildcard => None,
            SelectField::Expr { expr, .. } => Some(expr::eval(expr, &kept, functions).await?.into_iter()),
        });
    }
    'rows: for record in kept {
        let mut fields = BTreeMap::new();
        let mut failure = None;
        for (field, column) in plan.fields.iter().zip(columns.iter_mut()) {
            match (field, column) {
                (SelectField::Wildcard, _) => fields.extend(record.fields.iter().map(|(k, v)| (k.clone(), v.clone()))),
                (SelectField::Expr { name, .. }, Some(column)) => match column.next() {
                    Some(Ok(v)) => {
                        fields.insert(name.clone(), v);
                    }
                    Some(Err(e)) => failure = Some(format!("{name}: {e}")),
                    None => failure = Some(format!("{name}: missing result")),
                },
                (SelectField::Expr { .. }, None) => {}
            }
        }
        if let Some(e) = failure {
            out.project.failed(e);
            continue 'rows;
        }
        out.records.push(Record { fields, metadata: record.metadata, timestamp_ms: record.timestamp_ms });
    }
    out.project.output = out.records.len() as u64;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoPlugins;

    impl Functions for NoPlugins {
        type Error = ();
        async fn call(&self, _site: usize, _rows: Vec<Vec<Value>>) -> Result<Vec<Cell>, ()> {
            Err(())
        }
    }

    fn rule(json: &str) -> Result<RulePlan, RuleError> {
        RuleDef::from_json(json.as_bytes())?.plan()
    }

    #[test]
    fn ekuipers_rule_json_is_accepted() {
        let p = rule(
            r#"{"id":"rule1","sql":"SELECT temperature FROM demo WHERE temperature > 30",
                "actions":[{"log":{}},{"file":{"path":"/tmp/out.jsonl"}}],
                "options":{"qos":2,"checkpointInterval":"1s","bufferLength":512,"sendMetaToSink":true,
                           "restartStrategy":{"attempts":3,"delay":500}}}"#,
        )
        .unwrap();
        assert_eq!(p.qos, 2);
        assert_eq!(p.checkpoint_interval, Duration::from_secs(1));
        assert_eq!(p.buffer_length, 512);
        assert_eq!(p.restart.attempts, 3);
        assert_eq!(p.actions[1].sink, "file");
        assert_eq!(p.def.options.other["sendMetaToSink"], serde_json::json!(true));
    }

    #[test]
    fn bad_rules_name_the_problem() {
        let cases = [
            ("{", "invalid rule JSON"),
            (r#"{"sql":"SELECT * FROM s","actions":[{"log":{}}]}"#, "missing field `id`"),
            (r#"{"id":"a b","sql":"SELECT * FROM s","actions":[{"log":{}}]}"#, "invalid rule id"),
            (r#"{"id":"r","sql":"SELECT * FROM s","actions":[]}"#, "at least one action"),
            (r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{},"file":{}}]}"#, "exactly one sink"),
            (r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":3}]}"#, "must be an object"),
            (r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"qos":3}}"#, "qos must be"),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"checkpointInterval":"soon"}}"#,
                "checkpointInterval",
            ),
            (r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"bogus":1}"#, "unknown field `bogus`"),
        ];
        for (json, want) in cases {
            let err = rule(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[tokio::test]
    async fn filter_and_projection_count_what_they_drop() {
        let plan = parse_select("SELECT *, upper(name) AS shout FROM s WHERE n > 1").unwrap();
        let rec = |n: Value, name: Value| {
            Record::from_fields(BTreeMap::from([("n".to_string(), n), ("name".to_string(), name)]))
        };
        let batch = vec![
            rec(Value::Int(1), Value::from("a")),
            rec(Value::Int(2), Value::from("b")),
            rec(Value::from("x"), Value::from("c")),
            rec(Value::Int(3), Value::Int(7)),
        ];
        let out = run_batch(&plan, batch, &NoPlugins).await.unwrap();
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.records[0].fields["shout"], Value::from("B"));
        assert_eq!(out.records[0].fields["n"], Value::Int(2));
        assert_eq!((out.filter.input, out.filter.output, out.filter.exceptions), (4, 2, 1));
        assert_eq!((out.project.input, out.project.output, out.project.exceptions), (2, 1, 1));
        assert_eq!(out.project.last_exception.as_deref(), Some("shout: upper expects a string, got int"));
    }
}
