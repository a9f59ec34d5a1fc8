"""dmpathd's life on the real 6.1 kernel: paths that come and go, the md backend from end
to end, and a ``kill -9`` followed by adoption of everything the dead daemon made.

Every wait is a condition polled with a timeout (``wait_for``), and all I/O the tests do
themselves runs in a daemon thread joined with a timeout: a request stuck in the kernel
fails the test, it never hangs the lab. Paths a test takes offline are brought back in a
``finally`` before the fixtures tear the daemon and its maps down.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import re
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dmpath.errors import DmpathError
from dmpath.kernel import dmsetup, mdadm
from dmpath.kernel.dmtable import PathState
from dmpath.kernel.mdstat import MdArray
from dmpath.lab import topology as topo
from dmpath.lab.harness import (
    DaemonUnderTest,
    VerifiedIO,
    call_with_timeout,
    explained,
    wait_for,
)
from dmpath.lab.topology import LabPath
from dmpath.runner import run

pytestmark = pytest.mark.lab

StartDaemon = Callable[..., DaemonUnderTest]
Topology = Callable[[str], list[LabPath]]

BLOCK = 4096
IO_TIMEOUT = 60.0
#: a checker polls every second; failing or reinstating a path takes a few dmsetup/mdadm
#: runs, each 0.2-0.5 s under TCG (more when the host is busy)
HEAL_TIMEOUT = 90.0


# --------------------------------------------------------------------------------------
# kernel views
# --------------------------------------------------------------------------------------


def table_text(name: str) -> str:
    """``dmsetup table NAME`` exactly as the kernel prints it."""
    return run("dmsetup", ["table", name]).stdout


def table_devs(name: str) -> set[str]:
    return set(dmsetup.table(name).devs)


def kernel_dm_view(prefix: str = "mpath-") -> dict[str, tuple[str, dict[str, str]]]:
    """Each of our dm maps, from the kernel alone: name -> (wwid, {devnum: state})."""
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for dev in dmsetup.list_maps():
        info = dmsetup.info(dev.name)
        if not info.uuid.startswith(prefix):
            continue
        status = dmsetup.status(dev.name)
        states = {
            p.dev: "active" if p.state is PathState.ACTIVE else "failed" for _n, p in status.paths()
        }
        assert set(states) == table_devs(dev.name)
        out[dev.name] = (info.uuid[len(prefix) :], states)
    return out


def daemon_view(d: DaemonUnderTest) -> dict[str, tuple[str, dict[str, str]]]:
    """The same, from the daemon's model."""
    return {
        name: (m["wwid"], {p["devnum"]: p["kernel_state"] for p in m["paths"]})
        for name, m in d.maps().items()
    }


def md_array_of(paths: list[LabPath]) -> MdArray | None:
    """The md multipath array whose members include any of ``paths``, if one runs."""
    names = {p.name for p in paths}
    found = [
        a
        for a in mdadm.read_mdstat().arrays
        if a.personality == "multipath" and names & {m.name for m in a.members}
    ]
    assert len(found) <= 1, f"more than one md array over {sorted(names)}: {found}"
    return found[0] if found else None


def md_brackets(arr: MdArray) -> str:
    """``[2/1] [U_]`` as /proc/mdstat prints it."""
    slots = "".join("U" if s else "_" for s in arr.slots or ())
    return f"[{arr.raid_disks}/{arr.working_disks}] [{slots}]"


def dmpath_md_arrays() -> list[str]:
    """Kernel names of every md multipath array named ``dmpath-...``."""
    out = []
    for a in mdadm.read_mdstat().arrays:
        if a.personality != "multipath":
            continue
        name = (mdadm.detail_export(f"/dev/{a.name}").name or "").split(":", 1)[-1]
        if name.startswith("dmpath-"):
            out.append(a.name)
    return out


# --------------------------------------------------------------------------------------
# I/O and topology helpers
# --------------------------------------------------------------------------------------


def pattern(tag: str) -> bytes:
    head = f"dmpath lifecycle {tag} ".encode()
    return (head * (BLOCK // len(head) + 1))[:BLOCK]


def write_read_direct(dev: str, offset: int, data: bytes) -> bytes:
    """Write one block with O_DIRECT|O_SYNC, read it back with O_DIRECT, return what came."""

    def io() -> bytes:
        buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT wants
        try:
            buf.write(data)
            fd = os.open(dev, os.O_RDWR | os.O_DIRECT | os.O_SYNC)
            try:
                assert os.pwritev(fd, [buf], offset) == BLOCK
                buf.seek(0)
                buf.write(b"\0" * BLOCK)
                assert os.preadv(fd, [buf], offset) == BLOCK
            finally:
                os.close(fd)
            return bytes(buf)
        finally:
            buf.close()

    got: bytes = call_with_timeout(io, f"O_DIRECT write+read on {dev}")
    return got


def delete_path(p: LabPath) -> None:
    """The cable to one path pulled for good: the SCSI device is deleted."""
    with open(f"/sys/block/{p.name}/device/delete", "w") as fh:
        fh.write("1\n")
    run("udevadm", ["settle", "-t", "30"], check=False)


def rescan_host(host: int) -> None:
    with open(f"/sys/class/scsi_host/host{host}/scan", "w") as fh:
        fh.write("- - -\n")
    run("udevadm", ["settle", "-t", "30"], check=False)


@contextlib.contextmanager
def restoring(paths: list[LabPath]) -> Iterator[None]:
    """Bring every path back to ``running`` on the way out, before the fixtures' teardown."""
    try:
        yield
    finally:
        for p in paths:
            with contextlib.suppress(OSError):
                topo.set_state(p, "running")


def scrub_md(paths: list[LabPath]) -> None:
    """Stop every md array over ``paths`` and erase their superblocks, until it stays so.

    Debian's mdadm udev rules (64-md-raid-assembly) run ``mdadm --incremental`` on every
    change event of a disk with an md superblock: a path released by ``--stop`` can be
    taken again (an inactive array holding it as a spare) before its superblock is
    erased, and then the next test finds it held by a foreign array and scsi_debug cannot
    be unloaded. So: stop, erase, settle, look again.
    """
    paths = [p for p in paths if os.path.exists(p.devnode)]  # a deleted path has no md
    names = {p.name for p in paths}

    def over_paths() -> list[str]:
        return [a.name for a in mdadm.read_mdstat().arrays if names & {m.name for m in a.members}]

    def clean() -> bool:
        run("udevadm", ["settle", "-t", "20"], check=False)
        for md in over_paths():
            with contextlib.suppress(DmpathError):
                mdadm.stop(f"/dev/{md}")
        for p in paths:
            with contextlib.suppress(DmpathError):
                mdadm.zero_superblock(p.devnode)
        run("udevadm", ["settle", "-t", "20"], check=False)
        return not over_paths() and all(mdadm.examine(p.devnode) is None for p in paths)

    wait_for(clean, 90, "no md array and no md superblock left on the lab paths")


@contextlib.contextmanager
def md_scrubbed(d: DaemonUnderTest, paths: list[LabPath]) -> Iterator[None]:
    """Stop the daemon (it would act on the array going away) and scrub md off ``paths``."""
    try:
        yield
    finally:
        d.stop()
        scrub_md(paths)


def healthy(d: DaemonUnderTest, name: str, n: int) -> dict[str, Any] | None:
    """Map ``name`` with ``n`` paths, all active in the kernel and usable for the checker
    (up, or ghost: a standby ALUA port still works)."""
    m = d.maps().get(name)
    if m is None or len(m["paths"]) != n:
        return None
    ok = all(p["kernel_state"] == "active" and p["check"] in ("up", "ghost") for p in m["paths"])
    return m if ok else None


# --------------------------------------------------------------------------------------
# 1. hotplug
# --------------------------------------------------------------------------------------


def open_file_limits(pid: int) -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE of a running process, as /proc shows them."""
    with open(f"/proc/{pid}/limits") as fh:
        for line in fh:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no open-file limit in /proc/{pid}/limits")


def test_the_daemon_can_hold_a_descriptor_for_every_path_of_a_big_san(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    """Each path's checker keeps its device open: at a thousand paths the default limit
    of 1,024 descriptors made checks fail with EMFILE and healthy paths were failed."""
    d = dmpathd()
    d.wait_maps({"mpatha": 2})
    assert d.proc is not None
    with open("/proc/sys/fs/nr_open") as fh:
        nr_open = int(fh.read())
    assert open_file_limits(d.proc.pid) == (nr_open, nr_open)


def test_hotplugged_path_joins_the_map_and_a_deleted_one_leaves(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    d = dmpathd()
    with explained(d):
        d.wait_maps({"mpatha": 2})
        wwid = scsi_paths[0].wwid
        first, second = scsi_paths
        io = VerifiedIO("/dev/mapper/mpatha").start()
        try:
            # a new SCSI host: one more path to the LUN
            before = {p.name for p in topo.discover()}
            topo.add_host()
            new = [p for p in topo.discover() if p.name not in before]
            assert len(new) == 1 and new[0].wwid == wwid, new
            added = new[0]
            wait_for(
                lambda: added.devnum in table_devs("mpatha"), HEAL_TIMEOUT, "new path in the table"
            )
            m = d.wait_maps({"mpatha": 3})["mpatha"]
            assert {p["devnum"] for p in m["paths"]} == table_devs("mpatha")
            assert m["status"] == "[3/3] [UUU]"
            assert any(e["path"] == added.name for e in d.events("path_joined"))

            # an original path deleted: it leaves the map, the others carry the I/O
            delete_path(first)
            wait_for(
                lambda: first.devnum not in table_devs("mpatha"),
                HEAL_TIMEOUT,
                f"{first.name} out of the table",
            )
            m = d.wait_maps({"mpatha": 2})["mpatha"]
            assert {p["name"] for p in m["paths"]} == {second.name, added.name}
            assert table_devs("mpatha") == {second.devnum, added.devnum}
            assert any(e["path"] == first.name for e in d.events("path_removed"))

            # its host rescanned: the LUN comes back on it and rejoins
            rescan_host(first.host)
            back = wait_for(
                lambda: [p for p in topo.discover() if p.host == first.host], 30, "path back"
            )[0]
            wait_for(
                lambda: back.devnum in table_devs("mpatha"), HEAL_TIMEOUT, "returned path rejoins"
            )
            d.wait_maps({"mpatha": 3})

            # the added host unplugged again: back to the topology we started from
            topo.remove_last_host()
            wait_for(
                lambda: added.devnum not in table_devs("mpatha"),
                HEAL_TIMEOUT,
                f"{added.name} out of the table",
            )
            m = d.wait_maps({"mpatha": 2})["mpatha"]
            assert {p["name"] for p in m["paths"]} == {back.name, second.name}
            assert daemon_view(d) == kernel_dm_view()
            assert len(topo.discover()) == 2
            assert io.writes > 0
        finally:
            io.stop()
        assert io.errors == [], io.errors[:5]
        assert io.mismatches == 0
        assert call_with_timeout(io.verify_all, "verify_all") == 0


def test_a_burst_of_udev_events_is_one_pass_per_window_and_changes_nothing(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    """100 change events on the paths at once (as a fabric rescan makes): every one is
    seen and counted, passes cover several events each, and the map is not touched.

    The lab's udevd hands events on at about 3 per second per device under emulation
    (measured: 200 events took a minute), so the monitor never sees them all at once;
    the 5 s window still gathers many per pass. The exact one-pass-per-burst behaviour
    is pinned by the unit tests (tests/unit/test_coalescing.py)."""
    d = dmpathd(defaults={"coalesce_ms": 5000})
    with explained(d):
        d.wait_maps({"mpatha": 2})
        before = table_text("mpatha")
        n_before = len(d.request("events"))
        rounds = 50
        for _ in range(rounds):
            for p in scsi_paths:
                with open(f"/sys/block/{p.name}/uevent", "w") as fh:
                    fh.write("change\n")

        def bursts() -> list[int]:
            return [
                int(m.group(1))
                for e in d.request("events")[n_before:]
                if e["kind"] == "rescan"
                and (m := re.search(r"after (\d+) udev event", e["message"]))
            ]

        total = rounds * len(scsi_paths)
        wait_for(lambda: sum(bursts()) >= total, 180, f"all {total} events seen")
        run("udevadm", ["settle", "-t", "60"], check=False)
        got = bursts()
        assert sum(got) == total, got
        assert len(got) < total // 2, f"{len(got)} passes for {total} events: {got}"
        assert table_text("mpatha") == before
        later = d.request("events")[n_before:]
        assert not [e for e in later if e["kind"] not in ("rescan", "check")], later


# --------------------------------------------------------------------------------------
# 2. md backend
# --------------------------------------------------------------------------------------


def test_md_backend_fails_reinstates_and_keeps_the_last_path(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    """With every path dead the personality retries pending I/O on the last one for ever,
    and whatever opens the array meanwhile (``mdadm --fail``; udev's partition scan after
    our write is such pending I/O) blocks until a path returns: the daemon must fail
    paths without opening the array, or it hangs here."""
    d = dmpathd(defaults={"backend": "md"})
    with md_scrubbed(d, scsi_paths), explained(d):
        a, b = scsi_paths
        m = d.wait_maps({"mpatha": 2})["mpatha"]
        assert m["backend"] == "md"
        assert m["status"] == "[2/2] [UU]"
        arr = md_array_of(scsi_paths)
        assert arr is not None, mdadm.read_mdstat()
        assert arr.personality == "multipath"
        assert md_brackets(arr) == "[2/2] [UU]"
        assert {x.name for x in arr.members} == {a.name, b.name}
        assert m["sysfs"] == arr.name
        dev = m["devnode"]

        with restoring(scsi_paths):
            # one path dies: the daemon fails it in the array, I/O goes on over the other
            topo.set_state(b, "offline")
            d.wait_path(b.name, timeout=HEAL_TIMEOUT, kernel_state="failed")

            def one_failed() -> MdArray | None:
                x = md_array_of(scsi_paths)
                return x if x is not None and x.working_disks == 1 else None

            arr = wait_for(one_failed, HEAL_TIMEOUT, "[2/1] in /proc/mdstat")
            assert md_brackets(arr) in ("[2/1] [U_]", "[2/1] [_U]")
            flags = {x.name: x.flags for x in arr.members}
            assert "F" in flags[b.name] and "F" not in flags[a.name], arr
            assert d.maps()["mpatha"]["status"] in ("[2/1] [U_]", "[2/1] [_U]")
            assert any(e["path"] == b.name for e in d.events("path_failed"))
            data = pattern("md one path")
            assert write_read_direct(dev, 8 * BLOCK, data) == data

            # it comes back: removed and re-added by the daemon
            topo.set_state(b, "running")
            wait_for(
                lambda: (
                    (x := md_array_of(scsi_paths)) is not None
                    and md_brackets(x) == "[2/2] [UU]"
                    and not any(mm.faulty for mm in x.members)
                ),
                HEAL_TIMEOUT,
                "[2/2] [UU] again",
            )
            wait_for(lambda: healthy(d, "mpatha", 2), HEAL_TIMEOUT, "daemon: both paths up")
            assert d.maps()["mpatha"]["status"] == "[2/2] [UU]"
            assert any(e["path"] == b.name for e in d.events("path_reinstated"))
            assert write_read_direct(dev, 9 * BLOCK, data) == data

            # both die: one is failed, the last one stays active (the personality's rule)
            topo.set_state(a, "offline")
            topo.set_state(b, "offline")

            def last_path_alert() -> dict[str, Any] | None:
                mm = d.maps()["mpatha"]
                return mm if any("only one IO path left" in x for x in mm["alerts"]) else None

            mm = wait_for(last_path_alert, HEAL_TIMEOUT, "the last-path alert")
            arr = md_array_of(scsi_paths)
            assert arr is not None
            assert arr.working_disks == 1 and (arr.slots or ()).count(True) == 1, arr
            assert sum(1 for x in arr.members if not x.faulty) == 1, arr
            assert mm["working"] == 1
            kept = next(x.name for x in arr.members if not x.faulty)
            assert any(kept in x for x in mm["alerts"]), mm["alerts"]

            # both back: the failed one is re-added, the alert goes away
            topo.set_state(a, "running")
            topo.set_state(b, "running")
            wait_for(
                lambda: (
                    (x := md_array_of(scsi_paths)) is not None and md_brackets(x) == "[2/2] [UU]"
                ),
                HEAL_TIMEOUT,
                "[2/2] [UU] after both came back",
            )
            mm = wait_for(lambda: healthy(d, "mpatha", 2), HEAL_TIMEOUT, "daemon: both up again")
            assert not any("only one IO path left" in x for x in mm["alerts"]), mm["alerts"]


def test_md_io_stuck_on_a_dead_last_path_flows_again_when_the_other_path_returns(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    """b dies and is failed; then a, the kept last path, dies too and the writes wait.
    b returns while a stays dead: the daemon must re-add b without opening the array
    (an open hangs while the I/O is stuck), and the waiting writes complete through b."""
    d = dmpathd(defaults={"backend": "md"})
    with md_scrubbed(d, scsi_paths), explained(d):
        a, b = scsi_paths
        dev = d.wait_maps({"mpatha": 2})["mpatha"]["devnode"]
        with restoring(scsi_paths):
            io = VerifiedIO(dev, blocks=64).start()
            try:
                wait_for(lambda: io.writes > 20, 60, "verified I/O running")
                topo.set_state(b, "offline")
                d.wait_path(b.name, timeout=HEAL_TIMEOUT, kernel_state="failed")
                topo.set_state(a, "offline")
                wait_for(
                    lambda: any("only one IO path left" in x for x in d.maps()["mpatha"]["alerts"]),
                    HEAL_TIMEOUT,
                    "the last-path alert",
                )
                waiting_at = io.writes
                topo.set_state(b, "running")  # a stays dead
                wait_for(
                    lambda: io.writes > waiting_at + 50,
                    HEAL_TIMEOUT,
                    "writes flowing again through the returned path",
                )
                assert d.path(b.name)["kernel_state"] == "active"
                assert any(e["path"] == b.name for e in d.events("path_reinstated"))
                topo.set_state(a, "running")
                wait_for(lambda: healthy(d, "mpatha", 2), HEAL_TIMEOUT, "daemon: both up")
            finally:
                io.stop()
        assert io.errors == [], io.errors[:5]
        assert io.mismatches == 0
        assert call_with_timeout(io.verify_all, "verify_all") == 0


def test_md_path_deleted_leaves_the_array_and_rejoins_when_its_host_is_rescanned(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    """A cable pulled for good on the md backend: the vanished member is removed from
    the array (no faulty slot left behind), I/O carries on, and when the host is
    rescanned the path is added back into the freed slot."""
    d = dmpathd(defaults={"backend": "md"})
    present = list(scsi_paths)  # what the scrub at the end must clean (names may change)
    with md_scrubbed(d, present), explained(d):
        first, second = scsi_paths
        dev = d.wait_maps({"mpatha": 2})["mpatha"]["devnode"]
        io = VerifiedIO(dev, blocks=64).start()
        try:
            wait_for(lambda: io.writes > 20, 60, "verified I/O running")
            delete_path(first)

            def without_first() -> MdArray | None:
                x = md_array_of([second])
                names = {mm.name for mm in x.members} if x is not None else {first.name}
                return x if first.name not in names else None

            arr = wait_for(without_first, HEAL_TIMEOUT, f"{first.name} out of the array")
            assert md_brackets(arr) in ("[2/1] [U_]", "[2/1] [_U]"), arr
            m = d.wait_maps({"mpatha": 1})["mpatha"]
            assert [p["name"] for p in m["paths"]] == [second.name]
            assert any(e["path"] == first.name for e in d.events("path_removed"))

            rescan_host(first.host)
            back = wait_for(
                lambda: [p for p in topo.discover() if p.host == first.host], 30, "path back"
            )[0]
            present[:] = [second, back]
            arr = wait_for(
                lambda: (
                    (x := md_array_of([second, back])) is not None
                    and md_brackets(x) == "[2/2] [UU]"
                    and x
                ),
                HEAL_TIMEOUT,
                "[2/2] [UU] with the path back",
            )
            assert {mm.name for mm in arr.members} == {back.name, second.name}
            d.wait_maps({"mpatha": 2})

            # a third path while both slots are taken: md keeps it as a spare (standby)
            topo.add_host()
            try:
                extra = [p for p in topo.discover() if p.name not in (back.name, second.name)]
                assert len(extra) == 1, extra
                present.append(extra[0])
                spare = d.wait_path(extra[0].name, timeout=HEAL_TIMEOUT, kernel_state="spare")
                assert spare["check"] == "up"
                m = d.maps()["mpatha"]
                assert m["status"] == "[2/2] [UU]" and m["working"] == 2
                x = md_array_of([extra[0]])
                assert x is not None and md_brackets(x) == "[2/2] [UU]"
                assert [mm.spare for mm in x.members if mm.name == extra[0].name] == [True]
            finally:
                topo.remove_last_host()
        finally:
            io.stop()
        assert io.errors == [], io.errors[:5]
        assert io.mismatches == 0


def test_md_array_is_adopted_after_kill_not_created_twice(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    d = dmpathd(defaults={"backend": "md"})
    with md_scrubbed(d, scsi_paths), explained(d):
        m = d.wait_maps({"mpatha": 2})["mpatha"]
        wwid = m["wwid"]
        assert wwid
        arr = md_array_of(scsi_paths)
        assert arr is not None

        d.kill(signal.SIGKILL)
        d.start()
        # adopted, and once the paths are seen the map has its WWID and their states back
        m = wait_for(
            lambda: (x := healthy(d, "mpatha", 2)) is not None and x["wwid"] == wwid and x,
            HEAL_TIMEOUT,
            "the adopted array with its WWID and both paths up",
        )
        assert m["backend"] == "md" and m["sysfs"] == arr.name
        assert m["status"] == "[2/2] [UU]"
        assert [e["map"] for e in d.events("map_adopted")] == ["mpatha"]
        assert d.events("map_created") == []
        assert d.events("error") == []
        assert list(d.maps()) == ["mpatha"]
        assert dmpath_md_arrays() == [arr.name]
        after = md_array_of(scsi_paths)
        assert after is not None and md_brackets(after) == "[2/2] [UU]"
        assert {x.name for x in after.members} == {x.name for x in arr.members}


def read_blocks(devnode: str, count: int) -> bytes:
    """The first ``count`` blocks of ``devnode``, read past the page cache."""
    buf = mmap.mmap(-1, BLOCK * count)
    fd = os.open(devnode, os.O_RDONLY | os.O_DIRECT)
    try:
        os.preadv(fd, [buf], 0)
        return bytes(buf)
    finally:
        os.close(fd)
        buf.close()


def test_md_array_stopped_with_its_data_is_assembled_again_not_recreated(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    """As across a reboot: the array is stopped with its superblocks on the paths; the
    next dmpathd assembles it from them (same array UUID, data in place) rather than
    creating a new array over them."""
    d = dmpathd(defaults={"backend": "md"})
    with md_scrubbed(d, scsi_paths), explained(d):
        d.wait_maps({"mpatha": 2})
        arr = md_array_of(scsi_paths)
        assert arr is not None
        uuid = mdadm.detail_export(f"/dev/{arr.name}").uuid
        io = VerifiedIO(f"/dev/{arr.name}", blocks=64).start()
        wait_for(lambda: io.writes >= 64, 60, "one full generation of verified writes")
        io.stop()
        assert io.errors == [] and io.mismatches == 0
        before = read_blocks(f"/dev/{arr.name}", 64)

        d.stop()
        mdadm.stop(f"/dev/{arr.name}")  # what shutdown does; the superblocks stay
        run("udevadm", ["settle", "-t", "30"], check=False)
        assert md_array_of(scsi_paths) is None
        assert all(mdadm.examine(p.devnode) is not None for p in scsi_paths)

        d.start()
        m = wait_for(lambda: healthy(d, "mpatha", 2), HEAL_TIMEOUT, "the array back, both up")
        assert m["status"] == "[2/2] [UU]"
        again = md_array_of(scsi_paths)
        assert again is not None
        assert mdadm.detail_export(f"/dev/{again.name}").uuid == uuid
        assert read_blocks(f"/dev/{again.name}", 64) == before
        made = d.events("map_created")
        assert [e["message"].split()[0] for e in made] == ["assembled"], made


# --------------------------------------------------------------------------------------
# 3. kill -9 and adoption (dm)
# --------------------------------------------------------------------------------------


def test_kill9_then_restart_adopts_maps_untouched_and_io_never_notices(
    lab_topology: Topology, dmpathd: StartDaemon
) -> None:
    paths = lab_topology("2x2")
    d = dmpathd()
    with explained(d):
        d.wait_maps({"mpatha": 2, "mpathb": 2})
        for name in ("mpatha", "mpathb"):
            wait_for(functools.partial(healthy, d, name, 2), HEAL_TIMEOUT, f"{name} healthy")
        assert daemon_view(d) == kernel_dm_view()
        names = sorted(d.maps())
        assert names == ["mpatha", "mpathb"]
        a_paths = [p for p in paths if p.devnum in table_devs("mpatha")]
        assert len(a_paths) == 2

        with restoring(paths):
            io = VerifiedIO("/dev/mapper/mpatha").start()
            try:
                wait_for(lambda: io.writes >= 20, IO_TIMEOUT, "verified I/O running")
                tables = {n: table_text(n) for n in names}
                infos = {n: dmsetup.info(n) for n in names}

                d.kill(signal.SIGKILL)
                # the maps keep working without any daemon
                w = io.writes
                wait_for(lambda: io.writes >= w + 20, IO_TIMEOUT, "I/O with no daemon")

                d.start()
                wait_for(
                    lambda: all(healthy(d, n, 2) for n in names),
                    HEAL_TIMEOUT,
                    "adopted maps with every path seen and up",
                )
                adopted = sorted(e["map"] for e in d.events("map_adopted"))
                assert adopted == names
                assert d.events("map_created") == []
                assert d.events("error") == []
                # nothing reloaded, nothing failed or switched: same table, same event counter
                for n in names:
                    assert table_text(n) == tables[n], n
                    now = dmsetup.info(n)
                    assert (now.uuid, now.devnum, now.events, now.open_count) == (
                        infos[n].uuid,
                        infos[n].devnum,
                        infos[n].events,
                        infos[n].open_count,
                    ), n
                # the daemon's model is what a fresh scan of the kernel says
                assert daemon_view(d) == kernel_dm_view()
                for n, m in d.maps().items():
                    assert m["wwid"] == infos[n].uuid.removeprefix("mpath-")
                    assert m["sysfs"] == f"dm-{infos[n].minor}"
                    assert m["queueing"] is True  # table has queue_if_no_path (no_path_retry=12)

                # and it still watches: a path dying after the restart is noticed and failed,
                # on mpatha (I/O running: the kernel usually fails it first, the daemon
                # records it and its own checker sees it down) and on mpathb (idle: only
                # the daemon's checker can notice, and the daemon must fail it itself)
                victim = a_paths[0]
                idle_victim = next(p for p in paths if p.devnum in table_devs("mpathb"))
                topo.set_state(victim, "offline")
                topo.set_state(idle_victim, "offline")
                for p, n in ((victim, "mpatha"), (idle_victim, "mpathb")):
                    d.wait_path(p.name, timeout=HEAL_TIMEOUT, kernel_state="failed", check="down")
                    st = dmsetup.status(n).path(p.devnum)
                    assert st is not None and st.state is PathState.FAILED, (n, p)
                failed = d.events("path_failed") + d.events("kernel_path_failed")
                assert any(e["path"] == victim.name for e in failed), failed
                assert any(e["path"] == idle_victim.name for e in d.events("path_failed"))
                w = io.writes
                wait_for(lambda: io.writes >= w + 20, IO_TIMEOUT, "I/O over the other path")
                topo.set_state(victim, "running")
                topo.set_state(idle_victim, "running")
                for p in (victim, idle_victim):
                    d.wait_path(p.name, timeout=HEAL_TIMEOUT, kernel_state="active")
                assert daemon_view(d) == kernel_dm_view()
            finally:
                io.stop()
        assert io.errors == [], io.errors[:5]
        assert io.mismatches == 0
        assert io.writes > 0
        assert call_with_timeout(io.verify_all, "verify_all") == 0
