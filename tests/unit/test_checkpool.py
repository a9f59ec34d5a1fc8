"""The check pool with fake jobs: a hung job is written off and replaced, one job per key,
and shutdown never waits for a hung thread.

Jobs block on threading.Event; the long timeouts below only keep a broken pool from
hanging the test run, no outcome depends on how fast anything is.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from dmpath.daemon.checkpool import CheckJob, CheckPool, PoolClosed

WAIT = 10.0  # seconds: a safety net, never reached when the pool works


def blocker(started: threading.Event, release: threading.Event, value: str) -> Callable[[], str]:
    def job() -> str:
        started.set()
        release.wait(WAIT)
        return value

    return job


def wait_until(cond: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if cond():
            return
        done.wait(0.01)
    raise AssertionError("condition never became true")


def workers(name: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(f"{name}-") and
               not t.name.endswith("-watchdog"))


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of every test, so no stuck fake job outlives it."""
    ev = threading.Event()
    yield ev
    ev.set()


def test_a_hung_job_does_not_block_the_others(release: threading.Event) -> None:
    pool: CheckPool[str] = CheckPool(1, hang_after=0.05)
    started = threading.Event()
    stuck = pool.submit("sdb", blocker(started, release, "sdb"))
    assert started.wait(WAIT)
    other = pool.submit("sdc", lambda: "sdc up")
    assert other.result(WAIT) == "sdc up"  # the only worker was stuck: a replacement ran it
    assert pool.hung() == 1
    assert not stuck.done()
    release.set()
    # the written-off job still delivers its verdict, and its thread leaves
    assert stuck.result(WAIT) == "sdb"
    wait_until(lambda: pool.hung() == 0)
    pool.shutdown()


def test_one_outstanding_job_per_key(release: threading.Event) -> None:
    pool: CheckPool[str] = CheckPool(2, hang_after=30.0)
    started = threading.Event()
    first = pool.submit("sdb", blocker(started, release, "first"))
    assert started.wait(WAIT)
    ran_second = threading.Event()

    def second() -> str:
        ran_second.set()
        return "second"

    # while the first check of sdb runs, asking again gets the same check
    assert pool.submit("sdb", second) is first
    assert pool.outstanding() == 1
    release.set()
    assert first.result(WAIT) == "first"
    assert not ran_second.is_set()
    # once it returned, the key is free
    assert pool.submit("sdb", second).result(WAIT) == "second"
    assert ran_second.is_set()
    pool.shutdown()


def test_a_hung_key_keeps_its_one_thread(release: threading.Event) -> None:
    """However often a stuck path falls due, it holds one thread, not one per check."""
    pool: CheckPool[str] = CheckPool(2, hang_after=0.05)
    started = threading.Event()
    stuck = pool.submit("sdb", blocker(started, release, "sdb"))
    assert started.wait(WAIT)
    wait_until(lambda: pool.hung() == 1)
    for _ in range(20):
        assert pool.submit("sdb", lambda: "again") is stuck
    assert pool.hung() == 1
    pool.shutdown()


def test_capacity_is_restored_after_jobs_hang(release: threading.Event) -> None:
    pool: CheckPool[str] = CheckPool(2, hang_after=0.05, name="cap")
    hung_started = [threading.Event(), threading.Event()]
    for i, ev in enumerate(hung_started):
        pool.submit(f"hung{i}", blocker(ev, release, "late"))
    assert all(ev.wait(WAIT) for ev in hung_started)
    wait_until(lambda: pool.hung() == 2)
    # two new jobs run side by side: each waits until the other has started
    a, b = threading.Event(), threading.Event()

    def meet(mine: threading.Event, other: threading.Event) -> bool:
        mine.set()
        return other.wait(WAIT)

    fa = pool.submit("sdb", lambda: meet(a, b))
    fb = pool.submit("sdc", lambda: meet(b, a))
    assert fa.result(WAIT) is True
    assert fb.result(WAIT) is True
    # two stuck threads plus two serving ones; once the stuck jobs return, their
    # threads leave and the pool is back to ``size``, not grown for good
    assert workers("cap") == 4
    release.set()
    wait_until(lambda: pool.hung() == 0 and workers("cap") == 2)
    pool.shutdown()


def stop_in_thread(pool: CheckPool[str]) -> bool:
    """Shut the pool down from another thread; True if that returned."""
    done = threading.Event()

    def stop() -> None:
        pool.shutdown()
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    return done.wait(WAIT)


def test_shutdown_returns_with_a_hung_job_still_running(release: threading.Event) -> None:
    pool: CheckPool[str] = CheckPool(1, hang_after=0.05, name="shut")
    started = threading.Event()
    stuck = pool.submit("sdb", blocker(started, release, "sdb"))
    assert started.wait(WAIT)
    wait_until(lambda: pool.hung() == 1)
    assert stop_in_thread(pool)
    assert not stuck.done()  # shutdown returned while the hung job still runs
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("shut-"))
    with pytest.raises(PoolClosed, match="shut down"):
        pool.submit("sdc", lambda: "no")
    release.set()
    assert stuck.result(WAIT) == "sdb"  # its verdict still reaches whoever waits


def test_shutdown_cancels_queued_jobs_and_waits_for_no_running_one(
    release: threading.Event,
) -> None:
    pool: CheckPool[str] = CheckPool(1, hang_after=30.0)
    started = threading.Event()
    running = pool.submit("sdb", blocker(started, release, "sdb"))
    assert started.wait(WAIT)
    queued = pool.submit("sdc", lambda: "never")
    assert stop_in_thread(pool)
    assert queued.cancelled()  # an awaiting coroutine is not left waiting forever
    assert not running.done()
    release.set()
    assert running.result(WAIT) == "sdb"


def test_an_exception_reaches_the_caller_and_frees_the_key() -> None:
    pool: CheckPool[str] = CheckPool(1, hang_after=30.0)

    def broken() -> str:
        raise OSError(6, "No such device or address")

    with pytest.raises(OSError, match="No such device"):
        pool.submit("sdb", broken).result(WAIT)
    assert pool.submit("sdb", lambda: "up").result(WAIT) == "up"
    pool.shutdown()


def test_a_job_cancelled_while_queued_is_not_run(release: threading.Event) -> None:
    pool: CheckPool[str] = CheckPool(1, hang_after=30.0)
    started = threading.Event()
    first = pool.submit("sdb", blocker(started, release, "sdb"))
    assert started.wait(WAIT)
    ran = threading.Event()

    def job() -> str:
        ran.set()
        return "ran"

    queued = pool.submit("sdc", job)
    assert queued.cancel()
    # a new submit for the key is a new job, not the cancelled one
    again = pool.submit("sdc", lambda: "again")
    assert again is not queued
    release.set()
    assert first.result(WAIT) == "sdb"
    assert again.result(WAIT) == "again"
    assert not ran.is_set()
    pool.shutdown()


def test_works_from_asyncio(release: threading.Event) -> None:
    pool: CheckPool[str] = CheckPool(1, hang_after=0.05)

    async def scenario() -> tuple[str, str]:
        started = threading.Event()
        stuck = asyncio.wrap_future(pool.submit("sdb", blocker(started, release, "sdb")))
        healthy = await asyncio.wrap_future(pool.submit("sdc", lambda: "sdc up"))
        release.set()
        return healthy, await stuck

    assert asyncio.run(scenario()) == ("sdc up", "sdb")
    pool.shutdown()


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        CheckPool(0, hang_after=1.0)
    with pytest.raises(ValueError, match="hang_after"):
        CheckPool(1, hang_after=0.0)


def test_a_job_knows_when_it_started_not_when_it_was_queued(release: threading.Event) -> None:
    pool: CheckPool[str] = CheckPool(1, hang_after=30.0)
    started = threading.Event()
    done: list[CheckJob[str]] = []
    [(first, _new)] = pool.call_many([("sdb", blocker(started, release, "sdb"), done.append)])
    assert started.wait(WAIT)
    [(queued, _new)] = pool.call_many([("sdc", lambda: "sdc", done.append)])
    assert first.started > 0.0
    assert queued.started == 0.0  # behind the running one: its clock has not started
    before = time.monotonic()
    release.set()
    wait_until(lambda: len(done) == 2)
    assert queued.started >= before
    pool.shutdown()


def test_a_storm_of_hangs_gets_a_thread_per_queued_job_at_once(release: threading.Event) -> None:
    """Four times as many hung jobs as workers: when the first ones are written off, every
    job still queued gets its thread in the same step, not one round per ``size``."""
    pool: CheckPool[str] = CheckPool(2, hang_after=1.0)
    started = threading.Semaphore(0)
    ran: list[str] = []

    def hang(key: str) -> Callable[[], str]:
        def job() -> str:
            ran.append(key)
            started.release()
            release.wait(WAIT)
            return key

        return job

    futures = [pool.submit(f"sd{i}", hang(f"sd{i}")) for i in range(8)]
    wait_until(lambda: pool.hung() > 0)
    # the surge happens under the lock that wrote the first ones off: all 8 jobs now
    # have a thread (the 2 written off and 6 new), though none has returned
    assert pool.threads() >= 8
    for _ in range(8):
        assert started.acquire(timeout=WAIT)
    assert sorted(ran) == sorted(f"sd{i}" for i in range(8))
    release.set()
    assert sorted(f.result(WAIT) for f in futures) == sorted(ran)
    # the surge is over: written-off threads end with their job, extra workers leave
    wait_until(lambda: pool.threads() == 2)
    pool.shutdown()


def test_a_storm_never_starts_more_than_max_threads(release: threading.Event) -> None:
    pool: CheckPool[str] = CheckPool(2, hang_after=0.05, max_threads=5)
    started = threading.Event()
    for i in range(12):
        pool.submit(f"sd{i}", blocker(started, release, f"sd{i}"))
    wait_until(lambda: pool.hung() == 5)  # every thread the pool may have is stuck
    time.sleep(0.2)  # several watchdog rounds: none may start a sixth
    assert pool.threads() == 5
    assert pool.outstanding() == 12  # the rest wait their turn, still owned by the pool
    release.set()
    wait_until(lambda: pool.outstanding() == 0)
    pool.shutdown()


def test_max_threads_below_size_is_refused() -> None:
    with pytest.raises(ValueError, match="max_threads"):
        CheckPool(4, hang_after=1.0, max_threads=3)
