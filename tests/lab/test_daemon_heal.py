"""dmpathd on the real kernel: assembly, noticing dead and returning paths, I/O across it."""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from collections.abc import Callable

import pytest

from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.boots import MODERN_BOOT
from dmpath.lab.harness import DaemonUnderTest, VerifiedIO, cleanup_maps, wait_for
from dmpath.runner import run

pytestmark = pytest.mark.lab

Topo = Callable[[str], list[topo.LabPath]]
Start = Callable[..., DaemonUnderTest]


def table_devs(name: str) -> set[str]:
    return set(dmsetup.table(name).devs)


def test_coldplug_2x2_and_1x4_named_per_config(lab_topology: Topo, dmpathd: Start) -> None:
    paths = lab_topology("2x2")
    wwids = sorted({p.wwid for p in paths})
    d = dmpathd()
    maps = d.wait_maps({"mpatha": 2, "mpathb": 2})
    for m in maps.values():
        # the map's WWID is udev's (uid_attribute), whose spelling depends on the host's
        # udev rules; group the paths the same way
        mine = {p.devnum for p in paths if _udev_wwid(p) == m["wwid"]}
        assert table_devs(m["name"]) == mine, m["name"]
        assert m["status"] == "[2/2] [UU]"
        assert dmsetup.info(m["name"]).uuid == "mpath-" + m["wwid"]
    assert len({m["wwid"] for m in maps.values()}) == len(wwids) == 2
    d.stop()
    cleanup_maps()

    paths = lab_topology("1x4")
    alias = f'[[multipaths]]\nwwid = "{_udev_wwid(paths[0])}"\nalias = "oracle_data"\n'
    d2 = dmpathd(defaults={"path_grouping_policy": "multibus", "eh_deadline": 15}, extra=alias)
    d2.wait_maps({"oracle_data": 4})
    assert table_devs("oracle_data") == {p.devnum for p in paths}
    assert len(dmsetup.table("oracle_data").groups) == 1  # multibus: one group of 4
    # eh_deadline onto each SCSI host of the paths, once per host
    hosts = sorted({p.host for p in paths})
    for h in hosts:
        with open(f"/sys/class/scsi_host/host{h}/eh_deadline") as fh:
            assert fh.read().strip() == "15"
    tuned = [e["message"] for e in d2.events("transport_tuned")]
    assert sorted(tuned) == sorted(f"host{h} eh_deadline off -> 15 s (eh_deadline)" for h in hosts)


def _udev_wwid(p: topo.LabPath) -> str:
    import pyudev

    dev = pyudev.Devices.from_name(pyudev.Context(), "block", p.name)
    return str(dev.properties.get("ID_SERIAL"))


# the daemon's failover and healing on the modern kernel too: these two run in the 6.12
# boot (the rest of the file, and every other daemon test, runs on 6.1; CI's hour has no
# room for 6.1 copies of these two)
@pytest.mark.lab(boot=MODERN_BOOT)
def test_idle_map_offline_path_failed_and_reinstated_without_io(
    scsi_paths: list[topo.LabPath], dmpathd: Start
) -> None:
    d = dmpathd()
    d.wait_maps({"mpatha": 2})
    victim = scsi_paths[0]
    before = dmsetup.status("mpatha").path(victim.devnum)
    assert before is not None and before.active
    t0 = time.monotonic()
    topo.set_state(victim, "offline")
    d.wait_path(victim.name, timeout=30, kernel_state="failed", check="down")
    noticed = time.monotonic() - t0
    st = dmsetup.status("mpatha").path(victim.devnum)
    assert st is not None and not st.active  # failed in dm by the daemon, no I/O needed
    kinds = [(e["kind"], e["path"]) for e in d.show()["events"]]
    assert ("path_failed", victim.name) in kinds
    failed_msg = [e["message"] for e in d.show()["events"] if e["kind"] == "path_failed"][-1]
    assert failed_msg == (f"IO failure on {victim.name}, disabling IO path. "
                          "Operation continuing on 1 IO path.")
    t1 = time.monotonic()
    topo.set_state(victim, "running")
    d.wait_path(victim.name, timeout=30, kernel_state="active", check="up")
    back = time.monotonic() - t1
    st = dmsetup.status("mpatha").path(victim.devnum)
    assert st is not None and st.active
    assert d.maps()["mpatha"]["status"] == "[2/2] [UU]"
    print(f"\nidle map: dead path noticed in {noticed:.2f} s, return in {back:.2f} s")


@pytest.mark.lab(boot=MODERN_BOOT)
def test_verified_io_survives_path_cycles(lab_topology: Topo, dmpathd: Start) -> None:
    # (lab_topology: for its guest check; the topology is loaded here, a reload that the
    # fixture's health check notices for the next test)
    # Without scsi_debug's standby ports (host_no % 3 == 2). Once scsi_dh_alua is attached
    # (something in the session loads it; on 6.12 it took effect only after the path's
    # first offline/running cycle), it fails every I/O sent to a standby port while TEST
    # UNIT READY passes: in a multibus map that path is failed by the kernel again and
    # again, the daemon rightly keeps it out as marginal, and the test would wait for it in
    # vain (seen on both kernels). Without standby ports the outcome is the daemon's alone.
    paths = topo.setup(topo.get_topology("1x4"), drop_standby=True)
    d = dmpathd(defaults={"path_grouping_policy": "multibus"})
    d.wait_maps({"mpatha": 4})
    io = VerifiedIO("/dev/mapper/mpatha").start()
    try:
        wait_for(lambda: io.writes > 20, 30, "I/O to start")
        for cycle in range(2):
            for p in paths:
                goal = io.writes + 10
                topo.set_state(p, "offline")
                d.wait_path(p.name, timeout=30, kernel_state="failed")
                wait_for(functools.partial(_past, io, goal), 30, f"I/O with {p.name} down")
                topo.set_state(p, "running")
                d.wait_path(p.name, timeout=30, kernel_state="active", check="up")
            assert not io.errors, io.errors[:5]
            print(f"cycle {cycle}: {io.writes} writes, {io.reads} reads, 0 errors")
    finally:
        # the daemon's whole log, kept on the host, per kernel (the lab's output directory)
        d.keep_log(f"heal-cycles-{os.uname().release}.log")
        for p in paths:
            topo.set_state(p, "running")
        io.stop()
    assert io.errors == []
    assert io.mismatches == 0
    assert io.verify_all() == 0
    assert io.writes > 100


def test_last_path_is_never_failed_by_the_daemon(scsi_paths: list[topo.LabPath],
                                                  dmpathd: Start) -> None:
    d = dmpathd()
    d.wait_maps({"mpatha": 2})
    a, b = scsi_paths
    topo.set_state(a, "offline")
    d.wait_path(a.name, kernel_state="failed")
    # udev answers the map's change uevent (a failed) by reading the map (blkid): let
    # it finish first, or that read would meet b offline and the kernel, not the
    # daemon, fails b (the kernel fails any path an I/O fails on, the last one too)
    run("udevadm", ["settle", "-t", "60"], check=False, timeout=90)
    topo.set_state(b, "offline")
    d.wait_path(b.name, check="down")
    wait_for(lambda: d.maps()["mpatha"]["alerts"], 15, "the last-path alert")
    st = dmsetup.status("mpatha").path(b.devnum)
    assert st is not None and st.active  # kept: it is all we have
    assert any("only one IO path left and IO error." in x for x in d.maps()["mpatha"]["alerts"])
    # admin may not fail it either without --force
    from dmpath.errors import PolicyRefusal

    with pytest.raises(PolicyRefusal, match="last working path"):
        d.request("fail_path", {"path": b.name})
    topo.set_state(a, "running")
    d.wait_path(a.name, kernel_state="active")
    # with a working path back, the dead one can now be failed
    d.wait_path(b.name, kernel_state="failed")
    topo.set_state(b, "running")
    d.wait_path(b.name, kernel_state="active")


def test_no_path_retry_queues_then_fails_cleanly(scsi_paths: list[topo.LabPath],
                                                 dmpathd: Start) -> None:
    d = dmpathd(defaults={"no_path_retry": 6, "path_grouping_policy": "multibus"})
    d.wait_maps({"mpatha": 2})
    devnode = "/dev/mapper/mpatha"
    payload = VerifiedIO.pattern(7, 1)
    # 1) all paths die, I/O waits, a path returns in time: the I/O completes correctly
    for p in scsi_paths:
        topo.set_state(p, "offline")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: one O_DIRECT write + read-back; exit status tells the outcome
        import mmap

        os.close(r)
        code = 1
        try:
            buf = mmap.mmap(-1, 4096)
            buf.write(payload)
            fd = os.open(devnode, os.O_RDWR | os.O_DIRECT)
            os.pwritev(fd, [buf], 7 * 4096)
            buf2 = mmap.mmap(-1, 4096)
            os.preadv(fd, [buf2], 7 * 4096)
            code = 0 if bytes(buf2) == payload else 2
        except OSError:
            code = 3
        os._exit(code)
    os.close(w)
    time.sleep(1.0)  # let the write reach the map and queue (it cannot complete: no path)
    assert os.waitpid(pid, os.WNOHANG) == (0, 0), "I/O should wait while no path works"
    topo.set_state(scsi_paths[0], "running")
    _, status = wait_for(lambda: _reaped(pid), 60, "queued I/O to complete")
    assert os.waitstatus_to_exitcode(status) == 0  # written and read back exactly
    os.close(r)
    d.wait_path(scsi_paths[0].name, kernel_state="active")
    # 2) all paths die and stay dead: after no_path_retry checks, I/O fails, no hang
    topo.set_state(scsi_paths[0], "offline")
    pid = os.fork()
    if pid == 0:
        import mmap

        try:
            buf = mmap.mmap(-1, 4096)
            fd = os.open(devnode, os.O_RDONLY | os.O_DIRECT)
            os.preadv(fd, [buf], 0)
            os._exit(0)
        except OSError:
            os._exit(5)
    _, status = wait_for(lambda: _reaped(pid), 90, "I/O to fail after no_path_retry")
    assert os.waitstatus_to_exitcode(status) == 5  # an error, not a hang
    # the kernel fails the queued I/O while dmsetup's fail_if_no_path is still running;
    # the daemon records it when that command returns, a moment after the reader saw it
    wait_for(lambda: not d.maps()["mpatha"]["queueing"], 10, "the model to say: not queueing")
    events = [e["message"] for e in d.show()["events"] if e["kind"] == "queueing"]
    assert any("failing queued I/O" in m for m in events)
    for p in scsi_paths:
        topo.set_state(p, "running")
    wait_for(lambda: d.maps()["mpatha"]["queueing"], 60, "queueing restored once a path is back")


def _past(io: VerifiedIO, goal: int) -> bool:
    return io.writes > goal


def _reaped(pid: int) -> tuple[int, int] | None:
    got = os.waitpid(pid, os.WNOHANG)
    return got if got[0] == pid else None


def test_socket_refuses_non_root_and_answers_garbage(scsi_paths: list[topo.LabPath],
                                                      dmpathd: Start) -> None:
    # a socket directory an unprivileged user can reach (pytest's tmp dirs are 0700)
    os.makedirs("/run/dmpath-lab", mode=0o755, exist_ok=True)
    d = dmpathd(defaults={"socket": "/run/dmpath-lab/dmpathd.sock"})
    d.wait_maps({"mpatha": 2})
    from dmpath.client import request
    from dmpath.protocol import PermissionDenied

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a real unprivileged client
        os.close(r)
        outcome = "?"
        try:
            os.setgid(65534)
            os.setuid(65534)
            request("show", socket_path=d.socket)  # reading is allowed
            try:
                request("fail_path", {"path": scsi_paths[0].name}, socket_path=d.socket)
                outcome = "fail_path was allowed"
            except PermissionDenied as exc:
                outcome = "denied: " + str(exc)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            outcome = f"error: {type(exc).__name__}: {exc}"
        os.write(w, outcome.encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as fh:
        outcome = fh.read()
    assert outcome.startswith("denied: "), outcome
    assert dmsetup.status("mpatha").path(scsi_paths[0].devnum).active  # type: ignore[union-attr]
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(d.socket)
        s.sendall(b"\x00\xffnot json at all\n")
        reply = s.recv(65536)
    answer = json.loads(reply)
    assert answer["ok"] is False and answer["error"]["kind"] == "bad_request"
    assert d.request("ping")["pid"] > 0  # still serving
