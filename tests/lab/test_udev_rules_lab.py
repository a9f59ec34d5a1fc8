"""Our udev rule, installed in the guest, claims multipath paths so LVM/md/systemd skip them."""

from __future__ import annotations

import functools
import os
import pathlib
import sys

import pytest

from dmpath.lab import topology as topo
from dmpath.lab.harness import wait_for
from dmpath.runner import run

pytestmark = pytest.mark.lab

RULE = pathlib.Path(__file__).resolve().parents[2] / "udev-rules" / "62-dmpath.rules"


def props(name: str) -> dict[str, str]:
    out = run("udevadm", ["info", "--query=property", f"/dev/{name}"]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def claimed(name: str) -> dict[str, str] | None:
    got = props(name)
    return got if got.get("DMPATH_PATH") == "1" else None


def test_rule_claims_both_paths_of_a_lun(scsi_paths: list[topo.LabPath], tmp_path) -> None:  # type: ignore[no-untyped-def]
    helper = os.path.join(os.path.dirname(sys.executable), "dmpath-udev")
    text = RULE.read_text().replace("/usr/bin/dmpath-udev", helper)
    cfg = tmp_path / "dmpath.toml"
    cfg.write_text(f'[defaults]\nwwids_file = "{tmp_path}/wwids"\n')
    installed = pathlib.Path("/etc/udev/rules.d/62-dmpath.rules")
    # the helper reads DMPATH_CONFIG; udev passes no environment, so bake it into the rule
    installed.write_text(text.replace(f'"{helper}', f'"/usr/bin/env DMPATH_CONFIG={cfg} {helper}'))
    try:
        run("udevadm", ["control", "--reload"])
        for p in scsi_paths:
            run("udevadm", ["trigger", "--action=change", f"/dev/{p.name}"])
        run("udevadm", ["settle", "-t", "30"])
        for p in scsi_paths:
            got = wait_for(functools.partial(claimed, p.name), 20, f"udev to claim {p.name}")
            assert got["DM_MULTIPATH_DEVICE_PATH"] == "1"
            assert got["SYSTEMD_READY"] == "0"
            assert got["ID_FS_TYPE"] == "mpath_member"
    finally:
        installed.unlink()
        run("udevadm", ["control", "--reload"])
        for p in scsi_paths:
            run("udevadm", ["trigger", "--action=change", f"/dev/{p.name}"])
        run("udevadm", ["settle", "-t", "30"])
    assert "DMPATH_PATH" not in props(scsi_paths[0].name)
