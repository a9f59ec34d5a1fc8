"""Network links under the paths that ride a network (iSCSI sessions).

A path over a network dies with its interface: when a cable is pulled or a switch port
goes down, the kernel says so on rtnetlink at once, while a check of the path would hang
until ``checker_timeout`` and the path's I/O until the transport gives it back. So the
daemon learns which interface each such path leaves by (a route lookup of its portal's
address) and listens to link changes (``RTMGRP_LINK``): link down fails that link's paths
at once, link up checks them at once. Both through pyroute2's asyncio ``IPRoute``.

``link_change`` (a message to a ``LinkChange``) is pure; ``LinkWatch`` owns the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pyroute2 is imported when a watch starts: `dmpathd --once`, run by
    from pyroute2 import AsyncIPRoute  # udev for every path, never needs it

log = logging.getLogger("dmpathd")

#: operational states (RFC 2863, as the kernel reports IFLA_OPERSTATE) that carry traffic;
#: "unknown" is what interfaces without carrier detection (veth peers, some drivers) show
#: while up
_UP_STATES = frozenset({"UP", "UNKNOWN"})


class LinkMessage(Protocol):
    """What ``link_change`` reads of a pyroute2 link message."""

    def __getitem__(self, key: str) -> object: ...

    def get_attr(self, name: str) -> object: ...


@dataclass(frozen=True)
class LinkChange:
    index: int
    name: str
    up: bool


def link_change(msg: LinkMessage) -> LinkChange | None:
    """An RTM_NEWLINK / RTM_DELLINK message as a link state, or None for anything else.
    A deleted link is down."""
    event = msg["event"]
    if event not in ("RTM_NEWLINK", "RTM_DELLINK"):
        return None
    index = msg["index"]
    if not isinstance(index, int):
        return None
    name = str(msg.get_attr("IFLA_IFNAME") or f"if{index}")
    state = str(msg.get_attr("IFLA_OPERSTATE") or "")
    return LinkChange(index, name, event == "RTM_NEWLINK" and state in _UP_STATES)


class LinkWatch:
    """Link changes to ``on_change`` (transitions only), and route lookups."""

    def __init__(
        self,
        on_change: Callable[[LinkChange], None],
        on_lost: Callable[[str], None] = lambda _why: None,
    ) -> None:
        self.on_change = on_change
        self.on_lost = on_lost  # the watch ended: nothing more will be heard
        self._mon: AsyncIPRoute | None = None
        self._query: AsyncIPRoute | None = None
        self._task: asyncio.Task[None] | None = None
        self._up: dict[int, bool] = {}  # index -> last state heard (or looked up)
        self.names: dict[int, str] = {}

    async def start(self) -> None:
        """Open the sockets (OSError if rtnetlink cannot be had)."""
        # pyroute2 loads some 370 modules: in a worker thread, so that the event loop
        # answers requests and checks paths meanwhile
        await asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "pyroute2")
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError
        from pyroute2.netlink.rtnl import RTMGRP_LINK

        try:
            self._query = AsyncIPRoute()
            self._mon = AsyncIPRoute()
            await self._mon.bind(groups=RTMGRP_LINK)
        except NetlinkError as exc:
            raise OSError(exc.code, f"rtnetlink: {exc}") from exc
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            await self._listen()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # said once, then the checks decide alone
            log.exception("link watch ended")
            self.on_lost(f"{type(exc).__name__}: {exc}")

    async def _listen(self) -> None:
        assert self._mon is not None
        while True:
            # get() yields what one receive brought, then ends: ask again, for ever
            async for msg in self._mon.get():
                change = link_change(msg)
                if change is not None:
                    self.heard(change)

    def heard(self, change: LinkChange) -> None:
        """A link's state as the kernel reports it: kept, and handed on if it changed."""
        self.names[change.index] = change.name
        if self._up.get(change.index) == change.up:
            return
        self._up[change.index] = change.up
        try:
            self.on_change(change)
        except Exception:  # a bad handler must not end the watch
            log.exception("link change %s", change)

    def is_up(self, index: int) -> bool:
        """The link's state as last heard (a link never heard of is taken as up)."""
        return self._up.get(index, True)

    async def interface_for(self, address: str) -> LinkChange | None:
        """The interface traffic to ``address`` leaves by, with its state now; None if
        there is no route (or the address is local: no link to lose)."""
        if self._query is None:
            return None
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            routes = await self._query.route("get", dst=address)
            index = next((r.get_attr("RTA_OIF") for r in routes), None)
            if not isinstance(index, int):
                return None
            links = await self._query.link("get", index=index)
        except (NetlinkError, OSError, ValueError) as exc:
            log.debug("no interface for %s: %s", address, exc)
            return None
        for msg in links:
            change = link_change(msg)
            if change is not None:
                if change.name == "lo":
                    return None
                self._up.setdefault(change.index, change.up)
                self.names[change.index] = change.name
                return change
        return None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for sock in (self._mon, self._query):
            if sock is not None:
                with contextlib.suppress(Exception):
                    sock.close()
