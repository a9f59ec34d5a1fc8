"""dmpathd's event loop: the one owner of the daemon's state.

Everything arrives as an event on one asyncio loop: udev events (coalesced into one
re-evaluation per burst), checker results (checks run in worker threads with a timeout),
dm path uevents from the kernel (an immediate re-check), control-socket requests and
signals. Kernel operations run one at a time in a dedicated worker thread, so the loop
never blocks and the kernel sees our operations in the order we decided them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dmpath import config as cfgmod
from dmpath.daemon import discovery
from dmpath.daemon.backends import DmBackend, KernelMap, MdBackend
from dmpath.daemon.checkers import PathChecker
from dmpath.daemon.lock import AssemblyLock, lock_path
from dmpath.errors import DmpathError, PolicyRefusal
from dmpath.kernel import dmsetup, udev
from dmpath.kernel.mdadm import MemberBusy
from dmpath.model import (
    Backend,
    Check,
    Event,
    GroupState,
    KernelState,
    Map,
    Path,
    PathGroup,
    Snapshot,
    snapshot_to_dict,
)
from dmpath.policy import files, healing
from dmpath.policy import filter as pfilter
from dmpath.policy.assembly import Member, build_table
from dmpath.protocol import NotFound as NotFoundError

log = logging.getLogger("dmpathd")
T = TypeVar("T")

MAX_EVENTS = 1000
#: a kernel operation slower than this (seconds) raises an alert; it is still awaited
SLOW_KERNEL_OP = 30.0
#: how long an assembler waits for another one to finish before giving up (seconds)
ASSEMBLY_WAIT = 60.0


@dataclass
class PathRuntime:
    info: discovery.PathInfo
    model: Path
    checker: PathChecker
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    changes: list[float] = field(default_factory=list)
    map_name: str = ""


@dataclass
class MapRuntime:
    model: Map
    opts: Any  # cfgmod.MapOptions
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    checks_without_path: int = 0
    best_usable_since: float | None = None
    next_group: int = 0
    kernel: KernelMap | None = None  # the last full read, for status-only re-reads
    devnums: dict[str, str] = field(default_factory=dict)  # devnum -> path name (members)


class Daemon:
    def __init__(
        self,
        cfg: Any,
        config_path: str,
        socket_path: str | None = None,
        checking: bool = True,
    ) -> None:
        self.cfg = cfg
        # False for a one-shot assembly (``dmpathd --once``): maps are made, nobody checks
        self.checking = checking
        self.config_path = config_path
        self.socket_path = socket_path or cfg.defaults.socket
        self.dm = DmBackend(cfg.defaults.dm_uuid_prefix)
        self.md = MdBackend()
        self.paths: dict[str, PathRuntime] = {}
        self.maps: dict[str, MapRuntime] = {}
        self.records: dict[str, udev.UdevRecord] = {}
        self.excluded: set[str] = set()  # path names removed by the admin
        self.flushed: set[str] = set()  # wwids whose map the admin flushed
        self.requested_names: dict[str, str] = {}  # wwid -> name asked for by create_map
        self.events: collections.deque[Event] = collections.deque(maxlen=MAX_EVENTS)
        self.started = time.time()
        self.kpool = ThreadPoolExecutor(1, thread_name_prefix="kernel")
        self.mdpool = ThreadPoolExecutor(1, thread_name_prefix="kernel-md")
        self.cpool = ThreadPoolExecutor(16, thread_name_prefix="check")
        self._reeval_handle: asyncio.TimerHandle | None = None
        self._reeval_task: asyncio.Task[None] | None = None
        self._reeval_lock = asyncio.Lock()
        self.udev_events_pending = 0  # disk events since the last pass (one pass per burst)
        self._tasks: set[asyncio.Task[None]] = set()
        self.monitor: udev.Monitor | None = None
        self.notify: Callable[[str], object] = lambda _s: None

    # ------------------------------------------------------------------ helpers

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, keeping a reference until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def k(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run a kernel operation in a kernel worker thread (one at a time, in order).

        md operations get a worker of their own: mdadm opens the array, and an array whose
        every path is dead retries its I/O forever, so that open can hang in D state.
        It must not take the dm maps' healing down with it.
        """
        loop = asyncio.get_running_loop()
        pool = self.mdpool if getattr(fn, "__self__", None) is self.md else self.kpool
        fut = loop.run_in_executor(pool, functools.partial(fn, *args, **kw))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout=SLOW_KERNEL_OP)
        except TimeoutError:
            what = getattr(fn, "__qualname__", repr(fn))
            on = f" on {args[0]}" if args and isinstance(args[0], str) else ""
            self.event(
                "alert",
                message=f"{what}{on} has not returned after {SLOW_KERNEL_OP:g} s "
                "(I/O stuck on the device?); still waiting",
            )
            return await fut

    def event(self, kind: str, map_name: str = "", path: str = "", message: str = "") -> None:
        self.events.append(Event(time.time(), kind, map_name, path, message))
        level = logging.WARNING if kind in ("path_failed", "alert", "error") else logging.INFO
        log.log(level, "%s%s", f"{map_name}: " if map_name else "", message or kind)

    def backend(self, b: Backend) -> DmBackend | MdBackend:
        return self.dm if b == Backend.DM else self.md

    @property
    def d(self) -> Any:
        return self.cfg.defaults

    # ------------------------------------------------------------------ start/stop

    async def start(self) -> None:
        await self.adopt()
        self.monitor = udev.Monitor.from_netlink()
        self.monitor.start()
        loop = asyncio.get_running_loop()
        loop.add_reader(self.monitor.fileno(), self._on_udev)
        await self.scan()

    async def scan(self) -> None:
        """Coldplug: every disk udev knows now, then one re-evaluation."""
        for rec in await self.k(udev.enumerate_block_disks):
            self.records[rec.sys_name] = rec
        await self.reevaluate()

    async def stop(self) -> None:
        """Stop checking; leave every map as it is (they keep working without us)."""
        if self.monitor is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.monitor.fileno())
        for pr in self.paths.values():
            if pr.task:
                pr.task.cancel()
        for pr in self.paths.values():
            if pr.task:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pr.task
            pr.checker.close()
        self.cpool.shutdown(wait=False, cancel_futures=True)
        # an md operation stuck in D state must not keep the daemon from stopping
        self.mdpool.shutdown(wait=False, cancel_futures=True)
        self.kpool.shutdown(wait=True)

    # ------------------------------------------------------------------ adoption

    async def adopt(self) -> None:
        """Take back maps made by an earlier dmpathd: read them, change nothing."""
        for name, wwid in (await self.k(self.dm.list_ours)).items():
            km = await self.k(self.dm.read, name)
            self._install_map(name, wwid, Backend.DM, km)
            self.event("map_adopted", name, message=f"adopted dm map {name} ({wwid})")
        try:
            md_maps = await self.k(self.md.list_ours)
        except DmpathError as exc:
            log.debug("md adoption skipped: %s", exc)
            md_maps = {}
        for name in md_maps:
            km = await self.k(self.md.read, name)
            self._install_map(name, "", Backend.MD, km)
            self.event("map_adopted", name, message=f"adopted md array {name} ({km.sysfs})")

    def _install_map(self, name: str, wwid: str, backend: Backend, km: KernelMap) -> MapRuntime:
        opts = cfgmod.effective_options(self.cfg, wwid, "", "")
        m = Map(name=name, wwid=wwid, backend=backend)
        mr = MapRuntime(model=m, opts=opts)
        self.maps[name] = mr
        self._apply_kernel(mr, km)
        return mr

    # ------------------------------------------------------------------ udev

    def _on_udev(self) -> None:
        assert self.monitor is not None
        recs = self.monitor.drain()
        relevant = False
        for rec in recs:
            ev = udev.dm_path_event(rec)
            if ev is not None:
                self._on_dm_path_event(ev)
                continue
            if udev.is_dm(rec) or not udev.is_disk(rec):
                continue
            relevant = True
            self.udev_events_pending += 1
            known = self.paths.get(rec.sys_name)
            if known is not None:
                known.wake.set()  # a change on a path (e.g. SCSI state): check it now
            if rec.action == "remove":
                self.records.pop(rec.sys_name, None)
            else:
                self.records[rec.sys_name] = rec
        if relevant:
            self.schedule_reevaluate()

    def _on_dm_path_event(self, ev: udev.DmPathEvent) -> None:
        """The kernel failed or reinstated a path: believe it at once, re-check, re-read.

        The uevent is the kernel's own word, so the model takes it before any re-read (a
        plan made from older state would count paths that are already gone). Only a
        change we did not make ourselves is news worth an event.
        """
        for pr in self.paths.values():
            if pr.info.devnum != ev.path:
                continue
            pr.wake.set()
            mr = self.maps.get(pr.map_name)
            if mr is None or (ev.map_name and ev.map_name != mr.model.name):
                continue
            if ev.action == udev.DmAction.PATH_FAILED:
                if pr.model.kernel_state == KernelState.ACTIVE:
                    pr.model.kernel_state = KernelState.FAILED
                    pr.model.last_change = time.time()
                    pr.model.fail_count += 1
                    left = ev.nr_valid_paths if ev.nr_valid_paths is not None else "?"
                    self.event(
                        "kernel_path_failed",
                        mr.model.name,
                        pr.info.name,
                        f"IO failure on {pr.info.name}: the kernel disabled the path and "
                        f"redirects I/O to another IO path ({left} left)",
                    )
            elif ev.action == udev.DmAction.PATH_REINSTATED:
                pr.model.kernel_state = KernelState.ACTIVE
            self.spawn(self.refresh(mr))

    def schedule_reevaluate(self) -> None:
        """Coalesce a burst of udev events into one re-evaluation."""
        if self._reeval_handle is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self.d.coalesce_ms / 1000.0
        self._reeval_handle = loop.call_later(delay, self._start_reevaluate)

    def _start_reevaluate(self) -> None:
        self._reeval_handle = None
        if self._reeval_task and not self._reeval_task.done():
            # one at a time: run again once the current pass is over
            self._reeval_task.add_done_callback(lambda _t: self.schedule_reevaluate())
            return
        self._reeval_task = asyncio.get_running_loop().create_task(self.reevaluate())

    # ------------------------------------------------------------------ assembly

    def _candidates(self) -> dict[str, discovery.PathInfo]:
        out: dict[str, discovery.PathInfo] = {}
        for name, rec in self.records.items():
            if name in self.excluded:
                continue
            info = discovery.path_info(rec, self.d.uid_attribute)
            if info is None or not info.wwid:
                continue
            foreign = [h for h in discovery.holders(name) if not self._is_ours_holder(h)]
            if foreign:
                continue  # someone else (LVM, another map, md) uses it: not ours to take
            cand = pfilter.Candidate(
                devnode_name=name,
                wwid=info.wwid,
                vendor=info.vendor,
                product=info.model,
                properties=info.properties,
                protocol=pfilter.protocol_of(info.properties, info.transport),
            )
            blocked, _why = pfilter.is_blacklisted(cand, self.cfg)
            if not blocked:
                out[name] = info
        return out

    def _is_ours_holder(self, holder: str) -> bool:
        return any(mr.model.sysfs == holder for mr in self.maps.values())

    async def reevaluate(self) -> None:
        # one pass at a time, whoever asks (start, udev, admin): a pass that ran while
        # another was creating a map would see its paths held by a not-yet-known array
        async with self._reeval_lock:
            await self._reevaluate()

    async def _reevaluate(self) -> None:
        cands = self._candidates()
        burst, self.udev_events_pending = self.udev_events_pending, 0
        if burst:
            self.event(
                "rescan",
                message=f"re-evaluating {len(cands)} candidate paths after {burst} udev "
                f"event{'s' if burst != 1 else ''}",
            )
        by_wwid: dict[str, list[discovery.PathInfo]] = {}
        for info in cands.values():
            by_wwid.setdefault(info.wwid, []).append(info)
        known = files.read_wwids(self.d.wwids_file) | cfgmod.configured_wwids(self.cfg)
        # paths that went away
        for name in list(self.paths):
            if name not in cands:
                await self._drop_path(name)
        for wwid, infos in sorted(by_wwid.items()):
            if wwid in self.flushed:
                continue
            mr = self._map_for_wwid(wwid, {i.devnum for i in infos})
            if mr is None and not pfilter.should_manage(
                wwid, len(infos), known, self.d.find_multipaths
            ):
                continue
            try:
                await self._ensure_map(wwid, sorted(infos, key=lambda i: i.name), mr)
            except DmpathError as exc:
                self.event("error", mr.model.name if mr else wwid, message=str(exc))
        self.notify(f"STATUS=managing {len(self.maps)} maps over {len(self.paths)} paths")

    def _map_for_wwid(self, wwid: str, devnums: set[str] | None = None) -> MapRuntime | None:
        for mr in self.maps.values():
            if mr.model.wwid == wwid:
                return mr
        # an adopted md array has no WWID until its members are seen: claim it by them
        for mr in self.maps.values():
            if not mr.model.wwid and devnums and devnums & set(mr.devnums):
                mr.model.wwid = wwid
                return mr
        return None

    async def _priority(self, info: discovery.PathInfo, prio: str) -> tuple[int, str]:
        if prio != "alua":
            return 1, ""
        from dmpath.kernel import scsi, sgio

        try:
            tpg = await asyncio.get_running_loop().run_in_executor(
                self.cpool, functools.partial(sgio.path_port_group, info.devnode, 5.0)
            )
        except (DmpathError, OSError):
            return 0, ""
        if tpg is None:
            return 1, ""
        state = tpg.state.name.lower() if tpg.state is not None else f"0x{tpg.access_state:x}"
        return scsi.alua_priority(tpg.access_state, tpg.preferred), state

    async def _ensure_map(
        self, wwid: str, infos: list[discovery.PathInfo], mr: MapRuntime | None
    ) -> None:
        opts = cfgmod.effective_options(self.cfg, wwid, infos[0].vendor, infos[0].model)
        fresh = [i for i in infos if i.name not in self.paths]
        for info in fresh:
            if info.name not in self.paths:
                prio, alua = await self._priority(info, opts.prio)
                self._add_path_runtime(info, prio, alua, opts)
        if mr is None:
            name = await self._choose_name(wwid, opts)
            mr = MapRuntime(
                model=Map(name=name, wwid=wwid, backend=Backend(opts.backend)), opts=opts
            )
            async with mr.lock:
                await self._create(mr, infos)
            return
        async with mr.lock:
            mr.opts = opts
            for info in infos:
                self.paths[info.name].map_name = mr.model.name
            missing = [i for i in infos if i.devnum not in mr.devnums]
            if missing:
                await self._add_members(mr, infos, missing)
            elif fresh:
                # paths of an adopted map: only the kernel knows their states
                await self.refresh(mr, heal=False)
            else:
                self._sync_model(mr)

    async def _choose_name(self, wwid: str, opts: Any) -> str:
        if wwid in self.requested_names:
            return self.requested_names[wwid]
        if opts.alias:
            return str(opts.alias)
        if not self.d.user_friendly_names:
            return wwid

        taken = set(cfgmod.configured_aliases(self.cfg)) | set(self.maps)

        def assign() -> str:
            return files.bind_alias(self.d.bindings_file, wwid, self.d.alias_prefix, taken)

        return str(await self.k(assign))

    def _add_path_runtime(
        self, info: discovery.PathInfo, prio: int, alua: str, opts: Any
    ) -> PathRuntime:
        model = Path(
            name=info.name,
            devnum=info.devnum,
            wwid=info.wwid,
            hctl=info.hctl,
            vendor=info.vendor,
            model=info.model,
            rev=info.rev,
            size_sectors=info.size_sectors,
            transport=info.transport,
            dev_state=info.dev_state,
            checker=str(opts.checker),
            priority=prio,
            alua_state=alua,
            last_change=time.time(),
            interval=self.d.polling_interval,
        )
        pr = PathRuntime(
            info=info,
            model=model,
            checker=PathChecker(info.devnode, str(opts.checker), self.d.checker_timeout),
        )
        self.paths[info.name] = pr
        self.event(
            "path_added", "", info.name, f"{info.name} ({info.devnum}) is a path of {info.wwid}"
        )
        if self.checking:
            pr.task = asyncio.get_running_loop().create_task(self._check_loop(pr))
        return pr

    def _members(self, infos: list[discovery.PathInfo]) -> list[Member]:
        return [Member(i.name, i.devnum, self.paths[i.name].model.priority) for i in infos]

    def _table(self, mr: MapRuntime, infos: list[discovery.PathInfo]) -> Any:
        o = mr.opts
        size = min(i.size_sectors for i in infos)
        table, _groups = build_table(
            size,
            self._members(infos),
            policy=o.path_grouping_policy,
            selector=o.path_selector,
            features=list(o.features),
            hwhandler=o.hardware_handler,
            queueing=str(o.no_path_retry) != "fail",
        )
        return table

    async def _create(self, mr: MapRuntime, infos: list[discovery.PathInfo]) -> None:
        m = mr.model
        if m.backend == Backend.DM:
            how = await self.k(self.dm.create, m.name, m.wwid, self._table(mr, infos))
        else:
            how = await self.k(self.md.create, m.name, [i.devnode for i in infos])
        self.maps[m.name] = mr
        for i in infos:
            self.paths[i.name].map_name = m.name
        # remembered, so strict find_multipaths and the udev helper claim it from now on
        await self.k(files.remember_wwid, self.d.wwids_file, m.wwid)
        await self.refresh(mr, heal=False)
        self.event(
            "map_created",
            m.name,
            message=f"{how} {m.backend.value} map {m.name} "
            f"({m.wwid}) over {', '.join(i.name for i in infos)}",
        )

    async def _add_members(
        self, mr: MapRuntime, infos: list[discovery.PathInfo], new: list[discovery.PathInfo]
    ) -> None:
        m = mr.model
        if m.backend == Backend.DM:
            # keep every path the kernel still holds, plus the new ones
            present = [i for i in infos]
            await self.k(self.dm.reload, m.name, self._table(mr, present))
        else:
            for i in new:
                await self.k(self.md.add, m.name, i.devnode)
        for i in new:
            self.event("path_joined", m.name, i.name, f"{i.name} joined {m.name}")
        await self.refresh(mr, heal=False)

    async def _drop_path(self, name: str) -> None:
        pr = self.paths.pop(name)
        if pr.task:
            pr.task.cancel()
        pr.checker.close()
        self.event("path_removed", pr.map_name, name, f"{name} is gone")
        mr = self.maps.get(pr.map_name)
        if mr is None:
            return
        async with mr.lock:
            rest = [p.info for p in self.paths.values() if p.map_name == mr.model.name]
            if not rest:
                # the last path is gone: leave the map, queueing or failing as configured
                self.event(
                    "alert",
                    mr.model.name,
                    name,
                    f"last path {name} removed: map left in place (no_path_retry="
                    f"{mr.opts.no_path_retry})",
                )
                return
            try:
                if mr.model.backend == Backend.DM:
                    await self.k(self.dm.reload, mr.model.name, self._table(mr, rest))
                else:
                    # md keeps a vanished member as a (faulty) slot until it is removed
                    await self.k(self.md.forget_member, mr.model.name, pr.info.devnode)
                await self.refresh(mr, heal=False)
            except DmpathError as exc:
                self.event("error", mr.model.name, name, f"cannot drop {name}: {exc}")

    # ------------------------------------------------------------------ kernel state

    async def refresh(self, mr: MapRuntime, heal: bool = True) -> None:
        """Re-read the map from the kernel (the truth) and heal if asked."""
        try:
            km = await self.k(self.backend(mr.model.backend).read, mr.model.name)
        except DmpathError as exc:
            self.event("error", mr.model.name, message=f"cannot read map: {exc}")
            return
        self._apply_kernel(mr, km)
        if heal:
            await self.heal(mr)

    def _apply_kernel(self, mr: MapRuntime, km: KernelMap) -> None:
        mr.kernel = km
        m = mr.model
        m.sysfs, m.devnode, m.uuid = km.sysfs, km.devnode, km.uuid
        m.size_sectors, m.open_count = km.size_sectors, km.open_count
        m.features, m.hwhandler, m.queueing = km.features, km.hwhandler, km.queueing
        m.no_path_retry = str(mr.opts.no_path_retry)
        m.failback = str(mr.opts.failback)
        mr.next_group = km.next_group
        mr.devnums = {}
        for devnum, st in km.members.items():
            name = self._name_of(devnum)
            mr.devnums[devnum] = name
            pr = self.paths.get(name)
            if pr is not None:
                pr.map_name = m.name
                if pr.model.kernel_state != st:
                    pr.model.kernel_state = st
                    pr.model.last_change = time.time()
        m.groups = []
        for g in km.groups:
            prio = max(
                (
                    self.paths[n].model.priority
                    for n in (self._name_of(d) for d in g.devnums)
                    if n in self.paths
                ),
                default=0,
            )
            m.groups.append(
                PathGroup(
                    g.number, g.selector, prio, g.state, [self._name_of(d) for d in g.devnums]
                )
            )
            for d in g.devnums:
                pr = self.paths.get(self._name_of(d))
                if pr:
                    pr.model.group = g.number
        self._sync_model(mr)

    def _name_of(self, devnum: str) -> str:
        for pr in self.paths.values():
            if pr.info.devnum == devnum:
                return pr.info.name
        name = os.path.basename(os.path.realpath(f"/sys/dev/block/{devnum}"))
        return name if name and name != devnum else devnum

    def _sync_model(self, mr: MapRuntime) -> None:
        m = mr.model
        members = []
        for devnum, name in mr.devnums.items():
            pr = self.paths.get(name)
            if pr is not None:
                members.append(pr.model)
            else:
                members.append(
                    Path(
                        name=name,
                        devnum=devnum,
                        wwid=m.wwid,
                        kernel_state=KernelState.ACTIVE,
                        check=Check.UNKNOWN,
                    )
                )
        m.paths = members
        if members and not m.vendor:
            m.vendor, m.model, m.rev = members[0].vendor, members[0].model, members[0].rev
        if not m.wwid and members:
            m.wwid = members[0].wwid

    # ------------------------------------------------------------------ checking

    async def _check_loop(self, pr: PathRuntime) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pr.wake.wait(), timeout=pr.model.interval)
            pr.wake.clear()
            fut = loop.run_in_executor(self.cpool, pr.checker.check)
            try:
                check, reason = await asyncio.wait_for(
                    asyncio.shield(fut), timeout=self.d.checker_timeout + 1.0
                )
            except TimeoutError:
                check, reason = Check.PENDING, "check timed out"
                with contextlib.suppress(Exception):
                    await fut  # never two checks of one path at once
            except Exception as exc:  # noqa: BLE001 - a broken check must not kill the loop
                check, reason = Check.PENDING, f"check failed: {exc}"
            await self._on_check(pr, check, reason)

    async def _on_check(self, pr: PathRuntime, check: Check, reason: str) -> None:
        p = pr.model
        now = time.time()
        changed = p.check not in (check, Check.UNKNOWN)
        if check != p.check:
            p.check, p.check_reason = check, reason
            p.last_change = now
            pr.changes.append(now)
            pr.changes[:] = pr.changes[-20:]
            if changed:
                self.event(
                    "check", pr.map_name, p.name, f"{p.name} checker: {check.value} ({reason})"
                )
        p.dev_state = _dev_state(p.name) or p.dev_state
        tight = self.d.polling_interval / 2
        flapping = healing.is_flapping(pr.changes, now)
        p.interval = healing.next_interval(
            p.interval, check, changed or flapping, tight, self.d.max_polling_interval
        )
        mr = self.maps.get(pr.map_name)
        if mr is None:
            return
        if not healing.has_usable_path(mr.model):
            if mr.model.paths and mr.model.paths[0].name == p.name:
                mr.checks_without_path += 1
        else:
            mr.checks_without_path = 0
        needs = healing.plan_paths(mr.model)
        if needs or changed or mr.checks_without_path:
            await self.heal(mr)

    async def heal(self, mr: MapRuntime) -> None:
        async with mr.lock:
            m = mr.model
            be = self.backend(m.backend)
            acted = False
            for a in healing.plan_paths(m):
                try:
                    if isinstance(a, healing.FailPath):
                        dev = a.devnum if m.backend == Backend.DM else f"/dev/{a.path}"
                        await self.k(be.fail, m.name, dev)
                        self.paths_fail_count(a.path)
                        self.event("path_failed", m.name, a.path, a.message)
                        acted = True
                    elif isinstance(a, healing.ReinstatePath):
                        dev = a.devnum if m.backend == Backend.DM else f"/dev/{a.path}"
                        await self.k(be.reinstate, m.name, dev)
                        self.event("path_reinstated", m.name, a.path, a.message)
                        m.alerts[:] = [x for x in m.alerts if not x.startswith(f"{a.path}:")]
                        acted = True
                    elif isinstance(a, healing.Alert):
                        m.alerts.append(a.message)
                        self.event("alert", m.name, a.path, a.message)
                except MemberBusy as exc:
                    self.event("busy", m.name, getattr(a, "path", ""), f"{exc} (will retry)")
                except DmpathError as exc:
                    self.event("error", m.name, getattr(a, "path", ""), str(exc))
            if acted:
                km = await self.k(be.read_states, m.name, mr.kernel)
                self._apply_kernel(mr, km)
            if healing.has_usable_path(m):
                m.alerts[:] = [x for x in m.alerts if healing.LAST_PATH_ALERT not in x]
            if m.backend == Backend.DM:
                await self._dm_policies(mr)

    def paths_fail_count(self, name: str) -> None:
        pr = self.paths.get(name)
        if pr:
            pr.model.fail_count += 1

    async def _dm_policies(self, mr: MapRuntime) -> None:
        m = mr.model
        now = time.time()
        best = healing.best_group(m)
        if best and best != mr.next_group:
            if mr.best_usable_since is None:
                mr.best_usable_since = now
        else:
            mr.best_usable_since = None
        current = mr.next_group or next(
            (g.number for g in m.groups if g.state == GroupState.ACTIVE), 0
        )
        actions: list[healing.Action] = []
        actions += healing.plan_failback(
            m, current, str(mr.opts.failback), mr.best_usable_since, now
        )
        actions += healing.plan_no_path(
            m, str(mr.opts.no_path_retry), mr.checks_without_path, m.queueing
        )
        for a in actions:
            try:
                if isinstance(a, healing.SwitchGroup):
                    await self.k(self.dm.switch_group, m.name, a.group)
                    mr.next_group = a.group
                    mr.best_usable_since = None
                    self.event("switch_group", m.name, message=a.message)
                elif isinstance(a, healing.SetQueueing):
                    await self.k(self.dm.set_queueing, m.name, a.enabled)
                    m.queueing = a.enabled
                    self.event("queueing", m.name, message=a.message)
            except DmpathError as exc:
                self.event("error", m.name, message=str(exc))

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> Snapshot:
        mapped = {p.name for mr in self.maps.values() for p in mr.model.paths}
        return Snapshot(
            source="daemon",
            pid=os.getpid(),
            started=self.started,
            config_file=self.config_path,
            maps=[mr.model for mr in sorted(self.maps.values(), key=lambda r: r.model.name)],
            unmapped_paths=[pr.model for n, pr in sorted(self.paths.items()) if n not in mapped],
            events=list(self.events),
        )

    # ------------------------------------------------------------------ admin operations

    def find_path(self, spec: str) -> PathRuntime:
        name = spec.removeprefix("/dev/")
        for pr in self.paths.values():
            if pr.info.name == name or pr.info.devnum == spec:
                return pr
        raise NotFoundError(f"{spec}: not a path dmpathd manages")

    def find_map(self, name: str) -> MapRuntime:
        mr = self.maps.get(name)
        if mr is None:
            raise NotFoundError(f"{name}: no such map")
        return mr

    async def handle(self, op: str, args: dict[str, Any], peer: Any) -> Any:
        """A control-socket request (already validated and authorised by the server)."""
        method = getattr(self, "op_" + op, None)
        if method is None:
            raise NotFoundError(f"unknown operation {op}")
        return await method(**args)

    async def op_ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": 1}

    async def op_show(self) -> dict[str, Any]:
        return snapshot_to_dict(self.snapshot())

    async def op_show_config(self) -> dict[str, Any]:
        return cfgmod.config_to_dict(self.cfg)

    async def op_events(self, since: float = 0.0, limit: int | None = None) -> list[Any]:
        evs = [e for e in self.events if e.time > since]
        if limit:
            evs = evs[-limit:]
        return [e.__dict__ for e in evs]

    async def op_switch_group(self, map: str, group: int) -> dict[str, Any]:
        mr = self.find_map(map)
        if not any(g.number == group for g in mr.model.groups):
            raise NotFoundError(f"{mr.model.name} has no path group {group}")
        await self.k(self.backend(mr.model.backend).switch_group, mr.model.name, group)
        mr.next_group = group
        self.event("switch_group", mr.model.name, message=f"admin: switch to group {group}")
        return {"map": mr.model.name, "group": group}

    async def op_queueing(self, map: str, enabled: bool) -> dict[str, Any]:
        mr = self.find_map(map)
        await self.k(self.backend(mr.model.backend).set_queueing, mr.model.name, enabled)
        await self.refresh(mr, heal=False)
        state = "on" if enabled else "off"
        self.event("queueing", mr.model.name, message=f"admin: queueing {state}")
        return {"map": mr.model.name, "queueing": enabled}

    async def op_reconfigure(self) -> dict[str, Any]:
        return await self.reconfigure()

    async def op_remove_path(self, path: str) -> dict[str, Any]:
        pr = self.find_path(path)
        mr = self.maps.get(pr.map_name)
        if mr is not None and mr.model.backend == Backend.MD:
            # md keeps members until told: fail and hot-remove (EBUSY while in use)
            async with mr.lock:
                await self.k(self.md.remove_member, mr.model.name, pr.info.devnode)
        self.excluded.add(pr.info.name)
        await self._drop_path(pr.info.name)
        return {"path": pr.info.name, "removed": True}

    def _path_record(self, spec: str) -> discovery.PathInfo:
        """A block device named like sdb, /dev/sdb or 8:16, as a candidate path."""
        name = spec.removeprefix("/dev/")
        if ":" in name:
            name = os.path.basename(os.path.realpath(f"/sys/dev/block/{name}"))
        rec = self.records.get(name)
        if rec is None:
            raise NotFoundError(f"{spec}: no such block device")
        info = discovery.path_info(rec, self.d.uid_attribute)
        if info is None or not info.wwid:
            raise NotFoundError(f"{spec}: not usable as a path (no WWID)")
        return info

    async def op_add_path(self, path: str) -> dict[str, Any]:
        info = self._path_record(path)
        self.excluded.discard(info.name)
        await self.k(files.remember_wwid, self.d.wwids_file, info.wwid)
        self.flushed.discard(info.wwid)
        await self.reevaluate()
        return {"path": info.name, "wwid": info.wwid}

    async def op_create_map(
        self, path: str | None = None, wwid: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        if not wwid:
            wwid = self._path_record(str(path)).wwid
        if name:
            dmsetup.validate_map_name(name)
            self.requested_names[wwid] = name
        await self.k(files.remember_wwid, self.d.wwids_file, wwid)
        self.flushed.discard(wwid)
        await self.reevaluate()
        made = self._map_for_wwid(wwid)
        if made is None:
            raise NotFoundError(f"no usable path of {wwid}")
        return {"map": made.model.name, "wwid": wwid}

    async def op_fail_path(self, path: str, force: bool = False) -> dict[str, Any]:
        pr = self.find_path(path)
        mr = self.maps.get(pr.map_name)
        if mr is None:
            raise NotFoundError(f"{pr.info.name} is in no map")
        others = [
            p
            for p in mr.model.paths
            if p.name != pr.info.name and p.kernel_state == KernelState.ACTIVE
        ]
        if not others and not force:
            raise PolicyRefusal(
                f"{pr.info.name} is the last working path of {mr.model.name}: "
                "failing it stops all I/O (use --force)"
            )
        async with mr.lock:
            be = self.backend(mr.model.backend)
            dev = pr.info.devnum if mr.model.backend == Backend.DM else pr.info.devnode
            await self.k(be.fail, mr.model.name, dev)
            pr.model.fail_count += 1
            pr.model.held = True  # the admin's word stands until they reinstate it
            self.event("path_failed", mr.model.name, pr.info.name, f"admin: failed {pr.info.name}")
            km = await self.k(be.read_states, mr.model.name, mr.kernel)
            self._apply_kernel(mr, km)
        return {"map": mr.model.name, "path": pr.info.name, "kernel_state": pr.model.kernel_state}

    async def op_reinstate_path(self, path: str) -> dict[str, Any]:
        pr = self.find_path(path)
        mr = self.maps.get(pr.map_name)
        if mr is None:
            raise NotFoundError(f"{pr.info.name} is in no map")
        async with mr.lock:
            be = self.backend(mr.model.backend)
            dev = pr.info.devnum if mr.model.backend == Backend.DM else pr.info.devnode
            await self.k(be.reinstate, mr.model.name, dev)
            pr.model.held = False
            self.event(
                "path_reinstated", mr.model.name, pr.info.name, f"admin: reinstated {pr.info.name}"
            )
            km = await self.k(be.read_states, mr.model.name, mr.kernel)
            self._apply_kernel(mr, km)
        pr.wake.set()  # if it is really dead the checker fails it again
        return {"map": mr.model.name, "path": pr.info.name, "kernel_state": pr.model.kernel_state}

    async def op_flush_map(self, map: str, force: bool = False) -> dict[str, Any]:
        name = map
        mr = self.find_map(name)
        async with mr.lock:
            await self.refresh(mr, heal=False)
            if mr.model.open_count and not force:
                raise PolicyRefusal(
                    f"{name} is open ({mr.model.open_count} holders): not flushing (use --force)"
                )
            await self.k(self.backend(mr.model.backend).flush, name, force)
        del self.maps[name]
        self.flushed.add(mr.model.wwid)
        for pr in list(self.paths.values()):
            if pr.map_name == name:
                pr.map_name = ""
        self.event("map_flushed", name, message=f"flushed {name}")
        return {"map": name, "flushed": True}

    async def reconfigure(self) -> dict[str, Any]:
        """Re-read the config; an invalid one is reported and the old one stays in force."""
        try:
            new = await self.k(cfgmod.load_config, self.config_path)
        except DmpathError as exc:
            self.event("error", message=f"reconfigure refused: {exc}")
            raise
        self.cfg = new
        for mr in self.maps.values():
            mr.opts = cfgmod.effective_options(new, mr.model.wwid, mr.model.vendor, mr.model.model)
        self.event("reconfigured", message=f"configuration reloaded from {self.config_path}")
        await self.reevaluate()
        return {"reloaded": self.config_path}


def _dev_state(name: str) -> str:
    try:
        with open(f"/sys/block/{name}/device/state") as fh:
            return fh.read().strip()
    except OSError:
        return ""


async def serve(daemon: Daemon, notify: Callable[[str], object]) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the configuration."""
    from dmpath.daemon.control import ControlServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def hup() -> None:
        async def reload() -> None:
            with contextlib.suppress(DmpathError):
                await daemon.reconfigure()

        daemon.spawn(reload())

    loop.add_signal_handler(signal.SIGHUP, hup)
    daemon.notify = notify
    server = ControlServer(daemon.socket_path, daemon.handle)
    await server.start()
    try:
        async with assembly_lock(daemon.socket_path):
            await _serve_locked(daemon, notify, stop)
    finally:
        await server.stop()


async def _serve_locked(
    daemon: Daemon, notify: Callable[[str], object], stop: asyncio.Event
) -> None:
    await daemon.start()
    notify("READY=1")
    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    interval = watchdog_usec / 2e6 if watchdog_usec else 0
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval or 3600)
            except TimeoutError:
                notify("WATCHDOG=1")
    finally:
        notify("STOPPING=1")
        await daemon.stop()


@contextlib.asynccontextmanager
async def assembly_lock(socket_path: str) -> AsyncIterator[None]:
    """Hold the one-assembler-at-a-time lock (see ``dmpath.daemon.lock``), waiting up to
    ASSEMBLY_WAIT for a holder to finish: a one-shot assembly started by udev may be
    making its map as the daemon starts."""
    lock = AssemblyLock(lock_path(socket_path))
    await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(lock.acquire, ASSEMBLY_WAIT)
    )
    try:
        yield
    finally:
        lock.release()


async def assemble_once(daemon: Daemon) -> list[Event]:
    """``dmpathd --once``: adopt, scan, assemble what is missing, and return; no checking.

    What the udev rule runs when there is no dmpathd service to start. Paths join maps
    and maps are made exactly as the daemon would; nothing is failed or reinstated (that
    needs the checker loop of a running daemon). Returns the events of the pass.
    """
    async with assembly_lock(daemon.socket_path):
        try:
            await daemon.adopt()
            await daemon.scan()
        finally:
            await daemon.stop()
    return list(daemon.events)
