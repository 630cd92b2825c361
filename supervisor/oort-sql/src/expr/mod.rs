//! Expressions, evaluated a batch at a time.
//!
//! Evaluation is columnar: each sub-expression yields one cell per row, so a
//! plugin function call becomes exactly one batch call per call site, however
//! many rows the batch holds. The plugin calls themselves are made by the
//! caller's [`Functions`]: this module does no I/O.

use std::future::Future;
use std::pin::Pin;

use oort_proto::columns::ArrayRef;
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
    /// `&`, `|`, `^` on integers.
    BitAnd,
    BitOr,
    BitXor,
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
    /// `a->b`: field `b` of the map `a`; null when `a` is not a map or has
    /// no such field (eKuiper's JSON path expressions).
    Field(Box<Expr>, String),
    /// `a[i]`: element `i` of the list `a`, counting from the end when
    /// negative; null when out of range or when `a` is not a list.
    Index(Box<Expr>, Box<Expr>),
    /// `a[from:to]`: the elements from `from` up to, not including, `to`
    /// (either may be left out; negative counts from the end).
    Slice(Box<Expr>, Option<Box<Expr>>, Option<Box<Expr>>),
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`. A branch is evaluated
    /// only for the rows that reach it, so a plugin call inside one is made
    /// for those rows alone.
    Case {
        operand: Option<Box<Expr>>,
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// `x [NOT] IN (a, b, …)` (true: NOT).
    In(Box<Expr>, Vec<Expr>, bool),
    /// `x [NOT] BETWEEN low AND high` (true: NOT), bounds included.
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    /// `x [NOT] LIKE pattern` (true: NOT): `%` any run, `_` one character,
    /// `\` escapes the next one.
    Like(Box<Expr>, Box<Expr>, bool),
    /// `meta(key)`: one metadata entry of the record (the MQTT topic, say);
    /// `meta(*)` (None): all of them as a map.
    Meta(Option<String>),
    /// Aggregate number `i` of a grouped rule, read from the group.
    Aggregate(usize),
    /// `window_start()` and `window_end()`: the bounds of the group's window,
    /// in milliseconds since the epoch.
    WindowStart,
    WindowEnd,
    /// The whole row as a map: `collect(*)` and `deduplicate` keep rows.
    Row,
    /// A list of values, one per expression (the planner's, not eKuiper's
    /// syntax: `deduplicate` reads its key and its row as one argument).
    List(Vec<Expr>),
}

/// What an expression is evaluated over: a batch of records, and for a
/// grouped rule's output, each row's group (aggregates and window bounds).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub records: &'a [Record],
    pub groups: Option<&'a [GroupValues]>,
}

impl<'a> Rows<'a> {
    /// Plain records, not grouped.
    pub fn plain(records: &'a [Record]) -> Rows<'a> {
        Rows { records, groups: None }
    }
}

/// One group's values: its aggregates and its window's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupValues {
    pub aggregates: Vec<Value>,
    pub window_start: i64,
    pub window_end: i64,
}

impl Expr {
    /// The direct sub-expressions, in evaluation order.
    pub fn children(&self) -> Box<dyn Iterator<Item = &Expr> + '_> {
        match self {
            Expr::Column(_)
            | Expr::Literal(_)
            | Expr::Meta(_)
            | Expr::Aggregate(_)
            | Expr::WindowStart
            | Expr::WindowEnd
            | Expr::Row => Box::new(std::iter::empty()),
            Expr::Unary(_, e) | Expr::IsNull(e, _) | Expr::Field(e, _) => Box::new(std::iter::once(e.as_ref())),
            Expr::Binary(l, _, r) | Expr::Index(l, r) | Expr::Like(l, r, _) => {
                Box::new([l.as_ref(), r.as_ref()].into_iter())
            }
            Expr::Slice(e, from, to) => {
                Box::new(std::iter::once(e.as_ref()).chain(from.iter().chain(to.iter()).map(|b| b.as_ref())))
            }
            Expr::Case { operand, branches, otherwise } => Box::new(
                operand
                    .iter()
                    .map(|b| b.as_ref())
                    .chain(branches.iter().flat_map(|(w, t)| [w, t]))
                    .chain(otherwise.iter().map(|b| b.as_ref())),
            ),
            Expr::In(e, list, _) => Box::new(std::iter::once(e.as_ref()).chain(list.iter())),
            Expr::Between(e, low, high, _) => Box::new([e.as_ref(), low.as_ref(), high.as_ref()].into_iter()),
            Expr::Chain(first, rest) => Box::new(std::iter::once(first.as_ref()).chain(rest.iter().map(|(_, e)| e))),
            Expr::Builtin(_, args) | Expr::Call { args, .. } | Expr::List(args) => Box::new(args.iter()),
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

    /// Runs call site `site` over argument columns of `rows` rows each, as a
    /// rule on columns has them. The default decodes them into rows for
    /// [`Functions::call`]; the engine hands them to the plugin as they are.
    fn call_columns(
        &self,
        site: usize,
        args: Vec<ArrayRef>,
        rows: usize,
    ) -> impl Future<Output = Result<ColumnAnswer, Self::Error>> + Send {
        async move {
            let mut values = vec![Vec::with_capacity(args.len()); rows];
            for column in &args {
                match oort_proto::columns::values_of(column.as_ref()) {
                    Ok(column) => values.iter_mut().zip(column).for_each(|(row, v)| row.push(v)),
                    Err(e) => return Ok(ColumnAnswer::Cells(vec![Err(e.to_string()); rows])),
                }
            }
            self.call(site, values).await.map(ColumnAnswer::Cells)
        }
    }
}

/// A plugin function's answer to a batch of argument columns.
#[derive(Debug)]
pub enum ColumnAnswer {
    /// One result column, with the rows that failed and why (their cells
    /// are null in the column).
    Column(ArrayRef, Vec<(usize, String)>),
    /// One cell per row, when the plugin answered in rows.
    Cells(Vec<Cell>),
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Evaluates `expr` for every record.
pub fn eval<'a, F: Functions>(
    expr: &'a Expr,
    rows: Rows<'a>,
    functions: &'a F,
) -> BoxFuture<'a, Result<Vec<Cell>, F::Error>> {
    Box::pin(async move {
        let records = rows.records;
        let n = records.len();
        Ok(match expr {
            Expr::Column(c) => records.iter().map(|r| Ok(r.fields.get(c).cloned().unwrap_or_default())).collect(),
            Expr::Literal(v) => vec![Ok(v.clone()); n],
            Expr::Unary(op, e) => {
                eval(e, rows, functions).await?.into_iter().map(|c| c.and_then(|v| unary(*op, v))).collect()
            }
            Expr::IsNull(e, negated) => eval(e, rows, functions)
                .await?
                .into_iter()
                .map(|c| c.map(|v| Value::Bool(matches!(v, Value::Null) != *negated)))
                .collect(),
            Expr::Binary(l, op, r) => {
                let left = eval(l, rows, functions).await?;
                let right = eval(r, rows, functions).await?;
                left.into_iter().zip(right).map(|(a, b)| binary(*op, a?, b?)).collect()
            }
            Expr::Chain(first, rest) => {
                let mut acc = eval(first, rows, functions).await?;
                for (op, e) in rest {
                    let right = eval(e, rows, functions).await?;
                    acc = acc.into_iter().zip(right).map(|(a, b)| binary(*op, a?, b?)).collect();
                }
                acc
            }
            Expr::Builtin(f, args) => {
                let rows = eval_args(args, rows, functions).await?;
                rows.into_iter().map(|row| row.and_then(|args| f.apply(&args))).collect()
            }
            Expr::Call { site, args, .. } => {
                // Only rows whose arguments all evaluated reach the plugin; the
                // argument values move into the call rather than being copied.
                let mut ok_rows = Vec::with_capacity(n);
                let failed: Vec<Option<String>> = eval_args(args, rows, functions)
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
            Expr::Field(e, name) => eval(e, rows, functions)
                .await?
                .into_iter()
                .map(|c| {
                    c.map(|v| match v {
                        Value::Map(mut m) => m.remove(name).unwrap_or_default(),
                        _ => Value::Null,
                    })
                })
                .collect(),
            Expr::Index(e, i) => {
                let lists = eval(e, rows, functions).await?;
                let indexes = eval(i, rows, functions).await?;
                lists.into_iter().zip(indexes).map(|(l, i)| index(l?, i?)).collect()
            }
            Expr::Slice(e, from, to) => {
                let lists = eval(e, rows, functions).await?;
                let bound = |b: &'a Option<Box<Expr>>| async move {
                    match b {
                        Some(b) => eval(b, rows, functions).await.map(Some),
                        None => Ok(None),
                    }
                };
                let froms = bound(from).await?;
                let tos = bound(to).await?;
                let at = |cells: &Option<Vec<Cell>>, row: usize| match cells {
                    Some(c) => c[row].clone().map(Some),
                    None => Ok(None),
                };
                lists.into_iter().enumerate().map(|(row, l)| slice(l?, at(&froms, row)?, at(&tos, row)?)).collect()
            }
            Expr::Case { operand, branches, otherwise } => {
                case(operand.as_deref(), branches, otherwise.as_deref(), rows, functions).await?
            }
            Expr::In(e, list, negated) => {
                let values = eval(e, rows, functions).await?;
                let mut acc: Vec<Result<bool, String>> = vec![Ok(false); values.len()];
                for item in list {
                    let items = eval(item, rows, functions).await?;
                    for ((a, v), it) in acc.iter_mut().zip(&values).zip(items) {
                        if let (Ok(found), Ok(v)) = (a.as_mut(), v) {
                            match it {
                                Ok(it) => *found |= !matches!(v, Value::Null) && equal(v, &it),
                                Err(e) => *a = Err(e),
                            }
                        }
                    }
                }
                acc.into_iter()
                    .zip(values)
                    .map(|(a, v)| match (a, v) {
                        // Like a comparison: null is in nothing and not in nothing either.
                        (Ok(_), Ok(Value::Null)) => Ok(Value::Bool(false)),
                        (Ok(found), Ok(_)) => Ok(Value::Bool(found != *negated)),
                        (Err(e), _) | (_, Err(e)) => Err(e),
                    })
                    .collect()
            }
            Expr::Between(e, low, high, negated) => {
                let values = eval(e, rows, functions).await?;
                let lows = eval(low, rows, functions).await?;
                let highs = eval(high, rows, functions).await?;
                values
                    .into_iter()
                    .zip(lows)
                    .zip(highs)
                    .map(|((v, l), h)| {
                        let (v, l, h) = (v?, l?, h?);
                        if [&v, &l, &h].iter().any(|x| matches!(x, Value::Null)) {
                            return Ok(Value::Bool(false));
                        }
                        let inside = order(&l, &v)?.is_le() && order(&v, &h)?.is_le();
                        Ok(Value::Bool(inside != *negated))
                    })
                    .collect()
            }
            Expr::Like(e, pattern, negated) => {
                let values = eval(e, rows, functions).await?;
                let patterns = eval(pattern, rows, functions).await?;
                values
                    .into_iter()
                    .zip(patterns)
                    .map(|(v, p)| match (v?, p?) {
                        (Value::Null, _) | (_, Value::Null) => Ok(Value::Bool(false)),
                        (Value::String(s), Value::String(p)) => Ok(Value::Bool(like(&s, &p) != *negated)),
                        (v, p) => Err(format!("LIKE expects strings, got {} LIKE {}", v.type_name(), p.type_name())),
                    })
                    .collect()
            }
            Expr::Aggregate(_) | Expr::WindowStart | Expr::WindowEnd => match rows.groups {
                Some(groups) => groups
                    .iter()
                    .map(|g| {
                        Ok(match expr {
                            Expr::Aggregate(i) => g.aggregates.get(*i).cloned().unwrap_or_default(),
                            Expr::WindowStart => Value::Int(g.window_start),
                            _ => Value::Int(g.window_end),
                        })
                    })
                    .collect(),
                None => vec![Err("aggregates and window bounds exist only in a window's output".into()); n],
            },
            Expr::Row => records.iter().map(|r| Ok(Value::Map(r.fields.clone()))).collect(),
            Expr::List(items) => {
                let mut columns = Vec::with_capacity(items.len());
                for item in items {
                    columns.push(eval(item, rows, functions).await?.into_iter());
                }
                (0..n)
                    .map(|_| {
                        columns
                            .iter_mut()
                            .map(|c| c.next().unwrap_or(Ok(Value::Null)))
                            .collect::<Result<Vec<_>, _>>()
                            .map(Value::List)
                    })
                    .collect()
            }
            Expr::Meta(key) => records
                .iter()
                .map(|r| {
                    Ok(match key {
                        Some(k) => r.metadata.get(k).cloned().unwrap_or_default(),
                        None => Value::Map(r.metadata.clone()),
                    })
                })
                .collect(),
        })
    })
}

/// Evaluates `expr` for the rows at `at` only.
async fn eval_rows<F: Functions>(
    expr: &Expr,
    rows: Rows<'_>,
    at: &[usize],
    functions: &F,
) -> Result<Vec<Cell>, F::Error> {
    if at.len() == rows.records.len() {
        return eval(expr, rows, functions).await;
    }
    if at.is_empty() {
        return Ok(Vec::new());
    }
    let records: Vec<Record> = at.iter().map(|&r| rows.records[r].clone()).collect();
    let groups: Vec<GroupValues> = match rows.groups {
        Some(g) => at.iter().map(|&r| g[r].clone()).collect(),
        None => Vec::new(),
    };
    let subset = Rows { records: &records, groups: rows.groups.map(|_| groups.as_slice()) };
    eval(expr, subset, functions).await
}

/// `CASE`: each `WHEN` is evaluated for the rows no earlier branch took, each
/// `THEN` for the rows its `WHEN` took; rows no branch takes get `ELSE` (or
/// null). A simple `CASE x WHEN v` takes a row when `x = v`.
async fn case<F: Functions>(
    operand: Option<&Expr>,
    branches: &[(Expr, Expr)],
    otherwise: Option<&Expr>,
    rows: Rows<'_>,
    functions: &F,
) -> Result<Vec<Cell>, F::Error> {
    let n = rows.records.len();
    let mut out: Vec<Option<Cell>> = vec![None; n];
    let operands = match operand {
        Some(o) => Some(eval(o, rows, functions).await?),
        None => None,
    };
    let mut pending: Vec<usize> = (0..n).collect();
    if let Some(ops) = &operands {
        pending.retain(|&row| match &ops[row] {
            Ok(_) => true,
            Err(e) => {
                out[row] = Some(Err(e.clone()));
                false
            }
        });
    }
    for (when, then) in branches {
        if pending.is_empty() {
            break;
        }
        let conditions = eval_rows(when, rows, &pending, functions).await?;
        let (mut taken, mut rest) = (Vec::new(), Vec::new());
        for (&row, condition) in pending.iter().zip(conditions) {
            let hit = match (condition, &operands) {
                (Err(e), _) => {
                    out[row] = Some(Err(e));
                    continue;
                }
                (Ok(v), Some(ops)) => match &ops[row] {
                    Ok(o) => !matches!(o, Value::Null) && equal(o, &v),
                    Err(_) => false,
                },
                (Ok(v), None) => v == Value::Bool(true),
            };
            if hit {
                taken.push(row);
            } else {
                rest.push(row);
            }
        }
        for (&row, cell) in taken.iter().zip(eval_rows(then, rows, &taken, functions).await?) {
            out[row] = Some(cell);
        }
        pending = rest;
    }
    match otherwise {
        Some(e) => {
            for (&row, cell) in pending.iter().zip(eval_rows(e, rows, &pending, functions).await?) {
                out[row] = Some(cell);
            }
        }
        None => pending.iter().for_each(|&row| out[row] = Some(Ok(Value::Null))),
    }
    Ok(out.into_iter().map(|c| c.unwrap_or(Ok(Value::Null))).collect())
}

/// A list index that may count from the end.
fn position(len: usize, i: i64) -> Option<usize> {
    let len = len as i64;
    let at = if i < 0 { len + i } else { i };
    (0..len).contains(&at).then_some(at as usize)
}

fn index(list: Value, i: Value) -> Cell {
    match (list, i) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::List(mut l), i) => {
            let i = i.as_i64().ok_or_else(|| format!("an index must be an integer, got {}", i.type_name()))?;
            Ok(position(l.len(), i).map(|at| l.swap_remove(at)).unwrap_or_default())
        }
        (Value::Map(mut m), Value::String(k)) => Ok(m.remove(&k).unwrap_or_default()),
        _ => Ok(Value::Null),
    }
}

fn slice(list: Value, from: Option<Value>, to: Option<Value>) -> Cell {
    let Value::List(l) = list else {
        return Ok(Value::Null);
    };
    let len = l.len() as i64;
    let bound = |b: Option<Value>, default: i64| -> Result<i64, String> {
        match b {
            None | Some(Value::Null) => Ok(default),
            Some(v) => {
                let i = v.as_i64().ok_or_else(|| format!("a slice bound must be an integer, got {}", v.type_name()))?;
                Ok((if i < 0 { len + i } else { i }).clamp(0, len))
            }
        }
    };
    let (from, to) = (bound(from, 0)?, bound(to, len)?);
    Ok(Value::List(if from < to { l[from as usize..to as usize].to_vec() } else { Vec::new() }))
}

/// SQL `LIKE` without recursion: `%` matches any run, `_` one character,
/// `\` takes the next character literally.
pub(crate) fn like(text: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '%' => Token::Any,
            '_' => Token::One,
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy match with backtracking to the last `%` (linear for most patterns).
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Token::One) => {
                t += 1;
                p += 1;
            }
            Some(Token::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|t| *t == Token::Any)
}

/// Evaluates each argument, then regroups them per row.
async fn eval_args<F: Functions>(
    args: &[Expr],
    rows: Rows<'_>,
    functions: &F,
) -> Result<Vec<Result<Vec<Value>, String>>, F::Error> {
    let mut columns = Vec::with_capacity(args.len());
    for a in args {
        columns.push(eval(a, rows, functions).await?.into_iter());
    }
    Ok((0..rows.records.len())
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
        (UnOp::Neg, Value::Uint(u)) => integer(-i128::from(u)),
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
        BitAnd | BitOr | BitXor => match (exact_integer(&a), exact_integer(&b)) {
            // On the 64 bits of both, so that unsigned values (geohashes) keep their top bit.
            (Some(x), Some(y)) => {
                let (x, y) = (x as u64, y as u64);
                let r = match op {
                    BitAnd => x & y,
                    BitOr => x | y,
                    _ => x ^ y,
                };
                Ok(if matches!(a, Value::Uint(_)) || matches!(b, Value::Uint(_)) {
                    Value::Uint(r)
                } else {
                    Value::Int(r as i64)
                })
            }
            _ => Err(format!("{op:?} expects integers, got {} and {}", a.type_name(), b.type_name())),
        },
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

/// The value as an exact integer, when it is a signed or unsigned one.
pub(crate) fn exact_integer(v: &Value) -> Option<i128> {
    match *v {
        Value::Int(i) => Some(i128::from(i)),
        Value::Uint(u) => Some(i128::from(u)),
        _ => None,
    }
}

/// An exact integer result: signed when it fits, unsigned above `i64::MAX`.
pub(crate) fn integer(r: i128) -> Cell {
    if let Ok(i) = i64::try_from(r) {
        Ok(Value::Int(i))
    } else {
        u64::try_from(r).map(Value::Uint).map_err(|_| "integer overflow".into())
    }
}

fn arithmetic(op: BinOp, a: Value, b: Value) -> Cell {
    match (exact_integer(&a), exact_integer(&b)) {
        (Some(x), Some(y)) => {
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div if y == 0 => return Err("division by zero".into()),
                BinOp::Div => x.checked_div(y),
                BinOp::Mod if y == 0 => return Err("division by zero".into()),
                _ => x.checked_rem(y),
            };
            match r {
                // Signed with signed stays signed (an overflow is an error, as before);
                // an unsigned operand allows an unsigned result.
                Some(r) if matches!((&a, &b), (Value::Int(_), Value::Int(_))) => {
                    i64::try_from(r).map(Value::Int).map_err(|_| "integer overflow".into())
                }
                Some(r) => integer(r),
                None => Err("integer overflow".into()),
            }
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

/// SQL equality: numbers compare by value (integers exactly, whatever their
/// signedness), everything else structurally.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (exact_integer(a), exact_integer(b)) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

pub(crate) fn order(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ if exact_integer(a).is_some() && exact_integer(b).is_some() => Ok(exact_integer(a).cmp(&exact_integer(b))),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).ok_or_else(|| "cannot order NaN".into()),
            _ => Err(format!("cannot compare {} with {}", a.type_name(), b.type_name())),
        },
    }
}

#[cfg(test)]
mod tests;
