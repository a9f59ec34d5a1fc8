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
import socket
import struct
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
    devnode = props.get("DEVNAME") or None
    if devnode is not None and not devnode.startswith("/"):
        devnode = "/dev/" + devnode  # the kernel's own uevents name the node relatively
    return UdevRecord(
        sys_name=devpath.rstrip("/").rsplit("/", 1)[-1],
        devnode=devnode,
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


#: udevd's message header: "libudev\0", magic (big-endian), header size, offset and
#: length of the properties, then filter hashes the kernel's socket filter reads
_UDEV_HEADER = struct.Struct("8sIIIIIIII")
_UDEV_PREFIX = b"libudev\0"
_UDEV_MAGIC = 0xFEEDCAFE


def parse_monitor_message(data: bytes) -> dict[str, str] | None:
    """One netlink message of a udev monitor → its properties (ACTION among them), or
    None for anything that is not a well-formed event.

    udevd's messages carry a binary header and then NUL-separated ``KEY=value`` pairs;
    the kernel's own (``source="kernel"``) start with ``action@devpath``. Reading the
    pairs in one split is what makes an event cheap: a library device object asks for
    each property through a foreign call.
    """
    if data.startswith(_UDEV_PREFIX):
        if len(data) < _UDEV_HEADER.size:
            return None
        _p, magic, _size, off, length, *_filters = _UDEV_HEADER.unpack_from(data)
        if socket.ntohl(magic) != _UDEV_MAGIC or off < _UDEV_HEADER.size:
            return None
        body = data[off : off + length]
    else:
        head, sep, body = data.partition(b"\0")
        if not sep or b"@" not in head:
            return None
    props: dict[str, str] = {}
    for pair in body.split(b"\0"):
        key, eq, value = pair.partition(b"=")
        if eq and key:
            props[key.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    return props if "DEVPATH" in props and "ACTION" in props else None


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
    """udev block events (and SCSI unit attentions) for an event loop: ``fileno()`` to
    wait on, ``receive()`` to read.

    pyudev (libudev) makes the socket: it binds the udev group and installs the kernel
    filter that lets only ``block`` and ``scsi_device`` events through. The messages are
    then read from that socket directly and parsed in one pass (``parse_monitor_message``),
    with the checks libudev makes: the sender is root (credentials) and the message is
    multicast. At a thousand paths a fabric event is thousands of messages, and a libudev device per
    message, read a property at a time, was most of the event loop's time. ``receive``
    never blocks: it returns None when nothing is queued.
    """

    #: largest message udevd sends (its properties buffer is 8 KiB); larger is dropped
    RECV_SIZE = 16384
    _CREDS = struct.Struct("iII")  # struct ucred: pid, uid, gid

    def __init__(self, monitor: Any, sock: socket.socket | None = None, trusted_uid: int = 0):
        self._monitor = monitor
        self._sock = sock
        self._trusted_uid = trusted_uid
        self.dropped = 0  # messages refused (untrusted, malformed, truncated)

    #: block devices, and SCSI devices for the midlayer's unit attention uevents (an ALUA
    #: state change is reported on the scsi_device, not on its disk)
    SUBSYSTEMS: tuple[tuple[str, str | None], ...] = (("block", None), ("scsi", "scsi_device"))

    @classmethod
    def from_netlink(
        cls,
        context: Any = None,
        subsystems: tuple[tuple[str, str | None], ...] = SUBSYSTEMS,
        source: str = "udev",
    ) -> Monitor:
        """Listen to udev's processed events (``source="kernel"`` for raw uevents) of
        ``subsystems`` (subsystem, devtype or None for all)."""
        ctx = context if context is not None else pyudev.Context()
        mon = pyudev.Monitor.from_netlink(ctx, source=source)
        for subsystem, devtype in subsystems:
            mon.filter_by(subsystem, devtype)
        return cls(mon)

    def start(self) -> None:
        """Begin receiving (libudev binds and filters; the socket is read as ours)."""
        self._monitor.start()
        if self._sock is None:
            # a second descriptor on the same socket: libudev keeps its own
            self._sock = socket.socket(fileno=os.dup(self._monitor.fileno()))
        self._sock.setblocking(False)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def fileno(self) -> int:
        return int(self._monitor.fileno())

    def _recv(self) -> bytes | None:
        """The next trusted message's bytes; None when none is queued."""
        assert self._sock is not None, "Monitor.start() first"
        while True:
            try:
                data, anc, flags, addr = self._sock.recvmsg(
                    self.RECV_SIZE, socket.CMSG_SPACE(self._CREDS.size)
                )
            except (BlockingIOError, InterruptedError):
                return None
            uid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    _pid, uid, _gid = self._CREDS.unpack_from(payload)
            unicast = isinstance(addr, tuple) and len(addr) == 2 and addr[1] == 0
            if uid != self._trusted_uid or unicast or flags & socket.MSG_TRUNC:
                self.dropped += 1  # as libudev: only root's multicast, whole
                continue
            return data

    def receive(self) -> UdevRecord | None:
        """The next queued event as a record, or None at once if there is none.

        Events of dm devices other than path events (DM_ACTION PATH_FAILED/REINSTATED)
        and writes seen by udev's watch are dropped unread: every map dmpathd creates or
        reloads sends udev's add and change events back, hundreds in a coldplug. A watch
        event is a ``change`` with no ``DM_COOKIE`` (every dm ioctl of ours, and of
        libdevmapper's tools, carries one): something wrote to the device and closed it,
        a partition table perhaps. So are scsi_device events that report no unit
        attention (their disks' own events say what they add or remove).
        """
        while (data := self._recv()) is not None:
            props = parse_monitor_message(data)
            if props is None:
                self.dropped += 1
                continue
            if props["DEVPATH"].rsplit("/", 1)[-1].startswith("dm-") and not (
                props.get("DM_ACTION") in (DmAction.PATH_FAILED, DmAction.PATH_REINSTATED)
                or (props.get("ACTION") == "change" and "DM_COOKIE" not in props)
            ):
                continue
            if props.get("SUBSYSTEM") == "scsi" and "SDEV_UA" not in props:
                continue
            return _record(props, props["ACTION"])
        return None

    def drain(self) -> list[UdevRecord]:
        """All events queued now (coalescing starts here: one wake-up, many events)."""
        out: list[UdevRecord] = []
        while (rec := self.receive()) is not None:
            out.append(rec)
        return out


# --------------------------------------------------------------------------- predicates


def alua_changed(rec: UdevRecord) -> bool:
    """The SCSI midlayer's uevent for a unit attention 2a/06 ("asymmetric access state
    changed"): a ``change`` of the scsi_device (not of its disk) with
    ``SDEV_UA=ASYMMETRIC_ACCESS_STATE_CHANGED``; ``rec.hctl`` is the device's address."""
    return (
        rec.subsystem == "scsi"
        and rec.action == "change"
        and rec.get("SDEV_UA") == "ASYMMETRIC_ACCESS_STATE_CHANGED"
    )


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
