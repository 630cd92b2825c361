//! `SELECT … FROM stream WHERE …`, parsed with `sqlparser` and lowered to the
//! small expression language the engine evaluates.

use sqlparser::ast as sql;
use sqlparser::parser::Parser;

mod dialect;
mod window;

use dialect::{rewrite_over_when, EkuiperDialect};
use window::{window_name, window_spec};

use super::aggregate::AggFn;
use super::builtin::{Builtin, CAST_TYPES};
use super::expr::{BinOp, Expr, UnOp};
use super::{on_planner_stack, RuleError, MAX_EXPR_DEPTH, MAX_EXPR_NODES, MAX_SQL_BYTES};
use crate::window::{AggSlot, WindowSpec};
use oort_core::ArgInfo;
use oort_proto::Value;

/// A planned `SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectPlan {
    /// The one stream in `FROM`.
    pub stream: String,
    pub fields: Vec<SelectField>,
    pub filter: Option<Expr>,
    /// Every plugin function call, indexed by its call site.
    pub calls: Vec<CallSite>,
    /// `GROUP BY <window>[, key …]`, its aggregates and `HAVING`.
    pub grouping: Option<Grouping>,
    /// `ORDER BY`: how each window emission's rows are sorted.
    pub order_by: Vec<SortKey>,
}

/// One `ORDER BY` key of a window's output.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub by: SortBy,
    pub descending: bool,
}

/// What an `ORDER BY` key reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SortBy {
    /// An output field, by its name (`ORDER BY avg_temp` after `AS avg_temp`).
    Field(String),
    /// An expression over the group, like `HAVING`'s.
    Expr(Expr),
}

/// What a windowed rule groups by and aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub window: WindowSpec,
    /// The `GROUP BY` expressions besides the window.
    pub keys: Vec<Expr>,
    /// Every aggregate call of the select list and `HAVING`, in order:
    /// [`Expr::Aggregate`]`(i)` reads number `i`.
    pub aggregates: Vec<AggregateCall>,
    pub having: Option<Expr>,
    /// `FILTER (WHERE …)` after the window: which rows enter it.
    pub filter: Option<Expr>,
    /// `SLIDINGWINDOW(…) OVER (WHEN …)`: which rows trigger a window.
    pub trigger: Option<Expr>,
    /// `STATEWINDOW(begin, end)`'s conditions.
    pub state: Option<(Expr, Expr)>,
    /// No aggregates and no keys: every row of the window is emitted, as
    /// eKuiper emits the list of a window's rows.
    pub each_row: bool,
}

/// One aggregate call: `count(*)` has no argument.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateCall {
    pub slot: AggSlot,
    pub arg: Option<Expr>,
}

/// One item of the select list.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectField {
    /// `*`: every field of the input record.
    Wildcard,
    /// An expression and the output field it fills.
    Expr { expr: Expr, name: String },
}

/// One call of a plugin function in the statement: each call site is its own
/// function instance with its own state, as in eKuiper.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSite {
    pub function: String,
    pub args: Vec<ArgInfo>,
    /// An aggregate function plugin: called once per group when the window
    /// emits, each argument being the list of the group's values.
    pub aggregate: bool,
}

/// Which plugin functions are aggregates (their plugins' `Describe` says so),
/// names in lower case. A plugin call not named here plans as a per-row call;
/// the engine plans a rule again once it knows.
pub type AggregateFunctions = std::collections::BTreeSet<String>;

/// Parses and plans a rule's SQL, within the limits [`MAX_SQL_BYTES`],
/// [`MAX_EXPR_DEPTH`] and [`MAX_EXPR_NODES`].
///
/// Blocking: the work runs on a thread of its own with a large stack (see
/// `PLANNER_STACK_BYTES`), so any caller may use it, whatever its stack, but
/// async code should call it from a blocking-safe context.
pub fn parse_select(text: &str) -> Result<SelectPlan, RuleError> {
    parse_select_with(text, &AggregateFunctions::new())
}

/// [`parse_select`], knowing which plugin functions are aggregates (names in
/// lower case).
pub fn parse_select_with(text: &str, aggregates: &AggregateFunctions) -> Result<SelectPlan, RuleError> {
    if text.len() > MAX_SQL_BYTES {
        return Err(RuleError::invalid(format!(
            "the rule's SQL is {} bytes long; the limit is {MAX_SQL_BYTES}",
            text.len()
        )));
    }
    // The syntax tree is built, lowered and dropped on the planner's stack:
    // dropping a long operator chain recurses as deep as the chain is long.
    let aggregates = aggregates.clone();
    on_planner_stack(move || plan_select(text, aggregates))
}

fn plan_select(text: &str, plugin_aggregates: AggregateFunctions) -> Result<SelectPlan, RuleError> {
    let text = rewrite_over_when(text).map_err(|e| RuleError::invalid(format!("invalid SQL: {e}")))?;
    let statements =
        Parser::parse_sql(&EkuiperDialect, &text).map_err(|e| RuleError::invalid(format!("invalid SQL: {e}")))?;
    let [statement] = statements.as_slice() else {
        return Err(RuleError::invalid(format!("a rule has exactly one SQL statement, found {}", statements.len())));
    };
    let sql::Statement::Query(query) = statement else {
        return Err(RuleError::invalid("a rule's SQL must be a SELECT statement"));
    };
    if query.with.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(unsupported("WITH, LIMIT and FETCH"));
    }
    let sql::SetExpr::Select(select) = query.body.as_ref() else {
        return Err(unsupported("UNION, INTERSECT, EXCEPT and VALUES"));
    };
    if select.distinct.is_some() {
        return Err(unsupported("DISTINCT"));
    }
    let [from] = select.from.as_slice() else {
        return Err(RuleError::invalid("FROM must name exactly one stream"));
    };
    if !from.joins.is_empty() {
        return Err(unsupported("JOIN"));
    }
    let stream = match &from.relation {
        sql::TableFactor::Table { name, args: None, .. } => object_name(name)?,
        _ => return Err(RuleError::invalid("FROM must name a stream")),
    };

    let mut planner =
        Planner { calls: Vec::new(), nodes: 0, aggregates: Vec::new(), place: Place::GroupBy, plugin_aggregates };
    let group_by = match &select.group_by {
        sql::GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs.as_slice(),
        _ => return Err(unsupported("GROUP BY ALL, ROLLUP, CUBE and GROUPING SETS")),
    };
    let mut window = None;
    let mut conditions = (None, None, None);
    let mut keys = Vec::new();
    for e in group_by {
        match e {
            sql::Expr::Function(f) if window_name(f).is_some() => {
                if window.is_some() {
                    return Err(RuleError::invalid("GROUP BY holds at most one window"));
                }
                let clause = window_spec(f)?;
                window = Some(clause.spec);
                planner.place = Place::WindowCondition;
                conditions = (
                    clause.filter.map(|e| planner.expr(e)).transpose()?,
                    clause.trigger.map(|e| planner.expr(e)).transpose()?,
                    match clause.state {
                        Some((begin, end)) => Some((planner.expr(begin)?, planner.expr(end)?)),
                        None => None,
                    },
                );
                planner.place = Place::GroupBy;
            }
            other => keys.push(planner.expr(other)?),
        }
    }
    planner.place = Place::Select { window: window.is_some() };
    let mut fields = Vec::new();
    for item in &select.projection {
        match item {
            sql::SelectItem::Wildcard(_) => fields.push(SelectField::Wildcard),
            sql::SelectItem::UnnamedExpr(e) => {
                let expr = planner.expr(e)?;
                let name = default_name(&expr, fields.len(), &planner.aggregates);
                fields.push(SelectField::Expr { expr, name });
            }
            sql::SelectItem::ExprWithAlias { expr, alias } => {
                fields.push(SelectField::Expr { expr: planner.expr(expr)?, name: alias.value.clone() })
            }
            other => return Err(unsupported(&format!("select item {}", excerpt(other)))),
        }
    }
    let having = match &select.having {
        Some(h) if window.is_some() => {
            planner.place = Place::Having;
            Some(planner.expr(h)?)
        }
        Some(_) => return Err(RuleError::invalid("HAVING needs a window: GROUP BY TUMBLINGWINDOW(ss, 10), …")),
        None => None,
    };
    let mut order_by = Vec::new();
    if let Some(order) = &query.order_by {
        if window.is_none() {
            return Err(RuleError::invalid(
                "ORDER BY needs a window: it sorts a window's output (GROUP BY TUMBLINGWINDOW(ss, 10), …)",
            ));
        }
        let sql::OrderByKind::Expressions(keys) = &order.kind else { return Err(unsupported("ORDER BY ALL")) };
        planner.place = Place::Having;
        for key in keys {
            if key.with_fill.is_some() || key.options.nulls_first.is_some() {
                return Err(unsupported(&format!("ORDER BY {}", excerpt(key))));
            }
            let descending = match &key.options.sort {
                None | Some(sql::OrderBySort::Asc) => false,
                Some(sql::OrderBySort::Desc) => true,
                Some(sql::OrderBySort::Using(_)) => return Err(unsupported("ORDER BY … USING")),
            };
            let output_field = match &key.expr {
                sql::Expr::Identifier(i) => fields
                    .iter()
                    .any(|f| matches!(f, SelectField::Expr { name, .. } if *name == i.value))
                    .then(|| i.value.clone()),
                _ => None,
            };
            let by = match output_field {
                Some(name) => SortBy::Field(name),
                None => SortBy::Expr(planner.expr(&key.expr)?),
            };
            order_by.push(SortKey { by, descending });
        }
    }
    planner.place = Place::Where;
    let filter = select.selection.as_ref().map(|e| planner.expr(e)).transpose()?;
    let grouping = match window {
        Some(window) => {
            // Without aggregates or keys a window emits every row it holds
            // (eKuiper's list of the window's rows). A plugin call planned
            // before the engine knows whether it aggregates is planned again.
            let each_row = planner.aggregates.is_empty() && keys.is_empty();
            let (filter, trigger, state) = conditions;
            Some(Grouping { window, keys, aggregates: planner.aggregates, having, filter, trigger, state, each_row })
        }
        None if !keys.is_empty() => {
            return Err(RuleError::invalid(
                "GROUP BY needs a window: GROUP BY TUMBLINGWINDOW(ss, 10), …; eKuiper groups only within windows",
            ))
        }
        None => None,
    };
    let plan = SelectPlan { stream, fields, filter, calls: planner.calls, grouping, order_by };
    check_limits(&plan)?;
    Ok(plan)
}

/// Checks the planned expressions against [`MAX_EXPR_DEPTH`] and
/// [`MAX_EXPR_NODES`], without recursion (the input is not yet known to be
/// shallow).
fn check_limits(plan: &SelectPlan) -> Result<(), RuleError> {
    let mut nodes = 0usize;
    let mut deepest = 0usize;
    let mut todo: Vec<(&Expr, usize)> = Vec::new();
    for field in &plan.fields {
        if let SelectField::Expr { expr, .. } = field {
            todo.push((expr, 1));
        }
    }
    if let Some(filter) = &plan.filter {
        todo.push((filter, 1));
    }
    if let Some(g) = &plan.grouping {
        todo.extend(plan.order_by.iter().filter_map(|k| match &k.by {
            SortBy::Expr(e) => Some((e, 1)),
            SortBy::Field(_) => None,
        }));
        todo.extend(
            g.keys
                .iter()
                .chain(g.having.iter())
                .chain(g.filter.iter())
                .chain(g.trigger.iter())
                .chain(g.state.iter().flat_map(|(b, e)| [b, e]))
                .chain(g.aggregates.iter().filter_map(|a| a.arg.as_ref()))
                .map(|e| (e, 1)),
        );
    }
    while let Some((e, depth)) = todo.pop() {
        nodes += 1;
        deepest = deepest.max(depth);
        todo.extend(e.children().map(|c| (c, depth + 1)));
    }
    if deepest > MAX_EXPR_DEPTH {
        return Err(RuleError::invalid(format!("expression is nested {deepest} deep; the limit is {MAX_EXPR_DEPTH}")));
    }
    if nodes > MAX_EXPR_NODES {
        return Err(RuleError::invalid(format!(
            "the rule's expressions have {nodes} nodes; the limit is {MAX_EXPR_NODES}"
        )));
    }
    Ok(())
}

fn unsupported(what: &str) -> RuleError {
    RuleError::invalid(format!(
        "{what} is not supported yet; a rule is SELECT … FROM one stream [WHERE …] [GROUP BY <window>[, …] [HAVING …]]"
    ))
}

fn object_name(name: &sql::ObjectName) -> Result<String, RuleError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            sql::ObjectNamePart::Identifier(i) => Ok(i.value.clone()),
            other => Err(RuleError::invalid(format!("unsupported name part {other}"))),
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(RuleError::invalid(format!("{name} is not a plain name"))),
    }
}

/// eKuiper names an unaliased column after itself and a call after its function.
fn default_name(expr: &Expr, index: usize, aggregates: &[AggregateCall]) -> String {
    match expr {
        Expr::Aggregate(i) => aggregates[*i].slot.func.name().to_string(),
        Expr::WindowStart => "window_start".to_string(),
        Expr::WindowEnd => "window_end".to_string(),
        Expr::Column(c) => c.clone(),
        Expr::Builtin(b, _) => b.name().to_string(),
        Expr::Call { function, .. } => function.clone(),
        Expr::Field(_, name) => name.clone(),
        Expr::Meta(_) => "meta".to_string(),
        _ => format!("kuiper_field_{index}"),
    }
}

/// At most this many characters of an unsupported construct are quoted in an
/// error: the construct may be most of a 64 KiB statement.
const EXCERPT_CHARS: usize = 80;

fn excerpt(text: impl std::fmt::Display) -> String {
    let text = text.to_string();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

struct Planner {
    calls: Vec<CallSite>,
    /// Nodes lowered so far: lowering stops early once past [`MAX_EXPR_NODES`].
    nodes: usize,
    aggregates: Vec<AggregateCall>,
    /// Where the expression being lowered stands: aggregates are allowed in
    /// a windowed select list and in `HAVING` only, not nested.
    place: Place,
    /// Plugin functions known to be aggregates, in lower case.
    plugin_aggregates: AggregateFunctions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Where,
    GroupBy,
    Select { window: bool },
    Having,
    AggregateArgument,
    WindowCondition,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Where => "in WHERE",
            Place::GroupBy => "in GROUP BY",
            Place::Select { .. } => "without a window (GROUP BY TUMBLINGWINDOW(ss, 10), …)",
            Place::Having => "in HAVING",
            Place::AggregateArgument => "inside another aggregate",
            Place::WindowCondition => "in a window's condition",
        }
    }
}

impl Planner {
    fn expr(&mut self, e: &sql::Expr) -> Result<Expr, RuleError> {
        self.nodes += 1;
        if self.nodes > MAX_EXPR_NODES {
            return Err(RuleError::invalid(format!(
                "the rule's expressions have more than {MAX_EXPR_NODES} nodes; the limit is {MAX_EXPR_NODES}"
            )));
        }
        Ok(match e {
            sql::Expr::Identifier(i) => Expr::Column(i.value.clone()),
            // `stream.field`: the stream is implied, there is only one.
            sql::Expr::CompoundIdentifier(parts) if parts.len() == 2 => Expr::Column(parts[1].value.clone()),
            sql::Expr::Value(v) => Expr::Literal(literal(&v.value)?),
            sql::Expr::Nested(inner) => self.expr(inner)?,
            sql::Expr::IsNull(inner) => Expr::IsNull(Box::new(self.expr(inner)?), false),
            sql::Expr::IsNotNull(inner) => Expr::IsNull(Box::new(self.expr(inner)?), true),
            sql::Expr::UnaryOp { op, expr } => {
                let op = match op {
                    sql::UnaryOperator::Not => UnOp::Not,
                    sql::UnaryOperator::Minus => UnOp::Neg,
                    sql::UnaryOperator::Plus => return self.expr(expr),
                    other => return Err(unsupported(&format!("operator {other}"))),
                };
                Expr::Unary(op, Box::new(self.expr(expr)?))
            }
            sql::Expr::BinaryOp { op: sql::BinaryOperator::Arrow, .. } => self.arrow(e)?,
            sql::Expr::BinaryOp { .. } => self.chain(e)?,
            sql::Expr::Function(f) => self.call(f)?,
            sql::Expr::CompoundFieldAccess { root, access_chain } => {
                let mut expr = self.expr(root)?;
                for access in access_chain {
                    expr = self.access(expr, access)?;
                }
                expr
            }
            sql::Expr::Case { operand, conditions, else_result, .. } => Expr::Case {
                operand: operand.as_deref().map(|o| self.expr(o)).transpose()?.map(Box::new),
                branches: conditions
                    .iter()
                    .map(|c| Ok((self.expr(&c.condition)?, self.expr(&c.result)?)))
                    .collect::<Result<_, RuleError>>()?,
                otherwise: else_result.as_deref().map(|e| self.expr(e)).transpose()?.map(Box::new),
            },
            sql::Expr::In { expr, target: sql::InTarget::List(list), negated, global: false } => Expr::In(
                Box::new(self.expr(expr)?),
                list.iter().map(|e| self.expr(e)).collect::<Result<_, _>>()?,
                *negated,
            ),
            sql::Expr::Between { expr, negated, low, high } => Expr::Between(
                Box::new(self.expr(expr)?),
                Box::new(self.expr(low)?),
                Box::new(self.expr(high)?),
                *negated,
            ),
            sql::Expr::Like { negated, any: false, expr, pattern, escape_char: None } => {
                Expr::Like(Box::new(self.expr(expr)?), Box::new(self.expr(pattern)?), *negated)
            }
            sql::Expr::Cast { kind: sql::CastKind::Cast, expr, data_type, format: None, .. } => {
                let to = cast_type(data_type)?;
                builtin_call("cast", vec![self.expr(expr)?, Expr::Literal(Value::from(to))])?
            }
            // sqlparser parses these calls into special forms of their own.
            sql::Expr::Ceil { expr, field: sql::CeilFloorKind::DateTimeField(sql::DateTimeField::NoDateTime) } => {
                builtin_call("ceil", vec![self.expr(expr)?])?
            }
            sql::Expr::Floor { expr, field: sql::CeilFloorKind::DateTimeField(sql::DateTimeField::NoDateTime) } => {
                builtin_call("floor", vec![self.expr(expr)?])?
            }
            sql::Expr::Trim { trim_where: None, trim_what: None, expr, trim_characters: None } => {
                builtin_call("trim", vec![self.expr(expr)?])?
            }
            // `SUBSTRING(s, 1, 3)`, or `SUBSTRING(s)` (refused for its arity);
            // the standard `FROM … FOR …` form means a length, not eKuiper's end.
            sql::Expr::Substring { expr, substring_from, substring_for, special, .. }
                if *special || (substring_from.is_none() && substring_for.is_none()) =>
            {
                let mut args = vec![self.expr(expr)?];
                for bound in [substring_from, substring_for].into_iter().flatten() {
                    args.push(self.expr(bound)?);
                }
                builtin_call("substring", args)?
            }
            other => return Err(unsupported(&format!("expression {}", excerpt(other)))),
        })
    }

    /// Lowers a run of `->`: `a->b->c` is built as a left-leaning tree as
    /// deep as the path is long; it is walked here without recursion.
    fn arrow(&mut self, e: &sql::Expr) -> Result<Expr, RuleError> {
        let mut path = Vec::new();
        let mut base = e;
        while let sql::Expr::BinaryOp { left, op: sql::BinaryOperator::Arrow, right } = base {
            path.push(right.as_ref());
            base = left.as_ref();
        }
        path.reverse();
        let mut expr = self.expr(base)?;
        for step in path {
            self.nodes += 1;
            expr = match step {
                sql::Expr::Identifier(i) => Expr::Field(Box::new(expr), i.value.clone()),
                // `a->b[0]`: the field, then its element.
                sql::Expr::CompoundFieldAccess { root, access_chain }
                    if matches!(root.as_ref(), sql::Expr::Identifier(_)) =>
                {
                    let sql::Expr::Identifier(i) = root.as_ref() else { unreachable!("matched above") };
                    let mut expr = Expr::Field(Box::new(expr), i.value.clone());
                    for access in access_chain {
                        expr = self.access(expr, access)?;
                    }
                    expr
                }
                other => {
                    return Err(RuleError::invalid(format!(
                        "the right side of -> must be a field name, not {}",
                        excerpt(other)
                    )))
                }
            };
        }
        Ok(expr)
    }

    /// One step of `a[0]`, `a[1:3]` or `a.b` after a planned expression.
    fn access(&mut self, expr: Expr, access: &sql::AccessExpr) -> Result<Expr, RuleError> {
        self.nodes += 1;
        Ok(match access {
            sql::AccessExpr::Subscript(sql::Subscript::Index { index }) => {
                Expr::Index(Box::new(expr), Box::new(self.expr(index)?))
            }
            sql::AccessExpr::Subscript(sql::Subscript::Slice { lower_bound, upper_bound, stride: None }) => {
                Expr::Slice(
                    Box::new(expr),
                    lower_bound.as_ref().map(|b| self.expr(b)).transpose()?.map(Box::new),
                    upper_bound.as_ref().map(|b| self.expr(b)).transpose()?.map(Box::new),
                )
            }
            sql::AccessExpr::Dot(sql::Expr::Identifier(i)) => Expr::Field(Box::new(expr), i.value.clone()),
            other => return Err(unsupported(&format!("field access {}", excerpt(other)))),
        })
    }

    /// An aggregate call: allowed in a windowed select list and `HAVING`.
    fn aggregate(&mut self, func: AggFn, name: &str, f: &sql::Function) -> Result<Expr, RuleError> {
        if !matches!(self.place, Place::Select { window: true } | Place::Having) {
            return Err(RuleError::invalid(format!("aggregate function {name} is not allowed {}", self.place.name())));
        }
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(unsupported(&format!("{name}(…) OVER/FILTER/WITHIN GROUP")));
        }
        let args: &[sql::FunctionArg] = match &f.args {
            sql::FunctionArguments::List(list) if list.duplicate_treatment.is_none() && list.clauses.is_empty() => {
                &list.args
            }
            sql::FunctionArguments::List(_) => {
                return Err(unsupported(&format!("DISTINCT or clauses inside {name}(…)")))
            }
            _ => &[],
        };
        let mut func = func;
        let wildcard = |a: &sql::FunctionArg| matches!(a, sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Wildcard));
        // `collect(*)` and `deduplicate(col, all)` read whole rows. No
        // aggregate inside an aggregate (a failed lowering ends the planning,
        // so `place` need not be restored on that path).
        let outer = std::mem::replace(&mut self.place, Place::AggregateArgument);
        let special = match (func, args) {
            (AggFn::Collect, [a]) if wildcard(a) => Some(Expr::Row),
            (
                AggFn::Deduplicate { .. },
                [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(key)), sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(all))],
            ) => {
                let sql::Expr::Value(sql::ValueWithSpan { value: sql::Value::Boolean(all), .. }) = all else {
                    return Err(RuleError::invalid("deduplicate's second argument must be true or false"));
                };
                func = AggFn::Deduplicate { all: *all };
                Some(Expr::List(vec![self.expr(key)?, Expr::Row]))
            }
            (AggFn::Deduplicate { .. }, _) => {
                return Err(RuleError::invalid("deduplicate takes (column, true or false)"));
            }
            _ => None,
        };
        self.place = outer;
        if let Some(arg) = special {
            self.aggregates.push(AggregateCall { slot: AggSlot { func, ignore_null: false }, arg: Some(arg) });
            return Ok(Expr::Aggregate(self.aggregates.len() - 1));
        }
        let (arg, ignore_null) = match (func, args) {
            (AggFn::Count, [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Wildcard)]) => (None, false),
            (_, [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e))]) => (Some(e), false),
            (
                AggFn::LastValue,
                [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e)), sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(ignore))],
            ) => match ignore {
                sql::Expr::Value(sql::ValueWithSpan { value: sql::Value::Boolean(skip), .. }) => (Some(e), *skip),
                _ => return Err(RuleError::invalid("last_value's second argument must be true or false")),
            },
            _ => {
                let expected = match func {
                    AggFn::Count | AggFn::Collect => "one argument or *",
                    AggFn::LastValue => "one argument, and optionally true to skip nulls",
                    _ => "one argument",
                };
                return Err(RuleError::invalid(format!("{name} takes {expected}")));
            }
        };
        let outer = std::mem::replace(&mut self.place, Place::AggregateArgument);
        let arg = arg.map(|e| self.expr(e)).transpose()?;
        self.place = outer;
        self.aggregates.push(AggregateCall { slot: AggSlot { func, ignore_null }, arg });
        Ok(Expr::Aggregate(self.aggregates.len() - 1))
    }

    /// Lowers a run of binary operators. The parser builds `a + b - c + d` as
    /// a left-leaning tree as deep as the run is long; it is the same as
    /// folding the operands from the left, so it becomes one flat
    /// [`Expr::Chain`] (or a plain [`Expr::Binary`] for one operator), walked
    /// here without recursion.
    fn chain(&mut self, e: &sql::Expr) -> Result<Expr, RuleError> {
        let mut rest = Vec::new();
        let mut base = e;
        loop {
            match base {
                sql::Expr::BinaryOp { left, op, right } if *op != sql::BinaryOperator::Arrow => {
                    rest.push((binop(op)?, right.as_ref()));
                    base = left.as_ref();
                }
                // `(a + b) + c` folds the same way as `a + b + c`.
                sql::Expr::Nested(inner) if matches!(inner.as_ref(), sql::Expr::BinaryOp { op, .. } if *op != sql::BinaryOperator::Arrow) => {
                    base = inner.as_ref()
                }
                _ => break,
            }
        }
        rest.reverse();
        let first = self.expr(base)?;
        let mut operands = Vec::with_capacity(rest.len());
        for (op, right) in rest {
            operands.push((op, self.expr(right)?));
        }
        if operands.len() == 1 {
            let (op, right) = operands.pop().expect("one operand");
            return Ok(Expr::Binary(Box::new(first), op, Box::new(right)));
        }
        Ok(Expr::Chain(Box::new(first), operands))
    }

    fn call(&mut self, f: &sql::Function) -> Result<Expr, RuleError> {
        let name = object_name(&f.name)?;
        if name.eq_ignore_ascii_case("meta") {
            return meta(f);
        }
        if let Some(func) = AggFn::lookup(&name) {
            return self.aggregate(func, &name, f);
        }
        if name.eq_ignore_ascii_case("window_start") || name.eq_ignore_ascii_case("window_end") {
            if !matches!(self.place, Place::Select { window: true } | Place::Having) {
                return Err(RuleError::invalid(format!("{name}() exists only in a window's select list or HAVING")));
            }
            let no_args = match &f.args {
                sql::FunctionArguments::List(l) => l.args.is_empty(),
                sql::FunctionArguments::None => true,
                sql::FunctionArguments::Subquery(_) => false,
            };
            if !no_args {
                return Err(RuleError::invalid(format!("{name}() takes no arguments")));
            }
            let start = name.eq_ignore_ascii_case("window_start");
            return Ok(if start { Expr::WindowStart } else { Expr::WindowEnd });
        }
        if window_name(f).is_some() {
            return Err(RuleError::invalid(format!("{name} belongs in GROUP BY: GROUP BY {name}(…), …")));
        }
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(unsupported(&format!("{name}(…) OVER/FILTER/WITHIN GROUP")));
        }
        let list = match &f.args {
            sql::FunctionArguments::List(list) => {
                if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return Err(unsupported(&format!("DISTINCT or clauses inside {name}(…)")));
                }
                list.args.as_slice()
            }
            sql::FunctionArguments::None => &[],
            sql::FunctionArguments::Subquery(_) => return Err(unsupported("subqueries")),
        };
        let aggregate = self.plugin_aggregates.contains(&name.to_lowercase()) && Builtin::lookup(&name).is_none();
        if aggregate && !matches!(self.place, Place::Select { window: true } | Place::Having) {
            return Err(RuleError::invalid(format!("aggregate function {name} is not allowed {}", self.place.name())));
        }
        // An aggregate plugin's arguments are evaluated per row, where no
        // other aggregate may appear, and collected per group.
        let outer = if aggregate { Some(std::mem::replace(&mut self.place, Place::AggregateArgument)) } else { None };
        let mut args = Vec::with_capacity(list.len());
        let mut infos = Vec::with_capacity(list.len());
        for a in list {
            let sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e)) = a else {
                return Err(unsupported(&format!("argument {} of {name}", excerpt(a))));
            };
            let expr = self.expr(e)?;
            infos.push(ArgInfo {
                expression: e.to_string(),
                literal: match &expr {
                    Expr::Literal(v) => Some(v.clone()),
                    _ => None,
                },
                column: match &expr {
                    Expr::Column(c) => Some(c.clone()),
                    _ => None,
                },
            });
            args.push(expr);
        }
        if let Some(outer) = outer {
            self.place = outer;
            for arg in &mut args {
                let per_row = std::mem::replace(arg, Expr::Aggregate(self.aggregates.len()));
                let collect = AggSlot { func: AggFn::Collect, ignore_null: false };
                self.aggregates.push(AggregateCall { slot: collect, arg: Some(per_row) });
            }
        }
        if let Some(builtin) = Builtin::lookup(&name) {
            builtin.check_arity(args.len())?;
            if builtin.name() == "cast" {
                match &args[1] {
                    Expr::Literal(Value::String(to)) if CAST_TYPES.contains(&to.to_ascii_lowercase().as_str()) => {}
                    _ => {
                        return Err(RuleError::invalid(format!(
                            "the second argument of cast must be one of the strings {}",
                            CAST_TYPES.map(|t| format!("\"{t}\"")).join(", ")
                        )))
                    }
                }
            }
            return Ok(Expr::Builtin(builtin, args));
        }
        let site = self.calls.len();
        self.calls.push(CallSite { function: name.clone(), args: infos, aggregate });
        Ok(Expr::Call { function: name, site, args })
    }
}

/// A call of the built-in `name`, its arity checked.
fn builtin_call(name: &str, args: Vec<Expr>) -> Result<Expr, RuleError> {
    let builtin = Builtin::lookup(name).expect("a built-in");
    builtin.check_arity(args.len())?;
    Ok(Expr::Builtin(builtin, args))
}

/// `meta(key)`, `meta(*)` or `meta("key")`: the record's metadata.
fn meta(f: &sql::Function) -> Result<Expr, RuleError> {
    let sql::FunctionArguments::List(list) = &f.args else {
        return Err(RuleError::invalid("meta takes one argument: a metadata key or *"));
    };
    match list.args.as_slice() {
        [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Wildcard)] => Ok(Expr::Meta(None)),
        [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(sql::Expr::Identifier(i)))] => {
            Ok(Expr::Meta(Some(i.value.clone())))
        }
        [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(sql::Expr::Value(v)))] => match &v.value {
            sql::Value::SingleQuotedString(k) | sql::Value::DoubleQuotedString(k) => Ok(Expr::Meta(Some(k.clone()))),
            _ => Err(RuleError::invalid("meta takes one argument: a metadata key or *")),
        },
        _ => Err(RuleError::invalid("meta takes one argument: a metadata key or *")),
    }
}

/// The `cast` type of `CAST(x AS type)`.
fn cast_type(t: &sql::DataType) -> Result<&'static str, RuleError> {
    use sql::DataType as T;
    Ok(match t {
        T::BigInt(_) | T::Int(_) | T::Integer(_) | T::SmallInt(_) | T::TinyInt(_) => "bigint",
        T::Float(_) | T::Double(_) | T::DoublePrecision | T::Real | T::Decimal(_) | T::Numeric(_) => "float",
        T::String(_) | T::Text | T::Varchar(_) | T::Char(_) => "string",
        T::Boolean | T::Bool => "boolean",
        other => return Err(unsupported(&format!("CAST to {other}"))),
    })
}

fn binop(op: &sql::BinaryOperator) -> Result<BinOp, RuleError> {
    Ok(match op {
        sql::BinaryOperator::Plus => BinOp::Add,
        sql::BinaryOperator::Minus => BinOp::Sub,
        sql::BinaryOperator::Multiply => BinOp::Mul,
        sql::BinaryOperator::Divide => BinOp::Div,
        sql::BinaryOperator::Modulo => BinOp::Mod,
        sql::BinaryOperator::Eq => BinOp::Eq,
        sql::BinaryOperator::NotEq => BinOp::Ne,
        sql::BinaryOperator::Lt => BinOp::Lt,
        sql::BinaryOperator::LtEq => BinOp::Le,
        sql::BinaryOperator::Gt => BinOp::Gt,
        sql::BinaryOperator::GtEq => BinOp::Ge,
        sql::BinaryOperator::And => BinOp::And,
        sql::BinaryOperator::Or => BinOp::Or,
        sql::BinaryOperator::BitwiseAnd => BinOp::BitAnd,
        sql::BinaryOperator::BitwiseOr => BinOp::BitOr,
        sql::BinaryOperator::BitwiseXor => BinOp::BitXor,
        other => return Err(unsupported(&format!("operator {other}"))),
    })
}

fn literal(v: &sql::Value) -> Result<Value, RuleError> {
    Ok(match v {
        // Integers above i64 stay exact as unsigned ones, as JSON input does.
        sql::Value::Number(n, _) => match (n.parse::<i64>(), n.parse::<u64>()) {
            (Ok(i), _) => Value::Int(i),
            (_, Ok(u)) => Value::Uint(u),
            _ => Value::Float(n.parse().map_err(|_| RuleError::invalid(format!("bad number {n}")))?),
        },
        sql::Value::SingleQuotedString(s) | sql::Value::DoubleQuotedString(s) => Value::String(s.clone()),
        sql::Value::Boolean(b) => Value::Bool(*b),
        sql::Value::Null => Value::Null,
        other => return Err(unsupported(&format!("literal {other}"))),
    })
}

#[cfg(test)]
mod tests;
