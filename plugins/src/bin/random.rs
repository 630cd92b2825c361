//! The `random` source, after eKuiper's: every `interval` milliseconds it emits a
//! record shaped like `pattern`.
//!
//! Properties: `interval` (ms, default 1000), `pattern` (an object; integer
//! fields get a random integer in `[0, seed)`, float fields a random float in
//! `[0, seed)`, bool fields a random bool, list fields a random element of the
//! list, anything else is copied), `seed` (default 100), `deduplicate` (n: never
//! emit a record equal to one of the last n; default 0, off), `rngSeed` (seed
//! of the generator, for reproducible runs; default: from the clock).
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use oort_plugin::{serve, BoxError, Context, Export, Plugin, Props, Record, Source, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Random {
    interval: Duration,
    pattern: BTreeMap<String, Value>,
    seed: i64,
    dedup: usize,
    recent: VecDeque<BTreeMap<String, Value>>,
    rng: StdRng,
    next: Instant,
}

impl Default for Random {
    fn default() -> Self {
        Random {
            interval: Duration::from_secs(1),
            pattern: BTreeMap::new(),
            seed: 100,
            dedup: 0,
            recent: VecDeque::new(),
            rng: StdRng::seed_from_u64(0),
            next: Instant::now(),
        }
    }
}

fn int_prop(props: &Props, key: &str, default: i64) -> Result<i64, BoxError> {
    match props.get(key) {
        None => Ok(default),
        Some(v) => v.as_i64().ok_or_else(|| format!("property {key} must be an integer, got {}", v.type_name()).into()),
    }
}

impl Random {
    fn sample(&mut self) -> BTreeMap<String, Value> {
        let seed = self.seed.max(1);
        let rng = &mut self.rng;
        self.pattern
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::Int(_) => Value::Int(rng.random_range(0..seed)),
                    Value::Float(_) => Value::Float(rng.random::<f64>() * seed as f64),
                    Value::Bool(_) => Value::Bool(rng.random()),
                    Value::List(items) if !items.is_empty() => items[rng.random_range(0..items.len())].clone(),
                    other => other.clone(),
                };
                (k.clone(), value)
            })
            .collect()
    }
}

impl Source for Random {
    fn open(&mut self, _ctx: &Context, _datasource: &str, props: &Props) -> Result<(), BoxError> {
        let interval = int_prop(props, "interval", 1000)?;
        if interval < 0 {
            return Err("property interval must not be negative".into());
        }
        self.interval = Duration::from_millis(interval as u64);
        self.seed = int_prop(props, "seed", 100)?;
        self.dedup = int_prop(props, "deduplicate", 0)?.max(0) as usize;
        self.pattern = match props.get("pattern") {
            Some(Value::Map(m)) => m.clone(),
            None => BTreeMap::from([("count".to_string(), Value::Int(0))]),
            Some(other) => return Err(format!("property pattern must be an object, got {}", other.type_name()).into()),
        };
        let rng_seed = match props.get("rngSeed") {
            Some(v) => v.as_i64().ok_or("property rngSeed must be an integer")? as u64,
            None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64,
        };
        self.rng = StdRng::seed_from_u64(rng_seed);
        self.next = Instant::now();
        Ok(())
    }

    fn read(&mut self, _ctx: &Context, out: &mut Vec<Record>, max: usize) -> Result<(), BoxError> {
        let now = Instant::now();
        if now < self.next {
            // Return within 100 ms even for long intervals so that a close is noticed.
            std::thread::sleep((self.next - now).min(Duration::from_millis(100)));
            return Ok(());
        }
        while out.len() < max && Instant::now() >= self.next {
            self.next += self.interval;
            let fields = self.sample();
            if self.dedup > 0 {
                if self.recent.contains(&fields) {
                    continue;
                }
                if self.recent.len() == self.dedup {
                    self.recent.pop_front();
                }
                self.recent.push_back(fields.clone());
            }
            let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
            out.push(Record { fields, timestamp_ms: ts, ..Record::default() });
            if self.interval.is_zero() && out.len() >= max {
                break;
            }
        }
        Ok(())
    }
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    serve(Plugin::new("random", env!("CARGO_PKG_VERSION")).source(Export::shared(Random::default)));
}
