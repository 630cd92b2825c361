//! `GET /metrics`: the rules' numbers in the Prometheus text format
//! (OpenMetrics), read at scrape time from the same [`RuleStatus`] objects
//! that `rule status` reports, so the two views never disagree.
//!
//! Families (all prefixed `oort_`), after eKuiper's:
//! - `rule_status{rule}` (1 running, 0 stopped, -1 error), `rule_count{status}`;
//! - `{source,op,sink}_records_in_total`, `_records_out_total`,
//!   `_exceptions_total`, `_process_latency_us`, `_buffer_length`, labelled
//!   `rule` and `op` (eKuiper's operator id, e.g. `sink_log_0_0`);
//! - `{source,sink}_connection_status{rule,operator,plugin}` (1 when its plugin
//!   process is up);
//!
//! and what only Oort has, per plugin process serving a rule (`rule`,
//! `operator`, `plugin`): `plugin_process_restarts_total`,
//! `plugin_process_resident_memory_bytes`, `plugin_process_cpu_seconds_total`
//! (read from `/proc` at scrape time; a shared process is reported under each
//! rule it serves), `plugin_calls_total`, `plugin_columnar_batches_total`
//! (functions: batches sent as Arrow columns) and the histogram
//! `plugin_call_duration_seconds`; per rule `checkpoint_duration_seconds`
//! (histogram), `checkpoint_size_bytes` and `checkpoints_total`.
//!
//! Counters restart at zero when a rule restarts, as its status does.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;

use oort_engine::metrics::{OpKind, OpSnapshot};
use oort_engine::{Engine, PluginProcess, RunState};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// One rule's numbers at scrape time.
#[derive(Debug)]
struct RuleScrape {
    rule: String,
    state: RunState,
    operators: Vec<OpSnapshot>,
    processes: Vec<PluginProcess>,
    checkpoint_duration: Histogram,
    checkpoint_size: u64,
    checkpoints: u64,
}

/// Everything one scrape reports, read before encoding.
#[derive(Debug)]
struct Scrape(Vec<RuleScrape>);

/// Renders the metrics of every rule.
pub async fn render(engine: &Engine) -> Result<String, fmt::Error> {
    let rules = engine
        .statuses()
        .await
        .into_iter()
        .map(|(rule, status)| RuleScrape {
            rule,
            state: status.state(),
            operators: status.operators(),
            processes: status.processes(true),
            checkpoint_duration: status.checkpoints.duration.clone(),
            checkpoint_size: status.checkpoints.size(),
            checkpoints: status.checkpoints.count(),
        })
        .collect();
    let mut registry = Registry::with_prefix("oort");
    registry.register_collector(Box::new(Scrape(rules)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Writes one family: its descriptor, then one sample set per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[(Labels, M)],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn state_value(state: &RunState) -> i64 {
    match state {
        RunState::Running => 1,
        RunState::Stopped => 0,
        RunState::Failed(_) => -1,
    }
}

fn process_labels(rule: &str, p: &PluginProcess) -> Labels {
    vec![("rule", rule.to_string()), ("operator", p.operator.clone()), ("plugin", p.plugin.clone())]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        let rules = &self.0;

        let status: Vec<_> =
            rules.iter().map(|r| (vec![("rule", r.rule.clone())], ConstGauge::new(state_value(&r.state)))).collect();
        family(e, "rule_status", "Rule status: 1 running, 0 stopped, -1 error.", MetricType::Gauge, &status)?;
        let count: Vec<_> = [("running", 1), ("stopped", 0), ("error", -1)]
            .into_iter()
            .map(|(word, value)| {
                let n = rules.iter().filter(|r| state_value(&r.state) == value).count() as i64;
                (vec![("status", word.to_string())], ConstGauge::new(n))
            })
            .collect();
        family(e, "rule_count", "Rules by status.", MetricType::Gauge, &count)?;

        for kind in [OpKind::Source, OpKind::Op, OpKind::Sink] {
            let ops: Vec<(Labels, &OpSnapshot)> = rules
                .iter()
                .flat_map(|r| {
                    r.operators
                        .iter()
                        .filter(|o| o.kind == kind)
                        .map(|o| (vec![("rule", r.rule.clone()), ("op", o.name.clone())], o))
                })
                .collect();
            let k = kind.as_str();
            let counter = |f: fn(&OpSnapshot) -> u64| -> Vec<_> {
                ops.iter().map(|(l, o)| (l.clone(), ConstCounter::new(f(o)))).collect()
            };
            let gauge = |f: fn(&OpSnapshot) -> u64| -> Vec<_> {
                ops.iter().map(|(l, o)| (l.clone(), ConstGauge::new(f(o) as i64))).collect()
            };
            let c = MetricType::Counter;
            let g = MetricType::Gauge;
            family(e, &format!("{k}_records_in"), "Records received.", c, &counter(|o| o.records_in))?;
            family(e, &format!("{k}_records_out"), "Records sent on.", c, &counter(|o| o.records_out))?;
            family(e, &format!("{k}_exceptions"), "Errors met.", c, &counter(|o| o.exceptions))?;
            let latency = "Time the last batch took, in microseconds.";
            family(e, &format!("{k}_process_latency_us"), latency, g, &gauge(|o| o.process_latency_us))?;
            let buffer = "Batches queued in front of the operator.";
            family(e, &format!("{k}_buffer_length"), buffer, g, &gauge(|o| o.buffer_length))?;
        }

        let processes: Vec<(&str, &PluginProcess)> =
            rules.iter().flat_map(|r| r.processes.iter().map(move |p| (r.rule.as_str(), p))).collect();
        for (k, is) in
            [("source", (|op: &str| op == "source") as fn(&str) -> bool), ("sink", |op| op.starts_with("sink_"))]
        {
            let up: Vec<_> = processes
                .iter()
                .filter(|(_, p)| is(&p.operator))
                .map(|(rule, p)| (process_labels(rule, p), ConstGauge::new(i64::from(p.connected))))
                .collect();
            let help = "Whether the plugin process behind the operator is up (1) or not (0).";
            family(e, &format!("{k}_connection_status"), help, MetricType::Gauge, &up)?;
        }
        let per_process = |f: &dyn Fn(&PluginProcess) -> Option<f64>| -> Vec<(Labels, f64)> {
            processes.iter().filter_map(|(rule, p)| f(p).map(|v| (process_labels(rule, p), v))).collect()
        };
        let counters = |v: Vec<(Labels, f64)>| -> Vec<(Labels, ConstCounter<f64>)> {
            v.into_iter().map(|(l, x)| (l, ConstCounter::new(x))).collect()
        };
        let gauges = |v: Vec<(Labels, f64)>| -> Vec<(Labels, ConstGauge<f64>)> {
            v.into_iter().map(|(l, x)| (l, ConstGauge::new(x))).collect()
        };
        let restarts = counters(per_process(&|p| Some(f64::from(p.restarts))));
        family(e, "plugin_process_restarts", "Restarts of the plugin process.", MetricType::Counter, &restarts)?;
        let rss = gauges(per_process(&|p| p.usage.map(|u| u.rss_bytes as f64)));
        family(e, "plugin_process_resident_memory_bytes", "Resident memory.", MetricType::Gauge, &rss)?;
        let cpu = counters(per_process(&|p| p.usage.map(|u| u.cpu_seconds)));
        family(e, "plugin_process_cpu_seconds", "User and system CPU time.", MetricType::Counter, &cpu)?;
        let calls = counters(per_process(&|p| Some(p.calls.calls() as f64)));
        let help = "Calls on the plugin instance (a source counts the batches it sent).";
        family(e, "plugin_calls", help, MetricType::Counter, &calls)?;
        let columnar = counters(per_process(&|p| p.columnar_batches.map(|n| n as f64)));
        let help = "Batches a function instance sent as Arrow columns (the others went as rows).";
        family(e, "plugin_columnar_batches", help, MetricType::Counter, &columnar)?;
        let latency: Vec<(Labels, Histogram)> =
            processes.iter().map(|(rule, p)| (process_labels(rule, p), p.calls.latency.clone())).collect();
        let help = "Duration of batch calls on the plugin instance, retries included.";
        family(e, "plugin_call_duration_seconds", help, MetricType::Histogram, &latency)?;

        let by_rule = |r: &RuleScrape| vec![("rule", r.rule.clone())];
        let durations: Vec<_> = rules.iter().map(|r| (by_rule(r), r.checkpoint_duration.clone())).collect();
        let help = "Duration of checkpoints, from barrier to commit.";
        family(e, "checkpoint_duration_seconds", help, MetricType::Histogram, &durations)?;
        let sizes: Vec<_> = rules.iter().map(|r| (by_rule(r), ConstGauge::new(r.checkpoint_size as i64))).collect();
        family(e, "checkpoint_size_bytes", "Size of the newest checkpoint.", MetricType::Gauge, &sizes)?;
        let counts: Vec<_> = rules.iter().map(|r| (by_rule(r), ConstCounter::new(r.checkpoints))).collect();
        family(e, "checkpoints", "Checkpoints completed.", MetricType::Counter, &counts)?;
        Ok(())
    }
}
