"""Events to the journal: the native protocol's bytes, the MESSAGE_IDs, a send that never
blocks, and one journal entry per event (never the entry and the log line both)."""

from __future__ import annotations

import logging
import os
import pathlib
import re
import socket
import struct
from collections.abc import Iterator

import pytest

from dmpath import config as cfgmod
from dmpath.daemon import journal
from dmpath.daemon.engine import Daemon
from dmpath.model import Event

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_a_field_is_key_equals_value() -> None:
    assert journal.encode_field("DMPATH_MAP", "mpatha") == b"DMPATH_MAP=mpatha\n"


def test_a_value_with_a_newline_has_the_binary_length_form() -> None:
    got = journal.encode_field("MESSAGE", "two\nlines")
    assert got == b"MESSAGE\n\x09\x00\x00\x00\x00\x00\x00\x00two\nlines\n"


def test_an_event_entry_golden_bytes() -> None:
    ev = Event(1.0, "path_failed", "mpatha", "sdb", "IO failure on sdb")
    got = journal.encode_event(ev, "mpatha: IO failure on sdb", logging.WARNING)
    assert got == (
        b"MESSAGE=mpatha: IO failure on sdb\n"
        b"PRIORITY=4\n"
        b"SYSLOG_IDENTIFIER=dmpathd\n"
        b"MESSAGE_ID=0756cb3780835de390b121d6894a8182\n"
        b"DMPATH_EVENT=path_failed\n"
        b"DMPATH_MAP=mpatha\n"
        b"DMPATH_PATH=sdb\n"
    )


def test_an_entry_with_a_multi_line_message_and_no_map_golden_bytes() -> None:
    text = "internal: boom\nsecond line"
    got = journal.encode_event(Event(1.0, "error", message=text), text, logging.WARNING)
    assert got == (
        b"MESSAGE\n" + struct.pack("<Q", len(text)) + text.encode() + b"\n"
        b"PRIORITY=4\n"
        b"SYSLOG_IDENTIFIER=dmpathd\n"
        b"MESSAGE_ID=f692d59d56b45cdf911492bf0a1b2338\n"
        b"DMPATH_EVENT=error\n"
    )


def test_a_kind_without_an_id_has_no_message_id() -> None:
    got = journal.encode_event(Event(1.0, "novel"), "novel", logging.INFO)
    assert b"MESSAGE_ID" not in got and b"DMPATH_EVENT=novel\n" in got


def test_message_ids_are_unique_128_bit_hex() -> None:
    ids = list(journal.MESSAGE_IDS.values())
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def _kinds_in_source() -> set[str]:
    """Every event kind the daemon records, as its source spells them."""
    engine = (ROOT / "dmpath/daemon/engine.py").read_text()
    notes = (ROOT / "dmpath/policy/reconcile.py").read_text()
    kinds = set(re.findall(r'self\.event\(\s*"([a-z_]+)"', engine))
    kinds |= set(re.findall(r'Note\(\s*"([a-z_]+)"', notes))
    kinds |= {"link_" + state for state in ("up", "down")}  # "link_" + state
    kinds.discard("link_")
    return kinds | {"daemon_started", "daemon_stopped"}


def test_every_kind_the_daemon_records_has_a_message_id() -> None:
    kinds = _kinds_in_source()
    assert {"path_failed", "path_reinstated", "map_created", "alert"} <= kinds
    assert kinds <= set(journal.MESSAGE_IDS)


def test_the_man_page_lists_every_message_id() -> None:
    man = (ROOT / "man/dmpathd.8").read_text()
    for kind, mid in journal.MESSAGE_IDS.items():
        assert re.search(rf"^\.B {kind}\n{mid}$", man, re.M), kind


# ------------------------------------------------------------------ the socket


@pytest.fixture
def journald(tmp_path: pathlib.Path) -> Iterator[socket.socket]:
    """A socket standing in for journald's."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "socket"))
    sock.settimeout(5)
    try:
        yield sock
    finally:
        sock.close()


def test_no_socket_no_journal(tmp_path: pathlib.Path) -> None:
    assert journal.Journal.connect(str(tmp_path / "none"), env={}) is None


def test_an_entry_reaches_the_socket(tmp_path: pathlib.Path, journald: socket.socket) -> None:
    j = journal.Journal.connect(str(tmp_path / "socket"), env={})
    assert j is not None and not j.replaces_log
    assert j.send(b"MESSAGE=hello\n")
    assert journald.recv(4096) == b"MESSAGE=hello\n"


def test_a_full_journal_drops_and_counts_never_blocks(
    tmp_path: pathlib.Path, journald: socket.socket
) -> None:
    j = journal.Journal.connect(str(tmp_path / "socket"), env={})
    assert j is not None
    entry = b"MESSAGE=" + b"x" * 4000 + b"\n"
    results = [j.send(entry) for _ in range(5000)]  # nobody reads: the queue fills
    assert not all(results)
    assert j.dropped == results.count(False) and j.sent == results.count(True)


def test_standard_error_is_the_journal_when_journal_stream_names_it() -> None:
    r, w = os.pipe()
    try:
        st = os.fstat(w)
        assert journal.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, w)
        assert not journal.stderr_is_journal({"JOURNAL_STREAM": "1:2"}, w)
        assert not journal.stderr_is_journal({}, w)
    finally:
        os.close(r)
        os.close(w)


# ------------------------------------------------------------------ the engine's events


def _daemon(tmp_path: pathlib.Path, j: journal.Journal) -> Daemon:
    cfg = cfgmod.parse_config("")
    d = Daemon(cfg, str(tmp_path / "dmpath.toml"), socket_path=str(tmp_path / "d.sock"))
    d.journal = j
    return d


@pytest.mark.parametrize("replaces_log", [True, False])
def test_an_event_is_in_the_journal_once(
    tmp_path: pathlib.Path,
    journald: socket.socket,
    caplog: pytest.LogCaptureFixture,
    replaces_log: bool,
) -> None:
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d = _daemon(tmp_path, journal.Journal(sender, str(tmp_path / "socket"), replaces_log))
    with caplog.at_level(logging.INFO, logger="dmpathd"):
        d.event("path_failed", "mpatha", "sdb", "IO failure on sdb")
    assert b"MESSAGE=mpatha: IO failure on sdb\n" in journald.recv(4096)
    logged = [r.getMessage() for r in caplog.records if r.name == "dmpathd"]
    # standard error is the journal: the entry stands for the line; else the line is
    # for the terminal or file standard error goes to
    assert logged == ([] if replaces_log else ["mpatha: IO failure on sdb"])
    sender.close()


def test_an_event_the_journal_drops_is_logged(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d = _daemon(tmp_path, journal.Journal(sender, str(tmp_path / "gone"), replaces_log=True))
    with caplog.at_level(logging.INFO, logger="dmpathd"):
        d.event("map_created", "mpatha", message="created mpatha")
    assert [r.getMessage() for r in caplog.records if r.name == "dmpathd"] == [
        "mpatha: created mpatha"
    ]
    assert d.journal is not None and d.journal.dropped == 1
    sender.close()


def test_a_quiet_event_goes_to_the_journal_only_when_it_would_be_logged(
    tmp_path: pathlib.Path, journald: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d = _daemon(tmp_path, journal.Journal(sender, str(tmp_path / "socket"), True))
    with caplog.at_level(logging.INFO, logger="dmpathd"):
        d.event("path_added", "", "sdb", "sdb is a path of W")
    assert d.journal is not None and d.journal.sent == 0
    assert [e.kind for e in d.events] == ["path_added"]
    sender.close()
