"""The history file: its format and bound (pure), the writer (append, reload, torn last
line, compaction, a file that cannot be used), and the engine's events across a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
from typing import Any

import pytest

from dmpath import config as cfgmod
from dmpath.daemon import journal
from dmpath.daemon.engine import Daemon
from dmpath.daemon.history import HistoryFile
from dmpath.model import Event
from dmpath.policy import history as h


def ev(i: int, kind: str = "path_failed") -> Event:
    return Event(1000.0 + i, kind, "mpatha", f"sd{i}", f"event {i}")


# ------------------------------------------------------------------ format and bound


def test_an_event_is_one_json_line_and_reads_back_the_same() -> None:
    e = Event(1764745200.25, "error", "mpatha", "sdb", 'two\nlines, "quoted", é')
    line = h.encode_event(e)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["message"] == e.message
    assert h.decode_line(line) == e


@pytest.mark.parametrize(
    "line",
    [b'{"time":1.0,"kind":"path_fa', b"\0\0\0\0", b"[1,2]", b'{"kind":"x"}',
     b'{"time":true,"kind":"x"}', b'{"time":1,"kind":"x","map":3}', b"\xff\xfe"],
)
def test_a_line_that_is_not_an_event_is_none(line: bytes) -> None:
    assert h.decode_line(line) is None


def test_unknown_keys_are_ignored_and_missing_texts_are_empty() -> None:
    assert h.decode_line(b'{"time":5,"kind":"x","new":1}') == Event(5.0, "x")


def test_a_torn_last_line_is_skipped_and_cut_off() -> None:
    good = h.encode_events([ev(1), ev(2)])
    parsed = h.parse_history(good + b'{"time":1003.0,"ki', bound=100)
    assert parsed.events == [ev(1), ev(2)]
    assert (parsed.lines, parsed.skipped, parsed.good_length) == (2, 1, len(good))


def test_damaged_lines_inside_are_skipped_and_counted_as_lines() -> None:
    data = h.encode_event(ev(1)) + b"\0\0\0\n" + h.encode_event(ev(2))
    parsed = h.parse_history(data, bound=100)
    assert parsed.events == [ev(1), ev(2)]
    assert (parsed.lines, parsed.skipped) == (3, 1)


def test_the_newest_events_within_the_bound_are_kept() -> None:
    parsed = h.parse_history(h.encode_events([ev(i) for i in range(10)]), bound=3)
    assert parsed.events == [ev(7), ev(8), ev(9)]
    assert parsed.lines == 10


def test_the_file_is_rewritten_at_one_and_a_half_times_its_bound() -> None:
    assert h.compact_at(10000) == 15000
    assert h.compact_at(10) == 15


def test_the_start_message_says_how_the_last_run_ended() -> None:
    stopped = [ev(1), Event(2000.0, h.STOPPED)]
    assert h.start_message(stopped, 7, "/h").endswith(
        "2 earlier events from /h; the last run stopped"
    )
    assert h.start_message([ev(1)], 7, "/h").endswith(
        "the last run ended without stopping (killed or crashed)"
    )
    assert h.start_message([], 7, "/h") == "dmpathd started (pid 7); no earlier events in /h"
    assert h.start_message([ev(1)], 7, "") == "dmpathd started (pid 7); history in memory only"


# ------------------------------------------------------------------ the file and its writer


def test_appended_events_are_loaded_by_the_next_store(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "state" / "history")  # the directory is made
    first = HistoryFile(path, bound=100)
    assert first.load() == [] and first.open
    for i in range(50):
        first.append(ev(i))
    first.flush()
    # the writer's own lines, complete, before any close (what a kill -9 leaves)
    assert pathlib.Path(path).read_bytes() == h.encode_events([ev(i) for i in range(50)])
    second = HistoryFile(path, bound=100)
    assert second.load() == [ev(i) for i in range(50)]
    first.close()
    second.close()


def test_a_torn_last_line_is_skipped_and_the_next_event_is_whole(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history"
    path.write_bytes(h.encode_events([ev(1)]) + b'{"time":1002.0,"kind":"pa')
    store = HistoryFile(str(path), bound=100)
    with caplog.at_level(logging.INFO, logger="dmpath.history"):
        assert store.load() == [ev(1)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    store.append(ev(3))
    store.close()
    assert HistoryFile(str(path), bound=100).load() == [ev(1), ev(3)]


def test_the_file_is_compacted_to_the_newest_events(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "history"
    store = HistoryFile(str(path), bound=10)
    store.load()
    for i in range(100):
        store.append(ev(i))
    store.close()
    lines = path.read_bytes().splitlines()
    assert 10 <= len(lines) < h.compact_at(10)
    assert HistoryFile(str(path), bound=10).load() == [ev(i) for i in range(90, 100)]


def test_an_oversized_file_is_compacted_at_load(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "history"
    path.write_bytes(h.encode_events([ev(i) for i in range(40)]))
    store = HistoryFile(str(path), bound=20)
    assert store.load() == [ev(i) for i in range(20, 40)]
    store.close()
    assert path.read_bytes() == h.encode_events([ev(i) for i in range(20, 40)])


def test_a_file_that_cannot_be_opened_means_memory_only_with_one_warning(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    store = HistoryFile(str(tmp_path / "not-a-dir" / "history"), bound=10)
    with caplog.at_level(logging.INFO, logger="dmpath.history"):
        assert store.load() == []
        store.append(ev(1))  # dropped, quietly
        store.close()
    assert not store.open
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot open" in warnings[0] and "memory only" in warnings[0]


def test_a_directory_in_place_of_the_file_means_memory_only(tmp_path: pathlib.Path) -> None:
    (tmp_path / "history").mkdir()
    store = HistoryFile(str(tmp_path / "history"), bound=10)
    assert store.load() == []
    assert not store.open


# ------------------------------------------------------------------ the engine


def make_daemon(tmp_path: pathlib.Path, history_file: str) -> Daemon:
    cfg = cfgmod.parse_config(f'[defaults]\nhistory_file = "{history_file}"\n')
    return Daemon(cfg, str(tmp_path / "dmpath.toml"), socket_path=str(tmp_path / "d.sock"))


@pytest.fixture(autouse=True)
def no_journal(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own journal, if it has one, stays out of these tests."""
    monkeypatch.setattr(journal, "SOCKET", str(tmp_path / "no-journal"))


def run_daemon(d: Daemon, kinds: list[str], stop: bool) -> list[dict[str, Any]]:
    """The events the daemon lists after recording ``kinds``."""

    async def scenario() -> list[dict[str, Any]]:
        await d.open_history()
        for i, kind in enumerate(kinds):
            d.event(kind, "mpatha", f"sd{i}", f"{kind} {i}")
        if stop:
            await d.stop()
            await d.close_history()
        elif d.history is not None:
            # as a kill -9 finds it: written, never closed
            await asyncio.get_running_loop().run_in_executor(None, d.history.flush)
        return await d.op_events()

    return asyncio.run(scenario())


def test_events_recorded_before_a_restart_are_listed_after_it(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "history")
    run_daemon(make_daemon(tmp_path, path), ["path_failed", "path_reinstated"], stop=True)
    after = run_daemon(make_daemon(tmp_path, path), ["path_failed"], stop=False)
    kinds = [e["kind"] for e in after]
    assert kinds == [
        h.STARTED, "path_failed", "path_reinstated", h.STOPPED, h.STARTED, "path_failed"
    ]
    assert after[4]["message"].endswith("the last run stopped")


def test_a_killed_daemon_s_events_are_there_and_its_end_is_told(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "history")
    run_daemon(make_daemon(tmp_path, path), ["path_failed"], stop=False)  # no stop: killed
    after = run_daemon(make_daemon(tmp_path, path), [], stop=False)
    assert [e["kind"] for e in after] == [h.STARTED, "path_failed", h.STARTED]
    assert "ended without stopping" in after[-1]["message"]


def test_no_history_file_keeps_the_history_in_memory(tmp_path: pathlib.Path) -> None:
    d = make_daemon(tmp_path, "")
    events = run_daemon(d, ["path_failed"], stop=False)
    assert d.history is None
    assert [e["kind"] for e in events] == [h.STARTED, "path_failed"]
    assert os.listdir(tmp_path) == []


def test_a_snapshot_carries_the_newest_events_and_events_the_whole_history(
    tmp_path: pathlib.Path,
) -> None:
    d = make_daemon(tmp_path, "")
    for i in range(1500):
        d.event("check", "mpatha", "sdb", f"check {i}")
    snap = d.snapshot()
    assert len(snap.events) == 1000 and snap.events[-1].message == "check 1499"
    assert len(asyncio.run(d.op_events())) == 1500
