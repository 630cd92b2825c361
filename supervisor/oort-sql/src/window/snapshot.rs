//! A window's contents as one value for a checkpoint, and back.

use std::collections::BTreeMap;

use oort_proto::{Record, Value};

use super::{Group, Pane, Partial, WindowRow, WindowState};

impl WindowState {
    /// The window's contents as one value, for a checkpoint: its panes (each
    /// group's key, first row and partial aggregates), the rows a count window
    /// has seen, the end of the last time window emitted, the newest event
    /// time, the open session or state window's bounds, and a sliding
    /// window's rows and pending triggers.
    pub fn snapshot(&self) -> Value {
        let panes = self
            .panes
            .iter()
            .map(|(id, pane)| {
                let groups = pane
                    .order
                    .iter()
                    .map(|key| {
                        let g = &pane.groups[key];
                        map([
                            ("key", Value::from(key.as_str())),
                            ("first", record_value(&g.first)),
                            ("partials", Value::List(g.partials.iter().map(Partial::to_value).collect())),
                        ])
                    })
                    .collect();
                map([
                    ("id", Value::Int(*id)),
                    ("first_ms", Value::Int(pane.first_ms)),
                    ("last_ms", Value::Int(pane.last_ms)),
                    ("groups", Value::List(groups)),
                ])
            })
            .collect();
        map([
            ("rows", Value::Int(self.rows as i64)),
            ("seq", Value::Int(self.seq as i64)),
            ("emitted_until", self.emitted_until.map(Value::Int).unwrap_or_default()),
            ("newest_event", self.event_time.and_then(|c| c.newest).map(Value::Int).unwrap_or_default()),
            ("panes", Value::List(panes)),
            ("open", self.open.map(|(a, b)| Value::List(vec![Value::Int(a), Value::Int(b)])).unwrap_or_default()),
            (
                "recent",
                Value::List(
                    self.recent
                        .iter()
                        .map(|(t, row)| {
                            map([
                                ("at", Value::Int(*t)),
                                ("record", record_value(&row.record)),
                                ("key", Value::List(row.key.clone())),
                                ("args", Value::List(row.args.clone())),
                                ("trigger", Value::Bool(row.trigger)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "pending",
                Value::List(
                    self.pending.iter().map(|(e, t)| Value::List(vec![Value::Int(*e), Value::Int(*t)])).collect(),
                ),
            ),
        ])
    }

    /// The window a [`WindowState::snapshot`] describes, for the same window
    /// and aggregates; an error names what does not fit (a corrupt checkpoint,
    /// or one of another rule).
    ///
    /// `w` is the empty window to fill: [`WindowState::new`], on event time
    /// if the rule is.
    pub fn restore(mut w: WindowState, v: &Value) -> Result<WindowState, String> {
        let top = as_map(v, "window")?;
        w.rows = u64::try_from(int(top, "rows")?).map_err(|_| "negative row count".to_string())?;
        if top.contains_key("seq") {
            w.seq = u64::try_from(int(top, "seq")?).map_err(|_| "negative row number".to_string())?;
        }
        let time = |key: &str| match top.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Int(t)) => Ok(Some(*t)),
            Some(other) => Err(format!("{key} is not a time: {}", other.to_json())),
        };
        w.emitted_until = time("emitted_until")?;
        let pair = |v: &Value, what: &str| match v {
            Value::List(l) => match l.as_slice() {
                [Value::Int(a), Value::Int(b)] => Ok((*a, *b)),
                _ => Err(format!("{what} is not a pair of times: {}", v.to_json())),
            },
            other => Err(format!("{what} is not a pair of times: {}", other.to_json())),
        };
        w.open = match top.get("open") {
            None | Some(Value::Null) => None,
            Some(v) => Some(pair(v, "open")?),
        };
        if top.contains_key("recent") {
            for row in list(top, "recent")? {
                let row = as_map(row, "a sliding window's row")?;
                let values = |key: &str| list(row, key).map(<[Value]>::to_vec);
                let record = value_record(row.get("record").unwrap_or(&Value::Null))?;
                let mut r = WindowRow::new(record, values("key")?, values("args")?);
                if r.args.len() != w.slots.len() {
                    return Err(format!("{} aggregate arguments where the rule has {}", r.args.len(), w.slots.len()));
                }
                r.trigger = matches!(row.get("trigger"), Some(Value::Bool(true)));
                w.recent.push_back((int(row, "at")?, r));
            }
        }
        if top.contains_key("pending") {
            for p in list(top, "pending")? {
                w.pending.push_back(pair(p, "a pending trigger")?);
            }
        }
        if let Some(clock) = &mut w.event_time {
            clock.newest = time("newest_event")?;
        }
        for pane in list(top, "panes")? {
            let pane = as_map(pane, "pane")?;
            let mut restored =
                Pane { first_ms: int(pane, "first_ms")?, last_ms: int(pane, "last_ms")?, ..Pane::default() };
            for group in list(pane, "groups")? {
                let group = as_map(group, "group")?;
                let Some(Value::String(key)) = group.get("key") else { return Err("a group without a key".into()) };
                let partials = list(group, "partials")?;
                if partials.len() != w.slots.len() {
                    return Err(format!("{} aggregates where the rule has {}", partials.len(), w.slots.len()));
                }
                let partials = partials
                    .iter()
                    .zip(&w.slots)
                    .map(|(p, slot)| Partial::from_value(slot.func, p))
                    .collect::<Result<_, _>>()?;
                let first = value_record(group.get("first").unwrap_or(&Value::Null))?;
                restored.order.push(key.clone());
                restored.groups.insert(key.clone(), Group { first, partials });
            }
            w.panes.insert(int(pane, "id")?, restored);
        }
        Ok(w)
    }
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn as_map<'v>(v: &'v Value, what: &str) -> Result<&'v BTreeMap<String, Value>, String> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(format!("{what} is not a map: {}", other.to_json())),
    }
}

fn int(m: &BTreeMap<String, Value>, key: &str) -> Result<i64, String> {
    match m.get(key) {
        Some(Value::Int(i)) => Ok(*i),
        other => Err(format!("{key} is not an integer: {other:?}")),
    }
}

fn list<'v>(m: &'v BTreeMap<String, Value>, key: &str) -> Result<&'v [Value], String> {
    match m.get(key) {
        Some(Value::List(l)) => Ok(l),
        other => Err(format!("{key} is not a list: {other:?}")),
    }
}

fn record_value(r: &Record) -> Value {
    map([
        ("fields", Value::Map(r.fields.clone())),
        ("metadata", Value::Map(r.metadata.clone())),
        ("timestamp_ms", Value::Int(r.timestamp_ms)),
    ])
}

fn value_record(v: &Value) -> Result<Record, String> {
    let m = as_map(v, "a group's first row")?;
    let part = |key: &str| match m.get(key) {
        Some(Value::Map(f)) => Ok(f.clone()),
        _ => Err(format!("a group's first row has no {key}")),
    };
    Ok(Record { fields: part("fields")?, metadata: part("metadata")?, timestamp_ms: int(m, "timestamp_ms")? })
}
