//! eKuiper's window syntax in `GROUP BY`: `TUMBLINGWINDOW(ss, 10)`,
//! `HOPPINGWINDOW(ss, 10, 5)`, `COUNTWINDOW(5[, 1])`, with its argument orders
//! and units, and the bounds a window must stay within.

use sqlparser::ast as sql;

use super::{excerpt, object_name, unsupported};
use crate::window::WindowSpec;
use crate::{RuleError, MAX_WINDOW_MS, MAX_WINDOW_PANES};

/// The window function `f` names, if it names one.
pub(super) fn window_name(f: &sql::Function) -> Option<String> {
    let name = object_name(&f.name).ok()?.to_ascii_uppercase();
    matches!(
        name.as_str(),
        "TUMBLINGWINDOW" | "HOPPINGWINDOW" | "SLIDINGWINDOW" | "SESSIONWINDOW" | "COUNTWINDOW" | "STATEWINDOW"
    )
    .then_some(name)
}

/// `TUMBLINGWINDOW(ss, 10)`, `HOPPINGWINDOW(ss, 10, 5)`, `COUNTWINDOW(5[, 1])`,
/// with eKuiper's argument orders and units (`dd hh mi ss ms`).
pub(super) fn window_spec(f: &sql::Function) -> Result<WindowSpec, RuleError> {
    let name = window_name(f).expect("a window function");
    if f.over.is_some() || f.filter.is_some() {
        return Err(unsupported(&format!("{name}(…) OVER or FILTER")));
    }
    let args: Vec<&sql::Expr> = match &f.args {
        sql::FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e)) => Ok(e),
                other => Err(RuleError::invalid(format!("{name}: bad argument {}", excerpt(other)))),
            })
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    let count = |e: &sql::Expr, what: &str| -> Result<u64, RuleError> {
        match e {
            sql::Expr::Value(v) => match &v.value {
                sql::Value::Number(n, _) => n.parse::<u64>().ok().filter(|n| *n > 0),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| RuleError::invalid(format!("{name}: the {what} must be a positive integer, got {e}")))
    };
    let unit_ms = |e: &sql::Expr| -> Result<u64, RuleError> {
        let unit = match e {
            sql::Expr::Identifier(i) => i.value.to_ascii_lowercase(),
            _ => String::new(),
        };
        Ok(match unit.as_str() {
            "dd" => 86_400_000,
            "hh" => 3_600_000,
            "mi" => 60_000,
            "ss" => 1_000,
            "ms" => 1,
            _ => {
                return Err(RuleError::invalid(format!(
                    "{name}: the time unit must be one of dd, hh, mi, ss, ms, got {e}"
                )))
            }
        })
    };
    let spec = match (name.as_str(), args.as_slice()) {
        ("TUMBLINGWINDOW", [unit, length]) => {
            WindowSpec::Tumbling { length_ms: unit_ms(unit)?.saturating_mul(count(length, "length")?) }
        }
        ("HOPPINGWINDOW", [unit, length, hop]) => {
            let unit = unit_ms(unit)?;
            let (length_ms, hop_ms) =
                (unit.saturating_mul(count(length, "length")?), unit.saturating_mul(count(hop, "hop")?));
            if hop_ms > length_ms || length_ms % hop_ms != 0 {
                return Err(RuleError::invalid(format!(
                    "{name}: the length must be a multiple of the hop (not supported yet otherwise)"
                )));
            }
            WindowSpec::Hopping { length_ms, hop_ms }
        }
        ("COUNTWINDOW", [size]) => {
            let size = count(size, "size")?;
            WindowSpec::Count { size, interval: size }
        }
        ("COUNTWINDOW", [size, interval]) => {
            let (size, interval) = (count(size, "size")?, count(interval, "interval")?);
            if interval > size || size % interval != 0 {
                return Err(RuleError::invalid(format!(
                    "{name}: the size must be a multiple of the interval (not supported yet otherwise)"
                )));
            }
            WindowSpec::Count { size, interval }
        }
        ("TUMBLINGWINDOW" | "HOPPINGWINDOW" | "COUNTWINDOW", _) => {
            let expected = match name.as_str() {
                "TUMBLINGWINDOW" => "(unit, length)",
                "HOPPINGWINDOW" => "(unit, length, hop)",
                _ => "(size[, interval])",
            };
            return Err(RuleError::invalid(format!("{name} takes {expected}, got {} arguments", args.len())));
        }
        _ => return Err(unsupported(&name)),
    };
    if let WindowSpec::Tumbling { length_ms } | WindowSpec::Hopping { length_ms, .. } = spec {
        if length_ms > MAX_WINDOW_MS {
            return Err(RuleError::invalid(format!("{name}: a window lasts at most 7 days")));
        }
    }
    let panes = match spec {
        WindowSpec::Tumbling { .. } => 1,
        WindowSpec::Hopping { length_ms, hop_ms } => length_ms / hop_ms,
        WindowSpec::Count { size, interval } => size / interval,
    };
    if panes > MAX_WINDOW_PANES {
        return Err(RuleError::invalid(format!(
            "{name}: a window of {panes} hops or intervals; the limit is {MAX_WINDOW_PANES}"
        )));
    }
    Ok(spec)
}
