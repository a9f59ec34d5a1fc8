"""Where dmpathd's metrics go: an HTTP endpoint (``metrics_listen``) and a file for
node_exporter's textfile collector (``metrics_textfile``), both off by default.

The endpoint is prometheus_client's server in a thread of its own: a scrape reads the
engine's state on the event loop (``metrics.DaemonCollector``) and does the rest there.
The file is rewritten every ``metrics_textfile_interval`` seconds, atomically (a
temporary file in the same directory, renamed over it), so node_exporter never reads
half of one. Both are read from the configuration at start; a change needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
    start_http_server,
    write_to_textfile,
)

from dmpath import config as cfgmod
from dmpath.daemon.metrics import DaemonCollector, Readout, Recorder

if TYPE_CHECKING:
    from dmpath.daemon.engine import Daemon

log = logging.getLogger("dmpathd")


def split_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9650"`` / ``"[::1]:9650"`` -> (address, port); the configuration
    validated it already."""
    host, _sep, port = value.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def registry_for(
    recorder: Recorder,
    read: Callable[[], Readout],
    loop: asyncio.AbstractEventLoop | None = None,
    process: bool = True,
) -> CollectorRegistry:
    """A registry of the daemon's metrics (and its process's CPU, memory and
    descriptors as ``dmpath_process_*``), apart from prometheus_client's global one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(recorder, read, loop))
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

        registry = registry_for(daemon.metrics, read, asyncio.get_running_loop())
        return cls(daemon.d, registry, lambda msg: daemon.event("error", message=msg))

    async def start(self) -> None:
        if self.listen:
            host, port = split_listen(self.listen)
            try:
                self.server, _thread = start_http_server(port, host, self.registry)
            except OSError as exc:
                # the maps matter more than their metrics: the daemon goes on without
                self.report(f"metrics endpoint {self.listen} not started: {exc.strerror}")
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
