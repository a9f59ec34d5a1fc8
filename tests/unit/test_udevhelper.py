"""The udev helper's claim decision over a fake sysfs tree."""

from __future__ import annotations

import os
import pathlib
import socket
import sys
from unittest import mock

import pytest

from dmpath import udevhelper
from dmpath.udevhelper import assembler, decide, main

ENV = {"ID_SERIAL": "1Linux_scsi_debug_2000", "ID_WWN": "0x33333330000007d0"}


def disk(root: pathlib.Path, name: str, wwid: str, holders: dict[str, str] | None = None) -> None:
    dev = root / "block" / name / "device"
    dev.mkdir(parents=True)
    (dev / "wwid").write_text(wwid + "\n")
    hdir = root / "class/block" / name / "holders"
    hdir.mkdir(parents=True)
    for h, uuid in (holders or {}).items():
        (hdir / h).mkdir()
        (root / "class/block" / h / "dm").mkdir(parents=True, exist_ok=True)
        (root / "class/block" / h / "dm/uuid").write_text(uuid + "\n")


def test_two_paths_to_one_lun_are_claimed_when_find_multipaths_on(tmp_path: pathlib.Path) -> None:
    disk(tmp_path, "sda", "naa.33333330000007d0")
    assert not decide("sda", ENV, {"wwids_file": str(tmp_path / "none")}, str(tmp_path))
    disk(tmp_path, "sdc", "naa.33333330000007d0")
    assert decide("sda", ENV, {"wwids_file": str(tmp_path / "none")}, str(tmp_path))
    assert not decide("sda", ENV, {"find_multipaths": "strict",
                                   "wwids_file": str(tmp_path / "none")}, str(tmp_path))


def test_known_wwid_or_our_holder_claims_a_single_path(tmp_path: pathlib.Path) -> None:
    wwids = tmp_path / "wwids"
    wwids.write_text("# Multipath wwids, Version : 1.0\n/1Linux_scsi_debug_2000/\n")
    disk(tmp_path, "sda", "naa.1")
    assert decide("sda", ENV, {"find_multipaths": "strict", "wwids_file": str(wwids)},
                  str(tmp_path))
    disk(tmp_path, "sdb", "naa.2", holders={"dm-0": "dmpath-1Linux_scsi_debug_2001"})
    assert decide("sdb", {}, {"find_multipaths": "strict"}, str(tmp_path))
    disk(tmp_path, "sdd", "naa.3", holders={"dm-1": "mpath-foreign"})
    assert not decide("sdd", {}, {"find_multipaths": "strict"}, str(tmp_path))


def test_never_claims_stacked_or_virtual_devices(tmp_path: pathlib.Path) -> None:
    for name in ("dm-0", "md127", "loop0", "sr0"):
        assert not decide(name, ENV, {"find_multipaths": "greedy"}, str(tmp_path))


def test_output_is_udev_properties(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "dmpath.toml"
    cfg.write_text('[defaults]\nfind_multipaths = "greedy"\n')
    monkeypatch.setenv("DMPATH_CONFIG", str(cfg))
    monkeypatch.setenv("ID_SERIAL", "1Linux_scsi_debug_2000")
    assert main(["/dev/sdq"]) == 0
    out = capsys.readouterr().out.split()
    assert out == ["DMPATH_PATH=1", "DM_MULTIPATH_DEVICE_PATH=1", "SYSTEMD_READY=0",
                   "ID_FS_TYPE=mpath_member"]
    cfg.write_text("this is not toml [")  # a broken config never breaks udev
    monkeypatch.delenv("ID_SERIAL")
    assert main(["/dev/sdq"]) == 0
    assert capsys.readouterr().out == ""


def test_assembler_leaves_a_disk_already_in_one_of_our_maps(tmp_path: pathlib.Path) -> None:
    disk(tmp_path, "sdb", "naa.2", holders={"dm-0": "dmpath-1Linux_scsi_debug_2001"})
    assert assembler("sdb", {}, str(tmp_path), str(tmp_path / "run"), ()) == "map"


def test_assembler_leaves_the_disk_to_a_daemon_that_answers(tmp_path: pathlib.Path) -> None:
    disk(tmp_path, "sda", "naa.1")
    sock_path = str(tmp_path / "d.sock")
    settings: dict[str, object] = {"socket": sock_path}
    # a socket file nobody listens on is not a daemon (a killed dmpathd leaves one)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.close()
    assert assembler("sda", settings, str(tmp_path), str(tmp_path / "run"), ()) == "once"
    os.unlink(sock_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(sock_path)
        srv.listen(1)
        assert assembler("sda", settings, str(tmp_path), str(tmp_path / "run"), ()) == "daemon"


def test_assembler_leaves_the_disk_to_an_installed_service_under_systemd(
    tmp_path: pathlib.Path,
) -> None:
    disk(tmp_path, "sda", "naa.1")
    settings: dict[str, object] = {"socket": str(tmp_path / "none.sock")}
    units = tmp_path / "units"
    units.mkdir()
    run_root = tmp_path / "run"
    (units / "dmpathd.service").write_text("[Service]\n")
    # a unit file is not enough: without systemd as PID 1 nobody would start it
    assert assembler("sda", settings, str(tmp_path), str(run_root), (str(units),)) == "once"
    (run_root / "systemd/system").mkdir(parents=True)
    assert assembler("sda", settings, str(tmp_path), str(run_root), (str(units),)) == "service"
    # masked (a link to /dev/null) is the administrator's no: still not ours to assemble
    (units / "dmpathd.service").unlink()
    (units / "dmpathd.service").symlink_to("/dev/null")
    assert assembler("sda", settings, str(tmp_path), str(run_root), (str(units),)) == "service"
    (units / "dmpathd.service").unlink()
    assert assembler("sda", settings, str(tmp_path), str(run_root), (str(units),)) == "once"


def test_assemble_mode_runs_dmpathd_once_from_the_helpers_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    fake = tmp_path / "dmpathd"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    cfg = tmp_path / "dmpath.toml"
    cfg.write_text(f'[defaults]\nsocket = "{tmp_path}/none.sock"\n')
    monkeypatch.setenv("DMPATH_CONFIG", str(cfg))
    monkeypatch.delenv("PATH")
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "dmpath-udev")])
    monkeypatch.setattr(udevhelper, "service_installed", lambda *_a: False)
    monkeypatch.setattr(udevhelper, "held_by_our_map", lambda *_a: False)
    monkeypatch.setattr(os, "execve", lambda prog, argv, env: calls.append((prog, argv, env)))
    assert main(["--assemble", "sdz"]) == 1  # the patched execve returns: reported as failure
    assert calls == [
        (str(fake), [str(fake), "--once", "--config", str(cfg)], mock.ANY),
    ]
    # udev's bare environment still finds dmsetup and mdadm
    assert calls[0][2]["PATH"] == udevhelper.SAFE_PATH


def test_usage_error_without_a_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--assemble"]) == 2
    assert "usage" in capsys.readouterr().err


NVME_ENV = {"ID_SERIAL": "Linux_dmpath0001_1", "ID_WWN": "uuid.5c3b1a2e-0f4d"}


def nvme_disk(root: pathlib.Path, name: str, parent: str) -> None:
    """An NVMe namespace's disk where the kernel puts it: under its controller (native
    multipath off) or under its subsystem (the native head); /sys/block links to it."""
    real = root / "devices" / parent / name
    real.mkdir(parents=True)
    (real / "wwid").write_text("uuid.5c3b1a2e-0f4d\n")
    (root / "block").mkdir(exist_ok=True)
    (root / "block" / name).symlink_to(real, target_is_directory=True)


def test_nvme_paths_are_claimed_by_the_namespaces_wwid(tmp_path: pathlib.Path) -> None:
    wwids = tmp_path / "wwids"
    wwids.write_text("/uuid.5c3b1a2e-0f4d/\n")  # what the daemon records for NVMe
    nvme_disk(tmp_path, "nvme0n1", "nvme-fabrics/ctl/nvme0")
    strict = {"find_multipaths": "strict", "wwids_file": str(wwids)}
    assert decide("nvme0n1", NVME_ENV, strict, str(tmp_path))
    on = {"wwids_file": str(tmp_path / "none")}
    assert not decide("nvme0n1", NVME_ENV, on, str(tmp_path))
    nvme_disk(tmp_path, "nvme1n1", "nvme-fabrics/ctl/nvme1")
    assert decide("nvme0n1", NVME_ENV, on, str(tmp_path))  # a second controller's disk


def test_a_native_nvme_head_is_never_claimed(tmp_path: pathlib.Path) -> None:
    nvme_disk(tmp_path, "nvme0n1", "nvme-subsystem/nvme-subsys0")
    assert not decide("nvme0n1", NVME_ENV, {"find_multipaths": "greedy"}, str(tmp_path))
