"""md multipath on the real 6.1 kernel: our mdadm layer and mdstat parser against the
personality itself, over two scsi_debug paths to one LUN.

Each test gets a fresh array (``md_array``) and its finalizer stops it and zeroes the
superblocks of the two paths it used, and nothing else. All I/O runs in a daemon thread
joined with a timeout: a stuck request must fail the test, never hang the lab.
"""

from __future__ import annotations

import mmap
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from dmpath.errors import CommandError
from dmpath.kernel import mdadm
from dmpath.kernel.mdadm import ArrayBusy, MemberBusy
from dmpath.kernel.mdstat import MdArray, parse_md_multipath_log
from dmpath.lab.harness import call_with_timeout
from dmpath.runner import run

pytestmark = pytest.mark.lab

MD_LINK = "/dev/md/dmpathtest"  # mdadm picks a free md127-style minor for it
BLOCK = 4096
WAIT_TIMEOUT = 20.0



# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _pattern(tag: str) -> bytes:
    return (tag.encode() * (BLOCK // len(tag) + 1))[:BLOCK]


def write_direct(dev: str, offset: int, data: bytes) -> None:
    """One O_DIRECT|O_SYNC block write: no page cache, so the array really does the I/O."""
    assert len(data) == BLOCK

    def io() -> None:
        buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT wants
        buf.write(data)
        fd = os.open(dev, os.O_WRONLY | os.O_DIRECT | os.O_SYNC)
        try:
            assert os.pwrite(fd, buf, offset) == BLOCK
        finally:
            os.close(fd)

    call_with_timeout(io, f"write {dev}@{offset}")


def read_direct(dev: str, offset: int) -> bytes:
    def io() -> bytes:
        buf = mmap.mmap(-1, BLOCK)
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
        try:
            n = os.preadv(fd, [buf], offset)
        finally:
            os.close(fd)
        return bytes(buf[:n])

    return call_with_timeout(io, f"read {dev}@{offset}")


def wait_for(cond: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT) -> None:
    """Poll a kernel condition until true; the personality updates mdstat synchronously
    for fail/add, so this normally returns at once."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def settle() -> None:
    run("udevadm", ["settle", "-t", "20"], check=False, timeout=30)


def arrays_holding(names: Sequence[str]) -> list[MdArray]:
    """Every array in /proc/mdstat with one of these paths as a member."""
    wanted = set(names)
    return [a for a in mdadm.read_mdstat().arrays if wanted & {m.name for m in a.members}]


def log_mark() -> str:
    """Write a unique line into the kernel log and return it. Counting events since a
    mark, not in the whole log: the ring buffer is finite, and an earlier test whose
    I/O waited on a dead last path fills it with the personality's messages, so a
    whole-log count stops growing."""
    mark = f"dmpath-lab mark {uuid.uuid4().hex}"
    with open("/dev/kmsg", "w") as fh:
        fh.write(mark + "\n")
    return mark


def kernel_log_events(kind: str, since: str) -> int:
    text = run("dmesg", [], check=False, timeout=30).stdout
    at = text.rfind(since)
    assert at >= 0, f"mark {since!r} is gone from the kernel log"
    return sum(1 for e in parse_md_multipath_log(text[at:]) if e.kind == kind)


@dataclass(frozen=True)
class Array:
    dev: str  # /dev/mdN, the kernel's name for MD_LINK
    name: str  # mdN
    members: tuple[str, ...]  # /dev/sdX, in creation (slot) order

    def mdstat(self) -> MdArray:
        arr = mdadm.read_mdstat().array(self.name)
        assert arr is not None, f"{self.name} vanished from /proc/mdstat"
        return arr


def _path_state(name: str) -> str:
    with open(f"/sys/block/{name}/device/state") as fh:
        return fh.read().strip()


def _set_path_state(name: str, state: str) -> None:
    # the kernel accepts "offline\n" but answers EINVAL to "offline" without the newline
    with open(f"/sys/block/{name}/device/state", "w") as fh:
        fh.write(state + "\n")


def _teardown(members: Sequence[str]) -> None:
    """Stop whatever array holds our paths, then wipe their superblocks.

    Repeated because udev may re-assemble the array between the two steps: the stop
    closes the paths, the "watch" rule sends change events, and incremental assembly
    finds superblocks still there.
    """
    names = [m.removeprefix("/dev/") for m in members]
    for name in names:
        if _path_state(name) != "running":
            _set_path_state(name, "running")  # an offline path cannot be wiped
    problems: list[str] = []
    for _attempt in range(5):
        problems = []
        for arr in arrays_holding(names):
            try:
                mdadm.stop("/dev/" + arr.name)
            except ArrayBusy as exc:
                problems.append(str(exc))
        settle()
        for member in members:
            try:
                mdadm.zero_superblock(member)
            except CommandError as exc:
                problems.append(str(exc))
        settle()
        if not problems and not arrays_holding(names):
            return
    pytest.fail("md test clean-up did not finish: " + "; ".join(problems))


# --------------------------------------------------------------------------------------
# the array under test
# --------------------------------------------------------------------------------------


@pytest.fixture
def md_array(scsi_paths: Sequence[Any]) -> Iterator[Array]:
    assert len(scsi_paths) == 2, "the md lab tests expect 1 LUN x 2 paths"
    assert scsi_paths[0].wwid == scsi_paths[1].wwid
    members = tuple("/dev/" + p.name for p in scsi_paths)
    names = [p.name for p in scsi_paths]
    held = arrays_holding(names)
    assert not held, f"paths already in an md array before the test: {held}"
    for m in members:
        assert mdadm.examine(m) is None, f"{m} carries an md superblock before the test"
    try:
        mdadm.create(MD_LINK, members, name="dmpathtest")
        settle()
        found = arrays_holding(names)
        assert len(found) == 1, f"expected one array over {names}, mdstat has {found}"
        name = found[0].name
        yield Array("/dev/" + name, name, members)
    finally:
        _teardown(members)


# --------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------


def test_personality_is_there_on_6_1() -> None:
    mdadm.ensure_multipath_personality()
    assert mdadm.read_mdstat().has_multipath


def test_created_array_has_both_paths_working(md_array: Array) -> None:
    arr = md_array.mdstat()
    assert arr.active and arr.personality == "multipath"
    assert arr.status_brackets == "[2/2] [UU]"
    assert sorted(m.name for m in arr.members) == sorted(
        m.removeprefix("/dev/") for m in md_array.members
    )
    assert not any(m.faulty or m.spare for m in arr.members)

    detail = mdadm.detail(md_array.dev)
    assert detail.level == "multipath" and detail.raid_devices == 2
    assert (detail.active_devices, detail.working_devices, detail.failed_devices) == (2, 2, 0)
    assert sorted(m.device or "" for m in detail.members) == sorted(md_array.members)
    assert {m.raid_device for m in detail.members} == {0, 1}

    export = mdadm.detail_export(md_array.dev)
    assert export.level == "multipath" and export.uuid == detail.uuid
    assert sorted(m.slot for m in export.members if m.slot is not None) == [0, 1]

    for member in md_array.members:
        sb = mdadm.examine(member)
        assert sb is not None and sb.array_uuid == detail.uuid and sb.level == "multipath"
        assert sb.slot in (0, 1)


def test_fail_remove_readd_cycle(md_array: Array) -> None:
    first, second = md_array.members
    before = _pattern("before-fail ")
    write_direct(md_array.dev, 0, before)

    out = mdadm.fail(md_array.dev, first)
    assert out.did("faulty")
    arr = md_array.mdstat()
    assert arr.status_brackets is not None and arr.status_brackets.startswith("[2/1]")
    gone = arr.member(first)
    assert gone is not None and gone.faulty

    # a working path may not be removed: the kernel answers EBUSY
    with pytest.raises(MemberBusy) as ei:
        mdadm.remove(md_array.dev, second)
    assert ei.value.member == second and ei.value.operation == "remove"

    assert mdadm.remove(md_array.dev, first).did("removed")
    arr = md_array.mdstat()
    assert arr.member(first) is None and arr.status_brackets is not None
    assert arr.status_brackets.startswith("[2/1]")

    out = mdadm.add(md_array.dev, first)
    assert out.did("added") or out.did("re-added")
    wait_for(lambda: md_array.mdstat().status_brackets == "[2/2] [UU]", "[2/2] [UU] after add")
    back = md_array.mdstat().member(first)
    assert back is not None and not back.faulty

    assert read_direct(md_array.dev, 0) == before


def test_last_path_is_never_failed(md_array: Array) -> None:
    first, second = md_array.members
    before = _pattern("data-before ")
    write_direct(md_array.dev, 0, before)
    assert read_direct(md_array.dev, 0) == before

    mdadm.fail(md_array.dev, first)
    wait_for(lambda: md_array.mdstat().working_disks == 1, "one working path")
    mark = log_mark()

    # mdadm reports success, the personality keeps its last path
    assert mdadm.fail(md_array.dev, second).did("faulty")
    arr = md_array.mdstat()
    assert arr.active
    assert arr.raid_disks == 2 and arr.working_disks == 1
    assert arr.slots is not None and sum(arr.slots) == 1  # still one U
    last = arr.member(second)
    assert last is not None and not last.faulty
    first_member = arr.member(first)
    assert first_member is not None and first_member.faulty
    assert kernel_log_events("last_path_error", since=mark) > 0

    # and I/O through the array still works, old data intact
    after = _pattern("after-last-fail ")
    write_direct(md_array.dev, 16 * BLOCK, after)
    assert read_direct(md_array.dev, 16 * BLOCK) == after
    assert read_direct(md_array.dev, 0) == before


def test_io_error_on_a_path_fails_it_and_io_continues(md_array: Array) -> None:
    data = _pattern("survives-path-loss ")
    write_direct(md_array.dev, 0, data)
    slot0 = next(m for m in mdadm.detail(md_array.dev).members if m.raid_device == 0)
    assert slot0.device is not None
    victim = slot0.device.removeprefix("/dev/")  # the personality sends I/O to slot 0 first
    mark = log_mark()

    _set_path_state(victim, "offline")
    assert read_direct(md_array.dev, 0) == data  # retried on the other path

    arr = md_array.mdstat()
    assert arr.status_brackets == "[2/1] [_U]"
    dead = arr.member(victim)
    assert dead is not None and dead.faulty
    assert kernel_log_events("path_failed", since=mark) > 0

    write_direct(md_array.dev, 8 * BLOCK, data)
    assert read_direct(md_array.dev, 8 * BLOCK) == data
