"""Events to systemd-journald as structured entries, over its native protocol.

One datagram per event to ``/run/systemd/journal/socket``: ``KEY=VALUE`` lines, or for a
value holding a newline the key, a newline, the value's length as 64-bit little endian,
the value and a newline (systemd's "Native Journal Protocol"). Our own few lines rather
than python-systemd, which needs a C build. Each entry carries ``MESSAGE_ID``, fixed per
event kind (``MESSAGE_IDS``, listed in dmpathd(8)), and ``DMPATH_EVENT``, ``DMPATH_MAP``,
``DMPATH_PATH``, so that ``journalctl MESSAGE_ID=...`` or ``journalctl DMPATH_MAP=mpatha``
finds them.

The send is non-blocking: a journald that is behind must not hold up the event loop, so
a datagram it has no room for is dropped and counted, and the event goes to the log line
instead. Under systemd that log line (standard error) reaches the journal too, as plain
text; so when standard error is the journal (``JOURNAL_STREAM``), an event the journal
took as an entry is not logged again, and each event is in the journal once.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Mapping
from typing import Final

from dmpath.model import Event

SOCKET: Final = "/run/systemd/journal/socket"
IDENTIFIER: Final = "dmpathd"

#: ``MESSAGE_ID`` of each event kind: uuid5(NAMESPACE_URL, "https://dmpath/events/KIND"),
#: computed once and written down; they never change (dmpathd(8) lists them). A kind not
#: here gets no MESSAGE_ID.
MESSAGE_IDS: Final[Mapping[str, str]] = {
    "alert": "2ca18334cc62567ab50f258c0091ebed",
    "alua_changed": "525d92ed3eff5b69b460bdd7ee579fde",
    "busy": "64372d06484b5a618e1eeff3b8f804fa",
    "check": "4cb4e96d0112525ca4f7cdca472be1c3",
    "daemon_started": "86f03869dd3550e087746516f120202b",
    "daemon_stopped": "57d9b58a94e659bdbdd7ea56d9152914",
    "error": "f692d59d56b45cdf911492bf0a1b2338",
    "kernel_path_failed": "3fc25800c9f9585298c7c93d82d5b2f4",
    "link_down": "cf2a898303e35f17972176b0f1be8dc3",
    "link_up": "f9ccdaedf0d15d2b9a0dc02533506409",
    "map_adopted": "f278a6f79d755e88aeadcc1aefa81885",
    "map_created": "2460a00b75f755c4b529f3d7b3844633",
    "map_flushed": "0376e4c2c2155ef7a1276df748f336bf",
    "map_resized": "2c7ab2976e645a338e15c07c9232fba7",
    "map_resumed": "52a2ede449d45a3f85913041b6799a0d",
    "partitions": "cf0b45065a71511382789fad095726ef",
    "path_added": "d2dc66dcf86254baa7fdbf2fdd898762",
    "path_failed": "0756cb3780835de390b121d6894a8182",
    "path_joined": "69fed1d460a056fa88a021bd6aae5fb8",
    "path_marginal": "623eafa50af8578fa4e55208c6c5a625",
    "path_marginal_cleared": "a54fa1efb32c5b80996a68a1bf49e9f8",
    "path_reinstated": "5fdc109f2330511f8a5dba4d66514021",
    "path_removed": "b433c616f53f5d1eaf4a43dd73d49b5a",
    "queueing": "88696bdb9894533b877078cbb104c94d",
    "reconfigured": "3f2251da47175627a1a782e3f63801ec",
    "regrouped": "155f0dd7c5c25d2ebd9249e3cef8ef0b",
    "rescan": "bd0cdce369c75508aeb2ca6de076f884",
    "reshaped": "fb64526acf465052a8734a2598e8b445",
    "switch_group": "d57a314f70b651488b173883d86a8a19",
    "tcp_stall": "09895db854e859ea8d085b522bd417d9",
    "transport_tuned": "6b51034e6053584a9b6815f4054bde63",
    "watchdog": "905b6e2e023850769ea17d6f860d661c",
}

#: syslog priorities (what journalctl -p filters on) of the logging levels events use
_PRIORITY: Final = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def encode_field(name: str, value: str) -> bytes:
    """One field of a native-protocol datagram."""
    data = value.encode("utf-8", errors="replace")
    if b"\n" in data:
        return name.encode("ascii") + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode("ascii") + b"=" + data + b"\n"


def encode_event(ev: Event, text: str, level: int) -> bytes:
    """The datagram for ``ev``; ``text`` is its log line, the entry's ``MESSAGE``."""
    fields = [
        ("MESSAGE", text),
        ("PRIORITY", str(_PRIORITY.get(level, 6))),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
    ]
    if ev.kind in MESSAGE_IDS:
        fields.append(("MESSAGE_ID", MESSAGE_IDS[ev.kind]))
    fields.append(("DMPATH_EVENT", ev.kind))
    # an empty field would only make DMPATH_MAP= match events of no map
    fields += [(k, v) for k, v in (("DMPATH_MAP", ev.map), ("DMPATH_PATH", ev.path)) if v]
    return b"".join(encode_field(k, v) for k, v in fields)


def stderr_is_journal(env: Mapping[str, str], fd: int = 2) -> bool:
    """True when ``fd`` is the stream systemd connected to the journal: ``JOURNAL_STREAM``
    names its device and inode (``DEV:INODE``)."""
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


class Journal:
    """A connected, non-blocking datagram socket to journald."""

    def __init__(self, sock: socket.socket, path: str, replaces_log: bool) -> None:
        self.sock = sock
        self.path = path
        #: standard error is the journal too: an entry sent makes the log line redundant
        self.replaces_log = replaces_log
        self.sent = 0
        self.dropped = 0  # datagrams journald had no room for, or refused

    @classmethod
    def connect(
        cls, path: str | None = None, env: Mapping[str, str] | None = None
    ) -> Journal | None:
        """The journal (at ``SOCKET`` unless ``path`` says else), or None where there is
        none (no socket: not under systemd)."""
        path = SOCKET if path is None else path
        if not os.path.exists(path):
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        return cls(sock, path, stderr_is_journal(os.environ if env is None else env))

    def send(self, data: bytes) -> bool:
        """Send one entry; False if it was dropped (journald behind, or gone)."""
        try:
            # sent by name, not connected: a journald restarted has a new socket there
            self.sock.sendto(data, self.path)
        except OSError:  # EAGAIN above all; EMSGSIZE; ENOENT, ECONNREFUSED (restarting)
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def takes(self, ev: Event, text: str, level: int) -> bool:
        """Send ``ev``; True when its log line is then not wanted (see the module's
        docstring)."""
        return self.send(encode_event(ev, text, level)) and self.replaces_log

    def close(self) -> None:
        self.sock.close()
