//! The `log` sink: logs every record as one JSON line. Its lines reach the
//! supervisor's log, tagged with the rule and instance.
use oort_plugin::{serve, BoxError, Context, Export, Plugin, Props, Record, Sink};

struct Log;

impl Sink for Log {
    fn open(&mut self, ctx: &Context, _props: &Props) -> Result<(), BoxError> {
        ctx.logger().info("log sink opened");
        Ok(())
    }

    fn collect(&mut self, ctx: &Context, records: &[Record]) -> Result<(), BoxError> {
        for r in records {
            ctx.logger().info(format_args!("sink result: {}", r.fields_to_json()));
        }
        Ok(())
    }
}

fn main() {
    serve(Plugin::new("log", env!("CARGO_PKG_VERSION")).sink(Export::constructor(|| Log)));
}
