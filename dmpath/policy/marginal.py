"""Marginal paths: the ones that keep failing and coming back, or answer too slowly.

A path that flaps (a bad cable, a port that drops its link every few seconds, a switch
under load) is worse than a dead one: each time it returns, the kernel sends I/O down it
again, and each time it fails, that I/O waits for the transport to give it back (seconds
on iSCSI) before dm retries it elsewhere. multipath-tools calls such paths marginal
(``marginal_path_*``, ``san_path_err_*``), PowerPath puts them in "autostandby".

The rule here, with no I/O and no clock of its own (``now`` is monotonic, given):
- a *strike* is the path failing (the kernel failed it, a check found it down, its link
  went down: counted once per fall, not once per signal) or a check answering slower
  than ``latency``;
- ``failures`` strikes within ``window`` seconds make the path marginal;
- a marginal path stays marginal until it has been healthy (usable checks, answered in
  time, no strike) for ``recovery`` seconds; then its record starts afresh.

What a marginal path means for a map is ``dmpath.policy.healing``'s business: kept failed
while another path works, used again if it is the last one that does.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MarginalPolicy:
    """The options (``[defaults]`` marginal_*); ``failures = 0`` turns the rule off."""

    failures: int = 3
    window: float = 60.0
    latency: float = 2.0  # 0: answer times never count
    recovery: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.failures > 0


@dataclass
class PathRecord:
    """What the rule keeps about one path."""

    #: the strikes within the window, oldest first: (monotonic time, "failed" or "slow")
    strikes: list[tuple[float, str]] = field(default_factory=list)
    #: the path is down now (fell and has not answered usable since): a second signal of
    #: the same fall (the kernel's uevent, then the check) is not a second strike
    down: bool = False
    #: monotonic time the path was marked marginal (None: it is not)
    since: float | None = None
    #: monotonic time of the first healthy check since the last strike (None: none yet)
    healthy_since: float | None = None
    #: why it was marked, for the status and the event
    reason: str = ""

    @property
    def marginal(self) -> bool:
        return self.since is not None


def _strike(rec: PathRecord, now: float, pol: MarginalPolicy, kind: str) -> str | None:
    """Count a strike; the reason if it made the path marginal just now."""
    rec.healthy_since = None
    rec.strikes = [s for s in rec.strikes if now - s[0] <= pol.window]
    rec.strikes.append((now, kind))
    if rec.marginal or not pol.enabled or len(rec.strikes) < pol.failures:
        return None
    rec.since = now
    rec.reason = describe(rec.strikes, pol)
    return rec.reason


def describe(strikes: list[tuple[float, str]], pol: MarginalPolicy) -> str:
    """'failed 3 times within 60 s', 'failed once and answered slowly (over 2 s) twice
    within 60 s'."""

    def times(n: int) -> str:
        return {1: "once", 2: "twice"}.get(n, f"{n} times")

    failed = sum(1 for _t, k in strikes if k == "failed")
    slow = len(strikes) - failed
    parts = [f"failed {times(failed)}"] if failed else []
    if slow:
        parts.append(f"answered slowly (over {pol.latency:g} s) {times(slow)}")
    return " and ".join(parts) + f" within {pol.window:g} s"


def fell(rec: PathRecord, now: float, pol: MarginalPolicy) -> str | None:
    """The path failed (any signal). The reason if that made it marginal just now."""
    if rec.down:
        return None
    rec.down = True
    return _strike(rec, now, pol, "failed")


def checked(
    rec: PathRecord, now: float, pol: MarginalPolicy, *, usable: bool, latency: float
) -> str | None:
    """A check answered ``usable`` (or not) after ``latency`` seconds. The reason if a
    slow answer made the path marginal just now."""
    if not usable:
        return fell(rec, now, pol)
    rec.down = False
    if pol.latency > 0 and latency > pol.latency:
        return _strike(rec, now, pol, "slow")
    if rec.healthy_since is None:
        rec.healthy_since = now
    return None


def recovery_due(rec: PathRecord, pol: MarginalPolicy) -> float | None:
    """When a marginal path that stays healthy may be used again (None: not pending)."""
    if rec.since is None or rec.healthy_since is None:
        return None
    return rec.healthy_since + pol.recovery


def recovered(rec: PathRecord, now: float, pol: MarginalPolicy) -> bool:
    """End a marginal path's term if it has been healthy for ``recovery`` seconds (or the
    rule was turned off); True if it ended just now. Its strikes are forgotten."""
    if rec.since is None:
        return False
    due = recovery_due(rec, pol)
    if pol.enabled and (due is None or now < due):
        return False
    rec.since, rec.reason, rec.strikes = None, "", []
    return True
