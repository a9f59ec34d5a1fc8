"""multipath-tools' ``%`` wildcards over dmpath's model, and the engine that expands them.

Why: scripts pass their own formats (os-brick: ``show paths raw format '%d %w %t %T'``) and
split the answer on spaces, so each wildcard must give the same word multipath-tools
0.9.4 gives, unknown values included (``undef``, ``[undef]``, ``#:#:#:#``, ``##,##``).

The engine follows libmultipath's print.c: text between wildcards is copied, a known
wildcard is replaced by its value (padded to the column's width when the output is
"pretty"), an unknown wildcard (``%%`` too) prints nothing, and the line ends with a
newline. Widths are the longest value of each wildcard over everything printed, and at
least the header's width when a header is printed.

Pure: no I/O. What dmpath does not know or keep prints as multipath-tools prints an
unknown value; the counters it does not keep (switch_grp, map_loads, ...) print 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dmpath.cli.mptjson import CHECK_WORDS, UNDEF, UNDEF_BRACKETED, queueing_word
from dmpath.model import Check, GroupState, KernelState, Map, Path, PathGroup

#: map wildcards and their column headers, in multipath-tools' order
MAP_HEADERS: dict[str, str] = {
    "n": "name",
    "w": "uuid",
    "d": "sysfs",
    "F": "failback",
    "Q": "queueing",
    "N": "paths",
    "r": "write_prot",
    "t": "dm-st",
    "S": "size",
    "f": "features",
    "x": "failures",
    "h": "hwhandler",
    "A": "action",
    "0": "path_faults",
    "1": "switch_grp",
    "2": "map_loads",
    "3": "total_q_time",
    "4": "q_timeouts",
    "s": "vend/prod/rev",
    "v": "vend",
    "p": "prod",
    "e": "rev",
    "G": "foreign",
    "g": "vpd page data",
}

#: path wildcards and their column headers
PATH_HEADERS: dict[str, str] = {
    "w": "uuid",
    "i": "hcil",
    "d": "dev",
    "D": "dev_t",
    "t": "dm_st",
    "o": "dev_st",
    "T": "chk_st",
    "s": "vend/prod/rev",
    "c": "checker",
    "C": "next_check",
    "p": "pri",
    "S": "size",
    "z": "serial",
    "M": "marginal_st",
    "m": "multipath",
    "N": "host WWNN",
    "n": "target WWNN",
    "R": "host WWPN",
    "r": "target WWPN",
    "a": "host adapter",
    "G": "foreign",
    "g": "vpd page data",
    "0": "failures",
    "P": "protocol",
    "I": "init_st",
}

#: path group wildcards
GROUP_HEADERS: dict[str, str] = {
    "s": "selector",
    "p": "pri",
    "t": "dm_st",
    "M": "marginal_st",
}

#: SCSI device states multipath-tools reports as ``offline`` in ``dev_st``
_OFFLINE_STATES = frozenset({"offline", "transport-offline"})

#: the progress bar of ``next_check``
PROGRESS_LEN = 10


def size_text(sectors: int) -> str:
    """A size in 512-byte sectors as multipath-tools prints it: ``32M``, ``1.5G``, ``500K``."""
    s = float(sectors >> 1)
    units = "KMGTP"
    u = 0
    while s >= 1024 and u < len(units) - 1:
        s /= 1024
        u += 1
    return f"{s:.{1 if s < 10 else 0}f}{units[u]}"


def progress(cur: int, total: int) -> str:
    """``XX........ 2/10``: how far a countdown has gone."""
    bar = ""
    if total > 0:
        done = PROGRESS_LEN * cur // total
        bar = "X" * done + "." * (PROGRESS_LEN - done)
    return f"{bar} {cur}/{total}"


@dataclass(frozen=True)
class PathView:
    """A path as one output shows it: in which map (None: in none, an "orphan"), and
    whether a checker's word is part of this output (``multipath -l`` runs none)."""

    path: Path
    map_name: str | None
    checked: bool = True
    #: the map's WWID: a path's own is the same, and the kernel's view may lack it
    map_wwid: str = ""


def path_values(pv: PathView) -> dict[str, str]:
    p = pv.path
    mapped = pv.map_name is not None
    if not mapped:
        chk, dev_st, next_check = UNDEF, "unknown", "orphan"
    else:
        offline = p.dev_state in _OFFLINE_STATES
        # without a checker's word (multipath -l; the kernel's view, no daemon), the look
        # at sysfs multipath-tools takes first still calls an offline device faulty
        unchecked = CHECK_WORDS[Check.DOWN] if offline else UNDEF
        chk = CHECK_WORDS[p.check] if pv.checked and p.check != Check.UNKNOWN else unchecked
        dev_st = "offline" if offline else "running"
        next_check = progress(0, max(int(p.interval), 0))
    dm_st = {KernelState.ACTIVE: "active", KernelState.FAILED: "failed"}.get(
        p.kernel_state, UNDEF
    )
    return {
        "w": p.wwid or pv.map_wwid,
        "i": p.hctl or "#:#:#:#",
        "d": p.name or "-",
        "D": p.devnum if p.name and p.devnum else "#:#",
        "t": dm_st,
        "o": dev_st,
        "T": chk,
        "s": f"{p.vendor},{p.model}",
        "c": p.checker,
        "C": next_check,
        "p": str(p.priority if pv.checked else -1),
        "S": size_text(p.size_sectors),
        "z": "",
        "M": "marginal" if p.marginal else "normal",
        "m": pv.map_name or "[orphan]",
        "N": UNDEF_BRACKETED,
        "n": UNDEF_BRACKETED,
        "R": UNDEF_BRACKETED,
        "r": UNDEF_BRACKETED,
        "a": UNDEF_BRACKETED,
        "G": "--",
        "g": UNDEF_BRACKETED,
        "0": str(p.fail_count),
        "P": protocol(p.transport),
        "I": "ok",
    }


def protocol(transport: str) -> str:
    """``protocol`` (``%P``): ``scsi:iscsi``, ``nvme``, ... (multipath-tools names NVMe
    paths by their bus only)."""
    if transport.startswith("nvme"):
        return "nvme"
    if transport.startswith("scsi:"):
        return transport
    return "undef" if not transport else "scsi:unspec"


def usable(p: Path) -> bool:
    """A path multipath-tools counts in ``paths`` (``%N``): its checker says up or ghost."""
    return p.check in (Check.UP, Check.GHOST)


def _first(m: Map, attr: str) -> str:
    """A LUN fact as multipath-tools takes it: from the first path that has it."""
    for p in m.paths:
        value: str = getattr(p, attr)
        if value:
            return value
    own: str = getattr(m, attr)
    return own or "##"


def map_values(m: Map) -> dict[str, str]:
    known = bool(m.sysfs)
    vend, prod = _first(m, "vendor"), _first(m, "model")
    return {
        "n": m.name or m.wwid,
        "w": m.wwid,
        "d": m.sysfs if known else UNDEF,
        "F": m.failback if m.failback in ("immediate", "followover") else "-",
        "Q": queueing_word(m.no_path_retry),
        "N": str(sum(1 for p in m.paths if usable(p))),
        "r": "rw" if known else UNDEF,
        "t": "active",
        "S": size_text(m.size_sectors),
        "f": m.features or "0",
        "x": "0",
        "h": m.hwhandler or "0",
        "A": "",
        "0": str(sum(p.fail_count for p in m.paths)),
        "1": "0",
        "2": "0",
        "3": "0",
        "4": "0",
        "s": f"{vend},{prod}" if vend != "##" and prod != "##" else "##,##",
        "v": vend,
        "p": prod,
        "e": _first(m, "rev"),
        "G": "--",
        "g": UNDEF_BRACKETED,
    }


def group_values(g: PathGroup, checked: bool = True) -> dict[str, str]:
    state = {
        GroupState.ACTIVE: "active",
        GroupState.ENABLED: "enabled",
        GroupState.DISABLED: "disabled",
    }.get(g.state, UNDEF)
    return {
        "s": g.selector,
        "p": str(g.priority if checked else 0),
        "t": state,
        "M": "normal",
    }


# --------------------------------------------------------------------------- the engine


def widths(
    rows: Iterable[Mapping[str, str]], headers: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Each wildcard's column width: its longest value, and its header's if given."""
    out = {k: len(v) for k, v in headers.items()} if headers else {}
    for row in rows:
        for k, v in row.items():
            out[k] = max(out.get(k, 0), len(v))
    return out


def expand(fmt: str, values: Mapping[str, str], pad: Mapping[str, int] | None = None) -> str:
    """One line of ``fmt`` with its wildcards replaced by ``values``, newline included.

    ``pad`` (column widths) pads each value with spaces on the right; without it the
    values are printed as they are ("raw"). Unknown wildcards print nothing.
    """
    out: list[str] = []
    i = 0
    while (j := fmt.find("%", i)) >= 0:
        out.append(fmt[i:j])
        key = fmt[j + 1 : j + 2]
        value = values.get(key) if key else None
        if value is not None:
            out.append(value.ljust(pad.get(key, 0)) if pad else value)
        i = j + 2
    out.append(fmt[i:])
    return "".join(out) + "\n"
