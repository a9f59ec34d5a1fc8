"""The socket fuzzer's pure parts: its cases, the framing it expects, its reply check."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings

from dmpath import protocol as p
from dmpath.lab import fuzzcases as fc

PING = b'{"version":1,"op":"ping"}\n'
MAX = p.MAX_REQUEST_BYTES


def test_framed_lines_follow_the_daemon_framing() -> None:
    assert fc.framed_lines(PING * 2) == ([PING, PING], b"")
    assert fc.framed_lines(PING + b'{"ver') == ([PING], b'{"ver')
    at_limit = b"x" * (MAX - 1) + b"\n"
    assert fc.framed_lines(at_limit + PING) == ([at_limit, PING], b"")
    # over the limit: one reply (bad_request), then the daemon closes: nothing after
    over = b"x" * MAX + b"\n"
    assert fc.framed_lines(over + PING) == ([over], b"")
    assert fc.framed_lines(b"{" * MAX) == ([b"{" * MAX], b"")
    assert fc.framed_lines(b"{" * (MAX - 1)) == ([], b"{" * (MAX - 1))


def test_expected_kinds() -> None:
    fail = p.encode_request("fail_path", {"path": "sdb"})
    assert fc.expected_kinds(b"junk\n", privileged=True) == {"bad_request"}
    assert fc.expected_kinds(fail, privileged=False) == {"permission_denied"}
    root = fc.expected_kinds(fail, privileged=True)
    assert "internal" not in root and "permission_denied" not in root and "ok" in root
    # a malformed mutation is a bad request for anyone: validation comes first
    assert fc.expected_kinds(b'{"version":1,"op":"fail_path"}\n', False) == {"bad_request"}


def test_answer_kind_accepts_what_the_daemon_sends() -> None:
    assert fc.answer_kind(p.encode_result({"a": "caf\u00e9"})) == "ok"
    assert fc.answer_kind(p.encode_error(p.ErrorKind.BUSY, "x\ny")) == "busy"


@pytest.mark.parametrize(
    "line",
    [
        b'{"version":1,"ok":true,"result":1}',  # no newline
        b'{"version":1,"ok":true,"result":1}\n\n',
        b'{"version":1,"ok":true,"result":"\xc3\xa9"}\n',
        b'{"version":1,"ok":true}\n',
        b'{"version":2,"ok":true,"result":1}\n',
        b'{"version":1,"ok":false,"error":{"kind":"oops","message":"m"}}\n',
        b'{"version":1,"ok":false,"error":{"kind":"busy","message":"a\\nb"}}\n',
        b'{"version":1,"ok":false,"error":{"kind":"busy"}}\n',
        b'{"version":1,"ok":false,"error":"busy"}\n',
        b"[]\n",
    ],
)
def test_answer_kind_refuses_malformed_replies(line: bytes) -> None:
    with pytest.raises(fc.MalformedAnswer):
        fc.answer_kind(line)


@settings(max_examples=300, deadline=None)
@given(fc.cases())
def test_every_fuzz_line_decodes_or_is_a_bad_request(case: fc.Case) -> None:
    """What the daemon does first with every line the fuzzer sends: nothing but a
    request or a BadRequest may come out (an OverflowError once did)."""
    lines, rest = fc.framed_lines(case.data)
    assert case.requests == len(lines) + bool(rest)
    for line in lines:
        with contextlib.suppress(p.BadRequest):
            p.decode_request(line)


@settings(max_examples=100, deadline=None)
@given(fc.cases(tuple(op for op in p.OPS if p.is_mutating(op)), ("sdb", "mpatha")))
def test_root_mutations_name_nothing_real(case: fc.Case) -> None:
    for line in fc.framed_lines(case.data)[0]:
        with contextlib.suppress(p.BadRequest):
            req = p.decode_request(line)
            for key in ("path", "map", "wwid", "name"):
                value = req.args.get(key)
                assert value is None or value.startswith(fc.ROOT_NAME_PREFIX), json.dumps(
                    req.args
                )
