"""Guest side: scsi_debug topologies (LUNs x paths) and the path records tests use.

scsi_debug with ``vpd_use_hostno=0`` reports the same identity for a LUN on every host, and
all hosts share one RAM store, so each extra host is one more path to the same LUNs.
Paths are split into "fabrics" by host order (host i is on fabric i % fabrics) so a test or
the tour can fail a whole fabric at once, like losing one SAN switch.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from dmpath.errors import DmpathError
from dmpath.runner import run

SCSI_DEBUG_SYSFS = "/sys/bus/pseudo/drivers/scsi_debug"


@dataclass(frozen=True)
class Topology:
    name: str
    luns: int
    paths: int
    fabrics: int = 1
    dev_size_mb: int = 64

    def module_params(self) -> list[str]:
        return [
            "num_tgts=1",
            f"add_host={self.paths}",
            f"max_luns={self.luns}",
            "vpd_use_hostno=0",  # same WWID through every host: that makes them paths
            f"dev_size_mb={self.dev_size_mb}",
        ]


TOPOLOGIES: dict[str, Topology] = {
    t.name: t
    for t in (
        Topology("1x2", luns=1, paths=2),
        Topology("2x2", luns=2, paths=2),
        Topology("1x4", luns=1, paths=4, fabrics=2),
        Topology("2x4", luns=2, paths=4, fabrics=2),
        Topology("none", luns=0, paths=0),
    )
}
TOPOLOGIES["default"] = TOPOLOGIES["2x4"]


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


def get_topology(name: str) -> Topology:
    m = re.fullmatch(r"(\d+)x(\d+)", name)
    if name in TOPOLOGIES:
        return TOPOLOGIES[name]
    if m:
        luns, paths = int(m.group(1)), int(m.group(2))
        return Topology(name, luns, paths, fabrics=2 if paths >= 4 else 1)
    known = ", ".join(sorted(TOPOLOGIES))
    raise TopologyError(f"unknown topology {name!r}: use LUNSxPATHS (e.g. 2x4) or one of {known}")


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
    hosts = scsi_debug_hosts()
    out: list[LabPath] = []
    pattern = os.path.join(SCSI_DEBUG_SYSFS, "adapter*", "host*", "target*", "*", "block", "*")
    for blk in glob.glob(pattern):
        name = os.path.basename(blk)
        hctl = os.path.basename(os.path.dirname(os.path.dirname(blk)))
        h, c, t, lun = (int(x) for x in hctl.split(":"))
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
                fabric=hosts.index(h) % max(1, fabrics) if h in hosts else 0,
            )
        )
    return sorted(out, key=lambda p: (p.host, p.lun))


def unload() -> None:
    """Remove scsi_debug; fails (CommandError) if a map or array still holds a path."""
    if os.path.isdir("/sys/module/scsi_debug"):
        run("udevadm", ["settle", "-t", "20"], check=False)
        run("modprobe", ["-r", "scsi_debug"], timeout=60)


def setup(topology: Topology) -> list[LabPath]:
    """(Re)load scsi_debug with ``topology`` and wait for udev to finish with the disks."""
    unload()
    if topology.paths == 0:
        return []
    run("modprobe", ["scsi_debug", *topology.module_params()], timeout=120)
    run("udevadm", ["settle", "-t", "60"], check=False)
    paths = discover(topology.fabrics)
    want = topology.luns * topology.paths
    if len(paths) != want:
        raise TopologyError(f"topology {topology.name}: expected {want} paths, found {len(paths)}")
    return paths


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
