"""Guest side helpers shared by lab tests and the tour: a dmpathd under test, verified I/O.

``DaemonUnderTest`` runs the real ``dmpathd`` as a child process with its config, state
files and socket in a private directory, so nothing of the host's /etc is involved.
``VerifiedIO`` writes numbered, self-describing blocks through a map with O_DIRECT and
reads each back, counting every error and every mismatch: the measure of "no I/O lost".
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dmpath.client import request
from dmpath.config.records import DEFAULT_DM_UUID_PREFIX
from dmpath.kernel import dmsetup, mdadm
from dmpath.runner import run

BLOCK = 4096
T = TypeVar("T")


class LabTimeout(AssertionError):
    pass


def call_with_timeout(fn: Callable[[], T], what: str, timeout: float = 60.0) -> T:
    """Run ``fn`` in a daemon thread; fail (LabTimeout) if it has not returned in time.

    A thread (not a child process) because a process stuck in uninterruptible I/O cannot
    be reaped either; an abandoned daemon thread does not keep pytest from finishing.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed back to the calling thread below
            box["error"] = exc

    t = threading.Thread(target=target, name=f"io:{what}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise LabTimeout(f"{what}: no answer after {timeout:g} s (I/O stuck?)")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def wait_for(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.2) -> Any:
    """Poll ``pred`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = pred()
            if got:
                return got
        except Exception as exc:  # noqa: BLE001 - the condition may not be checkable yet
            last_exc = exc
        time.sleep(step)
    raise LabTimeout(
        f"timed out after {timeout:g} s waiting for {what}"
        + (f" (last error: {last_exc})" if last_exc else "")
    )


@dataclass
class DaemonUnderTest:
    workdir: str
    defaults: dict[str, Any] = field(default_factory=dict)
    extra: str = ""
    env: dict[str, str] = field(default_factory=dict)  # added to the daemon's environment
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    restarts: int = 0

    @property
    def socket(self) -> str:
        return str(self.defaults.get("socket") or os.path.join(self.workdir, "dmpathd.sock"))

    @property
    def config(self) -> str:
        return os.path.join(self.workdir, "dmpath.toml")

    def write_config(self) -> None:
        """Our private paths, then the test's ``defaults`` and ``extra`` TOML sections."""
        os.makedirs(self.workdir, exist_ok=True)
        mine = {
            "bindings_file": f"{self.workdir}/bindings",
            "wwids_file": f"{self.workdir}/wwids",
            "history_file": f"{self.workdir}/history",
            "admin_state_file": f"{self.workdir}/admin-state",
            **self.defaults,
            "socket": self.socket,
        }
        # JSON scalars and lists are valid TOML values
        lines = ["[defaults]", *(f"{k} = {json.dumps(v)}" for k, v in mine.items()), self.extra]
        with open(self.config, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def start(self, wait: bool = True) -> DaemonUnderTest:
        """Start dmpathd; with ``wait``, until it answers (a daemon meant to die at start,
        as fault plans make it, is not waited for)."""
        self.write_config()
        self.log_path = os.path.join(self.workdir, f"dmpathd.{self.restarts}.log")
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child, closed at stop
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dmpath.daemon.main", "-c", self.config, "-v"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        log.close()
        if wait:
            wait_for(lambda: self.request("ping"), 60, "dmpathd to answer")
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"dmpathd exited with {self.proc.returncode}:\n{self.log()}")
        return True

    def request(self, op: str, args: dict[str, Any] | None = None) -> Any:
        self._alive()  # a dead daemon is reported with its log, not as "connection refused"
        return request(op, args, socket_path=self.socket, timeout=60)

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The events of one kind this run of the daemon recorded, oldest first (the
        history also holds those of the runs before it: ``history``)."""
        run = self.request("events")
        starts = [i for i, e in enumerate(run) if e["kind"] == "daemon_started"]
        return [e for e in run[starts[-1] if starts else 0 :] if e["kind"] == kind]

    def history(self) -> list[dict[str, Any]]:
        """Every event the daemon lists, those of earlier runs (``history_file``) too."""
        return list(self.request("events"))

    def show(self) -> dict[str, Any]:
        return dict(self.request("show"))

    def maps(self) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.show()["maps"]}

    def path(self, name: str) -> dict[str, Any]:
        for m in self.show()["maps"]:
            for p in m["paths"]:
                if p["name"] == name:
                    return dict(p)
        raise KeyError(name)

    def wait_maps(self, want: dict[str, int], timeout: float = 90) -> dict[str, dict[str, Any]]:
        """Until every map in ``want`` exists with that many active paths."""

        def ok() -> dict[str, dict[str, Any]] | None:
            maps = self.maps()
            for name, n in want.items():
                m = maps.get(name)
                if m is None or m["working"] != n or len(m["paths"]) != n:
                    return None
            return maps

        return dict(wait_for(ok, timeout, f"maps {want}"))

    def wait_path(self, name: str, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            p = self.path(name)
            return p if all(p.get(k) == v for k, v in fields.items()) else None

        return dict(wait_for(ok, timeout, f"path {name} with {fields}"))

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()[-6000:]
        except OSError:
            return ""

    def keep_log(self, name: str) -> str:
        """Copy the daemon's whole log into the lab's output directory (the host keeps
        it after the VM is gone) as ``name``; returns the copy's path, '' outside the lab
        or when there is no log."""
        outdir = os.environ.get("DMPATH_LAB_OUTDIR", "")
        if not outdir or not self.log_path or not os.path.exists(self.log_path):
            return ""
        dst = os.path.join(outdir, name)
        shutil.copyfile(self.log_path, dst)
        return dst

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.restarts += 1

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


@dataclass
class VerifiedIO:
    """Write block i with a header naming i and a generation, then read it back."""

    devnode: str
    blocks: int = 256
    errors: list[str] = field(default_factory=list)
    mismatches: int = 0
    writes: int = 0
    reads: int = 0
    #: the longest time (s) between two completed write-and-read-back rounds: the
    #: stall a fault cost the writer
    longest_stall: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    generation: int = 0

    @staticmethod
    def pattern(i: int, gen: int) -> bytes:
        head = f"dmpath-lab block {i} gen {gen} ".encode()
        return (head * (BLOCK // len(head) + 1))[:BLOCK]

    def _loop(self, fd: int) -> None:
        buf = mmap.mmap(-1, BLOCK)
        last = time.monotonic()
        try:
            i = 0
            while not self._stop.is_set():
                blk = i % self.blocks
                if blk == 0:
                    self.generation += 1
                data = self.pattern(blk, self.generation)
                try:
                    buf.seek(0)
                    buf.write(data)
                    os.pwritev(fd, [buf], blk * BLOCK)
                    self.writes += 1
                    os.preadv(fd, [buf], blk * BLOCK)
                    self.reads += 1
                    if bytes(buf) != data:
                        self.mismatches += 1
                    now = time.monotonic()
                    self.longest_stall = max(self.longest_stall, now - last)
                    last = now
                except OSError as exc:
                    self.errors.append(f"block {blk}: {exc}")
                    time.sleep(0.05)
                i += 1
        finally:
            os.close(fd)
            buf.close()

    def start(self) -> VerifiedIO:
        # opened here, not in the thread: a missing node (udev has not made it yet) is
        # the caller's error, not a thread that dies unseen while the caller waits
        fd = os.open(self.devnode, os.O_RDWR | os.O_DIRECT)
        self._thread = threading.Thread(target=self._loop, args=(fd,), daemon=True)
        self._thread.start()
        return self

    def wait_writes(self, goal: int, timeout: float, what: str) -> None:
        """Until more than ``goal`` writes are done; on time-out say where the I/O
        stands (writes, errors, the map's dm state), so a failure explains itself."""
        try:
            wait_for(lambda: self.writes > goal, timeout, what)
        except LabTimeout as exc:
            raise LabTimeout(f"{exc}; {self.describe()}") from None

    def describe(self) -> str:
        alive = bool(self._thread and self._thread.is_alive())
        state = "?"
        name = os.path.basename(self.devnode)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["dmsetup", "info", "-c", "--noheadings", "-o", "attr,open", name],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            state = (out.stdout or out.stderr).strip()
        return (
            f"{self.devnode}: {self.writes} writes, {self.reads} reads, "
            f"{len(self.errors)} errors {self.errors[:3]}, thread "
            f"{'running' if alive else 'ended'}, dm attr,open {state}"
        )

    def stop(self, timeout: float = 120) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise LabTimeout("verified I/O did not finish (stuck in a queueing map?)")

    def verify_all(self) -> int:
        """Read every block written in the last full generation; return mismatches."""
        bad = 0
        buf = mmap.mmap(-1, BLOCK)
        fd = os.open(self.devnode, os.O_RDONLY | os.O_DIRECT)
        try:
            for blk in range(min(self.blocks, self.writes)):
                os.preadv(fd, [buf], blk * BLOCK)
                got = bytes(buf)
                if not got.startswith(f"dmpath-lab block {blk} gen ".encode()):
                    bad += 1
        finally:
            os.close(fd)
            buf.close()
        return bad


@contextlib.contextmanager
def explained(d: DaemonUnderTest) -> Iterator[None]:
    """On failure, print what the daemon saw and did (pytest shows it with the failure):
    its last events, /proc/mdstat and the tail of its log."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            for e in d.request("events")[-40:]:
                print(f"event {e['kind']:<18} {e['map']:<8} {e['path']:<5} {e['message']}")
        with contextlib.suppress(Exception), open("/proc/mdstat") as fh:
            print(fh.read())
        print("--- dmpathd log (tail) ---\n" + d.log())
        raise


def daemon_view(d: DaemonUnderTest, path: str) -> str:
    """What the daemon says of a path and its last events, for a failure message."""
    try:
        p = d.path(path)
        events = "; ".join(
            f"{e['kind']} {e['path']} {e['message']}" for e in d.show()["events"][-12:]
        )
    except Exception as exc:  # noqa: BLE001 - a message about a failure must not fail
        return f"daemon: cannot say ({exc})"
    return (
        f"daemon: {p['check']} ({p['check_reason']}), kernel {p['kernel_state']} | "
        f"events: {events}"
    )


def wait_explained(
    pred: Callable[[], Any], timeout: float, what: str, explain: Callable[[], str]
) -> None:
    """``wait_for``; a time-out also says where things stand (``explain()``)."""
    try:
        wait_for(pred, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {explain()}") from None


def through_fault(
    io: VerifiedIO,
    inject: Callable[[], None],
    failed: Callable[[], None],
    timeout: float,
    what: str,
) -> tuple[float, float]:
    """Once ``io`` flows: ``inject`` a fault, ``failed`` waits until the path is failed,
    then ``io`` must go on (50 more writes, ``what``). Returns the seconds from the fault
    to the failure and the longest stall of the I/O since the fault (figures to print,
    never to judge by)."""
    io.wait_writes(20, 60, "verified I/O to start")
    io.longest_stall = 0.0  # from here on: what the fault costs
    t0 = time.monotonic()
    inject()
    failed()
    failed_after = time.monotonic() - t0
    io.wait_writes(io.writes + 50, timeout, what)
    return failed_after, io.longest_stall


def remove_data_maps(uuid_prefix: str = DEFAULT_DM_UUID_PREFIX) -> list[str]:
    """Remove the data maps and partition maps on dmpath's maps (uuid ``data-`` or
    ``partN-`` + the map's; linear, so not in ``dmsetup ls --target multipath``): they
    hold their map open, so they go first."""
    from dmpath.policy.mdmigrate import DATA_UUID_PREFIX

    res = run(
        "dmsetup",
        ["info", "-c", "--noheadings", "--separator", "\t", "-o", "name,uuid"],
        check=False,
        timeout=60,
    )
    removed = []
    for line in res.stdout.splitlines():
        name, _, uuid = line.partition("\t")
        uuid = uuid.strip()
        if uuid.startswith(DATA_UUID_PREFIX + uuid_prefix) or re.match(
            r"part[0-9]+-" + re.escape(uuid_prefix), uuid
        ):
            dmsetup.remove(name.strip(), force=True)
            removed.append(name.strip())
    return sorted(removed)


def remove_dm_maps(uuid_prefix: str = DEFAULT_DM_UUID_PREFIX) -> list[str]:
    """Remove every dm map dmpath made (only those); returns their names, sorted."""
    remove_data_maps(uuid_prefix)
    removed = []
    for dev in sorted(dmsetup.list_maps(), key=lambda d: d.name):
        if dmsetup.info(dev.name).uuid.startswith(uuid_prefix):
            with contextlib.suppress(Exception):
                dmsetup.message(dev.name, "fail_if_no_path")  # nothing may queue forever
            dmsetup.remove(dev.name, force=True)
            removed.append(dev.name)
    return removed


def cleanup_maps() -> None:
    """Remove every dm map and md array dmpath made (only those)."""
    remove_dm_maps()
    for arr in mdadm.read_mdstat().arrays:
        if arr.personality == "multipath":
            exp = mdadm.detail_export(f"/dev/{arr.name}")
            if (exp.name or "").split(":", 1)[-1].startswith("dmpath-"):
                mdadm.stop(f"/dev/{arr.name}")
                for m in arr.members:
                    with contextlib.suppress(Exception):
                        mdadm.zero_superblock(f"/dev/{m.name}")
