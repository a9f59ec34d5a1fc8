"""``python -m dmpath.lab bench``: dmpathd against multipathd on the same paths, same kernel.

A benchmark, not a test: it reports figures and asserts nothing about them. The exit
status is 0 whenever the benchmark ran, whatever the figures; non-zero only when it could
not run (a daemon did not start, its maps never appeared, a path state never changed
within the time limit).

The aim it measures (from the issue): notice a dead path on an idle map, and a returned
path, each within 1 s, at no more CPU per check than multipathd.

With ``--scale 64x4`` (repeatable, or ``64x4,256x4``) the same boot then measures each
daemon on that many paths: coldplug, a whole fabric down and up, idle CPU per path-minute
and RSS (see "scale rows" below); ``--scale-only`` skips the one-path rounds. The scale
records are appended to docs/bench/results.json and rendered into docs/bench/results.md.

In ONE VM boot (the host side boots it), each daemon in turn, dmpathd first:

1. start it with its defaults (dmpathd through ``harness.DaemonUnderTest``; multipathd as
   ``multipathd -d -s -v3`` with :data:`MULTIPATH_CONF`) and wait until its
   maps are in ``dmsetup ls --target multipath`` with every path active;
2. let it settle (``--settle``, 30 s: multipathd's checker interval grows from
   polling_interval 5 s to max_polling_interval 20 s on stable paths, as in production),
   then read its CPU time (utime+stime, and reaped children's, from /proc/PID/stat) over an
   idle window of ``--window`` seconds, and count the checks it made in that window;
3. ``--rounds`` times, a different path each round: offline the path (no I/O on any map),
   time until ``dmsetup status`` shows it failed; set it running, time until it shows it
   active again;
4. stop the daemon and remove the maps it made.

How checks are counted:

* dmpathd: every check is one SCSI TEST UNIT READY, so the checks are the commands the
  kernel dispatched to the paths in the window (sysfs ``device/iorequest_cnt``, which
  counts every SCSI command sent to the device); the estimate paths x window / interval
  (intervals from ``show``) is kept in the JSON as a cross-check.
* multipathd: at -v3 it logs every checker result as ``sdX: tur state = up``; its TUR
  checker is asynchronous, so one check may log ``pending`` first and its result a tick
  later: the checks are the result lines that are not ``pending``. Its commands (TUR plus
  the ALUA prioritizer's REPORT TARGET PORT GROUPS on every check of an up path) are
  counted from sysfs as for dmpathd.

Why dmpathd runs first: multipathd loads table hardware handler ``1 alua``, which attaches
``scsi_dh_alua`` to the paths, and the lab keeps that handler off for dmpathd (guest.py).

multipathd runs without its udev rules: the guest moves ``*multipath*.rules``,
``*dm-mpath*.rules`` and ``*kpartx*.rules`` aside (guest.py) and multipathd 0.9.4 was
checked to assemble, fail and reinstate without them (it reads the paths' udev properties
set by udev's own rules, ``ID_SERIAL`` for the WWID). Both daemons so run under the same
udev rules.

Timing: the poller is one in-process loop calling ``dmpath.kernel.dmsetup.status`` every
``POLL_INTERVAL`` s. Under emulation each call runs a ``dmsetup`` process (about 0.2 s), so
a state change is known only to within one poll: each round records when the change was
first seen (the figure shown) and the start of the last poll that did not see it yet
(``not_before`` in the JSON). The poller costs CPU itself, which is why CPU is measured
only in the idle window, while nothing polls.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dmpath.errors import DmpathError
from dmpath.lab.tour import make_console

#: seconds between the end of one ``dmsetup status`` and the start of the next
POLL_INTERVAL = 0.1
#: how long a daemon may take to start and to make its maps
START_TIMEOUT = 60.0
MAPS_TIMEOUT = 90.0
#: how long one path state change may take to show in ``dmsetup status``: multipathd's
#: worst case is its max_polling_interval (20 s) plus an asynchronous TUR's extra tick
CHANGE_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
WORKDIR = "/tmp/dmpath-bench"
RESULT_FILE = "bench.json"

DEFAULT_TOPOLOGY = "2x2"
DEFAULT_ROUNDS = 5
DEFAULT_SETTLE = 30.0
DEFAULT_WINDOW = 120.0
DEFAULT_GAP = 5.0

#: multipathd's set-up in the lab: find_multipaths no, friendly names, and only scsi_debug
#: (every other device is blacklisted, so the exception is what admits the paths)
MULTIPATH_CONF = """\
# written by python -m dmpath.lab bench (lab guest only)
defaults {
    find_multipaths no
    user_friendly_names yes
}
blacklist {
    device {
        vendor ".*"
        product ".*"
    }
}
blacklist_exceptions {
    device {
        vendor "Linux"
        product "scsi_debug"
    }
}
"""

#: a checker result line of multipathd at -v3: "sda: tur state = up"
_MPD_CHECK = re.compile(r"^(?P<dev>\S+): (?P<checker>[\w-]+) state = (?P<state>[\w-]+)\s*$")


class BenchError(DmpathError):
    """The benchmark could not run (not: a figure was bad; figures are never errors)."""

    exit_code = 1


# ---------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class ProcCpu:
    """CPU time of a process in clock ticks, from /proc/PID/stat."""

    utime: int
    stime: int
    cutime: int = 0  # of children the process has waited for
    cstime: int = 0

    @property
    def own(self) -> int:
        return self.utime + self.stime

    @property
    def children(self) -> int:
        return self.cutime + self.cstime

    @property
    def total(self) -> int:
        return self.own + self.children

    def __sub__(self, other: ProcCpu) -> ProcCpu:
        return ProcCpu(
            self.utime - other.utime,
            self.stime - other.stime,
            self.cutime - other.cutime,
            self.cstime - other.cstime,
        )


def parse_proc_stat(text: str) -> ProcCpu:
    """utime, stime, cutime, cstime (fields 14-17) of a /proc/PID/stat line.

    The command name (field 2) is in parentheses and may itself hold spaces and
    parentheses, so the fields are counted from the *last* ``)``.
    """
    end = text.rfind(")")
    if end < 0:
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}")
    rest = text[end + 1 :].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    if len(rest) < 15:
        raise ValueError(f"/proc/PID/stat line too short: {text[:80]!r}")
    try:
        return ProcCpu(int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14]))
    except ValueError:
        raise ValueError(f"/proc/PID/stat fields 14-17 are not numbers: {text[:80]!r}") from None


def ticks_to_seconds(ticks: int, hz: int) -> float:
    if hz <= 0:
        raise ValueError(f"clock ticks per second must be positive, got {hz}")
    return ticks / hz


def parse_iocounter(text: str) -> int:
    """A SCSI device's ``iorequest_cnt`` (sysfs prints it in hex, ``0x1a``)."""
    return int(text.strip(), 0)


def count_multipathd_checks(log_text: str) -> int:
    """Completed checker results in multipathd -v3 output (``pending`` is not a result)."""
    n = 0
    for line in log_text.splitlines():
        m = _MPD_CHECK.match(line.strip())
        if m and m.group("state") != "pending":
            n += 1
    return n


def estimate_checks(intervals: Sequence[float], window: float) -> float:
    """Checks in ``window`` seconds by paths checked every ``intervals[i]`` seconds."""
    return sum(window / i for i in intervals if i > 0)


@dataclass(frozen=True)
class Summary:
    n: int
    min: float | None
    median: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, None, None, None)
        return cls(len(values), min(values), statistics.median(values), max(values))


def ratio(mine: float | None, theirs: float | None) -> float | None:
    """``mine / theirs``; None when either is unknown or ``theirs`` is zero."""
    if mine is None or theirs is None or theirs == 0:
        return None
    return mine / theirs


def format_ratio(r: float | None) -> str:
    """A ratio for the table: three significant digits and an ``x``; ``n/a`` if unknown."""
    if r is None:
        return "n/a"
    return f"{r:.3g}x"


def format_seconds(s: float | None, digits: int = 2) -> str:
    return "n/a" if s is None else f"{s:.{digits}f}"


def format_summary(s: Summary) -> str:
    """``min / median / max`` in seconds."""
    if s.n == 0:
        return "n/a"
    return " / ".join(format_seconds(v) for v in (s.min, s.median, s.max))


def per_minute(value: float, window: float) -> float:
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    return value * 60.0 / window


# ---------------------------------------------------------------------- results


@dataclass
class Round:
    path: str
    map: str
    detect_s: float | None = None
    detect_not_before_s: float | None = None
    detect_polls: int = 0
    recover_s: float | None = None
    recover_not_before_s: float | None = None
    recover_polls: int = 0
    #: when the daemon's own checker saw the path down / up (dmpathd's events; else None)
    checker_down_s: float | None = None
    checker_up_s: float | None = None


@dataclass
class PhaseResult:
    daemon: str
    version: str = ""
    command: str = ""
    pid: int = 0
    maps_after_s: float | None = None
    maps: list[str] = field(default_factory=list)
    settle_s: float = 0.0
    window_s: float = 0.0
    clk_tck: int = 100
    cpu_ticks_own: int | None = None
    cpu_ticks_children: int | None = None
    checks: int | None = None
    checks_source: str = ""
    checks_estimate: float | None = None
    scsi_commands: int | None = None
    rounds: list[Round] = field(default_factory=list)
    poll_seconds: list[float] = field(default_factory=list)
    poller_cpu_s: float = 0.0  # the bench's own CPU (with its dmsetup children) in polls
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_seconds(self) -> float | None:
        if self.cpu_ticks_own is None:
            return None
        return ticks_to_seconds(self.cpu_ticks_own + (self.cpu_ticks_children or 0), self.clk_tck)

    @property
    def cpu_per_idle_minute(self) -> float | None:
        cpu = self.cpu_seconds
        return None if cpu is None or self.window_s <= 0 else per_minute(cpu, self.window_s)

    @property
    def cpu_per_check(self) -> float | None:
        cpu = self.cpu_seconds
        if cpu is None or not self.checks:
            return None
        return cpu / self.checks

    @property
    def detection(self) -> Summary:
        return Summary.of([r.detect_s for r in self.rounds if r.detect_s is not None])

    @property
    def recovery(self) -> Summary:
        return Summary.of([r.recover_s for r in self.rounds if r.recover_s is not None])

    @property
    def checker_down(self) -> Summary:
        return Summary.of([r.checker_down_s for r in self.rounds if r.checker_down_s is not None])

    @property
    def checker_up(self) -> Summary:
        return Summary.of([r.checker_up_s for r in self.rounds if r.checker_up_s is not None])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("poll_seconds")
        d["polls"] = len(self.poll_seconds)
        d["poll_seconds_mean"] = _mean(self.poll_seconds)
        d["cpu_seconds"] = self.cpu_seconds
        d["cpu_seconds_per_idle_minute"] = self.cpu_per_idle_minute
        d["cpu_seconds_per_check"] = self.cpu_per_check
        d["detection_s"] = dataclasses.asdict(self.detection)
        d["recovery_s"] = dataclasses.asdict(self.recovery)
        return d


def ratios(mine: PhaseResult, theirs: PhaseResult) -> dict[str, float | None]:
    """dmpathd / multipathd for the figures the issue names (below 1: dmpathd is better)."""
    return {
        "detection_min": ratio(mine.detection.min, theirs.detection.min),
        "detection_median": ratio(mine.detection.median, theirs.detection.median),
        "detection_max": ratio(mine.detection.max, theirs.detection.max),
        "recovery_min": ratio(mine.recovery.min, theirs.recovery.min),
        "recovery_median": ratio(mine.recovery.median, theirs.recovery.median),
        "recovery_max": ratio(mine.recovery.max, theirs.recovery.max),
        "cpu_per_idle_minute": ratio(mine.cpu_per_idle_minute, theirs.cpu_per_idle_minute),
        "cpu_per_check": ratio(mine.cpu_per_check, theirs.cpu_per_check),
    }


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def result_table(phases: Sequence[PhaseResult]) -> Table:
    """One column per daemon, then the ratio dmpathd / multipathd where it means something."""
    by_name = {p.daemon: p for p in phases}
    mine, theirs = by_name.get("dmpathd"), by_name.get("multipathd")
    r: dict[str, float | None] = ratios(mine, theirs) if mine and theirs else {}
    table = Table(
        title="dmpathd vs multipathd: idle maps, lab VM (TCG emulation: compare ratios)",
        caption="ratio = dmpathd / multipathd: below 1 favours dmpathd" if r else None,
    )
    table.add_column("figure", style="bold", no_wrap=True)
    for p in phases:
        table.add_column(p.daemon, justify="right", no_wrap=True)
    if r:
        table.add_column("ratio", justify="right", no_wrap=True)

    def row(label: str, cell: Callable[[PhaseResult], str], key: str = "") -> None:
        extra = [format_ratio(r.get(key)) if key else ""] if r else []
        table.add_row(label, *(cell(p) for p in phases), *extra)

    row("detection s, min", lambda p: format_seconds(p.detection.min), "detection_min")
    row("detection s, median", lambda p: format_seconds(p.detection.median), "detection_median")
    row("detection s, max", lambda p: format_seconds(p.detection.max), "detection_max")
    row("recovery s, min", lambda p: format_seconds(p.recovery.min), "recovery_min")
    row("recovery s, median", lambda p: format_seconds(p.recovery.median), "recovery_median")
    row("recovery s, max", lambda p: format_seconds(p.recovery.max), "recovery_max")
    row("rounds", lambda p: str(sum(1 for x in p.rounds if x.recover_s is not None)))
    row(
        "its checker saw down / up, s (median)",
        lambda p: (
            f"{format_seconds(p.checker_down.median)} / {format_seconds(p.checker_up.median)}"
            if p.checker_down.n or p.checker_up.n
            else "n/a"
        ),
    )
    row(
        "CPU s per idle minute",
        lambda p: format_seconds(p.cpu_per_idle_minute, 3),
        "cpu_per_idle_minute",
    )
    row(
        "CPU ms per check",
        lambda p: "n/a" if p.cpu_per_check is None else f"{p.cpu_per_check * 1000:.2f}",
        "cpu_per_check",
    )
    row(
        "checks in window",
        lambda p: "n/a" if p.checks is None else f"{p.checks} ({p.checks_source})",
    )
    row(
        "SCSI commands in window",
        lambda p: "n/a" if p.scsi_commands is None else str(p.scsi_commands),
    )
    row(
        "CPU s in window: own + children",
        lambda p: (
            "n/a"
            if p.cpu_ticks_own is None
            else f"{ticks_to_seconds(p.cpu_ticks_own, p.clk_tck):.2f} + "
            f"{ticks_to_seconds(p.cpu_ticks_children or 0, p.clk_tck):.2f}"
        ),
    )
    row("settle s / idle window s", lambda p: f"{p.settle_s:g} / {p.window_s:.1f}")
    row("dmsetup status poll, s", lambda p: format_seconds(_mean(p.poll_seconds), 3))
    row(
        "poller CPU s per poll",
        lambda p: (
            format_seconds(p.poller_cpu_s / len(p.poll_seconds), 3) if p.poll_seconds else "n/a"
        ),
    )
    return table


# ---------------------------------------------------------------------- scale rows
#
# At scale the question is not how fast one path is noticed but what the whole set costs:
# for a topology (e.g. 64x4, with the standby hosts' disks deleted first, see
# topology.py), per daemon, both with their defaults except ``path_grouping_policy
# multibus`` (so the two sets of tables are alike):
#
# * coldplug: daemon start -> every map in ``dmsetup status`` with all its paths active;
# * fabric down: every path of fabric 0 offlined (sysfs writes) -> each of them failed in
#   the tables, every other path still active;
# * fabric up: the same paths set running -> every path active again;
#   both clocks start when the last write has returned: a write setting a device
#   running takes about 50 ms under emulation (6-7 s for 128 paths, where offlining
#   them takes 0.1 s), which is the bench's time, not the daemon's; the writes' own
#   duration is kept next to the figure (``fabric_*_writes_s``);
# * idle CPU per path-minute: the daemon's CPU (with reaped children) over an idle window
#   after settling, divided by paths x minutes;
# * RSS: VmRSS of the daemon right after coldplug (and VmHWM, its peak, at the end).
#
# Every poll reads every map with ONE ``dmsetup status --target multipath`` run (at 256
# maps, one run per map would cost a minute per poll under emulation); a change is known to
# within one poll, whose mean duration is kept with the figures.

#: how long ``multipath -F`` may take to flush multipathd's maps after a scale run
FLUSH_TIMEOUT = 600.0
#: seconds between the end of one all-maps poll and the start of the next
SCALE_POLL_INTERVAL = 0.5
#: a scale phase may take this long plus SCALE_TIMEOUT_PER_PATH_S per path: 256 paths get
#: ~15 minutes (today's engine: ~3 to coldplug, ~5 to take a fabric back)
SCALE_TIMEOUT_BASE_S = 120.0
SCALE_TIMEOUT_PER_PATH_S = 3.0
#: from this many paths on, the bench boots a bigger guest unless --memory says otherwise
BIG_GUEST_PATHS = 1024
BIG_GUEST_MEMORY = "4G"
DEFAULT_SCALE_SETTLE = 60.0
DEFAULT_SCALE_WINDOW = 120.0
#: both daemons group every path of a LUN together, so the tables are comparable
SCALE_GROUPING = "multibus"
SCALE_PHASES = ("coldplug", "fabric_down", "fabric_up")
#: multipathd's control socket (abstract), as /proc/net/unix lists it
MULTIPATHD_SOCKET = "@/org/kernel/linux/storage/multipathd"

RESULTS_JSON = os.path.join("docs", "bench", "results.json")
RESULTS_MD = os.path.join("docs", "bench", "results.md")


def scale_phase_timeout(paths: int) -> float:
    """Seconds one scale phase (coldplug, fabric down, fabric up) may take."""
    return SCALE_TIMEOUT_BASE_S + SCALE_TIMEOUT_PER_PATH_S * max(0, paths)


def parse_scale_list(values: Sequence[str]) -> list[str]:
    """``--scale`` values, repeatable or comma lists, in order, each once; names checked."""
    from dmpath.lab.topology import get_topology

    out: list[str] = []
    for value in values:
        for name in (v.strip() for v in value.split(",")):
            if name and name not in out:
                t = get_topology(name)  # TopologyError for a bad name
                if t.paths < 2:
                    raise BenchError(f"--scale {name}: a fabric test needs at least 2 paths")
                out.append(name)
    return out


def scale_paths(names: Sequence[str]) -> int:
    """The most paths any of the scale topologies ``names`` has (0 for none)."""
    from dmpath.lab.topology import get_topology

    return max((get_topology(n).disks for n in names), default=0)


def guest_memory_for(names: Sequence[str], asked: str | None) -> str:
    """The guest memory for a bench run: ``asked`` if given, else 4G from 1,024 paths on
    (a 2 GB guest was seen to hold 256 paths with both daemons), else the lab's default."""
    from dmpath.lab.vm import GUEST_MEMORY

    if asked:
        return asked
    return BIG_GUEST_MEMORY if scale_paths(names) >= BIG_GUEST_PATHS else GUEST_MEMORY


def parse_vm_kb(status_text: str, field_name: str) -> int | None:
    """A ``Vm*`` field of /proc/PID/status in kB (``VmRSS:	  12345 kB``); None if absent."""
    for line in status_text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key == field_name:
            words = rest.split()
            if len(words) == 2 and words[1] == "kB" and words[0].isdigit():
                return int(words[0])
            raise ValueError(f"/proc/PID/status {field_name} is not 'N kB': {line!r}")
    return None


def unix_socket_listed(proc_net_unix: str, name: str) -> bool:
    """Whether /proc/net/unix lists a socket bound to ``name`` (abstract ones start ``@``)."""
    for line in proc_net_unix.splitlines()[1:]:
        words = line.split()
        if len(words) >= 8 and words[-1] == name:
            return True
    return False


@dataclass
class ScaleResult:
    """One daemon's figures on one scale topology."""

    daemon: str
    topology: str
    luns: int
    paths: int
    version: str = ""
    command: str = ""
    pid: int = 0
    coldplug_s: float | None = None
    fabric_down_s: float | None = None
    fabric_up_s: float | None = None
    fabric_paths: int = 0  # paths offlined in "fabric down"
    #: how long the bench's sysfs writes took (the phase clocks start after them)
    fabric_down_writes_s: float | None = None
    fabric_up_writes_s: float | None = None
    #: path groups per map after coldplug (multibus: [1]; anything else: not comparable)
    groups_per_map: list[int] = field(default_factory=list)
    settle_s: float = 0.0
    window_s: float = 0.0
    clk_tck: int = 100
    cpu_ticks: int | None = None  # own + reaped children's, over the idle window
    rss_kb: int | None = None  # after coldplug
    peak_rss_kb: int | None = None  # VmHWM at the end of the phases
    poll_seconds: list[float] = field(default_factory=list)
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def idle_cpu_s(self) -> float | None:
        return None if self.cpu_ticks is None else ticks_to_seconds(self.cpu_ticks, self.clk_tck)

    @property
    def cpu_per_path_minute(self) -> float | None:
        """CPU seconds per path per minute while idle."""
        cpu = self.idle_cpu_s
        if cpu is None or self.window_s <= 0 or self.paths <= 0:
            return None
        return per_minute(cpu, self.window_s) / self.paths

    @property
    def rss_mb(self) -> float | None:
        return None if self.rss_kb is None else self.rss_kb / 1024

    @property
    def peak_rss_mb(self) -> float | None:
        return None if self.peak_rss_kb is None else self.peak_rss_kb / 1024

    def figures(self) -> dict[str, float | None]:
        """The figures compared between the daemons (the keys of ``scale_ratios``)."""
        return {
            "coldplug_s": self.coldplug_s,
            "fabric_down_s": self.fabric_down_s,
            "fabric_up_s": self.fabric_up_s,
            "idle_cpu_s_per_path_minute": self.cpu_per_path_minute,
            "rss_mb": self.rss_mb,
        }

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("poll_seconds")
        d["polls"] = len(self.poll_seconds)
        d["poll_seconds_mean"] = _mean(self.poll_seconds)
        d["idle_cpu_s"] = self.idle_cpu_s
        d["peak_rss_mb"] = self.peak_rss_mb
        d.update(self.figures())
        return d


def scale_ratios(mine: ScaleResult, theirs: ScaleResult) -> dict[str, float | None]:
    """dmpathd / multipathd per scale figure (below 1: dmpathd is better)."""
    a, b = mine.figures(), theirs.figures()
    return {k: ratio(a[k], b[k]) for k in a}


#: (label, key in ScaleResult.figures(), digits) of the scale rows, in the order shown
SCALE_ROWS: tuple[tuple[str, str, int], ...] = (
    ("coldplug s", "coldplug_s", 1),
    ("fabric down s", "fabric_down_s", 1),
    ("fabric up s", "fabric_up_s", 1),
    ("idle CPU s per path-minute", "idle_cpu_s_per_path_minute", 4),
    ("RSS MB after coldplug", "rss_mb", 1),
)


def scale_table(results: Sequence[ScaleResult]) -> Table:
    """The scale rows of one topology: one column per daemon, then the ratio."""
    by_name = {r.daemon: r for r in results}
    mine, theirs = by_name.get("dmpathd"), by_name.get("multipathd")
    rr: dict[str, float | None] = scale_ratios(mine, theirs) if mine and theirs else {}
    first = results[0] if results else None
    title = (
        f"scale {first.topology}: {first.luns} LUNs x {first.paths // max(1, first.luns)} "
        f"paths = {first.paths} paths ({SCALE_GROUPING}, lab VM under TCG)"
        if first
        else "scale"
    )
    table = Table(
        title=title, caption="ratio = dmpathd / multipathd: below 1 favours dmpathd" if rr else None
    )
    table.add_column("figure", style="bold", no_wrap=True)
    for r in results:
        table.add_column(r.daemon, justify="right", no_wrap=True)
    if rr:
        table.add_column("ratio", justify="right", no_wrap=True)
    for label, key, digits in SCALE_ROWS:
        cells = [format_seconds(r.figures()[key], digits) for r in results]
        table.add_row(label, *cells, *([format_ratio(rr.get(key))] if rr else []))
    table.add_row(
        "peak RSS MB", *(format_seconds(r.peak_rss_mb, 1) for r in results), *([""] if rr else [])
    )
    table.add_row(
        "all-maps poll s (mean)",
        *(format_seconds(_mean(r.poll_seconds), 2) for r in results),
        *([""] if rr else []),
    )
    return table


# ------------------------------------------------------------- the results file (pure)
#
# docs/bench/results.json: {"format": 1, "records": [...]}, oldest first, one record per
# topology per run. Two kinds:
#
# "measured" (this bench, in the lab VM):
#   {"kind": "measured", "date": ISO-8601, "kernel": "6.1.0-...", "topology": "64x4",
#    "luns": 64, "paths": 256, "git_commit": "abc1234", "git_dirty": false,
#    "guest_memory": "2G", "settle_s": 60, "window_s": 120, "grouping": "multibus",
#    "daemons": {"dmpathd": {"version": "...", "coldplug_s": 1.0, "fabric_down_s": ...,
#                            "fabric_up_s": ..., "idle_cpu_s_per_path_minute": ...,
#                            "rss_mb": ..., "peak_rss_mb": ..., "error": ""},
#                "multipathd": {...}},
#    "ratios": {"coldplug_s": 0.5, ...}, "error": null}
#
# "simulated" (the engine against a simulated kernel, no VM):
#   {"kind": "simulated", "date": ISO-8601, "topology": "256x4", "paths": 1024,
#    "git_commit": "abc1234", "daemon": "dmpathd" (optional), "notes": [...] (optional),
#    "phases": {"coldplug": {"cpu_s": 1.0, "wall_s": 2.0, "rss_mb": 50.0},
#               "fabric_down": {...}, ...}}
#   Any phase names are rendered, in the order given; a missing figure shows as n/a.

RESULTS_FORMAT = 1
MEASURED_FIGURES: tuple[tuple[str, str, int], ...] = (
    ("coldplug s", "coldplug_s", 1),
    ("fabric down s", "fabric_down_s", 1),
    ("fabric up s", "fabric_up_s", 1),
    ("idle CPU s/path-min", "idle_cpu_s_per_path_minute", 4),
    ("RSS MB", "rss_mb", 1),
)
SIMULATED_FIGURES: tuple[tuple[str, str, int], ...] = (
    ("CPU s", "cpu_s", 2),
    ("wall s", "wall_s", 2),
    ("RSS MB", "rss_mb", 1),
    ("% of a core", "cpu_pct_of_core", 2),
)


def empty_results() -> dict[str, Any]:
    return {"format": RESULTS_FORMAT, "records": []}


def append_records(doc: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A new results document: ``doc``'s records, then ``records`` (the file keeps history)."""
    if doc.get("format") != RESULTS_FORMAT or not isinstance(doc.get("records"), list):
        raise BenchError(f"results file: format {RESULTS_FORMAT} with a 'records' list expected")
    return {**doc, "records": [*doc["records"], *records]}


def measured_records(
    guest_doc: dict[str, Any], *, commit: str, dirty: bool, memory: str
) -> list[dict[str, Any]]:
    """The results-file records of a bench run's scale part (the guest's bench.json)."""
    out: list[dict[str, Any]] = []
    for entry in guest_doc.get("scale") or []:
        daemons = entry.get("daemons") or {}
        out.append(
            {
                "kind": "measured",
                "date": guest_doc.get("started"),
                "kernel": guest_doc.get("kernel"),
                "topology": entry.get("topology"),
                "luns": entry.get("luns"),
                "paths": entry.get("paths"),
                "git_commit": commit,
                "git_dirty": dirty,
                "guest_memory": memory,
                "settle_s": guest_doc.get("scale_settle_s"),
                "window_s": guest_doc.get("scale_window_s"),
                "grouping": SCALE_GROUPING,
                "daemons": {
                    name: {
                        "version": d.get("version", ""),
                        **{key: d.get(key) for _l, key, _d in MEASURED_FIGURES},
                        "peak_rss_mb": d.get("peak_rss_mb"),
                        "error": d.get("error", ""),
                    }
                    for name, d in daemons.items()
                },
                "ratios": entry.get("ratios") or {},
                "error": entry.get("error") or None,
            }
        )
    return out


def _cell(value: object, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return f"{value:.{digits}f}"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _paths_of(rec: Mapping[str, Any]) -> int:
    paths = rec.get("paths")
    return paths if isinstance(paths, int) else 0


def _commit_of(rec: Mapping[str, Any]) -> str:
    commit = str(rec.get("git_commit") or "?")
    return commit + ("+dirty" if rec.get("git_dirty") else "")


def render_results_md(records: Sequence[Mapping[str, Any]]) -> str:
    """docs/bench/results.md from the records: a section per topology (fewest paths
    first), in it a table of the measured runs and one of the simulated ones, newest
    first. Pure: the same records give the same text."""
    lines = [
        "# dmpath benchmark results",
        "",
        "Rendered from `results.json` by `python -m dmpath.lab bench` (do not edit by hand).",
        "Measured rows: dmpathd and multipathd one after the other in the lab VM (Debian's 6.1",
        "kernel under qemu TCG emulation, so absolute times are slow: compare ratios), same",
        f"kernel, same scsi_debug paths, both with `path_grouping_policy {SCALE_GROUPING}`;",
        "scsi_debug's standby hosts are removed first. coldplug: daemon start until every map",
        "has all its paths active in `dmsetup status`; fabric down/up: half the paths (fabric",
        "0) offlined/set running at once until the tables agree; idle CPU: over an idle window",
        "after settling; RSS: VmRSS after coldplug. ratio = dmpathd / multipathd (below 1",
        "favours dmpathd). Simulated rows: the engine against a simulated kernel, no VM.",
        "",
    ]
    if not records:
        lines += ["No runs recorded yet.", ""]
        return "\n".join(lines)
    from dmpath.lab.stallbench import stall_md

    stall = stall_md(records)
    records = [r for r in records if r.get("kind") != "stall"]
    indexed = list(enumerate(records))
    topologies = sorted(
        {str(r.get("topology")) for r in records},
        key=lambda t: (min(_paths_of(r) for r in records if str(r.get("topology")) == t), t),
    )
    for topo_name in topologies:
        mine = [(i, r) for i, r in indexed if str(r.get("topology")) == topo_name]
        # newest first: by date, then by position in the file (later appended = newer)
        mine.sort(key=lambda ir: (str(ir[1].get("date") or ""), ir[0]), reverse=True)
        paths = max(_paths_of(r) for _i, r in mine)
        lines += [f"## {topo_name} ({paths} paths)", ""]
        measured = [r for _i, r in mine if r.get("kind") == "measured"]
        simulated = [r for _i, r in mine if r.get("kind") == "simulated"]
        if measured:
            lines += _measured_table(measured)
        if simulated:
            lines += _simulated_table(simulated)
    return "\n".join(lines + stall)


def _measured_table(records: Sequence[Mapping[str, Any]]) -> list[str]:
    head = ["date", "commit", "window s", "daemon", *(label for label, _k, _d in MEASURED_FIGURES)]
    out = ["Measured (lab VM):", "", _md_row(head), _md_row(["---"] * len(head))]
    for rec in records:
        # the idle window is shown: a short one (a smoke run) gives rough CPU figures
        date, commit = str(rec.get("date") or "?"), _commit_of(rec)
        window = _cell(rec.get("window_s"), 0)
        daemons = rec.get("daemons") or {}
        for name in sorted(daemons, key=lambda n: (n != "dmpathd", n)):
            d = daemons[name]
            cells = [_cell(d.get(key), digits) for _l, key, digits in MEASURED_FIGURES]
            if d.get("error"):
                cells[-1] += f" (error: {d['error'].splitlines()[0][:80]})"
            out.append(_md_row([date, commit, window, name, *cells]))
        rr = rec.get("ratios") or {}
        if rr:
            cells = [format_ratio(rr.get(key)) for _l, key, _d in MEASURED_FIGURES]
            out.append(_md_row([date, commit, window, "ratio", *cells]))
        if rec.get("error"):
            out.append(_md_row([date, commit, window, "error", str(rec["error"])[:120]]))
    return [*out, ""]


def _simulated_table(records: Sequence[Mapping[str, Any]]) -> list[str]:
    head = ["date", "commit", "daemon", "phase", *(label for label, _k, _d in SIMULATED_FIGURES)]
    out = ["Simulated (no VM):", "", _md_row(head), _md_row(["---"] * len(head))]
    for rec in records:
        date, commit = str(rec.get("date") or "?"), _commit_of(rec)
        daemon = str(rec.get("daemon") or "dmpathd")
        phases = rec.get("phases") or {}
        for phase_name, figs in phases.items():
            cells = [_cell((figs or {}).get(key), digits) for _l, key, digits in SIMULATED_FIGURES]
            out.append(_md_row([date, commit, daemon, str(phase_name), *cells]))
    return [*out, ""]


# ---------------------------------------------------------------------- guest side


def wait_until(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.5) -> Any:
    """Poll ``pred`` until it returns something truthy; BenchError after ``timeout``.

    A DmpathError from ``pred`` (a tool failing while things settle) is retried; a
    BenchError (the daemon died) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            got = pred()
            if got:
                return got
        except BenchError:
            raise
        except DmpathError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise BenchError(
                f"timed out after {timeout:g} s waiting for {what}"
                + (f" (last error: {last})" if last else "")
            )
        time.sleep(step)


def read_proc_cpu(pid: int) -> ProcCpu:
    with open(f"/proc/{pid}/stat") as fh:
        return parse_proc_stat(fh.read())


def scsi_commands(names: Sequence[str]) -> int | None:
    """SCSI commands dispatched so far to the devices ``names`` (None if sysfs lacks it)."""
    total = 0
    for name in names:
        try:
            with open(f"/sys/block/{name}/device/iorequest_cnt") as fh:
                total += parse_iocounter(fh.read())
        except (OSError, ValueError):
            return None
    return total


class Daemon(Protocol):
    name: str

    def start(self) -> None: ...
    def pid(self) -> int: ...
    def alive(self) -> bool: ...
    def version(self) -> str: ...
    def command(self) -> str: ...
    def log_size(self) -> int: ...
    def count_checks(self, start: int, end: int) -> int | None: ...
    def intervals(self) -> list[float]: ...
    def stop(self) -> None: ...
    def remove_maps(self) -> None: ...
    def log_tail(self) -> str: ...
    def log_file(self) -> str: ...
    def checker_saw(self, path: str, since: float, up: bool) -> float | None: ...


class Dmpathd:
    """dmpathd with its defaults, as tests run it (harness.DaemonUnderTest)."""

    name = "dmpathd"

    def __init__(
        self, workdir: str, defaults: dict[str, str] | None = None, extra: str = ""
    ) -> None:
        from dmpath.lab.harness import DaemonUnderTest

        shutil.rmtree(workdir, ignore_errors=True)  # fresh bindings: mpatha, mpathb, ...
        self.d = DaemonUnderTest(workdir, dict(defaults or {}), extra)

    def start(self) -> None:
        from dmpath.lab.harness import LabTimeout

        try:
            self.d.start()
        except (LabTimeout, AssertionError) as exc:
            raise BenchError(f"dmpathd did not start: {exc}") from None

    def pid(self) -> int:
        assert self.d.proc is not None
        return self.d.proc.pid

    def alive(self) -> bool:
        return self.d.proc is not None and self.d.proc.poll() is None

    def version(self) -> str:
        import dmpath

        return dmpath.__version__

    def command(self) -> str:
        changed = ", ".join(f"{k} {v}" for k, v in self.d.defaults.items())
        return (
            f"{sys.executable} -m dmpath.daemon.main -c {self.d.config} -v "
            f"(defaults{', ' + changed if changed else ''})"
        )

    def log_size(self) -> int:
        return 0

    def count_checks(self, start: int, end: int) -> int | None:
        return None  # counted as SCSI commands: one TUR per check

    def intervals(self) -> list[float]:
        return [float(p["interval"]) for m in self.d.show()["maps"] for p in m["paths"]]

    def stop(self) -> None:
        if not self.alive():
            return
        try:
            self.d.stop()
        except subprocess.TimeoutExpired:
            self.d.kill()

    def remove_maps(self) -> None:
        remove_all_multipath_maps()

    def log_tail(self) -> str:
        return self.d.log()

    def log_file(self) -> str:
        return self.d.log_path

    def checker_saw(self, path: str, since: float, up: bool) -> float | None:
        """When dmpathd's checker first reported ``path`` up (or down) since ``since``."""
        word = ("checker: up", "checker: ghost") if up else ("checker: down",)
        times = [
            float(e["time"])
            for e in self.d.show()["events"]
            if e["kind"] == "check"
            and e["path"] == path
            and float(e["time"]) >= since
            and any(w in e["message"] for w in word)
        ]
        return min(times) if times else None


class Multipathd:
    """multipath-tools' multipathd in the foreground at -v3, with :data:`MULTIPATH_CONF`."""

    name = "multipathd"

    def __init__(
        self,
        workdir: str,
        verbosity: int = 3,
        grouping: str | None = None,
        conf: str = MULTIPATH_CONF,
    ) -> None:
        """``verbosity`` 3 logs every check (counted in the 2x2 rows); at scale the default
        2 is used, so logging thousands of checks is not what is measured. ``grouping``
        sets ``path_grouping_policy`` in the defaults section; ``conf`` is the
        multipath.conf written (the scsi_debug disks only, by default)."""
        self.workdir = workdir
        self.verbosity = verbosity
        self.grouping = grouping
        self.conf = conf
        if grouping:
            self.conf = MULTIPATH_CONF.replace(
                "    user_friendly_names yes\n",
                f"    user_friendly_names yes\n    path_grouping_policy {grouping}\n",
            )
        os.makedirs(workdir, exist_ok=True)
        self.log_path = os.path.join(workdir, "multipathd.log")
        self.proc: subprocess.Popen[bytes] | None = None
        exe = shutil.which("multipathd") or "/sbin/multipathd"
        if not os.access(exe, os.X_OK):
            raise BenchError(
                "multipathd is not installed: run the bench from the host "
                "('python -m dmpath.lab bench' installs multipath-tools)"
            )
        self.exe = exe
        self.argv = [exe, "-d", "-s", f"-v{verbosity}"]

    def start(self) -> None:
        os.makedirs("/etc/multipath", exist_ok=True)
        for stale in ("/etc/multipath/bindings", "/etc/multipath/wwids"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)  # fresh names: mpatha, mpathb, ... as dmpathd's
        with open("/etc/multipath.conf", "w") as fh:
            fh.write(self.conf)
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_until(self._started, START_TIMEOUT, "multipathd to open its socket")

    def _started(self) -> bool:
        if not self.alive():
            rc = self.proc.returncode if self.proc else None
            raise BenchError(f"multipathd exited with status {rc}:\n{self.log_tail()}")
        if self.verbosity < 3:  # the startup line is logged at -v3 only
            with open("/proc/net/unix") as fh:
                return unix_socket_listed(fh.read(), MULTIPATHD_SOCKET)
        with open(self.log_path, errors="replace") as fh:
            return "uxsock: startup listener" in fh.read()

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def version(self) -> str:
        from dmpath.runner import run

        res = run("dpkg-query", ["-W", "-f", "${Version}", "multipath-tools"], check=False)
        return res.stdout.strip() if res.ok else ""

    def command(self) -> str:
        extra = f", path_grouping_policy {self.grouping}" if self.grouping else ""
        return " ".join(self.argv) + f" (/etc/multipath.conf: find_multipaths no{extra})"

    def log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def count_checks(self, start: int, end: int) -> int | None:
        with open(self.log_path, "rb") as fh:
            fh.seek(start)
            chunk = fh.read(max(0, end - start))
        return count_multipathd_checks(chunk.decode(errors="replace"))

    def intervals(self) -> list[float]:
        return []

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=STOP_TIMEOUT)

    def remove_maps(self) -> None:
        from dmpath.runner import run

        # flushing 256 maps took multipath longer than a minute under emulation: this
        # is a clean-up, not a measurement, so it gets all the time it needs
        run("multipath", ["-F"], check=False, timeout=FLUSH_TIMEOUT)
        remove_all_multipath_maps()

    def log_tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def log_file(self) -> str:
        return self.log_path

    def checker_saw(self, path: str, since: float, up: bool) -> float | None:
        return None  # -s: its log lines carry no time


def remove_all_multipath_maps() -> None:
    """Every multipath map in the kernel (the bench's phase made them all)."""
    from dmpath.kernel import dmsetup

    for dev in dmsetup.list_maps():
        with contextlib.suppress(DmpathError):
            dmsetup.fail_if_no_path(dev.name)  # nothing may queue forever
        dmsetup.remove(dev.name, force=True)


def map_states() -> dict[str, dict[str, bool]]:
    """map name -> {devnum: active} for every multipath map, from ``dmsetup status``."""
    from dmpath.kernel import dmsetup

    out: dict[str, dict[str, bool]] = {}
    for dev in dmsetup.list_maps():
        st = dmsetup.status(dev.name)
        out[dev.name] = {p.dev: p.active for g in st.groups for p in g.paths}
    return out


@dataclass
class Bench:
    console: Console
    topology: str
    rounds: int = DEFAULT_ROUNDS
    settle: float = DEFAULT_SETTLE
    window: float = DEFAULT_WINDOW
    gap: float = DEFAULT_GAP
    workdir: str = WORKDIR
    offline: list[str] = field(default_factory=list)

    def say(self, text: str, style: str = "") -> None:
        self.console.print(Text(text, style=style))

    def run_phase(self, daemon: Daemon, paths: Sequence[Any], result: PhaseResult) -> None:
        luns = len({p.wwid for p in paths})
        per_lun = len(paths) // max(1, luns)
        if map_states():
            raise BenchError("multipath maps exist before the phase: the lab is not clean")
        result.version = daemon.version()
        result.command = daemon.command()
        result.clk_tck = os.sysconf("SC_CLK_TCK")
        self.say(f"{daemon.name}: starting ({result.command})", "bold cyan")
        t0 = time.monotonic()
        daemon.start()
        result.pid = daemon.pid()

        def ready() -> dict[str, dict[str, bool]] | None:
            if not daemon.alive():
                raise BenchError(f"{daemon.name} exited:\n{daemon.log_tail()}")
            states = map_states()
            if len(states) != luns:
                return None
            if any(len(s) != per_lun or not all(s.values()) for s in states.values()):
                return None
            return states

        states = wait_until(
            ready, MAPS_TIMEOUT, f"{daemon.name}'s {luns} maps with {per_lun} active paths each"
        )
        result.maps_after_s = time.monotonic() - t0
        result.maps = sorted(states)
        map_of = {dev: name for name, s in states.items() for dev in s}
        self.say(
            f"{daemon.name}: maps {', '.join(result.maps)} with every path active after "
            f"{result.maps_after_s:.1f} s; settling {self.settle:g} s"
        )
        time.sleep(self.settle)
        self._check_alive(daemon)

        # ---- idle window: nothing of ours runs while it lasts
        names = [p.name for p in paths]
        intervals = daemon.intervals()
        self.say(f"{daemon.name}: idle window of {self.window:g} s (CPU and checks)")
        cpu0, cmd0, log0 = read_proc_cpu(result.pid), scsi_commands(names), daemon.log_size()
        w0 = time.monotonic()
        time.sleep(self.window)
        cpu1, cmd1, log1 = read_proc_cpu(result.pid), scsi_commands(names), daemon.log_size()
        result.window_s = time.monotonic() - w0
        result.settle_s = self.settle
        self._check_alive(daemon)
        d = cpu1 - cpu0
        result.cpu_ticks_own, result.cpu_ticks_children = d.own, d.children
        if cmd0 is not None and cmd1 is not None:
            result.scsi_commands = cmd1 - cmd0
        if intervals:
            result.checks_estimate = estimate_checks(intervals, result.window_s)
        logged = daemon.count_checks(log0, log1)
        if logged is not None:
            result.checks, result.checks_source = logged, "-v3 log"
        elif result.scsi_commands is not None:
            result.checks, result.checks_source = result.scsi_commands, "TURs sent"
        elif result.checks_estimate is not None:
            result.checks = round(result.checks_estimate)
            result.checks_source = "paths x window / interval"
        self.say(
            f"{daemon.name}: {ticks_to_seconds(d.total, result.clk_tck):.2f} s CPU, "
            f"{result.checks} checks, {result.scsi_commands} SCSI commands in "
            f"{result.window_s:.1f} s"
        )

        # ---- rounds: one path down, then up again, a different path each round
        for i in range(self.rounds):
            p = paths[i % len(paths)]
            rnd = Round(p.name, map_of.get(p.devnum, "?"))
            result.rounds.append(rnd)
            if rnd.map == "?":
                raise BenchError(f"{p.name} ({p.devnum}) is in none of the maps")
            rnd.detect_s, rnd.detect_not_before_s, rnd.detect_polls, down_at = (
                self._change_and_time(daemon, p, rnd.map, "offline", result)
            )
            rnd.recover_s, rnd.recover_not_before_s, rnd.recover_polls, up_at = (
                self._change_and_time(daemon, p, rnd.map, "running", result)
            )
            saw_down = daemon.checker_saw(p.name, down_at, up=False)
            saw_up = daemon.checker_saw(p.name, up_at, up=True)
            rnd.checker_down_s = None if saw_down is None else saw_down - down_at
            rnd.checker_up_s = None if saw_up is None else saw_up - up_at
            self.say(
                f"{daemon.name}: round {i + 1}/{self.rounds}: {p.name} ({rnd.map}) failed "
                f"after {rnd.detect_s:.2f} s, active again after {rnd.recover_s:.2f} s"
            )
            if i + 1 < self.rounds:
                time.sleep(self.gap)

    def _check_alive(self, daemon: Daemon) -> None:
        if not daemon.alive():
            raise BenchError(f"{daemon.name} exited:\n{daemon.log_tail()}")

    def _set(self, name: str, state: str) -> None:
        from dmpath.lab import topology as topo

        if state == "offline":
            self.offline.append(name)
        topo.set_state(name, state)
        if state == "running" and name in self.offline:
            self.offline.remove(name)

    def _change_and_time(
        self,
        daemon: Daemon,
        path: Any,
        map_name: str,
        state: str,
        result: PhaseResult,
    ) -> tuple[float, float, int, float]:
        """Write ``state`` to the path's sysfs state, then poll ``dmsetup status`` until
        the map shows the path active (``running``) or failed (``offline``).

        Returns (seen after, not before, polls, wall-clock time of the write): the end of
        the first poll that saw the change and the start of the last poll that did not,
        in seconds from the write; the kernel's change lies between them.
        """
        from dmpath.kernel import dmsetup

        active = state == "running"
        want = "active" if active else "failed"
        cpu0 = os.times()
        wall = time.time()
        t0 = time.monotonic()
        self._set(path.name, state)
        not_before = 0.0
        n = 0
        try:
            while True:
                self._check_alive(daemon)
                start = time.monotonic()
                st = dmsetup.status(map_name)
                end = time.monotonic()
                result.poll_seconds.append(end - start)
                n += 1
                seen = next(
                    (p.active for g in st.groups for p in g.paths if p.dev == path.devnum), None
                )
                if seen is None:
                    raise BenchError(f"{path.devnum} left {map_name} (status: {st})")
                if seen == active:
                    return end - t0, not_before, n, wall
                not_before = start - t0
                if end - t0 > CHANGE_TIMEOUT:
                    raise BenchError(
                        f"{daemon.name}: {path.name} ({path.devnum}) not {want} in {map_name} "
                        f"within {CHANGE_TIMEOUT:g} s\n{daemon.log_tail()[-2000:]}"
                    )
                time.sleep(POLL_INTERVAL)
        finally:
            cpu1 = os.times()
            result.poller_cpu_s += sum(cpu1[:4]) - sum(cpu0[:4])

    def keep_log(self, daemon: Daemon, outdir: str) -> str:
        """Copy the daemon's log next to the results; returns the copy's path ('' if none)."""
        src = daemon.log_file()
        if not src or not os.path.exists(src):
            return ""
        dst = os.path.join(outdir, f"{daemon.name}.log")
        with contextlib.suppress(OSError):
            shutil.copyfile(src, dst)
            return dst
        return ""

    def cleanup(self, daemon: Daemon | None) -> list[str]:
        """Paths running again, daemon stopped, its maps removed; returns what failed."""
        trouble: list[str] = []
        for name in list(self.offline):
            try:
                self._set(name, "running")
            except OSError as exc:
                trouble.append(f"cannot set {name} running: {exc}")
        if daemon is not None:
            try:
                daemon.stop()
            except (OSError, subprocess.SubprocessError) as exc:
                trouble.append(f"cannot stop {daemon.name}: {exc}")
            try:
                daemon.remove_maps()
            except DmpathError as exc:
                trouble.append(f"cannot remove {daemon.name}'s maps: {exc}")
        return trouble


def read_proc_status_kb(pid: int, field_name: str) -> int | None:
    with open(f"/proc/{pid}/status") as fh:
        return parse_vm_kb(fh.read(), field_name)


@dataclass
class ScaleBench:
    """The scale rows of one topology, daemon after daemon (guest side)."""

    bench: Bench
    topology: Any  # dmpath.lab.topology.Topology (imported lazily, as the guest does)
    paths: Sequence[Any]
    phase_timeout: float

    def all_maps(self, result: ScaleResult) -> dict[str, dict[str, bool]]:
        """map -> {devnum: active}, from one dmsetup run; the poll's duration is kept."""
        from dmpath.lab import topology as topo

        start = time.monotonic()
        st = topo.multipath_statuses()
        result.poll_seconds.append(time.monotonic() - start)
        return {name: {p.dev: p.active for _g, p in s.paths()} for name, s in st.items()}

    def wait_state(
        self, daemon: Daemon, result: ScaleResult, what: str, want: Callable[[str], bool]
    ) -> float:
        """Poll until every map of the topology holds exactly its paths and each path's
        activeness is ``want(devnum)``; returns seconds from the call to the end of the
        first poll that saw it (the caller starts the clock just before its change)."""
        devnums = {p.devnum for p in self.paths}
        per_lun = self.topology.paths
        t0 = time.monotonic()

        def ok() -> bool:
            self.bench._check_alive(daemon)
            maps = self.all_maps(result)
            if len(maps) != self.topology.luns or any(len(m) != per_lun for m in maps.values()):
                return False
            seen = {dev: active for m in maps.values() for dev, active in m.items()}
            return set(seen) == devnums and all(seen[d] == want(d) for d in seen)

        wait_until(ok, self.phase_timeout, f"{daemon.name}: {what}", step=SCALE_POLL_INTERVAL)
        return time.monotonic() - t0

    def run(self, daemon: Daemon, result: ScaleResult) -> None:
        say = self.bench.say
        if self.all_maps(result):
            raise BenchError("multipath maps exist before the phase: the lab is not clean")
        result.poll_seconds.clear()
        result.version = daemon.version()
        result.command = daemon.command()
        result.clk_tck = os.sysconf("SC_CLK_TCK")
        say(f"{daemon.name}: starting on {result.paths} paths ({result.command})", "bold cyan")

        t0 = time.monotonic()
        daemon.start()
        result.pid = daemon.pid()
        self.wait_state(daemon, result, "every map with all its paths active", lambda _d: True)
        result.coldplug_s = time.monotonic() - t0
        result.rss_kb = read_proc_status_kb(result.pid, "VmRSS")
        from dmpath.lab import topology as topo

        groups = {len(st.groups) for st in topo.multipath_statuses().values()}
        result.groups_per_map = sorted(groups)
        if groups != {1}:
            result.notes.append(f"path groups per map: {sorted(groups)}, not one (multibus)")
        say(
            f"{daemon.name}: coldplug {result.coldplug_s:.1f} s, RSS {result.rss_mb or 0:.1f} MB, "
            f"path groups per map {result.groups_per_map}; settling {self.bench.settle:g} s"
        )
        time.sleep(self.bench.settle)
        self.bench._check_alive(daemon)

        # idle window: nothing of ours polls while it lasts
        cpu0 = read_proc_cpu(result.pid)
        w0 = time.monotonic()
        time.sleep(self.bench.window)
        cpu1 = read_proc_cpu(result.pid)
        result.window_s = time.monotonic() - w0
        result.settle_s = self.bench.settle
        self.bench._check_alive(daemon)
        result.cpu_ticks = (cpu1 - cpu0).total
        say(
            f"{daemon.name}: idle {result.idle_cpu_s or 0:.2f} s CPU in {result.window_s:.0f} s "
            f"= {result.cpu_per_path_minute or 0:.4f} s per path-minute"
        )

        fabric0 = [p for p in self.paths if p.fabric == 0]
        down = {p.devnum for p in fabric0}
        result.fabric_paths = len(fabric0)
        writes, took = self.set_fabric(
            daemon, result, fabric0, "offline", what="fabric 0 failed", want=lambda d: d not in down
        )
        result.fabric_down_writes_s, result.fabric_down_s = writes, took
        say(
            f"{daemon.name}: fabric down ({len(fabric0)} paths) {took:.1f} s "
            f"after the last of {writes:.1f} s of writes"
        )
        writes, took = self.set_fabric(
            daemon, result, fabric0, "running", what="every path active again", want=lambda _d: True
        )
        result.fabric_up_writes_s, result.fabric_up_s = writes, took
        result.peak_rss_kb = read_proc_status_kb(result.pid, "VmHWM")
        say(f"{daemon.name}: fabric up {took:.1f} s after the last of {writes:.1f} s of writes")

    def set_fabric(
        self,
        daemon: Daemon,
        result: ScaleResult,
        paths: Sequence[Any],
        state: str,
        *,
        what: str,
        want: Callable[[str], bool],
    ) -> tuple[float, float]:
        """Set ``paths`` to ``state`` and wait until the tables show ``want``; returns the
        seconds the writes took and the seconds from the last write to the tables."""
        w0 = time.monotonic()
        for p in paths:
            self.bench._set(p.name, state)
        t0 = time.monotonic()
        self.wait_state(daemon, result, what, want)
        return t0 - w0, time.monotonic() - t0


def run_scale(
    console: Console,
    name: str,
    *,
    settle: float,
    window: float,
    workdir: str,
    outdir: str,
    phase_timeout: float | None,
) -> dict[str, Any]:
    """Load topology ``name`` (standby hosts dropped), run both daemons on it; returns its
    entry for bench.json (figures, ratios, error)."""
    from dmpath.lab import topology as topo

    t = topo.get_topology(name)
    bench = Bench(console, name, settle=settle, window=window, workdir=workdir)
    entry: dict[str, Any] = {
        "topology": name,
        "luns": t.luns,
        "paths": t.disks,
        "daemons": {},
        "ratios": {},
        "error": None,
    }
    results: list[ScaleResult] = []
    try:
        bench.say(f"scale {name}: loading {t.disks} paths (standby hosts dropped)", "bold")
        t0 = time.monotonic()
        paths = topo.setup(t, drop_standby=True, say=bench.say)
        entry["setup_s"] = time.monotonic() - t0
        bench.say(f"scale {name}: {len(paths)} paths ready after {entry['setup_s']:.0f} s")
        scale = ScaleBench(bench, t, paths, phase_timeout or scale_phase_timeout(t.disks))
        factories: list[tuple[str, Callable[[str], Daemon]]] = [
            ("dmpathd", lambda w: Dmpathd(w, defaults={"path_grouping_policy": SCALE_GROUPING})),
            ("multipathd", lambda w: Multipathd(w, verbosity=2, grouping=SCALE_GROUPING)),
        ]
        for dname, factory in factories:
            result = ScaleResult(dname, name, t.luns, t.disks)
            results.append(result)
            daemon: Daemon | None = None
            try:
                daemon = factory(os.path.join(workdir, f"{name}-{dname}"))
                scale.run(daemon, result)
            except (BenchError, DmpathError, OSError) as exc:
                result.error = str(exc)
                raise
            finally:
                problems = bench.cleanup(daemon)
                if daemon is not None:
                    with contextlib.suppress(OSError):
                        src = daemon.log_file()
                        if src and os.path.exists(src):
                            shutil.copyfile(src, os.path.join(outdir, f"{name}-{dname}.log"))
                result.notes += problems
                entry["daemons"][dname] = result.to_dict()
            if problems:
                raise BenchError("; ".join(problems))
    except (BenchError, DmpathError, OSError) as exc:
        entry["error"] = str(exc)
    by_name = {r.daemon: r for r in results}
    if "dmpathd" in by_name and "multipathd" in by_name:
        entry["ratios"] = scale_ratios(by_name["dmpathd"], by_name["multipathd"])
    if results:
        console.print()
        console.print(scale_table(results))
    return entry


def write_json(path: str, doc: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


def guest_main(argv: Sequence[str] | None = None) -> int:
    """In the lab VM: run both phases, print the table, write ``bench.json``."""
    ap = argparse.ArgumentParser(prog="python -m dmpath.lab.bench", description=__doc__)
    add_arguments(ap)
    ap.add_argument("--width", type=int, default=int(os.environ.get("COLUMNS") or 100))
    ap.add_argument("--color", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--workdir", default=WORKDIR)
    args = ap.parse_args(argv)
    logging.getLogger("dmpath").addHandler(logging.NullHandler())
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(  # type: ignore[union-attr]
            encoding="utf-8", errors="replace", line_buffering=True
        )
    console = make_console(args.color, max(60, args.width))
    if os.environ.get("DMPATH_LAB") != "1":
        console.print(
            Text(
                "the bench offlines SCSI devices and rewrites /etc/multipath.conf: it runs "
                "only inside the lab VM (python -m dmpath.lab bench)",
                style="bold red",
            )
        )
        return 2
    outdir = os.environ.get("DMPATH_LAB_OUTDIR") or args.workdir

    bench = Bench(
        console,
        os.environ.get("DMPATH_LAB_TOPOLOGY", args.topology),
        rounds=args.rounds,
        settle=args.settle,
        window=args.window,
        gap=args.gap,
        workdir=args.workdir,
    )
    doc: dict[str, Any] = {
        "kind": "dmpath-bench",
        "format": 1,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "kernel": os.uname().release,
        "topology": bench.topology,
        "rounds": bench.rounds,
        "settle_s": bench.settle,
        "window_s": bench.window,
        "gap_s": bench.gap,
        "poll_interval_s": POLL_INTERVAL,
        "emulated": True,
        "notes": [
            "TCG emulation: absolute times are slow; compare ratios",
            "detection/recovery: end of the first dmsetup status poll that showed the change",
            "CPU: utime+stime of the daemon plus its reaped children, /proc/PID/stat",
            "multipathd checks: non-pending checker results in its -v3 log; dmpathd checks: "
            "TURs sent (sysfs iorequest_cnt delta, one TUR per check)",
        ],
        "daemons": {},
        "ratios": {},
        "error": None,
        "scale": [],
        "scale_settle_s": args.scale_settle,
        "scale_window_s": args.scale_window,
    }
    phases: list[PhaseResult] = []
    error = ""
    try:
        if not args.scale_only:
            run_rounds(console, bench, doc, outdir, phases)
    except (BenchError, DmpathError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BenchError) else str(exc)
    except KeyboardInterrupt:
        error = "interrupted"
    scale_names: list[str] = []
    if not error:
        try:
            scale_names = parse_scale_list(args.scale or [])
        except DmpathError as exc:
            error = str(exc)
    for name in scale_names:
        try:
            entry = run_scale(
                console,
                name,
                settle=args.scale_settle,
                window=args.scale_window,
                workdir=args.workdir,
                outdir=outdir,
                phase_timeout=args.phase_timeout,
            )
        except KeyboardInterrupt:
            error = "interrupted"
            break
        doc["scale"].append(entry)
        if entry["error"]:
            error = f"scale {name}: {entry['error']}"
            break
    if args.stall and not error:
        from dmpath.lab.stallbench import run_stall

        try:
            doc["stall"] = run_stall(
                console, workdir=args.workdir, outdir=outdir, rounds=args.stall_rounds
            )
        except KeyboardInterrupt:
            error = "interrupted"
        else:
            if doc["stall"]["error"]:
                error = f"stall: {doc['stall']['error']}"
    by_name = {p.daemon: p for p in phases}
    if "dmpathd" in by_name and "multipathd" in by_name:
        doc["ratios"] = ratios(by_name["dmpathd"], by_name["multipathd"])
    doc["error"] = error or None
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = os.path.join(outdir, RESULT_FILE)
    try:
        write_json(path, doc)
    except OSError as exc:
        error = error or f"cannot write {path}: {exc}"
    console.print()
    if phases:
        console.print(result_table(phases))
        for p in phases:
            console.print(Text(f"{p.daemon} {p.version}: {p.command}", style="dim"), soft_wrap=True)
        console.print(
            Text(
                f"settle {bench.settle:g} s before an idle window of {bench.window:g} s; "
                "detection/recovery = seconds from the sysfs state write until dmsetup status "
                "showed the change (polled every "
                f"{POLL_INTERVAL:g} s + one dmsetup run); ratios below 1 favour dmpathd.",
                style="dim",
            )
        )
    if doc["scale"]:
        console.print(
            Text(
                f"scale: settle {args.scale_settle:g} s, idle window {args.scale_window:g} s; "
                "times from daemon start / the sysfs writes until one dmsetup status "
                "--target multipath showed every map in the state (polled every "
                f"{SCALE_POLL_INTERVAL:g} s + one dmsetup run); ratios below 1 favour dmpathd.",
                style="dim",
            )
        )
    console.print(Text(f"results: {path}", style="dim"))
    if error:
        console.print(Text(f"the bench could not run to the end: {error}", style="bold red"))
        return 1
    return 0


def run_rounds(
    console: Console, bench: Bench, doc: dict[str, Any], outdir: str, phases: list[PhaseResult]
) -> None:
    """The one-path-at-a-time rows on the topology the lab loaded (2x2 by default); each
    daemon's result is appended to ``phases`` as it starts, so a failed run still shows."""
    from dmpath.lab import topology as topo

    paths = topo.discover()
    if len(paths) < 2:
        raise BenchError(
            "no scsi_debug paths to measure on: run through 'python -m dmpath.lab bench', "
            "which boots the lab VM and loads the topology"
        )
    console.print(
        Text(
            f"bench: {len(paths)} paths ({', '.join(p.name for p in paths)}), "
            f"settle {bench.settle:g} s, idle window {bench.window:g} s, "
            f"{bench.rounds} rounds",
            style="bold",
        )
    )
    # dmpathd first: multipathd's "1 alua" tables attach scsi_dh_alua to the paths
    factories: list[tuple[str, Callable[[str], Daemon]]] = [
        ("dmpathd", Dmpathd),
        ("multipathd", Multipathd),
    ]
    for name, factory in factories:
        result = PhaseResult(name)
        phases.append(result)
        daemon: Daemon | None = None
        try:
            daemon = factory(os.path.join(bench.workdir, name))
            bench.run_phase(daemon, paths, result)
        except (BenchError, DmpathError, OSError) as exc:
            result.error = str(exc)
            raise
        finally:
            problems = bench.cleanup(daemon)
            if daemon is not None and bench.keep_log(daemon, outdir):
                result.notes.append(f"log: {name}.log next to {RESULT_FILE}")
            result.notes += problems
            doc["daemons"][name] = result.to_dict()
        if problems:
            raise BenchError("; ".join(problems))


# ---------------------------------------------------------------------- host side


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The bench's options, shared by the host command and the guest entry point."""
    ap.add_argument(
        "--topology", default=DEFAULT_TOPOLOGY, help=f"LUNSxPATHS (default {DEFAULT_TOPOLOGY})"
    )
    ap.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="path down/up rounds")
    ap.add_argument(
        "--settle", type=float, default=DEFAULT_SETTLE, help="idle seconds before measuring"
    )
    ap.add_argument(
        "--window", type=float, default=DEFAULT_WINDOW, help="idle CPU window in seconds"
    )
    ap.add_argument("--gap", type=float, default=DEFAULT_GAP, help="seconds between rounds")
    ap.add_argument(
        "--scale",
        action="append",
        metavar="LUNSxPATHS",
        help="add scale rows for this topology (repeatable or a comma list, e.g. 64x4,256x4)",
    )
    ap.add_argument(
        "--scale-only",
        action="store_true",
        help="skip the one-path rounds (2x2 rows): scale and/or stall rows only",
    )
    ap.add_argument(
        "--stall",
        action="store_true",
        help="add the stall rows: an iSCSI portal black-holed under verified I/O",
    )
    ap.add_argument(
        "--stall-rounds", type=int, default=2, help="black holes per daemon (stall rows)"
    )
    ap.add_argument(
        "--scale-settle",
        type=float,
        default=DEFAULT_SCALE_SETTLE,
        help="idle seconds after coldplug before the idle window (scale)",
    )
    ap.add_argument(
        "--scale-window",
        type=float,
        default=DEFAULT_SCALE_WINDOW,
        help="idle CPU window in seconds (scale)",
    )
    ap.add_argument(
        "--phase-timeout",
        type=float,
        default=None,
        help="seconds one scale phase may take (default: 120 + 3 per path)",
    )
    ap.add_argument(
        "--memory",
        default=None,
        help=f"guest memory (default 2G; {BIG_GUEST_MEMORY} from {BIG_GUEST_PATHS} paths on)",
    )
    ap.add_argument(
        "--simulate",
        action="append",
        metavar="LUNSxPATHS",
        help="instead of booting the lab, drive the real engine against a simulated kernel "
        "at these sizes (repeatable or a comma list, e.g. 64x4,1024x16)",
    )
    ap.add_argument(
        "--no-record",
        action="store_true",
        help=f"do not append the scale records to {RESULTS_JSON} (and {RESULTS_MD})",
    )


def guest_argv(args: argparse.Namespace, display: Sequence[str]) -> list[str]:
    """The command the lab VM runs for ``args`` (``display``: --width/--color)."""
    return [
        sys.executable,
        "-m",
        "dmpath.lab.bench",
        *display,
        "--topology",
        str(args.topology),
        "--rounds",
        str(args.rounds),
        "--settle",
        f"{args.settle:g}",
        "--window",
        f"{args.window:g}",
        "--gap",
        f"{args.gap:g}",
        *scale_argv(args),
    ]


def scale_argv(args: argparse.Namespace) -> list[str]:
    """The scale options for the guest (none when no --scale was given)."""
    names = parse_scale_list(args.scale or [])
    out = ["--scale", ",".join(names)] if names else []
    if names:
        out += [
            "--scale-settle", f"{args.scale_settle:g}", "--scale-window", f"{args.scale_window:g}"
        ]
    if names and args.phase_timeout is not None:
        out += ["--phase-timeout", f"{args.phase_timeout:g}"]
    if args.stall:
        out += ["--stall", "--stall-rounds", str(args.stall_rounds)]
    if args.scale_only:
        out.append("--scale-only")
    return out


def run_timeout(args: argparse.Namespace) -> float:
    """How long the whole guest run may take: the boot, the rounds, and per scale topology
    its set-up (load and drop, both settle deadlines) and both daemons' three phases."""
    from dmpath.lab.topology import get_topology, hosts_for_active, settle_deadline
    from dmpath.lab.vm import BOOT_TIMEOUT

    total = BOOT_TIMEOUT
    if not args.scale_only:
        per_daemon = START_TIMEOUT + MAPS_TIMEOUT + args.settle + args.window
        per_daemon += args.rounds * (2 * CHANGE_TIMEOUT + args.gap)
        total += 2 * per_daemon
    for name in parse_scale_list(args.scale or []):
        t = get_topology(name)
        loaded = t.luns * hosts_for_active(t.paths)
        phase = args.phase_timeout or scale_phase_timeout(t.disks)
        total += 2 * settle_deadline(loaded)
        total += 2 * (START_TIMEOUT + 3 * phase + args.scale_settle + args.scale_window)
    if args.stall:
        from dmpath.lab.stallbench import STALL_TIMEOUT

        total += 2 * (START_TIMEOUT + STALL_TIMEOUT + args.stall_rounds * 4 * STALL_TIMEOUT)
    return total


def git_state(root: str) -> tuple[str, bool]:
    """(short commit, whether the work tree has changes) of the checkout at ``root``."""
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "", False
    return head.stdout.strip(), bool(dirty.stdout.strip())


def record_results(root: str, guest_doc: dict[str, Any], memory: str) -> list[str]:
    """Append the run's scale records to docs/bench/results.json and re-render
    results.md; returns the files written (none when the run had no scale rows)."""
    from dmpath.lab.stallbench import stall_records

    commit, dirty = git_state(root)
    records = measured_records(guest_doc, commit=commit, dirty=dirty, memory=memory)
    records += stall_records(guest_doc, commit=commit, dirty=dirty, memory=memory)
    if not records:
        return []
    return append_results_file(root, records)


def simulated_records(
    results: Sequence[Mapping[str, Any]], *, commit: str, dirty: bool, date: str
) -> list[dict[str, Any]]:
    """Results of ``dmpath.sim.run`` as records of the results file: each phase's CPU,
    wall time and RSS, and its share of a core where the phase reports one."""
    out: list[dict[str, Any]] = []
    for res in results:
        phases: dict[str, dict[str, float]] = {}
        for name, fig in (res.get("phases") or {}).items():
            row = {k: float(fig[k]) for k in ("cpu_s", "wall_s", "rss_mb") if k in fig}
            pct = (fig.get("detail") or {}).get("cpu_pct_of_core")
            if pct is not None:
                row["cpu_pct_of_core"] = float(pct)
            phases[str(name)] = row
        out.append(
            {
                "kind": "simulated",
                "date": date,
                "topology": res.get("topology"),
                "paths": res.get("paths"),
                "git_commit": commit + ("+dirty" if dirty else ""),
                "daemon": "dmpathd",
                "phases": phases,
            }
        )
    return out


def simulate_main(args: argparse.Namespace) -> int:
    """``--simulate``: the engine against dmpath.sim at each size, on the host."""
    from dmpath.lab.topology import parse_topology_name
    from dmpath.sim import run as sim

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sizes: list[tuple[int, int]] = []
    for value in args.simulate:
        for name in filter(None, (v.strip() for v in value.split(","))):
            size = parse_topology_name(name)
            if size is None or min(size) < 1 or size[1] < 2:
                print(f"lab: bench: --simulate {name}: use LUNSxPATHS with at least 2 paths "
                      "(e.g. 1024x16)", file=sys.stderr)
                return 2
            sizes.append(size)
    results = []
    for luns, paths in sizes:
        print(f"simulating {luns}x{paths} ({luns * paths} paths)...", file=sys.stderr, flush=True)
        res = sim.run(luns, paths).to_dict()
        results.append(res)
        for phase, fig in res["phases"].items():
            extra = fig.get("detail", {}).get("cpu_pct_of_core")
            print(
                f"  {phase:15} cpu {fig['cpu_s']:9.3f} s  wall {fig['wall_s']:9.3f} s  "
                f"rss {fig['rss_mb']:7.1f} MB" + (f"  {extra:.2f} % of a core" if extra else ""),
                flush=True,
            )
    if not args.no_record:
        commit, dirty = git_state(root)
        date = datetime.now(UTC).isoformat(timespec="seconds")
        records = simulated_records(results, commit=commit, dirty=dirty, date=date)
        append_results_file(root, records)
    return 0


def append_results_file(root: str, records: Sequence[dict[str, Any]]) -> list[str]:
    """Append ``records`` to docs/bench/results.json and re-render results.md."""
    return append_and_render(
        os.path.join(root, RESULTS_JSON),
        os.path.join(root, RESULTS_MD),
        records,
        render_results_md,
    )


def append_and_render(
    json_path: str,
    md_path: str,
    records: Sequence[dict[str, Any]],
    render: Callable[[Sequence[Mapping[str, Any]]], str],
) -> list[str]:
    """Append ``records`` to a results file (the JSON keeps every run) and write its
    Markdown anew with ``render`` (of all its records); returns the files written."""
    try:
        with open(json_path) as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        doc = empty_results()
    doc = append_records(doc, records)
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    write_json(json_path, doc)
    tmp = md_path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(render(doc["records"]))
    os.replace(tmp, md_path)
    return [json_path, md_path]


def host_main(args: argparse.Namespace, display: Sequence[str]) -> int:
    """On the host: make sure multipath-tools is there, boot the lab once, run the bench."""
    if args.simulate:
        return simulate_main(args)
    from dmpath.lab.provision import ensure_multipath_tools
    from dmpath.lab.vm import run_in_lab

    def progress(m: str) -> None:
        print("lab:", m, file=sys.stderr, flush=True)

    if args.rounds < 1 or args.window <= 0 or args.settle < 0 or args.gap < 0:
        print("lab: bench: --rounds >= 1, --window > 0, --settle and --gap >= 0", file=sys.stderr)
        return 2
    if args.scale_window <= 0 or args.scale_settle < 0 or (args.phase_timeout or 1) <= 0:
        print(
            "lab: bench: --scale-window and --phase-timeout > 0, --scale-settle >= 0",
            file=sys.stderr,
        )
        return 2
    names = parse_scale_list(args.scale or [])
    if args.scale_only and not (names or args.stall):
        print("lab: bench: --scale-only needs --scale or --stall", file=sys.stderr)
        return 2
    memory = guest_memory_for(names, args.memory)
    ensure_multipath_tools(progress)
    res = run_in_lab(
        guest_argv(args, display),
        # scale-only: the guest loads each scale topology itself
        topology=None if args.scale_only else args.topology,
        echo=print,
        progress=progress,
        memory=memory,
        timeout=run_timeout(args),
    )
    result = os.path.join(res.outdir, RESULT_FILE)
    if os.path.exists(result):
        progress(f"bench results: {result}")
        if (names or args.stall) and not args.no_record:
            with open(result) as fh:
                guest_doc = json.load(fh)
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            for written in record_results(root, guest_doc, memory):
                progress(f"recorded: {written}")
    return res.returncode


if __name__ == "__main__":
    sys.exit(guest_main())
