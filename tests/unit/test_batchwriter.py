"""The writer thread shared by the log and the history file: order, flush, the bound."""

from __future__ import annotations

import threading

from dmpath.daemon.batchwriter import BatchWriter


def test_items_are_written_in_order_and_flush_waits_for_them() -> None:
    out: list[int] = []
    w: BatchWriter[int] = BatchWriter(out.extend, "test-writer")
    for i in range(1000):
        w.put(i)
    w.flush(5)
    assert out == list(range(1000))
    assert w.close(5)
    w.put(1000)  # after close: nothing
    assert out == list(range(1000))


def test_a_stuck_writer_costs_the_oldest_queued_items_not_memory() -> None:
    entered, release = threading.Event(), threading.Event()
    out: list[int] = []

    def write(batch: list[int]) -> None:
        entered.set()
        release.wait(10)
        out.extend(batch)

    w: BatchWriter[int] = BatchWriter(write, "test-writer", bound=5)
    w.put(0)
    assert entered.wait(10)  # the writer holds item 0 and is stuck
    for i in range(1, 9):
        w.put(i)
    assert w.dropped == 3
    release.set()
    w.flush(5)
    assert out == [0, 4, 5, 6, 7, 8]
    assert w.close(5)
