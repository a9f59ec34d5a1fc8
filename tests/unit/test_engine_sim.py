"""The real engine (executor, checker pool, scheduler, healing) on the simulated SAN and
device-mapper of ``dmpath.sim``: behaviour at scale without a kernel.

These assert what the engine does (which maps, which kernel operations, how many, which
events), never how fast: the lab proves the same on a real kernel.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dmpath.daemon import discovery, engine
from dmpath.daemon.checkpool import CheckPool
from dmpath.daemon.engine import CHECK_WORKERS, Daemon, PathRuntime
from dmpath.daemon.links import LinkChange, LinkWatch
from dmpath.errors import DmpathError
from dmpath.kernel.dmtable import MultipathTable
from dmpath.model import Check
from dmpath.policy import reconcile
from dmpath.protocol import BadRequest
from dmpath.protocol import NotFound as NotFoundError
from dmpath.sim.kernel import SimChecker, SimDmOps, SimSan
from dmpath.sim.run import connect_uevents, make_daemon, sim_config_text, sim_scan

FAST = "polling_interval = 0.1\nmax_polling_interval = 0.4\ncoalesce_ms = 10\n"
Scenario = Callable[[Daemon, SimDmOps, SimSan], Awaitable[None]]


async def until(pred: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"not reached within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)


def run_sim(
    tmp_path: pathlib.Path, luns: int, paths: int, scenario: Scenario, extra: str = FAST
) -> None:
    async def main() -> None:
        san = SimSan(luns, paths)
        d, ops = make_daemon(san, str(tmp_path), extra=extra)
        connect_uevents(d, ops)
        try:
            await d.adopt()
            await d.scan()
            await until(lambda: ops.active_paths() == luns * paths, "coldplug")
            await scenario(d, ops, san)
        finally:
            await d.stop()

    asyncio.run(main())


class Held(SimChecker):
    """A check that answers only once ``release`` is set: a hung or slow path. With
    ``looks_first`` it looks at the path before waiting, so its answer is out of date."""

    def __init__(
        self, san: SimSan, name: str, release: threading.Event, looks_first: bool = False
    ) -> None:
        super().__init__(san, name)
        self.release = release
        self.looks_first = looks_first

    def check(self) -> tuple[Check, str]:
        early = super().check() if self.looks_first else None
        self.release.wait(30)
        return early if early is not None else super().check()


def kinds(d: Daemon, kind: str) -> list[str]:
    return [e.path for e in d.events if e.kind == kind]


def test_coldplug_makes_every_map_once_with_one_write_of_each_file(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        assert sorted(ops.maps) == sorted(f"mpath{c}" for c in "abcdefgh")
        assert ops.calls["create"] == 8
        # one read of each new map (info, table, status), no re-reads per path
        assert ops.calls["info"] == ops.calls["table"] == 8
        assert ops.calls.get("reload", 0) == 0
        bindings = (tmp_path / "bindings").read_text().split("\n")
        assert len([b for b in bindings if b.startswith("mpath")]) == 8
        wwids = [w for w in (tmp_path / "wwids").read_text().split("\n") if w.startswith("/")]
        assert len(wwids) == 8
        assert {m.model.name for m in d.maps.values()} == set(ops.maps)

    run_sim(tmp_path, 8, 4, check)


def test_a_fabric_down_and_up_is_failed_and_reinstated_and_echoes_cost_nothing(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        lost = {p.devnum for p in san.set_fabric(0, False)}
        await until(lambda: ops.failed(lost) == len(lost), "fabric 0 failed in the tables")
        back = {p.devnum for p in san.paths if p.fabric == 1}
        assert ops.failed(back) == 0  # the other fabric untouched
        # the tables change when the messages return; each heal's own status read comes
        # after: count from when every map is at rest
        await until(
            lambda: all(m.health.stage == reconcile.Stage.IDLE for m in d.maps.values()),
            "every map's heal over",
        )
        reads = ops.calls["status"]
        san.set_fabric(0, True)
        await until(lambda: ops.failed(lost) == 0, "fabric 0 reinstated")
        # the kernel has it the moment a message returns; the event follows on the loop
        await until(lambda: len(kinds(d, "path_reinstated")) == len(lost), "the events")
        failed = kinds(d, "path_failed")
        assert sorted(failed) == sorted(p.name for p in san.paths if p.fabric == 0)
        # the kernel sent a uevent for every one of them: all were our own echo
        assert kinds(d, "kernel_path_failed") == []
        # re-reads: at most one per map per heal, never one per uevent
        assert ops.calls["status"] - reads <= 2 * len(ops.maps)

    run_sim(tmp_path, 16, 4, check)


def test_a_path_the_kernel_fails_on_its_own_is_news_and_is_reinstated(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        victim = san.paths[0]
        # an I/O error: the kernel fails the path and says so; the path itself is fine
        ops.fail_on_io(victim.devnum)
        await until(lambda: kinds(d, "kernel_path_failed") == [victim.name], "the news")
        await until(lambda: ops.failed({victim.devnum}) == 0, "reinstated by the checker")

    run_sim(tmp_path, 2, 4, check)


def test_a_path_the_kernel_fails_is_not_reinstated_on_a_check_older_than_the_failure(
    tmp_path: pathlib.Path,
) -> None:
    """The kernel fails a dead path on I/O before the checker has seen it die: its last
    verdict (UP) predates the failure and must not reinstate it; the next check decides."""
    release = threading.Event()

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        victim = san.paths[0]
        pr = d.paths[victim.name]
        assert pr.model.check == Check.UP
        pr.checker = Held(san, victim.name, release)
        san.set_path(victim.name, False)  # the cable goes; I/O on it fails...
        ops.fail_on_io(victim.devnum)  # ...and the kernel fails the path
        try:
            await until(lambda: kinds(d, "kernel_path_failed") == [victim.name], "the news")
            await asyncio.sleep(0.5)  # heals ran; the check of the path is still out
            assert ops.failed({victim.devnum}) == 1, "reinstated on a stale verdict"
            assert kinds(d, "path_reinstated") == []
            assert pr.model.check == Check.PENDING
        finally:
            release.set()
        await until(lambda: pr.model.check == Check.DOWN, "the check that decides")
        await asyncio.sleep(0.3)
        assert ops.failed({victim.devnum}) == 1 and kinds(d, "path_reinstated") == []
        san.set_path(victim.name, True)
        await until(lambda: ops.failed({victim.devnum}) == 0, "reinstated once it answers")

    run_sim(tmp_path, 2, 4, check)


def test_a_check_out_when_the_kernel_failed_the_path_answers_for_the_past(
    tmp_path: pathlib.Path,
) -> None:
    release = threading.Event()

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        victim = san.paths[0]
        pr = d.paths[victim.name]
        # the answer is the path as it was when the check went out
        pr.checker = Held(san, victim.name, release, looks_first=True)
        d.kick(pr)
        await until(lambda: victim.name in d._inflight, "a check of the path is out")
        await asyncio.sleep(0.05)
        san.set_path(victim.name, False)
        ops.fail_on_io(victim.devnum)
        await until(lambda: kinds(d, "kernel_path_failed") == [victim.name], "the news")
        release.set()  # the old check answers UP: it must not count
        await until(lambda: pr.model.check == Check.DOWN, "a check issued after the failure")
        assert kinds(d, "path_reinstated") == [] and ops.failed({victim.devnum}) == 1

    run_sim(tmp_path, 2, 4, check)


def test_every_path_dead_keeps_one_per_map_and_no_path_retry_runs_out_on_time(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        san.set_fabric(0, False)
        san.set_fabric(1, False)
        await until(lambda: all(sum(m.active.values()) == 1 for m in ops.maps.values()),
                    "all but the last path of each map failed")
        await until(lambda: all(not m.queueing for m in ops.maps.values()),
                    "queued I/O failed after no_path_retry intervals")
        assert all("only one IO path left" in " ".join(mr.model.alerts)
                   for mr in d.maps.values())
        # the kernel has it when the message returns; the event follows on the loop
        await until(
            lambda: len([e for e in d.events if e.kind == "queueing"]) == len(ops.maps),
            "a queueing event per map",
        )
        msgs = [e.message for e in d.events if e.kind == "queueing"]
        assert all("no path for 3 polling intervals" in m for m in msgs), msgs
        san.set_fabric(0, True)
        await until(lambda: all(m.queueing for m in ops.maps.values()), "queueing again")

    run_sim(tmp_path, 3, 2, check, extra=FAST + "no_path_retry = 3\n")


def test_a_hung_check_counts_as_down_and_holds_no_one_else_up(
    tmp_path: pathlib.Path,
) -> None:
    release = threading.Event()

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        stuck = d.paths[san.paths[0].name]
        stuck.checker = Held(san, stuck.info.name, release)
        d.kick(stuck)
        try:
            await until(lambda: ops.failed({stuck.info.devnum}) == 1, "the hung path failed")
            assert "no answer within 0.3 s" in stuck.model.check_reason
            before = san.checks
            for pr in list(d.paths.values())[1:]:
                d.kick(pr)
            await until(lambda: san.checks >= before + len(d.paths) - 1, "others checked")
            assert d.checks.outstanding() >= 1  # the hung one still runs in its thread
        finally:
            release.set()
        await until(lambda: ops.failed({stuck.info.devnum}) == 0, "back once it answers")

    run_sim(tmp_path, 2, 2, check, extra=FAST + "checker_timeout = 0.3\n")


def test_a_healthy_path_queued_behind_hung_checks_is_not_called_down(
    tmp_path: pathlib.Path,
) -> None:
    """Four times as many hung paths as check workers: the healthy path's check may wait
    for hung checks to be written off. Its time-out runs from when it starts, so the wait
    is not taken for a hang; and every hung path is called down."""
    release = threading.Event()

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        healthy = d.paths[san.paths[0].name]
        stuck = [pr for pr in d.paths.values() if pr.map_name != healthy.map_name]
        assert len(stuck) == 4 * CHECK_WORKERS
        for pr in stuck:
            pr.checker = Held(san, pr.info.name, release)
            d.kick(pr)
        try:
            await until(lambda: len(d._inflight) >= len(stuck), "the hung checks out")
            d.kick(healthy)
            await until(lambda: healthy.info.name in d._inflight, "the healthy check queued")
            await until(lambda: healthy.info.name not in d._inflight, "its answer", 30.0)
            assert healthy.model.check == Check.UP, healthy.model.check_reason
            assert ops.failed({healthy.info.devnum}) == 0
            assert healthy.info.name not in kinds(d, "path_failed")
            await until(
                lambda: all(pr.model.check == Check.DOWN for pr in stuck),
                "every hung path called down",
                30.0,
            )
            assert {pr.model.check_reason for pr in stuck} == {"no answer within 0.3 s"}
        finally:
            release.set()

    run_sim(tmp_path, 9, 4, check, extra=FAST + "checker_timeout = 0.3\n")


def test_paths_leaving_one_map_together_are_one_reload(tmp_path: pathlib.Path) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        mr = next(iter(d.maps.values()))
        gone = list(mr.devnums.values())[:2]
        reloads = ops.calls.get("reload", 0)
        for name in gone:
            d.records.pop(name)
            d.dirty.add(name)
        await d.reevaluate()
        assert ops.calls["reload"] == reloads + 1
        m = ops.maps[mr.model.name]
        assert len(m.active) == 2 and not {d.paths.get(n) for n in gone} - {None}
        assert sorted(kinds(d, "path_removed")) == sorted(gone)

    run_sim(tmp_path, 2, 4, check)


@pytest.mark.parametrize("luns", [4, 64])
def test_one_path_event_costs_the_same_kernel_work_whatever_the_number_of_maps(
    tmp_path: pathlib.Path, luns: int
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        await asyncio.sleep(0.3)  # let coldplug's first checks pass
        victim = san.paths[1]
        before = dict(ops.calls)
        san.set_path(victim.name, False)
        d.kick(d.paths[victim.name])
        await until(lambda: ops.failed({victim.devnum}) == 1, "failed")
        san.set_path(victim.name, True)
        d.kick(d.paths[victim.name])
        await until(lambda: ops.failed({victim.devnum}) == 0, "reinstated")
        # the status read that follows the reinstatement comes after the message took
        # effect: on a loaded machine it was still to come when the table said "active"
        await until(lambda: ops.calls.get("status", 0) - before.get("status", 0) >= 2,
                    "the status read after the reinstatement")
        spent = {k: v - before.get(k, 0) for k, v in ops.calls.items() if v != before.get(k, 0)}
        # fail + reinstate: two messages and a status read after each, on one map only
        assert spent == {"message": 2, "status": 2}

    run_sim(tmp_path, luns, 2, check)


def test_a_failing_read_after_a_heal_is_an_event_and_the_next_read_is_full(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        from dmpath.errors import DmpathError

        victim = san.paths[0]
        mr = d.maps[d.paths[victim.name].map_name]
        real = ops.status

        def broken(name: str):  # type: ignore[no-untyped-def]
            raise DmpathError(f"{name}: status read refused")

        ops.status = broken  # type: ignore[method-assign]
        san.set_path(victim.name, False)
        d.kick(d.paths[victim.name])
        await until(lambda: ops.failed({victim.devnum}) == 1, "failed in the table")
        await until(lambda: any("status read refused" in e.message for e in d.events
                                if e.kind == "error"), "the error event")
        assert mr.health.kernel is None  # the next read is a full one
        ops.status = real  # type: ignore[method-assign]
        san.set_path(victim.name, True)
        d.kick(d.paths[victim.name])
        await until(lambda: ops.failed({victim.devnum}) == 0, "reinstated")
        await until(lambda: d.paths[victim.name].model.kernel_state.value == "active",
                    "the model agrees")

    run_sim(tmp_path, 2, 2, check)


def test_a_background_task_that_fails_is_an_error_event(tmp_path: pathlib.Path) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        async def boom() -> None:
            raise RuntimeError("kaput")

        d.spawn(boom())
        await until(lambda: any(e.kind == "error" and "kaput" in e.message for e in d.events),
                    "the event")

    run_sim(tmp_path, 1, 2, check)


def test_reconfigure_puts_new_polling_intervals_in_force(tmp_path: pathlib.Path) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        text = (tmp_path / "dmpath.toml")
        text.write_text(
            "[defaults]\n"
            f'bindings_file = "{tmp_path}/bindings"\nwwids_file = "{tmp_path}/wwids"\n'
            'prio = "const"\npath_grouping_policy = "multibus"\nfind_multipaths = "greedy"\n'
            "polling_interval = 0.2\nmax_polling_interval = 0.8\n"
        )
        await d.reconfigure()
        assert (d.sched.tight, d.sched.relaxed) == (0.2, 0.8)
        assert d.sched.stats().paths == len(d.paths)
        # and it still checks: a dead path is failed
        victim = san.paths[0]
        san.set_path(victim.name, False)
        await until(lambda: ops.failed({victim.devnum}) == 1, "failed after reconfigure")

    run_sim(tmp_path, 2, 2, check)


def test_reconfigure_reshapes_live_maps_and_leaves_equal_ones_alone(
    tmp_path: pathlib.Path,
) -> None:
    """A SIGHUP with a new grouping, selector and no_path_retry: every map is reloaded
    once (one event each, none left suspended); a second with nothing new reloads none;
    no_path_retry alone is a message, not a reload."""

    def tables(ops: SimDmOps) -> dict[str, tuple[object, ...]]:
        return {
            n: (len(ops.table(n).groups), ops.table(n).groups[0].selector,
                ops.table(n).features.queue_if_no_path)
            for n in ops.maps
        }  # fmt: skip

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        conf = tmp_path / "dmpath.toml"
        conf.write_text(sim_config_text(str(tmp_path), extra=FAST))
        await d.reconfigure()
        assert ops.calls.get("reload", 0) == 0  # the same configuration: nothing to do
        before = set(tables(ops).values())
        assert before == {(1, "service-time", True)}
        conf.write_text(sim_config_text(str(tmp_path), extra=FAST + (
            'path_grouping_policy = "failover"\npath_selector = "round-robin 0"\n'
            'no_path_retry = "fail"\n'
        )))  # fmt: skip
        reply = await d.reconfigure()
        assert sorted(reply["reshaped"]) == sorted(ops.maps)
        assert set(tables(ops).values()) == {(2, "round-robin", False)}
        assert ops.calls["reload"] == len(ops.maps)
        assert not any(m.suspended for m in ops.maps.values())
        assert sorted(e.map for e in d.events if e.kind == "reshaped") == sorted(ops.maps)
        await d.reconfigure()
        assert ops.calls["reload"] == len(ops.maps)  # unchanged: no second reload
        conf.write_text(sim_config_text(str(tmp_path), extra=FAST + (
            'path_grouping_policy = "failover"\npath_selector = "round-robin 0"\n'
        )))  # fmt: skip
        reply = await d.reconfigure()
        assert set(tables(ops).values()) == {(2, "round-robin", True)}
        assert ops.calls["reload"] == len(ops.maps)  # queueing by message
        assert sorted(reply["reshaped"]) == sorted(ops.maps)
        # the maps still heal: a dead path is failed
        victim = san.paths[0]
        san.set_path(victim.name, False)
        await until(lambda: ops.failed({victim.devnum}) == 1, "failed after the reshape")

    run_sim(tmp_path, 2, 2, check)


def test_reconfigure_renames_a_map_to_its_new_alias(tmp_path: pathlib.Path) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        mr = d.maps["mpatha"]
        wwid = mr.model.wwid
        (tmp_path / "dmpath.toml").write_text(
            sim_config_text(str(tmp_path), extra=FAST)
            + f'[[multipaths]]\nwwid = "{wwid}"\nalias = "data1"\n'
        )
        reply = await d.reconfigure()
        assert reply["reshaped"] == ["data1"]
        assert sorted(ops.maps) == ["data1", "mpathb"] and sorted(d.maps) == ["data1", "mpathb"]
        assert d.maps["data1"] is mr and d.by_wwid[wwid] is mr
        assert {pr.map_name for pr in d.paths.values() if pr.info.wwid == wwid} == {"data1"}
        (ev,) = [e for e in d.events if e.kind == "reshaped"]
        assert (ev.map, ev.message) == ("data1", "data1: renamed from mpatha as the "
                                                 "configuration now says")  # fmt: skip
        assert ops.calls.get("reload", 0) == 0
        # the renamed map still heals
        victim = next(p for p in san.paths if p.devnum in ops.maps["data1"].active)
        san.set_path(victim.name, False)
        await until(lambda: ops.failed({victim.devnum}) == 1, "failed after the rename")
        await d.reconfigure()
        assert [e.kind for e in d.events].count("reshaped") == 1  # named as configured

    run_sim(tmp_path, 2, 2, check)


def test_a_stuck_check_pool_withholds_the_watchdog_ping(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every check thread held (the pool may start no other): the loop still ticks, but
    no WATCHDOG=1 goes out, and one event names the check pool; once it is let go the
    pings resume."""
    monkeypatch.setattr(engine, "STUCK_AFTER", 0.3)

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        assert d.alive()
        await until(lambda: not d._probes, "the probes answered")
        release = threading.Event()
        d.checks = CheckPool(1, hang_after=0.05, max_threads=1)
        d.checks.submit("stuck", lambda: (Check.UP, "", "") if release.wait(30) else None)
        assert d.alive()  # the probe is just out
        await asyncio.sleep(0.5)
        assert not d.alive() and not d.alive()
        stuck = [e.message for e in d.events if e.kind == "watchdog"]
        assert len(stuck) == 1 and stuck[0].startswith("the check pool has finished nothing")
        release.set()
        await until(d.alive, "pings again")
        assert [e.message for e in d.events if e.kind == "watchdog"][1:] == [
            "the check pool makes progress again: WATCHDOG=1 resumed"
        ]

    run_sim(tmp_path, 1, 2, check)


async def fabric0_link_down(d: Daemon, ops: SimDmOps, san: SimSan) -> list[PathRuntime]:
    """Fabric 0's paths leave by link 5 (eth5), which goes down: they are failed."""
    d.links = LinkWatch(d._on_link, d._links_lost)  # fed by hand: no sockets
    on_link = [d.paths[p.name] for p in san.paths if p.fabric == 0]
    for pr in on_link:
        pr.link = 5
    devs = {pr.info.devnum for pr in on_link}
    d.links.heard(LinkChange(5, "eth5", up=False))
    await until(lambda: ops.failed(devs) == len(devs), "the link's paths failed")
    return on_link


def test_a_link_going_down_fails_its_paths_at_once_and_its_return_checks_them(
    tmp_path: pathlib.Path,
) -> None:
    """The paths of fabric 0 leave by one interface. Its going down fails them from the
    link event alone (their checks still answer: the simulated disks are fine), and no
    check reinstates them until the link is back."""

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        on_link = await fabric0_link_down(d, ops, san)
        devs = {pr.info.devnum for pr in on_link}
        assert [e.message for e in d.events if e.kind == "link_down"] == [
            "link eth5 down: " + ", ".join(pr.info.name for pr in on_link)
        ]
        failed = [e for e in d.events if e.kind == "path_failed"]
        assert {e.path for e in failed} == {pr.info.name for pr in on_link}
        # several rounds of checks answer UP: the link's word stands
        checks = san.checks
        await until(lambda: san.checks > checks + 3 * len(d.paths), "checks go on")
        assert ops.failed(devs) == len(devs)
        assert all(pr.model.check == Check.DOWN for pr in on_link)
        assert {pr.model.check_reason for pr in on_link} == {"link eth5 down"}
        assert d.links is not None
        d.links.heard(LinkChange(5, "eth5", up=True))
        await until(lambda: ops.failed(devs) == 0, "reinstated once checked")

    run_sim(tmp_path, 4, 2, check)


def test_a_link_watch_that_ends_releases_the_paths_it_held(tmp_path: pathlib.Path) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        devs = {pr.info.devnum for pr in await fabric0_link_down(d, ops, san)}
        d._links_lost("OSError: gone")
        await until(lambda: ops.failed(devs) == 0, "the checks take them back")
        assert "network link watch ended (OSError: gone): checks only" in [
            e.message for e in d.events if e.kind == "error"
        ]

    run_sim(tmp_path, 4, 2, check)


def test_a_flapping_path_is_held_out_as_marginal_and_the_others_carry_on(
    tmp_path: pathlib.Path,
) -> None:
    """The daemon end to end: the checker's falls reach the marginal rule, the path is
    failed and stays failed while it answers, and comes back after its recovery time."""

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        victim = san.paths[0]
        for _ in range(3):
            san.set_path(victim.name, False)
            await until(lambda: ops.failed({victim.devnum}) == 1, "victim failed")
            san.set_path(victim.name, True)
            if kinds(d, "path_marginal"):
                break
            await until(lambda: ops.failed({victim.devnum}) == 0, "victim reinstated")
        assert kinds(d, "path_marginal") == [victim.name]
        assert d.paths[victim.name].model.marginal
        # it answers again and again, and stays out of use for its term
        await asyncio.sleep(1.0)
        assert d.paths[victim.name].model.check == Check.UP
        assert ops.failed({victim.devnum}) == 1
        assert ops.failed({p.devnum for p in san.paths if p is not victim}) == 0
        await until(lambda: ops.failed({victim.devnum}) == 0, "victim back after its term")
        assert kinds(d, "path_marginal_cleared") == [victim.name]
        assert not d.paths[victim.name].model.marginal

    run_sim(tmp_path, 2, 2, check, extra=FAST + "\nmarginal_recovery = 5")


ALUA = FAST + 'prio = "alua"\npath_grouping_policy = "group_by_prio"\n'
AO, STANDBY = (50, "active_optimized"), (1, "standby")


AluaStates = dict[str, tuple[int, str]]


def run_alua(
    tmp_path: pathlib.Path, scenario: Callable[[Daemon, SimDmOps, AluaStates], Awaitable[None]]
) -> None:
    """One LUN over two paths, grouped by ALUA priority; the daemon's ALUA reads answer
    from the scenario's third argument (path name -> priority, state): the target's word
    as the scenario sets it. The first path starts optimized, the second standby."""
    san = SimSan(1, 2)
    first, second = (r.sys_name for r in san.records())
    states = {first: AO, second: STANDBY}

    async def priority(info: discovery.PathInfo, _prio: str) -> tuple[int, str]:
        return states[info.name]

    async def main() -> None:
        d, ops = make_daemon(san, str(tmp_path), extra=ALUA)
        d._priority = priority  # type: ignore[method-assign]
        d.make_checker = lambda info, _kind: AluaChecker(san, info.name, states)
        connect_uevents(d, ops)
        try:
            await d.adopt()
            await d.scan()
            await until(lambda: ops.active_paths() == 2, "coldplug")
            await scenario(d, ops, states)
        finally:
            await d.stop()

    asyncio.run(main())


class AluaChecker(SimChecker):
    """TEST UNIT READY as a standby port answers it: NOT READY 04/0b, a ghost."""

    def __init__(self, san: SimSan, name: str, states: AluaStates) -> None:
        super().__init__(san, name)
        self.states = states

    def check(self) -> tuple[Check, str]:
        if self.states[self.name] == STANDBY:
            return Check.GHOST, "NOT READY: target port in standby state (04/0b)"
        return super().check()


def first_group(ops: SimDmOps, name: str) -> list[str]:
    return [p.dev for p in ops.maps[name].table.groups[0].paths]


def test_a_port_turning_standby_regroups_its_map_once(tmp_path: pathlib.Path) -> None:
    """The optimized port turns standby and the standby one optimized: one notice about
    one of them re-reads both, and one reload puts the optimized path first."""

    async def check(d: Daemon, ops: SimDmOps, states: AluaStates) -> None:
        ((name, mr),) = d.maps.items()
        a, b = (d.paths[n] for n in sorted(mr.devnums.values()))
        assert first_group(ops, name) == [a.info.devnum]
        reloads = ops.calls.get("reload", 0)
        states[a.info.name], states[b.info.name] = STANDBY, AO
        d._alua_notice(a, "unit attention: asymmetric access state changed")
        await until(lambda: kinds(d, "regrouped"), "regrouped")
        assert first_group(ops, name) == [b.info.devnum]
        assert ops.calls["reload"] == reloads + 1
        assert sorted(kinds(d, "alua_changed")) == sorted([a.info.name, b.info.name])
        why = next(e.message for e in d.events if e.kind == "regrouped")
        assert why == (
            f"path groups by priority now {b.info.name} (50) | {a.info.name} (1) "
            f"(were {a.info.name} | {b.info.name}) after unit attention: "
            f"asymmetric access state changed ({a.info.name})"
        )
        assert [g.paths for g in mr.model.groups] == [[b.info.name], [a.info.name]]
        assert (a.model.priority, a.model.alua_state) == STANDBY
        # asked again with nothing changed: no reload
        d._alua_notice(b, "udev change")
        await until(lambda: not d._alua_busy, "the second read")
        assert ops.calls["reload"] == reloads + 1
        assert len(kinds(d, "regrouped")) == 1

    run_alua(tmp_path, check)


def test_no_regroup_while_a_port_is_in_transition(tmp_path: pathlib.Path) -> None:
    async def check(d: Daemon, ops: SimDmOps, states: AluaStates) -> None:
        ((name, mr),) = d.maps.items()
        a, b = (d.paths[n] for n in sorted(mr.devnums.values()))
        reloads = ops.calls.get("reload", 0)
        states[a.info.name] = (0, "transitioning")
        states[b.info.name] = AO
        d._alua_notice(a, "check: NOT READY: asymmetric access state transition (04/0a)")
        await until(lambda: len(kinds(d, "alua_changed")) == 2, "both read")
        await until(lambda: not d._alua_busy, "the read over")
        assert ops.calls.get("reload", 0) == reloads
        # the port lands; the look the engine asked for a polling interval later sees it
        states[a.info.name] = STANDBY
        await until(lambda: kinds(d, "regrouped"), "regrouped after the transition")
        assert first_group(ops, name) == [b.info.devnum]

    run_alua(tmp_path, check)


def test_a_check_that_meets_the_standby_port_regroups_without_a_uevent(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, states: AluaStates) -> None:
        ((name, mr),) = d.maps.items()
        a, b = (d.paths[n] for n in sorted(mr.devnums.values()))
        assert (a.model.check, b.model.check) == (Check.UP, Check.GHOST)
        assert not kinds(d, "alua_changed")  # first verdicts are no news
        states[a.info.name], states[b.info.name] = STANDBY, AO
        d.kick(a)
        await until(lambda: kinds(d, "regrouped"), "regrouped")
        assert first_group(ops, name) == [b.info.devnum]
        why = next(e.message for e in d.events if e.kind == "regrouped")
        assert why.endswith(
            f"after check: NOT READY: target port in standby state (04/0b) ({a.info.name})"
        )

    run_alua(tmp_path, check)


def test_nvme_paths_are_checked_with_directio_and_the_native_view_is_shown(
    tmp_path: pathlib.Path,
) -> None:
    """The configured checker is tur; NVMe paths have no SG_IO and get directio. The
    daemon's show carries the kernel's native NVMe view as its reader gives it."""
    from dataclasses import replace

    from dmpath.kernel.nvme import NativeSubsystem

    checkers: dict[str, str] = {}
    native = [NativeSubsystem("nvme-subsys0", "nqn.x", "Linux", "1", "numa", ())]

    async def main() -> None:
        san = SimSan(2, 2)
        d, ops = make_daemon(san, str(tmp_path), extra=FAST + 'checker = "tur"\n')
        scan, make = d.scan_records, d.make_checker

        def nvme_scan(*args: Any) -> Any:
            infos, holders = scan(*args)
            return {n: i and replace(i, transport="nvme:tcp") for n, i in infos.items()}, holders

        def record(info: Any, kind: str) -> Any:
            checkers[info.name] = kind
            return make(info, kind)

        d.scan_records, d.make_checker = nvme_scan, record
        d.read_native = lambda: native
        connect_uevents(d, ops)
        try:
            await d.adopt()
            await d.scan()
            await until(lambda: ops.active_paths() == 4, "coldplug")
            shown = await d.op_show()
            assert {p["checker"] for m in shown["maps"] for p in m["paths"]} == {"directio"}
            assert shown["nvme_native"] == [
                {"name": "nvme-subsys0", "nqn": "nqn.x", "model": "Linux", "serial": "1",
                 "iopolicy": "numa", "namespaces": []}
            ]
        finally:
            await d.stop()

    asyncio.run(main())
    assert len(checkers) == 4 and set(checkers.values()) == {"directio"}


def test_a_write_seen_on_a_map_brings_its_partition_maps_in_line(tmp_path: pathlib.Path) -> None:
    """udev's watch (a change with no DM_COOKIE) on one of our maps runs the partition
    sync for that map, once per burst; our own resumes (with a cookie) and other devices
    do not."""
    from dmpath.kernel import udev

    async def scenario(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        synced: list[str] = []
        release = asyncio.Event()
        loop = asyncio.get_running_loop()

        def sync(name: str, kname: str, uuid: str) -> tuple[list[str], list[str]]:
            synced.append(name)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
            return [], [f"{name}-part1"]

        d.dm.sync_partitions = sync  # type: ignore[method-assign]
        name = sorted(d.maps)[0]
        mr = d.maps[name]

        def change(**extra: str) -> udev.UdevRecord:
            props = {"DEVPATH": f"/devices/virtual/block/{mr.model.sysfs or 'dm-0'}",
                     "SUBSYSTEM": "block", "DM_NAME": name, **extra}
            return udev.record_from_properties(props, "change")

        d._on_dm_record(change(DM_COOKIE="4259840"))  # a resume of ours
        d._on_dm_record(change(DM_NAME="someone-else"))
        await asyncio.sleep(0.2)
        assert synced == []
        for _ in range(3):  # a burst of writes while the first sync runs: one more run
            d._on_dm_record(change())
        await until(lambda: synced == [name], "the first sync")
        release.set()
        await until(lambda: synced == [name, name], "one more sync for the burst")
        told = [e for e in d.events if e.kind == "partitions"]
        assert told and f"{name}-part1" in told[-1].message

    run_sim(tmp_path, 2, 2, scenario)


def _drop_paths(d: Daemon, every: bool = False) -> str:
    """A path of the first map (``every``: all of them) vanishes, as udev's remove says;
    returns the map's name."""
    name = sorted(d.maps)[0]
    paths = sorted(d.maps[name].devnums.values())
    for gone in paths if every else paths[:1]:
        d.records.pop(gone)
        d.dirty.add(gone)
    return name


def test_an_admin_request_that_cannot_be_recorded_is_done_and_the_map_told(
    tmp_path: pathlib.Path,
) -> None:
    """A full or read-only state directory: fail_path still fails the path, and the error
    event names the map and the request that will not outlive a restart."""

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro" / "admin-state").mkdir()  # a write there fails, as on a full disk
        object.__setattr__(d.d, "admin_state_file", str(tmp_path / "ro" / "admin-state"))
        path = san.paths[0].name
        name = d.paths[path].map_name
        await d.handle("fail_path", {"path": path}, None)
        assert ops.active_paths() == len(san.paths) - 1
        errors = [e for e in d.events if e.kind == "error"]
        assert [e.map for e in errors] == [name]
        assert f"admin request 'fail_path {path}' done but not recorded" in errors[0].message
        assert "not outlive a restart" in errors[0].message

    run_sim(tmp_path, 2, 2, check)


def test_a_reload_whose_resume_fails_does_not_leave_the_map_suspended(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        ops.failing_resumes = 1  # the reload's own resume
        name = _drop_paths(d)
        await d.reevaluate()
        assert not ops.maps[name].suspended
        assert any("resume failed" in e.message for e in d.events if e.kind == "error")
        assert [e.message for e in d.events if e.kind == "map_resumed"] == [
            f"{name} was suspended (its reload failed): resumed"
        ]

    run_sim(tmp_path, 2, 2, check)


def test_a_map_that_will_not_resume_is_an_alert_until_it_does(tmp_path: pathlib.Path) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        ops.failing_resumes = 3  # the reload's, the one after it, and one retry
        name = _drop_paths(d)
        await d.reevaluate()
        assert ops.maps[name].suspended
        await until(lambda: kinds(d, "map_resumed"), "resumed by a retry")
        assert not ops.maps[name].suspended
        alerts = [e.message for e in d.events if e.kind == "alert" and e.map == name]
        assert len(alerts) == 2
        assert all(f"run 'dmsetup resume {name}'" in a for a in alerts), alerts
        assert all("all I/O on it hangs" in a for a in alerts)
        await until(lambda: not d._resuming, "the retries over")

    run_sim(tmp_path, 2, 2, check)


def test_a_map_of_ours_found_suspended_at_start_is_resumed(tmp_path: pathlib.Path) -> None:
    """A daemon killed between a reload's suspend and its resume: the next one resumes the
    map as it adopts it."""

    async def main() -> None:
        san = SimSan(2, 2)
        first, ops = make_daemon(san, str(tmp_path), extra=FAST)
        await first.adopt()
        await first.scan()
        await first.stop()
        name = sorted(ops.maps)[0]
        ops.maps[name].suspended = True
        d, _ops = make_daemon(san, str(tmp_path), extra=FAST)
        d.dm.ops = ops
        try:
            await d.adopt()
            assert not ops.maps[name].suspended
            assert [e.message for e in d.events if e.kind == "map_resumed"] == [
                f"{name} was suspended (found suspended at start): resumed"
            ]
        finally:
            await d.stop()

    asyncio.run(main())


def test_flush_on_last_del_removes_a_map_whose_last_path_is_removed(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name = _drop_paths(d, every=True)
        await d.reevaluate()
        assert name not in ops.maps and name not in d.maps
        (flushed,) = [e for e in d.events if e.kind == "map_flushed"]
        assert flushed.map == name and "(flush_on_last_del)" in flushed.message
        assert len(ops.maps) == 1  # the other map is untouched

    run_sim(tmp_path, 2, 2, check, extra=FAST + "flush_on_last_del = true\n")


def test_a_flush_whose_remove_errs_after_the_map_went_is_a_flush(
    tmp_path: pathlib.Path,
) -> None:
    """dmsetup can report a failure after the kernel let the map go (its wait for udev
    ran out): the map is gone, so the flush happened and is recorded as one."""

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        ops.late_remove_errors = 1
        name = _drop_paths(d, every=True)
        await d.reevaluate()
        assert name not in ops.maps and name not in d.maps
        assert [e.map for e in d.events if e.kind == "map_flushed"] == [name]
        assert not kinds(d, "error")

    run_sim(tmp_path, 2, 2, check, extra=FAST + "flush_on_last_del = true\n")


def test_flush_on_last_del_keeps_a_map_while_it_is_open(tmp_path: pathlib.Path) -> None:
    """Open (a mount, or udev's probe waiting on the queue of a map with no path): kept;
    flushed once nothing holds it any more."""

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name = sorted(d.maps)[0]
        ops.maps[name].open_count = 1
        _drop_paths(d, every=True)
        await d.reevaluate()
        assert name in ops.maps and name in d.maps
        (kept,) = [e.message for e in d.events if e.kind == "alert" and e.map == name]
        assert "map kept while it is open" in kept and "is open (1 holders)" in kept, kept
        checks = ops.calls["info"]
        await until(lambda: ops.calls["info"] > checks + 2, "looked at again, still open")
        assert name in ops.maps and ops.calls.get("remove", 0) == 0
        ops.maps[name].open_count = 0  # its holder lets go
        await until(lambda: name not in ops.maps, "flushed once closed")
        await until(lambda: kinds(d, "map_flushed"), "the event")
        assert name not in d.maps

    run_sim(tmp_path, 2, 2, check, extra=FAST + "flush_on_last_del = true\n")


def test_flush_on_last_del_keeps_an_open_map_a_path_comes_back_to(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name = sorted(d.maps)[0]
        ops.maps[name].open_count = 1
        records = {r.sys_name: r for r in san.records()}
        back = sorted(d.maps[name].devnums.values())
        _drop_paths(d, every=True)
        await d.reevaluate()
        for path in back:  # the LUN is seen again
            d.records[path] = records[path]
            d.dirty.add(path)
        await d.reevaluate()
        await until(lambda: not d._last_del, "no more flush attempts")
        ops.maps[name].open_count = 0
        assert name in ops.maps and sorted(d.maps[name].devnums.values()) == back
        assert ops.calls.get("remove", 0) == 0 and not kinds(d, "map_flushed")

    run_sim(tmp_path, 2, 2, check, extra=FAST + "flush_on_last_del = true\n")


def test_without_flush_on_last_del_a_map_whose_last_path_is_removed_stays(
    tmp_path: pathlib.Path,
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name = _drop_paths(d, every=True)
        await d.reevaluate()
        assert name in ops.maps and name in d.maps
        assert ops.calls.get("remove", 0) == 0

    run_sim(tmp_path, 2, 2, check)


def at_rest(d: Daemon) -> bool:
    return not any(m.health.busy for m in d.maps.values())


def run_restart(
    tmp_path: pathlib.Path, luns: int, paths: int, before: Scenario, after: Scenario
) -> None:
    """A daemon runs ``before``, stops, and another one (same files, same kernel) adopts
    what it left and runs ``after``: what a restart (or a kill -9: the state file is
    written at each request) keeps."""

    async def main() -> None:
        san = SimSan(luns, paths)
        ops: SimDmOps | None = None
        for scenario in (before, after):
            d, fresh = make_daemon(san, str(tmp_path), extra=FAST)
            if ops is None:
                ops = fresh
            d.dm.ops = ops
            connect_uevents(d, ops)
            try:
                await d.adopt()
                await d.scan()
                await until(functools.partial(at_rest, d), "at rest")
                await scenario(d, ops, san)
            finally:
                await d.stop()

    asyncio.run(main())


def test_a_flushed_map_stays_gone_after_a_restart_until_created(tmp_path: pathlib.Path) -> None:
    gone: list[str] = []

    async def before(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name = sorted(d.maps)[0]
        gone[:] = [name, d.maps[name].model.wwid]
        await d.op_flush_map(name)
        assert name not in ops.maps

    async def after(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name, wwid = gone
        assert name not in ops.maps and len(ops.maps) == 1
        await d.op_create_map(wwid=wwid)
        assert name in ops.maps
        assert wwid not in (tmp_path / "admin-state").read_text()

    run_restart(tmp_path, 2, 2, before, after)


def test_multipathd_commands_are_answered_by_the_daemon(tmp_path: pathlib.Path) -> None:
    """dmpath-multipathd sends its words: a show is the text multipathd prints, from the
    daemon's own model; a command that changes something is done as its request would
    be; what dmpath does not serve is a bad request in one line."""

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name = sorted(d.maps)[0]
        paths = sorted(d.maps[name].devnums.values())
        shown = await d.op_multipathd_show(["show", "paths", "raw", "format", "%d %m"])
        assert sorted(shown["text"].split("\n")[:-1]) == sorted(
            f"{p} {m}" for m in d.maps for p in d.maps[m].devnums.values()
        )
        same = await d.op_multipathd(["show", "maps", "raw", "format", "%n"])
        assert same["text"].split() == sorted(d.maps)
        done = await d.op_multipathd(["del", "path", paths[0]])
        assert done == {"text": ""} and paths[0] not in d.paths
        with pytest.raises(BadRequest, match="not supported by dmpath"):
            await d.op_multipathd(["shutdown"])
        with pytest.raises(BadRequest, match="not a show command"):
            await d.op_multipathd_show(["del", "map", name])
        with pytest.raises(NotFoundError):
            await d.op_multipathd(["del", "map", "no-such-map"])
        assert name in ops.maps

    run_sim(tmp_path, 2, 2, check, extra=FAST)


def test_a_removed_path_stays_out_after_a_restart_until_added(tmp_path: pathlib.Path) -> None:
    out: list[str] = []

    async def before(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name = sorted(d.maps)[0]
        path = sorted(d.maps[name].devnums.values())[0]
        out[:] = [name, path, d.paths[path].info.devnum]
        await d.op_remove_path(path)
        assert out[2] not in ops.maps[name].active

    async def after(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name, path, devnum = out
        assert devnum not in ops.maps[name].active and path not in d.paths
        # the device's facts as the simulation has them (the daemon reads sysfs)
        async def record(spec: str) -> discovery.PathInfo | None:
            return sim_scan([d.records[spec]], (), [])[0][spec]

        d._path_record = record  # type: ignore[assignment,method-assign]
        await d.op_add_path(path)
        assert devnum in ops.maps[name].active

    run_restart(tmp_path, 2, 2, before, after)


def test_a_path_the_admin_failed_stays_failed_after_a_restart(tmp_path: pathlib.Path) -> None:
    out: list[str] = []

    async def before(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        path = sorted(d.paths)[0]
        out[:] = [path, d.paths[path].info.devnum]
        await d.op_fail_path(path)
        assert ops.failed({out[1]}) == 1

    async def after(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        path, devnum = out
        assert d.paths[path].model.held
        checks = san.checks
        await until(lambda: san.checks > checks + 3 * len(d.paths), "checks go on")
        assert ops.failed({devnum}) == 1  # it answers its checks, and stays failed
        await d.op_reinstate_path(path)
        assert ops.failed({devnum}) == 0
        assert path not in (tmp_path / "admin-state").read_text()

    run_restart(tmp_path, 2, 2, before, after)


def test_queueing_off_survives_a_heal_and_a_restart(tmp_path: pathlib.Path) -> None:
    names: list[str] = []

    async def flap(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        """A path dies and comes back: two heals of its map."""
        victim = san.by_name[sorted(d.maps[names[0]].devnums.values())[0]]
        san.set_path(victim.name, False)
        await until(lambda: ops.failed({victim.devnum}) == 1, "failed")
        san.set_path(victim.name, True)
        await until(lambda: ops.failed({victim.devnum}) == 0, "reinstated")
        await until(lambda: not d.maps[names[0]].health.busy, "the heal over")

    async def before(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        names[:] = [sorted(d.maps)[0]]
        await d.op_queueing(names[0], False)
        await flap(d, ops, san)
        assert not ops.maps[names[0]].queueing

    async def after(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        await flap(d, ops, san)
        assert not ops.maps[names[0]].queueing
        await d.op_queueing(names[0], None)  # as no_path_retry says: 12, so it queues
        assert ops.maps[names[0]].queueing

    run_restart(tmp_path, 2, 2, before, after)


def _wwids_file(tmp_path: pathlib.Path) -> str:
    return (tmp_path / "wwids").read_text()


@pytest.mark.parametrize("wwid", ["3600a0b8 typo", "/3600a0b8/", "3600a0b8#1"])
def test_create_of_a_malformed_wwid_is_a_bad_request_and_writes_nothing(
    tmp_path: pathlib.Path, wwid: str
) -> None:
    from dmpath import protocol

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        before = _wwids_file(tmp_path)
        with pytest.raises(protocol.BadRequest, match="invalid WWID") as info:
            await d.op_create_map(wwid=wwid)
        assert protocol.kind_for_exception(info.value) == protocol.ErrorKind.BAD_REQUEST
        assert "\n" not in str(info.value)
        assert _wwids_file(tmp_path) == before

    run_sim(tmp_path, 1, 2, check)


def test_create_of_a_wwid_no_path_has_is_not_found_and_writes_nothing(
    tmp_path: pathlib.Path,
) -> None:
    from dmpath.protocol import NotFound

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        before = _wwids_file(tmp_path)
        with pytest.raises(NotFound, match="no usable path of 36001405deadbeef"):
            await d.op_create_map(wwid="36001405deadbeef")
        assert _wwids_file(tmp_path) == before
        assert "deadbeef" not in _wwids_file(tmp_path)

    run_sim(tmp_path, 1, 2, check)


def test_create_with_a_taken_name_is_refused_at_once_and_not_remembered(
    tmp_path: pathlib.Path,
) -> None:
    from dmpath.errors import PolicyRefusal

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        first, second = sorted(d.maps)
        wwid = d.maps[second].model.wwid
        await d.op_flush_map(second)
        with pytest.raises(PolicyRefusal, match=f"name {first} is taken by the map of"):
            await d.op_create_map(wwid=wwid, name=first)
        assert d.requested_names == {}
        assert second not in ops.maps  # the refusal did nothing: still flushed
        errors = len([e for e in d.events if e.kind == "error"])
        made = await d.op_create_map(wwid=wwid)
        assert made == {"map": second, "wwid": wwid}
        await d.reevaluate(full=True)
        assert len([e for e in d.events if e.kind == "error"]) == errors

    run_sim(tmp_path, 2, 2, check)


def test_create_with_a_free_name_makes_the_map_so_named(tmp_path: pathlib.Path) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name = sorted(d.maps)[0]
        wwid = d.maps[name].model.wwid
        await d.op_flush_map(name)
        assert await d.op_create_map(wwid=wwid, name="data") == {"map": "data", "wwid": wwid}
        assert "data" in ops.maps and d.requested_names == {}

    run_sim(tmp_path, 1, 2, check)


def test_once_makes_count_maps_without_queueing_and_the_daemon_turns_it_on(
    tmp_path: pathlib.Path,
) -> None:
    """no_path_retry = 12 counts polling intervals, which only a running daemon does: a
    map made by --once would queue for ever with nobody to fail its I/O. It is made
    without queueing, says so in one line, and the daemon that adopts it queues."""
    from dmpath.daemon.engine import assemble_once

    async def main() -> None:
        san = SimSan(2, 2)
        once, ops = make_daemon(san, str(tmp_path), extra=FAST)
        once.checking = False
        events = await assemble_once(once)
        assert len(ops.maps) == 2 and not any(m.queueing for m in ops.maps.values())
        said = [e for e in events if e.kind == "queueing"]
        assert sorted(e.map for e in said) == sorted(ops.maps)
        assert all(
            e.message == f"no_path_retry = 12 needs dmpathd to count: {e.map} fails I/O when "
            "no path is left (no queueing) until dmpathd runs"
            for e in said
        )
        d, _ops = make_daemon(san, str(tmp_path), extra=FAST)
        d.dm.ops = ops
        connect_uevents(d, ops)
        try:
            await d.adopt()
            await d.scan()
            await until(lambda: all(m.queueing for m in ops.maps.values()), "queueing on")
        finally:
            await d.stop()

    asyncio.run(main())


def test_once_keeps_queueing_for_no_path_retry_queue(tmp_path: pathlib.Path) -> None:
    from dmpath.daemon.engine import assemble_once

    async def main() -> None:
        queue = FAST + 'no_path_retry = "queue"\n'
        once, ops = make_daemon(SimSan(1, 2), str(tmp_path), extra=queue)
        once.checking = False
        events = await assemble_once(once)
        assert all(m.queueing for m in ops.maps.values())
        assert not [e for e in events if e.kind == "queueing"]

    asyncio.run(main())


def test_resize_map_reloads_at_the_paths_new_size_and_refuses_while_they_differ(
    tmp_path: pathlib.Path,
) -> None:
    from dmpath.errors import PolicyRefusal

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        name = sorted(d.maps)[0]
        mr = d.maps[name]
        old = ops.maps[name].table.length
        members = sorted(mr.devnums.values())
        sizes = dict.fromkeys(members, old)
        d.path_size = sizes.__getitem__
        sizes[members[0]] = old * 2  # one path rescanned, the other not yet
        with pytest.raises(PolicyRefusal, match="differ in size"):
            await d.op_resize_map(name)
        assert ops.maps[name].table.length == old
        sizes[members[1]] = old * 2
        reloads = ops.calls.get("reload", 0)
        assert await d.op_resize_map(name) == {"map": name, "size_sectors": old * 2}
        assert ops.maps[name].table.length == old * 2
        assert ops.calls["reload"] == reloads + 1
        assert d.maps[name].model.size_sectors == old * 2
        assert [e.map for e in d.events if e.kind == "map_resized"] == [name]

    run_sim(tmp_path, 2, 2, check)


def test_a_refused_create_is_tried_again_until_the_map_is_made(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing else looks at a LUN again before its next disk event: a create refused by
    a passing cause (EBUSY) must not leave it without a map."""

    async def main() -> None:
        d, ops = make_daemon(SimSan(2, 2), str(tmp_path), extra=FAST)
        connect_uevents(d, ops)
        real = ops.create
        refusals = [2]

        def create(name: str, table: MultipathTable, uuid: str) -> None:
            if name == "mpatha" and refusals[0]:
                refusals[0] -= 1
                raise DmpathError(f"{name}: device-mapper DEV_CREATE failed: EBUSY")
            real(name, table, uuid)

        monkeypatch.setattr(ops, "create", create)
        try:
            await d.adopt()
            await d.scan()
            assert sorted(ops.maps) == ["mpathb"]
            await until(lambda: "mpatha" in ops.maps and "mpatha" in d.maps, "mpatha made")
            errors = [e for e in d.events if e.kind == "error" and e.map == "mpatha"]
            assert len(errors) == 2 and "DEV_CREATE" in errors[0].message
            # forgotten once made: the map is registered while the pass that made it is
            # still gathering its creates (seen on a loaded host), so wait for the pass
            await until(lambda: not d._retries, "the retry forgotten")
        finally:
            await d.stop()

    asyncio.run(main())


def test_a_refused_reload_that_adds_a_path_is_tried_again(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
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

    run_sim(tmp_path, 2, 2, check)


def test_the_link_watch_starts_with_the_first_network_path_and_only_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths that ride no network never start the link watch (its library is heavy);
    the first iSCSI path starts it, once: a start that fails is an event, not retried."""
    starts: list[int] = []

    async def refused(self: LinkWatch) -> None:
        starts.append(1)
        raise OSError(93, "rtnetlink: protocol not supported")

    monkeypatch.setattr(LinkWatch, "start", refused)

    async def check(d: Daemon, ops: SimDmOps, san: SimSan) -> None:
        d._watch_links = True  # as start() allows it
        infos = [pr.info for pr in d.paths.values()]
        await d._find_links(infos)
        assert d._links_start is None and starts == []
        monkeypatch.setattr(engine.sysfs, "iscsi_session_of", lambda _devpath: "session1")
        await d._find_links(infos)
        await d._find_links(infos)
        assert starts == [1] and d.links is None
        errors = [e.message for e in d.events if e.kind == "error"]
        assert errors == [
            "cannot watch network links: [Errno 93] rtnetlink: protocol not supported"
        ]

    run_sim(tmp_path, 1, 2, check)


def test_admin_actions_asked_before_the_coldplug_wait_for_its_first_pass(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon answers as soon as the kernel's maps are adopted; an admin's action that
    comes before the coldplug's first pass (add_path of a disk not read yet, fail_path of
    a path not known yet) waits for it instead of being refused, while a read is answered
    at once."""

    # the device's facts as the simulation has them (the daemon reads sysfs)
    monkeypatch.setattr(
        engine.discovery, "path_info", lambda rec, _uid: sim_scan([rec], (), [])[0][rec.sys_name]
    )

    async def main() -> None:
        san = SimSan(1, 2)
        d, ops = make_daemon(san, str(tmp_path), extra=FAST)
        connect_uevents(d, ops)
        try:
            await d.adopt()
            first, second = (p.name for p in san.paths[:2])
            loop = asyncio.get_running_loop()
            added = loop.create_task(d.handle("add_path", {"path": first}, None))
            failed = loop.create_task(d.handle("fail_path", {"path": second}, None))
            assert (await asyncio.wait_for(d.handle("ping", {}, None), 5))["pid"]
            await asyncio.sleep(0.1)
            assert not added.done() and not failed.done()  # not refused: waiting
            await d.scan()
            assert (await asyncio.wait_for(added, 10))["path"] == first
            await asyncio.wait_for(failed, 10)
            await until(lambda: ops.active_paths() == 1, "coldplug, then one path failed")
        finally:
            await d.stop()

    asyncio.run(main())
