"""Plain stderr log lines that the supervisor can read.

The supervisor forwards every stderr line to its own log and infers the level
from the line's first 48 characters (`ERROR`, `WARN`, otherwise INFO). So each
line starts with a UTC timestamp and the level, in the Rust SDK's style, with
no colours::

    2025-01-01T00:00:00.000000Z  WARN r1/op_1: something odd
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone

# The names the Rust SDK's lines use; CRITICAL is reported as ERROR so that the
# supervisor classifies it as one.
_LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: " INFO",
    logging.WARNING: " WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "ERROR",
}

_FILTER_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}

#: Parent of every instance logger; its name is what SDK-internal lines carry.
ROOT_NAME = "oort_plugin"


class LineFormatter(logging.Formatter):
    """`<UTC time> <LEVEL> <logger name>: <message>`, one physical line per
    record where possible (tracebacks are indented continuation lines)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        level = _LEVEL_NAMES.get(record.levelno) or f"{record.levelname:>5}"
        line = f"{ts} {level} {record.name}: {record.getMessage()}"
        if record.exc_info:
            exc = self.formatException(record.exc_info)
            line += "\n" + "\n".join("    " + part for part in exc.splitlines())
        return line


def level_from_env(value: str | None) -> int:
    """The level of an `OORT_LOG` value (a `tracing` filter such as `info` or
    `oort=debug,warn`): its last bare level directive, default INFO."""
    level = logging.INFO
    if value:
        for directive in value.split(","):
            d = directive.strip().lower()
            if d in _FILTER_LEVELS:
                level = _FILTER_LEVELS[d]
    return level


def setup() -> logging.Logger:
    """Sends the root logger's lines to stderr in the format above, at the level
    `OORT_LOG` asks for, and returns the SDK's logger."""
    root = logging.getLogger()
    level = level_from_env(os.environ.get("OORT_LOG"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    # Replace what is there (basicConfig in user code before serve(), say), so
    # that no line reaches the supervisor in another format.
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # grpc logs through `logging` too; keep its chatter to warnings.
    logging.getLogger("grpc").setLevel(max(level, logging.WARNING))
    return logging.getLogger(ROOT_NAME)


def instance_logger(instance_id: str) -> logging.Logger:
    """A logger named after the instance, child of the SDK's logger.

    It is deliberately not registered with `logging.getLogger`: instances come
    and go for as long as the process lives, and registered loggers are never
    freed.
    """
    logger = logging.Logger(instance_id)
    logger.parent = logging.getLogger(ROOT_NAME)
    return logger
