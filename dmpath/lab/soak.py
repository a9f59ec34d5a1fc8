"""The soak under faults, the blktests way (run inside the lab guest, as root).

One dmpathd manages two LUNs of scsi_debug, two paths each: one as a dm map
(``soak_dm``), the other as an md multipath array (``soak_md``, md's personality, on the
6.1 kernel). fio (``dmpath.lab.fio``: crc32c verify, direct I/O, two jobs per device)
runs on both the whole time, while

1. a path loop takes one path of one map down and brings it back, each cycle: either
   its SCSI device offline then running, or deleted then its host rescanned (the path
   returns under a new name). It waits for the daemon to see the fault in the kernel
   and for the map to be whole again. Only one path is ever down, so every map always
   has a working path: the I/O must carry on.
2. a restart loop offlines a path and ``kill -9``s dmpathd in the middle of that
   failover (at once or up to 0.9 s later), starts it again, and waits until every map
   is adopted; then the daemon's model (each map's paths and their kernel states) must
   settle to what a fresh reading of the kernel says (``dmpath.cli.kernelview``, as
   ``mpathctl status`` shows it when no daemon answers), before and after the path is
   brought back.

``run(quick)`` returns the figures: fio's I/O operations and its jobs ended by an I/O
error or by a bad block, the cycles and restarts done, the maps adopted and the model
comparisons that never agreed. The quick form fits a CI lab test; the full form is what
``python -m dmpath.lab faults --only soak`` runs.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dmpath.cli import kernelview
from dmpath.lab import topology as topo
from dmpath.lab.fio import FioJob, FioRun
from dmpath.lab.harness import DaemonUnderTest, cleanup_maps, explained, wait_for
from dmpath.runner import run as run_cmd

DM_MAP = "soak_dm"
MD_MAP = "soak_md"
#: map -> the LUN it is made of (LUN 0 a dm map, LUN 1 an md array)
LUN_OF = {DM_MAP: 0, MD_MAP: 1}
TOPOLOGY = "2x2"
WORKDIR = "/tmp/dmpath-soak"


@dataclass(frozen=True)
class Plan:
    path_cycles: int
    restarts: int


#: the quick form fits CI's lab budget: one offline cycle on each path of each map, one
#: delete-and-rescan on each map, and a kill in a failover (measured on a loaded host:
#: setup 70 s, an offline cycle 2-3 s, a delete 10-25 s, a restart 80-90 s)
QUICK = Plan(path_cycles=6, restarts=1)
FULL = Plan(path_cycles=100, restarts=20)

#: a path's failure or return takes the checker's second plus a few dmsetup/mdadm runs,
#: each 0.2-0.5 s under emulation; a delete or rescan adds udev's handling of the disk
HEAL_TIMEOUT = 90.0
#: how long the daemon's model may take to agree with the kernel before it counts as a
#: mismatch (a restarted daemon first adopts, then checks each path once)
SETTLE_TIMEOUT = 60.0
#: the kill lands this long after the path went offline, by turns: before the kernel or
#: the daemon failed it, and while they do
KILL_DELAYS = (0.0, 0.3, 0.6, 0.9)
#: scsi_debug's LUNs share one RAM store: each map's fio jobs get their own half of it,
#: clear of md's superblock at the start of the disks
FIO_STRIDE_MB = 32
#: each fio job's I/O per second at most: at full speed the four jobs take the emulated
#: guest's CPU, and a restarted dmpathd (seen: the first time) did not even answer within
#: a minute; this still keeps I/O on every path at each failover
FIO_RATE_IOPS = 100
#: fio runs until stopped; this only bounds a run whose stop was never sent
FIO_RUNTIME = 24 * 3600
FIO_START_S = 5.0


def udev_wwid(p: topo.LabPath) -> str:
    """The WWID the daemon gives the path's map: udev's ``ID_SERIAL`` (its spelling
    depends on the guest's udev rules, so it is read, not derived from sysfs)."""
    import pyudev

    dev = pyudev.Devices.from_name(pyudev.Context(), "block", p.name)
    return str(dev.properties.get("ID_SERIAL"))


def multipaths_config(wwids: dict[str, str]) -> str:
    """The daemon's ``[[multipaths]]``: each LUN named, the md one on the md backend."""
    out = []
    for name, wwid in wwids.items():
        out += ["[[multipaths]]", f'wwid = "{wwid}"', f'alias = "{name}"']
        if name == MD_MAP:
            out.append('backend = "md"')
        out.append("")
    return "\n".join(out)


Model = dict[str, tuple[str, dict[str, str]]]


def daemon_model(show: dict[str, Any]) -> Model:
    """Each map of the daemon's ``show`` by its kernel name: backend, path -> kernel state."""
    return {
        str(m["sysfs"]): (str(m["backend"]), {p["name"]: p["kernel_state"] for p in m["paths"]})
        for m in show["maps"]
    }


def kernel_model() -> Model:
    """The same from the kernel alone (what ``mpathctl status`` shows with no daemon)."""
    snap = kernelview.read_snapshot()
    return {
        m.sysfs: (str(m.backend), {p.name: str(p.kernel_state) for p in m.paths})
        for m in snap.maps
    }


def model_difference(daemon: Model, kernel: Model) -> str:
    """What differs, one line ('' when the two agree)."""
    parts = []
    for name in sorted(set(daemon) | set(kernel)):
        mine, theirs = daemon.get(name), kernel.get(name)
        if mine != theirs:
            parts.append(f"{name}: daemon {mine}, kernel {theirs}")
    return "; ".join(parts)


def fio_figures(jobs: list[FioJob]) -> dict[str, float]:
    """fio's I/O operations, the jobs an I/O error ended and those a bad block ended
    (``verify_fatal``: fio stops a job at its first bad block, with EILSEQ)."""
    return {
        "io_operations": float(sum(j.ios for j in jobs)),
        "io_errors": float(sum(1 for j in jobs if j.error not in (0, errno.EILSEQ))),
        "verify_failures": float(sum(1 for j in jobs if j.error == errno.EILSEQ)),
        "fio_jobs": float(len(jobs)),
    }


def say(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def settle_udev() -> None:
    run_cmd("udevadm", ["settle", "-t", "30"], check=False, timeout=60)


@dataclass
class Soak:
    d: DaemonUnderTest
    hosts: list[int]  # the scsi_debug hosts with disks (standby ones were left out)
    counts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: str, n: float = 1.0) -> None:
        self.counts[figure] = self.counts.get(figure, 0.0) + n

    def paths_of(self, name: str) -> list[topo.LabPath]:
        return [p for p in topo.discover() if p.lun == LUN_OF[name]]

    def whole(self, name: str) -> bool:
        """The map has both its paths, active in the kernel and up for the checker."""
        m = self.d.maps().get(name)
        if m is None or len(m["paths"]) != len(self.hosts):
            return False
        return all(
            p["kernel_state"] == "active" and p["check"] in ("up", "ghost") for p in m["paths"]
        )

    def wait_whole(self, name: str, what: str) -> None:
        wait_for(lambda: self.whole(name), HEAL_TIMEOUT, f"{name} whole again {what}")

    def victim(self, n: int) -> tuple[str, topo.LabPath]:
        """The n-th fault's map and path: the maps by turns, each map's paths by turns."""
        name = (DM_MAP, MD_MAP)[n % 2]
        paths = self.paths_of(name)
        return name, paths[(n // 2) % len(paths)]

    def path_cycle(self, n: int) -> None:
        name, p = self.victim(n)
        if (n // 4) % 2 == 0:
            topo.set_state(p, "offline")
            self.d.wait_path(p.name, timeout=HEAL_TIMEOUT, kernel_state="failed")
            topo.set_state(p, "running")
            self.wait_whole(name, f"after {p.name} came back online")
        else:
            topo.delete(p)
            wait_for(
                lambda: p.name not in {x["name"] for x in self.d.maps()[name]["paths"]},
                HEAL_TIMEOUT,
                f"deleted {p.name} out of {name}",
            )
            topo.scan_host(p.host)
            settle_udev()
            self.wait_whole(name, f"after host{p.host} was rescanned")
        self.add("cycles")

    def compare(self, when: str) -> None:
        """The daemon's model settles to the kernel's, or it counts as a mismatch."""
        last = [""]

        def agree() -> bool:
            last[0] = model_difference(daemon_model(self.d.show()), kernel_model())
            return not last[0]

        self.add("model_checks")
        try:
            wait_for(agree, SETTLE_TIMEOUT, "the daemon's model to match the kernel")
        except AssertionError:
            self.add("model_mismatches")
            self.notes.append(f"{when}: {last[0]}")

    def restart_cycle(self, n: int) -> None:
        name, p = self.victim(n)
        topo.set_state(p, "offline")
        time.sleep(KILL_DELAYS[n % len(KILL_DELAYS)])
        t0 = time.monotonic()
        steps: list[str] = []

        def step(what: str) -> None:
            steps.append(f"{what} {time.monotonic() - t0:.0f} s")

        self.d.kill(signal.SIGKILL)
        self.d.start()
        self.add("restarts")
        step("answering")
        adopted = wait_for(
            lambda: (got := {e["map"] for e in self.d.events("map_adopted")}) >= set(LUN_OF)
            and got,
            HEAL_TIMEOUT,
            "every map adopted after the restart",
        )
        self.add("maps_adopted", len(adopted))
        step("adopted")
        self.d.wait_path(p.name, timeout=HEAL_TIMEOUT, kernel_state="failed")
        self.compare(f"restart {n + 1}, {p.name} down")
        step("agreed")
        topo.set_state(p, "running")
        self.wait_whole(name, f"after {p.name} came back online (restart {n + 1})")
        step("whole")
        self.compare(f"restart {n + 1}, {p.name} back")
        step("agreed")
        # where a restart's time goes, for the reader (a figure, never a verdict)
        say(f"restart {n + 1} ({name}, {p.name}): " + ", ".join(steps))

    def restore(self) -> None:
        """Every path back: deleted ones rescanned, offline ones running."""
        for host in self.hosts:
            with contextlib.suppress(OSError):
                topo.scan_host(host)
        settle_udev()
        for p in topo.discover():
            with contextlib.suppress(OSError):
                topo.set_state(p, "running")


@contextlib.contextmanager
def soak_daemon() -> Iterator[Soak]:
    """The topology without scsi_debug's standby ports (they refuse I/O once scsi_dh_alua
    is attached, which would fail paths for reasons not under test), and a dmpathd with
    both maps whole; on the way out, every path back and the daemon and its maps gone."""
    paths = topo.setup(topo.get_topology(TOPOLOGY), drop_standby=True)
    hosts = sorted({p.host for p in paths})
    wwids = {name: udev_wwid(next(p for p in paths if p.lun == n)) for name, n in LUN_OF.items()}
    # the loops fail paths often on purpose: the marginal rule would keep them out
    d = DaemonUnderTest(
        f"{WORKDIR}/{int(time.time())}",
        defaults={"marginal_failures": 0},
        extra=multipaths_config(wwids),
    )
    soak = Soak(d, hosts)
    try:
        d.start()
        with explained(d):
            d.wait_maps({name: len(hosts) for name in LUN_OF})
            for name in LUN_OF:
                soak.wait_whole(name, "at start")
            yield soak
    finally:
        soak.restore()
        d.keep_log("soak-dmpathd.log")
        d.stop()
        cleanup_maps()


def run(quick: bool) -> dict[str, float]:
    """Both loops under fio; the figures (see the module docstring)."""
    plan = QUICK if quick else FULL
    t0 = time.monotonic()
    with soak_daemon() as soak:
        maps = soak.d.maps()
        devices = [maps[MD_MAP]["devnode"], f"/dev/mapper/{DM_MAP}"]
        fio = FioRun(
            devices, FIO_RUNTIME, stride_mb=FIO_STRIDE_MB, rate_iops=FIO_RATE_IOPS
        ).start()
        try:
            time.sleep(FIO_START_S)  # fio's jobs under way before the first fault
            say(f"maps whole, fio running after {time.monotonic() - t0:.0f} s")
            for n in range(plan.path_cycles):
                soak.path_cycle(n)
                say(f"path cycle {n + 1} done at {time.monotonic() - t0:.0f} s")
            for n in range(plan.restarts):
                soak.restart_cycle(n)
                say(f"restart {n + 1} done at {time.monotonic() - t0:.0f} s")
            soak.compare("at the end")
            # a fio that ended by itself stopped carrying I/O: its jobs say why
            ended_early = not fio.running()
        finally:
            jobs = fio.stop()
    figures = {
        "cycles": 0.0,
        "restarts": 0.0,
        "maps_adopted": 0.0,
        "model_checks": 0.0,
        "model_mismatches": 0.0,
        **soak.counts,
        **fio_figures(jobs),
        "fio_ended_early": float(ended_early),
        "seconds": time.monotonic() - t0,
    }
    for note in soak.notes:
        say(f"mismatch: {note}")
    for j in jobs:
        if j.error:
            say(f"fio job {j.name} ended with errno {j.error}")
    return figures
