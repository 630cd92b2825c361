"""eKuiper's portable Python SDK on Oort: port a plugin by changing its imports.

::

    from oort_plugin.ekuiper import Context, Function, PluginConfig, plugin   # was: from ekuiper import ...

    class Revert(Function):
        def validate(self, args):
            return "" if len(args) == 1 else "revert expects 1 argument"

        def exec(self, args, ctx: Context):
            return args[0][::-1]

        def is_aggregate(self):
            return False

    if __name__ == "__main__":
        plugin.start(PluginConfig("mine", {}, {}, {"revert": lambda: Revert()}))

- `Function`: `validate(args)` returns an error string ("" or None accepts),
  `exec(args, ctx)`, `is_aggregate()`.
- `Source`: `configure(datasource, conf)`, `open(ctx)` running a loop that
  calls `ctx.emit(message, meta)`, `close(ctx)`; the layer buffers what it
  emits (bounded) and answers Oort's `Read` from the buffer.
- `Sink`: `configure(conf)`, `open(ctx)`, `collect(ctx, data)` with data the
  bytes the supervisor encoded per the action's `format`, `dataTemplate` and
  `sendSingle`, one call per item, `close(ctx)`; with `requireAck`, each
  item's outcome is its `ctx.ack_ok()` / `ctx.ack_error(e)` (see `SinkAdapter`).
- `Context`: `get_rule_id()`, `get_op_id()`, `get_instance_id()`,
  `get_logger()`, the state calls, `emit`/`emit_error`, `ack_ok`/`ack_error`.
- `plugin.start(PluginConfig(name, sources, sinks, functions))`.
"""

from . import plugin
from ._adapters import EMIT_BUFFER, NO_ACK, FunctionAdapter, SinkAdapter, SourceAdapter
from ._api import Context, Function, Sink, Source, SourceClosedError
from .plugin import PluginConfig

__all__ = [
    "Context",
    "EMIT_BUFFER",
    "Function",
    "FunctionAdapter",
    "NO_ACK",
    "PluginConfig",
    "Sink",
    "SinkAdapter",
    "Source",
    "SourceAdapter",
    "SourceClosedError",
    "plugin",
]
