"""The control protocol between ``dmpathd`` and ``mpathctl``, version 1.

This module is pure (no sockets, no I/O): framing, validation and the error mapping live
here so that the daemon's server, the CLI's client and the tests all agree on one text.
The description below is the reference; the man page copies it.

Transport
    A Unix stream socket, by default ``/run/dmpath/dmpathd.sock`` (configurable). A client
    connects, sends one request, reads one response, and may then send further requests
    on the same connection; they are answered one at a time, in the order sent. Each
    message is exactly one JSON object encoded in UTF-8 on one line terminated by ``\\n``.
    A request line, newline included, is at most 64 KiB; a longer one gets a
    ``bad_request`` reply and the connection is closed. A response line may be larger
    (``show`` of a big host), at most 16 MiB. A connection that has not delivered a whole
    request within 10 s is closed without a reply; the daemon serves at most 64
    connections at once and answers ``busy`` to any more.

Request
    ``{"version": 1, "op": "<name>", "args": {...}}`` -- ``args`` may be omitted when the
    op takes none. Unknown keys, at the top or in ``args``, are refused, so that a
    misspelt ``"forse"`` cannot silently mean ``force=false``.

Response
    ``{"version": 1, "ok": true, "result": <any JSON value>}`` or
    ``{"version": 1, "ok": false, "error": {"kind": "<kind>", "message": "<one line>"}}``.

Error kinds (and the ``mpathctl`` exit status each becomes)
    ============================  ===  =====================================================
    ``bad_request``                2   not JSON, not UTF-8, not an object, missing or
                                       unknown op, wrong argument types, unsupported version
    ``permission_denied``         10   a mutating op from a user other than root
    ``not_found``                 11   no path or map by that name in the daemon's model
    ``refused``                    7   it would hurt (e.g. failing the last working path
                                       without ``force``)
    ``busy``                      12   the object is in use (map open, path not idle,
                                       kernel EBUSY) or the daemon has too many
                                       connections; retry later
    ``failed``                     4   the kernel operation or a tool it runs failed
    ``internal``                   1   a bug in the daemon; it is logged with a traceback
                                       and the daemon keeps running
    ============================  ===  =====================================================

    Other exit statuses of ``mpathctl``: 0 success, 3 unparseable kernel/tool output
    (local), 5 device unusable (local), 6 kernel feature missing (local), 8 lab error,
    9 daemon not running.

Ops (arguments in brackets are optional; ``path`` is a kernel name such as ``sdb``, a
``/dev`` node or ``MAJ:MIN``; ``map`` is a map name or alias)
    read-only, any local user:
        ``ping`` {}                 -> a liveness answer (dmpathd: its pid and version)
        ``show`` {}                 -> the snapshot (``snapshot_to_dict``)
        ``show_config`` {}          -> the effective configuration
        ``events`` {[since: number >= 0], [limit: int >= 0]}
                                    -> recent events, after ``since`` (epoch seconds),
                                       at most the last ``limit``
    mutating, root only (the peer's uid comes from ``SO_PEERCRED``, not from the message):
        ``fail_path`` {path: str, [force: bool = false]}
        ``reinstate_path`` {path: str}
        ``add_path`` {path: str}
        ``remove_path`` {path: str}
        ``create_map`` {path: str | wwid: str (exactly one), [name: str]}
        ``flush_map`` {map: str, [force: bool = false]}
        ``resize_map`` {map: str}    (the table again at its paths' size now)
        ``switch_group`` {map: str, group: int >= 1}
        ``queueing`` {map: str, [enabled: bool]} (without ``enabled``: as no_path_retry
                                    says again)
        ``reconfigure`` {}
        ``multipathd`` {words: [str]}  -> {text: str}: a multipathd command other than
                                    ``show``, carried out as multipathd 0.9.4 would
    read-only, any local user:
        ``multipathd_show`` {words: [str]}
                                    -> {text: str}: what multipathd 0.9.4 prints for a
                                       ``show`` command

    Strings must be non-empty, at most 4096 characters, without control characters
    (they end up in log lines and one-line messages). JSON booleans are not accepted
    where a number is expected, and ``NaN``/``Infinity`` are not JSON here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dmpath.errors import DmpathError, PolicyRefusal

PROTOCOL_VERSION = 1

DEFAULT_SOCKET_PATH = "/run/dmpath/dmpathd.sock"

#: largest request line, terminating newline included
MAX_REQUEST_BYTES = 64 * 1024

#: largest response line: a snapshot of thousands of paths is far beyond 64 KiB
MAX_RESPONSE_BYTES = 16 * 1024 * 1024

#: longest string argument accepted (PATH_MAX)
MAX_STRING = 4096

#: longest error message sent; the rest is cut so one reply stays one readable line
MAX_MESSAGE_CHARS = 1000


class ErrorKind(StrEnum):
    BAD_REQUEST = "bad_request"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    REFUSED = "refused"
    BUSY = "busy"
    FAILED = "failed"
    INTERNAL = "internal"


# --- exceptions for the kinds errors.py has no class for ---------------------------------
# Each takes only a message: the client rebuilds them from a reply, which carries no facts.


class BadRequest(DmpathError):
    """The request itself is wrong; retrying it unchanged cannot help."""

    exit_code = 2


class PermissionDenied(DmpathError):
    """A mutating op from an unprivileged peer (or the socket is not reachable for us)."""

    exit_code = 10


class NotFound(DmpathError):
    """The named path or map is not known to the daemon."""

    exit_code = 11


class Busy(DmpathError):
    """The target is in use or the daemon is saturated; the same request may work later."""

    exit_code = 12


class Refused(PolicyRefusal):
    """A ``refused`` reply re-raised on the client side.

    A subclass with a message-only constructor, so the client does not depend on how
    ``PolicyRefusal`` chooses to carry its facts.
    """

    exit_code = 7

    def __init__(self, message: str) -> None:
        DmpathError.__init__(self, message)


class OperationFailed(DmpathError):
    """The daemon tried and the kernel (or a tool) said no: a ``failed`` reply."""

    exit_code = 4


class InternalError(DmpathError):
    """The daemon hit a bug; its log has the traceback."""

    exit_code = 1


class ProtocolError(DmpathError):
    """The peer spoke something that is not protocol v1 (version skew, truncated reply)."""

    exit_code = 1


_KIND_TO_EXCEPTION: dict[ErrorKind, type[DmpathError]] = {
    ErrorKind.BAD_REQUEST: BadRequest,
    ErrorKind.PERMISSION_DENIED: PermissionDenied,
    ErrorKind.NOT_FOUND: NotFound,
    ErrorKind.REFUSED: Refused,
    ErrorKind.BUSY: Busy,
    ErrorKind.FAILED: OperationFailed,
    ErrorKind.INTERNAL: InternalError,
}


def kind_for_exception(exc: BaseException) -> ErrorKind:
    """The reply kind for an exception raised by a request handler.

    Only the daemon's model can say "no such path/map", so ``not_found`` comes from an
    explicit ``NotFound``; a ``DeviceError`` from the kernel layer (device offline, gone
    under us) is a failed operation, like every other ``DmpathError`` without a kind of
    its own (``CommandError``, ``ParseError``, ``ConfigError`` from a reconfigure, ...).
    A ``DmpathError`` marked ``retryable = True`` (the kernel's EBUSY on an md member,
    ``MemberBusy``) is ``busy``: the same request may work once I/O has drained.
    Anything that is not a ``DmpathError`` is a bug: ``internal``.
    """
    if isinstance(exc, BadRequest):
        return ErrorKind.BAD_REQUEST
    if isinstance(exc, PermissionDenied):
        return ErrorKind.PERMISSION_DENIED
    if isinstance(exc, NotFound):
        return ErrorKind.NOT_FOUND
    if isinstance(exc, PolicyRefusal):
        return ErrorKind.REFUSED
    if isinstance(exc, Busy) or (isinstance(exc, DmpathError) and _retryable(exc)):
        return ErrorKind.BUSY
    if isinstance(exc, InternalError):
        return ErrorKind.INTERNAL
    if isinstance(exc, DmpathError):
        return ErrorKind.FAILED
    return ErrorKind.INTERNAL


def _retryable(exc: DmpathError) -> bool:
    return getattr(exc, "retryable", False) is True


def exception_for_error(kind: str, message: str) -> DmpathError:
    """The exception the client raises for an error reply (message kept as sent).

    A kind this version does not know (a newer daemon) still becomes an error with the
    daemon's message, never a crash of the CLI.
    """
    try:
        cls = _KIND_TO_EXCEPTION[ErrorKind(kind)]
    except ValueError:
        return DmpathError(message)
    return cls(message)


def one_line(message: str) -> str:
    """Squash a message to one bounded line: replies and logs are read line by line."""
    flat = " ".join(message.split())
    if len(flat) > MAX_MESSAGE_CHARS:
        flat = flat[: MAX_MESSAGE_CHARS - 3] + "..."
    return flat


# --- the op table ------------------------------------------------------------------------


def _check_string(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not value:
        return "must not be empty"
    if len(value) > MAX_STRING:
        return f"is longer than {MAX_STRING} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains control characters"
    return None


def _check_words(value: Any) -> str | None:
    """A command line: 1 to 64 strings (a word may be empty: ``-k""``)."""
    if not isinstance(value, list) or not 1 <= len(value) <= 64:
        return "must be a list of 1 to 64 strings"
    for word in value:
        why = _check_string(word) if word != "" else None
        if why:
            return f"has a word that {why}"
    return None


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(low: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not _is_int(value):
            return "must be an integer"
        return None if value >= low else f"must be >= {low}"

    return check


def _check_timestamp(value: Any) -> str | None:
    if not (_is_int(value) or isinstance(value, float)):
        return "must be a number"
    # an int is finite however long: math.isfinite would overflow converting it
    if (isinstance(value, float) and not math.isfinite(value)) or value < 0:
        return "must be a finite number >= 0"
    return None


@dataclass(frozen=True)
class Arg:
    """One argument of an op: a checker returning what is wrong (or None) and a default."""

    check: Callable[[Any], str | None]
    required: bool = True
    default: Any = None


def _opt(check: Callable[[Any], str | None], default: Any = None) -> Arg:
    return Arg(check, required=False, default=default)


_STR = Arg(_check_string)


@dataclass(frozen=True)
class OpSpec:
    """An op: its arguments, whether it changes anything (root only), and any groups of
    arguments of which exactly one must be given."""

    mutating: bool
    args: Mapping[str, Arg] = field(default_factory=dict)
    exactly_one_of: tuple[tuple[str, ...], ...] = ()


OPS: Mapping[str, OpSpec] = {
    "ping": OpSpec(mutating=False),
    "show": OpSpec(mutating=False),
    "show_config": OpSpec(mutating=False),
    "events": OpSpec(
        mutating=False,
        args={"since": _opt(_check_timestamp), "limit": _opt(_int_at_least(0))},
    ),
    "fail_path": OpSpec(mutating=True, args={"path": _STR, "force": _opt(_check_bool, False)}),
    "reinstate_path": OpSpec(mutating=True, args={"path": _STR}),
    "add_path": OpSpec(mutating=True, args={"path": _STR}),
    "remove_path": OpSpec(mutating=True, args={"path": _STR}),
    "create_map": OpSpec(
        mutating=True,
        args={
            "path": _opt(_check_string),
            "wwid": _opt(_check_string),
            "name": _opt(_check_string),
        },
        exactly_one_of=(("path", "wwid"),),
    ),
    "flush_map": OpSpec(mutating=True, args={"map": _STR, "force": _opt(_check_bool, False)}),
    "resize_map": OpSpec(mutating=True, args={"map": _STR}),
    "switch_group": OpSpec(mutating=True, args={"map": _STR, "group": Arg(_int_at_least(1))}),
    "queueing": OpSpec(mutating=True, args={"map": _STR, "enabled": _opt(_check_bool)}),
    "reconfigure": OpSpec(mutating=True),
    # multipath-tools' client commands (dmpath-multipathd): the daemon answers them with
    # the text multipathd prints, as multipathd does; its show commands are read-only
    "multipathd_show": OpSpec(mutating=False, args={"words": Arg(_check_words)}),
    "multipathd": OpSpec(mutating=True, args={"words": Arg(_check_words)}),
}


def is_mutating(op: str) -> bool:
    """True for ops only root may send (unknown ops count as mutating: deny by default)."""
    spec = OPS.get(op)
    return spec is None or spec.mutating


def validate_args(op: str, args: Any) -> dict[str, Any]:
    """Check ``args`` against the op table; return them with defaults filled in.

    Optional arguments without a default stay absent, so a handler can tell "not given"
    from any value.
    """
    spec = OPS.get(op)
    if spec is None:
        raise BadRequest(f"unknown op {op!r}")
    if not isinstance(args, dict):
        raise BadRequest(f"{op}: args must be an object")
    unknown = sorted(set(args) - set(spec.args))
    if unknown:
        raise BadRequest(f"{op}: unknown argument(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, arg in spec.args.items():
        if name not in args:
            if arg.required:
                raise BadRequest(f"{op}: missing argument {name!r}")
            if arg.default is not None:
                out[name] = arg.default
            continue
        problem = arg.check(args[name])
        if problem:
            raise BadRequest(f"{op}: argument {name!r} {problem}")
        out[name] = args[name]
    for group in spec.exactly_one_of:
        given = [n for n in group if n in args]
        if len(given) != 1:
            raise BadRequest(f"{op}: give exactly one of {', '.join(group)}")
    return out


# --- framing -----------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load_line(line: bytes, what: str) -> dict[str, Any]:
    """Decode one framed line to a dict; any defect is a ValueError naming it."""
    body = line.removesuffix(b"\n")
    if b"\n" in body:
        raise ValueError(f"{what} spans several lines")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, NaN, 5000-digit ints
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not a JSON object")
    return obj


def _check_version(obj: Mapping[str, Any], what: str) -> None:
    version = obj.get("version")
    if not _is_int(version):
        raise ValueError(f"{what} has no integer 'version'")
    if version != PROTOCOL_VERSION:
        raise ValueError(
            f"{what} has protocol version {version}; this side speaks {PROTOCOL_VERSION}"
        )


def _dump(obj: Mapping[str, Any]) -> bytes:
    # ASCII-only output: a reply is one line whatever the device strings contain
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


@dataclass(frozen=True)
class Request:
    op: str
    args: dict[str, Any]


def encode_request(op: str, args: Mapping[str, Any] | None = None) -> bytes:
    """The wire form of a request, validated here so a bad call fails before connecting."""
    checked = validate_args(op, dict(args or {}))
    data = _dump({"version": PROTOCOL_VERSION, "op": op, "args": checked})
    if len(data) > MAX_REQUEST_BYTES:
        raise BadRequest(f"{op}: request is larger than {MAX_REQUEST_BYTES} bytes")
    return data


def decode_request(line: bytes) -> Request:
    """Parse and validate one request line; every defect is a ``BadRequest``."""
    if len(line) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        obj = _load_line(line, "request")
        _check_version(obj, "request")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    op = obj.get("op")
    if not isinstance(op, str):
        raise BadRequest("request has no string 'op'")
    extra = sorted(set(obj) - {"version", "op", "args"})
    if extra:
        raise BadRequest(f"request has unknown key(s): {', '.join(extra)}")
    return Request(op, validate_args(op, obj.get("args", {})))


def encode_result(result: Any) -> bytes:
    """A success reply; raises TypeError/ValueError if ``result`` is not plain JSON data."""
    return _dump({"version": PROTOCOL_VERSION, "ok": True, "result": result})


def encode_error(kind: ErrorKind, message: str) -> bytes:
    return _dump(
        {
            "version": PROTOCOL_VERSION,
            "ok": False,
            "error": {"kind": str(kind), "message": one_line(message)},
        }
    )


def encode_exception(exc: BaseException) -> bytes:
    """The error reply for an exception raised while serving a request."""
    kind = kind_for_exception(exc)
    if kind is ErrorKind.INTERNAL and not isinstance(exc, DmpathError):
        message = f"internal error ({type(exc).__name__}: {exc}); see the dmpathd log"
    else:
        message = str(exc)
    return encode_error(kind, message)


def decode_response(line: bytes) -> Any:
    """The result of a reply line, or raise the exception its error kind maps to.

    A reply that is not protocol v1 raises ``ProtocolError``: the CLI and the daemon are
    of different versions, or the daemon was cut off mid-reply.
    """
    if len(line) > MAX_RESPONSE_BYTES:
        raise ProtocolError(f"reply is larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        obj = _load_line(line, "reply")
        _check_version(obj, "reply")
    except ValueError as exc:
        raise ProtocolError(f"unexpected reply from dmpathd: {exc}") from None
    ok = obj.get("ok")
    if ok is True:
        if "result" not in obj:
            raise ProtocolError("unexpected reply from dmpathd: 'ok' without 'result'")
        return obj["result"]
    err = obj.get("error")
    if ok is not False or not isinstance(err, dict):
        raise ProtocolError("unexpected reply from dmpathd: neither a result nor an error")
    kind, message = err.get("kind"), err.get("message")
    if not isinstance(kind, str) or not isinstance(message, str):
        raise ProtocolError("unexpected reply from dmpathd: error without kind and message")
    raise exception_for_error(kind, message)
