"""A burst of udev events becomes one re-evaluation (the engine's coalescing, no kernel)."""

from __future__ import annotations

import asyncio
import pathlib

from dmpath import config as cfgmod
from dmpath.daemon.engine import Daemon


def make_daemon(tmp_path: pathlib.Path, coalesce_ms: int) -> tuple[Daemon, list[float]]:
    cfg = cfgmod.parse_config(f"[defaults]\ncoalesce_ms = {coalesce_ms}\n")
    d = Daemon(cfg, str(tmp_path / "dmpath.toml"), socket_path=str(tmp_path / "d.sock"))
    passes: list[float] = []

    async def counted() -> None:
        passes.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.05)  # a pass takes a while: events may arrive meanwhile

    d._reevaluate = counted  # type: ignore[method-assign]
    return d, passes


def test_five_hundred_events_in_a_burst_make_one_pass(tmp_path: pathlib.Path) -> None:
    d, passes = make_daemon(tmp_path, coalesce_ms=100)

    async def burst() -> None:
        for _ in range(500):
            d.schedule_reevaluate()
        await asyncio.sleep(0.4)

    asyncio.run(burst())
    assert len(passes) == 1


def test_events_during_a_pass_make_exactly_one_more(tmp_path: pathlib.Path) -> None:
    d, passes = make_daemon(tmp_path, coalesce_ms=10)
    gate = asyncio.Event()
    inner = d._reevaluate

    async def held() -> None:
        await inner()
        if len(passes) == 1:
            await gate.wait()  # the first pass lasts until the test lets it end

    d._reevaluate = held  # type: ignore[method-assign]

    async def scenario() -> None:
        d.schedule_reevaluate()
        while not passes:
            await asyncio.sleep(0.01)
        for _ in range(3):  # three bursts, each outlasting the window, during pass one
            for _ in range(100):
                d.schedule_reevaluate()
            await asyncio.sleep(0.05)
        assert len(passes) == 1
        gate.set()
        while len(passes) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert len(passes) == 2


def test_zero_window_still_never_runs_two_passes_at_once(tmp_path: pathlib.Path) -> None:
    d, passes = make_daemon(tmp_path, coalesce_ms=0)
    running: list[int] = []
    overlaps: list[int] = []
    inner = d._reevaluate

    async def watched() -> None:
        running.append(1)
        if len(running) > 1:
            overlaps.append(len(running))
        await inner()
        running.pop()

    d._reevaluate = watched  # type: ignore[method-assign]

    async def scenario() -> None:
        for _ in range(20):
            d.schedule_reevaluate()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert passes  # acted on
    assert overlaps == []  # but one pass at a time
