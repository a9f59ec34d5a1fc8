"""dmpathd's metrics as plain data: what the engine's state says at scrape time, and the
few things only its events can tell (how long detection, recovery and checks took, how
long maps held their I/O).

Between scrapes the engine pays for counters only: the ``Recorder`` is told of every
reconciler step (``fed``) and keeps a timestamp or counts into a histogram; everything
else (maps, paths, their states, failure counts) is read from the model when Prometheus
asks, in one pass on the event loop (``readout``). Turning those rows into Prometheus's
metric families and text is ``dmpath.daemon.exposition``'s, which alone imports
prometheus_client: a daemon without metrics (or ``dmpathd --once``) does not load it.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

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


@dataclass
class Histogram:
    """Observations counted into buckets (Prometheus's ``le``: a value counts in the
    first bucket whose bound is not below it), with their sum. Only the event loop
    touches it: a scrape takes a copy (``row``) there."""

    name: str
    help: str
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, +Inf last
    sum: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def row(self) -> HistogramRow:
        cumulative, n = [], 0
        for c in self.counts:
            n += c
            cumulative.append(n)
        return HistogramRow(self.name, self.help, self.bounds, tuple(cumulative), self.sum)


@dataclass(frozen=True)
class HistogramRow:
    name: str
    help: str
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # observations at or below each bound, then all of them
    sum: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


@dataclass(frozen=True)
class Readout:
    """The engine's state as plain rows, read in one pass on the event loop."""

    maps: tuple[MapRow, ...]
    paths: tuple[PathRow, ...]
    histograms: tuple[HistogramRow, ...]
    started: float  # the daemon's start, epoch seconds


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
        self.detection = Histogram(
            "dmpath_detection_seconds",
            "Time from the start of the check that found a working path dead to the "
            "kernel failing it on dmpathd's message.",
            DETECTION_BUCKETS,
        )
        self.recovery = Histogram(
            "dmpath_recovery_seconds",
            "Time from the start of the check that found a failed path usable again to "
            "the kernel reinstating it on dmpathd's message.",
            RECOVERY_BUCKETS,
        )
        self.check_latency = Histogram(
            "dmpath_check_duration_seconds",
            "Time a path took to answer its check (checks that answered).",
            CHECK_BUCKETS,
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
            return  # no path of ours, or an answer for the past (the next check decides)
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
        spell = 0.0 if since is None else max(0.0, now - since)
        return self._queued.get(name, 0.0) + spell

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
        self._forget({r.name for r in map_rows}, {r.name for r in path_rows})
        histograms = (self.detection.row(), self.recovery.row(), self.check_latency.row())
        return Readout(tuple(map_rows), tuple(path_rows), histograms, self.started)

    def _forget(self, maps: set[str], paths: set[str]) -> None:
        """Drop the running timings of maps and paths that are gone: one made again under
        the same name starts afresh, not from what its namesake was doing."""
        for gone in self._queue_since.keys() - maps:
            del self._queue_since[gone]
        for timings in (self._down, self._up):
            for gone in timings.keys() - paths:
                del timings[gone]

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
