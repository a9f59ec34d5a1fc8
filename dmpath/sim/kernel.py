"""A simulated SAN (LUNs seen through paths on I_T nexuses) and the device-mapper
operations the daemon's dm backend calls, kept in memory.

The engine runs unchanged on top: its executor, checker threads, batching and healing
are the real ones; only the kernel below them is this. The simulation answers the same
parsed objects the real readers return (``DmInfo``, ``MultipathTable``,
``MultipathStatus``), keeps path states the way dm-multipath does (a message fails or
reinstates a path, a reload keeps the states of paths still in the table), and sends the
dm path uevents the kernel sends after such a change, so the daemon's echo handling is
exercised too. A path's health is the SAN's: ``kill``/``revive`` a path or a whole
nexus, and the checkers see it at their next check.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dmpath.errors import DmpathError
from dmpath.kernel import udev
from dmpath.kernel.dmtable import (
    DmDevice,
    DmInfo,
    GroupState,
    GroupStatus,
    MultipathStatus,
    MultipathTable,
    PathState,
    PathStatus,
)
from dmpath.model import Check

SIM_MAJOR = 253  # dm maps' major in the simulation
#: sizes of the simulated LUNs, in 512-byte sectors (the value matters to no one)
LUN_SECTORS = 2 * 1024 * 1024


class NoSuchSimMap(DmpathError):
    exit_code = 4


@dataclass(frozen=True)
class SimPath:
    name: str
    devnum: str
    hctl: str
    wwid: str
    fabric: int

    @property
    def devnode(self) -> str:
        return "/dev/" + self.name


def _disk_name(n: int) -> str:
    """sda, ..., sdz, sdaa, ... as the kernel names SCSI disks."""
    letters = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("a") + r) + letters
    return "sd" + letters


class SimSan:
    """``luns`` LUNs, each seen through ``paths`` SCSI hosts (one nexus per host), host i
    on fabric i % 2; every path alive until killed."""

    def __init__(self, luns: int, paths: int) -> None:
        self.paths: list[SimPath] = []
        n = 0
        for host in range(paths):
            for lun in range(luns):
                # 65536 minors per simulated major: far past sd's 16 per disk, which is fine
                devnum = f"{8 + n // 65536}:{n % 65536}"
                self.paths.append(
                    SimPath(_disk_name(n), devnum, f"{host}:0:0:{lun}", f"36001405{lun:08x}",
                            host % 2)
                )
                n += 1
        self.by_name = {p.name: p for p in self.paths}
        self.alive: dict[str, bool] = {p.name: True for p in self.paths}
        self.checks = 0  # checks the daemon made (for the figures)
        self._lock = threading.Lock()

    def records(self) -> list[udev.UdevRecord]:
        """What udev would enumerate: one record per path."""
        return [
            udev.UdevRecord(
                sys_name=p.name,
                devnode=p.devnode,
                devnum=p.devnum,
                devtype="disk",
                subsystem="block",
                action=None,
                properties={"ID_SERIAL": p.wwid, "ID_WWN": "0x" + p.wwid[1:17], "ID_VENDOR": "SIM",
                            "ID_MODEL": "lun"},
                sys_path=f"/sys/devices/sim/host{p.hctl.split(':')[0]}/{p.hctl}/block/{p.name}",
                hctl=p.hctl,
            )
            for p in self.paths
        ]

    def set_fabric(self, fabric: int, alive: bool) -> list[SimPath]:
        hit = [p for p in self.paths if p.fabric == fabric]
        with self._lock:
            for p in hit:
                self.alive[p.name] = alive
        return hit

    def set_path(self, name: str, alive: bool) -> None:
        with self._lock:
            self.alive[name] = alive

    def check(self, name: str) -> tuple[Check, str]:
        with self._lock:
            self.checks += 1
            up = self.alive.get(name, False)
        return (Check.UP, "sim: ready") if up else (Check.DOWN, "sim: no answer")


@dataclass
class SimChecker:
    """A path checker answering from the simulated SAN (same interface as PathChecker)."""

    san: SimSan
    name: str

    def check(self) -> tuple[Check, str]:
        return self.san.check(self.name)

    def close(self) -> None:
        return None


@dataclass
class _SimMap:
    name: str
    uuid: str
    minor: int
    table: MultipathTable
    active: dict[str, bool] = field(default_factory=dict)  # devnum -> usable
    fails: dict[str, int] = field(default_factory=dict)
    queueing: bool = True
    next_pg: int = 1
    #: I/O held until a resume (a reload whose resume failed)
    suspended: bool = False
    #: how many hold the map open (a mount, LVM)
    open_count: int = 0


UeventSink = Callable[[udev.DmPathEvent], None]


class SimDmOps:
    """device-mapper in memory: the ``DmOps`` the daemon's dm backend calls."""

    def __init__(self, uevent: UeventSink | None = None) -> None:
        self.maps: dict[str, _SimMap] = {}
        self.uevent = uevent
        self.calls: dict[str, int] = {}
        #: this many resumes to come fail (a reload's included): the map stays suspended
        self.failing_resumes = 0
        #: this many removes to come take the map away and still report an error
        self.late_remove_errors = 0
        self._minor = 0
        self._lock = threading.Lock()

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    def _get(self, name: str) -> _SimMap:
        m = self.maps.get(name)
        if m is None:
            raise NoSuchSimMap(f"{name}: no such map")
        return m

    def list_maps(self) -> list[DmDevice]:
        with self._lock:
            self._count("list")
            return [DmDevice(m.name, SIM_MAJOR, m.minor) for m in self.maps.values()]

    def read_all(self) -> dict[str, tuple[DmInfo, MultipathTable, MultipathStatus]]:
        return {d.name: (self.info(d.name), self.table(d.name), self.status(d.name))
                for d in self.list_maps()}

    def info(self, name: str) -> DmInfo:
        with self._lock:
            self._count("info")
            m = self._get(name)
            return DmInfo(m.name, m.uuid, SIM_MAJOR, m.minor, m.open_count, 1, 0)

    def table(self, name: str) -> MultipathTable:
        with self._lock:
            self._count("table")
            m = self._get(name)
            # as the kernel does, the table shows queue_if_no_path as it is now, not as
            # it was loaded (fail_if_no_path / queue_if_no_path messages change it)
            features = dataclasses.replace(m.table.features, queue_if_no_path=m.queueing)
            return dataclasses.replace(m.table, features=features)

    def status(self, name: str) -> MultipathStatus:
        with self._lock:
            self._count("status")
            m = self._get(name)
            groups = []
            for n, g in enumerate(m.table.groups, 1):
                state = GroupState.ACTIVE if n == m.next_pg else GroupState.ENABLED
                paths = tuple(
                    PathStatus(
                        p.dev,
                        PathState.ACTIVE if m.active.get(p.dev, True) else PathState.FAILED,
                        m.fails.get(p.dev, 0),
                        ("0", "0") if g.selector.startswith("service-time") else ("0",),
                    )
                    for p in g.paths
                )
                groups.append(GroupStatus(state, paths))
            return MultipathStatus(m.table.length, tuple(groups), m.next_pg if groups else 0)

    def message(self, name: str, *words: str) -> str:
        with self._lock:
            self._count("message")
            m = self._get(name)
            verb, args = words[0], words[1:]
            event: udev.DmPathEvent | None = None
            if verb in ("fail_path", "reinstate_path"):
                dev = args[0]
                if dev not in m.active:
                    raise DmpathError(f"{name}: {dev} is not a path of the map")
                up = verb == "reinstate_path"
                if m.active[dev] != up:
                    m.active[dev] = up
                    if not up:
                        m.fails[dev] = m.fails.get(dev, 0) + 1
                    action = udev.DmAction.PATH_REINSTATED if up else udev.DmAction.PATH_FAILED
                    valid = sum(m.active.values())
                    event = udev.DmPathEvent(action, dev, valid, name, m.uuid, None)
            elif verb == "switch_group":
                m.next_pg = int(args[0])
            elif verb == "queue_if_no_path":
                m.queueing = True
            elif verb == "fail_if_no_path":
                m.queueing = False
            else:
                raise DmpathError(f"{name}: message {verb!r} refused (EINVAL)")
        if event is not None and self.uevent is not None:
            self.uevent(event)  # after the lock, as the kernel sends it after the change
        return ""

    def create(self, name: str, table: MultipathTable, uuid: str) -> None:
        with self._lock:
            self._count("create")
            if name in self.maps:
                raise DmpathError(f"{name}: map exists")
            self._minor += 1
            devs = [p.dev for g in table.groups for p in g.paths]
            self.maps[name] = _SimMap(
                name, uuid, self._minor, table, dict.fromkeys(devs, True),
                queueing=table.features.queue_if_no_path,
            )

    def reload(self, name: str, table: MultipathTable) -> None:
        with self._lock:
            self._count("reload")
            m = self._get(name)
            devs = [p.dev for g in table.groups for p in g.paths]
            m.active = {d: m.active.get(d, True) for d in devs}
            m.table = table
            m.queueing = table.features.queue_if_no_path
            m.next_pg = min(m.next_pg, len(table.groups)) or 1
            # load, suspend, resume: the table is in, and a failed resume leaves the map
            # suspended, as the kernel would
            m.suspended = True
            self._resume(m)

    def rename(self, name: str, new_name: str) -> None:
        with self._lock:
            self._count("rename")
            if new_name in self.maps:
                raise DmpathError(f"{new_name}: map exists")
            m = self._get(name)
            del self.maps[name]
            m.name = new_name
            self.maps[new_name] = m

    def suspended(self, name: str) -> bool:
        with self._lock:
            self._count("suspended")
            return self._get(name).suspended

    def resume(self, name: str) -> None:
        with self._lock:
            self._count("resume")
            self._resume(self._get(name))

    def _resume(self, m: _SimMap) -> None:
        if self.failing_resumes > 0:
            self.failing_resumes -= 1
            raise DmpathError(f"{m.name}: resume failed (EIO): the map is left SUSPENDED")
        m.suspended = False

    def remove(self, name: str, force: bool) -> None:
        with self._lock:
            self._count("remove")
            if self._get(name).open_count and not force:
                raise DmpathError(f"{name}: device or resource busy (EBUSY)")
            del self.maps[name]
            if self.late_remove_errors > 0:
                # the map went, but the remove's caller was told otherwise (dmsetup's
                # wait for udev ran out after the ioctl)
                self.late_remove_errors -= 1
                raise DmpathError(f"{name}: timed out waiting for udev")

    def fail_on_io(self, dev: str) -> str:
        """The kernel fails path ``dev`` on its own, as on an I/O error, and says so with
        a PATH_FAILED uevent (the daemon sent no message); returns the map's name."""
        with self._lock:
            m = next(m for m in self.maps.values() if dev in m.active)
            m.active[dev] = False
            m.fails[dev] = m.fails.get(dev, 0) + 1
            event = udev.DmPathEvent(
                udev.DmAction.PATH_FAILED, dev, sum(m.active.values()), m.name, m.uuid, None
            )
        if self.uevent is not None:
            self.uevent(event)
        return m.name

    def failed(self, devnums: set[str]) -> int:
        """How many of ``devnums`` are failed in some map's table now."""
        with self._lock:
            return sum(
                1 for m in self.maps.values() for d, up in m.active.items()
                if not up and d in devnums
            )

    def active_paths(self) -> int:
        with self._lock:
            return sum(sum(m.active.values()) for m in self.maps.values())
