"""The daemon's log, written by a thread of its own.

A fabric failure at a thousand paths is a thousand checker verdicts and a thousand
``path_failed`` events in a few seconds. Written from the event loop, one record at a
time with a flush each, the log was the loop's largest cost: a profile of the lab at 256
paths showed the loop spending more time in logging than in everything else, and the
last path of a fabric was failed seconds after its verdict because the loop was busy
writing lines about the first ones. Here the emitting thread only makes the message text
(its arguments may change later) and queues the record; a writer thread formats whatever
has queued up and writes it with one write and one flush.

Nothing is lost on the way out: ``flush`` waits until every record queued before it is
written, and ``close`` (``logging.shutdown``, run at exit) drains the queue first.
"""

from __future__ import annotations

import logging
from typing import TextIO

from dmpath.daemon.batchwriter import BatchWriter

#: the writer gives up on a stuck stream after this long when the daemon stops
CLOSE_TIMEOUT = 5.0


class BatchedStreamHandler(logging.Handler):
    """A ``StreamHandler`` whose formatting and writing happen in a writer thread."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._writer = BatchWriter(self._write, "log-writer")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # the text now: the arguments are the caller's and may change after this call
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info and not record.exc_text:
                # a traceback holds frames the caller is about to leave
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
        except Exception:  # noqa: BLE001 - logging must never take the caller down
            self.handleError(record)
            return
        self._writer.put(record)

    def _write(self, batch: list[logging.LogRecord]) -> None:
        lines: list[str] = []
        for record in batch:
            try:
                lines.append(self.format(record) + "\n")
            except Exception:  # noqa: BLE001 - one bad record must not stop the log
                self.handleError(record)
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:  # noqa: BLE001 - a closed stderr must not kill the writer
            if batch:
                self.handleError(batch[-1])

    def flush(self) -> None:
        """Return once every record queued before this call is written."""
        self._writer.flush(CLOSE_TIMEOUT)

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        self._writer.close(CLOSE_TIMEOUT)
        super().close()
