//! The `log` sink: logs every record as one JSON line. Its lines reach the
//! supervisor's log, tagged with the rule and instance. With property
//! `payloads: true` it logs the items the supervisor encoded instead (per the
//! action's `format`, `dataTemplate` and `sendSingle`), one line each.
use oort_plugin::{serve, BoxError, Context, Export, ItemErrors, Plugin, Props, Record, Sink, Value};

#[derive(Default)]
struct Log {
    payloads: bool,
}

impl Sink for Log {
    fn open(&mut self, ctx: &Context, props: &Props) -> Result<(), BoxError> {
        self.payloads = matches!(props.get("payloads"), Some(Value::Bool(true)));
        ctx.logger().info("log sink opened");
        Ok(())
    }

    fn collect(&mut self, ctx: &Context, records: &[Record]) -> Result<(), BoxError> {
        for r in records {
            ctx.logger().info(format_args!("sink result: {}", r.fields_to_json()));
        }
        Ok(())
    }

    fn wants_payloads(&self) -> bool {
        self.payloads
    }

    fn collect_payloads(&mut self, ctx: &Context, payloads: &[Vec<u8>]) -> Result<ItemErrors, BoxError> {
        let mut errors = vec![None; payloads.len()];
        for (item, payload) in payloads.iter().enumerate() {
            match std::str::from_utf8(payload) {
                Ok(text) => ctx.logger().info(format_args!("sink payload: {text}")),
                // A log line is text: an item that is not is refused alone.
                Err(e) => errors[item] = Some(format!("payload is not UTF-8: {e}")),
            }
        }
        Ok(if errors.iter().all(Option::is_none) { Vec::new() } else { errors })
    }
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    serve(Plugin::new("log", env!("CARGO_PKG_VERSION")).sink(Export::shared(Log::default)));
}
