"""A Snapshot in the shape of multipath-tools' ``multipathd show maps json``.

Why: monitoring scripts written for multipath-tools read that JSON (often with ``grep`` on
its exact layout, e.g. ``"chk_st" : "faulty"``), and an administrator migrating to dmpath
should not have to rewrite them on the night of the switch. So ``mpathctl status --format
multipath-tools`` gives the same keys, the same nesting, the same value words and the same
text layout as multipath-tools 0.9 (fixture: ``multipath-tools/multipathd_show_maps_json.txt``).

Pure: no I/O. Counters dmpath does not keep (``map_loads``, ``switch_grp``, queueing times)
are reported as 0, facts it does not know (write protection, FC WWNs) as multipath-tools
reports unknown values (``undef``/``[undef]``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from dmpath.model import Check, GroupState, KernelState, Map, Path, PathGroup, Snapshot

#: the version pair multipath-tools 0.9 writes at the top of its JSON
MAJOR_VERSION = 0
MINOR_VERSION = 1

#: multipath-tools' indentation step
_INDENT = 3

UNDEF = "undef"
UNDEF_BRACKETED = "[undef]"

#: checker states in multipath-tools' words (``chk_st``)
CHECK_WORDS: dict[Check, str] = {
    Check.UP: "ready",
    Check.DOWN: "faulty",
    Check.GHOST: "ghost",
    Check.PENDING: "i/o pending",
    Check.UNSUPPORTED: UNDEF,
    Check.UNKNOWN: UNDEF,
}

#: the kernel's view of a path in multipath-tools' words (``dm_st``)
_KERNEL_WORDS: dict[KernelState, str] = {
    KernelState.ACTIVE: "active",
    KernelState.FAILED: "failed",
    KernelState.ABSENT: UNDEF,
    KernelState.SPARE: UNDEF,
}

_HCTL = re.compile(r"[0-9]+:[0-9]+:[0-9]+:([0-9]+)")


def lun_hex(hctl: str) -> str:
    """The 8-byte SCSI LUN of a path as multipath-tools prints it (``0x0001000000000000``).

    Linux numbers LUNs as an integer whose 16-bit levels are stored lowest first in the
    8-byte SAM LUN (each level big-endian), which is why LUN 1 reads ``0x0001...``.
    """
    m = _HCTL.fullmatch(hctl)
    if m is None:
        return UNDEF_BRACKETED
    lun = int(m.group(1))
    if lun >= 1 << 64:
        return UNDEF_BRACKETED
    raw = bytearray(8)
    for i in range(0, 8, 2):
        raw[i] = (lun >> 8) & 0xFF
        raw[i + 1] = lun & 0xFF
        lun >>= 16
    return "0x" + raw.hex()


def queueing_word(no_path_retry: str) -> str:
    """``no_path_retry`` in the words of multipath-tools' ``queueing`` column."""
    if no_path_retry == "queue":
        return "on"
    if no_path_retry == "fail":
        return "off"
    if no_path_retry.isdigit():
        return f"{int(no_path_retry)} chk"
    return "-"


def path_to_mpt(path: Path) -> dict[str, Any]:
    return {
        "dev": path.name,
        "dev_t": path.devnum,
        "dm_st": _KERNEL_WORDS[path.kernel_state],
        "dev_st": path.dev_state or UNDEF,
        "chk_st": CHECK_WORDS[path.check],
        "checker": path.checker,
        "pri": path.priority,
        "host_wwnn": UNDEF_BRACKETED,
        "target_wwnn": UNDEF_BRACKETED,
        "host_wwpn": UNDEF_BRACKETED,
        "target_wwpn": UNDEF_BRACKETED,
        "host_adapter": UNDEF_BRACKETED,
        "lun_hex": lun_hex(path.hctl),
        "marginal_st": "normal",
    }


def group_to_mpt(group: PathGroup, paths: dict[str, Path]) -> dict[str, Any]:
    return {
        "selector": group.selector,
        "pri": group.priority,
        "dm_st": str(group.state),
        "marginal_st": "normal",
        "group": group.number,
        "paths": [path_to_mpt(paths[n]) for n in group.paths if n in paths],
    }


def _groups(m: Map) -> list[PathGroup]:
    """A map's groups; an md array (no dm groups) is shown as one group of all its paths,
    the way its personality uses them: one at a time, in order."""
    if m.groups or not m.paths:
        return m.groups
    return [
        PathGroup(
            number=1,
            selector="md-multipath",
            priority=0,
            state=GroupState.ACTIVE,
            paths=[p.name for p in m.paths],
        )
    ]


def map_to_mpt(m: Map) -> dict[str, Any]:
    by_name = {p.name: p for p in m.paths}
    return {
        "name": m.name,
        "uuid": m.wwid,
        "sysfs": m.sysfs or UNDEF,
        "failback": m.failback or "-",
        "queueing": queueing_word(m.no_path_retry),
        # multipath-tools counts the paths its checker finds up (or ghost)
        "paths": sum(1 for p in m.paths if p.check in (Check.UP, Check.GHOST)),
        "write_prot": UNDEF,
        "dm_st": "active" if m.sysfs else UNDEF,
        "features": m.features or "0",
        "hwhandler": m.hwhandler or "0",
        "action": "",
        "path_faults": sum(p.fail_count for p in m.paths),
        "vend": m.vendor,
        "prod": m.model,
        "rev": m.rev,
        "switch_grp": 0,
        "map_loads": 0,
        "total_q_time": 0,
        "q_timeouts": 0,
        "path_groups": [group_to_mpt(g, by_name) for g in _groups(m)],
    }


def snapshot_to_mpt(snap: Snapshot) -> dict[str, Any]:
    """The whole ``show maps json`` document."""
    return {
        "major_version": MAJOR_VERSION,
        "minor_version": MINOR_VERSION,
        "maps": [map_to_mpt(m) for m in snap.maps],
    }


def _scalar(value: Any) -> str:
    # ensure_ascii: whatever a vendor string holds, the document stays 7-bit and one value
    # per line, so line-oriented scripts cannot be fooled by an embedded newline
    return json.dumps(value, ensure_ascii=True)


def _object_lines(obj: dict[str, Any], depth: int) -> list[str]:
    """Members of one object at ``depth`` in multipath-tools' layout: ``"key" : value``
    (but ``"key": value`` at the top level) and arrays of objects opened on the key's line
    as ``[{``, separated by ``},{`` and closed by ``}]``."""
    pad = " " * (_INDENT * depth)
    lines: list[str] = []
    items = list(obj.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        name = _scalar(key)
        if isinstance(value, list):
            if not value:
                lines.append(f"{pad}{name}: []{comma}")
                continue
            lines.append(f"{pad}{name}: [{{")
            for j, element in enumerate(value):
                if j:
                    lines.append(f"{pad}}},{{")
                lines.extend(_object_lines(element, depth + 1))
            lines.append(f"{pad}}}]{comma}")
        else:
            sep = ": " if depth == 1 else " : "
            lines.append(f"{pad}{name}{sep}{_scalar(value)}{comma}")
    return lines


def format_mpt(doc: dict[str, Any]) -> str:
    """Text of a ``show maps json`` document, laid out as multipath-tools writes it."""
    return "{\n" + "\n".join(_object_lines(doc, 1)) + "\n}\n"
