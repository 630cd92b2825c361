//! eKuiper's ruleset: every stream and rule exported as one document and
//! imported back (its `/data/export` and `/data/import`), and a rule's
//! topology (its `/rules/{id}/topo`).

use std::collections::BTreeMap;

use super::{Engine, EngineError};

/// Streams by name (their `CREATE STREAM` statements) and rules by id (their
/// JSON definitions, as text: eKuiper's export keeps them as strings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub streams: BTreeMap<String, String>,
    pub rules: BTreeMap<String, String>,
    /// eKuiper's `sourceConfig`: per source type, its conf keys as one JSON
    /// object in text (`{"default": {...}, "<key>": {...}}`).
    pub source_config: BTreeMap<String, String>,
}

/// What an import did with each stream and rule: `None` when it went in,
/// else why not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub streams: BTreeMap<String, Option<String>>,
    pub rules: BTreeMap<String, Option<String>>,
    pub source_config: BTreeMap<String, Option<String>>,
}

impl ImportReport {
    pub fn is_complete(&self) -> bool {
        self.streams.values().chain(self.rules.values()).chain(self.source_config.values()).all(Option::is_none)
    }
}

/// A rule's operators and what feeds what, in eKuiper's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub sources: Vec<String>,
    pub edges: BTreeMap<String, Vec<String>>,
}

impl Engine {
    /// Every stream and rule, as eKuiper exports them.
    pub async fn export(&self) -> Ruleset {
        let streams = self.streams.lock().await.iter().map(|(name, def)| (name.clone(), def.sql.clone())).collect();
        let rules = self
            .rules
            .lock()
            .await
            .iter()
            .map(|(id, e)| (id.clone(), serde_json::to_string(&e.stored.rule).expect("a rule serializes")))
            .collect();
        Ruleset { streams, rules, source_config: self.source_configs() }
    }

    /// Every source type's configuration in the conf folder, as JSON text.
    fn source_configs(&self) -> BTreeMap<String, String> {
        let Ok(read) = std::fs::read_dir(&self.conf_dir) else { return BTreeMap::new() };
        read.filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_owned))
            .filter(|t| !t.starts_with('.'))
            .filter_map(|t| {
                let sections = super::conf::read(&self.conf_dir, &t).ok()?;
                Some((t, serde_json::Value::Object(sections).to_string()))
            })
            .collect()
    }

    /// Imports a ruleset: streams first, then rules. A stream or rule that
    /// exists is replaced (a rule restarts with its new definition), as
    /// eKuiper's import replaces them; each failure is reported by name and
    /// stops nothing else.
    pub async fn import(&self, set: Ruleset) -> ImportReport {
        let mut report = ImportReport::default();
        // Conf keys first: the streams that name them check them.
        for (source_type, text) in set.source_config {
            let outcome = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(sections)) => sections
                    .into_iter()
                    .try_for_each(|(key, props)| super::conf::put_key(&self.conf_dir, &source_type, &key, props)),
                Ok(_) => Err(EngineError::Invalid("the configuration must be a JSON object of conf keys".into())),
                Err(e) => Err(EngineError::Invalid(format!("the configuration is not valid JSON: {e}"))),
            };
            report.source_config.insert(source_type, outcome.err().map(|e| e.to_string()));
        }
        for (name, sql) in set.streams {
            // A statement creating another stream than its key says is
            // refused before anything is created.
            let named = match oort_sql::parse_stream(&sql) {
                Ok(def) if def.name != name => {
                    Err(EngineError::Invalid(format!("the statement creates stream {}, not {name}", def.name)))
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = named {
                report.streams.insert(name, Some(e.to_string()));
                continue;
            }
            let outcome = match self.get_stream(&name).await {
                Ok(existing) if existing.sql == sql.trim() => Ok(()),
                Ok(_) => match self.drop_stream(&name, true).await {
                    Ok(()) => self.create_stream(&sql).await.map(|_| ()),
                    Err(e) => Err(e),
                },
                Err(_) => self.create_stream(&sql).await.map(|_| ()),
            };
            report.streams.insert(name, outcome.err().map(|e| e.to_string()));
        }
        for (id, json) in set.rules {
            let outcome = match self.get_rule(&id).await {
                Ok(_) => self.update_rule(&id, json.as_bytes()).await,
                Err(_) => self.create_rule(json.as_bytes()).await.and_then(|created| match created == id {
                    true => Ok(()),
                    false => Err(EngineError::Invalid(format!("the definition is of rule {created}, not {id}"))),
                }),
            };
            report.rules.insert(id, outcome.err().map(|e| e.to_string()));
        }
        report
    }

    /// The rule's operators from source to sinks, named as in its status.
    pub async fn topology(&self, id: &str) -> Result<Topology, EngineError> {
        let rules = self.rules.lock().await;
        let entry = rules.get(id).ok_or_else(|| super::no_rule(id))?;
        let plan = &entry.plan;
        let source = format!("source_{}", plan.select.stream);
        let mut chain = vec![source.clone()];
        if plan.select.filter.is_some() {
            chain.push("op_1_filter".to_string());
        }
        chain.push("op_2_project".to_string());
        let mut edges: BTreeMap<String, Vec<String>> =
            chain.windows(2).map(|pair| (pair[0].clone(), vec![pair[1].clone()])).collect();
        let sinks = plan.actions.iter().enumerate().map(|(i, a)| format!("sink_{}_{i}", a.sink)).collect();
        edges.insert(chain.last().expect("a projection").clone(), sinks);
        Ok(Topology { sources: vec![source], edges })
    }
}
