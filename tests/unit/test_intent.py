"""The administrator's standing requests as the state file holds them."""

from __future__ import annotations

import pathlib

import pytest

from dmpath.policy import files, intent
from dmpath.policy.files import StateFileError
from dmpath.policy.intent import AdminIntent, IntentFormatError


def test_a_record_survives_its_text() -> None:
    rec = AdminIntent(
        held={"sdb": "3600a0b8001"},
        removed={"sdc": "3600a0b8002"},
        queueing={"3600a0b8001": False, "3600a0b8003": True},
        flushed={"3600a0b8004"},
    )
    assert intent.from_text(intent.to_text(rec)) == rec


def test_empty_text_is_an_empty_record() -> None:
    assert intent.from_text("") == AdminIntent()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "not JSON"),
        ("[]", "a JSON object expected"),
        ('{"version": 2}', "version 2, 1 expected"),
        ('{"version": 1, "queueing": {"w": "off"}}', "queueing"),
        ('{"version": 1, "held_paths": ["sdb"]}', "held_paths"),
        ('{"version": 1, "flushed_maps": "w"}', "flushed_maps"),
    ],
)
def test_text_that_is_no_record_is_refused(text: str, why: str) -> None:
    with pytest.raises(IntentFormatError, match=why):
        intent.from_text(text)


def test_a_path_entry_stands_only_for_the_disk_it_was_made_for() -> None:
    rec = AdminIntent(held={"sdb": "w1"})
    assert rec.applies(rec.held, "sdb", "w1")
    assert not rec.applies(rec.held, "sdb", "w2")  # the name went to another disk
    assert not rec.applies(rec.held, "sdc", "w1")


def test_the_file_is_written_atomically_and_read_back(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "dmpath" / "admin-state"
    assert files.load_intent(path) == AdminIntent()  # none yet: nothing asked
    rec = AdminIntent(flushed={"w1"})
    files.save_intent(path, rec)
    assert files.load_intent(path) == rec
    assert [p.name for p in path.parent.iterdir()] == ["admin-state"]  # no temporary left


def test_a_damaged_file_is_a_one_line_state_file_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "admin-state"
    path.write_text("{not json")
    with pytest.raises(StateFileError, match=r"admin-state: cannot read: not JSON") as info:
        files.load_intent(path)
    assert "\n" not in str(info.value)
