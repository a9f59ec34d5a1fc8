"""dmpathd on a real NVMe-TCP fabric: an nvmet subsystem behind two ports, the host
connected through both (see dmpath.lab.nvmetcp).

With native NVMe multipath off each controller gives the namespace a disk of its own,
and those disks are the paths of one dm map; with it on the kernel joins them itself and
dmpathd only shows what the kernel does.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from dmpath.kernel import dmsetup, nvme, udev
from dmpath.lab import nvmetcp
from dmpath.lab.harness import (
    DaemonUnderTest,
    VerifiedIO,
    daemon_view,
    through_fault,
    wait_explained,
    wait_for,
)
from dmpath.runner import run

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]
Lab = tuple[nvmetcp.Fabric, list[nvmetcp.NvmePath]]

#: the daemon manages the NVMe namespaces only: scsi_debug and iSCSI disks are not ours
NVME_ONLY = '[blacklist]\nprotocol = ["^scsi:"]\n'
#: a black-holed controller: keep-alive (5 s) and error recovery, then checks, emulated
FAULT_TIMEOUT = 120.0
#: the controller reconnects (every RECONNECT_DELAY s) and the checks see it back
RETURN_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def fabric() -> Iterator[Lab]:
    f = nvmetcp.Fabric(namespaces=1)
    f.setup()
    try:
        yield f, f.paths()
    finally:
        f.teardown()


@pytest.fixture
def healthy(fabric: Lab) -> Iterator[Lab]:
    """The fabric with every fault cleared after the test, and its controllers live."""
    f, paths = fabric
    yield f, paths
    f.clear_faults()
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: [f.controller_state(p.controller) for p in f.paths()] == ["live"] * len(paths),
            RETURN_TIMEOUT, "controllers live again",
        )


def _map(d: DaemonUnderTest, paths: list[nvmetcp.NvmePath]) -> str:
    def one() -> str | None:
        names = [n for n, m in d.maps().items() if len(m["paths"]) == len(paths)]
        return names[0] if len(names) == 1 else None

    name: str = wait_for(one, 120, "one map over both controllers")
    return name


def _states(name: str) -> dict[str, bool]:
    return {p.dev: p.active for _g, p in dmsetup.status(name).paths()}


def _started(dmpathd: Start, paths: list[nvmetcp.NvmePath]) -> tuple[DaemonUnderTest, str]:
    """dmpathd on the NVMe disks alone, its one map over both, both paths active."""
    d = dmpathd(extra=NVME_ONLY)
    name = _map(d, paths)
    wait_for(lambda: all(_states(name).values()), 60, "both paths active")
    return d, name


def _claimed(d: DaemonUnderTest, name: str) -> bool:
    """Whether the udev helper (of the tree under test, with the daemon's config) claims
    the disk, given what udev knows of it."""
    props = udev.parse_export(
        run("udevadm", ["info", "--query=property", "--export", f"/dev/{name}"]).stdout
    )
    out = subprocess.run(
        [sys.executable, "-m", "dmpath.udevhelper", name],
        env={**os.environ, **props, "DMPATH_CONFIG": d.config},
        capture_output=True, text=True, timeout=60, check=True,
    )
    return "DM_MULTIPATH_DEVICE_PATH=1" in out.stdout.splitlines()


def _stop_clean(io: VerifiedIO) -> None:
    """The verified I/O stopped: no error, no block read back wrong, then or now."""
    io.stop()
    assert io.errors == []
    assert io.mismatches == 0
    assert io.verify_all() == 0


def _wait(what: str, pred: Callable[[], bool], timeout: float, *, d: DaemonUnderTest,
          f: nvmetcp.Fabric, path: nvmetcp.NvmePath) -> None:
    """Until ``pred``; a time-out says where the controllers and the daemon stand."""
    controllers = lambda: " ".join(  # noqa: E731
        f"{c} {f.controller_state(c)}" for c in f.controllers()
    )
    wait_explained(pred, timeout, what, lambda: f"{controllers()} | {daemon_view(d, path.name)}")


def test_two_controllers_are_one_map_and_a_black_holed_one_is_failed_and_back(
    healthy: Lab, dmpathd: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    f, paths = healthy
    assert len(paths) == 2 and paths[0].wwid == paths[1].wwid != ""
    d, name = _started(dmpathd, paths)
    m = d.maps()[name]
    assert m["wwid"] == paths[0].wwid
    for p in m["paths"]:
        # no SG_IO on NVMe: the default checker (tur) becomes directio
        assert (p["transport"], p["checker"], p["check"]) == ("nvme:tcp", "directio", "up")
    # udev's claim agrees with the daemon: both controllers' disks are paths
    assert [_claimed(d, p.name) for p in paths] == [True, True]
    victim, other = paths
    io = VerifiedIO(f"/dev/mapper/{name}", blocks=64).start()
    try:
        failed_after, stall = through_fault(
            io,
            lambda: f.blackhole(victim.port),
            lambda: _wait(
                f"{victim.name} (black-holed port) failed in the table",
                lambda: _states(name) == {victim.devnum: False, other.devnum: True},
                FAULT_TIMEOUT, d=d, f=f, path=victim,
            ),
            FAULT_TIMEOUT, "I/O over the other controller",
        )
        events = d.show()["events"]
        assert ("path_failed", victim.name) in [(e["kind"], e["path"]) for e in events]
        # who told first: the kernel's dm event (I/O failed) or the daemon's check
        told = next(e["message"] for e in events
                    if e["path"] == victim.name and e["kind"] in ("path_failed", "check"))
        t1 = time.monotonic()
        f.clear_rules()
        _wait(f"{victim.name} reinstated", lambda: all(_states(name).values()),
              RETURN_TIMEOUT, d=d, f=f, path=victim)
        back_after = time.monotonic() - t1
    except BaseException:
        io.stop()
        raise
    _stop_clean(io)
    with capsys.disabled():  # figures for the reader, never a verdict
        print(f"\n[nvme black hole] path failed in the table after {failed_after:.1f} s; "
              f"longest I/O stall {stall:.1f} s; reinstated {back_after:.1f} s after the "
              f"rules went; first word: {told}")


def test_a_link_going_down_fails_its_controller_path_from_the_link_event(
    healthy: Lab, dmpathd: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    f, paths = healthy
    d, name = _started(dmpathd, paths)
    victim = paths[0]
    t0 = time.monotonic()
    f.link(victim.port, up=False)
    failed = lambda: not _states(name)[victim.devnum]  # noqa: E731
    _wait("failed in the table", failed, FAULT_TIMEOUT, d=d, f=f, path=victim)
    events = d.show()["events"]
    link_down = [e for e in events if e["kind"] == "link_down"]
    assert [e["message"] for e in link_down] == [f"link {victim.port.host_if} down: {victim.name}"]
    # the failure came from the link event: the path's own check had not spoken yet
    kinds = [(e["kind"], e["path"]) for e in events]
    assert events.index(link_down[0]) < kinds.index(("path_failed", victim.name))
    assert d.path(victim.name)["check_reason"] == f"link {victim.port.host_if} down"
    failed_after = time.monotonic() - t0
    t1 = time.monotonic()
    f.link(victim.port, up=True)
    _wait(f"{victim.name} reinstated", lambda: all(_states(name).values()),
          RETURN_TIMEOUT, d=d, f=f, path=victim)
    with capsys.disabled():  # figures for the reader, never a verdict
        print(f"\n[nvme link down] path failed in the table within {failed_after:.1f} s; "
              f"reinstated {time.monotonic() - t1:.1f} s after the link came back")


def test_a_removed_controller_leaves_the_map_and_a_new_connection_joins_it(
    healthy: Lab, dmpathd: Start
) -> None:
    f, paths = healthy
    d, name = _started(dmpathd, paths)
    victim, other = paths
    io = VerifiedIO(f"/dev/mapper/{name}", blocks=64).start()
    try:
        through_fault(
            io,
            lambda: f.remove_controller(victim.controller),
            lambda: _wait(f"{victim.name} out of the map",
                          lambda: _states(name) == {other.devnum: True},
                          FAULT_TIMEOUT, d=d, f=f, path=victim),
            FAULT_TIMEOUT, "I/O over the other controller",
        )
        assert ("path_removed", victim.name) in [
            (e["kind"], e["path"]) for e in d.show()["events"]
        ]
        # the host connects again: a new controller, a new disk of the same namespace
        f.connect(victim.port)
        new = wait_for(
            lambda: [p for p in f.paths() if p.port == victim.port], RETURN_TIMEOUT,
            "the namespace's disk through the new controller",
        )[0]
        _wait(f"{new.name} joined the map",
              lambda: _states(name) == {new.devnum: True, other.devnum: True},
              RETURN_TIMEOUT, d=d, f=f, path=new)
        assert ("path_joined", new.name) in [(e["kind"], e["path"]) for e in d.show()["events"]]
        io.wait_writes(io.writes + 50, FAULT_TIMEOUT, "I/O over both controllers")
    except BaseException:
        io.stop()
        raise
    _stop_clean(io)


def ctl(d: DaemonUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    # as a module of the tree under test, like the daemon (an installed mpathctl script
    # may belong to another checkout)
    return subprocess.run(
        [sys.executable, "-m", "dmpath.cli.main", "--socket", d.socket, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def native(fabric: Lab) -> Iterator[nvmetcp.Fabric]:
    """The same target with native NVMe multipath on (nvme_core reloaded): the module's
    fabric is taken down first, since both use the same target and links."""
    fabric[0].teardown()
    f = nvmetcp.Fabric(namespaces=1, native=True)
    f.setup()
    try:
        yield f
    finally:
        f.teardown()


def test_native_multipath_is_shown_and_left_alone(native: nvmetcp.Fabric, dmpathd: Start) -> None:
    (head,) = native.heads()
    outdir = os.environ.get("DMPATH_LAB_OUTDIR")
    if outdir:  # what the reader saw, kept next to the run for the unit tests' fixtures
        with open(os.path.join(outdir, "nvme_native_tree.txt"), "w") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in nvme.read_native_tree().items())
    # greedy: a disk of one path would be a map too; the native head must still not be
    d = dmpathd(defaults={"find_multipaths": "greedy"}, extra=NVME_ONLY)
    # asking for it by hand says why not, once the daemon has seen the disk
    refused = wait_for(
        lambda: (r := ctl(d, "add", f"/dev/{head}")).returncode != 0
        and "native NVMe multipath" in r.stderr and r,
        60, f"dmpathd to refuse {head} as native NVMe multipath's",
    )
    assert head in refused.stderr
    assert not _claimed(d, head)  # the udev rule leaves the kernel's device alone too
    snap = d.show()
    assert snap["maps"] == []
    assert [p["name"] for p in snap["unmapped_paths"]] == []
    (sub,) = [s for s in snap["nvme_native"] if s["nqn"] == nvmetcp.SUBSYS_NQN]
    (ns,) = sub["namespaces"]
    assert (ns["name"], ns["nsid"], ns["wwid"]) == (head, 1, f"uuid.{nvmetcp.ns_uuid(1)}")
    by_addr = {p["address"].split(",")[0]: p for p in ns["paths"]}
    assert sorted(by_addr) == sorted(f"traddr={p.target_addr}" for p in nvmetcp.PORTS)
    for p in ns["paths"]:
        assert (p["state"], p["transport"], p["ana_state"]) == ("live", "tcp", "optimized")
    # the kernel's view follows the target: port 2's ANA group turns inaccessible
    native.set_ana_state(nvmetcp.PORTS[1], "inaccessible")
    wait_for(
        lambda: {p["address"].split(",")[0]: p["ana_state"]
                 for p in d.show()["nvme_native"][0]["namespaces"][0]["paths"]}
        == {f"traddr={nvmetcp.PORTS[0].target_addr}": "optimized",
            f"traddr={nvmetcp.PORTS[1].target_addr}": "inaccessible"},
        60, "ANA states in the native view",
    )
    text = ctl(d, "--no-color", "status")
    assert text.returncode == 0, text.stderr
    assert "native NVMe multipath" in text.stdout and head in text.stdout
    assert "inaccessible" in text.stdout
    doc = json.loads(ctl(d, "--json", "status").stdout)
    assert doc["nvme_native"] == d.show()["nvme_native"]
