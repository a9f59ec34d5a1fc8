"""The CLI's end of the control socket: blocking, one short-lived connection per command.

Blocking on purpose: ``mpathctl`` does one thing and exits, so an event loop would only
add start-up time. Every failure becomes a ``DmpathError`` with one actionable line and
an exit status (see ``dmpath.protocol``): the daemon's error replies are re-raised as the
exception of their kind with the daemon's message, a missing daemon as
``DaemonNotRunning``, and a silent one as ``DaemonTimeout``.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dmpath.errors import DmpathError
from dmpath.protocol import (
    DEFAULT_SOCKET_PATH,
    MAX_RESPONSE_BYTES,
    Busy,
    PermissionDenied,
    ProtocolError,
    decode_response,
    encode_request,
)

if TYPE_CHECKING:
    from dmpath.model import Snapshot

_READ_CHUNK = 64 * 1024
#: seconds a command waits for the daemon's answer (mpathctl --timeout); an action asked
#: while dmpathd's start-up scan runs is answered only after that scan's first pass
DEFAULT_TIMEOUT = 30.0


class DaemonNotRunning(DmpathError):
    """Nobody listens on the control socket."""

    exit_code = 9

    def __init__(self, socket_path: str, detail: str = "") -> None:
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"dmpathd is not running: cannot connect to {socket_path}{why};"
            " start it with: systemctl start dmpathd"
        )
        self.socket_path = socket_path


class DaemonTimeout(Busy):
    """The daemon accepted the request but did not answer in time.

    A ``Busy`` (exit 12): the daemon is alive, and a mutating op may still complete.
    """

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__(
            f"dmpathd did not answer within {timeout:g} s on {socket_path};"
            " it may be busy (the operation may still complete): check with mpathctl status"
            " (mpathctl --timeout SECONDS waits longer)"
        )
        self.socket_path = socket_path
        self.timeout = timeout


class Connection:
    """One connection to the daemon, for several requests in a row (e.g. a watch loop)."""

    def __init__(
        self, socket_path: str = DEFAULT_SOCKET_PATH, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._buf = bytearray()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self._sock.close()
            raise DaemonNotRunning(socket_path, exc.strerror or "") from None
        except PermissionError:
            self._sock.close()
            raise PermissionDenied(
                f"no permission to connect to {socket_path} (check its mode and directory)"
            ) from None
        except TimeoutError:
            self._sock.close()
            raise DaemonTimeout(socket_path, timeout) from None
        except OSError as exc:
            self._sock.close()
            if exc.errno in (errno.ENOTDIR, errno.ENOTSOCK, errno.ECONNRESET):
                raise DaemonNotRunning(socket_path, exc.strerror or "") from None
            if exc.errno == errno.EAGAIN:  # listen backlog full
                raise Busy(f"dmpathd does not accept connections on {socket_path}") from None
            raise DmpathError(f"cannot connect to {socket_path}: {exc}") from None

    def request(self, op: str, args: Mapping[str, Any] | None = None) -> Any:
        """Send one request and return its result; error replies raise (see module doc)."""
        data = encode_request(op, args)
        deadline = time.monotonic() + self.timeout
        try:
            # it may have answered ("busy") and closed unread: read that answer anyway
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._sock.sendall(data)
            line = self._read_line(deadline)
        except TimeoutError:
            raise DaemonTimeout(self.socket_path, self.timeout) from None
        except (ConnectionResetError, BrokenPipeError):
            line = self._buf_line_or_none()
        if line is None:
            raise ProtocolError(
                "dmpathd closed the connection without answering"
                " (did it stop? see: journalctl -u dmpathd)"
            )
        return decode_response(line)

    def _buf_line_or_none(self) -> bytes | None:
        # the daemon may answer (e.g. "too many connections") and close before reading
        end = self._buf.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buf[: end + 1])
        del self._buf[: end + 1]
        return line

    def _read_line(self, deadline: float) -> bytes | None:
        while True:
            line = self._buf_line_or_none()
            if line is not None:
                return line
            if len(self._buf) > MAX_RESPONSE_BYTES:
                raise ProtocolError(f"reply from dmpathd is larger than {MAX_RESPONSE_BYTES} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            chunk = self._sock.recv(_READ_CHUNK)
            if not chunk:
                return None
            self._buf += chunk

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_snapshot(data: Any) -> Snapshot:
    """The daemon's ``show`` reply as a Snapshot; a malformed one is a version skew."""
    from dmpath.model import snapshot_from_dict

    try:
        if not isinstance(data, dict):
            raise TypeError(f"a {type(data).__name__}, not an object")
        return snapshot_from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"unexpected snapshot from dmpathd: {exc}") from None


def request(
    op: str,
    args: Mapping[str, Any] | None = None,
    socket_path: str = DEFAULT_SOCKET_PATH,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Ask the daemon one thing: connect, send, read the reply, close.

    ``timeout`` bounds the whole exchange. Raises ``DaemonNotRunning`` (exit 9) when
    nothing listens, ``BadRequest`` before connecting when the arguments are wrong, and the
    exception of the reply's kind (``NotFound``, ``Refused``, ...) for an error reply.
    """
    encode_request(op, args)  # a usage error is reported even when no daemon runs
    with Connection(socket_path, timeout) as conn:
        return conn.request(op, args)
