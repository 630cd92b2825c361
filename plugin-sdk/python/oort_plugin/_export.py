"""What one plugin executable exports."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ._api import Function, Sink, Source, VectorizedFunction, reads_columns, takes_columns
from ._migrate import MigrateHook, check_state_version

T = TypeVar("T")
#: A state migration hook, kept as its own type by the decorator.
H = TypeVar("H", bound=MigrateHook)

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class _Export(Generic[T]):
    """A constructor (fresh object per instance, one process per rule), one
    shared object (singleton) or a shared factory (fresh object per instance,
    one process for every rule)."""

    # Whether Describe reports the symbol as a singleton, which is what the
    # supervisor shares one process among rules by: singleton= and shared=.
    singleton: bool
    # The object for a newly opened instance: the one object of a singleton,
    # a fresh one for constructor= and shared=.
    make: Callable[[], T]
    # Source and sink objects are not expected to be thread-safe: calls on one
    # object are serialised. A singleton's instances share its lock; None when
    # every instance has an object (and a lock) of its own.
    shared_lock: threading.Lock | None = field(default=None)

    @property
    def shares_object(self) -> bool:
        """Whether every instance gets the same object (singleton= only)."""
        return self.shared_lock is not None

    def lock_for_new_instance(self) -> threading.Lock:
        return self.shared_lock if self.shared_lock is not None else threading.Lock()


def _export(
    kind: str,
    name: str,
    constructor: Callable[[], T] | None,
    singleton: T | None,
    shared: Callable[[], T] | None,
) -> _Export[T]:
    if sum(x is not None for x in (constructor, singleton, shared)) != 1:
        raise ValueError(f"{kind} {name!r}: pass exactly one of constructor=, singleton= or shared=")
    if constructor is not None:
        if not callable(constructor):
            raise TypeError(f"{kind} {name!r}: constructor must be a zero-argument callable")
        return _Export(False, constructor)
    if shared is not None:
        if not callable(shared):
            raise TypeError(f"{kind} {name!r}: shared must be a zero-argument callable")
        # Reported as a singleton (one process for every rule), yet each
        # instance gets a fresh object and a lock of its own.
        return _Export(True, shared)
    obj = singleton
    assert obj is not None
    return _Export(True, lambda: obj, threading.Lock())


class Plugin:
    """Everything one plugin executable exports.

    ``name`` is the executable's name (eKuiper's rule: ``^[A-Za-z0-9_-]+$``); the
    supervisor refuses a plugin whose `Describe` name differs from its file name.
    Each symbol is exported with exactly one of ``constructor=`` (a
    zero-argument callable, e.g. the class, returning a fresh object per
    instance: the supervisor then runs one process per rule), ``singleton=``
    (one object shared by every rule, in one shared process) or ``shared=`` (a
    zero-argument callable like ``constructor=``, a fresh object per instance,
    but all of them in one shared process). The process is shared only when
    *every* symbol is a singleton or shared::

        serve(Plugin("textstats", "1.0.0")
              .function("wordCount", constructor=WordCount)
              .function("charCount", singleton=CharCount()))

    ``shared=`` is the cheap way to serve many rules with per-rule objects (a
    reader, a file, a counter); a crash of that process restarts every rule's
    instance on it (each reopened with its state), so keep ``constructor=``
    for plugins that need isolation per rule.

    ``state_version`` is the version of the state layout the plugin's instances
    write (0, the default, declares none); raise it when a release reads its
    state keys differently, and register a `migrate_state` hook that converts
    state written under other versions.
    """

    def __init__(self, name: str, version: str, *, state_version: int = 0) -> None:
        if not _NAME.match(name):
            raise ValueError(f"plugin name {name!r} must match ^[A-Za-z0-9_-]+$")
        self.name = name
        self.version = version
        #: The version of the state layout this plugin's instances write,
        #: reported in Describe; 0 declares none.
        self.state_version = check_state_version(state_version)
        self._migrate: MigrateHook | None = None
        self._functions: dict[str, _Export[Function]] = {}
        self._source: _Export[Source] | None = None
        self._sink: _Export[Sink] | None = None
        # Whether a VectorizedFunction is exported: then (and only then) the
        # plugin lists the columnar encoding in Describe. Known here for a
        # singleton or a class; a factory's product is checked in Describe.
        self._vectorized = False
        # Whether the source reads or the sink takes Arrow columns: the
        # plugin then lists the columnar encoding too. A factory's product
        # (not a class) is checked in Describe.
        self._columnar_io = False

    def function(
        self,
        name: str,
        constructor: Callable[[], Function] | None = None,
        *,
        singleton: Function | None = None,
        shared: Callable[[], Function] | None = None,
    ) -> Plugin:
        """Exports a function under the SQL name `name`. A plugin may export
        several functions; list them all in the plugin's metadata file."""
        if not name:
            raise ValueError("a function needs a name")
        if name in self._functions:
            raise ValueError(f"function {name!r} is exported twice")
        export = _export("function", name, constructor, singleton, shared)
        if isinstance(singleton, VectorizedFunction) or any(
            isinstance(make, type) and issubclass(make, VectorizedFunction) for make in (constructor, shared)
        ):
            self._mark_vectorized(name)
        self._functions[name] = export
        return self

    def _mark_vectorized(self, name: str) -> None:
        """Loads pyarrow now rather than at the first batch, and fails at start
        (not in the middle of a rule) when it is missing."""
        if self._vectorized:
            return
        try:
            from . import _arrow  # noqa: F401
        except ImportError as e:
            raise ImportError(
                f"function {name!r} is a VectorizedFunction, which needs pyarrow "
                f"(pip install 'oort-plugin[arrow]'): {e}"
            ) from e
        self._vectorized = True

    def source(
        self,
        constructor: Callable[[], Source] | None = None,
        *,
        singleton: Source | None = None,
        shared: Callable[[], Source] | None = None,
    ) -> Plugin:
        """Exports a source, named after the plugin."""
        if self._source is not None:
            raise ValueError("a plugin exports at most one source")
        self._source = _export("source", self.name, constructor, singleton, shared)
        if any(_is_columnar(x, reads_columns, Source) for x in (constructor, singleton, shared)):
            self._mark_columnar_io("source")
        return self

    def sink(
        self,
        constructor: Callable[[], Sink] | None = None,
        *,
        singleton: Sink | None = None,
        shared: Callable[[], Sink] | None = None,
    ) -> Plugin:
        """Exports a sink, named after the plugin."""
        if self._sink is not None:
            raise ValueError("a plugin exports at most one sink")
        self._sink = _export("sink", self.name, constructor, singleton, shared)
        if any(_is_columnar(x, takes_columns, Sink) for x in (constructor, singleton, shared)):
            self._mark_columnar_io("sink")
        return self

    def migrate_state(self, hook: H) -> H:
        """Registers the hook that converts state written under another state
        version into this plugin's own; use it as a decorator::

            plugin = Plugin("counter", "2.0.0", state_version=2)

            @plugin.migrate_state
            def migrate(m: StateMigration) -> dict[str, StateSlot]:
                ...

        The supervisor calls it (possibly from several threads at once) when
        it holds non-empty state of another version for an instance it is
        about to open, or before an upgrade moves a rule. It returns the whole
        new state (keys it leaves out are dropped) or raises to refuse the state
        (`StateRefused`, or any exception): the upgrade then stops and the
        rule keeps running on the version it has. Without a hook every such
        state is refused. Returns the hook unchanged.
        """
        if not callable(hook):
            raise TypeError("migrate_state takes a function of one StateMigration")
        if self._migrate is not None:
            raise ValueError(f"plugin {self.name} has a state migration hook already")
        self._migrate = hook
        return hook

    def _mark_columnar_io(self, kind: str) -> None:
        """As `_mark_vectorized`, for a source or sink that implements
        `read_columns` or `collect_columns`."""
        if self._columnar_io:
            return
        try:
            from . import _arrow  # noqa: F401
        except ImportError as e:
            method = "read_columns" if kind == "source" else "collect_columns"
            raise ImportError(
                f"the {kind} implements {method}, which needs pyarrow (pip install 'oort-plugin[arrow]'): {e}"
            ) from e
        self._columnar_io = True


def _is_columnar(export: object, test: Callable[[Any], bool], base: type) -> bool:
    """Whether an export argument (an object, a class or a factory) is known
    at export time to be a columnar source or sink: a factory's product is
    only known once made."""
    if isinstance(export, type):
        return issubclass(export, base) and test(export)
    return isinstance(export, base) and test(export)
