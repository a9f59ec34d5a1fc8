"""systemd's sd_notify protocol (READY, STATUS, WATCHDOG), without a library.

The protocol is one datagram to the socket named by ``NOTIFY_SOCKET``; a leading ``@``
means the abstract namespace. Outside systemd the variable is unset and this does nothing.
"""

from __future__ import annotations

import os
import socket


def sd_notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``); True if a notify socket took it."""
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True
