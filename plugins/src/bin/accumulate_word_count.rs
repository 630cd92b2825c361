//! `accumulateWordCount(text, separator)`: eKuiper's stateful example. It splits
//! `text` by `separator`, adds the number of words to the instance's counter and
//! returns the running total. Over columns it counts a whole batch of texts
//! in one call, updating the counter row by row as the row API does.
use std::sync::Arc;

use oort_plugin::arrow::{Array, ArrayRef, Int64Array, StringArray};
use oort_plugin::{serve, ArgSpec, BoxError, Context, Export, Function, Plugin, Value};

struct AccumulateWordCount;

const COUNTER: &str = "allwordcount";

impl Function for AccumulateWordCount {
    fn validate(&self, args: &[ArgSpec]) -> Result<(), BoxError> {
        if args.len() != 2 {
            return Err(
                format!("accumulateWordCount function only supports 2 parameters but got {}", args.len()).into()
            );
        }
        match &args[1].literal {
            Some(Value::String(_)) => Ok(()),
            _ => Err("the second parameter of accumulateWordCount must be a string literal".into()),
        }
    }

    fn exec(&self, ctx: &Context, args: &[Value]) -> Result<Value, BoxError> {
        let (Some(text), Some(sep)) = (args[0].as_str(), args.get(1).and_then(Value::as_str)) else {
            return Err("accumulateWordCount expects two string arguments".into());
        };
        let words = if sep.is_empty() { text.chars().count() } else { text.split(sep).count() };
        ctx.incr_counter(COUNTER, words as i64)?;
        Ok(Value::Int(ctx.get_counter(COUNTER)?))
    }

    /// Texts and a separator without nulls: the running totals, the counter
    /// written once per batch. Anything else goes row by row, where a bad
    /// row fails alone.
    fn exec_columns(&self, ctx: &Context, args: &[ArrayRef], _rows: usize) -> Option<Result<ArrayRef, BoxError>> {
        let texts = args.first()?.as_any().downcast_ref::<StringArray>()?;
        let seps = args.get(1)?.as_any().downcast_ref::<StringArray>()?;
        if texts.null_count() > 0 || seps.null_count() > 0 {
            return None;
        }
        let start = match ctx.get_counter(COUNTER) {
            Ok(n) => n,
            Err(e) => return Some(Err(e.into())),
        };
        let mut total = start;
        let totals = Int64Array::from_iter_values(texts.iter().zip(seps.iter()).map(|(text, sep)| {
            let (text, sep) = (text.unwrap_or_default(), sep.unwrap_or_default());
            total += if sep.is_empty() { text.chars().count() } else { text.split(sep).count() } as i64;
            total
        }));
        Some(ctx.incr_counter(COUNTER, total - start).map(|_| Arc::new(totals) as ArrayRef).map_err(Into::into))
    }
}

fn main() {
    let plugin = Plugin::new("accumulateWordCount", env!("CARGO_PKG_VERSION"))
        .function("accumulateWordCount", Export::constructor(|| AccumulateWordCount));
    serve(plugin);
}
