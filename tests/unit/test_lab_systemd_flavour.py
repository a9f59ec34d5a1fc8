"""The systemd lab flavour's pure parts: the image recipe's hash, qemu's command line,
the pytest command as the guest runs it, the guest's phase."""

from __future__ import annotations

import pytest

from dmpath.lab import sysboot, sysimage
from dmpath.lab.boots import BOOTS
from dmpath.lab.sysguest import phase_of

KERNEL = sysimage.Kernel("6.1.0-57-amd64", "/boot/vmlinuz-6.1.0-57-amd64",
                         "/boot/initrd.img-6.1.0-57-amd64", "/lib/modules/6.1.0-57-amd64")


def test_the_flavour_is_registered() -> None:
    assert "systemd" in BOOTS


def test_the_image_hash_names_the_recipe_and_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = sysimage.recipe_hash("6.1.0-57-amd64")
    assert h == sysimage.recipe_hash("6.1.0-57-amd64")  # stable: the cache is reused
    assert h != sysimage.recipe_hash("6.1.0-58-amd64")  # other modules, other image
    monkeypatch.setattr(sysimage, "PACKAGES", (*sysimage.PACKAGES, "lvm2"))
    assert sysimage.recipe_hash("6.1.0-57-amd64") != h
    assert sysimage.image_path("6.1.0-57-amd64", "/c").startswith("/c/debian-bookworm-")


def test_a_changed_bootstrap_file_changes_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    h = sysimage.recipe_hash("v")
    files = dict(sysimage.FILES)
    files["/etc/hostname"] = ("other\n", 0o644)
    monkeypatch.setattr(sysimage, "FILES", files)
    assert sysimage.recipe_hash("v") != h


def test_mmdebstrap_builds_a_bookworm_tree_with_the_packages() -> None:
    cmd = sysimage.mmdebstrap_command("/x/root")
    assert cmd[0] == "mmdebstrap"
    inc = next(a for a in cmd if a.startswith("--include="))
    for pkg in ("systemd", "udev", "dmsetup", "python3-pyudev", "sg3-utils", "e2fsprogs"):
        assert pkg in inc.split("=", 1)[1].split(",")
    assert cmd[-3:] == ["bookworm", "/x/root", sysimage.MIRROR]


def test_qemu_boots_under_tcg_with_one_san_file_behind_two_hbas() -> None:
    cmd = sysboot.qemu_command(KERNEL, "/o/root.qcow2", "/o/san.img", "/src", "/out",
                                phase="test")
    assert cmd[cmd.index("-accel") + 1] == "tcg"
    assert "-enable-kvm" not in cmd and "host" not in cmd  # -cpu host aborts here
    assert cmd[cmd.index("-kernel") + 1] == KERNEL.vmlinuz
    assert "dmpath.lab.phase=test" in cmd[cmd.index("-append") + 1]
    disks = [c for c in cmd if c.startswith("scsi-hd,")]
    assert len(disks) == 2
    assert {d.split(",")[1] for d in disks} == {"bus=hba0.0", "bus=hba1.0"}
    for d in disks:  # the same node, the same identity, two writers allowed
        assert "drive=san" in d and "share-rw=on" in d and f"wwn={sysboot.SAN_WWN}" in d
    assert sum(1 for c in cmd if c.startswith("driver=file,filename=/o/san.img")) == 1
    shares = [c for c in cmd if c.startswith("local,path=")]
    assert "local,path=/src,mount_tag=dmpathsrc" in shares[0] and "readonly=on" in shares[0]
    assert "local,path=/out,mount_tag=dmpathout" in shares[1]


def test_the_guest_runs_the_hosts_pytest_command_with_its_own_python_and_paths() -> None:
    argv = ["env", "DMPATH_LAB_RESULTS=/tmp/o/results.jsonl", "/work/.venv/bin/python",
            "-m", "pytest", "-v", "@/tmp/o/test-ids.txt"]
    files = {"/tmp/o/test-ids.txt": "tests/lab/a.py::t1\ntests/lab/a.py::t2\n"}
    g = sysboot.guest_argv(argv, "/tmp/o", files.__getitem__)
    assert g == {
        "env": {"DMPATH_LAB_RESULTS": "/run/dmpath-lab/out/results.jsonl"},
        # Debian 12's pytest (7.2) reads no @FILE: the ids are spliced in
        "argv": ["/opt/dmpath/bin/python", "-m", "pytest", "-v",
                 "tests/lab/a.py::t1", "tests/lab/a.py::t2"],
    }
    assert sysboot.guest_argv(["true"], "/tmp/o") == {"env": {}, "argv": ["true"]}


def test_the_phase_comes_from_the_kernel_command_line() -> None:
    assert phase_of(sysboot.kernel_cmdline("prepare")) == "prepare"
    assert phase_of("root=/dev/vda quiet") == ""


def test_a_phase_ends_with_an_orderly_poweroff() -> None:
    # the shutdown is under test: poweroff-force would skip stopping units and unmounting
    unit = sysimage.BOOTSTRAP_UNIT
    assert "SuccessAction=poweroff\n" in unit and "FailureAction=poweroff\n" in unit
    assert "Action=poweroff-force" not in unit
