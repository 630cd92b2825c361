//! The `null` sink: discards every record. Transactional, so that it can end
//! exactly-once (qos 2) rules: pre-commit hands back `Null`, commit and abort
//! change nothing. The sink of the end-to-end benchmarks, where it stands for
//! "whatever the sink costs, it is not this". It takes Arrow columns, which
//! it discards without reading.
use oort_plugin::arrow::RecordBatch;
use oort_plugin::{serve, BoxError, Context, Export, Plugin, Props, Record, Sink, Value};

struct Null;

impl Sink for Null {
    fn open(&mut self, _ctx: &Context, _props: &Props) -> Result<(), BoxError> {
        Ok(())
    }

    fn collect(&mut self, _ctx: &Context, _records: &[Record]) -> Result<(), BoxError> {
        Ok(())
    }

    fn takes_columns(&self) -> bool {
        true
    }

    fn collect_columns(&mut self, _ctx: &Context, _batch: &RecordBatch) -> Result<(), BoxError> {
        Ok(())
    }

    fn transactional(&self) -> bool {
        true
    }

    fn pre_commit(&mut self, _ctx: &Context, _checkpoint_id: u64) -> Result<Value, BoxError> {
        Ok(Value::Null)
    }
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    serve(Plugin::new("null", env!("CARGO_PKG_VERSION")).sink(Export::shared(|| Null)));
}
