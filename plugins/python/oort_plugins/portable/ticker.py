"""The ekticker source, in eKuiper's portable Python style: a push loop.

conf: `interval` (milliseconds between records, default 100), `count` (stop
after so many, 0 = never, default 0), `errorEvery` (emit an error instead of
every n-th record, 0 = never). The datasource prefixes each word.
"""

import logging
import time
from typing import Any, Dict

from oort_plugin.ekuiper import Context, Source


class Ticker(Source):
    def __init__(self) -> None:
        self.running = True
        self.interval = 0.1
        self.count = 0
        self.error_every = 0
        self.prefix = ""

    def configure(self, datasource: str, conf: Dict[str, Any]) -> None:
        logging.info("configuring ticker with datasource %s and conf %s", datasource, conf)
        interval = conf.get("interval", 100)
        if not isinstance(interval, (int, float)) or interval < 0:
            raise ValueError("interval must be a number of milliseconds, got {!r}".format(interval))
        self.interval = interval / 1000.0
        self.count = int(conf.get("count", 0))
        self.error_every = int(conf.get("errorEvery", 0))
        self.prefix = datasource

    def open(self, ctx: Context) -> None:
        ctx.get_logger().info("ticker open in rule %s", ctx.get_rule_id())
        seq = 0
        while self.running and (self.count == 0 or seq < self.count):
            if self.error_every and seq % self.error_every == self.error_every - 1:
                ctx.emit_error("tick {} skipped".format(seq))
            else:
                message = {"seq": seq, "word": "{}{}".format(self.prefix, seq), "value": seq * 1.5}
                ctx.emit(message, {"ticker": self.prefix})
            seq += 1
            time.sleep(self.interval)

    def close(self, ctx: Context) -> None:
        self.running = False
