"""The history file (``history_file``), appended to by a thread of its own.

The events of a run outlive it: the daemon loads the file at start, so ``mpathctl show
events`` lists what happened before a restart, and appends every event of its own. A
coldplug of a thousand paths or a fabric failure makes thousands of events within
seconds, so the event loop only queues an event (as ``dmpath.daemon.logwriter`` does for
the log); a writer thread encodes whatever has queued up and hands it to the kernel with
one ``write``. Written means in the page cache: a ``kill -9`` loses only the events still
queued (those of the last moment), a power loss what the kernel had not yet written back.
Nothing is fsynced per event: that would make the writer, not the daemon, the measure of
how fast a fabric of paths is failed.

The file is bounded (``dmpath.policy.history``): once it holds ``compact_at(bound)`` lines
the writer rewrites it to the newest ``bound`` events (temporary file, fsync, rename), so
a reader sees the old file or the new one. Should the file's disk hang (a history on a
multipath map whose paths are all gone), only the writer waits: the queue keeps the
newest ``bound`` events and drops older ones.

A file that cannot be read or written never stops the daemon: one warning, and the
history is kept in memory only from then on.
"""

from __future__ import annotations

import logging
import os

from dmpath.daemon.batchwriter import BatchWriter
from dmpath.errors import DmpathError
from dmpath.model import Event
from dmpath.policy import files
from dmpath.policy.history import compact_at, encode_events, parse_history

log = logging.getLogger("dmpath.history")

#: how long ``close`` waits for a writer stuck on its disk when the daemon stops
CLOSE_TIMEOUT = 5.0


class HistoryFile:
    """Load once (``load``), then ``append`` from the event loop; never blocks it."""

    def __init__(self, path: str, bound: int) -> None:
        self.path = path
        self.bound = bound
        self._fd = -1
        self._lines = 0  # lines in the file now
        self._writer: BatchWriter[Event] | None = None

    @property
    def open(self) -> bool:
        """True while events go to the file."""
        return self._writer is not None and self._fd >= 0

    @property
    def dropped(self) -> int:
        """Events dropped from a full queue (the writer stuck on its disk)."""
        return self._writer.dropped if self._writer is not None else 0

    def load(self) -> list[Event]:
        """The file's events (the newest ``bound``, oldest first); from now on appended
        events go to it. Blocking: run it off the event loop."""
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self._give_up("open", exc)
            return []
        try:
            parsed = parse_history(_read_all(fd), self.bound)
            if parsed.skipped:
                # a line cut short by a crash is expected, not a fault: say it, quietly
                log.info("%s: %d lines that are not events skipped", self.path, parsed.skipped)
            # what follows the last newline would spoil the next line appended
            os.ftruncate(fd, parsed.good_length)
        except OSError as exc:
            os.close(fd)
            self._give_up("read", exc)
            return []
        self._fd, self._lines = fd, parsed.lines
        if self._lines >= compact_at(self.bound) and not self._compact():
            return parsed.events
        self._writer = BatchWriter(self._write_batch, "history-writer", bound=self.bound)
        return parsed.events

    def append(self, ev: Event) -> None:
        """Queue ``ev`` for the writer (nothing once the file is not open)."""
        if self._writer is not None and self._fd >= 0:
            self._writer.put(ev)

    def flush(self) -> None:
        """Return once every event queued before this call is written (or dropped)."""
        if self._writer is not None:
            self._writer.flush(CLOSE_TIMEOUT)

    def close(self) -> None:
        """Write what is queued, then stop the writer and close the file."""
        if self._writer is not None and not self._writer.close(CLOSE_TIMEOUT):
            return  # stuck on its disk: the descriptor goes with the process
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write_batch(self, batch: list[Event]) -> None:
        if self._fd >= 0:
            self._write(encode_events(batch), len(batch))

    def _write(self, data: bytes, n: int) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            self._give_up("write", exc)
            return
        self._lines += n
        if self._lines >= compact_at(self.bound):
            self._compact()

    def _compact(self) -> bool:
        """Rewrite the file to its newest ``bound`` events; False if that failed (the
        history is then in memory only)."""
        try:
            kept = parse_history(_read_all(self._fd), self.bound).events
            files.write_atomic(self.path, encode_events(kept).decode("ascii"))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except (OSError, DmpathError) as exc:
            self._give_up("rewrite", exc)
            return False
        os.close(self._fd)
        self._fd, self._lines = fd, len(kept)
        return True

    def _give_up(self, action: str, exc: Exception) -> None:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning("history file %s: cannot %s (%s): history kept in memory only",
                    self.path, action, why)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _read_all(fd: int, at: int = 0) -> bytes:
    chunks = []
    while chunk := os.pread(fd, 1 << 20, at):
        chunks.append(chunk)
        at += len(chunk)
    return b"".join(chunks)
