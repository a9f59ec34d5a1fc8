"""The daemon's end of the control socket (protocol v1, see ``dmpath.protocol``).

Why the care: this socket is world-connectable (read-only ops are for every local user),
so any local process can be a slow, hostile or buggy client. The daemon's loop also runs
path checks and failover; nothing a client does may stall it or exhaust its descriptors:

- each request must arrive whole within ``idle_timeout`` (a drip-feeding client cannot hold
  a slot for ever), and a reply must be taken within the same time;
- a request line is bounded (``MAX_REQUEST_BYTES``): a longer one gets ``bad_request`` and
  the connection is closed, never an unbounded buffer;
- at most ``max_connections`` are served at once; the next ones get ``busy`` and are closed;
- who may change things comes from the kernel (``SO_PEERCRED``), never from the message;
- a handler that raises gets an error reply; an unexpected exception is logged with its
  traceback and answered ``internal``, and the server keeps serving.

The socket is either adopted from systemd (socket activation: ``LISTEN_PID``/``LISTEN_FDS``,
first descriptor 3) or created here. A leftover socket file from a crashed daemon is
removed only after a connection attempt proves nobody listens on it: deleting a live
daemon's socket would leave that daemon running but unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

from dmpath.errors import DmpathError
from dmpath.protocol import (
    MAX_REQUEST_BYTES,
    BadRequest,
    ErrorKind,
    PermissionDenied,
    decode_request,
    encode_error,
    encode_exception,
    encode_result,
    is_mutating,
    kind_for_exception,
)

log = logging.getLogger("dmpath.control")

#: the first descriptor systemd passes (sd_listen_fds(3))
SD_LISTEN_FDS_START = 3

_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid
assert _UCRED.size == struct.calcsize("3i")

_READ_CHUNK = 16 * 1024


class Peer(NamedTuple):
    """The connecting process as the kernel saw it when it connected."""

    pid: int
    uid: int
    gid: int


Handler = Callable[[str, dict[str, Any], Peer], Awaitable[Any]]


class ControlSocketError(DmpathError):
    """The control socket cannot be set up (in use by another daemon, wrong file type)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"control socket {path}: {detail}")
        self.path = path
        self.detail = detail


def is_root(peer: Peer) -> bool:
    """Mutating ops are for root only: they can take paths away from running I/O."""
    return peer.uid == 0


def peer_credentials(sock: Any) -> Peer:
    """The peer of a connected Unix socket, from the kernel (``SO_PEERCRED``)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid)


def systemd_listen_fds(environ: MutableMapping[str, str], pid: int) -> list[int]:
    """Descriptors passed to this process by systemd socket activation ([] if none).

    ``LISTEN_PID`` must name this process: the variables are inherited by children,
    which must not take them as theirs. Once read they are removed from ``environ`` for
    that same reason (as ``sd_listen_fds(1)`` does).
    """
    try:
        if int(environ.get("LISTEN_PID", "")) != pid:
            return []
        count = int(environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + max(count, 0)))


class _RequestTooLarge(Exception):
    pass


class ControlServer:
    """Serves protocol v1 on a Unix socket inside the daemon's event loop.

    ``handler(op, args, peer)`` is awaited for every valid, permitted request; ``args``
    are already validated, with defaults filled in. ``is_privileged`` decides who may send
    mutating ops (root by default; tests running as root inject a stricter one).
    ``environ`` is where systemd's activation variables are read from (``os.environ``).
    ``mode`` applies only to a socket created here; an activated one has the unit's
    ``SocketMode=``, and its file belongs to systemd (never removed by ``stop``).
    """

    def __init__(
        self,
        path: str,
        handler: Handler,
        mode: int = 0o666,
        *,
        is_privileged: Callable[[Peer], bool] = is_root,
        idle_timeout: float = 10.0,
        max_connections: int = 64,
        environ: MutableMapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.handler = handler
        self.mode = mode
        self.is_privileged = is_privileged
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._environ = os.environ if environ is None else environ
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._created: tuple[int, int] | None = None  # (st_dev, st_ino) of a file we made
        #: True when the socket came from systemd (then systemd owns the file)
        self.activated = False

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return len(self._connections)

    async def start(self) -> None:
        """Open (or adopt) the socket and start accepting connections."""
        if self._server is not None:
            raise RuntimeError("control server already started")
        sock = self._adopt_activated()
        if sock is None:
            sock = self._bind()
        else:
            self.activated = True
        try:
            self._server = await asyncio.start_unix_server(self._on_connect, sock=sock)
        except BaseException:
            sock.close()
            self._remove_socket_file()
            raise
        log.info(
            "control socket %s ready%s", self.path, " (from systemd)" if self.activated else ""
        )

    async def stop(self) -> None:
        """Stop accepting, drop open connections, and remove the socket file we made."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        self._remove_socket_file()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- setting up the socket -----------------------------------------------------------

    def _adopt_activated(self) -> socket.socket | None:
        fds = systemd_listen_fds(self._environ, os.getpid())
        if not fds:
            return None
        candidates: list[socket.socket] = []
        for fd in fds:
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                continue  # not a socket: some other kind of passed descriptor
            if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM:
                candidates.append(sock)
            else:
                sock.detach()  # leave descriptors that are not ours open and untouched
        chosen = next((s for s in candidates if s.getsockname() == self.path), None)
        if chosen is None and len(candidates) == 1:
            chosen = candidates[0]
            log.warning(
                "systemd passed socket %r, configured path is %s; using systemd's",
                chosen.getsockname(),
                self.path,
            )
        for sock in candidates:
            if sock is not chosen:
                sock.detach()
        if chosen is None:
            raise ControlSocketError(
                self.path,
                f"systemd passed {len(fds)} descriptor(s), none a Unix stream socket at this"
                " path; check ListenStream= in dmpathd.socket",
            )
        chosen.set_inheritable(False)  # systemd passes it inheritable; our children must not
        return chosen

    def _bind(self) -> socket.socket:
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o755, exist_ok=True)
            os.chmod(directory, 0o755)  # makedirs' mode is filtered by the umask
        self._clear_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            st = os.stat(self.path)
            self._created = (st.st_dev, st.st_ino)
            # before listen(): nobody can connect while the umask's mode is in force
            os.chmod(self.path, self.mode)
        except OSError as exc:
            sock.close()
            self._remove_socket_file()
            raise ControlSocketError(self.path, f"cannot bind: {exc.strerror or exc}") from exc
        return sock

    def _clear_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(self.path, "exists and is not a socket; not removing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except ConnectionRefusedError:
            log.info("removing stale control socket %s (nothing listens on it)", self.path)
            os.unlink(self.path)
            return
        except OSError as exc:
            # not provably dead (backlog full, no permission...): leave it alone
            raise ControlSocketError(
                self.path, f"exists and cannot be probed ({exc}); is another dmpathd running?"
            ) from exc
        finally:
            probe.close()
        raise ControlSocketError(self.path, "another dmpathd is running (it accepts connections)")

    def _remove_socket_file(self) -> None:
        """Unlink the socket file only if it is still the one we bound."""
        created, self._created = self._created, None
        if created is None:
            return
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == created:
                os.unlink(self.path)

    # --- serving a connection ------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if len(self._connections) > self.max_connections:
                log.warning("control: %d connections open; refusing one", self.max_connections)
                await self._send(
                    writer,
                    encode_error(
                        ErrorKind.BUSY,
                        f"dmpathd is serving {self.max_connections} connections; retry later",
                    ),
                )
                return
            try:
                peer = peer_credentials(writer.get_extra_info("socket"))
            except OSError as exc:
                log.warning("control: cannot read peer credentials: %s", exc)
                return
            await self._serve(reader, writer, peer)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("control: connection dropped: %s", exc)
        finally:
            self._connections.discard(task)
            if task.cancelling():  # the server is stopping: no graceful goodbye
                writer.transport.abort()
            else:
                await self._close(writer)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        buf = bytearray()
        while True:
            try:
                line = await self._read_line(reader, buf)
            except _RequestTooLarge:
                log.warning("control: pid %d uid %d sent an oversized request", *peer[:2])
                await self._send(
                    writer,
                    encode_error(
                        ErrorKind.BAD_REQUEST,
                        f"request is larger than {MAX_REQUEST_BYTES} bytes",
                    ),
                )
                return
            except TimeoutError:
                log.debug("control: pid %d idle for %g s; closing", peer.pid, self.idle_timeout)
                return
            if line is None:
                if buf:
                    log.debug("control: pid %d closed after a partial request", peer.pid)
                return
            await self._send(writer, await self._answer(line, peer))

    async def _read_line(self, reader: asyncio.StreamReader, buf: bytearray) -> bytes | None:
        """The next request line, None at end of input; the whole line must come in time."""
        async with asyncio.timeout(self.idle_timeout):
            while True:
                end = buf.find(b"\n")
                if end >= 0:
                    if end + 1 > MAX_REQUEST_BYTES:
                        raise _RequestTooLarge
                    line = bytes(buf[: end + 1])
                    del buf[: end + 1]
                    return line
                if len(buf) >= MAX_REQUEST_BYTES:
                    raise _RequestTooLarge
                chunk = await reader.read(_READ_CHUNK)
                if not chunk:
                    return None
                buf += chunk

    async def _answer(self, line: bytes, peer: Peer) -> bytes:
        try:
            req = decode_request(line)
        except BadRequest as exc:
            log.debug("control: bad request from pid %d: %s", peer.pid, exc)
            return encode_exception(exc)
        except Exception as exc:  # a bug in reading it: still one reply, never a dead task
            log.exception("control: a request from pid %d could not be read", peer.pid)
            return encode_exception(exc)
        if is_mutating(req.op):
            if not self.is_privileged(peer):
                log.warning("control: %s from uid %d (pid %d) denied", req.op, peer.uid, peer.pid)
                return encode_exception(
                    PermissionDenied(f"{req.op} needs root (you are uid {peer.uid})")
                )
            # an audit trail of who changed what
            log.info("control: uid %d pid %d: %s %s", peer.uid, peer.pid, req.op, req.args)
        else:
            log.debug("control: uid %d pid %d: %s %s", peer.uid, peer.pid, req.op, req.args)
        try:
            result = await self.handler(req.op, req.args, peer)
        except DmpathError as exc:
            if kind_for_exception(exc) is ErrorKind.INTERNAL:
                log.error("control: %s failed: %s", req.op, exc, exc_info=exc)
            else:
                log.info("control: %s: %s", req.op, exc)
            return encode_exception(exc)
        except Exception as exc:  # a handler bug must not take the daemon down
            log.exception("control: %s %s raised", req.op, req.args)
            return encode_exception(exc)
        try:
            return encode_result(result)
        except (TypeError, ValueError) as exc:
            log.exception("control: %s returned a result that is not JSON data", req.op)
            return encode_exception(exc)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        async with asyncio.timeout(self.idle_timeout):  # a client that never reads
            await writer.drain()

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            async with asyncio.timeout(self.idle_timeout):
                await writer.wait_closed()
        except (TimeoutError, ConnectionError):
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
