"""``multipath``: multipath-tools' map tool, served by dmpath, with or without dmpathd.

As the real one, it asks the daemon when one runs (``-r``, ``-f``, ``-F`` are delegated)
and works on the kernel itself when none does: ``-l``/``-ll`` read the maps from the kernel
(no checker results: their words are ``undef``), ``-f`` removes an unused map with
dmsetup (an open one is refused), ``-r`` and a bare ``multipath`` build the maps once
with ``dmpathd --once``. ``-a``/``-w`` edit dmpath's wwids file. Exit statuses are
multipath-tools': 0 done, 1 anything else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import TextIO

from dmpath.compat import source, views
from dmpath.compat.args import MultipathCmd, Unsupported, UsageError, parse_multipath
from dmpath.config.records import Config
from dmpath.errors import DmpathError
from dmpath.model import Check, KernelState, Map, Snapshot

PROG = "multipath"

#: environment variable naming dmpath's configuration file (default /etc/dmpath/dmpath.toml)
CONFIG_ENV = "DMPATH_CONFIG"

USAGE = """\
multipath (dmpath's multipath-tools compatible command)
Usage:
  multipath [-v level] [-r] [device]
  multipath [-v level] -f device
  multipath [-v level] -F
  multipath [-v level] [-l|-ll] [device]
  multipath [-v level] [-a|-w] device
  multipath [-v level] -C device
  multipath -h

Where:
  -h      print this usage text
  -l      show multipath topology (sysfs and DM info)
  -ll     show multipath topology (maximum info)
  -f      flush a multipath device map
  -F      flush all multipath device maps
  -a      add a device wwid to the wwids file
  -w      remove a device from the wwids file
  -C      check if a multipath device has usable paths
  -r      force devmap reload
  -v lvl  verbosity level (0 no output, 1 map names only, 2 default)
Not supported by dmpath: -c -u -U -d -t -T -W (see dmpath-compat(8)).
"""


def is_block_device(name: str, sys_root: str = "/sys") -> bool:
    return os.path.exists(os.path.join(sys_root, "class", "block", name))


def usable_paths(m: Map) -> bool:
    """``-C``: a path the kernel uses and that works. The checker's word when there is
    one (dmpathd's), else the SCSI device state (the kernel's view)."""
    for p in m.paths:
        if p.kernel_state != KernelState.ACTIVE:
            continue
        if p.check == Check.UP:
            return True
        if p.check == Check.UNKNOWN and p.dev_state in ("running", ""):
            return True
    return False


# --------------------------------------------------------------------------- actions


def do_list(cmd: MultipathCmd, out: TextIO, err: TextIO) -> int:
    snap, _running = source.any_snapshot()
    maps: list[Map] | None = None
    if cmd.device:
        target = source.resolve(cmd.device)
        maps = views.find_maps(snap, target)
        if not maps and not is_block_device(target):
            err.write(f"'{cmd.device}' is not a valid argument\n")
            return source.EXIT_FAIL
    out.write(views.topology(snap, maps, checked=cmd.long, verbosity=cmd.verbosity))
    return source.EXIT_OK


def _config() -> Config:
    from dmpath.config import DEFAULT_CONFIG_PATH, load_config

    return load_config(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def disk_wwid(name: str, uid_attribute: Sequence[str]) -> str:
    """A disk's WWID by dmpath's rule (dmpathd's and the udev helper's): the first of the
    ``uid_attribute`` properties udev recorded (the NVMe namespace's sysfs wwid first)."""
    from dmpath.kernel import sysfs
    from dmpath.policy import claim
    from dmpath.udevhelper import udev_db_properties

    facts = sysfs.read_path_facts(name)
    props = udev_db_properties(facts.devnum) if facts.devnum else {}
    return claim.path_wwid(
        props, uid_attribute, str(facts.transport.value), facts.wwid_sysfs or ""
    )


def wwid_of(device: str, snap: Snapshot | None, uid_attribute: Sequence[str]) -> str:
    """The WWID a ``-a``/``-w`` argument stands for: its map's (the map's own name or
    device, or one of its paths), a disk's, or itself."""
    target = source.resolve(device)
    if snap is not None:
        for m in views.find_maps(snap, target):
            return m.wwid
    if is_block_device(target) and not target.startswith("dm-"):
        wwid = disk_wwid(target, uid_attribute)
        if wwid:
            return wwid
        raise DmpathError(f"{device}: no WWID")
    if device.startswith("/dev/"):
        raise DmpathError(f"{device}: not a path or multipath device")
    return device


def _quiet_snapshot() -> Snapshot | None:
    try:
        return source.any_snapshot()[0]
    except DmpathError:
        return None


def do_wwid(cmd: MultipathCmd, out: TextIO) -> int:
    from dmpath.policy import files

    cfg = _config()
    wwid = wwid_of(cmd.device, _quiet_snapshot(), cfg.defaults.uid_attribute)
    wwids_file = cfg.defaults.wwids_file
    if cmd.action == "add_wwid":
        try:
            files.remember_wwid(wwids_file, wwid)
        except DmpathError:
            out.write(f"failed adding '{wwid}' to wwids file\n")
            return source.EXIT_FAIL
        out.write(f"wwid '{wwid}' added\n")
        return source.EXIT_OK
    if files.forget_wwid(wwids_file, wwid):
        out.write(f"wwid '{wwid}' removed\n")
    else:
        out.write(f"wwid '{wwid}' not in wwids file\n")
    return source.EXIT_OK


def do_usable(cmd: MultipathCmd, err: TextIO) -> int:
    target = source.resolve(cmd.device)
    if not target.startswith("dm-"):
        err.write(f"{cmd.device} is not a dm device\n")
        return source.EXIT_FAIL
    snap, _running = source.any_snapshot()
    found = [m for m in views.dm_maps(snap) if m.sysfs == target]
    if not found:
        err.write(f"{cmd.device} is not a multipath map\n")
        return source.EXIT_FAIL
    if usable_paths(found[0]):
        return source.EXIT_OK
    err.write(f"{cmd.device}: no usable paths found\n")
    return source.EXIT_FAIL


def flush_refusal(name: str, exc: DmpathError) -> str:
    """multipath-tools' words for a map not flushed: in use, or not a map of ours; any
    other failure in dmpath's."""
    from dmpath.protocol import NotFound, Refused

    if isinstance(exc, Refused | InUse):
        return f"{name}: map in use"
    if isinstance(exc, NotFound | NotOurs):
        return f"{name} is not a multipath device"
    return f"{name}: {source.one_line(str(exc))}"


class InUse(DmpathError):
    """A map something holds open (mounted, a partition map in use)."""


class NotOurs(DmpathError):
    """No such map, or not a multipath map of dmpath's."""


def flush_local(name: str) -> None:
    """Remove an unused dmpath map and its unused partition maps (no daemon runs)."""
    from dmpath.kernel import dmsetup, kpartx

    try:
        info = dmsetup.info(name)
    except DmpathError as exc:
        raise NotOurs(str(exc)) from exc
    if not info.uuid.startswith(source.uuid_prefix()):
        raise NotOurs(f"{name} is not a multipath device")
    try:
        kpartx.delete(name)  # kpartx keeps a partition map that is open
    except DmpathError as exc:
        raise InUse(str(exc)) from exc
    if dmsetup.info(name).open_count:
        raise InUse(f"{name}: map in use")
    dmsetup.remove(name)


def _map_names(snap: Snapshot) -> list[str]:
    return [m.name for m in views.dm_maps(snap)]


def _daemon_runs() -> bool:
    from dmpath.client import DaemonNotRunning

    try:
        source.request("ping")
    except DaemonNotRunning:
        return False
    return True


def do_flush(cmd: MultipathCmd, err: TextIO) -> int:
    """``-f MAP``/``-F``: through dmpathd when it runs (so that it does not make the map
    again), else removed here; an open map is refused either way. Nothing on stdout; a
    refusal is multipath-tools' line on stderr (``NAME: map in use``)."""
    delegated = _daemon_runs()
    if cmd.action == "flush":
        names = [source.map_name(source.resolve(cmd.device))]
    elif delegated:
        names = _map_names(source.daemon_snapshot())
    else:
        names = _map_names(source.any_snapshot()[0])
    status = source.EXIT_OK
    for name in names:
        try:
            if delegated:
                source.request("flush_map", {"map": name})
            else:
                flush_local(name)
        except DmpathError as exc:
            err.write(flush_refusal(name, exc) + "\n")
            status = source.EXIT_FAIL
    return status


def do_reload(cmd: MultipathCmd, err: TextIO) -> int:
    """``-r`` (and a bare ``multipath``): dmpathd looks at every path and map again; with
    no daemon, the maps are built once by ``dmpathd --once``."""
    from dmpath.client import DaemonNotRunning

    try:
        if cmd.device and cmd.action == "create":
            from dmpath.cli.main import looks_like_path

            target = source.resolve(cmd.device)
            args = {"path": target} if looks_like_path(target) else {"wwid": target}
            source.request("create_map", args)
        else:
            source.request("reconfigure")
        return source.EXIT_OK
    except DaemonNotRunning:
        pass
    config = os.environ.get(CONFIG_ENV)
    done = subprocess.run(
        [sys.executable, "-m", "dmpath.daemon.main", "--once",
         *(["--config", config] if config else [])],
        check=False,
    )
    if done.returncode != 0:
        err.write(f"{PROG}: building the maps failed (dmpathd --once: {done.returncode})\n")
        return source.EXIT_FAIL
    return source.EXIT_OK


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    try:
        cmd = parse_multipath(argv)
    except Unsupported as exc:
        err.write(f"{PROG}: {exc}\n")
        return source.EXIT_FAIL
    except UsageError as exc:
        err.write(f"{exc}\n{USAGE}")
        return source.EXIT_FAIL
    if cmd.action == "usage":
        err.write(USAGE)
        return source.EXIT_OK
    if os.geteuid() != 0:
        err.write("need to be root\n")
        return source.EXIT_FAIL
    if cmd.action == "list":
        return do_list(cmd, out, err)
    if cmd.action in ("add_wwid", "remove_wwid"):
        return do_wwid(cmd, out)
    if cmd.action == "usable":
        return do_usable(cmd, err)
    if cmd.action in ("flush", "flush_all"):
        return do_flush(cmd, err)
    return do_reload(cmd, err)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return source.run_guarded(PROG, lambda a: run(a, sys.stdout, sys.stderr), args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
