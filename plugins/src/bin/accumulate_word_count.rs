//! `accumulateWordCount(text, separator)`: eKuiper's stateful example. It splits
//! `text` by `separator`, adds the number of words to the instance's counter and
//! returns the running total.
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
}

fn main() {
    let plugin = Plugin::new("accumulateWordCount", env!("CARGO_PKG_VERSION"))
        .function("accumulateWordCount", Export::constructor(|| AccumulateWordCount));
    serve(plugin);
}
