"""The SG_IO ctypes layer without SCSI hardware.

The struct layout is checked against include/scsi/sg.h; errno mapping uses real files
(/dev/null, a regular file) where the kernel answers ENOTTY; everything else replaces the
libc ioctl with a fake that plays the kernel's part on the very same ``sg_io_hdr``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dmpath.errors import DeviceError, SgioError
from dmpath.kernel import scsi, sgio
from dmpath.kernel.scsi import AluaState, PathState

LP64 = ctypes.sizeof(ctypes.c_void_p) == 8

# (field, offset) on x86_64 as the C compiler lays out struct sg_io_hdr
SG_IO_HDR_OFFSETS = [
    ("interface_id", 0),
    ("dxfer_direction", 4),
    ("cmd_len", 8),
    ("mx_sb_len", 9),
    ("iovec_count", 10),
    ("dxfer_len", 12),
    ("dxferp", 16),
    ("cmdp", 24),
    ("sbp", 32),
    ("timeout", 40),
    ("flags", 44),
    ("pack_id", 48),
    ("usr_ptr", 56),
    ("status", 64),
    ("masked_status", 65),
    ("msg_status", 66),
    ("sb_len_wr", 67),
    ("host_status", 68),
    ("driver_status", 70),
    ("resid", 72),
    ("duration", 76),
    ("info", 80),
]


@pytest.mark.skipif(not LP64, reason="layout checked for LP64 (x86_64)")
def test_struct_size_is_88() -> None:
    assert ctypes.sizeof(sgio.SgIoHdr) == 88


@pytest.mark.skipif(not LP64, reason="layout checked for LP64 (x86_64)")
@pytest.mark.parametrize(("field", "offset"), SG_IO_HDR_OFFSETS)
def test_field_offsets(field: str, offset: int) -> None:
    assert getattr(sgio.SgIoHdr, field).offset == offset


def test_constants() -> None:
    assert sgio.SG_IO == 0x2285
    assert (sgio.SG_DXFER_NONE, sgio.SG_DXFER_FROM_DEV) == (-1, -3)
    assert sgio.SENSE_BUFFER_LEN >= 32


# --------------------------------------------------------------------------- real files


def test_dev_null_is_unsupported() -> None:
    outcome = sgio.test_unit_ready("/dev/null")
    assert outcome.state == PathState.UNSUPPORTED
    assert "ENOTTY" in outcome.reason


def test_regular_file_fd_is_unsupported_and_stays_open(tmp_path: Path) -> None:
    f = tmp_path / "plain"
    f.write_bytes(b"x" * 512)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert sgio.test_unit_ready(fd).state == PathState.UNSUPPORTED
        os.fstat(fd)  # a descriptor we were given is not closed for us
        with pytest.raises(SgioError) as info:
            sgio.sg_io(fd, scsi.cdb_test_unit_ready())
        assert info.value.errno == errno.ENOTTY
        assert str(f) in str(info.value)  # named after what the fd points to
        with pytest.raises(SgioError):
            sgio.inquiry(fd)
    finally:
        os.close(fd)


def test_missing_node_is_down_and_open_path_says_why(tmp_path: Path) -> None:
    missing = str(tmp_path / "sdz")
    outcome = sgio.test_unit_ready(missing)
    assert outcome.state == PathState.DOWN and "ENOENT" in outcome.reason
    with pytest.raises(sgio.PathOpenError) as info:
        sgio.open_path(missing)
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value, DeviceError)


def test_closed_fd_raises() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(SgioError) as info:
        sgio.test_unit_ready(r)
    assert info.value.errno == errno.EBADF


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        sgio.sg_io(0, b"", 0)
    with pytest.raises(ValueError):
        sgio.sg_io(0, bytes(17), 0)
    with pytest.raises(ValueError):
        sgio.sg_io(0, bytes(6), -1)


# --------------------------------------------------------------------------- open errors


def _failing_open(err: int) -> Callable[..., int]:
    def fake_open(path: str, flags: int, mode: int = 0o777) -> int:
        raise OSError(err, os.strerror(err), path)

    return fake_open


def test_open_enxio_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """An offline SCSI device refuses open() with ENXIO: that is a DOWN path."""
    monkeypatch.setattr(os, "open", _failing_open(errno.ENXIO))
    outcome = sgio.test_unit_ready("/dev/sdx")
    assert outcome.state == PathState.DOWN
    assert "offline" in outcome.reason and "ENXIO" in outcome.reason


def test_open_eacces_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not being root is not a fact about the path: say so instead of failing paths."""
    monkeypatch.setattr(os, "open", _failing_open(errno.EACCES))
    with pytest.raises(sgio.PathOpenError, match="permission denied"):
        sgio.test_unit_ready("/dev/sdx")


def test_open_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def fake_open(path: str, flags: int, mode: int = 0o777) -> int:
        seen.append(flags)
        return 99

    monkeypatch.setattr(os, "open", fake_open)
    assert sgio.open_path("/dev/sdx") == 99
    assert seen[0] & os.O_NONBLOCK and seen[0] & os.O_CLOEXEC
    assert seen[0] & os.O_ACCMODE == os.O_RDONLY


# --------------------------------------------------------------------------- fake kernel

Reply = Callable[[sgio.SgIoHdr, bytes], int]


class FakeKernel:
    """Answers SG_IO on the caller's own header, one scripted reply per call."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.cdbs: list[bytes] = []
        self.headers: list[dict[str, int]] = []

    def __call__(self, fd: int, request: int, addr: int) -> int:
        assert request == sgio.SG_IO
        hdr = sgio.SgIoHdr.from_address(addr)
        assert hdr.interface_id == ord("S")
        cdb = ctypes.string_at(hdr.cmdp, hdr.cmd_len)
        self.cdbs.append(cdb)
        self.headers.append(
            {
                "dxfer_direction": hdr.dxfer_direction,
                "dxfer_len": hdr.dxfer_len,
                "timeout": hdr.timeout,
                "mx_sb_len": hdr.mx_sb_len,
            }
        )
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return reply(hdr, cdb)


def good(hdr: sgio.SgIoHdr, cdb: bytes) -> int:
    hdr.duration = 1
    return 0


def fail_errno(err: int) -> Reply:
    def reply(hdr: sgio.SgIoHdr, cdb: bytes) -> int:
        ctypes.set_errno(err)
        return -1

    return reply


def check_condition(sense: bytes) -> Reply:
    def reply(hdr: sgio.SgIoHdr, cdb: bytes) -> int:
        n = min(len(sense), hdr.mx_sb_len)
        ctypes.memmove(hdr.sbp, sense, n)
        hdr.sb_len_wr = n
        hdr.status = scsi.STATUS_CHECK_CONDITION
        hdr.masked_status = scsi.STATUS_CHECK_CONDITION >> 1
        hdr.driver_status = scsi.DRIVER_SENSE
        hdr.info = 1
        return 0

    return reply


def host_error(code: int) -> Reply:
    def reply(hdr: sgio.SgIoHdr, cdb: bytes) -> int:
        hdr.host_status = code
        hdr.info = 1
        return 0

    return reply


def data_in(payload: bytes) -> Reply:
    """Return ``payload`` cut to the allocation length, with resid like the kernel."""

    def reply(hdr: sgio.SgIoHdr, cdb: bytes) -> int:
        n = min(len(payload), hdr.dxfer_len)
        ctypes.memmove(hdr.dxferp, payload, n)
        hdr.resid = hdr.dxfer_len - n
        return 0

    return reply


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeKernel]]:
    def install(*replies: Reply) -> FakeKernel:
        fake = FakeKernel(*replies)
        monkeypatch.setattr(sgio, "_ioctl", fake)
        return fake

    yield install


def sense(key: int, asc: int, ascq: int) -> bytes:
    data = bytearray(18)
    data[0], data[2], data[7], data[12], data[13] = 0x70, key, 10, asc, ascq
    return bytes(data)


FD = 1000  # never used for real: the fake ioctl does not look at it


def test_tur_header(kernel: Callable[..., FakeKernel]) -> None:
    fake = kernel(good)
    outcome = sgio.test_unit_ready(FD, timeout_s=7.5)
    assert outcome.state == PathState.UP and not outcome.retry
    assert fake.cdbs == [bytes(6)]
    assert fake.headers[0] == {
        "dxfer_direction": sgio.SG_DXFER_NONE,
        "dxfer_len": 0,
        "timeout": 7500,
        "mx_sb_len": sgio.SENSE_BUFFER_LEN,
    }


@pytest.mark.parametrize("err", [errno.ENXIO, errno.ENODEV, errno.EIO])
def test_tur_ioctl_errno_on_open_fd_is_down(kernel: Callable[..., FakeKernel], err: int) -> None:
    """An fd opened before the device went offline: the ioctl fails, the path is DOWN."""
    kernel(fail_errno(err))
    outcome = sgio.test_unit_ready(FD)
    assert outcome.state == PathState.DOWN
    assert errno.errorcode[err] in outcome.reason


@pytest.mark.parametrize("err", [errno.ENOTTY, errno.EINVAL])
def test_tur_not_scsi_is_unsupported(kernel: Callable[..., FakeKernel], err: int) -> None:
    kernel(fail_errno(err))
    assert sgio.test_unit_ready(FD).state == PathState.UNSUPPORTED


def test_tur_eperm_raises(kernel: Callable[..., FakeKernel]) -> None:
    kernel(fail_errno(errno.EPERM))
    with pytest.raises(SgioError) as info:
        sgio.test_unit_ready(FD)
    assert info.value.errno == errno.EPERM


def test_eintr_is_retried(kernel: Callable[..., FakeKernel]) -> None:
    fake = kernel(fail_errno(errno.EINTR), fail_errno(errno.EINTR), good)
    assert sgio.test_unit_ready(FD).state == PathState.UP
    assert len(fake.cdbs) == 3


def test_eintr_forever_gives_up(kernel: Callable[..., FakeKernel]) -> None:
    kernel(fail_errno(errno.EINTR))
    with pytest.raises(SgioError, match="EINTR"):
        sgio.sg_io(FD, bytes(6))


def test_unit_attention_is_retried(kernel: Callable[..., FakeKernel]) -> None:
    fake = kernel(check_condition(sense(0x06, 0x29, 0x00)), good)
    outcome = sgio.test_unit_ready(FD)
    assert outcome.state == PathState.UP and outcome.reason == "ready"
    assert len(fake.cdbs) == 2


def test_persistent_unit_attention_ends_up(kernel: Callable[..., FakeKernel]) -> None:
    fake = kernel(check_condition(sense(0x06, 0x2A, 0x06)))
    outcome = sgio.test_unit_ready(FD, retries=3)
    assert outcome.state == PathState.UP and not outcome.retry
    assert "(3 tries)" in outcome.reason and "asymmetric access state changed" in outcome.reason
    assert len(fake.cdbs) == 3


def test_standby_is_ghost(kernel: Callable[..., FakeKernel]) -> None:
    kernel(check_condition(sense(0x02, 0x04, 0x0B)))
    outcome = sgio.test_unit_ready(FD)
    assert outcome.state == PathState.GHOST
    assert outcome.sense is not None and outcome.sense.ascq == 0x0B


def test_no_connect_is_down_without_retry(kernel: Callable[..., FakeKernel]) -> None:
    """What an already-open fd gets when the scsi_device is offline (DID_NO_CONNECT)."""
    fake = kernel(host_error(scsi.HostStatus.DID_NO_CONNECT))
    outcome = sgio.test_unit_ready(FD)
    assert outcome.state == PathState.DOWN and "DID_NO_CONNECT" in outcome.reason
    assert len(fake.cdbs) == 1


def test_transient_host_error_retried_then_down(kernel: Callable[..., FakeKernel]) -> None:
    fake = kernel(host_error(scsi.HostStatus.DID_BUS_BUSY))
    outcome = sgio.test_unit_ready(FD)
    assert outcome.state == PathState.DOWN and len(fake.cdbs) == sgio.TUR_RETRIES


def test_sg_result_fields(kernel: Callable[..., FakeKernel]) -> None:
    kernel(check_condition(sense(0x02, 0x04, 0x0A)))
    res = sgio.sg_io(FD, bytes(6))
    assert not res.ok
    assert res.status == 2 and res.masked_status == 1 and res.driver_status == 8
    assert res.sense == sense(0x02, 0x04, 0x0A)
    assert "asymmetric access state transition" in res.describe()


def test_inquiry_data_in(kernel: Callable[..., FakeKernel]) -> None:
    std = bytearray(96)
    std[5] = 0x10
    std[8:36] = b"Linux   scsi_debug      0191"
    fake = kernel(data_in(bytes(std[:74])))  # a device answering less than asked
    inq = sgio.inquiry(FD)
    assert (inq.vendor, inq.product, inq.revision) == ("Linux", "scsi_debug", "0191")
    assert inq.alua
    assert fake.cdbs == [scsi.cdb_inquiry(96)]
    assert fake.headers[0]["dxfer_direction"] == sgio.SG_DXFER_FROM_DEV
    assert fake.headers[0]["dxfer_len"] == 96


def test_inquiry_failure_raises_with_sense(kernel: Callable[..., FakeKernel]) -> None:
    kernel(check_condition(sense(0x05, 0x24, 0x00)))
    with pytest.raises(SgioError, match="invalid field in cdb"):
        sgio.inquiry(FD)


def test_vpd_page_reissued_when_longer(kernel: Callable[..., FakeKernel]) -> None:
    body = bytes(296)
    page = bytes([0, 0x80]) + len(body).to_bytes(2, "big") + body
    fake = kernel(data_in(page))
    assert sgio.vpd_page(FD, 0x80) == page
    assert fake.cdbs == [scsi.cdb_inquiry(255, 0x80), scsi.cdb_inquiry(300, 0x80)]


def _vpd83_page(tpg: int) -> bytes:
    body = b"".join(
        [
            bytes([0x02, 0x01, 0, 28]) + b"Linux   scsi_debug      2000",
            bytes([0x01, 0x03, 0, 8]) + bytes.fromhex("33333330000007d0"),
            bytes([0x61, 0x94, 0, 4, 0, 0, 0, 1]),
            bytes([0x61, 0x95, 0, 4, 0, 0]) + tpg.to_bytes(2, "big"),
        ]
    )
    return bytes([0, 0x83]) + len(body).to_bytes(2, "big") + body


def _rtpg(host_no: int) -> bytes:
    a = ((host_no + 1) & 0x7F) << 8
    desc_a = bytes([host_no % 3, 0x0F]) + a.to_bytes(2, "big") + bytes([0, 0, 0, 1, 0, 0, 0, 1])
    desc_b = bytes([3, 0x08]) + (a + 0x80).to_bytes(2, "big") + bytes([0, 0, 0, 1, 0, 0, 0, 2])
    return (16 + 8).to_bytes(4, "big") + desc_a + desc_b


def scsi_debug_host(host_no: int) -> Reply:
    """Answer VPD 0x83 and RTPG as scsi_debug host ``host_no`` does."""

    def reply(hdr: sgio.SgIoHdr, cdb: bytes) -> int:
        if cdb[0] == scsi.INQUIRY and cdb[2] == 0x83:
            return data_in(_vpd83_page(((host_no + 1) & 0x7F) << 8))(hdr, cdb)
        if cdb[0] == scsi.MAINTENANCE_IN:
            return data_in(_rtpg(host_no))(hdr, cdb)
        return good(hdr, cdb)

    return reply


@pytest.mark.parametrize(
    ("host_no", "state"),
    [(6, AluaState.ACTIVE_OPTIMIZED), (7, AluaState.ACTIVE_NON_OPTIMIZED), (8, AluaState.STANDBY)],
)
def test_path_port_group(kernel: Callable[..., FakeKernel], host_no: int, state: AluaState) -> None:
    kernel(scsi_debug_host(host_no))
    group = sgio.path_port_group(FD)
    assert group is not None and group.state == state
    assert group.group_id == (host_no + 1) << 8


def test_path_wwid_and_rtpg_cdb(kernel: Callable[..., FakeKernel]) -> None:
    fake = kernel(scsi_debug_host(6))
    wwid = sgio.path_wwid(FD)
    assert wwid is not None and wwid.wwn == "0x33333330000007d0"
    report = sgio.report_target_port_groups(FD)
    assert len(report.groups) == 2
    assert fake.cdbs[-1] == scsi.cdb_report_target_port_groups(1024)


def test_rtpg_reissued_when_longer(kernel: Callable[..., FakeKernel]) -> None:
    fake = kernel(data_in(_rtpg(6)))
    report = sgio.report_target_port_groups(FD, alloc_len=16)
    assert len(report.groups) == 2 and not report.truncated
    assert [c[6:10] for c in fake.cdbs] == [(16).to_bytes(4, "big"), (28).to_bytes(4, "big")]


def test_rtpg_asked_again_through_a_unit_attention(kernel: Callable[..., FakeKernel]) -> None:
    """The first command through a port whose ALUA state changed gets 2a/06: that is a
    notice, and the answer is the next one's."""
    fake = kernel(check_condition(sense(0x6, 0x2A, 0x06)), data_in(_rtpg(8)))
    report = sgio.report_target_port_groups(FD)
    assert report.groups[0].state == AluaState.STANDBY
    assert len(fake.cdbs) == 2


def test_rtpg_gives_up_on_unit_attentions_that_never_end(
    kernel: Callable[..., FakeKernel],
) -> None:
    fake = kernel(check_condition(sense(0x6, 0x29, 0x00)))
    with pytest.raises(SgioError, match="power on, reset"):
        sgio.report_target_port_groups(FD)
    assert len(fake.cdbs) == sgio.TUR_RETRIES


def test_rtpg_other_errors_are_not_retried(kernel: Callable[..., FakeKernel]) -> None:
    fake = kernel(check_condition(sense(0x5, 0x20, 0x00)))
    with pytest.raises(SgioError, match="invalid command operation code"):
        sgio.report_target_port_groups(FD)
    assert len(fake.cdbs) == 1


def test_unit_serial(kernel: Callable[..., FakeKernel]) -> None:
    kernel(data_in(bytes([0, 0x80, 0, 4]) + b"2000"))
    assert sgio.unit_serial(FD) == "2000"


def test_devnode_is_opened_and_closed(
    kernel: Callable[..., FakeKernel], monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    def fake_open(path: str, flags: int) -> int:
        events.append("open")
        return 77

    def fake_close(fd: int) -> None:
        events.append(f"close {fd}")

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "close", fake_close)
    kernel(good)
    assert sgio.test_unit_ready("/dev/sdx").state == PathState.UP
    assert events == ["open", "close 77"]
