"""A read-only Snapshot straight from the kernel, for when no daemon answers.

Why: the daemon being down is exactly when an administrator most needs to see the maps.
The kernel still knows the tables, which paths it uses and which it failed, and the md
arrays; it does not know checker results, priorities or history, so those stay ``unknown``
and the views say so (``source="kernel"``).

Only multipath maps are shown (uuid ``<dm_uuid_prefix><wwid>``, ``mpath-<wwid>`` unless
the configuration says otherwise: the prefix dmpathd gives its maps): other dm devices
are not ours to describe. Map fields come from :mod:`dmpath.kernel.dmmap`, the daemon's
own reading of the same records, so both views show them alike. md multipath arrays
carry no such mark and are all shown.

The building of maps from parsed kernel records is pure (``dm_map``, ``md_map``); the thin
``read_snapshot`` does the I/O through the kernel layer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from dmpath.config import Backend
from dmpath.config.records import DEFAULT_DM_UUID_PREFIX
from dmpath.errors import DmpathError
from dmpath.kernel import dmtable, mdstat, nvme, sysfs
from dmpath.kernel.dmmap import kernel_map, set_map_fields, wwid_of
from dmpath.model import (
    Map,
    Path,
    PathGroup,
    Snapshot,
    md_member_state,
)

log = logging.getLogger("dmpath.cli.kernelview")

Facts = Mapping[str, sysfs.PathFacts]


def _path(name: str, devnum: str, facts: sysfs.PathFacts | None, **fields: object) -> Path:
    p = Path(name=name, devnum=devnum, wwid="", checker="", **fields)  # type: ignore[arg-type]
    if facts is not None:
        p.devnum = facts.devnum or devnum
        p.hctl = facts.hctl or ""
        p.vendor = facts.vendor or ""
        p.model = facts.model or ""
        p.rev = facts.rev or ""
        p.size_sectors = facts.size_sectors
        p.transport = str(facts.transport)
        p.dev_state = facts.scsi_state or ""
        p.wwid = facts.wwid_sysfs or ""
        p.alua_state = facts.access_state or ""
    return p


def _identity(m: Map, facts: list[sysfs.PathFacts]) -> None:
    """Vendor, model and revision of a map are those of its LUN: take them from a path."""
    for f in facts:
        if f.vendor or f.model:
            m.vendor, m.model, m.rev = f.vendor or "", f.model or "", f.rev or ""
            return


def dm_map(
    info: dmtable.DmInfo,
    table: dmtable.MultipathTable,
    status: dmtable.MultipathStatus,
    names: Mapping[str, str],
    facts: Facts,
    *,
    uuid_prefix: str = DEFAULT_DM_UUID_PREFIX,
) -> Map:
    """One dm multipath map from ``dmsetup info``, ``table`` and ``status``, read as the
    daemon reads them (:func:`dmpath.kernel.dmmap.kernel_map`).

    ``names`` maps the table's devices (``8:16``) to kernel names (``sdb``); ``facts`` holds
    sysfs facts per kernel name (missing when the device vanished: the path is still shown).
    A path's ``fail_count`` is the daemon's history and stays 0 here, as its priority does.
    """
    km = kernel_map(info.name, info, table, status)
    m = Map(
        name=info.name,
        wwid=wwid_of(info.uuid, uuid_prefix) or "",
        backend=Backend.DM,
    )
    set_map_fields(m, km)
    used: list[sysfs.PathFacts] = []
    for g in km.groups:
        pg = PathGroup(number=g.number, selector=g.selector, priority=0, state=g.state)
        for dev in g.devnums:
            name = names.get(dev, dev.removeprefix("/dev/"))
            f = facts.get(name)
            if f is not None:
                used.append(f)
            m.paths.append(
                _path(
                    name,
                    dev if ":" in dev else "",
                    f,
                    kernel_state=km.members[dev],
                    group=g.number,
                )
            )
            pg.paths.append(name)
        m.groups.append(pg)
    _identity(m, used)
    if m.paths and not m.wwid:
        m.wwid = m.paths[0].wwid
    return m


def md_map(array: mdstat.MdArray, facts: Facts) -> Map:
    """One md multipath array from ``/proc/mdstat``: a faulty member is a failed path.

    The personality has no groups; paths are listed working ones first, which is how its
    ``[UU_]`` slots read. If the kernel's own ``[n/m]`` differs from what the members
    give (a removed member leaves an empty slot), the kernel's is added as an alert.
    """
    m = Map(
        name=array.name,
        wwid="",
        backend=Backend.MD,
        sysfs=array.name,
        devnode=f"/dev/{array.name}",
        size_sectors=(array.blocks or 0) * 2,
        queueing=False,
    )
    members = sorted(array.members, key=lambda mem: (mem.faulty, mem.desc_nr))
    used: list[sysfs.PathFacts] = []
    for mem in members:
        f = facts.get(mem.name)
        if f is not None:
            used.append(f)
        state = md_member_state(mem.flags)
        m.paths.append(_path(mem.name, "", f, kernel_state=state))
    _identity(m, used)
    m.wwid = next((p.wwid for p in m.paths if p.wwid), "")
    kernel = array.status_brackets
    if kernel is not None and kernel != m.brackets():
        m.alerts.append(f"the kernel reports {kernel}")
    if not array.active:
        m.alerts.append("array is inactive")
    return m


# --------------------------------------------------------------------------- I/O


def name_of_devnum(devnum: str, sys_root: str = "/sys") -> str | None:
    """The kernel name of a block device number (``8:16`` -> ``sdb``), None if gone."""
    link = os.path.join(sys_root, "dev", "block", devnum)
    try:
        return os.path.basename(os.path.realpath(link, strict=True))
    except OSError:
        return None


def _facts(name: str, sys_root: str) -> sysfs.PathFacts | None:
    try:
        return sysfs.read_path_facts(name, sys_root)
    except DmpathError as exc:  # the path vanished between listing and reading
        log.debug("no sysfs facts for %s: %s", name, exc)
        return None


def _read_dm(
    sys_root: str, facts: dict[str, sysfs.PathFacts], uuid_prefix: str = DEFAULT_DM_UUID_PREFIX
) -> list[Map]:
    from dmpath.kernel import dmsetup

    maps: list[Map] = []
    for dev in dmsetup.list_maps():
        info = dmsetup.info(dev.name)
        if wwid_of(info.uuid, uuid_prefix) is None:
            continue
        table = dmsetup.table(dev.name)
        status = dmsetup.status(dev.name)
        names: dict[str, str] = {}
        for d in table.devs:
            name = name_of_devnum(d, sys_root) if ":" in d else d.removeprefix("/dev/")
            if name is None:
                continue
            names[d] = name
            if name not in facts and (f := _facts(name, sys_root)) is not None:
                facts[name] = f
        maps.append(dm_map(info, table, status, names, facts, uuid_prefix=uuid_prefix))
    return maps


def _read_md(sys_root: str, mdstat_path: str, facts: dict[str, sysfs.PathFacts]) -> list[Map]:
    from dmpath.kernel import mdadm

    maps: list[Map] = []
    for array in mdadm.read_mdstat(mdstat_path).arrays:
        if array.personality != "multipath":
            continue
        for mem in array.members:
            if mem.name not in facts and (f := _facts(mem.name, sys_root)) is not None:
                facts[mem.name] = f
        maps.append(md_map(array, facts))
    return maps


def read_snapshot(
    sys_root: str = "/sys",
    mdstat_path: str = "/proc/mdstat",
    *,
    uuid_prefix: str = DEFAULT_DM_UUID_PREFIX,
    dm_reader: Callable[[str, dict[str, sysfs.PathFacts]], list[Map]] | None = None,
) -> Snapshot:
    """The kernel's view: dmpath's dm maps, md multipath arrays, sysfs facts of paths.

    Reading dm maps needs root (dmsetup talks to /dev/mapper/control); that failure is
    raised (the caller says the daemon is down and this failed too), while md arrays need
    no privileges. Our dm maps are those whose uuid starts with ``uuid_prefix`` (the
    configured ``dm_uuid_prefix``). ``dm_reader`` lets tests replace the dmsetup part.
    """
    facts: dict[str, sysfs.PathFacts] = {}
    if dm_reader is None:
        maps = _read_dm(sys_root, facts, uuid_prefix)
    else:
        maps = dm_reader(sys_root, facts)
    maps += _read_md(sys_root, mdstat_path, facts)
    return Snapshot(source="kernel", maps=maps, nvme_native=nvme.read_native(sys_root))
