"""The fault report's pure parts: choosing parts, its records and results.md."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from dmpath.lab import faults

PARTS = {"soak": "dmpath.lab.soak", "faultmatrix": "x.faultmatrix", "fuzz": "x.fuzz"}


def test_only_keeps_the_table_s_order_and_takes_comma_lists() -> None:
    assert faults.parse_only(None, PARTS) == ["soak", "faultmatrix", "fuzz"]
    assert faults.parse_only(["fuzz,soak"], PARTS) == ["soak", "fuzz"]
    assert faults.parse_only(["fuzz", " faultmatrix "], PARTS) == ["faultmatrix", "fuzz"]


def test_an_unknown_part_is_one_line_naming_the_parts() -> None:
    with pytest.raises(faults.PartsError) as ei:
        faults.parse_only(["soak,sok"], PARTS)
    assert str(ei.value) == "unknown part sok: the parts are soak, faultmatrix, fuzz"


def test_every_part_in_the_table_is_a_module_with_run() -> None:
    for module in faults.PARTS.values():
        assert callable(importlib.import_module(module).run), module


GUEST = {
    "kernel": "6.1.0-57-amd64",
    "quick": True,
    "parts": [
        {"part": "soak", "figures": {"restarts": 3, "cycles": 10, "io_errors": 0,
                                     "fio_jobs": 4, "seconds": 97.25}, "error": ""},
        {"part": "fuzz", "figures": {}, "error": "LabTimeout: timed out"},
    ],
}


def test_records_one_per_part_with_the_run_s_facts() -> None:
    recs = faults.records_of(GUEST, commit="abc1234", dirty=True, date="2026-12-03T11:00:00+00:00")
    assert [r["part"] for r in recs] == ["soak", "fuzz"]
    assert recs[0] == {
        "date": "2026-12-03T11:00:00+00:00",
        "git_commit": "abc1234",
        "git_dirty": True,
        "kernel": "6.1.0-57-amd64",
        "form": "quick",
        "part": "soak",
        "figures": {"restarts": 3.0, "cycles": 10.0, "io_errors": 0.0, "fio_jobs": 4.0,
                    "seconds": 97.25},
        "error": "",
    }
    assert faults.describe(recs[0]) == (
        "soak (quick, 6.1.0-57-amd64): cycles 10, I/O errors 0, restarts 3, seconds 97.2, "
        "fio_jobs 4"
    )
    assert faults.describe(recs[1]) == (
        "fuzz (quick, 6.1.0-57-amd64): did not finish: LabTimeout: timed out"
    )


def test_results_are_appended_and_rendered_a_table_per_part(tmp_path: Path) -> None:
    path = tmp_path / "faults" / "results.json"
    first = faults.records_of(GUEST, commit="abc1234", dirty=False, date="d1")
    second = faults.records_of({**GUEST, "quick": False}, commit="def5678", dirty=True, date="d2")
    faults.append_results(str(path), first)
    written = faults.append_results(str(path), second)
    assert written == [str(path), str(tmp_path / "faults" / "results.md")]
    doc = json.loads(path.read_text())
    assert [(r["date"], r["part"]) for r in doc["records"]] == [
        ("d1", "soak"), ("d1", "fuzz"), ("d2", "soak"), ("d2", "fuzz")
    ]
    md = (tmp_path / "faults" / "results.md").read_text()
    soak = md[md.index("## soak") : md.index("## fuzz")]
    assert "| date | commit | kernel | form | cycles | I/O errors | restarts | seconds | " \
           "fio_jobs | error |" in soak
    assert "| d1 | abc1234 | 6.1.0-57-amd64 | quick | 10 | 0 | 3 | 97.2 | 4 |  |" in soak
    assert "| d2 | def5678+dirty | 6.1.0-57-amd64 | full | 10 | 0 | 3 | 97.2 | 4 |  |" in soak
    fuzz = md[md.index("## fuzz") :]
    assert "| d1 | abc1234 | 6.1.0-57-amd64 | quick | LabTimeout: timed out |" in fuzz
