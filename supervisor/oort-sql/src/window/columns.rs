//! Rows going into a window as the columns they arrived in: a row's group
//! key is written from its key columns into one reused buffer and its
//! aggregate arguments are read from theirs, so a row that joins a group
//! already open allocates nothing; a record is built only for a group's first
//! row. Tumbling, hopping and count windows on processing time take these
//! (`KeyedColumns::fits`); the others take [`WindowRow`](super::WindowRow)s.

use oort_proto::columns::arrow_array::cast::AsArray;
use oort_proto::columns::arrow_array::{Array, Float64Array, Int64Array, StringArray};
use oort_proto::columns::arrow_schema::DataType;
use oort_proto::columns::{self, ArrayRef, RecordBatch};
use oort_proto::{Record, Value};

use super::{add_to_pane, extend, Emitted, Pane, WindowSpec, WindowState};

/// One key or argument expression's values for the rows of a batch: the
/// column itself when the expression is a plain column, or the values the row
/// evaluator made (a failed row's value is null and its row is left out).
#[derive(Debug, Clone)]
pub enum Cells {
    Array(ArrayRef),
    Values(Vec<Value>),
}

/// [`Cells`] with the common column types resolved once per batch, not
/// once per row.
enum Typed<'a> {
    Int(&'a Int64Array),
    Float(&'a Float64Array),
    Text(&'a StringArray),
    Other(&'a dyn Array),
    Values(&'a [Value]),
}

impl Cells {
    fn typed(&self) -> Typed<'_> {
        match self {
            Cells::Array(a) => match a.data_type() {
                DataType::Int64 => Typed::Int(a.as_primitive()),
                DataType::Float64 => Typed::Float(a.as_primitive()),
                DataType::Utf8 => Typed::Text(a.as_string()),
                _ => Typed::Other(a.as_ref()),
            },
            Cells::Values(v) => Typed::Values(v),
        }
    }
}

impl Typed<'_> {
    /// Writes the row's value into a key's text without making a value of
    /// it for the common types.
    fn write_key_item(&self, text: &mut String, row: usize) {
        match self {
            Typed::Int(a) if !a.is_null(row) => text.push_str(itoa::Buffer::new().format(a.value(row))),
            Typed::Text(a) if !a.is_null(row) => super::write_key_str(text, a.value(row)),
            _ => super::write_key_item(text, &self.value(row)),
        }
    }

    fn value(&self, row: usize) -> Value {
        let null = |a: &dyn Array| a.is_null(row);
        match self {
            Typed::Int(a) if !null(*a) => Value::Int(a.value(row)),
            Typed::Float(a) if !null(*a) => Value::Float(a.value(row)),
            Typed::Text(a) if !null(*a) => Value::String(a.value(row).to_string()),
            Typed::Int(_) | Typed::Float(_) | Typed::Text(_) => Value::Null,
            // The sources' batches are checked on arrival: every column has
            // a type that reads as values.
            Typed::Other(a) => columns::value_at(*a, row).unwrap_or(Value::Null),
            Typed::Values(v) => v.get(row).cloned().unwrap_or(Value::Null),
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

    fn typed(&self) -> (Vec<Typed<'_>>, Vec<Option<Typed<'_>>>) {
        (self.keys.iter().map(Cells::typed).collect(), self.args.iter().map(|a| a.as_ref().map(Cells::typed)).collect())
    }
}

/// Fills `key` and `args` for one row.
fn entry(typed: &(Vec<Typed<'_>>, Vec<Option<Typed<'_>>>), row: usize, key: &mut String, args: &mut Vec<Value>) {
    key.clear();
    key.push('[');
    for (i, k) in typed.0.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        k.write_key_item(key, row);
    }
    key.push(']');
    args.clear();
    args.extend(typed.1.iter().map(|a| match a {
        Some(a) => a.value(row),
        // count(*) counts every row: any non-null value does.
        None => Value::Bool(true),
    }));
}

impl WindowState {
    /// Adds a batch of rows as columns arriving at `now_ms`, as
    /// [`WindowState::add`] adds rows; the window must be one that
    /// [`KeyedColumns::fits`].
    pub fn add_columns(&mut self, batch: &KeyedColumns, now_ms: i64) -> Emitted {
        let mut out: Emitted = (Vec::new(), Vec::new());
        let (mut key, mut args) = (String::new(), Vec::with_capacity(batch.args.len()));
        let typed = batch.typed();
        match self.spec {
            WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. } => {
                // Every row of the batch arrives now: one pane for them all.
                let pane_id = now_ms - now_ms.rem_euclid(self.spec.pane() as i64);
                let pane = self.panes.entry(pane_id).or_insert_with(|| Pane { first_ms: now_ms, ..Pane::default() });
                for row in batch.order.iter().flatten() {
                    entry(&typed, *row, &mut key, &mut args);
                    if let Err(e) = add_to_pane(pane, &self.slots, &key, &mut args, || batch.record(*row), now_ms) {
                        out.1.push(e);
                    }
                }
                // Bad rows leave no trace, not even an empty pane.
                if pane.groups.is_empty() {
                    self.panes.remove(&pane_id);
                }
            }
            WindowSpec::Count { .. } => {
                for row in &batch.order {
                    let counted = match row {
                        Some(row) => {
                            entry(&typed, *row, &mut key, &mut args);
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
