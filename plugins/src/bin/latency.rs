//! The `latency` sink: end-to-end latency of records stamped by the `bench`
//! source (`rate` > 0).
//!
//! For every record it takes `now − t` in microseconds (`t` being the record's
//! emission time, in microseconds since the Unix epoch) into a histogram with
//! under 1 % relative error, and appends one JSON line
//! `{"count": …, "p50_us": …, "p99_us": …, "max_us": …, "missing_t": …}` to the
//! file named by the property `path` every time pre-commit is called (a
//! checkpoint, qos ≥ 1) and when the sink closes, so the numbers can be read
//! while the rule runs. The histogram covers everything since the sink opened.
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use oort_plugin::{serve, BoxError, Context, Export, Plugin, Props, Record, Sink, Value};

/// Values below this are counted exactly.
const LINEAR: u64 = 256;
/// Sub-buckets per power of two above `LINEAR`: a relative error under 1/128.
const SUB: u64 = 128;
const BUCKETS: usize = (LINEAR + 56 * SUB) as usize;

/// A log-linear histogram of microsecond values.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }

    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let msb = 63 - u64::from(v.leading_zeros()); // ≥ 8
        let shift = msb - 7;
        let top = v >> shift; // in [128, 256)
        (LINEAR + (shift - 1) * SUB + (top - SUB)) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < LINEAR {
            return i;
        }
        let shift = (i - LINEAR) / SUB + 1;
        let top = (i - LINEAR) % SUB + SUB;
        (top << shift) + (1 << shift) / 2
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

struct Latency {
    path: String,
    hist: Histogram,
    missing: u64,
}

impl Latency {
    fn report(&self) -> Result<(), BoxError> {
        let line = serde_json::json!({
            "count": self.hist.total,
            "p50_us": self.hist.quantile(0.50),
            "p99_us": self.hist.quantile(0.99),
            "max_us": self.hist.max,
            "missing_t": self.missing,
        });
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("open {}: {e}", self.path))?;
        f.write_all(format!("{line}\n").as_bytes())?;
        Ok(())
    }
}

impl Sink for Latency {
    fn open(&mut self, _ctx: &Context, props: &Props) -> Result<(), BoxError> {
        let path =
            props.get("path").and_then(Value::as_str).ok_or("the latency sink needs a string property `path`")?;
        self.path = path.to_string();
        self.hist = Histogram::new();
        self.missing = 0;
        Ok(())
    }

    fn collect(&mut self, _ctx: &Context, records: &[Record]) -> Result<(), BoxError> {
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as i64;
        for r in records {
            match r.fields.get("t").and_then(Value::as_i64) {
                Some(t) => self.hist.record(now_us.saturating_sub(t).max(0) as u64),
                None => self.missing += 1,
            }
        }
        Ok(())
    }

    fn transactional(&self) -> bool {
        true
    }

    fn pre_commit(&mut self, _ctx: &Context, _checkpoint_id: u64) -> Result<Value, BoxError> {
        self.report()?;
        Ok(Value::Null)
    }

    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        if self.path.is_empty() {
            return Ok(());
        }
        self.report()
    }
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let make = || Latency { path: String::new(), hist: Histogram::new(), missing: 0 };
    serve(Plugin::new("latency", env!("CARGO_PKG_VERSION")).sink(Export::shared(make)));
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [0u64, 1, 255, 256, 257, 1000, 4095, 4096, 1 << 20, 123_456_789, u64::MAX >> 1] {
            let i = Histogram::index(v);
            assert!(i >= last, "{v}");
            last = i;
            let mid = Histogram::value(i);
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.01, "{v} -> bucket {i} -> {mid}");
        }
        assert!(Histogram::index(u64::MAX) < super::BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        assert!((498..=504).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((985..=995).contains(&p99), "{p99}");
    }
}
