"""Write Oort plugins in Python.

An Oort plugin is an executable that the `oort` supervisor starts and talks to
over a Unix socket. This package does the whole handshake; you write the
extension the way you would write an eKuiper plugin::

    from oort_plugin import Context, Function, Plugin, serve

    class Upper(Function):
        def exec(self, ctx: Context, args: list[object]) -> object:
            return str(args[0]).upper()

    if __name__ == "__main__":
        serve(Plugin("upper", "1.0.0").function("upper", singleton=Upper()))

- `Function`, `Source`, `Sink`: the three extension kinds, as in eKuiper;
  `PayloadSink`, a sink that takes the bytes eKuiper's runtime would encode;
  `VectorizedFunction`, a function computed a batch at a time on Arrow
  arrays (needs pyarrow, the `arrow` extra; loaded only by plugins using it).
- `Context`: rule and instance identity, a logger, and the five state calls.
- `Plugin`: what the executable exports, each symbol as a constructor (a fresh
  object per instance, one process per rule), a singleton (one shared object,
  one shared process) or shared (a fresh object per instance, one shared
  process).
- `serve`: the one entry point; it never returns.
- `Record` and `Value`: the data model.
- `Plugin(..., state_version=N)` and `@plugin.migrate_state`: state versions;
  the hook gets a `StateMigration` (counters as `Counter`, every key a
  `StateSlot`) and returns the new state, or raises `StateRefused`.
"""

from ._api import ArgSpec, Function, ItemErrors, PayloadSink, Sink, Source, VectorizedFunction
from ._context import MAX_VALUE_BYTES, Context, CounterOverflowError, NotACounterError, StateError, ValueTooLargeError
from ._export import Plugin
from ._migrate import Counter, MigrateHook, StateMigration, StateRefused, StateSlot
from ._server import PROTOCOL_VERSION, SDK_NAME, SDK_VERSION, serve
from ._values import Record, Value, from_pb, to_pb

__version__ = SDK_VERSION

__all__ = [
    "ArgSpec",
    "Context",
    "Counter",
    "CounterOverflowError",
    "Function",
    "ItemErrors",
    "MAX_VALUE_BYTES",
    "MigrateHook",
    "NotACounterError",
    "PROTOCOL_VERSION",
    "PayloadSink",
    "Plugin",
    "Record",
    "SDK_NAME",
    "SDK_VERSION",
    "Sink",
    "Source",
    "StateError",
    "StateMigration",
    "StateRefused",
    "StateSlot",
    "Value",
    "ValueTooLargeError",
    "VectorizedFunction",
    "from_pb",
    "to_pb",
    "serve",
]
