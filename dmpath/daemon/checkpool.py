"""Threads for blocking path checks, where a hung check never takes a thread another
path needs.

A check (SG_IO TEST UNIT READY, a direct read) on a path whose device is stuck can sit in
the kernel, in D state, for minutes: until the SCSI error handler gives up or the transport
times the device out. No timeout in user space ends it. In a plain thread pool such checks
pile up until every worker is stuck and no path is checked at all, healthy ones included.

So, for ``CheckPool(size, hang_after)``:

- At most one job per key (a path) is outstanding: submitting for a key whose job is still
  queued or running returns *that* job's future and drops the new function. A stuck path
  therefore holds one thread at most, however often it falls due, and the caller still
  gets the verdict of the check in flight when it finally returns.
- ``size`` workers pull jobs from one queue. A job running longer than ``hang_after``
  seconds is written off: its thread is left to finish on its own (when the job returns
  it delivers the result as usual, then exits, or serves again if the pool is short of
  workers) and a replacement worker is started at once, so ``size`` workers keep serving
  the other paths.
- Hangs come in storms: a dead switch port hangs every path behind it. Once one job is
  written off, and while any written-off job is still out, checks waiting in the queue get
  a thread each at once (up to ``max_threads`` in all, hung ones included) instead of
  ``size`` at a time, one round of ``hang_after`` per ``size`` hung paths. Workers beyond
  ``size`` leave as soon as the queue is empty.
- Threads are daemon threads and ``shutdown()`` joins none of them: a process that stops
  is never held up by a check stuck in the kernel.

From asyncio: ``await asyncio.wrap_future(pool.submit(key, fn))``. Cancelling the
awaiting task cancels a job still queued; a running job runs to its end.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from dmpath.errors import DmpathError

T = TypeVar("T")


class PoolClosed(DmpathError):
    """A job submitted after ``shutdown()``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"check pool is shut down: cannot check {key}")
        self.key = key


@dataclass(eq=False)
class CheckJob(Generic[T]):
    """One outstanding check. ``future`` exists only for ``submit`` callers; ``call_many``
    callers get ``on_done(job)`` from the worker thread instead: a concurrent Future (a
    Condition and an RLock each) costs more than the check itself at a thousand paths."""

    key: str
    fn: Callable[[], T]
    future: Future[T] | None = None
    on_done: Callable[[CheckJob[T]], None] | None = None
    value: T | None = None
    error: BaseException | None = None
    done: bool = False
    #: monotonic time a worker started the job (0.0 while it waits in the queue): how
    #: long a check has been out counts from here, not from when it was queued
    started: float = 0.0
    #: monotonic time the job's function returned (0.0 until then): with ``started``,
    #: how long the path took to answer (a slow answer is a marginal path's sign)
    finished: float = 0.0

    def result(self) -> T:
        """The check's value, or its exception raised (only once ``done``)."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # set together with done



@dataclass(eq=False)  # identity: two idle workers have equal fields, and list.remove
class _Worker(Generic[T]):  # must take out this one, not the first that looks alike
    job: CheckJob[T] | None = None
    started: float = 0.0  # monotonic time the current job started
    hung: bool = False


class CheckPool(Generic[T]):
    """``size`` workers for blocking checks, one outstanding job per key, hung jobs
    written off after ``hang_after`` seconds (see the module docstring)."""

    def __init__(
        self, size: int, hang_after: float, name: str = "check", max_threads: int = 1024
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if max_threads < size:
            raise ValueError(f"max_threads must be >= size ({size}), got {max_threads}")
        if hang_after <= 0:
            raise ValueError(f"hang_after must be > 0, got {hang_after}")
        self.size = size
        self.hang_after = hang_after
        self.max_threads = max_threads
        self.name = name
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # workers wait here for jobs
        self._watch = threading.Condition(self._lock)  # the watchdog waits here
        self._queue: collections.deque[CheckJob[T]] = collections.deque()
        self._jobs: dict[str, CheckJob[T]] = {}  # key -> its outstanding job
        self._workers: list[_Worker[T]] = []  # the ones that count towards ``size``
        self._hung: list[_Worker[T]] = []  # written off, still running their job
        self._closed = False
        self._watch_idle = True  # the watchdog waits with no deadline (no job running)
        self._spawned = 0
        #: monotonic time a job last returned (0.0 before the first): the pool's
        #: heartbeat, which dmpathd's watchdog looks at (a float store: no lock needed)
        self.progress = 0.0
        with self._lock:
            for _ in range(size):
                self._spawn()
        threading.Thread(target=self._watchdog, name=f"{name}-watchdog", daemon=True).start()

    # ------------------------------------------------------------------ API

    def submit(self, key: str, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn()`` in a worker; with a job for ``key`` still outstanding, return that
        job's future instead (``fn`` is then not run)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.future is not None and not job.future.cancelled():
                return job.future
            future: Future[T] = Future()
            self._enqueue(CheckJob(key, fn, future=future))
            return future

    def call_many(
        self, calls: Sequence[tuple[str, Callable[[], T], Callable[[CheckJob[T]], None]]]
    ) -> list[tuple[CheckJob[T], bool]]:
        """Run each ``fn()`` in a worker and call its ``on_done(job)`` from that worker
        when it returns; a key whose job is still outstanding gets that job and False
        (its ``fn`` and ``on_done`` are dropped: the first caller hears of it). One
        acquisition of the lock for all: checks that fall due together go together."""
        out: list[tuple[CheckJob[T], bool]] = []
        with self._lock:
            for key, fn, on_done in calls:
                job = self._jobs.get(key)
                if job is not None and (job.future is None or not job.future.cancelled()):
                    out.append((job, False))
                    continue
                job = CheckJob(key, fn, on_done=on_done)
                self._enqueue(job)
                out.append((job, True))
        return out

    def _enqueue(self, job: CheckJob[T]) -> None:
        """Queue ``job`` (called with the lock held)."""
        if self._closed:
            raise PoolClosed(job.key)
        self._jobs[job.key] = job
        self._queue.append(job)
        self._work.notify()
        if self._hung:
            self._surge()  # a storm of hangs is on: do not queue behind it

    def _surge(self) -> None:
        """Back to ``size`` live workers, plus one per queued job no idle worker will
        take, within ``max_threads`` (called with the lock held)."""
        idle = sum(1 for w in self._workers if w.job is None)
        want = max(self.size - len(self._workers), len(self._queue) - idle)
        room = self.max_threads - len(self._workers) - len(self._hung)
        for _ in range(min(want, room)):
            self._spawn()

    def hung(self) -> int:
        """Jobs written off as hung that have not returned yet (each holds one thread)."""
        with self._lock:
            return len(self._hung)

    def threads(self) -> int:
        """Worker threads alive: the live ones and the written-off ones still running."""
        with self._lock:
            return len(self._workers) + len(self._hung)

    def outstanding(self) -> int:
        """Keys with a job queued or running (hung ones included)."""
        with self._lock:
            return len(self._jobs)

    def shutdown(self) -> None:
        """Stop: queued jobs are cancelled, idle workers exit, running ones exit when their
        job returns. Waits for no thread."""
        with self._lock:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            for job in queued:
                if self._jobs.get(job.key) is job:
                    del self._jobs[job.key]
            self._work.notify_all()
            self._watch.notify_all()
        for job in queued:
            if job.future is not None:
                job.future.cancel()  # outside the lock: it runs the future's callbacks

    # ------------------------------------------------------------------ threads

    def _spawn(self) -> None:
        """Start one worker (called with the lock held)."""
        w: _Worker[T] = _Worker()
        self._workers.append(w)
        self._spawned += 1
        threading.Thread(
            target=self._run, args=(w,), name=f"{self.name}-{self._spawned}", daemon=True
        ).start()

    def _run(self, me: _Worker[T]) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    if len(self._workers) > self.size:  # a surge is over: leave
                        self._workers.remove(me)
                        return
                    self._work.wait()
                if self._closed:
                    if me in self._workers:
                        self._workers.remove(me)
                    return
                job = self._queue.popleft()
                if job.future is not None and not job.future.set_running_or_notify_cancel():
                    self._forget(job)  # cancelled while queued
                    continue
                me.job, me.started = job, time.monotonic()
                job.started = me.started
                if self._watch_idle:
                    # the watchdog sleeps with no deadline: this job gives it one (a job
                    # started later never has an earlier deadline than the ones running)
                    self._watch.notify()
            try:
                job.value = job.fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                job.error = exc
            job.finished = self.progress = time.monotonic()
            with self._lock:
                retired = self._finish(me, job)
            job.done = True
            if job.future is not None:
                if job.error is not None:
                    job.future.set_exception(job.error)
                else:
                    job.future.set_result(job.value)  # type: ignore[arg-type]
            if job.on_done is not None:
                job.on_done(job)
            if retired:
                return  # written off: a replacement serves in its place

    def _finish(self, me: _Worker[T], job: CheckJob[T]) -> bool:
        """Bookkeeping when a job returns, before its future is set, so a callback sees a
        free key (called with the lock held). True if this worker was written off."""
        me.job = None
        self._forget(job)
        if me.hung:
            self._hung.remove(me)
            if self._queue or len(self._workers) < self.size:
                # the cap kept the pool from replacing it: serve again (a surplus
                # worker leaves by itself once the queue is empty)
                me.hung = False
                self._workers.append(me)
                return False
            return True
        return False

    def _forget(self, job: CheckJob[T]) -> None:
        if self._jobs.get(job.key) is job:
            del self._jobs[job.key]

    def _watchdog(self) -> None:
        """Write off jobs running past ``hang_after`` and replace their workers."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                nearest: float | None = None
                wrote_off = False
                for w in list(self._workers):
                    if w.job is None:
                        continue
                    deadline = w.started + self.hang_after
                    if deadline <= now:
                        w.hung = True
                        self._workers.remove(w)
                        self._hung.append(w)
                        wrote_off = True
                    elif nearest is None or deadline < nearest:
                        nearest = deadline
                if wrote_off:
                    self._surge()
                self._watch_idle = nearest is None
                self._watch.wait(None if nearest is None else nearest - now)
