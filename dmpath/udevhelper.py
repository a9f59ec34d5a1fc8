"""``dmpath-udev``: udev's fast question "is this disk a multipath path dmpath manages?".

Run by udev (IMPORT{program}) for every disk add/change event, so it must be quick and
must work without the daemon: it imports nothing beyond the standard library, reads only
sysfs, the wwids file and (if present) the config's ``[defaults]``, and prints udev
properties on stdout. A disk is claimed when:

- one of our dm maps already holds it (sysfs holders with a ``dmpath-`` dm uuid), or
- its WWID is in the wwids file (dmpath made a map of it before), or
- ``find_multipaths`` is not ``strict`` and another disk shows the same WWID (``on``),
  or any disk not blacklisted (``greedy``: every disk with a WWID).

Claimed disks get ``DM_MULTIPATH_DEVICE_PATH=1``, ``SYSTEMD_READY=0`` and
``ID_FS_TYPE=mpath_member``, which LVM, md and systemd honour by leaving the disk alone.

``dmpath-udev --assemble DEVNAME`` (the rule's RUN for a claimed disk) sees that the disk
ends up in a map. A running daemon follows udev itself, and an installed service is
started by the rule's ``SYSTEMD_WANTS``; only when neither applies does it run
``dmpathd --once``, which assembles the missing maps and exits (udev kills anything a
RUN program leaves running, so a daemon cannot be started from here).
"""

from __future__ import annotations

import os
import sys

DEFAULT_CONFIG = "/etc/dmpath/dmpath.toml"
DEFAULT_SOCKET = "/run/dmpath/dmpathd.sock"
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


def _settings(config_path: str) -> dict[str, object]:
    """``[defaults]`` of the config, or {} when it is missing or invalid (the daemon
    reports config errors; udev must never fail because of one)."""
    try:
        import tomllib

        with open(config_path, "rb") as fh:
            data = tomllib.load(fh)
        d = data.get("defaults", {})
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _uuid_prefix(settings: dict[str, object]) -> str:
    return str(settings.get("dm_uuid_prefix", "dmpath-"))


def held_by_our_map(name: str, sys_root: str, uuid_prefix: str) -> bool:
    hdir = os.path.join(sys_root, "class/block", name, "holders")
    try:
        holders = os.listdir(hdir)
    except OSError:
        return False
    return any(
        _read(os.path.join(sys_root, "class/block", h, "dm/uuid")).startswith(uuid_prefix)
        for h in holders
    )


def known_wwids(path: str) -> set[str]:
    out = set()
    for raw in _read(path).splitlines():
        line = raw.strip()
        if line.startswith("/") and line.endswith("/") and len(line) > 2:
            out.add(line[1:-1])
    return out


def sysfs_wwid(name: str, sys_root: str) -> str:
    """A disk's WWID in sysfs: the SCSI device's, or an NVMe namespace's own."""
    base = os.path.join(sys_root, "block", name)
    return _read(os.path.join(base, "device/wwid")) or _read(os.path.join(base, "wwid"))


def native_nvme_head(name: str, sys_root: str) -> bool:
    """Native NVMe multipath's head: the kernel's own multipath device, never a path
    (claiming it would hide the one usable disk from systemd and LVM)."""
    return "/nvme-subsystem/" in os.path.realpath(os.path.join(sys_root, "block", name))


def same_lun_elsewhere(name: str, sys_root: str) -> bool:
    """Another disk reports the same sysfs wwid: two paths to one LUN."""
    mine = sysfs_wwid(name, sys_root)
    if not mine:
        return False
    try:
        disks = os.listdir(os.path.join(sys_root, "block"))
    except OSError:
        return False
    return any(d != name and sysfs_wwid(d, sys_root) == mine for d in disks)


def decide(
    name: str,
    env: dict[str, str],
    settings: dict[str, object],
    sys_root: str = "/sys",
) -> bool:
    if name.startswith(("dm-", "md", "loop", "ram", "zram", "sr", "nbd")):
        return False
    if name.startswith("nvme") and native_nvme_head(name, sys_root):
        return False
    if held_by_our_map(name, sys_root, _uuid_prefix(settings)):
        return True
    uid_attrs = settings.get("uid_attribute", ["ID_SERIAL", "ID_WWN"])
    attrs = uid_attrs if isinstance(uid_attrs, list) else ["ID_SERIAL", "ID_WWN"]
    wwid = next((env[a] for a in attrs if isinstance(a, str) and env.get(a)), "")
    if name.startswith("nvme"):
        # as the daemon keys NVMe paths: on the namespace's wwid, not on ID_SERIAL
        wwid = _read(os.path.join(sys_root, "block", name, "wwid")) or wwid
    if not wwid:
        return False
    if wwid in known_wwids(str(settings.get("wwids_file", "/etc/dmpath/wwids"))):
        return True
    mode = str(settings.get("find_multipaths", "on"))
    if mode == "greedy":
        return True
    return mode == "on" and same_lun_elsewhere(name, sys_root)


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
    settings: dict[str, object],
    sys_root: str = "/sys",
    run_root: str = "/run",
    unit_dirs: tuple[str, ...] = UNIT_DIRS,
) -> str:
    """Who puts a claimed disk into its map: "daemon", "service", "map" (it already is
    in one of ours) or "once" (nobody: run ``dmpathd --once``)."""
    if held_by_our_map(name, sys_root, _uuid_prefix(settings)):
        return "map"
    if daemon_answers(str(settings.get("socket", DEFAULT_SOCKET))):
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
    settings = _settings(config)
    who = assembler(name, settings)
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    mode_assemble = args[:1] == ["--assemble"]
    if mode_assemble:
        args = args[1:]
    if not args:
        print("usage: dmpath-udev [--assemble] DEVNAME", file=sys.stderr)
        return 2
    name = os.path.basename(args[0])
    config = os.environ.get("DMPATH_CONFIG", DEFAULT_CONFIG)
    if mode_assemble:
        return assemble(name, config)
    if decide(name, dict(os.environ), _settings(config)):
        print("DMPATH_PATH=1")
        print("DM_MULTIPATH_DEVICE_PATH=1")
        print("SYSTEMD_READY=0")
        print("ID_FS_TYPE=mpath_member")
    return 0


if __name__ == "__main__":
    sys.exit(main())
