//! `CREATE STREAM name (schema) WITH (TYPE="…", DATASOURCE="…", …)`, eKuiper's
//! stream definition.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use oort_proto::{Record, Value};

use super::{RuleError, MAX_STREAM_FIELDS, MAX_STREAM_OPTIONS, MAX_STREAM_SQL_BYTES};

/// A parsed stream definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamDef {
    pub name: String,
    /// Declared fields; empty for a schemaless stream (`()`).
    pub fields: Vec<StreamField>,
    /// The `WITH` options. eKuiper's own keys (`TYPE`, `DATASOURCE`, `FORMAT`,
    /// `CONF_KEY`, …) are upper-cased; any other key is a property for the
    /// source plugin and keeps its case.
    pub options: BTreeMap<String, String>,
    /// The statement as given.
    pub sql: String,
}

/// One declared field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamField {
    pub name: String,
    pub field_type: FieldType,
}

/// eKuiper's field types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Bigint,
    Float,
    String,
    Boolean,
    Datetime,
    Bytea,
    Array,
    Struct,
}

impl StreamDef {
    /// The source plugin (`TYPE`), eKuiper's default being `mqtt`.
    pub fn source_type(&self) -> &str {
        self.options.get("TYPE").map(String::as_str).unwrap_or("mqtt")
    }

    /// The `DATASOURCE` option, empty when not given.
    pub fn datasource(&self) -> &str {
        self.options.get("DATASOURCE").map(String::as_str).unwrap_or("")
    }

    /// eKuiper's `SHARED` option: one source instance feeds every rule on
    /// the stream (`SHARED="true"`, any case).
    pub fn is_shared(&self) -> bool {
        self.options.get("SHARED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The `CONF_KEY` option, if given.
    pub fn conf_key(&self) -> Option<&str> {
        self.options.get("CONF_KEY").map(String::as_str)
    }

    /// The `FORMAT` option, lowercased (`json`, `binary`, …), if given.
    pub fn format(&self) -> Option<String> {
        self.options.get("FORMAT").map(|f| f.to_ascii_lowercase())
    }

    /// The `TIMESTAMP` option: the field holding a row's event time.
    pub fn timestamp_field(&self) -> Option<&str> {
        self.options.get("TIMESTAMP").map(String::as_str)
    }

    /// A row's event time from the `TIMESTAMP` field, read per
    /// `TIMESTAMP_FORMAT`; an error says why a row has none.
    pub fn event_time(&self, record: &Record) -> Result<i64, String> {
        let field = self.timestamp_field().ok_or("the stream has no TIMESTAMP field")?;
        let v = record.fields.get(field).ok_or_else(|| format!("the row has no event time field {field:?}"))?;
        let format = self.options.get("TIMESTAMP_FORMAT").map(String::as_str);
        crate::builtin::event_time(v, format).map_err(|e| format!("event time field {field:?}: {e}"))
    }

    /// Properties for the source plugin: every option that is not one of
    /// eKuiper's own, its value read as JSON when it is JSON (`interval="100"`
    /// is the number 100) and as a string otherwise.
    pub fn source_props(&self) -> BTreeMap<String, Value> {
        self.options
            .iter()
            .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
            .map(|(k, v)| {
                let value = serde_json::from_str::<serde_json::Value>(v)
                    .map(|j| Value::from_json(&j))
                    .unwrap_or_else(|_| Value::String(v.clone()));
                (k.clone(), value)
            })
            .collect()
    }
}

/// The stream formats a source can be asked to decode.
const STREAM_FORMATS: [&str; 3] = ["json", "binary", "delimited"];

/// eKuiper's own stream options; every other option is a source property.
const RESERVED: [&str; 9] =
    ["TYPE", "DATASOURCE", "FORMAT", "CONF_KEY", "SHARED", "KEY", "TIMESTAMP", "TIMESTAMP_FORMAT", "STRICT_VALIDATION"];

/// Parses a `CREATE STREAM` statement, within the limits
/// [`MAX_STREAM_SQL_BYTES`], [`MAX_STREAM_FIELDS`] and [`MAX_STREAM_OPTIONS`].
/// Linear in the statement's length.
///
/// `WITH` option names are case-insensitive, as in eKuiper: `TYPE` and `type`
/// are the same option, and so are `interval` and `Interval`, so giving one
/// twice in any spelling is refused rather than silently keeping the last.
pub fn parse_stream(sql: &str) -> Result<StreamDef, RuleError> {
    if sql.len() > MAX_STREAM_SQL_BYTES {
        return Err(RuleError::invalid(format!(
            "the CREATE STREAM statement is {} bytes long; the limit is {MAX_STREAM_SQL_BYTES}",
            sql.len()
        )));
    }
    let mut p = Lexer::new(sql);
    p.keyword("CREATE")?;
    p.keyword("STREAM")?;
    let name = p.ident("a stream name")?;
    if !super::valid_name(&name) {
        return Err(RuleError::invalid(format!("invalid stream name {name:?}: names must match ^[A-Za-z0-9_-]+$")));
    }
    p.expect('(')?;
    let mut fields = Vec::new();
    let mut names = HashSet::new();
    if !p.eat(')') {
        loop {
            let field = p.ident("a field name")?;
            let field_type = field_type(&mut p, &field, 0)?;
            if fields.len() == MAX_STREAM_FIELDS {
                return Err(RuleError::invalid(format!(
                    "the stream declares more than {MAX_STREAM_FIELDS} fields; the limit is {MAX_STREAM_FIELDS}"
                )));
            }
            if !names.insert(field.clone()) {
                return Err(RuleError::invalid(format!("field {field} is declared twice")));
            }
            fields.push(StreamField { name: field, field_type });
            if p.eat(')') {
                break;
            }
            p.expect(',')?;
            // eKuiper accepts a trailing comma before the closing parenthesis.
            if p.eat(')') {
                break;
            }
        }
    }
    p.keyword("WITH")?;
    p.expect('(')?;
    let mut options = BTreeMap::new();
    let mut keys = HashSet::new();
    loop {
        let key = p.ident("an option name")?;
        let upper = key.to_ascii_uppercase();
        if !keys.insert(upper.clone()) {
            return Err(RuleError::invalid(format!(
                "option {key} is given twice in WITH (option names are case-insensitive)"
            )));
        }
        if keys.len() > MAX_STREAM_OPTIONS {
            return Err(RuleError::invalid(format!(
                "the stream has more than {MAX_STREAM_OPTIONS} WITH options; the limit is {MAX_STREAM_OPTIONS}"
            )));
        }
        let key = if RESERVED.contains(&upper.as_str()) { upper } else { key };
        p.expect('=')?;
        let value = p.string()?;
        options.insert(key, value);
        if p.eat(')') {
            break;
        }
        // eKuiper separates options with commas or with spaces alone
        // (`TYPE="edgex" CONF_KEY="x"`).
        p.eat(',');
    }
    p.eat(';');
    if !p.at_end() {
        return Err(RuleError::invalid(format!("unexpected text after the statement: {:?}", p.rest())));
    }
    if let Some(format) = options.get("FORMAT") {
        // The source decodes its payloads per FORMAT (the SDKs' eKuiper layers
        // do json, binary and delimited); protobuf and custom need schemas.
        if !STREAM_FORMATS.iter().any(|f| format.eq_ignore_ascii_case(f)) {
            return Err(RuleError::invalid(format!(
                "FORMAT {format:?} is not supported; use one of {}",
                STREAM_FORMATS.join(", ")
            )));
        }
    }
    if let Some(format) = options.get("TIMESTAMP_FORMAT") {
        crate::builtin::check_time_format(format).map_err(|e| RuleError::invalid(format!("TIMESTAMP_FORMAT: {e}")))?;
    }
    Ok(StreamDef { name, fields, options, sql: sql.trim().to_string() })
}

/// How deep `ARRAY(STRUCT(a ARRAY(…)))` may nest.
const MAX_TYPE_DEPTH: usize = 32;

/// A field's type: a plain one, `ARRAY(type)` or `STRUCT(name type, …)`
/// (eKuiper's forms, nested; the element and member types are checked, and
/// the field is typed by its outer kind).
fn field_type(p: &mut Lexer, field: &str, depth: usize) -> Result<FieldType, RuleError> {
    if depth > MAX_TYPE_DEPTH {
        return Err(RuleError::invalid(format!("field {field}: types nest more than {MAX_TYPE_DEPTH} deep")));
    }
    let ty = p.ident("a field type")?;
    let kind = match ty.to_ascii_uppercase().as_str() {
        "BIGINT" => FieldType::Bigint,
        "FLOAT" => FieldType::Float,
        "STRING" => FieldType::String,
        "BOOLEAN" => FieldType::Boolean,
        "DATETIME" => FieldType::Datetime,
        "BYTEA" => FieldType::Bytea,
        "ARRAY" => FieldType::Array,
        "STRUCT" => FieldType::Struct,
        other => {
            return Err(RuleError::invalid(format!(
            "field {field}: unknown type {other}; use BIGINT, FLOAT, STRING, BOOLEAN, DATETIME, BYTEA, ARRAY or STRUCT"
        )))
        }
    };
    match kind {
        FieldType::Array if p.eat('(') => {
            field_type(p, field, depth + 1)?;
            p.expect(')')?;
        }
        FieldType::Struct if p.eat('(') => loop {
            let member = p.ident("a struct member name")?;
            field_type(p, &format!("{field}.{member}"), depth + 1)?;
            if p.eat(')') {
                break;
            }
            p.expect(',')?;
        },
        _ => {}
    }
    Ok(kind)
}

/// A tiny hand-written lexer: eKuiper's `CREATE STREAM` is not standard SQL,
/// so a general SQL parser does not accept it.
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.src[self.pos..].chars().next() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.src.len()
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), RuleError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(RuleError::invalid(format!("expected '{c}' at {:?}", self.excerpt())))
        }
    }

    fn excerpt(&self) -> String {
        let rest = self.rest();
        if rest.is_empty() {
            "the end of the statement".to_string()
        } else {
            rest.chars().take(24).collect()
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, RuleError> {
        self.skip_ws();
        let rest = self.rest();
        if let Some(quoted) = rest.strip_prefix('`') {
            if let Some(end) = quoted.find('`') {
                self.pos += end + 2;
                return Ok(quoted[..end].to_string());
            }
        }
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
        if len == 0 {
            return Err(RuleError::invalid(format!("expected {what} at {:?}", self.excerpt())));
        }
        self.pos += len;
        Ok(rest[..len].to_string())
    }

    fn keyword(&mut self, kw: &str) -> Result<(), RuleError> {
        let at = self.pos;
        match self.ident(kw) {
            Ok(word) if word.eq_ignore_ascii_case(kw) => Ok(()),
            _ => {
                self.pos = at;
                Err(RuleError::invalid(format!("expected {kw} at {:?}", self.excerpt())))
            }
        }
    }

    fn string(&mut self) -> Result<String, RuleError> {
        self.skip_ws();
        let rest = self.rest();
        let quote = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => return Err(RuleError::invalid(format!("expected a quoted value at {:?}", self.excerpt()))),
        };
        let body = &rest[1..];
        let end = body.find(quote).ok_or_else(|| RuleError::invalid("unterminated string in WITH options"))?;
        self.pos += end + 2;
        Ok(body[..end].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ekuipers_examples_parse() {
        let s = parse_stream(
            r#"CREATE STREAM demo (temperature FLOAT, humidity BIGINT) WITH (DATASOURCE="demo", FORMAT="json", TYPE="random", CONF_KEY="default")"#,
        )
        .unwrap();
        assert_eq!(s.name, "demo");
        assert_eq!(s.fields.len(), 2);
        assert_eq!(s.fields[0].field_type, FieldType::Float);
        assert_eq!(s.source_type(), "random");
        assert_eq!(s.datasource(), "demo");
        let s = parse_stream("create stream words () with (type='file', datasource='/tmp/in.jsonl');").unwrap();
        assert!(s.fields.is_empty());
        assert_eq!(s.source_type(), "file");
        let s = parse_stream(
            r#"CREATE STREAM r () WITH (TYPE="random", interval="10", pattern='{"w":["a b"]}', label="x")"#,
        )
        .unwrap();
        let props = s.source_props();
        assert_eq!(props["interval"], Value::Int(10));
        assert_eq!(props["label"], Value::from("x"));
        assert!(matches!(props["pattern"], Value::Map(_)));
        assert!(!props.contains_key("TYPE"));
    }

    #[test]
    fn ekuipers_other_ddl_forms_parse() {
        // Nested ARRAY and STRUCT types, a trailing comma, options separated
        // by spaces: all as eKuiper's own test plans write them.
        let s = parse_stream(
            r#"CREATE STREAM demo (tags ARRAY(STRING), pos STRUCT(x FLOAT, y FLOAT, path ARRAY(STRUCT(t BIGINT))), n BIGINT,)
               WITH (TYPE="random" DATASOURCE="demo", CONF_KEY="x" FORMAT="json")"#,
        )
        .unwrap();
        let kinds: Vec<FieldType> = s.fields.iter().map(|f| f.field_type).collect();
        assert_eq!(kinds, [FieldType::Array, FieldType::Struct, FieldType::Bigint]);
        assert_eq!((s.source_type(), s.datasource(), s.conf_key()), ("random", "demo", Some("x")));
        let deep = format!("CREATE STREAM s (a {}STRING{}) WITH (TYPE=\"x\")", "ARRAY(".repeat(40), ")".repeat(40));
        assert!(parse_stream(&deep).unwrap_err().to_string().contains("nest more than 32 deep"));
        let bad = parse_stream(r#"CREATE STREAM s (p STRUCT(x WIDGET)) WITH (TYPE="x")"#).unwrap_err().to_string();
        assert!(bad.contains("field p.x: unknown type WIDGET"), "{bad}");
    }

    #[test]
    fn field_and_option_counts_are_bounded() {
        let fields = |n: usize| (0..n).map(|i| format!("f{i} BIGINT")).collect::<Vec<_>>().join(", ");
        let ok = format!("CREATE STREAM s ({}) WITH (TYPE=\"x\")", fields(MAX_STREAM_FIELDS));
        assert_eq!(parse_stream(&ok).unwrap().fields.len(), MAX_STREAM_FIELDS);
        let over = format!("CREATE STREAM s ({}) WITH (TYPE=\"x\")", fields(MAX_STREAM_FIELDS + 1));
        let err = parse_stream(&over).unwrap_err().to_string();
        assert!(err.contains("more than 10000 fields; the limit is 10000"), "{err}");
        let long = format!("CREATE STREAM s (a BIGINT) WITH (TYPE=\"{}\")", "x".repeat(MAX_STREAM_SQL_BYTES));
        let err = parse_stream(&long).unwrap_err().to_string();
        assert!(err.contains("the limit is 1048576"), "{err}");
        let options = (0..=MAX_STREAM_OPTIONS).map(|i| format!("k{i}=\"v\"")).collect::<Vec<_>>().join(", ");
        let err = parse_stream(&format!("CREATE STREAM s () WITH ({options})")).unwrap_err().to_string();
        assert!(err.contains("more than 256 WITH options"), "{err}");
    }

    #[test]
    fn malformed_statements_name_the_problem() {
        let cases = [
            ("CREATE TABLE t () WITH (TYPE=\"x\")", "expected STREAM"),
            ("CREATE STREAM () WITH (TYPE=\"x\")", "expected a stream name"),
            ("CREATE STREAM s (a WIDGET) WITH (TYPE=\"x\")", "unknown type WIDGET"),
            ("CREATE STREAM s (a BIGINT, a FLOAT) WITH (TYPE=\"x\")", "declared twice"),
            ("CREATE STREAM s () WITH (TYPE=\"x)", "unterminated string"),
            ("CREATE STREAM s () WITH (TYPE=\"x\") extra", "unexpected text"),
            ("CREATE STREAM s () WITH (FORMAT=\"protobuf\")", "not supported"),
            ("CREATE STREAM s ()", "expected WITH"),
            ("CREATE STREAM s () WITH (TYPE=\"a\", type=\"b\")", "option type is given twice"),
            ("CREATE STREAM s () WITH (TYPE=\"a\", x=\"1\", X=\"2\")", "option X is given twice"),
        ];
        for (sql, want) in cases {
            let err = parse_stream(sql).unwrap_err().to_string();
            assert!(err.contains(want), "{sql}: {err}");
        }
    }
}
