//! The `bench` source: synthetic records for benchmarks.
//!
//! Emits `{"n": i, "l": [i], "text": "alpha beta gamma"}` for `i` in
//! `offset..count`, in batches of up to the reader's `max`, then idles.
//!
//! Properties:
//! - `count` (integer, default 1 000 000): how many records in all;
//! - `keys` (integer, default 0): when positive, every record also carries
//!   `k`, the integer `i mod keys` (a group key with `keys` distinct values),
//!   and `x`, the float `(i mod 100) / 4` (a value to aggregate), for the
//!   window benchmarks; without it the records are as above;
//! - `rate` (records per second, default 0 = as fast as the reader takes them).
//!   With a rate, batches are paced so that the average rate holds (a source
//!   that fell behind catches up in full batches) and a due record waits at
//!   most about 1 ms for its batch; every record then also carries `t`, the
//!   wall-clock time of its emission in microseconds since the Unix epoch, so
//!   that a sink can compute the end-to-end latency (see the `latency` sink).
//!
//! The source is rewindable: its offset is `Int(i)`, the index of the next
//! record it would emit. When the supervisor accepts Arrow columns, batches
//! go as columns (`n` Int64, `l` List<Int64>, `text` Utf8, …), built
//! without a value per field; records otherwise.
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use oort_plugin::arrow::builder::{Int64Builder, ListBuilder};
use oort_plugin::arrow::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use oort_plugin::arrow::{Field, Schema};
use oort_plugin::{serve, BoxError, Context, Export, Plugin, Props, Record, Source, Value};

/// The longest one read call waits, per the SDK contract.
const READ_BUDGET: Duration = Duration::from_millis(100);
/// The longest a due record waits for its batch when the source is paced.
const BATCH_WINDOW: Duration = Duration::from_millis(1);
const TEXT: &str = "alpha beta gamma";

/// Pacing reference: `base` records had been emitted at `epoch`.
struct Pace {
    epoch: Instant,
    base: i64,
    last_emit: Instant,
}

#[derive(Default)]
struct Bench {
    next: i64,
    count: i64,
    keys: i64,
    rate: f64,
    pace: Option<Pace>,
}

fn now_since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl Bench {
    /// How many records should have been emitted by `now` (paced sources only).
    fn due(&self, pace: &Pace, now: Instant) -> i64 {
        let elapsed = now.saturating_duration_since(pace.epoch).as_secs_f64();
        (pace.base + (elapsed * self.rate) as i64).min(self.count)
    }

    fn emit(&mut self, out: &mut Vec<Record>, n: i64) {
        let now = now_since_epoch();
        let (ts_ms, t_us) = (now.as_millis() as i64, now.as_micros() as i64);
        let stamped = self.rate > 0.0;
        for i in self.next..self.next + n {
            let mut fields = BTreeMap::new();
            fields.insert("n".to_string(), Value::Int(i));
            fields.insert("l".to_string(), Value::List(vec![Value::Int(i)]));
            fields.insert("text".to_string(), Value::String(TEXT.to_string()));
            if stamped {
                fields.insert("t".to_string(), Value::Int(t_us));
            }
            if self.keys > 0 {
                fields.insert("k".to_string(), Value::Int(i % self.keys));
                fields.insert("x".to_string(), Value::Float((i % 100) as f64 / 4.0));
            }
            out.push(Record { fields, timestamp_ms: ts_ms, ..Record::default() });
        }
        self.next += n;
    }
}

impl Bench {
    /// Records `next..next + n` as one batch of columns, the same fields as
    /// [`Bench::emit`] makes (records from columns carry no event time).
    fn emit_columns(&mut self, n: i64) -> Result<RecordBatch, BoxError> {
        let range = self.next..self.next + n;
        let len = n as usize;
        let mut columns: Vec<(&str, ArrayRef)> = vec![("n", Arc::new(Int64Array::from_iter_values(range.clone())))];
        let mut lists = ListBuilder::with_capacity(Int64Builder::with_capacity(len), len);
        for i in range.clone() {
            lists.values().append_value(i);
            lists.append(true);
        }
        columns.push(("l", Arc::new(lists.finish())));
        columns.push(("text", Arc::new(StringArray::from_iter_values(std::iter::repeat_n(TEXT, len)))));
        if self.rate > 0.0 {
            let t_us = now_since_epoch().as_micros() as i64;
            columns.push(("t", Arc::new(Int64Array::from_iter_values(std::iter::repeat_n(t_us, len)))));
        }
        if self.keys > 0 {
            let keys = self.keys;
            columns.push(("k", Arc::new(Int64Array::from_iter_values(range.clone().map(|i| i % keys)))));
            columns.push(("x", Arc::new(Float64Array::from_iter_values(range.map(|i| (i % 100) as f64 / 4.0)))));
        }
        let fields: Vec<Field> =
            columns.iter().map(|(name, c)| Field::new(*name, c.data_type().clone(), true)).collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, c)| c).collect())?;
        self.next += n;
        Ok(batch)
    }

    /// How many records the next batch of at most `max` holds: all that
    /// remain up to `max`, or for a paced source what is due (waiting for it).
    fn next_batch(&mut self, max: usize) -> i64 {
        let max = max.max(1) as i64;
        if self.next >= self.count {
            std::thread::sleep(READ_BUDGET);
            return 0;
        }
        if self.rate <= 0.0 {
            return max.min(self.count - self.next);
        }
        let now = Instant::now();
        let pace = self.pace.take().unwrap_or(Pace { epoch: now, base: self.next, last_emit: now - BATCH_WINDOW });
        let mut due = self.due(&pace, now);
        if due - self.next < max {
            // Not a full batch due: wait until the next record is due, but let
            // records gather for up to BATCH_WINDOW since the last batch.
            let next_due = pace.epoch + Duration::from_secs_f64((self.next + 1 - pace.base) as f64 / self.rate);
            let wake = next_due.max(pace.last_emit + BATCH_WINDOW);
            if wake > now {
                std::thread::sleep((wake - now).min(READ_BUDGET));
            }
            due = self.due(&pace, Instant::now());
        }
        let n = (due - self.next).clamp(0, max);
        let last_emit = if n > 0 { Instant::now() } else { pace.last_emit };
        self.pace = Some(Pace { last_emit, ..pace });
        n
    }
}

fn number_prop(props: &Props, key: &str, default: f64) -> Result<f64, BoxError> {
    match props.get(key) {
        None => Ok(default),
        Some(v) => match v.as_f64() {
            Some(x) if x >= 0.0 && x.is_finite() => Ok(x),
            _ => Err(format!("property {key} must be a non-negative number, got {v:?}").into()),
        },
    }
}

impl Source for Bench {
    fn open(&mut self, _ctx: &Context, _datasource: &str, props: &Props) -> Result<(), BoxError> {
        self.count = match props.get("count") {
            None => 1_000_000,
            Some(v) => match v.as_i64() {
                Some(c) if c >= 0 => c,
                _ => return Err(format!("property count must be a non-negative integer, got {v:?}").into()),
            },
        };
        self.keys = match props.get("keys") {
            None => 0,
            Some(v) => match v.as_i64() {
                Some(k) if k >= 0 => k,
                _ => return Err(format!("property keys must be a non-negative integer, got {v:?}").into()),
            },
        };
        self.rate = number_prop(props, "rate", 0.0)?;
        self.next = 0;
        self.pace = None;
        Ok(())
    }

    fn read(&mut self, _ctx: &Context, out: &mut Vec<Record>, max: usize) -> Result<(), BoxError> {
        let n = self.next_batch(max);
        if n > 0 {
            self.emit(out, n);
        }
        Ok(())
    }

    fn read_columns(&mut self, _ctx: &Context, max: usize) -> Option<Result<RecordBatch, BoxError>> {
        let n = self.next_batch(max);
        Some(self.emit_columns(n))
    }

    fn rewindable(&self) -> bool {
        true
    }

    fn offset(&self) -> Option<Value> {
        Some(Value::Int(self.next))
    }

    fn rewind(&mut self, _ctx: &Context, offset: &Value) -> Result<(), BoxError> {
        match *offset {
            Value::Int(i) if (0..=self.count).contains(&i) => {
                self.next = i;
                // Pace from here on, without a burst for the time spent rewinding.
                self.pace = None;
                Ok(())
            }
            ref other => {
                Err(format!("the bench source's offset is an integer in 0..={}, got {other:?}", self.count).into())
            }
        }
    }
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    serve(Plugin::new("bench", env!("CARGO_PKG_VERSION")).source(Export::shared(Bench::default)));
}
