//! The bytes a sink that asks for payloads receives: each item encoded as
//! eKuiper's runtime encodes what it hands its sinks, per the sink's
//! properties `format`, `dataTemplate`, `sendSingle`, `fields`, `delimiter`
//! and `hasHeader`.
//!
//! An item is what one eKuiper `Collect` receives: with `sendSingle` false
//! (eKuiper's default) one emission as a list (a window's results, or one
//! row of a rule without a window, as `[{...}]`); with `sendSingle` true,
//! one row. `dataTemplate` is a Go text/template (as in eKuiper) applied to
//! the item; its output is the payload.

use std::collections::{BTreeMap, HashMap};

use oort_proto::{Record, Value};

/// Encodes a sink's items. Built once per sink instance from its properties.
pub(crate) struct PayloadEncoder {
    format: Format,
    send_single: bool,
    template: Option<gtmpl::Template>,
    fields: Option<Vec<String>>,
    delimiter: String,
    has_header: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Delimited,
    Binary,
}

/// The formats a payload can take, for error messages.
const FORMATS: &str = "json, delimited, binary";

impl PayloadEncoder {
    /// Reads the encoding properties; a property of the wrong type or an
    /// unknown format or a template that does not parse is an error that
    /// names it.
    pub(crate) fn new(props: &BTreeMap<String, Value>) -> Result<PayloadEncoder, String> {
        let text = |key: &str| match props.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("sink property {key} must be a string, got a {}", other.type_name())),
        };
        let flag = |key: &str| match props.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("sink property {key} must be true or false, got a {}", other.type_name())),
        };
        let format = match text("format")?.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("json") => Format::Json,
            Some("delimited") => Format::Delimited,
            Some("binary") => Format::Binary,
            Some(other) => {
                return Err(format!("sink property format: unknown format {other:?}; the formats are {FORMATS}"))
            }
        };
        let template = match text("dataTemplate")?.filter(|t| !t.is_empty()) {
            None => None,
            Some(_) if format != Format::Json => {
                return Err("sink property dataTemplate applies to format json only".to_string())
            }
            Some(t) => {
                let mut template = gtmpl::Template::default();
                template.add_func("json", template_json);
                template.parse(&t).map_err(|e| format!("sink property dataTemplate does not parse: {e}"))?;
                Some(template)
            }
        };
        let fields = match props.get("fields") {
            None | Some(Value::Null) => None,
            Some(Value::List(items)) => Some(
                items
                    .iter()
                    .map(|f| f.as_str().map(str::to_string).ok_or("sink property fields must list field names"))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(other) => return Err(format!("sink property fields must be a list, got a {}", other.type_name())),
        };
        Ok(PayloadEncoder {
            format,
            // A binary payload is one value's bytes: there is no list of them.
            send_single: flag("sendSingle")? || format == Format::Binary,
            template,
            fields,
            delimiter: text("delimiter")?.filter(|d| !d.is_empty()).unwrap_or_else(|| ",".to_string()),
            has_header: flag("hasHeader")?,
        })
    }

    /// Encodes one sink batch. `ends` are where each window's results end
    /// (one emission each); empty when every row is an emission of its own.
    /// One result per item, in order; an item that cannot be encoded is an
    /// error naming why.
    pub(crate) fn encode(&self, records: &[Record], ends: &[usize]) -> Vec<Result<Vec<u8>, String>> {
        if self.send_single {
            records.iter().map(|r| self.item(std::slice::from_ref(r), false)).collect()
        } else if ends.is_empty() {
            records.iter().map(|r| self.item(std::slice::from_ref(r), true)).collect()
        } else {
            let starts = std::iter::once(0).chain(ends.iter().copied());
            starts.zip(ends).map(|(start, &end)| self.item(&records[start..end.min(records.len())], true)).collect()
        }
    }

    fn item(&self, rows: &[Record], as_list: bool) -> Result<Vec<u8>, String> {
        match self.format {
            Format::Json => {
                let data = if as_list {
                    Value::List(rows.iter().map(|r| Value::Map(self.selected(r))).collect())
                } else {
                    Value::Map(self.selected(&rows[0]))
                };
                match &self.template {
                    Some(t) => t
                        .render(&gtmpl::Context::from(to_template(&data)))
                        .map(String::into_bytes)
                        .map_err(|e| format!("dataTemplate: {e}")),
                    None => serde_json::to_vec(&data.to_json()).map_err(|e| e.to_string()),
                }
            }
            Format::Delimited => {
                let mut lines = Vec::with_capacity(rows.len() + 1);
                let names: Vec<String> = match &self.fields {
                    Some(f) => f.clone(),
                    // eKuiper orders the columns by name when no fields are given.
                    None => rows.first().map(|r| r.fields.keys().cloned().collect()).unwrap_or_default(),
                };
                if self.has_header {
                    lines.push(names.join(&self.delimiter));
                }
                for r in rows {
                    let cells: Vec<String> =
                        names.iter().map(|n| r.fields.get(n).map(delimited_cell).unwrap_or_default()).collect();
                    lines.push(cells.join(&self.delimiter));
                }
                Ok(lines.join("\n").into_bytes())
            }
            Format::Binary => {
                let fields = self.selected(&rows[0]);
                match fields.values().collect::<Vec<_>>().as_slice() {
                    [Value::Bytes(b)] => Ok(b.clone()),
                    [Value::String(s)] => Ok(s.clone().into_bytes()),
                    _ => Err(format!(
                        "format binary needs rows of one bytes field (such as SELECT self), got {} fields",
                        fields.len()
                    )),
                }
            }
        }
    }

    /// The row's fields, only those named in `fields` when it is set.
    fn selected(&self, r: &Record) -> BTreeMap<String, Value> {
        match &self.fields {
            None => r.fields.clone(),
            Some(names) => names.iter().map(|n| (n.clone(), r.fields.get(n).cloned().unwrap_or_default())).collect(),
        }
    }
}

/// One delimited cell: strings as they are, null empty, the rest as JSON.
fn delimited_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_json().to_string(),
    }
}

/// A value as the template engine sees it (Go's `map[string]any` and friends).
fn to_template(v: &Value) -> gtmpl::Value {
    use gtmpl::Value as T;
    match v {
        Value::Null => T::Nil,
        Value::Bool(b) => T::Bool(*b),
        Value::Int(i) => T::from(*i),
        Value::Uint(u) => T::from(*u),
        Value::Float(f) => T::from(*f),
        Value::String(s) => T::String(s.clone()),
        Value::Bytes(b) => T::String(base64(b)),
        Value::List(items) => T::Array(items.iter().map(to_template).collect()),
        Value::Map(m) => T::Object(m.iter().map(|(k, v)| (k.clone(), to_template(v))).collect::<HashMap<_, _>>()),
    }
}

/// eKuiper's `json` template function: the argument as JSON text.
fn template_json(args: &[gtmpl::Value]) -> Result<gtmpl::Value, gtmpl::FuncError> {
    let arg = args.first().ok_or(gtmpl::FuncError::AtLeastXArgs("json".into(), 1))?;
    Ok(gtmpl::Value::String(template_to_json(arg).to_string()))
}

fn template_to_json(v: &gtmpl::Value) -> serde_json::Value {
    use gtmpl::Value as T;
    use serde_json::Value as J;
    match v {
        T::NoValue | T::Nil | T::Function(_) => J::Null,
        T::Bool(b) => J::Bool(*b),
        T::String(s) => J::String(s.clone()),
        T::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => J::from(i),
            (None, Some(u), _) => J::from(u),
            (None, None, Some(f)) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            _ => J::Null,
        },
        T::Array(items) => J::Array(items.iter().map(template_to_json).collect()),
        // Sorted keys, as Go's encoding/json writes a map.
        T::Object(m) | T::Map(m) => {
            let sorted: BTreeMap<_, _> = m.iter().collect();
            J::Object(sorted.into_iter().map(|(k, v)| (k.clone(), template_to_json(v))).collect())
        }
    }
}

/// Standard base64, as Go's encoding/json writes `[]byte`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn row(pairs: &[(&str, Value)]) -> Record {
        Record::from_fields(props(pairs))
    }

    fn texts(items: Vec<Result<Vec<u8>, String>>) -> Vec<Result<String, String>> {
        items.into_iter().map(|i| i.map(|b| String::from_utf8(b).unwrap())).collect()
    }

    #[test]
    fn json_items_follow_send_single_and_emissions() {
        let rows = [row(&[("a", Value::Int(1)), ("b", "x".into())]), row(&[("a", Value::Uint(u64::MAX))])];
        let list = PayloadEncoder::new(&BTreeMap::new()).unwrap();
        assert_eq!(
            texts(list.encode(&rows, &[])),
            [Ok(r#"[{"a":1,"b":"x"}]"#.to_string()), Ok(r#"[{"a":18446744073709551615}]"#.to_string())]
        );
        assert_eq!(
            texts(list.encode(&rows, &[2])),
            [Ok(r#"[{"a":1,"b":"x"},{"a":18446744073709551615}]"#.to_string())]
        );
        // Two windows in one batch: two items.
        assert_eq!(
            texts(list.encode(&rows, &[1, 2])),
            [Ok(r#"[{"a":1,"b":"x"}]"#.to_string()), Ok(r#"[{"a":18446744073709551615}]"#.to_string())]
        );
        let single = PayloadEncoder::new(&props(&[("sendSingle", true.into())])).unwrap();
        assert_eq!(
            texts(single.encode(&rows, &[2])),
            [Ok(r#"{"a":1,"b":"x"}"#.to_string()), Ok(r#"{"a":18446744073709551615}"#.to_string())]
        );
        let picked = PayloadEncoder::new(&props(&[("fields", Value::List(vec!["b".into()]))])).unwrap();
        assert_eq!(texts(picked.encode(&rows[..1], &[])), [Ok(r#"[{"b":"x"}]"#.to_string())]);
    }

    #[test]
    fn data_templates_render_each_item_as_go_templates_do() {
        let template =
            r#"{"t":{{.temperature}},"hot":{{if gt .temperature 20.5}}true{{else}}false{{end}},"all":{{json .}}}"#;
        let single =
            PayloadEncoder::new(&props(&[("sendSingle", true.into()), ("dataTemplate", template.into())])).unwrap();
        let rows = [row(&[("temperature", Value::Float(25.5)), ("id", "x".into())])];
        assert_eq!(
            texts(single.encode(&rows, &[])),
            [Ok(r#"{"t":25.5,"hot":true,"all":{"id":"x","temperature":25.5}}"#.to_string())]
        );
        let list = PayloadEncoder::new(&props(&[("dataTemplate", "{{range .}}{{.id}};{{end}}".into())])).unwrap();
        let rows = [row(&[("id", "a".into())]), row(&[("id", "b".into())])];
        assert_eq!(texts(list.encode(&rows, &[2])), [Ok("a;b;".to_string())]);
    }

    #[test]
    fn delimited_and_binary_items() {
        let rows = [row(&[("b", "x".into()), ("a", Value::Int(1))]), row(&[("a", Value::Null), ("b", "y".into())])];
        let csv = PayloadEncoder::new(&props(&[("format", "delimited".into()), ("hasHeader", true.into())])).unwrap();
        assert_eq!(texts(csv.encode(&rows, &[2])), [Ok("a,b\n1,x\n,y".to_string())]);
        let ordered = PayloadEncoder::new(&props(&[
            ("format", "delimited".into()),
            ("delimiter", "|".into()),
            ("fields", Value::List(vec!["b".into(), "a".into()])),
            ("sendSingle", true.into()),
        ]))
        .unwrap();
        assert_eq!(texts(ordered.encode(&rows, &[2])), [Ok("x|1".to_string()), Ok("y|".to_string())]);
        let binary = PayloadEncoder::new(&props(&[("format", "BINARY".into())])).unwrap();
        let raw = [row(&[("self", Value::Bytes(vec![0, 255]))]), rows[0].clone()];
        let items = binary.encode(&raw, &[2]);
        assert_eq!(items[0], Ok(vec![0, 255]));
        assert_eq!(
            items[1],
            Err("format binary needs rows of one bytes field (such as SELECT self), got 2 fields".into())
        );
    }

    #[test]
    fn bad_properties_are_refused_by_name() {
        let cases = [
            (props(&[("format", "protobuf".into())]), "unknown format \"protobuf\""),
            (props(&[("sendSingle", "yes".into())]), "sendSingle must be true or false"),
            (props(&[("dataTemplate", "{{.a".into())]), "dataTemplate does not parse"),
            (props(&[("format", "delimited".into()), ("dataTemplate", "{{.a}}".into())]), "json only"),
            (props(&[("fields", "a".into())]), "fields must be a list"),
        ];
        for (p, want) in cases {
            let err = PayloadEncoder::new(&p).err().unwrap_or_else(|| panic!("{p:?} accepted"));
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
    }

    #[test]
    fn bytes_in_templates_are_base64_as_go_encodes_them() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    }
}
