"""An iSCSI fabric inside the lab guest, with a fault injector per portal.

Real SAN paths fail by hanging, flapping and turning slow, not by answering at once with
an error as a scsi_debug disk set ``offline`` does. This fabric reproduces those failures
with the kernel's own parts:

- a LIO target (configfs, no userspace tool) in a network namespace of its own, exporting
  each LUN through one target portal group (TPG) per portal, so each portal is its own
  target port: it can be disabled, and later given its own ALUA state;
- one veth link per portal between that namespace and the root namespace, with addresses
  from the documentation ranges (192.0.2.0/24, 198.51.100.0/24): traffic never leaves the
  guest, and each path's network interface is a real one that can go down;
- the open-iscsi initiator in the root namespace (``iscsid`` started here: there is no
  systemd in the guest), one session per portal, so every LUN has one ``sdX`` per portal.

LIO opens a portal's listening socket in the network namespace of the process that
creates it (``iscsit_setup_np``), so that one ``mkdir`` runs under ``nsenter --net``.

Faults, per portal: black hole (nftables drop: the path hangs), reset (nftables reject
with a TCP reset: the path fails fast), loss and delay (``tc netem``: marginal), link down
(``ip link``), target port disabled (the TPG's ``enable``), ALUA access state (each
portal's LUNs are in a target port group of their own, with implicit ALUA).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dmpath.errors import DmpathError
from dmpath.lab import netlab
from dmpath.lab.netlab import read_attr as _read
from dmpath.lab.netlab import write_attr as _write
from dmpath.runner import run, tool_path

NETNS = "dmpath-tgt"
TARGET_IQN = "iqn.2026-12.org.dmpath.lab:fabric"
INITIATOR_IQN = "iqn.2026-12.org.dmpath.lab:host"
ISCSI_PORT = 3260
CONFIGFS = netlab.CONFIGFS
LIO = pathlib.Path(CONFIGFS) / "target"
#: the backstores' files (the guest's /tmp is memory)
STORE_DIR = "/tmp/dmpath-iscsi"
#: nftables table holding the injected faults (created and deleted by the fabric)
NFT_TABLE = "dmpath_lab"
#: LUN n's unit serial is n in hex and this (a UUID's shape, as LIO's own tools make);
#: the number comes first because the NAA identifier keeps only the first 25 hex digits
UNIT_SERIAL_SUFFIX = "-6c3b-4e2a-9f10-d0a7f1e5c0de"
MODULES = ("target_core_mod", "target_core_file", "iscsi_target_mod", "iscsi_tcp")
#: how long logins and the disks' udev processing may take under emulation
LOGIN_TIMEOUT = 120.0
#: iscsiadm's exit status when iscsid does not answer
ISCSID_NOTCONN = 20
#: LIO's alua_access_state codes (SPC-4's, as REPORT TARGET PORT GROUPS gives them)
ALUA_STATES = {
    "active/optimized": 0,
    "active/non-optimized": 1,
    "standby": 2,
    "unavailable": 3,
    "transitioning": 15,
}


class FabricError(DmpathError):
    """The iSCSI fabric could not be set up."""


@dataclass(frozen=True)
class Portal(netlab.Link):
    """One target portal and the link to it: ``host_if`` is the initiator's interface."""

    @property
    def tpgt(self) -> int:
        return self.index + 1

    @property
    def address(self) -> str:
        return f"{self.target_addr}:{ISCSI_PORT}"


PORTALS = (
    Portal(0, "dmpi0", "dmpt0", "192.0.2.1", "192.0.2.2"),
    Portal(1, "dmpi1", "dmpt1", "198.51.100.1", "198.51.100.2"),
)


@dataclass(frozen=True)
class IscsiPath:
    name: str  # sdX
    devnum: str  # 8:16
    hctl: str
    lun: int
    wwid: str  # sysfs device/wwid
    portal: Portal
    session: str  # session3

    @property
    def devnode(self) -> str:
        return "/dev/" + self.name


class Fabric:
    """``Fabric(luns).setup()`` → the paths (one per LUN per portal); ``teardown()``
    removes everything it made, faults first."""

    def __init__(
        self, luns: int = 1, portals: Sequence[Portal] = PORTALS, size_mb: int = 32
    ) -> None:
        self.luns = luns
        self.portals = tuple(portals)
        self.size_mb = size_mb
        self.tpg_dirs: dict[int, pathlib.Path] = {}
        #: portal index -> its target port group on each LUN (core/<hba>/<dev>/alua/...)
        self.alua_dirs: dict[int, list[pathlib.Path]] = {}
        self.iscsid: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ set-up

    def setup(self, say: Callable[[str], None] = lambda _m: None) -> list[IscsiPath]:
        try:
            say("iscsi fabric: network namespace and links")
            self._network()
            say("iscsi fabric: LIO target")
            self._target()
            say("iscsi fabric: initiator logins")
            self._initiator()
            return self.wait_paths()
        except BaseException:
            self.teardown()
            raise

    def _network(self) -> None:
        for mod in MODULES:
            run("modprobe", [mod])
        netlab.mount_configfs()
        netlab.make_namespace(NETNS, self.portals)
        netlab.make_rules_table(NETNS, NFT_TABLE)

    def _target(self) -> None:
        os.makedirs(STORE_DIR, exist_ok=True)
        os.makedirs("/etc/target", exist_ok=True)  # LIO's dbroot; it warns without one
        size = self.size_mb << 20
        for lun in range(self.luns):
            store = LIO / "core" / "fileio_0" / f"dmpath_lun{lun}"
            store.mkdir(parents=True)
            image = f"{STORE_DIR}/lun{lun}.img"
            with open(image, "wb") as fh:
                fh.truncate(size)
            _write(store / "control", f"fd_dev_name={image},fd_dev_size={size}")
            _write(store / "enable", "1")
            # the unit serial LIO builds its NAA identifier from: without one the LUN has
            # no designator the kernel takes for a WWID (device/wwid cannot be read)
            _write(store / "wwn" / "vpd_unit_serial", f"{lun:08x}{UNIT_SERIAL_SUFFIX}")
        target = LIO / "iscsi" / TARGET_IQN
        for p in self.portals:
            tpg = target / f"tpgt_{p.tpgt}"
            tpg.mkdir(parents=True)
            self.tpg_dirs[p.index] = tpg
            for attr, value in (
                ("authentication", "0"),
                ("generate_node_acls", "1"),
                ("cache_dynamic_acls", "1"),
                ("demo_mode_write_protect", "0"),
            ):
                _write(tpg / "attrib" / attr, value)
            for lun in range(self.luns):
                port = tpg / "lun" / f"lun_{lun}"
                port.mkdir()
                store = LIO / "core" / "fileio_0" / f"dmpath_lun{lun}"
                os.symlink(store, port / "dmpath")
                # the portal's own target port group (id = tpgt; 0 is LIO's default
                # group), implicit ALUA so its state can be set here
                group = store / "alua" / f"dmpath_port{p.index}"
                group.mkdir()
                _write(group / "tg_pt_gp_id", str(p.tpgt))
                _write(group / "alua_access_type", "1")
                _write(port / "alua_tg_pt_gp", group.name)
                self.alua_dirs.setdefault(p.index, []).append(group)
            # the listening socket belongs to the namespace of whoever makes the portal
            netlab.in_namespace(NETNS, "mkdir", [str(tpg / "np" / p.address)])
            _write(tpg / "enable", "1")

    def _initiator(self) -> None:
        os.makedirs("/etc/iscsi", exist_ok=True)
        _write("/etc/iscsi/initiatorname.iscsi", f"InitiatorName={INITIATOR_IQN}\n")
        # in the foreground, as our child: nothing else in the guest would stop it
        self.iscsid = subprocess.Popen(
            [tool_path("iscsid"), "-f"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its signals stay in its own process group
        )
        deadline = time.monotonic() + LOGIN_TIMEOUT
        # iscsiadm's exit status 20: iscsid is not answering (yet)
        while run("iscsiadm", ["-m", "session"], check=False).returncode == ISCSID_NOTCONN:
            if time.monotonic() > deadline or self.iscsid.poll() is not None:
                raise FabricError("iscsid did not start")
            time.sleep(0.2)
        for p in self.portals:
            run(
                "iscsiadm",
                ["-m", "node", "-o", "new", "-T", TARGET_IQN, "-p", f"{p.address},{p.tpgt}"],
            )
            run(
                "iscsiadm",
                ["-m", "node", "-T", TARGET_IQN, "-p", p.address, "--login"],
                timeout=LOGIN_TIMEOUT,
            )

    # ------------------------------------------------------------------ paths

    def sessions(self) -> dict[str, Portal]:
        """Our sessions (sessionN) and the portal each is logged in through."""
        by_addr = {p.target_addr: p for p in self.portals}
        out: dict[str, Portal] = {}
        for conn in glob.glob("/sys/class/iscsi_connection/connection*"):
            session = "session" + os.path.basename(conn).removeprefix("connection").split(":")[0]
            try:
                target = _read(f"/sys/class/iscsi_session/{session}/targetname")
                addr = _read(f"{conn}/persistent_address")
            except OSError:
                continue
            if target == TARGET_IQN and addr in by_addr:
                out[session] = by_addr[addr]
        return out

    def paths(self) -> list[IscsiPath]:
        out: list[IscsiPath] = []
        for session, portal in self.sessions().items():
            for blk in glob.glob(
                f"/sys/class/iscsi_session/{session}/device/target*/*:*:*:*/block/sd*"
            ):
                name = os.path.basename(blk)
                dev = os.path.dirname(os.path.dirname(blk))
                hctl = os.path.basename(dev)
                try:
                    devnum = _read(f"{blk}/dev")
                    wwid = _read(f"{dev}/wwid")
                except OSError:
                    continue
                out.append(
                    IscsiPath(
                        name, devnum, hctl, int(hctl.rsplit(":", 1)[1]), wwid, portal, session
                    )
                )
        return sorted(out, key=lambda p: (p.lun, p.portal.index))

    def wait_paths(self, timeout: float = LOGIN_TIMEOUT) -> list[IscsiPath]:
        """Until every LUN has a disk through every portal and udev has processed them."""
        want = self.luns * len(self.portals)
        deadline = time.monotonic() + timeout
        while True:
            paths = self.paths()
            if len(paths) == want:
                run("udevadm", ["settle", "-t", str(int(timeout))], check=False)
                return paths
            if time.monotonic() > deadline:
                raise FabricError(f"iSCSI fabric: {len(paths)} of {want} disks after {timeout:g} s")
            time.sleep(0.5)

    # ------------------------------------------------------------------ faults

    def _rules(self, p: Portal, verdict: str) -> None:
        netlab.add_rules(NETNS, NFT_TABLE, p.target_addr, ISCSI_PORT, verdict)

    def blackhole(self, p: Portal) -> None:
        """The portal's packets vanish: commands neither complete nor fail (a dead
        switch port) until a transport timer fires."""
        self._rules(p, "drop")

    def reset(self, p: Portal) -> None:
        """The portal refuses: every packet is answered with a TCP reset (fails fast)."""
        self._rules(p, "reject with tcp reset")

    def clear_rules(self) -> None:
        netlab.flush_rules(NETNS, NFT_TABLE)

    def netem(self, p: Portal, spec: str | None) -> None:
        """``tc netem`` on the portal's link (e.g. ``"loss 20%"``, ``"delay 200ms"``);
        None removes it."""
        if spec is None:
            run("tc", ["qdisc", "del", "dev", p.host_if, "root"], check=False)
        else:
            run("tc", ["qdisc", "replace", "dev", p.host_if, "root", "netem", *spec.split()])

    def link(self, p: Portal, up: bool) -> None:
        """The initiator's interface to the portal goes down (or comes back)."""
        netlab.set_link(p, up)

    def port_enabled(self, p: Portal, enabled: bool) -> None:
        """The target disables (or re-enables) the portal's target port group."""
        _write(self.tpg_dirs[p.index] / "enable", "1" if enabled else "0")

    def alua(self, p: Portal, state: str) -> None:
        """The target moves the portal's port group (on every LUN) to ``state``, one of
        ALUA_STATES, as a controller failover does: implicit ALUA, so LIO queues a unit
        attention (2a/06) on every I_T nexus through the group."""
        for group in self.alua_dirs.get(p.index, []):
            _write(group / "alua_access_state", str(ALUA_STATES[state]))

    def clear_faults(self) -> None:
        """Every portal back to healthy."""
        self.clear_rules()
        for p in self.portals:
            self.netem(p, None)
            with contextlib.suppress(DmpathError):
                self.link(p, True)
            if p.index in self.tpg_dirs:
                with contextlib.suppress(OSError):
                    self.port_enabled(p, True)
            with contextlib.suppress(OSError):
                self.alua(p, "active/optimized")

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        """Log out, stop iscsid, remove the target, the links and the rules. Each step
        is attempted whatever the others did: a half-made fabric is taken down too."""
        with contextlib.suppress(DmpathError):
            self.clear_faults()
        for args in (
            ["-m", "node", "-T", TARGET_IQN, "--logout"],
            ["-m", "node", "-T", TARGET_IQN, "-o", "delete"],
        ):
            run("iscsiadm", args, check=False, timeout=LOGIN_TIMEOUT)
        if self.iscsid is not None:
            self.iscsid.terminate()
            try:
                self.iscsid.wait(30)
            except subprocess.TimeoutExpired:
                self.iscsid.kill()
                self.iscsid.wait()
            self.iscsid = None
        target = LIO / "iscsi" / TARGET_IQN
        for tpg in sorted(target.glob("tpgt_*")):
            with contextlib.suppress(OSError):
                _write(tpg / "enable", "0")
            for np in tpg.glob("np/*"):
                with contextlib.suppress(OSError):
                    np.rmdir()
            for port in tpg.glob("lun/lun_*"):
                for link in port.iterdir():
                    if link.is_symlink():
                        with contextlib.suppress(OSError):
                            link.unlink()
                with contextlib.suppress(OSError):
                    port.rmdir()
            with contextlib.suppress(OSError):
                tpg.rmdir()
        with contextlib.suppress(OSError):
            target.rmdir()
        for store in sorted((LIO / "core").glob("fileio_0/dmpath_lun*")):
            for group in store.glob("alua/dmpath_port*"):
                with contextlib.suppress(OSError):
                    group.rmdir()
            with contextlib.suppress(OSError):
                store.rmdir()
        with contextlib.suppress(OSError):
            (LIO / "core" / "fileio_0").rmdir()  # only once empty: ours alone
        for name in os.listdir(STORE_DIR) if os.path.isdir(STORE_DIR) else []:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(STORE_DIR, name))
        netlab.remove_rules_table(NETNS, NFT_TABLE)
        netlab.remove_namespace(NETNS, self.portals)
        self.tpg_dirs.clear()
        self.alua_dirs.clear()

