//! Running a planned rule over one batch: `WHERE`, the select list, and for
//! a windowed rule the rows handed to the window and the groups it emits.

use std::collections::BTreeMap;

use oort_proto::{Record, Value};

use crate::expr::{self, Expr, Functions};
use crate::window::{self, WindowSpec};
use crate::{Grouping, SelectField, SelectPlan, SortBy};

/// What one operator did with one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpOutcome {
    pub input: u64,
    pub output: u64,
    pub exceptions: u64,
    pub last_exception: Option<String>,
}

impl OpOutcome {
    pub fn failed(&mut self, reason: String) {
        self.exceptions += 1;
        self.last_exception = Some(reason);
    }
}

/// The result of running one batch through the filter and the projection.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub records: Vec<Record>,
    pub filter: OpOutcome,
    pub project: OpOutcome,
}

/// Runs one batch through `WHERE` and the select list. Rows whose evaluation
/// fails are dropped and counted as exceptions of that operator.
pub async fn run_batch<F: Functions>(
    plan: &SelectPlan,
    records: Vec<Record>,
    functions: &F,
) -> Result<BatchOutcome, F::Error> {
    let mut out = BatchOutcome::default();
    let kept = filter(plan, records, functions, &mut out.filter).await?;
    out.records = project(plan, kept, None, functions, &mut out.project).await?;
    Ok(out)
}

/// A batch of a grouped rule after `WHERE`: its rows with their group keys
/// and aggregate arguments, ready for the window.
#[derive(Debug, Default)]
pub struct WindowBatch {
    pub rows: Vec<window::WindowRow>,
    /// The batch as columns instead of `rows`, for a window that takes them
    /// ([`window::KeyedColumns::fits`]).
    pub columns: Option<window::KeyedColumns>,
    pub filter: OpOutcome,
    /// Rows whose key or argument failed to evaluate.
    pub aggregate: OpOutcome,
}

/// Runs one batch of a grouped rule through `WHERE` and evaluates each row's
/// group key and aggregate arguments (plugin calls batched as everywhere).
pub async fn prepare_window_rows<F: Functions>(
    plan: &SelectPlan,
    grouping: &Grouping,
    records: Vec<Record>,
    functions: &F,
) -> Result<WindowBatch, F::Error> {
    let mut out = WindowBatch::default();
    out.filter.input = records.len() as u64;
    // `FILTER (WHERE …)` decides which rows enter the window.
    let entering = keep_true(grouping.filter.as_ref(), records, functions, &mut out.filter).await?;
    let all = expr::Rows::plain(&entering);
    let verdicts = |column: Vec<expr::Cell>, what: &str, outcome: &mut OpOutcome| -> Vec<bool> {
        column
            .into_iter()
            .map(|cell| match cell {
                Ok(v) => matches!(v, Value::Bool(true)),
                Err(e) => {
                    outcome.failed(format!("{what}: {e}"));
                    false
                }
            })
            .collect()
    };
    // eKuiper filters with `WHERE` after the window: a row it drops still
    // counts in a count window, extends a session, opens or closes a state
    // window and triggers a sliding one, but is not aggregated. (In tumbling
    // and hopping windows that makes no difference: such rows go no further.)
    let passes = match &plan.filter {
        Some(w) => verdicts(expr::eval(w, all, functions).await?, "WHERE", &mut out.filter),
        None => vec![true; entering.len()],
    };
    let triggers = match &grouping.trigger {
        Some(t) => Some(verdicts(expr::eval(t, all, functions).await?, "OVER (WHEN …)", &mut out.aggregate)),
        None => None,
    };
    let (begins, ends) = match &grouping.state {
        Some((b, e)) => {
            let begins = verdicts(expr::eval(b, all, functions).await?, "STATEWINDOW's begin", &mut out.aggregate);
            let ends = verdicts(expr::eval(e, all, functions).await?, "STATEWINDOW's end", &mut out.aggregate);
            (Some(begins), Some(ends))
        }
        None => (None, None),
    };
    let flag = |column: &Option<Vec<bool>>, i: usize, default: bool| column.as_ref().map_or(default, |c| c[i]);
    let passing_matters = !matches!(grouping.window, WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. });
    // Rows by their position in the batch, so the window sees them in order.
    type Numbered = Vec<(usize, Record)>;
    let (kept, dropped): (Numbered, Numbered) = entering.into_iter().enumerate().partition(|(i, _)| passes[*i]);
    out.filter.output = kept.len() as u64;
    out.aggregate.input = kept.len() as u64;
    let (positions, kept): (Vec<usize>, Vec<Record>) = kept.into_iter().unzip();
    // Keys and aggregate arguments only for the rows `WHERE` kept: it may be
    // what guards them (`WHERE d != 0` before `sum(x / d)`).
    let rows = expr::Rows::plain(&kept);
    let mut keys = Vec::with_capacity(grouping.keys.len());
    for k in &grouping.keys {
        keys.push(expr::eval(k, rows, functions).await?.into_iter());
    }
    let mut args = Vec::with_capacity(grouping.aggregates.len());
    for a in &grouping.aggregates {
        args.push(match &a.arg {
            Some(e) => Some(expr::eval(e, rows, functions).await?.into_iter()),
            // count(*) counts every row: any non-null value does.
            None => None,
        });
    }
    let mut prepared: Vec<(usize, window::WindowRow)> = Vec::with_capacity(kept.len());
    for (i, record) in positions.into_iter().zip(kept) {
        // One cell from every column for every row, failed or not, so that
        // the columns stay aligned with the rows.
        let key: Vec<expr::Cell> = keys.iter_mut().map(|k| k.next().unwrap_or(Ok(Value::Null))).collect();
        let row_args: Vec<expr::Cell> = args
            .iter_mut()
            .map(|a| match a {
                Some(a) => a.next().unwrap_or(Ok(Value::Null)),
                None => Ok(Value::Bool(true)),
            })
            .collect();
        let key = key.into_iter().collect::<Result<Vec<_>, _>>().map_err(|e| format!("GROUP BY: {e}"));
        let row_args = row_args
            .into_iter()
            .zip(&grouping.aggregates)
            .map(|(cell, call)| cell.map_err(|e| format!("{}: {e}", call.slot.func.name())))
            .collect::<Result<Vec<_>, _>>();
        let row = match (key, row_args) {
            (Ok(key), Ok(args)) => window::WindowRow::new(record, key, args),
            (Err(e), _) | (_, Err(e)) => {
                out.aggregate.failed(e);
                if !passing_matters {
                    continue;
                }
                window::WindowRow { kept: false, ..window::WindowRow::new(record, Vec::new(), Vec::new()) }
            }
        };
        prepared.push((i, row));
    }
    out.aggregate.output = prepared.iter().filter(|(_, r)| r.kept).count() as u64;
    if passing_matters {
        prepared.extend(dropped.into_iter().map(|(i, record)| {
            (i, window::WindowRow { kept: false, ..window::WindowRow::new(record, Vec::new(), Vec::new()) })
        }));
        prepared.sort_by_key(|(i, _)| *i);
    }
    out.rows = prepared
        .into_iter()
        .map(|(i, mut row)| {
            row.trigger = flag(&triggers, i, true);
            row.begin = flag(&begins, i, false);
            row.end = flag(&ends, i, false);
            row
        })
        .collect();
    Ok(out)
}

/// Turns a window's groups into output records: `HAVING`, then the select
/// list, where aggregates and `window_start()`/`window_end()` read from each
/// group and other columns from its first row.
pub async fn project_groups<F: Functions>(
    plan: &SelectPlan,
    groups: Vec<window::GroupResult>,
    functions: &F,
    outcome: &mut OpOutcome,
) -> Result<Vec<Record>, F::Error> {
    let having = plan.grouping.as_ref().and_then(|g| g.having.as_ref());
    let (mut records, mut values): (Vec<Record>, Vec<expr::GroupValues>) = groups
        .into_iter()
        .map(|g| {
            let v =
                expr::GroupValues { aggregates: g.aggregates, window_start: g.window_start, window_end: g.window_end };
            (g.first, v)
        })
        .unzip();
    if let Some(having) = having {
        let verdicts = expr::eval(having, expr::Rows { records: &records, groups: Some(&values) }, functions).await?;
        (records, values) = records
            .into_iter()
            .zip(values)
            .zip(verdicts)
            .filter_map(|(group, verdict)| match verdict {
                Ok(Value::Bool(true)) => Some(group),
                Ok(_) => None,
                Err(e) => {
                    outcome.failed(format!("HAVING: {e}"));
                    None
                }
            })
            .unzip();
    }
    // ORDER BY keys that are expressions read the groups, before projection.
    let mut sort_columns = Vec::with_capacity(plan.order_by.len());
    for key in &plan.order_by {
        sort_columns.push(match &key.by {
            SortBy::Expr(e) => {
                let rows = expr::Rows { records: &records, groups: Some(&values) };
                Some(expr::eval(e, rows, functions).await?)
            }
            SortBy::Field(_) => None,
        });
    }
    let (projected, kept) = project_keeping(plan, records, Some(&values), functions, outcome).await?;
    if plan.order_by.is_empty() {
        return Ok(projected);
    }
    // Each output row's sort values: a failed key sorts as null.
    let mut keyed: Vec<(Vec<Value>, Record)> = projected
        .into_iter()
        .zip(kept)
        .map(|(record, row)| {
            let values = plan
                .order_by
                .iter()
                .zip(&sort_columns)
                .map(|(key, column)| match (&key.by, column) {
                    (SortBy::Field(name), _) => record.fields.get(name).cloned().unwrap_or_default(),
                    (SortBy::Expr(_), Some(column)) => column[row].clone().unwrap_or_default(),
                    (SortBy::Expr(_), None) => Value::Null,
                })
                .collect();
            (values, record)
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        for ((x, y), key) in a.iter().zip(b).zip(&plan.order_by) {
            let o = sort_order(x, y);
            if o != std::cmp::Ordering::Equal {
                return if key.descending { o.reverse() } else { o };
            }
        }
        std::cmp::Ordering::Equal
    });
    Ok(keyed.into_iter().map(|(_, r)| r).collect())
}

/// `ORDER BY`'s order: nulls first, then values as comparisons order them;
/// values that do not compare (a string and a number) by type name, so the
/// sort is total.
fn sort_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => expr::order(a, b).unwrap_or_else(|_| a.type_name().cmp(b.type_name())),
    }
}

/// The rows for which `condition` is true (all of them without one); errors
/// count as the operator's exceptions.
async fn keep_true<F: Functions>(
    condition: Option<&Expr>,
    records: Vec<Record>,
    functions: &F,
    outcome: &mut OpOutcome,
) -> Result<Vec<Record>, F::Error> {
    let Some(condition) = condition else { return Ok(records) };
    let verdicts = expr::eval(condition, expr::Rows::plain(&records), functions).await?;
    let mut kept = Vec::with_capacity(records.len());
    for (record, verdict) in records.into_iter().zip(verdicts) {
        match verdict {
            Ok(Value::Bool(true)) => kept.push(record),
            Ok(_) => {}
            Err(e) => outcome.failed(e),
        }
    }
    Ok(kept)
}

/// `WHERE`: the rows whose condition is true.
async fn filter<F: Functions>(
    plan: &SelectPlan,
    records: Vec<Record>,
    functions: &F,
    outcome: &mut OpOutcome,
) -> Result<Vec<Record>, F::Error> {
    outcome.input = records.len() as u64;
    let kept = keep_true(plan.filter.as_ref(), records, functions, outcome).await?;
    outcome.output = kept.len() as u64;
    Ok(kept)
}

/// The select list over `kept` (and their groups, for a grouped rule).
async fn project<F: Functions>(
    plan: &SelectPlan,
    kept: Vec<Record>,
    groups: Option<&[expr::GroupValues]>,
    functions: &F,
    outcome: &mut OpOutcome,
) -> Result<Vec<Record>, F::Error> {
    Ok(project_keeping(plan, kept, groups, functions, outcome).await?.0)
}

/// [`project`], also saying which input row each output row came from.
async fn project_keeping<F: Functions>(
    plan: &SelectPlan,
    kept: Vec<Record>,
    groups: Option<&[expr::GroupValues]>,
    functions: &F,
    outcome: &mut OpOutcome,
) -> Result<(Vec<Record>, Vec<usize>), F::Error> {
    outcome.input = kept.len() as u64;
    let rows = expr::Rows { records: &kept, groups };
    let mut columns = Vec::with_capacity(plan.fields.len());
    for field in &plan.fields {
        columns.push(match field {
            SelectField::Wildcard => None,
            SelectField::Expr { expr, .. } => Some(expr::eval(expr, rows, functions).await?.into_iter()),
        });
    }
    let mut out = Vec::with_capacity(kept.len());
    let mut from = Vec::with_capacity(kept.len());
    'rows: for (row, record) in kept.into_iter().enumerate() {
        let mut fields = BTreeMap::new();
        let mut failure = None;
        for (field, column) in plan.fields.iter().zip(columns.iter_mut()) {
            match (field, column) {
                (SelectField::Wildcard, _) => fields.extend(record.fields.iter().map(|(k, v)| (k.clone(), v.clone()))),
                (SelectField::Expr { name, .. }, Some(column)) => match column.next() {
                    Some(Ok(v)) => {
                        fields.insert(name.clone(), v);
                    }
                    Some(Err(e)) => failure = Some(format!("{name}: {e}")),
                    None => failure = Some(format!("{name}: missing result")),
                },
                (SelectField::Expr { .. }, None) => {}
            }
        }
        if let Some(e) = failure {
            outcome.failed(e);
            continue 'rows;
        }
        out.push(Record { fields, metadata: record.metadata, timestamp_ms: record.timestamp_ms });
        from.push(row);
    }
    outcome.output = out.len() as u64;
    Ok((out, from))
}
