"""One assembler at a time: the lock a running dmpathd (or ``dmpathd --once``) holds.

Two assemblers working at once would both see a LUN without a map and both create one
(udev runs ``dmpathd --once`` for every path of a LUN, in parallel). The lock is a
``flock`` on a file next to the control socket, so a daemon under test with a private
socket directory has a private lock too. ``flock`` locks die with their process: a
``kill -9`` leaves nothing stale behind.
"""

from __future__ import annotations

import fcntl
import os
import time

from dmpath.errors import DmpathError

LOCK_NAME = "assemble.lock"


class LockBusy(DmpathError):
    """Another dmpathd (daemon or one-shot) holds the lock."""

    exit_code = 12


def lock_path(socket_path: str) -> str:
    return os.path.join(os.path.dirname(socket_path) or ".", LOCK_NAME)


class AssemblyLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, timeout: float = 0.0, step: float = 0.1) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; LockBusy when it stays taken."""
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockBusy(
                        f"another dmpathd holds {self.path} (a running daemon, or a "
                        "one-shot assembly started by udev)"
                    ) from None
                time.sleep(step)
        # the holder's pid, for whoever wonders who holds it
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None
