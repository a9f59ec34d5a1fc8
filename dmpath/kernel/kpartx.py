"""Partition maps on a multipath map, made by Debian's kpartx: ``NAME-partN``.

kpartx reads the map's partition table and makes one linear dm map per partition, named
``NAME`` + ``-part`` + N and with the dm uuid ``partN-`` + the map's uuid: the forms
kpartx's own udev rules (56-dm-parts.rules) and udev's ``/dev/disk/by-id`` links know.
dmpathd runs it rather than build the tables itself because kpartx already reads every
partition table kind the kernel does (dos, gpt, extended partitions, ...), and its udev
rules give the partition maps the same links the paths' partitions would have had.

Reading a partition table is I/O on the map: callers run this off the event loop, and
only for a map with a working path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from dmpath.runner import run

#: between the map's name and the partition number (multipath-tools' choice too)
DELIMITER = "-part"
#: seconds a kpartx run may take (a table read through a slow path included)
TIMEOUT = 60.0


def update(name: str) -> None:
    """Make, resize and drop partition maps so they match the table on ``name``."""
    run("kpartx", ["-u", "-p", DELIMITER, f"/dev/mapper/{name}"], timeout=TIMEOUT)


def delete(name: str) -> None:
    """Remove every partition map of ``name`` (kpartx refuses one that is open)."""
    run("kpartx", ["-d", "-p", DELIMITER, f"/dev/mapper/{name}"], timeout=TIMEOUT)


_PART_UUID = re.compile(r"^part([0-9]+)-(.+)$")


def partition_maps(map_uuid: str, maps: Iterable[tuple[str, str]]) -> list[str]:
    """Names of the partition maps of the map with ``map_uuid``, from (name, uuid) pairs."""
    out = []
    for name, uuid in maps:
        m = _PART_UUID.match(uuid)
        if m and m.group(2) == map_uuid:
            out.append(name)
    return sorted(out)


#: the boot signature that ends a DOS partition table (GPT's protective one included)
BOOT_SIGNATURE = b"\x55\xaa"


def has_table(first_sector: bytes) -> bool:
    """Whether the first sector may hold a partition table (DOS or GPT's protective MBR).

    A cheap test before a kpartx process: a filesystem or a PV written to the whole LUN
    has no signature there, so most maps are never scanned. A false positive (a FAT boot
    sector) costs one kpartx run that finds nothing.
    """
    return len(first_sector) >= 512 and first_sector[510:512] == BOOT_SIGNATURE


def dm_holders(kname: str, sys_root: str = "/sys") -> list[tuple[str, str]]:
    """(name, uuid) of each dm device stacked on dm device ``kname`` (``dm-3``)."""
    base = os.path.join(sys_root, "block", kname, "holders")
    out = []
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    for h in names:
        try:
            with open(os.path.join(sys_root, "block", h, "dm", "name")) as fh:
                name = fh.read().strip()
            with open(os.path.join(sys_root, "block", h, "dm", "uuid")) as fh:
                uuid = fh.read().strip()
        except OSError:
            continue
        out.append((name, uuid))
    return out


def first_sector(name: str) -> bytes:
    with open(f"/dev/mapper/{name}", "rb") as fh:
        return fh.read(512)
