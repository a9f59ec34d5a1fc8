"""Moving an md multipath array to dm maps over the same paths: the decisions, as pure
functions (``mpathctl migrate-md`` does the I/O, the daemon keeps the result).

md multipath left Linux in 6.8. An array's data sits on every path from the superblock's
*data offset* on (2048 sectors for mdadm's 1.2 metadata on small disks, more on large
ones; 0 for 0.90 and 1.0, whose superblock is at the end). A dm ``multipath`` table takes
no offset, so the data is shown in two layers:

- the LUN's multipath map ``NAME`` over the whole paths, the map dmpathd would make for
  that WWID anyway (uuid ``<dm_uuid_prefix><wwid>``): the daemon adopts it, checks its
  paths and fails them over like any other map;
- a ``linear`` data map ``NAME-data`` on top, from the data offset on, the array's size
  long: what was /dev/mdN. Its uuid is ``data-<map uuid>``, the way kpartx stacks
  ``partN-`` maps on a multipath map, so nothing takes it for a multipath map.

The other way round (a linear map per path at the offset, multipath over those) would
hide the SCSI disks behind dm devices: the daemon's paths are disks it can send TEST UNIT
READY to and see in udev, so it could not manage that map.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from dmpath.errors import DmpathError
from dmpath.kernel.mdstat import MdDetail, MdExamine

#: the data map's name is the map's plus this
DATA_SUFFIX = "-data"
#: the data map's dm uuid is this plus the multipath map's
DATA_UUID_PREFIX = "data-"
#: dm names and uuids hold at most 127 characters (DM_NAME_LEN/DM_UUID_LEN 128, NUL)
DM_NAME_MAX = 127
#: md's name prefix for arrays dmpathd made (``dmpath-<map name>``)
MD_NAME_PREFIX = "dmpath-"

_SECTORS_RE = re.compile(r"^(\d+) sectors\b")
_DM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+:@-]*$")


class MigrationRefused(DmpathError):
    """The array cannot be migrated as it is; nothing was changed."""

    exit_code = 7


@dataclass(frozen=True)
class MigrationPlan:
    """What ``migrate-md`` will do to one array."""

    array: str  #: /dev/md127
    array_uuid: str
    map_name: str  #: the multipath map; the data map is ``map_name + DATA_SUFFIX``
    members: tuple[str, ...]  #: /dev/sdX, every path the array holds
    data_offset: int  #: sectors
    data_sectors: int  #: the array's size, sectors

    @property
    def data_map(self) -> str:
        return data_map_name(self.map_name)


def data_map_name(map_name: str) -> str:
    return map_name + DATA_SUFFIX


def data_uuid(map_uuid: str) -> str:
    return DATA_UUID_PREFIX + map_uuid


def sectors_field(value: str | None) -> int | None:
    """``"2048 sectors"`` (mdadm --examine's Data Offset) -> 2048; None if absent."""
    if value is None:
        return None
    m = _SECTORS_RE.match(value.strip())
    if not m:
        raise MigrationRefused(f"cannot read a sector count from {value!r}")
    return int(m.group(1))


def map_name_for(md_name: str | None, wanted: str | None) -> str:
    """The multipath map's name: ``wanted``, or the array's md name without mdadm's home
    host and dmpath's ``dmpath-`` prefix (``host:dmpath-mpatha`` -> ``mpatha``)."""
    if wanted:
        name = wanted
    else:
        short = (md_name or "").split(":", 1)[-1]
        name = short[len(MD_NAME_PREFIX) :] if short.startswith(MD_NAME_PREFIX) else short
        if not name or name.isdigit():
            raise MigrationRefused(
                f"the array's md name {md_name!r} makes no map name: give one with --name"
            )
    if not _DM_NAME_RE.match(name) or len(data_map_name(name)) > DM_NAME_MAX:
        raise MigrationRefused(
            f"map name {name!r}: letters, digits, '_', '.', '+', ':', '@', '-', starting "
            f"with a letter or digit, at most {DM_NAME_MAX - len(DATA_SUFFIX)} characters"
        )
    return name


def plan_migration(
    array: str,
    detail: MdDetail,
    superblocks: Mapping[str, MdExamine | None],
    member_sectors: Mapping[str, int],
    *,
    name: str | None = None,
) -> MigrationPlan:
    """Check that ``array`` is an md multipath array whose members all carry its
    superblock with one data offset, and that the data fits on every path; the plan, or
    MigrationRefused naming what is wrong."""
    if detail.level != "multipath":
        raise MigrationRefused(
            f"{array} is not an md multipath array (level {detail.level or 'unknown'}); "
            "only multipath arrays are paths to one LUN"
        )
    members = tuple(sorted(superblocks))
    if not members:
        raise MigrationRefused(f"{array} has no member paths to move")
    offsets: set[int] = set()
    uuids: set[str] = set()
    for dev in members:
        sb = superblocks[dev]
        if sb is None:
            raise MigrationRefused(f"{dev} is in {array} but carries no md superblock")
        if sb.level != "multipath" or (detail.uuid and sb.array_uuid != detail.uuid):
            raise MigrationRefused(
                f"{dev} carries the superblock of another array ({sb.array_uuid}, level "
                f"{sb.level}), not {array}'s"
            )
        offsets.add(sectors_field(sb.fields.get("Data Offset")) or 0)
        uuids.add(sb.array_uuid)
    if len(uuids) != 1:
        raise MigrationRefused(f"the paths of {array} carry superblocks of {len(uuids)} arrays")
    if len(offsets) != 1:
        raise MigrationRefused(
            f"the paths of {array} disagree on the data offset ({sorted(offsets)} sectors): "
            "they may not be one LUN"
        )
    offset = offsets.pop()
    if detail.array_size_kib is None or detail.array_size_kib <= 0:
        raise MigrationRefused(f"mdadm --detail {array} gives no array size")
    size = detail.array_size_kib * 2
    for dev in members:
        have = member_sectors.get(dev, 0)
        if offset + size > have:
            raise MigrationRefused(
                f"{dev} has {have} sectors, fewer than the data needs ({offset} + {size})"
            )
    return MigrationPlan(
        array=array,
        array_uuid=uuids.pop(),
        map_name=map_name_for(detail.name, name),
        members=members,
        data_offset=offset,
        data_sectors=size,
    )


def data_table(lower_devnum: str, lower_sectors: int, offset: int, sectors: int | None) -> str:
    """The data map's one-line table: ``linear`` over the multipath map ``lower_devnum``
    from ``offset`` on, ``sectors`` long (None: to the end); refused if it would reach
    past the map's end (a LUN that shrank, or a wrong offset in the configuration)."""
    length = lower_sectors - offset if sectors is None else sectors
    if offset < 0 or length <= 0 or offset + length > lower_sectors:
        raise DmpathError(
            f"a data map of {length} sectors at {offset} does not fit a map of "
            f"{lower_sectors} sectors"
        )
    return f"0 {length} linear {lower_devnum} {offset}"


def multipaths_entry(plan: MigrationPlan, wwid: str, *, when: str = "") -> str:
    """The ``[[multipaths]]`` table that makes the daemon keep both maps from now on."""
    from dmpath.config.toml_text import _toml_value

    note = f" on {when}" if when else ""
    return (
        f"\n# mpathctl migrate-md {plan.array}{note}: md array {plan.array_uuid} "
        f"is now dm map {plan.map_name},\n# its data at /dev/mapper/{plan.data_map}\n"
        "[[multipaths]]\n"
        f"wwid = {_toml_value(wwid)}\n"
        f"alias = {_toml_value(plan.map_name)}\n"
        'backend = "dm"\n'
        f"data_offset = {plan.data_offset}\n"
        f"data_sectors = {plan.data_sectors}\n"
    )
