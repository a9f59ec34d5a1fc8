"""Hostile clients against a real ``dmpathd`` in the lab: the control socket fuzzer.

``run(quick)`` loads scsi_debug paths if none are there, starts the daemon
(``harness.DaemonUnderTest``) and lets Hypothesis-made clients (``dmpath.lab.fuzzcases``)
at it, many at once:

- root clients send almost-right and plainly wrong requests (bad JSON, wrong types,
  unknown ops and keys, missing arguments, huge numbers, NULs, lone surrogates, lines over
  the 64 KiB limit), all at once, byte by byte, or cut off mid-request; their mutating
  requests only ever name things that do not exist;
- a forked child that has become ``nobody`` sends mutating requests naming the real
  paths and maps: every one must be refused;
- stalled clients hold connections without finishing a request: the daemon must close
  them itself; then a burst of more connections than the daemon serves must get ``busy``.

Every reply owed must come, be one well-formed line and be of a kind the protocol allows
for that line (``fuzzcases.expected_kinds``); afterwards the daemon must be the same
process, answer a plain request, and the maps' tables and the daemon's state files must be
as they were. The figures returned say how it went; ``problems`` counts what broke a rule
(each is printed). The default 10 s request time-out of the daemon bounds the stalls.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dmpath import protocol as p
from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.fuzzcases import (
    Case,
    MalformedAnswer,
    answer_kind,
    cases,
    expected_kinds,
    framed_lines,
)
from dmpath.lab.harness import DaemonUnderTest, cleanup_maps, wait_for
from dmpath.runner import run as run_tool

NOBODY = 65534
#: requests sent in the full run and in the quick one (CI's lab test)
FULL_REQUESTS = 10_000
QUICK_REQUESTS = 400  # CI's form (2,000 take about 3 minutes in the emulated guest)
#: the share of them the unprivileged child sends
NOBODY_SHARE = 0.2
#: root's clients at once, and the child's
ROOT_CLIENTS = 12
NOBODY_CLIENTS = 4
#: connections that stall while the others run (fewer than the daemon's limit of 64)
STALLED = 16
#: the daemon's connection limit and its request time-out (ControlServer's defaults)
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 10.0
#: a reply not there after this long counts as a hung connection
REPLY_WAIT = 60.0
#: seconds between two bytes of a drip-fed request
DRIP_PAUSE = 0.0005


@dataclass
class Tally:
    """What the clients saw: counters and the rules broken (one line each)."""

    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.counts.update(other.counts)
        self.problems.extend(other.problems)

    def problem(self, text: str) -> None:
        self.counts["problems"] += 1
        if len(self.problems) < 50:
            self.problems.append(text)

    def to_json(self) -> str:
        return json.dumps({"counts": dict(self.counts), "problems": self.problems})

    @classmethod
    def from_json(cls, text: str) -> Tally:
        doc = json.loads(text)
        return cls(Counter(doc["counts"]), list(doc["problems"]))


# --- one client --------------------------------------------------------------------------


def _connect(path: str, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


def recv_line(s: socket.socket, buf: bytearray) -> bytes | None:
    """The next reply line, None if the daemon closed first."""
    while True:
        end = buf.find(b"\n")
        if end >= 0:
            line = bytes(buf[: end + 1])
            del buf[: end + 1]
            return line
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return None
        buf += chunk


def _send(s: socket.socket, case: Case) -> None:
    # the daemon closes after an oversized line, maybe before taking the rest
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if case.mode == "drip":
            for i in range(len(case.data)):
                s.send(case.data[i : i + 1])
                time.sleep(DRIP_PAUSE)
        else:
            s.sendall(case.data)
        if case.mode == "truncated":
            s.shutdown(socket.SHUT_WR)


def _mutating(line: bytes) -> bool:
    try:
        return p.is_mutating(p.decode_request(line).op)
    except p.BadRequest:
        return False


def exchange(path: str, case: Case, privileged: bool) -> Tally:
    """Send one case on a connection of its own and check every reply owed."""
    t = Tally()
    lines, _rest = framed_lines(case.data)
    t.counts["requests_sent"] += case.requests
    t.counts["connections"] += 1
    try:
        s = _connect(path, REPLY_WAIT)
    except OSError as exc:
        t.problem(f"cannot connect: {exc}")
        return t
    with s:
        _send(s, case)
        if case.mode == "abort":
            t.counts["aborted"] += 1
            return t
        buf = bytearray()
        try:
            for i, line in enumerate(lines):
                t.counts["owed"] += 1
                reply = recv_line(s, buf)
                if reply is None:
                    t.problem(f"closed without the reply owed to {line[:120]!r} ({case.mode})")
                    return t
                t.counts["answered"] += 1
                kind = answer_kind(reply)
                t.counts[kind] += 1
                if kind == "ok" and not privileged and _mutating(line):
                    t.counts["mutations_allowed"] += 1
                if i == 0 and kind == "busy":
                    return t  # more connections than the daemon serves: it says so, closes
                if kind not in expected_kinds(line, privileged):
                    t.problem(f"{kind} for {line[:160]!r}: {reply[:300]!r}")
            if case.mode == "truncated" or (lines and len(lines[-1]) > p.MAX_REQUEST_BYTES):
                extra = recv_line(s, buf)
                if extra is not None or buf:
                    t.problem(f"more after the end of a {case.mode} case: {extra!r}")
                t.counts["closed_by_daemon"] += 1
        except MalformedAnswer as exc:
            t.counts["malformed"] += 1
            t.problem(f"{exc} (for {case.data[:120]!r})")
        except TimeoutError:
            t.counts["timeouts"] += 1
            t.problem(f"no reply within {REPLY_WAIT:g} s to {case.data[:120]!r} ({case.mode})")
    return t


def run_clients(
    path: str, produce: Callable[[Callable[[Case], None]], None], privileged: bool, workers: int
) -> Tally:
    """The cases ``produce`` hands to its callback, each sent as soon as it is made by
    one of ``workers`` clients at once (making them costs as much as sending them)."""
    todo: queue.Queue[Case | None] = queue.Queue(maxsize=workers * 4)
    tallies = [Tally() for _ in range(workers)]

    def client(t: Tally) -> None:
        while (case := todo.get()) is not None:
            try:
                t.add(exchange(path, case, privileged))
            except Exception as exc:  # noqa: BLE001 - a client's own failure, counted
                t.problem(f"client failed on {case.data[:120]!r}: {type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=client, args=(t,), name=f"fuzz-{i}", daemon=True)
        for i, t in enumerate(tallies)
    ]
    for th in threads:
        th.start()
    try:
        produce(todo.put)
    finally:
        for _ in threads:
            todo.put(None)
        for th in threads:
            th.join()
    total = Tally()
    for t in tallies:
        total.add(t)
    return total


# --- making the cases --------------------------------------------------------------------


def generate(
    requests: int, make: Callable[[], Any], sink: Callable[[Case], None], first_seed: int = 0
) -> None:
    """Cases holding at least ``requests`` requests, drawn by Hypothesis from the strategy
    ``make()`` returns and handed to ``sink``; reproducible (fixed seeds, no database)."""
    from hypothesis import HealthCheck, Phase, given, seed, settings

    made = 0
    strategy = make()
    round_no = first_seed
    while made < requests:

        @seed(round_no)
        @settings(
            max_examples=max((requests - made) // 4, 10),
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def collect(case: Case) -> None:
            nonlocal made
            if made < requests:
                made += case.requests
                sink(case)

        collect()
        round_no += 1


# --- the daemon's state ------------------------------------------------------------------


def map_tables(uuid_prefix: str = "mpath-") -> dict[str, str]:
    """The table of every map of ours, as ``dmsetup table`` prints it."""
    tables = {}
    for dev in dmsetup.list_maps():
        if dmsetup.info(dev.name).uuid.startswith(uuid_prefix):
            tables[dev.name] = run_tool("dmsetup", ["table", dev.name], timeout=60).stdout
    return tables


def state_files(d: DaemonUnderTest) -> dict[str, str]:
    out = {}
    for name in ("bindings", "wwids", "admin-state"):
        try:
            with open(os.path.join(d.workdir, name), errors="replace") as fh:
                out[name] = fh.read()
        except FileNotFoundError:
            out[name] = ""
    return out


def daemon_state(d: DaemonUnderTest) -> dict[str, Any]:
    """What no request of the fuzzer may change."""
    maps = d.maps()
    return {
        "pid": d.request("ping")["pid"],
        "tables": map_tables(),
        "files": state_files(d),
        # the paths of each map, not their states: a check that times out on the busy
        # emulated CPU may fail a path, which is no change made by a request
        "maps": {name: sorted(q["name"] for q in m["paths"]) for name, m in maps.items()},
    }


def real_names(d: DaemonUnderTest) -> tuple[str, ...]:
    """Names that do find something: paths (as names, nodes and numbers), maps, WWIDs."""
    names: set[str] = set()
    for name, m in d.maps().items():
        names.update({name, str(m.get("wwid", "")), f"/dev/mapper/{name}"})
        for q in m["paths"]:
            names.update({q["name"], f"/dev/{q['name']}", str(q.get("devnum", ""))})
    return tuple(sorted(n for n in names if n))


# --- connections held and connections too many -------------------------------------------


def open_stalled(path: str, count: int) -> list[socket.socket]:
    """Connections that send half a request (or nothing) and then wait."""
    held = []
    for i in range(count):
        s = _connect(path, REPLY_WAIT)
        if i % 2:
            s.sendall(b'{"version":1,"op":"pi')
        held.append(s)
    return held


def closed_by_daemon(held: Iterable[socket.socket], within: float) -> tuple[int, int]:
    """(closed by the daemon without a reply, still open or answered) after ``within``."""
    closed = other = 0
    deadline = time.monotonic() + within
    for s in held:
        with s:
            s.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                got = s.recv(4096)
            except ConnectionResetError:
                got = b""
            except TimeoutError:
                got = b"(still open)"
            if got:
                other += 1
            else:
                closed += 1
    return closed, other


def burst(path: str, count: int, limit: int, within: float = 20.0) -> Counter[str]:
    """``count`` connections at once, none sending: the ones past the daemon's ``limit``
    get a ``busy`` reply (waited for at most ``within`` s); the rest are held until then
    and closed by us."""
    seen: Counter[str] = Counter()
    held = [_connect(path, 5.0) for _ in range(count)]
    open_ones = set(held)
    deadline = time.monotonic() + within
    try:
        while seen["busy"] < count - limit and open_ones:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(open_ones), [], [], left)
            for s in ready:
                open_ones.discard(s)
                line = recv_line(s, bytearray())
                seen["closed" if line is None else answer_kind(line)] += 1
        seen["held"] += len(open_ones)
    finally:
        for s in held:
            s.close()
    return seen


# --- the unprivileged child --------------------------------------------------------------


def fork_nobody(path: str, names: tuple[str, ...], requests: int) -> tuple[int, int, int]:
    """Fork a child that becomes ``nobody`` and, once told to go, makes and sends
    ``requests`` mutating requests, naming the real paths and maps (``names``) too.

    Returns (pid, go fd, result fd): write a byte to the go fd, read its ``Tally`` as JSON
    from the result fd until EOF. Forked before any thread of ours runs.
    """
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(go_w)
        os.close(res_r)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.read(go_r, 1)
            mutating = tuple(op for op in p.OPS if p.is_mutating(op))
            report = run_clients(
                path,
                lambda sink: generate(
                    requests,
                    lambda: cases(mutating, names, privileged=False, oversized=False),
                    sink,
                    first_seed=1000,
                ),
                privileged=False,
                workers=NOBODY_CLIENTS,
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
            report = Tally()
            report.problem(f"unprivileged child: {type(exc).__name__}: {exc}")
        try:
            os.write(res_w, report.to_json().encode())
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(res_w)
    return pid, go_w, res_r


def collect_child(pid: int, res_r: int) -> Tally:
    chunks = []
    while chunk := os.read(res_r, 65536):
        chunks.append(chunk)
    os.close(res_r)
    os.waitpid(pid, 0)
    try:
        return Tally.from_json(b"".join(chunks).decode())
    except (ValueError, KeyError) as exc:
        t = Tally()
        t.problem(f"unprivileged child sent no report ({exc})")
        return t


# --- the whole run -----------------------------------------------------------------------


def _paths() -> list[topo.LabPath]:
    paths = topo.discover()
    return paths or topo.setup(topo.get_topology("1x2"))


def run(quick: bool, say: Callable[[str], None] = print) -> dict[str, float]:
    """Fuzz a real dmpathd's control socket; the figures of the run (see module doc).

    Rules broken are counted in ``problems`` and printed with ``say``; the caller judges
    the figures (``problems``, ``malformed``, ``internal``, ``timeouts``,
    ``mutations_allowed``, ``daemon_restarts``, ``state_changed`` must all be 0).
    """
    started = time.monotonic()
    total_requests = QUICK_REQUESTS if quick else FULL_REQUESTS
    nobody_requests = int(total_requests * NOBODY_SHARE)
    paths = _paths()
    workdir = tempfile.mkdtemp(prefix="dmpfuzz-")
    os.chmod(workdir, 0o755)  # nobody must reach the socket inside
    d = DaemonUnderTest(workdir)
    tally = Tally()
    child_pid = 0
    try:
        d.start()
        luns = len({q.wwid for q in paths})
        wait_for(lambda: len(d.maps()) == luns, 120, f"{luns} map(s)")
        before = daemon_state(d)
        started_s = time.monotonic() - started
        say(f"fuzz: dmpathd up with {luns} map(s) after {started_s:.0f} s")
        child_pid, go_w, res_r = fork_nobody(d.socket, real_names(d), nobody_requests)
        held = open_stalled(d.socket, STALLED)
        os.write(go_w, b"g")
        os.close(go_w)
        root_ops = tuple(op for op in p.OPS if op != "reconfigure")  # reloads: not fuzz
        tally.add(
            run_clients(
                d.socket,
                lambda sink: generate(
                    total_requests - nobody_requests, lambda: cases(root_ops), sink
                ),
                privileged=True,
                workers=ROOT_CLIENTS,
            )
        )
        sent_s = time.monotonic() - started
        child = collect_child(child_pid, res_r)
        child_pid = 0
        tally.counts["nobody_requests"] = child.counts["requests_sent"]
        tally.add(child)
        stalled_closed, stalled_other = closed_by_daemon(held, IDLE_TIMEOUT + 30)
        tally.counts["stalled"] = STALLED
        tally.counts["stalled_closed"] = stalled_closed
        if stalled_other:
            tally.problem(f"{stalled_other} stalled connection(s) not closed by the daemon")

        wait_for(lambda: d.request("ping"), 30, "a ping after the fuzzing")
        seen = burst(d.socket, MAX_CONNECTIONS + 8, MAX_CONNECTIONS)
        tally.counts["burst_busy"] = seen["busy"]
        if set(seen) - {"busy", "held", "closed"}:
            tally.problem(f"a burst of connections got {dict(seen)}")

        after = daemon_state(d)
        tally.counts["daemon_restarts"] = int(after["pid"] != before["pid"] or d.restarts)
        changed = [k for k in before if k != "pid" and before[k] != after[k]]
        tally.counts["state_changed"] = len(changed)
        for k in changed:
            tally.problem(f"{k} changed: {before[k]!r} -> {after[k]!r}")
        if not d.show()["maps"]:
            tally.problem("show lists no maps after the fuzzing")
    finally:
        if child_pid:  # we failed before its report: it must not fuzz on alone
            os.kill(child_pid, signal.SIGKILL)
            os.waitpid(child_pid, 0)
        d.stop()
        cleanup_maps()
        shutil.rmtree(workdir, ignore_errors=True)
    for text in tally.problems:
        say(f"fuzz: {text}")
    figures = {k: float(v) for k, v in sorted(tally.counts.items())}
    figures["daemon_start_s"] = round(started_s, 1)
    figures["fuzz_s"] = round(sent_s - started_s, 1)
    figures["seconds"] = round(time.monotonic() - started, 1)
    for k in ("problems", "malformed", "internal", "timeouts", "mutations_allowed"):
        figures.setdefault(k, 0.0)
    return figures
