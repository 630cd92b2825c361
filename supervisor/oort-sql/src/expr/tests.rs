//! Expression evaluation: operators, fields, CASE, IN, LIKE, and one batch call per call site.

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
        // Unsigned values (Go's uint64, JSON integers above i64) compute exactly.
        (Expr::Binary(lit(u64::MAX - 1), BinOp::Add, lit(1)), Ok(Value::Uint(u64::MAX))),
        (Expr::Binary(lit(u64::MAX), BinOp::Add, lit(1)), Err("integer overflow".into())),
        (Expr::Binary(lit(1u64 << 63), BinOp::Sub, lit(1)), Ok(Value::Int(i64::MAX))),
        (Expr::Binary(lit(12963433097944239317u64), BinOp::Eq, lit(12963433097944239316u64)), Ok(Value::Bool(false))),
        (Expr::Binary(lit(12963433097944239317u64), BinOp::Gt, lit(i64::MAX)), Ok(Value::Bool(true))),
        (Expr::Binary(lit(5u64), BinOp::Eq, lit(5)), Ok(Value::Bool(true))),
        (Expr::Binary(lit(u64::MAX), BinOp::BitAnd, lit(0xff)), Ok(Value::Uint(0xff))),
        (Expr::Binary(lit(1i64 << 62), BinOp::Eq, lit((1i64 << 62) + 1)), Ok(Value::Bool(false))),
    ];
    for (e, want) in cases {
        assert_eq!(eval(&e, Rows::plain(&recs), &f).await.unwrap(), vec![want], "{e:?}");
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
    let out = eval(&outer, Rows::plain(&recs), &f).await.unwrap();
    assert_eq!(out[0], Ok(Value::Int(48)));
    assert_eq!(out[1], Err("cannot compute int Div string".into()));
    assert_eq!(out[2], Ok(Value::Int(16)));
    assert_eq!(out[3], Err("division by zero".into()));
    assert_eq!(*f.0.lock().unwrap(), vec![(0, 2), (1, 2)]);
}
