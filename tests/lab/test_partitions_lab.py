"""Partitions on a map (the kpartx role): ``MAP-partN`` maps follow the LUN's table, get
udev's links, go with their map, and the paths' own partitions are taken away."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
from collections.abc import Callable, Iterator

import pytest
import pyudev

from dmpath.errors import DmpathError
from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, LabTimeout, wait_for
from dmpath.lab.udevrule import installed_rule, private_files, retrigger
from dmpath.runner import run

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]
MAP = "/dev/mapper/mpatha"


def maps() -> set[str]:
    """Every dm device's name (partition maps are linear: ``dmsetup ls --target
    multipath`` leaves them out)."""
    out = set()
    for dev in pathlib.Path("/sys/block").glob("dm-*"):
        try:
            out.add((dev / "dm/name").read_text().strip())
        except OSError:
            continue  # removed while being read
    return out


def kernel_partitions(name: str) -> list[str]:
    base = f"/sys/class/block/{name}"
    return sorted(e for e in os.listdir(base) if os.path.exists(f"{base}/{e}/partition"))


def kernel_monitor() -> pyudev.Monitor:
    """A kernel-event socket on block devices, bound when this returns: every uevent from
    then on waits in it (``udevadm monitor`` started as a child binds later, and missed
    the first events of a new disk)."""
    mon = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
    mon.filter_by("block")
    mon.start()
    return mon


def drain(mon: pyudev.Monitor) -> set[tuple[str, str]]:
    """(action, kernel name) of every event waiting in ``mon``."""
    out = set()
    while (dev := mon.poll(timeout=0.5)) is not None:
        out.add((str(dev.action), str(dev.sys_name)))
    return out


def sfdisk(*args: str, script: str | None = None) -> None:
    res = run("sfdisk", ["-q", *args], stdin=script, check=False)
    # a dm device has no partition re-read (BLKRRPART): sfdisk says so and exits 1; the
    # table is on the disk all the same, which is what the test is about
    assert res.returncode in (0, 1), res.stderr


@pytest.fixture
def host_added() -> Iterator[Callable[[], None]]:
    """``add()`` plugs in one more SCSI host (a new path); it is unplugged at teardown."""
    added: list[bool] = []

    def add() -> None:
        topo.add_host()
        added.append(True)

    yield add
    for _ in added:
        topo.remove_last_host()


def test_partition_maps_follow_the_table_and_go_with_their_map(
    scsi_paths: list[topo.LabPath],
    dmpathd: Start,
    tmp_path: pathlib.Path,
    host_added: Callable[[], None],
) -> None:
    names = [p.name for p in scsi_paths]
    with installed_rule(tmp_path):
        d = dmpathd(defaults=private_files(tmp_path))
        wwid = d.wait_maps({"mpatha": 2})["mpatha"]["wwid"]
        # a new table, written through the map: dmpathd makes the partition maps
        udev_seen = subprocess.Popen(
            ["udevadm", "monitor", "--udev", "--property", "--subsystem-match=block"],
            stdout=subprocess.PIPE,
            text=True,
        )
        sfdisk(MAP, script="label: dos\n,16M,L\n,16M,L\n")
        try:
            wait_for(lambda: {"mpatha-part1", "mpatha-part2"} <= maps(), 60, "partition maps")
        except LabTimeout as exc:
            udev_seen.terminate()
            raise AssertionError(
                f"{exc}\nevents: {d.events('partitions') + d.events('error')}\n"
                f"udev: {udev_seen.communicate(timeout=10)[0][-3000:]}\n"
                f"daemon log: {pathlib.Path(d.log_path).read_text()[-3000:]}"
            ) from exc
        udev_seen.terminate()
        udev_seen.communicate(timeout=10)
        # the maps exist as soon as kpartx made them; the daemon's event follows
        def told() -> bool:
            return any("mpatha-part1, mpatha-part2" in e["message"] for e in d.events("partitions"))

        wait_for(told, 30, "the partitions event")
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
        with open(MAP, "rb") as whole:
            whole.seek(start * 512)
            assert whole.read(14) == b"partition two\n"

        # a path that appears now is scanned by the kernel, which makes its partitions
        # (sdX1, sdX2) before anyone sees the disk; the rule takes them away
        watch = kernel_monitor()
        host_added()
        new = next(p for p in topo.discover() if p.name not in names)
        if topo.is_standby(new.host):
            # scsi_debug's standby port: once scsi_dh_alua is attached (a table of an
            # earlier test names "alua"), it refuses reads, and the kernel reads no table
            # through it. The next host is not standby.
            host_added()
            new = next(p for p in topo.discover() if p.name not in [*names, new.name])
        run("udevadm", ["settle", "-t", "60"])
        wait_for(lambda: kernel_partitions(new.name) == [], 30, f"{new.name}'s partitions")
        wait_for(
            lambda: any(
                p["name"] == new.name and p["kernel_state"] == "active"
                for p in d.maps()["mpatha"]["paths"]
            ),
            90,
            f"{new.name} in mpatha",
        )
        seen = drain(watch)
        for n in (1, 2):
            part = f"{new.name}{n}"
            assert ("add", part) in seen, f"the kernel made {part}: {sorted(seen)}"
            assert ("remove", part) in seen, f"the rule took {part} away: {sorted(seen)}"

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
