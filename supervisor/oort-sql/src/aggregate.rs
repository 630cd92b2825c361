//! eKuiper's built-in aggregate functions, kept incrementally: a group holds
//! one [`Partial`] per aggregate call, never its rows (except `collect`, whose
//! result is the rows' values), so a window's memory grows with its groups.
//! Partials merge, which is how a hopping window combines its panes.

use oort_proto::Value;

use super::expr::{equal, order};

/// An aggregate function, by eKuiper's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Collect,
    LastValue,
}

impl AggFn {
    /// The aggregate called `name` (case-insensitive), if any.
    pub fn lookup(name: &str) -> Option<AggFn> {
        Some(match name.to_ascii_lowercase().as_str() {
            "count" => AggFn::Count,
            "sum" => AggFn::Sum,
            "avg" => AggFn::Avg,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            "collect" => AggFn::Collect,
            "last_value" => AggFn::LastValue,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AggFn::Count => "count",
            AggFn::Sum => "sum",
            AggFn::Avg => "avg",
            AggFn::Min => "min",
            AggFn::Max => "max",
            AggFn::Collect => "collect",
            AggFn::LastValue => "last_value",
        }
    }

    /// The empty partial result of this function.
    pub fn start(self) -> Partial {
        match self {
            AggFn::Count => Partial::Count(0),
            AggFn::Sum => Partial::Sum(None),
            AggFn::Avg => Partial::Avg { sum: 0.0, n: 0 },
            AggFn::Min => Partial::Min(None),
            AggFn::Max => Partial::Max(None),
            AggFn::Collect => Partial::Collect(Vec::new()),
            AggFn::LastValue => Partial::Last(None),
        }
    }
}

/// One aggregate's result so far, for one group.
#[derive(Debug, Clone, PartialEq)]
pub enum Partial {
    Count(i64),
    /// An integer sum stays an integer until a float joins it.
    Sum(Option<Value>),
    Avg {
        sum: f64,
        n: i64,
    },
    Min(Option<Value>),
    Max(Option<Value>),
    Collect(Vec<Value>),
    Last(Option<Value>),
}

impl Partial {
    /// Adds one row's argument. Nulls are skipped by every function but
    /// `collect` (eKuiper's semantics), and by `last_value` only when asked.
    pub fn add(&mut self, v: Value, ignore_null: bool) -> Result<(), String> {
        let null = matches!(v, Value::Null);
        match self {
            Partial::Count(n) if !null => *n += 1,
            Partial::Sum(acc) if !null => *acc = Some(add(acc.take(), v)?),
            Partial::Avg { sum, n } if !null => {
                *sum += v.as_f64().ok_or_else(|| format!("avg expects numbers, got {}", v.type_name()))?;
                *n += 1;
            }
            Partial::Min(m) if !null => keep(m, v, std::cmp::Ordering::Less)?,
            Partial::Max(m) if !null => keep(m, v, std::cmp::Ordering::Greater)?,
            Partial::Collect(values) => values.push(v),
            Partial::Last(last) if !(null && ignore_null) => *last = Some(v),
            _ => {}
        }
        Ok(())
    }

    /// Adds what `other` (a later pane of the same group) holds.
    pub fn merge(&mut self, other: &Partial) -> Result<(), String> {
        match (self, other) {
            (Partial::Count(a), Partial::Count(b)) => *a += b,
            (Partial::Sum(a), Partial::Sum(Some(b))) => *a = Some(add(a.take(), b.clone())?),
            (Partial::Avg { sum, n }, Partial::Avg { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (Partial::Min(a), Partial::Min(Some(b))) => keep(a, b.clone(), std::cmp::Ordering::Less)?,
            (Partial::Max(a), Partial::Max(Some(b))) => keep(a, b.clone(), std::cmp::Ordering::Greater)?,
            (Partial::Collect(a), Partial::Collect(b)) => a.extend(b.iter().cloned()),
            (Partial::Last(a), Partial::Last(Some(b))) => *a = Some(b.clone()),
            _ => {}
        }
        Ok(())
    }

    /// The aggregate's value: `count` of nothing is 0, the others are null.
    pub fn finish(&self) -> Value {
        match self {
            Partial::Count(n) => Value::Int(*n),
            Partial::Sum(v) | Partial::Min(v) | Partial::Max(v) | Partial::Last(v) => v.clone().unwrap_or_default(),
            Partial::Avg { n: 0, .. } => Value::Null,
            Partial::Avg { sum, n } => Value::Float(sum / *n as f64),
            Partial::Collect(values) => Value::List(values.clone()),
        }
    }
}

fn add(acc: Option<Value>, v: Value) -> Result<Value, String> {
    let number = |v: &Value| v.as_f64().ok_or_else(|| format!("sum expects numbers, got {}", v.type_name()));
    Ok(match (acc, v) {
        (None, v @ (Value::Int(_) | Value::Float(_))) => v,
        (None, v) => return Err(format!("sum expects numbers, got {}", v.type_name())),
        (Some(Value::Int(a)), Value::Int(b)) => match a.checked_add(b) {
            Some(s) => Value::Int(s),
            None => Value::Float(a as f64 + b as f64),
        },
        (Some(a), b) => Value::Float(number(&a)? + number(&b)?),
    })
}

/// Keeps the smaller (`Less`) or larger (`Greater`) of the two.
fn keep(current: &mut Option<Value>, v: Value, wanted: std::cmp::Ordering) -> Result<(), String> {
    let replace = match current {
        None => true,
        Some(c) => !equal(c, &v) && order(&v, c)? == wanted,
    };
    if replace {
        *current = Some(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: AggFn, values: &[Value]) -> Result<Value, String> {
        let mut p = f.start();
        for v in values {
            p.add(v.clone(), false)?;
        }
        Ok(p.finish())
    }

    #[test]
    fn aggregates_follow_ekuipers_null_rules() {
        let (i, f, n, s) = (Value::Int, Value::Float, Value::Null, |x: &str| Value::from(x));
        assert_eq!(run(AggFn::Count, &[i(1), n.clone(), i(3)]), Ok(i(2)));
        assert_eq!(run(AggFn::Count, &[]), Ok(i(0)));
        assert_eq!(run(AggFn::Sum, &[i(1), n.clone(), i(3)]), Ok(i(4)));
        assert_eq!(run(AggFn::Sum, &[i(1), f(0.5)]), Ok(f(1.5)));
        assert_eq!(run(AggFn::Sum, &[i(i64::MAX), i(1)]), Ok(f(i64::MAX as f64 + 1.0)));
        assert_eq!(run(AggFn::Sum, std::slice::from_ref(&n)), Ok(n.clone()));
        assert_eq!(run(AggFn::Avg, &[i(1), i(2), n.clone()]), Ok(f(1.5)));
        assert_eq!(run(AggFn::Avg, &[]), Ok(n.clone()));
        assert_eq!(run(AggFn::Min, &[i(3), f(1.5), n.clone(), i(2)]), Ok(f(1.5)));
        assert_eq!(run(AggFn::Max, &[s("a"), s("c"), s("b")]), Ok(s("c")));
        assert_eq!(run(AggFn::Collect, &[i(1), n.clone()]), Ok(Value::List(vec![i(1), n.clone()])));
        assert_eq!(run(AggFn::LastValue, &[i(1), n.clone()]), Ok(n.clone()));
        let mut last = AggFn::LastValue.start();
        last.add(i(1), true).unwrap();
        last.add(n.clone(), true).unwrap();
        assert_eq!(last.finish(), i(1));
        assert_eq!(run(AggFn::Sum, &[s("x")]), Err("sum expects numbers, got string".into()));
        assert_eq!(run(AggFn::Max, &[i(1), s("x")]), Err("cannot compare string with int".into()));
    }

    #[test]
    fn merged_panes_equal_one_pass() {
        let values: Vec<Value> = (0..10).map(|k| if k % 4 == 0 { Value::Null } else { Value::Int(k) }).collect();
        for f in [AggFn::Count, AggFn::Sum, AggFn::Avg, AggFn::Min, AggFn::Max, AggFn::Collect, AggFn::LastValue] {
            let (first, second) = values.split_at(4);
            let mut a = f.start();
            first.iter().for_each(|v| a.add(v.clone(), false).unwrap());
            let mut b = f.start();
            second.iter().for_each(|v| b.add(v.clone(), false).unwrap());
            a.merge(&b).unwrap();
            assert_eq!(Ok(a.finish()), run(f, &values), "{f:?}");
        }
    }
}
