"""dm multipath through our dmsetup layer on a real 6.1 kernel (scsi_debug, 1 LUN x 2 paths).

Rules these tests keep (queued I/O in the lab guest cannot be interrupted): they only
touch maps they create (``dmpathtest-`` names, ``dmpath-`` uuids) and remove them
afterwards; maps are created WITHOUT
``queue_if_no_path``, so I/O with no path fails instead of hanging, and the one I/O-driving
test runs its I/O in a thread with a deadline (and releases it with ``fail_if_no_path``).

scsi_debug answers ALUA per host (``host_no % 3``: optimized, non-optimized, standby) and
once the ``alua`` device handler is attached to a path, the handler itself refuses I/O to a
standby port, which dm-mpath counts as a path failure. Tests whose assertions depend on
which path I/O reaches therefore ask for two usable paths (``usable_paths``).
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable, Iterator

import pytest

from dmpath.errors import CommandError, DmpathError
from dmpath.kernel import dmsetup
from dmpath.kernel.dmtable import (
    Features,
    GroupState,
    HardwareHandler,
    MultipathTable,
    PathGroup,
    PathState,
    TableError,
    TablePath,
    as_reported,
)
from dmpath.lab import topology as topo
from dmpath.lab.boots import BOTH_KERNELS
from dmpath.lab.topology import LabPath
from dmpath.runner import run

# dm multipath as shipped now, too: every test here on both kernels
pytestmark = pytest.mark.lab(kernels=BOTH_KERNELS)

PREFIX = "dmpathtest-"
A, F = PathState.ACTIVE, PathState.FAILED
GA, GE, GD = GroupState.ACTIVE, GroupState.ENABLED, GroupState.DISABLED
USABLE_ALUA = ("active/optimized", "active/non-optimized", "transitioning", "lba-dependent")
IO_DEADLINE = 60.0
CHUNK = 64 * 1024


def settle() -> None:
    """Let udev finish with the uevents a path message sent (its probe does I/O)."""
    run("udevadm", ["settle", "-t", "20"], check=False, timeout=30)


def set_state(path: LabPath, state: str) -> None:
    """``offline``/``running`` a path. The kernel (6.1) takes the word only with its newline."""
    with open(f"/sys/block/{path.name}/device/state", "w") as fh:
        fh.write(state + "\n")


def sectors(path: LabPath) -> int:
    with open(f"/sys/block/{path.name}/size") as fh:
        return int(fh.read())


def usable(path: LabPath) -> bool:
    """False when the ALUA handler would refuse I/O on this path (standby, unavailable)."""
    try:
        with open(f"/sys/block/{path.name}/device/access_state") as fh:
            state = fh.read().strip()
    except OSError:
        return True  # no device handler attached: nothing refuses I/O
    return state in USABLE_ALUA


@pytest.fixture
def usable_paths(scsi_paths: list[LabPath]) -> list[LabPath]:
    """The two paths, both able to carry I/O; reloads scsi_debug (new host numbers) if not."""
    paths = list(scsi_paths)
    for _attempt in range(3):
        if all(usable(p) for p in paths):
            return paths
        paths = topo.setup(topo.get_topology("1x2"))
    pytest.fail(
        "no two usable paths after 3 scsi_debug reloads: "
        + ", ".join(f"{p.name} host {p.host}" for p in paths)
    )


MakeMap = Callable[[str, MultipathTable], str]


@pytest.fixture
def dm_maps() -> Iterator[MakeMap]:
    """Factory creating ``dmpathtest-<suffix>`` maps; removes exactly those at teardown."""
    created: list[str] = []

    def make(suffix: str, table: MultipathTable) -> str:
        name = PREFIX + suffix
        dmsetup.create(name, table, uuid="dmpath-" + name)
        created.append(name)
        return name

    yield make
    errors: list[str] = []
    for name in reversed(created):
        try:
            dmsetup.remove(name)
        except CommandError as exc:
            # our own test map: make sure nothing can queue, then force it out
            try:
                dmsetup.fail_if_no_path(name)
                dmsetup.remove(name, force=True)
            except DmpathError as exc2:
                errors.append(f"{name}: {exc}; forced: {exc2}")
    if errors:
        pytest.fail("could not remove test maps: " + "; ".join(errors))


def two_group_table(first: LabPath, second: LabPath) -> MultipathTable:
    return MultipathTable(
        sectors(first),
        (
            PathGroup.of("service-time", [first.devnum]),
            PathGroup.of("round-robin", [second.devnum]),
        ),
    )


# --------------------------------------------------------------------------- (a) read back


def test_created_maps_read_back_as_their_models(
    scsi_paths: list[LabPath], dm_maps: MakeMap
) -> None:
    a, b = scsi_paths
    two = two_group_table(a, b)
    name = dm_maps("st-rr", two)
    assert dmsetup.table(name) == two

    info = dmsetup.info(name)
    assert (info.name, info.uuid, info.segments) == (name, "dmpath-" + name, 1)
    assert os.path.exists(f"/dev/mapper/{name}")
    assert os.path.realpath(f"/dev/mapper/{name}") == f"/dev/dm-{info.minor}"
    assert any(d.name == name and d.devnum == info.devnum for d in dmsetup.list_maps())

    status = dmsetup.status(name)
    assert [[p.dev for p in g.paths] for g in status.groups] == [[a.devnum], [b.devnum]]
    assert [len(p.selector_args) for _n, p in status.paths()] == [2, 0]  # st: in-flight, tput

    alua = MultipathTable(
        sectors(a),
        (PathGroup.of("queue-length", [a.devnum, b.devnum]),),
        hw_handler=HardwareHandler("alua"),
    )
    name2 = dm_maps("ql-alua", alua)
    assert dmsetup.table(name2) == alua
    status2 = dmsetup.status(name2)
    assert [p.dev for p in status2.groups[0].paths] == [a.devnum, b.devnum]
    assert all(len(p.selector_args) == 1 for p in status2.groups[0].paths)  # in-flight count


def test_reload_swaps_the_table_and_the_kernel_reports_it_as_predicted(
    scsi_paths: list[LabPath], dm_maps: MakeMap
) -> None:
    a, b = scsi_paths
    original = two_group_table(a, b)
    name = dm_maps("reload", original)

    twice = MultipathTable(original.length, (PathGroup.of("round-robin", [a.devnum, a.devnum]),))
    with pytest.raises(TableError):
        dmsetup.reload(name, twice)  # refused before dmsetup runs
    missing = MultipathTable(original.length, (PathGroup.of("round-robin", ["/dev/nonexistent"]),))
    with pytest.raises(CommandError):
        dmsetup.reload(name, missing)  # the kernel refuses the load: nothing else happens
    assert dmsetup.table(name) == original

    # terse on purpose: a missing selector arg, a repeat_count the kernel clamps to 1, the
    # default queue_mode spelled out, and a start in group 2
    terse = MultipathTable(
        original.length,
        (
            PathGroup("round-robin", (TablePath(a.devnum, ("5",)),)),
            PathGroup("service-time", (TablePath(b.devnum, ()),)),
        ),
        Features(queue_mode="mq", pg_init_retries=3),
        initial_pg=2,
    )
    dmsetup.reload(name, terse)
    got = dmsetup.table(name)
    assert got == as_reported(terse)
    assert got.features == Features(pg_init_retries=3)
    assert got.groups[1].paths[0].args == ("1", "1")


# --------------------------------------------------------------------------- (b) messages


def test_messages_change_status(usable_paths: list[LabPath], dm_maps: MakeMap) -> None:
    u, o = usable_paths
    name = dm_maps("msg", two_group_table(u, o))
    settle()
    s = dmsetup.status(name)
    assert [(p.dev, p.state, p.fail_count) for _n, p in s.paths()] == [
        (u.devnum, A, 0),
        (o.devnum, A, 0),
    ]
    assert s.groups[0].state in (GA, GE) and s.groups[1].state is GE

    dmsetup.fail_path(name, u.devnum)
    settle()
    s = dmsetup.status(name)
    assert s.path(u.devnum) == s.groups[0].paths[0]
    assert (s.groups[0].paths[0].state, s.groups[0].paths[0].fail_count) == (F, 1)
    assert s.groups[1].paths[0].state is A  # the other path carried on
    assert s.valid_paths == 1

    dmsetup.fail_path(name, u.devnum)  # failing a failed path changes nothing
    assert dmsetup.status(name).groups[0].paths[0].fail_count == 1

    dmsetup.reinstate_path(name, u.devnum)
    settle()
    s = dmsetup.status(name)
    assert (s.groups[0].paths[0].state, s.groups[0].paths[0].fail_count) == (A, 1)

    dmsetup.switch_group(name, 2)
    s = dmsetup.status(name)
    assert s.next_pg == 2
    assert s.groups[0].state is GE  # switching drops the current group until the next I/O

    dmsetup.disable_group(name, 1)
    s = dmsetup.status(name)
    assert s.groups[0].state is GD
    assert all(p.state is A for _n, p in s.paths())  # disabling a group fails no path

    dmsetup.enable_group(name, 1)
    assert dmsetup.status(name).groups[0].state is not GD

    # the kernel refuses what does not fit the map; the error says "Invalid argument"
    with pytest.raises(CommandError, match="Invalid argument"):
        dmsetup.switch_group(name, 3)
    with pytest.raises(CommandError, match="Invalid argument"):
        dmsetup.message(name, "bogus_msg")


# --------------------------------------------------------------------------- (c) data


def _aligned(data: bytes) -> mmap.mmap:
    buf = mmap.mmap(-1, len(data))  # page aligned, as O_DIRECT wants
    buf.write(data)
    return buf


def _io(dev: str, writes: dict[int, bytes], reads: list[int]) -> dict[int, bytes]:
    """O_DIRECT writes then reads of CHUNK-sized blocks at the given byte offsets."""
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT | os.O_SYNC)
    try:
        for off, data in writes.items():
            buf = _aligned(data)
            assert os.pwritev(fd, [buf], off) == CHUNK
            buf.close()
        got = {}
        for off in reads:
            buf = mmap.mmap(-1, CHUNK)
            assert os.preadv(fd, [buf], off) == CHUNK
            got[off] = bytes(buf)
            buf.close()
        return got
    finally:
        os.close(fd)


def _io_with_deadline(name: str, writes: dict[int, bytes], reads: list[int]) -> dict[int, bytes]:
    """Run ``_io`` on the map in a thread; past the deadline, release queued I/O and fail."""
    got: list[dict[int, bytes]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            got.append(_io(f"/dev/mapper/{name}", writes, reads))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(IO_DEADLINE)
    if t.is_alive():
        dmsetup.fail_if_no_path(name)
        t.join(10)
        pytest.fail(f"I/O through {name} did not finish in {IO_DEADLINE:g} s")
    if errors:
        raise errors[0]
    return got[0]


def test_io_survives_an_offlined_path(usable_paths: list[LabPath], dm_maps: MakeMap) -> None:
    x, s = usable_paths  # x goes offline, s carries the I/O
    table = MultipathTable(sectors(x), (PathGroup.of("round-robin", [x.devnum, s.devnum]),))
    name = dm_maps("data", table)
    before = {i * CHUNK: os.urandom(CHUNK) for i in range(8)}
    after = {(16 + i) * CHUNK: os.urandom(CHUNK) for i in range(8)}
    try:
        got = _io_with_deadline(name, before, list(before))
        assert got == before

        set_state(x, "offline")
        # round-robin alternates per request: several I/Os certainly reach the dead path
        got = _io_with_deadline(name, after, [*before, *after])
        assert got == {**before, **after}

        st = dmsetup.status(name)
        dead, alive = st.path(x.devnum), st.path(s.devnum)
        assert dead is not None and alive is not None
        assert dead.state is F and dead.fail_count >= 1
        assert alive.state is A and alive.fail_count == 0
    finally:
        set_state(x, "running")
    dmsetup.reinstate_path(name, x.devnum)
    settle()
    st = dmsetup.status(name)
    assert st.path(x.devnum) is not None
    assert st.path(x.devnum).state is A  # type: ignore[union-attr]
    assert _io_with_deadline(name, {}, list(after)) == after
