"""SG_IO on a path's block device: the one place dmpath talks SCSI to a device.

A small declarative ctypes layer: ``struct sg_io_hdr`` as the kernel lays it out
(include/scsi/sg.h, 88 bytes on x86_64), one ioctl, and functions that send the CDBs built
in ``scsi`` and hand the answers to its parsers. Policy lives elsewhere: this module says
what the device answered, ``scsi.classify_check`` says what that means.

Every function takes either a device node (opened and closed around the call) or an
already open descriptor, so the daemon can keep one descriptor per path and check it
without an open() per poll. Nothing blocks forever: the command timeout is in the SG_IO
header, and the kernel aborts the command when it expires.

The ioctl goes through libc with ctypes, which releases the GIL for the call: a check may
take up to its timeout, and other threads (other paths' checks) must go on meanwhile.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from dmpath.errors import DeviceError, ParseError, SgioError
from dmpath.kernel.scsi import (
    VPD_DEVICE_ID,
    VPD_UNIT_SERIAL,
    CheckOutcome,
    DeviceIdentification,
    PathState,
    RtpgReport,
    SenseKey,
    StandardInquiry,
    TargetPortGroup,
    Wwid,
    cdb_inquiry,
    cdb_report_target_port_groups,
    cdb_test_unit_ready,
    classify_check,
    decode_sense,
    host_status_name,
    own_port_group,
    parse_rtpg,
    parse_standard_inquiry,
    parse_vpd83,
    parse_vpd_unit_serial,
    wwid_from_vpd83,
)

SG_IO = 0x2285
SG_INTERFACE_ID_ORIG = ord("S")
SG_DXFER_NONE = -1
SG_DXFER_TO_DEV = -2
SG_DXFER_FROM_DEV = -3
SG_INFO_OK_MASK = 0x1

#: sense buffer handed to the kernel; SPC sense is at most 252 bytes, 64 holds any we read
SENSE_BUFFER_LEN = 64
#: the kernel's default SCSI command timeout, which multipath-tools' checker also uses
DEFAULT_TIMEOUT_S = 30.0
#: how many times an ioctl interrupted by a signal is restarted before giving up
EINTR_RETRIES = 20
#: multipath-tools' tur checker tries 5 times through UNIT ATTENTIONs and transient errors
TUR_RETRIES = 5


class SgIoHdr(ctypes.Structure):
    """``struct sg_io_hdr`` (SG v3 interface); natural alignment gives 88 bytes on LP64."""

    _fields_ = (
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_ioctl.restype = ctypes.c_int


class PathOpenError(DeviceError):
    """A path's device node could not be opened; ``errno`` says why."""

    def __init__(self, device: str, detail: str, errno_: int | None) -> None:
        super().__init__(device, detail)
        self.errno = errno_


@dataclass(frozen=True)
class SgResult:
    """What came back from one SG_IO: SCSI status, transport/driver bytes, sense, data."""

    status: int
    masked_status: int
    host_status: int
    driver_status: int
    sense: bytes
    data: bytes
    resid: int
    duration_ms: int
    info: int

    @property
    def ok(self) -> bool:
        """No check condition and no host or driver trouble (the kernel's SG_INFO_OK)."""
        return (self.info & SG_INFO_OK_MASK) == 0 and self.status == 0

    def describe(self) -> str:
        """One line for error messages: the most specific thing that went wrong."""
        if self.host_status:
            return f"transport reports {host_status_name(self.host_status)}"
        if self.sense:
            try:
                return str(decode_sense(self.sense))
            except ParseError:
                return f"SCSI status 0x{self.status:02x}, unreadable sense {self.sense.hex()}"
        if self.status:
            return f"SCSI status 0x{self.status:02x}"
        if self.driver_status:
            return f"driver status 0x{self.driver_status:02x}"
        return "ok"


def _errname(err: int | None) -> str:
    if err is None:
        return "unknown error"
    return f"{os.strerror(err)} ({errno.errorcode.get(err, str(err))})"


def _fd_name(fd: int) -> str:
    """What an open descriptor refers to, for messages; only looked up when needed."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"fd {fd}"


def _open_detail(err: int | None) -> str:
    if err == errno.ENXIO:
        return "device is offline or gone (ENXIO)"
    if err == errno.ENODEV:
        return "no such device (ENODEV)"
    if err == errno.ENOENT:
        return "device node does not exist (ENOENT)"
    if err in (errno.EACCES, errno.EPERM):
        return f"permission denied: SCSI commands need root or CAP_SYS_RAWIO ({_errname(err)})"
    return f"cannot open: {_errname(err)}"


def open_path(devnode: str) -> int:
    """Open a path for SCSI commands: read-only, non-blocking, close-on-exec.

    O_NONBLOCK because a path with no medium or a device in an odd state must still open
    for a check. Raises ``PathOpenError`` whose message and ``errno`` say which of the
    usual cases it is (ENXIO: offline; ENOENT: node gone; EACCES: not root).
    """
    try:
        return os.open(devnode, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PathOpenError(devnode, _open_detail(exc.errno), exc.errno) from exc


def _timeout_ms(timeout_s: float) -> int:
    # 0 would mean "the driver's default" and 0xFFFFFFFF "never": neither is what we ask.
    return max(1, min(int(timeout_s * 1000), 0xFFFFFFFE))


def sg_io(
    fd: int,
    cdb: bytes,
    data_len: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    device: str | None = None,
) -> SgResult:
    """Issue one SCSI command (no data, or ``data_len`` bytes from the device).

    Raises ``SgioError`` when the ioctl itself fails (the command never ran: ENOTTY for a
    non-SCSI file, ENXIO/ENODEV for an offline device, EPERM, ...); a command that ran
    and failed comes back as an ``SgResult`` to be judged by the caller.
    """
    if not 1 <= len(cdb) <= 16:
        raise ValueError(f"CDB length {len(cdb)} not in 1..16")
    if data_len < 0:
        raise ValueError(f"negative data length {data_len}")
    cdb_buf = (ctypes.c_ubyte * len(cdb)).from_buffer_copy(cdb)
    sense_buf = (ctypes.c_ubyte * SENSE_BUFFER_LEN)()
    data_buf = (ctypes.c_ubyte * max(data_len, 1))()
    hdr = SgIoHdr()
    hdr.interface_id = SG_INTERFACE_ID_ORIG
    hdr.dxfer_direction = SG_DXFER_FROM_DEV if data_len else SG_DXFER_NONE
    hdr.cmd_len = len(cdb)
    hdr.mx_sb_len = SENSE_BUFFER_LEN
    hdr.dxfer_len = data_len
    hdr.dxferp = ctypes.addressof(data_buf) if data_len else None
    hdr.cmdp = ctypes.addressof(cdb_buf)
    hdr.sbp = ctypes.addressof(sense_buf)
    hdr.timeout = _timeout_ms(timeout_s)
    for _ in range(EINTR_RETRIES):
        if _ioctl(fd, SG_IO, ctypes.addressof(hdr)) == 0:
            break
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise SgioError(device or _fd_name(fd), _errname(err), err)
    else:
        raise SgioError(device or _fd_name(fd), "interrupted too often (EINTR)", errno.EINTR)
    resid = min(max(hdr.resid, 0), data_len)
    return SgResult(
        status=hdr.status,
        masked_status=hdr.masked_status,
        host_status=hdr.host_status,
        driver_status=hdr.driver_status,
        sense=bytes(sense_buf[: min(hdr.sb_len_wr, SENSE_BUFFER_LEN)]),
        data=bytes(data_buf[: data_len - resid]) if data_len else b"",
        resid=hdr.resid,
        duration_ms=hdr.duration,
        info=hdr.info,
    )


@contextmanager
def _opened(target: int | str) -> Iterator[tuple[int, str | None]]:
    """Yield (fd, name) for a descriptor or a device node; close only what we opened."""
    if isinstance(target, int):
        yield target, None
        return
    fd = open_path(target)
    try:
        yield fd, target
    finally:
        os.close(fd)


# errnos from SG_IO that mean "this is not something SG_IO works on"
_UNSUPPORTED_ERRNOS = frozenset({errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP})
# errnos that are our own fault or configuration, not a fact about the path
_CALLER_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EBADF, errno.EFAULT})


def _ioctl_outcome(err: SgioError) -> CheckOutcome:
    if err.errno in _UNSUPPORTED_ERRNOS:
        return CheckOutcome(
            PathState.UNSUPPORTED, f"not a SCSI device: SG_IO gives {_errname(err.errno)}"
        )
    if err.errno in _CALLER_ERRNOS:
        raise err
    if err.errno in (errno.ENXIO, errno.ENODEV):
        return CheckOutcome(PathState.DOWN, f"device is offline or gone: {_errname(err.errno)}")
    return CheckOutcome(PathState.DOWN, f"SG_IO failed: {_errname(err.errno)}")


def test_unit_ready(
    target: int | str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = TUR_RETRIES,
) -> CheckOutcome:
    """The path checker: TEST UNIT READY, judged by ``scsi.classify_check``.

    Path facts never raise: an offline device (ENXIO at open, ENODEV or DID_NO_CONNECT on
    an open descriptor) is DOWN with the reason; a file that is not a SCSI device is
    UNSUPPORTED. What does raise is the caller's problem: no permission, a closed
    descriptor. One-shot answers (UNIT ATTENTION, transient host errors) are retried up to
    ``retries`` times, as multipath-tools' tur checker does.
    """
    try:
        with _opened(target) as (fd, name):
            outcome: CheckOutcome | None = None
            tries = max(1, retries)
            for _ in range(tries):
                try:
                    res = sg_io(fd, cdb_test_unit_ready(), 0, timeout_s, device=name)
                except SgioError as err:
                    return _ioctl_outcome(err)
                outcome = classify_check(res.status, res.host_status, res.driver_status, res.sense)
                if not outcome.retry:
                    return outcome
            assert outcome is not None
            return replace(outcome, retry=False, reason=f"{outcome.reason} ({tries} tries)")
    except PathOpenError as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            raise
        return CheckOutcome(PathState.DOWN, err.detail)


# Not a test: keep pytest from collecting it when a test module imports it by name.
test_unit_ready.__test__ = False  # type: ignore[attr-defined]


def _unit_attention(res: SgResult) -> bool:
    try:
        return bool(res.sense) and decode_sense(res.sense).sense_key == SenseKey.UNIT_ATTENTION
    except ParseError:
        return False


def _read(target: int | str, cdb: bytes, data_len: int, timeout_s: float, what: str) -> bytes:
    """Run a data-in command and return its data, or raise SgioError saying why not.

    A UNIT ATTENTION is a one-shot notice, not the answer (the first command through a
    port after its ALUA state changed gets 2a/06): asked again, up to TUR_RETRIES times.
    """
    with _opened(target) as (fd, name):
        for _ in range(TUR_RETRIES):
            res = sg_io(fd, cdb, data_len, timeout_s, device=name)
            if res.ok or not _unit_attention(res):
                break
        if not res.ok:
            raise SgioError(name or _fd_name(fd), f"{what}: {res.describe()}")
        return res.data


def inquiry(target: int | str, timeout_s: float = DEFAULT_TIMEOUT_S) -> StandardInquiry:
    """Standard INQUIRY: vendor, product, revision and the TPGS (ALUA) claim."""
    data = _read(target, cdb_inquiry(96), 96, timeout_s, "INQUIRY")
    return parse_standard_inquiry(data)


def vpd_page(
    target: int | str, page: int, timeout_s: float = DEFAULT_TIMEOUT_S, alloc_len: int = 255
) -> bytes:
    """Raw VPD page ``page`` (header included), asked again in full if it was longer."""
    with _opened(target) as (fd, _name):
        data = _read(fd, cdb_inquiry(alloc_len, page), alloc_len, timeout_s, f"VPD 0x{page:02x}")
        if len(data) >= 4:
            needed = 4 + int.from_bytes(data[2:4], "big")
            if needed > alloc_len and alloc_len < 0xFFFF:
                size = min(needed, 0xFFFF)
                data = _read(fd, cdb_inquiry(size, page), size, timeout_s, f"VPD 0x{page:02x}")
        return data


def unit_serial(target: int | str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """VPD page 0x80 unit serial number."""
    return parse_vpd_unit_serial(vpd_page(target, VPD_UNIT_SERIAL, timeout_s))


def device_identification(
    target: int | str, timeout_s: float = DEFAULT_TIMEOUT_S
) -> DeviceIdentification:
    """VPD page 0x83, parsed."""
    return parse_vpd83(vpd_page(target, VPD_DEVICE_ID, timeout_s))


def report_target_port_groups(
    target: int | str, timeout_s: float = DEFAULT_TIMEOUT_S, alloc_len: int = 1024
) -> RtpgReport:
    """REPORT TARGET PORT GROUPS, asked again in full if the answer did not fit."""
    with _opened(target) as (fd, _name):
        cdb = cdb_report_target_port_groups(alloc_len)
        report = parse_rtpg(_read(fd, cdb, alloc_len, timeout_s, "REPORT TARGET PORT GROUPS"))
        if report.needed_length > alloc_len:
            size = report.needed_length
            cdb = cdb_report_target_port_groups(size)
            report = parse_rtpg(_read(fd, cdb, size, timeout_s, "REPORT TARGET PORT GROUPS"))
        return report


def path_wwid(target: int | str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Wwid | None:
    """The LUN's WWID as this path reports it (VPD 0x83), None if it names no LU id."""
    return wwid_from_vpd83(device_identification(target, timeout_s))


def path_port_group(
    target: int | str, timeout_s: float = DEFAULT_TIMEOUT_S
) -> TargetPortGroup | None:
    """The ALUA target port group this path goes through, with its current state.

    Needs two commands: VPD 0x83 names the path's group (and relative port), RTPG gives
    every group's state. None when the device does not say which group the path is in.
    """
    with _opened(target) as (fd, _name):
        ids = device_identification(fd, timeout_s)
        report = report_target_port_groups(fd, timeout_s)
    return own_port_group(report, ids.target_port_group, ids.relative_target_port)
