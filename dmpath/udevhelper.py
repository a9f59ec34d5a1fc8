"""``dmpath-udev``: udev's fast question "is this disk a multipath path dmpath manages?".

Run by udev (IMPORT{program}) for every disk add/change event, so it must be quick and
must work without the daemon: it imports the standard library only, reads sysfs, the
udev database, the wwids file and the configuration, and prints udev properties on
stdout. The decision itself is ``dmpath.policy.claim``, the one the daemon uses before
it builds a map: the blacklist and its exceptions, the wwids file, ``[[multipaths]]``,
``find_multipaths`` and ``uid_attribute`` all count here exactly as there.

Claimed disks get ``DM_MULTIPATH_DEVICE_PATH=1``, ``SYSTEMD_READY=0`` and
``ID_FS_TYPE=mpath_member``, which LVM, md and systemd honour by leaving the disk alone.
A configuration that exists but cannot be read claims nothing new (disks our maps hold
stay claimed) and says why in the kernel log.

``dmpath-udev --assemble DEVNAME`` (the rule's RUN for a claimed disk) sees that the disk
ends up in a map. A running daemon follows udev itself, and an installed service is
started by the rule (``systemctl --no-block start``); only when neither applies does it run
``dmpathd --once``, which assembles the missing maps and exits (udev kills anything a
RUN program leaves running, so a daemon cannot be started from here).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from dmpath.config import NEVER_PATH_DEVNODE, Config, Defaults, load_config
from dmpath.errors import ConfigError, DmpathError
from dmpath.kernel import nvme, sysfs
from dmpath.policy import claim, files

DEFAULT_CONFIG = "/etc/dmpath/dmpath.toml"
#: where systemd looks for an installed dmpathd.service (administrator's, runtime, vendor)
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system",
             "/lib/systemd/system")
#: udev runs programs with a bare environment; dmsetup and mdadm must still be found
SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


class ConfigUnreadable(Exception):
    """The configuration exists but cannot be used; the text says why, in one line."""


def load(config_path: str) -> Config:
    """The configuration as the daemon reads it (a missing file is the defaults)."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise ConfigUnreadable(str(exc).splitlines()[0]) from exc


def _holders(name: str, sys_root: str) -> list[tuple[str, str]]:
    """(holder, its dm uuid or "") for each device stacked on ``name``."""
    hdir = os.path.join(sys_root, "class/block", name, "holders")
    try:
        names = sorted(os.listdir(hdir))
    except OSError:
        return []
    return [(h, _read(os.path.join(sys_root, "class/block", h, "dm/uuid"))) for h in names]


def held_by_our_map(name: str, sys_root: str, uuid_prefix: str) -> bool:
    return any(u.startswith(uuid_prefix) for _h, u in _holders(name, sys_root))


def udev_db_properties(devnum: str, run_root: str = "/run") -> dict[str, str]:
    """What udev recorded for a block device (``E:`` lines of its database entry): the
    properties the daemon sees through libudev."""
    props: dict[str, str] = {}
    for line in _read(os.path.join(run_root, "udev/data", f"b{devnum}")).splitlines():
        if line.startswith("E:") and "=" in line:
            k, v = line[2:].split("=", 1)
            props[k] = v
    return props


def read_disk(
    name: str, properties: dict[str, str], cfg: Config, sys_root: str = "/sys"
) -> claim.Disk:
    """The claim decision's view of one disk, from sysfs and the given udev properties."""
    try:
        facts = sysfs.read_path_facts(name, sys_root)
    except DmpathError:
        return claim.Disk(name=name, properties=properties)
    prefix = cfg.defaults.dm_uuid_prefix
    holders = _holders(name, sys_root)
    return claim.Disk(
        name=name,
        properties=properties,
        vendor=(facts.vendor or properties.get("ID_VENDOR") or "").strip(),
        product=(facts.model or properties.get("ID_MODEL") or "").strip(),
        transport=str(facts.transport.value),
        sysfs_wwid=facts.wwid_sysfs or "",
        native_nvme_head=nvme.is_native_head(facts.sys_path),
        held_by_ours=any(u.startswith(prefix) for _h, u in holders),
        foreign_holders=tuple(h for h, u in holders if not u.startswith(prefix)),
    )


#: udev properties that name one device, not its LUN: never lent to a sibling
DEVICE_OWN = frozenset(
    ("DEVNAME", "DEVPATH", "MAJOR", "MINOR", "DISKSEQ", "DEVLINKS", "SEQNUM", "ACTION",
     "USEC_INITIALIZED", "ID_PATH", "ID_PATH_TAG", "DMPATH_PATH")
)


def siblings(
    me: claim.Disk, cfg: Config, sys_root: str = "/sys", run_root: str = "/run"
) -> list[claim.Disk]:
    """The other disks that may show ``me``'s WWID, with the properties udev recorded.

    One LUN reports one VPD 0x83 identifier on every path, so disks whose sysfs wwid
    differs from ours are skipped unread: the udev database is read only for likely
    siblings, which keeps a coldplug of a thousand disks from reading a million files.

    A sibling udev has not recorded yet (the paths of a new LUN appear together and udev
    runs their events side by side) is taken with our properties when its sysfs wwid is
    ours: it is this LUN through another path. Without that, each of two paths added at
    once saw no other and neither was claimed at its ``add`` (seen under systemd: the
    service the rule starts on ``add`` was never started).
    """
    try:
        names = sorted(os.listdir(os.path.join(sys_root, "block")))
    except OSError:
        return []
    out = []
    for n in names:
        if n == me.name or re.search(NEVER_PATH_DEVNODE, n):
            continue
        theirs = sysfs_wwid(n, sys_root)
        if me.sysfs_wwid and theirs and theirs != me.sysfs_wwid:
            continue
        devnum = _read(os.path.join(sys_root, "block", n, "dev"))
        props = udev_db_properties(devnum, run_root)
        if not props and me.sysfs_wwid and theirs == me.sysfs_wwid:
            props = {k: v for k, v in me.properties.items() if k not in DEVICE_OWN}
        out.append(read_disk(n, props, cfg, sys_root))
    return out


def sysfs_wwid(name: str, sys_root: str) -> str:
    """A disk's WWID in sysfs: the SCSI device's, or an NVMe namespace's own."""
    base = os.path.join(sys_root, "block", name)
    return _read(os.path.join(base, "device/wwid")) or _read(os.path.join(base, "wwid"))


def decide(
    name: str,
    env: dict[str, str],
    cfg: Config,
    sys_root: str = "/sys",
    run_root: str = "/run",
) -> claim.Verdict:
    """The claim decision for ``name`` with ``env`` as its udev properties."""
    me = read_disk(name, env, cfg, sys_root)
    if me.held_by_ours:
        return claim.claim(me, [], frozenset(), cfg)
    first = claim.admissible(me, cfg)
    if not first.claimed:
        return first
    try:
        remembered = files.read_wwids(cfg.defaults.wwids_file)
    except DmpathError as exc:
        # as before: an unreadable wwids file makes no WWID known (now it says so)
        log_kernel(str(exc))
        remembered = set()
    known = claim.known_wwids(remembered, cfg)
    return claim.claim(me, siblings(me, cfg, sys_root, run_root), known, cfg)


def decide_without_config(name: str, sys_root: str = "/sys") -> claim.Verdict:
    """With a configuration that cannot be read, only disks our maps already hold stay
    claimed: claiming more on defaults the administrator did not choose could hide a
    disk that LVM or a mount needs."""
    if held_by_our_map(name, sys_root, Defaults().dm_uuid_prefix):
        return claim.Verdict(True, f"{name}: a path of one of our maps")
    return claim.Verdict(False, f"{name}: nothing new is claimed while the config is unreadable")


def log_kernel(message: str) -> None:
    """A warning in the kernel log (and so the journal): udev discards what a program
    prints on stderr unless it runs with debug logging."""
    try:
        with open("/dev/kmsg", "w") as fh:
            fh.write(f"<4>dmpath-udev: {message}\n")
    except OSError:
        print(f"dmpath-udev: {message}", file=sys.stderr)


def daemon_answers(socket_path: str) -> bool:
    """Something accepts connections on the control socket (a daemon, or systemd holding
    the socket for it: either way a dmpathd will handle the path)."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(socket_path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def service_installed(run_root: str = "/run", unit_dirs: tuple[str, ...] = UNIT_DIRS) -> bool:
    """systemd is PID 1 and has a dmpathd.service to start (masked counts as installed:
    the administrator said no, and a one-shot assembly must not overrule that)."""
    if not os.path.isdir(os.path.join(run_root, "systemd/system")):
        return False
    return any(os.path.lexists(os.path.join(d, "dmpathd.service")) for d in unit_dirs)


def assembler(
    name: str,
    cfg: Config,
    sys_root: str = "/sys",
    run_root: str = "/run",
    unit_dirs: tuple[str, ...] = UNIT_DIRS,
) -> str:
    """Who puts a claimed disk into its map: "daemon", "service", "map" (it already is
    in one of ours) or "once" (nobody: run ``dmpathd --once``)."""
    if held_by_our_map(name, sys_root, cfg.defaults.dm_uuid_prefix):
        return "map"
    if daemon_answers(cfg.defaults.socket):
        return "daemon"
    if service_installed(run_root, unit_dirs):
        return "service"
    return "once"


def dmpathd_program(argv0: str) -> str:
    """dmpathd from the same directory as this helper (same install, venv or not)."""
    import shutil

    here = os.path.join(os.path.dirname(os.path.abspath(argv0)), "dmpathd")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("dmpathd", path=SAFE_PATH) or "/usr/bin/dmpathd"


def assemble(name: str, config: str) -> int:
    try:
        cfg = load(config)
    except ConfigUnreadable as exc:
        log_kernel(f"{name}: not assembled: {exc}")
        return 1
    who = assembler(name, cfg)
    if who != "once":
        return 0
    program = dmpathd_program(sys.argv[0])
    env = dict(os.environ)
    env["PATH"] = env.get("PATH") or SAFE_PATH
    try:
        os.execve(program, [program, "--once", "--config", config], env)
    except OSError as exc:
        print(f"dmpath-udev: cannot run {program}: {exc}", file=sys.stderr)
    return 1


def partitions_of(name: str, sys_root: str = "/sys") -> list[int]:
    """The partition numbers the kernel shows for disk ``name`` (sda1 -> 1, nvme0n1p2 -> 2)."""
    base = os.path.join(sys_root, "class/block", name)
    out = []
    try:
        entries = os.listdir(base)
    except OSError:
        return []
    for e in entries:
        number = _read(os.path.join(base, e, "partition"))
        if e.startswith(name) and number.isdigit():
            out.append(int(number))
    return sorted(out)


def drop_partitions(name: str, sys_root: str = "/sys") -> int:
    """Take a claimed path's partitions out of the kernel's view (``partx -d``): the map's
    partition maps are the way to that data, and a mount or a PV scan must not find it
    through one path. Nothing runs when the path has none."""
    numbers = partitions_of(name, sys_root)
    if not numbers:
        return 0
    import shutil
    import subprocess

    partx = shutil.which("partx", path=SAFE_PATH) or "/usr/bin/partx"
    span = f"{numbers[0]}-{numbers[-1]}"
    res = subprocess.run(
        [partx, "-d", "--nr", span, f"/dev/{name}"], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        log_kernel(f"{name}: partx -d --nr {span}: {res.stderr.strip() or res.returncode}")
    return res.returncode


def map_wwid(dm_uuid: str, prefix: str) -> str | None:
    """The WWID of one of our maps when its uuid prefix is not multipath-tools' ``mpath-``
    (13-dm-disk.rules names the ``dm-uuid-`` link after the whole uuid, so such a map has
    no ``dm-uuid-mpath-WWID`` link of its own); None for every other uuid, and for a
    WWID that cannot be a file name."""
    if prefix == Defaults().dm_uuid_prefix or not dm_uuid.startswith(prefix):
        return None
    wwid = dm_uuid[len(prefix) :]
    if not wwid or not re.fullmatch(r"[^\s/]+", wwid):
        return None
    return wwid


def main(argv: list[str] | None = None, log: Callable[[str], None] = log_kernel) -> int:
    args = sys.argv[1:] if argv is None else argv
    modes = (["--assemble"], ["--drop-partitions"], ["--map-wwid"])
    mode = args[0] if args[:1] in modes else ""
    if mode:
        args = args[1:]
    if not args:
        print(
            "usage: dmpath-udev [--assemble | --drop-partitions | --map-wwid] DEVNAME",
            file=sys.stderr,
        )
        return 2
    name = os.path.basename(args[0])
    if mode == "--drop-partitions":
        return drop_partitions(name)
    mode_assemble = mode == "--assemble"
    config = os.environ.get("DMPATH_CONFIG", DEFAULT_CONFIG)
    if mode == "--map-wwid":
        # a map's event (56-dmpath-maps.rules): udev gives its properties as environment
        try:
            wwid = map_wwid(os.environ.get("DM_UUID", ""), load(config).defaults.dm_uuid_prefix)
        except ConfigUnreadable as exc:
            log(f"{name}: {exc}; no dm-uuid-mpath- link")
            return 0
        if wwid:
            print(f"DMPATH_MAP_WWID={wwid}")
        return 0
    if mode_assemble:
        return assemble(name, config)
    try:
        verdict = decide(name, dict(os.environ), load(config))
    except ConfigUnreadable as exc:
        verdict = decide_without_config(name)
        log(f"{name}: {exc}; {'kept' if verdict.claimed else 'not'} claimed")
    if verdict.claimed:
        print("DMPATH_PATH=1")
        print("DM_MULTIPATH_DEVICE_PATH=1")
        print("SYSTEMD_READY=0")
        print("ID_FS_TYPE=mpath_member")
    return 0


if __name__ == "__main__":
    sys.exit(main())
