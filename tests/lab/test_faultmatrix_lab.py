"""The fault matrix's quick form: one fault in dmpathd's own kernel operations at each
step of a map's life (create, reload, fail, reinstate, flush, adoption after a crash),
and every map left whole (dmpath.lab.faultmatrix)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dmpath.lab import faultmatrix
from dmpath.lab import topology as topo

pytestmark = pytest.mark.lab


def test_a_fault_at_each_step_leaves_every_map_whole_and_reported(
    lab_topology: Callable[[str], list[topo.LabPath]], capsys: pytest.CaptureFixture[str]
) -> None:
    report = faultmatrix.run_matrix(quick=True, paths=lab_topology(faultmatrix.TOPOLOGY))
    with capsys.disabled():  # one line per case, for the reader
        print("\n[fault matrix] " + "\n[fault matrix] ".join(report.summary()))
    cases = faultmatrix.select(quick=True)
    assert [o.case for o in report.outcomes] == cases
    assert {c.step for c in cases} >= {"create", "reload", "fail", "reinstate", "flush", "adopt"}
    # every case's fault was really met: a case whose step never reached it proves nothing
    unmet = [o.case.name for o in report.outcomes if o.injected < 1]
    assert not unmet, f"faults never injected: {unmet}"
    assert not report.failed(), "\n".join(report.failed())
