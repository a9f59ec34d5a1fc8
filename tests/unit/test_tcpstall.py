"""Stalled storage connections (pure) and the sock_diag messages that read and end them."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


FIXTURES = Path(__file__).parent.parent / "fixtures" / "sockdiag"


def test_a_captured_dump_reads_as_the_connection_it_holds() -> None:
    """dump_one.bin: a 6.x kernel's answer to dump_request(AF_INET, {3260}) with one
    client connection to 127.0.0.1:3260 (capture-sockdiag.py)."""
    src, _arrow, dst = (FIXTURES / "dump_one.txt").read_text().split()
    conns, done = sockdiag.parse_dump((FIXTURES / "dump_one.bin").read_bytes())
    assert not done  # the dump's end came in a later read
    [c] = conns
    assert f"{c.src}:{c.sport}" == src and f"{c.dst}:{c.dport}" == dst
    assert c.cookie > 0 and c.retransmits == 0 and c.unacked == 0


def _ops(code: bytes) -> list[tuple[int, int, int]]:
    return [struct.unpack_from("=BBH", code, i) for i in range(0, len(code), 4)]


def _audit(code: bytes) -> bool:
    """The kernel's inet_diag_bc_audit for the ops this filter uses (D_EQ, JMP)."""
    def valid_cc(cc: int) -> bool:
        left, off = len(code), 0
        while left >= 0:
            if cc > left:
                return False
            if cc == left:
                return True
            yes = _ops(code[off:off + 4])[0][1]
            if yes < 4 or yes & 3:
                return False
            left, off = left - yes, off + yes
        return False

    left, off = len(code), 0
    while left > 0:
        op, yes, no = _ops(code[off:off + 4])[0]
        min_len = 8 if op == sockdiag.INET_DIAG_BC_D_EQ else 4
        if left < min_len:
            return False
        if no < min_len or no > left + 4 or no & 3:
            return False
        if no < left and not valid_cc(left - no):
            return False
        if yes < min_len or yes > left + 4 or yes & 3:
            return False
        left, off = left - yes, off + yes
    return True


def _run(code: bytes, dport: int) -> bool:
    """The kernel's inet_diag_bc_run: accept when the jumps land exactly on the end."""
    left, off = len(code), 0
    while left > 0:
        op, yes, no = _ops(code[off:off + 4])[0]
        hit = op == sockdiag.INET_DIAG_BC_D_EQ and dport == _ops(code[off + 4:off + 8])[0][2]
        step = yes if hit else no
        left, off = left - step, off + step
    return left == 0


@given(st.sets(st.integers(1, 65535), min_size=1, max_size=6), st.integers(1, 65535))
def test_the_port_filter_passes_the_audit_and_accepts_exactly_its_ports(
    ports: set[int], dport: int
) -> None:
    code = sockdiag.port_filter(ports)
    assert _audit(code)
    assert _run(code, dport) == (dport in ports)
    for p in ports:
        assert _run(code, p)
