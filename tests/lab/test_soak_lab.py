"""The soak's quick form: fio with crc32c verify on a dm map and an md multipath array
while paths fail and return and dmpathd is killed mid-failover (dmpath.lab.soak)."""

from __future__ import annotations

import pytest

from dmpath.lab import soak

pytestmark = pytest.mark.lab


def test_quick_soak_loses_no_io_and_the_restarted_daemon_matches_the_kernel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fig = soak.run(quick=True)
    with capsys.disabled():  # figures for the reader
        print("\n[soak] " + ", ".join(f"{k} {v:g}" for k, v in fig.items()))
    # the faults really happened, and fio really ran through them on both devices
    assert fig["cycles"] == soak.QUICK.path_cycles
    assert fig["restarts"] == soak.QUICK.restarts
    assert fig["maps_adopted"] == soak.QUICK.restarts * len(soak.LUN_OF)
    assert fig["model_checks"] == 2 * soak.QUICK.restarts + 1
    assert fig["fio_jobs"] == 4 and fig["io_operations"] > 0
    # and nothing was lost or disagreed
    assert fig["io_errors"] == 0
    assert fig["verify_failures"] == 0
    assert fig["fio_ended_early"] == 0
    assert fig["model_mismatches"] == 0
