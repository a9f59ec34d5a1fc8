"""Is this disk a path dmpath manages, or will? The one claim decision.

The udev helper asks it for every disk event (to hide claimed disks from LVM, md and
systemd before anything opens them) and the daemon asks it before it builds a map, so
the two cannot disagree: a blacklisted LUN seen through two paths is neither hidden by
udev nor mapped by the daemon. The decision is pure (plain data in, a verdict out);
reading sysfs and the udev database stays with the callers. It imports the standard
library only (through ``dmpath.config`` and ``dmpath.policy.filter``): udev runs the
helper with nothing else guaranteed.

The rules, in order:

1. dm, md, loop and similar devices are never paths (``NEVER_PATH_DEVNODE``), nor is
   native NVMe multipath's head (the kernel's own multipath device).
2. A disk one of our maps holds is claimed: it is a path of ours today.
3. A disk something else holds (LVM or a partition map on it, an md array, another
   tool's map) is left alone: hiding it would take it from under its user.
4. The blacklist and its exceptions (``policy.filter.is_blacklisted``).
5. Per WWID (``uid_attribute``; an NVMe namespace's own ``wwid``): known WWIDs (the
   wwids file and ``[[multipaths]]``) are claimed; then ``find_multipaths`` decides
   (strict: known only; on: two admissible paths; greedy: any).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from dmpath.config import NEVER_PATH_DEVNODE, Config, FindMultipaths, configured_wwids
from dmpath.policy.filter import Candidate, is_blacklisted, protocol_of, should_manage


@dataclass(frozen=True)
class Disk:
    """What the decision needs to know about one block device, as read by the caller."""

    name: str  # kernel name: "sda", "nvme0n1"
    properties: Mapping[str, str] = field(default_factory=dict, hash=False)
    vendor: str = ""
    product: str = ""
    transport: str = ""  # a protocol name ("scsi:iscsi") or an NVMe controller's transport
    sysfs_wwid: str = ""  # /sys/block/NAME/device/wwid or /sys/block/NAME/wwid
    native_nvme_head: bool = False
    held_by_ours: bool = False  # a holder's dm uuid carries our prefix
    foreign_holders: tuple[str, ...] = ()  # holders that are not our maps
    #: the WWID when the caller already derived it with ``path_wwid`` (the daemon keeps
    #: it in its path records); "" derives it here
    wwid: str = ""


@dataclass(frozen=True)
class Verdict:
    claimed: bool
    why: str


def path_wwid(
    properties: Mapping[str, str], uid_attribute: Iterable[str], transport: str, sysfs_wwid: str
) -> str:
    """A path's WWID: the first non-empty ``uid_attribute`` property (multipath-tools'
    rule), except on NVMe, where the namespace's sysfs ``wwid`` comes first:
    ``ID_SERIAL`` names the subsystem's model and serial, not the namespace."""
    if transport.startswith("nvme") and sysfs_wwid:
        return sysfs_wwid
    return next((properties[a] for a in uid_attribute if properties.get(a)), "")


def _is_nvme(disk: Disk) -> bool:
    return disk.name.startswith("nvme") or disk.transport.startswith("nvme")


def wwid_of(disk: Disk, cfg: Config) -> str:
    if disk.wwid:
        return disk.wwid
    transport = "nvme" if _is_nvme(disk) else disk.transport
    return path_wwid(disk.properties, cfg.defaults.uid_attribute, transport, disk.sysfs_wwid)


def candidate(disk: Disk, cfg: Config) -> Candidate:
    return Candidate(
        devnode_name=disk.name,
        wwid=wwid_of(disk, cfg),
        vendor=disk.vendor,
        product=disk.product,
        properties=disk.properties,
        protocol=protocol_of(disk.properties, disk.transport),
    )


def admissible(disk: Disk, cfg: Config) -> Verdict:
    """Whether ``disk`` may be a path at all (rules 1, 3 and 4), before any WWID count."""
    if re.search(NEVER_PATH_DEVNODE, disk.name):
        return Verdict(False, f"{disk.name}: dm, md, loop and optical devices are never paths")
    if disk.native_nvme_head:
        return Verdict(False, f"{disk.name}: native NVMe multipath's own device")
    if disk.foreign_holders:
        held = ", ".join(disk.foreign_holders)
        return Verdict(False, f"{disk.name}: in use by {held}, which is not a map of ours")
    blocked, why = is_blacklisted(candidate(disk, cfg), cfg)
    if blocked:
        return Verdict(False, why)
    return Verdict(True, f"{disk.name}: admissible")


def known_wwids(file_wwids: Collection[str], cfg: Config) -> frozenset[str]:
    """The WWIDs ``find_multipaths`` counts as known: the wwids file and [[multipaths]]."""
    return frozenset(file_wwids) | configured_wwids(cfg)


def should_map(
    wwid: str, admissible_paths: int, known: Collection[str], cfg: Config
) -> bool:
    """Whether a WWID's admissible paths become a map (rule 5)."""
    return should_manage(wwid, admissible_paths, known, cfg.defaults.find_multipaths)


def claim(
    disk: Disk, siblings: Iterable[Disk], known: Collection[str], cfg: Config
) -> Verdict:
    """The whole decision for ``disk``; ``siblings`` are the other disks that may show
    the same WWID (the caller may pass every disk: only admissible ones with the same
    WWID count, as in the daemon)."""
    if disk.held_by_ours and not disk.native_nvme_head:
        return Verdict(True, f"{disk.name}: a path of one of our maps")
    ok = admissible(disk, cfg)
    if not ok.claimed:
        return ok
    wwid = wwid_of(disk, cfg)
    if not wwid:
        return Verdict(False, f"{disk.name}: no WWID (uid_attribute, sysfs wwid)")
    same = 1 + sum(
        1
        for s in siblings
        if s.name != disk.name and wwid_of(s, cfg) == wwid and admissible(s, cfg).claimed
    )
    if should_map(wwid, same, known, cfg):
        how = "known WWID" if wwid in known else f"{same} path(s), find_multipaths"
        mode = FindMultipaths(cfg.defaults.find_multipaths).value
        return Verdict(True, f"{disk.name}: WWID {wwid}: {how} {mode}")
    return Verdict(
        False,
        f"{disk.name}: WWID {wwid} seen through {same} path(s), not known, find_multipaths"
        f" {FindMultipaths(cfg.defaults.find_multipaths).value}",
    )

