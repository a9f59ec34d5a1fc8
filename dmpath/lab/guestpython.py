"""The guest's Python trees in its RAM.

The guest sees the host's root over 9p without a cache: every file a Python process
opens or stats is a round trip through the emulator. Measured in the lab (6.1, TCG):
importing the daemon's engine took 14 s, pyroute2 19 s, ``python -c pass`` 1.4 s; with
the standard library, the virtualenv's packages and the project's package in a tmpfs,
5.5 s, 6.5 s and 0.8 s. Every daemon start, every ``mpathctl`` call and every helper
the tests run pays that.

So the host packs those three trees into archives in the run's output directory (one
file each: a whole archive crosses 9p in one stream, where copying the trees file by
file took 94 s), and the guest unpacks them into a tmpfs and bind-mounts each over its
own path before the tests start. Paths do not change, so virtualenv scripts, ``.pth``
files and bytecode (whose source times the archive keeps) work as before. Left out:
what no guest process imports (the standard library's tests, IDLE, Tk, the type
checker, pip) and the optimised bytecode no run here uses.
"""

from __future__ import annotations

import contextlib
import os
import sysconfig
from dataclasses import dataclass

import dmpath
from dmpath.runner import run

#: where the guest keeps the unpacked trees (its /run is its own)
GUEST_ROOT = "/run/dmpath-lab-python"
#: a subdirectory of the run's output directory
ARCHIVE_DIR = "guest-python"
_PYC_VARIANTS = ("*.opt-1.pyc", "*.opt-2.pyc")
#: seconds for one archive to be packed (host) or unpacked (guest; seen: 6.4 s for
#: the largest)
UNPACK_TIMEOUT = 300.0


@dataclass(frozen=True)
class Tree:
    name: str  # the archive's and the tmpfs directory's name
    path: str  # the same on the host and in the guest
    exclude: tuple[str, ...] = ()
    #: directories left out whose path must still exist (an empty one is made)
    keep_empty: tuple[str, ...] = ()


def trees() -> list[Tree]:
    """The standard library, the virtualenv's packages, the project's package."""
    paths = sysconfig.get_paths()
    return [
        Tree(
            "stdlib",
            paths["stdlib"],
            ("./test", "./site-packages", "./config-*", "./idlelib", "./tkinter",
             "./turtledemo", "./ensurepip", *_PYC_VARIANTS),
            ("site-packages",),
        ),
        Tree(
            "packages",
            paths["purelib"],
            ("./mypy", "./mypyc", "./*__mypyc*", "./pip", "./ruff", *_PYC_VARIANTS),
        ),
        Tree("project", os.path.dirname(os.path.abspath(dmpath.__file__))),
    ]


def pack(outdir: str) -> None:
    """Host: one archive per tree under ``outdir`` (after the project's bytecode is
    written, so that the guest finds it)."""
    dest = os.path.join(outdir, ARCHIVE_DIR)
    os.makedirs(dest, exist_ok=True)
    for tree in trees():
        if not os.path.isdir(tree.path):
            continue
        excludes = [f"--exclude={pattern}" for pattern in tree.exclude]
        archive = os.path.join(dest, f"{tree.name}.tar")
        run("tar", ["-C", tree.path, "-cf", archive, *excludes, "."], timeout=UNPACK_TIMEOUT)


def discard(outdir: str) -> None:
    """Host: the archives, once the guest is gone (the results stay)."""
    dest = os.path.join(outdir, ARCHIVE_DIR)
    for tree in trees():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(dest, f"{tree.name}.tar"))
    with contextlib.suppress(OSError):
        os.rmdir(dest)


def unpack(outdir: str) -> list[str]:
    """Guest: each archive into the tmpfs, bind-mounted over its tree. Returns the
    trees now served from RAM (none without archives); a failing command raises
    ``CommandError``, and the trees not yet mounted stay on 9p (slower, not wrong)."""
    src = os.path.join(outdir, ARCHIVE_DIR)
    if not os.path.isdir(src):
        return []
    os.makedirs(GUEST_ROOT, exist_ok=True)
    run("mount", ["-t", "tmpfs", "-o", "mode=0755", "tmpfs", GUEST_ROOT])
    served: list[str] = []
    for tree in trees():
        archive = os.path.join(src, f"{tree.name}.tar")
        if not os.path.exists(archive):
            continue
        copy = os.path.join(GUEST_ROOT, tree.name)
        os.makedirs(copy)
        run("tar", ["-C", copy, "-xf", archive], timeout=UNPACK_TIMEOUT)
        for name in tree.keep_empty:
            os.makedirs(os.path.join(copy, name), exist_ok=True)
        run("mount", ["--bind", copy, tree.path])
        served.append(tree.path)
    return served
