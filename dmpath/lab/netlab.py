"""The lab's storage networks: a target's network namespace, veth links to it, fault rules.

Both network fabrics of the lab (iSCSI in ``dmpath.lab.iscsi``, NVMe-TCP in
``dmpath.lab.nvmetcp``) put their target in a network namespace of its own behind one veth
pair per port, with addresses from the documentation ranges, so traffic never leaves the
guest and every path rides a real interface that can go down. Faults that hang a path or
refuse it are nftables rules on the port's address, in a table each fabric owns in its
target's namespace.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable
from dataclasses import dataclass

from dmpath.runner import run

CONFIGFS = "/sys/kernel/config"


@dataclass(frozen=True)
class Link:
    """One target port and the veth pair to it: ``host_if`` in the root namespace (the
    initiator's or host's interface), ``target_if`` in the target's. Each fabric's port
    type extends it with what its target calls the port."""

    index: int
    host_if: str
    target_if: str
    host_addr: str
    target_addr: str
    prefix: int = 24


def write_attr(path: pathlib.Path | str, value: str) -> None:
    """One configfs or sysfs attribute written (the kernel takes it in one write)."""
    with open(path, "w") as fh:
        fh.write(value)


def read_attr(path: pathlib.Path | str) -> str:
    with open(path) as fh:
        return fh.read().strip()


def mount_configfs() -> None:
    """configfs where the kernel's targets are driven (the guest mounts none itself; its
    mount point exists once a module that uses configfs is loaded)."""
    if not os.path.ismount(CONFIGFS):
        run("mount", ["-t", "configfs", "configfs", CONFIGFS])


def make_namespace(netns: str, links: Iterable[Link]) -> None:
    """The target's namespace and one veth pair into it per link, addressed and up."""
    run("ip", ["netns", "add", netns])
    run("ip", ["-n", netns, "link", "set", "lo", "up"])
    for p in links:
        run("ip", ["link", "add", p.host_if, "type", "veth", "peer", "name", p.target_if,
                   "netns", netns])
        run("ip", ["addr", "add", f"{p.host_addr}/{p.prefix}", "dev", p.host_if])
        run("ip", ["-n", netns, "addr", "add", f"{p.target_addr}/{p.prefix}", "dev",
                   p.target_if])
        run("ip", ["link", "set", p.host_if, "up"])
        run("ip", ["-n", netns, "link", "set", p.target_if, "up"])


def remove_namespace(netns: str, links: Iterable[Link]) -> None:
    """The links and the namespace, whatever is left of them."""
    for p in links:
        run("ip", ["link", "del", p.host_if], check=False)
    run("ip", ["netns", "del", netns], check=False)


def set_link(p: Link, up: bool) -> None:
    """The host's interface of a link goes down (or comes back)."""
    run("ip", ["link", "set", p.host_if, "up" if up else "down"])


def in_namespace(netns: str, tool: str, args: list[str]) -> None:
    """Run ``tool args`` in the target's namespace: the kernel's targets open a port's
    listening socket in the namespace of the process that enables the port."""
    run("nsenter", [f"--net=/run/netns/{netns}", tool, *args])


def _nft(netns: str, *args: str, check: bool = True) -> None:
    """nft in the target's namespace: a fault is the network's or the target's, never the
    initiator's own (a packet the initiator's own firewall drops is a send that failed,
    and its TCP keeps it queued as unsent; a packet lost beyond the link is sent and
    never acknowledged, as on a SAN whose switch port died)."""
    run("ip", ["netns", "exec", netns, "nft", *args], check=check)


def make_rules_table(netns: str, table: str) -> None:
    """An nftables table in the target's namespace, with an input and an output chain."""
    _nft(netns, "add", "table", "inet", table)
    for chain, hook in (("out", "output"), ("in", "input")):
        _nft(netns, "add", "chain", "inet", table, chain,
             f"{{ type filter hook {hook} priority 0 ; }}")


def add_rules(netns: str, table: str, addr: str, port: int, verdict: str) -> None:
    """``verdict`` (``drop``, ``reject with tcp reset``) on a target port's traffic, both
    ways, at the target: the port neither receives nor answers."""
    for chain, match, tcp in (("in", "daddr", "dport"), ("out", "saddr", "sport")):
        _nft(netns, "add", "rule", "inet", table, chain,
             "ip", match, addr, "tcp", tcp, str(port), *verdict.split())


def flush_rules(netns: str, table: str) -> None:
    for chain in ("out", "in"):
        _nft(netns, "flush", "chain", "inet", table, chain, check=False)


def remove_rules_table(netns: str, table: str) -> None:
    _nft(netns, "delete", "table", "inet", table, check=False)
