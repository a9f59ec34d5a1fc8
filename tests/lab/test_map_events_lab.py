"""The maps' own udev events (udev-rules/56-dmpath-maps.rules): with no working path the
map queues I/O, and no rule may read it then (a blkid there hangs its udev worker until a
path returns); the filesystem's by-uuid link stays through the outage and is read again
once the paths are back."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

import pytest

from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, wait_for
from dmpath.lab.udevrule import installed_rule, private_files, props, retrigger
from dmpath.runner import run

pytestmark = pytest.mark.lab

MAP = "/dev/mapper/mpatha"


def settles() -> bool:
    """True when udev finishes every queued event within 60 s (no worker hangs)."""
    return run("udevadm", ["settle", "-t", "60"], check=False).returncode == 0


def test_no_rule_reads_a_map_without_paths_and_its_links_stay(
    scsi_paths: list[topo.LabPath],
    dmpathd: Callable[..., DaemonUnderTest],
    tmp_path: pathlib.Path,
) -> None:
    names = [p.name for p in scsi_paths]
    # the lab guest has no other rule for mpath- maps (dmpath.lab.guest moves
    # multipath-tools' and kpartx's aside): what is seen here is ours
    with installed_rule(tmp_path):
        d = dmpathd(defaults={**private_files(tmp_path), "no_path_retry": "queue"})
        d.wait_maps({"mpatha": len(names)})
        kname = os.path.basename(os.path.realpath(MAP))
        run("mkfs.ext4", ["-q", "-F", MAP])
        assert settles()
        fs_uuid = wait_for(lambda: props(kname).get("ID_FS_UUID"), 30, "blkid's ID_FS_UUID")
        link = pathlib.Path(f"/dev/disk/by-uuid/{fs_uuid}")
        wait_for(link.exists, 30, f"udev's {link}")

        try:
            # every path goes. dmpathd fails all but one and keeps that one in the map
            # (the last-path rule); the kernel fails it at the first I/O error, which is
            # done here with the same message. The map queues, and the kernel's last
            # PATH_FAILED event says no path works
            for p in scsi_paths:
                topo.set_state(p, "offline")
            wait_for(lambda: d.maps()["mpatha"]["working"] == 1, 120, "all but one failed")
            last = next(p for p in d.maps()["mpatha"]["paths"] if p["kernel_state"] == "active")
            run("dmsetup", ["message", "mpatha", "0", "fail_path", last["devnum"]])
            wait_for(lambda: d.maps()["mpatha"]["working"] == 0, 60, "the last path failed")
            assert settles(), "a udev worker hangs on the pathless map's events"
            # any later event of the map (a write closed on it, a trigger) is not read
            # either: the rule goes by the last path event
            run("udevadm", ["trigger", "--action=change", f"/dev/{kname}"])
            assert settles(), "a udev worker hangs on a change event of the pathless map"
            seen = props(kname)
            assert seen.get("DMPATH_NO_PATH") == "1", seen
            assert seen.get("DM_NOSCAN") == "1", seen
            # what blkid found before is kept, and so is the link built from it
            assert seen.get("ID_FS_UUID") == fs_uuid, seen
            assert link.exists() and os.path.realpath(link) == f"/dev/{kname}"
        finally:
            for p in scsi_paths:
                topo.set_state(p, "running")

        wait_for(lambda: d.maps()["mpatha"]["working"] == len(names), 120, "paths back")
        run("udevadm", ["trigger", "--action=change", f"/dev/{kname}"])
        assert settles()
        seen = props(kname)
        assert seen.get("DMPATH_NO_PATH") == "0" and seen.get("DM_NOSCAN") != "1", seen
        assert seen.get("ID_FS_UUID") == fs_uuid and link.exists()
        # the filesystem mounts by its UUID
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        run("mount", [f"UUID={fs_uuid}", str(mnt)])
        try:
            (mnt / "probe").write_text("after the outage\n")
            assert os.path.realpath(f"/dev/disk/by-uuid/{fs_uuid}") == f"/dev/{kname}"
        finally:
            run("umount", [str(mnt)])
        d.request("flush_map", {"map": "mpatha"})
    retrigger(names)


def test_a_map_of_another_uuid_prefix_has_the_link_software_waits_for(
    scsi_paths: list[topo.LabPath],
    dmpathd: Callable[..., DaemonUnderTest],
    tmp_path: pathlib.Path,
) -> None:
    """os-brick and CSI drivers wait for /dev/disk/by-id/dm-uuid-mpath-WWID: a map whose
    dm uuid carries another prefix (``dm_uuid_prefix``) gets that link from our map rule,
    through the helper that reads the prefix from the configuration."""
    names = [p.name for p in scsi_paths]
    with installed_rule(tmp_path, 'dm_uuid_prefix = "san1-"\n'):
        d = dmpathd(defaults={**private_files(tmp_path), "dm_uuid_prefix": "san1-"})
        try:
            wwid = d.wait_maps({"mpatha": len(names)})["mpatha"]["wwid"]
            kname = os.path.basename(os.path.realpath(MAP))
            uuid = run("dmsetup", ["info", "-c", "--noheadings", "-o", "uuid", "mpatha"])
            assert uuid.stdout.strip() == f"san1-{wwid}"
            assert settles()
            link = pathlib.Path(f"/dev/disk/by-id/dm-uuid-mpath-{wwid}")
            wait_for(link.exists, 30, f"udev's {link}")
            assert os.path.realpath(link) == f"/dev/{kname}"
            assert props(kname).get("DMPATH_MAP_WWID") == wwid
        finally:
            # not ours to the fixture's clean-up, which knows the default prefix only
            d.request("flush_map", {"map": "mpatha"})
    retrigger(names)
