"""udev at the boundary: pyudev devices become plain ``UdevRecord`` values at once.

A pyudev ``Device`` reads the udev database lazily and can change under us; a record is a
frozen snapshot taken when the event arrived, so the engine's decisions are functions of
data a test can write down (``record_from_export`` reads ``udevadm info --export`` text,
the form the fixtures were captured in). Predicates are plain functions over records.

Parsing exported text and the predicates need no libudev; pyudev only loads it when a
``Context`` is made (enumeration, monitoring).
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pyudev

from dmpath.errors import ParseError

_HCTL_IN_PATH = re.compile(r"/(\d+:\d+:\d+:\d+)(?:/|$)")
_EXPORT_LINE = re.compile(r"^([A-Za-z0-9_.]+)=(.*)$")
_ENC_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _frozen(props: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(props))


@dataclass(frozen=True)
class UdevRecord:
    """A block device as udev described it at one moment (one event or one query)."""

    sys_name: str  # "sda"
    devnode: str | None  # "/dev/sda"
    devnum: str | None  # "8:0"
    devtype: str | None  # "disk" / "partition"
    subsystem: str | None  # "block"
    action: str | None  # "add"/"change"/"remove"; None for a query, not an event
    properties: Mapping[str, str] = field(hash=False)  # read-only view
    sys_path: str  # "/sys/devices/.../block/sda"
    hctl: str | None  # SCSI address of the parent scsi_device, "6:0:0:0"

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.properties.get(key, default)


def hctl_from_devpath(devpath: str) -> str | None:
    """The H:C:T:L directory in a device path (the parent scsi_device), if any."""
    found = _HCTL_IN_PATH.findall(devpath)
    return found[-1] if found else None


def _record(props: Mapping[str, str], action: str | None, sys_root: str = "/sys") -> UdevRecord:
    devpath = props.get("DEVPATH", "")
    if not devpath:
        raise ParseError("udev properties", "no DEVPATH")
    major, minor = props.get("MAJOR"), props.get("MINOR")
    return UdevRecord(
        sys_name=devpath.rstrip("/").rsplit("/", 1)[-1],
        devnode=props.get("DEVNAME") or None,
        devnum=f"{major}:{minor}" if major is not None and minor is not None else None,
        devtype=props.get("DEVTYPE") or None,
        subsystem=props.get("SUBSYSTEM") or None,
        action=action if action is not None else (props.get("ACTION") or None),
        properties=_frozen(props),
        sys_path=sys_root.rstrip("/") + devpath,
        hctl=hctl_from_devpath(devpath),
    )


def parse_export(text: str) -> dict[str, str]:
    """``udevadm info --query=property --export`` → {KEY: value}.

    Values come single-quoted; udev's own ``\\xNN`` encoding inside ``*_ENC`` values is
    kept as is, exactly as a pyudev Device reports those properties (see
    ``decode_udev_enc``).
    """
    props: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _EXPORT_LINE.match(line)
        if m is None:
            raise ParseError("udev export", f"line {lineno} is not KEY=value", raw)
        key, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        props[key] = value
    return props


def record_from_export(text: str, action: str | None = None, sys_root: str = "/sys") -> UdevRecord:
    """A record from exported properties text (fixtures, ``udevadm info --export``)."""
    return _record(parse_export(text), action, sys_root)


def record_from_properties(
    props: Mapping[str, str], action: str | None = None, sys_root: str = "/sys"
) -> UdevRecord:
    """A record from a property mapping (e.g. a uevent's environment)."""
    return _record(props, action, sys_root)


def record_from_device(dev: Any, action: str | None = None) -> UdevRecord:
    """Snapshot a pyudev ``Device`` now; all later decisions use the snapshot."""
    props = {str(k): str(v) for k, v in dict(dev.properties).items()}
    number = dev.device_number
    sys_path = str(dev.sys_path)
    devpath = props.get("DEVPATH") or ("/" + sys_path.split("/", 2)[-1] if sys_path else "")
    return UdevRecord(
        sys_name=str(dev.sys_name),
        devnode=dev.device_node,
        devnum=f"{os.major(number)}:{os.minor(number)}" if number else None,
        devtype=dev.device_type,
        subsystem=dev.subsystem,
        action=action if action is not None else dev.action,
        properties=_frozen(props),
        sys_path=sys_path,
        hctl=hctl_from_devpath(devpath or sys_path),
    )


def decode_udev_enc(value: str) -> str:
    """Undo udev's ``\\xNN`` escapes in ``*_ENC`` values (``Linux\\x20`` → ``Linux ``)."""
    return _ENC_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def enumerate_block_disks(context: Any = None) -> list[UdevRecord]:
    """Every whole block disk udev knows, as records (sorted by name for stable output)."""
    ctx = context if context is not None else pyudev.Context()
    devices = ctx.list_devices(subsystem="block", DEVTYPE="disk")
    return sorted((record_from_device(d) for d in devices), key=lambda r: r.sys_name)


class Monitor:
    """udev block events for an event loop: ``fileno()`` to wait on, ``receive()`` to read.

    Wraps a pyudev ``Monitor`` (filtered to ``block`` by ``from_netlink``). ``receive``
    never blocks: it returns None when nothing is queued, so ``loop.add_reader(mon.fileno(),
    ...)`` can drain it in a loop.
    """

    def __init__(self, monitor: Any) -> None:
        self._monitor = monitor

    @classmethod
    def from_netlink(
        cls, context: Any = None, subsystem: str = "block", source: str = "udev"
    ) -> Monitor:
        """Listen to udev's processed events (``source="kernel"`` for raw uevents)."""
        ctx = context if context is not None else pyudev.Context()
        mon = pyudev.Monitor.from_netlink(ctx, source=source)
        mon.filter_by(subsystem)
        return cls(mon)

    def start(self) -> None:
        """Begin receiving (also makes the socket non-blocking)."""
        self._monitor.start()

    def fileno(self) -> int:
        return int(self._monitor.fileno())

    def receive(self) -> UdevRecord | None:
        """The next queued event as a record, or None at once if there is none.

        Events of dm devices other than path events (DM_ACTION PATH_FAILED/REINSTATED)
        are dropped unread: every map dmpathd creates or reloads sends udev's add and
        change events back, hundreds in a coldplug, and a full snapshot of each cost the
        event loop seconds under emulation.
        """
        while True:
            dev = self._monitor.poll(timeout=0)
            if dev is None:
                return None
            if str(dev.sys_name).startswith("dm-") and dev.properties.get(
                "DM_ACTION"
            ) not in (DmAction.PATH_FAILED, DmAction.PATH_REINSTATED):
                continue
            return record_from_device(dev, action=dev.action)

    def drain(self) -> list[UdevRecord]:
        """All events queued now (coalescing starts here: one wake-up, many events)."""
        out: list[UdevRecord] = []
        while (rec := self.receive()) is not None:
            out.append(rec)
        return out


# --------------------------------------------------------------------------- predicates


def is_disk(rec: UdevRecord) -> bool:
    return rec.subsystem == "block" and rec.devtype == "disk"


def is_dm(rec: UdevRecord) -> bool:
    return rec.sys_name.startswith("dm-")


def is_scsi(rec: UdevRecord) -> bool:
    """A SCSI block device: it sits under an H:C:T:L scsi_device (or udev says so)."""
    return rec.hctl is not None or rec.get("ID_SCSI") == "1" or rec.get("ID_BUS") == "scsi"


def dm_name(rec: UdevRecord) -> str | None:
    return rec.get("DM_NAME") or None


def dm_uuid(rec: UdevRecord) -> str | None:
    return rec.get("DM_UUID") or None


def wwid_from_udev(rec: UdevRecord, source: Iterable[str] = ("ID_SERIAL", "ID_WWN")) -> str | None:
    """The first non-empty of the ``source`` properties (multipath-tools' uid_attribute)."""
    for key in source:
        value = rec.get(key)
        if value:
            return value
    return None


class DmAction(enum.StrEnum):
    PATH_FAILED = "PATH_FAILED"
    PATH_REINSTATED = "PATH_REINSTATED"


@dataclass(frozen=True)
class DmPathEvent:
    """A dm-multipath path event (the kernel's dm uevent on a ``change`` of the map)."""

    action: DmAction
    path: str  # devnum of the path, "8:0"
    nr_valid_paths: int | None
    map_name: str | None
    map_uuid: str | None
    seqnum: int | None


def dm_path_event(rec: UdevRecord) -> DmPathEvent | None:
    """Parse ``DM_ACTION=PATH_FAILED|PATH_REINSTATED`` events; None for any other record."""
    action = rec.get("DM_ACTION")
    if action not in (DmAction.PATH_FAILED, DmAction.PATH_REINSTATED):
        return None
    path = rec.get("DM_PATH")
    if not path:
        return None

    def num(key: str) -> int | None:
        value = rec.get(key)
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    return DmPathEvent(
        action=DmAction(action),
        path=path,
        nr_valid_paths=num("DM_NR_VALID_PATHS"),
        map_name=dm_name(rec),
        map_uuid=dm_uuid(rec),
        seqnum=num("DM_SEQNUM"),
    )
