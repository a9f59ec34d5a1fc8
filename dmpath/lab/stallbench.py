"""The bench's stall rows: what a dark iSCSI portal costs a map's I/O, dmpathd against
multipathd, both on their defaults, one after the other in one boot.

For each daemon: the lab's iSCSI fabric (``dmpath.lab.iscsi``, one LUN behind two
portals), the sessions' ``recovery_tmo`` put back to what iscsid gave them (so neither
daemon inherits the other's settings), the daemon started, then ``rounds`` times, the
portals taking turns: verified I/O on the map (``harness.VerifiedIO``: write a block, read
it back), the portal black-holed (nftables drop: its path hangs), and measured:

- ``failed_s``: from the black hole until ``dmsetup status`` shows the path failed;
- ``stall_s``: the writer's longest gap between two completed write-and-read-backs from
  the black hole until the I/O has run on over the other portal (the stall the fault cost);
- ``back_s``: from clearing the black hole until the path is active again.

A benchmark, not a test: figures, never verdicts; ratios below 1 favour dmpathd. What
bounds each figure is said in docs/lab-iscsi.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from dmpath.errors import DmpathError
from dmpath.lab.bench import MULTIPATH_CONF

#: multipathd managing the LIO disks only (its built-in hardware table has an entry for
#: LIO-ORG: ALUA, group_by_prio, no_path_retry 12: those are its defaults here)
MULTIPATH_CONF_LIO = MULTIPATH_CONF.replace(
    'vendor "Linux"\n        product "scsi_debug"', 'vendor "LIO-ORG"\n        product ".*"'
)
assert "LIO-ORG" in MULTIPATH_CONF_LIO
#: dmpathd managing the iSCSI disks only (scsi_debug's protocol is "scsi:unspec")
DMPATHD_ISCSI_ONLY = '[blacklist]\nprotocol = ["^scsi:unspec$"]\n'

DEFAULT_STALL_ROUNDS = 2
#: how long any one wait may take: multipathd on its defaults may hold a dark portal's
#: I/O for the session's replacement timeout (120 s) and more
STALL_TIMEOUT = 400.0
STALL_FIGURES = (
    ("path failed after (s)", "failed_s"),
    ("longest I/O stall (s)", "stall_s"),
    ("path back after (s)", "back_s"),
)


@dataclass
class StallRound:
    portal: int
    failed_s: float | None = None
    stall_s: float | None = None
    back_s: float | None = None
    io_errors: int = 0


@dataclass
class StallResult:
    daemon: str
    version: str = ""
    #: the sessions' recovery_tmo once the daemon had set up its map
    recovery_tmo: str = ""
    rounds: list[StallRound] = field(default_factory=list)
    error: str = ""

    def figures(self) -> dict[str, float | None]:
        """Each figure's median over the rounds that measured it."""
        out: dict[str, float | None] = {}
        for _label, key in STALL_FIGURES:
            values = [v for r in self.rounds if (v := getattr(r, key)) is not None]
            out[key] = statistics.median(values) if values else None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "daemon": self.daemon,
            "version": self.version,
            "recovery_tmo": self.recovery_tmo,
            "rounds": [vars(r) for r in self.rounds],
            **self.figures(),
            "io_errors": sum(r.io_errors for r in self.rounds),
            "error": self.error,
        }


def stall_ratios(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, float | None]:
    """dmpathd / multipathd for each figure (None where either is missing or zero)."""
    out: dict[str, float | None] = {}
    for _label, key in STALL_FIGURES:
        a, b = mine.get(key), theirs.get(key)
        ok = isinstance(a, int | float) and isinstance(b, int | float) and b > 0
        out[key] = a / b if ok else None  # type: ignore[operator]
    return out


def stall_table(entry: Mapping[str, Any]) -> Table:
    daemons: Mapping[str, Mapping[str, Any]] = entry.get("daemons") or {}
    t = Table(title="iSCSI portal black-holed under verified I/O (median of rounds)")
    t.add_column("figure")
    for name in daemons:
        t.add_column(name, justify="right")
    t.add_column("ratio", justify="right")
    ratios: Mapping[str, float | None] = entry.get("ratios") or {}
    for label, key in STALL_FIGURES:
        cells = [_num(d.get(key), 1) for d in daemons.values()]
        t.add_row(label, *cells, _num(ratios.get(key), 2))
    for label, key in (("session recovery_tmo", "recovery_tmo"), ("I/O errors", "io_errors")):
        t.add_row(label, *[str(d.get(key, "?")) for d in daemons.values()], "")
    return t


def _num(value: object, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return f"{value:.{digits}f}"


def stall_records(
    guest_doc: Mapping[str, Any], *, commit: str, dirty: bool, memory: str
) -> list[dict[str, Any]]:
    """The results-file record of a bench run's stall part (none if it had none)."""
    entry = guest_doc.get("stall")
    if not entry:
        return []
    return [
        {
            "kind": "stall",
            "date": guest_doc.get("started"),
            "kernel": guest_doc.get("kernel"),
            "git_commit": commit,
            "git_dirty": dirty,
            "guest_memory": memory,
            "rounds": entry.get("rounds"),
            "daemons": {
                name: {
                    "version": d.get("version", ""),
                    "recovery_tmo": d.get("recovery_tmo", ""),
                    **{key: d.get(key) for _l, key in STALL_FIGURES},
                    "io_errors": d.get("io_errors"),
                    "error": d.get("error", ""),
                }
                for name, d in (entry.get("daemons") or {}).items()
            },
            "ratios": entry.get("ratios") or {},
            "error": entry.get("error") or None,
        }
    ]


def stall_md(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The stall section of docs/bench/results.md, newest run first."""
    stall = [r for r in records if r.get("kind") == "stall"]
    if not stall:
        return []
    lines = [
        "## iSCSI portal black-holed under verified I/O",
        "",
        "One LUN behind two portals; one portal's packets dropped (nftables) while a writer "
        "writes and reads back; medians of the rounds. Ratios below 1 favour dmpathd.",
        "",
        "| date | commit | figure | dmpathd | multipathd | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for rec in reversed(stall):
        d = rec.get("daemons") or {}
        mine, theirs = d.get("dmpathd") or {}, d.get("multipathd") or {}
        ratios = rec.get("ratios") or {}
        commit = str(rec.get("git_commit") or "?") + ("+dirty" if rec.get("git_dirty") else "")
        for label, key in STALL_FIGURES:
            lines.append(
                f"| {str(rec.get('date') or '?')[:10]} | {commit} | {label} | "
                f"{_num(mine.get(key), 1)} | {_num(theirs.get(key), 1)} | "
                f"{_num(ratios.get(key), 2)} |"
            )
        if rec.get("error"):
            lines.append(f"| | | error: {rec['error']} | | | |")
    return [*lines, ""]


# ---------------------------------------------------------------------- in the guest


def _recovery_tmos(sessions: Sequence[str]) -> dict[str, str]:
    out = {}
    for s in sessions:
        with open(f"/sys/class/iscsi_session/{s}/recovery_tmo") as fh:
            out[s] = fh.read().strip()
    return out


def _wait(pred: Callable[[], Any], what: str, timeout: float = STALL_TIMEOUT) -> Any:
    from dmpath.lab.bench import wait_until

    return wait_until(pred, timeout, what, step=0.2)


def run_stall(
    console: Console, *, workdir: str, outdir: str, rounds: int = DEFAULT_STALL_ROUNDS
) -> dict[str, Any]:
    """Both daemons on the iSCSI fabric, as the module docstring says; the entry for
    bench.json (per daemon figures, ratios, error)."""
    from dmpath.lab import iscsi
    from dmpath.lab.bench import BenchError, Daemon, Dmpathd, Multipathd, map_states
    from dmpath.lab.harness import VerifiedIO

    entry: dict[str, Any] = {"rounds": rounds, "daemons": {}, "ratios": {}, "error": None}
    fabric = iscsi.Fabric(luns=1)
    try:
        console.print("stall: iSCSI fabric (LIO, two portals)", style="bold")
        paths = fabric.setup(lambda m: console.print(m, style="dim"))
        sessions = list(fabric.sessions())
        original = _recovery_tmos(sessions)
        factories: list[tuple[str, Callable[[str], Daemon]]] = [
            ("dmpathd", lambda w: Dmpathd(w, extra=DMPATHD_ISCSI_ONLY)),
            ("multipathd", lambda w: Multipathd(w, verbosity=2, conf=MULTIPATH_CONF_LIO)),
        ]
        devnums = {p.devnum for p in paths}
        for dname, factory in factories:
            result = StallResult(dname)
            daemon: Daemon | None = None
            for s, value in original.items():  # what iscsid gave, not the last daemon's
                with open(f"/sys/class/iscsi_session/{s}/recovery_tmo", "w") as fh:
                    fh.write(value)
            try:
                daemon = factory(os.path.join(workdir, f"stall-{dname}"))
                result.version = daemon.version()
                daemon.start()

                def ready() -> str | None:
                    for name, states in map_states().items():
                        if set(states) == devnums and all(states.values()):
                            return name
                    return None

                name: str = _wait(ready, f"{dname}: one map over both portals, active")
                node = f"/dev/mapper/{name}"
                _wait(lambda: os.path.exists(node), node)  # noqa: B023 - called at once
                result.recovery_tmo = ",".join(sorted(set(_recovery_tmos(sessions).values())))
                for r in range(rounds):
                    victim = next(p for p in paths if p.portal.index == r % 2)
                    rnd = StallRound(victim.portal.index)
                    result.rounds.append(rnd)
                    io = VerifiedIO(f"/dev/mapper/{name}", blocks=64).start()
                    try:
                        io.wait_writes(20, 120, "verified I/O to start")
                        io.longest_stall = 0.0
                        t0 = time.monotonic()
                        fabric.blackhole(victim.portal)
                        dev = victim.devnum
                        _wait(lambda: not map_states()[name][dev],  # noqa: B023 - called at once
                              f"{dname}: {victim.name} failed")
                        rnd.failed_s = time.monotonic() - t0
                        io.wait_writes(io.writes + 50, STALL_TIMEOUT, "I/O over the other portal")
                        rnd.stall_s = io.longest_stall
                        fabric.clear_rules()
                        t1 = time.monotonic()
                        _wait(lambda: all(map_states()[name].values()),  # noqa: B023 - at once
                              f"{dname}: {victim.name} back")
                        rnd.back_s = time.monotonic() - t1
                    finally:
                        fabric.clear_rules()
                        io.stop(STALL_TIMEOUT)
                        rnd.io_errors = len(io.errors)
                    console.print(
                        f"stall {dname} round {r + 1}: failed after {rnd.failed_s:.1f} s, "
                        f"stall {rnd.stall_s:.1f} s, back after {rnd.back_s:.1f} s"
                    )
            except (BenchError, DmpathError, OSError, AssertionError) as exc:
                result.error = str(exc)
                entry["error"] = f"{dname}: {exc}"
            finally:
                fabric.clear_rules()
                if daemon is not None:
                    with contextlib.suppress(OSError, DmpathError):
                        daemon.stop()
                        daemon.remove_maps()
                    with contextlib.suppress(OSError):
                        src = daemon.log_file()
                        if src and os.path.exists(src):
                            shutil.copyfile(src, os.path.join(outdir, f"stall-{dname}.log"))
                entry["daemons"][dname] = result.to_dict()
            if entry["error"]:
                break
    except (DmpathError, OSError) as exc:
        entry["error"] = entry["error"] or f"fabric: {exc}"
    finally:
        fabric.teardown()
    d = entry["daemons"]
    if "dmpathd" in d and "multipathd" in d:
        entry["ratios"] = stall_ratios(d["dmpathd"], d["multipathd"])
    console.print()
    console.print(stall_table(entry))
    return entry
