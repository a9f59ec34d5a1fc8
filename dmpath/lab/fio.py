"""Verified I/O with fio, the way blktests runs it: direct I/O, several jobs per map,
every block written with a crc32c header and read back while the run goes on
(``verify_backlog``), the first I/O error or bad block ending the job with its error.

``FioRun(devices, runtime).start()`` runs fio in the background (time-based, so it lasts
through a fault loop however fast the fabric is); ``wait()`` returns one ``FioJob`` per
job, parsed from fio's JSON by ``parse_fio_json`` (pure: golden-tested on fio's output).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from dmpath.errors import DmpathError

#: each job's own stretch of the map, so that no job reads blocks another rewrote
JOB_REGION_MB = 8
JOBS_PER_DEVICE = 2


class FioError(DmpathError):
    """fio did not run or its report cannot be read."""


@dataclass(frozen=True)
class FioJob:
    name: str
    error: int  # errno that ended the job (EIO: an I/O error, EILSEQ: a bad block); 0 ok
    written: int  # bytes
    read: int  # bytes (the verify reads)
    ios: int  # I/O operations completed, writes and verify reads
    max_write_latency: float  # seconds: fio's longest completion of one write
    max_read_latency: float

    @property
    def max_latency(self) -> float:
        """The longest any one I/O of the job waited: the stall a fault cost it."""
        return max(self.max_write_latency, self.max_read_latency)


def parse_fio_json(text: str) -> list[FioJob]:
    """fio's ``--output-format=json`` report → its jobs. fio may print warnings before
    the JSON document; they are skipped."""
    start = text.find("{")
    if start < 0:
        raise FioError("fio printed no JSON report")
    try:
        doc = json.loads(text[start:])
    except json.JSONDecodeError as exc:
        raise FioError(f"fio's report is not JSON: {exc}") from None
    jobs = []
    for j in doc.get("jobs", []):
        w, r = j.get("write", {}), j.get("read", {})
        jobs.append(
            FioJob(
                name=str(j.get("jobname", "")),
                error=int(j.get("error", 0)),
                written=int(w.get("io_bytes", 0)),
                read=int(r.get("io_bytes", 0)),
                ios=int(w.get("total_ios", 0)) + int(r.get("total_ios", 0)),
                max_write_latency=_max_ns(w) / 1e9,
                max_read_latency=_max_ns(r) / 1e9,
            )
        )
    return jobs


def _max_ns(direction: dict[str, dict[str, float]]) -> float:
    """The largest completion latency fio reports for one direction (ns; 0 if none)."""
    return float(direction.get("lat_ns", {}).get("max", 0) or 0)


def job_file(
    devices: Sequence[str], runtime: float, stride_mb: int = 0, rate_iops: int = 0
) -> str:
    """The fio job file: ``JOBS_PER_DEVICE`` writers per device, each verifying its own
    region as it goes; time-based, so the run outlasts any fault loop of ``runtime``.

    ``stride_mb``: the i-th device's jobs start ``i * stride_mb`` MB in, for devices that
    share their blocks (scsi_debug's LUNs all have one RAM store: without it, the jobs of
    two maps would overwrite each other's blocks and fail their verify). ``rate_iops``:
    each job's I/O per second at most (0: as fast as it goes), for a guest whose CPU the
    jobs would otherwise take from the daemon under test."""
    lines = [
        "[global]",
        "ioengine=libaio",
        "direct=1",
        "rw=randwrite",
        "bs=4k",
        "iodepth=4",
        f"size={JOB_REGION_MB}M",
        f"offset_increment={JOB_REGION_MB}M",
        f"numjobs={JOBS_PER_DEVICE}",
        "verify=crc32c",
        "verify_backlog=32",
        "verify_fatal=1",
        "time_based=1",
        f"runtime={int(runtime)}",
        "group_reporting=0",
    ]
    if rate_iops:
        lines.append(f"rate_iops={rate_iops}")
    for i, dev in enumerate(devices):
        lines += ["", f"[map{i}]", f"filename={dev}"]
        if stride_mb:
            lines.append(f"offset={i * stride_mb}M")
    return "\n".join(lines) + "\n"


class FioRun:
    """fio in the background on ``devices`` for ``runtime`` seconds."""

    def __init__(
        self, devices: Sequence[str], runtime: float, stride_mb: int = 0, rate_iops: int = 0
    ) -> None:
        self.devices = list(devices)
        self.runtime = runtime
        self.stride_mb = stride_mb
        self.rate_iops = rate_iops
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="dmpath-fio-")
        self.report = os.path.join(self._dir, "report.json")

    def start(self) -> FioRun:
        jobs = os.path.join(self._dir, "jobs.fio")
        with open(jobs, "w") as fh:
            fh.write(job_file(self.devices, self.runtime, self.stride_mb, self.rate_iops))
        try:
            self.proc = subprocess.Popen(
                ["fio", "--output-format=json", f"--output={self.report}", jobs],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise FioError(f"cannot run fio: {exc.strerror or exc}") from None
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 120.0) -> list[FioJob]:
        """End the run now (fio takes SIGINT as "finish up": its jobs stop and it still
        writes its report); its jobs."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float) -> list[FioJob]:
        """Wait for the run's end (``runtime`` plus the jobs' last verify); its jobs."""
        if self.proc is None:
            raise FioError("fio was not started")
        try:
            _out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise FioError(f"fio still running {timeout:g} s after it was due to end") from None
        try:
            with open(self.report) as fh:
                text = fh.read()
        except OSError as exc:
            raise FioError(
                f"fio (exit {self.proc.returncode}) wrote no report: "
                f"{err.decode(errors='replace').strip()[-300:]}"
            ) from exc
        return parse_fio_json(text)
