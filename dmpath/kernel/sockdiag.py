"""The host's TCP connections to storage ports, from the kernel's sock_diag, and aborting
one of them.

``connections(ports)`` is one netlink dump of the established IPv4 and IPv6 TCP sockets
whose peer port is one of ``ports`` (3260 iSCSI, 4420 NVMe/TCP), with their ``tcp_info``.
The kernel does the choosing: the request carries an inet_diag filter (``port_filter``:
"peer port is one of these"), so a database server's ten thousand client connections cost
nothing. (pyroute2's ``DiagSocket`` sends no filter: it dumps every socket and decodes
each in Python, 116 µs apiece here, half a core at two dumps a second with 2,000
sockets; nor can it send ``SOCK_DESTROY`` or read that request's answer, since its
sock_diag marshal takes netlink errors for AF_INET messages.) The messages are made and
read by pure functions (``dump_request``, ``parse_dump``), golden-tested on a dump
captured from a kernel.

``abort(conn)`` sends ``SOCK_DESTROY`` for exactly that socket (its addresses, ports and
cookie): the kernel resets it as if the peer had, and the transport above it
(iscsi_tcp) sees its connection fail at once. It needs ``CONFIG_INET_DIAG_DESTROY``
(Debian's kernels have it) and CAP_NET_ADMIN.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Collection, Iterator

from dmpath.errors import DmpathError
from dmpath.policy.tcpstall import TcpConn

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
SOCK_DESTROY = 21
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_INFO = 2
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_D_EQ = 12
TCP_ESTABLISHED = 1
#: struct inet_diag_req_v2 (family, protocol, ext, pad, states) in host order, then its
#: inet_diag_sockid: ports in network order, addresses as 16 bytes, interface and cookie
#: (two u32, as the dump gave them) in host order
_REQ_HEAD = struct.Struct("=BBBxI")
_PORTS = struct.Struct("!HH")
_TAIL = struct.Struct("=IQ")
_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
#: struct inet_diag_msg: family, state, timer, retrans, then the sockid as above, then
#: expires, rqueue, wqueue, uid, inode
_DIAG_MSG = struct.Struct("=BBBB")
_DIAG_MSG_SIZE = 72
_BC_OP = struct.Struct("=BBH")
#: struct tcp_info: tcpi_retransmits is byte 2, tcpi_unacked the u32 at 24,
#: tcpi_last_ack_recv the u32 at 56 (a stable ABI: fields are only ever appended)
_TCPI_RETRANSMITS, _TCPI_UNACKED, _TCPI_LAST_ACK_RECV = 2, 24, 56


class SockDiagError(DmpathError):
    """The kernel's sock_diag could not be asked, or refused."""


def port_filter(ports: Collection[int]) -> bytes:
    """inet_diag bytecode: "the peer port is one of ``ports``".

    The kernel runs it op by op, each op jumping ``yes`` or ``no`` bytes on; landing
    exactly on the end accepts, past it rejects. Its audit walks the ``yes`` jumps and
    wants every ``no`` to land on that walk, so each port is a block of a comparison (two
    ops: the test, then the port in the second op's ``no``) and a jump: equal goes on to
    the jump, which leaps to the end (accept); unequal skips the jump to the next block;
    after the last block a final jump leaps past the end (reject).
    """
    ordered = sorted(set(ports))
    block = 3 * _BC_OP.size
    total = block * len(ordered) + _BC_OP.size
    code = b""
    for i, port in enumerate(ordered):
        left_after_test = total - block * i - 2 * _BC_OP.size
        code += _BC_OP.pack(INET_DIAG_BC_D_EQ, 2 * _BC_OP.size, block) + _BC_OP.pack(0, 0, port)
        code += _BC_OP.pack(INET_DIAG_BC_JMP, _BC_OP.size, left_after_test)
    return code + _BC_OP.pack(INET_DIAG_BC_JMP, _BC_OP.size, 2 * _BC_OP.size)


def dump_request(family: int, ports: Collection[int], seq: int = 1) -> bytes:
    """The netlink message that dumps the established TCP sockets of ``family`` whose
    peer port is one of ``ports``, each with its tcp_info."""
    body = (
        _REQ_HEAD.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 1 << TCP_ESTABLISHED)
        + bytes(48)  # any socket id: the filter chooses
    )
    code = port_filter(ports)
    attr = _NLATTR.pack(_NLATTR.size + len(code), INET_DIAG_REQ_BYTECODE) + code
    msg = body + attr
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(msg), SOCK_DIAG_BY_FAMILY, flags, seq, 0) + msg


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in ``data``."""
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > len(data):
            raise SockDiagError("sock_diag answered with a truncated message")
        yield kind, data[off + _NLMSGHDR.size : off + length]
        off += (length + 3) & ~3


def parse_dump(data: bytes) -> tuple[list[TcpConn], bool]:
    """The connections in one read of a dump's answer, and whether the dump is over."""
    out: list[TcpConn] = []
    for kind, payload in _messages(data):
        if kind == NLMSG_DONE:
            return out, True
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else 0
            raise SockDiagError(f"sock_diag refused the dump: {os.strerror(code)}")
        if kind != SOCK_DIAG_BY_FAMILY or len(payload) < _DIAG_MSG_SIZE:
            continue
        family = payload[0]
        sport, dport = _PORTS.unpack_from(payload, 4)
        size = 4 if family == socket.AF_INET else 16
        src = socket.inet_ntop(family, payload[8 : 8 + size])
        dst = socket.inet_ntop(family, payload[24 : 24 + size])
        (cookie,) = struct.unpack_from("=Q", payload, 44)
        info = _attribute(payload[_DIAG_MSG_SIZE:], INET_DIAG_INFO)
        if info is None or len(info) < _TCPI_LAST_ACK_RECV + 4:
            continue
        out.append(
            TcpConn(
                src=src,
                sport=sport,
                dst=dst,
                dport=dport,
                cookie=cookie,
                unacked=struct.unpack_from("=I", info, _TCPI_UNACKED)[0],
                retransmits=info[_TCPI_RETRANSMITS],
                last_ack_recv_ms=struct.unpack_from("=I", info, _TCPI_LAST_ACK_RECV)[0],
            )
        )
    return out, False


def _attribute(data: bytes, wanted: int) -> bytes | None:
    off = 0
    while off + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, off)
        if length < _NLATTR.size:
            return None
        if kind & 0x3FFF == wanted:
            return data[off + _NLATTR.size : off + length]
        off += (length + 3) & ~3
    return None


def connections(ports: Collection[int]) -> list[TcpConn]:
    """Established TCP connections whose peer port is in ``ports`` (blocking)."""
    out: list[TcpConn] = []
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as s:
            s.settimeout(2.0)
            for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
                s.send(dump_request(family, ports, seq))
                done = False
                while not done:
                    conns, done = parse_dump(s.recv(1 << 16))
                    out += conns
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
