"""The daemon's log writer thread: order, completeness, and the text of the moment."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator

import pytest

from dmpath.daemon.logwriter import BatchedStreamHandler


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, BatchedStreamHandler, io.StringIO]]:
    out = io.StringIO()
    handler = BatchedStreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("dmpath.test.logwriter")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logger, handler, out
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_records_are_written_in_order_and_flush_waits_for_them(
    logged: tuple[logging.Logger, BatchedStreamHandler, io.StringIO],
) -> None:
    logger, handler, out = logged
    for i in range(500):
        logger.info("line %d", i)
    handler.flush()
    want = [f"INFO dmpath.test.logwriter: line {i}" for i in range(500)]
    assert out.getvalue().splitlines() == want


def test_the_text_is_made_when_logged_not_when_written(
    logged: tuple[logging.Logger, BatchedStreamHandler, io.StringIO],
) -> None:
    logger, handler, out = logged
    state = ["before"]
    logger.warning("state %s", state)
    state[0] = "after"  # the caller moves on before the writer runs
    handler.flush()
    assert out.getvalue() == "WARNING dmpath.test.logwriter: state ['before']\n"


def test_a_traceback_is_kept(
    logged: tuple[logging.Logger, BatchedStreamHandler, io.StringIO],
) -> None:
    logger, handler, out = logged
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    handler.flush()
    text = out.getvalue()
    assert text.startswith("ERROR dmpath.test.logwriter: failed\nTraceback")
    assert "ValueError: boom" in text


def test_many_threads_lose_nothing(
    logged: tuple[logging.Logger, BatchedStreamHandler, io.StringIO],
) -> None:
    logger, handler, out = logged

    def work(t: int) -> None:
        for i in range(200):
            logger.info("t%d %d", t, i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    handler.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1600
    for t in range(8):  # each thread's lines in its own order
        mine = [ln for ln in lines if f": t{t} " in ln]
        assert mine == [f"INFO dmpath.test.logwriter: t{t} {i}" for i in range(200)]


def test_close_writes_what_is_queued_and_later_records_are_dropped() -> None:
    out = io.StringIO()
    handler = BatchedStreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "last %s", ("words",), None)
    handler.handle(rec)
    handler.close()
    assert out.getvalue() == "last words\n"
    handler.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "late", None, None))
    assert out.getvalue() == "last words\n"


def test_a_broken_stream_does_not_stop_the_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    class Flaky(io.StringIO):
        fail = True

        def write(self, s: str) -> int:
            if self.fail:
                self.fail = False
                raise OSError("stderr is gone")
            return super().write(s)

    out = Flaky()
    handler = BatchedStreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    monkeypatch.setattr(logging, "raiseExceptions", False)
    handler.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "lost", None, None))
    handler.flush()
    handler.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "kept", None, None))
    handler.close()
    assert out.getvalue() == "kept\n"
