"""The fault matrix: dmpathd's own kernel operations fail, hang or die at each step of a
map's life, and the daemon must leave every map whole (run inside the lab guest).

Each case starts dmpathd with a fault plan (dmpath.kernel.faults: the ``dm`` ioctls, and
the ``dmsetup``/``mdadm`` stand-in of dmpath.lab.faultbin), carries out one step on the
victim map ``mpatha`` (create, reload to add a path, fail a path, reinstate it, flush,
adoption at start, a state directory that is full), then checks the invariants
(:func:`check_invariants`): no map left suspended, no half-built map, no lost binding, an
event naming the map and the operation, the other map still served. The faults are
finite (a count of calls) or end with the daemon (``die``): once spent, the victim must
heal by itself.

``run(quick=True)`` runs one case per step (the CI's lab test), ``run(quick=False)`` all.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dmpath.kernel import dmioctl
from dmpath.lab import faultbin
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, cleanup_maps, wait_for
from dmpath.runner import run as run_tool

VICTIM = "mpatha"
OTHER = "mpathb"
TOPOLOGY = "2x2"
UUID_PREFIX = "mpath-"
#: seconds the daemon has to settle after a step, and to heal once the fault is spent
SETTLE = 30.0
INVARIANTS = ("suspended", "half_built", "binding", "event", "serving", "healed")


@dataclass(frozen=True)
class Case:
    """One fault at one step: ``plan`` is the fault plan's text; ``says`` are words the
    error event (or the refused request) must hold besides the map's name, () when the
    fault leaves nothing to report (a hang that goes on)."""

    step: str
    plan: str
    says: tuple[str, ...] = ()
    quick: bool = False

    @property
    def name(self) -> str:
        words = self.plan.split()
        return f"{self.step}: {' '.join(words[:4])}"


def _v(text: str) -> str:
    return f"{text} map={VICTIM}"


CASES: tuple[Case, ...] = (
    # the map is made at start (create, load, resume: dm create undoes a half-made map)
    Case("create", _v("dm create 1 fail errno=EBUSY"), ("DEV_CREATE",)),
    Case("create", _v("dm load 1 fail errno=EINVAL"), ("table load",), quick=True),
    Case("create", _v("dm resume 1 fail"), ("resume",)),
    Case("create", _v("dm load 1 hang seconds=3 then=go")),
    # a path joins: one reload (load, suspend noflush, resume); the removal before it is
    # the first reload
    Case("reload", _v("dm load 2 fail errno=EINVAL"), ("table load",)),
    Case("reload", _v("dm suspend 2 fail"), ("suspend",)),
    Case("reload", _v("dm resume 2 fail count=2"), ("resume",), quick=True),
    Case("reload", _v("dm resume 2 fail count=4"), ("resume",)),
    Case("reload", _v("dm resume 2 hang seconds=3 then=fail"), ("resume",)),
    # a path dies: the checker's fail_path message; then it returns: reinstate_path
    Case("fail", _v("dm message 1 fail count=2"), ("fail_path",), quick=True),
    Case("fail", _v("dm message 1 hang seconds=3 then=go")),
    Case("reinstate", _v("dm message 2 fail count=2"), ("reinstate_path",), quick=True),
    Case("reinstate", _v("dm message 2 hang seconds=3 then=fail"), ("reinstate_path",)),
    # the admin flushes the map: dmsetup remove (the stand-in); the map must stay whole
    Case("flush", _v("dmsetup remove 1 fail errno=EBUSY"), ("remove",)),
    Case("flush", _v("dmsetup remove 1 die"), ("killed",), quick=True),
    Case("flush", _v("dmsetup remove 1 hang seconds=3 then=fail"), ("remove",)),
    # the daemon dies mid-way (SIGKILL in place of the call); the next one adopts
    Case("adopt", _v("dm load 1 die"), ()),
    Case("adopt", _v("dm resume 1 die"), (), quick=True),
    Case("adopt", _v("dm resume 1 fail count=2"), ("resume",)),
    # the state directory: full (a tiny tmpfs), read-only
    Case("files", "full", ("admin",)),
    Case("files", "read-only", ("admin",)),
    Case("files", "corrupt", ()),
)


def select(quick: bool) -> list[Case]:
    return [c for c in CASES if c.quick or not quick]


@dataclass
class Outcome:
    case: Case
    failures: dict[str, str] = field(default_factory=dict)
    injected: int = 0
    seconds: float = 0.0  # how long the case took (a figure to print)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        out: dict[str, float] = {
            "faults_injected": float(sum(o.injected for o in self.outcomes)),
            "cases": float(len(self.outcomes)),
            "cases_passed": float(sum(o.passed for o in self.outcomes)),
        }
        for inv in INVARIANTS:
            out[f"failed_{inv}"] = float(sum(inv in o.failures for o in self.outcomes))
        return out

    def summary(self) -> list[str]:
        """One line per case: passed or not, and how long it took."""
        return [
            f"{'ok' if o.passed else 'FAILED':<6} {o.seconds:5.1f} s  {o.case.name}"
            for o in self.outcomes
        ]

    def failed(self) -> list[str]:
        return [
            f"{o.case.name}: " + "; ".join(f"{k}: {v}" for k, v in o.failures.items())
            for o in self.outcomes
            if not o.passed
        ]


# --------------------------------------------------------------------------- invariants


def our_maps() -> dict[str, dmioctl.DmHeader]:
    """Every dm device with dmpath's uuid prefix, by name, as DEV_STATUS reports it."""
    with dmioctl.open_control() as ctl:
        out: dict[str, dmioctl.DmHeader] = {}
        for dev in ctl.list_devices():
            with contextlib.suppress(dmioctl.NoSuchMap):
                head = ctl.dev_status(dev.name)
                if head.uuid.startswith(UUID_PREFIX):
                    out[dev.name] = head
        return out


def bindings(path: str) -> dict[str, str]:
    """name -> wwid of a bindings file (lines that do not parse are left out)."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError), open(path, errors="replace") as fh:
        for line in fh:
            words = line.split("#", 1)[0].split()
            if len(words) == 2:
                out[words[0]] = words[1]
    return out


def _wait(pred: Callable[[], Any], timeout: float, what: str) -> str:
    """'' once ``pred`` holds, else what did not happen."""
    try:
        wait_for(pred, timeout, what)
    except AssertionError as exc:
        return str(exc).splitlines()[0]
    return ""


def _unreported(d: DaemonUnderTest, since: float, words: tuple[str, ...], answer: str) -> str:
    """'' if an error or alert event since ``since`` (or ``answer``) names the victim and
    holds ``words``; else what was reported instead."""
    # an event names the map in its own field; a refused request's answer in its text
    texts = [answer] if answer and VICTIM in answer else []
    try:
        events = d.request("events")
    except Exception as exc:  # noqa: BLE001 - said in the failure
        return f"no events ({exc})"
    bad = [e for e in events if e["kind"] in ("error", "alert") and e["time"] >= since]
    texts += [e["message"] for e in bad if e["map"] == VICTIM]
    if any(all(w in t for w in words) for t in texts):
        return ""
    seen = "; ".join(f"{e['kind']} {e['map']}: {e['message'][:100]}" for e in bad[-3:])
    return f"no error naming {VICTIM} and {'/'.join(words)} (answer {answer!r}; saw: {seen})"


def _wait_reported(d: DaemonUnderTest, since: float, words: tuple[str, ...], answer: str) -> str:
    """'' once the fault is reported, given ``SETTLE`` s: a step can end before the
    daemon meets the fault (a create at start, a reinstate by the next check)."""
    last = ["not asked"]

    def reported() -> bool:
        last[0] = _unreported(d, since, words, answer)
        return not last[0]

    return "" if not _wait(reported, SETTLE, "the fault reported") else last[0]


def check_invariants(
    d: DaemonUnderTest,
    want: dict[str, int],
    bindings_file: str,
    since: float,
    *,
    says: tuple[str, ...] = (),
    answer: str = "",
    bystander: topo.LabPath | None = None,
) -> dict[str, str]:
    """The invariants after a fault, once the daemon has had ``SETTLE`` s: failures by
    invariant (empty: all hold). ``want``: map -> its number of paths once healed;
    ``says``: words the error event (or ``answer``, a refused request's error) must hold
    besides the victim's name (none expected if empty); ``bystander``: a path of another
    map that is taken offline and brought back, which the daemon must fail and reinstate."""
    bad: dict[str, str] = {}

    def none_suspended() -> bool:
        return not any(h.suspended for h in our_maps().values())

    why = _wait(none_suspended, SETTLE, "no map of ours suspended")
    if why:
        bad["suspended"] = ", ".join(n for n, h in our_maps().items() if h.suspended)
    why = _wait_reported(d, since, says, answer) if says else ""
    if why:
        bad["event"] = why
    try:
        d.request("ping")
        if bystander is not None:
            bad.update(_bystander(d, bystander))
    except Exception as exc:  # noqa: BLE001 - a dead daemon is a failed invariant
        bad["serving"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return bad

    def healed() -> bool:
        maps = d.maps()
        return all(
            n in maps and maps[n]["working"] == k and len(maps[n]["paths"]) == k
            for n, k in want.items()
        )

    why = _wait(healed, SETTLE, f"maps {want} whole")
    if why:
        seen = {n: m["status"] for n, m in d.maps().items()}
        last = [f"{e['kind']} {e['path']} {e['message'][:80]}" for e in d.request("events")]
        bad["healed"] = f"{why}; daemon: {seen}; last events: {' | '.join(last[-4:])}"
    kernel = our_maps()
    half = [n for n, h in kernel.items() if not h.active_present or h.inactive_present]
    half += [n for n in want if n not in kernel]
    if half:
        bad["half_built"] = f"no live table or a table left loaded: {', '.join(sorted(half))}"
    names = bindings(bindings_file)
    lost = [n for n in kernel if n not in names]
    if lost:
        bad["binding"] = f"bindings file lacks {', '.join(sorted(lost))}"
    return bad


def _bystander(d: DaemonUnderTest, path: topo.LabPath) -> dict[str, str]:
    """The other map's path goes offline and back: the daemon must follow both ways."""
    topo.set_state(path, "offline")
    try:
        why = _wait(
            lambda: d.path(path.name)["kernel_state"] == "failed", SETTLE, f"{path.name} failed"
        )
    finally:
        topo.set_state(path, "running")
    why = why or _wait(
        lambda: d.path(path.name)["kernel_state"] == "active", SETTLE, f"{path.name} back"
    )
    return {"serving": why} if why else {}


# --------------------------------------------------------------------------- the steps


@dataclass
class Bench:
    """The daemon, its files and the paths, shared by every case (one workdir: the
    bindings name the same maps from case to case)."""

    paths: list[topo.LabPath]
    workdir: str
    d: DaemonUnderTest
    plan: str = ""
    #: the plan files of the case under way (a case that kills the daemon restarts it)
    plans: list[str] = field(default_factory=list)

    @property
    def bindings_file(self) -> str:
        return os.path.join(self.workdir, "bindings")

    def of(self, name: str) -> list[topo.LabPath]:
        devnums = {p["devnum"] for p in self.d.maps()[name]["paths"]}
        return [p for p in self.paths if p.devnum in devnums]

    def start(
        self, plan: str = "", defaults: dict[str, Any] | None = None, wait: bool = True
    ) -> None:
        self.d.stop()
        env = faultbin.write_standins(self.workdir)
        if plan:
            self.plan = os.path.join(self.workdir, f"plan.{self.d.restarts}")
            with open(self.plan, "w") as fh:
                fh.write(plan + "\n")
            env["DMPATH_FAULT_PLAN"] = self.plan
            self.plans.append(self.plan)
        self.d.env = env
        self.d.defaults = {**BASE_DEFAULTS, **(defaults or {})}
        self.d.start(wait)

    def injected(self) -> int:
        """How many faults the case's plans injected (``PLAN.fired`` lines)."""
        n = 0
        for plan in self.plans:
            with contextlib.suppress(OSError), open(plan + ".fired") as fh:
                n += len(fh.readlines())
        return n

    def request(self, op: str, args: dict[str, Any]) -> str:
        """Ask the daemon; '' if it did it, else its error."""
        try:
            self.d.request(op, args)
        except Exception as exc:  # noqa: BLE001 - the refusal is what is checked
            return str(exc)
        return ""


BASE_DEFAULTS: dict[str, Any] = {"polling_interval": 1}


def _remove_map(name: str) -> None:
    with contextlib.suppress(Exception):
        run_tool("dmsetup", ["remove", "--force", name], timeout=60)


def _op(case: Case) -> str:
    return case.plan.split()[1]


def _restart_after_death(b: Bench) -> None:
    """The planned death happened (or happens now): the next dmpathd, without a plan."""
    wait_for(lambda: b.d.proc is not None and b.d.proc.poll() is not None, SETTLE, "its death")
    b.start()


def _ready(b: Bench) -> None:
    """Both maps whole in the daemon's model: it answers once the kernel's maps are
    adopted, before its coldplug has read their paths, and a path request sent before
    that meets no such path (seen: the fault a step aims at was never reached)."""
    b.d.wait_maps({VICTIM: 2, OTHER: 2}, timeout=SETTLE)


def _step(b: Bench, case: Case) -> str:
    """Carry out ``case``'s step with its plan; returns a refused request's error."""
    if case.step == "files":
        return _files_step(b, case.plan)
    victim = b.of(VICTIM)
    if case.step == "create" or (case.step == "adopt" and _op(case) == "load"):
        b.d.stop()
        _remove_map(VICTIM)  # made again at start: the step under test
        if case.step == "adopt":
            b.start(case.plan, wait=False)  # killed between the map's create and its load
            _restart_after_death(b)
        else:
            b.start(case.plan)
        return ""
    if case.step == "adopt" and "die" in case.plan:
        # a reload's resume: the daemon dies with the map suspended on its new table
        b.start(case.plan)
        _ready(b)
        lost = victim[-1]
        with contextlib.suppress(Exception):
            b.d.request("remove_path", {"path": lost.name})
        _restart_after_death(b)
        return b.request("add_path", {"path": lost.name})
    if case.step == "adopt":
        b.d.stop()
        run_tool("dmsetup", ["suspend", "--noflush", VICTIM], timeout=60)  # as a crash leaves it
        b.start(case.plan)
        return ""
    b.start(case.plan)
    _ready(b)
    if case.step == "reload":
        lost = victim[-1]
        b.request("remove_path", {"path": lost.name})
        return b.request("add_path", {"path": lost.name})
    if case.step in ("fail", "reinstate"):
        p = victim[0]
        topo.set_state(p, "offline")
        try:
            wait_for(lambda: b.d.path(p.name)["check"] == "down", SETTLE, f"{p.name} seen down")
            if case.step == "fail":
                # the checker's fail_path is what the fault meets: give it its tries
                _wait(lambda: b.d.path(p.name)["kernel_state"] == "failed", 10, "")
            else:
                wait_for(
                    lambda: b.d.path(p.name)["kernel_state"] == "failed", SETTLE, "failed"
                )
        finally:
            topo.set_state(p, "running")
        return ""
    answer = b.request("flush_map", {"map": VICTIM})  # flush
    if not answer:
        b.request("add_path", {"path": victim[0].name})  # a flush that went through
    return answer


def _files_step(b: Bench, how: str) -> str:
    """The state files on a tiny tmpfs that is full, read-only or holds garbage; the
    admin fails and reinstates a path of the victim (both must be recorded)."""
    state = os.path.join(b.workdir, "state")
    os.makedirs(state, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", state], check=True)
    files = {k: os.path.join(state, k) for k in ("bindings", "wwids", "admin-state", "history")}
    for k in ("bindings", "wwids"):
        with open(os.path.join(b.workdir, k)) as src, open(files[k], "w") as dst:
            dst.write(src.read())
    if how == "corrupt":
        for f in files.values():
            with open(f, "ab") as fh:
                fh.write(b"\x00\xff garbage {[ \n")
    if how == "read-only":
        # as a root file system mounted read-only is met at boot; a remount under the
        # running daemon is refused while it holds its history open for writing
        subprocess.run(["mount", "-o", "remount,ro", state], check=True)
    b.start("", {f"{k.replace('-', '_')}_file": v for k, v in files.items()})
    if how == "full":
        with contextlib.suppress(OSError), open(os.path.join(state, "filler"), "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    p = b.of(VICTIM)[0]
    answer = b.request("fail_path", {"path": p.name})
    again = b.request("reinstate_path", {"path": p.name})
    return answer or again


def _files_done(b: Bench) -> None:
    state = os.path.join(b.workdir, "state")
    b.d.stop()
    subprocess.run(["umount", state], check=False)


def _whole(b: Bench) -> bool:
    try:
        return len(b.of(VICTIM)) == 2 and len(b.of(OTHER)) == 2
    except Exception:  # noqa: BLE001 - a dead daemon or a missing map: not whole
        return False


def run_case(b: Bench, case: Case) -> Outcome:
    started = time.monotonic()
    b.plans = []
    if not _whole(b):  # what an earlier case left broken is not this case's doing
        b.start()
        with contextlib.suppress(AssertionError):
            b.d.wait_maps({VICTIM: 2, OTHER: 2}, timeout=SETTLE)
    since = time.time()
    try:
        answer = _step(b, case)
        other = b.of(OTHER)[0]
    except Exception as exc:  # noqa: BLE001 - a step that cannot be done is a failed case
        fails = {"serving": f"step failed: {str(exc).splitlines()[0] if str(exc) else exc!r}"}
    else:
        bindings_file = b.bindings_file
        if case.step == "files":
            bindings_file = os.path.join(b.workdir, "state", "bindings")
        want = {VICTIM: 2, OTHER: 2}
        fails = check_invariants(
            b.d, want, bindings_file, since, says=case.says, answer=answer, bystander=other
        )
    if case.step == "files":
        _files_done(b)
    return Outcome(case, fails, b.injected(), time.monotonic() - started)


def run_matrix(quick: bool, paths: list[topo.LabPath] | None = None) -> Report:
    if paths is None:
        paths = topo.setup(topo.get_topology(TOPOLOGY))
    report = Report()
    with tempfile.TemporaryDirectory(prefix="faultmatrix.") as workdir:
        b = Bench(paths, workdir, DaemonUnderTest(workdir, dict(BASE_DEFAULTS)))
        try:
            b.start()
            b.d.wait_maps({VICTIM: 2, OTHER: 2})
            for case in select(quick):
                report.outcomes.append(run_case(b, case))
        finally:
            b.d.stop()
            cleanup_maps()
    return report


def run(quick: bool) -> dict[str, float]:
    """The matrix's figures (faults injected, cases, cases passed, failures per invariant);
    the failed cases are printed."""
    report = run_matrix(quick)
    print("\n".join(report.summary()))
    for line in report.failed():
        print(f"FAILED {line}")
    return report.figures()
