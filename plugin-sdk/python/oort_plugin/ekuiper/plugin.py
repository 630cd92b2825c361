"""eKuiper's plugin entry, `plugin.start(PluginConfig(...))`, on Oort.

An eKuiper portable plugin is one program exporting any number of sources,
sinks and functions. Oort runs a plugin file per source, per sink and per
function set, so the same program is installed under several names (each a
launcher of the same script): `sources/<source>`, `sinks/<sink>` and
`functions/<plugin>` with `<plugin>.json` listing the functions. `start`
reads the name it was started under (`OORT_PLUGIN_NAME`) and serves that
part:

- a source and/or sink of that name: that source and/or sink;
- otherwise: every function, under the plugin name it was started as.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import NoReturn

from .._export import Plugin
from .._server import serve
from ._adapters import FunctionAdapter, SinkAdapter, SourceAdapter
from ._api import Function, Sink, Source

__all__ = ["PluginConfig", "build", "start"]


class PluginConfig:
    """What an eKuiper portable plugin exports, as in eKuiper:
    `PluginConfig(name, sources, sinks, functions)`, each a dict from symbol
    name to a zero-argument factory. `version` is Oort's addition (shown by
    `oort plugin describe`)."""

    def __init__(
        self,
        name: str,
        sources: Mapping[str, Callable[[], Source]] | None = None,
        sinks: Mapping[str, Callable[[], Sink]] | None = None,
        functions: Mapping[str, Callable[[], Function]] | None = None,
        version: str = "1.0.0",
    ) -> None:
        self.name = name
        self.sources = dict(sources or {})
        self.sinks = dict(sinks or {})
        self.functions = dict(functions or {})
        self.version = version


def build(c: PluginConfig, as_name: str | None = None) -> Plugin:
    """The Oort `Plugin` that serves `c` when started as `as_name` (default:
    `OORT_PLUGIN_NAME`, else `c.name`). See the module's documentation."""
    name = as_name or os.environ.get("OORT_PLUGIN_NAME") or c.name
    plugin = Plugin(name, c.version)
    source = c.sources.get(name)
    sink = c.sinks.get(name)
    if source is not None or sink is not None:
        if source is not None:
            make_source = source
            plugin.source(lambda: SourceAdapter(make_source()))
        if sink is not None:
            make_sink = sink
            plugin.sink(lambda: SinkAdapter(make_sink()))
        return plugin
    if not c.functions:
        known = sorted({*c.sources, *c.sinks})
        raise ValueError(
            f"plugin {c.name} was started as {name!r}, which is none of its sources or sinks ({', '.join(known)}), "
            "and it exports no function"
        )
    for fname, make in c.functions.items():
        # eKuiper makes one object per function symbol and shares it between
        # rules: a singleton here.
        plugin.function(fname, singleton=FunctionAdapter(make()))
    return plugin


def start(c: PluginConfig) -> NoReturn:
    """Serves the plugin until the supervisor stops it (eKuiper's `plugin.start`)."""
    serve(build(c))
