//! Running a rule without a window over a batch of Arrow columns, as a
//! source sent it: `WHERE` and the select list read only the columns they
//! name, a plain column is passed on as the array it arrived in, and a plugin
//! function whose arguments are plain columns gets those arrays as they are.
//!
//! Expressions other than these are evaluated by the row evaluator over
//! records holding only the columns they reference, so every expression has
//! the same meaning on columns as on rows. Columns have one difference: a
//! null cell and an absent field are the same (docs/protocol.md, "Columnar
//! sources and sinks").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use oort_proto::columns::arrow_array::{new_null_array, Array, RecordBatchOptions};
use oort_proto::columns::arrow_schema::{DataType, Field, Schema};
use oort_proto::columns::{self, ArrayRef, RecordBatch};
use oort_proto::{Record, Value};

use crate::batch::{OpOutcome, WindowBatch};
use crate::expr::{self, ColumnAnswer, Expr, Functions};
use crate::window::{Cells, KeyedColumns};
use crate::{Grouping, SelectField, SelectPlan};

/// What a rule on columns made of one batch.
#[derive(Debug)]
pub struct ColumnsOutcome {
    pub output: Projected,
    pub filter: OpOutcome,
    pub project: OpOutcome,
}

/// The output of a batch: columns, or records when an output field holds
/// values of more than one type (or lists and maps), which no Arrow column
/// carries.
#[derive(Debug)]
pub enum Projected {
    Columns(RecordBatch),
    Records(Vec<Record>),
}

impl Projected {
    pub fn len(&self) -> usize {
        match self {
            Projected::Columns(b) => b.num_rows(),
            Projected::Records(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a plan can run on columns: a rule without a window. (Windows take
/// their rows from columns when [`window_takes_columns`]; the others get
/// records the engine converts.)
pub fn runs_on_columns(plan: &SelectPlan) -> bool {
    plan.grouping.is_none()
}

/// Whether a windowed plan's batches go into its window as columns
/// ([`prepare_window_columns`]) on a stream with or without event time.
pub fn window_takes_columns(plan: &SelectPlan, event_time: bool) -> bool {
    plan.grouping.as_ref().is_some_and(|g| KeyedColumns::fits(g.window, g.each_row, event_time))
}

/// Runs one columnar batch of a windowed rule through `FILTER (WHERE …)` and
/// `WHERE`, and evaluates its group keys and aggregate arguments: a plain
/// column is taken as its array, any other expression is evaluated by the
/// row evaluator over records of the columns it reads. The counts are the
/// row path's ([`crate::prepare_window_rows`]).
pub async fn prepare_window_columns<F: Functions>(
    plan: &SelectPlan,
    grouping: &Grouping,
    batch: RecordBatch,
    functions: &F,
) -> Result<WindowBatch, F::Error> {
    let mut out = WindowBatch {
        filter: OpOutcome { input: batch.num_rows() as u64, ..OpOutcome::default() },
        ..WindowBatch::default()
    };
    // `FILTER (WHERE …)` decides which rows enter the window at all.
    let batch = match &grouping.filter {
        Some(condition) => {
            let entering = verdicts(condition, &batch, "", functions, &mut out.filter).await?;
            keep(batch, &entering, &mut out.filter)
        }
        None => batch,
    };
    let passes = match &plan.filter {
        Some(condition) => verdicts(condition, &batch, "WHERE: ", functions, &mut out.filter).await?,
        None => vec![true; batch.num_rows()],
    };
    let kept = keep(batch, &passes, &mut out.filter);
    let rows = match read_names(plan, &[]) {
        Some(names) => {
            let indices: Vec<usize> =
                (0..kept.num_columns()).filter(|i| names.contains(kept.schema().field(*i).name().as_str())).collect();
            kept.project(&indices).unwrap_or(kept)
        }
        None => kept,
    };
    let n = rows.num_rows();
    out.filter.output = n as u64;
    out.aggregate.input = n as u64;
    // Keys and arguments only for the rows `WHERE` kept: it may be what
    // guards them (`WHERE d != 0` before `sum(x / d)`).
    let evaluated: Vec<&Expr> = grouping
        .keys
        .iter()
        .chain(grouping.aggregates.iter().filter_map(|a| a.arg.as_ref()))
        .filter(|e| !is_column_of(e, &rows))
        .collect();
    let narrow = if evaluated.is_empty() { Vec::new() } else { narrow_records(&rows, &referenced(evaluated)) };
    // The first failure of each row: such rows are not aggregated.
    let mut failed: Vec<Option<String>> = vec![None; n];
    let mut keys = Vec::with_capacity(grouping.keys.len());
    for k in &grouping.keys {
        keys.push(cells_of(k, "GROUP BY", &rows, &narrow, functions, &mut failed).await?);
    }
    let mut args = Vec::with_capacity(grouping.aggregates.len());
    for a in &grouping.aggregates {
        args.push(match &a.arg {
            Some(e) => Some(cells_of(e, a.slot.func.name(), &rows, &narrow, functions, &mut failed).await?),
            // count(*) counts every row.
            None => None,
        });
    }
    let mut next = 0;
    let order = passes
        .iter()
        .map(|passed| {
            if !passed {
                return None;
            }
            let row = next;
            next += 1;
            match failed[row].take() {
                Some(e) => {
                    out.aggregate.failed(e);
                    None
                }
                None => Some(row),
            }
        })
        .collect::<Vec<_>>();
    out.aggregate.output = order.iter().flatten().count() as u64;
    out.columns = Some(KeyedColumns { rows, keys, args, order });
    Ok(out)
}

/// An expression's values over `rows`: the array of a plain column, or what
/// the row evaluator makes of `narrow` (a failed row null, its first failure
/// noted in `failed`).
async fn cells_of<F: Functions>(
    e: &Expr,
    what: &str,
    rows: &RecordBatch,
    narrow: &[Record],
    functions: &F,
    failed: &mut [Option<String>],
) -> Result<Cells, F::Error> {
    if let Expr::Column(c) = e {
        if let Some(array) = rows.column_by_name(c) {
            return Ok(Cells::Array(array.clone()));
        }
    }
    let cells = expr::eval(e, expr::Rows::plain(narrow), functions).await?;
    Ok(Cells::Values(values(cells, rows.num_rows(), &mut |row, e| {
        failed[row].get_or_insert_with(|| format!("{what}: {e}"));
    })))
}

/// A condition's verdict on every row; a row it fails on is `false`, and
/// counted as an exception of `outcome`.
async fn verdicts<F: Functions>(
    condition: &Expr,
    batch: &RecordBatch,
    what: &str,
    functions: &F,
    outcome: &mut OpOutcome,
) -> Result<Vec<bool>, F::Error> {
    let narrow = narrow_records(batch, &referenced([condition]));
    Ok(expr::eval(condition, expr::Rows::plain(&narrow), functions)
        .await?
        .into_iter()
        .map(|v| match v {
            Ok(v) => matches!(v, Value::Bool(true)),
            Err(e) => {
                outcome.failed(format!("{what}{e}"));
                false
            }
        })
        .collect())
}

/// The rows of `batch` marked in `rows`.
fn keep(batch: RecordBatch, rows: &[bool], outcome: &mut OpOutcome) -> RecordBatch {
    if rows.iter().all(|k| *k) {
        return batch;
    }
    columns::keep_rows(batch, rows).unwrap_or_else(|e| {
        // Filtering arrays of the types a batch is read with cannot fail;
        // should it, the rows are lost as exceptions, not the rule.
        outcome.failed(format!("WHERE: {e}"));
        RecordBatch::new_empty(Arc::new(Schema::empty()))
    })
}

fn is_column_of(e: &Expr, batch: &RecordBatch) -> bool {
    matches!(e, Expr::Column(c) if batch.column_by_name(c).is_some())
}

/// Runs one columnar batch through `WHERE` and the select list. Rows whose
/// evaluation fails are dropped and counted as exceptions of that operator,
/// as on rows.
pub async fn run_columns<F: Functions>(
    plan: &SelectPlan,
    batch: RecordBatch,
    functions: &F,
) -> Result<ColumnsOutcome, F::Error> {
    let mut filter = OpOutcome { input: batch.num_rows() as u64, ..OpOutcome::default() };
    let batch = match &plan.filter {
        None => batch,
        Some(condition) => {
            let passes = verdicts(condition, &batch, "", functions, &mut filter).await?;
            keep(batch, &passes, &mut filter)
        }
    };
    filter.output = batch.num_rows() as u64;
    let mut project = OpOutcome::default();
    let output = project_columns(plan, &batch, functions, &mut project).await?;
    Ok(ColumnsOutcome { output, filter, project })
}

/// One output field's values: an array, or cells the row evaluator made.
enum OutColumn {
    Array(ArrayRef),
    Values(Vec<Value>),
}

async fn project_columns<F: Functions>(
    plan: &SelectPlan,
    batch: &RecordBatch,
    functions: &F,
    outcome: &mut OpOutcome,
) -> Result<Projected, F::Error> {
    let n = batch.num_rows();
    outcome.input = n as u64;
    // The columns the row evaluator needs, decoded once for every field.
    let evaluated: Vec<&Expr> = plan
        .fields
        .iter()
        .filter_map(|f| match f {
            SelectField::Expr { expr, .. } if !direct(expr) => Some(expr),
            _ => None,
        })
        .collect();
    let narrow = if evaluated.is_empty() { Vec::new() } else { narrow_records(batch, &referenced(evaluated)) };
    // The first failure of each row: such rows are left out.
    let mut failed: Vec<Option<String>> = vec![None; n];
    // Later fields overwrite earlier ones of the same name, as on rows.
    let mut out: BTreeMap<String, OutColumn> = BTreeMap::new();
    for field in &plan.fields {
        let (name, expr) = match field {
            SelectField::Wildcard => {
                for (f, column) in batch.schema().fields().iter().zip(batch.columns()) {
                    out.insert(f.name().clone(), OutColumn::Array(column.clone()));
                }
                continue;
            }
            SelectField::Expr { expr, name } => (name, expr),
        };
        let mut fail = |row: usize, e: String| {
            failed[row].get_or_insert_with(|| format!("{name}: {e}"));
        };
        let column = match expr {
            Expr::Column(c) => {
                OutColumn::Array(batch.column_by_name(c).cloned().unwrap_or_else(|| new_null_array(&DataType::Null, n)))
            }
            Expr::Call { site, args, .. } if direct(expr) => {
                let arrays = args
                    .iter()
                    .map(|a| match a {
                        Expr::Column(c) => {
                            batch.column_by_name(c).cloned().unwrap_or_else(|| new_null_array(&DataType::Null, n))
                        }
                        // `direct` admits only literals that make a column.
                        Expr::Literal(v) => columns::column_of(std::iter::repeat_n(v, n), n)
                            .unwrap_or_else(|| new_null_array(&DataType::Null, n)),
                        _ => unreachable!("direct calls take plain columns and literals"),
                    })
                    .collect();
                match functions.call_columns(*site, arrays, n).await? {
                    ColumnAnswer::Column(array, errors) => {
                        for (row, e) in errors {
                            if row < n {
                                fail(row, e);
                            }
                        }
                        OutColumn::Array(array)
                    }
                    ColumnAnswer::Cells(cells) => OutColumn::Values(values(cells, n, &mut fail)),
                }
            }
            _ => {
                let cells = expr::eval(expr, expr::Rows::plain(&narrow), functions).await?;
                OutColumn::Values(values(cells, n, &mut fail))
            }
        };
        out.insert(name.clone(), column);
    }
    for e in failed.iter().flatten() {
        outcome.failed(e.clone());
    }
    let keep: Vec<bool> = failed.iter().map(Option::is_none).collect();
    let projected = assemble(out, n, &keep);
    outcome.output = projected.len() as u64;
    Ok(projected)
}

/// The cells as values, a failed cell null and its row marked.
fn values(cells: Vec<expr::Cell>, n: usize, fail: &mut impl FnMut(usize, String)) -> Vec<Value> {
    let mut values: Vec<Value> = cells
        .into_iter()
        .enumerate()
        .map(|(row, cell)| {
            cell.unwrap_or_else(|e| {
                fail(row, e);
                Value::Null
            })
        })
        .collect();
    for row in values.len()..n {
        fail(row, "missing result".into());
    }
    values.resize(n, Value::Null);
    values
}

/// The output batch of the rows to keep: columns when every field has an
/// Arrow type, records otherwise.
fn assemble(out: BTreeMap<String, OutColumn>, n: usize, keep: &[bool]) -> Projected {
    let mut arrays = Vec::with_capacity(out.len());
    for column in out.values() {
        arrays.push(match column {
            OutColumn::Array(a) => Some(a.clone()),
            OutColumn::Values(v) => columns::column_of(v.iter(), v.len()),
        });
    }
    if arrays.iter().all(Option::is_some) {
        let fields: Vec<Field> = out
            .keys()
            .zip(&arrays)
            .map(|(name, a)| {
                Field::new(name.as_str(), a.as_ref().map_or(DataType::Null, |a| a.data_type().clone()), true)
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays.into_iter().flatten().collect(),
            &options,
        );
        if let Ok(kept) =
            batch.map_err(|e| e.to_string()).and_then(|b| columns::keep_rows(b, keep).map_err(|e| e.to_string()))
        {
            return Projected::Columns(kept);
        }
    }
    // A field no Arrow column carries: every output field as values.
    let mut records: Vec<Record> = vec![Record::default(); n];
    for (name, column) in out {
        let values = match column {
            OutColumn::Values(v) => v,
            OutColumn::Array(a) => oort_proto::columns::values_of(a.as_ref()).unwrap_or_else(|_| vec![Value::Null; n]),
        };
        for (record, value) in records.iter_mut().zip(values) {
            record.fields.insert(name.clone(), value);
        }
    }
    Projected::Records(records.into_iter().zip(keep).filter_map(|(r, k)| k.then_some(r)).collect())
}

/// The records a rule that runs on rows (a window) needs of a columnar
/// batch: only the columns its statement reads, plus `keep` (the stream's
/// event-time field), or every column when it reads whole rows (`*`,
/// `collect(*)`). A window holds its rows, so the columns it never reads
/// are neither decoded nor kept.
pub fn records_for(plan: &SelectPlan, batch: &RecordBatch, keep: &[&str]) -> Vec<Record> {
    narrow_records(batch, &read_names(plan, keep))
}

/// The columns a statement reads, plus `keep`; `None` when it reads whole
/// rows.
fn read_names<'a>(plan: &'a SelectPlan, keep: &[&'a str]) -> Option<BTreeSet<&'a str>> {
    let mut exprs: Vec<&Expr> = Vec::new();
    for field in &plan.fields {
        match field {
            SelectField::Wildcard => return None,
            SelectField::Expr { expr, .. } => exprs.push(expr),
        }
    }
    exprs.extend(&plan.filter);
    if let Some(g) = &plan.grouping {
        exprs.extend(&g.keys);
        exprs.extend(g.aggregates.iter().filter_map(|a| a.arg.as_ref()));
        exprs.extend(g.having.iter().chain(&g.filter).chain(&g.trigger));
        if let Some((begin, end)) = &g.state {
            exprs.extend([begin, end]);
        }
    }
    exprs.extend(plan.order_by.iter().filter_map(|k| match &k.by {
        crate::SortBy::Expr(e) => Some(e),
        crate::SortBy::Field(_) => None,
    }));
    referenced(exprs).map(|mut names| {
        names.extend(keep.iter().copied());
        names
    })
}

/// Whether a select expression is served from the arrays themselves: a plain
/// column, or a plugin call whose arguments are all plain columns or scalar
/// literals (a literal becomes a column of that one value).
fn direct(expr: &Expr) -> bool {
    match expr {
        Expr::Column(_) => true,
        Expr::Call { args, .. } => args.iter().all(|a| match a {
            Expr::Column(_) => true,
            Expr::Literal(v) => !matches!(v, Value::List(_) | Value::Map(_)),
            _ => false,
        }),
        _ => false,
    }
}

/// The columns some expressions read; `None` when one reads the whole row.
fn referenced<'a>(exprs: impl IntoIterator<Item = &'a Expr>) -> Option<BTreeSet<&'a str>> {
    fn walk<'a>(e: &'a Expr, names: &mut BTreeSet<&'a str>) -> bool {
        match e {
            Expr::Column(c) => {
                names.insert(c);
                true
            }
            Expr::Row => false,
            _ => e.children().all(|c| walk(c, names)),
        }
    }
    let mut names = BTreeSet::new();
    exprs.into_iter().all(|e| walk(e, &mut names)).then_some(names)
}

/// Records of the named columns only (every column for `None`), a null cell
/// an absent field. A column whose values cannot be read reads as absent;
/// the sources' batches are checked on arrival, so that does not happen.
fn narrow_records(batch: &RecordBatch, names: &Option<BTreeSet<&str>>) -> Vec<Record> {
    let mut records = vec![Record::default(); batch.num_rows()];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if names.as_ref().is_some_and(|n| !n.contains(field.name().as_str())) {
            continue;
        }
        let Ok(values) = columns::values_of(column.as_ref()) else { continue };
        for (record, value) in records.iter_mut().zip(values) {
            if !matches!(value, Value::Null) {
                record.fields.insert(field.name().clone(), value);
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    //! A rule gives the same output on columns as on rows, up to the one
    //! difference columns have (a null field is absent).
    use super::*;
    use crate::parse_select;

    /// A function plugin stand-in for the pure crate: `twice(x)` doubles an
    /// int and fails on anything else, over rows or over a column.
    struct Twice;

    impl Functions for Twice {
        type Error = ();
        async fn call(&self, _site: usize, rows: Vec<Vec<Value>>) -> Result<Vec<expr::Cell>, ()> {
            Ok(rows
                .into_iter()
                .map(|r| match r.first() {
                    Some(Value::Int(i)) => Ok(Value::Int(i * 2)),
                    other => Err(format!("twice of {other:?}")),
                })
                .collect())
        }
    }

    fn records() -> Vec<Record> {
        (0..50)
            .map(|i| {
                let mut fields = BTreeMap::from([
                    ("a".to_string(), Value::Int(i)),
                    ("s".to_string(), Value::String(format!("k{}", i % 7))),
                    ("f".to_string(), Value::Float(i as f64 / 4.0)),
                ]);
                if i % 5 == 0 {
                    fields.remove("f");
                }
                if i % 9 == 0 {
                    fields.insert("a".into(), Value::Null);
                }
                Record { fields, ..Record::default() }
            })
            .collect()
    }

    /// The row path's output with null fields dropped, as columns carry them.
    fn without_nulls(mut records: Vec<Record>) -> Vec<Record> {
        for r in &mut records {
            r.fields.retain(|_, v| !matches!(v, Value::Null));
        }
        records
    }

    #[tokio::test]
    async fn rules_give_the_same_records_on_columns_as_on_rows() {
        let statements = [
            "SELECT * FROM s",
            "SELECT a, s FROM s WHERE a > 10 AND s != 'k3'",
            "SELECT a * 2 + 1 AS b, upper(s) AS u, f FROM s WHERE f IS NOT NULL",
            "SELECT *, twice(a) AS t FROM s WHERE a BETWEEN 3 AND 40",
            "SELECT twice(a) AS t, twice(3) AS six, twice('x') AS bad FROM s",
            "SELECT twice(a) AS t, CASE WHEN a > 20 THEN 'big' ELSE s END AS c FROM s",
            "SELECT a / (a - 10) AS q FROM s",
            "SELECT missing, a AS s FROM s WHERE s LIKE 'k1%' OR a IN (1, 2, 3)",
            // A field of two types: no column carries it, so records come out.
            "SELECT CASE WHEN a > 20 THEN a ELSE s END AS mixed FROM s",
        ];
        let input = records();
        let batch = columns::records_batch(&input).expect("one type per field");
        for sql in statements {
            let plan = parse_select(sql).unwrap();
            let rows = crate::run_batch(&plan, input.clone(), &Twice).await.unwrap();
            let cols = run_columns(&plan, batch.clone(), &Twice).await.unwrap();
            let got = match &cols.output {
                Projected::Columns(b) => columns::records_of(b).unwrap(),
                Projected::Records(r) => r.clone(),
            };
            let want = match cols.output {
                Projected::Columns(_) => without_nulls(rows.records),
                Projected::Records(_) => rows.records,
            };
            assert_eq!(got, want, "{sql}");
            assert_eq!(cols.filter, rows.filter, "{sql}: WHERE's counts");
            assert_eq!(cols.project, rows.project, "{sql}: the projection's counts");
        }
    }

    #[tokio::test]
    async fn a_window_gets_records_of_the_columns_it_reads() {
        let batch = columns::records_batch(&records()).unwrap();
        let plan = parse_select("SELECT s, count(*) AS c, avg(f) AS m FROM s GROUP BY s, COUNTWINDOW(10)").unwrap();
        let narrow = records_for(&plan, &batch, &["ts"]);
        assert_eq!(narrow.len(), 50);
        let fields: BTreeSet<&str> = narrow.iter().flat_map(|r| r.fields.keys().map(String::as_str)).collect();
        assert_eq!(fields, BTreeSet::from(["f", "s"]), "a is never read");
        let star = parse_select("SELECT *, count(*) AS c FROM s GROUP BY COUNTWINDOW(10)").unwrap();
        assert_eq!(records_for(&star, &batch, &[]), columns::records_of(&batch).unwrap(), "* reads every column");
        let having = parse_select("SELECT count(*) AS c FROM s GROUP BY COUNTWINDOW(10) HAVING max(a) > 3").unwrap();
        assert!(records_for(&having, &batch, &[])[1].fields.contains_key("a"), "HAVING's columns are kept");
    }

    /// What a window made of `input` cut into batches of 17, fed as rows
    /// (`columns` false) or as columns: its output records, the errors of
    /// the rows it left out, and the counts of `WHERE` and the aggregation.
    async fn through_window(sql: &str, input: &[Record], columns: bool) -> (Vec<Record>, Vec<String>, [OpOutcome; 2]) {
        let plan = parse_select(sql).unwrap();
        let grouping = plan.grouping.clone().expect("a windowed rule");
        assert!(window_takes_columns(&plan, false), "{sql}");
        let mut window = crate::window::WindowState::of(&grouping);
        let (mut groups, mut errors) = (Vec::new(), Vec::new());
        let mut counts = [OpOutcome::default(), OpOutcome::default()];
        for (i, chunk) in input.chunks(17).enumerate() {
            let batch = columns::records_batch(chunk).expect("one type per field");
            let now = 1_000 + i as i64;
            let prepared = if columns {
                prepare_window_columns(&plan, &grouping, batch, &Twice).await.unwrap()
            } else {
                let records = records_for(&plan, &batch, &[]);
                crate::prepare_window_rows(&plan, &grouping, records, &Twice).await.unwrap()
            };
            for (total, part) in counts.iter_mut().zip([&prepared.filter, &prepared.aggregate]) {
                total.input += part.input;
                total.output += part.output;
                total.exceptions += part.exceptions;
                total.last_exception = part.last_exception.clone().or(total.last_exception.take());
            }
            let (g, e) = match &prepared.columns {
                Some(c) => window.add_columns(c, now),
                None => window.add(prepared.rows, now),
            };
            groups.extend(g);
            errors.extend(e);
        }
        let (g, e) = window.due(1_000_000);
        groups.extend(g);
        errors.extend(e);
        let mut projected = OpOutcome::default();
        let out = crate::project_groups(&plan, groups, &Twice, &mut projected).await.unwrap();
        (out, errors, counts)
    }

    #[tokio::test]
    async fn windows_give_the_same_results_from_columns_as_from_rows() {
        let statements = [
            "SELECT s, count(*) AS c, avg(f) AS m FROM s GROUP BY s, TUMBLINGWINDOW(ss, 10)",
            "SELECT s, sum(a) AS t, window_end() AS e FROM s WHERE a > 5 GROUP BY s, HOPPINGWINDOW(ss, 10, 5)",
            // Rows WHERE drops still count in a count window.
            "SELECT count(*) AS c, max(a) AS m, s FROM s WHERE a % 3 != 0 GROUP BY COUNTWINDOW(7)",
            // twice(null) fails: those rows are exceptions, counted, not aggregated.
            "SELECT a % 4 AS k, sum(twice(a)) AS t FROM s GROUP BY a % 4, COUNTWINDOW(10, 5)",
            "SELECT s, collect(a) AS l FROM s GROUP BY s, TUMBLINGWINDOW(ss, 10) FILTER (WHERE a < 30)",
            // Summing a string fails for that row.
            "SELECT s, sum(CASE WHEN a > 40 THEN s ELSE a END) AS t, count(*) AS c FROM s GROUP BY s, TUMBLINGWINDOW(ss, 10)",
            // Float and null keys, a key column the batch does not have.
            "SELECT f, count(*) AS c FROM s GROUP BY f, missing, COUNTWINDOW(5)",
            "SELECT * , count(*) AS c FROM s GROUP BY s, TUMBLINGWINDOW(ss, 10) HAVING count(*) > 6",
        ];
        let input = records();
        for sql in statements {
            let (rows, row_errors, row_counts) = through_window(sql, &input, false).await;
            let (cols, col_errors, col_counts) = through_window(sql, &input, true).await;
            assert!(!rows.is_empty(), "{sql}: the window emitted nothing");
            assert_eq!(cols, rows, "{sql}");
            assert_eq!(col_errors, row_errors, "{sql}: the rows left out");
            assert_eq!(col_counts, row_counts, "{sql}: WHERE's and the aggregation's counts");
        }
    }

    #[test]
    fn a_group_key_is_the_same_text_as_before() {
        // Checkpoints hold groups by this text: it must not change.
        let keys = [
            vec![Value::Int(-3), Value::String("a\"b".into()), Value::Null],
            vec![Value::Float(1.5), Value::Bool(true), Value::Uint(u64::MAX)],
            vec![Value::String("é\n".into()), Value::List(vec![Value::Int(1)])],
            vec![],
        ];
        for key in keys {
            let old = Value::List(key.clone()).to_json().to_string();
            assert_eq!(crate::window::key_text_for_tests(&key), old);
        }
    }

    #[tokio::test]
    async fn plain_columns_and_direct_calls_pass_arrays_through() {
        let batch = columns::records_batch(&records()).unwrap();
        let plan = parse_select("SELECT a, twice(a) AS t FROM s").unwrap();
        let out = run_columns(&plan, batch.clone(), &Twice).await.unwrap();
        let Projected::Columns(out) = out.output else { panic!("columns expected") };
        // Rows whose call failed (null a) are left out; the rest keep a's array.
        assert_eq!(out.num_rows(), 50 - 6);
        let a = out.column_by_name("a").unwrap();
        assert_eq!(a.data_type(), &DataType::Int64);
        let plan = parse_select("SELECT * FROM s").unwrap();
        let Projected::Columns(all) = run_columns(&plan, batch.clone(), &Twice).await.unwrap().output else {
            panic!("columns expected")
        };
        for name in ["a", "f", "s"] {
            assert!(
                Arc::ptr_eq(all.column_by_name(name).unwrap(), batch.column_by_name(name).unwrap()),
                "{name} copied"
            );
        }
    }
}
