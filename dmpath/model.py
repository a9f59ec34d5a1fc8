"""The daemon's model: plain records of paths, groups and maps, with no I/O in them.

A ``Snapshot`` is what the daemon shows over its control socket and what ``mpathctl``
renders; ``snapshot_to_dict``/``snapshot_from_dict`` are the JSON form (schema version
``SNAPSHOT_VERSION``, documented in man/mpathctl.8). The model is rebuilt from the kernel
and checked against it, never trusted as a cache: the
kernel changes maps behind our back (a path fails, an administrator runs dmsetup).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Backend is a configuration choice the model also carries; it lives with the records so
# that loading the configuration (the udev helper does at every event) needs no model
from dmpath.config.records import Backend
from dmpath.kernel.dmtable import DmInfo, MultipathTable
from dmpath.kernel.nvme import NativeNamespace, NativePath, NativeSubsystem

SNAPSHOT_VERSION = 1


class Check(StrEnum):
    """Outcome of the last health check of a path (the checker's view)."""

    UP = "up"
    DOWN = "down"
    GHOST = "ghost"  # reachable but standby (ALUA standby/unavailable): usable as last resort
    PENDING = "pending"  # transitioning, or the check timed out: decide on the next one
    UNSUPPORTED = "unsupported"  # the device does not answer this checker
    UNKNOWN = "unknown"  # not checked yet


class KernelState(StrEnum):
    """What the kernel (dm table status or md) says about a path."""

    ACTIVE = "active"
    FAILED = "failed"
    ABSENT = "absent"  # known path not (yet) in the kernel map
    SPARE = "spare"  # md: in the array but in no slot, a standby path (md's own term)


def md_member_state(flags: tuple[str, ...]) -> KernelState:
    """An md member's flags as /proc/mdstat prints them (``F`` faulty, ``S`` spare)."""
    if "F" in flags:
        return KernelState.FAILED
    return KernelState.SPARE if "S" in flags else KernelState.ACTIVE


class GroupState(StrEnum):
    ACTIVE = "active"
    ENABLED = "enabled"
    DISABLED = "disabled"


@dataclass
class Path:
    name: str  # kernel name, e.g. "sdb"
    devnum: str  # "8:16"
    wwid: str
    hctl: str = ""
    vendor: str = ""
    model: str = ""
    rev: str = ""
    size_sectors: int = 0
    transport: str = ""
    dev_state: str = ""  # SCSI device state: running, offline, blocked, ...
    checker: str = "tur"
    check: Check = Check.UNKNOWN
    check_reason: str = ""
    kernel_state: KernelState = KernelState.ABSENT
    priority: int = 0
    alua_state: str = ""
    group: int = 0  # 1-based priority group number in its map, 0 if none
    fail_count: int = 0  # failures seen by the daemon (checker or kernel)
    last_change: float = 0.0  # epoch seconds of the last state change
    interval: float = 0.0  # current polling interval in seconds
    held: bool = False  # failed by the administrator: the checker does not reinstate it
    #: flapping or slow (dmpath.policy.marginal): kept failed while another path works
    marginal: bool = False
    marginal_reason: str = ""


@dataclass
class KernelGroup:
    number: int
    selector: str
    state: GroupState
    devnums: list[str]


@dataclass
class KernelMap:
    """What the kernel says about one of our maps."""

    name: str
    backend: Backend
    uuid: str
    sysfs: str
    devnode: str
    size_sectors: int
    open_count: int
    members: dict[str, KernelState]  # devnum -> state, in table/slot order
    groups: list[KernelGroup] = field(default_factory=list)
    next_group: int = 0
    queueing: bool = False
    features: str = ""
    hwhandler: str = ""
    table: MultipathTable | None = None
    info: DmInfo | None = None


@dataclass
class PathGroup:
    number: int  # 1-based, as dm counts them
    selector: str
    priority: int
    state: GroupState
    paths: list[str] = field(default_factory=list)  # path names, in table order


@dataclass
class Map:
    name: str
    wwid: str
    backend: Backend
    sysfs: str = ""  # dm-0 or md127
    devnode: str = ""  # /dev/mapper/NAME or /dev/md/NAME
    uuid: str = ""  # dm uuid or md array uuid
    size_sectors: int = 0
    vendor: str = ""
    model: str = ""
    rev: str = ""
    features: str = ""
    hwhandler: str = ""
    queueing: bool = False  # I/O queues when no path is left
    no_path_retry: str = ""  # "queue", "fail" or a number of checks
    failback: str = ""
    open_count: int = 0
    groups: list[PathGroup] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    @property
    def working(self) -> int:
        return sum(1 for p in self.paths if p.kernel_state == KernelState.ACTIVE)

    def brackets(self) -> str:
        """The md personality's status: ``[n/m] [UU_]`` (n slots, m working); a spare
        has no slot, so it is not in the brackets (as in /proc/mdstat)."""
        in_slots = [p for p in self.paths if p.kernel_state != KernelState.SPARE]
        slots = "".join("U" if p.kernel_state == KernelState.ACTIVE else "_" for p in in_slots)
        return f"[{len(in_slots)}/{self.working}] [{slots}]"


@dataclass
class Event:
    time: float
    kind: str  # path_failed, path_reinstated, path_added, path_removed, map_created, ...
    map: str = ""
    path: str = ""
    message: str = ""


@dataclass
class Snapshot:
    version: int = SNAPSHOT_VERSION
    source: str = "daemon"  # "daemon" or "kernel" (read directly, no daemon running)
    pid: int = 0
    started: float = 0.0
    config_file: str = ""
    maps: list[Map] = field(default_factory=list)
    unmapped_paths: list[Path] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: native NVMe multipath (the kernel's, not ours: shown read-only)
    nvme_native: list[NativeSubsystem] = field(default_factory=list)


def _as_lists(value: Any) -> Any:
    """Tuples (of frozen records) as the lists JSON has, all the way down."""
    if isinstance(value, tuple | list):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    out = dataclasses.asdict(snap)
    out["nvme_native"] = _as_lists(out["nvme_native"])
    for m, mo in zip(snap.maps, out["maps"], strict=True):
        mo["status"] = m.brackets()
        mo["working"] = m.working
    return out


def _path_from(d: dict[str, Any]) -> Path:
    d = dict(d)
    d["check"] = Check(d.get("check", "unknown"))
    d["kernel_state"] = KernelState(d.get("kernel_state", "absent"))
    names = {f.name for f in dataclasses.fields(Path)}
    return Path(**{k: v for k, v in d.items() if k in names})


def _native_from(d: dict[str, Any]) -> NativeSubsystem:
    namespaces = tuple(
        NativeNamespace(
            **{k: v for k, v in ns.items() if k != "paths"},
            paths=tuple(NativePath(**p) for p in ns.get("paths", [])),
        )
        for ns in d.get("namespaces", [])
    )
    return NativeSubsystem(**{k: v for k, v in d.items() if k != "namespaces"},
                           namespaces=namespaces)


def snapshot_from_dict(d: dict[str, Any]) -> Snapshot:
    maps = []
    for md in d.get("maps", []):
        groups = [
            PathGroup(
                number=g["number"],
                selector=g["selector"],
                priority=g["priority"],
                state=GroupState(g["state"]),
                paths=list(g.get("paths", [])),
            )
            for g in md.get("groups", [])
        ]
        names = {f.name for f in dataclasses.fields(Map)}
        base = {k: v for k, v in md.items() if k in names and k not in ("groups", "paths")}
        base["backend"] = Backend(base["backend"])
        maps.append(Map(**base, groups=groups, paths=[_path_from(p) for p in md.get("paths", [])]))
    return Snapshot(
        version=d.get("version", SNAPSHOT_VERSION),
        source=d.get("source", "daemon"),
        pid=d.get("pid", 0),
        started=d.get("started", 0.0),
        config_file=d.get("config_file", ""),
        maps=maps,
        unmapped_paths=[_path_from(p) for p in d.get("unmapped_paths", [])],
        events=[Event(**e) for e in d.get("events", [])],
        nvme_native=[_native_from(n) for n in d.get("nvme_native", [])],
    )
