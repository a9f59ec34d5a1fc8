"""The control socket fuzzer (``dmpath.lab.fuzz``) in its quick form, against the real
daemon: hostile, slow, cut-off, concurrent and unprivileged clients leave the daemon up,
answering, and the maps as they were."""

from __future__ import annotations

import os

import pytest

from dmpath.lab import fuzz

pytestmark = pytest.mark.lab

IN_GUEST = os.environ.get("DMPATH_LAB") == "1"


def test_hostile_clients_leave_the_daemon_and_the_maps_alone() -> None:
    if not IN_GUEST:
        pytest.skip("needs the lab VM")
    figures = fuzz.run(quick=True)
    print("fuzz figures:", figures)
    assert figures["requests_sent"] >= fuzz.QUICK_REQUESTS
    # every reply owed came, well-formed and of a kind allowed for its request
    assert figures["answered"] == figures["owed"] > 0
    for rule in ("problems", "malformed", "internal", "timeouts"):
        assert figures[rule] == 0, rule
    # the unprivileged client's mutations were all refused, and it sent plenty
    assert figures["nobody_requests"] > 0 and figures["mutations_allowed"] == 0
    assert figures["permission_denied"] > 0
    assert figures["stalled_closed"] == figures["stalled"] == fuzz.STALLED
    assert figures["burst_busy"] > 0
    assert figures["daemon_restarts"] == 0 and figures["state_changed"] == 0
