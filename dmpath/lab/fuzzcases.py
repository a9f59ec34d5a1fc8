"""What the control-socket fuzzer sends and what it expects back (pure: no sockets).

A ``Case`` is what one client does on one connection: the bytes it sends and how (all at
once, byte by byte, or cut off mid-request). The Hypothesis strategies here make them:
requests that are almost right (every op, arguments of the right and of the wrong type,
huge numbers, control characters, lone surrogates, unknown keys, other versions), lines
that are not JSON or not UTF-8 at all, and lines over the 64 KiB request limit.

The expectations come from ``dmpath.protocol`` itself, applied to each line here on the
client side: a line ``decode_request`` refuses must be answered ``bad_request``; a valid
mutating request from a user other than root must be answered ``permission_denied``;
nothing may ever be answered ``internal``; and every reply must be one well-formed line.
``framed_lines`` follows the daemon's framing, so the number of replies a case is owed is
known before it is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from dmpath import protocol as p

#: how a case is sent: ``whole`` all at once (several lines: pipelined), ``drip`` one
#: byte per write, ``truncated`` ends mid-request and half-closes (the replies owed
#: for the whole lines are still read), ``abort`` ends mid-request and closes at once
MODES = ("whole", "drip", "truncated", "abort")

#: strings of the root client's mutating requests start with this: no path or map is
#: called so, so a request that passes validation finds nothing to act on
ROOT_NAME_PREFIX = "fuzz-"


class MalformedAnswer(AssertionError):
    """A reply that is not one protocol v1 line."""


@dataclass(frozen=True)
class Case:
    mode: str
    data: bytes

    @property
    def requests(self) -> int:
        """Requests sent: whole lines plus a trailing partial one."""
        lines, rest = framed_lines(self.data)
        return len(lines) + (1 if rest else 0)


def framed_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """The request lines the daemon answers for ``data`` and the unanswered rest.

    As the daemon frames them: lines in order, each owed one reply; a line (or a rest
    without a newline) over ``MAX_REQUEST_BYTES`` is owed one ``bad_request`` and ends the
    connection, so nothing after it is answered.
    """
    lines: list[bytes] = []
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            rest = data[start:]
            if len(rest) >= p.MAX_REQUEST_BYTES:
                return [*lines, rest], b""
            return lines, rest
        line = data[start : end + 1]
        lines.append(line)
        if len(line) > p.MAX_REQUEST_BYTES:
            return lines, b""
        start = end + 1


def expected_kinds(line: bytes, privileged: bool) -> frozenset[str]:
    """The reply kinds (``ok`` for a result) acceptable for one request line."""
    try:
        req = p.decode_request(line)
    except p.BadRequest:
        return frozenset({p.ErrorKind.BAD_REQUEST.value})
    if p.is_mutating(req.op) and not privileged:
        return frozenset({p.ErrorKind.PERMISSION_DENIED.value})
    # the handler's verdict: anything but a bug or a refusal of root
    return frozenset(
        {"ok"} | {k.value for k in p.ErrorKind} - {"internal", "permission_denied"}
    )


def answer_kind(line: bytes) -> str:
    """``ok`` or the error kind of one reply line; ``MalformedAnswer`` if it is not one
    protocol v1 reply (one ASCII line, an object with exactly the documented keys)."""
    if not line.endswith(b"\n") or line.count(b"\n") != 1:
        raise MalformedAnswer(f"reply is not one line: {line[:200]!r}")
    if not line.isascii():
        raise MalformedAnswer(f"reply is not ASCII: {line[:200]!r}")
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise MalformedAnswer(f"reply is not JSON ({exc}): {line[:200]!r}") from None
    if not isinstance(obj, dict) or obj.get("version") != p.PROTOCOL_VERSION:
        raise MalformedAnswer(f"reply is not a v1 object: {line[:200]!r}")
    if obj.get("ok") is True and set(obj) == {"version", "ok", "result"}:
        return "ok"
    err = obj.get("error")
    if obj.get("ok") is not False or set(obj) != {"version", "ok", "error"}:
        raise MalformedAnswer(f"reply is neither a result nor an error: {line[:200]!r}")
    if not isinstance(err, dict) or set(err) != {"kind", "message"}:
        raise MalformedAnswer(f"error without exactly kind and message: {line[:200]!r}")
    kind, message = err["kind"], err["message"]
    if kind not in {k.value for k in p.ErrorKind}:
        raise MalformedAnswer(f"unknown error kind {kind!r}")
    if not isinstance(message, str) or not message or message != p.one_line(message):
        raise MalformedAnswer(f"error message is not one bounded line: {message!r}")
    return str(kind)


# --- strategies --------------------------------------------------------------------------

# Few draws per request: the lab's emulated CPU makes every Hypothesis draw costly, so
# most values come from fixed pools (one draw each) in which repetition sets the odds.

#: stands for "leave this key out"
_ABSENT = object()

_HUGE_INTS = [2**63, -(2**63) - 1, 10**308, 10**400, 10**4000]
_ODD_NUMBERS = [*_HUGE_INTS, -1, 0, 1.5, -0.0, 1e308, 5e-324, True, False]
_ODD_TEXT = [
    "", "\x00", "\ud800", "\udcff", "\u2028", "\x85", "\x1b[31m", "\ufeff", "\U0001f4a9",
    "%s%n", "sdb\nsdc", "a b", "../../../dev/sda", "8:16", "1:2:3", "/dev/", "x" * 5000,
]
_TEXT = st.sampled_from(_ODD_TEXT) | st.text(max_size=16)
_SCALARS = st.sampled_from([None, True, False, *_ODD_NUMBERS, *_ODD_TEXT]) | st.integers()
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
#: a version: mostly 1
_VERSIONS = st.sampled_from([1] * 18 + [0, 2, -1, "1", 1.0, True, None, 2**64, [1], _ABSENT])
#: keys beside version, op and args: mostly none
_EXTRA_KEYS: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [{}] * 18 + [{"Op": "ping"}, {"args ": {}}, {"": 1}, {"version\u0000": 1}, {"uid": 0}]
)


def _names(names: tuple[str, ...], privileged: bool) -> list[str]:
    """Strings for path/map/wwid/name arguments: for root only ones that name nothing
    (its valid mutations must change nothing); for others mostly the real names."""
    made_up = [ROOT_NAME_PREFIX + s for s in ("a", "sdb", "mpatha", "\u00e9", "x" * 4000)]
    if privileged or not names:
        return made_up
    return [*names, *names, *names, *made_up]


def _words(names: list[str]) -> list[list[str]]:
    """multipathd command lines: shows, and changes to the names of the pool."""
    changes = [[verb, obj, n] for n in names for verb, obj in (("del", "map"), ("fail", "path"))]
    return [["show", "paths"], ["show", "maps", "raw", "format", "%n %w"], *changes]


def _arg_pool(name: str, names: list[str], required: bool) -> st.SearchStrategy[Any]:
    """One argument's value (``_ABSENT``: left out): mostly right, sometimes not."""
    if name in ("path", "map", "wwid", "name"):
        right: list[Any] = names
    elif name in ("force", "enabled"):
        right = [True, False]
    elif name == "group":
        right = [1, 2, 3]
    elif name == "words":
        right = _words(names)
    else:  # since, limit
        right = [0, 1, 5, 1.5e9]
    absent = [_ABSENT] * (1 if required else 6)
    wrong: list[Any] = [None, "", "x" * 5000, "\x00", "1", [], {}, True, -1, 10**400, 1e308, 0.5]
    pool = st.sampled_from(right * 6 + absent + wrong)
    return pool | pool | pool | _JSON  # now and then any JSON at all


def _request_objects(
    ops: tuple[str, ...], names: list[str]
) -> st.SearchStrategy[dict[str, Any]]:
    odd_ops = ["", "PING", "op_ping", "ping\u0000", "__init__", "handle", "show ", 1, None, [1]]
    op_pool = st.sampled_from([*ops * 6, *odd_ops])
    args_of = {
        op: st.fixed_dictionaries(
            {n: _arg_pool(n, names, spec.args[n].required) for n in sorted(spec.args)}
        )
        for op, spec in p.OPS.items()
    }
    unknown_args = st.fixed_dictionaries({"path": _arg_pool("path", names, True)})

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        op = draw(op_pool)
        obj: dict[str, Any] = {"version": draw(_VERSIONS), "op": op}
        spec_args = args_of.get(op) if isinstance(op, str) else None
        args = draw(spec_args if spec_args is not None else unknown_args)
        args = {k: v for k, v in args.items() if v is not _ABSENT}
        args.update(draw(_EXTRA_KEYS))
        if args or draw(st.sampled_from([True, False])):
            obj["args"] = args
        obj.update(draw(_EXTRA_KEYS))
        return {k: v for k, v in obj.items() if v is not _ABSENT}

    return build()


def _valid_requests(ops: tuple[str, ...], names: list[str]) -> st.SearchStrategy[bytes]:
    """Requests ``decode_request`` accepts: every argument right (for an unprivileged
    client, each one must be refused as such)."""
    name_pool = st.sampled_from(names)
    right: dict[str, st.SearchStrategy[Any]] = {
        "path": name_pool,
        "map": name_pool,
        "wwid": name_pool,
        "name": name_pool,
        "force": st.booleans(),
        "enabled": st.booleans(),
        "group": st.sampled_from([1, 2, 3, 10**30]),
        "since": st.sampled_from([0, 1.5e9, 10**400]),
        "limit": st.sampled_from([0, 1, 10**400]),
        "words": st.sampled_from(_words(names)),
    }

    def args_for(op: str) -> st.SearchStrategy[dict[str, Any]]:
        spec = p.OPS[op]
        required = {n: right[n] for n, a in spec.args.items() if a.required}
        optional = {n: right[n] for n, a in spec.args.items() if not a.required}
        if spec.exactly_one_of:  # create_map: a path or a WWID, maybe a name
            optional.pop("wwid")
            required["path"] = optional.pop("path")
        return st.fixed_dictionaries(required, optional=optional)

    return st.one_of(
        [st.builds(p.encode_request, st.just(op), args_for(op)) for op in ops]
    ).map(lambda line: line.rstrip(b"\n"))


def _encode(obj: Any, ascii_only: bool) -> bytes:
    # lone surrogates pass through as the invalid UTF-8 a buggy client would send
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def _mangled(draw: st.DrawFn, bodies: st.SearchStrategy[bytes]) -> bytes:
    """A request body with one defect: a byte changed, inserted or cut."""
    body = draw(bodies)
    if not body:
        return body
    at = draw(st.integers(0, len(body) - 1))
    how = draw(st.sampled_from(["replace", "insert", "cut"]))
    byte = bytes([draw(st.integers(0, 255).filter(lambda b: b != 0x0A))])
    if how == "replace":
        return body[:at] + byte + body[at + 1 :]
    if how == "insert":
        return body[:at] + byte + body[at:]
    return body[:at]


_RAW_BODIES = st.sampled_from(
    [
        b"",
        b" ",
        b"\x00",
        b"\xff\xfe",
        b"\xef\xbb\xbf{\"version\":1,\"op\":\"ping\"}",  # a UTF-8 byte order mark
        b"{\"version\":1,\"op\":\"ping\"}\r",
        b"null",
        b"[]",
        b"{}",
        b"\"ping\"",
        b"{\"version\":NaN,\"op\":\"ping\"}",
        b"{\"version\":1,\"op\":\"events\",\"args\":{\"since\":Infinity}}",
        b"{\"version\":1,\"op\":\"events\",\"args\":{\"since\":1e999}}",
        b"{\"version\":1,\"op\":\"events\",\"args\":{\"since\":-1e999}}",
        b"{\"version\":1,\"op\":\"reconfigure\",\"op\":\"ping\"}",  # the last one counts
        b"{\"version\":1,\"op\":\"p\\u0000ing\"}",
        b"{\"version\":1,\"op\":\"ping\"",
        b"[" * 100_000,  # deeper than any recursion limit, and over the size limit
        b"[" * 30_000 + b"]" * 30_000,
    ]
) | st.binary(max_size=64).map(lambda b: b.replace(b"\n", b""))


@st.composite
def _huge_numbers(draw: st.DrawFn) -> bytes:
    """A request with a number of thousands of digits in an argument or the version."""
    digits = draw(st.sampled_from([310, 400, 4300, 4301, 20_000]))
    number = b"9" * digits
    if draw(st.booleans()):
        number = b"0." + number if draw(st.booleans()) else number + b"e9999"
    where = draw(st.sampled_from(["since", "limit", "group", "version"]))
    if where == "version":
        return b'{"version":' + number + b',"op":"ping"}'
    op = b"events" if where != "group" else b"switch_group"
    return b'{"version":1,"op":"' + op + b'","args":{"' + where.encode() + b'":' + number + b"}}"


@st.composite
def _oversized(draw: st.DrawFn) -> bytes:
    """A line around the 64 KiB limit: a long string argument (or bare padding)."""
    size = p.MAX_REQUEST_BYTES + draw(st.sampled_from([-2, -1, 0, 1, 2, 4096, 100_000]))
    head = b'{"version":1,"op":"ping","args":{"x":"'
    tail = b'"}}'
    pad = draw(st.sampled_from([b"a", b"\\", b" ", b"\xff"]))
    # size counts the newline the caller adds
    return head + pad * max(size - len(head) - len(tail) - 1, 0) + tail


def request_bodies(
    ops: tuple[str, ...] = tuple(p.OPS), names: tuple[str, ...] = (), privileged: bool = True
) -> st.SearchStrategy[bytes]:
    """One request line without its newline, mostly almost right."""
    strings = _names(names, privileged)
    encoded = st.builds(_encode, _request_objects(ops, strings), st.booleans())
    valid = _valid_requests(ops, strings)
    return st.one_of(*[valid] * 3, *[encoded] * 6, _mangled(encoded), _RAW_BODIES, _huge_numbers())


def cases(
    ops: tuple[str, ...] = tuple(p.OPS),
    names: tuple[str, ...] = (),
    privileged: bool = True,
    oversized: bool = True,
) -> st.SearchStrategy[Case]:
    """One client's connection: a few request lines, sent in one of ``MODES``.

    ``ops`` are the known ops used, ``names`` real path and map names (used only when not
    ``privileged``), ``oversized`` whether lines over the size limit come in too.
    """
    bodies = request_bodies(ops, names, privileged)
    short = bodies.filter(lambda b: len(b) <= 256)
    big = _oversized()

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        mode = draw(st.sampled_from(MODES))
        if mode == "drip":  # one short request: a byte per write is slow
            return Case(mode, draw(short) + b"\n")
        lines = draw(st.lists(bodies, min_size=1, max_size=12))
        if oversized and draw(st.sampled_from([False] * 24 + [True])):
            lines.insert(draw(st.integers(0, len(lines))), draw(big))
        data = b"".join(line + b"\n" for line in lines)
        if mode in ("truncated", "abort"):
            # cut inside the last line (never right after a newline: that is no cut)
            data = data[: len(data) - draw(st.integers(1, len(lines[-1]) + 1))]
            if not data or data.endswith(b"\n"):
                data += b"{"
        return Case(mode, data)

    return build()
