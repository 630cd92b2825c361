//! Streams and rules: definitions, SQL planning, and the batch evaluation of a
//! planned rule.
//!
//! Architecture invariant: pure. This crate knows nothing about processes,
//! sockets or storage and depends on no async runtime (its `Cargo.toml` lists
//! none); plugin functions are reached through the [`expr::Functions`] trait
//! that the engine implements.
#![forbid(unsafe_code)]

pub mod aggregate;
mod batch;
mod builtin;
pub mod columnar;
pub mod expr;
mod sql;
mod stream;
pub mod window;

use std::collections::BTreeMap;
use std::time::Duration;

use oort_proto::Value;
use serde::{Deserialize, Serialize};

pub use batch::{prepare_window_rows, project_groups, run_batch, BatchOutcome, OpOutcome, WindowBatch};
pub use columnar::{
    prepare_window_columns, records_for, run_columns, runs_on_columns, window_takes_columns, ColumnsOutcome, Projected,
};
pub use expr::{Cell, ColumnAnswer, Functions};
use oort_core::RestartStrategy;
pub use sql::{
    parse_select, parse_select_with, AggregateCall, AggregateFunctions, CallSite, Grouping, SelectField, SelectPlan,
    SortBy, SortKey,
};
pub use stream::{parse_stream, FieldType, StreamDef, StreamField};

// ----- limits -----
//
// Every definition that reaches this module comes from outside (a REST body,
// or the store, written by an older version). These bounds keep the time,
// memory and stack any definition can cost small and known; each is reported
// by name when exceeded.

/// The longest rule SQL accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;
/// The deepest expression accepted, counted in levels of the planned
/// expression. A flat chain such as `a + b + … + z` or `p AND q AND …` is one
/// level however long it is, so the limit only bites on real nesting.
pub const MAX_EXPR_DEPTH: usize = 128;
/// The most expression nodes (columns, literals, operators, calls) in one
/// rule's select list and `WHERE` together.
pub const MAX_EXPR_NODES: usize = 10_000;
/// The longest `CREATE STREAM` statement accepted, in bytes.
pub const MAX_STREAM_SQL_BYTES: usize = 1 << 20;
/// The most fields one stream may declare.
pub const MAX_STREAM_FIELDS: usize = 10_000;
/// The most `WITH` options one stream may have.
pub const MAX_STREAM_OPTIONS: usize = 256;
/// The longest accepted `checkpointInterval`: 24 hours.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The longest accepted `restartStrategy` delay or maxDelay: 24 hours, in ms.
pub const MAX_RESTART_DELAY_MS: u64 = 24 * 3600 * 1000;
/// The largest accepted `restartStrategy` multiplier.
pub const MAX_RESTART_MULTIPLIER: f64 = 100.0;
/// The accepted range of `bufferLength`.
pub const BUFFER_LENGTH_RANGE: std::ops::RangeInclusive<u32> = 1..=65_536;
/// Panes a window may hold (its length over its hop, or its size over its
/// interval): each keeps its groups' partial aggregates.
pub const MAX_WINDOW_PANES: u64 = 10_000;

/// The longest time window accepted: one week.
pub const MAX_WINDOW_MS: u64 = 7 * 86_400_000;

/// The stack of the thread that parses and plans SQL. `sqlparser` builds,
/// prints and drops its syntax tree recursively, and a flat chain of
/// operators is as deep as it is long, so this work never runs on a small
/// async worker stack. With [`MAX_SQL_BYTES`] bounding the input, the worst
/// shapes known (8 000 postfix `IS NULL`s, 30 000-term runs) need between 4
/// and 16 MiB; the rest is headroom. The memory is reserved, and only the
/// pages actually touched are committed.
const PLANNER_STACK_BYTES: usize = 256 << 20;

/// Runs `f` on a fresh thread with a [`PLANNER_STACK_BYTES`] stack and waits
/// for it. A panic in `f` (a bug in a parser) is an error here, not a crash
/// of the caller.
fn on_planner_stack<T: Send>(f: impl FnOnce() -> Result<T, RuleError> + Send) -> Result<T, RuleError> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("oort-sql-planner".into())
            .stack_size(PLANNER_STACK_BYTES)
            .spawn_scoped(scope, f)
            .map_err(|e| RuleError::invalid(format!("cannot start the SQL planner thread: {e}")))?;
        thread.join().unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(RuleError::invalid(format!("internal error while planning the SQL (a bug): {what}")))
        })
    })
}

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
pub use oort_core::names::is_valid_name as valid_name;

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
    /// Windows run on event time (the stream's `TIMESTAMP` field), not on
    /// processing time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_event_time: Option<bool>,
    /// With event time: how far behind the newest event time a row may
    /// arrive and still count (milliseconds or a duration string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_tolerance: Option<serde_json::Value>,
    /// Per plugin name, resource limits over the plugin metadata's `limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_limits: Option<BTreeMap<String, oort_core::Limits>>,
    /// Per plugin name, the versions the rule runs: a SemVer requirement
    /// (`"1.9"` is `^1.9`, `"=1.9.3"` one version); the newest installed
    /// version that matches runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<BTreeMap<String, String>>,
    /// Cluster mode: labels (`--label k=v`) a node must carry to run the
    /// rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_labels: Option<BTreeMap<String, String>>,
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
    /// `isEventTime`: the late tolerance in milliseconds; `None` for
    /// processing time.
    pub event_time: Option<u64>,
    /// `options.pluginLimits`: per plugin name, limits over its metadata's.
    pub plugin_limits: BTreeMap<String, oort_core::Limits>,
    /// `options.plugins`: per plugin name, the versions the rule runs.
    pub plugin_pins: BTreeMap<String, semver::VersionReq>,
}

impl RuleDef {
    /// Parses a rule from its JSON text, which must be one JSON object.
    pub fn from_json(text: &[u8]) -> Result<RuleDef, RuleError> {
        let invalid = |e: serde_json::Error| RuleError::invalid(format!("invalid rule JSON: {e}"));
        // serde's derived structs also accept a JSON array of the fields in
        // order; a rule is only ever an object.
        match serde_json::from_slice::<serde_json::Value>(text).map_err(invalid)? {
            v @ serde_json::Value::Object(_) => serde_json::from_value(v).map_err(invalid),
            other => Err(RuleError::invalid(format!(
                "invalid rule JSON: a rule must be a JSON object, got {}",
                json_type(&other)
            ))),
        }
    }

    /// Checks the definition and plans its SQL.
    pub fn plan(&self) -> Result<RulePlan, RuleError> {
        self.plan_with(&AggregateFunctions::new())
    }

    /// [`RuleDef::plan`], knowing which plugin functions are aggregates.
    pub fn plan_with(&self, aggregates: &AggregateFunctions) -> Result<RulePlan, RuleError> {
        if !valid_name(&self.id) {
            return Err(RuleError::invalid(format!("invalid rule id {:?}: ids must match ^[A-Za-z0-9_-]+$", self.id)));
        }
        let select = parse_select_with(&self.sql, aggregates)?;
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
            Some(v) => parse_duration("checkpointInterval", v, false)?,
        };
        let restart = self.options.restart_strategy.unwrap_or_default();
        check_restart(&restart)?;
        let buffer_length = self.options.buffer_length.unwrap_or(1024);
        if !BUFFER_LENGTH_RANGE.contains(&buffer_length) {
            return Err(RuleError::invalid(format!(
                "bufferLength must be between {} and {}, got {buffer_length}",
                BUFFER_LENGTH_RANGE.start(),
                BUFFER_LENGTH_RANGE.end()
            )));
        }
        let late_tolerance = match &self.options.late_tolerance {
            None => Duration::ZERO,
            Some(v) => parse_duration("lateTolerance", v, true)?,
        };
        let event_time = self.options.is_event_time.unwrap_or(false).then_some(late_tolerance.as_millis() as u64);
        let mut plugin_pins = BTreeMap::new();
        for (name, wanted) in self.options.plugins.iter().flatten() {
            if !valid_name(name) {
                return Err(RuleError::invalid(format!(
                    "options.plugins: {name:?} is not a plugin name (names must match ^[A-Za-z0-9_-]+$)"
                )));
            }
            let req = semver::VersionReq::parse(wanted.trim().trim_start_matches(['v', 'V'])).map_err(|e| {
                RuleError::invalid(format!(
                    "options.plugins.{name}: {wanted:?} is not a version requirement ({e}); write a SemVer \
                     requirement such as \"1.9\" (1.9 or newer, before 2), \"=1.9.3\" or \">=1.2, <1.5\""
                ))
            })?;
            plugin_pins.insert(name.clone(), req);
        }
        Ok(RulePlan {
            def: self.clone(),
            select,
            actions,
            qos,
            checkpoint_interval,
            restart,
            buffer_length,
            event_time,
            plugin_limits: self.options.plugin_limits.clone().unwrap_or_default(),
            plugin_pins,
        })
    }
}

impl RulePlan {
    /// A stand-in plan for a stored rule that no longer plans (it was saved by
    /// an older version with laxer checks): it names no stream, sink or
    /// function, so the rule can be listed, shown, fixed or deleted, but never
    /// run.
    pub fn unplannable(def: RuleDef) -> RulePlan {
        RulePlan {
            def,
            select: SelectPlan {
                stream: String::new(),
                fields: Vec::new(),
                filter: None,
                calls: Vec::new(),
                grouping: None,
                order_by: Vec::new(),
            },
            actions: Vec::new(),
            qos: 0,
            checkpoint_interval: Duration::from_millis(300_000),
            restart: RestartStrategy::default(),
            buffer_length: 1024,
            event_time: None,
            plugin_limits: Default::default(),
            plugin_pins: Default::default(),
        }
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Refuses restart strategies whose numbers make no sense (a delay of
/// centuries, a multiplier of a million), rather than silently running them.
fn check_restart(r: &RestartStrategy) -> Result<(), RuleError> {
    let max_h = MAX_RESTART_DELAY_MS / 3_600_000;
    if r.delay > MAX_RESTART_DELAY_MS {
        return Err(RuleError::invalid(format!(
            "restartStrategy.delay must be at most {MAX_RESTART_DELAY_MS} ms ({max_h} h), got {}",
            r.delay
        )));
    }
    if r.max_delay > MAX_RESTART_DELAY_MS {
        return Err(RuleError::invalid(format!(
            "restartStrategy.maxDelay must be at most {MAX_RESTART_DELAY_MS} ms ({max_h} h), got {}",
            r.max_delay
        )));
    }
    if !(r.multiplier.is_finite() && (1.0..=MAX_RESTART_MULTIPLIER).contains(&r.multiplier)) {
        return Err(RuleError::invalid(format!(
            "restartStrategy.multiplier must be between 1 and {MAX_RESTART_MULTIPLIER}, got {}",
            r.multiplier
        )));
    }
    if !(r.jitter_factor.is_finite() && (0.0..=1.0).contains(&r.jitter_factor)) {
        return Err(RuleError::invalid(format!(
            "restartStrategy.jitterFactor must be between 0 and 1, got {}",
            r.jitter_factor
        )));
    }
    Ok(())
}

/// eKuiper accepts milliseconds or a Go duration string. The result is
/// positive and at most [`MAX_CHECKPOINT_INTERVAL`].
fn parse_duration(option: &str, v: &serde_json::Value, zero_ok: bool) -> Result<Duration, RuleError> {
    let bad = || RuleError::invalid(format!("{option} must be milliseconds or a duration like \"1s\", got {v}"));
    let too_long = || {
        RuleError::invalid(format!(
            "{option} must be at most {} ms (24 h), got {v}",
            MAX_CHECKPOINT_INTERVAL.as_millis()
        ))
    };
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
            // Compared as a float first: `1e30h` must not wrap or saturate.
            if !ms.is_finite() || ms > MAX_CHECKPOINT_INTERVAL.as_millis() as f64 {
                return Err(too_long());
            }
            Duration::from_millis(ms as u64)
        }
        _ => return Err(bad()),
    };
    if d.is_zero() && !zero_ok {
        return Err(RuleError::invalid(format!("{option} must be positive")));
    }
    if d > MAX_CHECKPOINT_INTERVAL {
        return Err(too_long());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oort_proto::Record;

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
            // Issue 10: serde also reads a struct from an array of its fields.
            (r#"["r","SELECT * FROM s",[{"log":{}}]]"#, "a rule must be a JSON object, got an array"),
            ("42", "a rule must be a JSON object, got a number"),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"checkpointInterval":18446744073709551615}}"#,
                "checkpointInterval must be at most 86400000 ms",
            ),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"checkpointInterval":"1000000000000000000000000h"}}"#,
                "checkpointInterval must be at most",
            ),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"checkpointInterval":"25h"}}"#,
                "checkpointInterval must be at most",
            ),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"checkpointInterval":-1}}"#,
                "checkpointInterval must be milliseconds",
            ),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"checkpointInterval":0}}"#,
                "checkpointInterval must be positive",
            ),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"bufferLength":0}}"#,
                "bufferLength must be between 1 and 65536, got 0",
            ),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"restartStrategy":{"delay":18446744073709551615}}}"#,
                "restartStrategy.delay must be at most",
            ),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"restartStrategy":{"maxDelay":99999999999}}}"#,
                "restartStrategy.maxDelay must be at most",
            ),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"restartStrategy":{"multiplier":1e300}}}"#,
                "restartStrategy.multiplier must be between 1 and 100",
            ),
            (
                r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"restartStrategy":{"jitterFactor":-0.5}}}"#,
                "restartStrategy.jitterFactor must be between 0 and 1",
            ),
        ];
        for (json, want) in cases {
            let err = rule(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn the_deepest_accepted_expressions_evaluate_on_a_small_stack() {
        // Issue 10, defect 1 (c): anything that passes the limits evaluates
        // safely. A tokio worker has 2 MiB of stack; this runs in a quarter of it.
        let deep_is_null = format!("x{}", " IS NULL".repeat(MAX_EXPR_DEPTH - 1));
        let sum = vec!["x"; 3000].join(" + ");
        let and = vec!["x > 0"; 1000].join(" AND ");
        let nested = format!("{}x{}", "abs(".repeat(45), ")".repeat(45));
        let sql = format!("SELECT {deep_is_null} AS a, {sum} AS b, {nested} AS c FROM s WHERE {and}");
        let plan = parse_select(&sql).unwrap();
        let out = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let batch = vec![Record::from_fields(BTreeMap::from([("x".to_string(), Value::Int(1))]))];
                let out = rt.block_on(run_batch(&plan, batch, &NoPlugins)).unwrap();
                // Cloning, comparing and dropping the plan recurse too.
                let copy = plan.clone();
                assert_eq!(copy, plan);
                out.records
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].fields["a"], Value::Bool(false));
        assert_eq!(out[0].fields["b"], Value::Int(3000));
        assert_eq!(out[0].fields["c"], Value::Int(1));
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
