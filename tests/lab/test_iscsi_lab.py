"""dmpathd on a real iSCSI fabric: a LIO target behind two portals, open-iscsi logged in
through both, faults injected per portal (see dmpath.lab.iscsi).

The faults are the ones scsi_debug cannot show: a portal black-holed (the path hangs:
commands neither complete nor fail) and an interface going down.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest

from dmpath.kernel import dmsetup
from dmpath.lab import iscsi
from dmpath.lab.harness import DaemonUnderTest, VerifiedIO, wait_for

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]

#: the daemon manages the iSCSI LUNs only: scsi_debug disks other tests left are not ours
ISCSI_ONLY = '[blacklist]\nprotocol = ["^scsi:unspec$"]\n'
#: a black-holed session: iSCSI ping (5 s) + recovery_tmo (5 s) + checks, under emulation
FAULT_TIMEOUT = 120.0
#: the session logs in again (iscsid retries every few seconds) and udev runs
RETURN_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def fabric() -> Iterator[tuple[iscsi.Fabric, list[iscsi.IscsiPath]]]:
    f = iscsi.Fabric(luns=1)
    paths = f.setup()
    try:
        yield f, paths
    finally:
        f.teardown()


@pytest.fixture
def healthy(
    fabric: tuple[iscsi.Fabric, list[iscsi.IscsiPath]],
) -> Iterator[tuple[iscsi.Fabric, list[iscsi.IscsiPath]]]:
    """The fabric with every fault cleared after the test, and its disks all back."""
    f, paths = fabric
    yield f, paths
    f.clear_faults()
    with contextlib.suppress(AssertionError):
        wait_for(lambda: len(f.paths()) == len(paths), RETURN_TIMEOUT, "disks back")


def _map(d: DaemonUnderTest, paths: list[iscsi.IscsiPath]) -> str:
    def one() -> str | None:
        maps = d.maps()
        names = [n for n, m in maps.items() if len(m["paths"]) == len(paths)]
        return names[0] if len(names) == 1 else None

    name: str = wait_for(one, 120, "one map over both portals")
    return name


def _why(d: DaemonUnderTest, f: iscsi.Fabric, path: iscsi.IscsiPath) -> str:
    """Where a path stands, for a failure message: the session, the disk, the daemon."""
    out = []
    for session in f.sessions():
        with open(f"/sys/class/iscsi_session/{session}/state") as fh:
            out.append(f"{session} {fh.read().strip()}")
    with contextlib.suppress(OSError), open(f"/sys/block/{path.name}/device/state") as fh:
        out.append(f"{path.name} device {fh.read().strip()}")
    with contextlib.suppress(Exception):
        p = d.path(path.name)
        out.append(f"daemon: {p['check']} ({p['check_reason']}), kernel {p['kernel_state']}")
        out.append("events: " + "; ".join(
            f"{e['kind']} {e['path']} {e['message']}" for e in d.show()["events"][-12:]
        ))
    return " | ".join(out)


def _wait(what: str, pred: Callable[[], bool], timeout: float, *, d: DaemonUnderTest,
          f: iscsi.Fabric, path: iscsi.IscsiPath) -> None:
    try:
        wait_for(pred, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {_why(d, f, path)}") from None


def _states(name: str) -> dict[str, bool]:
    st = dmsetup.status(name)
    return {p.dev: p.active for _g, p in st.paths()}


def test_a_black_holed_portal_is_failed_and_io_carries_on(
    healthy: tuple[iscsi.Fabric, list[iscsi.IscsiPath]],
    dmpathd: Start,
    capsys: pytest.CaptureFixture[str],
) -> None:
    f, paths = healthy
    d = dmpathd(extra=ISCSI_ONLY)
    name = _map(d, paths)
    wait_for(lambda: all(_states(name).values()), 60, "both paths active")
    # fast_io_fail_tmo (5 s by default) is now each session's recovery_tmo
    for session in f.sessions():
        with open(f"/sys/class/iscsi_session/{session}/recovery_tmo") as fh:
            assert fh.read().strip() == "5"
    victim = next(p for p in paths if p.portal.index == 0)
    other = next(p for p in paths if p.portal.index == 1)
    io = VerifiedIO(f"/dev/mapper/{name}", blocks=64).start()
    try:
        io.wait_writes(20, 60, "verified I/O to start")
        io.longest_stall = 0.0  # from here on: what the fault costs
        t0 = time.monotonic()
        f.blackhole(victim.portal)
        _wait(
            f"{victim.name} (black-holed portal) failed in the table",
            lambda: _states(name) == {victim.devnum: False, other.devnum: True},
            FAULT_TIMEOUT, d=d, f=f, path=victim,
        )
        failed_after = time.monotonic() - t0
        assert ("path_failed", victim.name) in [(e["kind"], e["path"]) for e in d.show()["events"]]
        after = io.writes
        io.wait_writes(after + 50, FAULT_TIMEOUT, "I/O over the other portal")
        stall = io.longest_stall
        f.clear_rules()
        _wait(f"{victim.name} reinstated", lambda: all(_states(name).values()),
              RETURN_TIMEOUT, d=d, f=f, path=victim)
    finally:
        io.stop()
    assert io.errors == []
    assert io.mismatches == 0
    assert io.verify_all() == 0
    with capsys.disabled():  # figures for the reader, never a verdict
        print(f"\n[iscsi black hole] path failed in the table after {failed_after:.1f} s; "
              f"longest I/O stall {stall:.1f} s")


def test_a_link_going_down_fails_its_paths_from_the_link_event(
    healthy: tuple[iscsi.Fabric, list[iscsi.IscsiPath]], dmpathd: Start
) -> None:
    f, paths = healthy
    d = dmpathd(extra=ISCSI_ONLY)
    name = _map(d, paths)
    wait_for(lambda: all(_states(name).values()), 60, "both paths active")
    victim = next(p for p in paths if p.portal.index == 0)
    f.link(victim.portal, up=False)
    failed = lambda: not _states(name)[victim.devnum]  # noqa: E731
    _wait("failed in the table", failed, FAULT_TIMEOUT, d=d, f=f, path=victim)
    events = d.show()["events"]
    kinds = [(e["kind"], e["path"]) for e in events]
    link_down = [e for e in events if e["kind"] == "link_down"]
    want = f"link {victim.portal.host_if} down: {victim.name}"
    assert [e["message"] for e in link_down] == [want]
    # the failure came from the link event: the path's own check had not spoken yet
    first_fail = kinds.index(("path_failed", victim.name))
    assert events.index(link_down[0]) < first_fail
    path = d.path(victim.name)
    assert path["check_reason"] == f"link {victim.portal.host_if} down"
    t0 = time.monotonic()
    f.link(victim.portal, up=True)
    back = lambda: all(_states(name).values())  # noqa: E731
    _wait(f"{victim.name} reinstated", back, RETURN_TIMEOUT, d=d, f=f, path=victim)
    print(f"\n[iscsi] link back to path reinstated: {time.monotonic() - t0:.1f} s")
