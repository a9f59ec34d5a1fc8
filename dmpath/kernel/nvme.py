"""NVMe in sysfs: controllers, namespaces and the kernel's own (native) multipath.

With native multipath off (``nvme_core.multipath=N``) every controller gives each
namespace a disk of its own (``nvme1n1`` under ``/sys/class/nvme/nvme1``): those are
paths dmpathd may manage. With it on, the kernel joins them itself: one disk per
namespace under the subsystem (``/sys/devices/virtual/nvme-subsystem/nvme-subsys0/
nvme0n1``, the *head*) and, per controller, a hidden per-path node (``nvme0c1n1``, no
device node) carrying the path's ANA state. dmpathd leaves those alone and only shows them.

``read_native_tree`` does the I/O: it reads the attributes the view needs into a flat
mapping (``"nvme-subsys0/nvme0n1/nsid" -> "1"``); ``parse_native`` turns that mapping into
records and never touches the system, so it is tested on trees captured in the lab.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dmpath.kernel.sysfs import _attr

#: the kernel's nvme_core parameter saying whether native multipath is on
MULTIPATH_PARAM = "module/nvme_core/parameters/multipath"
#: a native multipath head lives under the subsystem, not under a controller
_HEAD_IN_PATH = "/nvme-subsystem/"
_CONTROLLER = re.compile(r"^nvme\d+$")
_HEAD = re.compile(r"^nvme\d+n\d+$")
_PATH_NODE = re.compile(r"^nvme\d+c\d+n\d+$")
_SUBSYS_ATTRS = ("subsysnqn", "model", "serial", "iopolicy")
_HEAD_ATTRS = ("nsid", "wwid", "size", "dev")
_CTRL_ATTRS = ("state", "transport", "address")
_PATH_ATTRS = ("nsid", "ana_state")

#: ANA states (sysfs spelling) as the ALUA access states of the same meaning, so NVMe
#: paths are ranked by the same priority rule as SCSI ones
ANA_AS_ALUA = {
    "optimized": 0x0,
    "non-optimized": 0x1,
    "inaccessible": 0x3,
    "persistent-loss": 0xE,
    "change": 0xF,
}


def is_native_head(sys_path: str) -> bool:
    """Whether a disk is native NVMe multipath's head (the kernel's own multipath
    device, under ``nvme-subsystem``): never a path for dmpathd."""
    return _HEAD_IN_PATH in sys_path


def controller_of(sys_path: str) -> str | None:
    """The controller a namespace disk hangs under (``…/ctl/nvme1/nvme1n1`` → ``nvme1``),
    or None (not NVMe, or a native head, which belongs to the subsystem)."""
    parts = sys_path.rstrip("/").split("/")
    if len(parts) < 2 or not _HEAD.match(parts[-1]) or not _CONTROLLER.match(parts[-2]):
        return None
    return parts[-2]


def fabric_address(controller: str, sys_root: str = "/sys") -> str | None:
    """The target address a fabrics controller connects to (its ``traddr``), or None
    (PCIe has none)."""
    text = _attr(os.path.join(sys_root, "class", "nvme", controller, "address"))
    if not text:
        return None
    return controller_address(text).get("traddr") or None


def native_multipath(sys_root: str = "/sys") -> bool | None:
    """nvme_core's ``multipath`` parameter; None while nvme_core is not loaded."""
    value = _attr(os.path.join(sys_root, MULTIPATH_PARAM))
    return None if value is None else value == "Y"


def controller_address(text: str) -> dict[str, str]:
    """A fabrics controller's ``address`` (``traddr=203.0.113.2,trsvcid=4420,src_addr=…``)
    as its fields."""
    return dict(kv.split("=", 1) for kv in text.strip().split(",") if "=" in kv)


@dataclass(frozen=True)
class NativePath:
    """One controller's way to a namespace under native multipath."""

    node: str  # hidden per-path node, nvme0c1n1
    controller: str  # nvme1
    state: str  # the controller's state: live, connecting, resetting, deleting, ...
    transport: str  # tcp, rdma, fc, pcie, loop
    address: str  # traddr=...,trsvcid=... ("" for PCIe)
    ana_state: str  # optimized, non-optimized, inaccessible, ... ("" without ANA)


@dataclass(frozen=True)
class NativeNamespace:
    """A namespace as native multipath's one disk (the head) and its paths."""

    name: str  # nvme0n1
    nsid: int
    wwid: str
    devnum: str
    size_sectors: int
    paths: tuple[NativePath, ...]


@dataclass(frozen=True)
class NativeSubsystem:
    name: str  # nvme-subsys0
    nqn: str
    model: str
    serial: str
    iopolicy: str  # numa, round-robin
    namespaces: tuple[NativeNamespace, ...]


def read_native_tree(sys_root: str = "/sys") -> dict[str, str]:
    """The attributes of every NVMe subsystem, its heads and its controllers' path nodes,
    keyed ``subsys/attr``, ``subsys/head/attr``, ``subsys/ctrl/attr`` and
    ``subsys/ctrl/node/attr``. Attributes that cannot be read are left out."""
    tree: dict[str, str] = {}
    base = os.path.join(sys_root, "class", "nvme-subsystem")
    try:
        subsystems = sorted(os.listdir(base))
    except OSError:
        return tree

    def put(key: str, path: str) -> None:
        value = _attr(path)
        if value is not None:
            tree[key] = value

    for sub in subsystems:
        sdir = os.path.join(base, sub)
        for a in _SUBSYS_ATTRS:
            put(f"{sub}/{a}", os.path.join(sdir, a))
        try:
            entries = sorted(os.listdir(sdir))
        except OSError:
            continue
        for entry in entries:
            edir = os.path.join(sdir, entry)
            if _HEAD.match(entry):
                for a in _HEAD_ATTRS:
                    put(f"{sub}/{entry}/{a}", os.path.join(edir, a))
            elif _CONTROLLER.match(entry):
                for a in _CTRL_ATTRS:
                    put(f"{sub}/{entry}/{a}", os.path.join(edir, a))
                try:
                    nodes = sorted(n for n in os.listdir(edir) if _PATH_NODE.match(n))
                except OSError:
                    continue
                for node in nodes:
                    for a in _PATH_ATTRS:
                        put(f"{sub}/{entry}/{node}/{a}", os.path.join(edir, node, a))
    return tree


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def parse_native(tree: Mapping[str, str]) -> list[NativeSubsystem]:
    """Records from a tree ``read_native_tree`` made: each subsystem with its heads and,
    per head, the path nodes of the same namespace (nsid) on the subsystem's controllers.
    A subsystem without a head (native multipath off) is no native view and is left out."""
    subs: dict[str, dict[str, dict[str, str]]] = {}
    for key, value in tree.items():
        parts = key.split("/")
        if len(parts) < 2:
            continue
        sub = subs.setdefault(parts[0], {})
        sub.setdefault("/".join(parts[1:-1]), {})[parts[-1]] = value
    out: list[NativeSubsystem] = []
    for name in sorted(subs):
        sub = subs[name]
        own = sub.get("", {})
        heads = sorted(k for k in sub if _HEAD.match(k))
        if not heads:
            continue
        ctrls = sorted((k for k in sub if _CONTROLLER.match(k)), key=lambda c: _int(c[4:]))
        namespaces = []
        for head in heads:
            h = sub[head]
            nsid = _int(h.get("nsid"), -1)
            paths = []
            for ctrl in ctrls:
                c = sub[ctrl]
                for key in sorted(sub):
                    ctrl_of, _, node = key.partition("/")
                    if ctrl_of != ctrl or not _PATH_NODE.match(node):
                        continue
                    p = sub[key]
                    if _int(p.get("nsid"), -2) != nsid:
                        continue
                    paths.append(
                        NativePath(
                            node=node,
                            controller=ctrl,
                            state=c.get("state", ""),
                            transport=c.get("transport", ""),
                            address=c.get("address", ""),
                            ana_state=p.get("ana_state", ""),
                        )
                    )
            namespaces.append(
                NativeNamespace(
                    name=head,
                    nsid=nsid,
                    wwid=h.get("wwid", ""),
                    devnum=h.get("dev", ""),
                    size_sectors=_int(h.get("size")),
                    paths=tuple(paths),
                )
            )
        out.append(
            NativeSubsystem(
                name=name,
                nqn=own.get("subsysnqn", ""),
                model=own.get("model", ""),
                serial=own.get("serial", ""),
                iopolicy=own.get("iopolicy", ""),
                namespaces=tuple(namespaces),
            )
        )
    return out


def read_native(sys_root: str = "/sys") -> list[NativeSubsystem]:
    """The kernel's native NVMe multipath as it stands (empty when it is off)."""
    if not native_multipath(sys_root):
        return []
    return parse_native(read_native_tree(sys_root))


def ana_state_of(name: str, sys_root: str = "/sys") -> str:
    """A namespace disk's ANA state ("" when the kernel reads none: native multipath off
    or a controller without ANA)."""
    return _attr(os.path.join(sys_root, "block", name, "ana_state")) or ""
