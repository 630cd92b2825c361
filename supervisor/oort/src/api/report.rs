//! A rule's report in eKuiper's shapes: the words for states and the flat
//! status object (`source_demo_0_records_in_total`, …) that REST returns and
//! the admin service's `metrics` map carries.

use serde_json::{json, Map, Value as Json};

use oort_engine::metrics::OpKind;
use oort_engine::{PluginProcess, RuleReport, RunState};
use oort_host::process::ProcessStatus;
use oort_host::ConnectionState;

/// A rule's state as eKuiper words it.
pub(super) fn rule_state_word(s: &RunState) -> &'static str {
    match s {
        RunState::Running => "running",
        RunState::Stopped => "stopped",
        RunState::Failed(_) => "error",
    }
}

/// A plugin process's status in one word.
pub(super) fn process_status_word(s: &ProcessStatus) -> &'static str {
    match s {
        ProcessStatus::Starting => "starting",
        ProcessStatus::Running { .. } => "running",
        ProcessStatus::Restarting { .. } => "restarting",
        ProcessStatus::Failed { .. } => "failed",
        ProcessStatus::Stopped => "stopped",
    }
}

/// eKuiper's flat status object without `plugins`: `status`, `message` when
/// the rule failed, `warning`, `stuck`, the last checkpoint, then eight keys
/// per operator.
pub(super) fn flat_status(report: &RuleReport) -> Map<String, Json> {
    let mut out = Map::new();
    out.insert("status".into(), json!(rule_state_word(&report.state)));
    match &report.state {
        RunState::Failed(reason) => {
            out.insert("message".into(), json!(reason));
        }
        // eKuiper's words for a rule someone stopped.
        RunState::Stopped if report.last_stop_ms.is_some() => {
            out.insert("message".into(), json!("canceled manually"));
        }
        _ => {}
    }
    // eKuiper's run times; Oort schedules no rules, so nothing starts next.
    out.insert("lastStartTimestamp".into(), json!(report.last_start_ms.unwrap_or(0)));
    out.insert("lastStopTimestamp".into(), json!(report.last_stop_ms.unwrap_or(0)));
    out.insert("nextStartTimestamp".into(), json!(0));
    if let Some(w) = &report.warning {
        out.insert("warning".into(), json!(w));
    }
    if let Some(u) = &report.upgrade {
        out.insert("upgrade".into(), json!(u));
    }
    if !report.stuck.is_empty() {
        out.insert("stuck".into(), json!(report.stuck));
    }
    if let Some((id, at)) = report.last_checkpoint {
        out.insert("checkpoint_last_id".into(), json!(id));
        out.insert("checkpoint_last_time".into(), json!(at));
    }
    if let Some(e) = &report.event_time {
        out.insert("window_late_rows_total".into(), json!(e.late_rows));
        out.insert("window_watermark".into(), json!(e.watermark));
    }
    // Whether the plugin process behind each source and sink operator is up:
    // the source's process is operator "source", sink i's is "sink_<i>_<name>".
    let connected =
        |process: &dyn Fn(&str) -> bool| report.plugins.iter().find(|p| process(&p.operator)).map(|p| p.connected);
    let mut sinks = 0;
    for s in &report.operators {
        let n = &s.name;
        let up = match s.kind {
            OpKind::Source => connected(&|op| op == "source"),
            OpKind::Sink => {
                let prefix = format!("sink_{sinks}_");
                sinks += 1;
                connected(&|op| op.starts_with(&prefix))
            }
            OpKind::Op => None,
        };
        // eKuiper's codes: 1 connected, 0 connecting, -1 disconnected. A
        // source that reports its upstream is as connected as that upstream
        // while its process is up; otherwise the process is what connects.
        match (&s.upstream, up.unwrap_or(false)) {
            (Some(u), process_up) => {
                let code = match (u.state, process_up) {
                    (_, false) | (ConnectionState::Connecting, _) => 0,
                    (ConnectionState::Connected, true) => 1,
                    (ConnectionState::Disconnected, true) => -1,
                };
                out.insert(format!("{n}_connection_status"), json!(code));
                out.insert(format!("{n}_connection_last_connected_time"), json!(u.last_connected_time));
                out.insert(format!("{n}_connection_last_disconnected_time"), json!(u.last_disconnected_time));
                out.insert(format!("{n}_connection_last_disconnected_message"), json!(u.last_disconnected_message));
            }
            (None, process_up) if s.kind != OpKind::Op => {
                out.insert(format!("{n}_connection_status"), json!(i32::from(process_up)));
            }
            (None, _) => {}
        }
        out.insert(format!("{n}_records_in_total"), json!(s.records_in));
        // One record is one message here: eKuiper's count of messages.
        out.insert(format!("{n}_messages_processed_total"), json!(s.records_in));
        out.insert(format!("{n}_records_out_total"), json!(s.records_out));
        out.insert(format!("{n}_exceptions_total"), json!(s.exceptions));
        out.insert(format!("{n}_last_exception"), json!(s.last_exception));
        out.insert(format!("{n}_last_exception_time"), json!(s.last_exception_time));
        out.insert(format!("{n}_process_latency_us"), json!(s.process_latency_us));
        out.insert(format!("{n}_buffer_length"), json!(s.buffer_length));
        out.insert(format!("{n}_last_invocation"), json!(s.last_invocation));
    }
    out
}

/// One entry of the status's `plugins` list.
pub(super) fn plugin_json(p: &PluginProcess) -> Json {
    let mut v = json!({
        "operator": p.operator,
        "plugin": p.plugin,
        "pid": p.pid,
        "restarts": p.restarts,
        "calls": p.calls.calls(),
        "rss_bytes": p.usage.map(|u| u.rss_bytes),
        "cpu_seconds": p.usage.map(|u| u.cpu_seconds),
        "process": p.process.status,
        "limits": p.process.limits,
    });
    if let Some(u) = &p.process.usage {
        v["usage"] = json!(u);
    }
    if let Some(f) = &p.process.last_failure {
        v["last_failure"] = json!(f);
    }
    if let Some(o) = &p.outstanding {
        v["outstanding"] = json!(o);
    }
    if let Some(n) = p.columnar_batches {
        v["columnar_batches"] = json!(n);
    }
    v
}

/// The whole status object REST returns.
pub(super) fn status_json(report: &RuleReport) -> Json {
    let mut out = flat_status(report);
    out.insert("plugins".into(), Json::Array(report.plugins.iter().map(plugin_json).collect()));
    Json::Object(out)
}
