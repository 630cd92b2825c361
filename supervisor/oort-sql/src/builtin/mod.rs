//! The built-in SQL functions, evaluated in the supervisor: eKuiper's names
//! and semantics for the string, math, conversion and time functions rules
//! use most. README lists them and what is not supported yet.
//!
//! One table ([`FUNCTIONS`]) holds every function with its arity and its
//! null rule, so adding one is one entry and one `fn`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use oort_proto::Value;

use super::RuleError;

/// A built-in function: a handle on its entry in [`FUNCTIONS`].
#[derive(Clone, Copy)]
pub struct Builtin(&'static Def);

/// One entry of the table.
pub struct Def {
    name: &'static str,
    min_args: usize,
    /// `None`: any number from `min_args` on.
    max_args: Option<usize>,
    /// When true, a null argument makes the result null without calling
    /// `apply` (most functions); `coalesce`, `isnull` and friends see nulls.
    null_in_null_out: bool,
    apply: fn(&[Value]) -> Result<Value, String>,
}

impl PartialEq for Builtin {
    fn eq(&self, other: &Builtin) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Builtin {}

impl fmt::Debug for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Builtin({})", self.0.name)
    }
}

/// The types `cast` converts to, as eKuiper names them.
pub const CAST_TYPES: [&str; 4] = ["bigint", "float", "string", "boolean"];

const fn def(
    name: &'static str,
    min_args: usize,
    max_args: Option<usize>,
    apply: fn(&[Value]) -> Result<Value, String>,
) -> Def {
    Def { name, min_args, max_args, null_in_null_out: true, apply }
}

const fn sees_nulls(mut d: Def) -> Def {
    d.null_in_null_out = false;
    d
}

/// Every built-in function, by eKuiper's name (lookups ignore case).
static FUNCTIONS: &[Def] = &[
    // Strings.
    def("lower", 1, Some(1), |a| Ok(Value::String(string("lower", &a[0])?.to_lowercase()))),
    def("upper", 1, Some(1), |a| Ok(Value::String(string("upper", &a[0])?.to_uppercase()))),
    def("trim", 1, Some(1), |a| Ok(Value::String(string("trim", &a[0])?.trim().to_string()))),
    def("ltrim", 1, Some(1), |a| Ok(Value::String(string("ltrim", &a[0])?.trim_start().to_string()))),
    def("rtrim", 1, Some(1), |a| Ok(Value::String(string("rtrim", &a[0])?.trim_end().to_string()))),
    def("concat", 1, None, concat),
    def("length", 1, Some(1), length),
    def("numbytes", 1, Some(1), |a| Ok(Value::Int(string("numbytes", &a[0])?.len() as i64))),
    def("substring", 2, Some(3), substring),
    def("startswith", 2, Some(2), |a| {
        Ok(Value::Bool(string("startswith", &a[0])?.starts_with(string("startswith", &a[1])?)))
    }),
    def("endswith", 2, Some(2), |a| Ok(Value::Bool(string("endswith", &a[0])?.ends_with(string("endswith", &a[1])?)))),
    def("indexof", 2, Some(2), indexof),
    def("lpad", 2, Some(2), |a| pad("lpad", a, true)),
    def("rpad", 2, Some(2), |a| pad("rpad", a, false)),
    def("reverse", 1, Some(1), |a| Ok(Value::String(string("reverse", &a[0])?.chars().rev().collect()))),
    def("split_value", 3, Some(3), split_value),
    def("chr", 1, Some(1), chr),
    // Math.
    def("abs", 1, Some(1), abs),
    def("ceil", 1, Some(1), |a| integral("ceil", &a[0], f64::ceil)),
    def("ceiling", 1, Some(1), |a| integral("ceiling", &a[0], f64::ceil)),
    def("floor", 1, Some(1), |a| integral("floor", &a[0], f64::floor)),
    def("round", 1, Some(2), round),
    def("power", 2, Some(2), |a| Ok(Value::Float(number("power", &a[0])?.powf(number("power", &a[1])?)))),
    def("sqrt", 1, Some(1), |a| float("sqrt", &a[0], f64::sqrt)),
    def("exp", 1, Some(1), |a| float("exp", &a[0], f64::exp)),
    def("ln", 1, Some(1), |a| float("ln", &a[0], f64::ln)),
    def("log", 1, Some(2), log),
    def("mod", 2, Some(2), modulo),
    def("sign", 1, Some(1), sign),
    def("sin", 1, Some(1), |a| float("sin", &a[0], f64::sin)),
    def("cos", 1, Some(1), |a| float("cos", &a[0], f64::cos)),
    def("tan", 1, Some(1), |a| float("tan", &a[0], f64::tan)),
    def("asin", 1, Some(1), |a| float("asin", &a[0], f64::asin)),
    def("acos", 1, Some(1), |a| float("acos", &a[0], f64::acos)),
    def("atan", 1, Some(1), |a| float("atan", &a[0], f64::atan)),
    def("atan2", 2, Some(2), |a| Ok(Value::Float(number("atan2", &a[0])?.atan2(number("atan2", &a[1])?)))),
    def("pi", 0, Some(0), |_| Ok(Value::Float(std::f64::consts::PI))),
    def("bitand", 2, Some(2), |a| Ok(Value::Int(int("bitand", &a[0])? & int("bitand", &a[1])?))),
    def("bitor", 2, Some(2), |a| Ok(Value::Int(int("bitor", &a[0])? | int("bitor", &a[1])?))),
    def("bitxor", 2, Some(2), |a| Ok(Value::Int(int("bitxor", &a[0])? ^ int("bitxor", &a[1])?))),
    def("bitnot", 1, Some(1), |a| Ok(Value::Int(!int("bitnot", &a[0])?))),
    // Conversion.
    def("cast", 2, Some(2), cast),
    def("to_json", 1, Some(1), |a| Ok(Value::String(a[0].to_json().to_string()))),
    def("parse_json", 1, Some(1), parse_json),
    // Other.
    sees_nulls(def("coalesce", 1, None, |a| {
        Ok(a.iter().find(|v| !matches!(v, Value::Null)).cloned().unwrap_or_default())
    })),
    sees_nulls(def("isnull", 1, Some(1), |a| Ok(Value::Bool(matches!(a[0], Value::Null))))),
    def("cardinality", 1, Some(1), |a| match &a[0] {
        Value::List(l) => Ok(Value::Int(l.len() as i64)),
        other => Err(format!("cardinality expects a list, got {}", other.type_name())),
    }),
    // Time.
    def("tstamp", 0, Some(0), |_| Ok(Value::Int(now_ms()))),
    def("now", 0, Some(1), |_| Ok(Value::String(rfc3339_ms(now_ms())))),
    def("format_time", 2, Some(2), format_time),
];

impl Builtin {
    /// The built-in called `name` (case-insensitive), if any.
    pub fn lookup(name: &str) -> Option<Builtin> {
        FUNCTIONS.iter().find(|d| d.name.eq_ignore_ascii_case(name)).map(Builtin)
    }

    /// Its SQL name.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// Every built-in's name, for README and error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        FUNCTIONS.iter().map(|d| d.name)
    }

    /// Refuses a call with the wrong number of arguments.
    pub fn check_arity(self, n: usize) -> Result<(), RuleError> {
        let Def { name, min_args, max_args, .. } = *self.0;
        if n >= min_args && max_args.is_none_or(|max| n <= max) {
            return Ok(());
        }
        let plural = |k: usize| if k == 1 { "" } else { "s" };
        let expected = match max_args {
            None => format!("at least {min_args} argument{}", plural(min_args)),
            Some(max) if max == min_args => format!("{min_args} argument{}", plural(min_args)),
            Some(max) if max == min_args + 1 => format!("{min_args} or {max} arguments"),
            Some(max) => format!("{min_args} to {max} arguments"),
        };
        Err(RuleError::invalid(format!("{name} expects {expected}, got {n}")))
    }

    /// Applies the function to one row of arguments.
    pub fn apply(self, args: &[Value]) -> Result<Value, String> {
        if self.0.null_in_null_out && args.iter().any(|a| matches!(a, Value::Null)) {
            return Ok(Value::Null);
        }
        (self.0.apply)(args)
    }
}

fn string<'v>(name: &str, v: &'v Value) -> Result<&'v str, String> {
    v.as_str().ok_or_else(|| format!("{name} expects a string, got {}", v.type_name()))
}

fn number(name: &str, v: &Value) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| format!("{name} expects a number, got {}", v.type_name()))
}

fn int(name: &str, v: &Value) -> Result<i64, String> {
    v.as_i64().ok_or_else(|| format!("{name} expects an integer, got {}", v.type_name()))
}

fn float(name: &str, v: &Value, f: fn(f64) -> f64) -> Result<Value, String> {
    let r = f(number(name, v)?);
    if r.is_nan() {
        return Err(format!("{name} is undefined for {}", v.to_json()));
    }
    Ok(Value::Float(r))
}

/// `ceil` and `floor`: an integer stays itself; a float is rounded to an integer.
fn integral(name: &str, v: &Value, f: fn(f64) -> f64) -> Result<Value, String> {
    match v {
        Value::Int(_) | Value::Uint(_) => Ok(v.clone()),
        other => Ok(Value::Int(f(number(name, other)?) as i64)),
    }
}

fn concat(args: &[Value]) -> Result<Value, String> {
    let mut out = String::new();
    for a in args {
        out.push_str(string("concat", a)?);
    }
    Ok(Value::String(out))
}

fn length(args: &[Value]) -> Result<Value, String> {
    Ok(Value::Int(match &args[0] {
        Value::String(s) => s.chars().count(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        Value::Bytes(b) => b.len(),
        other => return Err(format!("length expects a string, list, map or bytes, got {}", other.type_name())),
    } as i64))
}

/// eKuiper's `substring(s, start[, end])`: characters from `start` up to, not
/// including, `end` (0-based); out-of-range bounds are clamped.
fn substring(args: &[Value]) -> Result<Value, String> {
    let chars: Vec<char> = string("substring", &args[0])?.chars().collect();
    let start = int("substring", &args[1])?;
    let end = match args.get(2) {
        Some(e) => int("substring", e)?,
        None => chars.len() as i64,
    };
    if start < 0 || end < 0 {
        return Err("substring's start and end must not be negative".into());
    }
    let (start, end) = ((start as usize).min(chars.len()), (end as usize).min(chars.len()));
    Ok(Value::String(if start < end { chars[start..end].iter().collect() } else { String::new() }))
}

/// The character position of the first `needle` in the string, or -1.
fn indexof(args: &[Value]) -> Result<Value, String> {
    let (hay, needle) = (string("indexof", &args[0])?, string("indexof", &args[1])?);
    Ok(Value::Int(match hay.find(needle) {
        Some(byte) => hay[..byte].chars().count() as i64,
        None => -1,
    }))
}

/// `lpad(s, n)` / `rpad(s, n)`: `n` spaces added on the left or right.
fn pad(name: &str, args: &[Value], left: bool) -> Result<Value, String> {
    let s = string(name, &args[0])?;
    let n = int(name, &args[1])?;
    let n = usize::try_from(n).map_err(|_| format!("{name}'s count must not be negative"))?;
    if n > MAX_PAD {
        return Err(format!("{name} pads at most {MAX_PAD} characters"));
    }
    let spaces = " ".repeat(n);
    Ok(Value::String(if left { format!("{spaces}{s}") } else { format!("{s}{spaces}") }))
}

/// A padding above this is refused: a rule must not be able to make one row
/// allocate gigabytes.
const MAX_PAD: usize = 1 << 20;

/// `split_value(s, sep, i)`: the `i`th part of `s` split at `sep`.
fn split_value(args: &[Value]) -> Result<Value, String> {
    let (s, sep) = (string("split_value", &args[0])?, string("split_value", &args[1])?);
    let i = int("split_value", &args[2])?;
    if sep.is_empty() {
        return Err("split_value's separator must not be empty".into());
    }
    let i = usize::try_from(i).map_err(|_| "split_value's index must not be negative".to_string())?;
    s.split(sep).nth(i).map(|p| Value::String(p.to_string())).ok_or_else(|| format!("split_value: no part {i}"))
}

fn chr(args: &[Value]) -> Result<Value, String> {
    let code = int("chr", &args[0])?;
    u32::try_from(code)
        .ok()
        .and_then(char::from_u32)
        .map(|c| Value::String(c.to_string()))
        .ok_or_else(|| format!("chr: {code} is not a character"))
}

fn abs(args: &[Value]) -> Result<Value, String> {
    match &args[0] {
        Value::Int(i) => i.checked_abs().map(Value::Int).ok_or_else(|| "abs overflows".into()),
        Value::Uint(u) => Ok(Value::Uint(*u)),
        other => Ok(Value::Float(number("abs", other)?.abs())),
    }
}

fn round(args: &[Value]) -> Result<Value, String> {
    let x = number("round", &args[0])?;
    match args.get(1) {
        None => match &args[0] {
            Value::Int(_) | Value::Uint(_) => Ok(args[0].clone()),
            _ => Ok(Value::Int(x.round() as i64)),
        },
        Some(d) => {
            let digits = d.as_i64().ok_or("round's second argument must be an integer")?;
            let scale = 10f64.powi(digits.clamp(-15, 15) as i32);
            Ok(Value::Float((x * scale).round() / scale))
        }
    }
}

/// eKuiper's `log(x)` is the base-10 logarithm; `log(b, x)` takes a base.
fn log(args: &[Value]) -> Result<Value, String> {
    let (base, x) = match args {
        [x] => (10.0, number("log", x)?),
        [b, x] => (number("log", b)?, number("log", x)?),
        _ => unreachable!("arity is checked when the rule is planned"),
    };
    // The exact forms first: x.log(10.0) of 1000 is 2.9999999999999996.
    let r = if base == 10.0 {
        x.log10()
    } else if base == 2.0 {
        x.log2()
    } else {
        x.log(base)
    };
    if r.is_nan() {
        return Err(format!("log is undefined for {x} in base {base}"));
    }
    Ok(Value::Float(r))
}

fn modulo(args: &[Value]) -> Result<Value, String> {
    match (&args[0], &args[1]) {
        (Value::Int(_), Value::Int(0)) => Err("mod: division by zero".into()),
        (Value::Int(x), Value::Int(y)) => Ok(Value::Int(x.wrapping_rem(*y))),
        (x, y) => Ok(Value::Float(number("mod", x)? % number("mod", y)?)),
    }
}

fn sign(args: &[Value]) -> Result<Value, String> {
    let x = number("sign", &args[0])?;
    Ok(Value::Int(if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }))
}

/// `cast(x, "bigint" | "float" | "string" | "boolean")`, with eKuiper's
/// conversions: strings parse, booleans are 0/1, floats truncate.
fn cast(args: &[Value]) -> Result<Value, String> {
    let to = string("cast", &args[1])?;
    let v = &args[0];
    let fail = || format!("cannot cast {} {} to {to}", v.type_name(), v.to_json());
    Ok(match to.to_ascii_lowercase().as_str() {
        // An unsigned value stays unsigned: eKuiper's bigint cast keeps a uint64.
        "bigint" if matches!(v, Value::Uint(_)) => v.clone(),
        "bigint" => Value::Int(match v {
            Value::Int(i) => *i,
            Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => f.trunc() as i64,
            Value::Bool(b) => i64::from(*b),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .or_else(|_| s.trim().parse::<f64>().map(|f| f.trunc() as i64))
                .map_err(|_| fail())?,
            _ => return Err(fail()),
        }),
        "float" => Value::Float(match v {
            Value::Int(i) => *i as f64,
            Value::Uint(u) => *u as f64,
            Value::Float(f) => *f,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::String(s) => s.trim().parse::<f64>().map_err(|_| fail())?,
            _ => return Err(fail()),
        }),
        "string" => Value::String(match v {
            Value::String(s) => s.clone(),
            Value::Bytes(b) => String::from_utf8(b.clone()).map_err(|_| fail())?,
            other => other.to_json().to_string(),
        }),
        "boolean" => Value::Bool(match v {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Uint(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "1" => true,
                "false" | "f" | "0" => false,
                _ => return Err(fail()),
            },
            _ => return Err(fail()),
        }),
        _ => return Err(format!("cast: unknown type {to:?}; the types are {}", CAST_TYPES.join(", "))),
    })
}

fn parse_json(args: &[Value]) -> Result<Value, String> {
    let text = string("parse_json", &args[0])?;
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("parse_json: {e}"))?;
    Ok(Value::from_json(&json))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `format_time(t, format)`: `t` in milliseconds since the epoch, or a string
/// as `now()` gives it; the format in eKuiper's letters (see [`format_ms`]),
/// in UTC.
fn format_time(args: &[Value]) -> Result<Value, String> {
    let ms = match &args[0] {
        Value::Int(ms) => *ms,
        Value::Float(ms) => *ms as i64,
        Value::String(s) => parse_rfc3339_ms(s).ok_or_else(|| format!("format_time: {s:?} is not a time"))?,
        other => return Err(format!("format_time expects a time, got {}", other.type_name())),
    };
    Ok(Value::String(format_ms(ms, string("format_time", &args[1])?)?))
}

/// The civil date and time of `ms` (UTC): (year, month, day, hour, minute,
/// second, millisecond). Howard Hinnant's days-to-civil algorithm.
fn civil(ms: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000) as u32);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, milli)
}

/// Days since 1970-01-01 of a civil date (the inverse of [`civil`]'s date part).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-02T17:50:00.123Z` (what `now()` returns) to milliseconds.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &s[19..];
    let (milli, zone) = match rest.strip_prefix('.') {
        Some(frac) => {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            let ms = frac[..digits.min(3)].parse::<u32>().ok()? * 10u32.pow(3 - digits.min(3) as u32);
            (ms, &frac[digits..])
        }
        None => (0, rest),
    };
    if zone != "Z" || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    Some(((days * 86_400 + i64::from(h * 3600 + mi * 60 + sec)) * 1000) + i64::from(milli))
}

/// `2026-12-02T17:50:00.123Z`: what `now()` returns.
fn rfc3339_ms(ms: i64) -> String {
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];

/// Formats `ms` (UTC) with eKuiper's `format_time` letters: `G`, `YYYY`/`yyyy`,
/// `YY`, `M` to `MMMM`, `d`, `dd`, `EEE`, `EEEE`, `H`, `HH`, `h`, `hh`, `a`,
/// `m`, `mm`, `s`, `ss`, `S` to `SSS` (a fraction with its dot, as eKuiper
/// prints it), `z`, `Z`, `X` to `XXX`; other characters are copied.
fn format_ms(ms: i64, format: &str) -> Result<String, String> {
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    let weekday = WEEKDAYS[ms.div_euclid(86_400_000).rem_euclid(7) as usize];
    let month = MONTHS[mo as usize - 1];
    let hour12 = if h % 12 == 0 { 12 } else { h % 12 };
    let mut out = String::with_capacity(format.len() + 8);
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        match (c, run) {
            ('G', _) => out.push_str("AD"),
            ('Y' | 'y', 4) => out.push_str(&format!("{y:04}")),
            ('Y' | 'y', 2) => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            ('M', 1) => out.push_str(&mo.to_string()),
            ('M', 2) => out.push_str(&format!("{mo:02}")),
            ('M', 3) => out.push_str(&month[..3]),
            ('M', 4) => out.push_str(month),
            ('d', 1) => out.push_str(&d.to_string()),
            ('d', 2) => out.push_str(&format!("{d:02}")),
            ('E', 3) => out.push_str(&weekday[..3]),
            ('E', 4) => out.push_str(weekday),
            ('H', 1) => out.push_str(&h.to_string()),
            ('H', 2) => out.push_str(&format!("{h:02}")),
            ('h', 1) => out.push_str(&hour12.to_string()),
            ('h', 2) => out.push_str(&format!("{hour12:02}")),
            ('a', 1) => out.push_str(if h < 12 { "AM" } else { "PM" }),
            ('m', 1) => out.push_str(&mi.to_string()),
            ('m', 2) => out.push_str(&format!("{mi:02}")),
            ('s', 1) => out.push_str(&s.to_string()),
            ('s', 2) => out.push_str(&format!("{s:02}")),
            ('S', 1..=3) => out.push_str(&format!(".{:03}", milli)[..=run]),
            ('z', 1) => out.push_str("UTC"),
            ('Z', 1) => out.push_str("+0000"),
            ('X', 1) => out.push_str("+00"),
            ('X', 2) => out.push_str("+0000"),
            ('X', 3) => out.push_str("+00:00"),
            (c, _) if c.is_ascii_alphabetic() && c != 'T' => {
                return Err(format!(
                    "format_time: unsupported pattern {:?}",
                    chars[i..i + run].iter().collect::<String>()
                ))
            }
            (_, _) => chars[i..i + run].iter().for_each(|&c| out.push(c)),
        }
        i += run;
    }
    Ok(out)
}

/// An event time in milliseconds since the epoch, read from a stream's
/// `TIMESTAMP` field: a number of milliseconds, or a string in the stream's
/// `TIMESTAMP_FORMAT` (eKuiper's letters, UTC) or, without one, as `now()`
/// writes it (`2026-12-02T17:50:00.123Z`).
pub fn event_time(v: &Value, format: Option<&str>) -> Result<i64, String> {
    match v {
        Value::Int(ms) => Ok(*ms),
        Value::Float(ms) if ms.is_finite() => Ok(*ms as i64),
        Value::String(s) => match format {
            Some(f) => parse_formatted(s, f),
            None => parse_rfc3339_ms(s).ok_or_else(|| format!("{s:?} is not a time like 2026-12-02T17:50:00.123Z")),
        },
        other => Err(format!("an event time must be milliseconds or a time string, got {}", other.type_name())),
    }
}

/// Checks a `TIMESTAMP_FORMAT`: only the letters [`parse_formatted`] reads.
pub fn check_time_format(format: &str) -> Result<(), String> {
    parse_formatted("", format).map(|_| ()).or_else(|e| if e.starts_with("unsupported") { Err(e) } else { Ok(()) })
}

/// The inverse of [`format_ms`] for the letters a timestamp needs: `yyyy`,
/// `MM`/`M`, `dd`/`d`, `HH`/`H`, `mm`/`m`, `ss`/`s`, `S` to `SSS` (a fraction
/// with its dot); every other character matches itself.
fn parse_formatted(text: &str, format: &str) -> Result<i64, String> {
    let chars: Vec<char> = format.chars().collect();
    let (mut y, mut mo, mut d, mut h, mut mi, mut sec, mut milli) = (1970i64, 1u32, 1u32, 0u32, 0u32, 0u32, 0u32);
    let mut rest = text;
    let mismatch = || format!("{text:?} does not match the format {format:?}");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        // Fixed widths for doubled letters, up to two digits for single ones.
        let digits = |rest: &mut &str, max: usize, exact: bool| -> Result<u32, String> {
            let n = rest.bytes().take(max).take_while(u8::is_ascii_digit).count();
            if n == 0 || (exact && n != max) {
                return Err(mismatch());
            }
            let v = rest[..n].parse::<u32>().map_err(|_| mismatch())?;
            *rest = &rest[n..];
            Ok(v)
        };
        match (c, run) {
            ('y' | 'Y', 4) => y = i64::from(digits(&mut rest, 4, true)?),
            ('M', 1 | 2) => mo = digits(&mut rest, 2, run == 2)?,
            ('d', 1 | 2) => d = digits(&mut rest, 2, run == 2)?,
            ('H', 1 | 2) => h = digits(&mut rest, 2, run == 2)?,
            ('m', 1 | 2) => mi = digits(&mut rest, 2, run == 2)?,
            ('s', 1 | 2) => sec = digits(&mut rest, 2, run == 2)?,
            ('S', 1..=3) => {
                rest = rest.strip_prefix('.').ok_or_else(mismatch)?;
                milli = digits(&mut rest, run, true)? * 10u32.pow(3 - run as u32);
            }
            (c, _) if c.is_ascii_alphabetic() && c != 'T' && c != 'Z' => {
                return Err(format!(
                    "unsupported letters {:?} in a time format; supported: yyyy MM dd HH mm ss SSS",
                    chars[i..i + run].iter().collect::<String>()
                ))
            }
            (c, _) => {
                for _ in 0..run {
                    rest = rest.strip_prefix(c).ok_or_else(mismatch)?;
                }
            }
        }
        i += run;
    }
    if !rest.is_empty() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(mismatch());
    }
    let days = days_from_civil(y, mo, d);
    Ok((days * 86_400 + i64::from(h * 3600 + mi * 60 + sec)) * 1000 + i64::from(milli))
}

#[cfg(test)]
mod tests;
