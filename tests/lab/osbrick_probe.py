"""Drive os-brick as a compute node does, against whichever ``multipath`` and
``multipathd`` are first on PATH, and print what each call returned as one JSON document.

Run by tests/lab/test_osbrick_lab.py with os-brick's own interpreter
(``dmpath.lab.osbrick.python()``), as root in the lab guest, after the lab's iSCSI fabric
is up and logged out:

    python osbrick_probe.py PORTAL0 PORTAL1 TARGET_IQN

os-brick is not changed: only its privsep runs in this process (root already), as its own
unit tests arrange. Names that differ from one run to the next (the disks, their SCSI
hosts, the map's dm-N) are replaced by stable tokens before printing, so two runs can be
compared as they are.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import os_brick
from os_brick.initiator import connector as brick_connector
from os_brick.initiator import linuxscsi
from os_brick.privileged import default as brick_privsep

# registers oslo.concurrency's options (lock_path) before the configuration is read
from oslo_concurrency import lockutils  # noqa: F401
from oslo_config import cfg

WAIT = 60.0


class Probe:
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def call(self, label: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Record what ``fn(*args)`` returned, or the one-line error it raised."""
        started = time.monotonic()
        try:
            value = fn(*args)
        except Exception as exc:  # noqa: BLE001 - recorded: a difference is what is looked for
            self.steps.append(
                {"call": label, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            )
            print(traceback.format_exc(), file=sys.stderr)
            return None
        finally:
            print(f"probe: {label} {time.monotonic() - started:.1f} s", file=sys.stderr)
        self.steps.append({"call": label, "value": value})
        return value


def wait(pred: Callable[[], bool], what: str) -> bool:
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.5)
    print(f"probe: gave up waiting for {what}", file=sys.stderr)
    return False


def slaves(dm: str) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/block/{dm}/slaves"))
    except OSError:
        return []


def host_of(dev: str) -> str:
    return os.path.basename(os.path.realpath(f"/sys/block/{dev}/device")).split(":")[0]


def kernel_order(dev: str) -> tuple[int, str]:
    """sdb before sdaa, as the kernel names them: the order disks are normalised in."""
    return (len(dev), dev)


def sorted_devices(found: dict[str, Any] | None) -> dict[str, Any] | None:
    """find_multipath_device's answer with its paths in kernel name order: the order of
    a map's paths follows its path groups, which need not be the order of the logins
    (os-brick logs in to both portals at once), and os-brick only iterates over them."""
    if not found:
        return found
    paths = found.get("devices", [])
    return dict(found, devices=sorted(paths, key=lambda p: kernel_order(p["device"][5:])))


def normalise(
    text: str, devices: list[str], hosts: list[str], dm: str | None, wwn: str
) -> str:
    """Disks become sd0, sd1 (and their SCSI hosts H0, H1) in kernel name order; the map's
    dm-N becomes dm-X; the volume's WWN becomes WWN."""
    for i, (dev, host) in enumerate(zip(devices, hosts, strict=True)):
        text = re.sub(rf"\b{dev}\b", f"sd{i}", text)
        text = re.sub(rf"(?<![\w:]){host}:0:0:0\b", f"H{i}:0:0:0", text)
        text = re.sub(rf'"host": "{host}"', f'"host": "H{i}"', text)
    if dm:
        text = re.sub(rf"\b{dm}\b", "dm-X", text)
    return text.replace(wwn, "WWN") if wwn else text


def main(argv: list[str]) -> int:
    portal0, portal1, iqn = argv
    lock_dir = tempfile.mkdtemp(prefix="osbrick-locks-")
    cfg.CONF([], project="dmpath-osbrick-probe")
    cfg.CONF.set_override("lock_path", lock_dir, "oslo_concurrency")
    os_brick.setup(cfg.CONF)
    brick_privsep.set_client_mode(False)  # root here already: privsep in-process

    props = {
        "target_portals": [portal0, portal1],
        "target_iqns": [iqn, iqn],
        "target_luns": [0, 0],
        "target_portal": portal0,
        "target_iqn": iqn,
        "target_lun": 0,
        "volume_id": "lab-volume",
    }
    scsi = linuxscsi.LinuxSCSI(root_helper=None)
    conn = brick_connector.InitiatorConnector.factory(
        "ISCSI", root_helper=None, use_multipath=True, device_scan_attempts=5
    )
    p = Probe()
    p.call("is_multipath_running", scsi.is_multipath_running, None)
    info = p.call("connect_volume", conn.connect_volume, props)
    if not info:
        print(json.dumps(p.steps, indent=1))
        return 1
    dm = os.path.basename(info["path"]) if info["path"].startswith("/dev/dm-") else None
    devices = sorted(slaves(dm) if dm else [], key=kernel_order)
    hosts = [host_of(d) for d in devices]
    wwn = info["scsi_wwn"]
    first = "/dev/" + devices[0] if devices else "/dev/null"
    p.call("connected paths", lambda: len(devices))
    name = p.call("get_dm_name", scsi.get_dm_name, dm or "")
    p.call("find_sysfs_multipath_dm", scsi.find_sysfs_multipath_dm, devices)
    p.call("get_sysfs_wwn", scsi.get_sysfs_wwn, devices, dm)
    p.call(
        "find_multipath_device(path)",
        lambda: sorted_devices(scsi.find_multipath_device(first)),
    )
    p.call(
        "find_multipath_device(name)",
        lambda: sorted_devices(scsi.find_multipath_device(name)),
    )
    p.call("find_multipath_device_path", scsi.find_multipath_device_path, wwn)
    p.call("wait_for_rw", scsi.wait_for_rw, wwn, info["path"])
    p.call("wait_for_mpath_device", scsi.wait_for_mpath_device, dm or "")
    p.call("multipath_add_wwid", scsi.multipath_add_wwid, wwn)
    p.call("multipath_add_path", scsi.multipath_add_path, first)

    def shown() -> list[str]:
        out = scsi.multipath_show_paths("%d").split()
        return sorted((d for d in out if d in devices), key=kernel_order)

    p.call("multipath_show_paths(%d)", shown)
    p.call("multipath_reconfigure", lambda: scsi.multipath_reconfigure().strip())
    p.call("multipath_resize_map", scsi.multipath_resize_map, info["path"])
    p.call("multipath_del_path", scsi.multipath_del_path, first)
    p.call("path out of the map", wait, lambda: len(slaves(dm or "")) == 1, "path removed")
    p.call("multipath_show_paths after del", shown)
    p.call("multipath_add_path again", scsi.multipath_add_path, first)
    p.call("path back in the map", wait, lambda: len(slaves(dm or "")) == 2, "path back")
    p.call("multipath_del_map", scsi.multipath_del_map, dm or "")
    p.call("map gone", lambda: not os.path.exists(f"/sys/block/{dm}"))
    # what connect_volume does to make a map of known paths: the wwid, then a path
    p.call("multipath_add_wwid after del map", scsi.multipath_add_wwid, wwn)
    p.call("multipath_add_path makes the map", scsi.multipath_add_path, first)
    new_dm: list[str | None] = [None]

    def remade() -> bool:
        new_dm[0] = scsi.find_sysfs_multipath_dm(devices)
        return new_dm[0] is not None and len(slaves(new_dm[0])) == 2

    p.call("map made again with both paths", wait, remade, "map made again")
    if new_dm[0]:
        p.call("get_dm_name of the new map", scsi.get_dm_name, new_dm[0])
        info = dict(info, path="/dev/" + new_dm[0])
    p.call("disconnect_volume", conn.disconnect_volume, props, info)
    p.call("devices gone", lambda: [d for d in devices if os.path.exists(f"/sys/block/{d}")])
    p.call("maps of the volume left", scsi.find_sysfs_multipath_dm, devices)
    p.call("is_multipath_running at the end", scsi.is_multipath_running, None)
    text = json.dumps(p.steps, indent=1)
    remade_dm = new_dm[0] if new_dm[0] != dm else None
    if remade_dm:
        text = re.sub(rf"\b{remade_dm}\b", "dm-Y", text)
    print(normalise(text, devices, hosts, dm, wwn))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
