//! Expressions, evaluated a batch at a time.
//!
//! Evaluation is columnar: each sub-expression yields one cell per row, so a
//! plugin function call becomes exactly one batch call per call site, however
//! many rows the batch holds. The plugin calls themselves are made by the
//! caller's [`Functions`]: this module does no I/O.

use std::future::Future;
use std::pin::Pin;

use oort_proto::{Record, Value};

use super::builtin::Builtin;

/// One row's result: a value, or why this row failed.
pub type Cell = Result<Value, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// An expression of the rule language.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A field of the input record; a missing field reads as null.
    Column(String),
    Literal(Value),
    Unary(UnOp, Box<Expr>),
    Binary(Box<Expr>, BinOp, Box<Expr>),
    /// A run of binary operators folded from the left: `a + b - c` is
    /// `Chain(a, [(Add, b), (Sub, c)])`, the same as `(a + b) - c`. Kept flat
    /// so that a long run costs no depth, in planning or in evaluation.
    Chain(Box<Expr>, Vec<(BinOp, Expr)>),
    /// `IS NULL` (false) or `IS NOT NULL` (true).
    IsNull(Box<Expr>, bool),
    Builtin(Builtin, Vec<Expr>),
    /// A plugin function at call site `site`.
    Call {
        function: String,
        site: usize,
        args: Vec<Expr>,
    },
}

impl Expr {
    /// The direct sub-expressions, in evaluation order.
    pub fn children(&self) -> Box<dyn Iterator<Item = &Expr> + '_> {
        match self {
            Expr::Column(_) | Expr::Literal(_) => Box::new(std::iter::empty()),
            Expr::Unary(_, e) | Expr::IsNull(e, _) => Box::new(std::iter::once(e.as_ref())),
            Expr::Binary(l, _, r) => Box::new([l.as_ref(), r.as_ref()].into_iter()),
            Expr::Chain(first, rest) => Box::new(std::iter::once(first.as_ref()).chain(rest.iter().map(|(_, e)| e))),
            Expr::Builtin(_, args) | Expr::Call { args, .. } => Box::new(args.iter()),
        }
    }
}

/// Calls plugin functions: one batch of argument rows per call.
pub trait Functions: Sync {
    /// A failure of the call as a whole (the plugin is gone, say), as opposed
    /// to a failed row.
    type Error: Send;

    /// Runs call site `site` over `rows`, returning one cell per row.
    fn call(&self, site: usize, rows: Vec<Vec<Value>>) -> impl Future<Output = Result<Vec<Cell>, Self::Error>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Evaluates `expr` for every record.
pub fn eval<'a, F: Functions>(
    expr: &'a Expr,
    records: &'a [Record],
    functions: &'a F,
) -> BoxFuture<'a, Result<Vec<Cell>, F::Error>> {
    Box::pin(async move {
        let n = records.len();
        Ok(match expr {
            Expr::Column(c) => records.iter().map(|r| Ok(r.fields.get(c).cloned().unwrap_or_default())).collect(),
            Expr::Literal(v) => vec![Ok(v.clone()); n],
            Expr::Unary(op, e) => {
                eval(e, records, functions).await?.into_iter().map(|c| c.and_then(|v| unary(*op, v))).collect()
            }
            Expr::IsNull(e, negated) => eval(e, records, functions)
                .await?
                .into_iter()
                .map(|c| c.map(|v| Value::Bool(matches!(v, Value::Null) != *negated)))
                .collect(),
            Expr::Binary(l, op, r) => {
                let left = eval(l, records, functions).await?;
                let right = eval(r, records, functions).await?;
                left.into_iter().zip(right).map(|(a, b)| binary(*op, a?, b?)).collect()
            }
            Expr::Chain(first, rest) => {
                let mut acc = eval(first, records, functions).await?;
                for (op, e) in rest {
                    let right = eval(e, records, functions).await?;
                    acc = acc.into_iter().zip(right).map(|(a, b)| binary(*op, a?, b?)).collect();
                }
                acc
            }
            Expr::Builtin(f, args) => {
                let rows = eval_args(args, records, functions).await?;
                rows.into_iter().map(|row| row.and_then(|args| f.apply(&args))).collect()
            }
            Expr::Call { site, args, .. } => {
                // Only rows whose arguments all evaluated reach the plugin; the
                // argument values move into the call rather than being copied.
                let mut ok_rows = Vec::with_capacity(n);
                let failed: Vec<Option<String>> = eval_args(args, records, functions)
                    .await?
                    .into_iter()
                    .map(|row| match row {
                        Ok(args) => {
                            ok_rows.push(args);
                            None
                        }
                        Err(e) => Some(e),
                    })
                    .collect();
                let mut results =
                    if ok_rows.is_empty() { Vec::new() } else { functions.call(*site, ok_rows).await? }.into_iter();
                failed
                    .into_iter()
                    .map(|f| match f {
                        None => results.next().unwrap_or_else(|| Err("the plugin returned too few results".into())),
                        Some(e) => Err(e),
                    })
                    .collect()
            }
        })
    })
}

/// Evaluates each argument, then regroups them per row.
async fn eval_args<F: Functions>(
    args: &[Expr],
    records: &[Record],
    functions: &F,
) -> Result<Vec<Result<Vec<Value>, String>>, F::Error> {
    let mut columns = Vec::with_capacity(args.len());
    for a in args {
        columns.push(eval(a, records, functions).await?.into_iter());
    }
    Ok((0..records.len())
        .map(|_| {
            columns.iter_mut().map(|c| c.next().unwrap_or(Ok(Value::Null))).collect::<Result<Vec<Value>, String>>()
        })
        .collect())
}

fn unary(op: UnOp, v: Value) -> Cell {
    match (op, v) {
        (_, Value::Null) => Ok(Value::Null),
        (UnOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
        (UnOp::Neg, Value::Int(i)) => i.checked_neg().map(Value::Int).ok_or_else(|| "integer overflow".into()),
        (UnOp::Neg, Value::Float(f)) => Ok(Value::Float(-f)),
        (op, v) => Err(format!("cannot apply {op:?} to a {}", v.type_name())),
    }
}

fn binary(op: BinOp, a: Value, b: Value) -> Cell {
    use BinOp::*;
    match op {
        And | Or => {
            let truth = |v: &Value| match v {
                Value::Bool(b) => Ok(*b),
                // SQL's unknown: null acts as false in a filter.
                Value::Null => Ok(false),
                other => Err(format!("{op:?} expects booleans, got {}", other.type_name())),
            };
            let (x, y) = (truth(&a)?, truth(&b)?);
            Ok(Value::Bool(if op == And { x && y } else { x || y }))
        }
        _ if matches!(a, Value::Null) || matches!(b, Value::Null) => {
            // Comparisons with null are false; arithmetic with null is null.
            Ok(if matches!(op, Eq | Ne | Lt | Le | Gt | Ge) { Value::Bool(false) } else { Value::Null })
        }
        Add | Sub | Mul | Div | Mod => arithmetic(op, a, b),
        Eq => Ok(Value::Bool(equal(&a, &b))),
        Ne => Ok(Value::Bool(!equal(&a, &b))),
        Lt | Le | Gt | Ge => {
            let ord = order(&a, &b)?;
            Ok(Value::Bool(match op {
                Lt => ord.is_lt(),
                Le => ord.is_le(),
                Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
    }
}

fn arithmetic(op: BinOp, a: Value, b: Value) -> Cell {
    match (&a, &b) {
        (Value::Int(x), Value::Int(y)) => {
            let (x, y) = (*x, *y);
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div if y == 0 => return Err("division by zero".into()),
                BinOp::Div => x.checked_div(y),
                BinOp::Mod if y == 0 => return Err("division by zero".into()),
                _ => x.checked_rem(y),
            };
            r.map(Value::Int).ok_or_else(|| "integer overflow".into())
        }
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => Ok(Value::Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                _ => x % y,
            })),
            _ => Err(format!("cannot compute {} {op:?} {}", a.type_name(), b.type_name())),
        },
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).ok_or_else(|| "cannot order NaN".into()),
            _ => Err(format!("cannot compare {} with {}", a.type_name(), b.type_name())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Doubles integers and records every batch it was asked for.
    struct Doubler(Mutex<Vec<(usize, usize)>>);

    impl Functions for Doubler {
        type Error = String;
        async fn call(&self, site: usize, rows: Vec<Vec<Value>>) -> Result<Vec<Cell>, String> {
            self.0.lock().unwrap().push((site, rows.len()));
            Ok(rows
                .into_iter()
                .map(|r| match r.first() {
                    Some(Value::Int(i)) => Ok(Value::Int(i * 2)),
                    _ => Err("not an int".to_string()),
                })
                .collect())
        }
    }

    fn records(values: &[Value]) -> Vec<Record> {
        values.iter().map(|v| Record::from_fields(BTreeMap::from([("x".to_string(), v.clone())]))).collect()
    }

    fn col(c: &str) -> Box<Expr> {
        Box::new(Expr::Column(c.into()))
    }

    fn lit(v: impl Into<Value>) -> Box<Expr> {
        Box::new(Expr::Literal(v.into()))
    }

    #[tokio::test]
    async fn operators_follow_sql_semantics() {
        let recs = records(&[Value::Int(3)]);
        let f = Doubler(Mutex::default());
        let cases: Vec<(Expr, Cell)> = vec![
            (Expr::Binary(col("x"), BinOp::Add, lit(2)), Ok(Value::Int(5))),
            (Expr::Binary(col("x"), BinOp::Div, lit(2.0)), Ok(Value::Float(1.5))),
            (Expr::Binary(col("x"), BinOp::Div, lit(0)), Err("division by zero".into())),
            (Expr::Binary(col("x"), BinOp::Eq, lit(3.0)), Ok(Value::Bool(true))),
            (Expr::Binary(col("x"), BinOp::Gt, lit("a")), Err("cannot compare int with string".into())),
            (Expr::Binary(col("missing"), BinOp::Eq, lit(1)), Ok(Value::Bool(false))),
            (Expr::Binary(col("missing"), BinOp::Add, lit(1)), Ok(Value::Null)),
            (Expr::IsNull(col("missing"), false), Ok(Value::Bool(true))),
            (Expr::Unary(UnOp::Not, lit(true)), Ok(Value::Bool(false))),
            (Expr::Binary(lit(true), BinOp::And, col("missing")), Ok(Value::Bool(false))),
            (Expr::Binary(lit(i64::MAX), BinOp::Add, lit(1)), Err("integer overflow".into())),
        ];
        for (e, want) in cases {
            assert_eq!(eval(&e, &recs, &f).await.unwrap(), vec![want], "{e:?}");
        }
    }

    #[tokio::test]
    async fn each_call_site_is_one_batch_and_failed_rows_skip_the_plugin() {
        let recs = records(&[Value::Int(1), Value::from("a"), Value::Int(3), Value::Int(0)]);
        let f = Doubler(Mutex::default());
        // double(double(10 / x)): row 4 divides by zero and never reaches the plugin.
        let inner =
            Expr::Call { function: "double".into(), site: 0, args: vec![Expr::Binary(lit(12), BinOp::Div, col("x"))] };
        let outer = Expr::Call { function: "double".into(), site: 1, args: vec![inner] };
        let out = eval(&outer, &recs, &f).await.unwrap();
        assert_eq!(out[0], Ok(Value::Int(48)));
        assert_eq!(out[1], Err("cannot compute int Div string".into()));
        assert_eq!(out[2], Ok(Value::Int(16)));
        assert_eq!(out[3], Err("division by zero".into()));
        assert_eq!(*f.0.lock().unwrap(), vec![(0, 2), (1, 2)]);
    }
}
