"""The archives of the guest's Python trees (dmpath.lab.guestpython): host side."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from dmpath.lab import guestpython


def _members(outdir: Path, name: str) -> set[str]:
    with tarfile.open(outdir / guestpython.ARCHIVE_DIR / f"{name}.tar") as tar:
        return set(tar.getnames())


def test_pack_keeps_what_guest_processes_import_and_leaves_the_rest(tmp_path: Path) -> None:
    guestpython.pack(str(tmp_path))
    stdlib = _members(tmp_path, "stdlib")
    assert {"./os.py", "./asyncio/base_events.py"} <= stdlib
    assert not any(m.startswith(("./test/", "./site-packages/", "./idlelib/")) for m in stdlib)
    assert not any(m.endswith((".opt-1.pyc", ".opt-2.pyc")) for m in stdlib)
    packages = _members(tmp_path, "packages")
    assert {"./pyudev/__init__.py", "./pyroute2/__init__.py", "./_pytest/main.py"} <= packages
    assert not any(m.startswith(("./mypy/", "./pip/")) for m in packages)
    project = _members(tmp_path, "project")
    assert {"./daemon/engine.py", "./lab/guestpython.py"} <= project


def test_the_bytecode_keeps_the_source_time_it_was_checked_against(tmp_path: Path) -> None:
    # a .pyc is used only while its source's mtime matches the one recorded in it
    guestpython.pack(str(tmp_path))
    src = os.path.join(os.path.dirname(guestpython.__file__), "guestpython.py")
    with tarfile.open(tmp_path / guestpython.ARCHIVE_DIR / "project.tar") as tar:
        assert tar.getmember("./lab/guestpython.py").mtime == int(os.stat(src).st_mtime)


def test_discard_removes_the_archives_and_keeps_the_results(tmp_path: Path) -> None:
    guestpython.pack(str(tmp_path))
    (tmp_path / "results.jsonl").write_text("{}\n")
    guestpython.discard(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["results.jsonl"]


def test_a_guest_without_archives_mounts_nothing(tmp_path: Path) -> None:
    assert guestpython.unpack(str(tmp_path)) == []
