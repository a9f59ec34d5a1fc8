"""Whether dmpathd may tell systemd it is alive (``WATCHDOG=1``): only when every part
that does its work has shown progress lately. Pure: the daemon records the times, this
decides.

A timer on the event loop alone proves only the loop: the checks run in their own
thread pool, the kernel operations in kernel worker threads, and either can be stuck
(every thread in D state in the kernel) while the loop ticks on and no path is checked
or healed. So each part has a heartbeat, the last time it finished a job (a real one or
the no-op probe the daemon sends it at each watchdog tick: an idle part answers the
probe at once, a busy one shows progress through its jobs). A part is stuck when a
probe has been out longer than ``limit`` and nothing it ran has finished for as long;
while any part is stuck no ping is sent, and systemd restarts the daemon once its
``WatchdogSec`` runs out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: the parts, as events and the log name them
LOOP = "event loop"
CHECKS = "check pool"
KERNEL = "kernel worker"
PARTS = (LOOP, CHECKS, KERNEL)


@dataclass(frozen=True)
class Verdict:
    ping: bool
    #: the parts stuck now, and those that became stuck or recovered since the last look
    stuck: tuple[str, ...] = ()
    newly_stuck: tuple[str, ...] = ()
    recovered: tuple[str, ...] = ()


def stuck_parts(
    progress: Mapping[str, float], probes: Mapping[str, float], now: float, limit: float
) -> tuple[str, ...]:
    """The parts with a probe out for longer than ``limit`` (``probes``: part -> when
    it was sent) that have finished nothing for as long (``progress``: part -> when it
    last finished a job). A part with no probe out is answering."""
    out = []
    for part in PARTS:
        sent = probes.get(part)
        if sent is None or now - sent <= limit:
            continue
        if now - progress.get(part, 0.0) > limit:
            out.append(part)
    return tuple(out)


def judge(
    progress: Mapping[str, float],
    probes: Mapping[str, float],
    now: float,
    limit: float,
    was_stuck: tuple[str, ...] = (),
) -> Verdict:
    """Ping or not, and what changed since the last verdict (``was_stuck``): each part
    that becomes stuck, or answers again, is told once."""
    stuck = stuck_parts(progress, probes, now, limit)
    return Verdict(
        ping=not stuck,
        stuck=stuck,
        newly_stuck=tuple(p for p in stuck if p not in was_stuck),
        recovered=tuple(p for p in was_stuck if p not in stuck),
    )
