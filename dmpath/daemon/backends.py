"""The daemon's two kernel backends behind one interface: dm multipath maps and md arrays.

Each reads the kernel's view of a map into a ``KernelMap`` and carries out the healing
actions. They hold no state: the kernel is asked every time.
Ownership is marked in the kernel itself so a restarted daemon adopts multipath maps and
nothing else: dm maps by their uuid prefix (``mpath-`` by default, multipath-tools' own,
which LVM, kpartx and udev's links recognise; dmpathd never runs beside multipathd), md
arrays by the ``dmpath-`` prefix of their md name.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dmpath.config import Backend
from dmpath.config.records import DEFAULT_DM_UUID_PREFIX
from dmpath.errors import DmpathError
from dmpath.kernel import dmioctl, dmsetup, kpartx, mdadm
from dmpath.kernel.dmmap import kernel_map, wwid_of
from dmpath.kernel.dmtable import DmDevice, DmInfo, MultipathStatus, MultipathTable
from dmpath.kernel.mdadm import MemberBusy
from dmpath.kernel.mdstat import MdExamine, MdStat
from dmpath.model import (
    KernelMap,
    KernelState,
    md_member_state,
)
from dmpath.policy.mdmigrate import data_map_name, data_table, data_uuid
from dmpath.runner import CommandResult

log = logging.getLogger("dmpathd")

MD_NAME_PREFIX = "dmpath-"
#: a vanished md member is removed once its in-flight I/O is gone: tries, and the pause
FORGET_TRIES = 20
FORGET_PAUSE = 0.5


class ForeignSuperblock(DmpathError):
    """A path carries the md superblock of an array that is not this map's: never
    overwrite it (it may hold someone's RAID member or data)."""

    exit_code = 7


@dataclass(frozen=True)
class MdStart:
    """How to start a map's md array: assemble the members that carry its superblock (its
    data is there: after a reboot or a stop) and add the rest, or create it afresh."""

    assemble: list[str]
    add: list[str]

    @property
    def create(self) -> bool:
        return not self.assemble


def short_md_name(name: str | None) -> str:
    """``host:dmpath-mpatha`` -> ``dmpath-mpatha`` (mdadm prefixes the home host)."""
    return (name or "").split(":", 1)[-1]


def plan_md_start(md_name: str, superblocks: dict[str, MdExamine | None]) -> MdStart:
    """Decide from each member's superblock (None: none) how array ``md_name`` starts.

    Re-creating an array over members that have its superblock would rewrite the
    metadata, and a different mdadm may choose another data offset: the data would move.
    So: superblocks of this array -> assemble; none -> create; anything else -> refuse.
    """
    ours: list[str] = []
    uuids: set[str] = set()
    for dev, sb in sorted(superblocks.items()):
        if sb is None:
            continue
        if sb.level != "multipath" or short_md_name(sb.name) != md_name:
            raise ForeignSuperblock(
                f"{dev} carries the md superblock of another array (name "
                f"{sb.name or '?'}, level {sb.level}); dmpath will not overwrite it "
                f"(erase it with mdadm --zero-superblock if it is stale)"
            )
        ours.append(dev)
        uuids.add(sb.array_uuid)
    if len(uuids) > 1:
        raise ForeignSuperblock(
            f"the paths of {md_name} carry superblocks of {len(uuids)} different arrays "
            f"({', '.join(sorted(uuids))}); sort them out with mdadm --examine first"
        )
    return MdStart(assemble=ours, add=sorted(d for d, sb in superblocks.items() if sb is None))


class Unsupported(DmpathError):
    """The operation has no meaning on this backend (e.g. path groups on md)."""

    exit_code = 7


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


def _peek(path: str) -> str:
    """``_read``, or '' when the file is not there (a member md has let go of)."""
    try:
        return _read(path)
    except OSError:
        return ""


def _md_uuid(kname: str) -> str:
    """The array UUID udev recorded (MD_UUID), '' if none: asks no device (see ``fail``)."""
    import pyudev

    try:
        dev = pyudev.Devices.from_name(pyudev.Context(), "block", kname)
        return str(dev.properties.get("MD_UUID", ""))
    except (pyudev.DeviceNotFoundError, OSError):
        return ""


def devnum_of(name: str) -> str:
    """``sda`` → ``8:0`` from sysfs ('' if the device is gone)."""
    try:
        return _read(f"/sys/class/block/{name}/dev")
    except OSError:
        return ""


def apply_steps(
    fail: Callable[[str, str], None],
    reinstate: Callable[[str, str], None],
    name: str,
    steps: list[tuple[str, str]],
) -> list[DmpathError | None]:
    """Fail or reinstate several paths of map ``name`` in order (``("fail", dev)``,
    ``("reinstate", dev)``), in one trip to the kernel worker: a fabric event is many
    paths of each map at once. One failing step does not stop the others; each step's
    error (or None) is returned in order."""
    out: list[DmpathError | None] = []
    for verb, dev in steps:
        try:
            (fail if verb == "fail" else reinstate)(name, dev)
            out.append(None)
        except DmpathError as exc:
            out.append(exc)
    return out


def half_made_maps(infos: list[DmInfo], uuid_prefix: str) -> list[str]:
    """Maps of ours the kernel holds with no live table, and nobody has open: a create cut
    short between the device and its table's resume (the daemon killed there). No reader
    lists them (they are no multipath maps yet), and their names block the create that
    would make them whole: they are to be removed."""
    return sorted(
        i.name
        for i in infos
        if i.uuid.startswith(uuid_prefix) and i.segments == 0 and i.open_count == 0
    )


class DmOps(Protocol):
    """The device-mapper operations the dm backend needs, as parsed objects.

    Two implementations: ``DmsetupOps`` (every call a ``dmsetup`` process, what
    ``mpathctl`` uses) and ``KernelDmOps`` (reads and messages as ioctls on
    /dev/mapper/control, lifecycle through dmsetup); a simulated kernel is a third,
    so the daemon's engine runs unchanged against it (``dmpath.sim``).
    """

    def list_maps(self) -> list[DmDevice]: ...
    def read_all(self) -> dict[str, tuple[DmInfo, MultipathTable, MultipathStatus]]: ...
    def info(self, name: str) -> DmInfo: ...
    def table(self, name: str) -> MultipathTable: ...
    def status(self, name: str) -> MultipathStatus: ...
    def message(self, name: str, *words: str) -> str: ...
    def create(self, name: str, table: MultipathTable, uuid: str) -> None: ...
    def reload(self, name: str, table: MultipathTable) -> None: ...
    def rename(self, name: str, new_name: str) -> None: ...
    def suspended(self, name: str) -> bool: ...
    def resume(self, name: str) -> None: ...
    def remove(self, name: str, force: bool) -> None: ...


class DmsetupOps:
    """Every operation one ``dmsetup`` process (dmpath.kernel.dmsetup)."""

    def list_maps(self) -> list[DmDevice]:
        return dmsetup.list_maps()

    def read_all(self) -> dict[str, tuple[DmInfo, MultipathTable, MultipathStatus]]:
        out: dict[str, tuple[DmInfo, MultipathTable, MultipathStatus]] = {}
        for dev in self.list_maps():
            try:
                out[dev.name] = (self.info(dev.name), self.table(dev.name), self.status(dev.name))
            except DmpathError as exc:
                log.debug("%s vanished while being read: %s", dev.name, exc)
        return out

    def info(self, name: str) -> DmInfo:
        return dmsetup.info(name)

    def table(self, name: str) -> MultipathTable:
        return dmsetup.table(name)

    def status(self, name: str) -> MultipathStatus:
        return dmsetup.status(name)

    def message(self, name: str, *words: str) -> str:
        return dmsetup.message(name, *words)

    def create(self, name: str, table: MultipathTable, uuid: str) -> None:
        # without udev synchronisation: dmsetup returns once the map is live instead of
        # waiting for udev to finish with it, so a coldplug of hundreds of maps is not
        # one udev round after another; the daemon waits for /dev/mapper/NAME itself
        dmsetup.create(name, table, uuid=uuid, udev_sync=False)

    def reload(self, name: str, table: MultipathTable) -> None:
        dmsetup.reload(name, table)

    def rename(self, name: str, new_name: str) -> None:
        dmsetup.rename(name, new_name)

    def suspended(self, name: str) -> bool:
        return dmsetup.suspended(name)

    def resume(self, name: str) -> None:
        dmsetup.resume(name, udev_sync=False)

    def remove(self, name: str, force: bool) -> None:
        dmsetup.remove(name, force=force)


class KernelDmOps(DmsetupOps):
    """Reads, target messages, creates and reloads as ioctls on /dev/mapper/control
    (microseconds, where a ``dmsetup`` process costs a fork and an exec: at a thousand
    paths a fabric failure is hundreds of messages and reads, a coldplug hundreds of
    creates). Removing a map stays with ``dmsetup`` for its ``--retry``/``--force``."""

    def __init__(self, control: dmioctl.DmControl) -> None:
        self.ctl = control

    def list_maps(self) -> list[DmDevice]:
        return self.ctl.list_devices()

    def read_all(self) -> dict[str, tuple[DmInfo, MultipathTable, MultipathStatus]]:
        return self.ctl.read_all()

    def info(self, name: str) -> DmInfo:
        return self.ctl.info(name)

    def table(self, name: str) -> MultipathTable:
        return self.ctl.table(name)

    def status(self, name: str) -> MultipathStatus:
        return self.ctl.status(name)

    def message(self, name: str, *words: str) -> str:
        return self.ctl.message(name, *words)

    def create(self, name: str, table: MultipathTable, uuid: str) -> None:
        # a coldplug of hundreds of maps made as many dmsetup processes, and starting each
        # from Python cost more than the kernel's work; udev is not waited for either way
        self.ctl.create(name, table, uuid)

    def reload(self, name: str, table: MultipathTable) -> None:
        self.ctl.reload(name, table)

    def suspended(self, name: str) -> bool:
        return self.ctl.suspended(name)

    def resume(self, name: str) -> None:
        self.ctl.resume(name)


def kernel_dm_ops() -> DmOps:
    """The fastest DmOps this machine offers: ioctls where /dev/mapper/control opens,
    else dmsetup (which then reports the missing device-mapper itself).

    ``DMPATH_FAULT_PLAN`` (a testing aid, docs/faults.md) puts a fault plan between the
    daemon and its ioctls; without it the system call is used as is."""
    ioctl: dmioctl.IoctlFn = dmioctl.sys_ioctl
    if os.environ.get("DMPATH_FAULT_PLAN"):
        from dmpath.kernel import faults  # never imported otherwise

        plan = faults.plan_from_env()
        if plan is not None:
            ioctl = faults.faulty_ioctl(plan, ioctl)
    try:
        return KernelDmOps(dmioctl.open_control(ioctl=ioctl))
    except dmioctl.DmControlUnavailable as exc:
        log.debug("dm ioctls unavailable (%s): using dmsetup", exc)
        return DmsetupOps()


class DmBackend:
    kind = Backend.DM

    def __init__(
        self, uuid_prefix: str = DEFAULT_DM_UUID_PREFIX, ops: DmOps | None = None
    ) -> None:
        self.uuid_prefix = uuid_prefix
        self.ops: DmOps = ops if ops is not None else DmsetupOps()

    def uuid_for(self, wwid: str) -> str:
        return self.uuid_prefix + wwid

    def wwid_of(self, uuid: str) -> str | None:
        return wwid_of(uuid, self.uuid_prefix)

    def read_ours(self) -> dict[str, KernelMap]:
        """Every map of ours now in the kernel, read: name -> KernelMap (a map that goes
        away while being read is left out)."""
        return {
            name: self._read(name, info, table, status)
            for name, (info, table, status) in self.ops.read_all().items()
            if self.wwid_of(info.uuid)
        }

    def read(self, name: str) -> KernelMap:
        return self._read(name, self.ops.info(name), self.ops.table(name))

    def half_made(self, known: set[str]) -> list[str]:
        """Our maps without a live table (:func:`half_made_maps`), among the devices not in
        ``known`` (the maps read whole)."""
        infos: list[DmInfo] = []
        for dev in self.ops.list_maps():
            if dev.name in known:
                continue
            try:
                infos.append(self.ops.info(dev.name))
            except DmpathError:
                continue  # gone meanwhile
        return half_made_maps(infos, self.uuid_prefix)

    def read_states(self, name: str, prev: KernelMap | None) -> KernelMap:
        """Only the status (one read, not three) when the table is unchanged: what a
        fail/reinstate/switch message changes is in the status alone."""
        if prev is None or prev.table is None or prev.info is None:
            return self.read(name)
        return self._read(name, prev.info, prev.table)

    def _read(
        self,
        name: str,
        info: DmInfo,
        table: MultipathTable,
        status: MultipathStatus | None = None,
    ) -> KernelMap:
        if status is None:
            status = self.ops.status(name)
        return kernel_map(name, info, table, status)

    def create(self, name: str, wwid: str, table: MultipathTable) -> str:
        self.ops.create(name, table, self.uuid_for(wwid))
        return "created"

    def reload(self, name: str, table: MultipathTable) -> None:
        self.ops.reload(name, table)

    def suspended(self, name: str) -> bool:
        return self.ops.suspended(name)

    def resume(self, name: str) -> None:
        self.ops.resume(name)

    def apply(self, name: str, steps: list[tuple[str, str]]) -> list[DmpathError | None]:
        return apply_steps(self.fail, self.reinstate, name, steps)

    def fail(self, name: str, devnum: str) -> None:
        self.ops.message(name, "fail_path", devnum)

    def reinstate(self, name: str, devnum: str) -> None:
        self.ops.message(name, "reinstate_path", devnum)

    def switch_group(self, name: str, group: int) -> None:
        if isinstance(group, bool) or group < 1:
            raise DmpathError(f"path group numbers start at 1, got {group!r}")
        self.ops.message(name, "switch_group", str(group))

    def set_queueing(self, name: str, enabled: bool) -> None:
        self.ops.message(name, "queue_if_no_path" if enabled else "fail_if_no_path")

    def flush(self, name: str, force: bool = False) -> None:
        self.ops.remove(name, force)

    def ensure_data_map(
        self, name: str, wwid: str, offset: int, sectors: int | None
    ) -> str | None:
        """Make the linear data map ``<name>-data`` on map ``name`` if it is missing
        (``[[multipaths]] data_offset``: a former md array, dmpath.policy.mdmigrate);
        returns its name when it was made, None when it was there already."""
        data = data_map_name(name)
        try:
            dmsetup.info(data)
            return None
        except DmpathError:
            pass  # not there (dmsetup says "Device does not exist"): make it
        info = self.ops.info(name)
        table = data_table(info.devnum, self.ops.table(name).length, offset, sectors)
        dmsetup.create(data, table, uuid=data_uuid(self.uuid_for(wwid)))
        return data

    def data_map_open(self, name: str) -> int | None:
        """How many hold the data map of ``name`` open (a mount, LVM), None if it has none."""
        try:
            return dmsetup.info(data_map_name(name)).open_count
        except DmpathError:
            return None

    def remove_data_map(self, name: str, force: bool = False) -> None:
        """Remove the data map of ``name`` (it holds the map open), if there is one."""
        if self.data_map_open(name) is not None:
            dmsetup.remove(data_map_name(name), force=force)

    def partitions(self, kname: str, uuid: str) -> dict[str, int]:
        """The map's partition maps (``NAME-partN``) and how many hold each open."""
        names = kpartx.partition_maps(uuid, kpartx.dm_holders(kname))
        return {n: self.ops.info(n).open_count for n in names}

    def sync_partitions(self, name: str, kname: str, uuid: str) -> tuple[list[str], list[str]]:
        """Partition maps made to match the table on the map now; (before, after)."""
        before = kpartx.partition_maps(uuid, kpartx.dm_holders(kname))
        try:
            table = kpartx.has_table(kpartx.first_sector(name))
        except FileNotFoundError:
            return before, before  # no node (udev never made it): nothing can be read
        except OSError as exc:
            raise DmpathError(f"{name}: cannot read its first sector: {exc.strerror}") from exc
        if not table and not before:
            return before, before
        kpartx.update(name)
        return before, kpartx.partition_maps(uuid, kpartx.dm_holders(kname))

    def remove_partitions(self, name: str) -> None:
        kpartx.delete(name)

    def rename(self, name: str, new_name: str, kname: str, uuid: str) -> None:
        """Rename map ``name`` and its partition maps (``NAME-partN``: kpartx's names
        follow the map's); the uuids stay, so udev's by-id links do too."""
        parts = kpartx.partition_maps(uuid, kpartx.dm_holders(kname)) if kname else []
        self.ops.rename(name, new_name)
        for part in parts:
            if part.startswith(name + kpartx.DELIMITER):
                self.ops.rename(part, new_name + part[len(name) :])


def free_md_slot(md_dir: str) -> int | None:
    """The lowest slot of the array with no member (``rdN`` links name the used ones)."""
    try:
        raid_disks = int(_peek(f"{md_dir}/raid_disks"))
    except ValueError:
        return None
    for n in range(raid_disks):
        if not os.path.lexists(f"{md_dir}/rd{n}"):
            return n
    return None


def _member_file(kname: str, devnode: str, attr: str) -> str:
    """``/sys/block/md127/md/dev-sdb/state`` and its siblings: one member's md sysfs."""
    return f"/sys/block/{kname}/md/dev-{os.path.basename(devnode)}/{attr}"


def _take_out(kname: str, devnode: str, tries: int) -> None:
    """Faulty (unless it is already), then removed from the array: md sysfs only.

    ``remove`` answers EBUSY while I/O the member had in flight is retried elsewhere,
    which takes moments: tried ``tries`` times, FORGET_PAUSE apart, then MemberBusy.
    """
    state = _member_file(kname, devnode, "state")
    if "faulty" not in _peek(state):
        _sysfs_write(state, "faulty", kname, devnode, "fail")
    for _ in range(tries - 1):
        try:
            _sysfs_write(state, "remove", kname, devnode, "remove")
            return
        except MemberBusy:
            time.sleep(FORGET_PAUSE)
    _sysfs_write(state, "remove", kname, devnode, "remove")


def _activate_spare(kname: str, devnode: str) -> None:
    """Make a member that md holds as a spare a working path, if a slot is free.

    md's thread hot-adds spares only when something wakes it for recovery (busy I/O
    does; an idle array may not, and the model would read "spare" until then): a free
    ``slot`` written ourselves calls the personality's hot-add at once. With every slot
    taken the member stays a spare, md's standby path.
    """
    md_dir = f"/sys/block/{kname}/md"
    slot = _member_file(kname, devnode, "slot")
    if _peek(slot) != "none":
        return  # in a slot already (md's thread was quicker), or not ours to place
    free = free_md_slot(md_dir)
    if free is None:
        return
    try:
        _sysfs_write(slot, str(free), kname, devnode, "add")
    except MemberBusy:
        if _peek(slot) in ("none", ""):
            raise
        # placed by md's thread between our read and our write: it is in


def _sysfs_write(path: str, value: str, kname: str, devnode: str, operation: str) -> None:
    """One md sysfs write; EBUSY becomes MemberBusy (the daemon retries), other errors
    name the file and the operation."""
    try:
        with open(path, "w") as fh:
            fh.write(value + "\n")
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            result = CommandResult(("write", path, value), 1, "", os.strerror(exc.errno), 0.0)
            raise MemberBusy(result, f"/dev/{kname}", devnode, operation) from exc
        raise DmpathError(f"{path}: cannot {operation} {devnode} ({value!r}): {exc}") from exc


class MdBackend:
    """md multipath arrays (superblock 1.2, md name ``dmpath-<map name>``)."""

    kind = Backend.MD

    @staticmethod
    def md_name(name: str) -> str:
        return MD_NAME_PREFIX + name

    def _find(self, name: str) -> tuple[str, MdStat]:
        """The kernel name (md127) of our array ``name``."""
        stat = mdadm.read_mdstat()
        # udev's /dev/md/NAME link first: ``mdadm --detail`` reads the name from a member's
        # superblock, so it cannot name an array whose paths are all offline
        link = os.path.realpath(f"/dev/md/{self.md_name(name)}")
        linked = stat.array(os.path.basename(link)) if link.startswith("/dev/md") else None
        if linked is not None and linked.personality == "multipath":
            return linked.name, stat
        for arr in stat.arrays:
            if arr.personality != "multipath":
                continue
            exp = mdadm.detail_export(f"/dev/{arr.name}")
            if exp.name and exp.name.split(":", 1)[-1] == self.md_name(name):
                return arr.name, stat
        raise DmpathError(f"md array for map {name} not found")

    def list_ours(self) -> dict[str, str]:
        """Our arrays: map name -> '' (the WWID comes from the members' udev records)."""
        out: dict[str, str] = {}
        try:
            stat = mdadm.read_mdstat()
        except (OSError, DmpathError):
            return out
        # udev's /dev/md/dmpath-* links first: they need no mdadm run, which opens the array
        # and blocks while I/O on it is stuck (every path dead: the personality retries)
        linked: set[str] = set()
        for link in sorted(glob.glob(f"/dev/md/{MD_NAME_PREFIX}*")):
            arr = stat.array(os.path.basename(os.path.realpath(link)))
            if arr is not None and arr.personality == "multipath":
                out[os.path.basename(link)[len(MD_NAME_PREFIX) :]] = ""
                linked.add(arr.name)
        for arr in stat.arrays:
            if arr.personality != "multipath" or arr.name in linked:
                continue
            exp = mdadm.detail_export(f"/dev/{arr.name}")
            short = (exp.name or "").split(":", 1)[-1]
            if short.startswith(MD_NAME_PREFIX):
                out[short[len(MD_NAME_PREFIX) :]] = ""
        return out

    def read(self, name: str) -> KernelMap:
        kname, stat = self._find(name)
        arr = next(a for a in stat.arrays if a.name == kname)
        members: dict[str, KernelState] = {}
        for m in sorted(arr.members, key=lambda m: m.desc_nr):
            dn = devnum_of(m.name)
            if dn:
                members[dn] = md_member_state(m.flags)
        try:
            holders = os.listdir(f"/sys/block/{kname}/holders")
        except OSError:
            holders = []
        return KernelMap(
            name=name,
            backend=Backend.MD,
            uuid=_md_uuid(kname),
            sysfs=kname,
            devnode=f"/dev/{kname}",
            size_sectors=(arr.blocks or 0) * 2,
            open_count=len(holders),
            members=members,
            queueing=False,
            features="",
            hwhandler="",
        )

    def read_states(self, name: str, prev: KernelMap | None) -> KernelMap:
        return self.read(name)

    def create(self, name: str, devnodes: list[str]) -> str:
        """Start the array of map ``name`` over ``devnodes``: "assembled" from the
        superblocks its paths carry, or "created" when they carry none."""
        md_name = self.md_name(name)
        plan = plan_md_start(md_name, {dev: mdadm.examine(dev) for dev in devnodes})
        if plan.create:
            mdadm.create(f"/dev/md/{md_name}", devnodes, name=md_name)
            return "created"
        mdadm.assemble(f"/dev/md/{md_name}", plan.assemble)
        for dev in plan.add:
            self.add(name, dev)
        return "assembled"

    def add(self, name: str, devnode: str) -> None:
        kname, _ = self._find(name)
        mdadm.add(f"/dev/{kname}", devnode)
        _activate_spare(kname, devnode)

    def apply(self, name: str, steps: list[tuple[str, str]]) -> list[DmpathError | None]:
        return apply_steps(self.fail, self.reinstate, name, steps)

    def fail(self, name: str, devnode: str) -> None:
        """Mark a path faulty through its md sysfs ``state`` (mdadm only as a fallback).

        ``mdadm --fail`` opens the member, which a dead path refuses (offline: ENXIO), and
        the array, which blocks while I/O on it is stuck retrying the last path. The sysfs
        write needs neither, and the kernel still applies the personality's last-path rule.
        """
        kname, _ = self._find(name)
        state = _member_file(kname, devnode, "state")
        if not os.path.exists(state):
            mdadm.fail(f"/dev/{kname}", devnode)
            return
        _sysfs_write(state, "faulty", kname, devnode, "fail")

    def reinstate(self, name: str, devnode: str) -> None:
        """md cannot un-fail a member: hot-remove it and re-add it, through sysfs.

        Not with mdadm: it opens the array, and while every other path is dead the
        personality retries the array's I/O forever, so that open hangs, and with it the
        very re-add that would let the I/O through (seen in the lab). The sysfs writes
        need no open: ``state`` <- ``remove`` (EBUSY while the member still has I/O in
        flight: MemberBusy, retried on the next check), ``new_dev`` <- major:minor, which
        imports the member by its superblock as a spare, and a free ``slot``, which
        hot-adds the spare as a working path.
        """
        kname, _ = self._find(name)
        md_dir = f"/sys/block/{kname}/md"
        if not os.path.exists(f"{md_dir}/new_dev"):
            mdadm.remove(f"/dev/{kname}", devnode)
            mdadm.add(f"/dev/{kname}", devnode)
            return
        state = _member_file(kname, devnode, "state")
        if os.path.exists(state):
            _sysfs_write(state, "remove", kname, devnode, "remove")
        devnum = devnum_of(os.path.basename(devnode))
        if not devnum:
            raise DmpathError(f"{devnode} is gone; nothing to re-add to {kname}")
        _sysfs_write(f"{md_dir}/new_dev", devnum, kname, devnode, "add")
        _activate_spare(kname, devnode)

    def remove_member(self, name: str, devnode: str) -> None:
        """Take a path out of the array for good: faulty, then removed (sysfs, as above)."""
        kname, _ = self._find(name)
        if not os.path.exists(_member_file(kname, devnode, "state")):
            mdadm.fail(f"/dev/{kname}", devnode)
            mdadm.remove(f"/dev/{kname}", devnode)
            return
        _take_out(kname, devnode, tries=1)

    def forget_member(self, name: str, devnode: str) -> None:
        """A path that vanished (its device deleted): take its member out of the array if
        md still holds one, through sysfs only (mdadm cannot open a device that is gone)."""
        kname, _ = self._find(name)
        if os.path.exists(_member_file(kname, devnode, "state")):
            _take_out(kname, devnode, tries=FORGET_TRIES)

    def switch_group(self, name: str, group: int) -> None:
        raise Unsupported(f"{name}: md multipath arrays have no path groups")

    def set_queueing(self, name: str, enabled: bool) -> None:
        raise Unsupported(f"{name}: md multipath arrays do not queue I/O")

    def flush(self, name: str, force: bool = False) -> None:
        kname, _ = self._find(name)
        mdadm.stop(f"/dev/{kname}")
