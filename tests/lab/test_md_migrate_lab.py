"""``mpathctl migrate-md`` on the real 6.1 kernel (which still has md multipath): an md
multipath array over two scsi_debug paths, filled with a known pattern, moved to dm maps
over the same paths; every byte read back through the data map, I/O through a path
going offline, and dmpathd adopting the result and making it again from the
configuration, as at the next boot.

All I/O runs in a thread joined with a timeout (``call_with_timeout``): a stuck request
fails the test instead of hanging the lab.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from dmpath.config.records import DEFAULT_DM_UUID_PREFIX
from dmpath.daemon.lock import AssemblyLock, lock_path
from dmpath.errors import CommandError
from dmpath.kernel import dmsetup, mdadm
from dmpath.kernel.mdadm import ArrayBusy
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, call_with_timeout, remove_dm_maps
from dmpath.lab.topology import LabPath
from dmpath.runner import run

# md multipath exists only up to 6.7: the 6.1 boot, and its item fails on another kernel
pytestmark = pytest.mark.lab(boot="6.1")

MD_NAME = "dmpath-migr"  # as dmpathd names its arrays: the map will be "migr"
MAP = "migr"
DATA = "migr-data"
CHUNK = 1024 * 1024
BLOCK = 4096
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def settle() -> None:
    run("udevadm", ["settle", "-t", "30"], check=False, timeout=40)


def block(i: int, tag: str) -> bytes:
    head = f"{tag} block {i:08d} ".encode()
    return (head * (BLOCK // len(head) + 1))[:BLOCK]


def chunk(first_block: int, n: int, tag: str) -> bytes:
    return b"".join(block(first_block + k, tag) for k in range(n))


def write_all(dev: str, size: int, tag: str) -> str:
    """Fill ``dev`` (``size`` bytes) with the pattern, O_DIRECT: returns its sha256."""

    def io() -> str:
        digest = hashlib.sha256()
        buf = mmap.mmap(-1, CHUNK)
        fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
        try:
            for off in range(0, size, CHUNK):
                n = min(CHUNK, size - off)
                data = chunk(off // BLOCK, n // BLOCK, tag)
                buf.seek(0)
                buf.write(data)
                assert os.pwritev(fd, [memoryview(buf)[:n]], off) == n
                digest.update(data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return digest.hexdigest()

    return call_with_timeout(io, f"fill {dev}", timeout=300)


def mismatches(dev: str, size: int, tag: str) -> list[int]:
    """Blocks of ``dev`` that do not hold the pattern (O_DIRECT reads: no page cache)."""

    def io() -> list[int]:
        bad: list[int] = []
        buf = mmap.mmap(-1, CHUNK)
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
        try:
            for off in range(0, size, CHUNK):
                n = min(CHUNK, size - off)
                got = os.preadv(fd, [memoryview(buf)[:n]], off)
                assert got == n, f"short read at {off}: {got}"
                want = chunk(off // BLOCK, n // BLOCK, tag)
                if buf[:n] != want:
                    bad += [
                        off // BLOCK + k
                        for k in range(n // BLOCK)
                        if buf[k * BLOCK : (k + 1) * BLOCK] != want[k * BLOCK : (k + 1) * BLOCK]
                    ]
        finally:
            os.close(fd)
        return bad

    return call_with_timeout(io, f"verify {dev}", timeout=300)


def size_bytes(dev: str) -> int:
    fd = os.open(dev, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def mpathctl(*args: str) -> subprocess.CompletedProcess[str]:
    # this tree's mpathctl (python -m, from the project root), not an installed one
    return subprocess.run(
        [sys.executable, "-m", "dmpath.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


def holding(names: Sequence[str]) -> list[str]:
    wanted = set(names)
    return [a.name for a in mdadm.read_mdstat().arrays if wanted & {m.name for m in a.members}]


def clean(paths: Sequence[LabPath]) -> None:
    """No dmpath maps, no array over our paths, no superblocks on them."""
    for p in paths:
        with contextlib.suppress(OSError):
            topo.set_state(p, "running")
    remove_dm_maps()
    names = [p.name for p in paths]
    for _attempt in range(5):
        for arr in holding(names):
            with contextlib.suppress(ArrayBusy, CommandError):
                mdadm.stop("/dev/" + arr)
        settle()
        for p in paths:
            with contextlib.suppress(CommandError):
                mdadm.zero_superblock("/dev/" + p.name)
        if not holding(names):
            return


@dataclass
class Setup:
    paths: list[LabPath]
    array: str  # /dev/mdN
    daemon: DaemonUnderTest
    size: int  # the array's size, bytes
    data_offset: int  # sectors, from the superblock


@pytest.fixture
def md_setup(
    scsi_paths: list[LabPath], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    paths = list(scsi_paths)
    clean(paths)
    members = ["/dev/" + p.name for p in paths]
    # the daemon's private config, socket, bindings and wwids (not started yet)
    d = DaemonUnderTest(str(tmp_path_factory.mktemp("migrate")))
    d.write_config()
    try:
        mdadm.create(f"/dev/md/{MD_NAME}", members, name=MD_NAME)
        settle()
        arrays = holding([p.name for p in paths])
        assert len(arrays) == 1, arrays
        sb = mdadm.examine(members[0])
        assert sb is not None
        offset = int(sb.fields["Data Offset"].split()[0])
        dev = "/dev/" + arrays[0]
        yield Setup(paths, dev, d, size_bytes(dev), offset)
    finally:
        d.stop()
        clean(paths)


def test_migrate_md_moves_every_byte_and_fails_over(md_setup: Setup) -> None:
    s = md_setup
    members = sorted("/dev/" + p.name for p in s.paths)
    assert s.data_offset > 0  # 1.2 metadata: the data starts after the superblock
    # the pattern names each block: read back through the data map it proves the offset
    write_all(s.array, s.size, "before")

    # refused while the array is open: nothing changes
    fd = os.open(s.array, os.O_RDONLY)
    try:
        res = mpathctl("migrate-md", s.array, "--config", s.daemon.config)
    finally:
        os.close(fd)
    assert res.returncode == 7, res.stderr
    assert res.stderr.count("\n") == 1 and "is open" in res.stderr and "nothing was changed" in (
        res.stderr
    )
    assert holding([p.name for p in s.paths]) == [os.path.basename(s.array)]

    # refused while a dmpathd holds the assembly lock (it could re-assemble the array)
    lock = AssemblyLock(lock_path(s.daemon.socket))
    lock.acquire()
    try:
        res = mpathctl("migrate-md", s.array, "--config", s.daemon.config)
    finally:
        lock.release()
    assert res.returncode == 7 and "dmpathd is running" in res.stderr, res.stderr

    # the plan, then the move
    res = mpathctl("--json", "migrate-md", s.array, "--config", s.daemon.config, "--dry-run")
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)["result"]
    assert plan["done"] is False and plan["map"] == MAP and plan["data_map"] == DATA
    assert holding([p.name for p in s.paths])  # a dry run leaves the array running

    res = mpathctl("--json", "migrate-md", s.array, "--config", s.daemon.config)
    assert res.returncode == 0, res.stderr
    done = json.loads(res.stdout)["result"]
    assert done["done"] is True and sorted(done["paths"]) == members
    assert done["data_offset"] == s.data_offset
    assert done["data_sectors"] * 512 == s.size
    settle()

    # md has let go, the superblocks are gone, the maps are there
    assert holding([p.name for p in s.paths]) == []
    assert all(mdadm.examine(m) is None for m in members)
    table = dmsetup.table(MAP)
    assert sorted(p.dev for g in table.groups for p in g.paths) == sorted(p.devnum for p in s.paths)
    info = dmsetup.info(MAP)
    assert info.uuid == DEFAULT_DM_UUID_PREFIX + done["wwid"]
    line = run("dmsetup", ["table", DATA]).stdout.strip()
    assert line == f"0 {done['data_sectors']} linear {info.devnum} {s.data_offset}"
    assert run("dmsetup", ["info", "-c", "--noheadings", "-o", "uuid", DATA]).stdout.strip() == (
        "data-" + DEFAULT_DM_UUID_PREFIX + done["wwid"]
    )
    data_dev = f"/dev/mapper/{DATA}"
    assert size_bytes(data_dev) == s.size

    # every byte where it was
    assert mismatches(data_dev, s.size, "before") == []

    # I/O goes on through the other path while one is offline, and is right afterwards
    victim = s.paths[0]
    topo.set_state(victim, "offline")
    try:
        write_all(data_dev, 8 * CHUNK, "during")
        assert mismatches(data_dev, 8 * CHUNK, "during") == []
        st = dmsetup.status(MAP).path(victim.devnum)
        assert st is not None and not st.active  # the kernel failed it on the I/O error
    finally:
        topo.set_state(victim, "running")
    dmsetup.reinstate_path(MAP, victim.devnum)

    # the configuration records the map; the daemon adopts it with both paths...
    with open(s.daemon.config) as fh:
        text = fh.read()
    assert f'alias = "{MAP}"' in text and f"data_offset = {s.data_offset}" in text
    s.daemon.extra = text[text.index("# mpathctl migrate-md") :]  # write_config() rewrites
    s.daemon.start()
    s.daemon.wait_maps({MAP: 2})
    assert any(e["map"] == MAP for e in s.daemon.events("map_adopted"))
    s.daemon.stop()

    # ... and at the next "boot" (no maps at all) makes the map and the data map again
    remove_dm_maps()
    assert not os.path.exists(data_dev)
    s.daemon.start()
    s.daemon.wait_maps({MAP: 2})
    settle()
    assert run("dmsetup", ["table", DATA]).stdout.strip() == line.replace(
        info.devnum, dmsetup.info(MAP).devnum
    )
    assert mismatches(data_dev, 8 * CHUNK, "during") == []
    # the first 8 MiB hold "during" now; the rest still "before"
    assert _rest_mismatches(data_dev, s.size) == []

    # the daemon fails an offline path over and takes it back, I/O right throughout
    s.daemon.wait_path(victim.name, kernel_state="active")
    topo.set_state(victim, "offline")
    try:
        s.daemon.wait_path(victim.name, timeout=60, kernel_state="failed")
        write_all(data_dev, 2 * CHUNK, "daemon")
        assert mismatches(data_dev, 2 * CHUNK, "daemon") == []
    finally:
        topo.set_state(victim, "running")
    s.daemon.wait_path(victim.name, timeout=60, kernel_state="active")

    # flushing the map takes its data map with it, unless that is open
    fd = os.open(data_dev, os.O_RDONLY)
    try:
        with pytest.raises(Exception, match="is open"):
            s.daemon.request("flush_map", {"map": MAP})
    finally:
        os.close(fd)
    s.daemon.request("flush_map", {"map": MAP})
    settle()
    assert not os.path.exists(data_dev) and not os.path.exists(f"/dev/mapper/{MAP}")


def _rest_mismatches(dev: str, size: int) -> list[int]:
    """Blocks past the first 8 MiB that lost the "before" pattern."""

    def io() -> list[int]:
        bad: list[int] = []
        buf = mmap.mmap(-1, CHUNK)
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
        try:
            for off in range(8 * CHUNK, size, CHUNK):
                n = min(CHUNK, size - off)
                assert os.preadv(fd, [memoryview(buf)[:n]], off) == n
                if buf[:n] != chunk(off // BLOCK, n // BLOCK, "before"):
                    bad.append(off // BLOCK)
        finally:
            os.close(fd)
        return bad

    return call_with_timeout(io, f"verify {dev}", timeout=300)
