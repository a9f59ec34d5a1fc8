"""The control socket's privilege check on a real kernel, with a real unprivileged peer.

The unit tests run as root and can only simulate a non-root peer; here a child process
really becomes ``nobody`` (uid/gid 65534) and the server must learn that from
``SO_PEERCRED`` alone, with its default root-only check. The child is forked before the
server's thread exists (a fork of a threaded process may inherit held locks) and waits
on a pipe until the server listens.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dmpath import client
from dmpath import protocol as p
from dmpath.daemon.control import ControlServer, Peer

pytestmark = pytest.mark.lab

IN_GUEST = os.environ.get("DMPATH_LAB") == "1"
NOBODY = 65534


def _as_nobody(path: str) -> dict[str, Any]:
    """What a non-root client gets for a read op, a mutating op and garbage."""
    out: dict[str, Any] = {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid()}
    out["ping"] = client.request("ping", socket_path=path, timeout=60)
    try:
        client.request("fail_path", {"path": "sdb"}, socket_path=path, timeout=60)
        out["fail_path"] = "allowed"
    except p.PermissionDenied as exc:
        out["fail_path"] = ["permission_denied", str(exc), exc.exit_code]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(path)
        s.sendall(b"\x00\xffnot json at all\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        out["garbage"] = json.loads(buf)
    return out


def _child(go_r: int, res_w: int, path: str) -> None:
    """Runs in the forked child: drop to nobody, wait for the server, report as JSON."""
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        os.read(go_r, 1)
        report: dict[str, Any] = _as_nobody(path)
    except BaseException as exc:  # noqa: BLE001 - the child reports everything, then exits
        report = {"child_error": f"{type(exc).__name__}: {exc}"}
    try:
        os.write(res_w, json.dumps(report).encode())
    finally:
        os._exit(0)  # never return into pytest in the child


@pytest.fixture
def sock_dir() -> Iterator[str]:
    if not IN_GUEST:
        pytest.skip("needs the lab VM")
    d = tempfile.mkdtemp(prefix="dmpctl-")
    os.chmod(d, 0o755)  # nobody must reach the socket inside
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_peer_credentials_decide_who_may_mutate(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "run", "dmpathd.sock")
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(go_r, res_w, path)
    os.close(go_r)
    os.close(res_w)

    seen: list[tuple[str, Peer]] = []

    async def handler(op: str, args: dict[str, Any], peer: Peer) -> Any:
        seen.append((op, peer))
        return "pong" if op == "ping" else {"done": op}

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ControlServer(path, handler)  # default privilege check: uid 0 only
    reaped = False
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
        os.write(go_w, b"g")
        chunks = []
        while chunk := os.read(res_r, 65536):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
        reaped = True
        assert os.waitstatus_to_exitcode(status) == 0
        report = json.loads(b"".join(chunks))
        assert "child_error" not in report, report["child_error"]

        assert (report["uid"], report["gid"]) == (NOBODY, NOBODY)
        assert report["ping"] == "pong"
        kind, message, code = report["fail_path"]
        assert kind == "permission_denied" and code == 10
        assert f"you are uid {NOBODY}" in message
        assert report["garbage"]["ok"] is False
        assert report["garbage"]["error"]["kind"] == "bad_request"
        # the kernel's word, not the client's: this pid and these ids came from SO_PEERCRED
        assert seen == [("ping", Peer(report["pid"], NOBODY, NOBODY))]

        # and root (this process) may mutate
        result = client.request("fail_path", {"path": "sdb"}, socket_path=path, timeout=60)
        assert result == {"done": "fail_path"}
        assert seen[-1] == ("fail_path", Peer(os.getpid(), 0, os.getgid()))
    finally:
        os.close(go_w)  # a child still waiting sees EOF, fails to connect and exits
        os.close(res_r)
        if not reaped:
            os.waitpid(pid, 0)
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
