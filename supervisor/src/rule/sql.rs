//! `SELECT … FROM stream WHERE …`, parsed with `sqlparser` and lowered to the
//! small expression language the runtime evaluates.

use sqlparser::ast as sql;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::builtin::Builtin;
use super::expr::{BinOp, Expr, UnOp};
use super::RuleError;
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

/// What is known about an argument when the rule is created.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgInfo {
    pub expression: String,
    pub literal: Option<Value>,
    pub column: Option<String>,
}

/// Parses and plans a rule's SQL.
pub fn parse_select(text: &str) -> Result<SelectPlan, RuleError> {
    let statements =
        Parser::parse_sql(&GenericDialect {}, text).map_err(|e| RuleError::invalid(format!("invalid SQL: {e}")))?;
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
    if !matches!(&select.group_by, sql::GroupByExpr::Expressions(e, _) if e.is_empty()) || select.having.is_some() {
        return Err(unsupported("GROUP BY and HAVING (windows and aggregates)"));
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

    let mut planner = Planner { calls: Vec::new() };
    let mut fields = Vec::new();
    for item in &select.projection {
        match item {
            sql::SelectItem::Wildcard(_) => fields.push(SelectField::Wildcard),
            sql::SelectItem::UnnamedExpr(e) => {
                let expr = planner.expr(e)?;
                let name = default_name(&expr, fields.len());
                fields.push(SelectField::Expr { expr, name });
            }
            sql::SelectItem::ExprWithAlias { expr, alias } => {
                fields.push(SelectField::Expr { expr: planner.expr(expr)?, name: alias.value.clone() })
            }
            other => return Err(unsupported(&format!("select item {other}"))),
        }
    }
    let filter = select.selection.as_ref().map(|e| planner.expr(e)).transpose()?;
    Ok(SelectPlan { stream, fields, filter, calls: planner.calls })
}

fn unsupported(what: &str) -> RuleError {
    RuleError::invalid(format!("{what} is not supported yet; a rule is SELECT … FROM one stream [WHERE …]"))
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
fn default_name(expr: &Expr, index: usize) -> String {
    match expr {
        Expr::Column(c) => c.clone(),
        Expr::Builtin(b, _) => b.name().to_string(),
        Expr::Call { function, .. } => function.clone(),
        _ => format!("kuiper_field_{index}"),
    }
}

struct Planner {
    calls: Vec<CallSite>,
}

impl Planner {
    fn expr(&mut self, e: &sql::Expr) -> Result<Expr, RuleError> {
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
            sql::Expr::BinaryOp { left, op, right } => {
                let op = match op {
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
                    other => return Err(unsupported(&format!("operator {other}"))),
                };
                Expr::Binary(Box::new(self.expr(left)?), op, Box::new(self.expr(right)?))
            }
            sql::Expr::Function(f) => self.call(f)?,
            other => return Err(unsupported(&format!("expression {other}"))),
        })
    }

    fn call(&mut self, f: &sql::Function) -> Result<Expr, RuleError> {
        let name = object_name(&f.name)?;
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
                return Err(unsupported(&format!("argument {a} of {name}")));
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
            return Ok(Expr::Builtin(builtin, args));
        }
        let site = self.calls.len();
        self.calls.push(CallSite { function: name.clone(), args: infos });
        Ok(Expr::Call { function: name, site, args })
    }
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
}
