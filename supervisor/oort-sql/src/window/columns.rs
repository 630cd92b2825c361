//! Rows going into a window as the columns they arrived in: a row's group
//! key is written from its key columns into one reused buffer and its
//! aggregate arguments are read from theirs, so a row that joins a group
//! already open allocates nothing; a record is built only for a group's first
//! row. Tumbling, hopping and count windows on processing time take these
//! (`KeyedColumns::fits`); the others take [`WindowRow`](super::WindowRow)s.

use oort_proto::columns::{self, ArrayRef, RecordBatch};
use oort_proto::{Record, Value};

use super::{extend, Emitted, WindowSpec, WindowState};

/// One key or argument expression's values for the rows of a batch: the
/// column itself when the expression is a plain column, or the values the row
/// evaluator made (a failed row's value is null and its row is left out).
#[derive(Debug, Clone)]
pub enum Cells {
    Array(ArrayRef),
    Values(Vec<Value>),
}

impl Cells {
    fn value(&self, row: usize) -> Value {
        match self {
            // The sources' batches are checked on arrival: every column has
            // a type that reads as values.
            Cells::Array(a) => columns::value_at(a.as_ref(), row).unwrap_or(Value::Null),
            Cells::Values(v) => v.get(row).cloned().unwrap_or(Value::Null),
        }
    }
}

/// A batch of a windowed rule after `WHERE`, as columns.
#[derive(Debug, Clone)]
pub struct KeyedColumns {
    /// The rows `WHERE` kept, narrowed to the columns the statement reads: a
    /// group's first row is read from here.
    pub rows: RecordBatch,
    /// The `GROUP BY` expressions' values over `rows`.
    pub keys: Vec<Cells>,
    /// Each aggregate's argument over `rows`; `None` for `count(*)`.
    pub args: Vec<Option<Cells>>,
    /// Every row of the input in order: its index in `rows`, or `None` when
    /// `WHERE` dropped it or its key or an argument failed. A count window
    /// counts those rows without aggregating them (eKuiper filters after the
    /// window); the other windows skip them.
    pub order: Vec<Option<usize>>,
}

impl KeyedColumns {
    /// Whether a window takes its rows as columns: tumbling, hopping and
    /// count windows on processing time, with keys or aggregates.
    pub fn fits(spec: WindowSpec, each_row: bool, event_time: bool) -> bool {
        matches!(spec, WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. } | WindowSpec::Count { .. })
            && !each_row
            && !event_time
    }

    fn record(&self, row: usize) -> Record {
        columns::records_of(&self.rows.slice(row, 1)).ok().and_then(|mut r| r.pop()).unwrap_or_default()
    }

    fn entry(&self, row: usize, key: &mut String, args: &mut Vec<Value>) {
        key.clear();
        super::write_key(key, self.keys.iter().map(|k| k.value(row)));
        args.clear();
        args.extend(self.args.iter().map(|a| match a {
            Some(a) => a.value(row),
            // count(*) counts every row: any non-null value does.
            None => Value::Bool(true),
        }));
    }
}

impl WindowState {
    /// Adds a batch of rows as columns arriving at `now_ms`, as
    /// [`WindowState::add`] adds rows; the window must be one that
    /// [`KeyedColumns::fits`].
    pub fn add_columns(&mut self, batch: &KeyedColumns, now_ms: i64) -> Emitted {
        let mut out: Emitted = (Vec::new(), Vec::new());
        let (mut key, mut args) = (String::new(), Vec::with_capacity(batch.args.len()));
        match self.spec {
            WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. } => {
                let pane_id = now_ms - now_ms.rem_euclid(self.spec.pane() as i64);
                for row in batch.order.iter().flatten() {
                    batch.entry(*row, &mut key, &mut args);
                    if let Err(e) = self.add_entry(pane_id, &key, &mut args, || batch.record(*row), now_ms) {
                        out.1.push(e);
                    }
                }
            }
            WindowSpec::Count { .. } => {
                for row in &batch.order {
                    let counted = match row {
                        Some(row) => {
                            batch.entry(*row, &mut key, &mut args);
                            self.count_row(|w, pane_id| {
                                w.add_entry(pane_id, &key, &mut args, || batch.record(*row), now_ms)
                            })
                        }
                        None => self.count_row(|_, _| Ok(())),
                    };
                    match counted {
                        Ok(emitted) => extend(&mut out, emitted),
                        Err(e) => out.1.push(e),
                    }
                }
            }
            other => unreachable!("{other:?} takes rows, not columns"),
        }
        out
    }
}
