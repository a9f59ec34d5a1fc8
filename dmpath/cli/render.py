"""What ``mpathctl`` shows: a Snapshot (or events, or config) as rich renderables.

Pure: every function takes the data and ``now`` and returns renderables; the console, the
clock and the socket belong to :mod:`dmpath.cli.main`. That is what lets the tests render
healthy, degraded and dead maps at any width without a daemon.

Two rules shape this module:

* Device strings are data, never markup. Vendor, model, alias, WWID and
  message text come from devices and configuration files we do not control, so every one
  goes through :func:`sanitize` into a ``Text``: rich markup in them stays literal and
  control characters (an ESC, a BEL, a newline, a bidi override) are shown escaped instead
  of reaching the administrator's terminal.
* State must read without colour. A failed path is red *and* marked (✖, or ``[FAILED]``
  in ASCII mode, which is what pipes and ``NO_COLOR`` get), so the view works on a serial
  console, in a mail, and for the colour-blind.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from dmpath.cli import KERNEL_NOTICE
from dmpath.model import Check, Event, GroupState, KernelState, Map, Path, Snapshot
from dmpath.safetext import sanitize

#: a path failing this often within FLAP_WINDOW seconds is called flapping
FLAP_THRESHOLD = 3
FLAP_WINDOW = 3600.0

#: SCSI device states in which the path cannot carry I/O
_DEAD_DEV_STATES = frozenset({"offline", "transport-offline", "deleted", "cancel", "del"})
#: SCSI device states in which I/O waits (not failed, not healthy either)
_WAIT_DEV_STATES = frozenset({"blocked", "quiesce", "created", "created-blocked"})

# --------------------------------------------------------------------------- strings

def safe(value: object, style: str = "") -> Text:
    """Untrusted data as a Text: never parsed as markup, control characters escaped."""
    return Text(sanitize(value), style=style)


def human_size(sectors: int) -> str:
    """A size in 512-byte sectors the way multipath-tools prints it (``32M``, ``1.5T``)."""
    size = float(max(sectors, 0)) * 512
    for unit in ("", "K", "M", "G", "T", "P"):
        if size < 1024 or unit == "P":
            if unit == "":
                return f"{int(size)}"
            if size >= 10 or size == int(size):
                return f"{round(size):d}{unit}"
            return f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def age(then: float, now: float) -> str:
    """How long ago, in the one unit that matters at a glance (``3m ago``)."""
    if then <= 0:
        return "never"
    delta = now - then
    if delta < 0:
        return "just now"  # a daemon clock slightly ahead of ours
    if delta < 1:
        return "just now"
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= seconds:
            return f"{int(delta // seconds)}{unit} ago"
    return f"{int(delta)}s ago"


def timestamp(t: float) -> str:
    """Local wall-clock time of an event, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


# --------------------------------------------------------------------------- health


class Health(enum.IntEnum):
    """How bad something is; the order matters (a map is as bad as its worst part)."""

    OK = 0
    INFO = 1
    WARN = 2
    BAD = 3


_STYLE = {
    Health.OK: "green",
    Health.INFO: "",
    Health.WARN: "bold yellow",
    Health.BAD: "bold red",
}


@dataclass(frozen=True)
class Glyphs:
    """The marks that carry state without colour."""

    ok: str
    info: str
    warn: str
    bad: str

    def mark(self, health: Health) -> str:
        return (self.ok, self.info, self.warn, self.bad)[health]


UNICODE_GLYPHS = Glyphs(ok="✔", info="•", warn="⚠", bad="✖")
ASCII_GLYPHS = Glyphs(ok="[OK]", info="[--]", warn="[WARN]", bad="[FAILED]")


@dataclass(frozen=True)
class RenderOptions:
    """How to draw: ``ascii`` picks bracketed words over symbols (pipes, NO_COLOR, no
    UTF-8), so that a grep for ``FAILED`` finds the failed paths."""

    ascii: bool = False

    @property
    def glyphs(self) -> Glyphs:
        return ASCII_GLYPHS if self.ascii else UNICODE_GLYPHS


def path_health(p: Path) -> Health:
    """Bad if the path cannot carry I/O now or the checker says it is dead; a warning if
    it is in the kernel's map but not usable yet, or known but not in the map at all."""
    if p.kernel_state == KernelState.FAILED or p.check == Check.DOWN:
        return Health.BAD
    if p.dev_state in _DEAD_DEV_STATES:
        return Health.BAD
    if p.kernel_state == KernelState.ABSENT:
        return Health.WARN
    if p.check == Check.PENDING or p.dev_state in _WAIT_DEV_STATES or p.marginal:
        return Health.WARN  # a marginal path in use is the map's last resort
    if p.check == Check.GHOST or p.kernel_state == KernelState.SPARE:
        return Health.INFO  # standby by design (ALUA, md spare): fine, not carrying I/O
    return Health.OK


def map_health(m: Map) -> Health:
    """Bad when no path can carry I/O (by the kernel's account or the checker's: a map
    whose paths all fail their checks is about to go down); a warning when any path is
    not healthy or the daemon raised an alert."""
    healths = [path_health(p) for p in m.paths]
    if not m.paths or m.working == 0 or all(h == Health.BAD for h in healths):
        return Health.BAD
    if max(healths) >= Health.WARN or m.alerts:
        return Health.WARN
    return Health.OK


def map_summary(m: Map) -> str:
    """One phrase for the map's state, read first at 3 a.m."""
    total, working = len(m.paths), m.working
    if total == 0:
        return "no paths"
    bad = sum(1 for p in m.paths if path_health(p) == Health.BAD)
    if working == 0:
        tail = "I/O is queued" if m.queueing else "I/O fails"
        return f"all {total} paths down, {tail}"
    if bad == total:
        return f"all {total} paths failing, the kernel still uses {working}"
    if working < total or bad:
        down = max(total - working, bad)
        return f"degraded: {down} of {total} paths down"
    if map_health(m) == Health.WARN:
        return "needs attention"
    return "ok"


def _check_word(p: Path) -> str:
    if p.check == Check.UNKNOWN:
        return "-"
    return str(p.check)


# --------------------------------------------------------------------------- layout helpers


class Responsive:
    """The wide renderable if it fits the width rendered at, else the narrow one.

    Tables of ten columns turn into soup at 60 columns; one line per record does not.
    Deciding at render time keeps this module free of any idea of the terminal's size.
    """

    def __init__(self, wide: RenderableType, narrow: RenderableType) -> None:
        self.wide = wide
        self.narrow = narrow

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        needed = Measurement.get(console, options.update(width=10_000), self.wide).maximum
        yield self.wide if needed <= options.max_width else self.narrow


def _columns(rows: Sequence[Sequence[str]]) -> list[int]:
    """Cell width of each column over all rows, for aligned text lines."""
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row):
            w = cell_len(cell)
            if i >= len(widths):
                widths.append(w)
            elif w > widths[i]:
                widths[i] = w
    return widths


def _pad(cell: str, width: int) -> str:
    return cell + " " * max(width - cell_len(cell), 0)


class Fields:
    """Fields on one line, two spaces apart; when the width runs out the line breaks
    *between* fields, never inside one, and goes on indented under the first.

    Why not plain wrapping: ``prio 50`` split as ``prio`` / ``50``, or an HCTL cut in two,
    is how a narrow terminal makes a status unreadable. Fields are (safe string, style).
    """

    def __init__(self, fields: Sequence[tuple[str, str]], indent: int = 4) -> None:
        self.fields = [(s, style) for s, style in fields if s]
        self.indent = indent

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        lens = [cell_len(s.rstrip()) for s, _ in self.fields] or [0]
        total = sum(cell_len(s) for s, _ in self.fields) + 2 * (len(self.fields) - 1)
        return Measurement(min(max(lens) + self.indent, total), max(total, 0))

    def lines(self, width: int) -> list[Text]:
        lines: list[Text] = []
        cur = Text()
        used = 0
        fresh = True  # nothing but indentation on the current line yet
        for s, style in self.fields:
            need = cell_len(s.rstrip())
            if not fresh and used + 2 + need > width:
                cur.rstrip()
                lines.append(cur)
                cur = Text(" " * self.indent)
                used, fresh = self.indent, True
            if not fresh:
                cur.append("  ")
                used += 2
            cur.append(s, style=style)
            used += cell_len(s)
            fresh = False
        cur.rstrip()
        lines.append(cur)
        return lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text("\n").join(self.lines(options.max_width))


# --------------------------------------------------------------------------- status tree


def _path_cells(p: Path, now: float) -> list[str]:
    """A path as display cells: device, HCTL, devnum, kernel, checker, device state,
    priority, fail count, age of the last change."""
    check = _check_word(p)
    if p.check_reason and p.check in (Check.DOWN, Check.PENDING, Check.UNSUPPORTED):
        check = f"{check} ({p.check_reason})"
    return [
        sanitize(p.name),
        sanitize(p.hctl or "-"),
        sanitize(p.devnum or "-"),
        # a marginal path is failed on purpose: say so where its state is read, and why
        f"{p.kernel_state} marginal ({sanitize(p.marginal_reason)})"
        if p.marginal
        else str(p.kernel_state),
        sanitize(check),
        sanitize(p.dev_state or "-"),
        f"prio {p.priority}",
        f"fails {p.fail_count}",
        age(p.last_change, now),
    ]


def _cell_health(p: Path, index: int, health: Health) -> Health:
    """The colour of one state cell: only the cell that is wrong stands out (a failed
    path's ``running`` device state is not the problem), and the age of the last change
    of a failed path, which says since when."""
    if index == 3:
        if p.marginal:
            return Health.WARN
        return {
            KernelState.FAILED: Health.BAD,
            KernelState.ABSENT: Health.WARN,
            KernelState.SPARE: Health.INFO,
        }.get(p.kernel_state, Health.OK)
    if index == 4:
        return {Check.DOWN: Health.BAD, Check.PENDING: Health.WARN}.get(p.check, Health.OK)
    if index == 5:
        if p.dev_state in _DEAD_DEV_STATES:
            return Health.BAD
        return Health.WARN if p.dev_state in _WAIT_DEV_STATES else Health.OK
    if index == 8:
        return health
    return Health.OK


def _path_fields(
    p: Path, cells: Sequence[str], widths: Sequence[int], opts: RenderOptions
) -> list[tuple[str, str]]:
    health = path_health(p)
    mark_w = max(cell_len(opts.glyphs.mark(h)) for h in Health)
    fields = [(_pad(opts.glyphs.mark(health), mark_w), _STYLE[health])]
    for i, cell in enumerate(cells):
        cell_health = _cell_health(p, i, health)
        if i == 0:
            cell_style = "bold"
        elif cell_health >= Health.WARN:
            cell_style = _STYLE[cell_health]
        else:
            cell_style = ""
        fields.append((_pad(cell, widths[i]) if i < len(cells) - 1 else cell, cell_style))
    return fields


def _path_line(p: Path, cells: Sequence[str], widths: Sequence[int], opts: RenderOptions) -> Fields:
    return Fields(_path_fields(p, cells, widths, opts))


def _group_label(number: int, selector: str, priority: int, state: GroupState) -> Fields:
    style = {GroupState.ACTIVE: "bold", GroupState.ENABLED: "", GroupState.DISABLED: "dim"}[state]
    return Fields(
        [
            (f"group {number}", "bold"),
            (sanitize(selector or "-"), ""),
            (f"prio {priority}", ""),
            (str(state), style),
        ]
    )


def _map_header(m: Map, opts: RenderOptions) -> Fields:
    health = map_health(m)
    style = _STYLE[health]
    return Fields(
        [
            (opts.glyphs.mark(health) + " " + sanitize(m.name), style),
            (m.brackets(), style),
            (map_summary(m), style),
        ],
        indent=2,
    )


def _map_details(m: Map) -> list[Fields]:
    ident = [("wwid " + sanitize(m.wwid or "-"), "")]
    dev = " ".join(sanitize(x) for x in (m.sysfs, m.devnode) if x)
    ident.append((dev, ""))
    ident.append((human_size(m.size_sectors), ""))
    vm = ",".join(sanitize(x) for x in (m.vendor.strip(), m.model.strip()) if x)
    ident.append((vm, ""))
    settings = [
        (f"backend {m.backend}", ""),
        ("features '" + sanitize(m.features or "0") + "'", ""),
        ("hwhandler '" + sanitize(m.hwhandler or "0") + "'", ""),
        (
            "queueing " + ("on" if m.queueing else "off"),
            _STYLE[Health.WARN] if m.queueing and m.working == 0 else "",
        ),
    ]
    if m.no_path_retry:
        settings.append(("no_path_retry " + sanitize(m.no_path_retry), ""))
    if m.open_count:
        settings.append((f"open {m.open_count}", ""))
    return [Fields(ident, indent=2), Fields(settings, indent=2)]


def render_map(m: Map, now: float, opts: RenderOptions | None = None) -> Tree:
    """One map as a tree: header and details, then its groups and their paths."""
    opts = opts or RenderOptions()
    label: list[RenderableType] = [_map_header(m, opts), *_map_details(m)]
    for alert in m.alerts:
        label.append(Fields([(opts.glyphs.warn + " " + sanitize(alert), _STYLE[Health.WARN])]))
    tree = Tree(Group(*label), guide_style="dim")
    by_name = {p.name: p for p in m.paths}
    cells = {p.name: _path_cells(p, now) for p in m.paths}
    widths = _columns(list(cells.values()))
    placed: set[str] = set()
    for g in m.groups:
        node = tree.add(_group_label(g.number, g.selector, g.priority, g.state))
        for name in g.paths:
            p = by_name.get(name)
            if p is None:
                node.add(safe(f"{name}: listed in the group but unknown", _STYLE[Health.WARN]))
                continue
            node.add(_path_line(p, cells[name], widths, opts))
            placed.add(name)
    loose = [p for p in m.paths if p.name not in placed]
    if loose:
        node = tree if not m.groups else tree.add(Text("not in any group", style="dim"))
        for p in loose:
            node.add(_path_line(p, cells[p.name], widths, opts))
    return tree


def overview(snap: Snapshot, opts: RenderOptions | None = None) -> Text:
    """The one line to read first: how many maps are ok, degraded, down."""
    opts = opts or RenderOptions()
    health = [map_health(m) for m in snap.maps]
    down = health.count(Health.BAD)
    degraded = health.count(Health.WARN)
    ok = len(snap.maps) - down - degraded
    paths = [p for m in snap.maps for p in m.paths]
    failed = sum(1 for p in paths if path_health(p) == Health.BAD)
    worst = max(health, default=Health.OK)
    out = Text()
    out.append(opts.glyphs.mark(worst), style=_STYLE[worst])
    out.append(f" {len(snap.maps)} map{'s' if len(snap.maps) != 1 else ''}: ")
    out.append(f"{ok} ok", style="green" if ok else "")
    out.append(", ")
    out.append(f"{degraded} degraded", style=_STYLE[Health.WARN] if degraded else "")
    out.append(", ")
    out.append(f"{down} down", style=_STYLE[Health.BAD] if down else "")
    out.append(f"; {len(paths)} path{'s' if len(paths) != 1 else ''}, ")
    out.append(f"{failed} failed", style=_STYLE[Health.BAD] if failed else "")
    return out


def render_status(
    snap: Snapshot, now: float, opts: RenderOptions | None = None, maps: Sequence[str] = ()
) -> Group:
    """The ``status`` view: notice, overview line, every map (or the named ones) as a tree,
    then paths the daemon knows but has in no map."""
    opts = opts or RenderOptions()
    shown = [m for m in snap.maps if not maps or m.name in maps]
    parts: list[RenderableType] = []
    if snap.source == "kernel":
        parts.append(Text(f"{opts.glyphs.warn} {KERNEL_NOTICE}", style=_STYLE[Health.WARN]))
    parts.append(overview(Snapshot(maps=shown), opts))
    if not snap.maps:
        parts.append(Text("no multipath maps"))
    for m in shown:
        parts.append(Text(""))
        parts.append(render_map(m, now, opts))
    if snap.unmapped_paths and not maps:
        parts.append(Text(""))
        tree = Tree(Text("paths in no map", style="bold"), guide_style="dim")
        cells = {p.name: _path_cells(p, now) for p in snap.unmapped_paths}
        widths = _columns(list(cells.values()))
        for p in snap.unmapped_paths:
            tree.add(_path_line(p, cells[p.name], widths, opts))
        parts.append(tree)
    if snap.nvme_native and not maps:
        from dmpath.cli.nativeview import render_native

        parts.extend([Text(""), render_native(snap.nvme_native, opts)])
    return Group(*parts)


# --------------------------------------------------------------------------- tables


def _table(*headers: str) -> Table:
    table = Table(
        box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 2, 0, 0)
    )
    for h in headers:
        table.add_column(h, no_wrap=True)
    return table


def _records(records: Iterable[Fields]) -> Group:
    return Group(*records)


def render_maps(snap: Snapshot, opts: RenderOptions | None = None) -> RenderableType:
    """``show maps``: one row per map with its status at a glance."""
    opts = opts or RenderOptions()
    if not snap.maps:
        return Text("no multipath maps")
    table = _table("", "name", "status", "sysfs", "size", "vendor,model", "backend", "wwid")
    narrow: list[Fields] = []
    for m in snap.maps:
        h = map_health(m)
        vm = ",".join(sanitize(x) for x in (m.vendor.strip(), m.model.strip()) if x) or "-"
        cells = [
            (opts.glyphs.mark(h), _STYLE[h]),
            (sanitize(m.name), "bold"),
            (m.brackets(), _STYLE[h]),
            (sanitize(m.sysfs or "-"), ""),
            (human_size(m.size_sectors), ""),
            (vm, ""),
            (str(m.backend), ""),
            (sanitize(m.wwid or "-"), ""),
        ]
        table.add_row(*(Text(c, style=st) for c, st in cells))
        narrow.append(Fields([*cells[:3], (map_summary(m), _STYLE[h]), *cells[3:]]))
    return Responsive(table, _records(narrow))


def _all_paths(snap: Snapshot) -> list[tuple[str, Path]]:
    out = [(m.name, p) for m in snap.maps for p in m.paths]
    out.extend(("", p) for p in snap.unmapped_paths)
    return out


def render_paths(snap: Snapshot, now: float, opts: RenderOptions | None = None) -> RenderableType:
    """``show paths``: every path, failed ones marked, with the age of its last change."""
    opts = opts or RenderOptions()
    rows = _all_paths(snap)
    if not rows:
        return Text("no paths")
    table = _table(
        "", "dev", "hctl", "dev_t", "dm_st", "chk_st", "dev_st", "pri", "fails", "changed",
        "map", "group",
    )  # fmt: skip
    narrow: list[Fields] = []
    cells = [_path_cells(p, now) for _, p in rows]
    widths = _columns(cells)
    for (map_name, p), c in zip(rows, cells, strict=True):
        fields = _path_fields(p, c, widths, opts)
        # the same cells as the tree, priority and fail count as bare numbers
        shown = [*fields[:7], (str(p.priority), ""), (str(p.fail_count), ""), fields[9]]
        table.add_row(
            *(Text(f.rstrip(), style=st) for f, st in shown),
            safe(map_name or "-"),
            Text(str(p.group) if p.group else "-"),
        )
        narrow.append(Fields([*fields, ("map " + sanitize(map_name or "-"), "")]))
    return Responsive(table, _records(narrow))


def _event_health(kind: str) -> Health:
    if "fail" in kind or "error" in kind or "lost" in kind:
        return Health.BAD
    if "reinstat" in kind or "created" in kind or "added" in kind or "restored" in kind:
        return Health.OK
    if "refus" in kind or "warn" in kind or "flap" in kind:
        return Health.WARN
    return Health.INFO


def recent_failures(
    events: Iterable[Event], now: float, window: float = FLAP_WINDOW
) -> dict[str, int]:
    """Failures per path within the last ``window`` seconds, most first."""
    counts = Counter(
        e.path for e in events if e.kind == "path_failed" and e.path and now - e.time <= window
    )
    return dict(counts.most_common())


def flapping(
    events: Iterable[Event],
    now: float,
    threshold: int = FLAP_THRESHOLD,
    window: float = FLAP_WINDOW,
) -> dict[str, int]:
    """Paths that failed at least ``threshold`` times within ``window``: these keep coming
    back and dropping again, which a per-event list hides and an admin must see."""
    return {p: n for p, n in recent_failures(events, now, window).items() if n >= threshold}


def render_events(
    events: Sequence[Event], now: float, opts: RenderOptions | None = None
) -> RenderableType:
    """``show events``: failures per path in the last hour (flapping ones marked), then
    the history, oldest first, with local time and age."""
    opts = opts or RenderOptions()
    parts: list[RenderableType] = []
    fails = recent_failures(events, now)
    flap = flapping(events, now)
    if fails:
        line = Text()
        mark = Health.WARN if flap else Health.INFO
        line.append(opts.glyphs.mark(mark), style=_STYLE[mark])
        line.append(" failures in the last hour: ")
        for i, (path, n) in enumerate(fails.items()):
            if i:
                line.append(", ")
            style = _STYLE[Health.WARN] if path in flap else ""
            line.append(f"{sanitize(path)} {n}", style=style)
            if path in flap:
                line.append(" (flapping)", style=style)
        parts.append(line)
    if not events:
        parts.append(Text("no events"))
        return Group(*parts)
    table = _table("", "time", "age", "event", "map", "path", "message")
    narrow: list[Fields] = []
    for e in sorted(events, key=lambda e: e.time):
        h = _event_health(e.kind)
        cells = [
            (opts.glyphs.mark(h), _STYLE[h]),
            (timestamp(e.time), ""),
            (age(e.time, now), ""),
            (sanitize(e.kind), _STYLE[h]),
            (sanitize(e.map or "-"), ""),
            (sanitize(e.path or "-"), _STYLE[Health.WARN] if e.path in flap else ""),
            (sanitize(e.message), ""),
        ]
        table.add_row(*(Text(c, style=st) for c, st in cells))
        narrow.append(Fields(cells))
    parts.append(Responsive(table, _records(narrow)))
    return Group(*parts)


# --------------------------------------------------------------------------- config


def render_config(config: Any) -> RenderableType:
    """``show config``: the daemon's effective configuration, whatever its shape: text is
    shown line by line, a mapping as a tree of ``key: value``."""
    if isinstance(config, str):
        return Text("\n").join(safe(line) for line in config.splitlines())
    if isinstance(config, Mapping | list):
        tree = Tree(Text("configuration", style="bold"), guide_style="dim")
        _config_into(tree, config)
        return tree
    return safe(config)


def _config_into(node: Tree, value: Mapping[str, Any] | list[Any]) -> None:
    items: Iterable[tuple[object, Any]] = (
        value.items() if isinstance(value, Mapping) else enumerate(value)
    )
    for key, item in items:
        label = safe(key, "bold")
        if isinstance(item, Mapping | list) and item:
            _config_into(node.add(label), item)
        else:
            label.append(": ")
            label.append_text(safe(_config_scalar(item)))
            node.add(label)


def _config_scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping | list):
        return "(none)"
    return str(value)
