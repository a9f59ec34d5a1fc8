"""The marginal-path rule on its own: strikes, the window, the term and its end."""

from __future__ import annotations

from dmpath.policy import marginal
from dmpath.policy.marginal import MarginalPolicy, PathRecord

POL = MarginalPolicy(failures=3, window=60.0, latency=2.0, recovery=30.0)


def test_strikes_older_than_the_window_are_forgotten() -> None:
    rec = PathRecord()
    for t in (0.0, 50.0):
        assert marginal.fell(rec, t, POL) is None
        marginal.checked(rec, t + 1, POL, usable=True, latency=0.0)
    # the first fall is 61 s old by now: two in the window, not three
    assert marginal.fell(rec, 61.0, POL) is None
    marginal.checked(rec, 62.0, POL, usable=True, latency=0.0)
    assert marginal.fell(rec, 63.0, POL) == "failed 3 times within 60 s"
    assert rec.marginal and rec.since == 63.0


def test_a_fall_is_counted_once_until_the_path_answers_usable() -> None:
    rec = PathRecord()
    for t in range(10):
        assert marginal.fell(rec, float(t), POL) is None
        marginal.checked(rec, float(t), POL, usable=False, latency=0.0)
    assert len(rec.strikes) == 1


def test_the_reason_names_both_kinds_of_strike() -> None:
    rec = PathRecord()
    marginal.checked(rec, 0.0, POL, usable=True, latency=3.0)
    marginal.checked(rec, 1.0, POL, usable=True, latency=2.5)
    why = marginal.fell(rec, 2.0, POL)
    assert why == "failed once and answered slowly (over 2 s) twice within 60 s"


def test_the_term_ends_after_recovery_seconds_of_health_only() -> None:
    rec = PathRecord()
    for t in (0.0, 1.0, 2.0):
        marginal.fell(rec, t, POL)
        marginal.checked(rec, t + 0.5, POL, usable=True, latency=0.0)
    assert rec.marginal and marginal.recovery_due(rec, POL) == 32.5
    assert not marginal.recovered(rec, 32.0, POL)
    marginal.checked(rec, 20.0, POL, usable=True, latency=9.0)  # slow: starts it again
    assert marginal.recovery_due(rec, POL) is None
    marginal.checked(rec, 25.0, POL, usable=True, latency=0.0)
    assert not marginal.recovered(rec, 50.0, POL)
    assert marginal.recovered(rec, 55.0, POL)
    assert not rec.marginal and rec.strikes == [] and rec.reason == ""


def test_turning_the_rule_off_ends_a_term_at_the_next_look() -> None:
    rec = PathRecord()
    for t in (0.0, 1.0, 2.0):
        marginal.fell(rec, t, POL)
        marginal.checked(rec, t + 0.5, POL, usable=True, latency=0.0)
    assert rec.marginal
    assert marginal.recovered(rec, 3.0, MarginalPolicy(failures=0))


def test_latency_zero_never_counts_answer_times() -> None:
    rec = PathRecord()
    off = MarginalPolicy(latency=0.0)
    for t in range(10):
        marginal.checked(rec, float(t), off, usable=True, latency=100.0)
    assert rec.strikes == [] and not rec.marginal
