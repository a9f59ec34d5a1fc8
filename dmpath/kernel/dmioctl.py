"""device-mapper ioctls without a process: reads and target messages in microseconds.

Every ``dmsetup`` call is one process (about 0.2 s under the lab's emulation, and more
in the caller: starting a process from Python costs threads and a PATH search); when a
fabric fails at 1,024 paths the daemon sends hundreds of ``fail_path`` messages and reads
hundreds of statuses, and a coldplug creates hundreds of maps, so those go straight to
``/dev/mapper/control`` here: version, list, device status, table status, target messages,
and create / table load / suspend / resume. Nothing here waits for udev: a created or
resumed map is announced with the same udev flags ``dmsetup --noudevsync`` sends (see
:data:`RESUME_EVENT_NR`), and whoever needs ``/dev/mapper/NAME`` waits for it. Remove
stays on ``dmsetup`` (:mod:`dmpath.kernel.dmsetup`), for its ``--retry`` and ``--force``.

The layout is interface version 4 of <linux/dm-ioctl.h>:

* ``struct dm_ioctl`` (312 bytes) heads every buffer; ``data_size`` is the size of the whole
  buffer on input and of the useful part on output, ``data_start`` the offset of the
  payload from the start of the header. The kernel answers in the same buffer.
* ``LIST_DEVICES`` answers with ``struct dm_name_list`` records chained by ``next``
  (offset from the record itself; a first record with ``dev == 0`` means no devices).
* ``TABLE_STATUS`` answers with ``struct dm_target_spec`` records each followed by a
  NUL-terminated parameter string; on output ``next`` is measured from ``data_start``.
* ``TARGET_MSG`` takes ``struct dm_target_msg`` and, with ``DM_DATA_OUT`` set, answers
  with a NUL-terminated string at ``data_start``.
* ``TABLE_LOAD`` takes ``struct dm_target_spec`` records as well, but on input ``next`` is
  the offset of the next record from the record itself; each record is padded to 8 bytes.
* ``DEV_CREATE`` names the new device by name *and* uuid (every other request by one of
  them); ``DEV_SUSPEND`` suspends with ``DM_SUSPEND`` set and resumes without it, and the
  resume's ``event_nr`` travels to udev as ``DM_COOKIE``.

The first half of the module is pure (pack a request, parse a reply, format the text
``dmsetup status``/``table`` prints, so the parsers of :mod:`dmpath.kernel.dmtable` take it
unchanged); :class:`DmControl` is the thin I/O over one file descriptor.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import fcntl
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from dmpath.errors import DmpathError, ParseError
from dmpath.kernel.dmsetup import _group_number, validate_map_name, validate_uuid
from dmpath.kernel.dmtable import (
    TARGET,
    DmDevice,
    DmInfo,
    MultipathStatus,
    MultipathTable,
    format_table,
    parse_status,
    parse_table,
)

log = logging.getLogger("dmpath.dmioctl")

CONTROL_PATH = "/dev/mapper/control"

#: the interface version we speak; the kernel accepts any request whose major matches
#: and whose minor is not newer than its own, and writes its own version back
DM_VERSION = (4, 0, 0)
DM_IOCTL_TYPE = 0xFD
DM_NAME_LEN = 128  # including the terminating NUL
DM_UUID_LEN = 129
DM_MAX_TYPE_NAME = 16


class DmFlag(enum.IntFlag):
    """``dm_ioctl.flags`` bits this module sends or reads."""

    READONLY = 1 << 0
    SUSPEND = 1 << 1
    PERSISTENT_DEV = 1 << 3
    #: TABLE_STATUS: return the table instead of the status
    STATUS_TABLE = 1 << 4
    ACTIVE_PRESENT = 1 << 5
    INACTIVE_PRESENT = 1 << 6
    #: the answer did not fit: retry with a bigger buffer
    BUFFER_FULL = 1 << 8
    NOFLUSH = 1 << 11
    #: TARGET_MSG produced a reply string at data_start
    DATA_OUT = 1 << 16


class DmOp(enum.IntEnum):
    """Command numbers (the ``nr`` of the ioctl request) used here."""

    VERSION = 0
    LIST_DEVICES = 2
    DEV_CREATE = 3
    DEV_REMOVE = 4
    DEV_SUSPEND = 6
    DEV_STATUS = 7
    TABLE_LOAD = 9
    TABLE_CLEAR = 10
    TABLE_STATUS = 12
    TARGET_MSG = 14


class DmIoctlStruct(ctypes.Structure):
    """``struct dm_ioctl`` exactly as the kernel lays it out (312 bytes, no padding added:
    ``dev`` already sits at offset 40 and ``data[7]`` rounds the size up to 8)."""

    _fields_ = (
        ("version", ctypes.c_uint32 * 3),
        ("data_size", ctypes.c_uint32),
        ("data_start", ctypes.c_uint32),
        ("target_count", ctypes.c_uint32),
        ("open_count", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("event_nr", ctypes.c_uint32),
        ("padding", ctypes.c_uint32),
        ("dev", ctypes.c_uint64),
        ("name", ctypes.c_char * DM_NAME_LEN),
        ("uuid", ctypes.c_char * DM_UUID_LEN),
        ("data", ctypes.c_char * 7),
    )


HEADER_SIZE = ctypes.sizeof(DmIoctlStruct)
#: struct dm_name_list: u64 dev; u32 next; char name[] (the name starts at offset 12)
NAME_LIST = struct.Struct("=QI")
#: struct dm_target_spec: u64 sector_start; u64 length; s32 status; u32 next; char type[16]
TARGET_SPEC = struct.Struct(f"=QQiI{DM_MAX_TYPE_NAME}s")
#: struct dm_target_msg: u64 sector; char message[]
TARGET_MSG = struct.Struct("=Q")

#: first buffer for reads that return a payload: libdevmapper starts with 16 KiB as well,
#: which holds a 1,024-path status line; bigger answers double it (DM_BUFFER_FULL)
READ_BUFFER = 16 * 1024
#: buffers never grow past this: an answer that large means something is badly wrong
MAX_BUFFER = 64 * 1024 * 1024
#: where the kernel's answer flags sit: read alone before deciding to decode the rest
_FLAGS_AT: int = DmIoctlStruct.flags.offset
_FLAGS = struct.Struct("=I")
#: how often an ioctl interrupted by a signal is restarted
EINTR_RETRIES = 20

#: udev flags (<libdevmapper.h> DM_UDEV_*) in the upper half of a resume's ``event_nr``,
#: which the kernel hands to udev as DM_COOKIE. They are what ``dmsetup --noudevsync``
#: sends: "primary source" makes the rules treat the change as the map's activation
#: (/dev/mapper/NAME, by-id links, blkid, whatever sits on top), and "library fallback
#: disabled" says no library will make the nodes itself. The lower half (the semaphore
#: dmsetup would wait on) is 0: nobody waits.
UDEV_DISABLE_LIBRARY_FALLBACK = 0x0020
UDEV_PRIMARY_SOURCE = 0x0040
#: DM_SUBSYSTEM_UDEV_FLAG0, the first flag left to the map's owner: on a multipath map it
#: says "a reload" (multipath-tools gives it the same meaning). The rules
#: (udev-rules/56-dmpath-maps.rules) then leave what sits on the map alone: a new path
#: table changes nothing of its content, and rescanning a map that may have no working
#: path (blkid, kpartx) can hang a udev worker on queued I/O.
UDEV_SUBSYSTEM_RELOAD = 0x0100
#: DM_SUBSYSTEM_UDEV_FLAG2 with a reload: the new table has no path at all (the paths of a
#: new table otherwise all start out working), so nothing may read the map
UDEV_SUBSYSTEM_NO_PATH = 0x0400
UDEV_FLAGS_SHIFT = 16
RESUME_EVENT_NR = (UDEV_PRIMARY_SOURCE | UDEV_DISABLE_LIBRARY_FALLBACK) << UDEV_FLAGS_SHIFT
RELOAD_EVENT_NR = RESUME_EVENT_NR | UDEV_SUBSYSTEM_RELOAD << UDEV_FLAGS_SHIFT
RELOAD_NO_PATH_EVENT_NR = RELOAD_EVENT_NR | UDEV_SUBSYSTEM_NO_PATH << UDEV_FLAGS_SHIFT


def request_code(op: DmOp) -> int:
    """``_IOWR(0xfd, nr, struct dm_ioctl)``: direction read|write, size 312."""
    ioc_read_write = 3
    return (ioc_read_write << 30) | (HEADER_SIZE << 16) | (DM_IOCTL_TYPE << 8) | int(op)


def encode_dev(major: int, minor: int) -> int:
    """The kernel's ``huge_encode_dev`` (new_encode_dev) of a device number."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def decode_dev(dev: int) -> tuple[int, int]:
    """``(major, minor)`` from a ``huge_encode_dev`` value."""
    return (dev >> 8) & 0xFFF, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)


def _cstr(raw: bytes) -> str:
    # names come from the kernel as bytes; surrogateescape keeps any odd byte round-trippable
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- errors


class DmIoctlError(DmpathError):
    """A device-mapper ioctl failed; carries the map, the operation and the errno."""

    exit_code = 4

    def __init__(self, name: str, op: str, err: int, detail: str = "") -> None:
        what = f"{name}: " if name else ""
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{what}device-mapper {op}{extra} failed: {os.strerror(err)}")
        self.name = name
        self.op = op
        self.errno = err


class NoSuchMap(DmIoctlError):
    """The map named does not exist (the kernel answers ENXIO, or ENODEV)."""


class DmControlUnavailable(DmpathError):
    """``/dev/mapper/control`` cannot be opened (no device-mapper in this kernel, or no root)."""

    exit_code = 6


# --------------------------------------------------------------------------- pure: requests


@dataclass(frozen=True)
class DmHeader:
    """The ``struct dm_ioctl`` of a reply (or request), decoded."""

    version: tuple[int, int, int]
    data_size: int
    data_start: int
    target_count: int
    open_count: int
    flags: int
    event_nr: int
    dev: int
    name: str
    uuid: str

    @property
    def major(self) -> int:
        return decode_dev(self.dev)[0]

    @property
    def minor(self) -> int:
        return decode_dev(self.dev)[1]

    @property
    def suspended(self) -> bool:
        return bool(self.flags & DmFlag.SUSPEND)

    @property
    def read_only(self) -> bool:
        return bool(self.flags & DmFlag.READONLY)

    @property
    def active_present(self) -> bool:
        """The map has a live table (``dmsetup info``'s "LIVE")."""
        return bool(self.flags & DmFlag.ACTIVE_PRESENT)

    @property
    def inactive_present(self) -> bool:
        """A table was loaded and not yet resumed (``dmsetup info``'s "INACTIVE")."""
        return bool(self.flags & DmFlag.INACTIVE_PRESENT)

    def to_info(self) -> DmInfo:
        """The same record ``dmsetup.info`` builds from ``dmsetup info -c``."""
        major, minor = decode_dev(self.dev)
        return DmInfo(
            name=self.name,
            uuid=self.uuid,
            major=major,
            minor=minor,
            open_count=self.open_count,
            segments=self.target_count,
            events=self.event_nr,
        )


def pack_request(
    *,
    name: str = "",
    uuid: str = "",
    flags: int = 0,
    payload: bytes = b"",
    buffer_size: int = 0,
    event_nr: int = 0,
    target_count: int = 0,
    create: bool = False,
) -> bytearray:
    """A request buffer: header, then ``payload`` at ``data_start``, then zeroed room for the
    answer, ``max(buffer_size, header + payload)`` bytes in all.

    The kernel refuses a request naming a device both by name and by uuid, so only one may
    be given, except to ``create`` one, which gives both. ``data_size`` is the whole
    buffer: it tells the kernel how much it may write.
    """
    if name and uuid and not create:
        raise DmpathError("a device-mapper request names a map by name or by uuid, not both")
    raw_name = name.encode("utf-8", "surrogateescape")
    raw_uuid = uuid.encode("utf-8", "surrogateescape")
    if len(raw_name) >= DM_NAME_LEN:
        raise DmpathError(f"map name {name!r} is {len(raw_name)} bytes, at most {DM_NAME_LEN - 1}")
    if len(raw_uuid) >= DM_UUID_LEN:
        raise DmpathError(f"uuid {uuid!r} is {len(raw_uuid)} bytes, at most {DM_UUID_LEN - 1}")
    size = max(buffer_size, HEADER_SIZE + len(payload))
    if size > MAX_BUFFER:
        raise DmpathError(f"device-mapper request of {size} bytes, more than {MAX_BUFFER}")
    hdr = DmIoctlStruct()
    hdr.version[:] = DM_VERSION
    hdr.data_size = size
    hdr.data_start = HEADER_SIZE
    hdr.flags = flags
    hdr.event_nr = event_nr
    hdr.target_count = target_count
    hdr.name = raw_name
    hdr.uuid = raw_uuid
    buf = bytearray(size)
    buf[:HEADER_SIZE] = bytes(hdr)
    buf[HEADER_SIZE : HEADER_SIZE + len(payload)] = payload
    return buf


def parse_header(buf: bytes | bytearray) -> DmHeader:
    """Decode the ``struct dm_ioctl`` at the start of ``buf``."""
    if len(buf) < HEADER_SIZE:
        raise ParseError("dm_ioctl header", f"{len(buf)} bytes, {HEADER_SIZE} expected")
    h = DmIoctlStruct.from_buffer_copy(bytes(buf[:HEADER_SIZE]))
    return DmHeader(
        version=(h.version[0], h.version[1], h.version[2]),
        data_size=h.data_size,
        data_start=h.data_start,
        target_count=h.target_count,
        open_count=h.open_count,
        flags=h.flags,
        event_nr=h.event_nr,
        dev=h.dev,
        name=_cstr(bytes(h.name)),
        uuid=_cstr(bytes(h.uuid)),
    )


def reply_payload(buf: bytes | bytearray, header: DmHeader) -> bytes:
    """The answer's payload: ``data_start`` up to ``data_size``.

    The kernel shrinks ``data_size`` to what it wrote (only the header for DEV_STATUS, or a
    table-less TABLE_STATUS), and copies nothing else back: bytes past it are still our
    request, never part of the answer.
    """
    if header.data_size <= header.data_start:
        return b""
    if header.data_start < HEADER_SIZE or header.data_size > len(buf):
        raise ParseError(
            "dm_ioctl reply",
            f"payload {header.data_start}..{header.data_size} outside the {len(buf)}-byte buffer",
        )
    return bytes(buf[header.data_start : header.data_size])


def pack_target_msg(words: Sequence[str], sector: int = 0) -> bytes:
    """``struct dm_target_msg``: the sector that selects the target, then the message."""
    return TARGET_MSG.pack(sector) + " ".join(words).encode() + b"\0"


def parse_message_reply(buf: bytes | bytearray, header: DmHeader) -> str:
    """The string a target message answered with (``""`` when it answered nothing)."""
    if not header.flags & DmFlag.DATA_OUT:
        return ""
    return _cstr(reply_payload(buf, header))


# --------------------------------------------------------------------------- pure: replies


def parse_name_list(data: bytes) -> list[DmDevice]:
    """The ``struct dm_name_list`` chain of a LIST_DEVICES answer.

    Newer kernels put the event number, flags and uuid after each name; ``next`` skips
    over them, so they are not read.
    """
    out: list[DmDevice] = []
    if len(data) < NAME_LIST.size or NAME_LIST.unpack_from(data, 0)[0] == 0:
        return out  # the kernel writes dev = 0 in the first record when there are no maps
    off = 0
    while True:
        if off + NAME_LIST.size > len(data):
            raise ParseError("dm_name_list", f"record at {off} runs past {len(data)} bytes")
        dev, nxt = NAME_LIST.unpack_from(data, off)
        end = data.find(b"\0", off + NAME_LIST.size)
        if end < 0:
            raise ParseError("dm_name_list", f"name at {off + NAME_LIST.size} has no NUL")
        major, minor = decode_dev(dev)
        out.append(DmDevice(_cstr(data[off + NAME_LIST.size : end]), major, minor))
        if nxt == 0:
            return out
        if nxt < NAME_LIST.size:
            raise ParseError("dm_name_list", f"next offset {nxt} at {off} does not advance")
        off += nxt


@dataclass(frozen=True)
class TargetSpec:
    """One target of a TABLE_STATUS answer: its sectors, type and parameter string.

    ``params`` is kept verbatim (dm-mpath ends its lines with a space, and ``dmsetup``
    prints it so).
    """

    start: int
    length: int
    target_type: str
    params: str
    status: int = 0

    def text(self) -> str:
        """The line ``dmsetup status``/``dmsetup table`` prints for this target."""
        return f"{self.start} {self.length} {self.target_type} {self.params}"


def parse_target_specs(data: bytes, count: int) -> list[TargetSpec]:
    """``count`` ``struct dm_target_spec`` records, each followed by its parameter string.

    On output ``next`` is the offset of the next record from the start of the payload
    (not from the record, as on input to a table load).
    """
    out: list[TargetSpec] = []
    off = 0
    for i in range(count):
        if off + TARGET_SPEC.size > len(data):
            raise ParseError("dm_target_spec", f"target {i} at {off} runs past {len(data)} bytes")
        start, length, status, nxt, ttype = TARGET_SPEC.unpack_from(data, off)
        pstart = off + TARGET_SPEC.size
        end = data.find(b"\0", pstart)
        if end < 0:
            raise ParseError("dm_target_spec", f"parameters of target {i} have no NUL")
        out.append(TargetSpec(start, length, _cstr(ttype), _cstr(data[pstart:end]), status))
        if i + 1 < count:
            if nxt <= off:
                raise ParseError("dm_target_spec", f"next offset {nxt} of target {i} goes back")
            off = nxt
    return out


def targets_text(specs: Sequence[TargetSpec]) -> str:
    """What ``dmsetup status NAME`` / ``dmsetup table NAME`` print, less the last newline:
    one ``<start> <length> <target> <params>`` line per target ("" for no table)."""
    return "\n".join(s.text() for s in specs)


def parse_table_reply(buf: bytes | bytearray) -> tuple[DmHeader, list[TargetSpec]]:
    """A whole TABLE_STATUS answer: the device's header and its targets."""
    header = parse_header(buf)
    return header, parse_target_specs(reply_payload(buf, header), header.target_count)


def status_text(buf: bytes | bytearray) -> str:
    """``dmsetup status`` text from a TABLE_STATUS answer (asked without STATUS_TABLE)."""
    return targets_text(parse_table_reply(buf)[1])


def table_text(buf: bytes | bytearray) -> str:
    """``dmsetup table`` text from a TABLE_STATUS answer (asked with STATUS_TABLE)."""
    return targets_text(parse_table_reply(buf)[1])


def _align8(n: int) -> int:
    return (n + 7) & ~7


def pack_target_specs(specs: Sequence[TargetSpec]) -> bytes:
    """The payload of a TABLE_LOAD: each ``struct dm_target_spec`` followed by its parameter
    string and a NUL, padded to 8 bytes, as libdevmapper lays it out.

    On input ``next`` is the offset of the next record from this one (on output it counts
    from the start of the payload: see :func:`parse_target_specs`); the last one's is 0.
    """
    out = bytearray()
    for i, s in enumerate(specs):
        raw_type = s.target_type.encode()
        if not raw_type or len(raw_type) >= DM_MAX_TYPE_NAME:
            raise DmpathError(
                f"target type {s.target_type!r} is not 1 to {DM_MAX_TYPE_NAME - 1} bytes"
            )
        params = s.params.encode() + b"\0"
        if b"\0" in params[:-1] or "\n" in s.params:
            raise DmpathError("target parameters must be one line without NUL")
        size = _align8(TARGET_SPEC.size + len(params))
        nxt = size if i + 1 < len(specs) else 0
        out += TARGET_SPEC.pack(s.start, s.length, 0, nxt, raw_type)
        out += params + bytes(size - TARGET_SPEC.size - len(params))
    return bytes(out)


def table_specs(table: MultipathTable | str) -> list[TargetSpec]:
    """The one target of a multipath table (a model, or one line of text as ``dmsetup
    table`` prints it) as the spec a TABLE_LOAD takes."""
    line = format_table(table) if isinstance(table, MultipathTable) else table.strip()
    parts = line.split(" ", 3)
    if "\n" in line or len(parts) != 4 or not (parts[0].isdigit() and parts[1].isdigit()):
        raise DmpathError(f"not a one-line device-mapper table: {line!r}")
    return [TargetSpec(int(parts[0]), int(parts[1]), parts[2], parts[3])]


def check_message_words(words: Sequence[str]) -> tuple[str, ...]:
    """The rules of ``dmsetup.message``: at least one word, each one non-empty word."""
    if not words:
        raise DmpathError("a dm message needs at least one word")
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise DmpathError(f"dm message word {w!r} must be one non-empty word")
    return tuple(words)


# --------------------------------------------------------------------------- I/O

#: ``ioctl(fd, request, buffer) -> int``; the kernel answers in the buffer
IoctlFn = Callable[[int, int, bytearray], int]


def sys_ioctl(fd: int, request: int, buf: bytearray) -> int:
    # a mutable buffer: the kernel's answer lands in it; fcntl releases the GIL meanwhile
    return int(fcntl.ioctl(fd, request, buf, True))


class DmControl:
    """One open ``/dev/mapper/control`` and the reads and messages dmpathd needs.

    Safe from several threads: the descriptor is shared but every call builds its own
    buffer, and the kernel serialises what needs serialising. ``ioctl`` replaces the system
    call (tests play the kernel with it).
    """

    def __init__(self, path: str = CONTROL_PATH, *, ioctl: IoctlFn = sys_ioctl) -> None:
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise DmControlUnavailable(
                f"cannot open {path}: {exc.strerror or exc} "
                "(device-mapper needs the dm_mod module and root)"
            ) from exc
        self.path = path
        self._ioctl = ioctl
        self._lock = threading.Lock()  # guards close against a second close only

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the descriptor (callers must be done with it)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> DmControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- the one call

    def _call(
        self,
        op: DmOp,
        *,
        name: str = "",
        uuid: str = "",
        flags: int = 0,
        payload: bytes = b"",
        size: int = HEADER_SIZE,
        grow: bool = True,
        detail: str = "",
        event_nr: int = 0,
        target_count: int = 0,
    ) -> bytearray:
        """Issue ``op``; with ``grow``, retry with twice the buffer while the kernel says
        DM_BUFFER_FULL. Returns the buffer holding the answer."""
        fd = self._fd
        who = name or uuid
        if fd < 0:
            raise DmpathError(f"{self.path} is closed")
        request = request_code(op)
        while True:
            buf = pack_request(
                name=name,
                uuid=uuid,
                flags=flags,
                payload=payload,
                buffer_size=size,
                event_nr=event_nr,
                target_count=target_count,
                create=op is DmOp.DEV_CREATE,
            )
            started = time.monotonic()
            for attempt in range(EINTR_RETRIES + 1):
                try:
                    self._ioctl(fd, request, buf)
                    break
                except InterruptedError:
                    if attempt == EINTR_RETRIES:
                        raise DmIoctlError(who, op.name, errno.EINTR, detail) from None
                except OSError as exc:
                    err = exc.errno if exc.errno is not None else errno.EIO
                    cls = NoSuchMap if err in (errno.ENXIO, errno.ENODEV) else DmIoctlError
                    raise cls(who, op.name, err, detail) from exc
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s%s: %.0f us",
                    op.name,
                    who or "-",
                    f" {detail}" if detail else "",
                    (time.monotonic() - started) * 1e6,
                )
            (out_flags,) = _FLAGS.unpack_from(buf, _FLAGS_AT)
            if not out_flags & DmFlag.BUFFER_FULL:
                return buf
            if not grow or size * 2 > MAX_BUFFER:
                raise DmIoctlError(
                    who, op.name, errno.ENOBUFS, f"{detail} answer larger than {size} bytes"
                )
            size *= 2

    # ---------------------------------------------------------------- reads

    def version(self) -> tuple[int, int, int]:
        """The kernel's device-mapper interface version (``dmsetup version``'s driver)."""
        return parse_header(self._call(DmOp.VERSION)).version

    def list_devices(self) -> list[DmDevice]:
        """Every dm device (any target), as ``dmsetup ls`` lists them."""
        buf = self._call(DmOp.LIST_DEVICES, size=READ_BUFFER)
        return parse_name_list(reply_payload(buf, parse_header(buf)))

    def dev_status(self, name: str) -> DmHeader:
        """The DEV_STATUS header of ``name`` (``.suspended``, ``.to_info()``...)."""
        validate_map_name(name)
        return parse_header(self._call(DmOp.DEV_STATUS, name=name))

    def info(self, name: str) -> DmInfo:
        """What ``dmsetup.info(name)`` returns, from one ioctl."""
        return self.dev_status(name).to_info()

    def info_by_uuid(self, uuid: str) -> DmInfo:
        """The map whose dm uuid is ``uuid`` (e.g. ``mpath-<wwid>``)."""
        validate_uuid(uuid)
        return parse_header(self._call(DmOp.DEV_STATUS, uuid=uuid)).to_info()

    def suspended(self, name: str) -> bool:
        return self.dev_status(name).suspended

    def _targets(self, name: str, *, table: bool) -> tuple[DmHeader, list[TargetSpec]]:
        # no name validation here: read_all passes names the kernel itself listed
        flags = DmFlag.STATUS_TABLE if table else 0
        return parse_table_reply(
            self._call(DmOp.TABLE_STATUS, name=name, flags=flags, size=READ_BUFFER)
        )

    def status_text(self, name: str) -> str:
        """Exactly what ``dmsetup status NAME`` prints, less its final newline."""
        validate_map_name(name)
        return targets_text(self._targets(name, table=False)[1])

    def table_text(self, name: str) -> str:
        """Exactly what ``dmsetup table NAME`` prints, less its final newline."""
        validate_map_name(name)
        return targets_text(self._targets(name, table=True)[1])

    def status(self, name: str) -> MultipathStatus:
        """The live status of multipath map ``name``, parsed like ``dmsetup.status``."""
        return parse_status(self.status_text(name))

    def table(self, name: str) -> MultipathTable:
        """The live table of multipath map ``name``, parsed like ``dmsetup.table``."""
        return parse_table(self.table_text(name))

    def read_all(
        self, target: str = TARGET
    ) -> dict[str, tuple[DmInfo, MultipathTable, MultipathStatus]]:
        """Info, table and status of every map whose one target is ``target``.

        Two ioctls per map (the table answer carries the info header too). A map removed or
        renamed while we read is left out; one whose table changes to another target between
        the two reads is left out as well.
        """
        if target != TARGET:
            raise DmpathError(f"read_all parses {TARGET!r} maps only, not {target!r}")
        out: dict[str, tuple[DmInfo, MultipathTable, MultipathStatus]] = {}
        for dev in self.list_devices():
            try:
                header, table = self._targets(dev.name, table=True)
                if not _single(table, target):
                    continue
                _, status = self._targets(dev.name, table=False)
            except NoSuchMap:
                continue
            if not _single(status, target):
                continue
            out[dev.name] = (
                header.to_info(),
                parse_table(targets_text(table)),
                parse_status(targets_text(status)),
            )
        return out

    # ---------------------------------------------------------------- messages

    def message(self, name: str, *words: str) -> str:
        """Send a target message to sector 0 (``dmsetup message NAME 0 WORDS...``); returns
        the reply text, stripped like ``dmsetup.message`` does.

        The answer buffer never grows: growing means sending the message again, and a
        message like ``fail_path`` must not run twice.
        """
        validate_map_name(name)
        check_message_words(words)
        text = " ".join(words)
        buf = self._call(
            DmOp.TARGET_MSG,
            name=name,
            payload=pack_target_msg(words),
            size=READ_BUFFER,
            grow=False,
            detail=repr(text),
        )
        return parse_message_reply(buf, parse_header(buf)).strip()

    def fail_path(self, name: str, dev: str) -> None:
        """Take path ``dev`` (``8:0``) out of use; its fail count goes up by one."""
        self.message(name, "fail_path", dev)

    def reinstate_path(self, name: str, dev: str) -> None:
        """Put a failed path ``dev`` back in use."""
        self.message(name, "reinstate_path", dev)

    def switch_group(self, name: str, group: int) -> None:
        """Make the next I/O use group ``group`` (1-based)."""
        self.message(name, "switch_group", _group_number(group))

    def enable_group(self, name: str, group: int) -> None:
        """Stop bypassing group ``group``."""
        self.message(name, "enable_group", _group_number(group))

    def disable_group(self, name: str, group: int) -> None:
        """Bypass group ``group`` while another group has usable paths."""
        self.message(name, "disable_group", _group_number(group))

    def queue_if_no_path(self, name: str) -> None:
        """Queue I/O (instead of failing it) while no path is usable."""
        self.message(name, "queue_if_no_path")

    def fail_if_no_path(self, name: str) -> None:
        """Fail I/O when no path is usable, releasing any I/O queued now."""
        self.message(name, "fail_if_no_path")


    # ---------------------------------------------------------------- map lifecycle

    def create(self, name: str, table: MultipathTable | str, uuid: str) -> None:
        """Create map ``name`` (dm uuid ``uuid``) with ``table`` and resume it, as
        ``dmsetup create --noudevsync`` does: create, load, resume, and if the load or the
        resume fails, remove the half-made device again so the name is free."""
        validate_map_name(name)
        validate_uuid(uuid)
        specs = table_specs(table)
        payload = pack_target_specs(specs)  # a table that cannot be packed: no ioctl at all
        self._call(DmOp.DEV_CREATE, name=name, uuid=uuid)
        try:
            self._load(name, payload, len(specs))
            self.resume(name)
        except DmpathError as exc:
            try:
                self._call(DmOp.DEV_REMOVE, name=name)
            except DmpathError as undo:
                exc.add_note(f"{name}: the half-made map could not be removed: {undo}")
            raise

    def _load(self, name: str, payload: bytes, target_count: int) -> None:
        """Load a packed table as the *inactive* table of ``name`` (nothing changes until
        resume)."""
        self._call(
            DmOp.TABLE_LOAD,
            name=name,
            payload=payload,
            target_count=target_count,
            detail="table load",
        )

    def clear(self, name: str) -> None:
        """Drop the inactive table of ``name`` (undo a load that will not be resumed)."""
        validate_map_name(name)
        self._call(DmOp.TABLE_CLEAR, name=name)

    def suspend(self, name: str, *, noflush: bool = False) -> None:
        """Suspend ``name``; ``noflush`` keeps queued and in-flight I/O (see
        :func:`dmpath.kernel.dmsetup.suspend` for why a multipath map wants that)."""
        validate_map_name(name)
        flags = DmFlag.SUSPEND | (DmFlag.NOFLUSH if noflush else 0)
        self._call(DmOp.DEV_SUSPEND, name=name, flags=flags, detail="suspend")

    def resume(self, name: str, *, event_nr: int = RESUME_EVENT_NR) -> None:
        """Resume ``name``, switching to its inactive table if one was loaded; udev hears of
        it with the flags of ``event_nr`` (:data:`RESUME_EVENT_NR`, or a reload's)."""
        validate_map_name(name)
        self._call(DmOp.DEV_SUSPEND, name=name, event_nr=event_nr, detail="resume")

    def reload(self, name: str, table: MultipathTable | str) -> None:
        """Replace the live table of ``name`` without losing I/O: load, suspend with
        noflush, resume (the order and the flag are explained at
        :func:`dmpath.kernel.dmsetup.reload`). A refused table leaves the map untouched; a
        failed suspend clears the loaded table again; a failed resume leaves the map
        suspended with its new table, and the error says so: resuming it is the caller's
        next step, where the failure can be reported (a silent retry here hid it)."""
        validate_map_name(name)
        specs = table_specs(table)
        pathless = isinstance(table, MultipathTable) and not table.devs
        event_nr = RELOAD_NO_PATH_EVENT_NR if pathless else RELOAD_EVENT_NR
        self._load(name, pack_target_specs(specs), len(specs))
        try:
            self.suspend(name, noflush=True)
        except DmpathError as exc:
            try:
                self.clear(name)
            except DmpathError as undo:
                exc.add_note(f"{name}: could not clear the inactive table: {undo}")
            raise
        try:
            self.resume(name, event_nr=event_nr)
        except DmpathError as exc:
            raise DmIoctlError(
                name, "resume", exc.errno if isinstance(exc, DmIoctlError) else errno.EIO,
                "the map is left SUSPENDED with its new table: resume it",
            ) from exc


def _single(specs: Sequence[TargetSpec], target: str) -> bool:
    return len(specs) == 1 and specs[0].target_type == target


def open_control(path: str = CONTROL_PATH, *, ioctl: IoctlFn = sys_ioctl) -> DmControl:
    """A :class:`DmControl`, or :class:`DmControlUnavailable` saying why there is none."""
    if not os.path.exists(path):
        raise DmControlUnavailable(
            f"{path} does not exist: this kernel has no device-mapper (modprobe dm_mod)"
        )
    return DmControl(path, ioctl=ioctl)
