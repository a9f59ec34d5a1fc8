"""The device-mapper ``multipath`` target as data: its table, its status, dmsetup listings.

Pure code, no I/O (the commands live in :mod:`dmpath.kernel.dmsetup`). The daemon rebuilds
its idea of a map from ``dmsetup table``/``status`` text, so a parser that guesses would let
the model drift from the kernel; hence every parser here either returns a model that formats
back to the very same words, or raises :class:`~dmpath.errors.ParseError`.

Facts from the kernel (drivers/md/dm-mpath.c and the path selectors, Linux 6.1) that shape
this module:

* The table the kernel *reports* is rebuilt from its state, not echoed: features come out in
  a fixed order (``queue_if_no_path``, ``pg_init_retries N``, ``pg_init_delay_msecs N``,
  ``retain_attached_hw_handler``, ``queue_mode bio``); ``queue_mode rq``/``mq`` (the default
  in 6.1) is not shown; the hardware handler is shown as ``1 <name>`` without its arguments;
  selectors show every per-path argument with defaults filled in (``service-time 0 1 1 8:0
  1`` reads back as ``... 1 2 8:0 1 1``); the initial group number is the group the kernel
  would use next, so it changes after ``switch_group``. ``fail_if_no_path`` drops
  ``queue_if_no_path`` from the reported table.
* In the status line, ``queue_io`` is the kernel's "queue all I/O while a group initialises"
  flag (MPATHF_QUEUE_IO), *not* ``queue_if_no_path``: a map with every path failed shows
  ``0`` there whether it queues or not.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from dmpath.errors import DmpathError, ParseError

TARGET = "multipath"

#: features in the order the kernel reports them (multipath_status, STATUSTYPE_TABLE)
FEATURE_ORDER: tuple[str, ...] = (
    "queue_if_no_path",
    "pg_init_retries",
    "pg_init_delay_msecs",
    "retain_attached_hw_handler",
    "queue_mode",
)
#: features that take one value word
_VALUED_FEATURES = frozenset({"pg_init_retries", "pg_init_delay_msecs", "queue_mode"})
#: queue modes the 6.1 kernel accepts (``mq`` is an alias of ``rq`` there)
QUEUE_MODES: tuple[str, ...] = ("bio", "rq", "mq")
#: kernel limits (dm_arg ranges in dm-mpath.c)
MAX_FEATURE_WORDS = 8
PG_INIT_RETRIES_RANGE = (1, 50)
PG_INIT_DELAY_MSECS_RANGE = (0, 60000)
MAX_COUNT = 1024  # groups, paths per group, selector args, hw handler args

_UINT = re.compile(r"[0-9]+")


class TableError(DmpathError):
    """A multipath table model the kernel would refuse (or that cannot be written as text)."""

    exit_code = 2


# --------------------------------------------------------------------------- helpers


def _check_word(what: str, word: str) -> None:
    """Each value becomes one word of a whitespace-separated line: it must stay one word."""
    if not isinstance(word, str) or not word or any(c.isspace() for c in word):
        raise TableError(f"{what} must be one non-empty word without whitespace, got {word!r}")


def _check_words(what: str, words: Sequence[str]) -> None:
    if not isinstance(words, tuple):
        raise TableError(f"{what} must be a tuple of words, got {type(words).__name__}")
    for w in words:
        _check_word(what, w)


def _check_uint(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TableError(f"{what} must be a non-negative integer, got {value!r}")


class _Words:
    """A cursor over the words of one line; every read names what it expects."""

    def __init__(self, what: str, text: str) -> None:
        self.what = what
        self.text = text
        self.words = text.split()
        self.pos = 0

    def fail(self, detail: str) -> ParseError:
        return ParseError(self.what, f"{detail} (word {self.pos + 1})", self.text)

    def next(self, expect: str) -> str:
        if self.pos >= len(self.words):
            raise self.fail(f"line ends where {expect} was expected")
        word = self.words[self.pos]
        self.pos += 1
        return word

    def uint(self, expect: str, limit: int | None = None) -> int:
        word = self.next(expect)
        if not _UINT.fullmatch(word):
            self.pos -= 1
            raise self.fail(f"{expect} must be a non-negative integer, got {word!r}")
        value = int(word)
        if limit is not None and value > limit:
            self.pos -= 1
            raise self.fail(f"{expect} is {value}, more than {limit}")
        return value

    def take(self, count: int, expect: str) -> tuple[str, ...]:
        if self.pos + count > len(self.words):
            raise self.fail(
                f"line ends inside {expect}: {count} expected, {len(self.words) - self.pos} left"
            )
        got = tuple(self.words[self.pos : self.pos + count])
        self.pos += count
        return got

    def counted(self, expect: str) -> tuple[str, ...]:
        """``<n> <word>*n``: the way dm-mpath writes every variable-length list."""
        count = self.uint(f"number of {expect}", MAX_COUNT)
        return self.take(count, expect)

    def end(self) -> None:
        if self.pos != len(self.words):
            raise self.fail(f"{len(self.words) - self.pos} unexpected trailing words")


def _single_line(what: str, text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ParseError(what, "empty output", text)
    if len(lines) > 1:
        raise ParseError(what, f"{len(lines)} lines: a multipath map has exactly one target", text)
    return lines[0]


def _head(w: _Words) -> tuple[int, int]:
    start = w.uint("start sector")
    length = w.uint("length in sectors")
    target = w.next("target type")
    if target != TARGET:
        w.pos -= 1
        raise w.fail(f"target type is {target!r}, not {TARGET!r}")
    return start, length


# --------------------------------------------------------------------------- selectors


@dataclass(frozen=True)
class SelectorSpec:
    """What the kernel expects of an in-tree path selector.

    ``path_args`` name the optional per-path table arguments (a table may give fewer; the
    kernel fills defaults and always reports all of them); ``status_args`` name the per-path
    values in ``dmsetup status``.
    """

    name: str
    path_args: tuple[str, ...]
    status_args: tuple[str, ...]
    defaults: tuple[int, ...]
    #: upper bounds per path arg (None: any unsigned int)
    maxima: tuple[int | None, ...]


KNOWN_SELECTORS: Mapping[str, SelectorSpec] = {
    s.name: s
    for s in (
        # repeat_count > 1 is deprecated since 4.6 and clamped to 1 (with a warning)
        SelectorSpec(
            "service-time",
            ("repeat_count", "relative_throughput"),
            ("in_flight_size", "relative_throughput"),
            (1, 1),
            (None, 100),
        ),
        SelectorSpec("queue-length", ("repeat_count",), ("in_flight",), (1,), (None,)),
        SelectorSpec("round-robin", ("repeat_count",), (), (1,), (None,)),
    )
}


def selector_path_args(selector: str, **values: int) -> tuple[str, ...]:
    """Complete per-path arguments for a known selector, kernel defaults filled in.

    Giving all of them makes ``dmsetup table`` read back exactly what was loaded.
    ``selector_path_args("service-time", relative_throughput=10) == ("1", "10")``.
    """
    spec = KNOWN_SELECTORS.get(selector)
    if spec is None:
        raise TableError(f"unknown path selector {selector!r}: give its path args literally")
    unknown = set(values) - set(spec.path_args)
    if unknown:
        raise TableError(
            f"{selector} takes path args {', '.join(spec.path_args)}, "
            f"not {', '.join(sorted(unknown))}"
        )
    out = []
    for name, default in zip(spec.path_args, spec.defaults, strict=True):
        value = values.get(name, default)
        _check_uint(f"{selector} {name}", value)
        out.append(str(value))
    return tuple(out)


def decode_path_args(selector: str, args: Sequence[str]) -> dict[str, int]:
    """Name the per-path table args of a known selector (missing ones get kernel defaults)."""
    spec = _spec_for(selector)
    _validate_known_path_args(spec, tuple(args))
    out = dict(zip(spec.path_args, spec.defaults, strict=True))
    for name, word in zip(spec.path_args, args, strict=False):
        out[name] = int(word)
    return out


def decode_path_status(selector: str, args: Sequence[str]) -> dict[str, int]:
    """Name the per-path status values of a known selector (e.g. service-time in-flight bytes)."""
    spec = _spec_for(selector)
    if len(args) != len(spec.status_args):
        raise ParseError(
            f"{selector} path status",
            f"{len(spec.status_args)} values expected, got {len(args)}",
            " ".join(args),
        )
    out: dict[str, int] = {}
    for name, word in zip(spec.status_args, args, strict=True):
        if not re.fullmatch(r"-?[0-9]+", word):
            raise ParseError(f"{selector} path status", f"{name} is not an integer", word)
        out[name] = int(word)
    return out


def _spec_for(selector: str) -> SelectorSpec:
    spec = KNOWN_SELECTORS.get(selector)
    if spec is None:
        raise TableError(f"unknown path selector {selector!r}")
    return spec


def _validate_known_path_args(spec: SelectorSpec, args: tuple[str, ...]) -> None:
    if len(args) > len(spec.path_args):
        raise TableError(
            f"{spec.name} takes at most {len(spec.path_args)} path args "
            f"({' '.join(spec.path_args)}), got {len(args)}: {' '.join(args)}"
        )
    for name, limit, word in zip(spec.path_args, spec.maxima, args, strict=False):
        if not _UINT.fullmatch(word):
            raise TableError(f"{spec.name} {name} must be an unsigned integer, got {word!r}")
        if limit is not None and int(word) > limit:
            raise TableError(f"{spec.name} {name} must be at most {limit}, got {word}")


# --------------------------------------------------------------------------- table model


@dataclass(frozen=True)
class Features:
    """The ``<#features> <feature words>`` part of a table, as named settings.

    ``extra`` keeps words this module does not know, verbatim. ``order`` remembers the order
    the words were parsed in (known feature names, and ``""`` for each extra word) so that
    text formats back word for word; it takes no part in equality, and a model built in code
    (empty ``order``) formats in the kernel's own order.
    """

    queue_if_no_path: bool = False
    pg_init_retries: int | None = None
    pg_init_delay_msecs: int | None = None
    retain_attached_hw_handler: bool = False
    queue_mode: str | None = None
    extra: tuple[str, ...] = ()
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("pg_init_retries", "pg_init_delay_msecs"):
            value = getattr(self, name)
            if value is not None:
                _check_uint(name, value)
        if self.queue_mode is not None:
            _check_word("queue_mode", self.queue_mode)
        _check_words("extra feature", self.extra)
        for word in self.extra:
            if word in FEATURE_ORDER:
                raise TableError(f"extra feature word {word!r} is a known feature: set it by name")

    def _present(self) -> dict[str, tuple[str, ...]]:
        got: dict[str, tuple[str, ...]] = {}
        if self.queue_if_no_path:
            got["queue_if_no_path"] = ("queue_if_no_path",)
        if self.pg_init_retries is not None:
            got["pg_init_retries"] = ("pg_init_retries", str(self.pg_init_retries))
        if self.pg_init_delay_msecs is not None:
            got["pg_init_delay_msecs"] = ("pg_init_delay_msecs", str(self.pg_init_delay_msecs))
        if self.retain_attached_hw_handler:
            got["retain_attached_hw_handler"] = ("retain_attached_hw_handler",)
        if self.queue_mode is not None:
            got["queue_mode"] = ("queue_mode", self.queue_mode)
        return got

    def words(self) -> tuple[str, ...]:
        """The feature words (without the leading count)."""
        present = self._present()
        extra = list(self.extra)
        out: list[str] = []
        for key in self.order:
            if key == "":
                if extra:
                    out.append(extra.pop(0))
            elif key in present:
                out.extend(present.pop(key))
        for key in FEATURE_ORDER:
            if key in present:
                out.extend(present.pop(key))
        out.extend(extra)
        return tuple(out)

    @classmethod
    def from_words(cls, words: Sequence[str], text: str = "") -> Features:
        """Interpret feature words; ``text`` (the whole line) only makes errors clearer."""
        values: dict[str, object] = {}
        extra: list[str] = []
        order: list[str] = []
        i = 0
        while i < len(words):
            word = words[i]
            i += 1
            if word not in FEATURE_ORDER:
                extra.append(word)
                order.append("")
                continue
            if word in values:
                raise ParseError("multipath features", f"{word} given twice", text)
            if word in _VALUED_FEATURES:
                if i >= len(words):
                    raise ParseError("multipath features", f"{word} has no value", text)
                value = words[i]
                i += 1
                if word == "queue_mode":
                    values[word] = value
                else:
                    if not _UINT.fullmatch(value):
                        raise ParseError(
                            "multipath features", f"{word} value {value!r} is not a number", text
                        )
                    values[word] = int(value)
            else:
                values[word] = True
            order.append(word)
        return cls(
            queue_if_no_path=bool(values.get("queue_if_no_path", False)),
            pg_init_retries=_opt_int(values.get("pg_init_retries")),
            pg_init_delay_msecs=_opt_int(values.get("pg_init_delay_msecs")),
            retain_attached_hw_handler=bool(values.get("retain_attached_hw_handler", False)),
            queue_mode=_opt_str(values.get("queue_mode")),
            extra=tuple(extra),
            order=tuple(order),
        )


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class HardwareHandler:
    """A SCSI device handler (``alua``, ``emc``, ``rdac``, ``hp_sw``) and its arguments.

    The kernel passes the arguments to the handler but never reports them back.
    """

    name: str
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_word("hardware handler name", self.name)
        _check_words("hardware handler arg", self.args)


@dataclass(frozen=True)
class TablePath:
    """One path in a table: a device (``8:0`` or ``/dev/sdb``) and its selector arguments."""

    dev: str
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_word("path device", self.dev)
        _check_words("path arg", self.args)


@dataclass(frozen=True)
class PathGroup:
    """A priority group: paths used together through one path selector.

    Every path of a group has the same number of arguments: the table states that number
    once per group.
    """

    selector: str
    paths: tuple[TablePath, ...]
    selector_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_word("path selector", self.selector)
        _check_words("selector arg", self.selector_args)
        if not isinstance(self.paths, tuple) or not self.paths:
            raise TableError(f"a {self.selector} path group needs at least one path")
        counts = {len(p.args) for p in self.paths}
        if len(counts) != 1:
            raise TableError(
                "paths of one group must have the same number of args, got "
                + ", ".join(f"{p.dev}: {len(p.args)}" for p in self.paths)
            )

    @property
    def path_arg_count(self) -> int:
        return len(self.paths[0].args)

    @property
    def devs(self) -> tuple[str, ...]:
        return tuple(p.dev for p in self.paths)

    @classmethod
    def of(cls, selector: str, devs: Sequence[str], **values: int) -> PathGroup:
        """A group of a known selector over ``devs`` with complete path args (see
        :func:`selector_path_args`)."""
        args = selector_path_args(selector, **values)
        return cls(selector, tuple(TablePath(d, args) for d in devs))


@dataclass(frozen=True)
class MultipathTable:
    """One ``multipath`` target line: what ``dmsetup create/load`` take and ``table`` shows.

    ``initial_pg`` is 1-based (0 only when there are no groups). ``length`` and ``start``
    are in 512-byte sectors.
    """

    length: int
    groups: tuple[PathGroup, ...]
    features: Features = Features()
    hw_handler: HardwareHandler | None = None
    initial_pg: int = 1
    start: int = 0

    def __post_init__(self) -> None:
        _check_uint("start", self.start)
        _check_uint("length", self.length)
        _check_uint("initial_pg", self.initial_pg)
        if not isinstance(self.groups, tuple):
            raise TableError("groups must be a tuple of PathGroup")

    @property
    def devs(self) -> tuple[str, ...]:
        """Every path device, in table order."""
        return tuple(p.dev for g in self.groups for p in g.paths)


def validate_table(t: MultipathTable) -> None:
    """Refuse what the 6.1 kernel's constructor would refuse, with a reason it can't give.

    (The kernel only answers ``dmsetup create`` with "Invalid argument" and logs the reason
    to dmesg, so checking here gives the user the actual cause.)
    """
    f = t.features
    if len(f.words()) > MAX_FEATURE_WORDS:
        raise TableError(f"at most {MAX_FEATURE_WORDS} feature words, got {len(f.words())}")
    if f.pg_init_retries is not None:
        lo, hi = PG_INIT_RETRIES_RANGE
        if not lo <= f.pg_init_retries <= hi:
            raise TableError(f"pg_init_retries must be between {lo} and {hi}")
    if f.pg_init_delay_msecs is not None:
        lo, hi = PG_INIT_DELAY_MSECS_RANGE
        if not lo <= f.pg_init_delay_msecs <= hi:
            raise TableError(f"pg_init_delay_msecs must be between {lo} and {hi}")
    if f.queue_mode is not None and f.queue_mode not in QUEUE_MODES:
        raise TableError(f"queue_mode must be one of {', '.join(QUEUE_MODES)}")
    if f.extra:
        raise TableError(f"unknown multipath feature(s): {' '.join(f.extra)}")
    if t.hw_handler is not None and len(t.hw_handler.args) + 1 > MAX_COUNT:
        raise TableError("too many hardware handler args")
    if len(t.groups) > MAX_COUNT:
        raise TableError(f"at most {MAX_COUNT} path groups")
    if not t.groups and t.initial_pg != 0:
        raise TableError("a table without path groups must have initial_pg 0")
    if t.groups and not 1 <= t.initial_pg <= len(t.groups):
        raise TableError(f"initial_pg {t.initial_pg} is not a group number (1..{len(t.groups)})")
    for n, g in enumerate(t.groups, 1):
        if len(g.paths) > MAX_COUNT or len(g.selector_args) > MAX_COUNT:
            raise TableError(f"group {n}: too many paths or selector args")
        spec = KNOWN_SELECTORS.get(g.selector)
        if spec is not None:
            try:
                _validate_known_path_args(spec, g.paths[0].args)
            except TableError as exc:
                raise TableError(f"group {n}: {exc}") from None
    seen: set[str] = set()
    for dev in t.devs:
        if dev in seen:
            raise TableError(f"path {dev} appears twice")
        seen.add(dev)


def as_reported(t: MultipathTable) -> MultipathTable:
    """The table ``dmsetup table`` will show right after ``t`` is loaded (6.1 kernel).

    Lets the daemon check "model == fresh scan" without false alarms: features in the
    kernel's order, ``queue_mode rq|mq`` dropped (request-based is the default), ``bio``
    implying ``retain_attached_hw_handler`` and ignoring the hardware handler, handler args
    dropped, and the per-path args of known selectors completed with defaults
    (``repeat_count`` above 1 is clamped to 1). Not predicted: the device handler already
    attached to the paths, which the kernel keeps and reports instead of the table's (when
    the table names a different one, or with ``retain_attached_hw_handler``/``bio``).
    """
    f = t.features
    bio = f.queue_mode == "bio"
    features = Features(
        queue_if_no_path=f.queue_if_no_path,
        pg_init_retries=f.pg_init_retries or None,
        pg_init_delay_msecs=f.pg_init_delay_msecs,
        retain_attached_hw_handler=f.retain_attached_hw_handler or bio,
        queue_mode="bio" if bio else None,
        extra=f.extra,
    )
    hw = None if t.hw_handler is None or bio else HardwareHandler(t.hw_handler.name)
    groups = []
    for g in t.groups:
        spec = KNOWN_SELECTORS.get(g.selector)
        if spec is None:
            groups.append(g)
            continue
        paths = []
        for p in g.paths:
            values = decode_path_args(g.selector, p.args)
            if values.get("repeat_count", 1) > 1:
                values["repeat_count"] = 1
            paths.append(TablePath(p.dev, selector_path_args(g.selector, **values)))
        groups.append(PathGroup(g.selector, tuple(paths), g.selector_args))
    return MultipathTable(
        length=t.length,
        groups=tuple(groups),
        features=features,
        hw_handler=hw,
        initial_pg=t.initial_pg,
        start=t.start,
    )


def format_table(t: MultipathTable, *, validate: bool = True) -> str:
    """The table as one line for ``dmsetup create/load`` (no newline, no trailing space).

    ``validate=False`` writes whatever the model holds (e.g. to echo a parsed table that
    used a selector argument this module does not know).
    """
    if validate:
        validate_table(t)
    feats = t.features.words()
    out: list[str] = [str(t.start), str(t.length), TARGET, str(len(feats)), *feats]
    if t.hw_handler is None:
        out.append("0")
    else:
        out += [str(1 + len(t.hw_handler.args)), t.hw_handler.name, *t.hw_handler.args]
    out += [str(len(t.groups)), str(t.initial_pg)]
    for g in t.groups:
        out += [g.selector, str(len(g.selector_args)), *g.selector_args]
        out += [str(len(g.paths)), str(g.path_arg_count)]
        for p in g.paths:
            out += [p.dev, *p.args]
    return " ".join(out)


def parse_table(text: str) -> MultipathTable:
    """Parse one ``multipath`` line of ``dmsetup table`` (or a table we would load)."""
    line = _single_line("multipath table", text)
    w = _Words("multipath table", line)
    start, length = _head(w)
    feats = w.counted("feature words")
    features = Features.from_words(feats, line)
    hw_words = w.counted("hardware handler words")
    hw = HardwareHandler(hw_words[0], hw_words[1:]) if hw_words else None
    npg = w.uint("number of path groups", MAX_COUNT)
    initial = w.uint("initial path group", MAX_COUNT)
    groups: list[PathGroup] = []
    for n in range(1, npg + 1):
        selector = w.next(f"group {n} path selector")
        sel_args = w.counted(f"group {n} selector args")
        npaths = w.uint(f"group {n} number of paths", MAX_COUNT)
        if npaths == 0:
            w.pos -= 1
            raise w.fail(f"group {n} has no paths (the kernel requires at least one)")
        nargs = w.uint(f"group {n} number of per-path args", MAX_COUNT)
        paths = []
        for k in range(1, npaths + 1):
            dev = w.next(f"group {n} path {k} device")
            paths.append(TablePath(dev, w.take(nargs, f"args of path {dev}")))
        groups.append(PathGroup(selector, tuple(paths), sel_args))
    w.end()
    try:
        return MultipathTable(
            length=length,
            groups=tuple(groups),
            features=features,
            hw_handler=hw,
            initial_pg=initial,
            start=start,
        )
    except TableError as exc:  # pragma: no cover - the parser above builds valid parts
        raise ParseError("multipath table", str(exc), line) from exc


# --------------------------------------------------------------------------- status model


class GroupState(enum.Enum):
    """A priority group as ``dmsetup status`` shows it."""

    ACTIVE = "A"  # the group I/O goes to now
    ENABLED = "E"  # usable, not in use
    DISABLED = "D"  # bypassed (disable_group, or a handler said "busy")


class PathState(enum.Enum):
    ACTIVE = "A"
    FAILED = "F"


@dataclass(frozen=True)
class PathStatus:
    """One path in ``dmsetup status``: its state, how often it failed, selector values."""

    dev: str
    state: PathState
    fail_count: int = 0
    selector_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_word("path device", self.dev)
        _check_uint("fail_count", self.fail_count)
        _check_words("path selector status", self.selector_args)

    @property
    def active(self) -> bool:
        return self.state is PathState.ACTIVE


@dataclass(frozen=True)
class GroupStatus:
    """One priority group in ``dmsetup status``.

    ``selector_status`` holds group-wide selector values (none of the in-tree selectors
    reports any).
    """

    state: GroupState
    paths: tuple[PathStatus, ...]
    selector_status: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_words("group selector status", self.selector_status)
        if not isinstance(self.paths, tuple) or not self.paths:
            raise TableError("a path group status needs at least one path")
        counts = {len(p.selector_args) for p in self.paths}
        if len(counts) != 1:
            raise TableError("paths of one group must have the same number of selector values")

    @property
    def path_status_count(self) -> int:
        return len(self.paths[0].selector_args)


@dataclass(frozen=True)
class MultipathStatus:
    """A ``dmsetup status`` line of a multipath map.

    ``next_pg`` is the group number the kernel reports after the group count: the group a
    pending ``switch_group`` will use, else the current one, else 1 (0 without groups).
    ``queue_io`` is MPATHF_QUEUE_IO ("hold I/O until the group is initialised"), not
    ``queue_if_no_path``. ``extra`` keeps status words beyond the two known ones and
    ``hw_status`` the hardware handler's (6.1 reports none).
    """

    length: int
    groups: tuple[GroupStatus, ...]
    next_pg: int
    queue_io: bool = False
    pg_init_count: int = 0
    hw_status: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    start: int = 0

    def __post_init__(self) -> None:
        _check_uint("start", self.start)
        _check_uint("length", self.length)
        _check_uint("next_pg", self.next_pg)
        _check_uint("pg_init_count", self.pg_init_count)
        _check_words("hardware handler status", self.hw_status)
        _check_words("status word", self.extra)
        if not isinstance(self.groups, tuple):
            raise TableError("groups must be a tuple of GroupStatus")

    def paths(self) -> Iterator[tuple[int, PathStatus]]:
        """Every path with its 1-based group number."""
        for n, g in enumerate(self.groups, 1):
            for p in g.paths:
                yield n, p

    def path(self, dev: str) -> PathStatus | None:
        for _n, p in self.paths():
            if p.dev == dev:
                return p
        return None

    @property
    def active_group(self) -> int | None:
        """The 1-based number of the group in use, if any."""
        for n, g in enumerate(self.groups, 1):
            if g.state is GroupState.ACTIVE:
                return n
        return None

    @property
    def valid_paths(self) -> int:
        return sum(1 for _n, p in self.paths() if p.active)


def format_status(s: MultipathStatus) -> str:
    """The status as the kernel writes it, minus the trailing space."""
    out: list[str] = [str(s.start), str(s.length), TARGET]
    out += [str(2 + len(s.extra)), "1" if s.queue_io else "0", str(s.pg_init_count), *s.extra]
    out += [str(len(s.hw_status)), *s.hw_status]
    out += [str(len(s.groups)), str(s.next_pg)]
    for g in s.groups:
        out += [g.state.value, str(len(g.selector_status)), *g.selector_status]
        out += [str(len(g.paths)), str(g.path_status_count)]
        for p in g.paths:
            out += [p.dev, p.state.value, str(p.fail_count), *p.selector_args]
    return " ".join(out)


def parse_status(text: str) -> MultipathStatus:
    """Parse the ``multipath`` line of ``dmsetup status``."""
    line = _single_line("multipath status", text)
    w = _Words("multipath status", line)
    start, length = _head(w)
    nfeat = w.uint("number of status words", MAX_COUNT)
    if nfeat < 2:
        w.pos -= 1
        raise w.fail(f"{nfeat} status words: queue_io and pg_init_count expected")
    queue_io = w.uint("queue_io flag")
    if queue_io > 1:
        w.pos -= 1
        raise w.fail(f"queue_io must be 0 or 1, got {queue_io}")
    pg_init_count = w.uint("pg_init_count")
    extra = w.take(nfeat - 2, "status words")
    hw = w.counted("hardware handler status words")
    npg = w.uint("number of path groups", MAX_COUNT)
    next_pg = w.uint("next path group", MAX_COUNT)
    groups: list[GroupStatus] = []
    for n in range(1, npg + 1):
        state_word = w.next(f"group {n} state (A, E or D)")
        try:
            state = GroupState(state_word)
        except ValueError:
            w.pos -= 1
            raise w.fail(f"group {n} state must be A, E or D, got {state_word!r}") from None
        sel_status = w.counted(f"group {n} selector status words")
        npaths = w.uint(f"group {n} number of paths", MAX_COUNT)
        if npaths == 0:
            w.pos -= 1
            raise w.fail(f"group {n} has no paths (the kernel requires at least one)")
        nargs = w.uint(f"group {n} number of per-path selector values", MAX_COUNT)
        paths = []
        for k in range(1, npaths + 1):
            dev = w.next(f"group {n} path {k} device")
            pstate_word = w.next(f"state of path {dev} (A or F)")
            try:
                pstate = PathState(pstate_word)
            except ValueError:
                w.pos -= 1
                raise w.fail(f"path {dev} state must be A or F, got {pstate_word!r}") from None
            fails = w.uint(f"fail count of path {dev}")
            paths.append(PathStatus(dev, pstate, fails, w.take(nargs, f"values of path {dev}")))
        groups.append(GroupStatus(state, tuple(paths), sel_status))
    w.end()
    try:
        return MultipathStatus(
            length=length,
            groups=tuple(groups),
            next_pg=next_pg,
            queue_io=bool(queue_io),
            pg_init_count=pg_init_count,
            hw_status=hw,
            extra=extra,
            start=start,
        )
    except TableError as exc:  # pragma: no cover - the parser above builds valid parts
        raise ParseError("multipath status", str(exc), line) from exc


# --------------------------------------------------------------------------- dmsetup listings


@dataclass(frozen=True)
class DmDevice:
    """A line of ``dmsetup ls``: a map name and its device number."""

    name: str
    major: int
    minor: int

    @property
    def devnum(self) -> str:
        return f"{self.major}:{self.minor}"


_LS_LINE = re.compile(r"(?P<name>.+?)\s+\((?P<major>[0-9]+)(?:,\s*|:)(?P<minor>[0-9]+)\)")
_NO_DEVICES = "No devices found"


def parse_ls(text: str) -> list[DmDevice]:
    """Parse ``dmsetup ls [--target T]``: ``name<TAB>(major, minor)`` or ``(major:minor)``
    lines, or ``No devices found``."""
    out: list[DmDevice] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == _NO_DEVICES:
            continue
        m = _LS_LINE.fullmatch(line)
        if m is None:
            raise ParseError("dmsetup ls", "expected 'name (major, minor)'", raw)
        out.append(DmDevice(m["name"], int(m["major"]), int(m["minor"])))
    return out


#: the columns :func:`parse_info_columns` expects, in order (``dmsetup info -c -o``)
INFO_FIELDS: tuple[str, ...] = ("name", "uuid", "major", "minor", "open", "segments", "events")
INFO_SEPARATOR = ":"


@dataclass(frozen=True)
class DmInfo:
    """``dmsetup info -c -o name,uuid,major,minor,open,segments,events`` for one map.

    ``uuid`` is ``""`` for a map created without one. ``open_count`` above 0 means something
    holds the map open (a plain remove would fail).
    """

    name: str
    uuid: str
    major: int
    minor: int
    open_count: int
    segments: int
    events: int

    @property
    def devnum(self) -> str:
        return f"{self.major}:{self.minor}"


def parse_info_columns(text: str, *, name: str | None = None) -> list[DmInfo]:
    """Parse ``dmsetup info -c --noheadings --separator : -o <INFO_FIELDS>`` output.

    Names may contain ``:``; the five numeric columns are taken from the right, and when
    ``name`` (the map asked for) is given, it is taken off the left, so only a uuid with a
    ``:`` in a listing of several maps could be ambiguous (then the name is assumed to have
    none).
    """
    sep = INFO_SEPARATOR
    out: list[DmInfo] = []
    for raw in text.splitlines():
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        parts = line.rsplit(sep, 5)
        if len(parts) != 6:
            raise ParseError(
                "dmsetup info -c", f"{len(INFO_FIELDS)} ':'-separated fields expected", raw
            )
        head, *nums = parts
        if not all(_UINT.fullmatch(x) for x in nums):
            raise ParseError(
                "dmsetup info -c", "major, minor, open, segments, events must be numbers", raw
            )
        if name is not None and head.startswith(name + sep):
            map_name, uuid = name, head[len(name) + 1 :]
        elif sep in head:
            map_name, uuid = head.split(sep, 1)
        else:
            raise ParseError("dmsetup info -c", "no name/uuid separator", raw)
        if not map_name:
            raise ParseError("dmsetup info -c", "empty map name", raw)
        major, minor, open_count, segments, events = (int(x) for x in nums)
        out.append(DmInfo(map_name, uuid, major, minor, open_count, segments, events))
    return out
