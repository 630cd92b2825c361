//! Fuzzing and property tests, on stable Rust, of every parser and decoder that
//! takes input from outside the daemon: rule JSON, rule SQL, `CREATE STREAM`,
//! plugin names and versions, plugin metadata JSON, the plugins folder's file
//! names, plugin archives, and protobuf messages from plugins.
//!
//! The property is the same everywhere: any input gives a result or an error,
//! never a panic, a stack overflow or a hang, and within the documented size
//! limits (see `oort_sql::MAX_*` and `install::MAX_*`) memory stays
//! bounded. Every generator mixes plain random bytes with near-valid inputs
//! (token soup, mutated valid definitions, corrupted valid archives), which is
//! where parsers break.
//!
//! Each target runs a small number of cases by default, so the whole file
//! takes well under a minute in CI; `OORT_FUZZ_CASES=<n>` sets the number of
//! cases of every target (`scripts/fuzz.sh` runs a long campaign).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use oort_host::catalog::{is_valid_name, Catalog, Metadata, PluginKind, Version};
use oort_host::install::{install, InstallRequest};
use oort_proto::plugin::v1 as pb;
use oort_proto::{Record, Value};
use oort_sql::{parse_select, parse_stream, Cell, Functions, RuleDef};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

/// Far above anything a sane input takes (milliseconds): this only turns a
/// hang or a pathological blow-up into a failure instead of a stuck CI run.
const PER_INPUT_BOUND: Duration = Duration::from_secs(10);

/// Cases per target: `OORT_FUZZ_CASES` or the target's default.
fn cases(default: u32) -> u32 {
    std::env::var("OORT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `test` over `cases(default)` inputs of `strategy`, reporting the
/// number of cases and the time taken (read by `scripts/fuzz.sh`).
fn fuzz<S: Strategy>(target: &str, default: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let n = cases(default);
    let config = Config { cases: n, failure_persistence: None, max_shrink_iters: 2_000, ..Config::default() };
    let started = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |input| {
        let t = Instant::now();
        test(input)?;
        prop_assert!(t.elapsed() < PER_INPUT_BOUND, "one input took {:?}", t.elapsed());
        Ok(())
    });
    eprintln!(
        "FUZZ target={target} cases={n} failures={} secs={:.2}",
        result.is_err() as u8,
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
}

/// Text from a token list, with a chance of stray random characters between tokens.
fn soup(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => proptest::sample::select(tokens).prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ];
    (proptest::collection::vec(piece, 0..max), proptest::collection::vec(any::<bool>(), 0..max)).prop_map(|(t, sp)| {
        let mut out = String::new();
        for (i, tok) in t.iter().enumerate() {
            out.push_str(tok);
            if sp.get(i).copied().unwrap_or(true) {
                out.push(' ');
            }
        }
        out
    })
}

/// Random bytes read as text the way the API does (lossy UTF-8).
fn random_text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect()),
    ]
}

// ----- SQL -----

const SQL_TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IS",
    "NULL",
    "TRUE",
    "FALSE",
    "*",
    "+",
    "-",
    "/",
    "%",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "(",
    ")",
    ",",
    ".",
    "'",
    "\"",
    "`",
    "x",
    "y",
    "s1",
    "demo",
    "demo.x",
    "lower",
    "upper",
    "abs",
    "round",
    "concat",
    "length",
    "trim",
    "echo",
    "countWords",
    "1",
    "0",
    "-1",
    "1.5",
    "1e309",
    "9223372036854775807",
    "9223372036854775808",
    "'a'",
    "\"b\"",
    "''",
    "GROUP BY",
    "ORDER BY",
    "LIMIT 1",
    "JOIN",
    ";",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "::",
    "[",
    "]",
    "{",
    "}",
    "IN",
    "BETWEEN",
    "LIKE",
    "DISTINCT",
    "UNION",
    "WITH",
    "OVER",
    "FILTER",
    "INTERVAL",
    "EXISTS",
    "ARRAY",
    "$1",
    "?",
    "@",
    "#",
    "--",
    "/*",
    "*/",
    "é",
    "\u{0}",
    "x IS NULL",
    "x + x",
    "(x)",
    "f(x)",
    "COLLATE",
    "->",
    "->>",
    "||",
    "^",
];

/// `SELECT <soup> FROM s [WHERE <soup>]`, or pure soup, or a long
/// machine-made run of one shape (the shapes that broke the stack before).
fn sql_input() -> impl Strategy<Value = String> {
    let chain = (
        1usize..3_000,
        proptest::sample::select(&["+", "-", "*", "AND", "OR", "=", "<", "||", "IS NULL", "::int", "[1]", "NOT"][..]),
    )
        .prop_map(|(n, op)| match op {
            "IS NULL" | "::int" | "[1]" => format!("SELECT x{} AS y FROM s1", format!(" {op}").repeat(n)),
            "NOT" => format!("SELECT {} x FROM s1", "NOT ".repeat(n)),
            _ => format!("SELECT {} AS y FROM s1", vec!["x"; n].join(&format!(" {op} "))),
        });
    let nesting = (1usize..300, proptest::sample::select(&["(", "abs(", "echo(", "-(", "NOT ("][..]))
        .prop_map(|(n, open)| format!("SELECT {}x{} FROM s", open.repeat(n), ")".repeat(n)));
    prop_oneof![
        3 => (soup(SQL_TOKENS, 40), proptest::option::of(soup(SQL_TOKENS, 40)))
            .prop_map(|(sel, filter)| match filter {
                Some(f) => format!("SELECT {sel} FROM s WHERE {f}"),
                None => format!("SELECT {sel} FROM s"),
            }),
        2 => soup(SQL_TOKENS, 60),
        1 => chain,
        1 => nesting,
        1 => random_text(300),
    ]
}

/// Plugin functions that echo their first argument (or fail the row).
struct Echo;

impl Functions for Echo {
    type Error = ();
    async fn call(&self, _site: usize, rows: Vec<Vec<Value>>) -> Result<Vec<Cell>, ()> {
        Ok(rows.into_iter().map(|r| r.into_iter().next().ok_or_else(|| "no argument".to_string())).collect())
    }
}

fn sample_records() -> Vec<Record> {
    let values = [
        Value::Int(1),
        Value::Int(i64::MIN),
        Value::Float(f64::NAN),
        Value::String("a".into()),
        Value::Null,
        Value::Bool(true),
        Value::List(vec![Value::Int(1)]),
    ];
    values
        .iter()
        .map(|v| Record::from_fields(BTreeMap::from([("x".to_string(), v.clone()), ("y".to_string(), v.clone())])))
        .collect()
}

#[test]
fn fuzz_rule_sql() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    fuzz("rule_sql", 1_000, sql_input(), |text| {
        match parse_select(&text) {
            Ok(plan) => {
                // Whatever plans must evaluate, on this thread's ordinary stack.
                let out = rt.block_on(oort_sql::run_batch(&plan, sample_records(), &Echo));
                prop_assert!(out.is_ok());
            }
            Err(e) => prop_assert!(!e.0.contains("internal error"), "{}", e.0),
        }
        Ok(())
    });
}

// ----- rule JSON -----

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9 _.-]{0,12}".prop_map(serde_json::Value::from),
        proptest::sample::select(&["1s", "500ms", "-1s", "1e30h", "24h", "25h", "0", "NaNs", "1.5m", ""][..])
            .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-zA-Z]{0,10}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

const RULE_KEYS: &[&str] = &["id", "sql", "actions", "options", "name", "triggered", "extra"];
const OPTION_KEYS: &[&str] =
    &["qos", "checkpointInterval", "restartStrategy", "bufferLength", "sendMetaToSink", "isEventTime"];
const RESTART_KEYS: &[&str] = &["attempts", "delay", "multiplier", "maxDelay", "jitterFactor", "other"];

/// A valid rule with some of its parts replaced by arbitrary JSON.
fn mutated_rule() -> impl Strategy<Value = Vec<u8>> {
    let mutation = prop_oneof![
        (proptest::sample::select(RULE_KEYS), json_value()).prop_map(|(k, v)| (vec![k], v)),
        (proptest::sample::select(OPTION_KEYS), json_value()).prop_map(|(k, v)| (vec!["options", k], v)),
        (proptest::sample::select(RESTART_KEYS), json_value())
            .prop_map(|(k, v)| (vec!["options", "restartStrategy", k], v)),
        sql_input().prop_map(|s| (vec!["sql"], serde_json::Value::from(s))),
    ];
    (proptest::collection::vec(mutation, 0..4), any::<bool>()).prop_map(|(mutations, as_array)| {
        let mut rule = serde_json::json!({
            "id": "r1", "sql": "SELECT x, upper(y) AS u FROM s WHERE x > 1",
            "actions": [{"log": {}}, {"file": {"path": "/tmp/x"}}],
            "options": {"qos": 1, "checkpointInterval": "1s", "bufferLength": 64,
                        "restartStrategy": {"attempts": 3, "delay": 100}}
        });
        for (path, value) in mutations {
            let mut at = &mut rule;
            for key in &path[..path.len() - 1] {
                if !at.get(*key).is_some_and(|v| v.is_object()) {
                    at[*key] = serde_json::json!({});
                }
                at = &mut at[*key];
            }
            at[*path.last().unwrap()] = value;
        }
        if as_array {
            rule = serde_json::Value::Array(rule.as_object().unwrap().values().cloned().collect());
        }
        serde_json::to_vec(&rule).unwrap()
    })
}

#[test]
fn fuzz_rule_json() {
    let input = prop_oneof![
        3 => mutated_rule(),
        1 => proptest::collection::vec(any::<u8>(), 0..400),
        1 => (1usize..5_000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
    ];
    fuzz("rule_json", 1_000, input, |bytes| {
        if let Ok(def) = RuleDef::from_json(&bytes) {
            match def.plan() {
                Ok(plan) => {
                    prop_assert!(plan.qos <= 2);
                    prop_assert!(plan.checkpoint_interval <= oort_sql::MAX_CHECKPOINT_INTERVAL);
                    prop_assert!(!plan.checkpoint_interval.is_zero());
                    prop_assert!(oort_sql::BUFFER_LENGTH_RANGE.contains(&plan.buffer_length));
                    // The accepted strategy must give finite, bounded delays.
                    for attempt in [0, 1, 10, 64, u32::MAX] {
                        prop_assert!(plan.restart.delay_for(attempt) <= Duration::from_secs(2 * 24 * 3600));
                    }
                }
                Err(e) => prop_assert!(!e.0.contains("internal error"), "{}", e.0),
            }
        }
        Ok(())
    });
}

// ----- CREATE STREAM -----

const STREAM_TOKENS: &[&str] = &[
    "CREATE",
    "STREAM",
    "create",
    "stream",
    "s1",
    "demo",
    "a-b",
    "`q`",
    "`",
    "(",
    ")",
    ",",
    "x",
    "y",
    "BIGINT",
    "FLOAT",
    "STRING",
    "BOOLEAN",
    "DATETIME",
    "BYTEA",
    "ARRAY",
    "STRUCT",
    "WIDGET",
    "WITH",
    "with",
    "TYPE",
    "type",
    "DATASOURCE",
    "FORMAT",
    "CONF_KEY",
    "SHARED",
    "interval",
    "Interval",
    "=",
    "\"random\"",
    "'file'",
    "\"json\"",
    "\"{\\\"a\\\":1}\"",
    "'[1,2]'",
    "\"",
    "'",
    ";",
    "é",
    "\u{0}",
    "\n",
    "\t",
];

fn stream_input() -> impl Strategy<Value = String> {
    let wide = (0usize..3_000).prop_map(|n| {
        let fields: Vec<String> = (0..n).map(|i| format!("f{} BIGINT", i % 2_900)).collect();
        format!("CREATE STREAM s ({}) WITH (TYPE=\"x\")", fields.join(", "))
    });
    prop_oneof![
        3 => (soup(STREAM_TOKENS, 30), soup(STREAM_TOKENS, 20))
            .prop_map(|(fields, with)| format!("CREATE STREAM s ({fields}) WITH ({with})")),
        2 => soup(STREAM_TOKENS, 50),
        1 => wide,
        1 => random_text(300),
    ]
}

#[test]
fn fuzz_create_stream() {
    fuzz("create_stream", 1_000, stream_input(), |sql| {
        if let Ok(def) = parse_stream(&sql) {
            prop_assert!(is_valid_name(&def.name));
            prop_assert!(def.fields.len() <= oort_sql::MAX_STREAM_FIELDS);
            let _ = def.source_props();
            let _ = (def.source_type(), def.datasource(), def.conf_key());
            // What was accepted must read back the same (it is stored as text).
            prop_assert_eq!(parse_stream(&def.sql).unwrap(), def);
        }
        Ok(())
    });
}

// ----- plugin names and versions -----

fn name_input() -> impl Strategy<Value = String> {
    prop_oneof![
        soup(&["1", "0", ".", "-", "+", "v", "V", "rc", "alpha", "@", "a", "Z", "_", "01", "99999999999999999999"], 8)
            .prop_map(|s| s.replace(' ', "")),
        random_text(24),
    ]
}

#[test]
fn fuzz_names_and_versions() {
    fuzz("names_versions", 5_000, (name_input(), name_input(), name_input()), |(a, b, c)| {
        let _ = is_valid_name(&a);
        let (va, vb, vc) = (Version::parse(&a), Version::parse(&b), Version::parse(&c));
        // A total order: sorting (which may panic on a broken order) must work.
        prop_assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
        prop_assert_eq!(va.cmp(&va), std::cmp::Ordering::Equal);
        if va <= vb && vb <= vc {
            prop_assert!(va <= vc, "{va} <= {vb} <= {vc}");
        }
        let mut all = [va.clone(), vb, vc, va];
        all.sort();
        let _ = all.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        let _ = PluginKind::parse(&a);
        Ok(())
    });
}

// ----- plugin metadata and the plugins folder -----

fn metadata_input() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (proptest::sample::select(&["about", "libs", "properties", "functions", "x"][..]), json_value())
        .prop_map(|(k, v)| {
            let mut m = serde_json::json!({"about": {"trial": true}, "libs": [], "properties": [{"name": "p"}],
                                          "functions": [{"name": "f", "example": "f(1)"}]});
            m[k] = v;
            serde_json::to_vec(&m).unwrap()
        });
    prop_oneof![3 => mutated, 1 => proptest::collection::vec(any::<u8>(), 0..300)]
}

#[test]
fn fuzz_plugin_metadata() {
    fuzz("plugin_metadata", 2_000, metadata_input(), |bytes| {
        if let Ok(meta) = serde_json::from_slice::<Metadata>(&bytes) {
            let _ = serde_json::to_vec(&meta).unwrap();
        }
        Ok(())
    });
}

/// File names as an operator or an archive might leave them in the plugins folder.
fn file_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        soup(&["p", "P", "q", "@", "1.0", "v2", ".json", ".", "-", "_", ".install-x", "é", " "], 5)
            .prop_map(|s| s.replace(' ', "").into_bytes()),
        proptest::collection::vec(any::<u8>(), 1..20),
    ]
}

#[test]
fn fuzz_plugins_folder() {
    let input = proptest::collection::vec(
        (
            file_name(),
            metadata_input(),
            any::<bool>(),
            proptest::sample::select(&["sources", "sinks", "functions"][..]),
        ),
        0..8,
    );
    fuzz("plugins_folder", 200, input, |files| {
        let dir = tempfile::tempdir().unwrap();
        for (name, content, exec, kind) in files {
            let bytes: Vec<u8> = name.into_iter().filter(|b| *b != b'/' && *b != 0).collect();
            if bytes.is_empty() || bytes == b"." || bytes == b".." {
                continue;
            }
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::fs::PermissionsExt;
            let kind_dir = dir.path().join(kind);
            std::fs::create_dir_all(&kind_dir).unwrap();
            let path = kind_dir.join(std::ffi::OsStr::from_bytes(&bytes));
            if std::fs::write(&path, &content).is_ok() {
                let mode = if exec { 0o755 } else { 0o644 };
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
            }
        }
        let catalog = Catalog::scan(dir.path());
        for kind in [PluginKind::Source, PluginKind::Sink, PluginKind::Function] {
            for p in catalog.list(kind) {
                prop_assert!(is_valid_name(&p.name));
                let _ = catalog.get(kind, &p.name);
            }
        }
        let _ = catalog.errors().iter().map(|e| e.to_string()).collect::<Vec<_>>();
        Ok(())
    });
}

// ----- archives -----

const ENTRY_NAMES: &[&str] =
    &["p", "P", "p@1.0", "p@", "p@1@2", "p.json", "P.json", "../p", "/p", "dir/p", "install.sh", "q", "", "./p"];

/// A valid-looking zip or tar.gz of a few entries, then corrupted a little.
fn archive_input() -> impl Strategy<Value = Vec<u8>> {
    let entries = proptest::collection::vec(
        (proptest::sample::select(ENTRY_NAMES), proptest::collection::vec(any::<u8>(), 0..64)),
        0..4,
    );
    let corruption = proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4);
    let built = (entries, any::<bool>(), corruption, proptest::option::of(any::<prop::sample::Index>())).prop_map(
        |(entries, zip, corruption, truncate)| {
            let mut bytes = if zip { make_zip(&entries) } else { make_tar_gz(&entries) };
            if !bytes.is_empty() {
                for (at, b) in corruption {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
                if let Some(at) = truncate {
                    bytes.truncate(at.index(bytes.len()));
                }
            }
            bytes
        },
    );
    prop_oneof![
        4 => built,
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        1 => proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| [&b"PK\x03\x04"[..], &b[..]].concat()),
        1 => proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| [&[0x1f, 0x8b, 8, 0][..], &b[..]].concat()),
    ]
}

fn make_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        if w.start_file(*name, options).is_ok() {
            w.write_all(data).unwrap();
        }
    }
    w.finish().map(|c| c.into_inner()).unwrap_or_default()
}

fn make_tar_gz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        // Written raw so that unsafe names (`../p`, `/p`) go in as they are.
        let raw = name.as_bytes();
        header.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        let _ = tar.append(&header, data.as_slice());
    }
    tar.into_inner().and_then(|gz| gz.finish()).unwrap_or_default()
}

#[test]
fn fuzz_plugin_archives() {
    fuzz("plugin_archives", 500, archive_input(), |bytes| {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("upload");
        std::fs::write(&archive, &bytes).unwrap();
        let plugins = dir.path().join("plugins");
        let req = InstallRequest {
            kind: PluginKind::Sink,
            name: "p".into(),
            file: archive.display().to_string(),
            sha256: None,
        };
        match install(&plugins, &req) {
            Ok(done) => {
                for f in &done.files {
                    prop_assert!(f.starts_with(plugins.join("sinks")), "{f:?}");
                }
            }
            Err(e) => {
                let _ = (e.to_string(), e.is_client_error());
                // A failed install leaves nothing behind but the kind folder.
                prop_assert!(leftovers(&plugins).is_empty(), "{:?} after {e}", leftovers(&plugins));
            }
        }
        Ok(())
    });
}

fn leftovers(plugins: &Path) -> Vec<String> {
    let Ok(kind) = std::fs::read_dir(plugins.join("sinks")) else { return Vec::new() };
    kind.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

// ----- protobuf from plugins -----

/// An encoded message of a plugin.v1 response type, then corrupted, or random bytes.
fn proto_input() -> impl Strategy<Value = Vec<u8>> {
    let value = any::<(i64, String, f64, u8)>().prop_map(|(i, s, f, depth)| {
        let mut v = Value::Map(BTreeMap::from([
            ("i".to_string(), Value::Int(i)),
            ("s".to_string(), Value::String(s)),
            ("f".to_string(), Value::Float(f)),
        ]));
        for _ in 0..depth % 120 {
            v = Value::List(vec![v]);
        }
        pb::Value::from(v)
    });
    let encoded = (value, any::<u64>()).prop_map(|(v, seq)| {
        let record = pb::Record { fields: BTreeMap::from([("a".to_string(), v.clone())]), ..Default::default() };
        let mut out =
            pb::RecordBatch { records: vec![record], offset: Some(v.clone()), ..Default::default() }.encode_to_vec();
        out.extend(
            pb::ExecResult {
                seq,
                results: vec![pb::RowResult { outcome: Some(pb::row_result::Outcome::Value(v)) }],
                ..Default::default()
            }
            .encode_to_vec(),
        );
        out
    });
    let corrupted = (encoded, proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6)).prop_map(
        |(mut bytes, flips)| {
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        },
    );
    prop_oneof![2 => corrupted, 1 => proptest::collection::vec(any::<u8>(), 0..400)]
}

fn to_domain(records: Vec<pb::Record>) {
    for r in records {
        let r = Record::from(r);
        let _ = r.fields_to_json();
        let _ = pb::Record::from(r).encode_to_vec();
    }
}

#[test]
fn fuzz_plugin_protobuf() {
    fuzz("plugin_protobuf", 3_000, proto_input(), |bytes| {
        let b = bytes.as_slice();
        if let Ok(m) = pb::RecordBatch::decode(b) {
            to_domain(m.records);
            let _ = m.offset.map(|v| Value::from(v).to_json());
        }
        if let Ok(m) = pb::ExecResult::decode(b) {
            for r in m.results {
                if let Some(pb::row_result::Outcome::Value(v)) = r.outcome {
                    let _ = Value::from(v).to_json();
                }
            }
        }
        if let Ok(m) = pb::WriteAck::decode(b) {
            let _ = m.error.len() + m.mutations.len();
        }
        if let Ok(m) = pb::PreCommitResponse::decode(b) {
            let _ = m.handle.map(Value::from);
        }
        if let Ok(m) = pb::DescribeResponse::decode(b) {
            let _ = format!("{m:?}");
        }
        let _ = pb::ValidateResponse::decode(b);
        let _ = pb::OpenSourceResponse::decode(b);
        let _ = pb::OpenSinkResponse::decode(b);
        if let Ok(m) = pb::Value::decode(b) {
            let _ = Value::from(m).to_json();
        }
        Ok(())
    });
}
