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

use crate::batch::OpOutcome;
use crate::expr::{self, ColumnAnswer, Expr, Functions};
use crate::{SelectField, SelectPlan};

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

/// Whether a plan can run on columns: a rule without a window. (Windows keep
/// rows; the engine converts a columnar batch for them.)
pub fn runs_on_columns(plan: &SelectPlan) -> bool {
    plan.grouping.is_none()
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
            let narrow = narrow_records(&batch, &referenced([condition]));
            let verdicts = expr::eval(condition, expr::Rows::plain(&narrow), functions).await?;
            let keep: Vec<bool> = verdicts
                .into_iter()
                .map(|v| match v {
                    Ok(v) => matches!(v, Value::Bool(true)),
                    Err(e) => {
                        filter.failed(e);
                        false
                    }
                })
                .collect();
            match columns::keep_rows(batch, &keep) {
                Ok(kept) => kept,
                // Filtering arrays of the types a batch is read with cannot
                // fail; should it, the rows are lost as exceptions, not the rule.
                Err(e) => {
                    filter.failed(format!("WHERE: {e}"));
                    RecordBatch::new_empty(Arc::new(Schema::empty()))
                }
            }
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
    let mut exprs: Vec<&Expr> = Vec::new();
    for field in &plan.fields {
        match field {
            SelectField::Wildcard => return narrow_records(batch, &None),
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
    let names = referenced(exprs).map(|mut names| {
        names.extend(keep.iter().copied());
        names
    });
    narrow_records(batch, &names)
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
