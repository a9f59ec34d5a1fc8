"""Whole outputs of multipath-tools 0.9.4, from a dmpath Snapshot: the topology of
``multipath -ll``/``-l`` and ``multipathd show topology``, the ``show paths``/``show maps``
tables (also with a caller's ``format``, pretty or ``raw``), ``show status`` and
``show maps json``/``show map NAME json``.

Pure: the callers fetch the Snapshot (from dmpathd or the kernel) and print the text.
Only device-mapper maps are shown: multipath-tools knows nothing of md arrays, and a
script that reads its output should not meet one.
"""

from __future__ import annotations

from collections.abc import Sequence

from dmpath.cli.mptjson import format_mpt, snapshot_to_mpt
from dmpath.compat.fields import (
    MAP_HEADERS,
    PATH_HEADERS,
    PathView,
    expand,
    group_values,
    map_values,
    path_values,
    widths,
)
from dmpath.config.records import Backend
from dmpath.model import Check, Map, Path, Snapshot

#: libmultipath's formats (print.h)
PATH_INDENT = "%i %d %D %t %T %o"
MAP_PROPS = "size=%S features='%f' hwhandler='%h' wp=%r"
GROUP_INDENT = "policy='%s' prio=%p status=%t"
#: ``show paths``, ``show maps``, ``show maps status``, ``show maps stats``
PATHS_FORMAT = "%i %d %D %p %t %T %o %C"
MAPS_FORMAT = "%n %d %w"
MAPS_STATUS_FORMAT = "%n %F %Q %N %t %r"
MAPS_STATS_FORMAT = "%n %0 %1 %2 %3 %4"

#: checker states in ``show status``'s words and order (multipath-tools' state numbers)
_STATE_ORDER = ("wild", "unchecked", "down", "up", "shaky", "ghost", "pending", "timeout")
_STATE_WORDS: dict[Check, str] = {
    Check.UNSUPPORTED: "wild",
    Check.UNKNOWN: "unchecked",
    Check.DOWN: "down",
    Check.UP: "up",
    Check.GHOST: "ghost",
    Check.PENDING: "pending",
}


def dm_maps(snap: Snapshot) -> list[Map]:
    return [m for m in snap.maps if m.backend == Backend.DM]


def _name_order(p: Path) -> tuple[int, str]:
    # sda .. sdz before sdaa, as the kernel numbers them
    return (len(p.name), p.name)


def all_paths(snap: Snapshot, orphans: bool = True) -> list[PathView]:
    """Every path the tool would know: those of dm maps, and (for multipathd) the ones in
    no map, in kernel name order."""
    views = [PathView(p, m.name, map_wwid=m.wwid) for m in dm_maps(snap) for p in m.paths]
    if orphans:
        views += [PathView(p, None) for p in snap.unmapped_paths]
    return sorted(views, key=lambda v: _name_order(v.path))


def find_maps(snap: Snapshot, target: str) -> list[Map]:
    """The maps a ``multipath -l DEVICE`` argument names: a map name, a WWID, a dm device
    (``dm-3``) or one of its paths (``sdb``, ``8:16``). Device nodes and links
    (``/dev/mapper/NAME``, ``/dev/sdb``) are resolved by the caller; ``/dev/`` is
    dropped here."""
    name = target.removeprefix("/dev/")
    return [
        m
        for m in dm_maps(snap)
        if name in (m.name, m.wwid, m.sysfs) or any(name in (p.name, p.devnum) for p in m.paths)
    ]


# --------------------------------------------------------------------------- topology


def map_topology(
    m: Map, path_widths: dict[str, int], *, checked: bool = True, verbosity: int = 2
) -> str:
    """One map as ``multipath -ll`` prints it (``checked`` False: as ``-l``, which runs no
    checker: ``undef`` checker states and priority 0)."""
    if verbosity <= 0:
        return ""
    values = map_values(m)
    if verbosity == 1:
        return expand("%n", values)
    style = "%n" + (" (%w)" if m.name != m.wwid else "") + " %d %s"
    out = [expand(style, values), expand(MAP_PROPS, values)]
    by_name = {p.name: p for p in m.paths}
    for gi, g in enumerate(m.groups):
        last_group = gi == len(m.groups) - 1
        out.append(("`" if last_group else "|") + "-+- ")
        out.append(expand(GROUP_INDENT, group_values(g, checked)))
        members = [by_name[n] for n in g.paths if n in by_name]
        for pi, p in enumerate(members):
            last_path = pi == len(members) - 1
            out.append(f"{' ' if last_group else '|'} {'`' if last_path else '|'}- ")
            values = path_values(PathView(p, m.name, checked, m.wwid))
            out.append(expand(PATH_INDENT, values, path_widths))
    return "".join(out)


def topology(
    snap: Snapshot,
    maps: Sequence[Map] | None = None,
    *,
    checked: bool = True,
    verbosity: int = 2,
    daemon: bool = False,
) -> str:
    """The topology of ``maps`` (all dm maps by default). ``multipath -l``/``-ll`` make
    each map's path columns as wide as that map's widest value; multipathd's (``daemon``)
    are as wide as the widest over every path it knows, in no map too."""
    chosen = dm_maps(snap) if maps is None else maps
    shared = widths(path_values(v) for v in _checked(all_paths(snap), checked))
    out = []
    for m in chosen:
        own = widths(
            path_values(PathView(p, m.name, checked, m.wwid)) for p in m.paths
        )
        out.append(
            map_topology(m, shared if daemon else own, checked=checked, verbosity=verbosity)
        )
    return "".join(out)


def _checked(views: list[PathView], checked: bool) -> list[PathView]:
    return [PathView(v.path, v.map_name, checked, v.map_wwid) for v in views]


# --------------------------------------------------------------------------- tables


def path_table(snap: Snapshot, fmt: str = PATHS_FORMAT, *, pretty: bool = True) -> str:
    """``show paths`` (``format FMT``: the caller's columns; ``raw``: no header, no padding)."""
    rows = [path_values(v) for v in all_paths(snap)]
    return _table(rows, fmt, PATH_HEADERS, pretty)


def map_table(snap: Snapshot, fmt: str = MAPS_FORMAT, *, pretty: bool = True) -> str:
    """``show maps`` and its ``status``, ``stats`` and ``format`` forms."""
    rows = [map_values(m) for m in dm_maps(snap)]
    return _table(rows, fmt, MAP_HEADERS, pretty)


def _table(rows: list[dict[str, str]], fmt: str, headers: dict[str, str], pretty: bool) -> str:
    if not rows:
        return ""  # multipath-tools drops a header with nothing under it
    if not pretty:
        return "".join(expand(fmt, r) for r in rows)
    pad = widths(rows, headers)
    return expand(fmt, headers, pad) + "".join(expand(fmt, r, pad) for r in rows)


# --------------------------------------------------------------------------- status, json


def status(snap: Snapshot) -> str:
    """``show status``: how many paths are in each checker state, then the totals."""
    views = all_paths(snap)
    counts: dict[str, int] = {}
    for v in views:
        word = _STATE_WORDS[v.path.check]
        counts[word] = counts.get(word, 0) + 1
    lines = ["path checker states:\n"]
    lines += [f"{w:<20}{counts[w]}\n" for w in _STATE_ORDER if counts.get(w)]
    lines.append(f"\npaths: {len(views)}\nbusy: False\n")
    return "".join(lines)


def maps_json(snap: Snapshot) -> str:
    """``show maps json``."""
    dm_only = Snapshot(maps=dm_maps(snap))
    return format_mpt(snapshot_to_mpt(dm_only))


def map_json(m: Map) -> str:
    """``show map NAME json``: one map under ``"map"`` instead of a ``"maps"`` array."""
    lines = format_mpt(snapshot_to_mpt(Snapshot(maps=[m]))).split("\n")
    # ... "   \"maps\": [{" opens the array, "   }]" closes it; one map is an object
    opener = next(i for i, line in enumerate(lines) if line.startswith('   "maps": [{'))
    lines[opener] = '   "map":{'
    closer = max(i for i, line in enumerate(lines) if line == "   }]")
    lines[closer] = "   }"
    return "\n".join(lines)
