//! A stateful function plugin whose versions the upgrade tests install side
//! by side, each a wrapper script that sets its behaviour:
//!
//! - `STATEFUL_LABEL` (default `v1`): returned with every count, so a test
//!   sees which version answered;
//! - `STATEFUL_STATE_VERSION` (default 0): the state version it declares;
//! - `STATEFUL_KEY` (default `count`): the counter key it keeps;
//! - `STATEFUL_MIGRATE_FROM` (unset: no migration hook): the counter key of
//!   older state versions, renamed to `STATEFUL_KEY` by its hook, which
//!   refuses state versions above its own;
//! - `STATEFUL_CRASH=1`: exits in the middle of every call;
//! - `STATEFUL_FUNCTION` (default `stateful`): the function it exports.
//!
//! `stateful()` adds one to the counter and returns `{"label", "n"}`.
use std::collections::BTreeMap;

use oort_plugin::{serve, BoxError, Context, Export, Function, Plugin, StateSlot, Value};

struct Tally {
    label: String,
    key: String,
    crash: bool,
}

impl Function for Tally {
    fn exec(&self, ctx: &Context, _args: &[Value]) -> Result<Value, BoxError> {
        if self.crash {
            eprintln!("stateful {}: crashing as asked", self.label);
            std::process::exit(7);
        }
        let n = ctx.incr_counter(&self.key, 1)?;
        let mut out = BTreeMap::new();
        out.insert("label".to_string(), Value::from(self.label.as_str()));
        out.insert("n".to_string(), Value::Int(n));
        Ok(Value::Map(out))
    }
}

fn main() {
    let env = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.to_string());
    let label = env("STATEFUL_LABEL", "v1");
    let key = env("STATEFUL_KEY", "count");
    let state_version: u32 = env("STATEFUL_STATE_VERSION", "0").parse().expect("STATEFUL_STATE_VERSION");
    let crash = env("STATEFUL_CRASH", "") == "1";
    let function = env("STATEFUL_FUNCTION", "stateful");
    let (l, k) = (label.clone(), key.clone());
    let mut plugin = Plugin::new("stateful", "0.0.1")
        .state_version(state_version)
        .function(&function, Export::constructor(move || Tally { label: l.clone(), key: k.clone(), crash }));
    if let Ok(old_key) = std::env::var("STATEFUL_MIGRATE_FROM") {
        plugin = plugin.migrate_state(move |m| {
            if m.from_version > state_version {
                return Err(
                    format!("state version {} is newer than this plugin's {state_version}", m.from_version).into()
                );
            }
            let mut state = m.state;
            if let Some(StateSlot::Counter(n)) = state.remove(&old_key) {
                state.insert(key.clone(), StateSlot::Counter(n));
            }
            Ok(state)
        });
    }
    serve(plugin);
}
