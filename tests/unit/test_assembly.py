"""Grouping policies and the tables they make, checked against real captured tables."""

from __future__ import annotations

import pytest

from dmpath.kernel.dmtable import format_table, parse_table
from dmpath.policy.assembly import AssemblyError, Member, build_table, group_paths

SDA, SDC = Member("sda", "8:0", 50), Member("sdc", "8:32", 10)


def test_group_by_prio_matches_what_multipathd_loaded(shared_fixtures) -> None:  # type: ignore[no-untyped-def]
    # multipathd loaded this for the same two ALUA paths (fixture multipathd_log.txt);
    # ours spells the selector's per-path args out so the table reads back identically.
    table, groups = build_table(
        65536, [SDC, SDA], policy="group_by_prio", selector="service-time 0", hwhandler="alua"
    )
    assert [g.priority for g in groups] == [50, 10]
    text = format_table(table)
    assert text == (
        "0 65536 multipath 0 1 alua 2 1 service-time 0 1 2 8:0 1 1 service-time 0 1 2 8:32 1 1"
    )
    loaded = shared_fixtures / "multipath-tools/multipathd_dm_tables.txt"
    loaded_by_multipathd = loaded.read_text()
    assert text in loaded_by_multipathd.replace(" \n", "\n")
    assert parse_table(text) == table


def test_policies_group_as_documented() -> None:
    ms = [Member("sdb", "8:16", 10), SDA, SDC, Member("sdd", "8:48", 50)]
    assert [[m.name for m in g.members] for g in group_paths(ms, "failover")] == [
        ["sda"], ["sdd"], ["sdb"], ["sdc"]]
    assert [[m.name for m in g.members] for g in group_paths(ms, "multibus")] == [
        ["sda", "sdd", "sdb", "sdc"]]
    assert [[m.name for m in g.members] for g in group_paths(ms, "group_by_prio")] == [
        ["sda", "sdd"], ["sdb", "sdc"]]


def test_queueing_follows_no_path_retry_not_the_feature_list() -> None:
    t, _ = build_table(8, [SDA], policy="multibus", selector="round-robin 0",
                       features=["queue_if_no_path", "pg_init_retries", "50"], queueing=False)
    assert format_table(t) == "0 8 multipath 2 pg_init_retries 50 0 1 1 round-robin 0 1 1 8:0 1"
    t, _ = build_table(8, [SDA], policy="multibus", selector="queue-length 0", queueing=True)
    assert format_table(t) == "0 8 multipath 1 queue_if_no_path 0 1 1 queue-length 0 1 1 8:0 1"


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(AssemblyError, match="path_grouping_policy"):
        group_paths([SDA], "random")
    with pytest.raises(AssemblyError, match="at least one path"):
        build_table(8, [], policy="multibus", selector="round-robin 0")
    with pytest.raises(AssemblyError, match="says 2 args"):
        build_table(8, [SDA], policy="multibus", selector="round-robin 2 x")
