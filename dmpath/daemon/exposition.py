"""dmpathd's metrics in Prometheus's terms (the metric families of a ``Readout``, with
their help texts) and where they go: an HTTP endpoint (``metrics_listen``) and a file
for node_exporter's textfile collector (``metrics_textfile``), both off by default.

The endpoint is prometheus_client's server in a thread of its own: a scrape reads the
engine's state on the event loop (``DaemonCollector``, ``metrics.Recorder.readout``) and
builds the metric families and their text in its own thread.
The file is rewritten every ``metrics_textfile_interval`` seconds, atomically (a
temporary file in the same directory, renamed over it), so node_exporter never reads
half of one. Both are read from the configuration at start; a change needs a restart.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
    start_http_server,
    write_to_textfile,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dmpath import config as cfgmod
from dmpath.daemon.metrics import Readout
from dmpath.model import Check, KernelState

if TYPE_CHECKING:
    from dmpath.daemon.engine import Daemon

log = logging.getLogger("dmpathd")

#: how long a scrape waits for the event loop to read the state out (seconds)
READOUT_TIMEOUT = 10.0


MAP_LABELS = ("map",)
PATH_LABELS = ("map", "path")


def families(r: Readout) -> list[Metric]:
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
    start.add_metric([], r.started)
    out: list[Metric] = [
        info, size, paths, active, failed, qinp, queueing, queued,
        pinfo, kstate, cstate, marginal, failures, reinstatements, marks, start,
    ]  # fmt: skip
    for h in r.histograms:
        hist = HistogramMetricFamily(h.name, h.help)
        bounds = [repr(float(b)) for b in h.bounds] + ["+Inf"]
        hist.add_metric([], list(zip(bounds, h.cumulative, strict=True)), h.sum)
        out.append(hist)
    return out


class DaemonCollector(Collector):
    """The daemon's metrics for a prometheus_client registry: the state read out on the
    event loop (``loop``; at once when called on it, or with no loop running), the
    families built in the caller's thread."""

    def __init__(
        self,
        read: Callable[[], Readout],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.read = read
        self.loop = loop

    def collect(self) -> Iterator[Metric]:
        yield from families(self._readout())

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


def split_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9650"`` / ``"[::1]:9650"`` -> (address, port); the configuration
    validated it already."""
    host, _sep, port = value.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def registry_for(
    read: Callable[[], Readout],
    loop: asyncio.AbstractEventLoop | None = None,
    process: bool = True,
) -> CollectorRegistry:
    """A registry of the daemon's metrics (and its process's CPU, memory and
    descriptors as ``dmpath_process_*``), apart from prometheus_client's global one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(read, loop))
    if process:
        ProcessCollector(namespace="dmpath", registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> str:
    """The registry in Prometheus's text format, as a scrape gets it."""
    return generate_latest(registry).decode()


class Exporter:
    """The endpoint and the textfile writer of one daemon, as its configuration says."""

    def __init__(
        self, d: cfgmod.Defaults, registry: CollectorRegistry, report: Callable[[str], None]
    ) -> None:
        self.listen = d.metrics_listen
        self.textfile = d.metrics_textfile
        self.interval = d.metrics_textfile_interval
        self.registry = registry
        self.report = report  # an error for the daemon's events and log
        self.server: WSGIServer | None = None
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    def for_daemon(cls, daemon: Daemon) -> Exporter:
        """The exporter of ``daemon``, whose event loop is the running one."""

        def read() -> Readout:
            return daemon.metrics.readout(
                [mr.model for mr in daemon.maps.values()],
                [pr.model for pr in daemon.paths.values()],
            )

        registry = registry_for(read, asyncio.get_running_loop())
        return cls(daemon.d, registry, lambda msg: daemon.event("error", message=msg))

    async def start(self) -> None:
        if self.listen:
            host, port = split_listen(self.listen)
            try:
                self.server, _thread = start_http_server(port, host, self.registry)
            except OSError as exc:
                # the maps matter more than their metrics: the daemon goes on without
                self.report(f"metrics endpoint {self.listen} not started: {exc.strerror or exc}")
            else:
                log.info("metrics on http://%s/metrics", self.listen)
        if self.textfile:
            self._writer = asyncio.get_running_loop().create_task(self._write_every())

    async def _write_every(self) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        while True:
            try:
                # off the loop: the collector reads the state back on it
                await loop.run_in_executor(None, write_to_textfile, self.textfile, self.registry)
            except OSError as exc:
                if not failing:  # once per spell of failures, not every interval
                    self.report(f"cannot write metrics to {self.textfile}: {exc}")
                failing = True
            else:
                failing = False
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self.server is not None:
            server = self.server
            await asyncio.get_running_loop().run_in_executor(None, server.shutdown)
            server.server_close()
        if self.textfile:
            # a file left behind would show the maps as they were when we stopped
            with contextlib.suppress(OSError):
                os.unlink(self.textfile)
