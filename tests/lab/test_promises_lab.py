"""What the documentation promises, on the real kernel: a map is never left suspended,
``flush_on_last_del`` flushes a map whose last path is removed, the administrator's
requests (a flush, queueing off) outlive a ``kill -9`` of the daemon, a SIGHUP reshapes
live maps under I/O, and ``mpathctl status`` reads a map the same with and without the
daemon.

Every wait is a condition polled with a timeout (``wait_for``); paths a test takes
offline or deletes are brought back before the fixtures tear the daemon down.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, VerifiedIO, explained, wait_for
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
            # the event follows the remove's return, which follows the map's going
            wait_for(lambda: d.events("map_flushed"), 30, "the map_flushed event")
            (flushed,) = d.events("map_flushed")
            assert flushed["message"].endswith("flushed mpatha (flush_on_last_del)")
            assert "mpatha" not in d.maps()
        finally:
            for host in hosts:
                topo.scan_host(host)
            run("udevadm", ["settle", "-t", "30"], check=False)
        # the paths coming back make the map again
        wait_for(functools.partial(settled, d, "mpatha", 2), HEAL_TIMEOUT, "mpatha made again")


def status_json(socket: str) -> dict[str, Any]:
    """``mpathctl --json status`` through ``socket`` (a missing one: the kernel's view)."""
    mpathctl = os.path.join(os.path.dirname(sys.executable), "mpathctl")
    res = subprocess.run(
        [mpathctl, "--socket", socket, "--json", "status"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def kernel_fields(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """What the kernel says of map ``name``, as ``status --json`` shows it."""
    (m,) = [m for m in doc["maps"] if m["name"] == name]
    return {
        **{k: m[k] for k in ("uuid", "wwid", "sysfs", "size_sectors", "features",
                             "hwhandler", "queueing", "status")},
        "groups": [(g["number"], g["selector"], g["state"], g["paths"]) for g in m["groups"]],
        "paths": [(p["name"], p["devnum"], p["kernel_state"], p["group"]) for p in m["paths"]],
    }  # fmt: skip


def test_sighup_reshapes_live_maps_under_io(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    """A new grouping, selector and no_path_retry reach a live map at a SIGHUP, without a
    path joining or leaving, while I/O runs on it; a SIGHUP with nothing new reloads
    nothing; a new alias renames the map. Then mpathctl reads the reshaped map the same
    with and without the daemon."""
    d = dmpathd(defaults={"path_grouping_policy": "multibus", "prio": "const"})

    def sighup(reshaped: int) -> None:
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(d.events("reshaped")) == reshaped, 60, "the map reshaped")

    with explained(d):
        wait_for(functools.partial(settled, d, "mpatha", 2), HEAL_TIMEOUT, "mpatha settled")
        before = dmsetup.table("mpatha")
        assert len(before.groups) == 1 and before.features.queue_if_no_path
        io = VerifiedIO("/dev/mapper/mpatha", blocks=64).start()
        try:
            io.wait_writes(10, 60, "I/O on mpatha")
            d.defaults.update(
                path_grouping_policy="failover", path_selector="round-robin 0",
                no_path_retry="fail",
            )  # fmt: skip
            d.write_config()
            sighup(1)
            after = dmsetup.table("mpatha")
            assert [len(g.paths) for g in after.groups] == [1, 1]
            assert {g.selector for g in after.groups} == {"round-robin"}
            assert not after.features.queue_if_no_path and not dmsetup.suspended("mpatha")
            (reshaped,) = d.events("reshaped")
            assert reshaped["map"] == "mpatha" and "path groups" in reshaped["message"]
            io.wait_writes(io.writes + 10, 60, "I/O on mpatha after the reshape")
            # nothing new: nothing reloaded (asked as mpathctl reconfigure does, whose
            # reply comes once it is done)
            assert d.request("reconfigure")["reshaped"] == []
            assert len(d.events("reshaped")) == 1 and dmsetup.table("mpatha") == after

            wwid = d.maps()["mpatha"]["wwid"]
            d.extra = f'[[multipaths]]\nwwid = "{wwid}"\nalias = "promised"'
            d.write_config()
            sighup(2)
            assert "mpatha" not in kernel_maps() and dmsetup.table("promised") == after
            assert d.events("reshaped")[1]["message"].startswith("promised: renamed from mpatha")
            io.devnode = "/dev/mapper/promised"  # the open device is the same map
            io.wait_writes(io.writes + 10, 60, "I/O on the renamed map")
        finally:
            io.stop()
        assert io.errors == [] and io.mismatches == 0 and io.verify_all() == 0

        wait_for(functools.partial(settled, d, "promised", 2), HEAL_TIMEOUT, "map settled")
        daemon_view = kernel_fields(status_json(d.socket), "promised")
        kernel_view = status_json(os.path.join(d.workdir, "no-daemon.sock"))
        assert kernel_view["source"] == "kernel"
        assert kernel_fields(kernel_view, "promised") == daemon_view
        assert daemon_view["features"] == "0"
        assert [g[1] for g in daemon_view["groups"]] == ["round-robin 0", "round-robin 0"]
