"""dmpathd under faults in its own kernel operations: the quick fault matrix
(dmpath.lab.faultmatrix; ``python -m dmpath.lab faults`` runs the full one)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dmpath.lab import faultmatrix
from dmpath.lab import topology as topo

pytestmark = pytest.mark.lab


def test_quick_fault_matrix_leaves_every_map_whole(
    lab_topology: Callable[[str], list[topo.LabPath]],
) -> None:
    report = faultmatrix.run_matrix(quick=True, paths=lab_topology(faultmatrix.TOPOLOGY))
    figures = report.figures()
    print("\n".join(report.summary()), figures, sep="\n")
    assert figures["cases"] == len(faultmatrix.select(quick=True))
    assert figures["faults_injected"] >= figures["cases"] - 1  # the files case plans none
    assert report.failed() == [], "\n".join(report.failed())
