"""mpathctl against the real daemon: every action does what it says, views match the kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, wait_for

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]


def ctl(d: DaemonUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    mpathctl = os.path.join(os.path.dirname(sys.executable), "mpathctl")
    return subprocess.run([mpathctl, "--socket", d.socket, *args], capture_output=True,
                          text=True, timeout=120, check=False)


def ctl_json(d: DaemonUnderTest, *args: str) -> Any:
    res = ctl(d, "--json", *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def kernel_states(name: str) -> dict[str, str]:
    return {p.dev: ("active" if p.active else "failed") for _, p in dmsetup.status(name).paths()}


def test_status_matches_dmsetup_and_actions_do_what_they_say(
    lab_topology: Callable[[str], list[topo.LabPath]], dmpathd: Start
) -> None:
    paths = lab_topology("1x2")
    d = dmpathd()
    d.wait_maps({"mpatha": 2})
    a, b = paths

    status = ctl_json(d, "status")
    (m,) = status["maps"]
    assert {p["devnum"]: p["kernel_state"] for p in m["paths"]} == kernel_states("mpatha")
    assert m["status"] == "[2/2] [UU]"
    human = ctl(d, "status")
    assert human.returncode == 0 and "mpatha" in human.stdout and "[2/2] [UU]" in human.stdout

    # fail / reinstate by every spelling of a path
    assert ctl(d, "fail", f"/dev/{a.name}").returncode == 0
    assert kernel_states("mpatha")[a.devnum] == "failed"
    assert ctl(d, "reinstate", a.devnum).returncode == 0
    assert kernel_states("mpatha")[a.devnum] == "active"

    # the last working path is refused without --force, in one line, exit 7
    assert ctl(d, "fail", a.name).returncode == 0
    res = ctl(d, "fail", b.name)
    assert res.returncode == 7, res
    assert len(res.stderr.strip().splitlines()) == 1 and "--force" in res.stderr
    assert kernel_states("mpatha")[b.devnum] == "active"
    assert ctl(d, "reinstate", a.name).returncode == 0

    # switchgroup: the kernel's next group changes
    assert ctl(d, "switchgroup", "mpatha", "2").returncode == 0
    assert dmsetup.status("mpatha").next_pg == 2
    res = ctl(d, "switchgroup", "mpatha", "9")
    assert res.returncode == 11

    # queueing off/on shows in the live table's features
    assert ctl(d, "queueing", "mpatha", "off").returncode == 0
    assert not dmsetup.table("mpatha").features.queue_if_no_path
    assert ctl(d, "queueing", "mpatha", "on").returncode == 0
    assert dmsetup.table("mpatha").features.queue_if_no_path

    # remove takes a path out of the map; add brings it back
    assert ctl(d, "remove", b.name).returncode == 0
    assert b.devnum not in dmsetup.table("mpatha").devs
    assert ctl(d, "add", b.name).returncode == 0
    wait_for(lambda: b.devnum in dmsetup.table("mpatha").devs, 30, "path to rejoin")

    # flush refuses an open map, works on a closed one; create brings it back by name
    fd = os.open("/dev/mapper/mpatha", os.O_RDONLY)
    try:
        res = ctl(d, "flush", "mpatha")
        assert res.returncode == 7 and "open" in res.stderr
    finally:
        os.close(fd)
    assert ctl(d, "flush", "mpatha").returncode == 0
    assert "mpatha" not in [m.name for m in dmsetup.list_maps()]
    assert ctl(d, "create", a.name, "--name", "data01").returncode == 0
    wait_for(lambda: "data01" in [m.name for m in dmsetup.list_maps()], 30, "map data01")
    assert ctl(d, "reconfigure").returncode == 0

    events = ctl_json(d, "show", "events")
    kinds = {e["kind"] for e in (events if isinstance(events, list) else events["events"])}
    assert {"path_failed", "path_reinstated", "map_flushed", "map_created"} <= kinds


def test_views_without_daemon_read_the_kernel(scsi_paths: list[topo.LabPath],
                                              dmpathd: Start) -> None:
    d = dmpathd()
    d.wait_maps({"mpatha": 2})
    d.stop()  # maps stay
    res = ctl(d, "--json", "status")
    assert res.returncode == 0, res.stderr
    snap = json.loads(res.stdout)
    assert snap["source"] == "kernel"
    (m,) = [m for m in snap["maps"] if m["name"] == "mpatha"]
    assert {p["devnum"]: p["kernel_state"] for p in m["paths"]} == kernel_states("mpatha")
    assert "not running" in res.stderr
    res = ctl(d, "fail", scsi_paths[0].name)
    assert res.returncode == 9 and "dmpathd" in res.stderr
