"""From udev records to path candidates: which block devices are paths, and of which LUN.

The I/O here is reading sysfs facts and (as a fallback) asking the device for its VPD 0x83
WWID; the decisions (blacklist, find_multipaths) are the pure functions of
``dmpath.policy.claim``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from dmpath.errors import DmpathError
from dmpath.kernel import nvme, sgio, sysfs
from dmpath.kernel.udev import UdevRecord, is_disk, is_dm
from dmpath.policy import claim


@dataclass(frozen=True)
class PathInfo:
    name: str
    devnum: str
    devnode: str
    wwid: str
    vendor: str
    model: str
    rev: str
    hctl: str
    size_sectors: int
    transport: str
    dev_state: str
    properties: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def holders(name: str) -> list[str]:
    """Kernel devices stacked on ``name`` (dm-3, md127): someone else may be using it."""
    try:
        return sorted(os.listdir(f"/sys/class/block/{name}/holders"))
    except OSError:
        return []


def wwid_by_sgio(devnode: str) -> str:
    """VPD 0x83 WWID in udev's ID_SERIAL spelling ('' if the device names none)."""
    try:
        w = sgio.path_wwid(devnode, timeout_s=5.0)
    except (DmpathError, OSError):
        return ""
    return w.serial if w else ""


def path_info(rec: UdevRecord, uid_attributes: Sequence[str]) -> PathInfo | None:
    """A candidate path from a udev record, or None if it cannot be a path at all.

    Only whole disks with a device node; dm and md devices are never paths, nor is
    native NVMe multipath's head (the kernel's own multipath device: dmpathd leaves it
    alone). An NVMe namespace's WWID is its sysfs ``wwid`` (what udev copies into
    ``ID_WWN``): ``ID_SERIAL`` names the subsystem's model and serial, not the namespace.
    """
    if not is_disk(rec) or is_dm(rec) or rec.sys_name.startswith("md") or not rec.devnode:
        return None
    if not rec.devnum:
        return None
    try:
        facts = sysfs.read_path_facts(rec.sys_name)
    except (DmpathError, OSError):
        return None
    if nvme.is_native_head(facts.sys_path):
        return None
    # the claim decision's rule, so the udev helper keys the disk on the same WWID
    wwid = claim.path_wwid(
        rec.properties, uid_attributes, str(facts.transport.value), facts.wwid_sysfs or ""
    )
    if not wwid and rec.hctl:
        wwid = wwid_by_sgio(rec.devnode)
    return PathInfo(
        name=rec.sys_name,
        devnum=rec.devnum,
        devnode=rec.devnode,
        wwid=wwid,
        vendor=facts.vendor or rec.get("ID_VENDOR") or "",
        model=facts.model or rec.get("ID_MODEL") or "",
        rev=facts.rev or rec.get("ID_REVISION") or "",
        hctl=facts.hctl or rec.hctl or "",
        size_sectors=facts.size_sectors,
        transport=str(facts.transport.value),
        dev_state=facts.scsi_state or "",
        properties=dict(rec.properties),
    )
