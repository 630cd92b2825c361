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
//!
//! Session and state windows hold one open window at a time (one pane, kept
//! incrementally like the others). A sliding window emits for each row that
//! triggers it, over the rows of the `length` before it (and the `delay`
//! after it): it keeps those rows, so its memory is O(rows in `length`).

use std::collections::{BTreeMap, HashMap, VecDeque};

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
    /// `SESSIONWINDOW(unit, timeout, max)`: from a first row until no row
    /// came for `timeout`, or until the next multiple of `max` (eKuiper
    /// checks the maximum duration on natural-time multiples of it).
    Session { timeout_ms: u64, max_ms: u64 },
    /// `SLIDINGWINDOW(unit, length[, delay])`: for each triggering row at t,
    /// the rows of (t − length, t + delay], emitted at t + delay.
    Sliding { length_ms: u64, delay_ms: u64 },
    /// `STATEWINDOW(begin, end)`: from a row meeting `begin` to the next row
    /// meeting `end`, both included (the caller evaluates the conditions).
    State,
}

impl WindowSpec {
    /// The pane: the largest step that both the window's length and its hop
    /// (or size and interval) are multiples of; 1 for the other windows.
    pub fn pane(self) -> u64 {
        match self {
            WindowSpec::Tumbling { length_ms } => length_ms,
            WindowSpec::Hopping { length_ms, hop_ms } => gcd(length_ms, hop_ms),
            WindowSpec::Count { size, interval } => gcd(size, interval),
            _ => 1,
        }
    }

    /// Panes per window.
    pub fn panes(self) -> u64 {
        match self {
            WindowSpec::Hopping { length_ms, .. } => length_ms / self.pane(),
            WindowSpec::Count { size, .. } => size / self.pane(),
            _ => 1,
        }
    }

    /// How far apart two windows end: the hop (a tumbling window's length).
    fn hop(self) -> u64 {
        match self {
            WindowSpec::Tumbling { length_ms } => length_ms,
            WindowSpec::Hopping { hop_ms, .. } => hop_ms,
            WindowSpec::Count { interval, .. } => interval,
            _ => 1,
        }
    }

    /// Whether the window is cut by time (and so runs on processing or event
    /// time) rather than by rows or conditions.
    pub fn is_time(self) -> bool {
        !matches!(self, WindowSpec::Count { .. } | WindowSpec::State)
    }
}

/// One aggregate of a grouped rule: the function and whether
/// `last_value(x, true)` skips nulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggSlot {
    pub func: AggFn,
    pub ignore_null: bool,
}

/// A row ready for a window: its group key and aggregate arguments, and
/// the window's conditions, evaluated by the caller.
#[derive(Debug, Clone)]
pub struct WindowRow {
    pub record: Record,
    pub key: Vec<Value>,
    pub args: Vec<Value>,
    /// Sliding windows: whether the row triggers a window (`OVER (WHEN …)`;
    /// every row without one).
    pub trigger: bool,
    /// State windows: whether the row meets the begin and end conditions.
    pub begin: bool,
    pub end: bool,
    /// Whether `WHERE` kept the row. One it dropped still moves a count,
    /// session, state or sliding window (eKuiper filters after the window)
    /// but is not aggregated; its key and arguments are empty.
    pub kept: bool,
}

impl WindowRow {
    /// A row that triggers a sliding window and meets no state condition.
    pub fn new(record: Record, key: Vec<Value>, args: Vec<Value>) -> WindowRow {
        WindowRow { record, key, args, trigger: true, begin: false, end: false, kept: true }
    }
}

/// What a window emitted, and the errors of the rows it left out.
pub type Emitted = (Vec<GroupResult>, Vec<String>);

/// One group of one emitted window.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupResult {
    /// The group's first row in the window: columns that are not aggregated
    /// read from it (eKuiper's rule).
    pub first: Record,
    pub aggregates: Vec<Value>,
    pub window_start: i64,
    pub window_end: i64,
    /// Which of the windows ended by one call the group belongs to (0, 1, …
    /// in order): each window is one emission, even when several end at
    /// once with the same bounds (count windows filled by one batch).
    pub window: u32,
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
    /// aHash with a random key per process: fast on short keys, and keys
    /// come from the data, so a fixed-key hash could be flooded.
    groups: HashMap<String, Group, ahash::RandomState>,
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
    /// Session and state windows: the open window's first and last row time
    /// (its groups are pane 0).
    open: Option<(i64, i64)>,
    /// Sliding windows: the rows some window to come may hold, by time.
    recent: VecDeque<(i64, WindowRow)>,
    /// Sliding windows: triggers waiting for their delay, as (emit at,
    /// trigger time), by emission time.
    pending: VecDeque<(i64, i64)>,
    /// A window without aggregates or keys keeps every row as a group of its
    /// own, keyed by its arrival number.
    each_row: bool,
    /// Rows numbered so far, when `each_row`.
    seq: u64,
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
        WindowState {
            spec,
            slots,
            panes: BTreeMap::new(),
            rows: 0,
            emitted_until: None,
            event_time: None,
            late: 0,
            open: None,
            recent: VecDeque::new(),
            pending: VecDeque::new(),
            each_row: false,
            seq: 0,
        }
    }

    /// The empty window of a rule's `GROUP BY`.
    pub fn of(grouping: &crate::Grouping) -> WindowState {
        let mut w = WindowState::new(grouping.window, grouping.aggregates.iter().map(|a| a.slot).collect());
        w.each_row = grouping.each_row;
        w
    }

    /// The same window on event time, with this late tolerance. Count and
    /// state windows take rows in arrival order either way.
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

    /// Adds rows arriving at `now_ms` (processing time); returns the windows
    /// that end on the way (count, state and sliding windows without delay,
    /// and every window on event time), and the errors of rows whose
    /// aggregate arguments were wrong (those rows are left out).
    pub fn add(&mut self, rows: Vec<WindowRow>, now_ms: i64) -> Emitted {
        let mut out = (Vec::new(), Vec::new());
        for mut row in rows {
            if self.each_row && row.kept {
                row.key = vec![Value::Int(self.seq as i64)];
                self.seq += 1;
            }
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
            let added = match self.spec {
                WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. } if !row.kept => Ok((vec![], vec![])),
                WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. } => {
                    self.add_row(at - at.rem_euclid(self.spec.pane() as i64), row, at).map(|_| (vec![], vec![]))
                }
                WindowSpec::Count { .. } => self.add_counted(row, at),
                WindowSpec::Session { .. } => self.add_to_session(row, at),
                WindowSpec::State => Ok(self.add_to_state(row, at)),
                WindowSpec::Sliding { .. } => self.add_sliding(row, at),
            };
            match added {
                Ok(emitted) => extend(&mut out, emitted),
                Err(e) => {
                    out.1.push(e);
                    continue;
                }
            }
            if let Some(clock) = &mut self.event_time {
                clock.newest = Some(clock.newest.map_or(at, |n| n.max(at)));
                let watermark = clock.watermark().expect("a row was seen");
                let emitted = self.emit_until(watermark);
                extend(&mut out, emitted);
            }
        }
        out
    }

    fn add_counted(&mut self, row: WindowRow, at: i64) -> Result<Emitted, String> {
        if !row.kept {
            return self.count_row(|_, _| Ok(()));
        }
        let WindowRow { record, key, mut args, .. } = row;
        self.count_row(|w, pane_id| w.add_entry(pane_id, &key_text(&key), &mut args, || record, at))
    }

    /// Counts one row into a count window: `add` puts it into its pane (a
    /// row `WHERE` dropped is counted and not added); emits the window the
    /// row completes. A row whose arguments are wrong is not counted.
    fn count_row(&mut self, add: impl FnOnce(&mut Self, i64) -> Result<(), String>) -> Result<Emitted, String> {
        let WindowSpec::Count { size, interval } = self.spec else { unreachable!("a count window") };
        let pane_id = (self.rows / self.spec.pane()) as i64;
        add(self, pane_id)?;
        self.rows += 1;
        // Not `is_multiple_of`: the workspace's rust-version is 1.85.
        #[allow(clippy::manual_is_multiple_of)]
        let ends_window = self.rows >= size && (self.rows - size) % interval == 0;
        if !ends_window {
            return Ok((vec![], vec![]));
        }
        let first = pane_id - self.spec.panes() as i64 + 1;
        let panes: Vec<&Pane> = self.panes.range(first..=pane_id).map(|(_, p)| p).collect();
        let start = panes.first().map(|p| p.first_ms).unwrap_or_default();
        let end = panes.last().map(|p| p.last_ms).unwrap_or_default();
        let emitted = split(merge_panes(&panes, start, end));
        // The next window holds the last `size` rows after `interval` more.
        let next_first = ((self.rows + interval - size) / self.spec.pane()) as i64;
        self.panes.retain(|&p, _| p >= next_first);
        Ok(emitted)
    }

    /// When the open session closes: `timeout` after its last row, or at the
    /// next multiple of `max` after its start, whichever comes first.
    fn session_close(&self) -> Option<i64> {
        let WindowSpec::Session { timeout_ms, max_ms } = self.spec else { return None };
        let (start, last) = self.open?;
        let max = max_ms as i64;
        let boundary = start - start.rem_euclid(max) + max;
        Some(last.saturating_add(timeout_ms as i64).min(boundary))
    }

    fn add_to_session(&mut self, row: WindowRow, at: i64) -> Result<Emitted, String> {
        let mut out = (vec![], vec![]);
        if let Some(close) = self.session_close().filter(|close| at >= *close) {
            out = self.close_open(close);
        }
        if row.kept {
            self.add_row(0, row, at)?;
        }
        self.open = Some(match self.open {
            Some((start, last)) => (start, last.max(at)),
            None => (at, at),
        });
        Ok(out)
    }

    /// A state window opens on a row meeting its begin condition and closes,
    /// emitting, on the next row meeting its end condition (the same row may
    /// do both). Rows outside an open window are not kept.
    fn add_to_state(&mut self, row: WindowRow, at: i64) -> Emitted {
        if self.open.is_none() && !row.begin {
            return (vec![], vec![]);
        }
        let ends = row.end;
        let mut out = (vec![], vec![]);
        if row.kept {
            if let Err(e) = self.add_row(0, row, at) {
                out.1.push(e);
            }
        }
        self.open = Some(self.open.map_or((at, at), |(start, _)| (start, at)));
        if ends {
            extend(&mut out, self.close_open(at));
        }
        out
    }

    /// Emits the open session or state window as ending at `end`.
    fn close_open(&mut self, end: i64) -> Emitted {
        let Some((start, _)) = self.open.take() else { return (vec![], vec![]) };
        let pane = self.panes.remove(&0).unwrap_or_default();
        finish_pane(pane, start, end)
    }

    fn add_sliding(&mut self, row: WindowRow, at: i64) -> Result<Emitted, String> {
        let WindowSpec::Sliding { delay_ms, .. } = self.spec else { unreachable!("a sliding window") };
        for (slot, v) in self.slots.iter().zip(&row.args) {
            slot.func.start().check(v)?;
        }
        let trigger = row.trigger;
        if row.kept {
            // Event time may bring rows a little out of order: keep them sorted.
            let at_index = self.recent.partition_point(|(t, _)| *t <= at);
            self.recent.insert(at_index, (at, row));
        }
        if !trigger {
            self.forget_old_rows();
            return Ok((vec![], vec![]));
        }
        // On processing time without delay the window is complete now; on
        // event time it waits for the watermark like any other.
        if delay_ms == 0 && self.event_time.is_none() {
            let out = self.emit_sliding(at);
            self.forget_old_rows();
            return Ok(out);
        }
        let emit_at = at.saturating_add(delay_ms as i64);
        let i = self.pending.partition_point(|(e, _)| *e <= emit_at);
        self.pending.insert(i, (emit_at, at));
        Ok((vec![], vec![]))
    }

    /// The sliding window of the row at `trigger`: (trigger − length,
    /// trigger + delay].
    fn emit_sliding(&self, trigger: i64) -> Emitted {
        let WindowSpec::Sliding { length_ms, delay_ms } = self.spec else { unreachable!("a sliding window") };
        let (start, end) = (trigger.saturating_sub(length_ms as i64), trigger.saturating_add(delay_ms as i64));
        let mut pane = Pane::default();
        let mut errors = Vec::new();
        for (t, row) in self.recent.iter().filter(|(t, _)| *t > start && *t <= end) {
            let (record, mut args) = (|| row.record.clone(), row.args.clone());
            if let Err(e) = add_to_pane(&mut pane, &self.slots, &key_text(&row.key), &mut args, record, *t) {
                errors.push(e);
            }
        }
        let mut out = split(merge_panes(&[&pane], start, end));
        out.1.extend(errors);
        out
    }

    /// Drops the rows no sliding window to come can hold.
    fn forget_old_rows(&mut self) {
        let WindowSpec::Sliding { length_ms, .. } = self.spec else { return };
        let newest = self.recent.back().map(|(t, _)| *t);
        let oldest_needed = self.pending.iter().map(|(_, trigger)| *trigger).min().into_iter().chain(newest).min();
        let Some(oldest_needed) = oldest_needed else { return };
        // With event time a later row may still be older than the newest, but
        // never older than the watermark.
        let horizon = match self.watermark() {
            Some(w) => oldest_needed.min(w),
            None => oldest_needed,
        }
        .saturating_sub(length_ms as i64);
        while self.recent.front().is_some_and(|(t, _)| *t <= horizon) {
            self.recent.pop_front();
        }
    }

    fn add_row(&mut self, pane_id: i64, row: WindowRow, at: i64) -> Result<(), String> {
        let WindowRow { record, key, mut args, .. } = row;
        self.add_entry(pane_id, &key_text(&key), &mut args, || record, at)
    }

    /// Adds a row to its group of pane `pane_id`: the group's key text, the
    /// row's aggregate arguments (taken), and its record should it be the
    /// group's first.
    fn add_entry(
        &mut self,
        pane_id: i64,
        key: &str,
        args: &mut Vec<Value>,
        record: impl FnOnce() -> Record,
        at: i64,
    ) -> Result<(), String> {
        let pane = self.panes.entry(pane_id).or_insert_with(|| Pane { first_ms: at, ..Pane::default() });
        let added = add_to_pane(pane, &self.slots, key, args, record, at);
        // A bad row leaves no trace, not even an empty pane.
        if pane.groups.is_empty() {
            self.panes.remove(&pane_id);
        }
        added
    }

    /// The end of the next window to emit, for the caller's timer (on
    /// processing time: on event time rows move the watermark, not the clock).
    pub fn next_end(&self) -> Option<i64> {
        if self.event_time.is_some() {
            return None;
        }
        self.next_window_end()
    }

    fn next_window_end(&self) -> Option<i64> {
        match self.spec {
            WindowSpec::Session { .. } => return self.session_close(),
            WindowSpec::Sliding { .. } => return self.pending.front().map(|(emit_at, _)| *emit_at),
            WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. } => {}
            WindowSpec::Count { .. } | WindowSpec::State => return None,
        }
        let hop = self.spec.hop() as i64;
        let first_pane = *self.panes.keys().next()?;
        // Windows end on multiples of the hop: the first one after the oldest
        // pane's start holds it.
        let end = first_pane - first_pane.rem_euclid(hop) + hop;
        Some(match self.emitted_until {
            Some(done) => end.max(done + hop),
            None => end,
        })
    }

    /// Emits every processing-time window that ended at or before `now_ms`,
    /// in order (on event time the watermark does, as rows come in).
    pub fn due(&mut self, now_ms: i64) -> Emitted {
        if self.event_time.is_some() {
            return (Vec::new(), Vec::new());
        }
        self.emit_until(now_ms)
    }

    fn emit_until(&mut self, now_ms: i64) -> Emitted {
        let mut out = (Vec::new(), Vec::new());
        match self.spec {
            WindowSpec::Session { .. } => {
                if let Some(close) = self.session_close().filter(|close| *close <= now_ms) {
                    out = self.close_open(close);
                }
                return out;
            }
            WindowSpec::Sliding { .. } => {
                while let Some(&(emit_at, trigger)) = self.pending.front() {
                    if emit_at > now_ms {
                        break;
                    }
                    self.pending.pop_front();
                    extend(&mut out, self.emit_sliding(trigger));
                }
                self.forget_old_rows();
                return out;
            }
            WindowSpec::Count { .. } | WindowSpec::State => return out,
            WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. } => {}
        }
        let (hop, length) = (self.spec.hop() as i64, (self.spec.pane() * self.spec.panes()) as i64);
        while let Some(end) = self.next_window_end() {
            if end > now_ms {
                break;
            }
            let start = end - length;
            if self.spec.panes() == 1 {
                // A window of one pane that no later window shares: its groups
                // move out instead of being merged into copies.
                if let Some(pane) = self.panes.remove(&start) {
                    extend(&mut out, finish_pane(pane, start, end));
                }
                self.emitted_until = Some(end);
                continue;
            }
            let panes: Vec<&Pane> = self.panes.range(start..end).map(|(_, p)| p).collect();
            extend(&mut out, split(merge_panes(&panes, start, end)));
            self.emitted_until = Some(end);
            // Panes that no later window covers are done.
            self.panes.retain(|&p, _| p >= end + hop - length);
        }
        out
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Adds a row to its group in `pane`. All of the row's arguments are checked
/// before anything changes, so a bad row leaves no trace: no half-counted
/// group, no empty one.
fn add_to_pane(
    pane: &mut Pane,
    slots: &[AggSlot],
    key: &str,
    args: &mut Vec<Value>,
    record: impl FnOnce() -> Record,
    at: i64,
) -> Result<(), String> {
    let existing = pane.groups.get(key);
    for ((slot, i), v) in slots.iter().zip(0..).zip(args.iter()) {
        match existing {
            Some(g) => g.partials[i].check(v)?,
            None => slot.func.start().check(v)?,
        }
    }
    pane.last_ms = at;
    // Looked up by the borrowed text: a key is allocated once per group, not
    // once per row.
    if !pane.groups.contains_key(key) {
        pane.order.push(key.to_string());
        let group = Group { first: record(), partials: slots.iter().map(|s| s.func.start()).collect() };
        pane.groups.insert(key.to_string(), group);
    }
    let group = pane.groups.get_mut(key).expect("inserted above");
    for ((p, slot), v) in group.partials.iter_mut().zip(slots).zip(args.drain(..)) {
        p.add(v, slot.ignore_null)?;
    }
    Ok(())
}

fn extend(out: &mut Emitted, more: Emitted) {
    let next = out.0.last().map_or(0, |g| g.window + 1);
    out.0.extend(more.0.into_iter().map(|g| GroupResult { window: g.window + next, ..g }));
    out.1.extend(more.1);
}

fn split(groups: Vec<Result<GroupResult, String>>) -> Emitted {
    let mut out = (Vec::new(), Vec::new());
    for g in groups {
        match g {
            Ok(g) => out.0.push(g),
            Err(e) => out.1.push(e),
        }
    }
    out
}

/// The groups of a window of one pane, moved out of it in the order they
/// first appeared.
fn finish_pane(mut pane: Pane, start: i64, end: i64) -> Emitted {
    let results = pane
        .order
        .iter()
        .filter_map(|key| pane.groups.remove(key))
        .map(|g| GroupResult {
            aggregates: g.partials.iter().map(Partial::finish).collect(),
            first: g.first,
            window_start: start,
            window_end: end,
            window: 0,
        })
        .collect();
    (results, Vec::new())
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
                window: 0,
            })
        })
        .collect()
}

/// A group key as text: values are not hashable (floats), their JSON is.
/// The text a group is kept under: its key as a JSON list, as
/// `Value::List(key).to_json()` prints it (checkpoints hold it, so it must not
/// change), without building the JSON tree for the common scalar types.
fn key_text(key: &[Value]) -> String {
    let mut text = String::from("[");
    for (i, v) in key.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        write_key_item(&mut text, v);
    }
    text.push(']');
    text
}

#[cfg(test)]
pub(crate) fn key_text_for_tests(key: &[Value]) -> String {
    key_text(key)
}

/// One value of a key's text.
fn write_key_item(text: &mut String, v: &Value) {
    match v {
        Value::Null => text.push_str("null"),
        Value::Bool(b) => text.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => text.push_str(itoa::Buffer::new().format(*n)),
        Value::Uint(n) => text.push_str(itoa::Buffer::new().format(*n)),
        Value::String(s) => write_key_str(text, s),
        other => text.push_str(&other.to_json().to_string()),
    }
}

/// A string of a key's text, quoted as JSON quotes it.
fn write_key_str(text: &mut String, s: &str) {
    // JSON escapes only quotes, backslashes and control characters.
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        text.push_str(&Value::String(s.to_string()).to_json().to_string());
    } else {
        text.push('"');
        text.push_str(s);
        text.push('"');
    }
}

mod columns;
mod snapshot;
pub use columns::{Cells, KeyedColumns};
#[cfg(test)]
mod tests;
