"""``python -m dmpath.install``: put the systemd units, udev rule, man pages, completion
and an example config where the system looks for them, calling the console scripts where
they really are.

The unit and the rule in the source tree call ``/usr/bin/dmpathd`` and
``/usr/bin/dmpath-udev``; ``pip install`` puts console scripts in ``/usr/local/bin`` or a
virtualenv's ``bin``. This installer rewrites those two paths to the directory of the
scripts that belong to the running interpreter (or ``--bindir``), refuses when they are
not there, never overwrites an existing ``/etc/dmpath/dmpath.toml``, and changes nothing
else: enabling the units is left to the administrator (it prints the commands).
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
    ("udev-rules/56-dmpath-maps.rules", "etc/udev/rules.d/56-dmpath-maps.rules", False, False),
    ("udev-rules/62-dmpath.rules", "etc/udev/rules.d/62-dmpath.rules", True, False),
    ("man/dmpathd.8", "usr/local/share/man/man8/dmpathd.8", False, False),
    ("man/mpathctl.8", "usr/local/share/man/man8/mpathctl.8", False, False),
    ("man/dmpath.toml.5", "usr/local/share/man/man5/dmpath.toml.5", False, False),
    (
        "completions/mpathctl.bash",
        "usr/local/share/bash-completion/completions/mpathctl",
        False,
        False,
    ),
    ("etc/dmpath.toml.example", "etc/dmpath/dmpath.toml", False, True),
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dmpath.install",
        description="Install dmpath's systemd units, udev rule, man pages and example config.",
    )
    ap.add_argument("--root", default="/", help="install below this directory (default /)")
    ap.add_argument(
        "--bindir",
        default=sysconfig.get_path("scripts"),
        help="where dmpathd and dmpath-udev are (default: this Python's scripts directory)",
    )
    ap.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    args = ap.parse_args(argv)
    try:
        bindir = os.path.abspath(args.bindir)
        missing = [p for p in PROGRAMS if not os.access(os.path.join(bindir, p), os.X_OK)]
        if missing:
            raise DmpathError(
                f"{', '.join(missing)} not found in {bindir}: install the package first "
                "(pip install .), or name the directory with --bindir"
            )
        for line in apply(plan(source_tree(), args.root, bindir), args.dry_run):
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
