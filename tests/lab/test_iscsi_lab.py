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
from dmpath.lab import fio, iscsi
from dmpath.lab.fio import FioRun
from dmpath.lab.harness import DaemonUnderTest, VerifiedIO, wait_for
from dmpath.policy.marginal import MarginalPolicy, describe

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]

#: the daemon manages the iSCSI LUNs only: scsi_debug disks other tests left are not ours
ISCSI_ONLY = '[blacklist]\nprotocol = ["^scsi:unspec$"]\n'
#: a black-holed session: iSCSI ping (5 s) + recovery_tmo (5 s) + checks, under emulation
FAULT_TIMEOUT = 120.0
#: the session logs in again (iscsid retries every few seconds) and udev runs
RETURN_TIMEOUT = 180.0
#: two LUNs: two maps over the same two sessions, as a real array's volumes share ports
#: (the lab conftest's ``fabric`` makes as many as a module's LUNS says)
LUNS = 2


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


def _lun(paths: list[iscsi.IscsiPath], lun: int = 0) -> list[iscsi.IscsiPath]:
    return [p for p in paths if p.lun == lun]


def _map(d: DaemonUnderTest, paths: list[iscsi.IscsiPath]) -> str:
    """The map over ``paths`` (one LUN's, one per portal), once the daemon made it."""
    want = {p.name for p in paths}

    def one() -> str | None:
        maps = d.maps()
        names = [n for n, m in maps.items() if {p["name"] for p in m["paths"]} == want]
        return names[0] if len(names) == 1 else None

    name: str = wait_for(one, 120, f"one map over {', '.join(sorted(want))}")
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


def _no_loss(io: VerifiedIO) -> None:
    """Every write of the run succeeded and every block reads back as written."""
    assert io.errors == []
    assert io.mismatches == 0
    assert io.verify_all() == 0


def test_a_black_holed_portal_is_failed_and_io_carries_on(
    healthy: tuple[iscsi.Fabric, list[iscsi.IscsiPath]],
    dmpathd: Start,
    capsys: pytest.CaptureFixture[str],
) -> None:
    f, every = healthy
    paths = _lun(every)
    d = dmpathd(defaults={"eh_deadline": 10}, extra=ISCSI_ONLY)
    name = _map(d, paths)
    wait_for(lambda: all(_states(name).values()), 60, "both paths active")
    # fast_io_fail_tmo (5 s by default) is now each session's recovery_tmo
    for session in f.sessions():
        with open(f"/sys/class/iscsi_session/{session}/recovery_tmo") as fh:
            assert fh.read().strip() == "5"
    # iSCSI's software hosts have no host reset, so no eh_deadline: skipped, no error
    assert not [e for e in d.events("error") if "eh_deadline" in e["message"]]
    for p in paths:
        host = p.hctl.split(":")[0]
        with open(f"/sys/class/scsi_host/host{host}/eh_deadline") as fh:
            assert fh.read().strip() == "off"
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
        events = d.show()["events"]
        kinds = [(e["kind"], e["path"]) for e in events]
        assert ("path_failed", victim.name) in kinds
        # TCP told first: the session's connection stalled (data out, no acknowledgement),
        # its path was failed and the connection aborted, before any check timed out
        stalls = [i for i, e in enumerate(events)
                  if e["kind"] == "tcp_stall" and e["message"].startswith(f"{victim.session}:")]
        assert stalls, _why(d, f, victim)
        assert stalls[0] < kinds.index(("path_failed", victim.name))
        assert f"failing {victim.name}" in events[stalls[0]]["message"]
        after = io.writes
        io.wait_writes(after + 50, FAULT_TIMEOUT, "I/O over the other portal")
        stall = io.longest_stall
        f.clear_rules()
        _wait(f"{victim.name} reinstated", lambda: all(_states(name).values()),
              RETURN_TIMEOUT, d=d, f=f, path=victim)
    finally:
        io.stop()
    _no_loss(io)
    with capsys.disabled():  # figures for the reader, never a verdict
        print(f"\n[iscsi black hole] path failed in the table after {failed_after:.1f} s; "
              f"longest I/O stall {stall:.1f} s")


def test_a_link_going_down_fails_its_paths_from_the_link_event(
    healthy: tuple[iscsi.Fabric, list[iscsi.IscsiPath]], dmpathd: Start
) -> None:
    f, every = healthy
    paths = _lun(every)
    d = dmpathd(extra=ISCSI_ONLY)
    name = _map(d, paths)
    wait_for(lambda: all(_states(name).values()), 60, "both paths active")
    victim = next(p for p in paths if p.portal.index == 0)
    on_link = {p.name for p in every if p.portal == victim.portal}  # every LUN's
    f.link(victim.portal, up=False)
    failed = lambda: not _states(name)[victim.devnum]  # noqa: E731
    _wait("failed in the table", failed, FAULT_TIMEOUT, d=d, f=f, path=victim)
    events = d.show()["events"]
    kinds = [(e["kind"], e["path"]) for e in events]
    link_down = [e for e in events if e["kind"] == "link_down"]
    [message] = [e["message"] for e in link_down]
    head, _sep, names = message.partition(": ")
    assert head == f"link {victim.portal.host_if} down"
    assert set(names.split(", ")) == on_link
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


def _writes(disk: str) -> int:
    """Writes the block layer completed on ``disk`` (checks are SCSI pass-through and
    are not counted: only I/O the map sent down it is)."""
    with open(f"/sys/block/{disk}/stat") as fh:
        return int(fh.read().split()[4])


def _three_strikes(disk: str) -> set[str]:
    """What the daemon says of a path made marginal by the default rule's three strikes,
    at least one a fall: the falls, and maybe checks that spanned a fall and answered
    late (a slow answer is a strike of its own)."""
    pol = MarginalPolicy()
    return {
        f"{disk} is marginal: "
        + describe([(0.0, "failed")] * falls + [(0.0, "slow")] * (3 - falls), pol)
        for falls in (1, 2, 3)
    }


def test_a_flapping_portal_becomes_marginal_and_stays_out_until_stable(
    healthy: tuple[iscsi.Fabric, list[iscsi.IscsiPath]],
    dmpathd: Start,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A portal whose link drops every other second: each fall is failed from the link
    event and each return reinstated, until the third strike within a minute (a fall, or
    a check that answered late across one) marks the path marginal; from then on it
    stays failed (no I/O goes down it) while its checks pass, and comes back only after
    marginal_recovery seconds of health. The rule's counts are the defaults; only the
    recovery time is shortened, to keep the test short."""
    f, every = healthy
    paths = _lun(every)
    recovery = 30
    d = dmpathd(defaults={"marginal_recovery": recovery}, extra=ISCSI_ONLY)
    name = _map(d, paths)
    wait_for(lambda: all(_states(name).values()), 60, "both paths active")
    victim = next(p for p in paths if p.portal.index == 0)
    other = next(p for p in paths if p.portal.index == 1)

    def marked() -> bool:
        return any(e["path"] == victim.name for e in d.events("path_marginal"))

    io = VerifiedIO(f"/dev/mapper/{name}", blocks=64).start()
    try:
        io.wait_writes(20, 60, "verified I/O to start")
        flaps = 0
        deadline = time.monotonic() + 120
        while not marked() and time.monotonic() < deadline:
            f.link(victim.portal, up=False)
            time.sleep(1.0)
            f.link(victim.portal, up=True)
            time.sleep(1.0)
            flaps += 1
        _wait(f"{victim.name} marked marginal", marked, 30, d=d, f=f, path=victim)
        [event] = [e for e in d.events("path_marginal") if e["path"] == victim.name]
        said = event["message"].split("; ")[0]
        assert said in _three_strikes(victim.name), event["message"]
        # the link is up for good now; the path answers and is kept out all the same
        _wait(f"{victim.name} failed while marginal",
              lambda: _states(name) == {victim.devnum: False, other.devnum: True},
              FAULT_TIMEOUT, d=d, f=f, path=victim)
        _wait(f"{victim.name} answering its checks",
              lambda: d.path(victim.name)["check"] == "up", RETURN_TIMEOUT, d=d, f=f,
              path=victim)
        assert d.path(victim.name)["marginal"] is True
        held_from = time.monotonic()
        before = _writes(victim.name)
        io_before = io.writes
        samples: list[int] = []

        def cleared() -> bool:
            if d.events("path_marginal_cleared"):
                return True
            # until its term ends it carries nothing, however well it answers: the count
            # is read first, so the table read after it vouches for it
            writes = _writes(victim.name)
            assert not _states(name)[victim.devnum], _why(d, f, victim)
            samples.append(writes)
            return False

        wait_for(cleared, recovery + 120, "the marginal term to end", step=1.0)
        held = time.monotonic() - held_from
        assert samples and set(samples) == {before}  # no I/O went down the marginal path
        assert io.writes > io_before  # while the map's I/O carried on over the other
        _wait(f"{victim.name} back in use", lambda: all(_states(name).values()),
              RETURN_TIMEOUT, d=d, f=f, path=victim)
        assert d.path(victim.name)["marginal"] is False
        io.wait_writes(io.writes + 20, 60, "I/O after the path's return")
    finally:
        io.stop()
    _no_loss(io)
    with capsys.disabled():  # figures for the reader, never a verdict
        print(f"\n[iscsi flapping] marginal after {flaps} link flaps; kept out {held:.0f} s "
              f"more once healthy (marginal_recovery {recovery} s)")


#: the fault loop: each kind of failure a portal can have, portals taking turns
FAULT_LOOP = ("blackhole", "reset", "link", "port", "netem")
#: how long a fault that does not fail the path (loss and delay) is left on
MARGINAL_HOLD = 20.0


def _inject(f: iscsi.Fabric, kind: str, portal: iscsi.Portal) -> None:
    if kind == "blackhole":
        f.blackhole(portal)
    elif kind == "reset":
        f.reset(portal)
    elif kind == "link":
        f.link(portal, up=False)
    elif kind == "port":
        f.port_enabled(portal, False)
    else:
        f.netem(portal, "delay 50ms 20ms loss 5%")


def test_fio_verify_across_the_maps_under_a_fault_loop_has_no_error(
    healthy: tuple[iscsi.Fabric, list[iscsi.IscsiPath]],
    dmpathd: Start,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """fio (crc32c verify, direct I/O, two jobs per map) on every map while each kind of
    portal fault is injected in turn, the portals taking turns, always one portal alive:
    every fault that takes a path down has it failed and, once cleared, reinstated; fio
    ends with no I/O error and no bad block. The marginal rule is off here (this loop
    fails each path often on purpose; the rule has its own test)."""
    f, every = healthy
    d = dmpathd(defaults={"marginal_failures": 0}, extra=ISCSI_ONLY)
    names = [_map(d, _lun(every, lun)) for lun in range(LUNS)]

    def all_active() -> bool:
        return all(all(_states(n).values()) for n in names)

    wait_for(all_active, 60, "every path active")
    run = FioRun([f"/dev/mapper/{n}" for n in names], runtime=3600).start()
    figures: list[str] = []
    try:
        time.sleep(5)  # fio's jobs under way before the first fault
        assert run.running(), "fio ended before the fault loop"
        for i, kind in enumerate(FAULT_LOOP):
            portal = iscsi.PORTALS[i % 2]
            on_it = [p for p in every if p.portal == portal]
            t0 = time.monotonic()
            _inject(f, kind, portal)
            if kind == "netem":
                stalls = len(d.events("tcp_stall"))
                time.sleep(MARGINAL_HOLD)
                figures.append(f"{kind}: {MARGINAL_HOLD:.0f} s of loss and delay")
                # a lossy link acknowledges between its retransmissions: no stall
                assert len(d.events("tcp_stall")) == stalls, d.events("tcp_stall")
            else:
                for p in on_it:
                    n = names[p.lun]

                    def failed(n: str = n, p: iscsi.IscsiPath = p) -> bool:
                        return not _states(n)[p.devnum]

                    _wait(f"{p.name} failed in {n} ({kind} on portal {portal.index})",
                          failed, FAULT_TIMEOUT, d=d, f=f, path=p)
                why = d.path(on_it[0].name)["check_reason"]
                figures.append(f"{kind}: failed after {time.monotonic() - t0:.1f} s ({why})")
            f.clear_faults()
            t1 = time.monotonic()
            _wait(f"every path back after {kind}", all_active, RETURN_TIMEOUT,
                  d=d, f=f, path=on_it[0])
            figures[-1] += f", back {time.monotonic() - t1:.1f} s after clearing"
            assert run.running(), f"fio ended during the {kind} fault"
        jobs = run.stop()
    finally:
        f.clear_faults()
        if run.running():
            run.stop()
    assert len(jobs) == LUNS * fio.JOBS_PER_DEVICE
    for job in jobs:
        assert job.error == 0, f"{job.name}: fio ended with errno {job.error}"
        assert job.written > 0 and job.read > 0  # written and read back, verified
    worst = max(j.max_latency for j in jobs)
    with capsys.disabled():  # figures for the reader, never a verdict
        print("\n[iscsi fault loop] " + "; ".join(figures)
              + f"; fio's longest I/O {worst:.1f} s")
