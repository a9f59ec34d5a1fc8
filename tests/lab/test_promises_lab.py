"""What the documentation promises, on the real kernel: a map is never left suspended,
``flush_on_last_del`` flushes a map whose last path is removed, and the administrator's
requests (a flush, queueing off) outlive a ``kill -9`` of the daemon.

Every wait is a condition polled with a timeout (``wait_for``); paths a test takes
offline or deletes are brought back before the fixtures tear the daemon down.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, explained, wait_for
from dmpath.lab.topology import LabPath
from dmpath.runner import run

pytestmark = pytest.mark.lab

StartDaemon = Callable[..., DaemonUnderTest]
Topology = Callable[[str], list[LabPath]]

#: a checker polls every second; a heal is a few ioctls, slower under TCG
HEAL_TIMEOUT = 90.0


def settled(d: DaemonUnderTest, name: str, n: int) -> dict[str, Any] | None:
    """Map ``name`` with ``n`` paths the checker has seen up and the kernel uses."""
    m = d.maps().get(name)
    if m is None or len(m["paths"]) != n:
        return None
    fine = all(p["kernel_state"] == "active" and p["check"] == "up" for p in m["paths"])
    return m if fine else None


def restart(d: DaemonUnderTest) -> None:
    """kill -9 and start again: nothing is written at a clean stop that matters here."""
    d.kill(signal.SIGKILL)
    d.start()


def kernel_maps() -> set[str]:
    return {dev.name for dev in dmsetup.list_maps()}


def table_queues(name: str) -> bool:
    return "queue_if_no_path" in run("dmsetup", ["table", name]).stdout


def flap(d: DaemonUnderTest, map_name: str, p: LabPath) -> None:
    """``p`` goes offline and comes back: the daemon fails it and reinstates it (a heal,
    with its timed policies, each way)."""
    topo.set_state(p, "offline")
    try:
        d.wait_path(p.name, timeout=HEAL_TIMEOUT, kernel_state="failed")
    finally:
        topo.set_state(p, "running")
    wait_for(functools.partial(settled, d, map_name, 2), HEAL_TIMEOUT, f"{map_name} healed")


def test_a_flush_and_queueing_off_outlive_kill9(
    lab_topology: Topology, dmpathd: StartDaemon
) -> None:
    paths = lab_topology("2x2")
    d = dmpathd()
    with explained(d):
        for name in ("mpatha", "mpathb"):
            wait_for(functools.partial(settled, d, name, 2), HEAL_TIMEOUT, f"{name} settled")
        wwid_a = d.maps()["mpatha"]["wwid"]
        b_paths = [p for p in paths if p.devnum in set(dmsetup.table("mpathb").devs)]
        d.request("flush_map", {"map": "mpatha"})
        d.request("queueing", {"map": "mpathb", "enabled": False})
        assert "mpatha" not in kernel_maps() and not table_queues("mpathb")

        # a heal (a path failed and reinstated) leaves queueing as the admin set it
        flap(d, "mpathb", b_paths[0])
        assert not table_queues("mpathb") and d.maps()["mpathb"]["queueing"] is False

        restart(d)
        # one coldplug pass decides both LUNs: once mpathb's paths are checked, mpatha's
        # LUN was looked at too
        wait_for(functools.partial(settled, d, "mpathb", 2), HEAL_TIMEOUT, "mpathb adopted")
        assert "mpatha" not in d.maps() and "mpatha" not in kernel_maps()
        assert d.events("map_created") == []
        assert not table_queues("mpathb")
        flap(d, "mpathb", b_paths[1])
        assert not table_queues("mpathb")
        with open(os.path.join(d.workdir, "admin-state")) as fh:
            state = json.load(fh)
        assert state["flushed_maps"] == [wwid_a]
        assert list(state["queueing"].values()) == [False]

        # the admin asks for them back: the record is undone
        d.request("create_map", {"wwid": wwid_a})
        wait_for(functools.partial(settled, d, "mpatha", 2), HEAL_TIMEOUT, "mpatha made again")
        d.request("queueing", {"map": "mpathb"})
        assert table_queues("mpathb")
        with open(os.path.join(d.workdir, "admin-state")) as fh:
            state = json.load(fh)
        assert (state["flushed_maps"], state["queueing"]) == ([], {})


def test_a_map_found_suspended_is_resumed_at_start(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    """A daemon killed between a reload's suspend and its resume leaves its map holding
    every I/O: the next one resumes it as it adopts it."""
    d = dmpathd()
    with explained(d):
        wait_for(functools.partial(settled, d, "mpatha", 2), HEAL_TIMEOUT, "mpatha settled")
        d.kill(signal.SIGKILL)
        dmsetup.suspend("mpatha", noflush=True)
        try:
            assert dmsetup.suspended("mpatha")
            d.start()
            wait_for(lambda: not dmsetup.suspended("mpatha"), 60, "mpatha resumed")
        finally:
            with contextlib.suppress(Exception):
                dmsetup.resume("mpatha")
        (resumed,) = d.events("map_resumed")
        assert resumed["message"] == "mpatha was suspended (found suspended at start): resumed"


def test_flush_on_last_del_flushes_the_map_whose_last_path_is_deleted(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    # udev probes the map as its paths fail, and the probe's read waits on the map's
    # queue: the map is open until no_path_retry fails that I/O, then it is flushed
    d = dmpathd(defaults={"flush_on_last_del": True, "polling_interval": 1, "no_path_retry": 3})
    with explained(d):
        wait_for(functools.partial(settled, d, "mpatha", 2), HEAL_TIMEOUT, "mpatha settled")
        hosts = sorted({p.host for p in scsi_paths})
        try:
            for p in scsi_paths:  # both cables pulled for good
                with open(f"/sys/block/{p.name}/device/delete", "w") as fh:
                    fh.write("1\n")
            run("udevadm", ["settle", "-t", "30"], check=False)
            wait_for(lambda: "mpatha" not in kernel_maps(), HEAL_TIMEOUT, "mpatha flushed")
            (flushed,) = d.events("map_flushed")
            assert flushed["message"].endswith("flushed mpatha (flush_on_last_del)")
            assert "mpatha" not in d.maps()
        finally:
            for host in hosts:
                topo.scan_host(host)
            run("udevadm", ["settle", "-t", "30"], check=False)
        # the paths coming back make the map again
        wait_for(functools.partial(settled, d, "mpatha", 2), HEAL_TIMEOUT, "mpatha made again")
