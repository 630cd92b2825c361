"""The ekpy plugin's main, as eKuiper's: `plugin.start(PluginConfig(...))`."""

from oort_plugin.ekuiper import PluginConfig, plugin

from .funcs import ShoutFunc, SpreadFunc, WhichRuleFunc, clampIns
from .lines import LinesSink
from .rawbytes import BytesSink
from .ticker import Ticker

if __name__ == "__main__":
    c = PluginConfig(
        "ekpy",
        {"ekticker": lambda: Ticker()},
        {"eklines": lambda: LinesSink(), "ekbytes": lambda: BytesSink()},
        {
            "shout": lambda: ShoutFunc(),
            "clamp": lambda: clampIns,
            "spread": lambda: SpreadFunc(),
            "whichrule": lambda: WhichRuleFunc(),
        },
    )
    plugin.start(c)
