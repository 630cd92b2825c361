//! eKuiper's `memory` source and sink: topics inside the daemon, so that one
//! rule's output is another rule's stream (`TYPE="memory"`,
//! `DATASOURCE="topic/filter"`; action `{"memory": {"topic": "…"}}`).
//!
//! They are built in rather than plugins because a topic must join rules
//! whose instances run in different processes. A published batch goes, as
//! records (or as the columns it was), to every subscription whose filter
//! matches the topic: MQTT's filters, `+` for one level and `#` for the rest.
//! Each subscription holds a few batches; a subscriber that falls behind
//! holds the publishing rule (backpressure, as between the steps of one
//! rule), and one that is gone is dropped at the next publish. Nothing is
//! kept for a subscriber that is not there, and nothing is replayed: like
//! eKuiper's, the memory source cannot be rewound.

use std::sync::Mutex;

use oort_host::{HostError, SourceBatch};
use oort_proto::Value;
use tokio::sync::mpsc;

use crate::pipeline::SinkBatch;

/// The source type and sink name of the built-in topics (any case).
pub(crate) const MEMORY: &str = "memory";

/// Batches a subscription holds before its publishers wait.
const SUBSCRIPTION_QUEUE: usize = 4;

/// Whether a stream's `TYPE` or an action's sink is the built-in memory one.
pub(crate) fn is_memory(name: &str) -> bool {
    name.eq_ignore_ascii_case(MEMORY)
}

/// Every subscription of the daemon's memory topics.
#[derive(Default)]
pub(crate) struct MemoryTopics {
    subscriptions: Mutex<Vec<Subscription>>,
}

struct Subscription {
    filter: String,
    batches: mpsc::Sender<Result<SourceBatch, HostError>>,
}

impl MemoryTopics {
    /// Subscribes to the topics `filter` matches; the subscription ends when
    /// the receiver is dropped.
    pub(crate) fn subscribe(&self, filter: &str) -> mpsc::Receiver<Result<SourceBatch, HostError>> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE);
        let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        subscriptions.retain(|s| !s.batches.is_closed());
        subscriptions.push(Subscription { filter: filter.to_string(), batches: tx });
        rx
    }

    /// Hands `batch` to every subscription whose filter matches `topic`,
    /// waiting for room in each; returns how many took it.
    pub(crate) async fn publish(&self, topic: &str, batch: &SinkBatch) -> usize {
        let receivers: Vec<_> = {
            let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            subscriptions.retain(|s| !s.batches.is_closed());
            subscriptions.iter().filter(|s| matches(&s.filter, topic)).map(|s| s.batches.clone()).collect()
        };
        let mut reached = 0;
        for receiver in receivers {
            let copy = match &batch.columns {
                // Arrays are shared, not copied.
                Some(columns) => SourceBatch {
                    records: Vec::new(),
                    columns: Some(columns.clone()),
                    offset: None,
                    exceptions: Vec::new(),
                    checkpoint_wanted: false,
                    connection: None,
                    state: Default::default(),
                },
                None => SourceBatch {
                    records: batch.records().to_vec(),
                    columns: None,
                    offset: None,
                    exceptions: Vec::new(),
                    checkpoint_wanted: false,
                    connection: None,
                    state: Default::default(),
                },
            };
            if receiver.send(Ok(copy)).await.is_ok() {
                reached += 1;
            }
        }
        reached
    }

    /// How many subscriptions are open (for tests and status).
    #[cfg(test)]
    fn open_subscriptions(&self) -> usize {
        let subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        subscriptions.iter().filter(|s| !s.batches.is_closed()).count()
    }
}

/// Whether MQTT topic filter `filter` matches `topic`.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (l, Some(t)) if l == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Checks a stream's `DATASOURCE` as a topic filter: not empty, wildcards
/// taking a whole level, `#` only last.
pub(crate) fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("a memory stream needs its topic as DATASOURCE (wildcards + and # allowed)".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains(['+', '#']) && level.len() > 1 {
            return Err(format!("topic filter {filter:?}: a wildcard must take a whole level"));
        }
        if *level == "#" && i + 1 != levels.len() {
            return Err(format!("topic filter {filter:?}: # must be the last level"));
        }
    }
    Ok(())
}

/// The sink properties the memory sink reads or accepts: its `topic` and the
/// common sink options, which have no effect on it (records go as records).
const SINK_PROPS: [&str; 12] = [
    "topic",
    "bufferLength",
    "retryInterval",
    "retryCount",
    "resendInterval",
    "runAsync",
    "omitIfEmpty",
    "sendSingle",
    "enableCache",
    "concurrency",
    "rowkindField",
    "keyField",
];

/// The topic of a memory action, checked: present, a string, no wildcards.
pub(crate) fn sink_topic(props: &std::collections::BTreeMap<String, Value>) -> Result<String, String> {
    // JSON is what records are anyway; any other format would be ignored.
    let harmless =
        |k: &str, v: &Value| k == "format" && matches!(v, Value::String(f) if f.eq_ignore_ascii_case("json"));
    if let Some((key, _)) = props.iter().find(|(k, v)| !SINK_PROPS.contains(&k.as_str()) && !harmless(k, v)) {
        let why = match key.as_str() {
            "format" | "dataTemplate" | "fields" => {
                "; the memory sink hands records on as they are, so it takes no payload options"
            }
            _ => "",
        };
        return Err(format!("unknown property {key:?} of the memory sink{why} (it reads {})", SINK_PROPS.join(", ")));
    }
    let topic = match props.get("topic") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(_) => return Err("property topic of the memory sink must be a non-empty string".into()),
        None => return Err("the memory sink needs property topic".into()),
    };
    if topic.contains(['+', '#']) {
        return Err(format!("memory sink topic {topic:?}: a topic published to has no wildcards"));
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oort_proto::Record;

    #[test]
    fn filters_match_as_in_mqtt() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/c"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("a/+/c", "a/x/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("#", "anything/at/all"));
        assert!(!matches("b/#", "a/b"));
    }

    #[test]
    fn bad_filters_and_sink_properties_are_refused() {
        assert!(check_filter("").is_err());
        assert!(check_filter("a/b+").is_err());
        assert!(check_filter("a/#/b").is_err());
        assert!(check_filter("a/+/#").is_ok());
        let props = |pairs: &[(&str, Value)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        assert_eq!(sink_topic(&props(&[("topic", Value::String("a/b".into()))])).unwrap(), "a/b");
        assert!(sink_topic(&props(&[])).unwrap_err().contains("needs property topic"));
        assert!(sink_topic(&props(&[("topic", Value::String("a/+".into()))])).unwrap_err().contains("wildcards"));
        assert!(sink_topic(&props(&[("topic", Value::Int(1))])).unwrap_err().contains("non-empty string"));
        let err = sink_topic(&props(&[("topic", Value::String("t".into())), ("dataTemplate", Value::Null)]));
        assert!(err.unwrap_err().contains("no payload options"));
    }

    #[tokio::test]
    async fn a_batch_reaches_every_matching_subscription_and_none_other() {
        let topics = MemoryTopics::default();
        let mut all = topics.subscribe("sensors/#");
        let mut one = topics.subscribe("sensors/+/temp");
        let mut other = topics.subscribe("alerts");
        let record = Record { fields: [("v".to_string(), Value::Int(7))].into(), ..Record::default() };
        let batch = SinkBatch::of_records(vec![record.clone()], Vec::new());
        assert_eq!(topics.publish("sensors/a/temp", &batch).await, 2);
        assert_eq!(all.recv().await.unwrap().unwrap().records, vec![record.clone()]);
        assert_eq!(one.recv().await.unwrap().unwrap().records, vec![record]);
        assert!(other.try_recv().is_err());
        // A subscription whose receiver is gone is dropped, not waited for.
        drop(one);
        assert_eq!(topics.publish("sensors/a/temp", &batch).await, 1);
        assert_eq!(topics.open_subscriptions(), 2);
    }
}
