"""Stalled storage connections (pure) and the sock_diag messages that read and end them."""

from __future__ import annotations

import socket
import struct

import pytest

from dmpath.kernel import sockdiag
from dmpath.policy.tcpstall import TcpConn, stalled, stalled_sessions


def conn(dst: str = "192.0.2.2", *, unacked: int = 3, retrans: int = 3, quiet_ms: int = 2500,
         cookie: int = 7, dport: int = 3260) -> TcpConn:
    return TcpConn("192.0.2.1", 40000, dst, dport, cookie, unacked, retrans, quiet_ms)


def test_a_dark_portal_stalls_and_a_slow_or_lossy_or_idle_one_does_not() -> None:
    assert stalled(conn(), 2.0)
    assert not stalled(conn(quiet_ms=1900), 2.0)  # not quiet long enough
    assert not stalled(conn(retrans=1), 2.0)  # one lost segment, retransmitted once
    assert not stalled(conn(unacked=0, retrans=0, quiet_ms=60_000), 2.0)  # idle, nothing out
    assert not stalled(conn(), 0)  # turned off


def test_stalled_connections_name_the_sessions_on_their_portal_once() -> None:
    peers = {"session1": ("192.0.2.2", 3260), "session2": ("198.51.100.2", 3260),
             "session3": ("192.0.2.2", 0)}  # its port unknown: the address decides
    conns = [conn(), conn("198.51.100.2", quiet_ms=10, cookie=8), conn("203.0.113.9", cookie=9)]
    assert stalled_sessions(conns, peers, 2.0, set()) == [(conns[0], ["session1", "session3"])]
    assert stalled_sessions(conns, peers, 2.0, {7}) == []  # aborted already
    assert stalled_sessions([conn(dport=3261)], peers, 2.0, set()) == [
        (conn(dport=3261), ["session3"])
    ]


def test_the_destroy_request_names_exactly_that_socket() -> None:
    msg = sockdiag.destroy_request(conn(cookie=0x1122334455667788), seq=5)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq, pid) == (len(msg), sockdiag.SOCK_DESTROY, 5, 0)
    assert flags == sockdiag.NLM_F_REQUEST | sockdiag.NLM_F_ACK
    body = msg[16:]
    assert len(body) == 56  # struct inet_diag_req_v2
    family, proto, _ext, _pad, states = struct.unpack_from("=BBBBI", body)
    assert (family, proto, states) == (socket.AF_INET, socket.IPPROTO_TCP, 0xFFFFFFFF)
    assert struct.unpack_from("!HH", body, 8) == (40000, 3260)
    assert body[12:16] == socket.inet_aton("192.0.2.1")
    assert body[28:32] == socket.inet_aton("192.0.2.2")
    assert struct.unpack_from("=IQ", body, 44) == (0, 0x1122334455667788)
    v6 = sockdiag.destroy_request(TcpConn("2001:db8::1", 1, "2001:db8::2", 4420, 1, 1, 2, 3))
    assert v6[16] == socket.AF_INET6
    assert v6[16 + 28 : 16 + 44] == socket.inet_pton(socket.AF_INET6, "2001:db8::2")


def test_the_kernels_answer() -> None:
    def ack(code: int, kind: int = sockdiag.NLMSG_ERROR) -> bytes:
        return struct.pack("=IHHIIi", 20, kind, 0, 1, 0, code)

    assert sockdiag.parse_ack(ack(0)) == 0
    assert sockdiag.parse_ack(ack(-2)) == 2  # ENOENT: gone already
    with pytest.raises(sockdiag.SockDiagError):
        sockdiag.parse_ack(ack(0, kind=20))
    with pytest.raises(sockdiag.SockDiagError):
        sockdiag.parse_ack(b"\0" * 8)
