"""SG_IO, sysfs and udev against real scsi_debug paths, inside the lab VM (kernel 6.1).

Topology (from tests/lab/conftest.py, fixture ``scsi_paths``): one LUN seen through two
SCSI hosts, ``scsi_debug num_tgts=1 add_host=2 vpd_use_hostno=0 dev_size_mb=64``. Each
record has ``.name`` ("sda"), ``.devnum`` ("8:0"), ``.host`` and ``.lun``.

Every test that takes a path offline puts it back in ``finally``.
"""

from __future__ import annotations

import errno
import os
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pyudev

from dmpath.kernel import sgio
from dmpath.kernel.scsi import (
    PathState,
    Tpgs,
    alua_path_state,
    alua_priority,
    udev_id_serial,
    wwid_from_vpd83,
)
from dmpath.kernel.sysfs import Transport, read_path_facts, set_device_state
from dmpath.kernel.udev import (
    Monitor,
    enumerate_block_disks,
    is_disk,
    is_scsi,
    wwid_from_udev,
)
from dmpath.lab import topology as topo

pytestmark = pytest.mark.lab

DEV_SIZE_MB = 64
CHECK_TIMEOUT_S = 10.0
EVENT_TIMEOUT_S = 20.0


def node(path: Any) -> str:
    return f"/dev/{path.name}"


@contextmanager
def offline(name: str) -> Iterator[None]:
    """Take a SCSI device offline for the block; always bring it back."""
    set_device_state(name, "offline")
    try:
        yield
    finally:
        set_device_state(name, "running")


def udev_properties(name: str) -> dict[str, str]:
    dev = pyudev.Devices.from_name(pyudev.Context(), "block", name)
    return {str(k): str(v) for k, v in dict(dev.properties).items()}


def test_topology(scsi_paths: list[Any]) -> None:
    assert len(scsi_paths) == 2
    assert len({p.host for p in scsi_paths}) == 2, "two paths must come through two hosts"


def test_tur_up_on_every_path(scsi_paths: list[Any]) -> None:
    for p in scsi_paths:
        outcome = sgio.test_unit_ready(node(p), CHECK_TIMEOUT_S)
        assert outcome.state == PathState.UP, f"{p.name}: {outcome.reason}"


def test_offline_path_is_down_at_open(scsi_paths: list[Any]) -> None:
    victim, other = scsi_paths
    with offline(victim.name):
        assert read_path_facts(victim.name).scsi_state == "offline"
        with pytest.raises(sgio.PathOpenError) as info:
            sgio.open_path(node(victim))
        assert info.value.errno == errno.ENXIO
        outcome = sgio.test_unit_ready(node(victim), CHECK_TIMEOUT_S)
        assert outcome.state == PathState.DOWN and "ENXIO" in outcome.reason
        assert sgio.test_unit_ready(node(other), CHECK_TIMEOUT_S).state == PathState.UP
    outcome = sgio.test_unit_ready(node(victim), CHECK_TIMEOUT_S)
    assert outcome.state == PathState.UP, outcome.reason


def test_offline_path_is_down_on_open_fd(scsi_paths: list[Any]) -> None:
    """The daemon keeps one fd per path: the check on that fd must see the path go down."""
    victim = scsi_paths[0]
    fd = sgio.open_path(node(victim))
    try:
        assert sgio.test_unit_ready(fd, CHECK_TIMEOUT_S).state == PathState.UP
        with offline(victim.name):
            outcome = sgio.test_unit_ready(fd, CHECK_TIMEOUT_S)
            print(f"open fd on offline {victim.name}: {outcome.reason}")
            assert outcome.state == PathState.DOWN, outcome.reason
            # ENODEV from sd_ioctl, or DID_NO_CONNECT if the command got queued
            assert any(w in outcome.reason for w in ("ENXIO", "ENODEV", "DID_NO_CONNECT"))
        outcome = sgio.test_unit_ready(fd, CHECK_TIMEOUT_S)
        assert outcome.state == PathState.UP, f"same fd after running again: {outcome.reason}"
    finally:
        os.close(fd)


def test_inquiry_claims_implicit_alua(scsi_paths: list[Any]) -> None:
    for p in scsi_paths:
        inq = sgio.inquiry(node(p), CHECK_TIMEOUT_S)
        assert (inq.vendor, inq.product) == ("Linux", "scsi_debug")
        assert inq.tpgs == Tpgs.IMPLICIT  # vpd_use_hostno=0


def test_vpd83_wwid_matches_udev(scsi_paths: list[Any]) -> None:
    wwids = set()
    for p in scsi_paths:
        ids = sgio.device_identification(node(p), CHECK_TIMEOUT_S)
        wwid = wwid_from_vpd83(ids)
        assert wwid is not None
        props = udev_properties(p.name)
        assert wwid.wwn == props["ID_WWN"]
        links = props.get("DEVLINKS", "").split()
        if any(link.startswith("/dev/disk/by-id/scsi-3") for link in links):
            assert f"/dev/disk/by-id/scsi-{wwid.serial}" in links
        if "SCSI_IDENT_LUN_T10" in props:
            # sg3-utils' rules made ID_SERIAL: a local NAA ranks below the T10 id there
            assert udev_id_serial(ids) == props["ID_SERIAL"]
        if props["ID_SERIAL"].startswith("3"):
            assert props["ID_SERIAL"] == wwid.serial
        assert sgio.unit_serial(node(p), CHECK_TIMEOUT_S) == props.get(
            "SCSI_IDENT_SERIAL", props.get("ID_SCSI_SERIAL")
        )
        wwids.add(wwid.serial)
    assert len(wwids) == 1, "both paths must name the same LUN"


def test_rtpg_state_follows_host_number(scsi_paths: list[Any]) -> None:
    """scsi_debug reports host_no % 3: 0 active/optimized, 1 non-optimized, 2 standby."""
    for p in scsi_paths:
        group = sgio.path_port_group(node(p), CHECK_TIMEOUT_S)
        assert group is not None, p.name
        assert group.group_id == ((p.host + 1) & 0x7F) << 8
        assert group.access_state == p.host % 3, f"{p.name} on host{p.host}: {group.state_name}"
        assert 1 in group.relative_ports


def test_read_path_facts_matches_sysfs(scsi_paths: list[Any]) -> None:
    for p in scsi_paths:
        facts = read_path_facts(p.name)
        block = Path("/sys/block") / p.name
        assert facts.devnum == p.devnum == (block / "dev").read_text().strip()
        assert facts.hctl == (block / "device").resolve().name
        assert (facts.host, facts.lun) == (p.host, p.lun)
        assert (facts.vendor, facts.model) == ("Linux", "scsi_debug")
        assert facts.size_sectors == DEV_SIZE_MB * 1024 * 1024 // 512
        assert facts.scsi_state == "running" and facts.online
        assert facts.transport == Transport.SCSI_UNSPEC
        assert facts.sys_path == str(block.resolve())
        wwid = sgio.path_wwid(node(p), CHECK_TIMEOUT_S)
        assert wwid is not None and facts.wwid_sysfs == wwid.sysfs


def test_pyudev_enumeration_finds_both_paths(scsi_paths: list[Any]) -> None:
    names = {p.name for p in scsi_paths}
    records = [r for r in enumerate_block_disks() if r.sys_name in names]
    assert {r.sys_name for r in records} == names
    assert all(is_disk(r) and is_scsi(r) for r in records)
    assert {r.devnum for r in records} == {p.devnum for p in scsi_paths}
    assert {r.hctl for r in records} == {read_path_facts(n).hctl for n in names}
    assert len({wwid_from_udev(r) for r in records}) == 1
    assert len({wwid_from_udev(r, source=("ID_WWN",)) for r in records}) == 1
    assert None not in {wwid_from_udev(r) for r in records}


def test_monitor_sees_change_event(scsi_paths: list[Any]) -> None:
    """The fileno() is a real wakeup source; receive() drains without blocking."""
    name = scsi_paths[0].name
    mon = Monitor.from_netlink()
    mon.start()
    mon.drain()  # whatever was queued before: returns at once, never blocks
    Path(f"/sys/block/{name}/uevent").write_text("change\n")
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([mon.fileno()], [], [], deadline - time.monotonic())
        if not ready:
            break
        seen.extend(mon.drain())
        if any(r.sys_name == name and r.action == "change" for r in seen):
            break
    match = [r for r in seen if r.sys_name == name and r.action == "change"]
    assert match, f"no change event for {name} within {EVENT_TIMEOUT_S} s: {seen}"
    assert match[0].devnum == scsi_paths[0].devnum and is_scsi(match[0])


def test_third_host_covers_every_alua_state(scsi_paths: list[Any]) -> None:
    """With three consecutive hosts every residue of host_no % 3 shows up once.

    scsi_debug only reports standby; it still answers TEST UNIT READY on that path, so
    the GHOST verdict here comes from the RTPG state, as a prioritizer would see it.
    """
    topo.add_host()
    try:
        paths = topo.discover()
        assert len(paths) == 3
        seen = {}
        for p in paths:
            group = sgio.path_port_group(node(p), CHECK_TIMEOUT_S)
            assert group is not None and group.access_state == p.host % 3
            seen[p.host % 3] = (
                alua_path_state(group.access_state),
                alua_priority(group.access_state, group.preferred),
            )
            assert sgio.test_unit_ready(node(p), CHECK_TIMEOUT_S).state == PathState.UP
        assert seen == {0: (PathState.UP, 50), 1: (PathState.UP, 10), 2: (PathState.GHOST, 1)}
    finally:
        # remove the host just added; the next test's fixture reloads the topology anyway
        topo.remove_last_host()
