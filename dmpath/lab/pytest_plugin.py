"""pytest bridge: the ``@pytest.mark.lab`` tests of a session run inside lab boots.

On the host (no ``DMPATH_LAB`` in the environment) lab tests are not run in-process: the
first one to come up starts the boots, which run all selected lab tests inside them with
pytest; each host-side lab item then reports the outcome its twin had in the guest, so
the host's summary counts real kernel results. Inside the guest the same tests run
normally. With ``CI=true`` a skipped lab test counts as a failure: in CI the lab must run.

Each boot flavour is booted once, except that the default flavour's tests are cut into
shards of whole modules, each booted on its own, when ``DMPATH_LAB_PARALLEL`` boots run
side by side (``dmpath.lab.shards``; one at a time unless it says more).

``@pytest.mark.lab(kernels=("6.1", "6.12"))`` makes one item per kernel (``test_x[6.12]``)
through the ``lab_kernel`` fixture, each run in the boot of that name; in the guest an
item whose kernel is not the running one fails, so no kernel's result can come from
another. Function-scoped, so module-scoped fixtures are set up once per boot as before.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.reports import TestReport

if TYPE_CHECKING:
    from dmpath.lab.shards import BootRun

IN_GUEST = os.environ.get("DMPATH_LAB") == "1"
#: how many lab VMs run at once
PARALLEL_ENV = "DMPATH_LAB_PARALLEL"
#: the measured durations that balance the shards, relative to the project's root
DURATIONS_FILE = "tests/lab/durations.json"


def lab_parallel() -> int:
    """``DMPATH_LAB_PARALLEL`` if it is a whole number from 1 up, else 1. A VM under
    emulation uses both cores of a 2-core host: two side by side there each ran their
    tests 2.2 to 2.7 times slower (and booted in 276 s, not 120), so side by side pays
    only on a host with cores to spare."""
    raw = os.environ.get(PARALLEL_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) >= 1 else 1


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    grp = parser.getgroup("dmpath lab")
    grp.addoption("--lab-results", help="(guest) write per-test outcomes as JSON lines here")
    grp.addoption(
        "--no-lab", action="store_true", help="skip lab tests instead of booting the VM"
    )
    grp.addoption("--lab-topology", default=None, help="topology set up before the tests")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lab(boot=NAME, kernels=(SERIES, ...)): runs inside the real-kernel lab VM (in the"
        " boot NAME, or once in each kernel's boot)",
    )
    if not IN_GUEST:
        config.pluginmanager.register(_HostBridge(config), "dmpath-lab-bridge")


def _is_lab(item: pytest.Item) -> bool:
    return item.get_closest_marker("lab") is not None


def _kernels(mark: pytest.Mark | None) -> list[str]:
    """The ``kernels=`` of a lab marker, as strings ("6.1" must not become 6.1 the float:
    written as a number, it is refused)."""
    if mark is None or "kernels" not in mark.kwargs:
        return []
    kernels = mark.kwargs["kernels"]
    if isinstance(kernels, str) or not all(isinstance(k, str) for k in kernels):
        raise pytest.UsageError(f"lab(kernels=...) wants a tuple of strings, got {kernels!r}")
    return list(kernels)


def boot_of(item: pytest.Item) -> str:
    """The lab boot flavour a lab item runs in: its kernel for a ``kernels=`` item, else
    ``@pytest.mark.lab(boot=...)``, else the default."""
    from dmpath.lab.boots import DEFAULT_BOOT

    callspec = getattr(item, "callspec", None)
    if callspec is not None and "lab_kernel" in callspec.params:
        return str(callspec.params["lab_kernel"])
    mark = item.get_closest_marker("lab")
    boot = mark.kwargs.get("boot") if mark is not None else None
    return str(boot) if boot else DEFAULT_BOOT


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    kernels = _kernels(metafunc.definition.get_closest_marker("lab"))
    if kernels:
        metafunc.parametrize("lab_kernel", kernels, indirect=True, ids=kernels)


@pytest.fixture(autouse=True)
def lab_kernel(request: pytest.FixtureRequest) -> str | None:
    """The kernel series this lab item must run on (``kernels=`` or a kernel-named
    ``boot=``), or None. In the guest, a mismatch with ``uname -r`` fails the item."""
    from dmpath.lab.boots import KERNEL_BOOTS, kernel_matches

    series: str | None = getattr(request, "param", None)
    if series is None:
        mark = request.node.get_closest_marker("lab")
        boot = mark.kwargs.get("boot") if mark is not None else None
        # a plain @pytest.mark.lab is not pinned: DMPATH_LAB_KERNEL may point it elsewhere
        series = str(boot) if boot in KERNEL_BOOTS else None
    if series is not None and IN_GUEST:
        release = os.uname().release
        if not kernel_matches(series, release):
            pytest.fail(
                f"this item is for kernel {series} but the guest runs {release}", pytrace=False
            )
    return series


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    rep: TestReport = outcome.get_result()
    if _ci() and _is_lab(item) and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"lab test skipped under CI=true (a skip is a failure here): {reason}"


def pytest_runtest_logreport(report: TestReport) -> None:
    path = os.environ.get("DMPATH_LAB_RESULTS")
    if not (IN_GUEST and path):
        return
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple):
        longrepr = list(longrepr)
    elif longrepr is not None:
        longrepr = str(longrepr)
    rec = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "longrepr": longrepr,
        "duration": report.duration,
    }
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


@dataclass
class _Outcome:
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)


def _one_phase(outcome: str, longrepr: Any) -> dict[str, dict[str, Any]]:
    return {"setup": {"outcome": outcome, "longrepr": longrepr, "duration": 0.0}}


class _HostBridge:
    """Host side: runs the session's lab tests in one VM boot and mirrors their results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        #: boot flavour -> the lab test ids that run in it, in collection order
        self.lab_ids: dict[str, list[str]] = {}
        #: boot run -> its outcomes, once it has run (all runs start with the first item)
        self.results: dict[str, Future[dict[str, _Outcome]]] = {}
        #: test id -> the boot run it is in
        self.run_of: dict[str, str] = {}
        self.boot_error: dict[str, str] = {}
        self._lock = threading.Lock()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # the final selection: after -k/-m deselection, which runs in modifyitems hooks
        self.lab_ids = {}
        for i in session.items:
            if _is_lab(i):
                self.lab_ids.setdefault(boot_of(i), []).append(i.nodeid)

    def _write(self, line: str) -> None:
        with self._lock:  # boots run side by side: one line at a time
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(line)
            else:
                print(line, file=sys.stderr)

    def _start_runs(self) -> None:
        """Plan the boots and start them, ``lab_parallel()`` at a time."""
        from dmpath.lab import shards

        parallel = lab_parallel()
        costs = shards.load_costs(os.path.join(str(self.config.rootpath), DURATIONS_FILE))
        runs = shards.plan(self.lab_ids, parallel, costs)
        pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="lab")
        for run in runs:
            for i in run.ids:
                self.run_of[i] = run.key
            self.results[run.key] = pool.submit(self._run_lab, run, len(runs) > 1)
        if len(runs) > 1:
            self._write(
                f"\n[lab] {len(runs)} boots, {parallel} at a time: "
                + ", ".join(f"{r.key} ({len(r.ids)} tests)" for r in runs)
            )
        pool.shutdown(wait=False)

    def _run_lab(self, run: BootRun, tagged: bool) -> dict[str, _Outcome]:
        from dmpath.lab.boots import runner

        results: dict[str, _Outcome] = {}
        boot, ids = run.key, list(run.ids)
        tag = f" {boot}" if tagged else ""
        try:
            outdir = tempfile.mkdtemp(prefix="dmpath-lab-pytest-")
            res_file = os.path.join(outdir, "results.jsonl")
            ids_file = os.path.join(outdir, "test-ids.txt")
            with open(ids_file, "w") as fh:
                fh.write("\n".join(ids) + "\n")
            argv = [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-v",
                "--tb=short",
                # the test ids go in a file: the guest command travels on the kernel's
                # command line, which is cut at 2 KiB (a long one hangs the boot)
                "@" + ids_file,
            ]
            self._write(f"\n[lab] running {len(ids)} lab tests inside one {boot} boot")
            done = runner(run.flavour)(
                ["env", f"DMPATH_LAB_RESULTS={res_file}", *argv],
                outdir=outdir,
                echo=lambda ln: self._write(f"  lab{tag}| " + ln),
                progress=lambda m: self._write(f"[lab{tag}] " + m),
            )
            self._write(
                f"[lab] {boot} guest finished with status {done.returncode}"
                f" in {done.duration:.0f} s"
            )
            if os.path.exists(res_file):
                with open(res_file) as fh:
                    for ln in fh:
                        rec = json.loads(ln)
                        results.setdefault(rec["nodeid"], _Outcome()).phases[rec["when"]] = rec
            if not results:
                self.boot_error[boot] = (
                    f"the {boot} lab boot produced no results:\n" + done.output[-3000:]
                )
        except Exception as exc:  # noqa: BLE001 - any failure to boot fails every lab test
            self.boot_error[boot] = (
                f"could not run the {boot} lab boot: {type(exc).__name__}: {exc}"
            )
        return results

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        if not _is_lab(item):
            return None
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        if self.config.getoption("--no-lab"):
            phases = _one_phase("skipped", [item.location[0], 0, "Skipped: --no-lab"])
        else:
            if not self.results:
                self._start_runs()
            boot = self.run_of.get(item.nodeid, boot_of(item))
            ran = self.results.get(boot)
            found = ran.result().get(item.nodeid) if ran is not None else None
            if found is None:
                why = self.boot_error.get(boot) or f"lab test did not run in the {boot} boot"
                phases = _one_phase("failed", why)
            else:
                phases = found.phases
        for when in ("setup", "call", "teardown"):
            rec: dict[str, Any] | None = phases.get(when)
            if rec is None:
                continue
            longrepr = rec.get("longrepr")
            if isinstance(longrepr, list):
                longrepr = (str(longrepr[0]), int(longrepr[1] or 0), str(longrepr[2]))
            rep = TestReport(
                nodeid=item.nodeid,
                location=item.location,
                keywords={k: 1 for k in item.keywords},
                outcome=rec["outcome"],
                longrepr=longrepr,
                when=when,
                duration=float(rec.get("duration") or 0.0),
            )
            if _ci() and rep.skipped:
                reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
                rep.outcome = "failed"
                rep.longrepr = f"lab test skipped under CI=true (a skip is a failure): {reason}"
            ihook.pytest_runtest_logreport(report=rep)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True
