//! The three extension kinds and the description of what an executable exports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use oort_proto::{Record, Value};

use crate::context::{Context, StateMigration, StateSlot};

/// The error type extensions return: anything that can be displayed.
/// `Err("message".into())` and `?` on any `std::error::Error` both work.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Properties of a source or sink, from the stream definition or rule action.
pub type Props = BTreeMap<String, Value>;

/// What the rule engine knows about one function argument when a rule is created.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgSpec {
    /// The argument as written in SQL, e.g. `name`, `'a b'` or `x + 1`.
    pub expression: String,
    /// The literal value, when the argument is a literal.
    pub literal: Option<Value>,
    /// The column name, when the argument is a plain column reference.
    pub column: Option<String>,
}

/// A function callable from SQL, like eKuiper's `api.Function`.
///
/// `exec` takes `&self` so one object can serve many rules (singleton export);
/// per-rule data belongs in the [`Context`]'s state.
pub trait Function: Send + Sync + 'static {
    /// Checks the call's arguments when a rule is created. Return an error that
    /// names the problem, e.g. "expects 2 arguments, got 1".
    fn validate(&self, _args: &[ArgSpec]) -> Result<(), BoxError> {
        Ok(())
    }

    /// Computes the result for one row of arguments.
    fn exec(&self, ctx: &Context, args: &[Value]) -> Result<Value, BoxError>;

    /// Computes a whole batch at once, when the supervisor sends it as Arrow
    /// columns: `args` holds one array per argument, each of `rows` values,
    /// as received (no per-value decoding). Return one array of `rows`
    /// results; an error fails every row of the batch with its message.
    ///
    /// The default, `None`, means the function works row by row: the SDK
    /// then calls [`Function::exec`] for each row. Batches that arrive as
    /// rows always go to `exec`, so a columnar function implements both.
    fn exec_columns(
        &self,
        _ctx: &Context,
        _args: &[crate::arrow::ArrayRef],
        _rows: usize,
    ) -> Option<Result<crate::arrow::ArrayRef, BoxError>> {
        None
    }

    /// Whether the function aggregates over a group of rows.
    fn is_aggregate(&self) -> bool {
        false
    }
}

/// A source of records, like eKuiper's `api.Source` (pull style).
pub trait Source: Send + 'static {
    /// Prepares the instance: `datasource` is the stream's `DATASOURCE`.
    fn open(&mut self, ctx: &Context, datasource: &str, props: &Props) -> Result<(), BoxError>;

    /// Appends up to `max` records to `out`. It may block while nothing is
    /// available, but should return (possibly with nothing) within about
    /// 100 ms so that a close is noticed promptly.
    fn read(&mut self, ctx: &Context, out: &mut Vec<Record>, max: usize) -> Result<(), BoxError>;

    /// Reads up to `max` records as one batch of Arrow columns, one column
    /// per field, named after it (an empty batch: nothing yet), when the
    /// supervisor accepts columns. Columnar records carry no metadata and
    /// no event time, and a null cell is an absent field.
    ///
    /// The default, `None`, means the source reads rows: the SDK then calls
    /// [`Source::read`] for the rest of the stream. A source that emits
    /// columns also implements `read`, for a supervisor that takes rows.
    fn read_columns(&mut self, _ctx: &Context, _max: usize) -> Option<Result<crate::arrow::RecordBatch, BoxError>> {
        None
    }

    /// Whether the source can replay from an offset ([`Source::offset`] and
    /// [`Source::rewind`] are implemented).
    fn rewindable(&self) -> bool {
        false
    }

    /// The offset after the last record returned by `read`.
    fn offset(&self) -> Option<Value> {
        None
    }

    /// Repositions the source so the next record read follows `offset`.
    fn rewind(&mut self, _ctx: &Context, _offset: &Value) -> Result<(), BoxError> {
        Err("this source is not rewindable".into())
    }

    /// Whether the source acknowledges what it read to its upstream only in
    /// [`Source::checkpointed`] (asked when the rule checkpoints). The
    /// supervisor then restores the whole rule from its last checkpoint when
    /// the source's process dies, since the upstream delivers again what that
    /// checkpoint did not cover.
    fn acks_on_checkpoint(&self) -> bool {
        false
    }

    /// Called once a checkpoint covering every record up to `offset` (an
    /// offset this source reported with a batch, possibly from an earlier
    /// process of the plugin; `Null` when none was read yet) is durable: what
    /// it covers may now be acknowledged upstream.
    fn checkpointed(&mut self, _ctx: &Context, _offset: &Value) -> Result<(), BoxError> {
        Ok(())
    }

    /// Releases the instance's resources.
    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A sink for records, like eKuiper's `api.Sink`, with optional two-phase
/// commit hooks for exactly-once delivery.
pub trait Sink: Send + 'static {
    /// Prepares the instance with the rule action's properties.
    fn open(&mut self, ctx: &Context, props: &Props) -> Result<(), BoxError>;

    /// Accepts one batch of records.
    fn collect(&mut self, ctx: &Context, records: &[Record]) -> Result<(), BoxError>;

    /// Whether the sink takes batches as Arrow columns
    /// ([`Sink::collect_columns`]); the supervisor may still send rows.
    /// Asked once, after [`Sink::open`].
    fn takes_columns(&self) -> bool {
        false
    }

    /// Accepts one batch as Arrow columns, for a sink that
    /// [takes columns](Sink::takes_columns): one column per output field,
    /// sorted by name, one row per record; a null cell is a field that is
    /// null or absent. The default hands the batch to [`Sink::collect`] as
    /// records.
    fn collect_columns(&mut self, ctx: &Context, batch: &crate::arrow::RecordBatch) -> Result<(), BoxError> {
        let records = oort_proto::columns::records_of(batch)?;
        self.collect(ctx, &records)
    }

    /// Whether the sink takes bytes instead of records: the supervisor then
    /// encodes each item as eKuiper's runtime does for its sinks (per the
    /// action's `format`, `fields`, `dataTemplate` and `sendSingle`) and
    /// calls [`Sink::collect_payloads`]. Asked once, after [`Sink::open`].
    fn wants_payloads(&self) -> bool {
        false
    }

    /// Accepts one batch of encoded items, for a sink that
    /// [wants payloads](Sink::wants_payloads). An error fails the whole
    /// batch; to refuse single items (eKuiper's `ack_error`), return one
    /// entry per item, `Some(why)` for each item not delivered; an empty list
    /// means every item was delivered.
    fn collect_payloads(&mut self, _ctx: &Context, _payloads: &[Vec<u8>]) -> Result<ItemErrors, BoxError> {
        Err("this sink takes records, not payloads".into())
    }

    /// Whether the sink implements the two-phase-commit hooks.
    fn transactional(&self) -> bool {
        false
    }

    /// Makes everything collected so far durable but not yet visible, and
    /// returns a handle that [`Sink::commit`] or [`Sink::abort`] will receive,
    /// possibly in a later process after a crash.
    fn pre_commit(&mut self, _ctx: &Context, _checkpoint_id: u64) -> Result<Value, BoxError> {
        Ok(Value::Null)
    }

    /// Makes a pre-committed checkpoint visible.
    fn commit(&mut self, _ctx: &Context, _checkpoint_id: u64, _handle: &Value) -> Result<(), BoxError> {
        Ok(())
    }

    /// Discards a pre-committed checkpoint.
    fn abort(&mut self, _ctx: &Context, _checkpoint_id: u64, _handle: &Value) -> Result<(), BoxError> {
        Ok(())
    }

    /// Flushes and releases the instance's resources.
    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Per-item outcomes of a batch of payloads: empty when every item was
/// delivered, else one entry per item, `Some(why)` for an item that was not.
pub type ItemErrors = Vec<Option<String>>;

/// How one symbol is exported, after eKuiper's two export styles.
pub enum Export<T> {
    /// A factory: each rule gets a fresh object, and the supervisor runs one
    /// process per rule. The recommended style.
    Constructor(Box<dyn Fn() -> T + Send + Sync>),
    /// One object shared by every rule, in one shared process. For stateless,
    /// performance-critical functions.
    Singleton(T),
    /// A factory whose objects all live in one shared process: each rule
    /// gets a fresh object (its own reader, file or counter), and the
    /// supervisor runs one process for every rule instead of one per rule.
    /// The cheap way to serve many rules; a crash of that process restarts
    /// every rule's instance on it (each reopened with its state), so keep
    /// [`Export::constructor`] for plugins that need isolation per rule.
    Shared(Box<dyn Fn() -> T + Send + Sync>),
}

impl<T> Export<T> {
    /// Exports a factory.
    pub fn constructor(make: impl Fn() -> T + Send + Sync + 'static) -> Export<T> {
        Export::Constructor(Box::new(make))
    }

    /// Exports one shared object.
    pub fn singleton(object: T) -> Export<T> {
        Export::Singleton(object)
    }

    /// Exports a factory served by one shared process.
    pub fn shared(make: impl Fn() -> T + Send + Sync + 'static) -> Export<T> {
        Export::Shared(Box::new(make))
    }

    /// Whether one process serves every rule (`Describe` reports the symbol
    /// as a singleton, which is what the supervisor shares processes by).
    fn is_singleton(&self) -> bool {
        matches!(self, Export::Singleton(_) | Export::Shared(_))
    }
}

/// A source or sink object, behind a mutex because its methods take `&mut self`.
pub(crate) type Shared<T> = Arc<Mutex<Box<T>>>;

/// Produces the object for a newly opened instance.
pub(crate) enum Factory<T: ?Sized> {
    Constructor(Box<dyn Fn() -> Box<T> + Send + Sync>),
    Singleton(Shared<T>),
}

impl<T: ?Sized> Factory<T> {
    pub(crate) fn make(&self) -> Shared<T> {
        match self {
            Factory::Constructor(make) => Arc::new(Mutex::new(make())),
            Factory::Singleton(object) => object.clone(),
        }
    }
}

pub(crate) enum FunctionFactory {
    Constructor(Box<dyn Fn() -> Arc<dyn Function> + Send + Sync>),
    Singleton(Arc<dyn Function>),
}

impl FunctionFactory {
    pub(crate) fn make(&self) -> Arc<dyn Function> {
        match self {
            FunctionFactory::Constructor(make) => make(),
            FunctionFactory::Singleton(object) => object.clone(),
        }
    }

    /// An object to ask `validate` and `is_aggregate`, which need no instance.
    pub(crate) fn probe(&self) -> Arc<dyn Function> {
        self.make()
    }
}

/// Everything one plugin executable exports.
pub struct Plugin {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) functions: Vec<(String, bool, FunctionFactory)>,
    pub(crate) source: Option<(bool, Factory<dyn Source>)>,
    pub(crate) sink: Option<(bool, Factory<dyn Sink>)>,
    pub(crate) state_version: u32,
    pub(crate) migrate: Option<Arc<MigrateHook>>,
}

/// Converts state of another state version into the plugin's own.
pub(crate) type MigrateHook = dyn Fn(StateMigration) -> Result<BTreeMap<String, StateSlot>, BoxError> + Send + Sync;

impl Plugin {
    /// A plugin named `name` (the executable's name, following eKuiper's naming
    /// rule `^[A-Za-z0-9_-]+$`) at `version`.
    pub fn new(name: &str, version: &str) -> Plugin {
        Plugin {
            name: name.into(),
            version: version.into(),
            functions: Vec::new(),
            source: None,
            sink: None,
            state_version: 0,
            migrate: None,
        }
    }

    /// Declares the version of the state layout this plugin's instances
    /// write (0, the default, declares none). Raise it when a new release
    /// reads its keys differently: the supervisor then hands state written
    /// under another version to [`Plugin::migrate_state`] before an instance
    /// opens with it, instead of letting the new code misread it.
    pub fn state_version(mut self, version: u32) -> Plugin {
        self.state_version = version;
        self
    }

    /// Registers the hook that converts state written under another state
    /// version (an upgrade from an older release, or a rollback from a newer
    /// one) into this plugin's own. It returns the whole new state (keys it
    /// leaves out are dropped) or an error that refuses the state: the
    /// supervisor then stops the upgrade and the rule keeps running on the
    /// version it has. Without a hook every such state is refused.
    pub fn migrate_state(
        mut self,
        hook: impl Fn(StateMigration) -> Result<BTreeMap<String, StateSlot>, BoxError> + Send + Sync + 'static,
    ) -> Plugin {
        self.migrate = Some(Arc::new(hook));
        self
    }

    /// Exports a function under the SQL name `name`. One plugin may export
    /// several functions.
    pub fn function<F: Function>(mut self, name: &str, export: Export<F>) -> Plugin {
        let singleton = export.is_singleton();
        let factory = match export {
            Export::Constructor(make) | Export::Shared(make) => {
                FunctionFactory::Constructor(Box::new(move || Arc::new(make())))
            }
            Export::Singleton(object) => FunctionFactory::Singleton(Arc::new(object)),
        };
        self.functions.push((name.to_string(), singleton, factory));
        self
    }

    /// Exports a source named after the plugin.
    pub fn source<S: Source>(mut self, export: Export<S>) -> Plugin {
        let singleton = export.is_singleton();
        let factory = match export {
            Export::Constructor(make) | Export::Shared(make) => {
                Factory::Constructor(Box::new(move || Box::new(make()) as Box<dyn Source>))
            }
            Export::Singleton(object) => Factory::Singleton(Arc::new(Mutex::new(Box::new(object) as Box<dyn Source>))),
        };
        self.source = Some((singleton, factory));
        self
    }

    /// Exports a sink named after the plugin.
    pub fn sink<S: Sink>(mut self, export: Export<S>) -> Plugin {
        let singleton = export.is_singleton();
        let factory = match export {
            Export::Constructor(make) | Export::Shared(make) => {
                Factory::Constructor(Box::new(move || Box::new(make()) as Box<dyn Sink>))
            }
            Export::Singleton(object) => Factory::Singleton(Arc::new(Mutex::new(Box::new(object) as Box<dyn Sink>))),
        };
        self.sink = Some((singleton, factory));
        self
    }
}
