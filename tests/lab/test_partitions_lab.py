"""Partitions on a map (the kpartx role): ``MAP-partN`` maps follow the LUN's table, get
udev's links, go with their map, and the paths' own partitions are taken away."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Callable

import pytest

from dmpath.errors import DmpathError
from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, wait_for
from dmpath.lab.udevrule import installed_rule, retrigger
from dmpath.runner import run

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]
MAP = "/dev/mapper/mpatha"


def maps() -> set[str]:
    return {d.name for d in dmsetup.list_maps()}


def kernel_partitions(name: str) -> list[str]:
    base = f"/sys/class/block/{name}"
    return sorted(e for e in os.listdir(base) if os.path.exists(f"{base}/{e}/partition"))


def sfdisk(*args: str, script: str | None = None) -> None:
    res = run("sfdisk", ["-q", *args], stdin=script, check=False)
    # a dm device has no partition re-read (BLKRRPART): sfdisk says so and exits 1; the
    # table is on the disk all the same, which is what the test is about
    assert res.returncode in (0, 1), res.stderr


def test_partition_maps_follow_the_table_and_go_with_their_map(
    scsi_paths: list[topo.LabPath], dmpathd: Start, tmp_path: pathlib.Path
) -> None:
    names = [p.name for p in scsi_paths]
    with installed_rule(tmp_path):
        d = dmpathd(
            defaults={
                "wwids_file": f"{tmp_path}/wwids",
                "bindings_file": f"{tmp_path}/bindings",
                "socket": f"{tmp_path}/run/dmpathd.sock",
            }
        )
        wwid = d.wait_maps({"mpatha": 2})["mpatha"]["wwid"]
        # a new table, written through the map: dmpathd makes the partition maps
        sfdisk(MAP, script="label: dos\n,16M,L\n,16M,L\n")
        wait_for(lambda: {"mpatha-part1", "mpatha-part2"} <= maps(), 60, "partition maps")
        assert any("mpatha-part1, mpatha-part2" in e["message"] for e in d.events("partitions"))
        assert dmsetup.info("mpatha-part2").uuid == f"part2-mpath-{wwid}"
        link = pathlib.Path(f"/dev/disk/by-id/dm-uuid-part1-mpath-{wwid}")
        wait_for(link.exists, 30, f"udev's {link}")
        # the partition map is the partition: what it holds is at the partition's offset
        starts = re.findall(r"start=\s*(\d+)", run("sfdisk", ["--dump", MAP]).stdout)
        start = int(starts[1])
        with open("/dev/mapper/mpatha-part2", "r+b") as fh:
            fh.write(b"partition two\n".ljust(512, b"."))
            fh.flush()
            os.fsync(fh.fileno())
        with open(MAP, "rb") as fh:
            fh.seek(start * 512)
            assert fh.read(14) == b"partition two\n"

        # the paths' own partitions (a rescan of one path makes them) are taken away
        run("blockdev", ["--rereadpt", f"/dev/{names[0]}"], check=False)
        run("udevadm", ["settle", "-t", "60"])
        wait_for(lambda: kernel_partitions(names[0]) == [], 30, f"{names[0]}'s partitions gone")

        # the table changes: partition 2 goes, its map goes
        sfdisk("--delete", MAP, "2")
        wait_for(lambda: "mpatha-part2" not in maps(), 60, "mpatha-part2 to go")
        assert "mpatha-part1" in maps()

        # a partition in use keeps its map; once closed, both go together
        with open("/dev/mapper/mpatha-part1", "rb"):
            with pytest.raises(DmpathError, match="mpatha-part1 is open"):
                d.request("flush_map", {"map": "mpatha"})
            assert {"mpatha", "mpatha-part1"} <= maps()
        d.request("flush_map", {"map": "mpatha"})
        assert not {"mpatha", "mpatha-part1"} & maps()
    retrigger(names)
