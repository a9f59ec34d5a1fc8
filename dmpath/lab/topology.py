"""Guest side: scsi_debug topologies (LUNs x paths) and the path records tests use.

scsi_debug with ``vpd_use_hostno=0`` reports the same identity for a LUN on every host, so
each extra host is one more path to the same LUNs. All LUNs of all hosts share ONE RAM
store of ``dev_size_mb`` (``per_host_store=0``, the default), which is why the scale
topologies can keep it small. Paths are split into "fabrics" by host order (the i-th host
that has disks is on fabric i % fabrics) so a test or the tour can fail a whole fabric at
once, like losing one SAN switch.

At scale, udev is the slow part: under emulation it handles about 3 events per second per
device, and 64 LUNs x 4 hosts (256 disks) were measured to take 130-225 s to settle after
the ``modprobe``. ``setup`` therefore waits with a deadline that grows with the number of
disks, and checks that udev has a database entry for every disk, not only that the queue
drained once.

scsi_debug also reports each host's ALUA state as ``host_no % 3`` (0 active/optimized,
1 active/non-optimized, 2 standby). multipathd attaches ``scsi_dh_alua``, which fails every
I/O sent to a standby port while TEST UNIT READY still succeeds, so such paths flap for
multipathd and not for dmpathd. For side-by-side figures, ``setup(..., drop_standby=True)``
loads more hosts than needed with the SCSI midlayer's automatic scan turned off
(``scsi_mod.scan=manual``), then scans only the hosts to keep: the standby and surplus hosts
stay registered with scsi_debug but never get disks, so udev never sees them (at 256 x 4
that is 512 disks udev does not have to add and then remove).
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from dmpath.errors import CommandTimeout, DmpathError
from dmpath.kernel.dmtable import MultipathStatus, parse_status
from dmpath.runner import run

SCSI_DEBUG_SYSFS = "/sys/bus/pseudo/drivers/scsi_debug"
#: the midlayer's scan mode (sync, async, manual, none); writable at run time
SCSI_SCAN_MODE = "/sys/module/scsi_mod/parameters/scan"
UDEV_DB = "/run/udev/data"

#: settle deadline: a fixed part plus a part per disk. 256 disks needed up to 225 s (about
#: 0.9 s per disk); twice that per disk leaves room for a busy host and for udev slowing
#: down as its queue grows (1,000 disks and more were never timed).
SETTLE_BASE_S = 60.0
SETTLE_PER_DISK_S = 2.0
#: one ``udevadm settle`` call waits at most this long, so the disk count and the udev
#: database are looked at between calls (progress is visible, a stuck queue is not waited
#: for forever by one call)
SETTLE_STEP_S = 60

#: ALUA state scsi_debug reports for ``host_no % 3 == 2``: standby
STANDBY_REMAINDER = 2


@dataclass(frozen=True)
class Topology:
    name: str
    luns: int
    paths: int
    fabrics: int = 1
    dev_size_mb: int = 64

    @property
    def disks(self) -> int:
        return self.luns * self.paths

    def module_params(self, hosts: int | None = None) -> list[str]:
        """modprobe arguments; ``hosts`` loads that many hosts instead of ``paths``."""
        return [
            "num_tgts=1",
            f"add_host={self.paths if hosts is None else hosts}",
            f"max_luns={self.luns}",
            "vpd_use_hostno=0",  # same WWID through every host: that makes them paths
            f"dev_size_mb={self.dev_size_mb}",
        ]


#: the scale topologies: one shared 16 MB store is plenty (no test fills a LUN)
SCALE_DEV_SIZE_MB = 16

TOPOLOGIES: dict[str, Topology] = {
    t.name: t
    for t in (
        Topology("1x2", luns=1, paths=2),
        Topology("2x2", luns=2, paths=2),
        Topology("1x4", luns=1, paths=4, fabrics=2),
        Topology("2x4", luns=2, paths=4, fabrics=2),
        Topology("64x4", luns=64, paths=4, fabrics=2, dev_size_mb=SCALE_DEV_SIZE_MB),
        Topology("256x4", luns=256, paths=4, fabrics=2, dev_size_mb=SCALE_DEV_SIZE_MB),
        Topology("none", luns=0, paths=0),
    )
}
TOPOLOGIES["default"] = TOPOLOGIES["2x4"]

#: from this many disks on, an unnamed LUNSxPATHS topology gets the small store too
LARGE_TOPOLOGY_DISKS = 64


@dataclass(frozen=True)
class LabPath:
    name: str  # sda
    devnum: str  # 8:0
    host: int
    channel: int
    target: int
    lun: int
    wwid: str  # sysfs device/wwid, e.g. naa.33333330000007d0
    fabric: int

    @property
    def devnode(self) -> str:
        return "/dev/" + self.name

    @property
    def hctl(self) -> str:
        return f"{self.host}:{self.channel}:{self.target}:{self.lun}"


class TopologyError(DmpathError):
    pass


# ---------------------------------------------------------------------- pure parts


def parse_topology_name(name: str) -> tuple[int, int] | None:
    """(luns, paths) of ``LUNSxPATHS`` (e.g. ``64x4``); None if ``name`` is not one."""
    m = re.fullmatch(r"(\d+)x(\d+)", name)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2))


def get_topology(name: str) -> Topology:
    if name in TOPOLOGIES:
        return TOPOLOGIES[name]
    parsed = parse_topology_name(name)
    if parsed:
        luns, paths = parsed
        size = SCALE_DEV_SIZE_MB if luns * paths >= LARGE_TOPOLOGY_DISKS else 64
        return Topology(name, luns, paths, fabrics=2 if paths >= 4 else 1, dev_size_mb=size)
    known = ", ".join(sorted(TOPOLOGIES))
    raise TopologyError(f"unknown topology {name!r}: use LUNSxPATHS (e.g. 2x4) or one of {known}")


def settle_deadline(disks: int) -> float:
    """Seconds ``setup`` waits in all for ``disks`` disks to appear and settle in udev."""
    return SETTLE_BASE_S + SETTLE_PER_DISK_S * max(0, disks)


def settle_step(remaining: float) -> int:
    """Timeout of the next ``udevadm settle`` call: at most SETTLE_STEP_S, at least 1 s."""
    return max(1, min(SETTLE_STEP_S, math.ceil(remaining)))


def fabric_of(host: int, path_hosts: Sequence[int], fabrics: int) -> int:
    """The fabric of ``host``: its index among the hosts that have disks, mod ``fabrics``.

    Counting only hosts with disks keeps the fabrics even when ``setup(drop_standby=True)``
    left some hosts without disks (they stay registered with scsi_debug).
    """
    ordered = sorted(set(path_hosts))
    if host not in ordered:
        return 0
    return ordered.index(host) % max(1, fabrics)


def is_standby(host: int) -> bool:
    return host % 3 == STANDBY_REMAINDER


def hosts_for_active(paths: int) -> int:
    """Hosts to load so that at least ``paths`` of them are not standby, whatever number
    the first host gets: any k consecutive host numbers hold at most ceil(k / 3) standby
    ones, and k = ceil(3 * paths / 2) leaves at least ``paths``."""
    return math.ceil(3 * paths / 2) if paths > 0 else 0


def hosts_to_drop(hosts: Iterable[int], keep: int) -> list[int]:
    """Hosts whose disks go: every standby host, then the non-standby ones after the first
    ``keep`` (so exactly ``keep`` paths per LUN stay when enough hosts were loaded)."""
    ordered = sorted(set(hosts))
    active = [h for h in ordered if not is_standby(h)]
    surplus = active[keep:]
    return sorted([h for h in ordered if is_standby(h)] + surplus)


def udev_db_entry(devnum: str) -> str:
    """udev's database file name for block device ``devnum`` (``8:0`` -> ``b8:0``)."""
    return "b" + devnum


def without_udev_entry(devnums: Iterable[str], entries: Iterable[str]) -> list[str]:
    """The devnums that have no file among ``entries`` (names in /run/udev/data)."""
    have = set(entries)
    return [d for d in devnums if udev_db_entry(d) not in have]


def parse_status_all(text: str) -> dict[str, MultipathStatus]:
    """Every map of ONE ``dmsetup status --target multipath``: each line is ``NAME: <status>``.

    dmsetup prints ``No devices found`` when there is no map, and a bare ``NAME:`` for a
    map without a multipath table yet (being created): neither is a map here.
    """
    out: dict[str, MultipathStatus] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(": ")
        if not sep or not rest.strip():
            continue
        out[name] = parse_status(rest)
    return out


# ---------------------------------------------------------------------- kernel side


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


def scsi_debug_hosts() -> list[int]:
    hosts = []
    for d in glob.glob(os.path.join(SCSI_DEBUG_SYSFS, "adapter*", "host*")):
        m = re.search(r"host(\d+)$", d)
        if m:
            hosts.append(int(m.group(1)))
    return sorted(hosts)


def discover(fabrics: int = 1) -> list[LabPath]:
    """Every scsi_debug disk now present, in host, lun order."""
    pattern = os.path.join(SCSI_DEBUG_SYSFS, "adapter*", "host*", "target*", "*", "block", "*")
    found: list[tuple[str, int, int, int, int]] = []
    for blk in glob.glob(pattern):
        name = os.path.basename(blk)
        hctl = os.path.basename(os.path.dirname(os.path.dirname(blk)))
        h, c, t, lun = (int(x) for x in hctl.split(":"))
        found.append((name, h, c, t, lun))
    path_hosts = [f[1] for f in found]
    out: list[LabPath] = []
    for name, h, c, t, lun in found:
        devdir = os.path.join("/sys/block", name)
        out.append(
            LabPath(
                name=name,
                devnum=_read(os.path.join(devdir, "dev")),
                host=h,
                channel=c,
                target=t,
                lun=lun,
                wwid=_read(os.path.join(devdir, "device", "wwid")),
                fabric=fabric_of(h, path_hosts, fabrics),
            )
        )
    return sorted(out, key=lambda p: (p.host, p.lun))


#: how long unload() keeps trying while scsi_debug is still in use (seconds)
UNLOAD_WAIT = 120.0


def unload() -> None:
    """Remove scsi_debug; fails (CommandError) if a map or array still holds a path."""
    if not os.path.isdir("/sys/module/scsi_debug"):
        return
    # udev's workers (blkid, our own rule) hold disks open for a while after a burst of
    # hundreds of them: "in use" then means "not yet", so try again until a deadline
    deadline = time.monotonic() + UNLOAD_WAIT
    while True:
        with contextlib.suppress(CommandTimeout):
            run("udevadm", ["settle", "-t", "20"], check=False, timeout=40)
        res = run("modprobe", ["-r", "scsi_debug"], check=False, timeout=120)
        if res.ok or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    if not res.ok:
        run("modprobe", ["-r", "scsi_debug"], timeout=120)  # raises, with the reason


def wait_for_disks(
    want: int,
    fabrics: int,
    deadline_s: float,
    *,
    what: str,
    say: Callable[[str], None] | None = None,
) -> list[LabPath]:
    """Loop ``udevadm settle`` until exactly ``want`` scsi_debug disks exist, each with a
    udev database entry, and udev's queue is empty; TopologyError after ``deadline_s``.

    Disks and entries all there but a queue that never drains (something else keeps udev
    busy) is accepted at the deadline: the paths are usable.
    """
    started = time.monotonic()
    deadline = started + deadline_s
    paths: list[LabPath] = []
    missing: list[str] = []
    while True:
        step = settle_step(deadline - time.monotonic())
        try:
            settled = run("udevadm", ["settle", "-t", str(step)], check=False, timeout=step + 30).ok
        except CommandTimeout:
            # seen with hundreds of disks under emulation: settle outlives its own -t;
            # what counts is the disks and their udev entries, looked at below
            settled = False
        try:
            paths = discover(fabrics)
        except OSError:  # a disk vanished (or appeared) between glob and read: look again
            paths = []
        try:
            entries = os.listdir(UDEV_DB)
        except OSError:
            entries = []
        missing = without_udev_entry((p.devnum for p in paths), entries)
        ready = len(paths) == want and not missing
        now = time.monotonic()
        if ready and settled:
            return paths
        if say:
            say(
                f"{what}: {len(paths)} of {want} disks, {len(paths) - len(missing)} known to "
                f"udev, after {now - started:.0f} s"
            )
        if now > deadline:
            if ready:
                return paths
            raise TopologyError(
                f"{what}: {len(paths)} of {want} disks appeared, "
                f"{len(paths) - len(missing)} with a udev database entry, after "
                f"{now - started:.0f} s (deadline {deadline_s:.0f} s)"
            )


def setup(
    topology: Topology,
    *,
    drop_standby: bool = False,
    say: Callable[[str], None] | None = None,
) -> list[LabPath]:
    """(Re)load scsi_debug with ``topology`` and wait for udev to finish with the disks.

    ``drop_standby``: load ``hosts_for_active(paths)`` hosts without scanning them, then
    scan only the first ``paths`` hosts that are not standby (see the module docstring).
    """
    unload()
    if topology.paths == 0:
        return []
    if not drop_standby:
        run("modprobe", ["scsi_debug", *topology.module_params()], timeout=600)
    else:
        with manual_scan():
            hosts = hosts_for_active(topology.paths)
            run("modprobe", ["scsi_debug", *topology.module_params(hosts)], timeout=600)
        loaded = scsi_debug_hosts()
        drop = set(hosts_to_drop(loaded, topology.paths))
        for host in loaded:
            if host not in drop:
                scan_host(host)
    return wait_for_disks(
        topology.disks,
        topology.fabrics,
        settle_deadline(topology.disks),
        what=f"topology {topology.name}",
        say=say,
    )


@contextlib.contextmanager
def manual_scan() -> Iterator[None]:
    """Hosts added inside the block get no disks until ``scan_host``; the previous scan
    mode is put back on the way out, whatever happens."""
    with open(SCSI_SCAN_MODE) as fh:
        before = fh.read().strip()
    with open(SCSI_SCAN_MODE, "w") as fh:
        fh.write("manual")
    try:
        yield
    finally:
        with open(SCSI_SCAN_MODE, "w") as fh:
            fh.write(before)


def scan_host(host: int) -> None:
    """Scan every channel, target and LUN of SCSI host ``host`` (its disks appear)."""
    with open(f"/sys/class/scsi_host/host{host}/scan", "w") as fh:
        fh.write("- - -\n")


def delete(path: LabPath) -> None:
    """The cable to one path pulled for good: its SCSI device is deleted (``scan_host``
    of its host brings it back, often under a new name)."""
    with open(f"/sys/block/{path.name}/device/delete", "w") as fh:
        fh.write("1\n")
    run("udevadm", ["settle", "-t", "30"], check=False)


def add_host() -> None:
    """One more path to every LUN (a new SCSI host), as a cable plugged in."""
    with open(os.path.join(SCSI_DEBUG_SYSFS, "add_host"), "w") as fh:
        fh.write("1\n")
    run("udevadm", ["settle", "-t", "30"], check=False)


def remove_last_host() -> None:
    """Undo ``add_host()``: scsi_debug removes its most recently added host."""
    with open(os.path.join(SCSI_DEBUG_SYSFS, "add_host"), "w") as fh:
        fh.write("-1\n")
    run("udevadm", ["settle", "-t", "30"], check=False)


def set_state(path: LabPath | str, state: str) -> None:
    """``offline`` makes a path dead (open gives ENXIO, I/O fails); ``running`` revives it."""
    name = path.name if isinstance(path, LabPath) else path
    # the kernel wants the trailing newline here: without it the write fails with EINVAL
    with open(f"/sys/block/{name}/device/state", "w") as fh:
        fh.write(state + "\n")


def multipath_statuses(timeout: float = 120.0) -> dict[str, MultipathStatus]:
    """Every multipath map's status from ONE ``dmsetup status --target multipath`` run
    (one process per poll, whatever the number of maps: each run costs ~0.2 s under
    emulation)."""
    res = run("dmsetup", ["status", "--target", "multipath"], timeout=timeout)
    return parse_status_all(res.stdout)
