"""The check scheduler with a fake clock: adaptive intervals, one rotating probe per
nexus, fan-out to the siblings when a path's usability changes, and its costs."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmpath.model import Check
from dmpath.policy import polling
from dmpath.policy.polling import CheckScheduler, UnknownPath, nexus_of

Verdict = Callable[[str, float], Check]
Log = list[tuple[float, str, Check]]


def up(_p: str, _t: float) -> Check:
    return Check.UP


def run(s: CheckScheduler, until: float, verdict: Verdict, log: Log | None = None) -> Log:
    """Drive the scheduler like the daemon would, with checks that answer instantly:
    wake at ``next_wakeup``, check what is due, and check fanned-out siblings at once."""
    log = [] if log is None else log
    while True:
        when = s.next_wakeup()
        if when is None or when >= until:
            return log
        queue = deque(s.due(when))
        while queue:
            p = queue.popleft()
            v = verdict(p, when)
            log.append((when, p, v))
            queue.extend(s.result(p, v, when))


def nexus(s: CheckScheduler, n: int, name: str = "0:0:0", now: float = 0.0) -> list[str]:
    paths = [f"{name}/p{i}" for i in range(n)]
    for p in paths:
        s.add(p, name, now)
    return paths


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def checks_of(log: Log, path: str) -> list[float]:
    return [t for t, p, _v in log if p == path]


# ---------------------------------------------------------------------- nexus_of


@pytest.mark.parametrize(
    ("hctl", "want"),
    [
        ("3:0:0:12", "3:0:0"),
        ("10:0:2:0", "10:0:2"),
        (" 3:0:1:4\n", "3:0:1"),
        ("", "sdb"),
        ("3:0:0", "sdb"),
        ("3:0:0:x", "sdb"),
        ("a:b:c:d", "sdb"),
        ("3:0:0:1:5", "sdb"),
        ("-1:0:0:1", "sdb"),
    ],
)
def test_nexus_of(hctl: str, want: str) -> None:
    assert nexus_of(hctl, "sdb") == want


def test_luns_behind_one_target_share_a_nexus_and_other_targets_do_not() -> None:
    assert nexus_of("3:0:0:1", "sdb") == nexus_of("3:0:0:200", "sdc")
    assert nexus_of("3:0:0:1", "sdb") != nexus_of("3:0:1:1", "sdc")
    assert nexus_of("3:0:0:1", "sdb") != nexus_of("4:0:0:1", "sdc")


# ---------------------------------------------------------------------- per-path rules


def test_a_new_path_is_checked_at_once() -> None:
    s = CheckScheduler(1.0, 60.0)
    s.add("sdb", "3:0:0", 100.0)
    assert s.next_wakeup() == 100.0
    assert s.due(100.0) == ["sdb"]


def test_nothing_is_due_before_its_time() -> None:
    s = CheckScheduler(1.0, 60.0)
    s.add("sdb", "3:0:0", 100.0)
    assert s.due(99.9) == []


def test_a_healthy_path_doubles_its_interval_up_to_relaxed() -> None:
    # the probe is pushed far out: the only checks are the path's own
    s = CheckScheduler(1.0, 20.0, nexus_probe=1000.0)
    s.add("sdb", "sdb", 0.0)
    times = checks_of(run(s, 200.0, up), "sdb")
    assert gaps(times)[:7] == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0, 20.0]
    assert s.interval_of("sdb") == 20.0


def test_a_healthy_nexus_of_one_is_checked_by_its_probe_every_tight() -> None:
    # a path that shares fate with nobody is its own nexus: its failure is noticed
    # within one probe interval, as every nexus' is
    s = CheckScheduler(1.0, 60.0)
    s.add("nvme0n1", "nvme0n1", 0.0)
    times = checks_of(run(s, 100.0, up), "nvme0n1")
    assert times == [float(t) for t in range(100)]


def test_a_down_path_stays_tight_while_its_nexus_works() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 4)
    dead = paths[2]
    log = run(s, 120.0, lambda p, t: Check.DOWN if p == dead else Check.UP)
    times = [t for t in checks_of(log, dead) if t >= 10.0]
    assert gaps(times) == [1.0] * (len(times) - 1)
    assert len(times) >= 109
    assert s.interval_of(dead) == 1.0
    assert s.interval_of(paths[0]) == 60.0


@pytest.mark.parametrize("verdict", [Check.PENDING, Check.UNKNOWN])
def test_pending_and_unknown_stay_tight(verdict: Check) -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 2)
    run(s, 30.0, lambda p, t: verdict if p == paths[0] else Check.UP)
    assert s.interval_of(paths[0]) == 1.0
    assert s.interval_of(paths[1]) > 1.0


def test_a_flapping_path_stays_tight_until_its_changes_leave_the_window() -> None:
    s = CheckScheduler(1.0, 60.0, nexus_probe=1000.0)
    s.add("sdb", "0:0:0", 0.0)
    s.add("sdc", "0:0:0", 0.0)  # a working sibling: a down sdb is watched, not relaxed

    def flaps(p: str, t: float) -> Check:
        return Check.DOWN if p == "sdb" and t < 8.0 and int(t) % 4 >= 2 else Check.UP

    log = [(t, v) for t, p, v in run(s, 300.0, flaps) if p == "sdb"]
    changes = [t for (_t0, v0), (t, v) in itertools.pairwise(log) if v != v0]
    assert len(changes) == 4
    times = [t for t, _v in log]
    # from the fourth change until the first leaves the 60 s window: every second, where
    # a stable path would have doubled its interval at each check
    watched = [t for t in times if changes[3] <= t <= changes[0] + 60.0]
    assert gaps(watched) == [1.0] * (len(watched) - 1)
    assert len(watched) > 50
    # then it relaxes again
    later = [t for t in times if t > changes[0] + 60.0]
    assert gaps(later)[:3] == [2.0, 4.0, 8.0]
    assert s.interval_of("sdb") == 60.0


def test_kick_checks_at_once() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 3)
    run(s, 200.5, up)
    assert all(s.interval_of(p) == 60.0 for p in paths)
    s.kick(paths[1], 200.5)
    assert s.next_wakeup() == 200.5
    assert s.due(200.5) == [paths[1]]


def test_kick_while_outstanding_checks_again_right_after_the_result() -> None:
    s = CheckScheduler(1.0, 60.0)
    s.add("sdb", "sdb", 0.0)
    assert s.due(0.0) == ["sdb"]
    s.kick("sdb", 0.2)
    assert s.due(0.2) == []  # never twice while outstanding
    s.result("sdb", Check.UP, 0.4)
    assert s.due(0.4) == ["sdb"]  # the check in flight may predate the news


# ---------------------------------------------------------------------- per-nexus rules


def test_nexus_rotation_costs_one_probe_per_tight_not_one_check_per_path() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 256)
    first = run(s, 60.0, up)
    run(s, 420.0, up)  # settle: every path has relaxed to 60 s
    probes0 = s.stats().probes
    window = run(s, 480.0, up)
    n = len(window)
    probes = s.stats().probes - probes0
    print(f"256 healthy paths, 1 nexus, tight=1 relaxed=60: first 60 s {len(first)} checks, "
          f"60 s settled {n} checks ({probes} probes), every-path-every-second {256 * 60}")
    assert probes == 60  # one probe per tight
    assert {p for _t, p, _v in window} == set(paths)  # everyone at least once per relaxed
    assert 256 <= n <= 60 + 256
    # the start: each path backs off 1, 2, 4, ... (6 checks in 60 s) plus the probes
    assert len(first) <= 256 * 6 + 60


def test_probe_rotates_through_members_in_turn() -> None:
    s = CheckScheduler(1.0, 1000.0)
    paths = nexus(s, 8)
    run(s, 3000.0, up)  # relaxed: only the probe checks now, in rotation
    log = run(s, 3016.0, up)
    probed = [p for _t, p, _v in log]
    assert len(probed) == 16
    assert sorted(probed[:8]) == sorted(paths)  # all eight before any twice
    assert probed[8:] == probed[:8]  # and the same order again


def test_one_member_going_down_sends_every_sibling_to_be_checked() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 16)
    run(s, 300.5, up)
    assert all(s.interval_of(p) == 60.0 for p in paths)
    # the first path found down (by probe, own timer or kick) brings the nexus along
    s.kick(paths[5], 300.5)
    assert s.due(300.5) == [paths[5]]
    siblings = s.result(paths[5], Check.DOWN, 300.5)
    assert sorted(siblings) == sorted(set(paths) - {paths[5]})
    assert all(s.interval_of(p) == 1.0 for p in paths)
    assert s.stats().outstanding == 15
    assert s.due(300.5) == []  # the siblings are outstanding: not handed out twice
    # the siblings' own results do not fan out again (N^2 checks for one event)
    for p in siblings:
        assert s.result(p, Check.DOWN, 300.5) == []
    assert s.stats().fanouts == 1


def test_a_cable_pull_is_seen_on_every_lun_within_one_probe_interval() -> None:
    s = CheckScheduler(1.0, 60.0)
    a = nexus(s, 64, "3:0:0")
    b = nexus(s, 64, "4:0:0")
    run(s, 600.0, up)

    def cable(p: str, t: float) -> Check:
        return Check.DOWN if p in a and t >= 600.3 else Check.UP

    log = run(s, 700.0, cable)
    seen = {p: min(t for t, q, v in log if q == p and v == Check.DOWN) for p in a}
    assert max(seen.values()) <= 601.3
    assert not any(v == Check.DOWN for _t, p, v in log if p in b)


def test_an_all_down_nexus_is_probed_once_per_tight_and_its_return_fans_out() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 8)
    run(s, 300.0, up)
    back_at = 900.5

    def link(_p: str, t: float) -> Check:
        return Check.DOWN if 300.0 <= t < back_at else Check.UP

    log = run(s, 800.0, link)
    # settled while down: members relaxed, the probe alone checks, once per second
    late = [t for t, _p, _v in log if t >= 500.0]
    assert late == [500.0 + i for i in range(300)]
    assert all(s.interval_of(p) == 60.0 for p in paths)
    log = run(s, 905.0, link)
    back = {p: min(t for t, q, v in log if q == p and v == Check.UP) for p in paths}
    assert set(back.values()) == {901.0}  # all at once, on the first probe after


def test_nexus_probe_interval_is_its_own_setting() -> None:
    s = CheckScheduler(1.0, 1000.0, nexus_probe=5.0)
    nexus(s, 8)
    run(s, 3000.0, up)
    assert len(run(s, 3100.0, up)) == 20


def test_a_probe_never_picks_a_member_its_own_timer_checks_before_the_next_probe() -> None:
    # two members on the tight interval (checks timing out): their own timers cover the
    # nexus, a probe of either would be a wasted check
    s = CheckScheduler(1.0, 60.0, nexus_probe=1.5)
    paths = nexus(s, 2)
    log = run(s, 10.5, lambda _p, _t: Check.PENDING)
    assert [t for t, _p, _v in log] == [float(t) for t in range(11) for _ in paths]
    assert s.stats().probes == 0


def test_a_recovered_nexus_watches_a_lone_dead_member_tightly_again() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 4)

    def verdict(p: str, t: float) -> Check:
        if 100.0 <= t < 400.0:
            return Check.DOWN  # the link is down
        return Check.DOWN if p == paths[2] and t >= 600.0 else Check.UP

    run(s, 400.0, verdict)
    assert all(s.interval_of(p) == 60.0 for p in paths)  # all down: the probe covers them
    run(s, 600.5, verdict)
    # back, then one LUN alone goes: its nexus works, so it is watched every second
    assert s.interval_of(paths[2]) == 1.0
    # the siblings were checked at once (reset to 1 s, doubled by their UP verdict)
    assert [s.interval_of(p) for p in paths if p != paths[2]] == [2.0] * 3
    run(s, 800.0, verdict)
    assert s.interval_of(paths[2]) == 1.0
    assert [s.interval_of(p) for p in paths if p != paths[2]] == [60.0] * 3


def test_nexuses_are_independent() -> None:
    s = CheckScheduler(1.0, 60.0)
    a = nexus(s, 4, "3:0:0")
    b = nexus(s, 4, "4:0:0")
    run(s, 300.5, up)
    s.kick(a[0], 300.5)
    assert s.due(300.5) == [a[0]]
    assert sorted(s.result(a[0], Check.DOWN, 300.5)) == sorted(a[1:])
    assert all(s.interval_of(q) == 60.0 for q in b)


def settled(n: int) -> tuple[CheckScheduler, list[str]]:
    """A relaxed nexus whose probe is far away: only kicks and own timers check."""
    s = CheckScheduler(1.0, 60.0, nexus_probe=1000.0)
    paths = nexus(s, n)
    run(s, 100.5, up)
    return s, paths


def test_a_check_in_flight_during_a_fan_out_is_repeated_and_does_not_fan_out_again() -> None:
    s, (a, b, c) = settled(3)
    issued = s.stats().issued
    s.kick(a, 100.5)
    s.kick(b, 100.5)
    assert s.due(100.5) == [a, b]
    assert s.result(a, Check.DOWN, 100.5) == [c]  # b is being checked already
    # b's check started before the link went: whatever it says, it is checked again at
    # once, and its change does not send a and c to be checked a second time
    assert s.result(b, Check.DOWN, 100.6) == []
    assert s.due(100.6) == [b]
    assert s.result(b, Check.DOWN, 100.7) == []
    assert s.result(c, Check.DOWN, 100.7) == []
    assert s.stats().fanouts == 1
    assert s.stats().issued - issued == 4  # a, b, c, and b again


def test_undecided_verdicts_do_not_fan_out() -> None:
    s, paths = settled(4)
    s.kick(paths[0], 100.5)
    assert s.due(100.5) == [paths[0]]
    assert s.result(paths[0], Check.PENDING, 100.5) == []
    assert s.interval_of(paths[0]) == 1.0
    assert s.due(101.5) == [paths[0]]
    assert s.result(paths[0], Check.UP, 101.5) == []  # still usable, as before the timeout


def test_ghost_counts_as_usable() -> None:
    s, paths = settled(2)
    s.kick(paths[0], 100.5)
    s.due(100.5)
    assert s.result(paths[0], Check.GHOST, 100.5) == []
    s.kick(paths[0], 101.0)
    s.due(101.0)
    assert s.result(paths[0], Check.DOWN, 101.0) == [paths[1]]


def test_first_verdict_does_not_fan_out() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 3)
    assert s.due(0.0) == paths
    assert s.result(paths[0], Check.DOWN, 0.0) == []  # nothing known before: no change


def test_a_flapping_path_stops_fanning_out() -> None:
    s, paths = settled(4)
    fanned = []
    t = 100.5
    for i in range(8):
        s.kick(paths[0], t)
        due = s.due(t)  # with the siblings' own tight timers after a fan-out
        assert paths[0] in due
        for p in due[: due.index(paths[0])] + due[due.index(paths[0]) + 1 :]:
            assert s.result(p, Check.UP, t) == []
        sibs = s.result(paths[0], Check.DOWN if i % 2 == 0 else Check.UP, t)
        fanned.append(bool(sibs))
        for p in sibs:
            assert s.result(p, Check.UP, t) == []
        t += 1.0
    # the fourth change within 60 s makes it flapping: its changes no longer speak for
    # the link, and each would cost a check of every sibling
    assert fanned == [True, True, True, False, False, False, False, False]


# ---------------------------------------------------------------------- bookkeeping


def test_outstanding_paths_are_never_returned_twice() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 4)
    assert s.due(0.0) == paths
    # nothing answers for a long time: neither own timers nor probes hand them out again
    assert s.due(1000.0) == []
    assert s.stats().outstanding == 4
    s.result(paths[0], Check.UP, 1000.0)
    assert s.due(2000.0).count(paths[0]) == 1


def test_remove_forgets_everything() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 3)
    s.due(0.0)
    s.remove(paths[1])
    assert s.result(paths[1], Check.DOWN, 0.0) == []  # a late verdict is dropped
    assert s.nexus_members("0:0:0") == [paths[0], paths[2]]
    with pytest.raises(UnknownPath, match="not a scheduled path"):
        s.interval_of(paths[1])
    s.kick(paths[1], 1.0)
    s.result(paths[0], Check.UP, 0.0)
    s.result(paths[2], Check.UP, 0.0)
    log = run(s, 500.0, up)
    assert paths[1] not in {p for _t, p, _v in log}
    for p in (paths[0], paths[2]):
        s.remove(p)
    assert s.stats().paths == 0
    assert s.stats().nexuses == 0
    assert s.stats().outstanding == 0
    assert s.next_wakeup() is None


def test_a_removed_down_member_no_longer_counts_for_the_nexus() -> None:
    s = CheckScheduler(1.0, 60.0)
    paths = nexus(s, 2)
    s.due(0.0)
    s.result(paths[0], Check.UP, 0.0)
    s.result(paths[1], Check.DOWN, 0.0)
    s.remove(paths[1])
    s.add("new", "0:0:0", 5.0)
    # the nexus is not all down: a down member is watched tightly, not relaxed
    s.due(5.0)
    s.result("new", Check.DOWN, 5.0)
    s.due(6.0)
    s.result("new", Check.DOWN, 6.0)
    assert s.interval_of("new") == 1.0


def test_re_adding_a_path_starts_it_afresh() -> None:
    s = CheckScheduler(1.0, 60.0)
    s.add("sdb", "3:0:0", 0.0)
    run(s, 300.0, up)
    s.add("sdb", "4:0:0", 300.0)
    assert s.nexus_members("3:0:0") == []
    assert s.nexus_members("4:0:0") == ["sdb"]
    assert s.interval_of("sdb") == 1.0
    assert s.due(300.0) == ["sdb"]


def test_due_pops_only_what_is_due_not_every_path() -> None:
    s = CheckScheduler(1.0, 60.0)
    for n in range(40):
        nexus(s, 250, f"{n}:0:0")
    run(s, 600.0, up)
    assert s.stats().paths == 10_000
    for _ in range(50):
        when = s.next_wakeup()
        assert when is not None
        before = s.stats().pops
        due = s.due(when)
        for p in due:
            s.result(p, Check.UP, when)
        popped = s.stats().pops - before
        assert len(due) >= 1
        # what fell due at that instant (own timers and the 40 probes), plus superseded
        # entries: nowhere near the 10,000 paths
        assert popped <= 2 * (len(due) + 40)
    assert s.stats().heap <= 4 * (10_000 + 40) + 64


def test_a_probe_looks_at_few_members_and_its_cursor_moves_past_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(polling, "PROBE_SCAN_LIMIT", 4)
    s = CheckScheduler(1.0, 1000.0)
    paths = nexus(s, 20)
    run(s, 3000.5, up)  # relaxed: the probe alone checks, in rotation
    # every member but one is busy (hung checks, say)
    free = paths[13]
    for p in paths:
        if p != free:
            s.kick(p, 3000.5)
    assert sorted(s.due(3000.5)) == sorted(set(paths) - {free})
    # each probe looks at 4 members at most; the cursor moves on, so within 20/4 probes
    # it reaches the free one
    probed = [s.due(3001.0 + i) for i in range(5)]
    assert [free] in probed
    assert all(len(d) <= 1 for d in probed)


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match="tight <= relaxed"):
        CheckScheduler(5.0, 1.0)
    with pytest.raises(ValueError, match="nexus_probe"):
        CheckScheduler(1.0, 5.0, nexus_probe=0.0)


# ---------------------------------------------------------------------- properties

op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 11), st.integers(0, 2)),
    st.tuples(st.just("remove"), st.integers(0, 11), st.just(0)),
    st.tuples(st.just("kick"), st.integers(0, 11), st.just(0)),
    st.tuples(st.just("flip"), st.integers(0, 11), st.just(0)),
    st.tuples(st.just("wait"), st.integers(1, 200), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op, max_size=40), relaxed=st.sampled_from([4.0, 10.0, 60.0]))
def test_every_path_is_checked_once_per_relaxed_and_never_while_outstanding(
    ops: list[tuple[str, int, int]], relaxed: float
) -> None:
    s = CheckScheduler(1.0, relaxed)
    now = 0.0
    down: set[str] = set()
    last: dict[str, float] = {}  # path -> when it was added or last checked
    outstanding: set[str] = set()

    def check(paths: list[str], t: float) -> None:
        queue = deque(paths)
        while queue:
            p = queue.popleft()
            assert p not in outstanding
            outstanding.add(p)
            # the next check of p comes no later than ``relaxed`` after the last one
            assert t - last[p] <= relaxed + 1e-9
            last[p] = t
            fanned = s.result(p, Check.DOWN if p in down else Check.UP, t)
            outstanding.discard(p)
            assert p not in fanned
            queue.extend(fanned)

    def advance(until: float) -> None:
        nonlocal now
        while (w := s.next_wakeup()) is not None and w <= until:
            now = max(now, w)
            check(s.due(now), now)
        now = until
        check(s.due(now), now)

    for kind, i, n in ops:
        p = f"p{i}"
        if kind == "add":
            s.add(p, f"{n}:0:0", now)
            last[p] = now
            due = s.due(now)
            assert p in due  # a new path is checked at once
            check(due, now)
        elif kind == "remove":
            s.remove(p)
            last.pop(p, None)
        elif kind == "kick":
            s.kick(p, now)
        elif kind == "flip":
            down ^= {p}
        else:
            advance(now + n)
    advance(now + 3 * relaxed)
    assert all(now - t <= relaxed for t in last.values())
    assert s.stats().outstanding == 0
    assert s.stats().paths == len(last)
