"""The personality's fail/reinstate rules, failback, no-path-retry and polling, as pure functions.

Given the model of one map (kernel state of each path plus the checker's last verdict)
``plan`` says what to do; the daemon applies it and re-plans after the kernel answers, so
the plan is idempotent: the same state always yields the same actions, and a state that
needs nothing yields none.

The rules are md's multipath personality's (drivers/md/multipath.c): a failing path is
disabled ("IO failure on sdb, disabling IO path. Operation continuing on 1 IO paths.")
unless it is the last working one ("only one IO path left and IO error." - it stays
active: a path that may still work beats none). A path that passes again is reinstated.
"""

from __future__ import annotations

from dataclasses import dataclass

from dmpath.model import Check, KernelState, Map, Path


@dataclass(frozen=True)
class FailPath:
    map: str
    path: str
    devnum: str
    message: str


@dataclass(frozen=True)
class ReinstatePath:
    map: str
    path: str
    devnum: str
    message: str


@dataclass(frozen=True)
class SwitchGroup:
    map: str
    group: int
    message: str


@dataclass(frozen=True)
class SetQueueing:
    map: str
    enabled: bool
    message: str


@dataclass(frozen=True)
class Alert:
    map: str
    path: str
    message: str


#: what ``plan_paths`` decides: the paths' states (and the last-path alert)
PathAction = FailPath | ReinstatePath | Alert
Action = FailPath | ReinstatePath | SwitchGroup | SetQueueing | Alert

#: checker verdicts that make a failed path worth reinstating (a standby path still works)
USABLE = (Check.UP, Check.GHOST)

LAST_PATH_ALERT = "only one IO path left and IO error."


def _plural(n: int) -> str:
    return f"{n} IO path" + ("" if n == 1 else "s")


def _usable(p: Path) -> bool:
    """Active in the kernel and not known dead: I/O sent there should succeed."""
    return p.kernel_state == KernelState.ACTIVE and p.check != Check.DOWN


def path_needs_action(p: Path) -> bool:
    """Could ``plan_paths`` act on this path now? The cheap test made on each check
    before planning its whole map: the kernel and the checker disagree about it, or it
    is marginal and still in use."""
    if p.kernel_state == KernelState.FAILED:
        return p.check in USABLE and not p.held and not p.marginal
    return p.kernel_state == KernelState.ACTIVE and (
        p.check == Check.DOWN or p.marginal or p.held
    )


def plan_paths(m: Map) -> list[PathAction]:
    """Fail the dead, reinstate the living, never fail the last path that is active.

    A marginal path (``dmpath.policy.marginal``) is kept failed, even while its checks
    pass, as long as a path that is not marginal works; when none does, it is used again
    (a path that flaps beats none), as a marginal path group of lowest priority would be.

    A path the administrator failed (``held``, remembered across restarts) that is active
    again (a map made afresh after a boot, a reinstate behind the daemon's back) is failed
    again while another path works; it is never the one that stops all I/O.
    """
    actions: list[PathAction] = []
    revivable = [
        p
        for p in m.paths
        if p.kernel_state == KernelState.FAILED and p.check in USABLE and not p.held
    ]
    good = sum(1 for p in m.paths if _usable(p) and not p.marginal)
    good += sum(1 for p in revivable if not p.marginal)
    reinstate = [p for p in revivable if not (p.marginal and good)]
    dead_active = [
        p for p in m.paths if p.kernel_state == KernelState.ACTIVE and p.check == Check.DOWN
    ]
    benched = [p for p in m.paths if good and p.marginal and _usable(p)]
    working = sum(1 for p in m.paths if _usable(p)) + len(reinstate) - len(benched)
    held = [p for p in m.paths if p.held and _usable(p) and p not in benched]
    if working - len(held) < 1:
        held = []
    working -= len(held)
    for p in reinstate:
        why = " (marginal, but no other path works)" if p.marginal else ""
        actions.append(
            ReinstatePath(
                m.name,
                p.name,
                p.devnum,
                f"{p.name} is back ({p.check.value}){why}: reinstating IO path.",
            )
        )
    if working >= 1:
        to_fail, keep = dead_active, []
    else:
        # Every path is dead: keep the best one active (the personality's last-path rule).
        ordered = sorted(dead_active, key=lambda p: (-p.priority, p.name))
        keep, to_fail = ordered[:1], ordered[1:]
    left = working + len(keep)
    for p in benched:
        actions.append(
            FailPath(
                m.name,
                p.name,
                p.devnum,
                f"{p.name} is marginal ({p.marginal_reason}): kept out of use while another "
                f"path works. Operation continuing on {_plural(left)}.",
            )
        )
    for p in held:
        actions.append(
            FailPath(
                m.name,
                p.name,
                p.devnum,
                f"{p.name} was failed by the administrator (mpathctl reinstate puts it back):"
                f" failing it again. Operation continuing on {_plural(left)}.",
            )
        )
    for p in to_fail:
        actions.append(
            FailPath(
                m.name,
                p.name,
                p.devnum,
                f"IO failure on {p.name}, disabling IO path. "
                f"Operation continuing on {_plural(left)}.",
            )
        )
    for p in keep:
        msg = f"{p.name}: {LAST_PATH_ALERT}"
        if msg not in m.alerts:
            actions.append(Alert(m.name, p.name, msg))
    return actions


def best_group(m: Map) -> int:
    """Number of the highest-priority group with a usable path (0 if none)."""
    by_name = {p.name: p for p in m.paths}
    best = 0
    best_prio = -1
    for g in m.groups:
        if g.state.value == "disabled":
            continue
        usable = [by_name[n] for n in g.paths if n in by_name and _usable(by_name[n])]
        if usable and g.priority > best_prio:
            best, best_prio = g.number, g.priority
    return best


def plan_failback(
    m: Map, current_group: int, failback: str, best_usable_since: float | None, now: float
) -> list[Action]:
    """Switch back to the best group: at once, after ``failback`` seconds, or never (manual).

    ``current_group`` is the group the kernel uses (or will use next); ``best_usable_since``
    is when the best group last became usable, for the deferred policy.
    """
    best = best_group(m)
    if best in (0, current_group) or failback == "manual":
        return []
    cur_prio = next((g.priority for g in m.groups if g.number == current_group), -1)
    best_prio = next(g.priority for g in m.groups if g.number == best)
    if best_prio <= cur_prio:
        return []  # same priority: switching would only churn
    if failback != "immediate":
        delay = float(failback)
        if best_usable_since is None or now - best_usable_since < delay:
            return []
    return [SwitchGroup(m.name, best, f"failback: switching to path group {best}")]


def has_usable_path(m: Map) -> bool:
    return any(_usable(p) for p in m.paths)


def plan_no_path(
    m: Map, no_path_retry: str, intervals_without_path: int, queueing_now: bool
) -> list[Action]:
    """What to do with I/O while no path works: queue, fail, or queue for N checks.

    ``intervals_without_path`` counts whole polling intervals since the map lost its last
    usable path (0 while a path works): ``no_path_retry = N`` queues for N of them, as
    multipath-tools counts it. When a path is back, queueing is restored if configured.
    """
    wants_queue = no_path_retry != "fail"
    if has_usable_path(m):
        if wants_queue and not queueing_now:
            return [SetQueueing(m.name, True, "a path is back: queueing I/O again if all fail")]
        return []
    if no_path_retry == "queue" or not queueing_now:
        return []
    if no_path_retry == "fail" or intervals_without_path >= int(no_path_retry):
        return [
            SetQueueing(
                m.name,
                False,
                f"no path for {intervals_without_path} polling intervals: failing queued I/O "
                "(no_path_retry)",
            )
        ]
    return []


#: timers fire a little after their deadline, never a hair before it
TIMER_SLACK = 0.01


def next_policy_deadline(
    failback: str,
    best_usable_since: float | None,
    no_path_retry: str,
    no_path_since: float | None,
    *,
    polling_interval: float,
    queueing: bool,
) -> float | None:
    """When a map's timed policies next need a look, even if no check or uevent comes:
    a deferred failback (``failback = N`` seconds after the best group became usable) and
    ``no_path_retry = N`` (N polling intervals after the last path was lost, then queued
    I/O fails). None when neither is running. Times are on the caller's clock."""
    due: list[float] = []
    if best_usable_since is not None and failback not in ("immediate", "manual"):
        due.append(best_usable_since + float(failback))
    if no_path_since is not None and queueing and no_path_retry not in ("queue", "fail"):
        due.append(no_path_since + int(no_path_retry) * polling_interval)
    return min(due) + TIMER_SLACK if due else None


def is_flapping(
    change_times: list[float], now: float, window: float = 60.0, limit: int = 4
) -> bool:
    """A path whose state changed ``limit`` times within ``window`` seconds is flapping."""
    return sum(1 for t in change_times if now - t <= window) >= limit
