//! `SELECT … FROM stream WHERE …`, parsed with `sqlparser` and lowered to the
//! small expression language the engine evaluates.

use sqlparser::ast as sql;
use sqlparser::dialect::Dialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use super::aggregate::AggFn;
use super::builtin::{Builtin, CAST_TYPES};
use super::expr::{BinOp, Expr, UnOp};
use super::window::{AggSlot, WindowSpec};
use super::{on_planner_stack, RuleError, MAX_EXPR_DEPTH, MAX_EXPR_NODES, MAX_SQL_BYTES};
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
}

/// Parses and plans a rule's SQL, within the limits [`MAX_SQL_BYTES`],
/// [`MAX_EXPR_DEPTH`] and [`MAX_EXPR_NODES`].
///
/// Blocking: the work runs on a thread of its own with a large stack (see
/// `PLANNER_STACK_BYTES`), so any caller may use it, whatever its stack, but
/// async code should call it from a blocking-safe context.
pub fn parse_select(text: &str) -> Result<SelectPlan, RuleError> {
    if text.len() > MAX_SQL_BYTES {
        return Err(RuleError::invalid(format!(
            "the rule's SQL is {} bytes long; the limit is {MAX_SQL_BYTES}",
            text.len()
        )));
    }
    // The syntax tree is built, lowered and dropped on the planner's stack:
    // dropping a long operator chain recurses as deep as the chain is long.
    on_planner_stack(|| plan_select(text))
}

/// eKuiper's lexical rules (its `lexical_elements.md`): `"user"` and `'user'`
/// are both string literals, backticks quote identifiers (reserved words,
/// spaces, any Unicode), and `->` reaches into a nested field, binding
/// tighter than any arithmetic (`a->b + 1` is `(a->b) + 1`).
#[derive(Debug)]
struct EkuiperDialect;

impl Dialect for EkuiperDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    /// eKuiper writes `TUMBLINGWINDOW(ss, 10) FILTER (WHERE …)`: parsed so
    /// that a rule using it is told it is not supported yet, by name.
    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        // The precedence sqlparser gives `::` and `[`: above every operator.
        (parser.peek_token_ref().token == Token::Arrow).then_some(Ok(50))
    }
}

fn plan_select(text: &str) -> Result<SelectPlan, RuleError> {
    let statements =
        Parser::parse_sql(&EkuiperDialect, text).map_err(|e| RuleError::invalid(format!("invalid SQL: {e}")))?;
    let [statement] = statements.as_slice() else {
        return Err(RuleError::invalid(format!("a rule has exactly one SQL statement, found {}", statements.len())));
    };
    let sql::Statement::Query(query) = statement else {
        return Err(RuleError::invalid("a rule's SQL must be a SELECT statement"));
    };
    if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(unsupported("WITH, ORDER BY, LIMIT and FETCH"));
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

    let mut planner = Planner { calls: Vec::new(), nodes: 0, aggregates: Vec::new(), place: Place::GroupBy };
    let group_by = match &select.group_by {
        sql::GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs.as_slice(),
        _ => return Err(unsupported("GROUP BY ALL, ROLLUP, CUBE and GROUPING SETS")),
    };
    let mut window = None;
    let mut keys = Vec::new();
    for e in group_by {
        match e {
            sql::Expr::Function(f) if window_name(f).is_some() => {
                if window.is_some() {
                    return Err(RuleError::invalid("GROUP BY holds at most one window"));
                }
                window = Some(window_spec(f)?);
            }
            other => keys.push(planner.expr(other)?),
        }
    }
    planner.place = Place::Select { window: window.is_some() };
    let mut fields = Vec::new();
    for item in &select.projection {
        match item {
            sql::SelectItem::Wildcard(_) if window.is_some() => {
                return Err(unsupported("SELECT * with a window (eKuiper's list of the window's rows)"))
            }
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
    planner.place = Place::Where;
    let filter = select.selection.as_ref().map(|e| planner.expr(e)).transpose()?;
    let grouping = match window {
        Some(window) => {
            if planner.aggregates.is_empty() {
                return Err(unsupported("a window without aggregate functions (eKuiper's list of the window's rows)"));
            }
            Some(Grouping { window, keys, aggregates: planner.aggregates, having })
        }
        None if !keys.is_empty() => {
            return Err(RuleError::invalid(
                "GROUP BY needs a window: GROUP BY TUMBLINGWINDOW(ss, 10), …; eKuiper groups only within windows",
            ))
        }
        None => None,
    };
    let plan = SelectPlan { stream, fields, filter, calls: planner.calls, grouping };
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
        todo.extend(
            g.keys
                .iter()
                .chain(g.having.iter())
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Where,
    GroupBy,
    Select { window: bool },
    Having,
    AggregateArgument,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Where => "in WHERE",
            Place::GroupBy => "in GROUP BY",
            Place::Select { .. } => "without a window (GROUP BY TUMBLINGWINDOW(ss, 10), …)",
            Place::Having => "in HAVING",
            Place::AggregateArgument => "inside another aggregate",
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
                let cast = Builtin::lookup("cast").expect("cast is a builtin");
                Expr::Builtin(cast, vec![self.expr(expr)?, Expr::Literal(Value::from(to))])
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
        let outer = self.place;
        self.place = Place::AggregateArgument;
        let lowered = (|| {
            Ok(match (func, args) {
                (AggFn::Count, [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Wildcard)]) => (None, false),
                (_, [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e))]) => (Some(self.expr(e)?), false),
                (
                    AggFn::LastValue,
                    [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e)), sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(ignore))],
                ) => {
                    let ignore = match ignore {
                        sql::Expr::Value(v) => matches!(v.value, sql::Value::Boolean(true)),
                        _ => return Err(RuleError::invalid("last_value's second argument must be true or false")),
                    };
                    (Some(self.expr(e)?), ignore)
                }
                _ => {
                    let expected = match func {
                        AggFn::Count => "one argument or *",
                        AggFn::LastValue => "one argument, and optionally true to skip nulls",
                        _ => "one argument",
                    };
                    return Err(RuleError::invalid(format!("{name} takes {expected}")));
                }
            })
        })();
        self.place = outer;
        let (arg, ignore_null) = lowered?;
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
        self.calls.push(CallSite { function: name.clone(), args: infos });
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

/// The window function `f` names, if it names one.
fn window_name(f: &sql::Function) -> Option<String> {
    let name = object_name(&f.name).ok()?.to_ascii_uppercase();
    matches!(
        name.as_str(),
        "TUMBLINGWINDOW" | "HOPPINGWINDOW" | "SLIDINGWINDOW" | "SESSIONWINDOW" | "COUNTWINDOW" | "STATEWINDOW"
    )
    .then_some(name)
}

/// Panes a window may hold (its length over its hop, or its size over its
/// interval): each keeps its groups' partial aggregates.
pub const MAX_WINDOW_PANES: u64 = 10_000;

/// The longest time window accepted: one week.
pub const MAX_WINDOW_MS: u64 = 7 * 86_400_000;

/// `TUMBLINGWINDOW(ss, 10)`, `HOPPINGWINDOW(ss, 10, 5)`, `COUNTWINDOW(5[, 1])`,
/// with eKuiper's argument orders and units (`dd hh mi ss ms`).
fn window_spec(f: &sql::Function) -> Result<WindowSpec, RuleError> {
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
        sql::Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(n.parse().map_err(|_| RuleError::invalid(format!("bad number {n}")))?),
        },
        sql::Value::SingleQuotedString(s) | sql::Value::DoubleQuotedString(s) => Value::String(s.clone()),
        sql::Value::Boolean(b) => Value::Bool(*b),
        sql::Value::Null => Value::Null,
        other => return Err(unsupported(&format!("literal {other}"))),
    })
}

#[cfg(test)]
mod tests {
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
        let g = grouping(
            "SELECT count(*), deviceId FROM demo GROUP BY deviceId, HOPPINGWINDOW(mi, 10, 5) HAVING count(*) > 2",
        );
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
            ("SELECT x FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", "a window without aggregate functions"),
            ("SELECT *, count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", "SELECT * with a window"),
            ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1), COUNTWINDOW(2)", "at most one window"),
            ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss)", "TUMBLINGWINDOW takes (unit, length)"),
            (
                "SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(yy, 1)",
                "the time unit must be one of dd, hh, mi, ss, ms",
            ),
            ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 0)", "the length must be a positive integer"),
            ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(dd, 8)", "at most 7 days"),
            ("SELECT count(*) FROM s GROUP BY HOPPINGWINDOW(ss, 10, 3)", "a multiple of the hop"),
            ("SELECT count(*) FROM s GROUP BY HOPPINGWINDOW(ms, 100000, 1)", "the limit is 10000"),
            ("SELECT count(*) FROM s GROUP BY COUNTWINDOW(5, 2)", "a multiple of the interval"),
            ("SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss, 10)", "SLIDINGWINDOW is not supported yet"),
            ("SELECT count(*) FROM s GROUP BY SESSIONWINDOW(ss, 10, 2)", "SESSIONWINDOW is not supported yet"),
            ("SELECT count(*) FROM s GROUP BY STATEWINDOW(a > 1, a < 1)", "STATEWINDOW is not supported yet"),
            ("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1) FILTER (WHERE x > 1)", "OVER or FILTER"),
            ("SELECT window_start() FROM s", "exists only in a window's select list or HAVING"),
            ("SELECT x FROM s HAVING x > 1", "HAVING needs a window"),
            ("SELECT count(x, y) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", "count takes one argument or *"),
            ("SELECT TUMBLINGWINDOW(ss, 1) FROM s", "belongs in GROUP BY"),
        ];
        for (q, want) in cases {
            let err = parse_select(q).unwrap_err().to_string();
            assert!(err.contains(want), "{q}: {err}");
        }
    }

    #[tokio::test]
    async fn a_window_groups_aggregates_filters_with_having_and_projects() {
        use crate::window::WindowState;
        let plan = parse_select(
            "SELECT k, count(*) AS n, sum(x) AS total, avg(x) AS mean, echo(max(x)) AS top, window_end() - window_start() AS span \
             FROM s WHERE x > 0 GROUP BY k, TUMBLINGWINDOW(ms, 100) HAVING count(*) > 1",
        )
        .unwrap();
        let g = plan.grouping.clone().unwrap();
        let rec = |k: &str, x: i64| {
            oort_proto::Record::from_fields(
                [("k".to_string(), Value::from(k)), ("x".to_string(), Value::Int(x))].into_iter().collect(),
            )
        };
        let echo = Echo(Default::default());
        let batch = vec![rec("a", 1), rec("b", 5), rec("a", 3), rec("a", -1), rec("c", 7), rec("c", 8)];
        let prepared = crate::prepare_window_rows(&plan, &g, batch, &echo).await.unwrap();
        assert_eq!((prepared.filter.input, prepared.filter.output), (6, 5));
        let mut w = WindowState::new(g.window, g.aggregates.iter().map(|a| a.slot).collect());
        w.add(prepared.rows, 1_050);
        let (groups, errors) = w.due(1_100);
        assert!(errors.is_empty());
        let mut outcome = crate::OpOutcome::default();
        let out = crate::project_groups(&plan, groups, &echo, &mut outcome).await.unwrap();
        let rows: Vec<String> = out.iter().map(|r| r.fields_to_json().to_string()).collect();
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
}
