"""Path facts from sysfs: what the kernel says about a path's block device right now.

One thin reader (``read_path_facts``) turns ``/sys/block/NAME`` into a frozen
``PathFacts``; the interpretation (HCTL, transport) is in pure functions over strings so it
is tested without a kernel. ``sys_root`` is a parameter everywhere so tests build a fake
tree in a temporary directory. Nothing is cached: a fact read twice is read twice, so the
daemon's model can be checked against a fresh scan.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dmpath.errors import DeviceError

_HCTL_RE = re.compile(r"^(\d+):(\d+):(\d+):(\d+)$")
_HOST_RE = re.compile(r"/host(\d+)/")


class Transport(enum.StrEnum):
    """How a path reaches its LUN, spelled as multipath-tools' ``protocol`` field."""

    SCSI_FCP = "scsi:fcp"
    SCSI_ISCSI = "scsi:iscsi"
    SCSI_SAS = "scsi:sas"
    SCSI_ATA = "scsi:ata"
    SCSI_USB = "scsi:usb"
    SCSI_UNSPEC = "scsi:unspec"  # scsi_debug (pseudo bus), virtio-scsi, ...
    NVME_PCIE = "nvme:pcie"
    NVME_TCP = "nvme:tcp"
    NVME_RDMA = "nvme:rdma"
    NVME_FC = "nvme:fc"
    NVME_LOOP = "nvme:loop"
    NVME_UNSPEC = "nvme:unspec"
    UNDEF = "undef"


_NVME_TRANSPORTS = {
    "pcie": Transport.NVME_PCIE,
    "tcp": Transport.NVME_TCP,
    "rdma": Transport.NVME_RDMA,
    "fc": Transport.NVME_FC,
    "loop": Transport.NVME_LOOP,
}

_HOST_CLASS_TRANSPORTS = (
    ("fc_host", Transport.SCSI_FCP),
    ("iscsi_host", Transport.SCSI_ISCSI),
    ("sas_host", Transport.SCSI_SAS),
)


def parse_hctl(text: str | None) -> tuple[int, int, int, int] | None:
    """``"6:0:0:0"`` → (host, channel, target, lun); None for anything else."""
    if not text:
        return None
    m = _HCTL_RE.match(text.strip())
    if m is None:
        return None
    h, c, t, lun = (int(g) for g in m.groups())
    return h, c, t, lun


def detect_transport(
    sys_path: str,
    host_classes: frozenset[str] = frozenset(),
    nvme_transport: str | None = None,
) -> Transport:
    """The transport of a block device from its resolved sysfs path.

    The device path carries the transport's own objects (``rport-`` for FC, ``session``
    for iSCSI, ``end_device-`` for SAS, ``ataN`` / ``usbN`` parents); ``host_classes`` (the
    classes the SCSI host is registered in: ``fc_host``, ``iscsi_host``, ``sas_host``) wins
    when known. scsi_debug hangs under ``/pseudo_0/`` and has no transport class, so it is
    ``scsi:unspec``, as multipath-tools reports it. NVMe needs the controller's
    ``transport`` attribute (``nvme_transport``).
    """
    if "/nvme" in sys_path:
        if nvme_transport is None:
            return Transport.NVME_UNSPEC
        return _NVME_TRANSPORTS.get(nvme_transport.strip(), Transport.NVME_UNSPEC)
    hctl_dir = re.search(r"/\d+:\d+:\d+:\d+/", sys_path)
    if hctl_dir is None:
        return Transport.UNDEF
    for cls, transport in _HOST_CLASS_TRANSPORTS:
        if cls in host_classes:
            return transport
    if "/rport-" in sys_path:
        return Transport.SCSI_FCP
    if re.search(r"/session\d+/", sys_path):
        return Transport.SCSI_ISCSI
    if "/end_device-" in sys_path or re.search(r"/port-\d+:\d+/", sys_path):
        return Transport.SCSI_SAS
    if re.search(r"/ata\d+/", sys_path):
        return Transport.SCSI_ATA
    if re.search(r"/usb\d+/", sys_path):
        return Transport.SCSI_USB
    return Transport.SCSI_UNSPEC


_SESSION_RE = re.compile(r"/(session\d+)/")
_RPORT_RE = re.compile(r"/(rport-\d+:\d+-\d+)/")
#: an NVMe over Fabrics controller, as a namespace disk's device path shows it
_FABRICS_CTRL_RE = re.compile(r"/nvme-fabrics/ctl/(nvme\d+)/")


@dataclass(frozen=True)
class TransportTimer:
    """The timer that decides how long a lost link holds a path's I/O, on the transport
    object the path hangs under (several LUNs share one)."""

    owner: str  # "session3" (iSCSI), "rport-6:0-1" (FC)
    name: str  # "recovery_tmo", "fast_io_fail_tmo"
    attribute: str  # its sysfs file


#: the options dmpathd writes to transports, in the order they are written: an FC port
#: refuses a fast_io_fail_tmo not below its dev_loss_tmo, so dev_loss_tmo goes first
TRANSPORT_OPTIONS = ("dev_loss_tmo", "fast_io_fail_tmo", "eh_deadline")


def transport_timers(sys_path: str, sys_root: str = "/sys") -> dict[str, TransportTimer]:
    """The timers a device path's transport has, by the option that sets them:
    ``fast_io_fail_tmo`` (the iSCSI session's recovery_tmo, the FC remote port's
    fast_io_fail_tmo), ``dev_loss_tmo`` (FC remote port), ``eh_deadline`` (the SCSI
    host's; the NVMe over Fabrics controller's fast_io_fail_tmo). Empty for devices with
    none (NVMe over PCIe, dm)."""
    root = sys_root.rstrip("/")
    out: dict[str, TransportTimer] = {}
    if (m := _RPORT_RE.search(sys_path)) is not None:
        rport = m.group(1)
        base = f"{root}/class/fc_remote_ports/{rport}"
        out["dev_loss_tmo"] = TransportTimer(rport, "dev_loss_tmo", f"{base}/dev_loss_tmo")
        out["fast_io_fail_tmo"] = TransportTimer(
            rport, "fast_io_fail_tmo", f"{base}/fast_io_fail_tmo"
        )
    elif (session := iscsi_session_of(sys_path)) is not None:
        out["fast_io_fail_tmo"] = TransportTimer(
            session, "recovery_tmo", f"{root}/class/iscsi_session/{session}/recovery_tmo"
        )
    elif (m := _FABRICS_CTRL_RE.search(sys_path)) is not None:
        # a reconnecting controller holds I/O without fail-fast (a check's read) until
        # ctrl_loss_tmo, 600 s by default, unless its fast_io_fail_tmo says otherwise
        ctrl = m.group(1)
        out["fast_io_fail_tmo"] = TransportTimer(
            ctrl, "fast_io_fail_tmo", f"{root}/class/nvme/{ctrl}/fast_io_fail_tmo"
        )
    if (host := scsi_host_number(sys_path)) is not None:
        out["eh_deadline"] = TransportTimer(
            f"host{host}", "eh_deadline", f"{root}/class/scsi_host/host{host}/eh_deadline"
        )
    return out


@dataclass(frozen=True)
class TransportState:
    """Where the transport a path runs over says whether it is connected: a session or
    port that has lost its link and is recovering carries no I/O, whatever a command
    sent down the path would answer (it would wait, blocked)."""

    owner: str  # "iSCSI session3"
    attribute: str  # its sysfs state file
    down: frozenset[str]  # the states in which the path is down

    def read(self) -> str | None:
        """The state now, or None if the transport object is gone (the path with it)."""
        try:
            with open(self.attribute) as fh:
                return fh.read().strip()
        except OSError:
            return None


#: an NVMe over Fabrics controller's states in which it carries no I/O: reconnecting
#: after a lost connection (resetting, then connecting until ctrl_loss_tmo) or going away
NVME_CONTROLLER_DOWN = frozenset({"resetting", "connecting", "deleting", "deleting (no IO)",
                                  "dead"})


def transport_state(sys_path: str, sys_root: str = "/sys") -> TransportState | None:
    """The state of the iSCSI session a device path runs over (``FAILED``: the connection
    is lost and the session recovering, until ``recovery_tmo`` fails its I/O or it logs
    in again) or of its NVMe over Fabrics controller (not ``live``), or None for other
    transports."""
    if (session := iscsi_session_of(sys_path)) is not None:
        return iscsi_session_state(session, sys_root)
    if (m := _FABRICS_CTRL_RE.search(sys_path)) is not None:
        ctrl = m.group(1)
        return TransportState(
            f"NVMe controller {ctrl}",
            f"{sys_root.rstrip('/')}/class/nvme/{ctrl}/state",
            NVME_CONTROLLER_DOWN,
        )
    return None


def iscsi_session_state(session: str, sys_root: str = "/sys") -> TransportState:
    """The state file of iSCSI session ``session`` (``session3``)."""
    root = sys_root.rstrip("/")
    return TransportState(
        f"iSCSI {session}", f"{root}/class/iscsi_session/{session}/state", frozenset({"FAILED"})
    )


def iscsi_session_of(sys_path: str) -> str | None:
    """The iSCSI session a device path hangs under (``session3``), or None."""
    m = _SESSION_RE.search(sys_path)
    return m.group(1) if m else None


def iscsi_portal(session: str, sys_root: str = "/sys") -> tuple[str, int] | None:
    """The target portal a session is connected to, (address, port), from its first
    connection's ``persistent_address`` / ``persistent_port`` (where it reconnects)."""
    number = session.removeprefix("session")
    base = Path(sys_root) / "class" / "iscsi_connection"
    for conn in sorted(base.glob(f"connection{number}:*")):
        try:
            address = (conn / "persistent_address").read_text().strip()
        except OSError:
            continue
        try:
            port = int((conn / "persistent_port").read_text().strip())
        except (OSError, ValueError):
            port = 0  # not known: the address alone names the portal
        if address:
            return address, port
    return None


def iscsi_portal_address(session: str, sys_root: str = "/sys") -> str | None:
    """The address of the target portal a session is connected to, or None."""
    portal = iscsi_portal(session, sys_root)
    return portal[0] if portal else None


def set_timer(timer: TransportTimer, seconds: int) -> str | None:
    """Give ``timer`` this many seconds; the value it had, or None if it had it already."""
    with open(timer.attribute) as fh:
        before = fh.read().strip()
    if before == str(seconds):
        return None
    with open(timer.attribute, "w") as fh:
        fh.write(f"{seconds}\n")
    return before


def scsi_host_number(sys_path: str) -> int | None:
    """The SCSI host number from a device path (``…/host6/…`` → 6)."""
    m = _HOST_RE.search(sys_path)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class PathFacts:
    """A path's block device as sysfs shows it at one moment.

    Strings are stripped of the padding the kernel keeps; an attribute the device does not
    have is None (dm devices have no ``device/``, NVMe namespaces no HCTL).
    """

    name: str
    devnum: str  # "8:0"
    hctl: str | None  # "6:0:0:0"
    vendor: str | None
    model: str | None
    rev: str | None
    size_sectors: int  # 512-byte sectors, as /sys/block/X/size counts
    scsi_state: str | None  # device/state: running, offline, blocked, ...
    transport: Transport
    wwid_sysfs: str | None  # device/wwid: "naa.33333330000007d0"
    dh_state: str | None  # device/dh_state: "alua", "detached", ...
    access_state: str | None  # device/access_state, set by scsi_dh_alua
    preferred_path: bool | None
    io_timeout_s: int | None  # device/timeout (the SCSI command timeout)
    read_only: bool
    sys_path: str  # resolved /sys/devices/... path

    @property
    def host(self) -> int | None:
        parts = parse_hctl(self.hctl)
        return parts[0] if parts else None

    @property
    def lun(self) -> int | None:
        parts = parse_hctl(self.hctl)
        return parts[3] if parts else None

    @property
    def online(self) -> bool:
        """True unless sysfs says the SCSI device is not running (no state: not SCSI)."""
        return self.scsi_state in (None, "running", "live")


def _attr(path: str) -> str | None:
    """One sysfs attribute, stripped; None when it is absent or unreadable right now.

    A bare open/read/close: a coldplug reads some 15 attributes of every path, and
    pathlib's text files cost several times more than the read itself.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode(errors="replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def read_path_facts(name: str, sys_root: str = "/sys") -> PathFacts:
    """Read ``/sys/block/NAME`` into ``PathFacts``; DeviceError if there is no such disk."""
    block = os.path.join(sys_root, "block")
    base = os.path.join(block, name)
    dev = _attr(base + "/dev")
    if dev is None or not os.path.isdir(base):
        raise DeviceError(name, f"not a block device in {block}")
    sys_path = os.path.realpath(base)
    device = base + "/device"
    hctl_name = os.path.basename(os.path.realpath(device)) if os.path.exists(device) else None
    hctl = hctl_name if parse_hctl(hctl_name) else None
    classes: set[str] = set()
    host_no = scsi_host_number(sys_path)
    if host_no is not None:
        for cls, _ in _HOST_CLASS_TRANSPORTS:
            if os.path.exists(os.path.join(sys_root, "class", cls, f"host{host_no}")):
                classes.add(cls)
    nvme_transport = _attr(device + "/transport") if "/nvme" in sys_path else None
    preferred = _attr(device + "/preferred_path")
    return PathFacts(
        name=name,
        devnum=dev,
        hctl=hctl,
        vendor=_attr(device + "/vendor"),
        model=_attr(device + "/model"),
        rev=_attr(device + "/rev") or _attr(device + "/firmware_rev"),
        size_sectors=_int(_attr(base + "/size")) or 0,
        scsi_state=_attr(device + "/state"),
        transport=detect_transport(sys_path, frozenset(classes), nvme_transport),
        wwid_sysfs=_attr(device + "/wwid") or _attr(base + "/wwid"),
        dh_state=_attr(device + "/dh_state"),
        access_state=_attr(device + "/access_state"),
        preferred_path=None if preferred is None else preferred == "1",
        io_timeout_s=_int(_attr(device + "/timeout")),
        read_only=_attr(base + "/ro") == "1",
        sys_path=sys_path,
    )


SETTABLE_STATES = frozenset({"offline", "running"})


def set_device_state(name: str, state: str, sys_root: str = "/sys") -> None:
    """Set a SCSI device's state (``offline`` or ``running``, the two the kernel accepts).

    This is how the lab takes a path down and brings it back; the daemon never does it.
    """
    if state not in SETTABLE_STATES:
        raise ValueError(f"state must be one of {sorted(SETTABLE_STATES)}, not {state!r}")
    path = Path(sys_root) / "block" / name / "device" / "state"
    try:
        path.write_text(state + "\n")
    except OSError as exc:
        raise DeviceError(name, f"cannot set state {state}: {exc.strerror or exc}") from exc
