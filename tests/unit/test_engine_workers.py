"""Kernel operations: md ones in a worker of their own (a hung mdadm must not stall dm
healing), and an alert for one that does not return in time."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time

import pytest

from dmpath import config as cfgmod
from dmpath.daemon import engine
from dmpath.daemon.engine import Daemon


class Probe:
    def worker(self, *_args: object) -> str:
        return threading.current_thread().name

    def slow(self, name: str) -> str:
        time.sleep(0.3)
        return f"done {name}"

    def stuck(self, release: threading.Event) -> str:
        release.wait(10)
        return "released"


def daemon(tmp_path: pathlib.Path) -> Daemon:
    cfg = cfgmod.parse_config("")
    return Daemon(cfg, str(tmp_path / "dmpath.toml"), socket_path=str(tmp_path / "d.sock"))


def test_md_operations_run_in_their_own_worker(tmp_path: pathlib.Path) -> None:
    d = daemon(tmp_path)
    d.md = Probe()  # type: ignore[assignment]

    async def scenario() -> tuple[str, str]:
        return await d.k(d.md.worker), await d.k(Probe().worker)  # type: ignore[attr-defined]

    md_thread, other = asyncio.run(scenario())
    assert md_thread.startswith("kernel-md")
    assert other.startswith("kernel_")


def test_a_stuck_md_operation_does_not_hold_up_dm_ones(tmp_path: pathlib.Path) -> None:
    d = daemon(tmp_path)
    d.md = Probe()  # type: ignore[assignment]
    release = threading.Event()

    async def scenario() -> list[str]:
        stuck = asyncio.ensure_future(d.k(d.md.stuck, release))  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
        other = await d.k(Probe().worker)  # answered while md's worker is busy
        assert not stuck.done()
        release.set()
        return [other, await stuck]

    other, stuck = asyncio.run(scenario())
    assert other.startswith("kernel_") and stuck == "released"


def test_a_slow_operation_raises_an_alert_and_is_still_awaited(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SLOW_KERNEL_OP", 0.05)
    d = daemon(tmp_path)
    got = asyncio.run(d.k(Probe().slow, "mpatha"))
    assert got == "done mpatha"
    alerts = [e for e in d.events if e.kind == "alert"]
    assert len(alerts) == 1
    assert "Probe.slow on mpatha has not returned after 0.05 s" in alerts[0].message
