"""``python -m dmpath.lab faults``: the lab's fault parts in one boot, their figures
printed and appended to docs/faults/results.json (rendered in results.md).

A part is a module with ``run(quick: bool) -> dict[str, float]`` that runs inside the
guest as root and returns its figures (cycles, I/O operations, errors, ...). ``PARTS``
names them, in the order they run: adding a part is one entry there. Like the bench,
this reports and does not judge: the exit status is 0 when every part ran, whatever its
figures; 1 when a part raised (its error is recorded with the others' figures).

The host side boots the lab and runs this module in the guest (``--guest``), which runs
each chosen part and writes ``faults.json`` into the lab's output directory; the host
reads it back, prints it and appends it to the results file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dmpath.lab.bench import append_and_render, git_state, write_json

#: part name -> module (``run(quick)`` in it), in the order the parts run
PARTS: dict[str, str] = {
    "soak": "dmpath.lab.soak",
    "matrix": "dmpath.lab.faultmatrix",
    "fuzz": "dmpath.lab.fuzz",
}

RESULTS_JSON = os.path.join("docs", "faults", "results.json")
RESULT_FILE = "faults.json"
#: a run's time limit (the guest's whole run: every chosen part)
QUICK_TIMEOUT_S = 1800.0
FULL_TIMEOUT_S = 4 * 3600.0

#: the labels of the figures the parts report, in the order they are shown; a figure
#: not named here is shown after these under its own name
FIGURE_LABELS: dict[str, str] = {
    "cycles": "cycles",
    "io_operations": "I/O operations",
    "io_errors": "I/O errors",
    "verify_failures": "verify failures",
    "restarts": "restarts",
    "maps_adopted": "maps adopted",
    "model_mismatches": "model mismatches",
    "faults_injected": "faults injected",
    "requests_fuzzed": "requests fuzzed",
    "outcomes": "outcomes",
    "seconds": "seconds",
}


class PartsError(ValueError):
    pass


# ---------------------------------------------------------------------- pure parts


def parse_only(values: Sequence[str] | None, parts: Mapping[str, str] = PARTS) -> list[str]:
    """``--only`` (repeatable, or comma lists) as part names in ``parts``' order; every
    part when not given."""
    if not values:
        return list(parts)
    wanted = {v.strip() for value in values for v in value.split(",") if v.strip()}
    unknown = sorted(wanted - set(parts))
    if unknown:
        raise PartsError(
            f"unknown part {', '.join(unknown)}: the parts are {', '.join(parts)}"
        )
    return [name for name in parts if name in wanted]


def figure_columns(figure_sets: Sequence[Mapping[str, float]]) -> list[str]:
    """Every figure named in ``figure_sets``: the known ones in their order, then others."""
    seen = {k for figs in figure_sets for k in figs}
    known = [k for k in FIGURE_LABELS if k in seen]
    return known + sorted(seen - set(FIGURE_LABELS))


def format_figure(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def records_of(
    guest_doc: Mapping[str, Any], *, commit: str, dirty: bool, date: str
) -> list[dict[str, Any]]:
    """The results-file records of one run: one per part."""
    return [
        {
            "date": date,
            "git_commit": commit,
            "git_dirty": dirty,
            "kernel": guest_doc.get("kernel", ""),
            "form": "quick" if guest_doc.get("quick") else "full",
            "part": part["part"],
            "figures": {k: float(v) for k, v in (part.get("figures") or {}).items()},
            "error": part.get("error", ""),
        }
        for part in guest_doc.get("parts") or []
    ]


def describe(record: Mapping[str, Any]) -> str:
    """One part's figures as a line for the terminal."""
    figs = record["figures"]
    shown = ", ".join(
        f"{FIGURE_LABELS.get(k, k)} {format_figure(figs[k])}" for k in figure_columns([figs])
    )
    head = f"{record['part']} ({record['form']}, {record['kernel']})"
    if record["error"]:
        return f"{head}: did not finish: {record['error']}" + (f"; {shown}" if shown else "")
    return f"{head}: {shown}"


def render_results_md(records: Sequence[Mapping[str, Any]]) -> str:
    """results.md: a table per part, newest row last, a column per figure it reported."""
    out = [
        "# dmpath fault results",
        "",
        "Rendered from `results.json` by `python -m dmpath.lab faults` (do not edit by hand).",
        "Each part runs in the lab VM (Debian's kernel under qemu TCG emulation); `quick` is",
        "the form CI's lab test runs, `full` the long one. Figures are counts; `seconds` is",
        "the part's wall time in the guest. See dmpath/lab/faults.py for the parts.",
    ]
    parts: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        parts.setdefault(str(r["part"]), []).append(r)
    for part, rows in parts.items():
        cols = figure_columns([r["figures"] for r in rows])
        head = ["date", "commit", "kernel", "form", *(FIGURE_LABELS.get(c, c) for c in cols)]
        head.append("error")
        out += ["", f"## {part}", "", "| " + " | ".join(head) + " |"]
        out.append("|" + " --- |" * len(head))
        for r in rows:
            commit = str(r["git_commit"]) + ("+dirty" if r.get("git_dirty") else "")
            cells = [str(r["date"]), commit, str(r["kernel"]), str(r["form"])]
            cells += [format_figure(r["figures"].get(c)) for c in cols]
            cells.append(str(r["error"]).replace("|", "/"))
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- guest side


def run_parts(
    names: Sequence[str], quick: bool, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Each part's ``run(quick)``: its figures, or its error in one line."""
    results = []
    for name in names:
        say(f"part {name} ({'quick' if quick else 'full'})...")
        t0 = time.monotonic()
        entry: dict[str, Any] = {"part": name, "figures": {}, "error": ""}
        try:
            run: Callable[[bool], dict[str, float]] = importlib.import_module(PARTS[name]).run
            entry["figures"] = dict(run(quick))
        except Exception as exc:  # noqa: BLE001 - one part's failure is recorded, not fatal
            first = (str(exc).strip().splitlines() or [""])[0]
            entry["error"] = f"{type(exc).__name__}: {first}"[:300]
        entry["seconds"] = time.monotonic() - t0
        results.append(entry)
    return results


def guest_main(args: argparse.Namespace) -> int:
    def say(m: str) -> None:
        print(f"faults: {m}", file=sys.stderr, flush=True)

    parts = run_parts(parse_only(args.only), args.quick, say)
    doc = {"kernel": os.uname().release, "quick": args.quick, "parts": parts}
    outdir = os.environ.get("DMPATH_LAB_OUTDIR") or "."
    write_json(os.path.join(outdir, RESULT_FILE), doc)
    return 1 if any(p["error"] for p in parts) else 0


# ---------------------------------------------------------------------- host side


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--quick", action="store_true", help="the short form (as in CI)")
    ap.add_argument(
        "--only",
        action="append",
        metavar="PARTS",
        help=f"run only these parts, comma-separated (of: {', '.join(PARTS)})",
    )
    ap.add_argument(
        "--results",
        metavar="FILE",
        help=f"results file to append to (default {RESULTS_JSON}; FILE.md beside it)",
    )


def append_results(json_path: str, records: Sequence[dict[str, Any]]) -> list[str]:
    """Append ``records`` to the results JSON and re-render the Markdown beside it."""
    md_path = os.path.splitext(json_path)[0] + ".md"
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    return append_and_render(json_path, md_path, records, render_results_md)


def host_main(args: argparse.Namespace) -> int:
    """On the host: boot the lab once, run the parts in it, print and record the figures."""
    from dmpath.lab.vm import run_in_lab

    def progress(m: str) -> None:
        print("lab:", m, file=sys.stderr, flush=True)

    try:
        names = parse_only(args.only)
    except PartsError as exc:
        print(f"lab: faults: {exc}", file=sys.stderr)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    results = args.results or os.path.join(root, RESULTS_JSON)
    argv = [sys.executable, "-m", "dmpath.lab.faults", "--guest", "--only", ",".join(names)]
    res = run_in_lab(
        argv + (["--quick"] if args.quick else []),
        echo=print,
        progress=progress,
        timeout=QUICK_TIMEOUT_S if args.quick else FULL_TIMEOUT_S,
    )
    path = os.path.join(res.outdir, RESULT_FILE)
    if not os.path.exists(path):
        print(f"lab: faults: the guest wrote no {RESULT_FILE} (exit {res.returncode})",
              file=sys.stderr)
        return res.returncode or 1
    with open(path) as fh:
        guest_doc = json.load(fh)
    commit, dirty = git_state(root)
    date = datetime.now(UTC).isoformat(timespec="seconds")
    records = records_of(guest_doc, commit=commit, dirty=dirty, date=date)
    for r in records:
        print(describe(r))
    for written in append_results(results, records):
        progress(f"recorded: {written}")
    return res.returncode


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dmpath.lab.faults", description=__doc__)
    add_arguments(ap)
    ap.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        return guest_main(args) if args.guest else host_main(args)
    except PartsError as exc:
        print(f"faults: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
