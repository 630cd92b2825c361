//! The planner: what eKuiper's SQL plans to, and what it refuses, by name.

use super::*;

#[test]
fn the_supported_subset_plans() {
    let p = parse_select(
        "SELECT *, lower(name) AS l, accumulateWordCount(text, ' ') , x + 1, demo.y, \
         echo(echo(a)) FROM demo WHERE a > 1 AND NOT (b = 'x' OR c IS NULL)",
    )
    .unwrap();
    assert_eq!(p.stream, "demo");
    assert_eq!(p.fields.len(), 6);
    assert_eq!(p.fields[0], SelectField::Wildcard);
    let names: Vec<&str> = p
        .fields
        .iter()
        .filter_map(|f| match f {
            SelectField::Expr { name, .. } => Some(name.as_str()),
            SelectField::Wildcard => None,
        })
        .collect();
    assert_eq!(names, vec!["l", "accumulateWordCount", "kuiper_field_3", "y", "echo"]);
    // Three plugin call sites: accumulateWordCount, and echo twice (nested).
    let functions: Vec<&str> = p.calls.iter().map(|c| c.function.as_str()).collect();
    assert_eq!(functions, vec!["accumulateWordCount", "echo", "echo"]);
    assert_eq!(p.calls[0].args[1].literal, Some(Value::from(" ")));
    assert_eq!(p.calls[0].args[0].column.as_deref(), Some("text"));
    assert!(p.filter.is_some());
}

/// The depth and node count of a planned expression, as `check_limits` sees them.
fn measure(e: &Expr) -> (usize, usize) {
    let (mut nodes, mut deepest, mut todo) = (0, 0, vec![(e, 1)]);
    while let Some((e, d)) = todo.pop() {
        nodes += 1;
        deepest = deepest.max(d);
        todo.extend(e.children().map(|c| (c, d + 1)));
    }
    (deepest, nodes)
}

fn first_expr(p: &SelectPlan) -> &Expr {
    match &p.fields[0] {
        SelectField::Expr { expr, .. } => expr,
        SelectField::Wildcard => panic!("no expression"),
    }
}

#[test]
fn long_operator_runs_plan_flat() {
    // Issue 10, defect 1: these were accepted as 300-deep trees that
    // overflowed the stack when evaluated.
    let sum = vec!["x"; 300].join(" + ");
    let p = parse_select(&format!("SELECT {sum} AS y FROM s1")).unwrap();
    assert_eq!(measure(first_expr(&p)), (2, 301));
    let and = (0..300).map(|i| format!("x > {i}")).collect::<Vec<_>>().join(" AND ");
    let p = parse_select(&format!("SELECT * FROM s1 WHERE {and}")).unwrap();
    // The comparisons fold into the run too: ((x > 0) AND x > 1) AND … is
    // the fold x, > 0, AND (x > 1), … from the left.
    assert_eq!(measure(p.filter.as_ref().unwrap()), (3, 900));
    // Mixed precedence: a run of `+` over runs of `*`, and a bracketed run folds in.
    let p = parse_select("SELECT (a + b) + c * d * e - f AS y FROM s").unwrap();
    let Expr::Chain(first, rest) = first_expr(&p) else { panic!("{p:?}") };
    assert_eq!(**first, Expr::Column("a".into()));
    let ops: Vec<BinOp> = rest.iter().map(|(op, _)| *op).collect();
    assert_eq!(ops, vec![BinOp::Add, BinOp::Add, BinOp::Sub]);
    assert!(matches!(&rest[1].1, Expr::Chain(_, r) if r.len() == 2));
}

#[test]
fn size_limits_are_named() {
    let is_null = |n: usize| format!("SELECT x{} AS y FROM s", " IS NULL".repeat(n));
    // The deepest accepted expression: 127 IS NULL over one column.
    let p = parse_select(&is_null(MAX_EXPR_DEPTH - 1)).unwrap();
    assert_eq!(measure(first_expr(&p)).0, MAX_EXPR_DEPTH);
    let err = parse_select(&is_null(300)).unwrap_err().to_string();
    assert_eq!(err, "expression is nested 301 deep; the limit is 128");
    let many = vec!["x"; MAX_EXPR_NODES + 1].join("+");
    let err = parse_select(&format!("SELECT {many} FROM s")).unwrap_err().to_string();
    assert!(err.contains("more than 10000 nodes; the limit is 10000"), "{err}");
    let huge = format!("SELECT {} AS y FROM s", vec!["x"; 100_000].join("+"));
    let err = parse_select(&huge).unwrap_err().to_string();
    assert_eq!(err, format!("the rule's SQL is {} bytes long; the limit is 65536", huge.len()));
    // Within the byte limit, the worst shapes the parser builds without
    // its own recursion limit plan (or fail) on the planner's stack.
    for text in [
        format!("SELECT {} FROM s", vec!["x"; 30_000].join("+")),
        format!("SELECT x{} FROM s", " IS NULL".repeat(8_000)),
        format!("SELECT x{} FROM s", "::int".repeat(12_000)),
        format!("SELECT x{} FROM s", "[1]".repeat(20_000)),
        format!("SELECT {} FROM s", vec!["x"; 10_000].join(" AND ")),
    ] {
        assert!(text.len() <= MAX_SQL_BYTES);
        assert!(parse_select(&text).is_err());
    }
}

#[test]
fn what_is_not_supported_is_named() {
    let cases = [
        ("SELEC * FROM demo", "invalid SQL"),
        ("SELECT * FROM a, b", "exactly one stream"),
        ("SELECT * FROM a JOIN b ON a.x = b.x", "JOIN"),
        ("SELECT count(*) FROM a GROUP BY b", "GROUP BY"),
        ("SELECT * FROM a ORDER BY x", "ORDER BY"),
        ("SELECT * FROM a; SELECT * FROM b", "exactly one SQL statement"),
        ("DELETE FROM a", "must be a SELECT"),
        ("SELECT lower(a, b) FROM s", "lower expects 1 argument"),
    ];
    for (q, want) in cases {
        let err = parse_select(q).unwrap_err().to_string();
        assert!(err.contains(want), "{q}: {err}");
    }
}

/// Counts the rows each call site is asked for; answers with the row's first argument.
struct Echo(std::sync::Mutex<Vec<(usize, usize)>>);

impl crate::Functions for Echo {
    type Error = ();
    async fn call(&self, site: usize, rows: Vec<Vec<Value>>) -> Result<Vec<crate::Cell>, ()> {
        self.0.lock().unwrap().push((site, rows.len()));
        Ok(rows.into_iter().map(|r| Ok(r.into_iter().next().unwrap_or_default())).collect())
    }
}

fn sample() -> oort_proto::Record {
    let json = serde_json::json!({
        "a": {"b": [10, 20, 30], "c": {"d": "deep"}},
        "s": "hello",
        "n": 5,
        "f": 2.5,
        "nothing": null,
        "select": "reserved",
        "hello world": 1
    });
    let serde_json::Value::Object(m) = json else { unreachable!() };
    let mut r = oort_proto::Record::from_fields(m.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect());
    r.metadata.insert("topic".into(), Value::from("sensors/1"));
    r
}

/// Evaluates `expr` over [`sample`] as `SELECT <expr> AS v FROM s`.
async fn value_of(expr: &str) -> Result<Value, String> {
    let plan = parse_select(&format!("SELECT {expr} AS v FROM s")).map_err(|e| e.to_string())?;
    let out = crate::run_batch(&plan, vec![sample()], &Echo(Default::default())).await.unwrap();
    match out.records.first() {
        Some(r) => Ok(r.fields["v"].clone()),
        None => Err(out.project.last_exception.unwrap_or_default()),
    }
}

#[tokio::test]
async fn ekuipers_lexical_rules_and_expressions_evaluate() {
    let s = |x: &str| Value::from(x);
    let (t, f) = (Value::Bool(true), Value::Bool(false));
    let cases: Vec<(&str, Result<Value, &str>)> = vec![
        // Both quotes are string literals; backticks quote identifiers.
        (r#""it's""#, Ok(s("it's"))),
        ("'say \"hi\"'", Ok(s("say \"hi\""))),
        ("`select`", Ok(s("reserved"))),
        ("`hello world` + 1", Ok(Value::Int(2))),
        // Nested fields and arrays (eKuiper's json_expr.md).
        ("a->c->d", Ok(s("deep"))),
        ("a->b[1]", Ok(Value::Int(20))),
        ("a->b[-1]", Ok(Value::Int(30))),
        ("a->b[7]", Ok(Value::Null)),
        ("a->b[0:2]", Ok(Value::List(vec![Value::Int(10), Value::Int(20)]))),
        ("a->b[1:]", Ok(Value::List(vec![Value::Int(20), Value::Int(30)]))),
        ("a->missing->x", Ok(Value::Null)),
        ("a->b[0] + 1", Ok(Value::Int(11))),
        ("s->x", Ok(Value::Null)),
        // CASE, IN, BETWEEN, LIKE.
        ("CASE WHEN n > 3 THEN 'big' ELSE 'small' END", Ok(s("big"))),
        ("CASE n WHEN 1 THEN 'one' WHEN 5 THEN 'five' END", Ok(s("five"))),
        ("CASE n WHEN 1 THEN 'one' END", Ok(Value::Null)),
        ("n IN (1, 5, 7)", Ok(t.clone())),
        ("n NOT IN (1, 7)", Ok(t.clone())),
        ("nothing IN (1, 7)", Ok(f.clone())),
        ("n BETWEEN 5 AND 6", Ok(t.clone())),
        ("f NOT BETWEEN 1 AND 2", Ok(t.clone())),
        ("s LIKE 'h%o'", Ok(t.clone())),
        ("s LIKE 'h_llo'", Ok(t.clone())),
        ("s LIKE '%z%'", Ok(f.clone())),
        ("s NOT LIKE 'H%'", Ok(t.clone())),
        ("s LIKE 'h\\%'", Ok(f.clone())),
        // Bitwise operators, casts, meta().
        ("n & 4", Ok(Value::Int(4))),
        ("n | 2", Ok(Value::Int(7))),
        ("n ^ 1", Ok(Value::Int(4))),
        ("cast(f, \"bigint\")", Ok(Value::Int(2))),
        ("CAST(n AS STRING)", Ok(s("5"))),
        ("meta(topic)", Ok(s("sensors/1"))),
        ("meta(\"topic\")", Ok(s("sensors/1"))),
        ("meta(nope)", Ok(Value::Null)),
        ("meta(*)->topic", Ok(s("sensors/1"))),
        ("concat(s, \" \", upper(\"w\"))", Ok(s("hello W"))),
        ("s LIKE 1", Err("v: LIKE expects strings, got string LIKE int")),
        // Calls sqlparser reads as special forms.
        ("ceil(f)", Ok(Value::Int(3))),
        ("FLOOR(f)", Ok(Value::Int(2))),
        ("trim(' x ')", Ok(s("x"))),
        ("substring(s, 1, 3)", Ok(s("el"))),
        ("substring(s, 3)", Ok(s("lo"))),
    ];
    for (expr, want) in cases {
        assert_eq!(value_of(expr).await, want.map_err(str::to_string), "{expr}");
    }
}

#[test]
fn a_double_quoted_argument_is_a_string_literal_for_plugins() {
    // Issue 11, item 0: the quoting eKuiper's docs recommend on a command line.
    let p = parse_select(r#"SELECT accumulateWordCount(text, " ") AS total FROM words"#).unwrap();
    assert_eq!(p.calls[0].args[1].literal, Some(Value::from(" ")));
    assert_eq!(p.calls[0].args[1].column, None);
    let p = parse_select("SELECT `text` FROM words").unwrap();
    assert_eq!(p.fields[0], SelectField::Expr { expr: Expr::Column("text".into()), name: "text".into() });
    // Unaliased paths are named after their last field, meta() after itself.
    let p = parse_select("SELECT a->b, meta(topic) FROM s").unwrap();
    let names: Vec<_> = p
        .fields
        .iter()
        .map(|f| match f {
            SelectField::Expr { name, .. } => name.clone(),
            SelectField::Wildcard => "*".into(),
        })
        .collect();
    assert_eq!(names, ["b", "meta"]);
}

#[tokio::test]
async fn a_case_branch_calls_its_plugin_only_for_the_rows_it_takes() {
    let plan = parse_select("SELECT CASE WHEN n > 2 THEN echo(n) ELSE echo2(n) END AS v FROM s").unwrap();
    let rows = (0..5)
        .map(|n| oort_proto::Record::from_fields([("n".to_string(), Value::Int(n))].into_iter().collect()))
        .collect();
    let echo = Echo(Default::default());
    let out = crate::run_batch(&plan, rows, &echo).await.unwrap();
    let got: Vec<Value> = out.records.iter().map(|r| r.fields["v"].clone()).collect();
    assert_eq!(got, (0..5).map(Value::Int).collect::<Vec<_>>());
    // Site 0 (echo) saw rows 3 and 4; site 1 (echo2) rows 0 to 2: one batch each.
    assert_eq!(*echo.0.lock().unwrap(), vec![(0, 2), (1, 3)]);
}

#[test]
fn bad_ekuiper_expressions_are_named() {
    let cases = [
        ("SELECT cast(n, \"int4\") FROM s", "the second argument of cast must be one of the strings \"bigint\""),
        ("SELECT cast(n, t) FROM s", "the second argument of cast must be one of the strings"),
        ("SELECT CAST(n AS DATE) FROM s", "CAST to DATE is not supported yet"),
        ("SELECT a->(b + 1) FROM s", "the right side of -> must be a field name"),
        ("SELECT meta(a, b) FROM s", "meta takes one argument"),
        ("SELECT n IN (SELECT 1) FROM s", "is not supported yet"),
        ("SELECT substring(s) FROM s", "substring expects 2 or 3 arguments, got 1"),
        ("SELECT substring(s FROM 1) FROM s", "is not supported yet"),
    ];
    for (q, want) in cases {
        let err = parse_select(q).unwrap_err().to_string();
        assert!(err.contains(want), "{q}: {err}");
    }
    // A long path is bounded like any other expression.
    let path = format!("SELECT a{} FROM s", "->b".repeat(300));
    let err = parse_select(&path).unwrap_err().to_string();
    assert!(err.contains("the limit is 128"), "{err}");
}

fn grouping(q: &str) -> Grouping {
    parse_select(q).unwrap_or_else(|e| panic!("{q}: {e}")).grouping.expect("a window")
}

#[test]
fn ekuipers_window_syntax_plans() {
    let g = grouping("SELECT avg(temperature) FROM demo GROUP BY TUMBLINGWINDOW(ss, 10)");
    assert_eq!(g.window, WindowSpec::Tumbling { length_ms: 10_000 });
    assert_eq!(g.aggregates.len(), 1);
    let g =
        grouping("SELECT count(*), deviceId FROM demo GROUP BY deviceId, HOPPINGWINDOW(mi, 10, 5) HAVING count(*) > 2");
    assert_eq!(g.window, WindowSpec::Hopping { length_ms: 600_000, hop_ms: 300_000 });
    assert_eq!(g.keys, vec![Expr::Column("deviceId".into())]);
    assert_eq!(g.aggregates.len(), 2, "HAVING's count(*) is an aggregate of its own");
    assert_eq!(g.aggregates[0].arg, None);
    let g = grouping("SELECT sum(x), window_start(), window_end() FROM s GROUP BY COUNTWINDOW(5, 1)");
    assert_eq!(g.window, WindowSpec::Count { size: 5, interval: 1 });
    assert_eq!(
        grouping("SELECT max(x) FROM s GROUP BY COUNTWINDOW(3)").window,
        WindowSpec::Count { size: 3, interval: 3 }
    );
    for unit in [("dd", 86_400_000), ("hh", 3_600_000), ("mi", 60_000), ("ss", 1_000), ("ms", 1)] {
        let g = grouping(&format!("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW({}, 2)", unit.0));
        assert_eq!(g.window, WindowSpec::Tumbling { length_ms: 2 * unit.1 });
    }
    let p = parse_select(
        "SELECT count(*), sum(x) AS s, last_value(x, true), window_end() FROM s GROUP BY TUMBLINGWINDOW(ss, 1)",
    )
    .unwrap();
    let names: Vec<_> = p
        .fields
        .iter()
        .map(|f| match f {
            SelectField::Expr { name, .. } => name.as_str(),
            SelectField::Wildcard => "*",
        })
        .collect();
    assert_eq!(names, ["count", "s", "last_value", "window_end"]);
    assert!(p.grouping.unwrap().aggregates[2].slot.ignore_null);
}

#[test]
fn windows_and_aggregates_are_refused_where_they_do_not_belong() {
    let cases = [
        ("SELECT count(*) FROM s", "aggregate function count is not allowed without a window"),
        ("SELECT x FROM s GROUP BY x", "GROUP BY needs a window"),
        ("SELECT x FROM s WHERE count(*) > 1 GROUP BY TUMBLINGWINDOW(ss, 1)", "not allowed in WHERE"),
        ("SELECT sum(count(*)) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", "not allowed inside another aggregate"),
        ("SELECT count(*) FROM s GROUP BY sum(x), TUMBLINGWINDOW(ss, 1)", "not allowed in GROUP BY"),
        ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1), COUNTWINDOW(2)", "at most one window"),
        ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss)", "TUMBLINGWINDOW takes (unit, length)"),
        ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(yy, 1)", "the time unit must be one of dd, hh, mi, ss, ms"),
        ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 0)", "the length must be a positive integer"),
        ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(dd, 8)", "at most 7 days"),
        ("SELECT count(*) FROM s GROUP BY HOPPINGWINDOW(ss, 10, 30)", "the hop must not be longer than the window"),
        ("SELECT count(*) FROM s GROUP BY HOPPINGWINDOW(ms, 100000, 1)", "the limit is 10000"),
        ("SELECT count(*) FROM s GROUP BY COUNTWINDOW(5, 7)", "the interval must not be larger than the size"),
        ("SELECT count(*) FROM s GROUP BY HOPPINGWINDOW(ms, 100001, 100000)", "the limit is 10000"),
        ("SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss)", "SLIDINGWINDOW takes (unit, length[, delay])"),
        ("SELECT count(*) FROM s GROUP BY SESSIONWINDOW(ss, 10)", "SESSIONWINDOW takes (unit, timeout, maximum"),
        ("SELECT count(*) FROM s GROUP BY STATEWINDOW(a > 1)", "STATEWINDOW takes (begin condition, end condition)"),
        ("SELECT count(*) FROM s GROUP BY STATEWINDOW(count(*) > 1, a < 1)", "not allowed in a window's condition"),
        ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1) OVER (WHEN x > 1)", "belongs to SLIDINGWINDOW"),
        ("SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss, 1) OVER (PARTITION BY x)", "OVER (WHEN condition) only"),
        ("SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss, 1, 0)", "the delay must be a positive integer"),
        ("SELECT count(*) FROM s GROUP BY COUNTWINDOW(3) FILTER (WHERE sum(x) > 1)", "not allowed in a window's"),
        ("SELECT window_start() FROM s", "exists only in a window's select list or HAVING"),
        ("SELECT x FROM s HAVING x > 1", "HAVING needs a window"),
        ("SELECT count(x, y) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", "count takes one argument or *"),
        ("SELECT TUMBLINGWINDOW(ss, 1) FROM s", "belongs in GROUP BY"),
        ("SELECT deduplicate(x, 1) FROM s GROUP BY COUNTWINDOW(2)", "second argument must be true or false"),
        ("SELECT deduplicate(x) FROM s GROUP BY COUNTWINDOW(2)", "deduplicate takes (column, true or false)"),
    ];
    for (q, want) in cases {
        let err = parse_select(q).unwrap_err().to_string();
        assert!(err.contains(want), "{q}: {err}");
    }
}

/// A record of a string `k` and an `x`.
fn kx(k: &str, x: Value) -> oort_proto::Record {
    oort_proto::Record::from_fields([("k".to_string(), Value::from(k)), ("x".to_string(), x)].into_iter().collect())
}

/// What a windowed rule writes for `batch` arriving at `at`, with what is due
/// at `due`, each row as JSON; and the batch's filter outcome.
async fn window_output(
    plan: &SelectPlan,
    batch: Vec<oort_proto::Record>,
    echo: &Echo,
    at: i64,
    due: i64,
) -> (Vec<String>, crate::OpOutcome) {
    let g = plan.grouping.clone().expect("a window");
    let prepared = crate::prepare_window_rows(plan, &g, batch, echo).await.unwrap();
    let mut w = crate::window::WindowState::of(&g);
    let (mut groups, mut errors) = w.add(prepared.rows, at);
    let (later, more) = w.due(due);
    groups.extend(later);
    errors.extend(more);
    assert!(errors.is_empty(), "{errors:?}");
    let mut outcome = crate::OpOutcome::default();
    let out = crate::project_groups(plan, groups, echo, &mut outcome).await.unwrap();
    (out.iter().map(|r| r.fields_to_json().to_string()).collect(), prepared.filter)
}

#[tokio::test]
async fn a_window_groups_aggregates_filters_with_having_and_projects() {
    let plan = parse_select(
        "SELECT k, count(*) AS n, sum(x) AS total, avg(x) AS mean, echo(max(x)) AS top, window_end() - window_start() AS span \
         FROM s WHERE x > 0 GROUP BY k, TUMBLINGWINDOW(ms, 100) HAVING count(*) > 1",
    )
    .unwrap();
    let echo = Echo(Default::default());
    let batch = [("a", 1), ("b", 5), ("a", 3), ("a", -1), ("c", 7), ("c", 8)].map(|(k, x)| kx(k, Value::Int(x)));
    let (rows, filter) = window_output(&plan, batch.to_vec(), &echo, 1_050, 1_100).await;
    assert_eq!((filter.input, filter.output), (6, 5));
    assert_eq!(
        rows,
        [
            r#"{"k":"a","mean":2.0,"n":2,"span":100,"top":3,"total":4}"#,
            r#"{"k":"c","mean":7.5,"n":2,"span":100,"top":8,"total":15}"#
        ]
    );
    // The plugin in the select list saw the kept groups in one batch.
    assert_eq!(*echo.0.lock().unwrap(), vec![(0, 2)]);
}

#[tokio::test]
async fn a_row_whose_group_key_fails_leaves_the_other_rows_keyed_right() {
    let plan = parse_select("SELECT count(*) AS n, sum(x) AS s FROM s GROUP BY 12 / d, COUNTWINDOW(9)").unwrap();
    let g = plan.grouping.clone().unwrap();
    let rec = |d: i64, x: i64| {
        oort_proto::Record::from_fields(
            [("d".to_string(), Value::Int(d)), ("x".to_string(), Value::Int(x))].into_iter().collect(),
        )
    };
    let batch = vec![rec(1, 1), rec(0, 2), rec(2, 3), rec(4, 4)];
    let out = crate::prepare_window_rows(&plan, &g, batch, &Echo(Default::default())).await.unwrap();
    assert_eq!(out.aggregate.exceptions, 1, "12 / 0 fails");
    // The failed row still counts in the count window, aggregated nowhere.
    assert_eq!(out.rows.iter().map(|r| r.kept).collect::<Vec<_>>(), [true, false, true, true]);
    let keyed: Vec<(Vec<Value>, Vec<Value>)> =
        out.rows.iter().filter(|r| r.kept).map(|r| (r.key.clone(), r.args.clone())).collect();
    assert_eq!(
        keyed,
        [
            (vec![Value::Int(12)], vec![Value::Bool(true), Value::Int(1)]),
            (vec![Value::Int(6)], vec![Value::Bool(true), Value::Int(3)]),
            (vec![Value::Int(3)], vec![Value::Bool(true), Value::Int(4)]),
        ]
    );
}

#[tokio::test]
async fn an_aggregate_plugin_gets_each_groups_values_as_lists_in_one_call() {
    let q = "SELECT k, agg(x, k) AS a, count(*) AS n FROM s GROUP BY k, TUMBLINGWINDOW(ms, 100)";
    // Not knowing which plugins aggregate, the call plans per row.
    assert!(!parse_select(q).unwrap().calls[0].aggregate);
    let known: AggregateFunctions = ["agg".to_string()].into_iter().collect();
    let plan = parse_select_with(q, &known).unwrap();
    assert!(plan.calls[0].aggregate);
    let g = plan.grouping.clone().unwrap();
    // One collected list per argument, then count(*).
    let slots: Vec<AggFn> = g.aggregates.iter().map(|a| a.slot.func).collect();
    assert_eq!(slots, [AggFn::Collect, AggFn::Collect, AggFn::Count]);
    let echo = Echo(Default::default());
    let batch = vec![kx("a", Value::Int(1)), kx("b", Value::Int(5)), kx("a", Value::Null)];
    let (rows, _) = window_output(&plan, batch, &echo, 1_050, 1_100).await;
    // Echo answers with the first argument: the group's values, nulls kept.
    assert_eq!(rows, [r#"{"a":[1,null],"k":"a","n":2}"#, r#"{"a":[5],"k":"b","n":1}"#]);
    // Every group of the emission in one call, and none per row.
    assert_eq!(*echo.0.lock().unwrap(), vec![(0, 2)]);
}

#[test]
fn an_aggregate_plugin_is_refused_where_aggregates_do_not_belong() {
    let known: AggregateFunctions = ["agg".to_string()].into_iter().collect();
    let cases = [
        ("SELECT agg(x) FROM s", "aggregate function agg is not allowed without a window"),
        ("SELECT count(*) FROM s WHERE agg(x) > 1 GROUP BY TUMBLINGWINDOW(ss, 1)", "not allowed in WHERE"),
        ("SELECT agg(sum(x)) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", "inside another aggregate"),
        ("SELECT sum(agg(x)) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", "inside another aggregate"),
    ];
    for (q, want) in cases {
        let err = parse_select_with(q, &known).unwrap_err().to_string();
        assert!(err.contains(want), "{q}: {err}");
    }
}

#[test]
fn sliding_session_and_state_windows_plan_with_their_conditions() {
    let g = grouping(
        "SELECT count(*), 'OVER (WHEN' AS s FROM s \
         GROUP BY SLIDINGWINDOW(ss, 10, 2) OVER (WHEN a > (1 + 1)) FILTER (WHERE b = \"x\")",
    );
    assert_eq!(g.window, WindowSpec::Sliding { length_ms: 10_000, delay_ms: 2_000 });
    assert!(g.trigger.is_some() && g.filter.is_some() && g.state.is_none());
    let g = grouping("SELECT count(*) FROM s GROUP BY k, SESSIONWINDOW(mi, 2, 10)");
    assert_eq!(g.window, WindowSpec::Session { timeout_ms: 120_000, max_ms: 600_000 });
    let g = grouping("SELECT count(*) FROM s GROUP BY STATEWINDOW(a > 1, a < 1)");
    assert_eq!(g.window, WindowSpec::State);
    assert!(g.state.is_some() && g.trigger.is_none());
    // A string that looks like the trigger is left alone.
    let p = parse_select("SELECT 'OVER (WHEN x)' AS s FROM s").unwrap();
    assert!(
        matches!(&p.fields[0], SelectField::Expr { expr: Expr::Literal(Value::String(t)), .. } if t == "OVER (WHEN x)")
    );
}

#[tokio::test]
async fn order_by_sorts_each_window_emission_by_output_fields_and_group_expressions() {
    let run = |q: &'static str| async move {
        let plan = parse_select(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let batch = [("a", 1), ("b", 5), ("c", 3), ("c", 3), ("d", -1)]
            .map(|(k, x)| kx(k, if x < 0 { Value::Null } else { Value::Int(x) }));
        let (rows, _) = window_output(&plan, batch.to_vec(), &Echo(Default::default()), 0, 100).await;
        rows.iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap()["k"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let by_alias = "SELECT k, sum(x) AS total FROM s GROUP BY k, TUMBLINGWINDOW(ms, 100) ORDER BY total DESC";
    assert_eq!(run(by_alias).await, ["c", "b", "a", "d"], "6, 5, 1, then null last when descending");
    let by_expr = "SELECT k FROM s GROUP BY k, TUMBLINGWINDOW(ms, 100) ORDER BY count(*) DESC, k";
    assert_eq!(run(by_expr).await, ["c", "a", "b", "d"]);
    let ascending = "SELECT k, max(x) AS m FROM s GROUP BY k, TUMBLINGWINDOW(ms, 100) ORDER BY m";
    assert_eq!(run(ascending).await, ["d", "a", "c", "b"], "null first when ascending");
    for (q, want) in [
        ("SELECT x FROM s ORDER BY x", "ORDER BY needs a window"),
        ("SELECT count(*) FROM s GROUP BY COUNTWINDOW(2) ORDER BY x NULLS FIRST", "is not supported yet"),
    ] {
        let err = parse_select(q).unwrap_err().to_string();
        assert!(err.contains(want), "{q}: {err}");
    }
}

#[tokio::test]
async fn a_window_without_aggregates_emits_its_rows_and_select_star_reads_them() {
    let plan = parse_select("SELECT *, window_end() AS we FROM s GROUP BY COUNTWINDOW(3, 2)").unwrap();
    let g = plan.grouping.clone().unwrap();
    assert!(g.each_row);
    let rec = |x: i64| oort_proto::Record::from_fields([("x".to_string(), Value::Int(x))].into_iter().collect());
    let echo = Echo(Default::default());
    let prepared = crate::prepare_window_rows(&plan, &g, (1..=5).map(rec).collect(), &echo).await.unwrap();
    let mut w = crate::window::WindowState::of(&g);
    // Halfway, a checkpoint: the restored window numbers rows on.
    let mut rows = prepared.rows;
    let rest = rows.split_off(2);
    let (mut groups, _) = w.add(rows, 0);
    let mut w = crate::window::WindowState::restore(crate::window::WindowState::of(&g), &w.snapshot()).unwrap();
    groups.extend(w.add(rest, 0).0);
    let mut outcome = crate::OpOutcome::default();
    let out = crate::project_groups(&plan, groups, &echo, &mut outcome).await.unwrap();
    let xs: Vec<i64> = out.iter().map(|r| r.fields["x"].as_i64().unwrap()).collect();
    // Rows 1-3 after the third, rows 3-5 after the fifth.
    assert_eq!(xs, [1, 2, 3, 3, 4, 5]);
    assert!(out.iter().all(|r| r.fields.contains_key("we")));
    // With a key and no aggregates, one row per group: its first.
    let g = grouping("SELECT x FROM s GROUP BY x, COUNTWINDOW(2)");
    assert!(!g.each_row);
}

#[tokio::test]
async fn collect_star_and_deduplicate_keep_whole_rows() {
    let plan = parse_select(
        "SELECT collect(*)[1]->x AS second, deduplicate(k, true) AS firsts, deduplicate(k, false) AS latest \
         FROM s GROUP BY COUNTWINDOW(3)",
    )
    .unwrap();
    let batch = [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5), ("c", 6)].map(|(k, x)| kx(k, Value::Int(x)));
    let (rows, _) = window_output(&plan, batch.to_vec(), &Echo(Default::default()), 0, 0).await;
    assert_eq!(
        rows,
        [
            r#"{"firsts":[{"k":"a","x":1},{"k":"b","x":2}],"latest":[],"second":2}"#,
            r#"{"firsts":[{"k":"a","x":4},{"k":"b","x":5},{"k":"c","x":6}],"latest":[{"k":"c","x":6}],"second":5}"#
        ]
    );
}

#[tokio::test]
async fn where_filters_after_a_count_window_as_in_ekuiper_and_filter_before_it() {
    let run = |q: &'static str| async move {
        let plan = parse_select(q).unwrap();
        let batch: Vec<_> = (1..=9).map(|x| kx("a", Value::Int(x))).collect();
        let (rows, _) = window_output(&plan, batch, &Echo(Default::default()), 0, 0).await;
        rows.iter().map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap()["xs"].to_string()).collect::<Vec<_>>()
    };
    // WHERE: windows of 3 rows, of which the odd ones are aggregated.
    assert_eq!(
        run("SELECT collect(x) AS xs FROM s WHERE x % 2 = 1 GROUP BY COUNTWINDOW(3)").await,
        ["[1,3]", "[5]", "[7,9]"]
    );
    // FILTER: windows of 3 odd rows.
    assert_eq!(
        run("SELECT collect(x) AS xs FROM s GROUP BY COUNTWINDOW(3) FILTER (WHERE x % 2 = 1)").await,
        ["[1,3,5]"]
    );
}
