"""The stall rows' pure parts: medians, ratios, the results-file record and its table."""

from __future__ import annotations

from dmpath.lab import bench
from dmpath.lab.stallbench import (
    StallResult,
    StallRound,
    stall_md,
    stall_ratios,
    stall_records,
)


def _result(name: str, fails: list[float], stalls: list[float]) -> StallResult:
    r = StallResult(name, version="1", recovery_tmo="5")
    for i, (f, s) in enumerate(zip(fails, stalls, strict=True)):
        r.rounds.append(StallRound(i % 2, failed_s=f, stall_s=s, back_s=10.0))
    return r


def test_figures_are_medians_of_the_rounds_that_measured_them() -> None:
    r = _result("dmpathd", [7.0, 9.0, 8.0], [15.0, 14.0, 30.0])
    r.rounds.append(StallRound(1))  # a round that failed before measuring anything
    assert r.figures() == {"failed_s": 8.0, "stall_s": 15.0, "back_s": 10.0}
    assert StallResult("x").figures() == {"failed_s": None, "stall_s": None, "back_s": None}


def test_ratios_are_dmpathd_over_multipathd_and_none_where_either_is_missing() -> None:
    mine = _result("dmpathd", [7.0], [15.0]).to_dict()
    theirs = _result("multipathd", [28.0], [60.0]).to_dict()
    theirs["back_s"] = None
    assert stall_ratios(mine, theirs) == {"failed_s": 0.25, "stall_s": 0.25, "back_s": None}


def test_a_run_becomes_one_record_and_a_table_in_results_md() -> None:
    doc = {
        "started": "2026-12-02T23:00:00+00:00",
        "kernel": "6.1.0-57-amd64",
        "stall": {
            "rounds": 2,
            "daemons": {
                "dmpathd": _result("dmpathd", [7.0, 7.4], [15.0, 15.4]).to_dict(),
                "multipathd": _result("multipathd", [30.0, 31.0], [60.0, 62.0]).to_dict(),
            },
            "ratios": {"failed_s": 0.24, "stall_s": 0.25, "back_s": 1.0},
            "error": None,
        },
    }
    [rec] = stall_records(doc, commit="abc1234", dirty=False, memory="2G")
    assert rec["kind"] == "stall"
    assert rec["daemons"]["dmpathd"]["stall_s"] == 15.2
    assert rec["daemons"]["multipathd"]["recovery_tmo"] == "5"
    md = "\n".join(stall_md([rec]))
    assert "| 2026-12-02 | abc1234 | longest I/O stall (s) | 15.2 | 61.0 | 0.25 |" in md
    # the rendered results file carries it after the topology sections
    text = bench.render_results_md([rec])
    assert "## iSCSI portal black-holed under verified I/O" in text
    assert "## None" not in text  # a stall record is not a topology
    assert stall_records({"started": "x"}, commit="c", dirty=False, memory="2G") == []
