"""Path facts from a fake sysfs tree laid out as the lab's kernel lays out scsi_debug.

The tree is built from the captured facts (fixtures/udev/sysfs_paths.txt,
fixtures/dm/sysfs_paths.txt, fixtures/udev/udev_sd*.txt DEVPATHs): same names, devnums,
HCTLs, vendor/model, WWIDs, states, sizes and device-handler states.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmpath.errors import DeviceError
from dmpath.kernel import sysfs
from dmpath.kernel.sysfs import Transport

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass(frozen=True)
class Captured:
    name: str
    devnum: str
    hctl: str
    vendor: str
    model: str
    wwid: str
    state: str
    size: int
    dh: str
    devpath: str


def captured_paths() -> list[Captured]:
    dh = {}
    for line in (FIXTURES / "dm/sysfs_paths.txt").read_text().splitlines():
        parts = line.split()
        dh[parts[0]] = dict(p.split("=", 1) for p in parts[3:])["dh"]
    out = []
    for line in (FIXTURES / "udev/sysfs_paths.txt").read_text().splitlines():
        name, devnum, hctl, vendor, model, *kv = line.split()
        attrs = dict(p.split("=", 1) for p in kv)
        devpath = next(
            ln.split("=", 1)[1].strip("'")
            for ln in (FIXTURES / f"udev/udev_{name}.txt").read_text().splitlines()
            if ln.startswith("DEVPATH=")
        )
        out.append(
            Captured(
                name,
                devnum,
                hctl,
                vendor,
                model,
                attrs["wwid"],
                attrs["state"],
                int(attrs["size"]),
                dh[name],
                devpath,
            )
        )
    return out


PATHS = captured_paths()


def build_tree(root: Path, paths: list[Captured]) -> Path:
    """A /sys with block/, devices/ and class/ for the captured paths (and dm-0)."""
    sys_root = root / "sys"
    (sys_root / "block").mkdir(parents=True)
    for p in paths:
        blockdir = sys_root / p.devpath.lstrip("/")
        blockdir.mkdir(parents=True)
        (blockdir / "dev").write_text(p.devnum + "\n")
        (blockdir / "size").write_text(f"{p.size}\n")
        (blockdir / "ro").write_text("0\n")
        sdev = blockdir.parent.parent
        assert sdev.name == p.hctl
        # the kernel pads vendor (8) and model (16) with spaces, as INQUIRY does
        (sdev / "vendor").write_text(f"{p.vendor:<8}\n")
        (sdev / "model").write_text(f"{p.model:<16}\n")
        (sdev / "rev").write_text("0191\n")
        (sdev / "state").write_text(p.state + "\n")
        (sdev / "wwid").write_text(p.wwid + "\n")
        (sdev / "dh_state").write_text(p.dh + "\n")
        (sdev / "timeout").write_text("30\n")
        os.symlink(os.path.relpath(sdev, blockdir), blockdir / "device")
        os.symlink(os.path.relpath(blockdir, sys_root / "block"), sys_root / "block" / p.name)
    dm = sys_root / "devices/virtual/block/dm-0"
    dm.mkdir(parents=True)
    (dm / "dev").write_text("254:0\n")
    (dm / "size").write_text("65536\n")
    (dm / "ro").write_text("0\n")
    os.symlink(os.path.relpath(dm, sys_root / "block"), sys_root / "block" / "dm-0")
    return sys_root


@pytest.fixture
def sys_root(tmp_path: Path) -> Path:
    return build_tree(tmp_path, PATHS)


@pytest.mark.parametrize("cap", PATHS, ids=[p.name for p in PATHS])
def test_read_path_facts_matches_capture(sys_root: Path, cap: Captured) -> None:
    facts = sysfs.read_path_facts(cap.name, sys_root=str(sys_root))
    assert facts.name == cap.name
    assert facts.devnum == cap.devnum
    assert facts.hctl == cap.hctl
    assert facts.host == int(cap.hctl.split(":")[0])
    assert facts.lun == int(cap.hctl.split(":")[3])
    assert (facts.vendor, facts.model, facts.rev) == (cap.vendor, cap.model, "0191")
    assert facts.size_sectors == cap.size
    assert facts.scsi_state == cap.state and facts.online
    assert facts.wwid_sysfs == cap.wwid
    assert facts.dh_state == cap.dh
    assert facts.access_state is None and facts.preferred_path is None
    assert facts.io_timeout_s == 30
    assert not facts.read_only
    assert facts.transport == Transport.SCSI_UNSPEC  # scsi_debug: pseudo bus, no class
    assert facts.sys_path == str(sys_root / cap.devpath.lstrip("/"))


def test_same_lun_same_wwid(sys_root: Path) -> None:
    by_wwid: dict[str, list[str]] = {}
    for p in PATHS:
        facts = sysfs.read_path_facts(p.name, sys_root=str(sys_root))
        assert facts.wwid_sysfs is not None
        by_wwid.setdefault(facts.wwid_sysfs, []).append(facts.name)
    assert sorted(by_wwid.values()) == [["sda", "sdc"], ["sdb", "sdd"]]


def test_alua_handler_attributes_and_offline(sys_root: Path) -> None:
    sdev = (sys_root / "block/sda/device").resolve()
    (sdev / "dh_state").write_text("alua\n")
    (sdev / "access_state").write_text("active/optimized\n")
    (sdev / "preferred_path").write_text("0\n")
    (sdev / "state").write_text("offline\n")
    facts = sysfs.read_path_facts("sda", sys_root=str(sys_root))
    assert facts.dh_state == "alua" and facts.access_state == "active/optimized"
    assert facts.preferred_path is False
    assert facts.scsi_state == "offline" and not facts.online


def test_dm_device_has_no_scsi_facts(sys_root: Path) -> None:
    facts = sysfs.read_path_facts("dm-0", sys_root=str(sys_root))
    assert facts.devnum == "254:0" and facts.hctl is None and facts.host is None
    assert facts.vendor is None and facts.scsi_state is None and facts.online
    assert facts.transport == Transport.UNDEF


def test_fc_host_class_wins(sys_root: Path) -> None:
    (sys_root / "class/fc_host/host6").mkdir(parents=True)
    assert sysfs.read_path_facts("sda", sys_root=str(sys_root)).transport == Transport.SCSI_FCP
    assert sysfs.read_path_facts("sdc", sys_root=str(sys_root)).transport == (Transport.SCSI_UNSPEC)


def test_missing_device(sys_root: Path) -> None:
    with pytest.raises(DeviceError, match="sdq"):
        sysfs.read_path_facts("sdq", sys_root=str(sys_root))


def test_set_device_state(sys_root: Path) -> None:
    state = sys_root / "block/sdc/device/state"
    sysfs.set_device_state("sdc", "offline", sys_root=str(sys_root))
    assert state.read_text() == "offline\n"
    sysfs.set_device_state("sdc", "running", sys_root=str(sys_root))
    assert state.read_text() == "running\n"
    with pytest.raises(ValueError):
        sysfs.set_device_state("sdc", "blocked", sys_root=str(sys_root))
    with pytest.raises(DeviceError, match="sdq"):
        sysfs.set_device_state("sdq", "offline", sys_root=str(sys_root))


@pytest.mark.parametrize(
    ("path", "classes", "nvme", "expected"),
    [
        (
            "/sys/devices/pseudo_0/adapter0/host6/target6:0:0/6:0:0:0/block/sda",
            (),
            None,
            Transport.SCSI_UNSPEC,
        ),
        (
            "/sys/devices/pci0000:00/0000:00:03.0/0000:08:00.0/host3/rport-3:0-0/"
            "target3:0:0/3:0:0:1/block/sdb",
            (),
            None,
            Transport.SCSI_FCP,
        ),
        (
            "/sys/devices/platform/host2/session1/target2:0:0/2:0:0:0/block/sda",
            (),
            None,
            Transport.SCSI_ISCSI,
        ),
        (
            "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/host0/port-0:0/"
            "end_device-0:0/target0:0:0/0:0:0:0/block/sda",
            (),
            None,
            Transport.SCSI_SAS,
        ),
        (
            "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda",
            (),
            None,
            Transport.SCSI_ATA,
        ),
        (
            "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/"
            "4:0:0:0/block/sdc",
            (),
            None,
            Transport.SCSI_USB,
        ),
        (
            "/sys/devices/platform/host2/session1/target2:0:0/2:0:0:0/block/sda",
            ("fc_host",),
            None,
            Transport.SCSI_FCP,
        ),
        (
            "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1",
            (),
            "pcie",
            Transport.NVME_PCIE,
        ),
        ("/sys/devices/virtual/nvme-fabrics/ctl/nvme1/nvme1n1", (), "tcp\n", Transport.NVME_TCP),
        (
            "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
            (),
            None,
            Transport.NVME_UNSPEC,
        ),
        ("/sys/devices/virtual/block/dm-0", (), None, Transport.UNDEF),
        ("/sys/devices/virtual/block/loop0", (), None, Transport.UNDEF),
    ],
)
def test_detect_transport(
    path: str, classes: tuple[str, ...], nvme: str | None, expected: Transport
) -> None:
    assert sysfs.detect_transport(path, frozenset(classes), nvme) == expected


def test_parse_hctl_and_host_number() -> None:
    assert sysfs.parse_hctl("6:0:0:1") == (6, 0, 0, 1)
    assert sysfs.parse_hctl(" 10:2:3:4\n") == (10, 2, 3, 4)
    for bad in (None, "", "6:0:0", "a:b:c:d", "target6:0:0"):
        assert sysfs.parse_hctl(bad) is None
    assert sysfs.scsi_host_number("/sys/devices/pseudo_0/adapter1/host7/target7:0:0/x") == 7
    assert sysfs.scsi_host_number("/sys/devices/virtual/block/dm-0") is None


ISCSI_SDB = "/devices/platform/host3/session2/target3:0:0/3:0:0:0/block/sdb"
FC_SDC = "/devices/pci0000:00/0000:00:03.0/host6/rport-6:0-1/target6:0:1/6:0:1:4/block/sdc"


def test_transport_timers_by_option() -> None:
    iscsi = sysfs.transport_timers(ISCSI_SDB, "/r")
    assert iscsi["fast_io_fail_tmo"] == sysfs.TransportTimer(
        "session2", "recovery_tmo", "/r/class/iscsi_session/session2/recovery_tmo"
    )
    assert "dev_loss_tmo" not in iscsi  # a session is kept until it is logged out
    host = ISCSI_SDB.split("/host", 1)[1].split("/", 1)[0]
    assert iscsi["eh_deadline"] == sysfs.TransportTimer(
        f"host{host}", "eh_deadline", f"/r/class/scsi_host/host{host}/eh_deadline"
    )
    fc = sysfs.transport_timers(FC_SDC)
    # dev_loss_tmo first: the port refuses a fast_io_fail_tmo not below it
    assert list(fc) == ["dev_loss_tmo", "fast_io_fail_tmo", "eh_deadline"]
    assert fc["fast_io_fail_tmo"] == sysfs.TransportTimer(
        "rport-6:0-1", "fast_io_fail_tmo", "/sys/class/fc_remote_ports/rport-6:0-1/fast_io_fail_tmo"
    )
    assert fc["dev_loss_tmo"].attribute == "/sys/class/fc_remote_ports/rport-6:0-1/dev_loss_tmo"
    assert fc["eh_deadline"].attribute == "/sys/class/scsi_host/host6/eh_deadline"
    # an NVMe over Fabrics controller has its own fast_io_fail_tmo (a real DEVPATH)
    assert sysfs.transport_timers("/devices/virtual/nvme-fabrics/ctl/nvme1/nvme1n1") == {
        "fast_io_fail_tmo": sysfs.TransportTimer(
            "nvme1", "fast_io_fail_tmo", "/sys/class/nvme/nvme1/fast_io_fail_tmo"
        )
    }
    # scsi_debug has no transport class, only its host; NVMe over PCIe, a native NVMe
    # head and dm have none at all
    assert list(sysfs.transport_timers(
        "/devices/pseudo_0/adapter0/host6/target6:0:0/6:0:0:0/block/sda"
    )) == ["eh_deadline"]
    for other in (
        "/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1",
        "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
        "/devices/virtual/block/dm-0",
    ):
        assert sysfs.transport_timers(other) == {}


def test_set_timer_writes_only_a_change(tmp_path: Path) -> None:
    timer = sysfs.transport_timers(ISCSI_SDB, str(tmp_path))["fast_io_fail_tmo"]
    attr = Path(timer.attribute)
    attr.parent.mkdir(parents=True)
    attr.write_text("120\n")
    assert sysfs.set_timer(timer, 5) == "120"
    assert attr.read_text() == "5\n"
    attr.write_text("5\n")  # as the kernel shows it
    mtime = attr.stat().st_mtime_ns
    assert sysfs.set_timer(timer, 5) is None
    assert attr.stat().st_mtime_ns == mtime  # not written again
    attr.unlink()
    with pytest.raises(OSError):
        sysfs.set_timer(timer, 5)  # the session left: the caller reports it
