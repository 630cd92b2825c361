//! The built-in functions, one table case per function and edge.

use super::*;
use std::collections::BTreeMap;

fn call(name: &str, args: Vec<Value>) -> Result<Value, String> {
    let f = Builtin::lookup(name).unwrap_or_else(|| panic!("no builtin {name}"));
    f.check_arity(args.len()).map_err(|e| e.to_string())?;
    f.apply(&args)
}

#[test]
fn builtins_table() {
    let s = |x: &str| Value::from(x);
    let i = Value::Int;
    let f = Value::Float;
    let cases: Vec<(&str, Vec<Value>, Result<Value, &str>)> = vec![
        ("lower", vec![s("AbC")], Ok(s("abc"))),
        ("UPPER", vec![s("AbC")], Ok(s("ABC"))),
        ("trim", vec![s("  a ")], Ok(s("a"))),
        ("ltrim", vec![s("  a ")], Ok(s("a "))),
        ("rtrim", vec![s("  a ")], Ok(s("  a"))),
        ("concat", vec![s("a"), s("b"), s("c")], Ok(s("abc"))),
        ("length", vec![s("héllo")], Ok(i(5))),
        ("numbytes", vec![s("héllo")], Ok(i(6))),
        ("length", vec![Value::List(vec![Value::Null; 3])], Ok(i(3))),
        ("substring", vec![s("héllo"), i(1), i(3)], Ok(s("él"))),
        ("substring", vec![s("hello"), i(3)], Ok(s("lo"))),
        ("substring", vec![s("hello"), i(3), i(99)], Ok(s("lo"))),
        ("startswith", vec![s("hello"), s("he")], Ok(Value::Bool(true))),
        ("endswith", vec![s("hello"), s("he")], Ok(Value::Bool(false))),
        ("indexof", vec![s("héllo"), s("l")], Ok(i(2))),
        ("indexof", vec![s("hello"), s("z")], Ok(i(-1))),
        ("lpad", vec![s("a"), i(2)], Ok(s("  a"))),
        ("rpad", vec![s("a"), i(2)], Ok(s("a  "))),
        ("reverse", vec![s("abc")], Ok(s("cba"))),
        ("split_value", vec![s("a/b/c"), s("/"), i(1)], Ok(s("b"))),
        ("chr", vec![i(65)], Ok(s("A"))),
        ("abs", vec![i(-4)], Ok(i(4))),
        ("abs", vec![f(-1.5)], Ok(f(1.5))),
        ("round", vec![f(2.5)], Ok(i(3))),
        ("round", vec![f(1.2345), i(2)], Ok(f(1.23))),
        ("floor", vec![f(-1.5)], Ok(i(-2))),
        ("ceil", vec![f(1.1)], Ok(i(2))),
        ("power", vec![i(2), i(10)], Ok(f(1024.0))),
        ("sqrt", vec![i(16)], Ok(f(4.0))),
        ("log", vec![i(1000)], Ok(f(3.0))),
        ("log", vec![i(2), i(8)], Ok(f(3.0))),
        ("mod", vec![i(7), i(3)], Ok(i(1))),
        ("mod", vec![i(7), i(0)], Err("mod: division by zero")),
        ("sign", vec![f(-0.5)], Ok(i(-1))),
        ("bitand", vec![i(6), i(3)], Ok(i(2))),
        ("bitxor", vec![i(6), i(3)], Ok(i(5))),
        ("cast", vec![s(" 42 "), s("bigint")], Ok(i(42))),
        ("cast", vec![f(4.9), s("bigint")], Ok(i(4))),
        ("cast", vec![i(3), s("float")], Ok(f(3.0))),
        ("cast", vec![i(3), s("string")], Ok(s("3"))),
        ("cast", vec![s("true"), s("boolean")], Ok(Value::Bool(true))),
        ("cast", vec![s("x"), s("bigint")], Err("cannot cast string \"x\" to bigint")),
        ("to_json", vec![Value::List(vec![i(1), s("a")])], Ok(s("[1,\"a\"]"))),
        (
            "parse_json",
            vec![s("{\"a\":[1,2]}")],
            Ok(Value::Map(BTreeMap::from([("a".into(), Value::List(vec![i(1), i(2)]))]))),
        ),
        ("coalesce", vec![Value::Null, i(2), i(3)], Ok(i(2))),
        ("isnull", vec![Value::Null], Ok(Value::Bool(true))),
        ("cardinality", vec![Value::List(vec![i(1), i(2)])], Ok(i(2))),
        ("format_time", vec![i(1_709_210_096_789), s("YYYY-MM-dd HH:mm:ssSSS")], Ok(s("2024-02-29 12:34:56.789"))),
        ("format_time", vec![s("2024-02-29T12:34:56.789Z"), s("yy/M/d h a")], Ok(s("24/2/29 12 PM"))),
        (
            "format_time",
            vec![i(0), s("EEEE d MMMM yyyy, EEE MMM HH:mm:ssS XXX z")],
            Ok(s("Thursday 1 January 1970, Thu Jan 00:00:00.0 +00:00 UTC")),
        ),
        ("format_time", vec![i(1_709_210_096_789), s("YYYY-MM-dd T HH:mm:ss Z")], Ok(s("2024-02-29 T 12:34:56 +0000"))),
        ("format_time", vec![i(0), s("yyyy QQ")], Err("format_time: unsupported pattern \"QQ\"")),
        ("lower", vec![Value::Null], Ok(Value::Null)),
        ("lower", vec![i(1)], Err("lower expects a string, got int")),
        ("abs", vec![i(i64::MIN)], Err("abs overflows")),
        ("lpad", vec![s("a"), i(1 << 40)], Err("lpad pads at most 1048576 characters")),
    ];
    for (name, args, want) in cases {
        assert_eq!(call(name, args.clone()), want.map_err(str::to_string), "{name}({args:?})");
    }
}

#[test]
fn now_and_tstamp_read_the_clock_and_round_trip() {
    let before = now_ms();
    let Ok(Value::Int(t)) = call("tstamp", vec![]) else { panic!("tstamp") };
    let Ok(Value::String(now)) = call("now", vec![]) else { panic!("now") };
    let parsed = parse_rfc3339_ms(&now).unwrap();
    assert!(before <= t && t <= parsed + 1000, "{before} {t} {now}");
    for ms in [0, 951_782_400_000, 1_709_210_096_789, 4_102_444_799_999] {
        let text = rfc3339_ms(ms);
        assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{text}");
    }
}

#[test]
fn lookup_is_case_insensitive_and_arity_is_checked() {
    assert_eq!(Builtin::lookup("LOWER"), Builtin::lookup("lower"));
    assert!(Builtin::lookup("accumulateWordCount").is_none());
    let arity = |name: &str, n: usize| Builtin::lookup(name).unwrap().check_arity(n).map_err(|e| e.to_string());
    assert_eq!(arity("concat", 0), Err("concat expects at least 1 argument, got 0".into()));
    assert!(arity("round", 2).is_ok());
    assert_eq!(arity("upper", 2), Err("upper expects 1 argument, got 2".into()));
    assert_eq!(arity("substring", 1), Err("substring expects 2 or 3 arguments, got 1".into()));
    assert_eq!(arity("pi", 1), Err("pi expects 0 arguments, got 1".into()));
}

#[test]
fn event_times_read_milliseconds_and_formatted_strings() {
    let s = |t: &str| Value::from(t);
    assert_eq!(event_time(&Value::Int(1_709_210_096_789), None), Ok(1_709_210_096_789));
    assert_eq!(event_time(&s("2024-02-29T12:34:56.789Z"), None), Ok(1_709_210_096_789));
    assert_eq!(event_time(&s("2024-02-29 12:34:56.789"), Some("yyyy-MM-dd HH:mm:ssSSS")), Ok(1_709_210_096_789));
    assert_eq!(event_time(&s("29/2/2024 12:34"), Some("d/M/yyyy HH:mm")), Ok(1_709_210_040_000));
    // What format_time writes, event_time reads back.
    let written = format_ms(1_709_210_096_789, "yyyy-MM-dd'T'HH:mm:ssSSS").unwrap();
    assert_eq!(event_time(&s(&written), Some("yyyy-MM-dd'T'HH:mm:ssSSS")), Ok(1_709_210_096_789));
    for (v, format) in [(s("2024-02-29"), Some("yyyy-MM-dd HH")), (s("nope"), None), (Value::Bool(true), None)] {
        assert!(event_time(&v, format).is_err(), "{v:?}");
    }
    assert!(check_time_format("yyyy-MM-dd HH:mm:ssSSS").is_ok());
    assert!(check_time_format("EEE yyyy").unwrap_err().contains("unsupported letters \"EEE\""));
}
