"""The udev helper's claim decision over a fake sysfs tree."""

from __future__ import annotations

import pathlib

import pytest

from dmpath.udevhelper import decide, main

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
