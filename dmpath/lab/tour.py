"""The lab tour: a live fabric failover on a real kernel, narrated (``./dev tour``).

Runs inside the lab VM (``python -m dmpath.lab tour`` boots it and loads the default
topology: 2 LUNs x 4 paths on 2 fabrics). It starts the real ``dmpathd``, puts verified
I/O on one map, takes fabric A offline, shows the daemon failing those paths while I/O
carries on over fabric B, brings fabric A back and shows the paths reinstated. The exit
status is 0 only if no I/O failed or came back wrong and every failed path returned.

Why it is built this way:

* The guest's stdout is a pipe to the host, which prints it line by line: so no live
  (cursor-moving) displays, only printed lines; the host tells us its terminal's width and
  whether it shows colours (``--width``, ``--color``), and ``mpathctl`` runs as a real
  subprocess with the same settings, so readers see exactly what they would type.
* Everything is written to stdout (stderr arrives on another channel and would interleave).
* Every wait has a deadline: when something expected does not happen, the tour says what
  it expected, prints the daemon's log tail and exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dmpath.config.records import DEFAULT_DM_UUID_PREFIX
from dmpath.errors import DmpathError
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, LabTimeout, VerifiedIO, remove_dm_maps

WORKDIR = "/tmp/dmpath-tour"
MAPS = {"mpatha": 4, "mpathb": 4}
IO_MAP = "mpatha"
FABRICS = 2
#: how long any one expected thing may take before the tour gives up
STEP_TIMEOUT = 60.0
#: seconds of I/O shown before the fabric fails and while it is down (for the reader only)
IO_WARMUP = 3.0
IO_DEGRADED = 2.0
#: daemon settings for the tour (everything else is dmpathd's default)
DEFAULTS: dict[str, Any] = {"path_grouping_policy": "multibus"}
DM_UUID_PREFIX = DEFAULT_DM_UUID_PREFIX


class TourFailed(Exception):
    """Something the tour expected did not happen; the message says what."""


def fabric_name(n: int) -> str:
    return "AB"[n] if 0 <= n < 2 else str(n)


def local_time(t: float) -> str:
    """``t`` (epoch seconds) as ``mpathctl show events --since`` takes an absolute time,
    rounded down to the second. An age (``--since 30s``) would be measured when mpathctl
    starts, which under emulation is many seconds after we decided to run it."""
    return datetime.fromtimestamp(int(t)).isoformat(timespec="seconds")


def secs(t: float) -> str:
    return f"{t:.2f} s"


@dataclass
class Timing:
    path: str
    map: str
    seconds: float
    by: str  # who acted first: "kernel" / "checker" (failure) or "dmpathd" (reinstatement)


@dataclass
class Tour:
    console: Console
    color: bool
    width: int
    workdir: str = WORKDIR
    paths: list[topo.LabPath] = field(default_factory=list)
    daemon: DaemonUnderTest | None = None
    io: VerifiedIO | None = None
    path_map: dict[str, str] = field(default_factory=dict)  # path name -> map name
    offline: list[topo.LabPath] = field(default_factory=list)  # paths we took down
    problems: list[str] = field(default_factory=list)
    io_started: float = 0.0
    io_running: bool = False

    # ------------------------------------------------------------------ printing

    def say(self, text: str) -> None:
        self.console.print(Text(text), width=min(self.width, 100))

    def step(self, n: int, title: str, text: str) -> None:
        self.console.print()
        self.console.rule(Text(f" Step {n}: {title} ", style="bold cyan"), style="cyan")
        self.say(text)

    def ok(self, text: str) -> None:
        self.console.print(Text("  ok  ", style="bold green"), Text(text))

    def io_line(self, note: str = "") -> Text:
        line = Text("  I/O ", style="bold blue")
        io = self.io
        if io is None:
            return line.append("not running")
        err_style = "bold red" if io.errors else "green"
        mis_style = "bold red" if io.mismatches else "green"
        line.append(f"{time.monotonic() - self.io_started:5.1f} s  ")
        line.append(f"writes {io.writes:>6}  reads {io.reads:>6}  ")
        line.append(f"errors {len(io.errors)}", style=err_style)
        line.append("  ")
        line.append(f"mismatches {io.mismatches}", style=mis_style)
        if note:
            line.append(f"   {note}", style="dim")
        return line

    def tick(self, note: str = "") -> None:
        self.console.print(self.io_line(note))

    def run_io_for(self, seconds: float, note: str = "") -> None:
        """Let the I/O run for the reader, printing its counters every second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(1.0, left))  # a pause for readability, not synchronisation
            self.tick(note)

    def wait_until(
        self,
        pred: Callable[[], bool],
        expected: str,
        progress: Callable[[], str],
        timeout: float = STEP_TIMEOUT,
    ) -> float:
        """Poll ``pred`` (printing I/O counters and ``progress()`` about every second)
        until it holds; returns the seconds it took. TourFailed after ``timeout``."""
        start = time.monotonic()
        next_tick = start + 1.0
        while True:
            self._check_daemon()
            if pred():
                return time.monotonic() - start
            now = time.monotonic()
            if now - start > timeout:
                raise TourFailed(
                    f"expected {expected} within {timeout:g} s; it did not happen "
                    f"(last seen: {progress()})"
                )
            if now >= next_tick:
                self.tick(progress())
                next_tick = now + 1.0
            time.sleep(0.25)

    def _check_daemon(self) -> None:
        d = self.daemon
        if d is not None and d.proc is not None and d.proc.poll() is not None:
            raise TourFailed(f"dmpathd exited unexpectedly (status {d.proc.returncode})")

    def mpathctl(self, *args: str) -> None:
        """Run the real ``mpathctl`` against our daemon and show what it printed."""
        assert self.daemon is not None
        exe = shutil.which("mpathctl")
        argv = [exe] if exe else [sys.executable, "-m", "dmpath.cli.main"]
        argv += ["--socket", self.daemon.socket, *args]
        env = dict(os.environ)
        inner = max(40, self.width - 4)  # inside the panel's border and padding
        env["COLUMNS"] = str(inner)
        env["LINES"] = "50"
        env.pop("FORCE_COLOR", None)
        env.pop("NO_COLOR", None)
        if self.color:
            env["FORCE_COLOR"] = "1"
            env["TERM"] = "xterm-256color"
            env["PYTHONIOENCODING"] = "utf-8"
        else:
            env["NO_COLOR"] = "1"
        shown = "$ mpathctl " + " ".join(args)
        started = time.monotonic()
        try:
            res = subprocess.run(
                argv,
                check=False,
                env=env,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            self.problems.append(f"'{shown[2:]}' did not answer within 60 s")
            self.console.print(Panel(Text("no answer within 60 s", style="bold red"), title=shown))
            return
        body: list[RenderableType] = []
        if res.stdout.strip():
            body.append(Text.from_ansi(res.stdout.rstrip("\n")))
        style = "dim"
        if res.returncode != 0 or res.stderr.strip():
            body.append(Text.from_ansi(res.stderr.rstrip("\n"), style="red"))
        if res.returncode != 0:
            style = "red"
            self.problems.append(f"'{shown[2:]}' exited with status {res.returncode}")
            body.append(Text(f"(exit status {res.returncode})", style="bold red"))
        self.console.print(
            Panel(
                Group(*body),
                title=Text(shown, style="bold"),
                title_align="left",
                # under emulation a Python command takes seconds to start: say why we paused
                subtitle=Text(f"{time.monotonic() - started:.1f} s", style="dim"),
                subtitle_align="right",
                border_style=style,
                width=self.width,
            )
        )

    # ------------------------------------------------------------------ daemon views

    def path_views(self) -> dict[str, dict[str, Any]]:
        assert self.daemon is not None
        return {p["name"]: p for m in self.daemon.show()["maps"] for p in m["paths"]}

    def events(self) -> list[dict[str, Any]]:
        assert self.daemon is not None
        return sorted(self.daemon.show()["events"], key=lambda e: float(e["time"]))

    # ------------------------------------------------------------------ the steps

    def intro(self) -> None:
        self.console.print(
            Panel(
                Text.assemble(
                    ("dmpath lab tour: a live failover on a real Linux kernel\n\n", "bold"),
                    "This VM runs a real kernel (under emulation, so every time shown is "
                    "slower than on real hardware). The scsi_debug driver plays a SAN "
                    "array: 2 LUNs, each reachable through 4 SCSI hosts, so 4 paths per "
                    "LUN. The hosts are cabled to 2 fabrics (A and B, like two SAN "
                    "switches), two paths of each LUN on each.\n\n"
                    "We start dmpathd, write and verify data on one LUN, then kill fabric "
                    "A: the daemon must fail those paths while the I/O carries on over "
                    "fabric B with no error. Then fabric A returns and the daemon must put "
                    "its paths back in use.",
                ),
                border_style="cyan",
                width=min(self.width, 100),
            )
        )

    def step_paths(self) -> None:
        self.step(
            1,
            "the paths the kernel sees",
            "Each LUN shows up as 4 disks (sdX), one per SCSI host: H in the H:C:T:L "
            "address. Disks with the same WWID are the same LUN, which is how a multipath "
            "daemon knows they are paths to one device.",
        )
        self.paths = topo.discover(FABRICS)
        if not self.paths:
            raise TourFailed(
                "no scsi_debug disks: run the tour through 'python -m dmpath.lab tour', "
                "which boots the lab VM and loads the default topology"
            )
        table = Table(header_style="bold", border_style="dim")
        for col in ("device", "HCTL", "devnum", "WWID", "fabric"):
            table.add_column(col, no_wrap=True)
        for p in self.paths:
            fab = fabric_name(p.fabric)
            table.add_row(
                p.devnode,
                p.hctl,
                p.devnum,
                p.wwid,
                Text(fab, style="magenta" if p.fabric == 0 else "yellow"),
            )
        self.console.print(table)
        per_lun: dict[str, int] = {}
        for p in self.paths:
            per_lun[p.wwid] = per_lun.get(p.wwid, 0) + 1
        self.say(
            f"{len(self.paths)} paths to {len(per_lun)} LUNs; fabric A: "
            + ", ".join(p.name for p in self.paths if p.fabric == 0)
            + "; fabric B: "
            + ", ".join(p.name for p in self.paths if p.fabric == 1)
            + "."
        )

    def step_daemon(self) -> None:
        self.step(
            2,
            "dmpathd assembles the multipath maps",
            "We start the real daemon with its defaults except path_grouping_policy = "
            '"multibus": all 4 paths of a LUN in one path group, I/O spread over every '
            "working one, as with an active/active array. Losing a fabric then simply "
            "shrinks the group. (The default, group_by_prio, groups paths by their ALUA "
            "priority and switches groups on failure.) The TUR checker tests each path "
            "with SCSI TEST UNIT READY every second.",
        )
        shutil.rmtree(self.workdir, ignore_errors=True)  # fresh bindings: mpatha, mpathb
        self.daemon = DaemonUnderTest(self.workdir, defaults=dict(DEFAULTS))
        t0 = time.monotonic()
        try:
            self.daemon.start()
            maps = self.daemon.wait_maps(MAPS, timeout=STEP_TIMEOUT)
        except LabTimeout as exc:
            raise TourFailed(
                f"expected dmpathd to create maps {', '.join(MAPS)} with 4 working paths "
                f"each: {exc}"
            ) from None
        self.path_map = {p["name"]: name for name, m in maps.items() for p in m["paths"]}
        self.ok(
            f"dmpathd (pid {self.daemon.proc.pid if self.daemon.proc else '?'}) created "
            f"{', '.join(sorted(maps))} in {secs(time.monotonic() - t0)}"
        )
        self.say(
            "This is what an administrator sees. [4/4] [UUUU] is md's notation: 4 path "
            "slots, 4 working, one letter per path (U up, _ failed)."
        )
        self.mpathctl("status")

    def step_io(self) -> None:
        self.step(
            3,
            f"verified I/O on {IO_MAP}",
            f"A writer thread writes numbered 4 KiB blocks to /dev/mapper/{IO_MAP} "
            "(O_DIRECT, so every write reaches the disk) and reads each one back, counting "
            "errors and blocks that come back wrong. The other map, mpathb, stays idle.",
        )
        self.io = VerifiedIO(f"/dev/mapper/{IO_MAP}")
        self.io_started = time.monotonic()
        self.io.start()
        self.io_running = True
        self.run_io_for(IO_WARMUP)
        if self.io.writes == 0:
            raise TourFailed(f"expected I/O to /dev/mapper/{IO_MAP} to make progress")

    def step_fabric_down(self) -> list[Timing]:
        assert self.io is not None
        fab_a = [p for p in self.paths if p.fabric == 0]
        self.step(
            4,
            "fabric A dies",
            "We take every path on fabric A offline ("
            + ", ".join(p.name for p in fab_a)
            + "): echo offline > /sys/block/sdX/device/state. The disks stop answering, "
            "as if a SAN switch had died. dmpathd must fail them in the maps; I/O must "
            "carry on over fabric B.",
        )
        before = (self.io.writes, self.io.reads)
        down_at: dict[str, float] = {}
        for p in fab_a:
            down_at[p.name] = time.time()
            topo.set_state(p, "offline")
            self.offline.append(p)
        names = [p.name for p in fab_a]

        def failed() -> list[str]:
            views = self.path_views()
            return [
                n
                for n in names
                if views.get(n, {}).get("kernel_state") == "failed"
                and views.get(n, {}).get("check") == "down"
            ]

        took = self.wait_until(
            lambda: len(failed()) == len(names),
            f"dmpathd to fail {', '.join(names)} (checker down, failed in the map)",
            lambda: f"dmpathd has failed {len(failed())}/{len(names)}",
        )
        self.ok(
            f"all {len(names)} paths of fabric A are failed in the maps and checked down "
            f"by dmpathd ({secs(took)} after they went offline; each path below)"
        )
        timings = self._failure_timings(down_at)
        table = Table(header_style="bold", border_style="dim", title="time to detect")
        for col in ("path", "map", "failed after", "first noticed by"):
            table.add_column(col, no_wrap=True)
        for t in timings:
            table.add_row(t.path, t.map, secs(t.seconds), t.by)
        self.console.print(table)
        self.say(
            '"kernel": I/O sent down the dead path failed, dm-multipath failed the path '
            "itself and retried the I/O on another path; dmpathd heard it from the "
            "kernel's uevent (on the idle map, such I/O comes from udev probing the map "
            'after a change). "checker": dmpathd\'s TEST UNIT READY found the path dead '
            "before any I/O did, and dmpathd failed it in the map."
        )
        self.run_io_for(IO_DEGRADED, "degraded: fabric B only")
        during = (self.io.writes - before[0], self.io.reads - before[1])
        if len(self.io.errors) or self.io.mismatches:
            self.say("I/O saw errors while fabric A was going down: see the summary.")
        else:
            self.ok(
                f"I/O carried on: {during[0]} writes and {during[1]} reads since fabric A "
                "died, no error, no mismatch"
            )
        self.say("The maps now run on half their paths:")
        self.mpathctl("status")
        self.say("And the daemon's event history since fabric A died:")
        self.mpathctl("show", "events", "--since", local_time(min(down_at.values())))
        return timings

    def _failure_timings(self, down_at: dict[str, float]) -> list[Timing]:
        evs = self.events()
        out = []
        for name, t0 in down_at.items():
            first = next(
                (
                    e
                    for e in evs
                    if e["path"] == name
                    and e["kind"] in ("path_failed", "kernel_path_failed")
                    and float(e["time"]) >= t0
                ),
                None,
            )
            if first is None:
                raise TourFailed(f"{name} is failed but dmpathd recorded no failure event")
            by = "kernel" if first["kind"] == "kernel_path_failed" else "checker"
            out.append(Timing(name, self.path_map.get(name, "?"), float(first["time"]) - t0, by))
        return out

    def step_fabric_up(self) -> list[Timing]:
        fab_a = list(self.offline)
        names = [p.name for p in fab_a]
        self.step(
            5,
            "fabric A returns",
            "We set the paths running again. Nothing tells dm-multipath that a path is "
            "back: dmpathd's checker must find it alive and reinstate it in the map.",
        )
        up_at: dict[str, float] = {}
        for p in fab_a:
            up_at[p.name] = time.time()
            topo.set_state(p, "running")
        self.offline.clear()

        def active() -> list[str]:
            views = self.path_views()
            return [
                n
                for n in names
                if views.get(n, {}).get("kernel_state") == "active"
                and views.get(n, {}).get("check") in ("up", "ghost")
            ]

        took = self.wait_until(
            lambda: len(active()) == len(names),
            f"dmpathd to reinstate {', '.join(names)}",
            lambda: f"dmpathd has reinstated {len(active())}/{len(names)}",
        )
        self.ok(
            f"all {len(names)} paths of fabric A are back in use ({secs(took)} after they "
            "came back; each path below)"
        )
        evs = self.events()
        timings = []
        for name, t0 in up_at.items():
            ev = next(
                (
                    e
                    for e in evs
                    if e["path"] == name
                    and e["kind"] == "path_reinstated"
                    and float(e["time"]) >= t0
                ),
                None,
            )
            if ev is None:
                raise TourFailed(f"{name} is active but dmpathd recorded no path_reinstated")
            timings.append(
                Timing(name, self.path_map.get(name, "?"), float(ev["time"]) - t0, "dmpathd")
            )
        table = Table(header_style="bold", border_style="dim", title="time to reinstate")
        for col in ("path", "map", "reinstated after"):
            table.add_column(col, no_wrap=True)
        for t in timings:
            table.add_row(t.path, t.map, secs(t.seconds))
        self.console.print(table)
        self.tick("all paths back")
        self.mpathctl("status")
        self.say("The events since fabric A returned:")
        self.mpathctl("show", "events", "--since", local_time(min(up_at.values())))
        return timings

    def step_finish(self, fails: list[Timing], backs: list[Timing]) -> bool:
        assert self.io is not None
        self.step(
            6,
            "verify, summarise, clean up",
            "We stop the writer, read back every block it wrote, stop dmpathd (SIGTERM: "
            "the maps stay, they work without the daemon) and remove the tour's maps.",
        )
        try:
            self.io.stop(timeout=STEP_TIMEOUT)
        except LabTimeout as exc:
            raise TourFailed(f"expected the I/O thread to stop: {exc}") from None
        self.io_running = False
        bad = self.io.verify_all()
        checked = min(self.io.blocks, self.io.writes)
        self.tick("stopped")
        if bad:
            self.problems.append(f"{bad} of {checked} blocks read back wrong at the end")
        else:
            self.ok(f"all {checked} blocks read back with the content written")

        errors, mismatches = len(self.io.errors), self.io.mismatches
        if errors:
            self.problems.append(f"{errors} I/O errors, first: {self.io.errors[0]}")
        if mismatches:
            self.problems.append(f"{mismatches} reads returned other data than written")
        summary = Table(show_header=False, box=None, padding=(0, 2))
        summary.add_column(style="bold")
        summary.add_column()
        det = [t.seconds for t in fails]
        rec = [t.seconds for t in backs]
        summary.add_row(
            "paths failed", f"{len(fails)} (fabric A: {', '.join(t.path for t in fails)})"
        )
        summary.add_row("detection", f"min {secs(min(det))}, max {secs(max(det))}")
        summary.add_row("paths reinstated", f"{len(backs)} of {len(fails)}")
        summary.add_row("recovery", f"min {secs(min(rec))}, max {secs(max(rec))}")
        summary.add_row(
            "I/O",
            f"{self.io.writes} writes + {self.io.reads} reads = "
            f"{self.io.writes + self.io.reads} ops on /dev/mapper/{IO_MAP}",
        )
        summary.add_row(
            "I/O errors",
            Text(str(errors), style="bold red" if errors else "green"),
        )
        summary.add_row(
            "mismatches",
            Text(str(mismatches + bad), style="bold red" if mismatches + bad else "green"),
        )
        self.console.print(
            Panel(
                summary,
                title="summary",
                title_align="left",
                border_style="cyan",
                width=min(self.width, 100),
            )
        )
        if len(backs) != len(fails):
            self.problems.append(f"only {len(backs)} of {len(fails)} failed paths came back")
        self.stop_daemon()
        return not self.problems

    def stop_daemon(self) -> None:
        d = self.daemon
        if d is None or d.proc is None or d.proc.poll() is not None:
            return
        try:
            d.stop()
        except subprocess.TimeoutExpired:
            self.problems.append("dmpathd did not stop within 30 s of SIGTERM (killed)")
            d.kill()
            return
        if d.proc.returncode != 0:
            self.problems.append(f"dmpathd exited with status {d.proc.returncode} on SIGTERM")
        left = sorted(our_maps())
        self.ok(
            f"dmpathd stopped (status {d.proc.returncode}); maps still in the kernel: "
            + (", ".join(left) or "none")
        )

    # ------------------------------------------------------------------ clean up

    def cleanup(self) -> list[str]:
        """Undo everything, whatever state we stopped in; returns what could not be undone."""
        trouble: list[str] = []
        for p in self.offline:
            try:
                topo.set_state(p, "running")
            except OSError as exc:
                trouble.append(f"cannot set {p.name} running: {exc}")
        self.offline.clear()
        if self.io is not None and self.io_running:
            try:
                self.io.stop(timeout=10)
            except LabTimeout:
                # stuck in a queueing map: make the maps fail queued I/O, then wait again
                with contextlib.suppress(DmpathError):
                    release_queued_io()
                try:
                    self.io.stop(timeout=30)
                except LabTimeout as exc:
                    trouble.append(str(exc))
            self.io_running = False
        d = self.daemon
        if d is not None and d.proc is not None and d.proc.poll() is None:
            try:
                d.stop()
            except subprocess.TimeoutExpired:
                d.kill()
        if self.daemon is None:
            return trouble  # no daemon was started: no map of ours can exist
        try:
            removed = remove_dm_maps(DM_UUID_PREFIX)
            if removed:
                self.ok(f"removed maps {', '.join(removed)}")
        except DmpathError as exc:
            trouble.append(f"cannot remove the tour's maps: {exc}")
        return trouble

    def log_tail(self, lines: int = 40) -> str:
        if self.daemon is None:
            return ""
        return "\n".join(self.daemon.log().splitlines()[-lines:])


def our_maps() -> dict[str, str]:
    """dm maps made by dmpath (uuid prefix ``mpath-``): name -> uuid."""
    from dmpath.kernel import dmsetup

    out = {}
    for dev in dmsetup.list_maps():
        uuid = dmsetup.info(dev.name).uuid
        if uuid.startswith(DM_UUID_PREFIX):
            out[dev.name] = uuid
    return out


def release_queued_io() -> None:
    """Make every dmpath map fail I/O it queues (queued I/O is uninterruptible: a
    queueing map with no path would hang the tour)."""
    from dmpath.kernel import dmsetup

    for name in our_maps():
        with contextlib.suppress(DmpathError):
            dmsetup.message(name, "fail_if_no_path")


def make_console(color: bool, width: int) -> Console:
    return Console(
        file=sys.stdout,
        width=width,
        force_terminal=color,
        no_color=not color,
        color_system="256" if color else None,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dmpath.lab.tour", description=__doc__)
    ap.add_argument("--width", type=int, default=int(os.environ.get("COLUMNS") or 100))
    ap.add_argument("--color", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--workdir", default=WORKDIR)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # failures are reported once, in the tour's own words; keep the runner's flight
    # recorder off stderr (it would interleave with stdout on the way to the host)
    logging.getLogger("dmpath").addHandler(logging.NullHandler())
    with contextlib.suppress(AttributeError, ValueError):
        # one line at a time to the host; UTF-8 whatever the guest's locale says
        sys.stdout.reconfigure(  # type: ignore[union-attr]
            encoding="utf-8", errors="replace", line_buffering=True
        )
    console = make_console(args.color, max(60, args.width))
    tour = Tour(console, args.color, max(60, args.width), workdir=args.workdir)
    passed = False
    failure = ""
    try:
        tour.intro()
        tour.step_paths()
        tour.step_daemon()
        tour.step_io()
        fails = tour.step_fabric_down()
        backs = tour.step_fabric_up()
        passed = tour.step_finish(fails, backs)
    except TourFailed as exc:
        failure = str(exc)
    except (DmpathError, LabTimeout, AssertionError, OSError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        failure = "interrupted"
    if failure:
        tail = tour.log_tail()
        parts = [Text(failure, style="bold red")]
        if tail:
            parts += [Text("\ndmpathd log (last lines):", style="bold"), Text(tail)]
        console.print(
            Panel(
                Group(*parts),
                title="the tour stopped",
                title_align="left",
                border_style="red",
            )
        )
    trouble = tour.cleanup()
    tour.problems += trouble
    if passed and not trouble:
        console.print(
            Panel(
                Text(
                    "Failover worked: fabric A died and came back, dmpathd failed and "
                    "reinstated every path, and not one I/O failed or came back wrong.",
                    style="bold green",
                ),
                border_style="green",
                width=min(tour.width, 100),
            )
        )
        return 0
    if tour.problems:
        console.print(
            Panel(
                Text("\n".join(f"- {p}" for p in tour.problems), style="red"),
                title="problems",
                title_align="left",
                border_style="red",
                width=min(tour.width, 100),
            )
        )
    console.print(Text("The tour FAILED (see above).", style="bold red"))
    return 1


if __name__ == "__main__":
    sys.exit(main())
