"""The device-mapper ioctl layer without device-mapper.

Layouts are checked against <linux/dm-ioctl.h> (offsets by hand); replies are golden bytes
built here with ``struct`` the way drivers/md/dm-ioctl.c (Linux 6.1) writes them; DmControl
runs against ``FakeDm``, a small stand-in for the kernel's side of the ioctl that answers
in the very same buffer.
"""

from __future__ import annotations

import errno
import logging
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmpath.errors import DmpathError, ParseError
from dmpath.kernel import dmioctl
from dmpath.kernel.dmioctl import (
    DmControl,
    DmControlUnavailable,
    DmFlag,
    DmIoctlError,
    DmOp,
    NoSuchMap,
    TargetSpec,
)
from dmpath.kernel.dmsetup import MapNameError
from dmpath.kernel.dmtable import DmDevice, DmInfo, PathState, parse_status, parse_table

# struct dm_ioctl written out field by field, as in the header
HDR = struct.Struct("=3I I I I i I I I Q 128s 129s 7s")
STATUS = "0 131072 multipath 2 0 0 0 1 1 A 0 2 0 8:0 A 0 8:16 A 0 "
TABLE = "0 131072 multipath 0 0 1 1 service-time 0 2 2 8:0 1 1 8:16 1 1 "


def header_bytes(
    *,
    data_size: int = 312,
    data_start: int = 312,
    target_count: int = 0,
    open_count: int = 0,
    flags: int = 0,
    event_nr: int = 0,
    dev: int = 0,
    name: bytes = b"",
    uuid: bytes = b"",
    version: tuple[int, int, int] = (4, 47, 0),
) -> bytes:
    return HDR.pack(
        *version,
        data_size,
        data_start,
        target_count,
        open_count,
        flags,
        event_nr,
        0,
        dev,
        name,
        uuid,
        b"",
    )


def align8(n: int) -> int:
    return (n + 7) & ~7


def kernel_name_list(devs: list[tuple[int, str, str | None]]) -> bytes:
    """list_devices() of dm-ioctl.c (6.1): dev, next, name, then aligned event_nr, flags
    and (asked for or not) the uuid; ``next`` counts from the record's own start."""
    if not devs:
        return struct.pack("=QI", 0, 0)
    out = bytearray()
    for i, (dev, name, uuid) in enumerate(devs):
        rec = bytearray(struct.pack("=QI", dev, 0) + name.encode() + b"\0")
        rec += b"\0" * (align8(len(rec)) - len(rec))
        rec += struct.pack("=II", 7, 1 if uuid else 2)
        if uuid is not None:
            rec += uuid.encode() + b"\0"
        rec += b"\0" * (align8(len(rec)) - len(rec))
        if i + 1 < len(devs):
            struct.pack_into("=I", rec, 8, len(rec))
        out += rec
    return bytes(out)


def kernel_specs(specs: list[tuple[int, int, str, str]]) -> bytes:
    """retrieve_status() of dm-ioctl.c: spec, params, NUL, align to 8; ``next`` counts
    from the start of the payload."""
    out = bytearray()
    for start, length, ttype, params in specs:
        here = len(out)
        out += struct.pack("=QQiI16s", start, length, 0, 0, ttype.encode())
        out += params.encode() + b"\0"
        out += b"\0" * (align8(len(out)) - len(out))
        struct.pack_into("=I", out, here + 20, len(out))
    return bytes(out)


def kernel_read_load(buf: bytes, count: int) -> list[tuple[int, int, str, str]]:
    """populate_table() of dm-ioctl.c: the first spec sits ``data_start`` from the header,
    each next one ``next`` bytes after the one before; parameters end at a NUL."""
    out = []
    (data_start,) = struct.unpack_from("=I", buf, 16)
    at, nxt = 0, data_start
    for _ in range(count):
        at += nxt
        start, length, _status, nxt, ttype = struct.unpack_from("=QQiI16s", buf, at)
        params = buf[at + 40 :].split(b"\0", 1)[0].decode()
        out.append((start, length, ttype.split(b"\0", 1)[0].decode(), params))
    return out


def reply(payload: bytes, **hdr: int | bytes) -> bytes:
    """A whole answer buffer with ``payload`` at 312 and a stale tail after it."""
    head = header_bytes(data_size=312 + len(payload), **hdr)  # type: ignore[arg-type]
    return head + payload + b"\xee" * 64


# --------------------------------------------------------------------------- layout


def test_struct_dm_ioctl_layout_is_the_kernels() -> None:
    s = dmioctl.DmIoctlStruct
    assert dmioctl.HEADER_SIZE == 312 == HDR.size
    offsets = {n: getattr(s, n).offset for n, *_ in s._fields_}
    assert offsets == {
        "version": 0,
        "data_size": 12,
        "data_start": 16,
        "target_count": 20,
        "open_count": 24,
        "flags": 28,
        "event_nr": 32,
        "padding": 36,
        "dev": 40,
        "name": 48,
        "uuid": 176,
        "data": 305,
    }
    assert dmioctl.TARGET_SPEC.size == 40
    assert dmioctl.NAME_LIST.size == 12  # the name starts right after next
    assert dmioctl.TARGET_MSG.size == 8


@pytest.mark.parametrize(
    ("op", "code"),
    [
        (DmOp.VERSION, 0xC138FD00),
        (DmOp.LIST_DEVICES, 0xC138FD02),
        (DmOp.DEV_STATUS, 0xC138FD07),
        (DmOp.TABLE_STATUS, 0xC138FD0C),
        (DmOp.TARGET_MSG, 0xC138FD0E),
    ],
)
def test_request_codes(op: DmOp, code: int) -> None:
    assert dmioctl.request_code(op) == code


def test_flag_values() -> None:
    assert (DmFlag.SUSPEND, DmFlag.STATUS_TABLE, DmFlag.BUFFER_FULL, DmFlag.DATA_OUT) == (
        2,
        16,
        256,
        65536,
    )
    assert (DmFlag.ACTIVE_PRESENT, DmFlag.INACTIVE_PRESENT, DmFlag.NOFLUSH) == (32, 64, 2048)


@pytest.mark.parametrize(
    ("major", "minor", "dev"),
    [(8, 16, 0x810), (253, 0, 0xFD00), (253, 300, 0x10FD2C), (259, 0x12345, 0x12310345)],
)
def test_dev_encoding_golden(major: int, minor: int, dev: int) -> None:
    assert dmioctl.encode_dev(major, minor) == dev
    assert dmioctl.decode_dev(dev) == (major, minor)


@given(st.integers(0, 0xFFF), st.integers(0, 0xFFFFF))
def test_dev_encoding_round_trip(major: int, minor: int) -> None:
    assert dmioctl.decode_dev(dmioctl.encode_dev(major, minor)) == (major, minor)


# --------------------------------------------------------------------------- requests


def test_pack_request_golden() -> None:
    buf = dmioctl.pack_request(name="mpatha", flags=DmFlag.STATUS_TABLE, buffer_size=400)
    want = HDR.pack(4, 0, 0, 400, 312, 0, 0, 16, 0, 0, 0, b"mpatha", b"", b"")
    assert bytes(buf) == want + bytes(88)


def test_pack_request_puts_payload_at_data_start() -> None:
    payload = dmioctl.pack_target_msg(["fail_path", "8:16"])
    assert payload == struct.pack("=Q", 0) + b"fail_path 8:16\0"
    buf = dmioctl.pack_request(uuid="dmpath-x", payload=payload)
    assert len(buf) == 312 + len(payload)
    fields = HDR.unpack_from(buf)
    assert fields[3:5] == (312 + len(payload), 312)
    assert fields[11] == bytes(128) and fields[12] == b"dmpath-x" + bytes(121)
    assert bytes(buf[312:]) == payload


def test_pack_request_refuses_name_and_uuid_and_overlong() -> None:
    with pytest.raises(DmpathError, match="not both"):
        dmioctl.pack_request(name="a", uuid="b")
    dmioctl.pack_request(name="n" * 127)
    with pytest.raises(DmpathError, match="at most 127"):
        dmioctl.pack_request(name="n" * 128)
    with pytest.raises(DmpathError, match="at most 128"):
        dmioctl.pack_request(uuid="u" * 129)


names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=40).filter(
    lambda s: len(s.encode()) < 128
)


@given(
    name=names,
    flags=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=300),
    size=st.integers(0, 4096),
)
def test_pack_then_parse_header_round_trip(
    name: str, flags: int, payload: bytes, size: int
) -> None:
    buf = dmioctl.pack_request(name=name, flags=flags, payload=payload, buffer_size=size)
    h = dmioctl.parse_header(buf)
    assert (h.version, h.name, h.uuid, h.flags) == ((4, 0, 0), name, "", flags)
    assert h.data_size == len(buf) == max(size, 312 + len(payload))
    assert bytes(buf[h.data_start : h.data_start + len(payload)]) == payload


# --------------------------------------------------------------------------- replies


def test_parse_dev_status_reply_golden() -> None:
    buf = header_bytes(
        data_size=305,
        target_count=1,
        open_count=2,
        flags=DmFlag.ACTIVE_PRESENT | DmFlag.SUSPEND,
        event_nr=5,
        dev=0xFD00 | (0x101 & 0xFF) | ((0x101 & ~0xFF) << 12),  # 253:257
        name=b"mpatha",
        uuid=b"dmpath-naa.3333",
    )
    h = dmioctl.parse_header(buf)
    assert h.version == (4, 47, 0)
    assert (h.major, h.minor, h.suspended, h.active_present, h.read_only) == (
        253,
        257,
        True,
        True,
        False,
    )
    assert h.to_info() == DmInfo("mpatha", "dmpath-naa.3333", 253, 257, 2, 1, 5)
    assert dmioctl.reply_payload(buf, h) == b""  # DEV_STATUS answers with the header only


def test_parse_header_refuses_a_short_buffer() -> None:
    with pytest.raises(ParseError, match="311 bytes"):
        dmioctl.parse_header(bytes(311))


def test_reply_payload_refuses_offsets_outside_the_buffer() -> None:
    buf = header_bytes(data_size=1000)
    with pytest.raises(ParseError, match="outside"):
        dmioctl.reply_payload(buf, dmioctl.parse_header(buf))


def test_name_list_golden() -> None:
    data = kernel_name_list([(0xFD00, "mpatha", "dmpath-a"), (0xFD01, "vg-lv", None)])
    # first record: 12 + "mpatha\0" = 19 -> 24, event/flags 8 -> 32, "dmpath-a\0" -> 48
    assert struct.unpack_from("=QI", data, 0) == (0xFD00, 48)
    assert dmioctl.parse_name_list(data) == [
        DmDevice("mpatha", 253, 0),
        DmDevice("vg-lv", 253, 1),
    ]


def test_name_list_empty() -> None:
    assert dmioctl.parse_name_list(kernel_name_list([])) == []
    assert dmioctl.parse_name_list(b"") == []


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (struct.pack("=QI", 0xFD00, 0) + b"unterminated", "no NUL"),
        (struct.pack("=QI", 0xFD00, 4) + b"a\0\0\0", "does not advance"),
        (struct.pack("=QI", 0xFD00, 16) + b"a\0\0\0", "runs past"),
    ],
)
def test_name_list_corrupt(data: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        dmioctl.parse_name_list(data)


dm_names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=127)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 0xFFF), st.integers(0, 0xFFFFF), dm_names, st.none() | dm_names
        ).filter(lambda t: t[0] or t[1]),
        max_size=8,
    )
)
def test_name_list_round_trip(devs: list[tuple[int, int, str, str | None]]) -> None:
    data = kernel_name_list([(dmioctl.encode_dev(ma, mi), n, u) for ma, mi, n, u in devs])
    assert dmioctl.parse_name_list(data) == [DmDevice(n, ma, mi) for ma, mi, n, _ in devs]


def test_status_reply_golden_text_parses_as_dmsetup_status() -> None:
    buf = reply(kernel_specs([spec(STATUS)]), target_count=1)
    assert dmioctl.status_text(buf) == STATUS
    st_ = parse_status(dmioctl.status_text(buf))
    assert [p.state for p in st_.groups[0].paths] == [PathState.ACTIVE, PathState.ACTIVE]
    assert [p.dev for p in st_.groups[0].paths] == ["8:0", "8:16"]


def test_table_reply_golden_text_parses_as_dmsetup_table() -> None:
    buf = reply(kernel_specs([spec(TABLE)]), target_count=1)
    assert dmioctl.table_text(buf) == TABLE
    assert parse_table(dmioctl.table_text(buf)).devs == ("8:0", "8:16")


def test_specs_next_counts_from_the_payload_start() -> None:
    # second spec at 48 (40 + "ab\0" aligned); third at 96 (48 + 40 + "c\0" aligned)
    data = kernel_specs([(0, 10, "linear", "ab"), (10, 5, "zero", "c"), (15, 1, "error", "")])
    assert struct.unpack_from("=I", data, 20)[0] == 48
    assert struct.unpack_from("=I", data, 48 + 20)[0] == 96
    specs = dmioctl.parse_target_specs(data, 3)
    assert specs == [
        TargetSpec(0, 10, "linear", "ab"),
        TargetSpec(10, 5, "zero", "c"),
        TargetSpec(15, 1, "error", ""),
    ]
    assert dmioctl.targets_text(specs) == "0 10 linear ab\n10 5 zero c\n15 1 error "


def test_no_table_is_empty_text() -> None:
    assert dmioctl.status_text(header_bytes(data_size=305)) == ""


@pytest.mark.parametrize(
    ("data", "count", "match"),
    [
        (b"\0" * 39, 1, "runs past"),
        (struct.pack("=QQiI16s", 0, 1, 0, 48, b"linear") + b"xx", 1, "no NUL"),
        (struct.pack("=QQiI16s", 0, 1, 0, 0, b"linear") + b"x\0", 2, "goes back"),
    ],
)
def test_specs_corrupt(data: bytes, count: int, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        dmioctl.parse_target_specs(data, count)


params = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200)
ttypes = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=15)


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), ttypes, params)))
def test_specs_round_trip(specs: list[tuple[int, int, str, str]]) -> None:
    buf = reply(kernel_specs(specs), target_count=len(specs))
    assert dmioctl.status_text(buf) == "\n".join(f"{a} {b} {t} {p}" for a, b, t, p in specs)


def test_message_reply_only_with_data_out() -> None:
    answer = reply(b"stats 1\0", flags=DmFlag.DATA_OUT)
    assert dmioctl.parse_message_reply(answer, dmioctl.parse_header(answer)) == "stats 1"
    # no DATA_OUT: the payload area still holds our own request, which is not an answer
    request = dmioctl.pack_request(name="m", payload=dmioctl.pack_target_msg(["x"]))
    assert dmioctl.parse_message_reply(request, dmioctl.parse_header(request)) == ""


# --------------------------------------------------------------------------- the fake kernel


@dataclass
class Dev:
    major: int
    minor: int
    uuid: str
    table: list[tuple[int, int, str, str]]
    status: list[tuple[int, int, str, str]]
    event_nr: int = 0
    open_count: int = 0
    suspended: bool = False
    inactive: list[tuple[int, int, str, str]] | None = None
    #: the event_nr of every resume (what udev gets as DM_COOKIE)
    cookies: list[int] = field(default_factory=list)


@dataclass
class FakeDm:
    """The kernel's half of the dm ioctls, on the caller's buffer (as dm-ioctl.c does)."""

    devs: dict[str, Dev] = field(default_factory=dict)
    calls: list[tuple[DmOp, str, int]] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    vanish_after_list: set[str] = field(default_factory=set)
    eintr: int = 0
    delay: float = 0.0
    #: ops that fail with EINVAL (a refused table, a resume that does not go through)
    refuse: set[DmOp] = field(default_factory=set)

    def __call__(self, fd: int, request: int, buf: bytearray) -> int:
        assert request & ~0xFF == 0xC138FD00
        op = DmOp(request & 0xFF)
        h = dmioctl.parse_header(buf)
        assert h.version == (4, 0, 0) and h.data_size == len(buf)
        self.calls.append((op, h.name, len(buf)))
        if self.eintr:
            self.eintr -= 1
            raise InterruptedError(errno.EINTR, "Interrupted system call")
        if self.delay:
            time.sleep(self.delay)
        size = len(buf)
        flags = h.flags & ~(DmFlag.BUFFER_FULL | DmFlag.DATA_OUT)
        struct.pack_into("=3I", buf, 0, 4, 47, 0)
        struct.pack_into("=I", buf, 12, 305)
        if op is DmOp.VERSION:
            return 0
        if op is DmOp.LIST_DEVICES:
            data = kernel_name_list(
                [(dmioctl.encode_dev(d.major, d.minor), n, d.uuid) for n, d in self.devs.items()]
            )
            for name in self.vanish_after_list:
                self.devs.pop(name, None)
            return self._out(buf, flags, data, size)
        if op in self.refuse:
            raise OSError(errno.EINVAL, "Invalid argument")
        if op is DmOp.DEV_CREATE:
            if h.name in self.devs:
                raise OSError(errno.EBUSY, "Device or resource busy")
            self.devs[h.name] = Dev(253, 10 + len(self.devs), h.uuid, [], [])
            return 0
        dev = self.devs.get(h.name)
        if dev is None:
            raise OSError(errno.ENXIO, "No such device or address")
        if op is DmOp.TABLE_LOAD:
            dev.inactive = kernel_read_load(bytes(buf), h.target_count)
            return 0
        if op is DmOp.TABLE_CLEAR:
            dev.inactive = None
            return 0
        if op is DmOp.DEV_REMOVE:
            del self.devs[h.name]
            return 0
        if op is DmOp.DEV_SUSPEND:
            if h.flags & DmFlag.SUSPEND:
                dev.suspended = True
                return 0
            dev.cookies.append(h.event_nr)
            if dev.inactive is not None:
                dev.table, dev.inactive = dev.inactive, None
                dev.status = [(a, b, t, "status") for a, b, t, _p in dev.table]
            dev.suspended = False
            return 0
        struct.pack_into(
            "=IiIIIQ128s129s",
            buf,
            20,
            len(dev.table),
            dev.open_count,
            flags | DmFlag.ACTIVE_PRESENT | (DmFlag.SUSPEND if dev.suspended else 0),
            dev.event_nr,
            0,
            dmioctl.encode_dev(dev.major, dev.minor),
            h.name.encode(),
            dev.uuid.encode(),
        )
        flags = struct.unpack_from("=I", buf, 28)[0]
        if op is DmOp.DEV_STATUS:
            return 0
        if op is DmOp.TABLE_STATUS:
            specs = dev.table if h.flags & DmFlag.STATUS_TABLE else dev.status
            return self._out(buf, flags, kernel_specs(specs), size)
        msg = bytes(buf[320:]).split(b"\0", 1)[0].decode()
        self.messages.append((h.name, msg))
        if msg.startswith("bogus"):
            raise OSError(errno.EINVAL, "Invalid argument")
        if msg == "@big":
            return self._out(buf, flags | DmFlag.DATA_OUT, b"x" * 20000 + b"\0", size)
        if msg == "@hello":
            return self._out(buf, flags | DmFlag.DATA_OUT, b"hello \0", size)
        return 0

    @staticmethod
    def _out(buf: bytearray, flags: int, data: bytes, size: int) -> int:
        if 312 + len(data) > size:
            struct.pack_into("=I", buf, 28, flags | DmFlag.BUFFER_FULL)
            return 0
        struct.pack_into("=II", buf, 12, 312 + len(data), 312)
        struct.pack_into("=I", buf, 28, flags)
        buf[312 : 312 + len(data)] = data
        return 0


def spec(line: str) -> tuple[int, int, str, str]:
    start, length, ttype, params = line.split(" ", 3)
    return int(start), int(length), ttype, params


def mpath(minor: int, status: str = STATUS, table: str = TABLE) -> Dev:
    return Dev(
        253,
        minor,
        f"dmpath-{minor}",
        table=[spec(table)],
        status=[spec(status)],
        event_nr=3,
        open_count=1,
    )


@pytest.fixture
def fake() -> FakeDm:
    return FakeDm(
        devs={
            "mpatha": mpath(0),
            "vg-root": Dev(253, 1, "LVM-x", [(0, 8, "linear", "8:1 0")], [(0, 8, "linear", "")]),
        }
    )


@pytest.fixture
def ctl(fake: FakeDm) -> Iterator[DmControl]:
    with DmControl("/dev/null", ioctl=fake) as c:
        yield c


# --------------------------------------------------------------------------- DmControl


def test_reads(ctl: DmControl, fake: FakeDm) -> None:
    assert ctl.version() == (4, 47, 0)
    assert ctl.list_devices() == [DmDevice("mpatha", 253, 0), DmDevice("vg-root", 253, 1)]
    assert ctl.info("mpatha") == DmInfo("mpatha", "dmpath-0", 253, 0, 1, 1, 3)
    assert ctl.status_text("mpatha") == STATUS
    assert ctl.table_text("mpatha") == TABLE
    assert ctl.status("mpatha") == parse_status(STATUS)
    assert ctl.table("mpatha") == parse_table(TABLE)
    assert ctl.suspended("mpatha") is False
    fake.devs["mpatha"].suspended = True
    assert ctl.dev_status("mpatha").suspended is True
    assert [op for op, _, _ in fake.calls] == [
        DmOp.VERSION,
        DmOp.LIST_DEVICES,
        DmOp.DEV_STATUS,
        DmOp.TABLE_STATUS,
        DmOp.TABLE_STATUS,
        DmOp.TABLE_STATUS,
        DmOp.TABLE_STATUS,
        DmOp.DEV_STATUS,
        DmOp.DEV_STATUS,
    ]


def test_info_by_uuid_sends_the_uuid_not_a_name(fake: FakeDm) -> None:
    seen: list[tuple[str, str]] = []

    def by_uuid(fd: int, request: int, buf: bytearray) -> int:
        h = dmioctl.parse_header(buf)
        seen.append((h.name, h.uuid))
        struct.pack_into("=128s", buf, 48, b"mpatha")
        return 0

    with DmControl("/dev/null", ioctl=by_uuid) as c:
        assert c.info_by_uuid("dmpath-0").name == "mpatha"
    assert seen == [("", "dmpath-0")]


def test_buffer_grows_until_the_answer_fits(ctl: DmControl, fake: FakeDm) -> None:
    big = "0 1 multipath " + "2 0 0 0 1 1 A 0 " * 3000  # 48 KB of status
    fake.devs["mpatha"] = mpath(0, status=big)
    assert ctl.status_text("mpatha") == big
    assert [size for _, _, size in fake.calls] == [16384, 32768, 65536]


def test_message_never_resent_on_buffer_full(ctl: DmControl, fake: FakeDm) -> None:
    with pytest.raises(DmIoctlError, match="larger than 16384 bytes") as exc:
        ctl.message("mpatha", "@big")
    assert exc.value.errno == errno.ENOBUFS
    assert fake.messages == [("mpatha", "@big")]


def test_messages(ctl: DmControl, fake: FakeDm) -> None:
    ctl.fail_path("mpatha", "8:16")
    ctl.reinstate_path("mpatha", "8:16")
    ctl.switch_group("mpatha", 2)
    ctl.queue_if_no_path("mpatha")
    ctl.fail_if_no_path("mpatha")
    assert ctl.message("mpatha", "@hello") == "hello"
    assert ctl.message("mpatha", "fail_path", "8:0") == ""
    assert [m for _, m in fake.messages] == [
        "fail_path 8:16",
        "reinstate_path 8:16",
        "switch_group 2",
        "queue_if_no_path",
        "fail_if_no_path",
        "@hello",
        "fail_path 8:0",
    ]


@pytest.mark.parametrize("words", [(), ("",), ("two words",), ("tab\t",)])
def test_message_words_checked_before_any_ioctl(
    ctl: DmControl, fake: FakeDm, words: tuple[str, ...]
) -> None:
    with pytest.raises(DmpathError, match="word"):
        ctl.message("mpatha", *words)
    assert fake.calls == []


def test_names_and_groups_checked_before_any_ioctl(ctl: DmControl, fake: FakeDm) -> None:
    with pytest.raises(MapNameError):
        ctl.status_text("a/b")
    with pytest.raises(MapNameError):
        ctl.fail_path("-x", "8:0")
    with pytest.raises(DmpathError, match="start at 1"):
        ctl.switch_group("mpatha", 0)
    assert fake.calls == []


def test_einval_is_a_dm_ioctl_error_naming_map_and_message(ctl: DmControl) -> None:
    with pytest.raises(DmIoctlError) as exc:
        ctl.message("mpatha", "bogus_message", "1")
    assert not isinstance(exc.value, NoSuchMap)
    assert exc.value.errno == errno.EINVAL
    assert str(exc.value) == (
        "mpatha: device-mapper TARGET_MSG ('bogus_message 1') failed: Invalid argument"
    )


@pytest.mark.parametrize("err", [errno.ENXIO, errno.ENODEV])
def test_missing_map_is_no_such_map(err: int) -> None:
    def gone(fd: int, request: int, buf: bytearray) -> int:
        raise OSError(err, "gone")

    with DmControl("/dev/null", ioctl=gone) as c:
        for call in (c.info, c.status, c.table_text, c.fail_if_no_path):
            with pytest.raises(NoSuchMap, match=r"^nosuch: ") as exc:
                call("nosuch")
            assert exc.value.name == "nosuch" and exc.value.errno == err


def test_eintr_is_retried(ctl: DmControl, fake: FakeDm) -> None:
    fake.eintr = 2
    assert ctl.info("mpatha").name == "mpatha"
    assert len(fake.calls) == 3


def test_read_all_keeps_single_target_multipath_maps(ctl: DmControl, fake: FakeDm) -> None:
    fake.devs["mpathb"] = mpath(2)
    fake.devs["mpathc"] = mpath(3)
    fake.devs["two"] = Dev(253, 4, "", [(0, 1, "multipath", "x"), (1, 1, "multipath", "y")], [])
    fake.vanish_after_list = {"mpathc"}
    got = ctl.read_all()
    assert sorted(got) == ["mpatha", "mpathb"]
    info, table, status = got["mpathb"]
    assert info == DmInfo("mpathb", "dmpath-2", 253, 2, 1, 1, 3)
    assert (table, status) == (parse_table(TABLE), parse_status(STATUS))
    with pytest.raises(DmpathError, match="multipath"):
        ctl.read_all("linear")


def test_each_ioctl_logged_at_debug(ctl: DmControl, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="dmpath.dmioctl"):
        ctl.fail_path("mpatha", "8:16")
    (rec,) = caplog.records
    assert rec.getMessage().startswith("TARGET_MSG mpatha 'fail_path 8:16': ")
    assert rec.getMessage().endswith(" us")


def test_threads_each_get_their_own_answer(fake: FakeDm) -> None:
    for i in range(1, 9):
        fake.devs[f"m{i}"] = mpath(i, status=f"0 {i} multipath x{i} ")
    fake.delay = 0.002  # overlap the calls while the fake "kernel" works
    got: dict[str, list[str]] = {}
    with DmControl("/dev/null", ioctl=fake) as c:

        def worker(name: str) -> None:
            got[name] = [c.status_text(name) for _ in range(20)]

        threads = [threading.Thread(target=worker, args=(f"m{i}",)) for i in range(1, 9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert got == {f"m{i}": [f"0 {i} multipath x{i} "] * 20 for i in range(1, 9)}


def test_closed_control_refuses(fake: FakeDm) -> None:
    c = DmControl("/dev/null", ioctl=fake)
    c.close()
    c.close()
    with pytest.raises(DmpathError, match="closed"):
        c.version()


def test_real_ioctl_on_a_non_dm_file_is_an_error() -> None:
    # /dev/null has no dm ioctls: the kernel answers ENOTTY through the real fcntl path
    with DmControl("/dev/null") as c, pytest.raises(DmIoctlError, match="VERSION") as exc:
        c.version()
    assert exc.value.errno == errno.ENOTTY


def test_open_control_without_device_mapper(tmp_path: Path) -> None:
    with pytest.raises(DmControlUnavailable, match="no device-mapper"):
        dmioctl.open_control(str(tmp_path / "control"))
    with pytest.raises(DmControlUnavailable, match="cannot open"):
        DmControl(str(tmp_path / "control"))


# --------------------------------------------------------------------------- map lifecycle


def test_pack_target_specs_golden() -> None:
    got = dmioctl.pack_target_specs(
        [TargetSpec(0, 8, "linear", "8:0 0"), TargetSpec(8, 8, "linear", "8:16 0")]
    )
    # 40-byte spec + "8:0 0\0" = 46, padded to 48; next counts from the record itself
    first = struct.pack("=QQiI16s", 0, 8, 0, 48, b"linear") + b"8:0 0\0" + b"\0\0"
    second = struct.pack("=QQiI16s", 8, 8, 0, 0, b"linear") + b"8:16 0\0" + b"\0"
    assert got == first + second


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**40),
            st.integers(1, 2**40),
            st.sampled_from(["multipath", "linear", "error"]),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_pack_target_specs_reads_back_as_the_kernel_reads_it(
    specs: list[tuple[int, int, str, str]],
) -> None:
    payload = dmioctl.pack_target_specs([TargetSpec(*t) for t in specs])
    buf = dmioctl.pack_request(name="m", payload=payload)
    struct.pack_into("=I", buf, 20, len(specs))  # target_count, as the caller sets it
    assert kernel_read_load(bytes(buf), len(specs)) == specs
    assert len(payload) % 8 == 0


@pytest.mark.parametrize(
    ("spec_", "match"),
    [
        (TargetSpec(0, 1, "", "x"), "target type"),
        (TargetSpec(0, 1, "a-very-long-target", "x"), "target type"),
        (TargetSpec(0, 1, "linear", "a\0b"), "one line"),
        (TargetSpec(0, 1, "linear", "a\nb"), "one line"),
    ],
)
def test_pack_target_specs_refuses(spec_: TargetSpec, match: str) -> None:
    with pytest.raises(DmpathError, match=match):
        dmioctl.pack_target_specs([spec_])


def test_table_specs_from_model_and_text() -> None:
    (spec_,) = dmioctl.table_specs(parse_table(TABLE))
    assert (spec_.start, spec_.length, spec_.target_type) == (0, 131072, "multipath")
    assert parse_table(spec_.text()) == parse_table(TABLE)
    assert dmioctl.table_specs(TABLE + "\n") == [
        TargetSpec(0, 131072, "multipath", TABLE.split(" ", 3)[3].strip())
    ]
    for bad in ("", "0 1", "x 1 multipath 0", "0 1 multipath a\n0 1 multipath b"):
        with pytest.raises(DmpathError, match="one-line"):
            dmioctl.table_specs(bad)


def test_create_is_create_load_resume_with_dmsetups_udev_flags(
    ctl: DmControl, fake: FakeDm
) -> None:
    ctl.create("mpathb", TABLE, "dmpath-b")
    assert [(op, n) for op, n, _ in fake.calls] == [
        (DmOp.DEV_CREATE, "mpathb"),
        (DmOp.TABLE_LOAD, "mpathb"),
        (DmOp.DEV_SUSPEND, "mpathb"),
    ]
    dev = fake.devs["mpathb"]
    assert dev.uuid == "dmpath-b" and not dev.suspended
    assert ctl.table_text("mpathb") == TABLE.strip()
    # DM_UDEV_PRIMARY_SOURCE_FLAG | DM_UDEV_DISABLE_LIBRARY_FALLBACK in the upper half
    assert dev.cookies == [0x0060 << 16]


def test_create_sends_name_and_uuid_together(fake: FakeDm) -> None:
    seen: list[tuple[DmOp, str, str]] = []

    def spy(fd: int, request: int, buf: bytearray) -> int:
        h = dmioctl.parse_header(buf)
        seen.append((DmOp(request & 0xFF), h.name, h.uuid))
        return fake(fd, request, buf)

    with DmControl("/dev/null", ioctl=spy) as c:
        c.create("mpathb", TABLE, "dmpath-b")
    assert seen[0] == (DmOp.DEV_CREATE, "mpathb", "dmpath-b")
    assert all(uuid == "" for _op, _n, uuid in seen[1:])  # the rest name the map only


@pytest.mark.parametrize("failing", [DmOp.TABLE_LOAD, DmOp.DEV_SUSPEND])
def test_create_that_fails_removes_the_half_made_map(
    ctl: DmControl, fake: FakeDm, failing: DmOp
) -> None:
    fake.refuse = {failing}
    with pytest.raises(DmIoctlError, match="mpathb") as exc:
        ctl.create("mpathb", TABLE, "dmpath-b")
    assert exc.value.errno == errno.EINVAL
    assert "mpathb" not in fake.devs
    assert fake.calls[-1][:2] == (DmOp.DEV_REMOVE, "mpathb")


def test_create_checks_name_uuid_and_table_before_any_ioctl(
    ctl: DmControl, fake: FakeDm
) -> None:
    with pytest.raises(MapNameError):
        ctl.create("a/b", TABLE, "dmpath-b")
    with pytest.raises(MapNameError):
        ctl.create("mpathb", TABLE, "")
    with pytest.raises(DmpathError, match="one-line"):
        ctl.create("mpathb", "garbage", "dmpath-b")
    assert fake.calls == []


def test_create_of_an_existing_name_is_refused_and_leaves_it(
    ctl: DmControl, fake: FakeDm
) -> None:
    with pytest.raises(DmIoctlError) as exc:
        ctl.create("mpatha", TABLE, "dmpath-x")
    assert exc.value.errno == errno.EBUSY
    assert fake.devs["mpatha"].uuid == "dmpath-0"
    assert [op for op, _, _ in fake.calls] == [DmOp.DEV_CREATE]


def test_reload_is_load_noflush_suspend_resume(ctl: DmControl, fake: FakeDm) -> None:
    new = TABLE.replace("2 2 8:0 1 1 8:16 1 1", "1 2 8:0 1 1")
    flags: list[int] = []

    def spy(fd: int, request: int, buf: bytearray) -> int:
        flags.append(dmioctl.parse_header(buf).flags)
        return fake(fd, request, buf)

    with DmControl("/dev/null", ioctl=spy) as c:
        c.reload("mpatha", new)
    assert [op for op, _, _ in fake.calls] == [
        DmOp.TABLE_LOAD,
        DmOp.DEV_SUSPEND,
        DmOp.DEV_SUSPEND,
    ]
    assert flags[1] == DmFlag.SUSPEND | DmFlag.NOFLUSH
    assert flags[2] == 0
    dev = fake.devs["mpatha"]
    assert not dev.suspended and dev.inactive is None
    assert ctl.table_text("mpatha") == new.strip()
    # as a create's, plus DM_SUBSYSTEM_UDEV_FLAG0: a reload, nothing on the map changed
    assert dev.cookies == [0x0160 << 16]


def test_a_reload_to_a_table_without_paths_says_so_to_udev(ctl: DmControl, fake: FakeDm) -> None:
    pathless = replace(parse_table(TABLE), groups=(), initial_pg=0)
    ctl.reload("mpatha", pathless)
    # DM_SUBSYSTEM_UDEV_FLAG0 (reload) and FLAG2 (no path): udev must not read the map
    assert fake.devs["mpatha"].cookies == [0x0560 << 16]


def test_reload_with_a_refused_table_changes_nothing(ctl: DmControl, fake: FakeDm) -> None:
    fake.refuse = {DmOp.TABLE_LOAD}
    with pytest.raises(DmIoctlError):
        ctl.reload("mpatha", TABLE)
    assert [op for op, _, _ in fake.calls] == [DmOp.TABLE_LOAD]
    assert not fake.devs["mpatha"].suspended


def test_reload_whose_suspend_fails_clears_the_loaded_table(
    ctl: DmControl, fake: FakeDm
) -> None:
    real = fake.__call__

    def no_suspend(fd: int, request: int, buf: bytearray) -> int:
        if request & 0xFF == DmOp.DEV_SUSPEND and dmioctl.parse_header(buf).flags & 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, request, buf)

    with DmControl("/dev/null", ioctl=no_suspend) as c, pytest.raises(DmIoctlError):
        c.reload("mpatha", TABLE)
    dev = fake.devs["mpatha"]
    assert dev.inactive is None and not dev.suspended
    assert [op for op, _, _ in fake.calls] == [DmOp.TABLE_LOAD, DmOp.TABLE_CLEAR]


def test_reload_says_when_the_map_is_left_suspended(fake: FakeDm) -> None:
    resumes = []

    def no_resume(fd: int, request: int, buf: bytearray) -> int:
        h = dmioctl.parse_header(buf)
        if request & 0xFF == DmOp.DEV_SUSPEND and not h.flags & 2:
            resumes.append(h.name)
            raise OSError(errno.EIO, "Input/output error")
        return fake(fd, request, buf)

    with (
        DmControl("/dev/null", ioctl=no_resume) as c,
        pytest.raises(DmIoctlError, match="left SUSPENDED") as exc,
    ):
        c.reload("mpatha", TABLE)
    assert exc.value.errno == errno.EIO and exc.value.name == "mpatha"
    # one resume, not retried here: the caller resumes and reports the failure
    assert fake.devs["mpatha"].suspended
    assert resumes == ["mpatha"]
