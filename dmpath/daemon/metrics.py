"""dmpathd's Prometheus metrics: what the engine's state says at scrape time, and the few
things only its events can tell (how long detection, recovery and checks took, how long
maps held their I/O).

Between scrapes the engine pays for counters only: the ``Recorder`` is told of every
reconciler step (``fed``) and keeps a timestamp or adds to a histogram; everything else
(maps, paths, their states, failure counts) is read from the model when Prometheus asks,
in one pass on the event loop (``readout``) whose rows are turned into metric families
by the scraping thread (``families``). The exposition, HTTP server and text format are
prometheus_client's (``dmpath.daemon.exposition`` serves them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dmpath.model import Check, KernelState, Map, Path
from dmpath.policy import healing, reconcile

#: seconds from noticing a dead path to the kernel having failed it: a check answers in
#: milliseconds, a hung path takes the checker's time-out (5 s by default)
DETECTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)
#: seconds from a path answering again to its reinstatement (a marginal path's term
#: and deferred reinstatement make this minutes)
RECOVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
#: seconds a path took to answer its check
CHECK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: how long a scrape waits for the event loop to read the state out (seconds)
READOUT_TIMEOUT = 10.0

#: a path lookup by name: the daemon's model of it (None: no path of ours)
PathLookup = Callable[[str], Path | None]


@dataclass(frozen=True)
class MapRow:
    name: str
    wwid: str
    backend: str
    sysfs: str
    vendor: str
    model: str
    size_bytes: int
    paths: int
    active: int
    failed: int
    queue_if_no_path: bool
    queueing: bool
    queued_seconds: float


@dataclass(frozen=True)
class PathRow:
    map: str
    name: str
    wwid: str
    devnum: str
    kernel_state: KernelState
    check: Check
    marginal: bool
    failures: int
    reinstatements: int
    marked_marginal: int


@dataclass(frozen=True)
class Readout:
    """The engine's state as plain rows, read in one pass on the event loop."""

    maps: tuple[MapRow, ...]
    paths: tuple[PathRow, ...]


class Recorder:
    """What the engine's events add to its state: fed every reconciler step of every map.

    Detection runs from the issue of the check that first found a working path dead
    (a link going down or a stalled connection counts as that check) to the kernel
    confirming our message failing it; recovery from the issue of the first check that
    found a failed path usable again to the kernel confirming its reinstatement. Paths
    the kernel failed on its own (an I/O error) are counted as failures, not timed: the
    kernel was first. Queueing is time a map spent with no active path while
    queue_if_no_path held its I/O.
    """

    def __init__(self, lookup: PathLookup, clock: Callable[[], float] = time.monotonic) -> None:
        self.lookup = lookup
        self.clock = clock
        self.started = time.time()
        # unregistered: the daemon's collector yields them with the rest
        self.detection = Histogram(
            "dmpath_detection_seconds",
            "Time from the start of the check that found a working path dead to the "
            "kernel failing it on dmpathd's message.",
            buckets=DETECTION_BUCKETS,
            registry=None,
        )
        self.recovery = Histogram(
            "dmpath_recovery_seconds",
            "Time from the start of the check that found a failed path usable again to "
            "the kernel reinstating it on dmpathd's message.",
            buckets=RECOVERY_BUCKETS,
            registry=None,
        )
        self.check_latency = Histogram(
            "dmpath_check_duration_seconds",
            "Time a path took to answer its check (checks that answered).",
            buckets=CHECK_BUCKETS,
            registry=None,
        )
        self._down: dict[str, float] = {}  # path -> issue of the check that found it dead
        self._up: dict[str, float] = {}  # path -> issue of the check that found it back
        self._marked: dict[str, int] = {}  # path -> times it was marked marginal
        self._queue_since: dict[str, float] = {}  # map -> monotonic start of its queueing
        self._queued: dict[str, float] = {}  # map -> seconds spent queueing, ended spells

    def fed(
        self,
        m: Map,
        ev: reconcile.Event,
        effects: Sequence[reconcile.Effect],
        now: float,
    ) -> None:
        """One reconciler step of map ``m`` (``ev`` in, ``effects`` out) at ``now``."""
        if isinstance(ev, reconcile.Verdict):
            self._verdict(ev, effects)
        else:
            # kernel states and queueing change only on the kernel's word (reads, uevents,
            # policy outcomes), never on a verdict: one look at the map's paths then
            self._queueing(m, now)
        for e in effects:
            if isinstance(e, reconcile.Note):
                self._note(e, now)

    def _verdict(self, ev: reconcile.Verdict, effects: Sequence[reconcile.Effect]) -> None:
        if ev.latency > 0:
            self.check_latency.observe(ev.latency)
        p = self.lookup(ev.path)
        if p is None or any(isinstance(e, reconcile.Recheck) for e in effects):
            return  # an answer for the past: the check sent after it decides
        if ev.check == Check.DOWN:
            self._up.pop(ev.path, None)
            if p.kernel_state == KernelState.ACTIVE:
                self._down.setdefault(ev.path, ev.issued_at)
            else:
                self._down.pop(ev.path, None)
        elif ev.check in healing.USABLE:
            self._down.pop(ev.path, None)
            if p.kernel_state == KernelState.FAILED:
                self._up.setdefault(ev.path, ev.issued_at)
            else:
                self._up.pop(ev.path, None)

    def _note(self, note: reconcile.Note, now: float) -> None:
        if note.kind == "path_failed":
            self._up.pop(note.path, None)
            since = self._down.pop(note.path, None)
            if since is not None:
                self.detection.observe(max(0.0, now - since))
        elif note.kind == "kernel_path_failed":
            self._up.pop(note.path, None)
            self._down.pop(note.path, None)
        elif note.kind == "path_reinstated":
            since = self._up.pop(note.path, None)
            if since is not None:
                self.recovery.observe(max(0.0, now - since))
        elif note.kind == "path_marginal":
            self._marked[note.path] = self._marked.get(note.path, 0) + 1

    def _queueing(self, m: Map, now: float) -> None:
        held = m.queueing and bool(m.paths) and m.working == 0
        since = self._queue_since.get(m.name)
        if held and since is None:
            self._queue_since[m.name] = now
        elif not held and since is not None:
            del self._queue_since[m.name]
            self._queued[m.name] = self._queued.get(m.name, 0.0) + max(0.0, now - since)

    def queued_seconds(self, name: str, now: float) -> float:
        """Seconds map ``name`` has spent queueing, the spell under way included."""
        since = self._queue_since.get(name)
        return self._queued.get(name, 0.0) + (max(0.0, now - since) if since else 0.0)

    def readout(self, maps: Iterable[Map], paths: Iterable[Path]) -> Readout:
        """The rows of a scrape: every map and its members, then the paths in no map.
        On the event loop: reads the model, builds nothing heavier than a tuple."""
        now = self.clock()
        map_rows: list[MapRow] = []
        path_rows: list[PathRow] = []
        seen: set[str] = set()
        for m in maps:
            active = failed = 0
            for p in m.paths:
                if p.kernel_state == KernelState.ACTIVE:
                    active += 1
                elif p.kernel_state == KernelState.FAILED:
                    failed += 1
                path_rows.append(self._path_row(m.name, p))
                seen.add(p.name)
            map_rows.append(
                MapRow(
                    m.name,
                    m.wwid,
                    m.backend.value,
                    m.sysfs,
                    m.vendor,
                    m.model,
                    m.size_sectors * 512,
                    len(m.paths),
                    active,
                    failed,
                    m.queueing,
                    m.name in self._queue_since,
                    self.queued_seconds(m.name, now),
                )
            )
        path_rows.extend(self._path_row("", p) for p in paths if p.name not in seen)
        return Readout(tuple(map_rows), tuple(path_rows))

    def _path_row(self, map_name: str, p: Path) -> PathRow:
        return PathRow(
            map_name,
            p.name,
            p.wwid,
            p.devnum,
            p.kernel_state,
            p.check,
            p.marginal,
            p.fail_count,
            p.reinstate_count,
            self._marked.get(p.name, 0),
        )

    def histograms(self) -> list[Metric]:
        return [
            *self.detection.collect(),
            *self.recovery.collect(),
            *self.check_latency.collect(),
        ]


MAP_LABELS = ("map",)
PATH_LABELS = ("map", "path")


def families(r: Readout, started: float) -> list[Metric]:
    """The metric families of a readout (off the event loop: the scraping thread)."""
    info = GaugeMetricFamily(
        "dmpath_map_info",
        "A map dmpathd manages (always 1), with its WWID, backend, kernel device and the "
        "vendor and model of its LUN.",
        labels=("map", "wwid", "backend", "sysfs", "vendor", "model"),
    )
    size = GaugeMetricFamily("dmpath_map_size_bytes", "Size of the map.", labels=MAP_LABELS)
    paths = GaugeMetricFamily(
        "dmpath_map_paths", "Paths of the map in the kernel's table.", labels=MAP_LABELS
    )
    active = GaugeMetricFamily(
        "dmpath_map_active_paths",
        "Paths of the map the kernel has active (able to carry I/O).",
        labels=MAP_LABELS,
    )
    failed = GaugeMetricFamily(
        "dmpath_map_failed_paths", "Paths of the map the kernel has failed.", labels=MAP_LABELS
    )
    qinp = GaugeMetricFamily(
        "dmpath_map_queue_if_no_path",
        "1 if the map queues I/O when no path is left (queue_if_no_path), else 0.",
        labels=MAP_LABELS,
    )
    queueing = GaugeMetricFamily(
        "dmpath_map_queueing",
        "1 while the map has no active path and holds its I/O queued, else 0.",
        labels=MAP_LABELS,
    )
    queued = CounterMetricFamily(
        "dmpath_map_queueing_seconds",
        "Time the map has spent with no active path holding its I/O queued.",
        labels=MAP_LABELS,
    )
    for m in r.maps:
        info.add_metric([m.name, m.wwid, m.backend, m.sysfs, m.vendor, m.model], 1)
        size.add_metric([m.name], m.size_bytes)
        paths.add_metric([m.name], m.paths)
        active.add_metric([m.name], m.active)
        failed.add_metric([m.name], m.failed)
        qinp.add_metric([m.name], int(m.queue_if_no_path))
        queueing.add_metric([m.name], int(m.queueing))
        queued.add_metric([m.name], m.queued_seconds)
    pinfo = GaugeMetricFamily(
        "dmpath_path_info",
        "A path dmpathd manages (always 1), with its WWID and device number; map is "
        'the map it belongs to ("" for none).',
        labels=("map", "path", "wwid", "devnum"),
    )
    kstate = GaugeMetricFamily(
        "dmpath_path_state",
        "The kernel's state of the path: 1 for the state it is in, 0 for the others.",
        labels=(*PATH_LABELS, "state"),
    )
    cstate = GaugeMetricFamily(
        "dmpath_path_checker_state",
        "The last verdict of the path's checker: 1 for it, 0 for the others.",
        labels=(*PATH_LABELS, "state"),
    )
    marginal = GaugeMetricFamily(
        "dmpath_path_marginal",
        "1 while the path is marginal (flapping or slow: kept out of use while another "
        "path works), else 0.",
        labels=PATH_LABELS,
    )
    failures = CounterMetricFamily(
        "dmpath_path_failures",
        "Times the path was failed: by dmpathd on its checks, by the kernel on an I/O "
        "error, or by the administrator.",
        labels=PATH_LABELS,
    )
    reinstatements = CounterMetricFamily(
        "dmpath_path_reinstatements",
        "Times the path was reinstated, by dmpathd or by the administrator.",
        labels=PATH_LABELS,
    )
    marks = CounterMetricFamily(
        "dmpath_path_marked_marginal",
        "Times the path was found marginal (flapping or slow).",
        labels=PATH_LABELS,
    )
    kstates = tuple(KernelState)
    checks = tuple(Check)
    for p in r.paths:
        pinfo.add_metric([p.map, p.name, p.wwid, p.devnum], 1)
        for ks in kstates:
            kstate.add_metric([p.map, p.name, ks.value], int(ks == p.kernel_state))
        for c in checks:
            cstate.add_metric([p.map, p.name, c.value], int(c == p.check))
        marginal.add_metric([p.map, p.name], int(p.marginal))
        failures.add_metric([p.map, p.name], p.failures)
        reinstatements.add_metric([p.map, p.name], p.reinstatements)
        marks.add_metric([p.map, p.name], p.marked_marginal)
    start = GaugeMetricFamily(
        "dmpath_start_time_seconds", "When dmpathd started, in seconds since the epoch."
    )
    start.add_metric([], started)
    return [
        info, size, paths, active, failed, qinp, queueing, queued,
        pinfo, kstate, cstate, marginal, failures, reinstatements, marks, start,
    ]  # fmt: skip


class DaemonCollector(Collector):
    """The daemon's metrics for a prometheus_client registry: the state read out on the
    event loop (``loop``; at once when called on it, or with no loop running), the
    families built in the caller's thread."""

    def __init__(
        self,
        recorder: Recorder,
        read: Callable[[], Readout],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.recorder = recorder
        self.read = read
        self.loop = loop

    def collect(self) -> Iterator[Metric]:
        yield from families(self._readout(), self.recorder.started)
        yield from self.recorder.histograms()

    def _readout(self) -> Readout:
        loop = self.loop
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return self.read()
        done: concurrent.futures.Future[Readout] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(self.read())
            except Exception as exc:  # noqa: BLE001 - handed to the scraping thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result(timeout=READOUT_TIMEOUT)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
