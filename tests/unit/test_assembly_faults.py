"""What the fault matrix found in assembly: a refused create or reload is tried again
later, and a map left without a table by a crash is removed at the next start."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Callable

import pytest

from dmpath.daemon.backends import DmBackend, half_made_maps
from dmpath.daemon.engine import Daemon
from dmpath.errors import DmpathError
from dmpath.kernel.dmtable import DmDevice, DmInfo, MultipathTable
from dmpath.policy.retry import backoff
from dmpath.sim.kernel import SimDmOps, SimSan
from dmpath.sim.run import connect_uevents, make_daemon

FAST = "polling_interval = 0.1\nmax_polling_interval = 0.4\ncoalesce_ms = 10\n"


async def until(pred: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"not reached within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)


def test_backoff_doubles_from_the_polling_interval_up_to_its_cap() -> None:
    assert [backoff(n, 5, 30) for n in range(6)] == [5, 5, 10, 20, 30, 30]
    assert backoff(10_000, 1, 60) == 60


def info(name: str, uuid: str, segments: int, open_count: int = 0) -> DmInfo:
    return DmInfo(name, uuid, 253, 0, open_count, segments, 0)


def test_half_made_maps_are_ours_with_no_table_and_not_open() -> None:
    infos = [
        info("mpatha", "mpath-3600a", 0),  # a create cut short: remove
        info("mpathb", "mpath-3600b", 1),  # whole
        info("mpathc", "mpath-3600c", 0, open_count=1),  # held: leave it
        info("vg-lv", "LVM-xyz", 0),  # not ours
        info("mpatha-part1", "part1-mpath-3600a", 0),  # a partition map: kpartx's
    ]
    assert half_made_maps(infos, "mpath-") == ["mpatha"]


class Listing:
    """DmOps enough for ``half_made``: a listing and infos, one map vanishing meanwhile."""

    def list_maps(self) -> list[DmDevice]:
        return [DmDevice(n, 253, i) for i, n in enumerate(("mpatha", "mpathb", "gone"))]

    def info(self, name: str) -> DmInfo:
        if name == "gone":
            raise DmpathError("gone: no such map")
        return info(name, "mpath-" + name, 0)


def test_half_made_looks_only_at_the_maps_not_read_whole() -> None:
    be = DmBackend(ops=Listing())  # type: ignore[arg-type]
    assert be.half_made({"mpatha"}) == ["mpathb"]


def run_daemon(tmp_path: pathlib.Path, scenario: Callable[[Daemon, SimDmOps], object]) -> None:
    async def main() -> None:
        san = SimSan(2, 2)
        d, ops = make_daemon(san, str(tmp_path), extra=FAST)
        connect_uevents(d, ops)
        try:
            await scenario(d, ops)  # type: ignore[misc]
        finally:
            await d.stop()

    asyncio.run(main())


def test_a_refused_create_is_tried_again_until_the_map_is_made(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(d: Daemon, ops: SimDmOps) -> None:
        real = ops.create
        refusals = [2]

        def create(name: str, table: MultipathTable, uuid: str) -> None:
            if name == "mpatha" and refusals[0]:
                refusals[0] -= 1
                raise DmpathError(f"{name}: device-mapper DEV_CREATE failed: EBUSY")
            real(name, table, uuid)

        monkeypatch.setattr(ops, "create", create)
        await d.adopt()
        await d.scan()
        assert sorted(ops.maps) == ["mpathb"]
        await until(lambda: "mpatha" in ops.maps and "mpatha" in d.maps, "mpatha made")
        errors = [e for e in d.events if e.kind == "error" and e.map == "mpatha"]
        assert len(errors) == 2 and "DEV_CREATE" in errors[0].message
        assert not d._retries  # forgotten once made

    run_daemon(tmp_path, scenario)


def test_a_refused_reload_that_adds_a_path_is_tried_again(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(d: Daemon, ops: SimDmOps) -> None:
        await d.adopt()
        await d.scan()
        await until(lambda: ops.active_paths() == 4, "coldplug")
        lost = sorted(d.maps["mpatha"].devnums.values())[-1]
        record = d.records.pop(lost)  # the path vanishes (udev's remove): one reload
        d.dirty.add(lost)
        await d.reevaluate()
        assert len(ops.maps["mpatha"].active) == 1
        real = ops.reload
        refusals = [1]

        def reload(name: str, table: MultipathTable) -> None:
            if refusals[0]:
                refusals[0] -= 1
                raise DmpathError(f"{name}: device-mapper TABLE_LOAD failed: Invalid argument")
            real(name, table)

        monkeypatch.setattr(ops, "reload", reload)
        d.records[lost] = record  # and comes back: its reload is refused once
        d.dirty.add(lost)
        await d.reevaluate()
        assert [e.message for e in d.events if e.kind == "error"][-1].endswith("Invalid argument")
        await until(lambda: len(ops.maps["mpatha"].active) == 2, "the path joined on a retry")

    run_daemon(tmp_path, scenario)
