"""The control server for real: a ControlServer on a temporary socket, driven by the
blocking client and by raw (sometimes hostile) sockets.

The server runs in an event loop on a background thread, as in the daemon; the tests act
as clients from the main thread. Tests run as root here, so the non-root case uses the
server's injectable ``is_privileged``; the lab test proves ``SO_PEERCRED`` with a real
unprivileged process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dmpath import client
from dmpath import protocol as p
from dmpath.daemon import control
from dmpath.daemon.control import (
    ControlServer,
    ControlSocketError,
    Peer,
    systemd_listen_fds,
)
from dmpath.errors import PolicyRefusal
from dmpath.lab import fuzz, fuzzcases
from dmpath.lab.fuzz import recv_line

T = TypeVar("T")


class LoopThread:
    """An event loop on a thread of its own, like the daemon's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class FakeDaemon:
    """A handler with one behaviour per op/argument, recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], Peer]] = []
        self.release = asyncio.Event()

    async def __call__(self, op: str, args: dict[str, Any], peer: Peer) -> Any:
        self.calls.append((op, args, peer))
        if op == "ping":
            return "pong"
        if op == "show":
            return {"maps": [], "peer": list(peer)}
        if op == "show_config":
            return "x" * (8 * 1024 * 1024)  # a large reply
        if op == "fail_path":
            path = args["path"]
            if path == "last":
                raise PolicyRefusal("last is the last working path of mpatha")
            if path == "gone":
                raise p.NotFound("no path named 'gone'")
            if path == "boom":
                raise RuntimeError("kaboom")
            if path == "weird":
                return {"not json": {1, 2}}
            if path == "slow":
                await self.release.wait()
            return {"failed": path, "force": args["force"]}
        raise AssertionError(f"unexpected op {op}")


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # a short path: sun_path holds 108 bytes, pytest's tmp_path can be longer
    d = Path(tempfile.mkdtemp(prefix="dmpctl-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


Serve = Callable[..., tuple[ControlServer, FakeDaemon, str]]


@pytest.fixture
def serve(loop: LoopThread, sock_dir: Path) -> Iterator[Serve]:
    servers: list[ControlServer] = []

    def start(**kw: Any) -> tuple[ControlServer, FakeDaemon, str]:
        path = kw.pop("path", str(sock_dir / "run" / "dmpathd.sock"))
        fake = FakeDaemon()
        kw.setdefault("environ", {})
        server = ControlServer(path, fake, **kw)
        loop.run(server.start())
        servers.append(server)
        return server, fake, path

    yield start
    for server in servers:
        loop.run(server.stop())


def connections(loop: LoopThread, server: ControlServer) -> int:
    async def count() -> int:
        return server.connections

    return loop.run(count())


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def raw(path: str, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def read_reply(s: socket.socket) -> dict[str, Any] | None:
    """One reply line from a raw socket, None if the server closed first."""
    line = recv_line(s, bytearray())
    if line is None:
        return None
    obj: dict[str, Any] = json.loads(line)
    return obj


def still_answers(s: socket.socket) -> None:
    """The connection is still served: a ping on it gets its pong."""
    s.sendall(PING)
    assert read_reply(s) == {"version": 1, "ok": True, "result": "pong"}


def closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


PING = b'{"version":1,"op":"ping"}\n'


def error_kind(reply: dict[str, Any] | None) -> str:
    assert reply is not None and reply["ok"] is False, reply
    kind: str = reply["error"]["kind"]
    return kind


# --- the ops and who may send them -------------------------------------------------------


def test_read_ops_work_for_an_unprivileged_peer_and_mutating_ones_do_not(serve: Serve) -> None:
    _, fake, path = serve(is_privileged=lambda peer: False)
    assert client.request("ping", socket_path=path) == "pong"
    assert client.request("show", socket_path=path)["maps"] == []
    with pytest.raises(p.PermissionDenied, match=r"fail_path needs root \(you are uid") as info:
        client.request("fail_path", {"path": "sdb"}, socket_path=path)
    assert info.value.exit_code == 10
    assert [c[0] for c in fake.calls] == ["ping", "show"]  # the handler never saw it


def test_privileged_peer_reaches_the_handler_with_defaults_and_its_credentials(
    serve: Serve,
) -> None:
    _, fake, path = serve()  # the default: uid 0, which is what tests run as
    if os.getuid() != 0:
        pytest.skip("the default privilege check needs root")
    assert client.request("fail_path", {"path": "sdb"}, socket_path=path) == {
        "failed": "sdb",
        "force": False,
    }
    op, args, peer = fake.calls[-1]
    assert (op, args) == ("fail_path", {"path": "sdb", "force": False})
    assert peer == Peer(os.getpid(), os.getuid(), os.getgid())


def test_handler_errors_become_their_kinds(serve: Serve) -> None:
    _, _, path = serve(is_privileged=lambda peer: True)
    with pytest.raises(p.Refused, match=r"^last is the last working path of mpatha$") as info:
        client.request("fail_path", {"path": "last"}, socket_path=path)
    assert info.value.exit_code == 7 and isinstance(info.value, PolicyRefusal)
    with pytest.raises(p.NotFound, match="no path named 'gone'"):
        client.request("fail_path", {"path": "gone"}, socket_path=path)


def test_a_handler_bug_is_internal_logged_and_the_server_keeps_serving(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, path = serve(is_privileged=lambda peer: True)
    caplog.set_level(logging.ERROR, logger="dmpath.control")
    with pytest.raises(p.InternalError, match="RuntimeError: kaboom") as info:
        client.request("fail_path", {"path": "boom"}, socket_path=path)
    assert info.value.exit_code == 1
    assert any(r.exc_info and "kaboom" in str(r.exc_info[1]) for r in caplog.records)
    with pytest.raises(p.InternalError, match="TypeError"):
        client.request("fail_path", {"path": "weird"}, socket_path=path)
    assert client.request("ping", socket_path=path) == "pong"


def test_a_bug_in_reading_a_request_is_answered_and_the_connection_lives_on(
    serve: Serve, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # the socket fuzzer found such a bug (an OverflowError in argument validation): the
    # connection's task died and the client waited for a reply that never came
    _, _, path = serve()
    real = control.decode_request

    def flawed(line: bytes) -> p.Request:
        if b"overflow" in line:
            raise OverflowError("int too large to convert to float")
        return real(line)

    monkeypatch.setattr(control, "decode_request", flawed)
    caplog.set_level(logging.ERROR, logger="dmpath.control")
    with raw(path) as s:
        s.sendall(b'{"version":1,"op":"overflow"}\n')
        reply = read_reply(s)
        assert error_kind(reply) == "internal"
        assert reply is not None and "OverflowError" in reply["error"]["message"]
        still_answers(s)
    assert any(r.exc_info and "too large" in str(r.exc_info[1]) for r in caplog.records)


def test_several_requests_on_one_connection(serve: Serve) -> None:
    _, _, path = serve(is_privileged=lambda peer: True)
    with client.Connection(path) as conn:
        assert conn.request("ping") == "pong"
        with pytest.raises(p.Refused):
            conn.request("fail_path", {"path": "last"})
        assert conn.request("fail_path", {"path": "sdc", "force": True})["force"] is True


def test_large_reply_reaches_the_client(serve: Serve) -> None:
    _, _, path = serve()
    assert len(client.request("show_config", socket_path=path)) == 8 * 1024 * 1024


# --- hostile and broken clients ----------------------------------------------------------


def test_garbage_gets_bad_request_and_the_connection_stays_usable(serve: Serve) -> None:
    _, fake, path = serve()
    with raw(path) as s:
        for junk in (b"\x00\xff\xfe garbage\n", b"[1,2]\n", b"\xc3\x28\n", b"{}\n", b"\n"):
            s.sendall(junk)
            assert error_kind(read_reply(s)) == "bad_request"
        s.sendall(b'{"version":2,"op":"ping"}\n')
        reply = read_reply(s)
        assert error_kind(reply) == "bad_request"
        assert reply is not None and "version 2" in reply["error"]["message"]
        still_answers(s)
    assert [c[0] for c in fake.calls] == ["ping"]


def test_oversized_line_gets_bad_request_then_close(serve: Serve) -> None:
    _, _, path = serve()
    with raw(path) as s:
        # the server may close before taking it all; its reply is still there to read
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(b"x" * (100 * 1024) + b"\n")
        reply = read_reply(s)
        assert error_kind(reply) == "bad_request"
        assert reply is not None and "larger than 65536 bytes" in reply["error"]["message"]
        assert closed_by_server(s)
    assert client.request("ping", socket_path=path) == "pong"


def test_oversized_line_without_newline_is_cut_off_too(serve: Serve) -> None:
    _, _, path = serve()
    with raw(path) as s:
        s.sendall(b"{" * (p.MAX_REQUEST_BYTES + 1))
        assert error_kind(read_reply(s)) == "bad_request"
        assert closed_by_server(s)


def test_half_a_line_then_close(serve: Serve, loop: LoopThread) -> None:
    server, fake, path = serve()
    with raw(path) as s:
        s.sendall(b'{"version":1,"op":"pi')
    wait_until(lambda: connections(loop, server) == 0)
    assert fake.calls == []
    assert client.request("ping", socket_path=path) == "pong"


def test_idle_and_drip_feeding_clients_are_closed(serve: Serve, loop: LoopThread) -> None:
    server, _, path = serve(idle_timeout=0.4)
    with raw(path) as idle, raw(path) as drip:
        started = time.monotonic()
        for byte in b'{"version":1,"op":"ping"}':  # one byte per 50 ms: always "active"
            try:
                drip.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
        assert closed_by_server(drip)
        assert closed_by_server(idle)
        assert time.monotonic() - started < 3.0
    wait_until(lambda: connections(loop, server) == 0)
    assert client.request("ping", socket_path=path) == "pong"


def test_a_client_that_never_reads_its_reply_is_dropped(serve: Serve, loop: LoopThread) -> None:
    server, _, path = serve(idle_timeout=0.4)
    s = raw(path)
    s.sendall(b'{"version":1,"op":"show_config"}\n')  # 8 MiB reply, never read
    wait_until(lambda: connections(loop, server) == 0)
    s.close()
    assert client.request("ping", socket_path=path) == "pong"


def test_connection_limit(serve: Serve, loop: LoopThread) -> None:
    server, _, path = serve(max_connections=8)
    held: list[socket.socket] = []
    try:
        for _ in range(8):
            s = raw(path)
            s.sendall(PING)
            assert read_reply(s) == {"version": 1, "ok": True, "result": "pong"}
            held.append(s)
        for _ in range(5):
            with raw(path) as extra:
                # the server may answer "busy" and close before we send: EPIPE then,
                # and its answer is still ours to read (as the client does)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    extra.sendall(PING)
                reply = read_reply(extra)
                assert error_kind(reply) == "busy"
                assert reply is not None and "serving 8 connections" in reply["error"]["message"]
                assert closed_by_server(extra)
        with pytest.raises(p.Busy) as info:
            client.request("ping", socket_path=path)
        assert info.value.exit_code == 12
    finally:
        for s in held:
            s.close()
    wait_until(lambda: connections(loop, server) == 0)
    assert client.request("ping", socket_path=path) == "pong"


def test_many_concurrent_hostile_clients(serve: Serve, loop: LoopThread) -> None:
    server, _, path = serve(max_connections=16, idle_timeout=2.0)
    kinds: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            with raw(path) as s:
                if i % 3 == 0:
                    s.sendall(b"\xff" * 1000 + b"\n")
                elif i % 3 == 1:
                    s.sendall(b'{"version":1,"op":')
                    return  # half a line, then gone
                else:
                    s.sendall(PING)
                reply = read_reply(s)
                with lock:
                    kinds.append("closed" if reply is None else reply.get("result") or "")
                    if reply is not None and not reply["ok"]:
                        kinds[-1] = reply["error"]["kind"]
        except OSError as exc:  # a full backlog: fine, the server is what is under test
            with lock:
                kinds.append(type(exc).__name__)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(120)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # under load the server may refuse (busy) or close a connection before the client's
    # write lands (broken pipe / reset): all are the server protecting itself
    allowed = {"pong", "bad_request", "busy", "closed", "BlockingIOError", "BrokenPipeError",
               "ConnectionResetError"}
    assert set(kinds) <= allowed
    assert "pong" in kinds and "bad_request" in kinds
    wait_until(lambda: connections(loop, server) == 0)
    assert client.request("ping", socket_path=path) == "pong"


def test_stop_drops_open_connections_and_a_running_handler(serve: Serve, loop: LoopThread) -> None:
    server, fake, path = serve(is_privileged=lambda peer: True)
    with raw(path) as idle, raw(path) as waiting:
        waiting.sendall(b'{"version":1,"op":"fail_path","args":{"path":"slow"}}\n')
        wait_until(lambda: len(fake.calls) == 1)  # the handler is awaiting now
        started = time.monotonic()
        loop.run(server.stop())
        assert time.monotonic() - started < 2.0
        assert closed_by_server(idle) and closed_by_server(waiting)
    assert connections(loop, server) == 0


# --- the socket file ---------------------------------------------------------------------


def test_socket_and_directory_modes(serve: Serve, sock_dir: Path) -> None:
    old = os.umask(0o077)
    try:
        server, _, path = serve()
        _, _, private = serve(path=str(sock_dir / "priv" / "x.sock"), mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert not server.activated


def test_stop_removes_the_socket_file(serve: Serve, loop: LoopThread) -> None:
    server, _, path = serve()
    loop.run(server.stop())
    assert not os.path.exists(path)
    with pytest.raises(client.DaemonNotRunning):
        client.request("ping", socket_path=path)


def test_stop_leaves_a_socket_file_that_is_not_ours_any_more(
    serve: Serve, loop: LoopThread
) -> None:
    server, _, path = serve()
    os.unlink(path)  # e.g. an admin removed it and something else bound the path
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(path)
        loop.run(server.stop())
        assert os.path.exists(path)


def test_stale_socket_file_is_replaced(serve: Serve, sock_dir: Path) -> None:
    path = str(sock_dir / "dmpathd.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # a crashed daemon's leftover: the file stays, nobody listens
    with pytest.raises(client.DaemonNotRunning, match="systemctl start dmpathd") as info:
        client.request("ping", socket_path=path)
    assert info.value.exit_code == 9
    serve(path=path)
    assert client.request("ping", socket_path=path) == "pong"


def test_live_socket_is_not_taken_over(serve: Serve, loop: LoopThread) -> None:
    _, _, path = serve()
    second = ControlServer(path, FakeDaemon(), environ={})
    with pytest.raises(ControlSocketError, match="another dmpathd is running"):
        loop.run(second.start())
    assert client.request("ping", socket_path=path) == "pong"  # the first one is untouched


def test_a_file_that_is_not_a_socket_is_left_alone(loop: LoopThread, sock_dir: Path) -> None:
    path = sock_dir / "dmpathd.sock"
    path.write_text("precious")
    server = ControlServer(str(path), FakeDaemon(), environ={})
    with pytest.raises(ControlSocketError, match="not a socket; not removing it"):
        loop.run(server.start())
    assert path.read_text() == "precious"


# --- the client on its own ---------------------------------------------------------------


def test_client_without_daemon(sock_dir: Path) -> None:
    with pytest.raises(client.DaemonNotRunning) as info:
        client.request("ping", socket_path=str(sock_dir / "none" / "dmpathd.sock"))
    assert "systemctl start dmpathd" in str(info.value) and info.value.exit_code == 9
    # a usage error is a usage error, daemon or not
    with pytest.raises(p.BadRequest):
        client.request("fail_path", {"path": 3}, socket_path=str(sock_dir / "none"))


def test_client_timeout_and_the_server_survives_it(serve: Serve, loop: LoopThread) -> None:
    _, fake, path = serve(is_privileged=lambda peer: True)
    with pytest.raises(client.DaemonTimeout, match=r"did not answer within 0\.3 s") as info:
        client.request("fail_path", {"path": "slow"}, socket_path=path, timeout=0.3)
    assert info.value.exit_code == 12
    loop.loop.call_soon_threadsafe(fake.release.set)
    assert client.request("ping", socket_path=path) == "pong"


def test_client_reports_a_daemon_that_hangs_up(sock_dir: Path) -> None:
    path = str(sock_dir / "mute.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(100)
            conn.sendall(b'{"version":1,"ok":true,"res')
            conn.close()

        t = threading.Thread(target=hang_up)
        t.start()
        with pytest.raises(p.ProtocolError, match="closed the connection without answering"):
            client.request("ping", socket_path=path)
        t.join()


# --- systemd socket activation ------------------------------------------------------------


def test_listen_fds_are_only_taken_when_meant_for_this_process() -> None:
    assert systemd_listen_fds({}, 100) == []
    env = {"LISTEN_PID": "99", "LISTEN_FDS": "1"}
    assert systemd_listen_fds(env, 100) == [] and env == {"LISTEN_PID": "99", "LISTEN_FDS": "1"}
    assert systemd_listen_fds({"LISTEN_PID": "x", "LISTEN_FDS": "1"}, 100) == []
    env = {"LISTEN_PID": "100", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b", "PATH": "/bin"}
    assert systemd_listen_fds(env, 100) == [3, 4]
    assert env == {"PATH": "/bin"}  # children must not think they were activated


_ACTIVATED_DAEMON = textwrap.dedent(
    """
    import asyncio, os, sys
    from dmpath.daemon.control import ControlServer

    async def main() -> None:
        done = asyncio.Event()
        server = None

        async def handler(op, args, peer):
            if op == "reconfigure":
                done.set()
            return {"activated": server.activated, "env_left": "LISTEN_FDS" in os.environ}

        server = ControlServer(sys.argv[1], handler, is_privileged=lambda peer: True)
        await server.start()
        print("ready", flush=True)
        await done.wait()
        await asyncio.sleep(0)  # let the reply go out
        await server.stop()

    asyncio.run(main())
    """
)


_AS_SYSTEMD = textwrap.dedent(
    """
    import os, sys
    fd = int(sys.argv[1])
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[2], sys.argv[3]])
    """
)


def test_socket_activation_with_an_inherited_descriptor(sock_dir: Path) -> None:
    path = str(sock_dir / "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    fd = listener.fileno()
    # as systemd does: the socket moved to fd 3, LISTEN_PID naming the process that runs
    proc = subprocess.Popen(
        [sys.executable, "-c", _AS_SYSTEMD, str(fd), _ACTIVATED_DAEMON, str(sock_dir / "o.sock")],
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
        text=True,
    )
    listener.close()  # from now on only the child holds the listening socket
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        assert client.request("ping", socket_path=path) == {
            "activated": True,
            "env_left": False,
        }
        client.request("reconfigure", socket_path=path)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert os.path.exists(path)  # systemd's file: the daemon must not remove it
    assert not os.path.exists(sock_dir / "o.sock")  # nor create one of its own


# --- the lab's socket fuzzer, against this server -----------------------------------------


@pytest.mark.parametrize("privileged", [True, False])
def test_the_fuzzers_clients_find_every_reply_well_formed(
    loop: LoopThread, sock_dir: Path, privileged: bool
) -> None:
    """The lab fuzzer's machinery (``dmpath.lab.fuzz``) on the host, with a handler that
    finds nothing to change: every reply owed comes, of an allowed kind."""

    async def handler(op: str, args: dict[str, Any], peer: Peer) -> Any:
        if p.is_mutating(op):
            raise p.NotFound(f"{op}: no such thing")
        return {"op": op}

    path = str(sock_dir / "dmpathd.sock")
    server = ControlServer(
        path, handler, is_privileged=lambda peer: privileged, idle_timeout=2.0, environ={}
    )
    loop.run(server.start())
    ops = tuple(p.OPS) if privileged else tuple(op for op in p.OPS if p.is_mutating(op))
    try:
        t = fuzz.run_clients(
            path,
            lambda sink: fuzz.generate(
                300, lambda: fuzzcases.cases(ops, ("sdb",), privileged), sink
            ),
            privileged,
            workers=6,
        )
        assert t.problems == [] and t.counts["problems"] == 0
        assert t.counts["requests_sent"] >= 300
        assert t.counts["answered"] == t.counts["owed"] > 0
        assert t.counts["malformed"] == t.counts["internal"] == 0
        assert t.counts["mutations_allowed"] == 0
        if not privileged:
            assert t.counts["permission_denied"] > 0
    finally:
        loop.run(server.stop())


def test_the_fuzzers_burst_gets_busy_past_the_limit(loop: LoopThread, sock_dir: Path) -> None:
    async def handler(op: str, args: dict[str, Any], peer: Peer) -> Any:
        return None

    path = str(sock_dir / "dmpathd.sock")
    server = ControlServer(path, handler, max_connections=4, idle_timeout=1.0, environ={})
    loop.run(server.start())
    try:
        assert fuzz.burst(path, 7, 4) == {"busy": 3, "held": 4}
        held = fuzz.open_stalled(path, 2)
        assert fuzz.closed_by_daemon(held, 10.0) == (2, 0)
    finally:
        loop.run(server.stop())
