"""The ekpy functions, in eKuiper's portable Python style."""

from typing import Any, List

from oort_plugin.ekuiper import Context, Function


class ShoutFunc(Function):
    """shout(text): the text upper-cased, with an exclamation mark."""

    def __init__(self) -> None:
        pass

    def validate(self, args: List[Any]) -> str:
        if len(args) != 1:
            return "shout expects 1 argument, got {}".format(len(args))
        return ""

    def exec(self, args: List[Any], ctx: Context) -> Any:
        text = args[0]
        if text is None:
            return None
        if not isinstance(text, str):
            raise ValueError("shout expects a string, got {}".format(type(text).__name__))
        return text.upper() + "!"

    def is_aggregate(self) -> bool:
        return False


class ClampFunc(Function):
    """clamp(x, low, high): x limited to [low, high]."""

    def validate(self, args: List[Any]) -> str:
        if len(args) != 3:
            return "clamp expects 3 arguments (value, low, high), got {}".format(len(args))
        return ""

    def exec(self, args: List[Any], ctx: Context) -> Any:
        x, low, high = args
        if x is None:
            return None
        if low > high:
            raise ValueError("clamp: low {} is above high {}".format(low, high))
        return min(max(x, low), high)

    def is_aggregate(self) -> bool:
        return False


class SpreadFunc(Function):
    """spread(x): an aggregate, the largest minus the smallest number of a group."""

    def validate(self, args: List[Any]) -> str:
        if len(args) != 1:
            return "spread expects 1 argument, got {}".format(len(args))
        return ""

    def exec(self, args: List[Any], ctx: Context) -> Any:
        values = [v for v in args[0] if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not values:
            return None
        return max(values) - min(values)

    def is_aggregate(self) -> bool:
        return True


class WhichRuleFunc(Function):
    """whichrule(): the id of the rule calling it, logged once per call."""

    def validate(self, args: List[Any]) -> None:
        return None

    def exec(self, args: List[Any], ctx: Context) -> Any:
        ctx.get_logger().debug("whichrule called in %s/%s", ctx.get_rule_id(), ctx.get_op_id())
        return ctx.get_rule_id()

    def is_aggregate(self) -> bool:
        return False


clampIns = ClampFunc()
