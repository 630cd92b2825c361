"""A plugin at state version 2 with a state migration hook, run by test_migrate.py
with `python migrate_plugin.py` (`python migrate_plugin.py nohook`: the same
plugin without the hook).

Release 1 of `tally` kept its running sum under "total"; release 2 keeps it
under "sum". Both count the calls in the counter "count".
"""

from __future__ import annotations

import sys
from typing import Any

from oort_plugin import Context, Counter, Function, Plugin, StateMigration, StateRefused, StateSlot, serve


class Tally(Function):
    """tally(x) adds x to the running sum and returns [sum, calls]."""

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        total = (ctx.get_state("sum") or 0) + args[0]
        ctx.put_state("sum", total)
        return [total, ctx.incr_counter("count")]


plugin = Plugin("tally", "2.0.0", state_version=2).function("tally", constructor=Tally)


def migrate(m: StateMigration) -> dict[str, StateSlot]:
    if m.from_version == 99:
        # Not a deliberate refusal: a hook that fails (the tests' stand-in for a bug).
        raise RuntimeError(f"cannot migrate {m.rule_id}/{m.operator_id}: boom")
    if m.from_version == 98:
        # A state the protocol cannot carry: a set inside a list.
        unsendable: Any = {1, 2}
        return {"fine": Counter(1), "bad": [unsendable]}
    if m.from_version != 1:
        raise StateRefused(f"tally 2.0.0 reads state of version 1 only, not {m.from_version}")
    state = dict(m.state)
    total = state.pop("total", 0)
    if isinstance(total, bool) or not isinstance(total, (int, float)):
        raise StateRefused(f"state key total holds a {type(total).__name__}, not a number")
    state["sum"] = total
    # Everything else (the counter "count" among it) is carried as it is.
    return state


if __name__ == "__main__":
    if sys.argv[1:] != ["nohook"]:
        assert plugin.migrate_state(migrate) is migrate
    serve(plugin)
