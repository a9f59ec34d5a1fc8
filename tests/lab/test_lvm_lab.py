"""LVM on a dmpath map, with Debian's lvm2 and its udev rules as they ship: the PV is used
through the map and never through its paths, with no configuration of LVM.

What makes it work (dmpathd(8), "LVM, partitions and the uuid prefix"): the map's dm uuid
starts with ``mpath-``, which LVM's multipath component detection reads from a path's
holders; and our udev rule claims the paths (``DM_MULTIPATH_DEVICE_PATH=1``), which
69-lvm.rules honours by never running pvscan on them, so boot-time autoactivation waits
for the map.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterator

import pytest

from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, remove_dm_maps, wait_for
from dmpath.lab.udevrule import claimed, installed_rule, retrigger
from dmpath.runner import CommandResult, run

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]
VG = "dmpathvg"
LV = f"/dev/{VG}/data"
PATTERN = b"dmpath-lvm-" * 93 + b"\n"  # 1 KiB


def lvm(*args: str) -> CommandResult:
    return run("lvm", list(args), check=False)


def ok(*args: str) -> CommandResult:
    res = lvm(*args)
    assert res.returncode == 0, f"lvm {' '.join(args)}: {res.stderr}"
    return res


def kname(node: str) -> str:
    return os.path.basename(os.path.realpath(node))


def holders(name: str) -> list[str]:
    return sorted(os.listdir(f"/sys/class/block/{name}/holders"))


@pytest.fixture
def lvm_cleanup() -> Iterator[None]:
    yield
    lvm("vgchange", "-an", VG)
    lvm("vgremove", "-fy", VG)
    for dev in dmsetup.list_maps():
        if dev.name == "mpatha":
            lvm("pvremove", "-ffy", "/dev/mapper/mpatha")


def test_a_volume_group_on_a_map_is_used_through_the_map_and_activated_on_it_at_boot(
    scsi_paths: list[topo.LabPath], dmpathd: Start, tmp_path: pathlib.Path, lvm_cleanup: None
) -> None:
    names = [p.name for p in scsi_paths]
    with installed_rule(tmp_path):
        shared = {
            "wwids_file": f"{tmp_path}/wwids",
            "admin_state_file": f"{tmp_path}/admin-state",
            "bindings_file": f"{tmp_path}/bindings",
            "socket": f"{tmp_path}/run/dmpathd.sock",
        }
        d = dmpathd(defaults=shared)
        d.wait_maps({"mpatha": 2})
        retrigger(names)
        assert all(claimed(n) for n in names)
        ok("pvcreate", "-y", "/dev/mapper/mpatha")
        ok("vgcreate", VG, "/dev/mapper/mpatha")
        ok("lvcreate", "-y", "-n", "data", "-L", "8M", VG)
        with open(LV, "r+b") as fh:
            fh.write(PATTERN * 64)
            fh.flush()
            os.fsync(fh.fileno())

        # pvs sees the map, once, and says nothing of the paths
        res = ok("pvs", "--noheadings", "-o", "pv_name,vg_name")
        assert res.stdout.split() == ["/dev/mapper/mpatha", VG]
        assert "WARNING" not in res.stderr, res.stderr
        map_dm = kname("/dev/mapper/mpatha")
        assert holders(map_dm) == [kname(LV)]
        for n in names:
            assert holders(n) == [map_dm]

        # a reboot: the VG and the map go away with the daemon, and /run is empty again
        ok("vgchange", "-an", VG)
        d.stop()
        assert remove_dm_maps() == ["mpatha"]
        run("rm", ["-rf", "/run/lvm/pvs_online", "/run/lvm/vgs_online"])
        # the paths come up: the rule claims them (their WWID is in the wwids file), its
        # one-shot assembly makes the map, and LVM's own rule activates the VG on it
        retrigger(names, action="add")
        wait_for(lambda: os.path.exists(LV), 120, f"{LV} to be activated at 'boot'")
        res = ok("lvs", "--noheadings", "-o", "devices", f"{VG}/data")
        assert res.stdout.strip() == "/dev/mapper/mpatha(0)"
        assert "WARNING" not in res.stderr, res.stderr
        map_dm = kname("/dev/mapper/mpatha")
        assert holders(map_dm) == [kname(LV)]
        for n in names:
            assert holders(n) == [map_dm], f"{n} must be held by the map alone"
        with open(LV, "rb") as fh:
            assert fh.read(len(PATTERN) * 64) == PATTERN * 64
        ok("vgchange", "-an", VG)
    retrigger(names)
