//! The built-in SQL functions, evaluated in the supervisor.

use oort_proto::Value;

use super::RuleError;

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Lower,
    Upper,
    Trim,
    Concat,
    Length,
    Abs,
    Round,
    Floor,
    Ceil,
}

impl Builtin {
    /// The built-in called `name` (case-insensitive), if any.
    pub fn lookup(name: &str) -> Option<Builtin> {
        Some(match name.to_ascii_lowercase().as_str() {
            "lower" => Builtin::Lower,
            "upper" => Builtin::Upper,
            "trim" => Builtin::Trim,
            "concat" => Builtin::Concat,
            "length" => Builtin::Length,
            "abs" => Builtin::Abs,
            "round" => Builtin::Round,
            "floor" => Builtin::Floor,
            "ceil" => Builtin::Ceil,
            _ => return None,
        })
    }

    /// Its SQL name.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Lower => "lower",
            Builtin::Upper => "upper",
            Builtin::Trim => "trim",
            Builtin::Concat => "concat",
            Builtin::Length => "length",
            Builtin::Abs => "abs",
            Builtin::Round => "round",
            Builtin::Floor => "floor",
            Builtin::Ceil => "ceil",
        }
    }

    /// Refuses a call with the wrong number of arguments.
    pub fn check_arity(self, n: usize) -> Result<(), RuleError> {
        let ok = match self {
            Builtin::Concat => n >= 1,
            Builtin::Round => n == 1 || n == 2,
            _ => n == 1,
        };
        if ok {
            return Ok(());
        }
        let expected = match self {
            Builtin::Concat => "at least 1 argument",
            Builtin::Round => "1 or 2 arguments",
            _ => "1 argument",
        };
        Err(RuleError::invalid(format!("{} expects {expected}, got {n}", self.name())))
    }

    /// Applies the function to one row of arguments. Null in, null out.
    pub fn apply(self, args: &[Value]) -> Result<Value, String> {
        if args.iter().any(|a| matches!(a, Value::Null)) {
            return Ok(Value::Null);
        }
        let name = self.name();
        let string = |v: &Value| {
            v.as_str().map(str::to_string).ok_or_else(|| format!("{name} expects a string, got {}", v.type_name()))
        };
        let number = |v: &Value| v.as_f64().ok_or_else(|| format!("{name} expects a number, got {}", v.type_name()));
        Ok(match self {
            Builtin::Lower => Value::String(string(&args[0])?.to_lowercase()),
            Builtin::Upper => Value::String(string(&args[0])?.to_uppercase()),
            Builtin::Trim => Value::String(string(&args[0])?.trim().to_string()),
            Builtin::Concat => {
                let mut out = String::new();
                for a in args {
                    out.push_str(&string(a)?);
                }
                Value::String(out)
            }
            Builtin::Length => match &args[0] {
                Value::String(s) => Value::Int(s.chars().count() as i64),
                Value::List(l) => Value::Int(l.len() as i64),
                Value::Map(m) => Value::Int(m.len() as i64),
                Value::Bytes(b) => Value::Int(b.len() as i64),
                other => return Err(format!("length expects a string, list, map or bytes, got {}", other.type_name())),
            },
            Builtin::Abs => match &args[0] {
                Value::Int(i) => Value::Int(i.checked_abs().ok_or("abs overflows")?),
                other => Value::Float(number(other)?.abs()),
            },
            Builtin::Round => {
                let x = number(&args[0])?;
                match args.get(1) {
                    None => match &args[0] {
                        Value::Int(i) => Value::Int(*i),
                        _ => Value::Int(x.round() as i64),
                    },
                    Some(d) => {
                        let digits = d.as_i64().ok_or("round's second argument must be an integer")?;
                        let scale = 10f64.powi(digits.clamp(-15, 15) as i32);
                        Value::Float((x * scale).round() / scale)
                    }
                }
            }
            Builtin::Floor => match &args[0] {
                Value::Int(i) => Value::Int(*i),
                other => Value::Int(number(other)?.floor() as i64),
            },
            Builtin::Ceil => match &args[0] {
                Value::Int(i) => Value::Int(*i),
                other => Value::Int(number(other)?.ceil() as i64),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_table() {
        let s = |x: &str| Value::from(x);
        let cases: Vec<(Builtin, Vec<Value>, Result<Value, &str>)> = vec![
            (Builtin::Lower, vec![s("AbC")], Ok(s("abc"))),
            (Builtin::Upper, vec![s("AbC")], Ok(s("ABC"))),
            (Builtin::Trim, vec![s("  a ")], Ok(s("a"))),
            (Builtin::Concat, vec![s("a"), s("b"), s("c")], Ok(s("abc"))),
            (Builtin::Length, vec![s("héllo")], Ok(Value::Int(5))),
            (Builtin::Length, vec![Value::List(vec![Value::Null; 3])], Ok(Value::Int(3))),
            (Builtin::Abs, vec![Value::Int(-4)], Ok(Value::Int(4))),
            (Builtin::Abs, vec![Value::Float(-1.5)], Ok(Value::Float(1.5))),
            (Builtin::Round, vec![Value::Float(2.5)], Ok(Value::Int(3))),
            (Builtin::Round, vec![Value::Float(1.2345), Value::Int(2)], Ok(Value::Float(1.23))),
            (Builtin::Floor, vec![Value::Float(-1.5)], Ok(Value::Int(-2))),
            (Builtin::Ceil, vec![Value::Float(1.1)], Ok(Value::Int(2))),
            (Builtin::Lower, vec![Value::Null], Ok(Value::Null)),
            (Builtin::Lower, vec![Value::Int(1)], Err("lower expects a string, got int")),
            (Builtin::Abs, vec![Value::Int(i64::MIN)], Err("abs overflows")),
        ];
        for (f, args, want) in cases {
            assert_eq!(f.apply(&args), want.map_err(str::to_string), "{f:?}({args:?})");
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_arity_is_checked() {
        assert_eq!(Builtin::lookup("LOWER"), Some(Builtin::Lower));
        assert_eq!(Builtin::lookup("accumulateWordCount"), None);
        assert!(Builtin::Concat.check_arity(0).is_err());
        assert!(Builtin::Round.check_arity(2).is_ok());
        assert!(Builtin::Upper.check_arity(2).is_err());
    }
}
