"""``python -m dmpath.install``: put the systemd units, udev rule, man pages, completion,
an example config and the Prometheus rules and Grafana dashboard where the system looks
for them, calling the console scripts where they really are.

The unit and the rule in the source tree call ``/usr/bin/dmpathd`` and
``/usr/bin/dmpath-udev``; ``pip install`` puts console scripts in ``/usr/local/bin`` or a
virtualenv's ``bin``. This installer rewrites those two paths to the directory of the
scripts that belong to the running interpreter (or ``--bindir``), refuses when they are
not there, never overwrites an existing ``/etc/dmpath/dmpath.toml``, and changes nothing
else: enabling the units is left to the administrator (it prints the commands).
With ``--compat`` it also links ``multipath`` and ``multipathd`` in the bindir to dmpath's
compatible commands (dmpath-compat(8)), and refuses while a real multipath-tools program
of that name is installed: the two would answer the same commands differently.
It reads the files from the source tree of the ``dmpath`` it runs: run it in the top
directory of a clone (``python -m`` imports the package from there).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dmpath.errors import DmpathError

#: the console-script paths the source files use, as shipped
SHIPPED_BINDIR = "/usr/bin"
PROGRAMS = ("dmpathd", "dmpath-udev")
#: ``--compat``: multipath-tools' program names and dmpath's commands behind them
COMPAT = {"multipath": "dmpath-multipath", "multipathd": "dmpath-multipathd"}
#: where a distribution's multipath-tools puts its programs
SYSTEM_BINDIRS = ("/sbin", "/usr/sbin", "/bin", "/usr/bin")


@dataclass(frozen=True)
class Step:
    source: str  # relative to the source tree
    dest: str  # absolute, below the root
    text: str
    keep_existing: bool = False  # the administrator's file: never overwritten


def rewrite(text: str, bindir: str) -> str:
    """``text`` with the shipped console-script paths pointing into ``bindir``."""
    for prog in PROGRAMS:
        text = text.replace(f"{SHIPPED_BINDIR}/{prog} ", f"{bindir}/{prog} ")
        text = text.replace(f"{SHIPPED_BINDIR}/{prog}\n", f"{bindir}/{prog}\n")
    return text


#: (source in the tree, destination, rewrite paths?, keep an existing file?)
LAYOUT = (
    ("systemd/dmpathd.service", "etc/systemd/system/dmpathd.service", True, False),
    ("systemd/dmpathd.socket", "etc/systemd/system/dmpathd.socket", True, False),
    ("udev-rules/56-dmpath-maps.rules", "etc/udev/rules.d/56-dmpath-maps.rules", True, False),
    ("udev-rules/62-dmpath.rules", "etc/udev/rules.d/62-dmpath.rules", True, False),
    ("man/dmpathd.8", "usr/local/share/man/man8/dmpathd.8", False, False),
    ("man/mpathctl.8", "usr/local/share/man/man8/mpathctl.8", False, False),
    ("man/dmpath.toml.5", "usr/local/share/man/man5/dmpath.toml.5", False, False),
    ("man/dmpath-compat.8", "usr/local/share/man/man8/dmpath-compat.8", False, False),
    (
        "completions/mpathctl.bash",
        "usr/local/share/bash-completion/completions/mpathctl",
        False,
        False,
    ),
    ("etc/dmpath.toml.example", "etc/dmpath/dmpath.toml", False, True),
    # for Prometheus's rule_files and Grafana's dashboard import (dmpathd(8), METRICS)
    ("monitoring/dmpath.rules.yml", "usr/local/share/dmpath/dmpath.rules.yml", False, False),
    (
        "monitoring/dmpath-dashboard.json",
        "usr/local/share/dmpath/dmpath-dashboard.json",
        False,
        False,
    ),
)


def source_tree() -> Path:
    return Path(__file__).resolve().parents[1]


def plan(src: Path, root: str, bindir: str) -> list[Step]:
    """What goes where (pure, apart from reading the sources)."""
    steps = []
    for rel, dest, paths, keep in LAYOUT:
        try:
            text = (src / rel).read_text()
        except OSError as exc:
            raise DmpathError(
                f"{src / rel}: cannot read it ({exc.strerror or exc}); run the installer "
                "in the top directory of a clone of dmpath"
            ) from exc
        steps.append(
            Step(rel, os.path.join(root, dest), rewrite(text, bindir) if paths else text, keep)
        )
    return steps


def _write_atomically(dest: str, text: str) -> None:
    os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".dmpath-install.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def apply(steps: list[Step], dry_run: bool = False) -> list[str]:
    """Carry out ``steps``; returns one line per file saying what happened."""
    out = []
    for s in steps:
        exists = os.path.exists(s.dest)
        if exists and s.keep_existing:
            out.append(f"kept      {s.dest} (yours; the example is {s.source})")
            continue
        if exists and Path(s.dest).read_text() == s.text:
            out.append(f"unchanged {s.dest}")
            continue
        if dry_run:
            out.append(f"would {'replace' if exists else 'install'} {s.dest}")
            continue
        _write_atomically(s.dest, s.text)
        out.append(f"{'replaced ' if exists else 'installed'} {s.dest}")
    return out


def _below(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _ours(link: str, command: str) -> bool:
    return os.path.islink(link) and os.path.basename(os.readlink(link)) == command


def compat_conflicts(root: str, bindir: str) -> list[str]:
    """Programs named multipath or multipathd that are not our links: multipath-tools'."""
    found = []
    for d in dict.fromkeys((bindir, *SYSTEM_BINDIRS)):
        for name, command in COMPAT.items():
            p = _below(root, os.path.join(d, name))
            if os.path.lexists(p) and not _ours(p, command):
                found.append(p)
    return found


def refuse_over_multipath_tools(root: str, bindir: str) -> None:
    """DmpathError while multipath-tools' programs are installed."""
    conflicts = compat_conflicts(root, bindir)
    if conflicts:
        raise DmpathError(
            f"multipath-tools is installed ({', '.join(conflicts)}): not linking dmpath's "
            "multipath and multipathd over it (remove multipath-tools first)"
        )


def apply_compat(root: str, bindir: str, dry_run: bool = False) -> list[str]:
    """Link ``multipath``/``multipathd`` in ``bindir`` to dmpath's commands; refused
    (nothing changed) while multipath-tools' programs are installed."""
    refuse_over_multipath_tools(root, bindir)
    out = []
    for name, command in COMPAT.items():
        link, target = _below(root, os.path.join(bindir, name)), os.path.join(bindir, command)
        if os.path.islink(link) and os.readlink(link) == target:
            out.append(f"unchanged {link}")
            continue
        if dry_run:
            out.append(f"would link {link} -> {target}")
            continue
        os.makedirs(os.path.dirname(link), mode=0o755, exist_ok=True)
        tmp = link + ".dmpath-install"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)
        out.append(f"linked    {link} -> {target}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dmpath.install",
        description="Install dmpath's systemd units, udev rule, man pages, example config, "
        "alerting rules and dashboard.",
    )
    ap.add_argument("--root", default="/", help="install below this directory (default /)")
    ap.add_argument(
        "--bindir",
        default=sysconfig.get_path("scripts"),
        help="where dmpathd and dmpath-udev are (default: this Python's scripts directory)",
    )
    ap.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    ap.add_argument(
        "--compat",
        action="store_true",
        help="also link multipath and multipathd in the bindir to dmpath-multipath and "
        "dmpath-multipathd (refused while multipath-tools is installed)",
    )
    args = ap.parse_args(argv)
    try:
        bindir = os.path.abspath(args.bindir)
        wanted = PROGRAMS + (tuple(COMPAT.values()) if args.compat else ())
        missing = [p for p in wanted if not os.access(os.path.join(bindir, p), os.X_OK)]
        if missing:
            raise DmpathError(
                f"{', '.join(missing)} not found in {bindir}: install the package first "
                "(pip install .), or name the directory with --bindir"
            )
        if args.compat:  # checked first: a refusal installs nothing at all
            refuse_over_multipath_tools(args.root, bindir)
        lines = apply(plan(source_tree(), args.root, bindir), args.dry_run)
        if args.compat:
            lines += apply_compat(args.root, bindir, args.dry_run)
        for line in lines:
            print(line)
    except DmpathError as exc:
        print(f"dmpath.install: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"dmpath.install: error: {exc}", file=sys.stderr)
        return 1
    if not args.dry_run and args.root == "/":
        print(
            "next: systemctl daemon-reload && udevadm control --reload && "
            "systemctl enable --now dmpathd.socket dmpathd.service"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
