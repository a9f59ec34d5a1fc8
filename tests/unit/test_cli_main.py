"""mpathctl end to end without a daemon: ``dmpath.client.request`` is replaced by a fake.

Checks what scripts and administrators rely on: exit statuses, one-line errors, the
requests actions send, JSON that validates against the documented schemas, and the
kernel's view when no daemon runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmpath import client
from dmpath.cli import kernelview, main, render, schema
from dmpath.cli.main import UsageError, normalize_path
from dmpath.errors import DmpathError
from dmpath.kernel import dmtable, mdstat, sysfs
from dmpath.model import (
    Backend,
    Check,
    Event,
    GroupState,
    KernelState,
    Map,
    Path,
    PathGroup,
    Snapshot,
    snapshot_to_dict,
)
from dmpath.protocol import Busy, NotFound, PermissionDenied, Refused
from dmpath.safetext import sanitize

# --------------------------------------------------------------------------- a tiny validator
# jsonschema is not a dependency; this covers the subset of draft 2020-12 schema.py uses.


def validate(instance: Any, sch: dict[str, Any], root: dict[str, Any] | None = None) -> None:
    errors = list(_errors(instance, sch, root or sch, "$"))
    assert not errors, "\n".join(errors[:20])


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "null": lambda v: v is None,
}

_KNOWN = {
    "$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties",
    "required", "additionalProperties", "items", "enum", "const", "minimum", "pattern", "oneOf",
}  # fmt: skip


def _errors(v: Any, s: dict[str, Any], root: dict[str, Any], at: str) -> Any:
    unknown = set(s) - _KNOWN
    assert not unknown, f"validator does not support {unknown}"
    if "$ref" in s:
        ref = s["$ref"]
        assert ref.startswith("#/$defs/")
        yield from _errors(v, root["$defs"][ref.removeprefix("#/$defs/")], root, at)
    if "type" in s and not _TYPES[s["type"]](v):
        yield f"{at}: {v!r} is not {s['type']}"
        return
    if "enum" in s and v not in s["enum"]:
        yield f"{at}: {v!r} not in {s['enum']}"
    if "const" in s and (v != s["const"] or type(v) is not type(s["const"])):
        yield f"{at}: {v!r} is not {s['const']!r}"
    if "minimum" in s and isinstance(v, int | float) and v < s["minimum"]:
        yield f"{at}: {v} < {s['minimum']}"
    if "pattern" in s and isinstance(v, str) and not re.search(s["pattern"], v):
        yield f"{at}: {v!r} does not match {s['pattern']}"
    if isinstance(v, dict):
        props = s.get("properties", {})
        for key in s.get("required", []):
            if key not in v:
                yield f"{at}: missing {key!r}"
        for key, value in v.items():
            if key in props:
                yield from _errors(value, props[key], root, f"{at}.{key}")
            elif s.get("additionalProperties") is False:
                yield f"{at}: unexpected {key!r}"
    if isinstance(v, list) and "items" in s:
        for i, item in enumerate(v):
            yield from _errors(item, s["items"], root, f"{at}[{i}]")
    if "oneOf" in s:
        passing = sum(1 for sub in s["oneOf"] if not list(_errors(v, sub, root, at)))
        if passing != 1:
            yield f"{at}: matches {passing} of oneOf"


def test_validator_catches_mistakes() -> None:
    doc = snapshot_to_dict(snapshot())
    doc["maps"][0]["paths"][0]["check"] = "fine"
    doc["maps"][0]["extra"] = 1
    del doc["pid"]
    errors = list(_errors(doc, schema.STATUS_SCHEMA, schema.STATUS_SCHEMA, "$"))
    assert len(errors) == 3


# --------------------------------------------------------------------------- test data

NOW = 1_700_000_000.0


def path(name: str, devnum: str, hctl: str, group: int, prio: int) -> Path:
    return Path(
        name=name,
        devnum=devnum,
        wwid="naa.33333330000007d1",
        hctl=hctl,
        vendor="Linux",
        model="scsi_debug",
        dev_state="running",
        check=Check.UP,
        kernel_state=KernelState.ACTIVE,
        priority=prio,
        group=group,
        last_change=NOW - 60,
    )


def snapshot() -> Snapshot:
    sdb, sdd = path("sdb", "8:16", "6:0:0:1", 1, 50), path("sdd", "8:48", "7:0:0:1", 2, 10)
    sdd.kernel_state, sdd.check, sdd.fail_count = KernelState.FAILED, Check.DOWN, 2
    m = Map(
        name="mpathb",
        wwid="1Linux_scsi_debug_2001",
        backend=Backend.DM,
        sysfs="dm-1",
        devnode="/dev/mapper/mpathb",
        uuid="mpath-1Linux_scsi_debug_2001",
        size_sectors=65536,
        vendor="Linux",
        model="scsi_debug",
        features="1 queue_if_no_path",
        hwhandler="1 alua",
        queueing=True,
        no_path_retry="queue",
        groups=[
            PathGroup(1, "service-time 0", 50, GroupState.ACTIVE, ["sdb"]),
            PathGroup(2, "service-time 0", 10, GroupState.ENABLED, ["sdd"]),
        ],
        paths=[sdb, sdd],
    )
    stray = path("sde", "8:64", "8:0:0:0", 0, 0)
    stray.kernel_state = KernelState.ABSENT
    return Snapshot(
        pid=1234,
        started=NOW - 3600,
        config_file="/etc/dmpath/dmpath.conf",
        maps=[m],
        unmapped_paths=[stray],
        events=[Event(NOW - 30, "path_failed", "mpathb", "sdd", "TUR: not ready")],
    )


EVENTS = [
    {"time": NOW - 300 + i, "kind": "path_failed", "map": "mpathb", "path": "sdd", "message": "x"}
    for i in range(3)
] + [{"time": NOW - 10, "kind": "path_reinstated", "map": "mpathb", "path": "sdd", "message": ""}]


class FakeDaemon:
    """Stands in for ``client.request``: records calls, answers or raises per op."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any] | None, str]] = []
        self.replies: dict[str, Any] = {
            "show": snapshot_to_dict(snapshot()),
            "events": EVENTS,
            "show_config": {"defaults": {"polling_interval": 5}},
        }
        self.raises: dict[str, BaseException] = {}
        self.timeouts: list[float] = []

    def __call__(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        socket_path: str = "",
        timeout: float = 30.0,
    ) -> Any:
        self.calls.append((op, args, socket_path))
        self.timeouts.append(timeout)
        if op in self.raises:
            raise self.raises[op]
        return self.replies.get(op, {"message": "done"})


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> FakeDaemon:
    fake = FakeDaemon()
    monkeypatch.setattr("dmpath.client.request", fake)
    monkeypatch.delenv("DMPATH_SOCKET", raising=False)
    return fake


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def _run(*argv: str) -> tuple[int, str, str]:
        code = main.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mpathctl: error: ")
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- PATH arguments


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("sdb", "sdb"),
        ("/dev/sdb", "sdb"),
        ("8:16", "8:16"),
        ("08:016", "8:16"),
        ("sdaa", "sdaa"),
        ("nvme0n1", "nvme0n1"),
        ("nvme0c1n1", "nvme0c1n1"),
        ("/dev/vdb", "vdb"),
        ("cciss!c0d0", "cciss!c0d0"),
        ("259:0", "259:0"),
    ],
)
def test_normalize_path(arg: str, expected: str) -> None:
    assert normalize_path(arg) == expected


@pytest.mark.parametrize(
    "junk",
    ["", "foo bar", "/dev/", "/tmp/sdb", "../sdb", "sdb;rm -rf /", "SDB", "8:", ":16", "8:16:1",
     "99999:1", "8:99999999", "sd\x1bb", "/dev/sdb/", "-sdb", "a" * 40, "sdb\n", "1sdb"],
)  # fmt: skip
def test_normalize_path_refuses_junk(junk: str) -> None:
    with pytest.raises(UsageError) as info:
        normalize_path(junk)
    assert info.value.exit_code == 2
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value)


def test_resolve_follows_dev_disk_links(monkeypatch: pytest.MonkeyPatch) -> None:
    links = {"/dev/disk/by-id/wwn-0x5000": "/dev/sdb", "/dev/disk/by-id/odd": "/tmp/x"}
    monkeypatch.setattr(os.path, "realpath", lambda p: links.get(p, p))
    assert main.resolve_path_arg("/dev/disk/by-id/wwn-0x5000") == "sdb"
    assert main.resolve_path_arg("/dev/sdb") == "sdb"
    for bad in ("/dev/disk/by-id/odd", "/dev/disk/by-id/no-such-thing"):
        with pytest.raises(UsageError, match="not a link to a /dev node"):
            main.resolve_path_arg(bad)


@given(st.text(max_size=40))
def test_normalize_path_output_is_a_kernel_name_or_devnum(arg: str) -> None:
    try:
        out = normalize_path(arg)
    except UsageError as exc:
        assert exc.exit_code == 2
        assert sanitize(str(exc)) == str(exc)  # the error line is terminal-safe
        return
    assert re.fullmatch(r"[0-9]+:[0-9]+|[a-z][a-z0-9!_+-]{0,30}", out)


@pytest.mark.parametrize(
    ("target", "name", "expected"),
    [
        ("sdb", None, {"path": "sdb"}),
        ("/dev/sdb", "data", {"path": "sdb", "name": "data"}),
        ("8:16", None, {"path": "8:16"}),
        ("3600a0b800019b5b60000a4b8558d9d67", None, {"wwid": "3600a0b800019b5b60000a4b8558d9d67"}),
        ("naa.33333330000007d0", None, {"wwid": "naa.33333330000007d0"}),
        ("1Linux_scsi_debug_2000", "mpatha", {"wwid": "1Linux_scsi_debug_2000", "name": "mpatha"}),
    ],
)
def test_create_args(target: str, name: str | None, expected: dict[str, str]) -> None:
    assert main.create_args(target, name) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", NOW - 90), ("15m", NOW - 900), ("2h", NOW - 7200), ("1d", NOW - 86400),
     ("30", NOW - 30), ("100000d", 0.0)],
)  # fmt: skip
def test_parse_since(text: str, expected: float) -> None:
    assert main.parse_since(text, NOW) == pytest.approx(expected)


def test_parse_since_iso_and_junk() -> None:
    assert main.parse_since("2023-11-14T22:13:20+00:00", NOW) == pytest.approx(NOW)
    with pytest.raises(UsageError):
        main.parse_since("yesterday", NOW)


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["fail"],
        ["fail", "foo bar"],
        ["fail", "sdb", "--frce"],
        ["switchgroup", "mpatha", "0"],
        ["switchgroup", "mpatha", "one"],
        ["queueing", "mpatha", "maybe"],
        ["watch", "--interval", "0"],
        ["watch", "--interval", "nan"],
        ["--timeout", "0", "status"],
        ["status", "--timeout", "-5"],
        ["fail", "sdb", "--timeout", "inf"],
        ["show"],
        ["show", "nothing"],
        ["show", "events", "--limit", "-1"],
        ["show", "events", "--since", "yesterday"],
        ["flush", "bad\x07name"],
        ["status", "--format", "xml"],
    ],
)
def test_usage_errors_exit_2_with_one_line(run: Run, daemon: FakeDaemon, argv: list[str]) -> None:
    code, out, err = run(*argv)
    assert code == 2
    assert out == ""
    one_error_line(err)
    assert "\x07" not in err
    assert not [c for c in daemon.calls if c[0] != "events"]


def test_help_and_version(run: Run) -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("mpathctl (dmpath) ")
    code, out, _ = run("--help")
    assert code == 0 and "switchgroup" in out and "Exit status" in out


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize(
    ("argv", "op", "args"),
    [
        (["fail", "sdb"], "fail_path", {"path": "sdb", "force": False}),
        (["fail", "/dev/sdb", "--force"], "fail_path", {"path": "sdb", "force": True}),
        (["reinstate", "8:16"], "reinstate_path", {"path": "8:16"}),
        (["add", "/dev/sdc"], "add_path", {"path": "sdc"}),
        (["remove", "sdc"], "remove_path", {"path": "sdc"}),
        (["create", "sdb"], "create_map", {"path": "sdb"}),
        (["create", "naa.33333330000007d1", "--name", "data"], "create_map",
         {"wwid": "naa.33333330000007d1", "name": "data"}),
        (["flush", "mpatha"], "flush_map", {"map": "mpatha", "force": False}),
        (["flush", "mpatha", "--force"], "flush_map", {"map": "mpatha", "force": True}),
        (["switchgroup", "mpatha", "2"], "switch_group", {"map": "mpatha", "group": 2}),
        (["queueing", "mpatha", "on"], "queueing", {"map": "mpatha", "enabled": True}),
        (["queueing", "mpatha", "off"], "queueing", {"map": "mpatha", "enabled": False}),
        (["queueing", "mpatha", "config"], "queueing", {"map": "mpatha"}),
        (["reconfigure"], "reconfigure", {}),
    ],
)  # fmt: skip
def test_actions_send_the_right_request(
    run: Run, daemon: FakeDaemon, argv: list[str], op: str, args: dict[str, Any]
) -> None:
    code, out, err = run(*argv)
    assert (code, err) == (0, "")
    assert daemon.calls == [(op, args, "/run/dmpath/dmpathd.sock")]
    assert out.startswith("[OK] ") and "done" in out
    # the request passes the protocol's own validation
    from dmpath.protocol import validate_args

    validate_args(op, args)


def test_action_json(run: Run, daemon: FakeDaemon) -> None:
    daemon.replies["fail_path"] = {"path": "sdb", "map": "mpathb"}
    code, out, _ = run("fail", "sdb", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc == {"ok": True, "result": {"path": "sdb", "map": "mpathb"}}
    validate(doc, schema.ACTION_SCHEMA)


def test_socket_option_and_environment(
    run: Run, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("--socket", "/tmp/a.sock", "reconfigure")
    run("reconfigure", "--socket", "/tmp/b.sock")
    monkeypatch.setenv("DMPATH_SOCKET", "/tmp/c.sock")
    run("reconfigure")
    assert [c[2] for c in daemon.calls] == ["/tmp/a.sock", "/tmp/b.sock", "/tmp/c.sock"]


def test_timeout_option_bounds_the_wait_for_the_answer(run: Run, daemon: FakeDaemon) -> None:
    # an action asked during the start-up scan is answered after its first pass: a large
    # SAN's administrator waits longer than the default rather than be told "busy"
    run("reconfigure")
    run("--timeout", "120", "fail", "sdb")
    run("status", "--timeout", "2.5")
    assert daemon.timeouts == [client.DEFAULT_TIMEOUT, 120.0, 2.5]


def test_refusal_is_one_line_with_force_hint(run: Run, daemon: FakeDaemon) -> None:
    daemon.raises["fail_path"] = Refused("sdb is the last working path of mpathb")
    code, out, err = run("fail", "sdb")
    assert code == 7 and out == ""
    line = one_error_line(err)
    assert "last working path" in line and "mpathctl fail --force" in line


def test_refusal_with_force_has_no_hint(run: Run, daemon: FakeDaemon) -> None:
    daemon.raises["flush_map"] = Refused("mpathb is mounted")
    code, _, err = run("flush", "mpathb", "--force")
    assert code == 7 and "--force" not in one_error_line(err)


def test_refusal_json(run: Run, daemon: FakeDaemon) -> None:
    daemon.raises["flush_map"] = Refused("mpathb is open")
    code, out, err = run("--json", "flush", "mpathb")
    assert code == 7
    one_error_line(err)
    doc = json.loads(out)
    validate(doc, schema.ACTION_SCHEMA)
    assert doc["error"] == {"kind": "refused", "message": "mpathb is open", "exit_code": 7}


@pytest.mark.parametrize(
    ("exc", "code", "needle"),
    [
        (client.DaemonNotRunning("/run/dmpath/dmpathd.sock", "No such file"), 9, "not running"),
        (PermissionDenied("fail_path needs root"), 10, "actions need root"),
        (NotFound("no path sdx"), 11, "no path sdx"),
        (Busy("sdb is not idle"), 12, "mpathctl fail PATH"),
        (DmpathError("something\nwent\x1b[31m wrong"), 1, "something went\\x1b[31m wrong"),
    ],
)
def test_daemon_errors_map_to_exit_codes(
    run: Run, daemon: FakeDaemon, exc: DmpathError, code: int, needle: str
) -> None:
    daemon.raises["remove_path"] = exc
    got, out, err = run("remove", "sdb")
    assert got == code and out == ""
    assert needle in one_error_line(err)


def test_internal_error_is_one_line_unless_debug(run: Run, daemon: FakeDaemon) -> None:
    daemon.raises["reconfigure"] = RuntimeError("oops")
    code, _, err = run("reconfigure")
    assert code == 1
    line = one_error_line(err)
    assert "internal error: RuntimeError: oops" in line and "--debug" in line
    code, _, err = run("--debug", "reconfigure")
    assert code == 1 and "Traceback" in err


def test_debug_shows_traceback_for_known_errors(run: Run, daemon: FakeDaemon) -> None:
    daemon.raises["reconfigure"] = NotFound("x")
    code, _, err = run("reconfigure", "--debug")
    assert code == 11 and "Traceback" in err and err.rstrip().endswith("mpathctl: error: x")


def test_ctrl_c(run: Run, daemon: FakeDaemon) -> None:
    daemon.raises["reconfigure"] = KeyboardInterrupt()
    code, _, err = run("reconfigure")
    assert code == 130 and err == "mpathctl: interrupted\n"


# --------------------------------------------------------------------------- views


def test_status_text(run: Run, daemon: FakeDaemon) -> None:
    code, out, err = run("status")
    assert (code, err) == (0, "")
    assert "[2/1] [U_]" in out and "degraded: 1 of 2 paths down" in out
    assert "\x1b" not in out  # a pipe gets no colour...
    assert "[FAILED]" in next(ln for ln in out.splitlines() if "sdd" in ln)  # ...but words
    assert daemon.calls[0][0] == "show"


def test_status_json_validates(run: Run, daemon: FakeDaemon) -> None:
    code, out, _ = run("status", "--json")
    assert code == 0
    doc = json.loads(out)
    validate(doc, schema.STATUS_SCHEMA)
    assert doc == snapshot_to_dict(snapshot())
    assert doc["maps"][0]["status"] == "[2/1] [U_]"


def test_status_of_named_maps(run: Run, daemon: FakeDaemon) -> None:
    code, out, _ = run("--json", "status", "mpathb")
    assert code == 0 and [m["name"] for m in json.loads(out)["maps"]] == ["mpathb"]
    code, _, err = run("status", "nosuch")
    assert code == 11 and "no map named 'nosuch'" in one_error_line(err)


def test_status_multipath_tools_format(run: Run, daemon: FakeDaemon) -> None:
    code, out, _ = run("status", "--format", "multipath-tools")
    assert code == 0
    doc = json.loads(out)
    assert doc["maps"][0]["uuid"] == "1Linux_scsi_debug_2001"
    assert doc["maps"][0]["path_groups"][1]["paths"][0]["chk_st"] == "faulty"
    assert out.startswith('{\n   "major_version": 0,')
    code, out2, _ = run("show", "maps", "--format", "multipath-tools")
    assert (code, out2) == (0, out)


def test_show_paths_json_validates(run: Run, daemon: FakeDaemon) -> None:
    code, out, _ = run("show", "paths", "--json")
    assert code == 0
    doc = json.loads(out)
    validate(doc, schema.PATHS_SCHEMA)
    assert [(p["name"], p["map"]) for p in doc] == [
        ("sdb", "mpathb"),
        ("sdd", "mpathb"),
        ("sde", ""),
    ]


def test_show_paths_text(run: Run, daemon: FakeDaemon) -> None:
    code, out, _ = run("show", "paths")
    assert code == 0
    assert "[FAILED]" in next(ln for ln in out.splitlines() if "sdd" in ln)


def test_show_maps(run: Run, daemon: FakeDaemon) -> None:
    code, out, _ = run("show", "maps")
    assert code == 0 and "mpathb" in out and "[2/1] [U_]" in out
    code, out, _ = run("show", "maps", "--json")
    validate(json.loads(out), schema.STATUS_SCHEMA)
    code, out, _ = run("show", "maps", "--names")
    assert out == "mpathb\n"
    code, out, _ = run("show", "maps", "--names", "--json")
    assert json.loads(out) == ["mpathb"]
    validate(json.loads(out), schema.NAMES_SCHEMA)


def test_show_map(run: Run, daemon: FakeDaemon) -> None:
    code, out, _ = run("show", "map", "mpathb", "--json")
    assert code == 0
    validate(json.loads(out), schema.MAP_SCHEMA)
    code, out, _ = run("show", "map", "mpathb")
    assert code == 0 and "group 2" in out
    code, out, err = run("show", "map", "nope", "--json")
    assert code == 11
    one_error_line(err)
    validate(json.loads(out), schema.ACTION_SCHEMA)


def test_show_events(run: Run, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)
    code, out, _ = run("show", "events", "--json")
    assert code == 0
    doc = json.loads(out)
    validate(doc, schema.EVENTS_SCHEMA)
    assert len(doc) == 4
    code, out, _ = run("show", "events", "--since", "1h", "--limit", "50")
    assert code == 0
    assert "sdd 3 (flapping)" in out
    assert daemon.calls[-1][:2] == ("events", {"since": pytest.approx(NOW - 3600), "limit": 50})


def test_show_events_accepts_wrapped_list(run: Run, daemon: FakeDaemon) -> None:
    daemon.replies["events"] = {"events": EVENTS}
    code, out, _ = run("--json", "show", "events")
    assert code == 0 and len(json.loads(out)) == 4


def test_show_events_needs_the_daemon(run: Run, daemon: FakeDaemon) -> None:
    daemon.raises["events"] = client.DaemonNotRunning("/run/dmpath/dmpathd.sock")
    code, out, err = run("show", "events")
    assert code == 9 and out == ""
    assert "systemctl start dmpathd" in one_error_line(err)


def test_show_config(run: Run, daemon: FakeDaemon) -> None:
    code, out, _ = run("show", "config")
    assert code == 0 and "polling_interval: 5" in out
    code, out, _ = run("show", "config", "--json")
    assert json.loads(out) == {"defaults": {"polling_interval": 5}}


def test_show_schema(run: Run) -> None:
    code, out, _ = run("show", "schema")
    assert code == 0 and json.loads(out) == schema.STATUS_SCHEMA
    code, out, _ = run("show", "schema", "events")
    assert json.loads(out)["$id"].endswith("/events")


def test_malformed_snapshot_is_an_error_not_a_crash(run: Run, daemon: FakeDaemon) -> None:
    daemon.replies["show"] = {"maps": [{"name": "x"}]}
    code, _, err = run("status")
    assert code == 1 and "unexpected snapshot" in one_error_line(err)


def test_no_color_and_forced_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setenv("NO_COLOR", "1")
    console = main.make_console(False, io.StringIO())
    assert main.render_options(console).ascii
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    console = main.make_console(False, io.StringIO())
    assert not main.render_options(console).ascii
    assert main.render_options(main.make_console(True, io.StringIO())).ascii


# --------------------------------------------------------------------------- watch


def test_watch_updates_and_stops(
    run: Run, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    code, out, _ = run("watch", "--interval", "0.5", "--count", "3")
    assert code == 0
    assert [c[0] for c in daemon.calls] == ["show"] * 3 and sleeps == [0.5, 0.5]
    assert "mpathb" in out and "Ctrl-C to quit" in out


def test_watch_ctrl_c_exits_0(
    run: Run, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(_s: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)
    code, _, err = run("watch")
    assert code == 0 and err == ""


def test_watch_survives_a_daemon_error(
    run: Run, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    daemon.raises["show"] = Busy("dmpathd is busy")
    code, out, _ = run("watch", "--count", "2")
    assert code == 0 and "dmpathd is busy" in out


def test_watch_json_lines(run: Run, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    code, out, _ = run("watch", "--json", "--count", "2")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        validate(json.loads(line), schema.STATUS_SCHEMA)


# --------------------------------------------------------------------------- no daemon


def kernel_snapshot(*, uuid_prefix: str) -> Snapshot:
    snap = snapshot()
    snap = dataclasses.replace(snap, source="kernel", pid=0, events=[], unmapped_paths=[])
    for p in snap.maps[0].paths:
        p.check = Check.UNKNOWN
    return snap


def test_views_fall_back_to_the_kernel(
    run: Run, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon.raises["show"] = client.DaemonNotRunning("/run/dmpath/dmpathd.sock")
    monkeypatch.setattr(kernelview, "read_snapshot", kernel_snapshot)
    code, out, err = run("status")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"[WARN] {render.KERNEL_NOTICE}"
    assert "[2/1] [U_]" in out
    code, out, err = run("status", "--json")
    assert code == 0 and err == f"mpathctl: {render.KERNEL_NOTICE}\n"
    doc = json.loads(out)
    validate(doc, schema.STATUS_SCHEMA)
    assert doc["source"] == "kernel"
    code, out, _ = run("show", "paths")
    assert code == 0 and render.KERNEL_NOTICE in out


def test_no_daemon_and_no_kernel_view_exit_9(
    run: Run, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon.raises["show"] = client.DaemonNotRunning("/run/dmpath/dmpathd.sock")

    def fail(*, uuid_prefix: str) -> Snapshot:
        raise DmpathError("dmsetup ls --target multipath: exit status 1: Permission denied")

    monkeypatch.setattr(kernelview, "read_snapshot", fail)
    code, out, err = run("status")
    assert code == 9 and out == ""
    line = one_error_line(err)
    assert "dmpathd is not running" in line and "Permission denied" in line


def test_actions_never_fall_back(run: Run, daemon: FakeDaemon) -> None:
    daemon.raises["fail_path"] = client.DaemonNotRunning("/run/dmpath/dmpathd.sock")
    code, _, err = run("fail", "sdb")
    assert code == 9 and "dmpathd is not running" in one_error_line(err)


# --------------------------------------------------------------------------- kernel view


def _facts(name: str, devnum: str, hctl: str, state: str = "running") -> sysfs.PathFacts:
    return sysfs.PathFacts(
        name=name,
        devnum=devnum,
        hctl=hctl,
        vendor="Linux",
        model="scsi_debug",
        rev="0191",
        size_sectors=65536,
        scsi_state=state,
        transport=sysfs.Transport.SCSI_UNSPEC,
        wwid_sysfs="naa.33333330000007d0",
        dh_state="detached",
        access_state=None,
        preferred_path=None,
        io_timeout_s=30,
        read_only=False,
        sys_path=f"/sys/devices/pseudo_0/{name}",
    )


FACTS = {
    "sda": _facts("sda", "8:0", "6:0:0:0", "offline"),
    "sdc": _facts("sdc", "8:32", "7:0:0:0"),
}


def test_kernel_view_of_a_dm_map(shared_fixtures: pathlib.Path) -> None:
    table = dmtable.parse_table((shared_fixtures / "dm/dm_table_2pg.txt").read_text())
    status = dmtable.parse_status((shared_fixtures / "dm/dm_status_one_failed.txt").read_text())
    info = dmtable.DmInfo("mpt0", "mpath-naa.33333330000007d0", 254, 0, 0, 1, 3)
    m = kernelview.dm_map(info, table, status, {"8:0": "sda", "8:32": "sdc"}, FACTS)
    assert (m.name, m.wwid, m.sysfs, m.devnode) == (
        "mpt0", "naa.33333330000007d0", "dm-0", "/dev/mapper/mpt0",
    )  # fmt: skip
    assert m.features == "1 queue_if_no_path" and m.queueing and m.hwhandler == "0"
    assert m.size_sectors == 65536 and (m.vendor, m.model) == ("Linux", "scsi_debug")
    assert [(g.number, g.selector, g.state, g.paths) for g in m.groups] == [
        (1, "service-time 0", GroupState.ENABLED, ["sda"]),
        (2, "round-robin 0", GroupState.ACTIVE, ["sdc"]),
    ]
    sda, sdc = m.paths
    assert (sda.kernel_state, sda.fail_count, sda.dev_state, sda.hctl) == (
        KernelState.FAILED, 0, "offline", "6:0:0:0",
    )  # fmt: skip  (fail_count is the daemon's history: unknown here)
    assert sdc.kernel_state == KernelState.ACTIVE and sdc.group == 2
    assert sda.check == Check.UNKNOWN and sda.checker == ""
    assert m.brackets() == "[2/1] [_U]"
    validate(snapshot_to_dict(Snapshot(source="kernel", maps=[m])), schema.STATUS_SCHEMA)


def test_kernel_view_of_an_md_array(shared_fixtures: pathlib.Path) -> None:
    stat = mdstat.parse_mdstat((shared_fixtures / "md/mdstat_one_failed.txt").read_text())
    m = kernelview.md_map(stat.arrays[0], FACTS)
    assert (m.name, m.backend, m.sysfs, m.size_sectors) == ("md0", Backend.MD, "md0", 63488)
    assert [p.name for p in m.paths] == ["sdc", "sda"]
    assert m.brackets() == "[2/1] [U_]"  # as /proc/mdstat says
    assert m.alerts == [] and m.wwid == "naa.33333330000007d0"


def test_kernel_view_of_an_md_array_with_a_spare_path() -> None:
    """A path added to a full md multipath array is a spare (md's standby path): shown
    as such, and not in the brackets, which then read exactly as /proc/mdstat's."""
    stat = mdstat.parse_mdstat(
        "Personalities : [multipath]\n"
        "md0 : active multipath sdd[2](S) sdc[0] sda[1]\n"
        "      63488 blocks super 1.2 [2/2] [UU]\n"
        "\n"
        "unused devices: <none>\n"
    )
    m = kernelview.md_map(stat.arrays[0], FACTS)
    states = {p.name: p.kernel_state for p in m.paths}
    assert states == {"sdc": KernelState.ACTIVE, "sda": KernelState.ACTIVE,
                      "sdd": KernelState.SPARE}  # fmt: skip
    assert m.working == 2
    assert m.brackets() == "[2/2] [UU]"
    assert m.alerts == []  # it agrees with the kernel's own status
    validate(snapshot_to_dict(Snapshot(source="kernel", maps=[m])), schema.STATUS_SCHEMA)


def test_kernel_view_reports_a_kernel_status_it_cannot_express() -> None:
    array = mdstat.parse_mdstat(
        "Personalities : [multipath]\n"
        "md0 : active multipath sdc[0]\n"
        "      31744 blocks super 1.2 [2/1] [U_]\n\nunused devices: <none>\n"
    ).arrays[0]
    m = kernelview.md_map(array, {})
    assert m.alerts == ["the kernel reports [2/1] [U_]"]


def test_read_snapshot_with_fake_kernel(tmp_path: pathlib.Path) -> None:
    mdstat_file = tmp_path / "mdstat"
    mdstat_file.write_text(
        "Personalities : [multipath] [raid1]\n"
        "md0 : active multipath sdc[0] sda[1](F)\n"
        "      31744 blocks super 1.2 [2/1] [U_]\n"
        "md1 : active raid1 sdx[0] sdy[1]\n"
        "      31744 blocks super 1.2 [2/2] [UU]\n\nunused devices: <none>\n"
    )
    snap = kernelview.read_snapshot(
        str(tmp_path / "sys"), str(mdstat_file), dm_reader=lambda _root, _facts: []
    )
    assert snap.source == "kernel"
    assert [m.name for m in snap.maps] == ["md0"]  # raid1 is not multipath


def test_schema_documents_every_model_field() -> None:
    defs = schema.DEFS
    assert set(defs["path"]["properties"]) == {f.name for f in dataclasses.fields(Path)}
    assert set(defs["group"]["properties"]) == {f.name for f in dataclasses.fields(PathGroup)}
    assert set(defs["event"]["properties"]) == {f.name for f in dataclasses.fields(Event)}
    assert set(defs["map"]["properties"]) == {f.name for f in dataclasses.fields(Map)} | {
        "status",
        "working",
    }
    assert set(schema.STATUS_SCHEMA["properties"]) == {f.name for f in dataclasses.fields(Snapshot)}


def test_exit_codes_are_documented_in_the_man_page() -> None:
    man = pathlib.Path(__file__).resolve().parents[2] / "man" / "mpathctl.8"
    text = man.read_text()
    for code in main.EXIT_CODES:
        assert re.search(rf"^\.B {code}$|^\.IP {code}\b|^{code}\b", text, re.M), code


def test_the_native_nvme_view_validates() -> None:
    """The kernel's native NVMe multipath in the status document (tuples of the frozen
    records become arrays)."""
    from dmpath.kernel.nvme import NativeNamespace, NativePath, NativeSubsystem

    path = NativePath("nvme0c1n1", "nvme1", "live", "tcp", "traddr=203.0.113.18", "optimized")
    ns = NativeNamespace("nvme0n1", 1, "uuid.5c3b1a2e", "259:1", 65536, (path,))
    sub = NativeSubsystem("nvme-subsys0", "nqn.x", "Linux", "1", "numa", (ns,))
    doc = snapshot_to_dict(Snapshot(nvme_native=[sub]))
    validate(doc, schema.STATUS_SCHEMA)
    doc["nvme_native"][0]["namespaces"][0]["paths"][0]["extra"] = 1
    assert len(list(_errors(doc, schema.STATUS_SCHEMA, schema.STATUS_SCHEMA, "$"))) == 1


def test_kernel_view_reads_maps_with_the_configured_uuid_prefix(
    run: Run, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    import dmpath.config

    conf = tmp_path / "dmpath.toml"
    conf.write_text('[defaults]\ndm_uuid_prefix = "san1-"\n')
    monkeypatch.setattr(dmpath.config, "DEFAULT_CONFIG_PATH", str(conf))
    daemon.raises["show"] = client.DaemonNotRunning("/run/dmpath/dmpathd.sock")
    asked: list[str] = []

    def read(*, uuid_prefix: str) -> Snapshot:
        asked.append(uuid_prefix)
        return kernel_snapshot(uuid_prefix=uuid_prefix)

    monkeypatch.setattr(kernelview, "read_snapshot", read)
    assert run("status")[0] == 0
    assert asked == ["san1-"]


# --------------------------------------------------------------------------- generated argv

_WORDS = st.sampled_from(
    ["status", "show", "paths", "maps", "map", "config", "events", "schema", "fail",
     "reinstate", "add", "remove", "create", "flush", "switchgroup", "queueing",
     "reconfigure", "on", "off", "config", "sdb", "8:16", "/dev/sdb", "mpatha", "--force",
     "--name", "--since", "--limit", "--format", "--json", "--socket", "--no-color", "-",
     "--", "0", "-1", "1" + "0" * 5000, "30m", "nan", "1e999"]
)
_TOKENS = _WORDS | st.text(max_size=8) | st.sampled_from(["\x00", "\r", "\x1b[2J", "\ud800"])
#: never generated: watch runs until Ctrl-C, migrate-md and import read the system, and
#: --debug prints tracebacks on purpose
_LEFT_OUT = {"watch", "migrate-md", "import", "--debug", "-h", "--help"}


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_WORDS, st.lists(_TOKENS.filter(lambda t: t not in _LEFT_OUT), max_size=5))
def test_any_command_line_fails_in_one_line_with_a_documented_status(
    daemon: FakeDaemon, run: Run, command: str, tokens: list[str]
) -> None:
    code, out, err = run(command, *tokens)
    assert code in main.EXIT_CODES
    if code == 0:
        assert not err or "Traceback" not in err
        return
    line = one_error_line(err)
    assert "internal error" not in line  # the last line of defence is for bugs
    if code == main.EXIT_USAGE and "--json" not in tokens:
        assert not out
