//! eKuiper's windows over processing time and row counts: which rows a window
//! holds and when it emits, as a state machine the engine feeds with rows and
//! the clock. Pure: the caller says what time it is.
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
}

impl WindowState {
    pub fn new(spec: WindowSpec, slots: Vec<AggSlot>) -> WindowState {
        WindowState { spec, slots, panes: BTreeMap::new(), rows: 0, emitted_until: None }
    }

    /// Adds rows arriving at `now_ms` (processing time); returns what count
    /// windows complete on the way, and the errors of rows whose aggregate
    /// arguments were wrong (those rows are left out).
    pub fn add(&mut self, rows: Vec<WindowRow>, now_ms: i64) -> (Vec<GroupResult>, Vec<String>) {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for row in rows {
            let pane_id = match self.spec {
                WindowSpec::Count { .. } => (self.rows / self.spec.pane()) as i64,
                _ => now_ms - now_ms.rem_euclid(self.spec.pane() as i64),
            };
            if let Err(e) = self.add_row(pane_id, row, now_ms) {
                errors.push(e);
                continue;
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
        // All of a row's arguments are checked before any is added, so a bad
        // row leaves no half-counted trace.
        let mut updated = group.partials.clone();
        for ((p, slot), v) in updated.iter_mut().zip(&self.slots).zip(row.args) {
            p.add(v, slot.ignore_null)?;
        }
        group.partials = updated;
        Ok(())
    }

    /// The end of the next time window to emit, for the caller's timer.
    pub fn next_end(&self) -> Option<i64> {
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

    /// Emits every time window that ended at or before `now_ms`, in order.
    pub fn due(&mut self, now_ms: i64) -> (Vec<GroupResult>, Vec<String>) {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        let (pane, length) = (self.spec.pane() as i64, (self.spec.pane() * self.spec.panes()) as i64);
        while let Some(end) = self.next_end() {
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
    fn a_row_with_a_bad_argument_is_reported_and_left_out() {
        let mut w = WindowState::new(WindowSpec::Tumbling { length_ms: 1_000 }, slots());
        let mut bad = row("a", 1);
        bad.args[1] = Value::from("x");
        let (_, errors) = w.add(vec![row("a", 1), bad, row("a", 2)], 0);
        assert_eq!(errors, ["sum expects numbers, got string"]);
        let (out, _) = w.due(1_000);
        assert_eq!(summary(&out), [("a".into(), 2, 3, 0, 1_000)]);
    }
}
