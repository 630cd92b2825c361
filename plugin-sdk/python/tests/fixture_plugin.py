"""A small plugin the end-to-end tests run with `python fixture_plugin.py`."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from oort_plugin import ArgSpec, Context, Function, ItemErrors, PayloadSink, Plugin, Record, Sink, Source, serve


class Echo(Function):
    def validate(self, args: list[ArgSpec]) -> None:
        if len(args) != 1:
            raise ValueError(f"echo expects 1 argument, got {len(args)}")

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        return args[0]


class Fail(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        if args[0] == "bad":
            raise ValueError("bad row")
        return args[0]


class Count(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        return ctx.incr_counter(str(args[0]), 1)


class Keep(Function):
    """keep(key, value) stores value and returns what get_state reads back;
    keep(key) only reads."""

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        if len(args) > 1:
            ctx.put_state(args[0], args[1])
        got = ctx.get_state(args[0])
        return [type(got).__name__, got]


class Agg(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        return sum(args[0])

    def is_aggregate(self) -> bool:
        return True


class Numbers(Source):
    def __init__(self) -> None:
        self.next = 0
        self.count = 0

    def open(self, ctx: Context, datasource: str, props: dict[str, Any]) -> None:
        if datasource == "refuse":
            raise ValueError("refused")
        self.count = int(props.get("count", 10))
        ctx.put_state("opened", datasource)

    def read(self, ctx: Context, max: int) -> list[Record]:
        if self.next >= self.count:
            time.sleep(0.02)
            return []
        end = min(self.count, self.next + max)
        out = [Record({"n": i}, timestamp_ms=1000 + i) for i in range(self.next, end)]
        self.next = end
        return out

    def rewindable(self) -> bool:
        return True

    def offset(self) -> Any:
        return self.next

    def rewind(self, ctx: Context, offset: Any) -> None:
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"bad offset {offset!r}")
        self.next = offset


class Collect(Sink):
    def __init__(self) -> None:
        self.path = ""

    def open(self, ctx: Context, props: dict[str, Any]) -> None:
        self.path = str(props["path"])

    def collect(self, ctx: Context, records: list[Record]) -> ItemErrors:
        if any(r.fields.get("fail") for r in records):
            raise ValueError("refused batch")
        kept = [r for r in records if not r.fields.get("skip")]
        ctx.incr_counter("written", len(kept))
        with open(self.path, "a") as f:
            for r in kept:
                f.write(f"{r.fields}\n")
        if len(kept) == len(records):
            return None
        # Per-record outcomes, only when some record was skipped.
        return [f"skipped {r.fields.get('a')}" if r.fields.get("skip") else None for r in records]

    def transactional(self) -> bool:
        return True

    def pre_commit(self, ctx: Context, checkpoint_id: int) -> Any:
        return {"size": os.path.getsize(self.path), "cp": checkpoint_id}

    def commit(self, ctx: Context, checkpoint_id: int, handle: Any) -> None:
        with open(self.path + ".commits", "a") as f:
            f.write(f"commit {checkpoint_id} {handle}\n")


class PayloadLines(PayloadSink):
    """Appends each payload as a line; refuses b"fail"; b"short" makes it
    return too few outcomes."""

    def __init__(self) -> None:
        self.path = ""

    def open(self, ctx: Context, props: dict[str, Any]) -> None:
        self.path = str(props["path"])

    def collect_payloads(self, ctx: Context, payloads: list[bytes]) -> ItemErrors:
        if b"short" in payloads:
            return [""]
        out: list[str | None] = []
        with open(self.path, "ab") as f:
            for p in payloads:
                if p == b"fail":
                    out.append("refused fail")
                else:
                    f.write(p + b"\n")
                    out.append(None)
        return out


class Flaky(Source):
    """A source that goes past problems: each read takes the next step of its
    script and reports exceptions on the way."""

    def __init__(self) -> None:
        self.step = 0

    def open(self, ctx: Context, datasource: str, props: dict[str, Any]) -> None:
        ctx.report_exception("opened without a header")

    def read(self, ctx: Context, max: int) -> list[Record]:
        self.step += 1
        if self.step == 1:  # records and an exception
            ctx.report_exception("line 2: malformed")
            return [Record({"n": 1})]
        if self.step == 2:  # an exception and no record
            ctx.report_exception("line 3: too long")
            return []
        if self.step == 3:  # a flood: only the newest 64 go
            for i in range(100):
                ctx.report_exception(f"line {4 + i}: malformed")
            return []
        if self.step == 4:
            return [Record({"n": 2})]
        time.sleep(0.02)
        return []


class Grumble(Function):
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        ctx.report_exception(f"odd row {args[0]}")
        return args[0]


class GrumbleSink(Sink):
    def open(self, ctx: Context, props: dict[str, Any]) -> None:
        pass

    def collect(self, ctx: Context, records: list[Record]) -> None:
        ctx.report_exception(f"odd batch of {len(records)}")


class Numbering(Function):
    """Numbers the rows it sees, per object: two instances sharing one object
    would continue each other's count."""

    def __init__(self) -> None:
        self.n = 0

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        self.n += 1
        return self.n


if __name__ == "__main__" and sys.argv[1:] == ["shared"]:
    # shared=: described as singletons (one process for every rule), yet a
    # fresh object per instance.
    serve(
        Plugin("shared", "0.0.1")
        .function("number", shared=Numbering)
        .source(shared=Numbers)
        .sink(shared=Collect)
    )
elif __name__ == "__main__" and sys.argv[1:] == ["payloads"]:
    serve(Plugin("payloads", "0.0.1").sink(PayloadLines))
elif __name__ == "__main__" and sys.argv[1:] == ["exceptions"]:
    serve(Plugin("exceptions", "0.0.1").function("grumble", constructor=Grumble).source(Flaky).sink(GrumbleSink))
elif __name__ == "__main__":
    serve(
        Plugin("fixture", "0.0.1")
        .function("echo", singleton=Echo())
        .function("fail", constructor=Fail)
        .function("count", constructor=Count)
        .function("agg", constructor=Agg)
        .function("keep", constructor=Keep)
        .source(Numbers)
        .sink(Collect)
    )
