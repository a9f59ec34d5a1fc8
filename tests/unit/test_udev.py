"""udev records from captured ``udevadm info --export`` output, predicates, dm path events."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmpath.errors import ParseError
from dmpath.kernel import udev
from dmpath.kernel.udev import DmAction, UdevRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SD_NAMES = ["sda", "sdb", "sdc", "sdd"]


def export(rel: str) -> str:
    return (FIXTURES / rel).read_text()


def sd(name: str) -> UdevRecord:
    return udev.record_from_export(export(f"udev/udev_{name}.txt"))


def sysfs_line(name: str) -> list[str]:
    for line in export("udev/sysfs_paths.txt").splitlines():
        if line.split()[0] == name:
            return line.split()
    raise AssertionError(name)


@pytest.mark.parametrize("name", SD_NAMES)
def test_scsi_path_record(name: str) -> None:
    rec = sd(name)
    _, devnum, hctl, *_ = sysfs_line(name)
    assert rec.sys_name == name
    assert rec.devnode == f"/dev/{name}"
    assert rec.devnum == devnum
    assert rec.hctl == hctl
    assert rec.devtype == "disk" and rec.subsystem == "block" and rec.action is None
    assert rec.sys_path == "/sys" + rec.properties["DEVPATH"]
    assert udev.is_disk(rec) and udev.is_scsi(rec) and not udev.is_dm(rec)
    assert udev.dm_name(rec) is None and udev.dm_path_event(rec) is None


def test_values_unquoted_and_enc_kept_raw() -> None:
    rec = sd("sda")
    assert rec.properties["ID_VENDOR"] == "Linux"
    assert rec.properties["SCSI_VENDOR_ENC"] == "Linux\\x20\\x20\\x20"  # as pyudev shows it
    assert udev.decode_udev_enc(rec.properties["SCSI_VENDOR_ENC"]) == "Linux   "
    assert udev.decode_udev_enc(rec.properties["ID_MODEL_ENC"]) == "scsi_debug      "
    assert rec.get("TAGS") == ":systemd:"
    assert rec.get("NOPE") is None and rec.get("NOPE", "x") == "x"


def test_wwid_sources_and_grouping() -> None:
    recs = [sd(n) for n in SD_NAMES]
    assert udev.wwid_from_udev(recs[0]) == "1Linux_scsi_debug_2000"
    assert udev.wwid_from_udev(recs[0], source=("ID_WWN",)) == "0x33333330000007d0"
    assert udev.wwid_from_udev(recs[0], source=("NO_SUCH", "ID_WWN")) == "0x33333330000007d0"
    assert udev.wwid_from_udev(recs[0], source=("NO_SUCH",)) is None
    groups: dict[str | None, list[str]] = {}
    for r in recs:
        groups.setdefault(udev.wwid_from_udev(r), []).append(r.sys_name)
    assert groups == {
        "1Linux_scsi_debug_2000": ["sda", "sdc"],
        "1Linux_scsi_debug_2001": ["sdb", "sdd"],
    }


def test_dm_map_record() -> None:
    rec = udev.record_from_export(export("dm/udev_dm_map.txt"))
    assert rec.sys_name == "dm-0" and rec.devnum == "254:0" and rec.hctl is None
    assert udev.is_dm(rec) and udev.is_disk(rec) and not udev.is_scsi(rec)
    assert udev.dm_name(rec) == "mpt0"
    assert udev.dm_uuid(rec) == "dmpath-test0"
    assert udev.dm_path_event(rec) is None


def test_records_are_frozen_values() -> None:
    a, b = sd("sda"), sd("sda")
    assert a == b and hash(a) == hash(b)
    assert a != sd("sdc")
    with pytest.raises(AttributeError):
        a.sys_name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.properties["ID_WWN"] = "x"  # type: ignore[index]
    assert {a, b} == {a}


def dm_event(**extra: str) -> UdevRecord:
    props = dict(udev.parse_export(export("dm/udev_dm_map.txt")))
    props.update(ACTION="change", DM_TARGET="multipath", DM_SEQNUM="3")
    props.update(extra)
    return udev.record_from_properties(props)


def test_dm_path_failed_event() -> None:
    rec = dm_event(DM_ACTION="PATH_FAILED", DM_PATH="8:0", DM_NR_VALID_PATHS="1")
    assert rec.action == "change"
    ev = udev.dm_path_event(rec)
    assert ev is not None
    assert ev.action == DmAction.PATH_FAILED
    assert ev.path == "8:0" and ev.nr_valid_paths == 1
    assert ev.map_name == "mpt0" and ev.map_uuid == "dmpath-test0" and ev.seqnum == 3


def test_dm_path_reinstated_event() -> None:
    ev = udev.dm_path_event(
        dm_event(DM_ACTION="PATH_REINSTATED", DM_PATH="8:32", DM_NR_VALID_PATHS="2")
    )
    assert ev is not None and ev.action == DmAction.PATH_REINSTATED
    assert (ev.path, ev.nr_valid_paths) == ("8:32", 2)


@pytest.mark.parametrize(
    "extra",
    [
        {"DM_ACTION": "PATH_FAILED"},  # no DM_PATH
        {"DM_ACTION": "SOMETHING_ELSE", "DM_PATH": "8:0"},
        {"DM_PATH": "8:0"},
    ],
)
def test_not_a_path_event(extra: dict[str, str]) -> None:
    assert udev.dm_path_event(dm_event(**extra)) is None


def test_path_event_with_odd_numbers() -> None:
    ev = udev.dm_path_event(
        dm_event(DM_ACTION="PATH_FAILED", DM_PATH="8:0", DM_NR_VALID_PATHS="x", DM_SEQNUM="")
    )
    assert ev is not None and ev.nr_valid_paths is None and ev.seqnum is None


def test_action_argument_overrides() -> None:
    rec = udev.record_from_export(export("udev/udev_sda.txt"), action="add")
    assert rec.action == "add"
    assert udev.record_from_export(export("udev/udev_sda.txt"), sys_root="/x").sys_path.startswith(
        "/x/devices/"
    )


def test_export_errors() -> None:
    with pytest.raises(ParseError, match="line 2"):
        udev.parse_export("A='1'\nnot a property line\n")
    with pytest.raises(ParseError, match="DEVPATH"):
        udev.record_from_export("DEVNAME='/dev/sda'\n")
    assert udev.parse_export("\nA=\"x y\"\nB=plain\nC=''\n") == {"A": "x y", "B": "plain", "C": ""}


def test_hctl_from_devpath() -> None:
    assert (
        udev.hctl_from_devpath("/devices/pseudo_0/adapter0/host6/target6:0:0/6:0:0:1/block/sdb")
        == "6:0:0:1"
    )
    assert (
        udev.hctl_from_devpath(
            "/devices/platform/host2/session1/target2:0:0/2:0:0:0/block/sda/sda1"
        )
        == "2:0:0:0"
    )
    assert udev.hctl_from_devpath("/devices/virtual/block/dm-0") is None


class FakeDevice(SimpleNamespace):
    """Enough of pyudev.Device for record_from_device."""


def fake_device(rec: UdevRecord, action: str | None = None) -> Any:
    major, minor = (int(x) for x in (rec.devnum or "0:0").split(":"))
    return FakeDevice(
        properties=dict(rec.properties),
        sys_name=rec.sys_name,
        device_node=rec.devnode,
        device_number=os.makedev(major, minor),
        device_type=rec.devtype,
        subsystem=rec.subsystem,
        action=action,
        sys_path=rec.sys_path,
    )


@pytest.mark.parametrize("name", [*SD_NAMES, "dm"])
def test_record_from_device_equals_export(name: str) -> None:
    rec = udev.record_from_export(export("dm/udev_dm_map.txt")) if name == "dm" else sd(name)
    assert udev.record_from_device(fake_device(rec)) == rec
    assert udev.record_from_device(fake_device(rec, "change")).action == "change"


def udev_message(props: dict[str, str], action: str) -> bytes:
    """A message as udevd multicasts it: header, then NUL-separated KEY=value pairs
    (the layout of the captured ``monitor_*.bin`` fixtures)."""
    body = b"".join(f"{k}={v}".encode() + b"\0" for k, v in {"ACTION": action, **props}.items())
    head = udev._UDEV_HEADER
    return (
        head.pack(
            b"libudev\0", socket.htonl(0xFEEDCAFE), head.size, head.size, len(body), 0, 0, 0, 0
        )
        + body
    )


class FakeMonitor:
    """pyudev's monitor as far as ``Monitor`` uses it (it makes the socket; we read)."""

    def __init__(self) -> None:
        self.started = False
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def start(self) -> None:
        self.started = True

    def fileno(self) -> int:
        return self.ours.fileno()

    def send(self, *messages: bytes) -> None:
        for m in messages:
            self.theirs.send(m)


def monitor(fake: FakeMonitor, trusted_uid: int | None = None) -> udev.Monitor:
    uid = os.getuid() if trusted_uid is None else trusted_uid
    mon = udev.Monitor(fake, sock=fake.ours, trusted_uid=uid)
    mon.start()
    return mon


def test_monitor_reads_messages_and_never_blocks() -> None:
    sda, sdc = sd("sda"), sd("sdc")
    fake = FakeMonitor()
    mon = monitor(fake)
    assert fake.started and mon.fileno() == fake.ours.fileno()
    assert mon.receive() is None  # nothing queued: at once, no wait
    fake.send(
        udev_message(dict(sda.properties), "change"), udev_message(dict(sdc.properties), "remove")
    )
    first = mon.receive()
    assert first is not None
    props = udev._frozen({"ACTION": "change", **sda.properties})
    assert first == dataclasses.replace(sda, action="change", properties=props)
    rest = mon.drain()
    assert [(r.sys_name, r.action) for r in rest] == [("sdc", "remove")]
    assert mon.receive() is None


def test_monitor_refuses_what_libudev_refuses() -> None:
    fake = FakeMonitor()
    good = udev_message(dict(sd("sda").properties), "change")
    untrusted = monitor(fake, trusted_uid=os.getuid() + 1)
    fake.send(good)
    assert untrusted.drain() == [] and untrusted.dropped == 1  # not root's
    mon = monitor(fake)
    fake.send(b"garbage", good[:20], good.replace(b"libudev\0", b"libudex\0"), good)
    assert [r.sys_name for r in mon.drain()] == ["sda"]
    assert mon.dropped == 3


def test_monitor_drops_dm_events_that_are_not_path_events_or_writes() -> None:
    dm = {
        k: v
        for k, v in udev.record_from_export(export("dm/udev_dm_map.txt")).properties.items()
        if k != "DM_COOKIE"
    }
    ours = {**dm, "DM_COOKIE": "4259840"}  # a resume of ours: udev flags in the cookie
    failed = {**ours, "DM_ACTION": "PATH_FAILED", "DM_PATH": "8:16"}
    fake = FakeMonitor()
    mon = monitor(fake)  # before the messages: credentials come with those sent after
    fake.send(
        udev_message(ours, "add"),
        udev_message(ours, "change"),
        udev_message(failed, "change"),
        udev_message(dict(sd("sda").properties), "change"),
        udev_message(dm, "change"),  # udev's watch: written and closed (no cookie)
        udev_message(dm, "add"),
    )
    got = mon.drain()
    assert [(r.sys_name, r.action, r.get("DM_ACTION")) for r in got] == [
        ("dm-0", "change", "PATH_FAILED"),
        ("sda", "change", None),
        ("dm-0", "change", None),
    ]
    ev = udev.dm_path_event(got[0])
    assert ev is not None and ev.path == "8:16"


def test_monitor_keeps_scsi_device_events_that_report_a_unit_attention() -> None:
    ua = udev.parse_monitor_message((FIXTURES / "udev/monitor_sdev_alua_changed.bin").read_bytes())
    assert ua is not None
    added = {k: v for k, v in ua.items() if k != "SDEV_UA"}
    fake = FakeMonitor()
    mon = monitor(fake)
    fake.send(udev_message(added, "add"), udev_message(ua, "change"))
    got = mon.drain()
    assert [(r.sys_name, r.get("SDEV_UA")) for r in got] == [
        ("6:0:0:0", "ASYMMETRIC_ACCESS_STATE_CHANGED")
    ]


def test_an_alua_state_change_is_told_on_the_scsi_device() -> None:
    """Captured in the lab: LIO moved a portal's port group to standby, and the first
    command through it got a unit attention 2a/06, which the midlayer reports as a change
    of the scsi_device (the disk's own events say nothing of it)."""
    props = udev.parse_monitor_message(
        (FIXTURES / "udev/monitor_sdev_alua_changed.bin").read_bytes()
    )
    assert props is not None
    rec = udev.record_from_properties(props)
    assert udev.alua_changed(rec) and not udev.is_disk(rec)
    assert (rec.subsystem, rec.devtype, rec.hctl) == ("scsi", "scsi_device", "6:0:0:0")
    assert not udev.alua_changed(dataclasses.replace(rec, action="add"))
    assert not udev.alua_changed(sd("sda"))


@pytest.mark.parametrize(
    ("name", "sys_name", "action"),
    [
        ("sd_change", "sda", "change"),
        ("dm_path_failed", "dm-0", "change"),
        ("dm_path_reinstated", "dm-0", "change"),
    ],
)
def test_captured_monitor_messages(name: str, sys_name: str, action: str) -> None:
    props = udev.parse_monitor_message((FIXTURES / f"udev/monitor_{name}.bin").read_bytes())
    assert props is not None
    rec = udev.record_from_properties(props)
    assert (rec.sys_name, rec.action) == (sys_name, action)
    assert rec.devnode == f"/dev/{sys_name}"
    if name.startswith("dm_"):
        ev = udev.dm_path_event(rec)
        assert ev is not None
        assert ev.action == ("PATH_FAILED" if name.endswith("failed") else "PATH_REINSTATED")
    else:
        assert udev.is_scsi(rec) and rec.hctl is not None


def test_kernel_uevents_parse_too() -> None:
    raw = (
        b"change@/devices/virtual/block/dm-3\0ACTION=change\0DEVPATH=/devices/virtual/"
        b"block/dm-3\0SUBSYSTEM=block\0DEVNAME=dm-3\0MAJOR=254\0MINOR=3\0"
    )
    props = udev.parse_monitor_message(raw)
    assert props is not None
    rec = udev.record_from_properties(props)
    assert (rec.devnode, rec.devnum, rec.action) == ("/dev/dm-3", "254:3", "change")
    assert udev.parse_monitor_message(b"change /devices\0ACTION=change\0") is None


@given(st.binary(max_size=300))
def test_parse_monitor_message_never_raises(data: bytes) -> None:
    props = udev.parse_monitor_message(data)
    if props is not None:
        udev.record_from_properties(props)


@given(st.text(max_size=200))
def test_parse_export_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        props = udev.parse_export(text)
        with contextlib.suppress(ParseError):
            udev.record_from_properties(props)


def test_record_from_real_pyudev_device() -> None:
    """The attribute names record_from_device reads are pyudev's real ones (/dev/null)."""
    pyudev = pytest.importorskip("pyudev")
    try:
        ctx = pyudev.Context()
        dev = pyudev.Devices.from_sys_path(ctx, "/sys/devices/virtual/mem/null")
    except (ImportError, OSError, pyudev.DeviceNotFoundError) as err:
        pytest.skip(f"no libudev or sysfs here: {err}")
    rec = udev.record_from_device(dev)
    assert (rec.sys_name, rec.devnode, rec.devnum, rec.subsystem) == (
        "null",
        "/dev/null",
        "1:3",
        "mem",
    )
    assert rec.properties["DEVPATH"] == "/devices/virtual/mem/null" and rec.hctl is None


def test_enumerate_with_a_given_context() -> None:
    rec = sd("sdc")

    class Ctx:
        def list_devices(self, **match: str) -> list[Any]:
            assert match == {"subsystem": "block", "DEVTYPE": "disk"}
            return [fake_device(rec), fake_device(sd("sda"))]

    assert [r.sys_name for r in udev.enumerate_block_disks(Ctx())] == ["sda", "sdc"]
