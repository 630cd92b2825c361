//! eKuiper's built-in aggregate functions, kept incrementally: a group holds
//! one [`Partial`] per aggregate call, never its rows (except `collect`, whose
//! result is the rows' values), so a window's memory grows with its groups.
//! Partials merge, which is how a hopping window combines its panes.

use oort_proto::Value;

use super::expr::{equal, exact_integer, integer, order};

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
    /// `deduplicate(col, all)`: its argument is `[col, row]`.
    Deduplicate {
        all: bool,
    },
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
            "deduplicate" => AggFn::Deduplicate { all: false },
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
            AggFn::Deduplicate { .. } => "deduplicate",
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
            AggFn::Deduplicate { all } => Partial::Dedup { all, rows: Vec::new(), latest: None },
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
    /// The group's rows without duplicate keys, each with its key's JSON, in
    /// order; `latest` is `None` before any row, `Some(None)` when the latest
    /// row's key was a duplicate, else `Some(Some(i))`: `rows[i]` is it.
    Dedup {
        all: bool,
        rows: Vec<(String, Value)>,
        latest: Option<Option<usize>>,
    },
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
            Partial::Dedup { rows, latest, .. } => {
                let (key, row) = dedup_arg(v)?;
                *latest = Some(match rows.iter().any(|(k, _)| *k == key) {
                    true => None,
                    false => {
                        rows.push((key, row));
                        Some(rows.len() - 1)
                    }
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether [`Partial::add`] would accept `v`, without changing anything:
    /// a row's arguments are all checked before any is added, so a bad row
    /// leaves no half-counted trace.
    pub fn check(&self, v: &Value) -> Result<(), String> {
        let null = matches!(v, Value::Null);
        let number = |name: &str| match v.as_f64() {
            Some(_) => Ok(()),
            None => Err(format!("{name} expects numbers, got {}", v.type_name())),
        };
        match self {
            _ if null => Ok(()),
            Partial::Sum(_) => number("sum"),
            Partial::Avg { .. } => number("avg"),
            Partial::Min(Some(c)) | Partial::Max(Some(c)) if !equal(c, v) => order(v, c).map(|_| ()),
            _ => Ok(()),
        }
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
            (Partial::Dedup { rows, latest, .. }, Partial::Dedup { rows: more, latest: later, .. }) => {
                let latest_key = match later {
                    None => return Ok(()),
                    Some(None) => None,
                    Some(Some(i)) => more.get(*i).map(|(k, _)| k.clone()),
                };
                // The later pane's latest row is new only if this pane has
                // not seen its key either.
                let new = latest_key.filter(|k| !rows.iter().any(|(seen, _)| seen == k));
                for (key, row) in more {
                    if !rows.iter().any(|(seen, _)| seen == key) {
                        rows.push((key.clone(), row.clone()));
                    }
                }
                *latest = Some(new.and_then(|k| rows.iter().position(|(seen, _)| *seen == k)));
            }
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
            Partial::Dedup { all: true, rows, .. } => Value::List(rows.iter().map(|(_, r)| r.clone()).collect()),
            Partial::Dedup { all: false, rows, latest } => {
                Value::List(latest.flatten().and_then(|i| rows.get(i)).map(|(_, r)| r.clone()).into_iter().collect())
            }
        }
    }
}

/// `deduplicate`'s argument: the key's JSON and the row.
fn dedup_arg(v: Value) -> Result<(String, Value), String> {
    match v {
        Value::List(mut pair) if pair.len() == 2 => {
            let row = pair.pop().expect("two items");
            let key = pair.pop().expect("two items");
            Ok((key.to_json().to_string(), row))
        }
        other => Err(format!("deduplicate expects a key and a row, got {}", other.type_name())),
    }
}

impl Partial {
    /// The partial as a value, for a checkpoint: `[tag, payload…]`, with an
    /// absent value left out so that it stays distinct from a null one.
    pub fn to_value(&self) -> Value {
        let tagged = |tag: &str, rest: Vec<Value>| {
            let mut l = vec![Value::from(tag)];
            l.extend(rest);
            Value::List(l)
        };
        let opt = |v: &Option<Value>| v.iter().cloned().collect::<Vec<_>>();
        match self {
            Partial::Count(n) => tagged("count", vec![Value::Int(*n)]),
            Partial::Sum(v) => tagged("sum", opt(v)),
            Partial::Avg { sum, n } => tagged("avg", vec![Value::Float(*sum), Value::Int(*n)]),
            Partial::Min(v) => tagged("min", opt(v)),
            Partial::Max(v) => tagged("max", opt(v)),
            Partial::Collect(values) => tagged("collect", vec![Value::List(values.clone())]),
            Partial::Last(v) => tagged("last", opt(v)),
            Partial::Dedup { rows, latest, .. } => {
                let rows = rows.iter().map(|(k, r)| Value::List(vec![Value::from(k.as_str()), r.clone()])).collect();
                let mut rest = vec![Value::List(rows)];
                match latest {
                    None => {}
                    Some(None) => rest.push(Value::Int(-1)),
                    Some(Some(i)) => rest.push(Value::Int(*i as i64)),
                }
                tagged("dedup", rest)
            }
        }
    }

    /// The partial of `func` that [`Partial::to_value`] wrote.
    pub fn from_value(func: AggFn, v: &Value) -> Result<Partial, String> {
        let bad = || format!("not a partial {} result: {}", func.name(), v.to_json());
        let Value::List(l) = v else { return Err(bad()) };
        let (Some(Value::String(tag)), rest) = (l.first(), l.get(1..).unwrap_or_default()) else { return Err(bad()) };
        let opt = || match rest {
            [] => Ok(None),
            [v] => Ok(Some(v.clone())),
            _ => Err(bad()),
        };
        Ok(match (func, tag.as_str(), rest) {
            (AggFn::Count, "count", [Value::Int(n)]) => Partial::Count(*n),
            (AggFn::Sum, "sum", _) => Partial::Sum(opt()?),
            (AggFn::Avg, "avg", [Value::Float(sum), Value::Int(n)]) => Partial::Avg { sum: *sum, n: *n },
            (AggFn::Min, "min", _) => Partial::Min(opt()?),
            (AggFn::Max, "max", _) => Partial::Max(opt()?),
            (AggFn::Collect, "collect", [Value::List(values)]) => Partial::Collect(values.clone()),
            (AggFn::LastValue, "last", _) => Partial::Last(opt()?),
            (AggFn::Deduplicate { all }, "dedup", [Value::List(rows), latest @ ..]) => {
                let rows = rows
                    .iter()
                    .map(|pair| match pair {
                        Value::List(p) => match p.as_slice() {
                            [Value::String(k), row] => Ok((k.clone(), row.clone())),
                            _ => Err(bad()),
                        },
                        _ => Err(bad()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let latest = match latest {
                    [] => None,
                    [Value::Int(-1)] => Some(None),
                    [Value::Int(i)] if (*i as usize) < rows.len() && *i >= 0 => Some(Some(*i as usize)),
                    _ => return Err(bad()),
                };
                Partial::Dedup { all, rows, latest }
            }
            _ => return Err(bad()),
        })
    }
}

fn add(acc: Option<Value>, v: Value) -> Result<Value, String> {
    let number = |v: &Value| v.as_f64().ok_or_else(|| format!("sum expects numbers, got {}", v.type_name()));
    Ok(match (acc, v) {
        (None, v @ (Value::Int(_) | Value::Uint(_) | Value::Float(_))) => v,
        (None, v) => return Err(format!("sum expects numbers, got {}", v.type_name())),
        (Some(Value::Int(a)), Value::Int(b)) => match a.checked_add(b) {
            Some(s) => Value::Int(s),
            None => Value::Float(a as f64 + b as f64),
        },
        // With an unsigned operand the sum stays an exact integer while it fits u64.
        (Some(a @ (Value::Int(_) | Value::Uint(_))), b @ (Value::Int(_) | Value::Uint(_))) => {
            let (x, y) = (exact_integer(&a).unwrap_or(0), exact_integer(&b).unwrap_or(0));
            match integer(x + y) {
                Ok(sum) => sum,
                // Past u64: eKuiper's sum goes to float there too.
                Err(_) => Value::Float(number(&a)? + number(&b)?),
            }
        }
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
        assert_eq!(run(AggFn::Sum, &[Value::Uint(1 << 63), i(1)]), Ok(Value::Uint((1 << 63) + 1)));
        assert_eq!(run(AggFn::Max, &[Value::Uint(u64::MAX), Value::Uint(u64::MAX - 1)]), Ok(Value::Uint(u64::MAX)));
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

    fn keyed(key: i64, row: &str) -> Value {
        Value::List(vec![Value::Int(key), Value::from(row)])
    }

    #[test]
    fn deduplicate_keeps_first_rows_or_the_latest_if_new() {
        let rows = [keyed(1, "a"), keyed(2, "b"), keyed(1, "c")];
        let all = AggFn::Deduplicate { all: true };
        let latest = AggFn::Deduplicate { all: false };
        assert_eq!(run(all, &rows), Ok(Value::List(vec![Value::from("a"), Value::from("b")])));
        assert_eq!(run(latest, &rows), Ok(Value::List(vec![])), "the latest row's key was seen");
        assert_eq!(run(latest, &rows[..2]), Ok(Value::List(vec![Value::from("b")])));
        assert_eq!(run(latest, &[]), Ok(Value::List(vec![])));
        // Across panes as in one pass, and through a checkpoint.
        for f in [all, latest] {
            for split in 0..=rows.len() {
                let mut a = f.start();
                rows[..split].iter().for_each(|v| a.add(v.clone(), false).unwrap());
                let mut b = f.start();
                rows[split..].iter().for_each(|v| b.add(v.clone(), false).unwrap());
                a.merge(&b).unwrap();
                assert_eq!(Ok(a.finish()), run(f, &rows), "{f:?} split at {split}");
                assert_eq!(Partial::from_value(f, &a.to_value()), Ok(a.clone()));
            }
        }
    }

    #[test]
    fn partials_survive_a_checkpoint_and_refuse_a_wrong_one() {
        let mut cases = Vec::new();
        for f in [AggFn::Count, AggFn::Sum, AggFn::Avg, AggFn::Min, AggFn::Max, AggFn::Collect, AggFn::LastValue] {
            let mut p = f.start();
            cases.push((f, p.clone()));
            p.add(Value::Int(3), false).unwrap();
            p.add(Value::Null, false).unwrap();
            cases.push((f, p));
        }
        for (f, p) in cases {
            assert_eq!(Partial::from_value(f, &p.to_value()), Ok(p.clone()), "{f:?}");
        }
        assert!(Partial::from_value(AggFn::Sum, &AggFn::Count.start().to_value()).is_err());
        assert!(Partial::from_value(AggFn::Avg, &Value::from("x")).is_err());
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
