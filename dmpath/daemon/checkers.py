"""Path checkers: ``tur`` (SG_IO TEST UNIT READY), ``directio`` (one O_DIRECT read), ``none``.

A checker keeps its descriptor open between checks (opening a device is the costly part,
and an offline device refuses the open anyway with ENXIO, which reads as "down"). Checks
are blocking calls: the daemon runs them in worker threads with a timeout.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading
from typing import Protocol

from dmpath.kernel import sgio
from dmpath.kernel.scsi import PathState
from dmpath.kernel.sysfs import TransportState
from dmpath.model import Check

CHECKERS = ("tur", "directio", "none")

_TO_CHECK = {
    PathState.UP: Check.UP,
    PathState.DOWN: Check.DOWN,
    PathState.GHOST: Check.GHOST,
    PathState.PENDING: Check.PENDING,
    PathState.UNSUPPORTED: Check.UNSUPPORTED,
}

#: errors of an open that say the daemon is short of something, not that the path is down
_DAEMON_SHORT_OF = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})

#: O_DIRECT needs an aligned buffer; one logical block up to 4 KiB covers every disk
_DIRECTIO_SIZE = 4096


class Checker(Protocol):
    """What the daemon needs of a path's checker (PathChecker, or a simulated one)."""

    def check(self) -> tuple[Check, str]: ...
    def close(self) -> None: ...


class PathChecker:
    """One path's checker with its open descriptor; ``check`` is thread-safe per instance."""

    def __init__(
        self,
        devnode: str,
        kind: str = "tur",
        timeout: float = 5.0,
        transport: TransportState | None = None,
    ) -> None:
        if kind not in CHECKERS:
            raise ValueError(f"unknown checker {kind!r}")
        self.devnode = devnode
        self.kind = kind
        self.timeout = timeout
        #: the iSCSI session's state, read before each check: a session that lost its
        #: connection is down now, while a command sent to its disk would only hang
        self.transport = transport
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _open(self) -> int:
        if self._fd is None:
            flags = os.O_RDONLY | os.O_NONBLOCK
            if self.kind == "directio":
                flags = os.O_RDONLY | os.O_DIRECT
            self._fd = os.open(self.devnode, flags | os.O_CLOEXEC)
        return self._fd

    def close(self) -> None:
        with self._lock:
            self._drop()

    def check(self) -> tuple[Check, str]:
        with self._lock:
            if self.kind == "none":
                return Check.UP, "no checker"
            if self.transport is not None:
                state = self.transport.read()
                if state in self.transport.down:
                    return Check.DOWN, f"{self.transport.owner} {state}: connection lost"
            try:
                fd = self._open()
            except OSError as exc:
                why = os.strerror(exc.errno or 0)
                if exc.errno in _DAEMON_SHORT_OF:
                    # the daemon is out of descriptors or memory, not the path out of
                    # service: failing it would take a healthy path out of its map
                    return Check.PENDING, f"dmpathd cannot open {self.devnode}: {why}"
                return Check.DOWN, f"cannot open {self.devnode}: {why}"
            if self.kind == "tur":
                out = sgio.test_unit_ready(fd, timeout_s=self.timeout)
                state = _TO_CHECK[out.state]
                if state == Check.DOWN:
                    # an offline device may come back as a new open; drop the old descriptor
                    self._drop()
                return state, out.reason
            return self._directio(fd)

    def _drop(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _directio(self, fd: int) -> tuple[Check, str]:
        buf = mmap.mmap(-1, _DIRECTIO_SIZE)
        try:
            n = os.preadv(fd, [buf], 0)
        except OSError as exc:
            self._drop()
            if exc.errno == errno.EINVAL:
                return Check.UNSUPPORTED, "O_DIRECT read refused (EINVAL)"
            return Check.DOWN, f"read failed: {os.strerror(exc.errno or 0)}"
        finally:
            buf.close()
        return (Check.UP, "read ok") if n > 0 else (Check.DOWN, "read returned no data")
