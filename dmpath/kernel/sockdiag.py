"""The host's TCP connections to storage ports, from the kernel's sock_diag, and aborting
one of them.

``connections(ports)`` is one netlink dump (pyroute2's ``DiagSocket``) of the established
IPv4 and IPv6 TCP sockets with their ``tcp_info``, kept to those whose peer port is one of
``ports`` (3260 iSCSI, 4420 NVMe/TCP). ``abort(conn)`` sends ``SOCK_DESTROY`` for exactly
that socket (its addresses, ports and cookie): the kernel resets it as if the peer had,
and the transport above it (iscsi_tcp) sees its connection fail at once. It needs
``CONFIG_INET_DIAG_DESTROY`` (Debian's kernels have it) and CAP_NET_ADMIN.

pyroute2 has no request for ``SOCK_DESTROY`` and its sock_diag marshal does not decode
netlink errors (their type collides with AF_INET), so the abort is one hand-made message
(``destroy_request``, pure) on a plain netlink socket, and its answer is read here.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Collection

from dmpath.errors import DmpathError
from dmpath.policy.tcpstall import TcpConn

NETLINK_SOCK_DIAG = 4
SOCK_DESTROY = 21
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
INET_DIAG_INFO = 2
TCP_ESTABLISHED = 1
#: struct inet_diag_req_v2 (family, protocol, ext, pad, states) in host order, then its
#: inet_diag_sockid: ports in network order, addresses as 16 bytes, interface and cookie
#: (two u32, as the dump gave them) in host order
_REQ_HEAD = struct.Struct("=BBBxI")
_PORTS = struct.Struct("!HH")
_TAIL = struct.Struct("=IQ")
_NLMSGHDR = struct.Struct("=IHHII")


class SockDiagError(DmpathError):
    """The kernel's sock_diag could not be asked, or refused."""


def connections(ports: Collection[int]) -> list[TcpConn]:
    """Established TCP connections whose peer port is in ``ports`` (blocking)."""
    from pyroute2 import DiagSocket  # imported here: only a daemon that watches needs it

    out: list[TcpConn] = []
    try:
        with DiagSocket() as ds:
            ds.bind()
            for family in (socket.AF_INET, socket.AF_INET6):
                for msg in ds.get_sock_stats(
                    family=family,
                    states=1 << TCP_ESTABLISHED,
                    extensions=1 << (INET_DIAG_INFO - 1),
                ):
                    if msg["idiag_dport"] not in ports:
                        continue
                    info = msg.get_attr("INET_DIAG_INFO")
                    if info is None:
                        continue
                    out.append(
                        TcpConn(
                            src=str(msg["idiag_src"]),
                            sport=int(msg["idiag_sport"]),
                            dst=str(msg["idiag_dst"]),
                            dport=int(msg["idiag_dport"]),
                            cookie=int(msg["idiag_cookie"]),
                            unacked=int(info["tcpi_unacked"]),
                            retransmits=int(info["tcpi_retransmits"]),
                            last_ack_recv_ms=int(info["tcpi_last_ack_recv"]),
                        )
                    )
    except OSError as exc:
        raise SockDiagError(f"cannot read TCP connections (sock_diag): {exc}") from None
    return out


def destroy_request(c: TcpConn, seq: int = 1) -> bytes:
    """The netlink message that asks the kernel to destroy socket ``c``."""
    src, dst = ipaddress.ip_address(c.src), ipaddress.ip_address(c.dst)
    family = socket.AF_INET if src.version == 4 else socket.AF_INET6
    body = (
        # any state: the socket is named by its addresses, ports and cookie
        _REQ_HEAD.pack(family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF)
        + _PORTS.pack(c.sport, c.dport)
        + src.packed.ljust(16, b"\0")
        + dst.packed.ljust(16, b"\0")
        + _TAIL.pack(0, c.cookie)
    )
    flags = NLM_F_REQUEST | NLM_F_ACK
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DESTROY, flags, seq, 0) + body


def parse_ack(data: bytes) -> int:
    """The errno of the kernel's answer to a request with NLM_F_ACK (0: done)."""
    if len(data) < _NLMSGHDR.size + 4:
        raise SockDiagError("sock_diag answered with a short message")
    _len, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data)
    if kind != NLMSG_ERROR:
        raise SockDiagError(f"sock_diag answered with message type {kind}, not an ack")
    code: int = struct.unpack_from("=i", data, _NLMSGHDR.size)[0]
    return -code


def abort(c: TcpConn) -> None:
    """Reset TCP connection ``c`` (blocking); a connection already gone is not an error."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as s:
            s.settimeout(2.0)
            s.send(destroy_request(c))
            code = parse_ack(s.recv(65536))
    except OSError as exc:
        raise SockDiagError(f"cannot abort {c.describe()}: {exc}") from None
    if code in (0, errno.ENOENT):
        return
    raise SockDiagError(
        f"the kernel refused to abort {c.src}:{c.sport} -> {c.dst}:{c.dport}: "
        f"{os.strerror(code)}"
    )
