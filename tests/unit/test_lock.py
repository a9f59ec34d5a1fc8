"""The assembly lock: one assembler (daemon or one-shot) at a time, nothing stale after death."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from dmpath.daemon.lock import AssemblyLock, LockBusy, lock_path


def test_lock_lives_next_to_the_control_socket() -> None:
    assert lock_path("/run/dmpath/dmpathd.sock") == "/run/dmpath/assemble.lock"


def test_a_second_holder_is_refused_until_the_first_releases(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "sub" / "assemble.lock")
    first = AssemblyLock(path)
    first.acquire()
    assert pathlib.Path(path).read_text() == f"{os.getpid()}\n"
    second = AssemblyLock(path)
    with pytest.raises(LockBusy, match="another dmpathd holds"):
        second.acquire(timeout=0.2, step=0.05)
    first.release()
    second.acquire()
    second.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "assemble.lock")
    code = (
        "import sys, time; from dmpath.daemon.lock import AssemblyLock; "
        f"AssemblyLock({path!r}).acquire(); print('held', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy):
            AssemblyLock(path).acquire()
    finally:
        child.kill()
        child.wait()
    lock = AssemblyLock(path)
    lock.acquire()
    lock.release()
