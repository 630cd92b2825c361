//! The Rust reference plugin of the cross-language conformance suite. The Go
//! and Python SDKs ship a plugin with exactly the same behaviour, and
//! `tests/tests/conformance.rs` runs one scenario list against all of them.
//!
//! Functions (constructor-exported; singletons when `OORT_CONFORMANCE_SINGLETON=1`,
//! and the source and sink too when it is `all`, Rust only):
//! `cf_echo(x)`, `cf_fail(x)` (row error for strings starting with "bad"),
//! `cf_count(key)`, `cf_state(op, key[, value])` with op put/get/delete/incr/counter,
//! `cf_pid()`, and the aggregate `cf_agg(values)` (Describe marks it
//! `is_aggregate`): one row per group, `values` the group's list, answered with
//! `{"n": items (nulls included), "sum": sum of the int items (nulls, strings
//! and every other type skipped; wrapping on i64 overflow)}`, a row error
//! `cf_agg expects a list, got <type>` for a non-list, and `IncrCounter("groups", 1)`
//! per group answered. Source `conformance`: `{"n": i}` for i below prop `count`
//! (default 100), offset = next i, rewindable. Sink `conformance`: appends
//! JSON lines to prop `path`; pre-commit returns the file length, commit and
//! abort append `commit|abort <id> <handle>` to `<path>.commits`. Prop
//! `failPreCommit: true` (Rust only, for the supervisor's own tests) makes
//! every pre-commit fail.
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::Duration;

use std::sync::Arc;

use oort_plugin::arrow::{ArrayRef, Int64Array, RecordBatch};
use oort_plugin::{serve, ArgSpec, BoxError, Context, Export, Function, Plugin, Props, Record, Sink, Source, Value};

struct Echo;
impl Function for Echo {
    fn validate(&self, args: &[ArgSpec]) -> Result<(), BoxError> {
        match args.len() {
            1 => Ok(()),
            n => Err(format!("cf_echo expects 1 argument, got {n}").into()),
        }
    }
    fn exec(&self, _ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        Ok(args.first().cloned().unwrap_or_default())
    }

    /// A columnar batch is answered with its argument column itself: no
    /// value is decoded or copied.
    fn exec_columns(&self, _ctx: &Context, args: &[ArrayRef], _rows: usize) -> Option<Result<ArrayRef, BoxError>> {
        Some(args.first().cloned().ok_or_else(|| "cf_echo expects 1 argument, got 0".into()))
    }
}

struct Fail;
impl Function for Fail {
    fn exec(&self, _ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        let x = args.first().cloned().unwrap_or_default();
        match x.as_str() {
            Some(s) if s.starts_with("bad") => Err(format!("cf_fail: {s}").into()),
            _ => Ok(x),
        }
    }
}

struct Count;
impl Function for Count {
    fn exec(&self, ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        let key = args.first().and_then(Value::as_str).ok_or("cf_count(key) needs a string key")?;
        ctx.incr_counter(key, 1)?;
        Ok(Value::Int(ctx.get_counter(key)?))
    }
}

struct StateOps;
impl Function for StateOps {
    fn exec(&self, ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        let op = args.first().and_then(Value::as_str).ok_or("cf_state(op, key[, value])")?;
        let key = args.get(1).and_then(Value::as_str).ok_or("cf_state(op, key[, value])")?;
        let value = args.get(2).cloned().unwrap_or_default();
        Ok(match op {
            "put" => {
                ctx.put_state(key, value)?;
                Value::Bool(true)
            }
            "get" => ctx.get_state(key).unwrap_or_default(),
            "delete" => {
                ctx.delete_state(key);
                Value::Bool(true)
            }
            "incr" => {
                ctx.incr_counter(key, value.as_i64().ok_or("incr needs an integer amount")?)?;
                Value::Int(ctx.get_counter(key)?)
            }
            "counter" => Value::Int(ctx.get_counter(key)?),
            other => return Err(format!("unknown op {other:?}").into()),
        })
    }
}

struct Agg;
impl Function for Agg {
    fn validate(&self, args: &[ArgSpec]) -> Result<(), BoxError> {
        match args.len() {
            1 => Ok(()),
            n => Err(format!("cf_agg expects 1 argument, got {n}").into()),
        }
    }
    fn exec(&self, ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        let x = args.first().cloned().unwrap_or_default();
        let Value::List(items) = &x else {
            return Err(format!("cf_agg expects a list, got {}", x.type_name()).into());
        };
        let ints = items.iter().filter_map(|v| if let Value::Int(i) = v { Some(*i) } else { None });
        let sum = ints.fold(0i64, i64::wrapping_add);
        ctx.incr_counter("groups", 1)?;
        Ok(Value::Map(BTreeMap::from([
            ("n".to_string(), Value::Int(items.len() as i64)),
            ("sum".to_string(), Value::Int(sum)),
        ])))
    }
    fn is_aggregate(&self) -> bool {
        true
    }
}

struct Pid;
impl Function for Pid {
    fn exec(&self, _ctx: &Context, _args: &[Value]) -> Result<Value, BoxError> {
        Ok(Value::Int(std::process::id() as i64))
    }
}

#[derive(Default)]
struct Numbers {
    next: i64,
    count: i64,
}

impl Source for Numbers {
    fn open(&mut self, _ctx: &Context, _datasource: &str, props: &Props) -> Result<(), BoxError> {
        self.count =
            props.get("count").map(|v| v.as_i64().ok_or("count must be an integer")).transpose()?.unwrap_or(100);
        Ok(())
    }

    fn read(&mut self, _ctx: &Context, out: &mut Vec<Record>, max: usize) -> Result<(), BoxError> {
        if self.next >= self.count {
            std::thread::sleep(Duration::from_millis(50));
            return Ok(());
        }
        while self.next < self.count && out.len() < max {
            out.push(Record::from_fields(BTreeMap::from([("n".to_string(), Value::Int(self.next))])));
            self.next += 1;
        }
        Ok(())
    }

    /// The same records as one Int64 column `n`, when the supervisor takes
    /// columns (batches under 64 rows still go as records: the SDK's rule).
    fn read_columns(&mut self, _ctx: &Context, max: usize) -> Option<Result<RecordBatch, BoxError>> {
        if self.next >= self.count {
            std::thread::sleep(Duration::from_millis(50));
        }
        let end = self.count.min(self.next + max as i64).max(self.next);
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(self.next..end));
        self.next = end;
        Some(RecordBatch::try_from_iter([("n", n)]).map_err(Into::into))
    }

    fn rewindable(&self) -> bool {
        true
    }

    fn offset(&self) -> Option<Value> {
        Some(Value::Int(self.next))
    }

    fn rewind(&mut self, _ctx: &Context, offset: &Value) -> Result<(), BoxError> {
        match offset.as_i64() {
            Some(k) if (0..=self.count).contains(&k) => {
                self.next = k;
                Ok(())
            }
            _ => Err(format!("offset {offset:?} is outside 0..={}", self.count).into()),
        }
    }
}

#[derive(Default)]
struct Lines {
    path: String,
    out: Option<File>,
    fail_pre_commit: bool,
}

impl Lines {
    fn note(&self, line: String) -> Result<(), BoxError> {
        let mut f = OpenOptions::new().create(true).append(true).open(format!("{}.commits", self.path))?;
        writeln!(f, "{line}")?;
        Ok(())
    }
}

fn handle_text(handle: &Value) -> String {
    handle.to_json().to_string()
}

impl Sink for Lines {
    fn open(&mut self, _ctx: &Context, props: &Props) -> Result<(), BoxError> {
        self.path = props.get("path").and_then(Value::as_str).ok_or("the conformance sink needs `path`")?.to_string();
        self.out = Some(OpenOptions::new().create(true).append(true).open(&self.path)?);
        self.fail_pre_commit = props.get("failPreCommit").and_then(Value::as_bool).unwrap_or(false);
        Ok(())
    }

    /// Columns are welcome: the SDK hands them to `collect` as records.
    fn takes_columns(&self) -> bool {
        true
    }

    fn collect(&mut self, _ctx: &Context, records: &[Record]) -> Result<(), BoxError> {
        let out = self.out.as_mut().ok_or("not open")?;
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, &r.fields_to_json())?;
            buf.push(b'\n');
        }
        out.write_all(&buf)?;
        Ok(())
    }

    fn transactional(&self) -> bool {
        true
    }

    fn pre_commit(&mut self, _ctx: &Context, checkpoint_id: u64) -> Result<Value, BoxError> {
        if self.fail_pre_commit {
            return Err(format!("pre-commit of checkpoint {checkpoint_id} refused (failPreCommit)").into());
        }
        let out = self.out.as_mut().ok_or("not open")?;
        out.sync_all()?;
        Ok(Value::Int(out.metadata()?.len() as i64))
    }

    fn commit(&mut self, _ctx: &Context, checkpoint_id: u64, handle: &Value) -> Result<(), BoxError> {
        self.note(format!("commit {checkpoint_id} {}", handle_text(handle)))
    }

    fn abort(&mut self, _ctx: &Context, checkpoint_id: u64, handle: &Value) -> Result<(), BoxError> {
        self.note(format!("abort {checkpoint_id} {}", handle_text(handle)))
    }
}

fn main() {
    // "1": singleton functions; "all" (Rust only, for the supervisor's own
    // tests): the source and the sink too; "shared" (Rust only): singleton
    // functions, and the source and sink exported with `Export::shared`.
    let singleton = matches!(std::env::var("OORT_CONFORMANCE_SINGLETON").as_deref(), Ok("1" | "all" | "shared"));
    let mut plugin = Plugin::new("conformance", env!("CARGO_PKG_VERSION"));
    macro_rules! export {
        ($($name:literal => $make:expr),*) => {$(
            plugin = if singleton {
                plugin.function($name, Export::singleton($make))
            } else {
                plugin.function($name, Export::constructor(|| $make))
            };
        )*};
    }
    export!("cf_echo" => Echo, "cf_fail" => Fail, "cf_count" => Count, "cf_state" => StateOps, "cf_pid" => Pid, "cf_agg" => Agg);
    match std::env::var("OORT_CONFORMANCE_SINGLETON").as_deref() {
        Ok("all") => {
            serve(plugin.source(Export::singleton(Numbers::default())).sink(Export::singleton(Lines::default())))
        }
        // One process for every rule, a fresh object per instance.
        Ok("shared") => serve(plugin.source(Export::shared(Numbers::default)).sink(Export::shared(Lines::default))),
        _ => {}
    }
    serve(plugin.source(Export::constructor(Numbers::default)).sink(Export::constructor(Lines::default)));
}
