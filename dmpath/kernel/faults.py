"""Fault injection into dmpath's own kernel operations: a testing aid, off unless asked for.

A *fault plan* (a text file named by ``DMPATH_FAULT_PLAN``, read once when the daemon
opens /dev/mapper/control) makes the N-th call of an operation fail with an errno, hang
for a while (then fail or go on) or die. Two layers honour it:

- ``dm``: the device-mapper ioctls of :class:`dmpath.kernel.dmioctl.DmControl`, through
  the ``ioctl`` function it is built with (:func:`faulty_ioctl`); ``die`` kills the
  daemon itself (SIGKILL) in place of the call: a crash at that very step;
- ``dmsetup`` and ``mdadm``: the stand-in :mod:`dmpath.lab.faultbin`, which the runner
  runs instead of the tool when ``DMPATH_BIN_DMSETUP`` / ``DMPATH_BIN_MDADM`` point at it;
  ``die`` kills the tool's process.

Without ``DMPATH_FAULT_PLAN`` nothing here is imported by the daemon. The format is in
docs/faults.md; the parsing and the counting are pure, the rest is small.
"""

from __future__ import annotations

import errno as errnomod
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dmpath.errors import DmpathError
from dmpath.kernel.dmioctl import DmFlag, DmOp, IoctlFn, parse_header

log = logging.getLogger("dmpath.faults")

ENV = "DMPATH_FAULT_PLAN"
LAYERS = ("dm", "dmsetup", "mdadm")
#: the operations each layer tells apart (``read``: anything that changes nothing)
OPS = {
    "dm": ("create", "load", "clear", "suspend", "resume", "message", "remove", "read"),
    "dmsetup": ("create", "load", "clear", "suspend", "resume", "message", "remove", "read"),
    "mdadm": ("create", "assemble", "add", "fail", "remove", "stop", "read"),
}
ACTIONS = ("fail", "hang", "die")
DEFAULT_HANG = 5.0


class FaultPlanError(DmpathError):
    """A fault plan that cannot be read or has a line that makes no sense."""

    exit_code = 2


@dataclass(frozen=True)
class Fault:
    """One line of a plan: from the ``nth`` matching call of ``op`` on, ``count`` calls
    (0: every one) meet ``action``."""

    layer: str
    op: str
    nth: int
    action: str
    err: int = errnomod.EIO
    count: int = 1
    seconds: float = DEFAULT_HANG
    then: str = "go"  # after a hang: "go" (the call is made) or "fail" (with ``err``)
    map: str = ""  # only calls naming this map (or md device) are counted

    def hits(self, seen: int) -> bool:
        """Does the ``seen``-th matching call (1-based) meet this fault?"""
        if seen < self.nth:
            return False
        return self.count == 0 or seen < self.nth + self.count

    def describe(self, target: str) -> str:
        what = self.action
        if self.action == "hang":
            what = f"hang {self.seconds:g} s then {self.then}"
        if self.action == "fail" or (self.action == "hang" and self.then == "fail"):
            what += f" ({errnomod.errorcode.get(self.err, str(self.err))})"
        return f"{self.layer} {self.op} on {target or '-'}: {what}"


def _errno(text: str) -> int:
    if text.isdigit():
        return int(text)
    value = getattr(errnomod, text.upper(), None)
    if not isinstance(value, int):
        raise ValueError(f"unknown errno {text!r}")
    return value


def parse_line(line: str) -> Fault | None:
    """``LAYER OP NTH ACTION [KEY=VALUE...]`` -> Fault; None for a blank or comment line.
    ValueError says what is wrong with it."""
    words = line.split("#", 1)[0].split()
    if not words:
        return None
    if len(words) < 4:
        raise ValueError("expected LAYER OP NTH ACTION [KEY=VALUE...]")
    layer, op, nth_text, action, *opts = words
    if layer not in LAYERS:
        raise ValueError(f"layer {layer!r} is not one of {', '.join(LAYERS)}")
    if op not in OPS[layer]:
        raise ValueError(f"{layer} has no operation {op!r} ({', '.join(OPS[layer])})")
    if not nth_text.isdigit() or int(nth_text) < 1:
        raise ValueError(f"NTH is a call number from 1, not {nth_text!r}")
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    kw: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq or key not in ("errno", "count", "seconds", "then", "map"):
            raise ValueError(f"unknown option {opt!r} (errno=, count=, seconds=, then=, map=)")
        kw[key] = value
    then = kw.get("then", "go")
    if then not in ("go", "fail"):
        raise ValueError(f"then={then!r}: 'go' or 'fail'")
    count = kw.get("count", "1")
    if not count.isdigit():
        raise ValueError(f"count={count!r}: a number of calls (0: all)")
    seconds = float(kw.get("seconds", DEFAULT_HANG))
    if seconds < 0:
        raise ValueError(f"seconds={seconds:g}: not negative")
    return Fault(
        layer=layer,
        op=op,
        nth=int(nth_text),
        action=action,
        err=_errno(kw.get("errno", "EIO")),
        count=int(count),
        seconds=seconds,
        then=then,
        map=kw.get("map", ""),
    )


def parse_plan(text: str, source: str = "fault plan") -> list[Fault]:
    """Every fault of a plan's text; FaultPlanError names the first bad line."""
    out: list[Fault] = []
    for n, line in enumerate(text.splitlines(), start=1):
        try:
            fault = parse_line(line)
        except ValueError as exc:
            raise FaultPlanError(f"{source}:{n}: {exc}") from None
        if fault is not None:
            out.append(fault)
    return out


@dataclass
class FaultPlan:
    """The faults and how many matching calls each has seen (``seen``, one per fault)."""

    faults: list[Fault]
    seen: list[int] = field(default_factory=list)
    #: a file each injected fault is appended to (one line), '' for none
    record: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if len(self.seen) != len(self.faults):
            self.seen = [0] * len(self.faults)

    def consult(self, layer: str, op: str, target: str) -> Fault | None:
        """Count one call of ``op`` on ``target``: the fault it meets, if any (the first
        line that hits wins; every matching line counts the call)."""
        found: Fault | None = None
        with self._lock:
            for i, f in enumerate(self.faults):
                if f.layer != layer or f.op != op or (f.map and f.map != target):
                    continue
                self.seen[i] += 1
                if found is None and f.hits(self.seen[i]):
                    found = f
        if found is not None:
            self._note(found.describe(target))
        return found

    def _note(self, text: str) -> None:
        log.warning("fault injected: %s", text)
        if self.record:
            try:
                with open(self.record, "a") as fh:
                    fh.write(f"{time.time():.3f} {os.getpid()} {text}\n")
            except OSError as exc:
                log.warning("cannot record the fault in %s: %s", self.record, exc)


def load_plan(path: str) -> FaultPlan:
    """The plan in ``path``; injected faults are recorded in ``path.fired``."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise FaultPlanError(f"{path}: cannot read the fault plan: {exc.strerror}") from None
    return FaultPlan(parse_plan(text, path), record=path + ".fired")


def plan_from_env() -> FaultPlan | None:
    """The plan ``DMPATH_FAULT_PLAN`` names, None when it is not set."""
    path = os.environ.get(ENV, "")
    return load_plan(path) if path else None


# --------------------------------------------------------------------------- acting


def act(fault: Fault, fail: Callable[[int], None]) -> None:
    """Carry out ``fault`` in the calling process: ``fail(errno)`` must raise or exit;
    returning means the call goes on."""
    if fault.action == "die":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # SIGKILL is delivered before this ends
    if fault.action == "hang":
        time.sleep(fault.seconds)
        if fault.then == "go":
            return
    fail(fault.err)


# --------------------------------------------------------------------------- dm ioctls


def ioctl_op(nr: int, flags: int) -> str:
    """The plan's name of device-mapper command ``nr`` (``DEV_SUSPEND`` is a suspend with
    the SUSPEND flag, else a resume)."""
    names = {
        DmOp.DEV_CREATE: "create",
        DmOp.TABLE_LOAD: "load",
        DmOp.TABLE_CLEAR: "clear",
        DmOp.TARGET_MSG: "message",
        DmOp.DEV_REMOVE: "remove",
    }
    if nr == DmOp.DEV_SUSPEND:
        return "suspend" if flags & DmFlag.SUSPEND else "resume"
    try:
        return names.get(DmOp(nr), "read")
    except ValueError:  # a command dmpath does not send
        return "read"


def faulty_ioctl(plan: FaultPlan, inner: IoctlFn) -> IoctlFn:
    """``inner`` with ``plan``'s ``dm`` faults applied; a failure is the OSError the kernel
    would raise."""
    def call(fd: int, request: int, buf: bytearray) -> int:
        head = parse_header(buf)
        fault = plan.consult("dm", ioctl_op(request & 0xFF, head.flags), head.name or head.uuid)
        if fault is not None:

            def fail(err: int) -> None:
                raise OSError(err, f"{os.strerror(err)} (injected)")

            act(fault, fail)
        return inner(fd, request, buf)

    return call


# --------------------------------------------------------------------------- tools


_MDADM_OPS = {
    "--create": "create",
    "-C": "create",
    "--assemble": "assemble",
    "-A": "assemble",
    "--add": "add",
    "-a": "add",
    "--re-add": "add",
    "--fail": "fail",
    "-f": "fail",
    "--remove": "remove",
    "-r": "remove",
    "--stop": "stop",
    "-S": "stop",
}
_DMSETUP_OPS = {
    "create": "create",
    "load": "load",
    "reload": "load",
    "clear": "clear",
    "suspend": "suspend",
    "resume": "resume",
    "message": "message",
    "remove": "remove",
}


def tool_call(tool: str, args: Sequence[str]) -> tuple[str, str]:
    """(op, target) of one ``dmsetup`` or ``mdadm`` command line (``read``: changes
    nothing); the target is the map or md device it names, '' if none."""
    if tool == "dmsetup":
        words = [a for a in args if not a.startswith("-")]
        if not words:
            return "read", ""
        op = _DMSETUP_OPS.get(words[0], "read")
        return op, words[1] if len(words) > 1 else ""
    op = next((_MDADM_OPS[a] for a in args if a in _MDADM_OPS), "read")
    target = next((a for a in args if a.startswith("/dev/")), "")
    return op, target


@dataclass
class CountFile:
    """How many calls each fault of a plan has seen, kept across the stand-in's processes
    (one JSON list, read and written under an exclusive lock)."""

    path: str

    def consult(self, plan: FaultPlan, layer: str, op: str, target: str) -> Fault | None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "r+") as fh:
                try:
                    seen = [int(n) for n in json.loads(fh.read() or "[]")]
                except (ValueError, TypeError):
                    seen = []
                plan.seen = seen if len(seen) == len(plan.faults) else [0] * len(plan.faults)
                fault = plan.consult(layer, op, target)
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(plan.seen))
            return fault
        finally:
            os.close(fd)
