"""dmpathd's event loop: the one owner of the daemon's state, and the executor of what
the reconciler decides.

Everything arrives as an event on one asyncio loop: udev events (coalesced into one
re-evaluation per burst), checker results (checks run in worker threads with a timeout),
dm path uevents from the kernel, control-socket requests and signals. What a map's paths
need (fail, reinstate, failback, queueing, timers) is decided by the pure reconciler
(``dmpath.policy.reconcile``): every event about a map goes through ``_feed``, and the
effects it returns are carried out here, kernel work in worker threads (in order per map,
side by side across maps), their results fed back as events. Assembly (maps made, paths
joining and leaving) and admin requests claim a map from the reconciler while they change
it, so nothing it planned reaches a table that was replaced meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import functools
import heapq
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dmpath import config as cfgmod
from dmpath.config import Backend
from dmpath.daemon import discovery, journal, metrics
from dmpath.daemon.backends import DmBackend, MdBackend, kernel_dm_ops
from dmpath.daemon.checkers import Checker, PathChecker
from dmpath.daemon.checkpool import CheckJob as PoolJob
from dmpath.daemon.checkpool import CheckPool, PoolClosed
from dmpath.daemon.history import HistoryFile
from dmpath.daemon.links import LinkChange, LinkWatch
from dmpath.daemon.lock import AssemblyLock, lock_path
from dmpath.errors import DmpathError, PolicyRefusal
from dmpath.kernel import dmsetup, nvme, sockdiag, sysfs, udev
from dmpath.kernel.dmtable import MultipathTable
from dmpath.kernel.mdadm import MemberBusy
from dmpath.model import (
    Check,
    Event,
    KernelMap,
    KernelState,
    Map,
    Path,
    Snapshot,
    snapshot_to_dict,
)
from dmpath.policy import (
    alua,
    claim,
    files,
    healing,
    history,
    intent,
    liveness,
    polling,
    reconcile,
    reshape,
    retry,
    tcpstall,
)
from dmpath.policy import nvme as pnvme
from dmpath.policy.assembly import Member, build_table
from dmpath.policy.marginal import MarginalPolicy
from dmpath.protocol import OPS, BadRequest, validate_args
from dmpath.protocol import NotFound as NotFoundError

log = logging.getLogger("dmpathd")

#: events kept in the history but logged only at debug level: a coldplug of a thousand
#: paths said "sdX is a path of WWID" a thousand times, and each map's "created ... over"
#: line names its paths already
QUIET_KINDS = frozenset({"path_added"})
#: event kinds logged as warnings
WARNING_KINDS = frozenset({"path_failed", "alert", "error", "watchdog"})
T = TypeVar("T")

#: the newest events a snapshot (``show``, ``mpathctl status``) carries; ``events`` gives
#: the whole history (``history_max_events``)
SNAPSHOT_EVENTS = 1000
#: a kernel operation slower than this (seconds) raises an alert; it is still awaited
SLOW_KERNEL_OP = 30.0
#: a part of the daemon (the loop, the check pool, the kernel workers) with a watchdog
#: probe out and nothing finished for this long is stuck: WATCHDOG=1 is withheld (a
#: kernel operation is an alert at SLOW_KERNEL_OP; twice that with nothing done is not
#: a slow device any more)
STUCK_AFTER = 2 * SLOW_KERNEL_OP
#: the key of the watchdog's no-op probe in the check pool
PROBE_KEY = "dmpathd-watchdog"
#: how long a new map's /dev/mapper node may take to appear (udev makes it)
NODE_WAIT = 30.0
#: how long an assembler waits for another one to finish before giving up (seconds)
ASSEMBLY_WAIT = 60.0


#: dm operations on different maps run side by side (in order per map) in this many
#: threads: a fabric event touches many maps at once, and each dmsetup call is mostly a
#: wait (process start, udev); more threads than this only contend for the CPUs
DM_WORKERS = 4
#: how late a timed check may start so that those due close together go out together
CHECK_TICK = 0.05
#: threads for path checks; a hung check's thread is replaced, so these stay free
CHECK_WORKERS = 8
#: a check still running after this many seconds gives its thread up to the others (the
#: pool starts another); a test unit ready answers in milliseconds, so one second is a
#: stall, not a verdict: the verdict waits for checker_timeout, counted from its start
CHECK_STALL = 1.0
#: at most this many check threads, hung ones included: one per hung path in a storm
MAX_CHECK_THREADS = 2048
#: how often the iSCSI sessions' TCP connections are looked at (one sock_diag dump)
TCP_POLL = 0.5
#: the iSCSI port, for a session whose portal's port sysfs does not say
ISCSI_PORT = 3260
#: a session whose connection stalled holds its I/O this long (recovery_tmo) before it
#: fails it over, while another path carries each of its maps
STALLED_RECOVERY_TMO = 1
#: a shortened recovery_tmo whose session was never seen FAILED is put back after this
SHORT_RECOVERY_WAIT = 30.0


def _set_timers(
    jobs: list[tuple[sysfs.TransportTimer, int]],
) -> list[tuple[str | None, OSError | None]]:
    """Off the loop, in order: each timer set; (its value before or None, the error)."""
    out: list[tuple[str | None, OSError | None]] = []
    for timer, seconds in jobs:
        try:
            out.append((sysfs.set_timer(timer, seconds), None))
        except OSError as exc:
            out.append((None, exc))
    return out


def _path_size_now(name: str) -> int:
    return sysfs.read_path_facts(name).size_sectors


@dataclass
class PathRuntime:
    info: discovery.PathInfo
    model: Path
    checker: Checker
    map_name: str = ""
    #: monotonic time the check now out for the path was issued
    check_issued_at: float = 0.0
    #: the network interface the path's transport leaves by (0: none known)
    link: int = 0
    #: the iSCSI session the path runs over ("" if none)
    session: str = ""


@dataclass
class MapRuntime:
    model: Map
    opts: cfgmod.MapOptions
    #: the reconciler's state of the map (healing, timed policies, echoes)
    health: reconcile.MapHealth
    #: set while the reconciler holds no work for the map: claims wait for it
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    #: a heal due later (deferred failback, no_path_retry running out) on a quiet map
    timer: asyncio.TimerHandle | None = None
    timer_at: float = 0.0

    @classmethod
    def new(cls, model: Map, opts: cfgmod.MapOptions) -> MapRuntime:
        mr = cls(model, opts, reconcile.MapHealth(model.name, model.backend))
        mr.set_opts(opts)
        mr.idle.set()
        return mr

    def set_opts(self, opts: cfgmod.MapOptions) -> None:
        self.opts = opts
        self.health.failback = str(opts.failback)
        self.health.no_path_retry = str(opts.no_path_retry)

    @property
    def devnums(self) -> dict[str, str]:
        """devnum -> path name of the map's members, as the kernel last said."""
        return self.health.members


def _scan_records(
    recs: list[udev.UdevRecord], uid_attributes: tuple[str, ...], recheck: list[str]
) -> tuple[dict[str, discovery.PathInfo | None], dict[str, list[str]]]:
    """Off the event loop: each record's path facts (sysfs, and SG_IO for a disk udev
    gave no WWID), and the holders of every record and of ``recheck`` (known candidates
    that another stack may have claimed since). Reads only; decides nothing."""
    infos: dict[str, discovery.PathInfo | None] = {}
    holders: dict[str, list[str]] = {}
    for rec in recs:
        info = discovery.path_info(rec, uid_attributes)
        infos[rec.sys_name] = info if info is not None and info.wwid else None
        holders[rec.sys_name] = discovery.holders(rec.sys_name)
    for name in recheck:
        holders[name] = discovery.holders(name)
    return infos, holders


CheckJob = PoolJob[tuple[Check, str, str]]
ScanRecords = Callable[
    [list[udev.UdevRecord], tuple[str, ...], list[str]],
    tuple[dict[str, discovery.PathInfo | None], dict[str, list[str]]],
]


def _queueing_words(enabled: bool | None) -> str:
    """An admin's queueing request in words (events)."""
    return "as no_path_retry says" if enabled is None else "on" if enabled else "off"


class Daemon:
    def __init__(
        self,
        cfg: cfgmod.Config,
        config_path: str,
        socket_path: str | None = None,
        checking: bool = True,
    ) -> None:
        self.cfg = cfg
        # False for a one-shot assembly (``dmpathd --once``): maps are made, nobody checks
        self.checking = checking
        #: set once the kernel's existing maps are adopted: until then a request would
        #: be answered as if there were none (see ``serve``)
        self.adopted = asyncio.Event()
        #: the coldplug's first pass is done: every disk udev knows is read and every
        #: map's paths are known. Admin actions wait for it: before it a path may be
        #: unread yet (seen: add_path or remove_path right after a start said the disk
        #: was unknown) and a map's paths unseen (seen: a flush then left the map's model
        #: with no working path)
        self.scanned = asyncio.Event()
        self.config_path = config_path
        self.socket_path = socket_path or cfg.defaults.socket
        self.dm = DmBackend(cfg.defaults.dm_uuid_prefix, kernel_dm_ops())
        self.md = MdBackend()
        self.paths: dict[str, PathRuntime] = {}
        self.by_devnum: dict[str, PathRuntime] = {}
        self.maps: dict[str, MapRuntime] = {}
        self.by_wwid: dict[str, MapRuntime] = {}
        self.records: dict[str, udev.UdevRecord] = {}
        #: admissible paths (facts read, WWID known, not foreign, not blacklisted) by name
        #: and by WWID; kept up to date incrementally, record by record
        self.cands: dict[str, discovery.PathInfo] = {}
        self.cands_by_wwid: dict[str, dict[str, discovery.PathInfo]] = {}
        self.dirty: set[str] = set()  # records changed since the last pass
        self.touched: set[str] = set()  # WWIDs an admin request asks to look at again
        self._full_pass = True  # the next pass looks at everything (start, reconfigure)
        #: the admin's standing requests (admin_state_file): failed, removed paths,
        #: queueing, flushed maps; read at adoption
        self.intent = intent.AdminIntent()
        self._intent_read = False
        #: dm maps found suspended that would not resume: tried again until they do
        self._resuming: set[str] = set()
        #: WWIDs whose map could not be made or grown: failures in a row (tried again
        #: later, see ``_assemble_later``)
        self._retries: dict[str, int] = {}
        #: maps flush_on_last_del kept because they were open: flushed once they are not
        self._last_del: set[str] = set()
        #: maps whose partition maps are being brought in line, and those asked again
        self._partition_syncs: set[str] = set()
        self._partition_again: set[str] = set()
        self.requested_names: dict[str, str] = {}  # wwid -> name asked for by create_map
        self.tuned: dict[str, int] = {}  # transport timer's sysfs file -> seconds written
        #: map -> why its ALUA states are to be read again; maps whose read is under way
        self._alua_due: dict[str, str] = {}
        self._alua_busy: set[str] = set()
        self.links: LinkWatch | None = None  # link changes and route lookups (not in sims)
        #: ``start`` allows a link watch (sims and ``--once`` have none); it is started
        #: by the first network path, once (a watch that fails or ends is not retried)
        self._watch_links = False
        self._links_start: asyncio.Task[None] | None = None
        self._aborted: set[int] = set()  # cookies of the stalled connections aborted
        #: session -> (its recovery_tmo file, the value to put back once it logs in again,
        #: when it was shortened (monotonic; 0.0 once the session has been seen FAILED:
        #: the kernel marks it a moment after the abort, and a session not yet marked is
        #: not one that came back)
        self._short_recovery: dict[str, tuple[sysfs.TransportTimer, int, float]] = {}
        self.events: collections.deque[Event] = collections.deque(
            maxlen=cfg.defaults.history_max_events
        )
        #: where events also go, once ``open_history`` has run (not for ``--once``)
        self.history: HistoryFile | None = None
        self.journal: journal.Journal | None = None
        self.started = time.time()
        self.kpool = ThreadPoolExecutor(DM_WORKERS, thread_name_prefix="kernel")
        self.mdpool = ThreadPoolExecutor(1, thread_name_prefix="kernel-md")
        self.iopool = ThreadPoolExecutor(2, thread_name_prefix="io")
        self.cpool = ThreadPoolExecutor(8, thread_name_prefix="prio")
        #: heartbeats for the watchdog (dmpath.policy.liveness): monotonic time each part
        #: last finished a job, the probes out (part -> when sent), the parts found stuck
        self.progress: dict[str, float] = dict.fromkeys(liveness.PARTS, 0.0)
        self._probes: dict[str, float] = {}
        self._stuck: tuple[str, ...] = ()
        d = cfg.defaults
        self.sched = polling.CheckScheduler(d.polling_interval, d.max_polling_interval)
        self.marginal = _marginal_policy(d)
        #: what the metrics take from events (the rest is read from the model when scraped)
        self.metrics = metrics.Recorder(self._path_named)
        # a hung check holds its thread until the kernel lets go; the pool starts another
        self.checks: CheckPool[tuple[Check, str, str]] = CheckPool(
            CHECK_WORKERS,
            hang_after=min(CHECK_STALL, d.checker_timeout),
            max_threads=MAX_CHECK_THREADS,
        )
        self._sched_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[str, CheckJob] = {}  # path -> its check now running
        self._deadlines: list[tuple[float, int, str, CheckJob]] = []  # heap: time-outs
        self._seq = itertools.count()
        self._done: collections.deque[tuple[PathRuntime, CheckJob]] = collections.deque()
        self._done_lock = threading.Lock()
        self._done_signalled = False
        self._sched_wake = asyncio.Event()  # (binds to the running loop at first use)
        self._op_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._reeval_handle: asyncio.TimerHandle | None = None
        self._reeval_task: asyncio.Task[None] | None = None
        self._reeval_lock = asyncio.Lock()
        self.udev_events_pending = 0  # disk events since the last pass (one pass per burst)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.monitor: udev.Monitor | None = None
        self.notify: Callable[[str], object] = lambda _s: None
        # how the engine sees the world: the simulation (dmpath.sim) swaps these
        self.node_exists: Callable[[str], bool] = os.path.exists
        self.scan_records: ScanRecords = _scan_records
        self.enumerate_disks: Callable[[], list[udev.UdevRecord]] = udev.enumerate_block_disks
        self.make_checker: Callable[[discovery.PathInfo, str], Checker] = lambda info, kind: (
            PathChecker(
                info.devnode,
                kind,
                self.d.checker_timeout,
                sysfs.transport_state(info.properties.get("DEVPATH", "")),
            )
        )
        self.read_native: Callable[[], list[nvme.NativeSubsystem]] = nvme.read_native
        #: a path's size now, in sectors (``resize_map``; the simulation has its own)
        self.path_size: Callable[[str], int] = _path_size_now

    # ------------------------------------------------------------------ helpers

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, keeping a reference until it is done (once
        the daemon is stopping, nothing new starts)."""
        if self._stopping:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A background task ended: a failure is an event (and the log), never a silent
        "exception was never retrieved" while a map waits for a heal that died."""
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task failed", exc_info=exc)
            self.event("error", message=f"internal: {type(exc).__name__}: {exc}")

    async def k(self, fn: Callable[..., T], *args: Any, key: str | None = None, **kw: Any) -> T:
        """Run a kernel operation in a kernel worker thread: in order per map (``key``,
        by default the map name in the first argument), side by side across maps.

        md operations get a worker of their own: mdadm opens the array, and an array whose
        every path is dead retries its I/O forever, so that open can hang in D state.
        It must not take the dm maps' healing down with it.
        """
        loop = asyncio.get_running_loop()
        is_md = getattr(fn, "__self__", None) is self.md
        pool = self.mdpool if is_md else self.kpool
        if key is None:
            key = args[0] if args and isinstance(args[0], str) else ""
        lock = self._op_locks.setdefault(("md" if is_md else "dm", key), asyncio.Lock())
        call = functools.partial(fn, *args, **kw)
        async with lock:
            fut = loop.run_in_executor(pool, call if is_md else functools.partial(self._beat, call))
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

    def _beat(self, call: Callable[[], T]) -> T:
        """In a dm kernel worker: run ``call``, then record the workers' heartbeat (an
        operation that failed still returned: the worker is not stuck)."""
        try:
            return call()
        finally:
            self.progress[liveness.KERNEL] = time.monotonic()

    def alive(self) -> bool:
        """One look of the watchdog (on the loop): a no-op probe to each part that has
        none out, then whether every part has shown progress lately (WATCHDOG=1 may be
        sent). A part found stuck, or answering again, is an event, once."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        self.progress[liveness.CHECKS] = max(self.progress[liveness.CHECKS], self.checks.progress)

        def answered(part: str) -> None:
            self._probes.pop(part, None)
            self.progress[part] = max(self.progress[part], time.monotonic())

        def from_thread(part: str) -> Callable[[object], None]:
            def done(_f: object) -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed at a stop
                    loop.call_soon_threadsafe(answered, part)

            return done

        if liveness.LOOP not in self._probes:
            self._probes[liveness.LOOP] = now
            loop.call_soon(answered, liveness.LOOP)
        if liveness.CHECKS not in self._probes and not self._stopping:
            self._probes[liveness.CHECKS] = now
            probe = self.checks.submit(PROBE_KEY, _no_check)
            probe.add_done_callback(from_thread(liveness.CHECKS))
        if liveness.KERNEL not in self._probes and not self._stopping:
            self._probes[liveness.KERNEL] = now
            self.kpool.submit(_noop).add_done_callback(from_thread(liveness.KERNEL))
        v = liveness.judge(self.progress, self._probes, now, STUCK_AFTER, self._stuck)
        self._stuck = v.stuck
        for part in v.newly_stuck:
            self.event(
                "watchdog",
                message=f"the {part} has finished nothing for {STUCK_AFTER:g} s: WATCHDOG=1 "
                "withheld (systemd restarts dmpathd once WatchdogSec runs out)",
            )
        for part in v.recovered:
            self.event("watchdog", message=f"the {part} makes progress again: WATCHDOG=1 resumed")
        if v.newly_stuck:
            self.notify(f"STATUS=stuck: {', '.join(v.stuck)}")
        return v.ping

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking reads and writes that are not kernel operations (sysfs, state files):
        off the loop, so a slow disk or a large scan never stalls checks or the socket."""
        return await asyncio.get_running_loop().run_in_executor(
            self.iopool, functools.partial(fn, *args)
        )

    def event(self, kind: str, map_name: str = "", path: str = "", message: str = "") -> None:
        ev = Event(time.time(), kind, map_name, path, message)
        self.events.append(ev)
        if self.history is not None:
            self.history.append(ev)
        level = logging.WARNING if kind in WARNING_KINDS else logging.INFO
        if kind in QUIET_KINDS:
            level = logging.DEBUG
        if not log.isEnabledFor(level):
            return
        text = f"{map_name}: {message or kind}" if map_name else message or kind
        if self.journal is not None and self.journal.takes(ev, text, level):
            return  # in the journal as a structured entry: the log line would repeat it
        log.log(level, "%s", text)

    async def open_history(self) -> None:
        """Load the events of earlier runs from ``history_file`` (this run's are appended
        to it from now on), open the journal, and record the start."""
        d = self.d
        earlier: list[Event] = []
        if d.history_file:
            store = HistoryFile(d.history_file, d.history_max_events)
            earlier = await self.io(store.load)
            self.history = store if store.open else None
        self.events = collections.deque([*earlier, *self.events], maxlen=d.history_max_events)
        self.journal = journal.Journal.connect()
        kept = d.history_file if self.history is not None else ""
        self.event(history.STARTED, message=history.start_message(earlier, os.getpid(), kept))

    async def close_history(self) -> None:
        """Record the stop and write what is queued for the history file."""
        self.event(history.STOPPED, message=f"dmpathd stopped (pid {os.getpid()})")
        if self.history is not None:
            # the daemon's own pools are shut down by now
            await asyncio.get_running_loop().run_in_executor(None, self.history.close)

    def backend(self, b: Backend) -> DmBackend | MdBackend:
        return self.dm if b == Backend.DM else self.md

    @property
    def d(self) -> cfgmod.Defaults:
        return self.cfg.defaults

    def _register_map(self, mr: MapRuntime) -> None:
        self.maps[mr.model.name] = mr
        if mr.model.wwid:
            self.by_wwid[mr.model.wwid] = mr

    def _unregister_map(self, name: str) -> MapRuntime | None:
        mr = self.maps.pop(name, None)
        if mr is not None:
            if self.by_wwid.get(mr.model.wwid) is mr:
                del self.by_wwid[mr.model.wwid]
            if mr.timer is not None:
                mr.timer.cancel()
        return mr

    # ------------------------------------------------------------------ start/stop

    async def start(self) -> None:
        await self.adopt()
        self.adopted.set()
        self.monitor = udev.Monitor.from_netlink()
        self.monitor.start()
        loop = asyncio.get_running_loop()
        loop.add_reader(self.monitor.fileno(), self._on_udev)
        self._watch_links = True
        if self.checking:
            self.spawn(self._watch_tcp())
        await self.scan()

    async def scan(self) -> None:
        """Coldplug: every disk udev knows now, then one re-evaluation."""
        try:
            for rec in await self.io(self.enumerate_disks):
                self.records[rec.sys_name] = rec
            self._full_pass = True
            await self.reevaluate()
        finally:
            self.scanned.set()  # a failed pass is reported; requests are not held for good

    async def stop(self) -> None:
        """Stop checking; leave every map as it is (they keep working without us)."""
        self._stopping = True
        if self.monitor is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.monitor.fileno())
        for mr in self.maps.values():
            if mr.timer is not None:
                mr.timer.cancel()
        if self._sched_task is not None:
            self._sched_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sched_task
        if self._links_start is not None:
            self._links_start.cancel()
            await asyncio.gather(self._links_start, return_exceptions=True)
        if self.links is not None:
            await self.links.stop()
        # heals and passes still under way stop following up (a kernel operation already
        # in a worker finishes there: kpool is joined below), rather than failing on the
        # pools shut down under them
        if self._reeval_handle is not None:
            self._reeval_handle.cancel()
        pending = list(self._tasks)
        if self._reeval_task is not None:
            pending.append(self._reeval_task)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        # checkers are not closed one by one: a check hung on a dead device would hold
        # the close (and the stop) up; the descriptors go with the process
        self.checks.shutdown()
        self.cpool.shutdown(wait=False, cancel_futures=True)
        self.iopool.shutdown(wait=False, cancel_futures=True)
        # an md operation stuck in D state must not keep the daemon from stopping
        self.mdpool.shutdown(wait=False, cancel_futures=True)
        self.kpool.shutdown(wait=True)

    # ------------------------------------------------------------------ adoption

    async def adopt(self) -> None:
        """Take back maps made by an earlier dmpathd: read them, change nothing (but a
        map left suspended, which is resumed)."""
        await self._read_intent()
        ours = await self.k(self.dm.read_ours)
        for name in await self.k(self.dm.half_made, set(ours), key=""):
            # a create cut short (the daemon killed between the device and its table):
            # its name would block the create that makes it whole
            try:
                await self.k(self.dm.flush, name, False)
            except DmpathError as exc:
                why = f"cannot be removed: {exc}; run 'dmsetup remove {name}'"
            else:
                why = "removed, to be made again"
            self.event("alert", name, message=f"{name} had no table (a create cut short): {why}")
        for name, km in ours.items():
            wwid = self.dm.wwid_of(km.uuid) or ""
            mr = self._install_map(name, wwid, Backend.DM, km)
            self.event("map_adopted", name, message=f"adopted dm map {name} ({wwid})")
            # a reload cut short (a crash between its suspend and its resume) left it so
            await self._resume_if_suspended(name, "found suspended at start")
            await self._ensure_data_map(mr)
            self._partitions_later(name, "adopted")
        try:
            md_maps = await self.k(self.md.list_ours)
        except DmpathError as exc:
            log.debug("md adoption skipped: %s", exc)
            md_maps = {}
        for name in md_maps:
            km = await self.k(self.md.read, name)
            self._install_map(name, "", Backend.MD, km)
            self.event("map_adopted", name, message=f"adopted md array {name} ({km.sysfs})")

    async def _resume_if_suspended(self, name: str, why: str) -> None:
        """A suspended map holds every I/O sent to it until it is resumed: a map of ours is
        never left so. Resumed now; if the kernel refuses, tried again every polling
        interval, each failure an alert naming the command that would do it, until it is
        running again or gone."""
        if name in self._resuming or await self._try_resume(name, why):
            return
        self._resuming.add(name)
        self.spawn(self._keep_resuming(name, why))

    async def _keep_resuming(self, name: str, why: str) -> None:
        try:
            while True:
                await asyncio.sleep(self.d.polling_interval)
                if await self._try_resume(name, why):
                    return
        finally:
            self._resuming.discard(name)

    async def _try_resume(self, name: str, why: str) -> bool:
        """Resume dm map ``name`` if it is suspended; False (and an alert) if it still is."""
        mr = self.maps.get(name)
        if mr is None or mr.model.backend != Backend.DM:
            return True
        try:
            if not await self.k(self.dm.suspended, name):
                return True
            await self.k(self.dm.resume, name)
        except DmpathError as exc:
            self.event(
                "alert",
                name,
                message=f"{name} is suspended ({why}): all I/O on it hangs; resume failed "
                f"({exc}); trying again every {self.d.polling_interval:g} s, or run "
                f"'dmsetup resume {name}'",
            )
            return False
        self.event("map_resumed", name, message=f"{name} was suspended ({why}): resumed")
        return True

    async def _reload(
        self,
        mr: MapRuntime,
        infos: list[discovery.PathInfo],
        table: MultipathTable | None = None,
    ) -> None:
        """Replace ``mr``'s table by ``table`` (default: the one over ``infos``); a reload
        that fails after its suspend may leave the map suspended, and that is never left
        as it is."""
        try:
            await self.k(self.dm.reload, mr.model.name, table or self._table(mr, infos))
        except DmpathError:
            await self._resume_if_suspended(mr.model.name, "its reload failed")
            raise

    async def _read_intent(self) -> None:
        """The admin's standing requests from admin_state_file, once; a file that cannot
        be read is an error event and an empty record (the daemon runs regardless)."""
        if self._intent_read:
            return
        self._intent_read = True
        try:
            self.intent = await self.io(files.load_intent, self.d.admin_state_file)
        except DmpathError as exc:
            self.event("error", message=f"admin requests not restored: {exc}")

    async def _save_intent(self, map_name: str, request: str) -> None:
        """Write the admin's standing requests (atomically): done at each change. A write
        that fails is an error event naming the map and the request it leaves unrecorded
        (the request itself is carried out)."""
        try:
            await self.io(files.save_intent, self.d.admin_state_file, self.intent)
        except DmpathError as exc:
            self.event(
                "error",
                map_name,
                message=f"admin request '{request}' done but not recorded: {exc}: it will "
                "not outlive a restart",
            )

    def _new_runtime(self, model: Map, opts: cfgmod.MapOptions) -> MapRuntime:
        """A map's runtime, with the queueing the admin set for its LUN."""
        mr = MapRuntime.new(model, opts)
        mr.health.queueing = self.intent.queueing.get(model.wwid) if model.wwid else None
        return mr

    def _install_map(self, name: str, wwid: str, backend: Backend, km: KernelMap) -> MapRuntime:
        opts = cfgmod.effective_options(self.cfg, wwid, "", "")
        mr = self._new_runtime(Map(name=name, wwid=wwid, backend=backend), opts)
        self._register_map(mr)
        self._absorb(mr, km)
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
            if udev.alua_changed(rec):
                for pr in [p for p in self.paths.values() if p.info.hctl == rec.hctl]:
                    self._alua_notice(pr, "unit attention: asymmetric access state changed")
                continue
            if udev.is_dm(rec):
                self._on_dm_record(rec)
                continue
            if not udev.is_disk(rec):
                continue
            relevant = True
            self.udev_events_pending += 1
            self.dirty.add(rec.sys_name)
            known = self.paths.get(rec.sys_name)
            if known is not None:
                self.kick(known)  # a change on a path (e.g. SCSI state): check it now
                if rec.action == "change":
                    self._alua_notice(known, "udev change")
            if rec.action == "remove":
                self.records.pop(rec.sys_name, None)
            else:
                self.records[rec.sys_name] = rec
        if relevant:
            self.schedule_reevaluate()

    def _on_dm_record(self, rec: udev.UdevRecord) -> None:
        """A change of one of our maps that no dm ioctl made (no DM_COOKIE) and that is
        no path event is udev's watch: something wrote to the map and closed it, maybe a
        new partition table (sfdisk, parted): the partition maps follow it."""
        name = udev.dm_name(rec)
        if (
            rec.action == "change"
            and name in self.maps
            and not rec.get("DM_COOKIE")
            and not rec.get("DM_ACTION")
        ):
            self._partitions_later(name, "written to")

    def _partitions_later(self, name: str, why: str) -> None:
        """Bring the map's partition maps in line with its table, off the loop; one run
        per map at a time (a write seen during a run makes one more run after it)."""
        if name in self._partition_syncs:
            self._partition_again.add(name)
            return
        self._partition_syncs.add(name)
        self.spawn(self._sync_partitions(name, why))

    async def _sync_partitions(self, name: str, why: str) -> None:
        try:
            while True:
                mr = self.maps.get(name)
                if mr is None or mr.model.backend != Backend.DM or not mr.model.sysfs:
                    return
                if mr.model.working == 0:
                    # the table read would wait behind the dead paths; the next write or
                    # restart brings the partition maps in line
                    return
                uuid = self.dm.uuid_for(mr.model.wwid)
                try:
                    before, after = await self.io(
                        self.dm.sync_partitions, name, mr.model.sysfs, uuid
                    )
                except DmpathError as exc:
                    self.event("error", name, message=f"partition maps not updated: {exc}")
                    return
                if before != after:
                    self.event(
                        "partitions",
                        name,
                        message=f"partition maps {', '.join(after) or 'none'}"
                        f" (were {', '.join(before) or 'none'}; map {why})",
                    )
                if name not in self._partition_again:
                    return
                self._partition_again.discard(name)
        finally:
            self._partition_syncs.discard(name)

    def _on_dm_path_event(self, ev: udev.DmPathEvent) -> None:
        """The kernel failed or reinstated a path: the map's reconciler takes it (the
        echo of our own message costs nothing there)."""
        pr = self.by_devnum.get(ev.path)
        if pr is None:
            return
        mr = self.maps.get(pr.map_name)
        if mr is None or (ev.map_name and ev.map_name != mr.model.name):
            return
        failed = ev.action == udev.DmAction.PATH_FAILED
        self._feed(mr, reconcile.PathUevent(ev.path, failed, ev.nr_valid_paths))

    # ------------------------------------------------------------------ the reconciler

    def _path_named(self, name: str) -> Path | None:
        pr = self.paths.get(name)
        return pr.model if pr is not None else None

    def _path_model(self, devnum: str) -> Path | None:
        pr = self.by_devnum.get(devnum)
        return pr.model if pr is not None else None

    def _feed(self, mr: MapRuntime, ev: reconcile.Event) -> list[reconcile.Effect]:
        """Hand one event about ``mr`` to its reconciler and carry out what it says."""
        ctx = reconcile.Context(
            time.monotonic(), time.time(), self.d.polling_interval, self._path_model, self.marginal
        )
        effects = reconcile.step(mr.health, mr.model, ev, ctx)
        self.metrics.fed(mr.model, ev, effects, ctx.now)
        name = mr.model.name
        for e in effects:
            if isinstance(e, reconcile.Note):
                self.event(e.kind, name, e.path, e.message)
            elif isinstance(e, reconcile.Kick | reconcile.Recheck):
                if isinstance(e, reconcile.Recheck):
                    self._start_checks(self.sched.result(e.path, Check.PENDING, ctx.now))
                pr = self.paths.get(e.path)
                if pr is not None:
                    self.kick(pr)
            elif isinstance(e, reconcile.Read):
                self.spawn(self._exec_read(mr, e.full))
            elif isinstance(e, reconcile.Send):
                self.spawn(self._exec_send(mr, e.messages))
            elif isinstance(e, reconcile.ApplyPolicies):
                self.spawn(self._exec_policies(mr, e.actions))
            else:
                self._heal_at(mr, e.when)
        if mr.health.busy:
            mr.idle.clear()
        else:
            mr.idle.set()
        return effects

    def _absorb(self, mr: MapRuntime, km: KernelMap, mine: bool = False) -> None:
        """A read of ``mr`` into the model (through its reconciler); its members are
        claimed for the map."""
        unknown = {d: self._name_of(d) for d in km.members if d not in self.by_devnum}
        self._feed(mr, reconcile.KernelRead(km, mine, unknown))
        for devnum in km.members:
            pr = self.by_devnum.get(devnum)
            if pr is not None:
                pr.map_name = mr.model.name
        if mr.model.wwid and self.maps.get(mr.model.name) is mr:
            self.by_wwid.setdefault(mr.model.wwid, mr)

    async def _read(self, mr: MapRuntime, full: bool) -> KernelMap:
        """Read ``mr``: everything, or only its paths' states (the table as last read)."""
        be = self.backend(mr.model.backend)
        if full:
            return await self.k(be.read, mr.model.name)
        return await self.k(be.read_states, mr.model.name, mr.health.kernel)

    async def _exec_read(self, mr: MapRuntime, full: bool) -> None:
        try:
            km = await self._read(mr, full)
        except DmpathError as exc:
            self._feed(mr, reconcile.ReadFailed(str(exc)))
            return
        self._absorb(mr, km, mine=True)

    async def _exec_send(self, mr: MapRuntime, messages: tuple[reconcile.Message, ...]) -> None:
        """Every message for the map in one trip to the kernel worker, in plan order."""
        m = mr.model
        steps = [
            (
                "fail" if isinstance(a, healing.FailPath) else "reinstate",
                a.devnum if m.backend == Backend.DM else f"/dev/{a.path}",
            )
            for a in messages
        ]
        try:
            errors = await self.k(self.backend(m.backend).apply, m.name, steps)
        except DmpathError as exc:
            errors = [exc] * len(steps)
        self._feed(mr, reconcile.Sent(tuple(_outcome(e) for e in errors)))

    async def _exec_policies(
        self, mr: MapRuntime, actions: tuple[reconcile.PolicyAction, ...]
    ) -> None:
        outcomes: list[reconcile.Outcome | None] = []
        for a in actions:
            try:
                if isinstance(a, healing.SwitchGroup):
                    await self.k(self.dm.switch_group, mr.model.name, a.group)
                else:
                    await self.k(self.dm.set_queueing, mr.model.name, a.enabled)
            except DmpathError as exc:
                outcomes.append(_outcome(exc))
            else:
                outcomes.append(None)
        self._feed(mr, reconcile.PoliciesDone(tuple(outcomes)))

    @contextlib.asynccontextmanager
    async def _claimed(self, mr: MapRuntime) -> AsyncIterator[None]:
        """Hold ``mr`` for an assembly change or an admin request: wait for the heal under
        way to finish; the reconciler plans again afterwards if news came meanwhile."""
        while not reconcile.claim(mr.health):
            await mr.idle.wait()
        mr.idle.clear()
        try:
            yield
        finally:
            self._feed(mr, reconcile.Released())

    def schedule_reevaluate(self) -> None:
        """Coalesce a burst of udev events into one re-evaluation."""
        if self._reeval_handle is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self.d.coalesce_ms / 1000.0
        self._reeval_handle = loop.call_later(delay, self._start_reevaluate)

    def _start_reevaluate(self) -> None:
        self._reeval_handle = None
        if self._stopping:
            return
        if self._reeval_task and not self._reeval_task.done():
            # one at a time: run again once the current pass is over
            self._reeval_task.add_done_callback(lambda _t: self.schedule_reevaluate())
            return
        self._reeval_task = asyncio.get_running_loop().create_task(self.reevaluate())

    # ------------------------------------------------------------------ assembly

    def _set_candidate(self, name: str, info: discovery.PathInfo | None) -> None:
        old = self.cands.pop(name, None)
        if old is not None:
            group = self.cands_by_wwid.get(old.wwid)
            if group is not None:
                group.pop(name, None)
                if not group:
                    del self.cands_by_wwid[old.wwid]
        if info is not None:
            self.cands[name] = info
            self.cands_by_wwid.setdefault(info.wwid, {})[name] = info

    def _admissible(self, info: discovery.PathInfo, holders: list[str]) -> bool:
        """Not blacklisted, and held by nothing but our own maps (LVM, another map or an
        md array using a disk make it someone else's)."""
        ours = {mr.model.sysfs for mr in self.maps.values()} if holders else set()
        disk = claim.Disk(
            name=info.name,
            properties=info.properties,
            vendor=info.vendor,
            product=info.model,
            transport=info.transport,
            wwid=info.wwid,
            held_by_ours=any(h in ours for h in holders),
            foreign_holders=tuple(h for h in holders if h not in ours),
        )
        return claim.admissible(disk, self.cfg).claimed

    async def _update_candidates(self, dirty: set[str]) -> None:
        """Read the facts of the records that changed (off the loop) and re-decide them;
        known candidates that are no path of ours yet get their holders looked at again."""
        recs = [self.records[n] for n in sorted(dirty) if n in self.records]
        recheck = [n for n in self.cands if n not in self.paths and n not in dirty]
        uid = tuple(self.d.uid_attribute)
        infos, holders = await self.io(self.scan_records, recs, uid, recheck)
        removed = self.intent.removed
        for name in dirty:
            info = infos.get(name)
            ok = (
                info is not None
                and not self.intent.applies(removed, name, info.wwid)
                and self._admissible(info, holders.get(name, []))
            )
            self._set_candidate(name, info if ok else None)
        for name in recheck:
            info = self.cands.get(name)
            if info is not None and not self._admissible(info, holders.get(name, [])):
                self._set_candidate(name, None)

    async def reevaluate(self, full: bool = False) -> None:
        # one pass at a time, whoever asks (start, udev, admin): a pass that ran while
        # another was creating a map would see its paths held by a not-yet-known array
        if full:
            self._full_pass = True
        async with self._reeval_lock:
            await self._reevaluate()

    async def _reevaluate(self) -> None:
        """One pass over what changed: records udev told us about (or everything, on a
        full pass), the WWIDs they belong to, and nothing else, so the cost of a pass is
        the size of the change, not of the SAN."""
        full, self._full_pass = self._full_pass, False
        dirty, self.dirty = self.dirty, set()
        touched, self.touched = self.touched, set()
        if full:
            dirty |= set(self.records) | set(self.cands)
        await self._update_candidates(dirty)
        burst, self.udev_events_pending = self.udev_events_pending, 0
        if burst:
            self.event(
                "rescan",
                message=f"re-evaluating {len(self.cands)} candidate paths after {burst} udev "
                f"event{'s' if burst != 1 else ''}",
            )
        # paths that went away, or now say they belong to another LUN
        gone = [
            n
            for n in sorted(dirty)
            if n in self.paths
            and (n not in self.cands or self.cands[n].wwid != self.paths[n].info.wwid)
        ]
        touched |= {self.paths[n].info.wwid for n in gone}
        touched |= {self.cands[n].wwid for n in dirty if n in self.cands}
        if full:
            touched |= set(self.cands_by_wwid)
        await self._drop_paths(gone)
        known = claim.known_wwids(await self.io(files.read_wwids, self.d.wwids_file), self.cfg)
        new_maps: list[tuple[str, list[discovery.PathInfo]]] = []
        grow: list[tuple[MapRuntime, list[discovery.PathInfo]]] = []
        for wwid in sorted(touched):
            if wwid in self.intent.flushed:
                continue
            infos = sorted(self.cands_by_wwid.get(wwid, {}).values(), key=lambda i: i.name)
            if not infos:
                continue
            mr = self._map_for_wwid(wwid, {i.devnum for i in infos})
            if mr is None:
                if claim.should_map(wwid, len(infos), known, self.cfg):
                    new_maps.append((wwid, infos))
            else:
                grow.append((mr, infos))
        await self._add_paths([i for _w, infos in new_maps for i in infos])
        await self._add_paths([i for _m, infos in grow for i in infos])
        await asyncio.gather(*(self._grow(mr, infos) for mr, infos in grow))
        await self._create_maps(new_maps)
        self.notify(f"STATUS=managing {len(self.maps)} maps over {len(self.paths)} paths")

    def _map_for_wwid(self, wwid: str, devnums: set[str] | None = None) -> MapRuntime | None:
        mr = self.by_wwid.get(wwid)
        if mr is not None or not devnums:
            return mr
        # an adopted md array has no WWID until its members are seen: claim it by them
        for other in self.maps.values():
            if not other.model.wwid and devnums & set(other.devnums):
                other.model.wwid = wwid
                self.by_wwid[wwid] = other
                return other
        return None

    async def _priority(self, info: discovery.PathInfo, prio: str) -> tuple[int, str]:
        if prio != "alua":
            return 1, ""
        if pnvme.is_nvme(info.transport):
            ana = await asyncio.get_running_loop().run_in_executor(
                self.cpool, nvme.ana_state_of, info.name
            )
            return pnvme.ana_priority(ana), ana
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

    def _opts_for(self, wwid: str, info: discovery.PathInfo) -> cfgmod.MapOptions:
        return cfgmod.effective_options(self.cfg, wwid, info.vendor, info.model)

    async def _add_paths(self, infos: list[discovery.PathInfo]) -> None:
        """New paths join the model; their ALUA priorities are asked all at once."""
        fresh = [i for i in infos if i.name not in self.paths]
        if not fresh:
            return
        opts = [self._opts_for(i.wwid, i) for i in fresh]
        prios = await asyncio.gather(
            *(self._priority(i, o.prio) for i, o in zip(fresh, opts, strict=True))
        )
        for info, o, (prio, state) in zip(fresh, opts, prios, strict=True):
            if info.name not in self.paths:
                self._add_path_runtime(info, prio, state, o)
        await self._tune_transports(fresh)
        await self._find_links(fresh)

    async def _find_links(self, infos: list[discovery.PathInfo]) -> None:
        """The interface each new network path leaves by (one route lookup per iSCSI
        session or NVMe-TCP controller): its link going down fails the path at once."""
        if self.links is None and not self._watch_links:
            return
        # the transport object each path rides (an iSCSI session, an NVMe-TCP controller)
        owners: dict[str, list[str]] = {}
        for info in infos:
            devpath = info.properties.get("DEVPATH", "")
            owner = sysfs.iscsi_session_of(devpath)
            if owner is None and info.transport == "nvme:tcp":
                owner = nvme.controller_of(devpath)
            if owner is not None:
                owners.setdefault(owner, []).append(info.name)
        if owners:
            await self._links_ready()
        for owner, names in owners.items():
            if self.links is None:  # the watch could not start, or has ended
                return
            address = await self.io(
                nvme.fabric_address if owner.startswith("nvme") else sysfs.iscsi_portal_address,
                owner,
            )
            link = await self.links.interface_for(address) if address else None
            if link is None:
                continue
            for name in names:
                pr = self.paths.get(name)
                if pr is not None:
                    pr.link = link.index
            log.debug("%s (%s) goes out by %s", owner, ", ".join(names), link.name)

    async def _links_ready(self) -> None:
        """The link watch, started at the first network path: a server whose paths ride
        no network (FC, SAS) never loads the rtnetlink library (some 370 modules; in the
        lab, 15 s of every daemon start). Every pass that finds network paths waits for
        the one start."""
        if not self._watch_links or self._stopping:
            return
        if self._links_start is None:
            self._links_start = asyncio.get_running_loop().create_task(self._start_links())
        # a pass cancelled while it waits leaves the start to finish for the next one
        await asyncio.shield(self._links_start)

    async def _start_links(self) -> None:
        watch = LinkWatch(self._on_link, self._links_lost)
        try:
            await watch.start()
            self.links = watch
        except OSError as exc:  # no rtnetlink here: the checks alone find dead links
            self.event("error", message=f"cannot watch network links: {exc}")

    async def _watch_tcp(self) -> None:
        """Every TCP_POLL seconds, the TCP connections of the iSCSI sessions our paths use
        (one sock_diag dump): one that has stopped answering (``tcpstall``) has its paths
        failed and is aborted, so that the session's recovery starts now rather than
        after the iSCSI ping (10 s), and the I/O held on it comes back that much sooner."""
        peers: dict[str, tuple[str, int]] = {}
        while True:
            await asyncio.sleep(TCP_POLL)
            if self._short_recovery:
                await self._restore_recovery()
            limit = self.d.tcp_stall_timeout
            by_session: dict[str, list[PathRuntime]] = {}
            for pr in self.paths.values():
                if pr.session:
                    by_session.setdefault(pr.session, []).append(pr)
            if limit <= 0 or not by_session:
                continue
            for session in by_session.keys() - peers.keys():
                if (peer := await self.io(sysfs.iscsi_portal, session)) is not None:
                    peers[session] = peer
            ours = {s: peers[s] for s in by_session if s in peers}
            ports = {port or ISCSI_PORT for _a, port in ours.values()}
            try:
                conns = await self.io(sockdiag.connections, ports)
            except sockdiag.SockDiagError as exc:
                self.event("error", message=f"{exc}: stalled connections are left to the checks")
                return
            self._aborted &= {c.cookie for c in conns}
            for conn, sessions in tcpstall.stalled_sessions(conns, ours, limit, self._aborted):
                self._aborted.add(conn.cookie)
                await self._connection_stalled(conn, {s: by_session[s] for s in sessions})

    async def _connection_stalled(
        self, conn: tcpstall.TcpConn, sessions: dict[str, list[PathRuntime]]
    ) -> None:
        names = [pr.info.name for prs in sessions.values() for pr in prs]
        self.event(
            "tcp_stall",
            "",
            "",
            f"{', '.join(sessions)}: {conn.describe()}: failing {', '.join(names)} and "
            "aborting the connection",
        )
        now = time.monotonic()
        quiet = f"{conn.last_ack_recv_ms / 1000:.1f} s"
        for session, prs in sessions.items():
            for pr in prs:
                pr.check_issued_at = now
                why = f"{session}: connection stalled (no TCP acknowledgement for {quiet})"
                self._verdict(pr, Check.DOWN, why, "")
            if self._others_carry(prs):
                await self._shorten_recovery(session, prs[0].info.name)
        try:
            await self.io(sockdiag.abort, conn)
        except sockdiag.SockDiagError as exc:
            self.event("error", message=str(exc))

    def _others_carry(self, prs: list[PathRuntime]) -> bool:
        """Does every map of ``prs`` have a working path besides them?"""
        names = {pr.info.name for pr in prs}
        for map_name in {pr.map_name for pr in prs}:
            mr = self.maps.get(map_name)
            if mr is None or not any(
                p.name not in names
                and p.kernel_state == KernelState.ACTIVE
                and p.check in healing.USABLE
                for p in mr.model.paths
            ):
                return False
        return True

    async def _shorten_recovery(self, session: str, path: str) -> None:
        """The session's I/O is held only STALLED_RECOVERY_TMO while its connection is
        down (other paths carry its maps): put back when it has logged in again."""
        timer = sysfs.TransportTimer(
            session, "recovery_tmo", f"/sys/class/iscsi_session/{session}/recovery_tmo"
        )
        [(before, error)] = await self.io(_set_timers, [(timer, STALLED_RECOVERY_TMO)])
        if error is not None or before is None or not before.isdigit():
            return
        if int(before) <= STALLED_RECOVERY_TMO:
            await self.io(_set_timers, [(timer, int(before))])
            return
        self._short_recovery.setdefault(session, (timer, int(before), time.monotonic()))
        self.event(
            "transport_tuned",
            "",
            path,
            f"{session} recovery_tmo {before} -> {STALLED_RECOVERY_TMO} s while its "
            "connection is down",
        )

    async def _restore_recovery(self) -> None:
        """Put back the recovery_tmo of sessions that logged in again (or are gone)."""
        for session, (timer, value, since) in list(self._short_recovery.items()):
            state = await self.io(sysfs.iscsi_session_state(session).read)
            if state == "FAILED":
                self._short_recovery[session] = (timer, value, 0.0)
                continue
            if state is not None and since and time.monotonic() - since < SHORT_RECOVERY_WAIT:
                continue  # the abort has not reached the session yet
            del self._short_recovery[session]
            if state is not None:
                await self.io(_set_timers, [(timer, value)])
                self.event("transport_tuned", "", "", f"{session} recovery_tmo back to {value} s")

    def _links_lost(self, why: str) -> None:
        """The link watch failed: a path held down by a link would never come back, so
        every such hold ends and the checks decide alone."""
        held = [pr for pr in self.paths.values() if self._link_down(pr)]
        self.links = None
        self.event("error", message=f"network link watch ended ({why}): checks only")
        for pr in held:
            self.kick(pr)

    def _link_down(self, pr: PathRuntime) -> bool:
        """The path's network link is down as the watch last heard it."""
        return self.links is not None and pr.link != 0 and not self.links.is_up(pr.link)

    def _on_link(self, change: LinkChange) -> None:
        """A network interface went down or came back: its paths are failed now, or
        checked now (a check answers for them from here on)."""
        on_it = [pr for pr in self.paths.values() if pr.link == change.index]
        if not on_it:
            return
        names = ", ".join(pr.info.name for pr in on_it)
        state = "up" if change.up else "down"
        self.event("link_" + state, "", "", f"link {change.name} {state}: {names}")
        for pr in on_it:
            if change.up:
                self.kick(pr)
            else:
                pr.check_issued_at = time.monotonic()
                self._verdict(pr, Check.DOWN, f"link {change.name} down", "")

    async def _tune_transports(self, infos: list[discovery.PathInfo]) -> None:
        """fast_io_fail_tmo, dev_loss_tmo and eh_deadline onto the transports of new
        paths (iSCSI sessions, FC remote ports, SCSI hosts): once per transport object,
        however many LUNs share it."""
        wanted = {
            opt: value
            for opt in sysfs.TRANSPORT_OPTIONS
            if isinstance(value := getattr(self.d, opt), int)
        }
        if not wanted:
            return
        todo: dict[str, tuple[sysfs.TransportTimer, str, str]] = {}  # by attribute file
        for info in infos:
            timers = sysfs.transport_timers(info.properties.get("DEVPATH", ""))
            for opt, timer in timers.items():
                if opt in wanted and self.tuned.get(timer.attribute) != wanted[opt]:
                    todo.setdefault(timer.attribute, (timer, opt, info.name))
        if not todo:
            return
        jobs = [(timer, wanted[opt]) for timer, opt, _n in todo.values()]
        results = await self.io(_set_timers, jobs)
        for (timer, opt, name), (before, error) in zip(todo.values(), results, strict=True):
            value = wanted[opt]
            if error is not None and error.errno == errno.EINVAL and opt == "eh_deadline":
                # a host with no host reset (iSCSI's software hosts) has no deadline to
                # bound: nothing to set, and not worth an error per host
                self.tuned[timer.attribute] = value
                log.debug("%s has no eh_deadline to set", timer.owner)
                continue
            if error is not None:
                why = error.strerror or str(error)
                self.event("error", "", name, f"cannot set {timer.owner} {timer.name}: {why}")
                continue
            self.tuned[timer.attribute] = value
            if before is not None:
                self.event(
                    "transport_tuned",
                    "",
                    name,
                    f"{timer.owner} {timer.name} {before} -> {value} s ({opt})",
                )

    async def _grow(self, mr: MapRuntime, infos: list[discovery.PathInfo]) -> None:
        """An existing map and its paths now: one reload for all that joined."""
        async with self._claimed(mr):
            mr.set_opts(self._opts_for(mr.model.wwid, infos[0]))
            for info in infos:
                self.paths[info.name].map_name = mr.model.name
            missing = [i for i in infos if i.devnum not in mr.devnums]
            unseen = any(not self.paths[i.name].model.last_change for i in infos)
            try:
                if missing:
                    await self._add_members(mr, infos, missing)
                elif unseen:
                    # paths of an adopted map: only the kernel knows their states
                    await self.refresh(mr)
                else:
                    reconcile.relink(mr.health, mr.model, self._path_model)
            except DmpathError as exc:
                self.event("error", mr.model.name, message=str(exc))
                self._assemble_later(mr.model.wwid)
            else:
                self._retries.pop(mr.model.wwid, None)

    def _assemble_later(self, wwid: str) -> None:
        """A map's create or reload was refused: nothing else would look at its LUN again
        until a disk event, so a pass is due for it after a back-off."""
        tries = self._retries.get(wwid, 0) + 1
        self._retries[wwid] = tries
        delay = retry.backoff(tries, self.d.polling_interval, self.d.max_polling_interval)

        def again() -> None:
            if not self._stopping:
                self.touched.add(wwid)
                self.schedule_reevaluate()

        asyncio.get_running_loop().call_later(delay, again)

    async def _names_for(self, wwids: list[tuple[str, cfgmod.MapOptions]]) -> dict[str, str]:
        """Map names for new LUNs: asked for, configured alias, friendly (one write of
        the bindings file for all of them), or the WWID."""
        out: dict[str, str] = {}
        friendly: list[str] = []
        for wwid, opts in wwids:
            if wwid in self.requested_names:
                out[wwid] = self.requested_names[wwid]
            elif opts.alias:
                out[wwid] = str(opts.alias)
            elif not self.d.user_friendly_names:
                out[wwid] = wwid
            else:
                friendly.append(wwid)
        if friendly:
            taken = set(cfgmod.configured_aliases(self.cfg)) | set(self.maps) | set(out.values())
            out.update(
                await self.io(
                    files.bind_aliases, self.d.bindings_file, friendly, self.d.alias_prefix, taken
                )
            )
        return out

    async def _create_maps(self, new: list[tuple[str, list[discovery.PathInfo]]]) -> None:
        """Make the maps of LUNs seen for the first time: names in one go, the maps side
        by side, the wwids file written once for all that were made."""
        if not new:
            return
        opts = {wwid: self._opts_for(wwid, infos[0]) for wwid, infos in new}
        try:
            names = await self._names_for([(w, opts[w]) for w, _i in new])
        except (DmpathError, OSError, ValueError) as exc:
            self.event("error", message=f"cannot name {len(new)} new maps: {exc}")
            return
        runtimes: list[tuple[MapRuntime, list[discovery.PathInfo]]] = []
        for wwid, infos in new:
            o = opts[wwid]
            name = names[wwid]
            if name in self.maps:
                self.event("error", wwid, message=f"name {name} is taken by another map")
                continue
            mr = self._new_runtime(Map(name=name, wwid=wwid, backend=Backend(o.backend)), o)
            runtimes.append((mr, infos))
        made = await asyncio.gather(*(self._create(mr, infos) for mr, infos in runtimes))
        wwids = [mr.model.wwid for (mr, _i), ok in zip(runtimes, made, strict=True) if ok]
        for (mr, _i), ok in zip(runtimes, made, strict=True):
            if ok:
                self._retries.pop(mr.model.wwid, None)
            else:
                self._assemble_later(mr.model.wwid)
        if wwids:
            # remembered, so strict find_multipaths and the udev helper claim them from now on
            try:
                await self.io(files.remember_wwids, self.d.wwids_file, wwids)
            except (DmpathError, OSError) as exc:
                self.event("error", message=f"cannot record {len(wwids)} WWIDs: {exc}")

    def _add_path_runtime(
        self, info: discovery.PathInfo, prio: int, alua: str, opts: cfgmod.MapOptions
    ) -> PathRuntime:
        checker = pnvme.checker_for(str(opts.checker), info.transport)
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
            checker=checker,
            priority=prio,
            alua_state=alua,
            interval=self.d.polling_interval,
            held=self.intent.applies(self.intent.held, info.name, info.wwid),
        )
        pr = PathRuntime(
            info=info,
            model=model,
            checker=self.make_checker(info, checker),
            session=sysfs.iscsi_session_of(info.properties.get("DEVPATH", "")) or "",
        )
        self.paths[info.name] = pr
        self.by_devnum[info.devnum] = pr
        self.event(
            "path_added", "", info.name, f"{info.name} ({info.devnum}) is a path of {info.wwid}"
        )
        if self.checking:
            self.start_checking(pr)
        return pr

    def _members(self, infos: list[discovery.PathInfo]) -> list[Member]:
        return [Member(i.name, i.devnum, self.paths[i.name].model.priority) for i in infos]

    def _queues(self, mr: MapRuntime) -> bool:
        """Does ``mr``'s table queue I/O when no path is left (queue_if_no_path)?"""
        policy = mr.health.no_path_policy
        if self.checking or policy in ("queue", "fail"):
            return policy != "fail"
        # no_path_retry = N needs a daemon to count the N intervals and then fail the
        # queued I/O: a map made by --once would queue for ever, so it fails I/O when no
        # path is left until dmpathd adopts it (its first working check turns queueing
        # on); a map that exists keeps what the kernel has
        return mr.health.kernel is not None and mr.model.queueing

    def _table(self, mr: MapRuntime, infos: list[discovery.PathInfo]) -> MultipathTable:
        o = mr.opts
        size = min(i.size_sectors for i in infos)
        table, _groups = build_table(
            size,
            self._members(infos),
            policy=o.path_grouping_policy,
            selector=o.path_selector,
            features=list(o.features),
            hwhandler=o.hardware_handler,
            queueing=self._queues(mr),
        )
        return table

    async def _create(self, mr: MapRuntime, infos: list[discovery.PathInfo]) -> bool:
        m = mr.model
        async with self._claimed(mr):
            try:
                if m.backend == Backend.DM:
                    how = await self.k(self.dm.create, m.name, m.wwid, self._table(mr, infos))
                else:
                    how = await self.k(self.md.create, m.name, [i.devnode for i in infos])
            except DmpathError as exc:
                self.event("error", m.name, message=str(exc))
                return False
            if m.backend == Backend.DM:
                await self._wait_for_node(m.name)
                await self._ensure_data_map(mr)
            self._register_map(mr)
            if m.backend == Backend.DM:
                self._partitions_later(m.name, "map created")
            for i in infos:
                self.paths[i.name].map_name = m.name
            await self.refresh(mr)
        self.event(
            "map_created",
            m.name,
            message=f"{how} {m.backend.value} map {m.name} "
            f"({m.wwid}) over {', '.join(i.name for i in infos)}",
        )
        if m.backend == Backend.DM and not self.checking and not m.queueing:
            policy = mr.health.no_path_policy
            if policy not in ("queue", "fail"):
                self.event(
                    "queueing",
                    m.name,
                    message=f"no_path_retry = {policy} needs dmpathd to count: {m.name} fails "
                    "I/O when no path is left (no queueing) until dmpathd runs",
                )
        return True

    async def _ensure_data_map(self, mr: MapRuntime) -> None:
        """The data map of a map configured with ``data_offset`` (a migrated md array):
        made when missing, at every start, so the data is where the admin left it."""
        o = mr.opts
        if o.data_offset is None or mr.model.backend != Backend.DM:
            return
        try:
            made = await self.k(
                self.dm.ensure_data_map, mr.model.name, mr.model.wwid, o.data_offset,
                o.data_sectors,
            )
        except DmpathError as exc:
            self.event("error", mr.model.name, message=f"cannot make its data map: {exc}")
            return
        if made:
            self.event(
                "map_created",
                mr.model.name,
                message=f"made data map {made} on {mr.model.name} from sector {o.data_offset}",
            )

    async def _wait_for_node(self, name: str) -> None:
        """Until udev has made /dev/mapper/NAME for a new map (a map is shown, and so
        used, only once it can be opened); an alert if udev never does."""
        node = f"/dev/mapper/{name}"
        loop = asyncio.get_running_loop()
        end = loop.time() + NODE_WAIT
        while not self.node_exists(node):
            if loop.time() > end:
                self.event(
                    "alert",
                    name,
                    message=f"udev has not made {node} after "
                    f"{NODE_WAIT:g} s (is systemd-udevd running?)",
                )
                return
            await asyncio.sleep(0.05)

    async def _add_members(
        self, mr: MapRuntime, infos: list[discovery.PathInfo], new: list[discovery.PathInfo]
    ) -> None:
        m = mr.model
        if m.backend == Backend.DM:
            # keep every path the kernel still holds, plus the new ones: one reload
            await self._reload(mr, infos)
        else:
            for i in new:
                await self.k(self.md.add, m.name, i.devnode)
        for i in new:
            self.event("path_joined", m.name, i.name, f"{i.name} joined {m.name}")
        await self.refresh(mr)

    async def _drop_paths(self, names: list[str]) -> None:
        """Paths that are gone leave the model, and their maps with one reload per map."""
        by_map: dict[str, list[PathRuntime]] = {}
        for name in names:
            pr = self._forget_path(name)
            if pr is not None and pr.map_name in self.maps:
                by_map.setdefault(pr.map_name, []).append(pr)
        await asyncio.gather(*(self._shrink(self.maps[m], prs) for m, prs in by_map.items()))

    def _forget_path(self, name: str) -> PathRuntime | None:
        pr = self.paths.pop(name, None)
        if pr is None:
            return None
        if self.by_devnum.get(pr.info.devnum) is pr:
            del self.by_devnum[pr.info.devnum]
        self.stop_checking(pr)
        self.event("path_removed", pr.map_name, name, f"{name} is gone")
        return pr

    async def _shrink(self, mr: MapRuntime, gone: list[PathRuntime]) -> None:
        async with self._claimed(mr):
            rest = [self.paths[n].info for n in mr.devnums.values() if n in self.paths]
            names = ", ".join(pr.info.name for pr in gone)
            if not rest and self.d.flush_on_last_del:
                await self._flush_on_last_del(mr, gone[-1].info.name, names)
                return
            if not rest:
                # the last path is gone: leave the map, queueing or failing as configured
                self.event(
                    "alert",
                    mr.model.name,
                    gone[-1].info.name,
                    f"last path {names} removed: map left in place (no_path_retry="
                    f"{mr.opts.no_path_retry})",
                )
                return
            try:
                if mr.model.backend == Backend.DM:
                    await self._reload(mr, rest)
                else:
                    # md keeps a vanished member as a (faulty) slot until it is removed
                    for pr in gone:
                        await self.k(self.md.forget_member, mr.model.name, pr.info.devnode)
                await self.refresh(mr)
            except DmpathError as exc:
                what = f"cannot drop {names}: {exc}"
                self.event("error", mr.model.name, gone[-1].info.name, what)

    async def _flush_on_last_del(self, mr: MapRuntime, path: str, names: str) -> None:
        """``flush_on_last_del``: the map whose last path was removed goes too, unless it
        is open (a mount, LVM, a partition map, a process, or udev's probe whose read
        waits on the map's queue: nothing can have I/O queued on a map nobody holds), as
        a flush without --force would. An open map is flushed once nothing holds it any
        more, unless a path comes back first. The caller has claimed the map."""
        name = mr.model.name
        try:
            await self._flush(mr, force=False)
        except PolicyRefusal as exc:
            why = str(exc).removesuffix(" (use --force)")
            self.event(
                "alert",
                name,
                path,
                f"last path {names} removed: map kept while it is open ({why}; "
                f"flush_on_last_del), I/O queued or failed as no_path_retry="
                f"{mr.opts.no_path_retry} says",
            )
            if name not in self._last_del:
                self._last_del.add(name)
                self.spawn(self._flush_once_closed(mr, path, names))
            return
        except DmpathError as exc:
            self.event("error", name, path, f"last path {names} removed: cannot flush: {exc}")
            return
        self._flushed_on_last_del(mr, path, names)

    def _flushed_on_last_del(self, mr: MapRuntime, path: str, names: str) -> None:
        self._forget_map(mr)
        self.event(
            "map_flushed",
            mr.model.name,
            path,
            f"last path {names} removed: flushed {mr.model.name} (flush_on_last_del)",
        )

    def _pathless(self, mr: MapRuntime) -> bool:
        """``mr`` is still ours and has no path we know (none came back)."""
        known = any(n in self.paths for n in mr.devnums.values())
        return self.maps.get(mr.model.name) is mr and not known

    async def _flush_once_closed(self, mr: MapRuntime, path: str, names: str) -> None:
        """Every polling interval, the map flush_on_last_del kept because it was open is
        flushed if nothing holds it now (its holder gone, or its queued I/O failed by
        no_path_retry); until a path comes back or the map is gone."""
        try:
            while self._pathless(mr):
                await asyncio.sleep(self.d.polling_interval)
                async with self._claimed(mr):
                    if not self._pathless(mr):
                        return
                    try:
                        await self._flush(mr, force=False)
                    except PolicyRefusal:
                        continue  # still open
                    except DmpathError as exc:
                        self.event("error", mr.model.name, path, f"cannot flush: {exc}")
                        return
                    self._flushed_on_last_del(mr, path, names)
                    return
        finally:
            self._last_del.discard(mr.model.name)

    # ------------------------------------------------------------------ kernel state

    async def refresh(self, mr: MapRuntime) -> None:
        """Re-read the map from the kernel (the truth) into the model; the caller has
        claimed the map."""
        try:
            km = await self._read(mr, full=True)
        except DmpathError as exc:
            self.event("error", mr.model.name, message=f"cannot read map: {exc}")
            return
        self._absorb(mr, km)

    def _name_of(self, devnum: str) -> str:
        pr = self.by_devnum.get(devnum)
        if pr is not None:
            return pr.info.name
        name = os.path.basename(os.path.realpath(f"/sys/dev/block/{devnum}"))
        return name if name and name != devnum else devnum

    # ------------------------------------------------------------------ checking

    def start_checking(self, pr: PathRuntime) -> None:
        # an NVMe controller is its namespaces' nexus: they share its fate
        ctrl = nvme.controller_of(pr.info.properties.get("DEVPATH", ""))
        nexus = polling.nexus_of(pr.info.hctl, ctrl or pr.info.name)
        self.sched.add(pr.info.name, nexus, time.monotonic())
        self._wake_scheduler()

    def stop_checking(self, pr: PathRuntime) -> None:
        self.sched.remove(pr.info.name)
        self._inflight.pop(pr.info.name, None)
        # closing waits for a check of the path still running (it may hang on a dead
        # device): never on the loop
        threading.Thread(target=pr.checker.close, name="check-close", daemon=True).start()

    def kick(self, pr: PathRuntime) -> None:
        """Check this path now (the kernel or udev said something changed)."""
        if self.checking:
            self.sched.kick(pr.info.name, time.monotonic())
            self._wake_scheduler()

    def _wake_scheduler(self) -> None:
        if self._sched_task is None:
            self._loop = asyncio.get_running_loop()
            self._sched_task = self._loop.create_task(self._schedule_checks())
        self._sched_wake.set()

    async def _schedule_checks(self) -> None:
        """The one timer of all checks: sleep until a check falls due or one has been
        out too long (or news arrives), start or time out those, repeat."""
        while True:
            self._sched_wake.clear()
            now = time.monotonic()
            self._start_checks(self.sched.due(now))
            self._expire_checks(now)
            wake = self.sched.next_wakeup()
            if self._deadlines:
                first = self._deadlines[0][0]
                wake = first if wake is None else min(wake, first)
            # timers are served in ticks, so checks that fall due close together go out
            # together; news (a kick, a verdict) still wakes the loop at once
            # a timer that sets the wake-up event, not asyncio.wait_for: that makes a task
            # per sleep, and (Python 3.11) a cancel landing as its timeout fires could
            # leave the cancelled loop waiting forever, and a daemon that never stopped
            timer = None
            if wake is not None:
                delay = max(0.0, wake - time.monotonic()) + CHECK_TICK
                timer = asyncio.get_running_loop().call_later(delay, self._sched_wake.set)
            try:
                await self._sched_wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _start_checks(self, names: list[str]) -> None:
        calls = []
        for name in names:
            pr = self.paths.get(name)
            if pr is None:
                self.sched.remove(name)
                continue
            run = functools.partial(self._run_check, pr, pr.model.check)
            calls.append((name, run, functools.partial(self._job_done, pr)))
        try:
            jobs = self.checks.call_many(calls)
        except PoolClosed:
            return
        issued = time.monotonic()
        deadline = issued + self._check_limit()
        for (name, _run, _done), (job, new) in zip(calls, jobs, strict=True):
            # a hung check still running is the job handed back: its end is heard of once
            self._inflight[name] = job
            pr = self.paths.get(name)
            if pr is not None and new:
                pr.check_issued_at = issued
            heapq.heappush(self._deadlines, (deadline, next(self._seq), name, job))

    def _run_check(self, pr: PathRuntime, before: Check) -> tuple[Check, str, str]:
        """In a checker thread: the check, and the SCSI device state when the verdict
        changed (a sysfs read: off the loop, and only when there is news)."""
        check, reason = pr.checker.check()
        return check, reason, _dev_state(pr.info.name) if check != before else ""

    def _job_done(self, pr: PathRuntime, job: CheckJob) -> None:
        """In the checker thread that finished: hand the result to the loop. Results are
        queued and the loop is woken once per batch, not once per check (at thousands of
        paths the wake-ups were the cost)."""
        with self._done_lock:
            self._done.append((pr, job))
            if self._done_signalled:
                return
            self._done_signalled = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to tell
                loop.call_soon_threadsafe(self._drain_checks)

    def _drain_checks(self) -> None:
        with self._done_lock:
            batch = list(self._done)
            self._done.clear()
            self._done_signalled = False
        for pr, job in batch:
            if self._inflight.get(pr.info.name) is not job:
                continue  # timed out already (reported down), or the path left
            del self._inflight[pr.info.name]
            try:
                check, reason, dev_state = job.result()
            except Exception as exc:  # noqa: BLE001 - a broken check must not kill the loop
                check, reason, dev_state = Check.PENDING, f"check failed: {exc}", ""
            self._verdict(pr, check, reason, dev_state, job.finished - job.started)
        self._sched_wake.set()  # the next wake-up may be sooner now

    def _check_limit(self) -> float:
        """How long a check may run before it counts as down: checker_timeout, and a
        second for the check's own SG_IO time-out to come back first."""
        return self.d.checker_timeout + 1.0

    def _expire_checks(self, now: float) -> None:
        """Checks out longer than checker_timeout: no answer is the hung path's answer
        (a dead link, a blocked session). The check goes on in its thread, written off
        by the pool, and is the one waited for again at the path's next turn."""
        limit = self._check_limit()
        while self._deadlines and self._deadlines[0][0] <= now:
            _when, _seq, name, job = heapq.heappop(self._deadlines)
            pr = self.paths.get(name)
            if pr is None or self._inflight.get(name) is not job or job.done:
                continue
            started = job.started
            if not started or now < started + limit:
                # still queued behind other checks (hung ones hold their workers until
                # the pool writes them off, CHECK_STALL), or started late: its own time
                # runs from its start, so a path is never called down for waiting its turn
                again = started + limit if started else now + CHECK_STALL
                heapq.heappush(self._deadlines, (again, next(self._seq), name, job))
                continue
            del self._inflight[name]
            self._verdict(pr, Check.DOWN, f"no answer within {self.d.checker_timeout:g} s", "")

    def _verdict(
        self, pr: PathRuntime, check: Check, reason: str, dev_state: str, latency: float = 0.0
    ) -> None:
        name = pr.info.name
        if self.paths.get(name) is not pr:
            return  # the path left while it was being checked
        if check != Check.DOWN and self.links is not None and self._link_down(pr):
            # a check that went out before the link went down, or one the transport still
            # answers from its queue: the link's word stands until the link is back
            check, reason = Check.DOWN, f"link {self.links.names.get(pr.link, pr.link)} down"
        if alua.check_hints_change(pr.model.check, check, reason):
            self._alua_notice(pr, f"check: {reason}")
        mr = self.maps.get(pr.map_name)
        if mr is not None and pr.info.devnum in mr.health.members:
            verdict = reconcile.Verdict(
                name, check, reason, dev_state, pr.check_issued_at, latency
            )
            if any(isinstance(e, reconcile.Recheck) for e in self._feed(mr, verdict)):
                return  # it answered for the past: checked again already
        elif reconcile.record_check(pr.model, check, reason, dev_state, time.time()):
            self.event("check", pr.map_name, name, f"{name} checker: {check.value} ({reason})")
        # its nexus likely changed with it: look at the siblings now
        self._start_checks(self.sched.result(name, check, time.monotonic()))
        pr.model.interval = self.sched.interval_of(name)

    def _heal_at(self, mr: MapRuntime, when: float) -> None:
        """Tell ``mr``'s reconciler the time at ``when`` (monotonic) even if nothing else
        happens to it: a deferred failback or a running-out no_path_retry must act on a
        quiet map."""
        if mr.timer is not None and mr.timer_at <= when:
            return
        if mr.timer is not None:
            mr.timer.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            mr.timer = None
            if self.maps.get(mr.model.name) is mr:
                self._feed(mr, reconcile.Timer())

        mr.timer_at = when
        mr.timer = loop.call_at(loop.time() + max(0.0, when - time.monotonic()), fire)

    # ------------------------------------------------------------------ ALUA

    def _alua_notice(self, pr: PathRuntime, why: str) -> None:
        """The kernel or a check says ``pr``'s port may have changed its ALUA state: the
        states of its map's paths are read again (a target moves several ports at once,
        and a port that carries no I/O hears of its own change late). One read per map
        at a time; news during one makes one more after it."""
        mr = self.maps.get(pr.map_name)
        if not self.checking or mr is None or mr.opts.prio != "alua":
            return
        if mr.opts.path_grouping_policy == "multibus":
            return  # one group whatever the priorities: nothing to follow
        name = mr.model.name
        self._alua_due.setdefault(name, f"{why} ({pr.info.name})")
        if name not in self._alua_busy:
            self._alua_busy.add(name)
            self.spawn(self._follow_alua(mr))

    async def _follow_alua(self, mr: MapRuntime) -> None:
        name = mr.model.name
        try:
            while (why := self._alua_due.pop(name, None)) is not None:
                if self.maps.get(name) is not mr:
                    return
                await self._read_alua(mr, why)
        finally:
            self._alua_busy.discard(name)

    async def _read_alua(self, mr: MapRuntime, why: str) -> None:
        """Each path's ALUA state again (not a dead path's: it would only time out);
        then, if the priorities call for other groups, the map reloaded with them."""
        prs = [self.paths[n] for n in mr.devnums.values() if n in self.paths]
        asked = [pr for pr in prs if pr.model.check != Check.DOWN]
        answers = await asyncio.gather(*(self._priority(pr.info, "alua") for pr in asked))
        for pr, (prio, state) in zip(asked, answers, strict=True):
            p = pr.model
            if state and (state, prio) != (p.alua_state, p.priority):
                self.event(
                    "alua_changed",
                    mr.model.name,
                    p.name,
                    f"{p.name}: {p.alua_state or '?'} -> {state} (priority {p.priority} -> "
                    f"{prio}) after {why}",
                )
                p.alua_state, p.priority = state, prio
        if mr.model.backend != Backend.DM or len(prs) != len(mr.devnums):
            return  # md has no groups; a member we do not know: the next pass decides
        async with self._claimed(mr):
            infos = [pr.info for pr in prs]
            layout = alua.regroup(
                self._members(infos),
                [pr.model.alua_state for pr in prs],
                [g.paths for g in mr.model.groups],
                str(mr.opts.path_grouping_policy),
            )
            if layout is None:
                if any(pr.model.alua_state == alua.TRANSITIONING for pr in prs):
                    self._alua_later(mr, prs[0])
                return
            was = " | ".join(", ".join(g.paths) for g in mr.model.groups)
            try:
                await self._reload(mr, infos)
            except DmpathError as exc:
                self.event("error", mr.model.name, message=f"cannot regroup: {exc}")
                return
            self.event(
                "regrouped",
                mr.model.name,
                message=f"path groups by priority now {alua.describe(layout)} (were {was}) "
                f"after {why}",
            )
            await self.refresh(mr)

    def _alua_later(self, mr: MapRuntime, pr: PathRuntime) -> None:
        """A port in transition: look again in a polling interval (the target's unit
        attention at the end of it may reach a port that carries no I/O late)."""
        asyncio.get_running_loop().call_later(
            self.d.polling_interval, self._alua_notice, pr, "a port in transition"
        )

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
            events=list(self.events)[-SNAPSHOT_EVENTS:],
        )

    # ------------------------------------------------------------------ admin operations

    def find_path(self, spec: str) -> PathRuntime:
        pr = self.paths.get(spec.removeprefix("/dev/")) or self.by_devnum.get(spec)
        if pr is not None:
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
        if OPS[op].mutating:
            await self.scanned.wait()
        return await method(**args)

    async def op_ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": 1}

    async def op_show(self) -> dict[str, Any]:
        snap = self.snapshot()
        # the kernel's own NVMe multipath, shown as it is: dmpathd manages none of it
        snap.nvme_native = await self.io(self.read_native)
        return snapshot_to_dict(snap)

    async def op_multipathd_show(self, words: list[str]) -> dict[str, str]:
        """A multipathd ``show`` command, answered with the text multipathd prints."""
        from dmpath.compat import multipathd as mpd
        from dmpath.compat.args import Unsupported

        cmd = mpd.parse_words(words)
        if not cmd.what.startswith("show"):
            raise BadRequest(f"multipathd '{cmd.what}' changes something: not a show command")
        try:
            return {"text": mpd.show(cmd, self.snapshot(), os.getpid())}
        except Unsupported as exc:  # no such map
            raise BadRequest(str(exc)) from None

    async def op_multipathd(self, words: list[str]) -> dict[str, str]:
        """A multipathd command that changes something: its requests, carried out one
        after another as if each had come on the socket (the first refusal ends it)."""
        from dmpath.compat import multipathd as mpd
        from dmpath.compat.args import Unsupported

        cmd = mpd.parse_words(words)
        if cmd.what.startswith("show"):
            return await self.op_multipathd_show(words)
        try:
            steps = mpd.plan(cmd, self.snapshot)
        except Unsupported as exc:
            raise BadRequest(str(exc)) from None
        for op, args in steps:
            await self.handle(op, validate_args(op, dict(args or {})), None)
        return {"text": ""}

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
        async with self._claimed(mr):
            await self.k(self.backend(mr.model.backend).switch_group, mr.model.name, group)
            mr.health.next_group = group
        self.event("switch_group", mr.model.name, message=f"admin: switch to group {group}")
        return {"map": mr.model.name, "group": group}

    async def op_queueing(self, map: str, enabled: bool | None = None) -> dict[str, Any]:
        """Queueing on or off as the admin says, for good (healing keeps it, restarts
        too); ``enabled`` None hands the map back to its no_path_retry."""
        mr = self.find_map(map)
        async with self._claimed(mr):
            want = enabled if enabled is not None else mr.health.no_path_retry != "fail"
            await self.k(self.backend(mr.model.backend).set_queueing, mr.model.name, want)
            mr.health.queueing = enabled
            if enabled is None:
                self.intent.queueing.pop(mr.model.wwid, None)
            elif mr.model.wwid:
                self.intent.queueing[mr.model.wwid] = enabled
            await self._save_intent(mr.model.name, f"queueing {_queueing_words(enabled)}")
            await self.refresh(mr)
        if enabled is None:
            # no_path_retry's count runs again from here
            self._feed(mr, reconcile.Heal())
        self.event("queueing", mr.model.name, message=f"admin: queueing {_queueing_words(enabled)}")
        return {"map": mr.model.name, "queueing": want}

    async def op_reconfigure(self) -> dict[str, Any]:
        return await self.reconfigure()

    async def op_remove_path(self, path: str) -> dict[str, Any]:
        pr = self.find_path(path)
        mr = self.maps.get(pr.map_name)
        if mr is not None and mr.model.backend == Backend.MD:
            # md keeps members until told: fail and hot-remove (EBUSY while in use)
            async with self._claimed(mr):
                await self.k(self.md.remove_member, mr.model.name, pr.info.devnode)
        self.intent.removed[pr.info.name] = pr.info.wwid
        await self._save_intent(pr.map_name, f"remove_path {pr.info.name}")
        self._set_candidate(pr.info.name, None)
        await self._drop_paths([pr.info.name])
        return {"path": pr.info.name, "removed": True}

    async def _path_record(self, spec: str) -> discovery.PathInfo:
        """A block device named like sdb, /dev/sdb or 8:16, as a candidate path."""
        name = spec.removeprefix("/dev/")
        if ":" in name:
            name = os.path.basename(os.path.realpath(f"/sys/dev/block/{name}"))
        rec = self.records.get(name)
        if rec is None:
            raise NotFoundError(f"{spec}: no such block device")
        if nvme.is_native_head(rec.sys_path):
            raise NotFoundError(
                f"{spec}: native NVMe multipath's device (the kernel joins its paths; "
                "dmpathd leaves it alone)"
            )
        info = discovery.path_info(rec, self.d.uid_attribute)
        if info is None or not info.wwid:
            raise NotFoundError(f"{spec}: not usable as a path (no WWID)")
        return info

    async def op_add_path(self, path: str) -> dict[str, Any]:
        info = await self._path_record(path)
        await self.io(files.remember_wwid, self.d.wwids_file, info.wwid)
        await self._want_again(info.wwid, info.name)
        await self.reevaluate()
        return {"path": info.name, "wwid": info.wwid}

    async def _want_again(self, wwid: str, *paths: str) -> None:
        """The admin asks for LUN ``wwid`` (and ``paths`` of it) again: a flush of its map
        and a removal of those paths no longer stand, and they are looked at anew."""
        changed = wwid in self.intent.flushed or any(p in self.intent.removed for p in paths)
        self.intent.flushed.discard(wwid)
        for p in paths:
            self.intent.removed.pop(p, None)
            self.dirty.add(p)
        if changed:
            mr = self.by_wwid.get(wwid)
            await self._save_intent(mr.model.name if mr else "", f"add {', '.join(paths) or wwid}")
        self.touched.add(wwid)

    async def op_create_map(
        self, path: str | None = None, wwid: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        # everything is checked before anything is written: a refused request leaves no
        # WWID in the wwids file and no name to be tried again at every pass
        if not wwid:
            wwid = (await self._path_record(str(path))).wwid
        elif not cfgmod.valid_wwid(wwid):
            raise BadRequest(f"create_map: invalid WWID {wwid!r}")
        if name:
            try:
                dmsetup.validate_map_name(name)
            except dmsetup.MapNameError as exc:
                raise BadRequest(f"create_map: {exc}") from exc
            await self._check_name_free(name, wwid)
        await self.reevaluate()  # paths udev told of meanwhile are candidates now
        removed = [n for n, w in self.intent.removed.items() if w == wwid and n in self.records]
        if self._map_for_wwid(wwid) is None and not self.cands_by_wwid.get(wwid) and not removed:
            raise NotFoundError(f"no usable path of {wwid}: no map made, nothing recorded")
        await self.io(files.remember_wwid, self.d.wwids_file, wwid)
        await self._want_again(wwid, *removed)
        if name:
            self.requested_names[wwid] = name
        try:
            await self.reevaluate()
        finally:
            # the name was for this request only: a pass that could not use it must not
            # make every later pass fail on it
            self.requested_names.pop(wwid, None)
        made = self._map_for_wwid(wwid)
        if made is None:
            raise NotFoundError(f"no usable path of {wwid}")
        return {"map": made.model.name, "wwid": wwid}

    async def _check_name_free(self, name: str, wwid: str) -> None:
        """PolicyRefusal unless ``name`` may be the name of ``wwid``'s map: not another
        map's, not another LUN's configured alias, no other device-mapper device's."""
        mine = self.by_wwid.get(wwid)
        if mine is not None and mine.model.name != name:
            raise PolicyRefusal(f"{wwid} has a map already: {mine.model.name} (not renamed)")
        other = self.maps.get(name)
        if other is not None and other is not mine:
            raise PolicyRefusal(f"name {name} is taken by the map of {other.model.wwid}")
        alias_of = cfgmod.configured_aliases(self.cfg).get(name)
        if alias_of is not None and alias_of != wwid:
            raise PolicyRefusal(f"name {name} is the configured alias of {alias_of}")
        if mine is None and name in {d.name for d in await self.k(self.dm.ops.list_maps)}:
            raise PolicyRefusal(f"name {name} is taken by another device-mapper device")

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
        async with self._claimed(mr):
            await self._admin_message(mr, pr, KernelState.FAILED)
            pr.model.fail_count += 1
            pr.model.held = True  # the admin's word stands until they reinstate it
            self.intent.held[pr.info.name] = pr.info.wwid
            await self._save_intent(mr.model.name, f"fail_path {pr.info.name}")
            self.event("path_failed", mr.model.name, pr.info.name, f"admin: failed {pr.info.name}")
            self._absorb(mr, await self._read(mr, full=False))
        return {"map": mr.model.name, "path": pr.info.name, "kernel_state": pr.model.kernel_state}

    async def _admin_message(self, mr: MapRuntime, pr: PathRuntime, state: KernelState) -> None:
        """Fail (``state`` FAILED) or reinstate ``pr`` in ``mr`` for the admin; the kernel's
        uevent for it is our echo."""
        be = self.backend(mr.model.backend)
        dev = pr.info.devnum if mr.model.backend == Backend.DM else pr.info.devnode
        reconcile.expect(mr.health, pr.info.devnum, state, time.monotonic())
        send = be.fail if state == KernelState.FAILED else be.reinstate
        await self.k(send, mr.model.name, dev)

    async def op_reinstate_path(self, path: str) -> dict[str, Any]:
        pr = self.find_path(path)
        mr = self.maps.get(pr.map_name)
        if mr is None:
            raise NotFoundError(f"{pr.info.name} is in no map")
        async with self._claimed(mr):
            await self._admin_message(mr, pr, KernelState.ACTIVE)
            pr.model.held = False
            pr.model.reinstate_count += 1
            if self.intent.held.pop(pr.info.name, None) is not None:
                await self._save_intent(mr.model.name, f"reinstate_path {pr.info.name}")
            was_marginal = reconcile.forgive(mr.health, pr.model)
            self.event(
                "path_reinstated",
                mr.model.name,
                pr.info.name,
                f"admin: reinstated {pr.info.name}" + (" (was marginal)" if was_marginal else ""),
            )
            self._absorb(mr, await self._read(mr, full=False))
        self.kick(pr)  # if it is really dead the checker fails it again
        return {"map": mr.model.name, "path": pr.info.name, "kernel_state": pr.model.kernel_state}

    async def op_resize_map(self, map: str) -> dict[str, Any]:
        """The map's table again at the size its paths have now: after a LUN grew on the
        array and its paths were rescanned (multipathd's ``resize map``). Refused while
        the paths disagree on the size: some were not rescanned yet, and a map larger
        than one of its paths would fail I/O beyond that path's end."""
        mr = self.find_map(map)
        name = mr.model.name
        if mr.model.backend != Backend.DM:
            raise PolicyRefusal(f"{name}: an md array is resized with mdadm --grow")
        prs = [self.paths[n] for n in mr.devnums.values() if n in self.paths]
        if not prs or len(prs) != len(mr.devnums):
            raise PolicyRefusal(f"{name}: not every path of the map is known yet; try again")
        sizes = {pr.info.name: await self.io(self.path_size, pr.info.name) for pr in prs}
        if len(set(sizes.values())) != 1 or not next(iter(sizes.values())):
            listed = ", ".join(f"{n} {s}" for n, s in sorted(sizes.items()))
            raise PolicyRefusal(
                f"{name}: paths differ in size (sectors: {listed}); rescan them all first"
            )
        size = next(iter(sizes.values()))
        was = mr.model.size_sectors
        async with self._claimed(mr):
            for pr in prs:
                pr.info = dataclasses.replace(pr.info, size_sectors=size)
                pr.model.size_sectors = size
            await self._reload(mr, [pr.info for pr in prs])
            await self.refresh(mr)
        self.event("map_resized", name, message=f"{name}: {was} -> {size} sectors")
        return {"map": name, "size_sectors": size}

    async def op_flush_map(self, map: str, force: bool = False) -> dict[str, Any]:
        name = map
        mr = self.find_map(name)
        async with self._claimed(mr):
            await self._flush(mr, force)
        self._forget_map(mr)
        if mr.model.wwid:
            self.intent.flushed.add(mr.model.wwid)
            await self._save_intent(name, "flush_map")
        self.event("map_flushed", name, message=f"flushed {name}")
        return {"map": name, "flushed": True}

    async def _flush(self, mr: MapRuntime, force: bool) -> None:
        """Remove ``mr`` from the kernel, its unused partition maps and data map first;
        PolicyRefusal while anything holds it open, unless ``force``. The caller has
        claimed the map."""
        name = mr.model.name
        await self.refresh(mr)
        if mr.model.backend == Backend.DM and mr.model.sysfs:
            # partition maps go with their map; one in use keeps both
            parts = await self.k(
                self.dm.partitions, mr.model.sysfs, self.dm.uuid_for(mr.model.wwid), key=name
            )
            busy = [p for p, opened in parts.items() if opened]
            if busy and not force:
                raise PolicyRefusal(
                    f"{name}: partition map {', '.join(busy)} is open: not flushing"
                    " (use --force)"
                )
            if parts:
                await self.k(self.dm.remove_partitions, name)
                await self.refresh(mr)
        holders = mr.model.open_count
        data = mr.model.backend == Backend.DM and mr.opts.data_offset is not None
        data_open = await self.k(self.dm.data_map_open, name) if data else None
        if data_open is not None:
            # the map's own data map holds it; what counts is who holds the data map
            holders += data_open - 1
        if holders and not force:
            raise PolicyRefusal(
                f"{name} is open ({holders} holders): not flushing (use --force)"
            )
        if data_open is not None:
            await self.k(self.dm.remove_data_map, name, force)
        try:
            await self.k(self.backend(mr.model.backend).flush, name, force)
        except DmpathError:
            # the remove can fail after the kernel let the map go (dmsetup's wait for
            # udev's cookie ran out, or it was killed on its timeout): a map that is gone
            # was flushed
            if mr.model.backend != Backend.DM or await self._dm_listed(name):
                raise

    async def _dm_listed(self, name: str) -> bool:
        """The kernel lists a dm map of this name (a list that cannot be read: yes)."""
        try:
            maps = await self.k(self.dm.ops.list_maps)
        except DmpathError:
            return True
        return any(m.name == name for m in maps)

    def _forget_map(self, mr: MapRuntime) -> None:
        """A map removed from the kernel leaves the model; its paths are in no map."""
        self._unregister_map(mr.model.name)
        for pr in list(self.paths.values()):
            if pr.map_name == mr.model.name:
                pr.map_name = ""

    async def reconfigure(self) -> dict[str, Any]:
        """Re-read the config; an invalid one is reported and the old one stays in force."""
        try:
            new = await self.k(cfgmod.load_config, self.config_path)
        except DmpathError as exc:
            self.event("error", message=f"reconfigure refused: {exc}")
            raise
        old, self.cfg = self.cfg.defaults, new
        for mr in self.maps.values():
            mr.set_opts(
                cfgmod.effective_options(new, mr.model.wwid, mr.model.vendor, mr.model.model)
            )
        d = new.defaults
        self.marginal = _marginal_policy(d)
        if (d.polling_interval, d.max_polling_interval) != (
            old.polling_interval,
            old.max_polling_interval,
        ):
            # new intervals: a scheduler built on them, every path checked afresh
            self.sched = polling.CheckScheduler(d.polling_interval, d.max_polling_interval)
            for pr in self.paths.values() if self.checking else ():
                self.start_checking(pr)
        self.event("reconfigured", message=f"configuration reloaded from {self.config_path}")
        live = list(self.maps.values())
        done = await asyncio.gather(*(self._reshape(mr) for mr in live))
        reshaped = [mr.model.name for mr, changed in zip(live, done, strict=True) if changed]
        await self.reevaluate(full=True)
        said = f"reshaped {', '.join(reshaped)}" if reshaped else "no live map changed"
        return {"reloaded": self.config_path, "reshaped": reshaped, "message": said}

    async def _reshape(self, mr: MapRuntime) -> bool:
        """Bring a live dm map to the configuration in force: rename it to a new alias;
        reload it when the table the daemon would build for it now differs from the
        kernel's (grouping, selector, features, hardware handler), or set its queueing by
        message when that alone differs (see ``dmpath.policy.reshape``). True when the
        map was changed; one event per map changed. A map with a member the daemon does
        not know is left to the next pass that knows it."""
        if mr.model.backend != Backend.DM:
            return False
        async with self._claimed(mr):
            done = await self._rename_to_alias(mr)
            name = mr.model.name
            try:
                km = await self._read(mr, full=True)
            except DmpathError as exc:
                self.event("error", name, message=f"cannot read map to reshape it: {exc}")
                km = None
            prs = [self.by_devnum.get(d) for d in km.members] if km is not None else []
            if km is not None and km.table is not None and prs and None not in prs:
                self._absorb(mr, km)
                infos = [pr.info for pr in prs if pr is not None]
                try:
                    plan = reshape.plan_reshape(
                        self._table(mr, infos),
                        km.table,
                        usable=healing.has_usable_path(mr.model),
                    )
                    if plan.table is not None:
                        await self._reload(mr, infos, plan.table)
                        done += plan.changes
                    elif plan.queueing is not None:
                        await self.k(self.dm.set_queueing, name, plan.queueing)
                        done.append(f"queueing {'on' if plan.queueing else 'off'} (no_path_retry)")
                except DmpathError as exc:
                    self.event("error", name, message=f"cannot reshape it: {exc}")
            if not done:
                return False
            self.event(
                "reshaped", name, message=f"{name}: {', '.join(done)} as the configuration now says"
            )
            await self.refresh(mr)
            return True

    async def _rename_to_alias(self, mr: MapRuntime) -> list[str]:
        """Rename ``mr`` (claimed) and its partition maps to its configured alias when it
        has another name; ["renamed from OLD"] when done. A map with a data map (a
        migrated md array) keeps its name: its data map's name is made from it. A name
        that another map holds is refused with an error event."""
        old, new = mr.model.name, str(mr.opts.alias or "")
        if not new or new == old or mr.opts.data_offset is not None:
            return []
        try:
            if new in self.maps or new in {d.name for d in await self.k(self.dm.ops.list_maps)}:
                raise PolicyRefusal(f"name {new} is taken by another device-mapper device")
            await self.k(self.dm.rename, old, new, mr.model.sysfs, self.dm.uuid_for(mr.model.wwid))
        except DmpathError as exc:
            self.event("error", old, message=f"not renamed to its alias {new}: {exc}")
            return []
        del self.maps[old]
        mr.model.name = mr.health.name = new
        mr.model.devnode = f"/dev/mapper/{new}"
        self.maps[new] = mr
        for pr in self.paths.values():
            if pr.map_name == old:
                pr.map_name = new
        return [f"renamed from {old}"]


def _noop() -> None:
    """The watchdog's probe: a job that does nothing, so its return proves the worker."""


def _no_check() -> tuple[Check, str, str]:
    """The watchdog's probe in the check pool (whose jobs answer a verdict): checks
    nothing."""
    return Check.UNKNOWN, "", ""


def _marginal_policy(d: cfgmod.Defaults) -> MarginalPolicy:
    return MarginalPolicy(
        d.marginal_failures, d.marginal_window, d.marginal_latency, d.marginal_recovery
    )


def _outcome(error: DmpathError | None) -> reconcile.Outcome | None:
    """A kernel operation's error as the reconciler takes it (md's EBUSY is "not now")."""
    if error is None:
        return None
    return reconcile.Outcome(str(error), busy=isinstance(error, MemberBusy))


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

    async def handle(op: str, args: dict[str, Any], peer: Any) -> Any:
        # The socket listens from the start (systemd may hold it already: socket
        # activation), but a request other than ping is answered only once the kernel's
        # maps are adopted: before that "status" said there were no maps while the
        # kernel had them (seen under systemd: mpathctl starting the daemon through the
        # socket got "maps: []"). Not until the coldplug is done: that takes minutes at
        # scale, and the maps it is making are worth seeing meanwhile.
        if op != "ping":
            await daemon.adopted.wait()
        return await daemon.handle(op, args, peer)

    server = ControlServer(daemon.socket_path, handle)
    await server.start()
    try:
        async with assembly_lock(daemon.socket_path):
            await _serve_locked(daemon, notify, stop)
    finally:
        await server.stop()


async def _serve_locked(
    daemon: Daemon, notify: Callable[[str], object], stop: asyncio.Event
) -> None:
    await daemon.open_history()
    exporter = None
    if daemon.d.metrics_listen or daemon.d.metrics_textfile:
        from dmpath.daemon.exposition import Exporter  # prometheus_client: only when asked

        exporter = Exporter.for_daemon(daemon)
        await exporter.start()
    await daemon.start()
    notify("READY=1")
    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    interval = watchdog_usec / 2e6 if watchdog_usec else 0
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval or 3600)
            except TimeoutError:
                # only while the loop, the check pool and the kernel workers all work
                if daemon.alive():
                    notify("WATCHDOG=1")
    finally:
        notify("STOPPING=1")
        await daemon.stop()
        if exporter is not None:
            await exporter.stop()
        await daemon.close_history()


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
