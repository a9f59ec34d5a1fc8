"""Which block devices are paths, and which WWIDs become maps: pure decisions.

The daemon turns each udev record into a ``Candidate`` (plain data)
and asks ``is_blacklisted``; then, per WWID, ``should_manage``. Nothing here reads the
system, so every rule is tested exhaustively on made-up devices.

Blacklist semantics are multipath-tools' (multipath.conf(5)), category by category:
device node name, udev properties, vendor/product, protocol, WWID. Within a category an
exception wins over a blacklist entry; an exception in one category does not lift a
blacklist entry of another (a ``wwid`` exception does not admit a device whose node name
is blacklisted). One rule sits above all of them: ``NEVER_PATH_DEVNODE`` (dm, md, loop,
optical, ...) can never be lifted, because a map over such a device is always a mistake.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from dmpath.config import NEVER_PATH_DEVNODE, Config, DeviceMatch, FilterList, FindMultipaths
from dmpath.kernel.sysfs import detect_transport

#: the protocol names ``protocol_of`` returns (multipath-tools' spelling)
PROTOCOLS = (
    "scsi:fcp",
    "scsi:spi",
    "scsi:ssa",
    "scsi:sbp",
    "scsi:srp",
    "scsi:iscsi",
    "scsi:sas",
    "scsi:adt",
    "scsi:ata",
    "scsi:usb",
    "scsi:unspec",
    "ccw",
    "cciss",
    "nvme:pcie",
    "nvme:rdma",
    "nvme:fc",
    "nvme:tcp",
    "nvme:loop",
    "nvme:apple-nvme",
    "nvme:unspec",
    "undef",
)


@dataclass(frozen=True)
class Candidate:
    """What the filter needs to know about one block device, as plain data.

    ``vendor``/``product`` are the SCSI INQUIRY strings without padding ("" if none);
    ``properties`` are the udev properties; ``protocol`` as ``protocol_of`` gives it.
    """

    devnode_name: str  # kernel name: "sda", "nvme0n1"
    wwid: str
    vendor: str = ""
    product: str = ""
    properties: Mapping[str, str] = field(default_factory=dict, hash=False)
    protocol: str = "undef"


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _first_match(patterns: Iterable[str], value: str) -> str | None:
    for p in patterns:
        if _compiled(p).search(value):
            return p
    return None


def _device_matches(dm: DeviceMatch, vendor: str, product: str) -> bool:
    return (not dm.vendor or _compiled(dm.vendor).search(vendor) is not None) and (
        not dm.product or _compiled(dm.product).search(product) is not None
    )


def _first_device(devices: Iterable[DeviceMatch], vendor: str, product: str) -> int | None:
    for i, dm in enumerate(devices):
        if _device_matches(dm, vendor, product):
            return i
    return None


def _by_list(
    what: str, value: str, key: str, bl: FilterList, ex: FilterList
) -> tuple[bool, str] | None:
    """One regex category: None if the device passes it, else (True, reason)."""
    if _first_match(getattr(ex, key), value) is not None:
        return None
    hit = _first_match(getattr(bl, key), value)
    if hit is None:
        return None
    return True, f"{what} {value!r} matches blacklist.{key} {hit!r}"


def _by_property(props: Mapping[str, str], bl: FilterList, ex: FilterList) -> str | None:
    """Properties are matched by NAME, in two steps.

    A property whose name matches ``blacklist.property`` excludes the device unless that
    same name also matches an exception (the exception wins for the property it names,
    as in every category). Then ``blacklist_exceptions.property``, when not empty, is a
    requirement: some property name must match it. Judging name by name, not "any
    exception anywhere", keeps ``blacklist.property = ["^ID_ATA$"]`` working for SATA
    disks that also carry the ID_WWN the built-in requirement asks for (multipath-tools
    gets that from the order udev lists properties in).
    """
    names = sorted(props)
    for name in names:
        hit = _first_match(bl.property, name)
        if hit is not None and _first_match(ex.property, name) is None:
            return f"udev property {name} matches blacklist.property {hit!r}"
    if ex.property and not any(_first_match(ex.property, n) is not None for n in names):
        shown = ", ".join(repr(p) for p in ex.property)
        return f"no udev property matches blacklist_exceptions.property ({shown})"
    return None


def is_blacklisted(cand: Candidate, cfg: Config) -> tuple[bool, str]:
    """(True, why) if ``cand`` must not be a path; (False, "") if it may be.

    Categories are tried in a fixed order and the first that excludes the device gives
    the reason; an empty WWID or protocol skips its category (there is nothing to match).
    """
    bl, ex = cfg.blacklist, cfg.blacklist_exceptions
    name = cand.devnode_name
    if _compiled(NEVER_PATH_DEVNODE).search(name):
        return True, f"{name}: device node name is never a path (dm, md, loop, optical, ...)"
    res = _by_list("device node name", name, "devnode", bl, ex)
    if res is not None:
        return True, f"{name}: {res[1]}"
    why = _by_property(cand.properties, bl, ex)
    if why is not None:
        return True, f"{name}: {why}"
    vendor, product = cand.vendor.strip(), cand.product.strip()
    if _first_device(ex.device, vendor, product) is None:
        i = _first_device(bl.device, vendor, product)
        if i is not None:
            return (
                True,
                f"{name}: vendor/product {vendor!r}/{product!r} matches blacklist.device[{i}]",
            )
    for what, value, key in (("protocol", cand.protocol, "protocol"), ("WWID", cand.wwid, "wwid")):
        if value:
            res = _by_list(what, value, key, bl, ex)
            if res is not None:
                return True, f"{name}: {res[1]}"
    return False, ""


def should_manage(
    wwid: str, paths_with_wwid: int, known_wwids: Iterable[str], mode: FindMultipaths | str
) -> bool:
    """Whether the non-blacklisted paths of ``wwid`` become a map (find_multipaths).

    ``known_wwids``: the wwids file plus ``config.configured_wwids(cfg)`` (a WWID the
    administrator named in [[multipaths]] is asked for). strict: only known WWIDs; on:
    known ones, or any seen through at least two paths (one LUN, two routes: what
    multipathing is for); greedy: every WWID, even with one path.
    """
    if not wwid or paths_with_wwid < 1:
        return False
    mode = FindMultipaths(mode)
    if mode is FindMultipaths.GREEDY:
        return True
    known = wwid in known_wwids
    if mode is FindMultipaths.STRICT:
        return known
    return known or paths_with_wwid >= 2


_NVME_TRANSPORTS = {"pcie", "rdma", "fc", "tcp", "loop", "apple-nvme"}


def protocol_of(properties: Mapping[str, str], transport: str = "") -> str:
    """A path's protocol in multipath-tools' spelling (``scsi:fcp``, ``nvme:tcp``, ...).

    ``transport`` is what the sysfs reader already found (``PathFacts.transport``, a
    protocol name) or, for NVMe, the controller's ``transport`` attribute ("tcp"); without
    it the udev ``DEVPATH`` is read the way ``kernel.sysfs.detect_transport`` reads a sysfs
    path. DASDs are ``ccw`` and Smart Array disks ``cciss``, as in multipath-tools.
    """
    t = transport.strip()
    if t in PROTOCOLS:
        return t
    name = properties.get("DEVNAME", "").rsplit("/", 1)[-1]
    devpath = properties.get("DEVPATH", "")
    if name.startswith("dasd"):
        return "ccw"
    if name.startswith("cciss") or "/cciss" in devpath:
        return "cciss"
    if "/nvme" in devpath or name.startswith("nvme"):
        return f"nvme:{t}" if t in _NVME_TRANSPORTS else "nvme:unspec"
    if not devpath:
        return "undef"
    return str(detect_transport(devpath).value)
