//! `countPlusOne(list)`: the length of a list plus one, as in eKuiper's example
//! function plugin.
use oort_plugin::{serve, ArgSpec, BoxError, Context, Export, Function, Plugin, Value};

struct CountPlusOne;

impl Function for CountPlusOne {
    fn validate(&self, args: &[ArgSpec]) -> Result<(), BoxError> {
        match args.len() {
            1 => Ok(()),
            n => Err(format!("countPlusOne function only supports 1 parameter but got {n}").into()),
        }
    }

    fn exec(&self, _ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        match args.first() {
            Some(Value::List(items)) => Ok(Value::Int(items.len() as i64 + 1)),
            Some(other) => Err(format!("arg is not a list, got {}", other.type_name()).into()),
            None => Err("countPlusOne needs 1 argument".into()),
        }
    }
}

fn main() {
    serve(
        Plugin::new("countPlusOne", env!("CARGO_PKG_VERSION"))
            .function("countPlusOne", Export::singleton(CountPlusOne)),
    );
}
