//! eKuiper's windows over processing time and row counts: which rows a window
//! holds and when it emits, as a state machine the engine feeds with rows and
//! the clock. Pure: the caller says what time it is.
//!
//! With event time, a row's time is its record's `timestamp_ms` (the engine
//! reads it from the stream's `TIMESTAMP` field) and windows end on the
//! watermark: the newest event time seen, less the late tolerance. Rows are
//! taken one at a time, the watermark advancing after each, so the output
//! does not depend on how the source cut its batches; a row older than the
//! watermark is late: counted and dropped.
//!
//! Every window is cut into panes (a tumbling window is one pane; a hopping
//! window of length L and hop H is L/H panes of H; a count window of size N
//! and interval I is N/I panes of I rows). A pane keeps, per group, the
//! partial aggregates and the group's first row; a window's result merges its
//! panes. Memory is O(panes × groups), never O(rows), except for `collect`.
//! Time windows are aligned to the epoch, as eKuiper aligns them: a 10 s
//! tumbling window ends at :00, :10, :20 …

use std::collections::{BTreeMap, HashMap};

use oort_proto::{Record, Value};

use super::aggregate::{AggFn, Partial};

/// A window of `GROUP BY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// `TUMBLINGWINDOW(unit, length)`.
    Tumbling { length_ms: u64 },
    /// `HOPPINGWINDOW(unit, length, hop)`: a window of `length` every `hop`.
    Hopping { length_ms: u64, hop_ms: u64 },
    /// `COUNTWINDOW(size[, interval])`: every `interval` rows (default
    /// `size`), the last `size` rows.
    Count { size: u64, interval: u64 },
}

impl WindowSpec {
    /// The pane: what one step of the window adds.
    fn pane(self) -> u64 {
        match self {
            WindowSpec::Tumbling { length_ms } => length_ms,
            WindowSpec::Hopping { hop_ms, .. } => hop_ms,
            WindowSpec::Count { interval, .. } => interval,
        }
    }

    /// Panes per window.
    fn panes(self) -> u64 {
        match self {
            WindowSpec::Tumbling { .. } => 1,
            WindowSpec::Hopping { length_ms, hop_ms } => length_ms / hop_ms,
            WindowSpec::Count { size, interval } => size / interval,
        }
    }

    pub fn is_time(self) -> bool {
        !matches!(self, WindowSpec::Count { .. })
    }
}

/// One aggregate of a grouped rule: the function and whether
/// `last_value(x, true)` skips nulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggSlot {
    pub func: AggFn,
    pub ignore_null: bool,
}

/// A row ready for a window: its group key and aggregate arguments,
/// evaluated by the caller.
#[derive(Debug, Clone)]
pub struct WindowRow {
    pub record: Record,
    pub key: Vec<Value>,
    pub args: Vec<Value>,
}

/// One group of one emitted window.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupResult {
    /// The group's first row in the window: columns that are not aggregated
    /// read from it (eKuiper's rule).
    pub first: Record,
    pub aggregates: Vec<Value>,
    pub window_start: i64,
    pub window_end: i64,
}

#[derive(Debug, Clone)]
struct Group {
    first: Record,
    partials: Vec<Partial>,
}

/// The groups of one pane, in the order they first appeared.
#[derive(Debug, Clone, Default)]
struct Pane {
    order: Vec<String>,
    groups: HashMap<String, Group>,
    /// Processing time of its first and last row (count windows report these
    /// as the window's bounds).
    first_ms: i64,
    last_ms: i64,
}

/// The open panes of one rule's window.
#[derive(Debug, Clone)]
pub struct WindowState {
    spec: WindowSpec,
    slots: Vec<AggSlot>,
    /// Time windows: panes by start time. Count windows: by pane number.
    panes: BTreeMap<i64, Pane>,
    /// Count windows: rows seen so far.
    rows: u64,
    /// Time windows: the end of the last window emitted.
    emitted_until: Option<i64>,
    /// Event time: the late tolerance in milliseconds and the newest event
    /// time seen; `None` on processing time.
    event_time: Option<EventClock>,
    /// Late rows dropped since the caller last asked ([`WindowState::take_late`]).
    late: u64,
}

#[derive(Debug, Clone, Copy)]
struct EventClock {
    tolerance_ms: i64,
    newest: Option<i64>,
}

impl EventClock {
    fn watermark(&self) -> Option<i64> {
        self.newest.map(|t| t.saturating_sub(self.tolerance_ms))
    }
}

impl WindowState {
    pub fn new(spec: WindowSpec, slots: Vec<AggSlot>) -> WindowState {
        WindowState { spec, slots, panes: BTreeMap::new(), rows: 0, emitted_until: None, event_time: None, late: 0 }
    }

    /// The same window on event time, with this late tolerance. Count windows
    /// count rows in arrival order either way.
    pub fn on_event_time(mut self, late_tolerance_ms: u64) -> WindowState {
        if self.spec.is_time() {
            let tolerance_ms = i64::try_from(late_tolerance_ms).unwrap_or(i64::MAX);
            self.event_time = Some(EventClock { tolerance_ms, newest: None });
        }
        self
    }

    /// How many late rows were dropped since the last call.
    pub fn take_late(&mut self) -> u64 {
        std::mem::take(&mut self.late)
    }

    /// Event time: the watermark, once a row has set it.
    pub fn watermark(&self) -> Option<i64> {
        self.event_time.and_then(|c| c.watermark())
    }

    /// Adds rows arriving at `now_ms` (processing time); returns what count
    /// windows complete on the way, and the errors of rows whose aggregate
    /// arguments were wrong (those rows are left out).
    pub fn add(&mut self, rows: Vec<WindowRow>, now_ms: i64) -> (Vec<GroupResult>, Vec<String>) {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for row in rows {
            let at = match self.event_time {
                Some(clock) => {
                    let t = row.record.timestamp_ms;
                    if clock.watermark().is_some_and(|w| t < w) {
                        self.late += 1;
                        continue;
                    }
                    t
                }
                None => now_ms,
            };
            let pane_id = match self.spec {
                WindowSpec::Count { .. } => (self.rows / self.spec.pane()) as i64,
                _ => at - at.rem_euclid(self.spec.pane() as i64),
            };
            if let Err(e) = self.add_row(pane_id, row, at) {
                errors.push(e);
                continue;
            }
            if let Some(clock) = &mut self.event_time {
                clock.newest = Some(clock.newest.map_or(at, |n| n.max(at)));
                let watermark = clock.watermark().expect("a row was seen");
                let (done, failed) = self.emit_until(watermark);
                results.extend(done);
                errors.extend(failed);
            }
            if let WindowSpec::Count { size, interval } = self.spec {
                self.rows += 1;
                // Not `is_multiple_of`: the workspace's rust-version is 1.85.
                #[allow(clippy::manual_is_multiple_of)]
                let ends_window = self.rows >= size && (self.rows - size) % interval == 0;
                if ends_window {
                    let last = pane_id;
                    let first = last - self.spec.panes() as i64 + 1;
                    let panes: Vec<&Pane> = self.panes.range(first..=last).map(|(_, p)| p).collect();
                    let start = panes.first().map(|p| p.first_ms).unwrap_or_default();
                    let end = panes.last().map(|p| p.last_ms).unwrap_or_default();
                    for g in merge_panes(&panes, start, end) {
                        match g {
                            Ok(g) => results.push(g),
                            Err(e) => errors.push(e),
                        }
                    }
                    self.panes.retain(|&p, _| p > first);
                }
            }
        }
        (results, errors)
    }

    fn add_row(&mut self, pane_id: i64, row: WindowRow, now_ms: i64) -> Result<(), String> {
        let key = key_text(&row.key);
        // All of a row's arguments are checked before anything changes, so a
        // bad row leaves no trace: no half-counted group, no empty one.
        let existing = self.panes.get(&pane_id).and_then(|p| p.groups.get(&key));
        for ((slot, i), v) in self.slots.iter().zip(0..).zip(&row.args) {
            match existing {
                Some(g) => g.partials[i].check(v)?,
                None => slot.func.start().check(v)?,
            }
        }
        let pane = self.panes.entry(pane_id).or_insert_with(|| Pane { first_ms: now_ms, ..Pane::default() });
        pane.last_ms = now_ms;
        let group = match pane.groups.get_mut(&key) {
            Some(g) => g,
            None => {
                pane.order.push(key.clone());
                pane.groups.entry(key).or_insert(Group {
                    first: row.record,
                    partials: self.slots.iter().map(|s| s.func.start()).collect(),
                })
            }
        };
        for ((p, slot), v) in group.partials.iter_mut().zip(&self.slots).zip(row.args) {
            p.add(v, slot.ignore_null)?;
        }
        Ok(())
    }

    /// The end of the next time window to emit, for the caller's timer (on
    /// processing time: on event time rows move the watermark, not the clock).
    pub fn next_end(&self) -> Option<i64> {
        if self.event_time.is_some() {
            return None;
        }
        self.next_window_end()
    }

    fn next_window_end(&self) -> Option<i64> {
        if !self.spec.is_time() {
            return None;
        }
        let pane = self.spec.pane() as i64;
        let first_pane = *self.panes.keys().next()?;
        // The first window that holds the oldest pane ends one pane after it.
        let end = first_pane + pane;
        Some(match self.emitted_until {
            Some(done) => end.max(done + pane),
            None => end,
        })
    }

    /// Emits every processing-time window that ended at or before `now_ms`,
    /// in order (on event time the watermark does, as rows come in).
    pub fn due(&mut self, now_ms: i64) -> (Vec<GroupResult>, Vec<String>) {
        if self.event_time.is_some() {
            return (Vec::new(), Vec::new());
        }
        self.emit_until(now_ms)
    }

    fn emit_until(&mut self, now_ms: i64) -> (Vec<GroupResult>, Vec<String>) {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        let (pane, length) = (self.spec.pane() as i64, (self.spec.pane() * self.spec.panes()) as i64);
        while let Some(end) = self.next_window_end() {
            if end > now_ms {
                break;
            }
            let start = end - length;
            let panes: Vec<&Pane> = self.panes.range(start..end).map(|(_, p)| p).collect();
            for g in merge_panes(&panes, start, end) {
                match g {
                    Ok(g) => results.push(g),
                    Err(e) => errors.push(e),
                }
            }
            self.emitted_until = Some(end);
            // Panes that no later window covers are done.
            self.panes.retain(|&p, _| p >= end + pane - length);
        }
        (results, errors)
    }
}

impl WindowState {
    /// The window's contents as one value, for a checkpoint: its panes (each
    /// group's key, first row and partial aggregates), the rows a count window
    /// has seen and the end of the last time window emitted.
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
            ("emitted_until", self.emitted_until.map(Value::Int).unwrap_or_default()),
            ("newest_event", self.event_time.and_then(|c| c.newest).map(Value::Int).unwrap_or_default()),
            ("panes", Value::List(panes)),
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
        let time = |key: &str| match top.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Int(t)) => Ok(Some(*t)),
            Some(other) => Err(format!("{key} is not a time: {}", other.to_json())),
        };
        w.emitted_until = time("emitted_until")?;
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

/// Merges the panes of one window group by group, groups in the order they
/// first appeared.
fn merge_panes(panes: &[&Pane], start: i64, end: i64) -> Vec<Result<GroupResult, String>> {
    let mut order: Vec<&str> = Vec::new();
    let mut merged: HashMap<&str, Result<Group, String>> = HashMap::new();
    for pane in panes {
        for key in &pane.order {
            let group = &pane.groups[key];
            match merged.get_mut(key.as_str()) {
                None => {
                    order.push(key);
                    merged.insert(key, Ok(group.clone()));
                }
                Some(Ok(acc)) => {
                    for (a, b) in acc.partials.iter_mut().zip(&group.partials) {
                        if let Err(e) = a.merge(b) {
                            merged.insert(key, Err(e));
                            break;
                        }
                    }
                }
                Some(Err(_)) => {}
            }
        }
    }
    order
        .into_iter()
        .map(|key| {
            merged.remove(key).expect("every ordered key is merged").map(|g| GroupResult {
                first: g.first,
                aggregates: g.partials.iter().map(Partial::finish).collect(),
                window_start: start,
                window_end: end,
            })
        })
        .collect()
}

/// A group key as text: values are not hashable (floats), their JSON is.
fn key_text(key: &[Value]) -> String {
    Value::List(key.to_vec()).to_json().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Vec<AggSlot> {
        vec![AggSlot { func: AggFn::Count, ignore_null: false }, AggSlot { func: AggFn::Sum, ignore_null: false }]
    }

    fn row(key: &str, x: i64) -> WindowRow {
        WindowRow {
            record: Record::from_fields([("k".to_string(), Value::from(key))].into_iter().collect()),
            key: vec![Value::from(key)],
            args: vec![Value::Int(x), Value::Int(x)],
        }
    }

    fn summary(results: &[GroupResult]) -> Vec<(String, i64, i64, i64, i64)> {
        results
            .iter()
            .map(|g| {
                let k = g.first.fields["k"].as_str().unwrap().to_string();
                let (Value::Int(c), Value::Int(s)) = (&g.aggregates[0], &g.aggregates[1]) else { panic!("{g:?}") };
                (k, *c, *s, g.window_start, g.window_end)
            })
            .collect()
    }

    #[test]
    fn a_tumbling_window_emits_aligned_windows_per_group_in_order() {
        let mut w = WindowState::new(WindowSpec::Tumbling { length_ms: 10_000 }, slots());
        assert_eq!(w.next_end(), None, "nothing to emit before the first row");
        w.add(vec![row("a", 1), row("b", 2)], 10_500);
        w.add(vec![row("a", 3)], 19_999);
        assert_eq!(w.next_end(), Some(20_000));
        assert!(w.due(19_999).0.is_empty(), "the window is still open");
        w.add(vec![row("b", 5)], 20_000);
        let (out, errors) = w.due(20_000);
        assert!(errors.is_empty());
        assert_eq!(summary(&out), [("a".into(), 2, 4, 10_000, 20_000), ("b".into(), 1, 2, 10_000, 20_000)]);
        // The next window holds only the row of 20 000; an empty window emits nothing.
        let (out, _) = w.due(45_000);
        assert_eq!(summary(&out), [("b".into(), 1, 5, 20_000, 30_000)]);
        assert_eq!(w.next_end(), None);
    }

    #[test]
    fn a_hopping_window_covers_its_panes_and_every_row_lands_in_length_over_hop_windows() {
        let mut w = WindowState::new(WindowSpec::Hopping { length_ms: 10_000, hop_ms: 5_000 }, slots());
        w.add(vec![row("a", 1)], 1_000);
        w.add(vec![row("a", 10)], 6_000);
        w.add(vec![row("a", 100)], 11_000);
        let (out, _) = w.due(20_000);
        assert_eq!(
            summary(&out),
            [
                ("a".into(), 1, 1, -5_000, 5_000),
                ("a".into(), 2, 11, 0, 10_000),
                ("a".into(), 2, 110, 5_000, 15_000),
                ("a".into(), 1, 100, 10_000, 20_000),
            ]
        );
        assert!(w.panes.is_empty(), "every pane is released once no window covers it");
    }

    #[test]
    fn a_count_window_emits_every_interval_rows_the_last_size_rows() {
        let mut w = WindowState::new(WindowSpec::Count { size: 4, interval: 2 }, slots());
        let (out, _) = w.add((1..=3).map(|x| row("a", x)).collect(), 0);
        assert!(out.is_empty(), "fewer rows than the window holds");
        let (out, _) = w.add((4..=8).map(|x| row("a", x)).collect(), 0);
        // After rows 4, 6 and 8: 1..=4, 3..=6, 5..=8.
        let sums: Vec<i64> = summary(&out).into_iter().map(|s| s.2).collect();
        assert_eq!(sums, [10, 18, 26]);
        let mut tumbling = WindowState::new(WindowSpec::Count { size: 2, interval: 2 }, slots());
        let (out, _) = tumbling.add((1..=5).map(|x| row(if x % 2 == 0 { "e" } else { "o" }, x)).collect(), 0);
        assert_eq!(
            summary(&out).into_iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(),
            [("o".to_string(), 1), ("e".to_string(), 2), ("o".to_string(), 3), ("e".to_string(), 4)]
        );
    }

    #[test]
    fn a_restored_window_carries_on_as_if_never_interrupted() {
        let spec = WindowSpec::Hopping { length_ms: 10_000, hop_ms: 5_000 };
        let mut slots = slots();
        slots.push(AggSlot { func: AggFn::Avg, ignore_null: false });
        let row3 = |k: &str, x: i64| {
            let mut r = row(k, x);
            r.args.push(Value::Int(x));
            r
        };
        let feed = |w: &mut WindowState, from: usize| {
            let mut out = Vec::new();
            for (i, x) in [1, 10, 100, 1000].iter().enumerate().skip(from) {
                w.add(vec![row3(if i % 2 == 0 { "a" } else { "b" }, *x)], 1_000 + 4_000 * i as i64);
                out.extend(w.due(1_000 + 4_000 * i as i64).0);
            }
            out.extend(w.due(60_000).0);
            out
        };
        let mut straight = WindowState::new(spec, slots.clone());
        let expected = feed(&mut straight, 0);
        let mut before = WindowState::new(spec, slots.clone());
        let mut got = Vec::new();
        for (i, x) in [1, 10].iter().enumerate() {
            before.add(vec![row3(if i % 2 == 0 { "a" } else { "b" }, *x)], 1_000 + 4_000 * i as i64);
            got.extend(before.due(1_000 + 4_000 * i as i64).0);
        }
        let mut after = WindowState::restore(WindowState::new(spec, slots.clone()), &before.snapshot()).unwrap();
        assert_eq!(after.snapshot(), before.snapshot());
        got.extend(feed(&mut after, 2));
        assert_eq!(got, expected);
        // A snapshot of another rule's window is refused, not misread.
        let err = WindowState::restore(WindowState::new(spec, vec![slots[0]]), &before.snapshot()).unwrap_err();
        assert_eq!(err, "3 aggregates where the rule has 1");
        assert!(WindowState::restore(WindowState::new(spec, slots), &Value::from("junk")).is_err());
    }

    #[test]
    fn a_group_whose_only_row_is_bad_is_not_emitted() {
        let mut w = WindowState::new(WindowSpec::Tumbling { length_ms: 1_000 }, slots());
        let mut bad = row("b", 1);
        bad.args[1] = Value::from("x");
        let (_, errors) = w.add(vec![row("a", 1), bad], 0);
        assert_eq!(errors.len(), 1);
        assert_eq!(summary(&w.due(1_000).0), [("a".into(), 1, 1, 0, 1_000)]);
    }

    #[test]
    fn a_row_with_a_bad_argument_is_reported_and_left_out() {
        let mut w = WindowState::new(WindowSpec::Tumbling { length_ms: 1_000 }, slots());
        let mut bad = row("a", 1);
        bad.args[1] = Value::from("x");
        let (_, errors) = w.add(vec![row("a", 1), bad, row("a", 2)], 0);
        assert_eq!(errors, ["sum expects numbers, got string"]);
        let (out, _) = w.due(1_000);
        assert_eq!(summary(&out), [("a".into(), 2, 3, 0, 1_000)]);
    }

    fn at(key: &str, x: i64, t: i64) -> WindowRow {
        let mut r = row(key, x);
        r.record.timestamp_ms = t;
        r
    }

    #[test]
    fn event_time_windows_end_on_the_watermark_and_drop_late_rows() {
        let rows = || {
            vec![
                at("a", 1, 1_000),
                at("b", 2, 9_000),
                at("a", 3, 10_500),
                // Behind the newest (10 500) but within the tolerance: counts.
                at("a", 4, 9_600),
                at("a", 5, 12_000),
                // The watermark is 11 000: late, dropped and counted.
                at("b", 6, 9_900),
                at("a", 7, 21_000),
            ]
        };
        let window = || WindowState::new(WindowSpec::Tumbling { length_ms: 10_000 }, slots()).on_event_time(1_000);
        let mut w = window();
        // The clock does not matter on event time.
        let (out, errors) = w.add(rows(), 999_999_999);
        assert!(errors.is_empty());
        assert_eq!(
            summary(&out),
            [("a".into(), 2, 5, 0, 10_000), ("b".into(), 1, 2, 0, 10_000), ("a".into(), 2, 8, 10_000, 20_000)]
        );
        assert_eq!(w.take_late(), 1);
        assert_eq!(w.take_late(), 0, "taken once");
        assert_eq!(w.watermark(), Some(20_000));
        assert_eq!(w.next_end(), None, "no timer on event time");
        assert!(w.due(i64::MAX).0.is_empty(), "nor does the clock emit");
        // Row by row, the same windows: the output does not depend on batches.
        let mut one_by_one = window();
        let mut got = Vec::new();
        for r in rows() {
            got.extend(one_by_one.add(vec![r], 0).0);
        }
        assert_eq!(got, out);
    }

    #[test]
    fn an_event_time_window_restored_keeps_its_watermark() {
        let spec = WindowSpec::Hopping { length_ms: 10_000, hop_ms: 5_000 };
        let mut w = WindowState::new(spec, slots()).on_event_time(0);
        let (out, _) = w.add(vec![at("a", 1, 1_000), at("a", 2, 7_000)], 0);
        assert_eq!(summary(&out), [("a".into(), 1, 1, -5_000, 5_000)]);
        let mut restored =
            WindowState::restore(WindowState::new(spec, slots()).on_event_time(0), &w.snapshot()).unwrap();
        assert_eq!(restored.watermark(), Some(7_000));
        let (out, _) = restored.add(vec![at("a", 4, 6_000), at("a", 8, 15_000)], 0);
        assert_eq!(restored.take_late(), 1, "6 000 is behind the restored watermark");
        assert_eq!(summary(&out), [("a".into(), 2, 3, 0, 10_000), ("a".into(), 1, 2, 5_000, 15_000)]);
    }
}
