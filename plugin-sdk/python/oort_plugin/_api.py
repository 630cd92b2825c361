"""The three extension kinds, after eKuiper's `api.Function`, `api.Source` and `api.Sink`.

Subclass one of them and override the methods you need; the abstract ones are
required. Raise any exception to report a failure: its message (`str(e)`, or
the exception's class name when that is empty) becomes the error text the
supervisor sees.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, TypeAlias

from ._context import Context
from ._values import Record

if TYPE_CHECKING:
    # Only for the annotations: importing pyarrow costs every plugin start,
    # so the SDK loads it only for a plugin that exports a VectorizedFunction.
    import pyarrow as pa


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """What the rule engine knows about one function argument when a rule is created."""

    #: The argument as written in SQL, e.g. `name`, `'a b'` or `x + 1`.
    expression: str
    #: The literal's value when the argument is a literal (see `is_literal`: a
    #: NULL literal is None too).
    literal: Any = None
    #: The column name when the argument is a plain column reference.
    column: str | None = None
    #: Whether the argument is a literal.
    is_literal: bool = False


class Function(ABC):
    """A function callable from SQL, like eKuiper's `api.Function`.

    A singleton export shares one object between every rule, possibly from
    several threads at once: keep per-rule data in the context's state, not on
    `self`.
    """

    def validate(self, args: list[ArgSpec]) -> None:
        """Checks a call's arguments when a rule is created. Raise to refuse;
        the message is the reason, e.g. "expects 2 arguments, got 1"."""

    @abstractmethod
    def exec(self, ctx: Context, args: list[Any]) -> Any:
        """Computes the result for one row of arguments. Raise to fail this row only."""

    def is_aggregate(self) -> bool:
        """Whether the function aggregates over a group of rows (its argument is
        then a list of the group's values)."""
        return False


class VectorizedFunction(Function):
    """A function computed a whole batch at a time, on Apache Arrow arrays.

    Needs pyarrow (``pip install 'oort-plugin[arrow]'``). A plugin that exports
    at least one lists the columnar encoding in Describe, and the supervisor
    may then send its batches as Arrow columns: `exec_columns` gets one array
    per argument, as received, and returns one array, answered as a column
    without a conversion per value. A batch that comes as rows (the operator
    chose rows, or its values do not fit a column) is turned into arrays
    first, so `exec_columns` is the only method to write.

    Not for aggregates: `is_aggregate` must stay False (an aggregate's
    arguments are lists of a group's values, which the SDK hands to `exec`).
    """

    @abstractmethod
    def exec_columns(self, ctx: Context, args: list[pa.Array]) -> pa.Array:
        """Computes a batch: one array per argument (columns of equal length:
        Null, Boolean, Int64, UInt64, Float64, String or Binary, each possibly
        with nulls), one result per row, in row order.

        Return a pa.Array, a pa.ChunkedArray, a numpy array or a list, of
        exactly `ctx.batch_rows` values (the length of every argument; a
        function without arguments has only `ctx.batch_rows`). A null is a
        null result. Raise to fail every row of the batch with the message.
        """

    def exec(self, ctx: Context, args: list[Any]) -> Any:
        """The row call, for a single row: `exec_columns` on one-row arrays."""
        from . import _arrow

        return _arrow.exec_one(self, ctx, args)


class Source(ABC):
    """A source of records, like eKuiper's `api.Source` (pull style)."""

    @abstractmethod
    def open(self, ctx: Context, datasource: str, props: dict[str, Any]) -> None:
        """Prepares the instance: `datasource` is the stream's `DATASOURCE`,
        `props` its configuration. Raise to refuse."""

    @abstractmethod
    def read(self, ctx: Context, max: int) -> Sequence[Record]:
        """Returns up to `max` records (a plain dict counts as a record's fields).

        It may block while nothing is available, but should return (possibly
        with nothing) within about 100 ms so that a close is noticed promptly.
        """

    def read_columns(self, ctx: Context, max: int) -> pa.RecordBatch | None:
        """Optional: returns up to `max` rows as a pyarrow RecordBatch, one
        column per field, named after the field (each name once), instead of
        `read`'s records; the supervisor then takes them without a conversion
        per value (docs/protocol.md, "Columnar sources and sinks").

        Called instead of `read` only when the supervisor accepts columns;
        otherwise, and whenever this returns None, `read` is called, so both
        must read from the same place. A batch of no rows means nothing is
        available (wait as `read` does). A null cell reaches the rule as an
        absent field; such records have no metadata and no event time. Column
        types are those a `VectorizedFunction` may return.

        Overriding it needs pyarrow (the `arrow` extra), loaded when the
        source is exported.
        """
        return None

    def close(self, ctx: Context) -> None:
        """Releases the instance's resources."""

    def rewindable(self) -> bool:
        """Whether the source can replay from an offset (`offset` and `rewind`
        are implemented)."""
        return False

    def offset(self) -> Any:
        """The offset after the last record returned by `read`."""
        return None

    def rewind(self, ctx: Context, offset: Any) -> None:
        """Repositions the source so that the next record read follows `offset`."""
        raise NotImplementedError("this source is not rewindable")


#: What `collect` and `collect_payloads` may return: None when the batch is
#: delivered as a whole, or one entry per item of the batch, in order: None or
#: "" for an item delivered, otherwise why it was not (eKuiper's per-item ack).
ItemErrors: TypeAlias = Optional[Sequence[Optional[str]]]


class Sink(ABC):
    """A sink for records, like eKuiper's `api.Sink`, with optional two-phase
    commit hooks for exactly-once delivery. A sink that wants the bytes
    eKuiper's runtime would encode instead of records is a `PayloadSink`."""

    @abstractmethod
    def open(self, ctx: Context, props: dict[str, Any]) -> None:
        """Prepares the instance with the rule action's properties. Raise to refuse."""

    @abstractmethod
    def collect(self, ctx: Context, records: list[Record]) -> ItemErrors:
        """Accepts one batch of records. Raise to fail this batch (it is not
        retried); or return one error per record (see `ItemErrors`) to fail some
        records only, the batch itself being accepted."""

    def collect_columns(self, ctx: Context, batch: pa.RecordBatch) -> ItemErrors:
        """Optional: accepts one batch as a pyarrow RecordBatch, one column per
        output field (sorted by name; a null cell for a field that is null or
        absent in that record), one row per record. Outcomes are as for
        `collect`, one item per row.

        A sink that overrides it answers Open with `takes_arrow`, and the
        supervisor may then send batches as columns; batches that come as
        records still go to `collect`, so both must write the same thing.
        Overriding it needs pyarrow (the `arrow` extra), loaded when the sink
        is exported. By default the columns go to `collect` as the records
        they stand for (a null cell is an absent field).
        """
        from . import _arrow

        return self.collect(ctx, _arrow.records_of(batch))

    def close(self, ctx: Context) -> None:
        """Flushes and releases the instance's resources."""

    def transactional(self) -> bool:
        """Whether the sink implements the two-phase-commit hooks."""
        return False

    def pre_commit(self, ctx: Context, checkpoint_id: int) -> Any:
        """Makes everything collected so far durable but not yet visible, and
        returns a handle (any value) that `commit` or `abort` will receive,
        possibly in a later process after a crash."""
        return None

    def commit(self, ctx: Context, checkpoint_id: int, handle: Any) -> None:
        """Makes a pre-committed checkpoint visible."""

    def abort(self, ctx: Context, checkpoint_id: int, handle: Any) -> None:
        """Discards a pre-committed checkpoint."""


class PayloadSink(Sink):
    """A sink that receives bytes instead of records, as eKuiper's sinks do.

    The supervisor encodes every item as eKuiper's runtime does, per the rule
    action's properties `format` (json, delimited, binary), `dataTemplate`,
    `sendSingle`, `fields` and `delimiter`, and the SDK hands the encoded items
    to `collect_payloads`. With `sendSingle` false an item is one emission (a
    JSON array of its rows); with `sendSingle` true, one row.
    """

    @abstractmethod
    def collect_payloads(self, ctx: Context, payloads: list[bytes]) -> ItemErrors:
        """Accepts one batch of encoded items. Raise to fail the batch, or
        return one error per payload (see `ItemErrors`) to fail some only."""

    def collect(self, ctx: Context, records: list[Record]) -> ItemErrors:
        # Never called for a PayloadSink: the SDK answers Open with
        # wants_payloads and calls collect_payloads. Implemented only so that
        # subclasses need not.
        raise TypeError(f"{type(self).__name__} is a PayloadSink: it receives payloads, not records")


def reads_columns(source: type[Source] | Source) -> bool:
    """Whether a source class or object implements `read_columns`."""
    cls = source if isinstance(source, type) else type(source)
    return cls.read_columns is not Source.read_columns


def takes_columns(sink: type[Sink] | Sink) -> bool:
    """Whether a sink class or object implements `collect_columns` (a
    `PayloadSink` never gets columns)."""
    cls = sink if isinstance(sink, type) else type(sink)
    return cls.collect_columns is not Sink.collect_columns and not issubclass(cls, PayloadSink)
