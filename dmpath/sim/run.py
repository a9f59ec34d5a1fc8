"""Scenarios on the simulated SAN: the real daemon engine (its executor, checker threads,
batching and healing) over ``dmpath.sim.kernel``, with the daemon's own CPU time and
memory reported per phase.

Figures, not tests. CPU is this process's (the engine plus the simulated kernel, whose
bookkeeping is a dictionary update per operation); memory is this process's VmRSS.
The "idle hour" runs a fresh daemon with every interval divided by ``IDLE_COMPRESSION``,
so each wall second performs the checks of that many seconds; its CPU is scaled to an
hour. (A larger factor would ask more checks per second of the process than it can do
at 16,384 paths, which would measure saturation, not idling.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from dmpath import config as cfgmod
from dmpath.daemon import discovery
from dmpath.daemon.backends import DmBackend
from dmpath.daemon.engine import Daemon
from dmpath.kernel import udev
from dmpath.sim.kernel import SimChecker, SimDmOps, SimSan

IDLE_COMPRESSION = 6.0
PHASE_TIMEOUT = 600.0


@dataclass
class Phase:
    name: str
    cpu_s: float
    wall_s: float
    rss_mb: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimResult:
    topology: str
    paths: int
    phases: list[Phase]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "simulated",
            "topology": self.topology,
            "paths": self.paths,
            "phases": {p.name: {k: v for k, v in asdict(p).items() if k != "name"}
                       for p in self.phases},
        }


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    return time.process_time()


def sim_scan(
    recs: list[udev.UdevRecord], uid: tuple[str, ...], recheck: list[str]
) -> tuple[dict[str, discovery.PathInfo | None], dict[str, list[str]]]:
    """What the engine's sysfs scan returns, from the simulated records."""
    infos: dict[str, discovery.PathInfo | None] = {}
    for r in recs:
        infos[r.sys_name] = discovery.PathInfo(
            name=r.sys_name,
            devnum=r.devnum or "",
            devnode=r.devnode or "",
            wwid=str(r.get("ID_SERIAL") or ""),
            vendor="SIM",
            model="lun",
            rev="1",
            hctl=r.hctl or "",
            size_sectors=2 * 1024 * 1024,
            transport="scsi:unspec",
            dev_state="running",
            properties=dict(r.properties),
        )
    return infos, {}


def sim_config(workdir: str, compress: float = 1.0, extra: str = "") -> cfgmod.Config:
    """The daemon's defaults but for private files, multibus, every LUN a map, and
    intervals divided by ``compress``; ``extra`` lines (``key = value``) override them."""
    return cfgmod.parse_config(sim_config_text(workdir, compress, extra))


def sim_config_text(workdir: str, compress: float = 1.0, extra: str = "") -> str:
    """``sim_config``'s file (for a scenario that rewrites it and reconfigures)."""
    base = cfgmod.Defaults()
    values = {
        "bindings_file": f'"{workdir}/bindings"',
        "wwids_file": f'"{workdir}/wwids"',
        "admin_state_file": f'"{workdir}/admin-state"',
        "socket": f'"{workdir}/dmpathd.sock"',
        "prio": '"const"',
        "path_grouping_policy": '"multibus"',
        "find_multipaths": '"greedy"',
        "polling_interval": str(base.polling_interval / compress),
        "max_polling_interval": str(base.max_polling_interval / compress),
    }
    for line in extra.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return "[defaults]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


def make_daemon(
    san: SimSan, workdir: str, compress: float = 1.0, extra: str = ""
) -> tuple[Daemon, SimDmOps]:
    """A real Daemon whose kernel, udev and checkers are the simulation's. Its dm path
    uevents reach the daemon's loop as the kernel's would."""
    cfg = sim_config(workdir, compress, extra)
    d = Daemon(cfg, os.path.join(workdir, "dmpath.toml"))
    ops = SimDmOps()
    d.dm = DmBackend(cfg.defaults.dm_uuid_prefix, ops)
    d.scan_records = sim_scan
    d.enumerate_disks = san.records
    d.make_checker = lambda info, _kind: SimChecker(san, info.name)
    d.node_exists = lambda _node: True  # the simulated maps have no /dev nodes
    return d, ops


def connect_uevents(d: Daemon, ops: SimDmOps) -> None:
    """Deliver the simulated kernel's dm path uevents to ``d``'s running loop."""
    loop = asyncio.get_running_loop()

    def uevent(ev: udev.DmPathEvent) -> None:
        loop.call_soon_threadsafe(d._on_dm_path_event, ev)

    ops.uevent = uevent


async def wait_until(
    pred: Callable[[], bool], what: str, timeout: float = PHASE_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"simulation: {what} not reached after {timeout:g} s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(
    san: SimSan, workdir: str, extra: str = ""
) -> AsyncIterator[tuple[Daemon, SimDmOps]]:
    """A daemon on ``san`` that has made every map and activated every path; stopped
    on the way out."""
    d, ops = make_daemon(san, workdir, extra=extra)
    connect_uevents(d, ops)
    try:
        await d.adopt()
        await d.scan()
        await wait_until(lambda: ops.active_paths() == len(san.paths), "coldplug", 60.0)
        yield d, ops
    finally:
        await d.stop()


async def _phase(name: str, act: Callable[[], Any], done: Callable[[], bool]) -> Phase:
    c0, t0 = _cpu(), time.monotonic()
    got = act()
    if asyncio.iscoroutine(got):
        await got
    await wait_until(done, name)
    return Phase(name, _cpu() - c0, time.monotonic() - t0, rss_mb())


async def scenario(luns: int, paths: int, idle_s: float, flaps: int) -> SimResult:
    san = SimSan(luns, paths)
    total = luns * paths
    with tempfile.TemporaryDirectory(prefix="dmpath-sim-") as work:
        # the flap phase prices one fail/reinstate cycle: the marginal-path rule would
        # (rightly) keep the flapping victim out after its third fall
        d, ops = make_daemon(san, work, extra="marginal_failures = 0")
        connect_uevents(d, ops)
        phases: list[Phase] = []

        async def coldplug() -> None:
            await d.adopt()
            await d.scan()

        phases.append(
            await _phase(
                "coldplug", coldplug, lambda: len(ops.maps) == luns and ops.active_paths() == total
            )
        )
        phases[-1].detail = dict(ops.calls)
        fabric0 = {p.devnum for p in san.paths if p.fabric == 0}
        phases.append(
            await _phase(
                "fabric_down",
                lambda: san.set_fabric(0, False),
                lambda: ops.failed(fabric0) == len(fabric0),
            )
        )
        phases.append(
            await _phase("fabric_up", lambda: san.set_fabric(1 - 1, True),
                         lambda: ops.failed(fabric0) == 0)
        )
        victim = san.paths[0]
        c0, t0 = _cpu(), time.monotonic()
        for _ in range(flaps):
            san.set_path(victim.name, False)
            await wait_until(lambda: ops.failed({victim.devnum}) == 1, "flap down")
            san.set_path(victim.name, True)
            await wait_until(lambda: ops.failed({victim.devnum}) == 0, "flap up")
        phases.append(
            Phase("flap_per_event", (_cpu() - c0) / (2 * max(1, flaps)),
                  (time.monotonic() - t0) / (2 * max(1, flaps)), rss_mb(), {"flaps": flaps})
        )
        await d.stop()
    phases.append(await idle_hour(luns, paths, idle_s))
    return SimResult(f"{luns}x{paths}", total, phases)


async def idle_hour(luns: int, paths: int, window_s: float) -> Phase:
    """An idle hour, compressed: a fresh daemon whose intervals are divided by
    IDLE_COMPRESSION coldplugs, settles (three of its max_polling_intervals) and is
    measured over ``window_s``; the CPU it used is scaled to one hour of real time."""
    san = SimSan(luns, paths)
    with tempfile.TemporaryDirectory(prefix="dmpath-sim-") as work:
        d, ops = make_daemon(san, work, IDLE_COMPRESSION)
        await d.adopt()
        await d.scan()
        await wait_until(lambda: ops.active_paths() == luns * paths, "idle coldplug")
        await asyncio.sleep(3 * d.d.max_polling_interval)
        checks0 = san.checks
        c0, t0 = _cpu(), time.monotonic()
        await asyncio.sleep(window_s)
        cpu, wall = _cpu() - c0, time.monotonic() - t0
        await d.stop()
    simulated = wall * IDLE_COMPRESSION
    per_hour = cpu * 3600 / simulated
    return Phase(
        "idle_hour",
        per_hour,
        3600.0,
        rss_mb(),
        {
            "compression": IDLE_COMPRESSION,
            "measured_wall_s": wall,
            "measured_cpu_s": cpu,
            "checks_per_s": (san.checks - checks0) / simulated,
            "cpu_pct_of_core": 100 * per_hour / 3600,
        },
    )


def run(luns: int, paths: int, idle_s: float = 30.0, flaps: int = 10) -> SimResult:
    # the engine's events go to the log at INFO/WARNING: thousands of lines at this scale,
    # which would be the cost measured
    logging.getLogger("dmpathd").setLevel(logging.ERROR)
    return asyncio.run(scenario(luns, paths, idle_s, flaps))


if __name__ == "__main__":
    import json
    import sys

    luns, paths = (int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "64x4").split("x"))
    print(json.dumps(run(luns, paths, float(sys.argv[2]) if len(sys.argv) > 2 else 10.0)
                     .to_dict(), indent=1))
