//! eKuiper's window syntax in `GROUP BY`: `TUMBLINGWINDOW(ss, 10)`,
//! `HOPPINGWINDOW(ss, 10, 5)`, `SLIDINGWINDOW(ss, 10[, 2]) [OVER (WHEN c)]`,
//! `SESSIONWINDOW(mi, 2, 10)`, `COUNTWINDOW(5[, 1])`, `STATEWINDOW(b, e)`,
//! each optionally followed by `FILTER (WHERE …)`, with eKuiper's argument
//! orders and units, and the bounds a window must stay within.

use sqlparser::ast as sql;

use super::dialect::OVER_WHEN;
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

/// A window of `GROUP BY` as written: its kind and sizes, and the
/// expressions the planner lowers.
pub(super) struct WindowClause<'a> {
    pub spec: WindowSpec,
    /// `FILTER (WHERE …)`: which rows enter the window.
    pub filter: Option<&'a sql::Expr>,
    /// `SLIDINGWINDOW(…) OVER (WHEN …)`: which rows trigger a window.
    pub trigger: Option<&'a sql::Expr>,
    /// `STATEWINDOW(begin, end)`.
    pub state: Option<(&'a sql::Expr, &'a sql::Expr)>,
}

/// The trigger of `OVER (WHEN cond)`, as the dialect rewrote it.
fn over_when(f: &sql::Function) -> Result<Option<&sql::Expr>, RuleError> {
    let Some(over) = &f.over else { return Ok(None) };
    let bad = || unsupported(&format!("OVER {over} (a window takes OVER (WHEN condition) only)"));
    let sql::WindowType::WindowSpec(spec) = over else { return Err(bad()) };
    match spec.partition_by.as_slice() {
        [sql::Expr::Function(g)]
            if spec.window_name.is_none()
                && spec.order_by.is_empty()
                && spec.window_frame.is_none()
                && object_name(&g.name).is_ok_and(|n| n == OVER_WHEN) =>
        {
            match &g.args {
                sql::FunctionArguments::List(l) => match l.args.as_slice() {
                    [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(cond))] => Ok(Some(cond)),
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// `TUMBLINGWINDOW(ss, 10)` and the other windows, with eKuiper's argument
/// orders and units (`dd hh mi ss ms`).
pub(super) fn window_spec(f: &sql::Function) -> Result<WindowClause<'_>, RuleError> {
    let name = window_name(f).expect("a window function");
    let trigger = over_when(f)?;
    if trigger.is_some() && name != "SLIDINGWINDOW" {
        return Err(RuleError::invalid(format!("{name}: OVER (WHEN …) belongs to SLIDINGWINDOW")));
    }
    let filter = f.filter.as_deref();
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
    let mut state = None;
    let spec = match (name.as_str(), args.as_slice()) {
        ("TUMBLINGWINDOW", [unit, length]) => {
            WindowSpec::Tumbling { length_ms: unit_ms(unit)?.saturating_mul(count(length, "length")?) }
        }
        ("HOPPINGWINDOW", [unit, length, hop]) => {
            let unit = unit_ms(unit)?;
            let (length_ms, hop_ms) =
                (unit.saturating_mul(count(length, "length")?), unit.saturating_mul(count(hop, "hop")?));
            if hop_ms > length_ms {
                return Err(RuleError::invalid(format!("{name}: the hop must not be longer than the window")));
            }
            WindowSpec::Hopping { length_ms, hop_ms }
        }
        ("COUNTWINDOW", [size]) => {
            let size = count(size, "size")?;
            WindowSpec::Count { size, interval: size }
        }
        ("COUNTWINDOW", [size, interval]) => {
            let (size, interval) = (count(size, "size")?, count(interval, "interval")?);
            if interval > size {
                return Err(RuleError::invalid(format!("{name}: the interval must not be larger than the size")));
            }
            WindowSpec::Count { size, interval }
        }
        ("SESSIONWINDOW", [unit, timeout, max]) => {
            let unit = unit_ms(unit)?;
            let (timeout_ms, max_ms) =
                (unit.saturating_mul(count(timeout, "timeout")?), unit.saturating_mul(count(max, "maximum duration")?));
            if max_ms > MAX_WINDOW_MS || timeout_ms > MAX_WINDOW_MS {
                return Err(RuleError::invalid(format!("{name}: a window lasts at most 7 days")));
            }
            WindowSpec::Session { timeout_ms, max_ms }
        }
        ("SLIDINGWINDOW", [unit, length]) => {
            WindowSpec::Sliding { length_ms: unit_ms(unit)?.saturating_mul(count(length, "length")?), delay_ms: 0 }
        }
        ("SLIDINGWINDOW", [unit, length, delay]) => {
            let unit = unit_ms(unit)?;
            WindowSpec::Sliding {
                length_ms: unit.saturating_mul(count(length, "length")?),
                delay_ms: unit.saturating_mul(count(delay, "delay")?),
            }
        }
        ("STATEWINDOW", [begin, end]) => {
            state = Some((*begin, *end));
            WindowSpec::State
        }
        (_, _) => {
            let expected = match name.as_str() {
                "TUMBLINGWINDOW" => "(unit, length)",
                "HOPPINGWINDOW" => "(unit, length, hop)",
                "SESSIONWINDOW" => "(unit, timeout, maximum duration)",
                "SLIDINGWINDOW" => "(unit, length[, delay])",
                "STATEWINDOW" => "(begin condition, end condition)",
                _ => "(size[, interval])",
            };
            return Err(RuleError::invalid(format!("{name} takes {expected}, got {} arguments", args.len())));
        }
    };
    if let WindowSpec::Tumbling { length_ms }
    | WindowSpec::Hopping { length_ms, .. }
    | WindowSpec::Sliding { length_ms, .. } = spec
    {
        if length_ms > MAX_WINDOW_MS {
            return Err(RuleError::invalid(format!("{name}: a window lasts at most 7 days")));
        }
    }
    if let WindowSpec::Sliding { delay_ms, .. } = spec {
        if delay_ms > MAX_WINDOW_MS {
            return Err(RuleError::invalid(format!("{name}: a delay lasts at most 7 days")));
        }
    }
    // A window is kept as panes of the largest step both its length and its
    // hop are multiples of: 10 s every 3 s is ten panes of 1 s.
    let panes = spec.panes();
    if panes > MAX_WINDOW_PANES {
        return Err(RuleError::invalid(format!(
            "{name}: a window of {panes} panes (its length over the greatest common divisor of its length and \
             hop, or of its size and interval); the limit is {MAX_WINDOW_PANES}"
        )));
    }
    Ok(WindowClause { spec, filter, trigger, state })
}
