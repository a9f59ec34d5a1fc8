"""The history file's format and bound: events to lines, lines to events.

One event per line, a JSON object with the fields of ``dmpath.model.Event``. Lines are
only ever appended, so a crash can leave one thing behind: a last line cut short (or, on
some file systems after a power loss, a tail of NUL bytes). ``parse_history`` skips such
lines and says how many it skipped; it never refuses a file. Unknown keys are ignored, so
a newer daemon's lines can be read by an older one.

The file is bounded: it keeps the newest ``bound`` events, and it is rewritten to them
(``dmpath.daemon.history``) once it holds ``compact_at(bound)`` lines. The slack between
the two makes a rewrite of ``bound`` lines happen once per ``bound // 2`` events, not at
every event once the file is full.

Pure: bytes in, events out, and events to bytes; the file I/O is in
``dmpath.daemon.history``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from dmpath.model import Event

#: the kinds of the events a daemon records when it starts and when it stops
STARTED = "daemon_started"
STOPPED = "daemon_stopped"


def encode_event(ev: Event) -> bytes:
    """One line (newline included) for ``ev``; ``ensure_ascii`` keeps it one line and
    plain bytes whatever a message holds."""
    obj = {"time": ev.time, "kind": ev.kind, "map": ev.map, "path": ev.path,
           "message": ev.message}
    return json.dumps(obj, separators=(",", ":")).encode("ascii") + b"\n"


def decode_line(line: bytes) -> Event | None:
    """The event of one line, or None for a line that is not one (torn, damaged)."""
    try:
        obj = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both
        return None
    if not isinstance(obj, dict):
        return None
    when, kind = obj.get("time"), obj.get("kind")
    if isinstance(when, bool) or not isinstance(when, int | float) or not isinstance(kind, str):
        return None
    texts = [obj.get(k, "") for k in ("map", "path", "message")]
    if not all(isinstance(t, str) for t in texts):
        return None
    return Event(float(when), kind, *texts)


@dataclass(frozen=True)
class Parsed:
    events: list[Event]  # oldest first, the newest ``bound`` of the file at most
    lines: int  # lines in the file, good or not (what the bound counts)
    skipped: int  # lines that were not events
    #: length of the file up to its last newline: what follows is a line cut short by a
    #: crash, cut off before anything is appended (it would spoil the next line)
    good_length: int


def parse_history(data: bytes, bound: int) -> Parsed:
    """The events of a history file's contents, the newest ``bound`` of them."""
    good_length = data.rfind(b"\n") + 1
    events: list[Event] = []
    lines = skipped = 0
    for line in data[:good_length].splitlines():
        lines += 1
        ev = decode_line(line)
        if ev is None:
            skipped += 1
        else:
            events.append(ev)
    if good_length < len(data):
        skipped += 1
    return Parsed(events[-bound:] if bound > 0 else [], lines, skipped, good_length)


def compact_at(bound: int) -> int:
    """The number of lines at which a file bounded to ``bound`` events is rewritten."""
    return bound + max(bound // 2, 1)


def encode_events(events: Sequence[Event]) -> bytes:
    return b"".join(encode_event(ev) for ev in events)


def start_message(earlier: Sequence[Event], pid: int, path: str) -> str:
    """What the start event says: the history loaded from ``path`` ("" for none) and
    how the run before ended (a run that did not stop records no stop event)."""
    started = f"dmpathd started (pid {pid})"
    if not path:
        return f"{started}; history in memory only"
    if not earlier:
        return f"{started}; no earlier events in {path}"
    ended = (
        "stopped" if earlier[-1].kind == STOPPED else "ended without stopping (killed or crashed)"
    )
    return f"{started}; {len(earlier)} earlier events from {path}; the last run {ended}"
