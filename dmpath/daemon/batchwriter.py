"""A queue that any thread fills and one writer thread empties, a batch at a time.

What the log (``dmpath.daemon.logwriter``) and the history file
(``dmpath.daemon.history``) share: the event loop must never wait for a disk or a stream,
so it only queues; the writer takes whatever has queued up and writes it in one go, so a
burst of a thousand items is a few writes, not a thousand.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchWriter(Generic[T]):
    """Items ``put`` by any thread go, in order, to ``write`` in a thread of its own."""

    def __init__(self, write: Callable[[list[T]], None], name: str, bound: int = 0) -> None:
        self._write = write
        #: at most this many items wait (0: no bound); a writer stuck on its disk then
        #: costs the oldest ones, never the daemon's memory
        self.bound = bound
        self._queue: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._queued = 0  # items ever queued
        self._done = 0  # items ever written, dropped or given up on
        self.dropped = 0  # items dropped from a full queue
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def put(self, item: T) -> None:
        with self._cond:
            if self._closing:
                return
            if self.bound and len(self._queue) >= self.bound:
                self._queue.popleft()
                self.dropped += 1
                self._done += 1
            self._queue.append(item)
            self._queued += 1
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                batch = list(self._queue)
                self._queue.clear()
            if not batch:
                return  # closing, and nothing left
            try:
                self._write(batch)
            finally:
                with self._cond:
                    self._done += len(batch)
                    self._cond.notify_all()

    def flush(self, timeout: float) -> None:
        """Return once every item queued before this call is written (or ``timeout``)."""
        if threading.current_thread() is self._thread:
            return
        with self._cond:
            target = self._queued
            self._cond.wait_for(
                lambda: self._done >= target or not self._thread.is_alive(), timeout=timeout
            )

    def close(self, timeout: float) -> bool:
        """Write what is queued, then stop the writer; False if it is still stuck in a
        write after ``timeout``."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()
