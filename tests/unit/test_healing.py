"""The personality's rules as pure decisions: fail, keep the last, reinstate, failback, queue."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmpath.config import Backend
from dmpath.model import Check, GroupState, KernelState, Map, Path, PathGroup
from dmpath.policy.healing import (
    LAST_PATH_ALERT,
    Alert,
    FailPath,
    ReinstatePath,
    SetQueueing,
    SwitchGroup,
    best_group,
    is_flapping,
    next_policy_deadline,
    plan_failback,
    plan_no_path,
    plan_paths,
)

A, F = KernelState.ACTIVE, KernelState.FAILED


def mk(states: list[tuple[KernelState, Check]], prios: list[int] | None = None) -> Map:
    paths = [
        Path(name=f"sd{chr(97 + i)}", devnum=f"8:{16 * i}", wwid="w", kernel_state=k, check=c,
             priority=(prios[i] if prios else 10), group=i + 1)
        for i, (k, c) in enumerate(states)
    ]
    groups = [
        PathGroup(number=i + 1, selector="service-time 0", priority=p.priority,
                  state=GroupState.ENABLED, paths=[p.name])
        for i, p in enumerate(paths)
    ]
    return Map(name="mpatha", wwid="w", backend=Backend.DM, paths=paths, groups=groups)


def apply(m: Map, actions: list) -> Map:  # type: ignore[type-arg]
    """What the kernel would look like after the daemon applied ``actions``."""
    new = dataclasses.replace(m, paths=[dataclasses.replace(p) for p in m.paths],
                              alerts=list(m.alerts))
    by = {p.name: p for p in new.paths}
    for a in actions:
        if isinstance(a, FailPath):
            by[a.path].kernel_state = F
        elif isinstance(a, ReinstatePath):
            by[a.path].kernel_state = A
        elif isinstance(a, Alert):
            new.alerts.append(a.message)
    return new


def test_dead_path_is_failed_with_the_personality_message() -> None:
    m = mk([(A, Check.DOWN), (A, Check.UP)])
    acts = plan_paths(m)
    assert acts == [FailPath("mpatha", "sda", "8:0",
                             "IO failure on sda, disabling IO path. "
                             "Operation continuing on 1 IO path.")]


def test_last_working_path_is_kept_and_alerted() -> None:
    m = mk([(F, Check.DOWN), (A, Check.DOWN)])
    acts = plan_paths(m)
    assert acts == [Alert("mpatha", "sdb", f"sdb: {LAST_PATH_ALERT}")]
    # the alert is raised once, not on every check
    assert plan_paths(apply(m, acts)) == []


def test_all_dead_at_once_keeps_the_highest_priority_path() -> None:
    m = mk([(A, Check.DOWN), (A, Check.DOWN), (A, Check.DOWN)], prios=[10, 50, 1])
    acts = plan_paths(m)
    failed = {a.path for a in acts if isinstance(a, FailPath)}
    assert failed == {"sda", "sdc"}
    assert [a.path for a in acts if isinstance(a, Alert)] == ["sdb"]


def test_returning_path_is_reinstated_and_then_the_kept_one_can_be_failed() -> None:
    m = mk([(F, Check.UP), (A, Check.DOWN)])
    acts = plan_paths(m)
    assert ReinstatePath("mpatha", "sda", "8:0", "sda is back (up): reinstating IO path.") in acts
    assert any(isinstance(a, FailPath) and a.path == "sdb" for a in acts)


def test_ghost_paths_are_usable_and_pending_ones_wait() -> None:
    assert [type(a) for a in plan_paths(mk([(F, Check.GHOST), (A, Check.UP)]))] == [ReinstatePath]
    assert plan_paths(mk([(A, Check.PENDING), (F, Check.PENDING)])) == []


checks = st.sampled_from(list(Check))
kstates = st.sampled_from([A, F])


@given(st.lists(st.tuples(kstates, checks), min_size=1, max_size=6))
def test_plan_never_removes_the_last_active_path_and_is_idempotent(states) -> None:  # type: ignore[no-untyped-def]
    m = mk(states)
    after = apply(m, plan_paths(m))
    if any(p.kernel_state == A for p in m.paths):
        assert any(p.kernel_state == A for p in after.paths)
    # a second plan on the resulting state changes nothing in the kernel
    assert not [a for a in plan_paths(after) if isinstance(a, FailPath | ReinstatePath)]
    # every usable checker verdict ends active; every dead one failed unless it is the last
    for p in after.paths:
        if p.check in (Check.UP, Check.GHOST) and p.kernel_state == F:
            raise AssertionError(f"{p.name} usable but left failed")


def test_failback_policies() -> None:
    m = mk([(A, Check.UP), (A, Check.UP)], prios=[50, 10])
    assert best_group(m) == 1
    assert plan_failback(m, 2, "immediate", None, 100.0) == [
        SwitchGroup("mpatha", 1, "failback: switching to path group 1")]
    assert plan_failback(m, 2, "manual", None, 100.0) == []
    assert plan_failback(m, 2, "30", 80.0, 100.0) == []  # 20 s of 30 s
    assert len(plan_failback(m, 2, "30", 60.0, 100.0)) == 1
    assert plan_failback(m, 1, "immediate", None, 100.0) == []


def test_no_path_retry_counts_checks_then_fails_io() -> None:
    dead = mk([(F, Check.DOWN), (A, Check.DOWN)])
    assert plan_no_path(dead, "3", 2, True) == []
    assert [type(a) for a in plan_no_path(dead, "3", 3, True)] == [SetQueueing]
    assert plan_no_path(dead, "queue", 100, True) == []
    assert plan_no_path(dead, "3", 5, False) == []  # already failing: nothing more
    back = mk([(A, Check.UP), (F, Check.DOWN)])
    assert plan_no_path(back, "3", 0, False) == [
        SetQueueing("mpatha", True, "a path is back: queueing I/O again if all fail")]
    assert plan_no_path(back, "fail", 0, False) == []


def test_timed_policies_say_when_to_look_again() -> None:
    # failback N: N seconds after the best group became usable; immediate/manual: never
    assert next_policy_deadline("30", 100.0, "queue", None, polling_interval=1,
                                queueing=True) == pytest.approx(130.0, abs=0.05)
    assert next_policy_deadline("immediate", 100.0, "queue", None, polling_interval=1,
                                queueing=True) is None
    assert next_policy_deadline("manual", 100.0, "fail", None, polling_interval=1,
                                queueing=False) is None
    # no_path_retry N: N polling intervals after the last path went, while queueing
    assert next_policy_deadline("manual", None, "12", 50.0, polling_interval=5,
                                queueing=True) == pytest.approx(110.0, abs=0.05)
    assert next_policy_deadline("manual", None, "12", 50.0, polling_interval=5,
                                queueing=False) is None  # already failing I/O
    # both running: the sooner one; never before the deadline itself
    both = next_policy_deadline("30", 100.0, "2", 101.0, polling_interval=1, queueing=True)
    assert both is not None and 103.0 <= both < 103.1


def test_flapping() -> None:
    assert is_flapping([1, 2, 3, 4], 10.0)
    assert not is_flapping([1, 2, 3, 4], 100.0)


def test_a_path_failed_by_the_admin_is_not_reinstated_by_the_checker() -> None:
    m = mk([(F, Check.UP), (A, Check.UP)])
    m.paths[0].held = True
    assert plan_paths(m) == []
    m.paths[0].held = False
    assert [type(a) for a in plan_paths(m)] == [ReinstatePath]
