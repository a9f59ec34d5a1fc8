"""An NVMe-TCP fabric inside the lab guest, with a fault injector per port.

The kernel's own parts, as in the iSCSI fabric (``dmpath.lab.iscsi``):

- the NVMe target ``nvmet`` driven through configfs: one subsystem, namespaces backed by
  files on a tmpfs the fabric mounts (on the guest's /tmp, an overlay, nvmet read every
  file's size as 0: a namespace of no blocks), with ``buffered_io`` since tmpfs refuses
  O_DIRECT, exported through one TCP port per link;
- the target in a network namespace of its own behind one veth pair per port, addresses
  from the documentation range 203.0.113.0/24 (two /28s, so the fabric can share the guest
  with the iSCSI one, which holds 192.0.2.0/24 and 198.51.100.0/24);
- the host's ``nvme-tcp`` connecting once per port through ``/dev/nvme-fabrics`` (what
  ``nvme connect`` writes), so the host sees one controller per port, each reaching the
  same namespaces.

nvmet opens a port's listening socket in the network namespace of the process that links
the subsystem into the port, so that one ``ln`` runs under ``nsenter --net``.

Native NVMe multipath (``nvme_core.multipath``) is a module parameter the kernel reads only
at load: ``load_host`` reloads ``nvme_core`` with the value asked for, which it can only do
while no controller exists (the iSCSI and scsi_debug paths do not use it).

Faults, per port: black hole (nftables drop: the controller's commands hang until its
keep-alive times out, then it reconnects until ``ctrl_loss_tmo``), link down (``ip
link``), the port disabled on the target (the subsystem unlinked from it: reconnects are
refused), the controller removed on the host (``delete_controller``: its namespaces'
disks are gone), and the port's ANA state (what native multipath follows).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dmpath.errors import DmpathError
from dmpath.kernel.nvme import native_multipath
from dmpath.lab import netlab
from dmpath.lab.netlab import read_attr as _read
from dmpath.lab.netlab import write_attr as _write
from dmpath.runner import run

NETNS = "dmpath-nvmet"
SUBSYS_NQN = "nqn.2026-12.org.dmpath.lab:nvme"
HOST_NQN = "nqn.2026-12.org.dmpath.lab:nvme-host"
NVME_PORT = 4420
NVMET = pathlib.Path(netlab.CONFIGFS) / "nvmet"
#: the namespaces' files, on a tmpfs of the fabric's own
STORE_DIR = "/tmp/dmpath-nvme"
#: nftables table holding the injected faults (created and deleted by the fabric)
NFT_TABLE = "dmpath_lab_nvme"
#: namespace n's UUID is n in hex followed by this: its WWID is ``uuid.<UUID>``
NS_UUID_SUFFIX = "-0f4d-4b6a-9e21-d0a7f1e5c0de"
SERIAL = "dmpath0001"
TARGET_MODULES = ("nvmet", "nvmet-tcp")
#: the host's modules, top first: unloaded in this order, loaded in reverse
HOST_MODULES = ("nvme_tcp", "nvme_fabrics", "nvme_core")
#: seconds between a lost controller's reconnect attempts (the kernel's default is 10):
#: the lab waits for the return of every controller it takes away
RECONNECT_DELAY = 2
#: how long connections and the disks' udev processing may take under emulation
CONNECT_TIMEOUT = 120.0


class FabricError(DmpathError):
    """The NVMe-TCP fabric could not be set up."""


@dataclass(frozen=True)
class Port(netlab.Link):
    """One target port and the link to it: ``host_if`` is the host's interface."""

    prefix: int = 28  # two /28s of one documentation range (see the module's docstring)

    @property
    def port_id(self) -> int:
        return self.index + 1


PORTS = (
    Port(0, "dmpn0", "dmpnt0", "203.0.113.1", "203.0.113.2"),
    Port(1, "dmpn1", "dmpnt1", "203.0.113.17", "203.0.113.18"),
)


@dataclass(frozen=True)
class NvmePath:
    """One namespace through one controller, as a block device of its own (native
    multipath off)."""

    name: str  # nvme0n1
    devnum: str  # 259:0
    controller: str  # nvme0
    nsid: int
    wwid: str  # the namespace's sysfs wwid
    port: Port

    @property
    def devnode(self) -> str:
        return "/dev/" + self.name


def ns_uuid(nsid: int) -> str:
    return f"{nsid:08x}{NS_UUID_SUFFIX}"


def parse_connect_answer(text: str) -> str:
    """``/dev/nvme-fabrics``' answer to a connect (``instance=3,cntlid=1``) → ``nvme3``."""
    fields = dict(kv.split("=", 1) for kv in text.strip().split(",") if "=" in kv)
    if not fields.get("instance", "").isdigit():
        raise FabricError(f"unexpected answer from /dev/nvme-fabrics: {text.strip()!r}")
    return "nvme" + fields["instance"]


def load_host(multipath: bool) -> None:
    """The host's NVMe-TCP modules loaded, nvme_core with native multipath as asked
    (reloaded if it was loaded with the other value: only possible with no controller)."""
    if native_multipath() not in (None, multipath):
        for mod in HOST_MODULES:
            res = run("rmmod", [mod], check=False)
            if res.returncode != 0 and os.path.isdir(f"/sys/module/{mod}"):
                raise FabricError(
                    f"cannot reload nvme_core with multipath={'Y' if multipath else 'N'}: "
                    f"{mod} is in use ({res.stderr.strip()})"
                )
    run("modprobe", ["nvme_core", f"multipath={'Y' if multipath else 'N'}"])
    run("modprobe", ["nvme-tcp"])
    if native_multipath() is not multipath:
        raise FabricError(f"nvme_core multipath is {native_multipath()}, not {multipath}")


class Fabric:
    """``Fabric(namespaces).setup()`` → the controllers' disks; ``teardown()`` removes
    everything it made (modules stay loaded)."""

    def __init__(
        self,
        namespaces: int = 1,
        ports: Sequence[Port] = PORTS,
        size_mb: int = 32,
        native: bool = False,
    ) -> None:
        self.namespaces = namespaces
        self.ports = tuple(ports)
        self.size_mb = size_mb
        self.native = native

    # ------------------------------------------------------------------ set-up

    def setup(self, say: Callable[[str], None] = lambda _m: None) -> list[str]:
        """The fabric up and connected: the names of the host's NVMe disks of our
        subsystem (one per namespace per port; one per namespace with native multipath)."""
        try:
            say("nvme-tcp fabric: network namespace and links")
            for mod in TARGET_MODULES:
                run("modprobe", [mod])
            netlab.mount_configfs()
            netlab.make_namespace(NETNS, self.ports)
            netlab.make_rules_table(NETNS, NFT_TABLE)
            say("nvme-tcp fabric: nvmet target")
            self._target()
            say("nvme-tcp fabric: host connections")
            load_host(self.native)
            for p in self.ports:
                self.connect(p)
            return self.wait_disks()
        except BaseException:
            self.teardown()
            raise

    @property
    def subsystem(self) -> pathlib.Path:
        return NVMET / "subsystems" / SUBSYS_NQN

    def _port_dir(self, p: Port) -> pathlib.Path:
        return NVMET / "ports" / str(p.port_id)

    def _target(self) -> None:
        os.makedirs(STORE_DIR, exist_ok=True)
        if not os.path.ismount(STORE_DIR):
            size = self.namespaces * self.size_mb + 1
            run("mount", ["-t", "tmpfs", "-o", f"size={size}m", "dmpath-nvme", STORE_DIR])
        sub = self.subsystem
        sub.mkdir()
        _write(sub / "attr_allow_any_host", "1")
        _write(sub / "attr_serial", SERIAL)
        for nsid in range(1, self.namespaces + 1):
            image = f"{STORE_DIR}/ns{nsid}.img"
            with open(image, "wb") as fh:
                fh.truncate(self.size_mb << 20)
            ns = sub / "namespaces" / str(nsid)
            ns.mkdir()
            _write(ns / "device_path", image)
            _write(ns / "buffered_io", "1")  # tmpfs refuses O_DIRECT
            _write(ns / "device_uuid", ns_uuid(nsid))
            _write(ns / "enable", "1")
        for p in self.ports:
            port = self._port_dir(p)
            port.mkdir()
            for attr, value in (
                ("addr_trtype", "tcp"),
                ("addr_adrfam", "ipv4"),
                ("addr_traddr", p.target_addr),
                ("addr_trsvcid", str(NVME_PORT)),
            ):
                _write(port / attr, value)
            self.port_enabled(p, True)

    def connect(self, p: Port) -> str:
        """The host connects to the port: its new controller's name (``nvme2``)."""
        options = (
            f"transport=tcp,traddr={p.target_addr},trsvcid={NVME_PORT},"
            f"host_traddr={p.host_addr},nqn={SUBSYS_NQN},hostnqn={HOST_NQN},"
            f"reconnect_delay={RECONNECT_DELAY}"
        )
        fd = os.open("/dev/nvme-fabrics", os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                os.write(fd, options.encode())
            except OSError as exc:
                raise FabricError(
                    f"connect to {p.target_addr}:{NVME_PORT}: {exc.strerror or exc}"
                ) from None
            return parse_connect_answer(os.read(fd, 4096).decode(errors="replace"))
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ what the host sees

    def controllers(self) -> dict[str, Port]:
        """Our controllers (nvmeN, connected to our subsystem) and the port of each."""
        by_addr = {p.target_addr: p for p in self.ports}
        out: dict[str, Port] = {}
        for ctrl in sorted(glob.glob("/sys/class/nvme/nvme*")):
            try:
                if _read(f"{ctrl}/subsysnqn") != SUBSYS_NQN:
                    continue
                address = _read(f"{ctrl}/address")
            except OSError:
                continue
            fields = dict(kv.split("=", 1) for kv in address.split(",") if "=" in kv)
            port = by_addr.get(fields.get("traddr", ""))
            if port is not None:
                out[os.path.basename(ctrl)] = port
        return out

    def controller_state(self, name: str) -> str:
        try:
            return _read(f"/sys/class/nvme/{name}/state")
        except OSError:
            return "gone"

    def paths(self) -> list[NvmePath]:
        """The namespaces' disks per controller (native multipath off)."""
        out: list[NvmePath] = []
        for ctrl, port in self.controllers().items():
            # a namespace's own disk sits under its controller (nvmeXnY); with native
            # multipath on, the controllers hold hidden nvmeXcYnZ instead
            for blk in glob.glob(f"/sys/class/nvme/{ctrl}/nvme*n*"):
                name = os.path.basename(blk)
                if "c" in name.removeprefix("nvme") or not os.path.exists(f"/dev/{name}"):
                    continue
                try:
                    devnum = _read(f"{blk}/dev")
                    nsid = int(_read(f"{blk}/nsid"))
                    wwid = _read(f"{blk}/wwid")
                except (OSError, ValueError):
                    continue
                out.append(NvmePath(name, devnum, ctrl, nsid, wwid, port))
        return sorted(out, key=lambda p: (p.nsid, p.port.index))

    def heads(self) -> list[str]:
        """The native multipath heads of our subsystem (nvmeXnY under nvme-subsysX)."""
        out: list[str] = []
        for sub in glob.glob("/sys/class/nvme-subsystem/nvme-subsys*"):
            try:
                if _read(f"{sub}/subsysnqn") != SUBSYS_NQN:
                    continue
            except OSError:
                continue
            for head in glob.glob(f"{sub}/nvme*n*"):
                name = os.path.basename(head)
                if os.path.exists(f"/dev/{name}"):
                    out.append(name)
        return sorted(out)

    def wait_disks(self, timeout: float = CONNECT_TIMEOUT) -> list[str]:
        """Until every namespace has its disk(s) and udev has processed them."""
        want = self.namespaces * (1 if self.native else len(self.ports))
        deadline = time.monotonic() + timeout
        while True:
            names = self.heads() if self.native else [p.name for p in self.paths()]
            if len(names) == want:
                run("udevadm", ["settle", "-t", str(int(timeout))], check=False)
                return names
            if time.monotonic() > deadline:
                raise FabricError(
                    f"NVMe-TCP fabric: {len(names)} of {want} disks after {timeout:g} s"
                )
            time.sleep(0.5)

    # ------------------------------------------------------------------ faults

    def blackhole(self, p: Port) -> None:
        """The port's packets vanish: commands neither complete nor fail until the
        controller's keep-alive times out."""
        netlab.add_rules(NETNS, NFT_TABLE, p.target_addr, NVME_PORT, "drop")

    def clear_rules(self) -> None:
        netlab.flush_rules(NETNS, NFT_TABLE)

    def link(self, p: Port, up: bool) -> None:
        """The host's interface to the port goes down (or comes back)."""
        netlab.set_link(p, up)

    def port_enabled(self, p: Port, enabled: bool) -> None:
        """The target exports the subsystem through the port, or stops (its controller's
        connection drops and reconnects are refused)."""
        link = self._port_dir(p) / "subsystems" / SUBSYS_NQN
        if enabled and not link.is_symlink():
            # the port listens in the namespace of whoever links it
            netlab.in_namespace(NETNS, "ln", ["-s", str(self.subsystem), str(link)])
        elif not enabled and link.is_symlink():
            link.unlink()

    def set_ana_state(self, p: Port, state: str) -> None:
        """The ANA state of the port's (one, default) ANA group: ``optimized``,
        ``non-optimized``, ``inaccessible``, ``persistent-loss`` or ``change``. The
        target tells the host with an asynchronous event; only native multipath reads it."""
        _write(self._port_dir(p) / "ana_groups" / "1" / "ana_state", state)

    def remove_controller(self, name: str) -> None:
        """The host drops a controller (its namespaces' disks go away with it)."""
        with contextlib.suppress(FileNotFoundError):
            _write(f"/sys/class/nvme/{name}/delete_controller", "1")

    def clear_faults(self) -> None:
        """Every port back to healthy and connected."""
        self.clear_rules()
        for p in self.ports:
            with contextlib.suppress(DmpathError):
                self.link(p, True)
            if self._port_dir(p).is_dir():
                with contextlib.suppress(OSError, DmpathError):
                    self.port_enabled(p, True)
        connected = set(self.controllers().values())
        for p in self.ports:
            if p not in connected:
                with contextlib.suppress(DmpathError):
                    self.connect(p)

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        """Disconnect, remove the target, the links and the rules. Each step is tried
        whatever the others did: a half-made fabric is taken down too."""
        self.clear_rules()
        for name in self.controllers():
            self.remove_controller(name)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while self.controllers() and time.monotonic() < deadline:
            time.sleep(0.2)
        for p in self.ports:
            port = self._port_dir(p)
            with contextlib.suppress(OSError):
                self.port_enabled(p, False)
            with contextlib.suppress(OSError):
                port.rmdir()
        sub = self.subsystem
        for ns in sorted(sub.glob("namespaces/*")):
            with contextlib.suppress(OSError):
                _write(ns / "enable", "0")
            with contextlib.suppress(OSError):
                ns.rmdir()
        with contextlib.suppress(OSError):
            sub.rmdir()
        if os.path.ismount(STORE_DIR):
            run("umount", [STORE_DIR], check=False)
        netlab.remove_rules_table(NETNS, NFT_TABLE)
        netlab.remove_namespace(NETNS, self.ports)
