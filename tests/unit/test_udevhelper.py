"""The udev helper's claim decision over a fake sysfs tree and udev database."""

from __future__ import annotations

import os
import pathlib
import socket
import sys
from unittest import mock

import pytest

from dmpath import udevhelper
from dmpath.config import Config, parse_config
from dmpath.udevhelper import assembler, decide, main

ENV = {"ID_SERIAL": "1Linux_scsi_debug_2000", "ID_WWN": "0x33333330000007d0"}
SCSI = {**ENV, "SCSI_IDENT_LUN_NAA_REG": "33333330000007d0"}


def conf(root: pathlib.Path, text: str = "", wwids: str = "none") -> Config:
    return parse_config(f'[defaults]\nwwids_file = "{root / wwids}"\n' + text)


def disk(
    root: pathlib.Path,
    name: str,
    wwid: str,
    *,
    holders: dict[str, str] | None = None,
    props: dict[str, str] | None = None,
    minor: int = 0,
) -> None:
    """A SCSI disk in a fake /sys (and its udev database entry under root/run)."""
    base = root / "block" / name
    dev = base / "device"
    dev.mkdir(parents=True)
    (dev / "wwid").write_text(wwid + "\n")
    (dev / "vendor").write_text("Linux   \n")
    (dev / "model").write_text("scsi_debug      \n")
    (base / "dev").write_text(f"8:{minor}\n")
    hdir = root / "class/block" / name / "holders"
    hdir.mkdir(parents=True)
    for h, uuid in (holders or {}).items():
        (hdir / h).mkdir()
        (root / "class/block" / h / "dm").mkdir(parents=True, exist_ok=True)
        (root / "class/block" / h / "dm/uuid").write_text(uuid + "\n")
    if props is not None:
        db = root / "run/udev/data"
        db.mkdir(parents=True, exist_ok=True)
        (db / f"b8:{minor}").write_text("".join(f"E:{k}={v}\n" for k, v in props.items()))


def claims(root: pathlib.Path, name: str, env: dict[str, str], cfg: Config) -> bool:
    return decide(name, env, cfg, str(root), str(root / "run")).claimed


def test_two_paths_to_one_lun_are_claimed_when_find_multipaths_on(tmp_path: pathlib.Path) -> None:
    disk(tmp_path, "sda", "naa.33333330000007d0", props=SCSI)
    assert not claims(tmp_path, "sda", SCSI, conf(tmp_path))
    disk(tmp_path, "sdc", "naa.33333330000007d0", props=SCSI, minor=32)
    assert claims(tmp_path, "sda", SCSI, conf(tmp_path))
    assert not claims(tmp_path, "sda", SCSI, conf(tmp_path, 'find_multipaths = "strict"\n'))


def test_a_sibling_udev_has_not_recorded_yet_counts_by_its_sysfs_wwid(
    tmp_path: pathlib.Path,
) -> None:
    # two paths of a new LUN, their add events run side by side: neither is in the udev
    # database yet when the other's helper runs
    disk(tmp_path, "sda", "naa.33333330000007d0")
    disk(tmp_path, "sdc", "naa.33333330000007d0", minor=32)
    assert claims(tmp_path, "sda", SCSI, conf(tmp_path))
    # a disk of another LUN is no sibling, recorded or not
    disk(tmp_path, "sde", "naa.33333330000007d0", minor=64)
    (tmp_path / "block/sdc/device/wwid").write_text("naa.33333330000007d1\n")
    (tmp_path / "block/sde/device/wwid").write_text("naa.33333330000007d1\n")
    assert not claims(tmp_path, "sda", SCSI, conf(tmp_path))
    # the blacklist applies to the unrecorded sibling as to a recorded one
    (tmp_path / "block/sdc/device/wwid").write_text("naa.33333330000007d0\n")
    assert not claims(tmp_path, "sda", SCSI, conf(tmp_path, '[blacklist]\ndevnode = ["^sdc$"]\n'))


def test_a_blacklisted_lun_is_not_claimed_however_many_paths_it_has(
    tmp_path: pathlib.Path,
) -> None:
    disk(tmp_path, "sda", "naa.33333330000007d0", props=SCSI)
    disk(tmp_path, "sdc", "naa.33333330000007d0", props=SCSI, minor=32)
    by_wwid = conf(tmp_path, '[blacklist]\nwwid = ["^1Linux_scsi_debug_2000$"]\n')
    verdict = decide("sda", SCSI, by_wwid, str(tmp_path), str(tmp_path / "run"))
    assert not verdict.claimed and "blacklist.wwid" in verdict.why
    by_device = conf(tmp_path, '[blacklist]\ndevice = [{vendor = "^Linux$"}]\n')
    assert not claims(tmp_path, "sda", SCSI, by_device)
    # an exception lifts it again, as in the daemon
    lifted = conf(
        tmp_path,
        '[blacklist]\ndevice = [{vendor = "^Linux$"}]\n'
        '[blacklist_exceptions]\ndevice = [{vendor = "^Linux$", product = "scsi_debug"}]\n',
    )
    assert claims(tmp_path, "sda", SCSI, lifted)


def test_a_blacklisted_sibling_does_not_count_as_a_second_path(tmp_path: pathlib.Path) -> None:
    disk(tmp_path, "sda", "naa.33333330000007d0", props=SCSI)
    disk(tmp_path, "sdc", "naa.33333330000007d0", props=SCSI, minor=32)
    cfg = conf(tmp_path, '[blacklist]\ndevnode = ["^sdc$"]\n')
    assert not claims(tmp_path, "sda", SCSI, cfg)


def test_the_wwid_is_the_uid_attribute_of_the_configuration(tmp_path: pathlib.Path) -> None:
    wwids = tmp_path / "wwids"
    wwids.write_text("/0x33333330000007d0/\n")
    disk(tmp_path, "sda", "naa.1", props=SCSI)
    strict = 'find_multipaths = "strict"\n'
    assert not claims(tmp_path, "sda", SCSI, conf(tmp_path, strict, "wwids"))
    by_wwn = conf(tmp_path, strict + 'uid_attribute = ["ID_WWN"]\n', "wwids")
    assert claims(tmp_path, "sda", SCSI, by_wwn)


def test_a_multipaths_entry_makes_a_wwid_known(tmp_path: pathlib.Path) -> None:
    disk(tmp_path, "sda", "naa.1", props=SCSI)
    cfg = conf(
        tmp_path,
        'find_multipaths = "strict"\n[[multipaths]]\nwwid = "1Linux_scsi_debug_2000"\n',
    )
    assert claims(tmp_path, "sda", SCSI, cfg)


def test_known_wwid_or_our_holder_claims_a_single_path(tmp_path: pathlib.Path) -> None:
    wwids = tmp_path / "wwids"
    wwids.write_text("# Multipath wwids, Version : 1.0\n/1Linux_scsi_debug_2000/\n")
    disk(tmp_path, "sda", "naa.1")
    strict = conf(tmp_path, 'find_multipaths = "strict"\n', "wwids")
    assert claims(tmp_path, "sda", SCSI, strict)
    disk(tmp_path, "sdb", "naa.2", holders={"dm-0": "mpath-1Linux_scsi_debug_2001"})
    assert claims(tmp_path, "sdb", {}, strict)
    # held by something that is not ours: never hidden from its user
    disk(tmp_path, "sdd", "naa.3", holders={"dm-1": "LVM-foreign"})
    greedy = conf(tmp_path, 'find_multipaths = "greedy"\n', "wwids")
    verdict = decide("sdd", SCSI, greedy, str(tmp_path), str(tmp_path / "run"))
    assert not verdict.claimed and "in use by dm-1" in verdict.why


def test_never_claims_stacked_or_virtual_devices(tmp_path: pathlib.Path) -> None:
    greedy = conf(tmp_path, 'find_multipaths = "greedy"\n')
    for name in ("dm-0", "md127", "loop0", "sr0"):
        assert not claims(tmp_path, name, ENV, greedy)


def udev_env(monkeypatch: pytest.MonkeyPatch, cfg: pathlib.Path, text: str) -> None:
    """The helper as udev runs it for a SCSI disk, with ``text`` as its config."""
    cfg.write_text(text)
    monkeypatch.setenv("DMPATH_CONFIG", str(cfg))
    for k, v in SCSI.items():
        monkeypatch.setenv(k, v)


def test_output_is_udev_properties(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    udev_env(monkeypatch, tmp_path / "dmpath.toml", '[defaults]\nfind_multipaths = "greedy"\n')
    # /dev/sdq is in no /sys here: the decision runs on the udev properties alone
    logged: list[str] = []
    assert main(["/dev/sdq"], log=logged.append) == 0
    out = capsys.readouterr().out.split()
    assert out == ["DMPATH_PATH=1", "DM_MULTIPATH_DEVICE_PATH=1", "SYSTEMD_READY=0",
                   "ID_FS_TYPE=mpath_member"]
    assert logged == []


def test_an_unreadable_config_claims_nothing_new_and_says_why(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    udev_env(
        monkeypatch,
        tmp_path / "dmpath.toml",
        '[defaults]\nfind_multipaths = "greedy"\nfind_multipath = "on"\n',
    )
    logged: list[str] = []
    assert main(["/dev/sdq"], log=logged.append) == 0
    assert capsys.readouterr().out == ""
    assert len(logged) == 1 and "find_multipath" in logged[0] and "not claimed" in logged[0]
    # a disk our map already holds stays claimed
    monkeypatch.setattr(udevhelper, "held_by_our_map", lambda *_a: True)
    logged.clear()
    assert main(["/dev/sdq"], log=logged.append) == 0
    assert "DM_MULTIPATH_DEVICE_PATH=1" in capsys.readouterr().out.split()
    assert "kept claimed" in logged[0]


def test_assembler_leaves_a_disk_already_in_one_of_our_maps(tmp_path: pathlib.Path) -> None:
    disk(tmp_path, "sdb", "naa.2", holders={"dm-0": "mpath-1Linux_scsi_debug_2001"})
    assert assembler("sdb", Config(), str(tmp_path), str(tmp_path / "run"), ()) == "map"


def test_assembler_leaves_the_disk_to_a_daemon_that_answers(tmp_path: pathlib.Path) -> None:
    disk(tmp_path, "sda", "naa.1")
    sock_path = str(tmp_path / "d.sock")
    settings = parse_config(f'[defaults]\nsocket = "{sock_path}"\n')
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
    settings = parse_config(f'[defaults]\nsocket = "{tmp_path / "none.sock"}"\n')
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


def nvme_disk(root: pathlib.Path, name: str, parent: str, minor: int = 0) -> None:
    """An NVMe namespace's disk where the kernel puts it: under its controller (native
    multipath off) or under its subsystem (the native head); /sys/block links to it."""
    real = root / "devices" / parent / name
    real.mkdir(parents=True)
    (real / "wwid").write_text("uuid.5c3b1a2e-0f4d\n")
    (real / "dev").write_text(f"259:{minor}\n")
    (root / "block").mkdir(exist_ok=True)
    (root / "block" / name).symlink_to(real, target_is_directory=True)
    db = root / "run/udev/data"
    db.mkdir(parents=True, exist_ok=True)
    (db / f"b259:{minor}").write_text("".join(f"E:{k}={v}\n" for k, v in NVME_ENV.items()))


def test_nvme_paths_are_claimed_by_the_namespaces_wwid(tmp_path: pathlib.Path) -> None:
    wwids = tmp_path / "wwids"
    wwids.write_text("/uuid.5c3b1a2e-0f4d/\n")  # what the daemon records for NVMe
    nvme_disk(tmp_path, "nvme0n1", "nvme-fabrics/ctl/nvme0")
    strict = conf(tmp_path, 'find_multipaths = "strict"\n', "wwids")
    assert claims(tmp_path, "nvme0n1", NVME_ENV, strict)
    on = conf(tmp_path)
    assert not claims(tmp_path, "nvme0n1", NVME_ENV, on)
    nvme_disk(tmp_path, "nvme1n1", "nvme-fabrics/ctl/nvme1", minor=1)
    assert claims(tmp_path, "nvme0n1", NVME_ENV, on)  # a second controller's disk


def test_a_native_nvme_head_is_never_claimed(tmp_path: pathlib.Path) -> None:
    nvme_disk(tmp_path, "nvme0n1", "nvme-subsystem/nvme-subsys0")
    assert not claims(tmp_path, "nvme0n1", NVME_ENV, conf(tmp_path, 'find_multipaths = "greedy"\n'))


def test_partitions_of_a_path_are_read_from_sysfs(tmp_path: pathlib.Path) -> None:
    for disk_name, parts in (("sda", {"sda1": "1", "sda3": "3"}), ("nvme0n1", {"nvme0n1p2": "2"})):
        base = tmp_path / "class/block" / disk_name
        (base / "holders").mkdir(parents=True)
        (base / "queue").mkdir()
        for p, n in parts.items():
            (base / p).mkdir()
            (base / p / "partition").write_text(n + "\n")
    assert udevhelper.partitions_of("sda", str(tmp_path)) == [1, 3]
    assert udevhelper.partitions_of("nvme0n1", str(tmp_path)) == [2]
    assert udevhelper.partitions_of("sdz", str(tmp_path)) == []
    # nothing to drop: no partx is run
    assert udevhelper.drop_partitions("sdz", str(tmp_path)) == 0


@pytest.mark.parametrize(
    ("uuid", "prefix", "wwid"),
    [
        ("dmpath-3600a0b8", "dmpath-", "3600a0b8"),
        ("mpath-3600a0b8", "mpath-", None),  # 13-dm-disk.rules' own link is the right one
        ("LVM-abc", "dmpath-", None),
        ("dmpath-", "dmpath-", None),
        ("dmpath-a/b", "dmpath-", None),  # not a file name
    ],
)
def test_map_wwid_for_the_dm_uuid_mpath_link(uuid: str, prefix: str, wwid: str | None) -> None:
    assert udevhelper.map_wwid(uuid, prefix) == wwid


def test_map_wwid_mode_prints_the_wwid_of_a_map_of_the_configured_prefix(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    udev_env(monkeypatch, tmp_path / "dmpath.toml", '[defaults]\ndm_uuid_prefix = "dmpath-"\n')
    monkeypatch.setenv("DM_UUID", "dmpath-3600a0b8")
    assert main(["--map-wwid", "dm-3"]) == 0
    assert capsys.readouterr().out == "DMPATH_MAP_WWID=3600a0b8\n"
    monkeypatch.setenv("DM_UUID", "LVM-xyz")
    assert main(["--map-wwid", "dm-4"]) == 0
    assert capsys.readouterr().out == ""
