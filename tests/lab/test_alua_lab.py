"""dmpathd follows the target's ALUA states on a real iSCSI fabric: LIO moves a portal's
target port group between active/optimized and standby (as a controller failover does),
and the map's groups follow, under verified I/O (see dmpath.lab.iscsi, docs/lab-iscsi.md).

The target tells the host only through the ports: the first command through a changed
port gets a unit attention 2a/06 (the midlayer's ``SDEV_UA`` uevent), a command to a
standby port fails with NOT READY 04/0b. The test asserts why the map regrouped (the
events), where the I/O goes after it (the disks' own I/O counters), and that no I/O
was lost; never how fast.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator

import pytest

from dmpath.kernel import dmsetup
from dmpath.lab import iscsi
from dmpath.lab.harness import DaemonUnderTest, VerifiedIO, wait_for

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]
Fabric = tuple[iscsi.Fabric, list[iscsi.IscsiPath]]

#: the daemon manages the iSCSI LUNs only: scsi_debug disks other tests left are not ours
ISCSI_ONLY = '[blacklist]\nprotocol = ["^scsi:unspec$"]\n'
#: grouped by ALUA priority (the defaults, said here because the test needs them)
ALUA_DEFAULTS = {"path_grouping_policy": "group_by_prio", "prio": "alua"}
#: the unit attention reaches dmpathd through udev, or a check sees the standby port;
#: under emulation udev takes seconds per event
FOLLOW_TIMEOUT = 120.0
#: what makes dmpathd read the ALUA states again here: the midlayer's uevent, or a
#: check that met the standby port (04/0b) or its transition (04/0a); whichever comes first
ALUA_CAUSES = ("unit attention: asymmetric access state changed", "(04/0b)", "(04/0a)")


def _alua_cause(event: str, to: iscsi.IscsiPath) -> bool:
    """The regroup's event names an ALUA signal: one of ``ALUA_CAUSES``, or the check of
    the port turned optimized answering ready where it answered standby (a check whose
    verdict leaves ghost; it can come before the unit attention's uevent)."""
    return any(cause in event for cause in ALUA_CAUSES) or event.endswith(
        f"after check: ready ({to.name})"
    )
#: writes (each read back) through the map that must not touch the standby port
IO_STRETCH = 200


@pytest.fixture
def alua_fabric(fabric: Fabric) -> Iterator[Fabric]:
    """The fabric with portal 0 active/optimized and portal 1 standby; every fault
    cleared after the test."""
    f, paths = fabric
    f.alua(f.portals[1], "standby")
    yield f, paths
    f.clear_faults()


def _io_counts(path: iscsi.IscsiPath) -> tuple[int, int]:
    """Reads and writes the disk has completed (/sys/block/sdX/stat): the block layer
    counts the I/O dm sends down a path, not our checks' SCSI commands (passthrough)."""
    with open(f"/sys/block/{path.name}/stat") as fh:
        fields = fh.read().split()
    return int(fields[0]), int(fields[4])


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError as exc:
        return exc.strerror or str(exc)


def _first_group(name: str) -> list[str]:
    return [p.dev for p in dmsetup.table(name).groups[0].paths]


def _active_group(name: str) -> list[str]:
    """The devnums of the group dm sends I/O to now ([] before the first I/O)."""
    st = dmsetup.status(name)
    return [p.dev for g in st.groups if g.state.value == "A" for p in g.paths]


def _events(d: DaemonUnderTest, kind: str) -> list[str]:
    return [f"{e['path']}: {e['message']}" for e in d.events(kind)]


def _why(d: DaemonUnderTest, name: str) -> str:
    out = []
    with contextlib.suppress(Exception):
        out.append(f"table {dmsetup.table(name)}")
        out.append(f"status {dmsetup.status(name)}")
    with contextlib.suppress(Exception):
        out.append("events: " + "; ".join(
            f"{e['kind']} {e['path']} {e['message']}" for e in d.show()["events"][-15:]
        ))
    return " | ".join(out)


def _kernel_log(path: iscsi.IscsiPath) -> str:
    """The kernel's last lines about the disk (what sent I/O there, and what became of it)."""
    out = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
    hctl = path.hctl
    return " / ".join([ln for ln in out.splitlines() if path.name in ln or hctl in ln][-12:])


def _follow(
    d: DaemonUnderTest, name: str, io: VerifiedIO, to: iscsi.IscsiPath, standby: iscsi.IscsiPath
) -> str:
    """Wait for the map to put ``to`` first and send I/O there; check that nothing goes
    to ``standby`` across a stretch of verified I/O after it; return the regroup's event."""
    before = len(d.events("regrouped"))
    try:
        wait_for(
            lambda: len(d.events("regrouped")) > before
            and _first_group(name) == [to.devnum]
            and _active_group(name) == [to.devnum],
            FOLLOW_TIMEOUT,
            f"{name}'s active group to follow to {to.name}",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {_why(d, name)}") from None
    event = d.events("regrouped")[before]["message"]
    io.wait_writes(io.writes + 10, 60, "I/O after the regroup")
    # udev forwards the scsi_device's unit attention uevent to its disk (60-block.rules)
    # and probes the disk (blkid reads it): those reads are udev's, not the map's; they
    # are over once udev is idle, and nothing after them reads the disk but dm
    subprocess.run(["udevadm", "settle", "-t", "60"], check=False)
    idle, busy = _io_counts(standby), _io_counts(to)
    io.wait_writes(io.writes + IO_STRETCH, 120, "a stretch of I/O after the regroup")
    now = _io_counts(standby)
    assert now == idle, (
        f"I/O went through the standby port {standby.name} ({idle} -> {now}): "
        f"{_why(d, name)} | kernel: {_kernel_log(standby)}"
    )
    after = _io_counts(to)
    assert after[0] > busy[0] and after[1] > busy[1], f"no I/O through {to.name}"
    return str(event)


def test_the_active_group_follows_the_optimized_port(
    alua_fabric: Fabric, dmpathd: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    f, paths = alua_fabric
    a = next(p for p in paths if p.portal.index == 0)
    b = next(p for p in paths if p.portal.index == 1)
    d = dmpathd(defaults=ALUA_DEFAULTS, extra=ISCSI_ONLY)
    name = wait_for(
        lambda: next((n for n, m in d.maps().items() if len(m["paths"]) == 2), None),
        120,
        "one map over both portals",
    )
    # grouped by what the target says at the start: A optimized first, B standby after
    wait_for(lambda: _first_group(name) == [a.devnum], 60, f"{a.name} in the first group")
    assert [g.paths[0].dev for g in dmsetup.table(name).groups] == [a.devnum, b.devnum]
    assert (d.path(a.name)["alua_state"], d.path(b.name)["alua_state"]) == (
        "active_optimized",
        "standby",
    )
    io = VerifiedIO(f"/dev/mapper/{name}", blocks=64).start()
    try:
        io.wait_writes(20, 60, "verified I/O to start")
        assert _active_group(name) == [a.devnum]

        # a controller failover: A turns standby, B optimized
        f.alua(a.portal, "standby")
        f.alua(b.portal, "active/optimized")
        there = _follow(d, name, io, to=b, standby=a)
        assert _alua_cause(there, b), there
        changed = _events(d, "alua_changed")
        assert any(e.startswith(f"{a.name}: ") and "-> standby" in e for e in changed), changed
        assert any(e.startswith(f"{b.name}: ") and "-> active_optimized" in e
                   for e in changed), changed

        # and back
        f.alua(b.portal, "standby")
        f.alua(a.portal, "active/optimized")
        back = _follow(d, name, io, to=a, standby=b)
        assert _alua_cause(back, a), back
    finally:
        io.stop()
    assert io.errors == []
    assert io.mismatches == 0
    assert io.verify_all() == 0
    with capsys.disabled():  # what happened, for the reader; never a verdict
        # scsi_dh_alua is attached by itself once loaded (an earlier test's "alua" table)
        handlers = {p.name: _read(f"/sys/block/{p.name}/device/dh_state") for p in (a, b)}
        print(f"\n[alua] device handlers {handlers}; regrouped: {there!r}; back: {back!r}")
        print("[alua] " + "; ".join(_events(d, "alua_changed")))
