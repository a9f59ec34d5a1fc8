"""Following ALUA: which check answers hint at a state change, and when a map regroups."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmpath.model import Check
from dmpath.policy import alua
from dmpath.policy.assembly import Grouped, Member

AO, STANDBY = 50, 1


def _names(groups: list[Grouped] | None) -> list[list[str]] | None:
    return None if groups is None else [[m.name for m in g.members] for g in groups]


def test_the_optimized_port_turning_standby_swaps_the_groups() -> None:
    now = [Member("sda", "8:0", STANDBY), Member("sdb", "8:16", AO)]
    got = alua.regroup(now, ["standby", "active_optimized"], [["sda"], ["sdb"]], "group_by_prio")
    assert _names(got) == [["sdb"], ["sda"]]
    assert got is not None and [g.priority for g in got] == [AO, STANDBY]
    assert alua.describe(got) == "sdb (50) | sda (1)"


def test_a_map_grouped_as_its_priorities_say_stays() -> None:
    now = [Member("sdb", "8:16", STANDBY), Member("sda", "8:0", AO)]
    assert alua.regroup(now, ["standby", "active_optimized"], [["sda"], ["sdb"]],
                        "group_by_prio") is None


def test_order_inside_a_group_is_no_reason_to_reload() -> None:
    now = [Member("sda", "8:0", AO), Member("sdb", "8:16", AO), Member("sdc", "8:32", 1)]
    current = [["sdb", "sda"], ["sdc"]]
    assert alua.regroup(now, ["active_optimized"] * 2 + ["standby"], current,
                        "group_by_prio") is None


def test_two_groups_merge_when_both_ports_turn_optimized() -> None:
    now = [Member("sda", "8:0", AO), Member("sdb", "8:16", AO)]
    got = alua.regroup(now, ["active_optimized"] * 2, [["sda"], ["sdb"]], "group_by_prio")
    assert _names(got) == [["sda", "sdb"]]


def test_no_regroup_while_a_port_is_in_transition() -> None:
    now = [Member("sda", "8:0", 0), Member("sdb", "8:16", STANDBY)]
    states = ["transitioning", "standby"]
    assert alua.regroup(now, states, [["sda"], ["sdb"]], "group_by_prio") is None


def test_multibus_never_regroups_failover_follows_the_order() -> None:
    now = [Member("sda", "8:0", STANDBY), Member("sdb", "8:16", AO)]
    states = ["standby", "active_optimized"]
    assert alua.regroup(now, states, [["sda", "sdb"]], "multibus") is None
    assert _names(alua.regroup(now, states, [["sda"], ["sdb"]], "failover")) == [["sdb"], ["sda"]]


@given(st.lists(st.sampled_from([0, 1, 10, 50, 130]), min_size=1, max_size=6))
def test_regrouping_once_is_enough(prios: list[int]) -> None:
    """Whatever the priorities, the layout it asks for is one it then leaves alone."""
    members = [Member(f"sd{chr(97 + i)}", f"8:{16 * i}", p) for i, p in enumerate(prios)]
    states = ["active_optimized"] * len(members)
    everything_in_one = [[m.name for m in members]]
    got = alua.regroup(members, states, everything_in_one, "group_by_prio")
    if got is None:
        assert len(set(prios)) == 1
        return
    layout = [[m.name for m in g.members] for g in got]
    assert alua.regroup(members, states, layout, "group_by_prio") is None
    assert [g.priority for g in got] == sorted({*prios}, reverse=True)


@pytest.mark.parametrize(
    ("before", "after", "reason", "hint"),
    [
        (Check.UP, Check.GHOST, "NOT READY: target port in standby state (04/0b)", True),
        (Check.GHOST, Check.UP, "ready", True),
        (Check.UP, Check.PENDING, "NOT READY: asymmetric access state transition (04/0a)", True),
        (Check.UP, Check.DOWN, "transport reports DID_NO_CONNECT", False),
        (Check.DOWN, Check.UP, "ready", False),
        (Check.GHOST, Check.GHOST, "NOT READY: target port in standby state (04/0b)", False),
        (Check.UNKNOWN, Check.GHOST, "NOT READY: target port in standby state (04/0b)", False),
    ],
)
def test_check_answers_that_hint_at_a_state_change(
    before: Check, after: Check, reason: str, hint: bool
) -> None:
    assert alua.check_hints_change(before, after, reason) is hint
