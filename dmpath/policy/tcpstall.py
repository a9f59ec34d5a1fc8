"""A storage connection that has stopped answering, by TCP's own account.

When a portal goes dark (a dead switch port, a black hole), the commands already sent down
its path neither complete nor fail: they come back only when the iSCSI layer gives up on
the connection (its ping: ``noop_out_interval`` + ``noop_out_timeout``, 10 s by default)
and the session's ``recovery_tmo`` runs out. TCP knows much sooner: data sent and not
acknowledged, no acknowledgement at all for seconds, and the same segment retransmitted
again and again (each retransmission waits twice as long as the one before, from 200 ms).
A SAN answers in well under a millisecond, so that is a dead connection, not a slow one.

The kernel reports it per socket (sock_diag's ``tcp_info``); this module says, with no I/O,
which connections are stalled. A lossy link (``tc netem loss``) retransmits too, but it
acknowledges in between: a stall needs ``tcpi_retransmits`` (retransmissions in a row,
with no progress) of at least ``MIN_RETRANSMITS`` *and* no acknowledgement for the limit.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

#: retransmissions in a row of the same segment, no acknowledgement in between: one lost
#: segment on a lossy link is retransmitted once and acknowledged
MIN_RETRANSMITS = 2


@dataclass(frozen=True)
class TcpConn:
    """One established TCP connection as sock_diag reports it."""

    src: str
    sport: int
    dst: str
    dport: int
    cookie: int  # the kernel's id of the socket (to abort exactly this one)
    unacked: int  # segments sent and not acknowledged
    retransmits: int  # retransmissions in a row without progress
    last_ack_recv_ms: int  # milliseconds since the last acknowledgement arrived

    @property
    def peer(self) -> tuple[str, int]:
        return self.dst, self.dport

    def describe(self) -> str:
        return (
            f"{self.src}:{self.sport} -> {self.dst}:{self.dport}: {self.unacked} segments "
            f"unacknowledged, none acknowledged for {self.last_ack_recv_ms / 1000:.1f} s, "
            f"{self.retransmits} retransmissions in a row"
        )


def stalled(c: TcpConn, limit_s: float) -> bool:
    """Has ``c`` stopped answering: data out, retransmitted in vain, and no acknowledgement
    for ``limit_s`` seconds? (``limit_s`` 0: never.)"""
    return (
        limit_s > 0
        and c.unacked > 0
        and c.retransmits >= MIN_RETRANSMITS
        and c.last_ack_recv_ms >= limit_s * 1000
    )


def stalled_sessions(
    conns: Iterable[TcpConn],
    peers: Mapping[str, tuple[str, int]],
    limit_s: float,
    handled: Container[int],
) -> list[tuple[TcpConn, list[str]]]:
    """The stalled connections not ``handled`` yet (by cookie), each with the sessions
    (of ``peers``: session -> its portal's address and port, port 0 if unknown) that ride
    it."""
    out: list[tuple[TcpConn, list[str]]] = []
    for c in conns:
        if c.cookie in handled or not stalled(c, limit_s):
            continue
        sessions = sorted(
            s for s, (addr, port) in peers.items() if addr == c.dst and port in (0, c.dport)
        )
        if sessions:
            out.append((c, sessions))
    return out
