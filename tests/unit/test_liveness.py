"""The watchdog's decision (``dmpath.policy.liveness``): WATCHDOG=1 only while every
part of the daemon shows progress."""

from __future__ import annotations

from dmpath.policy.liveness import CHECKS, KERNEL, LOOP, judge, stuck_parts

LIMIT = 60.0


def test_every_part_answering_pings() -> None:
    v = judge({LOOP: 99.0, CHECKS: 99.0, KERNEL: 99.0}, {}, 100.0, LIMIT)
    assert v.ping and v.stuck == ()
    # probes just sent and not yet back: not stuck yet
    assert judge({}, {LOOP: 100.0, CHECKS: 100.0, KERNEL: 100.0}, 100.0, LIMIT).ping


def test_a_stuck_check_pool_stops_the_pings_and_is_named_once() -> None:
    progress = {LOOP: 200.0, CHECKS: 100.0, KERNEL: 200.0}
    v = judge(progress, {CHECKS: 130.0}, 200.0, LIMIT)
    assert (v.ping, v.stuck, v.newly_stuck) == (False, (CHECKS,), (CHECKS,))
    again = judge(progress, {CHECKS: 130.0}, 201.0, LIMIT, v.stuck)
    assert (again.ping, again.newly_stuck) == (False, ())
    # its probe answered: pings again, and the recovery is told
    back = judge({**progress, CHECKS: 202.0}, {}, 202.0, LIMIT, again.stuck)
    assert (back.ping, back.recovered) == (True, (CHECKS,))


def test_a_busy_part_that_finishes_jobs_is_not_stuck() -> None:
    """The probe waits behind a long queue of kernel operations, which do finish."""
    assert stuck_parts({KERNEL: 199.0}, {KERNEL: 100.0}, 200.0, LIMIT) == ()
    assert stuck_parts({KERNEL: 120.0}, {KERNEL: 100.0}, 200.0, LIMIT) == (KERNEL,)


def test_every_stuck_part_is_named() -> None:
    v = judge({}, {CHECKS: 0.0, KERNEL: 0.0}, 100.0, LIMIT)
    assert v.stuck == (CHECKS, KERNEL) and not v.ping
