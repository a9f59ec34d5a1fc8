"""``mpathctl migrate-md ARRAY``: an md multipath array's data onto dm maps over the same
paths, for a host about to boot a kernel without md's multipath personality (Linux 6.8+).

The decisions are in ``dmpath.policy.mdmigrate`` (why two layers: see there). This module
does the steps, in an order where every refusal comes before the first change:

1. read the array (``mdadm --detail``, every member's ``--examine``, sysfs sizes), the
   members' WWID from udev, and the configuration; check them (``plan_migration``);
2. refuse while dmpathd runs (its assembly lock: it could re-assemble the array or take
   the paths half-way), while the array is mounted or held by another device, or when the
   configuration already has an entry for the LUN;
3. write the ``[[multipaths]]`` entry (alias, ``backend = "dm"``, ``data_offset``,
   ``data_sectors``) into the configuration, and the WWID into the wwids file, so the
   daemon makes both maps again at every boot (and udev claims the paths for dmpath);
4. stop the array (md refuses while anything has it open: the record is taken back,
   refused, nothing changed);
5. erase the md superblocks (a few KiB before or after the data, never the data), so no
   mdadm, udev rule or blkid takes the paths or the map for an md member any more;
6. create the multipath map (the daemon's name, uuid and table for that LUN) and the
   linear data map on top.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from dataclasses import dataclass

from dmpath import config as cfgmod
from dmpath.daemon.lock import AssemblyLock, LockBusy, lock_path
from dmpath.errors import DmpathError
from dmpath.kernel import dmsetup, mdadm
from dmpath.kernel.mdadm import ArrayBusy
from dmpath.kernel.mdstat import MdExamine
from dmpath.policy import files
from dmpath.policy.assembly import Member, build_table
from dmpath.policy.mdmigrate import (
    MigrationPlan,
    MigrationRefused,
    data_table,
    data_uuid,
    multipaths_entry,
    plan_migration,
)
from dmpath.runner import run

#: udev has made /dev/mapper/NAME well within this (udev-synchronised dmsetup create)
NODE_WAIT = 30.0


@dataclass(frozen=True)
class Migration:
    plan: MigrationPlan
    wwid: str
    map_uuid: str
    config_path: str
    done: bool  #: False for --dry-run


def _sectors(kname: str) -> int:
    try:
        with open(f"/sys/class/block/{kname}/size") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 0


def _kname(array: str) -> str:
    mdadm.validate_md_device(array)
    real = os.path.realpath(array)
    kname = os.path.basename(real)
    if not real.startswith("/dev/md") or not os.path.isdir(f"/sys/block/{kname}/md"):
        raise MigrationRefused(f"{array} is not a running md array")
    return kname


def _members(kname: str) -> list[str]:
    """Every block device the array holds (working, faulty and spare paths alike)."""
    return sorted("/dev/" + os.path.basename(p) for p in glob.glob(f"/sys/block/{kname}/slaves/*"))


def _wwid(members: list[str], uid_attribute: tuple[str, ...]) -> str:
    """The one WWID of the members (udev, the daemon's uid_attribute): they must agree."""
    import pyudev

    from dmpath.kernel.udev import record_from_device, wwid_from_udev

    ctx = pyudev.Context()
    seen: dict[str, str] = {}
    for dev in members:
        try:
            rec = record_from_device(pyudev.Devices.from_device_file(ctx, dev))
        except (pyudev.DeviceNotFoundError, OSError, ValueError) as exc:
            raise MigrationRefused(f"{dev}: udev does not know it ({exc})") from exc
        wwid = wwid_from_udev(rec, uid_attribute)
        if not wwid:
            raise MigrationRefused(
                f"{dev} has none of the udev properties {', '.join(uid_attribute)}: no WWID "
                "to name its map by"
            )
        seen[dev] = wwid
    if len(set(seen.values())) != 1:
        shown = ", ".join(f"{d} {w}" for d, w in sorted(seen.items()))
        raise MigrationRefused(f"the paths are not one LUN (WWIDs differ: {shown})")
    return next(iter(seen.values()))


def _in_use(kname: str, array: str) -> str:
    """Why the array may not be stopped now ('' if nothing seen): a mount, a holder."""
    nodes = {f"/dev/{kname}", os.path.realpath(array)}
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                src, target = line.split()[:2]
                if os.path.realpath(src) in nodes:
                    return f"mounted on {target}: unmount it first"
    except OSError:
        pass
    holders = sorted(os.listdir(f"/sys/block/{kname}/holders"))
    if holders:
        return f"held by {', '.join(holders)} (LVM, a dm map?): deactivate that first"
    return ""


def _config_text(path: str) -> str:
    text = files.read_text(path)
    return text if text is not None else ""


def _check_entry(cfg: cfgmod.Config, wwid: str, path: str) -> None:
    for i, mp in enumerate(cfg.multipaths):
        if mp.wwid == wwid:
            raise MigrationRefused(
                f"{path}: multipaths[{i}] already configures WWID {wwid}; remove that table "
                "(migrate-md writes its own) and run again"
            )


def migrate(
    array: str,
    *,
    name: str | None = None,
    config_path: str = cfgmod.DEFAULT_CONFIG_PATH,
    dry_run: bool = False,
) -> Migration:
    """Migrate ``array`` (see the module's docstring); returns what was (or would be) done."""
    kname = _kname(array)
    cfg = cfgmod.load_config(config_path)
    d = cfg.defaults
    lock = AssemblyLock(lock_path(d.socket))
    try:
        lock.acquire(timeout=0.0)
    except LockBusy:
        raise MigrationRefused(
            "dmpathd is running (it holds " + lock.path + "): stop it first (systemctl stop "
            "dmpathd.socket dmpathd.service); nothing was changed"
        ) from None
    try:
        return _migrate_locked(
            array, kname, cfg, config_path=config_path, name=name, dry_run=dry_run
        )
    finally:
        lock.release()


def _migrate_locked(
    array: str,
    kname: str,
    cfg: cfgmod.Config,
    *,
    config_path: str,
    name: str | None,
    dry_run: bool,
) -> Migration:
    d = cfg.defaults
    dev = f"/dev/{kname}"
    members = _members(kname)
    detail = mdadm.detail(dev)
    supers: dict[str, MdExamine | None] = {m: mdadm.examine(m) for m in members}
    sizes = {m: _sectors(os.path.basename(m)) for m in members}
    plan = plan_migration(array, detail, supers, sizes, name=name)
    wwid = _wwid(members, d.uid_attribute)
    _check_entry(cfg, wwid, config_path)
    entry = multipaths_entry(plan, wwid, when=time.strftime("%Y-%m-%d %H:%M:%S"))
    old_text = _config_text(config_path)
    new_text = (old_text.rstrip("\n") + "\n" if old_text.strip() else "") + entry
    # an alias another table uses is refused here, before anything changes
    new_cfg = cfgmod.parse_config(new_text, config_path)
    map_uuid = d.dm_uuid_prefix + wwid
    dmsetup.validate_uuid(data_uuid(map_uuid))
    for taken in (plan.map_name, plan.data_map):
        if os.path.exists(f"/dev/mapper/{taken}"):
            raise MigrationRefused(f"a dm map named {taken} exists already")
    why = _in_use(kname, array)
    if why:
        raise MigrationRefused(f"{array} is {why}; nothing was changed")
    result = Migration(plan, wwid, map_uuid, config_path, done=not dry_run)
    if dry_run:
        return result
    # recorded before the stop: the stop's change events then find the paths claimed by
    # dmpath's udev rule (ID_FS_TYPE=mpath_member), so md's incremental assembly rule
    # leaves them alone instead of starting the array again over them
    existed = files.read_text(config_path) is not None
    new_wwid = False

    def undo() -> None:
        """Take the record back: the array keeps running as it was."""
        with contextlib.suppress(DmpathError, OSError):
            if existed:
                files.write_atomic(config_path, old_text, mode=0o644)
            else:
                os.unlink(config_path)
            if new_wwid:
                files.forget_wwid(d.wwids_file, wwid)

    try:
        files.write_atomic(config_path, new_text, mode=0o644)
        new_wwid = files.remember_wwid(d.wwids_file, wwid)
    except (DmpathError, OSError) as exc:
        undo()
        raise DmpathError(
            f"cannot record the map in {config_path} or {d.wwids_file}: {exc}; nothing was "
            "changed"
        ) from exc
    try:
        mdadm.stop(dev)
    except ArrayBusy:
        undo()
        raise MigrationRefused(
            f"{array} is open (a process, a mount namespace, a holder): close it first; "
            "nothing was changed"
        ) from None
    except DmpathError:
        undo()
        raise
    _erase_superblocks(plan.members)
    _make_maps(plan, new_cfg, wwid, map_uuid)
    return result


def _erase_superblocks(members: tuple[str, ...]) -> None:
    """Erase the members' md superblocks; an array something assembled again over them in
    the meantime (an mdadm rule of another udev set-up) is stopped first, a few times."""
    names = {os.path.basename(m) for m in members}
    last = ""
    for _attempt in range(5):
        for arr in mdadm.read_mdstat().arrays:
            if names & {m.name for m in arr.members}:
                with contextlib.suppress(DmpathError):
                    mdadm.stop(f"/dev/{arr.name}")
        try:
            for m in members:
                mdadm.zero_superblock(m)
            return
        except DmpathError as exc:
            last = str(exc)
            run("udevadm", ["settle", "-t", "10"], check=False, timeout=20)
    raise DmpathError(
        f"the array is stopped and recorded, but its superblocks could not be erased "
        f"({last}); the data is untouched: erase them with mdadm --zero-superblock, then "
        f"start dmpathd"
    )


def _make_maps(plan: MigrationPlan, cfg: cfgmod.Config, wwid: str, map_uuid: str) -> None:
    """The map the daemon would make for this LUN (its options from the configuration
    just written), then the data map on it."""
    opts = cfgmod.effective_options(cfg, wwid, "", "")
    size = min(_sectors(os.path.basename(m)) for m in plan.members)
    members = [
        Member(os.path.basename(m), _devnum(m), priority=1) for m in plan.members
    ]
    table, _groups = build_table(
        size,
        members,
        policy=opts.path_grouping_policy,
        selector=opts.path_selector,
        features=list(opts.features),
        hwhandler=opts.hardware_handler,
        queueing=str(opts.no_path_retry) != "fail",
    )
    try:
        dmsetup.create(plan.map_name, table, uuid=map_uuid)
        info = dmsetup.info(plan.map_name)
        dmsetup.create(
            plan.data_map,
            data_table(info.devnum, size, plan.data_offset, plan.data_sectors),
            uuid=data_uuid(map_uuid),
        )
    except DmpathError as exc:
        raise DmpathError(
            f"the configuration now names {plan.map_name}, but making its maps failed "
            f"({exc}); the data is untouched: dmpathd makes them when it starts"
        ) from exc


def _devnum(devnode: str) -> str:
    st = os.stat(devnode)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
