"""Protocol v1 without sockets: framing, the op table, and the error mapping both ways."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmpath import protocol as p
from dmpath.errors import (
    CommandError,
    ConfigError,
    DeviceError,
    DmpathError,
    MissingKernelFeature,
    ParseError,
    PolicyRefusal,
)


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def req(op: str, args: Any = None, **extra: Any) -> bytes:
    msg: dict[str, Any] = {"version": 1, "op": op, **extra}
    if args is not None:
        msg["args"] = args
    return line(msg)


def bad(data: bytes, match: str = "") -> str:
    with pytest.raises(p.BadRequest, match=match) as info:
        p.decode_request(data)
    return str(info.value)


# --- valid requests of every op, with defaults ------------------------------------------

GOOD: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("ping", {}, {}),
    ("show", {}, {}),
    ("show_config", {}, {}),
    ("events", {}, {}),
    ("events", {"since": 1700000000.5, "limit": 10}, {"since": 1700000000.5, "limit": 10}),
    ("events", {"since": 0}, {"since": 0}),
    ("events", {"limit": 0}, {"limit": 0}),
    ("fail_path", {"path": "sdb"}, {"path": "sdb", "force": False}),
    ("fail_path", {"path": "8:16", "force": True}, {"path": "8:16", "force": True}),
    ("reinstate_path", {"path": "/dev/sdb"}, {"path": "/dev/sdb"}),
    ("add_path", {"path": "sdc"}, {"path": "sdc"}),
    ("remove_path", {"path": "sdc"}, {"path": "sdc"}),
    ("create_map", {"path": "sdb"}, {"path": "sdb"}),
    ("create_map", {"wwid": "3600a0b80"}, {"wwid": "3600a0b80"}),
    ("create_map", {"wwid": "3600a0b80", "name": "data"}, {"wwid": "3600a0b80", "name": "data"}),
    ("flush_map", {"map": "mpatha"}, {"map": "mpatha", "force": False}),
    ("flush_map", {"map": "mpatha", "force": True}, {"map": "mpatha", "force": True}),
    ("resize_map", {"map": "mpatha"}, {"map": "mpatha"}),
    ("multipathd_show", {"words": ["show", "paths"]}, {"words": ["show", "paths"]}),
    ("multipathd", {"words": ["-k", ""]}, {"words": ["-k", ""]}),
    ("switch_group", {"map": "mpatha", "group": 2}, {"map": "mpatha", "group": 2}),
    ("queueing", {"map": "mpatha", "enabled": False}, {"map": "mpatha", "enabled": False}),
    ("reconfigure", {}, {}),
]


@pytest.mark.parametrize(("op", "args", "expected"), GOOD)
def test_every_op_accepts_good_args_and_fills_defaults(
    op: str, args: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert p.decode_request(req(op, args)) == p.Request(op, expected)
    # the client builds the same thing, which the server then reads back unchanged
    assert p.decode_request(p.encode_request(op, args)) == p.Request(op, expected)


def test_every_op_in_the_table_is_covered() -> None:
    assert {op for op, _, _ in GOOD} == set(p.OPS)


def test_args_may_be_omitted_when_none_are_required() -> None:
    assert p.decode_request(req("ping")) == p.Request("ping", {})
    bad(req("fail_path"), "missing argument 'path'")


def test_read_only_and_mutating_ops() -> None:
    assert {op for op in p.OPS if not p.is_mutating(op)} == {
        "ping",
        "show",
        "show_config",
        "events",
        "multipathd_show",
    }
    assert p.is_mutating("no_such_op")  # deny by default


# --- wrong args, op by op ---------------------------------------------------------------

BAD_ARGS: list[tuple[str, Any, str]] = [
    ("ping", {"x": 1}, "unknown argument"),
    ("show", [], "args must be an object"),
    ("show_config", None, "args must be an object"),
    ("events", {"since": "yesterday"}, "'since' must be a number"),
    ("events", {"since": True}, "'since' must be a number"),
    ("events", {"since": -1}, "'since' must be a finite number >= 0"),
    ("events", {"limit": 1.5}, "'limit' must be an integer"),
    ("events", {"limit": -1}, "'limit' must be >= 0"),
    ("events", {"limit": True}, "'limit' must be an integer"),
    ("fail_path", {}, "missing argument 'path'"),
    ("fail_path", {"path": 16}, "'path' must be a string"),
    ("fail_path", {"path": ""}, "'path' must not be empty"),
    ("fail_path", {"path": "sdb\nsdc"}, "control characters"),
    ("fail_path", {"path": "x" * 5000}, "longer than 4096"),
    ("fail_path", {"path": "sdb", "force": "yes"}, "'force' must be true or false"),
    ("fail_path", {"path": "sdb", "force": 1}, "'force' must be true or false"),
    ("fail_path", {"path": "sdb", "forse": True}, "unknown argument.*forse"),
    ("reinstate_path", {"path": None}, "'path' must be a string"),
    ("add_path", {"device": "sdb"}, "unknown argument"),
    ("remove_path", {"path": ["sdb"]}, "'path' must be a string"),
    ("create_map", {}, "exactly one of path, wwid"),
    ("create_map", {"path": "sdb", "wwid": "36"}, "exactly one of path, wwid"),
    ("create_map", {"name": "data"}, "exactly one of path, wwid"),
    ("create_map", {"wwid": 36}, "'wwid' must be a string"),
    ("create_map", {"wwid": "36", "name": ""}, "'name' must not be empty"),
    ("flush_map", {"force": True}, "missing argument 'map'"),
    ("resize_map", {"map": "a", "force": True}, "unknown argument.*force"),
    ("multipathd_show", {"words": []}, "list of 1 to 64 strings"),
    ("multipathd_show", {"words": "show paths"}, "list of 1 to 64 strings"),
    ("multipathd", {"words": ["del", "path", "sd\x1b"]}, "word that contains control"),
    ("multipathd", {"words": ["x"] * 65}, "list of 1 to 64 strings"),
    ("flush_map", {"map": "a", "force": None}, "'force' must be true or false"),
    ("switch_group", {"map": "a"}, "missing argument 'group'"),
    ("switch_group", {"map": "a", "group": 0}, "'group' must be >= 1"),
    ("switch_group", {"map": "a", "group": "2"}, "'group' must be an integer"),
    ("switch_group", {"map": "a", "group": 2.0}, "'group' must be an integer"),
    ("switch_group", {"map": "a", "group": True}, "'group' must be an integer"),
    ("queueing", {"enabled": True}, "missing argument 'map'"),
    ("queueing", {"map": "a", "enabled": "on"}, "'enabled' must be true or false"),
    ("reconfigure", {"now": True}, "unknown argument"),
]


@pytest.mark.parametrize(("op", "args", "match"), BAD_ARGS)
def test_wrong_args_are_bad_requests(op: str, args: Any, match: str) -> None:
    msg = {"version": 1, "op": op, "args": args}
    message = bad(line(msg), match)
    assert message.startswith(op + ":")
    # the client refuses the same call before it connects
    if isinstance(args, dict):
        with pytest.raises(p.BadRequest, match=match):
            p.encode_request(op, args)


def test_every_op_has_a_bad_args_case() -> None:
    assert {op for op, _, _ in BAD_ARGS} == set(p.OPS)


# --- framing and envelope ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"hello\n", "not valid JSON"),
        (b"\n", "not valid JSON"),
        (b'{"version": 1, "op": "ping"\n', "not valid JSON"),
        (b"\xff\xfe\x00garbage\n", "not UTF-8"),
        (b'{"version": 1, "op": "p\xc3ing"}\n', "not UTF-8"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'"ping"\n', "not a JSON object"),
        (b"null\n", "not a JSON object"),
        (b'{"version": 1, "op": "ping"}\n{"version": 1, "op": "ping"}\n', "several lines"),
        (b'{"version": 1, "op": "events", "args": {"since": NaN}}\n', "NaN is not JSON"),
        (b'{"version": 1, "op": "events", "args": {"since": Infinity}}\n', "not JSON"),
        (b'{"version": 1, "op": "events", "args": {"limit": 1' + b"0" * 5000 + b"}}\n", "JSON"),
        (b"[" * 30000 + b"]" * 30000 + b"\n", "not valid JSON"),
        (line({"op": "ping"}), "no integer 'version'"),
        (line({"version": "1", "op": "ping"}), "no integer 'version'"),
        (line({"version": True, "op": "ping"}), "no integer 'version'"),
        (line({"version": 2, "op": "ping"}), "protocol version 2"),
        (line({"version": 0, "op": "ping"}), "protocol version 0"),
        (line({"version": 1}), "no string 'op'"),
        (line({"version": 1, "op": 7}), "no string 'op'"),
        (line({"version": 1, "op": "format_disk"}), "unknown op 'format_disk'"),
        (line({"version": 1, "op": "ping", "id": 3}), "unknown key"),
    ],
)
def test_malformed_requests_are_bad_requests(data: bytes, match: str) -> None:
    bad(data, match)


def test_request_size_limit_counts_the_newline() -> None:
    head = b'{"version":1,"op":"ping","args":{}}'
    pad = b" " * (p.MAX_REQUEST_BYTES - len(head) - 1)
    assert p.decode_request(head + pad + b"\n").op == "ping"  # exactly 64 KiB
    bad(head + pad + b" \n", "larger than 65536 bytes")
    # ASCII escaping makes a character outside the BMP 12 bytes on the wire
    emoji = "\U0001f600" * p.MAX_STRING
    with pytest.raises(p.BadRequest, match="larger than"):
        p.encode_request("create_map", {"wwid": emoji, "name": emoji})


def test_newline_is_optional_on_the_last_line() -> None:
    assert p.decode_request(b'{"version":1,"op":"ping"}').op == "ping"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_bad_request(data: bytes) -> None:
    with contextlib.suppress(p.BadRequest):
        p.decode_request(data)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )
)
def test_arbitrary_json_is_a_request_or_a_bad_request(obj: Any) -> None:
    try:
        data = json.dumps(obj).encode() + b"\n"
        wrapped = json.dumps({"version": 1, "op": "events", "args": obj}).encode() + b"\n"
    except ValueError:
        return
    for d in (data, wrapped):
        with contextlib.suppress(p.BadRequest):
            p.decode_request(d)


# --- replies ----------------------------------------------------------------------------


def test_result_round_trip_and_wire_form() -> None:
    data = p.encode_result({"maps": [], "name": "caf\u00e9 \u2603"})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert data.isascii()  # device strings with odd bytes still make one ASCII line
    assert json.loads(data) == {
        "version": 1,
        "ok": True,
        "result": {"maps": [], "name": "caf\u00e9 \u2603"},
    }
    assert p.decode_response(data) == {"maps": [], "name": "caf\u00e9 \u2603"}
    assert p.decode_response(p.encode_result(None)) is None


def test_result_that_is_not_json_data_is_refused() -> None:
    with pytest.raises(TypeError):
        p.encode_result({"x": object()})
    with pytest.raises(ValueError):
        p.encode_result(float("nan"))


def test_error_wire_form_is_one_bounded_line() -> None:
    data = p.encode_error(p.ErrorKind.REFUSED, "sdb is the last\nworking path  of mpatha")
    assert json.loads(data) == {
        "version": 1,
        "ok": False,
        "error": {"kind": "refused", "message": "sdb is the last working path of mpatha"},
    }
    long = json.loads(p.encode_error(p.ErrorKind.FAILED, "x" * 5000))["error"]["message"]
    assert len(long) == p.MAX_MESSAGE_CHARS and long.endswith("...")


# --- error mapping both ways -----------------------------------------------------------

SERVER_SIDE: list[tuple[BaseException, p.ErrorKind, type[DmpathError], int]] = [
    (p.BadRequest("ping: bad"), p.ErrorKind.BAD_REQUEST, p.BadRequest, 2),
    (p.PermissionDenied("needs root"), p.ErrorKind.PERMISSION_DENIED, p.PermissionDenied, 10),
    (p.NotFound("no map named 'x'"), p.ErrorKind.NOT_FOUND, p.NotFound, 11),
    (PolicyRefusal("sdb is the last working path"), p.ErrorKind.REFUSED, p.Refused, 7),
    (p.Refused("again"), p.ErrorKind.REFUSED, p.Refused, 7),
    (p.Busy("mpatha is open"), p.ErrorKind.BUSY, p.Busy, 12),
    (
        CommandError(("dmsetup", "message"), 1, "device-mapper: oops\nCommand failed.\n"),
        p.ErrorKind.FAILED,
        p.OperationFailed,
        4,
    ),
    (DeviceError("sdb", "offline"), p.ErrorKind.FAILED, p.OperationFailed, 4),
    (ParseError("dmsetup status", "short line"), p.ErrorKind.FAILED, p.OperationFailed, 4),
    (MissingKernelFeature("dm-multipath", "no module"), p.ErrorKind.FAILED, p.OperationFailed, 4),
    (ConfigError("/etc/dmpath.conf", "bad", line=3), p.ErrorKind.FAILED, p.OperationFailed, 4),
    (DmpathError("something"), p.ErrorKind.FAILED, p.OperationFailed, 4),
    (p.InternalError("bug"), p.ErrorKind.INTERNAL, p.InternalError, 1),
]


@pytest.mark.parametrize(("exc", "kind", "cls", "code"), SERVER_SIDE)
def test_exception_to_reply_to_exception(
    exc: BaseException, kind: p.ErrorKind, cls: type[DmpathError], code: int
) -> None:
    assert p.kind_for_exception(exc) is kind
    reply = p.encode_exception(exc)
    with pytest.raises(DmpathError) as info:
        p.decode_response(reply)
    assert type(info.value) is cls
    assert info.value.exit_code == code
    assert str(info.value) == p.one_line(str(exc))  # the daemon's message, as sent


class _KernelBusy(CommandError):
    retryable = True


def test_a_retryable_error_is_busy() -> None:
    exc = _KernelBusy(("mdadm", "/dev/md0", "--remove", "/dev/sdb"), 1, "Device or resource busy")
    assert p.kind_for_exception(exc) is p.ErrorKind.BUSY
    with pytest.raises(p.Busy, match="resource busy"):
        p.decode_response(p.encode_exception(exc))


def test_refusal_is_still_a_policy_refusal_on_the_client() -> None:
    with pytest.raises(PolicyRefusal):
        p.decode_response(p.encode_exception(PolicyRefusal("last path")))


def test_unexpected_exception_is_internal_and_names_the_log() -> None:
    assert p.kind_for_exception(KeyError("sdb")) is p.ErrorKind.INTERNAL
    with pytest.raises(p.InternalError, match=r"KeyError: 'sdb'.*dmpathd log"):
        p.decode_response(p.encode_exception(KeyError("sdb")))


def test_every_kind_has_an_exception_with_a_distinct_exit_code() -> None:
    codes = {kind: p.exception_for_error(kind, "m").exit_code for kind in p.ErrorKind}
    assert codes == {
        p.ErrorKind.BAD_REQUEST: 2,
        p.ErrorKind.PERMISSION_DENIED: 10,
        p.ErrorKind.NOT_FOUND: 11,
        p.ErrorKind.REFUSED: 7,
        p.ErrorKind.BUSY: 12,
        p.ErrorKind.FAILED: 4,
        p.ErrorKind.INTERNAL: 1,
    }
    for kind in p.ErrorKind:  # the round trip is the identity on kinds
        assert p.kind_for_exception(p.exception_for_error(kind, "m")) is kind


def test_unknown_kind_from_a_newer_daemon_still_carries_its_message() -> None:
    data = line({"version": 1, "ok": False, "error": {"kind": "frobbed", "message": "hm"}})
    with pytest.raises(DmpathError, match=r"^hm$") as info:
        p.decode_response(data)
    assert info.value.exit_code == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage\n",
        b"\xff\n",
        line([1]),
        line({"ok": True, "result": 1}),
        line({"version": 2, "ok": True, "result": 1}),
        line({"version": 1, "ok": True}),
        line({"version": 1, "ok": "yes", "result": 1}),
        line({"version": 1, "ok": False}),
        line({"version": 1, "ok": False, "error": {"kind": "busy"}}),
        line({"version": 1, "ok": False, "error": {"kind": 1, "message": "m"}}),
    ],
)
def test_malformed_replies_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(p.ProtocolError, match="reply"):
        p.decode_response(data)


def test_an_integer_too_large_for_a_float_is_a_timestamp_not_a_crash() -> None:
    # found by the socket fuzzer: math.isfinite(10**400) raised OverflowError, the
    # daemon's connection task died and the client got no reply at all
    huge = b'{"version":1,"op":"events","args":{"since":1' + b"0" * 400 + b"}}\n"
    assert p.decode_request(huge) == p.Request("events", {"since": 10**400})
    bad(b'{"version":1,"op":"events","args":{"since":-1' + b"0" * 400 + b"}}\n", ">= 0")
