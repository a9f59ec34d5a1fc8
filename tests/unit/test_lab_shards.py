"""How lab tests are spread over boots run side by side (dmpath.lab.shards)."""

from __future__ import annotations

import json
import pathlib

from dmpath.lab import shards


def ids(module: str, n: int) -> list[str]:
    return [f"tests/lab/{module}.py::test_{k}" for k in range(n)]


def test_split_keeps_modules_whole_and_balances_by_measured_cost() -> None:
    big, b, c = ids("big", 1), ids("b", 3), ids("c", 2)
    costs = {big[0]: 500.0, **dict.fromkeys(b, 100.0), **dict.fromkeys(c, 100.0)}
    groups = shards.split([*b, *big, *c], 2, costs)
    assert groups == [big, [*b, *c]]  # 500 against 500, each in collection order


def test_split_counts_unmeasured_tests_at_the_default_cost() -> None:
    a, b, c = ids("a", 2), ids("b", 2), ids("c", 4)
    assert shards.split([*a, *b, *c], 2, {}) == [c, [*a, *b]]


def test_plan_cuts_only_a_flavour_larger_than_a_share_and_orders_costliest_first() -> None:
    default = ids("a", 10) + ids("b", 10)
    runs = shards.plan({"6.1": default, "6.12": ids("m", 2), "systemd": ids("s", 2)}, 2, {})
    assert [r.key for r in runs] == ["6.1 (1/2)", "6.1 (2/2)", "6.12", "systemd"]
    assert [r.flavour for r in runs] == ["6.1", "6.1", "6.12", "systemd"]
    assert sorted(i for r in runs[:2] for i in r.ids) == sorted(default)


def test_one_at_a_time_every_flavour_is_one_boot() -> None:
    runs = shards.plan({"6.1": ids("a", 10) + ids("b", 10), "6.12": ids("m", 2)}, 1, {})
    assert [(r.key, len(r.ids)) for r in runs] == [("6.1", 20), ("6.12", 2)]


def test_durations_add_each_phase_and_load_costs_reads_them_back(tmp_path: pathlib.Path) -> None:
    recs = [
        {"nodeid": "t::a", "when": "setup", "duration": 1.5},
        {"nodeid": "t::a", "when": "call", "duration": 2.0},
        {"nodeid": "t::b", "when": "call", "duration": "?"},
    ]
    assert shards.durations(recs) == {"t::a": 3.5}
    f = tmp_path / "durations.json"
    f.write_text(json.dumps({"t::a": 3.5, "t::b": "x"}))
    assert shards.load_costs(str(f)) == {"t::a": 3.5}
    assert shards.load_costs(str(tmp_path / "none.json")) == {}
