//! `echo(x)`: returns its argument unchanged. The cheapest possible function,
//! used to measure the cost of crossing the process boundary.
use oort_plugin::arrow::ArrayRef;
use oort_plugin::{serve, ArgSpec, BoxError, Context, Export, Function, Plugin, Value};

struct Echo;

impl Function for Echo {
    fn validate(&self, args: &[ArgSpec]) -> Result<(), BoxError> {
        match args.len() {
            1 => Ok(()),
            n => Err(format!("echo expects 1 argument, got {n}").into()),
        }
    }

    fn exec(&self, _ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        Ok(args.first().cloned().unwrap_or_default())
    }

    /// A columnar batch is answered with its argument column itself: no
    /// value is decoded or copied.
    fn exec_columns(&self, _ctx: &Context, args: &[ArrayRef], _rows: usize) -> Option<Result<ArrayRef, BoxError>> {
        Some(args.first().cloned().ok_or_else(|| "echo expects 1 argument, got 0".into()))
    }
}

fn main() {
    serve(Plugin::new("echo", env!("CARGO_PKG_VERSION")).function("echo", Export::singleton(Echo)));
}
