"""textstats: `wordCount(text)` and `charCount(text)`, two stateless SQL functions.

Both take one string; NULL gives NULL. Exported as singletons, so every rule
shares one process.
"""

from __future__ import annotations

from typing import Any

from oort_plugin import ArgSpec, Context, Function, Plugin, serve


def _check_one_string_arg(name: str, args: list[ArgSpec]) -> None:
    if len(args) != 1:
        raise ValueError(f"{name} expects 1 argument, got {len(args)}")
    a = args[0]
    if a.is_literal and a.literal is not None and not isinstance(a.literal, str):
        raise ValueError(f"{name} expects a string, got the literal {a.expression}")


def _text(name: str, args: list[Any]) -> str | None:
    if len(args) != 1:
        raise ValueError(f"{name} expects 1 argument, got {len(args)}")
    text = args[0]
    if text is None or isinstance(text, str):
        return text
    raise ValueError(f"{name} expects a string, got {type(text).__name__}")


class WordCount(Function):
    """The number of whitespace-separated words in a string."""

    def validate(self, args: list[ArgSpec]) -> None:
        _check_one_string_arg("wordCount", args)

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        text = _text("wordCount", args)
        return None if text is None else len(text.split())


class CharCount(Function):
    """The number of characters (Unicode code points) in a string."""

    def validate(self, args: list[ArgSpec]) -> None:
        _check_one_string_arg("charCount", args)

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        text = _text("charCount", args)
        return None if text is None else len(text)


PLUGIN = (
    Plugin("textstats", "1.0.0")
    .function("wordCount", singleton=WordCount())
    .function("charCount", singleton=CharCount())
)

if __name__ == "__main__":
    serve(PLUGIN)
