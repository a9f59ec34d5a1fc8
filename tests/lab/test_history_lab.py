"""The history across a ``kill -9``: what the daemon wrote is listed by the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, wait_for
from dmpath.policy.history import decode_line

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]


def show_events(d: DaemonUnderTest) -> list[dict[str, Any]]:
    mpathctl = os.path.join(os.path.dirname(sys.executable), "mpathctl")
    res = subprocess.run(
        [mpathctl, "--socket", d.socket, "--json", "show", "events"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout))


def in_file(path: str) -> list[dict[str, Any]]:
    """The events the history file holds now."""
    with open(path, "rb") as fh:
        events = [decode_line(line) for line in fh]
    return [e.__dict__ for e in events if e is not None]


def test_events_before_a_kill_9_are_listed_after_the_restart(
    scsi_paths: list[topo.LabPath], dmpathd: Start
) -> None:
    d = dmpathd()
    history_file = os.path.join(d.workdir, "history")
    d.wait_maps({"mpatha": 2})
    victim, other = scsi_paths

    # a path failure the checker finds, and its return
    topo.set_state(victim, "offline")
    d.wait_path(victim.name, timeout=30, kernel_state="failed", check="down")
    topo.set_state(victim, "running")
    d.wait_path(victim.name, timeout=30, kernel_state="active", check="up")
    # an administrator's fail and reinstate
    d.request("fail_path", {"path": other.name})
    d.request("reinstate_path", {"path": other.name})

    before = d.history()
    seen = [(e["kind"], e["path"], e["message"].startswith("admin:")) for e in before]
    for want in [
        ("path_failed", victim.name, False),
        ("path_reinstated", victim.name, False),
        ("path_failed", other.name, True),
        ("path_reinstated", other.name, True),
    ]:
        assert want in seen, (want, seen)
    # written (handed to the kernel) by the writer thread: what a kill -9 must not lose
    wait_for(lambda: in_file(history_file)[: len(before)] == before, 10, "the history written")

    d.kill(signal.SIGKILL)
    d.start()

    after = d.history()
    assert after[: len(before)] == before
    started = d.events("daemon_started")
    assert len(started) == 1
    assert "the last run ended without stopping (killed or crashed)" in started[0]["message"]
    assert [e["kind"] for e in after].count("daemon_started") == 2
    # mpathctl shows the same history
    assert show_events(d)[: len(before)] == before

    # a clean stop is recorded, and told at the next start
    d.stop()
    d.start()
    (again,) = d.events("daemon_started")
    assert again["message"].endswith("the last run stopped")
    assert d.history()[: len(after)] == after


def test_a_history_file_that_cannot_be_written_is_a_warning_not_a_refusal(
    scsi_paths: list[topo.LabPath], dmpathd: Start, tmp_path: Any
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    d = dmpathd(defaults={"history_file": f"{blocker}/history"})
    d.wait_maps({"mpatha": 2})
    (started,) = d.events("daemon_started")
    assert started["message"].endswith("history in memory only")
    log = d.log()
    assert log.count("cannot open") == 1 and "history kept in memory only" in log, log
