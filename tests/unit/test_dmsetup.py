"""The dmsetup layer against a fake ``dmsetup``: the exact argv and stdin it sends, and how
failures come back. The fake records each call and answers from a small response table."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmpath.errors import CommandError, CommandTimeout, DmpathError, ParseError
from dmpath.kernel import dmsetup
from dmpath.kernel.dmtable import (
    DmDevice,
    DmInfo,
    Features,
    GroupState,
    MultipathTable,
    PathGroup,
    PathState,
    TableError,
    format_table,
)

FIXTURES = Path(
    os.environ.get("DMPATH_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures")
)

FAKE_DMSETUP = """\
#!{python}
import json, os, sys, time
state = os.environ["FAKE_DMSETUP_DIR"]
argv = sys.argv[1:]
# only the commands that take a table read stdin (others must not block on it)
stdin = sys.stdin.read() if argv[:1] in (["create"], ["load"]) else None
with open(os.path.join(state, "calls.jsonl"), "a") as fh:
    rec = {{"argv": argv, "stdin": stdin, "lc_all": os.environ.get("LC_ALL")}}
    fh.write(json.dumps(rec) + "\\n")
try:
    with open(os.path.join(state, "responses.json")) as fh:
        responses = json.load(fh)
except FileNotFoundError:
    responses = []
for r in responses:
    if argv[: len(r["match"])] == r["match"]:
        time.sleep(r.get("sleep", 0))
        sys.stdout.write(r.get("stdout", ""))
        sys.stderr.write(r.get("stderr", ""))
        sys.exit(r.get("rc", 0))
"""


@dataclass
class FakeDmsetup:
    dir: Path

    def respond(
        self, match: list[str], stdout: str = "", stderr: str = "", rc: int = 0, sleep: float = 0
    ) -> None:
        """Answer calls whose argv starts with ``match`` (first registered match wins)."""
        path = self.dir / "responses.json"
        rules: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
        rules.append({"match": match, "stdout": stdout, "stderr": stderr, "rc": rc, "sleep": sleep})
        path.write_text(json.dumps(rules))

    def calls(self) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(ln) for ln in path.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls()]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDmsetup]:
    script = tmp_path / "dmsetup"
    script.write_text(FAKE_DMSETUP.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("DMPATH_BIN_DMSETUP", str(script))
    monkeypatch.setenv("FAKE_DMSETUP_DIR", str(tmp_path))
    yield FakeDmsetup(tmp_path)


TABLE = MultipathTable(
    65536,
    (
        PathGroup.of("service-time", ["8:0"]),
        PathGroup.of("round-robin", ["8:32"]),
    ),
    Features(queue_if_no_path=True),
)
TABLE_LINE = (
    "0 65536 multipath 1 queue_if_no_path 0 2 1 service-time 0 1 2 8:0 1 1 "
    "round-robin 0 1 1 8:32 1\n"
)


# --------------------------------------------------------------------------- lifecycle


def test_create_sends_the_table_on_stdin(fake: FakeDmsetup) -> None:
    assert format_table(TABLE) + "\n" == TABLE_LINE
    dmsetup.create("mpt0", TABLE, uuid="dmpath-test0")
    (call,) = fake.calls()
    assert call["argv"] == ["create", "--uuid", "dmpath-test0", "mpt0"]
    assert call["stdin"] == TABLE_LINE
    assert call["lc_all"] == "C"


def test_create_from_text_without_udev_sync(fake: FakeDmsetup) -> None:
    dmsetup.create("mpt0", "  " + TABLE_LINE.strip() + "  \n\n", udev_sync=False)
    (call,) = fake.calls()
    assert call["argv"] == ["create", "--noudevsync", "mpt0"]
    assert call["stdin"] == TABLE_LINE


def test_create_refuses_bad_tables_before_running_anything(fake: FakeDmsetup) -> None:
    bad = MultipathTable(8, (PathGroup.of("round-robin", ["8:0"]),), initial_pg=2)
    with pytest.raises(TableError, match="initial_pg 2"):
        dmsetup.create("mpt0", bad)
    with pytest.raises(DmpathError, match="one line"):
        dmsetup.create("mpt0", "0 8 multipath 0 0 0 0\n0 8 multipath 0 0 0 0")
    assert fake.calls() == []


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("", "must not be empty"),
        ("a/b", "'/'"),
        ("x" * 128, "at most 127"),
        ("-x", "start with '-'"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\x01b", "control"),
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
        ("é" * 64, "more than 127 bytes"),
    ],
)
def test_bad_map_names_never_reach_dmsetup(fake: FakeDmsetup, name: str, detail: str) -> None:
    for call in (
        lambda: dmsetup.create(name, TABLE),
        lambda: dmsetup.remove(name),
        lambda: dmsetup.status(name),
        lambda: dmsetup.fail_path(name, "8:0"),
        lambda: dmsetup.rename("ok", name),
    ):
        with pytest.raises(dmsetup.MapNameError) as err:
            call()
        assert detail in str(err.value)
    assert fake.calls() == []


def test_longest_name_and_bad_uuid(fake: FakeDmsetup) -> None:
    dmsetup.create("x" * 127, TABLE)
    with pytest.raises(dmsetup.MapNameError, match="uuid"):
        dmsetup.create("mpt0", TABLE, uuid="dmpath x")
    with pytest.raises(dmsetup.MapNameError, match="at most 128"):
        dmsetup.create("mpt0", TABLE, uuid="u" * 129)
    assert fake.argvs() == [["create", "x" * 127]]


def test_load_suspend_resume_clear(fake: FakeDmsetup) -> None:
    dmsetup.load("mpt0", TABLE)
    dmsetup.suspend("mpt0")
    dmsetup.suspend("mpt0", noflush=True)
    dmsetup.resume("mpt0")
    dmsetup.clear("mpt0")
    assert fake.argvs() == [
        ["load", "mpt0"],
        ["suspend", "mpt0"],
        ["suspend", "--noflush", "mpt0"],
        ["resume", "mpt0"],
        ["clear", "mpt0"],
    ]
    assert fake.calls()[0]["stdin"] == TABLE_LINE


def test_reload_is_load_then_noflush_suspend_then_resume(fake: FakeDmsetup) -> None:
    dmsetup.reload("mpt0", TABLE)
    assert fake.argvs() == [["load", "mpt0"], ["suspend", "--noflush", "mpt0"], ["resume", "mpt0"]]
    assert fake.calls()[0]["stdin"] == TABLE_LINE


def test_reload_refused_table_leaves_the_map_alone(fake: FakeDmsetup) -> None:
    fake.respond(
        ["load"],
        stderr="device-mapper: reload ioctl on mpt0  failed: Invalid argument\nCommand failed.\n",
        rc=1,
    )
    with pytest.raises(CommandError, match="reload ioctl on mpt0  failed: Invalid argument"):
        dmsetup.reload("mpt0", TABLE)
    assert fake.argvs() == [["load", "mpt0"]]


def test_reload_failed_suspend_clears_the_loaded_table(fake: FakeDmsetup) -> None:
    fake.respond(["suspend"], stderr="device-mapper: suspend ioctl failed\n", rc=1)
    with pytest.raises(CommandError):
        dmsetup.reload("mpt0", TABLE)
    assert fake.argvs() == [["load", "mpt0"], ["suspend", "--noflush", "mpt0"], ["clear", "mpt0"]]


def test_reload_failed_resume_says_the_map_is_suspended(fake: FakeDmsetup) -> None:
    fake.respond(["resume"], stderr="device-mapper: resume ioctl failed\n", rc=1)
    with pytest.raises(CommandError) as err:
        dmsetup.reload("mpt0", TABLE, udev_sync=False)
    assert any("left SUSPENDED" in n for n in err.value.__notes__)
    assert fake.argvs()[-1] == ["resume", "--noudevsync", "mpt0"]


@pytest.mark.parametrize(
    ("kwargs", "argv"),
    [
        ({}, ["remove", "--retry", "mpt0"]),
        ({"force": True}, ["remove", "--force", "--retry", "mpt0"]),
        ({"retry": False}, ["remove", "mpt0"]),
        ({"retry": False, "udev_sync": False}, ["remove", "--noudevsync", "mpt0"]),
    ],
)
def test_remove(fake: FakeDmsetup, kwargs: dict[str, bool], argv: list[str]) -> None:
    dmsetup.remove("mpt0", **kwargs)
    assert fake.argvs() == [argv]


def test_remove_of_an_open_map_fails_with_the_kernels_reason(fake: FakeDmsetup) -> None:
    fake.respond(
        ["remove"],
        stderr="device-mapper: remove ioctl on mpt0  failed: Device or resource busy\n"
        "Command failed.\n",
        rc=1,
    )
    with pytest.raises(CommandError, match="Device or resource busy"):
        dmsetup.remove("mpt0")


def test_rename(fake: FakeDmsetup) -> None:
    dmsetup.rename("mpt0", "mpatha")
    assert fake.argvs() == [["rename", "mpt0", "mpatha"]]


# --------------------------------------------------------------------------- reading


def test_list_maps(fake: FakeDmsetup) -> None:
    fake.respond(["ls"], stdout=(FIXTURES / "dm/dm_ls_target.txt").read_text())
    assert dmsetup.list_maps() == [DmDevice("mpt0", 254, 0)]
    assert fake.argvs() == [["ls", "--target", "multipath"]]


def test_list_maps_none(fake: FakeDmsetup) -> None:
    fake.respond(["ls"], stdout="No devices found\n")
    assert dmsetup.list_maps() == []


def test_table_and_status(fake: FakeDmsetup) -> None:
    fake.respond(["table"], stdout=(FIXTURES / "dm/dm_table_2pg.txt").read_text())
    fake.respond(["status"], stdout=(FIXTURES / "dm/dm_status_one_failed.txt").read_text())
    assert dmsetup.table("mpt0") == TABLE
    s = dmsetup.status("mpt0")
    assert [g.state for g in s.groups] == [GroupState.ENABLED, GroupState.ACTIVE]
    assert s.path("8:0") is not None and s.path("8:0").state is PathState.FAILED  # type: ignore[union-attr]
    assert fake.argvs() == [["table", "mpt0"], ["status", "mpt0"]]


def test_table_of_a_map_that_is_not_multipath(fake: FakeDmsetup) -> None:
    fake.respond(["table"], stdout="0 2048 linear 8:0 0\n")
    with pytest.raises(ParseError, match="not 'multipath'"):
        dmsetup.table("lin0")


def test_info(fake: FakeDmsetup) -> None:
    fake.respond(["info"], stdout=(FIXTURES / "dm/dm_info_c.txt").read_text())
    assert dmsetup.info("mpt0") == DmInfo("mpt0", "dmpath-test0", 254, 0, 0, 1, 0)
    assert fake.argvs() == [
        [
            "info",
            "-c",
            "--noheadings",
            "--separator",
            ":",
            "-o",
            "name,uuid,major,minor,open,segments,events",
            "mpt0",
        ]
    ]


def test_info_of_a_missing_map(fake: FakeDmsetup) -> None:
    fake.respond(["info"], stderr="Device does not exist.\nCommand failed.\n", rc=1)
    with pytest.raises(CommandError, match="Device does not exist"):
        dmsetup.info("nope")


def test_info_with_no_row_is_a_parse_error(fake: FakeDmsetup) -> None:
    fake.respond(["info"], stdout="")
    with pytest.raises(ParseError):
        dmsetup.info("mpt0")


@pytest.mark.parametrize(("attr", "held"), [("L--w", False), ("LIsw", True), ("L-sr", True)])
def test_suspended_reads_the_third_attribute_letter(
    fake: FakeDmsetup, attr: str, held: bool
) -> None:
    fake.respond(["info"], stdout=f"  {attr}\n")
    assert dmsetup.suspended("mpt0") is held
    assert fake.argvs() == [["info", "-c", "--noheadings", "-o", "attr", "mpt0"]]


def test_suspended_with_no_attributes_is_a_parse_error(fake: FakeDmsetup) -> None:
    fake.respond(["info"], stdout="\n")
    with pytest.raises(ParseError):
        dmsetup.suspended("mpt0")


def test_status_timeout(fake: FakeDmsetup) -> None:
    fake.respond(["status"], sleep=10)
    with pytest.raises(CommandTimeout):
        dmsetup.status("mpt0", timeout=0.5)


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("send", "words"),
    [
        (lambda: dmsetup.fail_path("mpt0", "8:0"), ["fail_path", "8:0"]),
        (lambda: dmsetup.reinstate_path("mpt0", "/dev/sdc"), ["reinstate_path", "/dev/sdc"]),
        (lambda: dmsetup.switch_group("mpt0", 2), ["switch_group", "2"]),
        (lambda: dmsetup.enable_group("mpt0", 1), ["enable_group", "1"]),
        (lambda: dmsetup.disable_group("mpt0", 1), ["disable_group", "1"]),
        (lambda: dmsetup.queue_if_no_path("mpt0"), ["queue_if_no_path"]),
        (lambda: dmsetup.fail_if_no_path("mpt0"), ["fail_if_no_path"]),
    ],
)
def test_messages(fake: FakeDmsetup, send: Any, words: list[str]) -> None:
    send()
    assert fake.argvs() == [["message", "mpt0", "0", *words]]


def test_message_returns_reply_text(fake: FakeDmsetup) -> None:
    fake.respond(["message"], stdout="some reply\n")
    assert dmsetup.message("mpt0", "whatever") == "some reply"


def test_unknown_message_fails_with_the_kernels_message(fake: FakeDmsetup) -> None:
    captured = (FIXTURES / "dm/dm_message_bogus.txt").read_text().splitlines()
    assert captured[-1] == "rc=1"  # the capture script appended dmsetup's exit status
    stderr = "\n".join(captured[:-1]) + "\n"
    fake.respond(["message"], stderr=stderr, rc=1)
    with pytest.raises(CommandError) as err:
        dmsetup.message("mpt0", "bogus_msg")
    assert err.value.returncode == 1
    assert "device-mapper: message ioctl on mpt0  failed: Invalid argument" in str(err.value)
    assert "Command failed." not in str(err.value)
    assert fake.argvs() == [["message", "mpt0", "0", "bogus_msg"]]


@pytest.mark.parametrize(
    "send",
    [
        lambda: dmsetup.switch_group("mpt0", 0),
        lambda: dmsetup.enable_group("mpt0", -1),
        lambda: dmsetup.disable_group("mpt0", True),
        lambda: dmsetup.fail_path("mpt0", "8 0"),
        lambda: dmsetup.fail_path("mpt0", ""),
        lambda: dmsetup.message("mpt0"),
    ],
)
def test_bad_message_arguments_never_reach_dmsetup(fake: FakeDmsetup, send: Any) -> None:
    with pytest.raises(DmpathError):
        send()
    assert fake.calls() == []
