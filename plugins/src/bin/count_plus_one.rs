//! `countPlusOne(list)`: the length of a list plus one, as in eKuiper's example
//! function plugin. Over a column of lists it reads only the list offsets.
use std::sync::Arc;

use oort_plugin::arrow::{Array, ArrayRef, Int64Array, ListArray};
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

    /// A column of lists without nulls: each length plus one, from the
    /// offsets. Anything else (a null, not a list) goes row by row, where
    /// such a row fails with its own message.
    fn exec_columns(&self, _ctx: &Context, args: &[ArrayRef], _rows: usize) -> Option<Result<ArrayRef, BoxError>> {
        let lists = args.first()?.as_any().downcast_ref::<ListArray>()?;
        if lists.null_count() > 0 {
            return None;
        }
        let counts = lists.offsets().windows(2).map(|w| i64::from(w[1] - w[0]) + 1);
        Some(Ok(Arc::new(Int64Array::from_iter_values(counts))))
    }
}

fn main() {
    serve(
        Plugin::new("countPlusOne", env!("CARGO_PKG_VERSION"))
            .function("countPlusOne", Export::singleton(CountPlusOne)),
    );
}
