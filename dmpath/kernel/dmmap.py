"""One dm multipath map's kernel records (``info``, ``table``, ``status``) as a ``KernelMap``,
and the map fields it gives: the one reading of them that dmpathd's snapshot and
``mpathctl``'s kernel view (no daemon) both show, so the two cannot disagree.

Counted dm fields are written as the kernel writes them (``1 queue_if_no_path``, ``0``,
``1 alua``, selector ``service-time 0``): that is the form the man page documents and
multipath-tools' JSON shows. Queueing is the table's ``queue_if_no_path``: the status
line's ``queue_io`` flag is "hold I/O while a group initialises", another thing.
Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable

from dmpath.config.records import Backend
from dmpath.kernel.dmtable import DmInfo, MultipathStatus, MultipathTable
from dmpath.kernel.dmtable import GroupState as DmGroupState
from dmpath.kernel.dmtable import PathGroup as DmPathGroup
from dmpath.kernel.dmtable import PathState as DmPathState
from dmpath.model import GroupState, KernelGroup, KernelMap, KernelState, Map

GROUP_STATES = {
    DmGroupState.ACTIVE: GroupState.ACTIVE,
    DmGroupState.ENABLED: GroupState.ENABLED,
    DmGroupState.DISABLED: GroupState.DISABLED,
}


def counted(words: Iterable[str]) -> str:
    """A dm ``<count> <words>`` field as the kernel writes it (``0``, ``1 alua``)."""
    ws = tuple(words)
    return " ".join((str(len(ws)), *ws))


def selector_text(group: DmPathGroup) -> str:
    """A group's path selector with its counted arguments (``service-time 0``)."""
    return f"{group.selector} {counted(group.selector_args)}"


def wwid_of(uuid: str, prefix: str) -> str | None:
    """The WWID in a dm uuid of ours (``<prefix><wwid>``), None for another's map."""
    return uuid[len(prefix) :] if uuid.startswith(prefix) else None


def kernel_map(
    name: str, info: DmInfo, table: MultipathTable, status: MultipathStatus
) -> KernelMap:
    """The kernel's word on map ``name``: its members (devnum -> state, table order) and
    groups with their states as the status line gives them."""
    members: dict[str, KernelState] = {}
    groups: list[KernelGroup] = []
    for i, (tg, sg) in enumerate(zip(table.groups, status.groups, strict=False), start=1):
        for ps in sg.paths:
            members[ps.dev] = (
                KernelState.ACTIVE if ps.state == DmPathState.ACTIVE else KernelState.FAILED
            )
        groups.append(
            KernelGroup(i, selector_text(tg), GROUP_STATES[sg.state], [p.dev for p in sg.paths])
        )
    hw = table.hw_handler
    return KernelMap(
        name=name,
        backend=Backend.DM,
        uuid=info.uuid,
        sysfs=f"dm-{info.minor}",
        devnode=f"/dev/mapper/{name}",
        size_sectors=table.length,
        open_count=info.open_count,
        members=members,
        groups=groups,
        next_group=status.next_pg,
        queueing=table.features.queue_if_no_path,
        features=counted(table.features.words()),
        hwhandler=counted((hw.name, *hw.args)) if hw else "0",
        table=table,
        info=info,
    )


def set_map_fields(m: Map, km: KernelMap) -> None:
    """The map-level fields of ``m`` from the kernel's word (paths and groups are each
    view's own: the daemon joins them to its path models)."""
    m.sysfs, m.devnode, m.uuid = km.sysfs, km.devnode, km.uuid
    m.size_sectors, m.open_count = km.size_sectors, km.open_count
    m.features, m.hwhandler, m.queueing = km.features, km.hwhandler, km.queueing
