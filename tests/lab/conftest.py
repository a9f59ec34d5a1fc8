"""Fixtures for tests that run inside the lab VM (see dmpath.lab.pytest_plugin)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dmpath.lab import iscsi
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, cleanup_maps

IN_GUEST = os.environ.get("DMPATH_LAB") == "1"

_current: list[str] = []  # name of the topology now loaded in the guest


def _device_state(name: str) -> str:
    with open(f"/sys/block/{name}/device/state") as fh:
        return fh.read().strip()


def _ensure(name: str) -> list[topo.LabPath]:
    t = topo.get_topology(name)
    if _current == [name]:
        paths = topo.discover(t.fabrics)
        # a previous test may have offlined a path or added hosts: reset if so
        healthy = len(paths) == t.luns * t.paths and all(
            _device_state(p.name) == "running" for p in paths
        )
        if healthy:
            return paths
    _current.clear()
    paths = topo.setup(t)
    _current.append(name)
    return paths


@pytest.fixture
def lab_topology() -> Callable[[str], list[topo.LabPath]]:
    """Factory: ``lab_topology("2x2")`` loads that topology (if not loaded) and returns paths."""
    if not IN_GUEST:
        pytest.skip("needs the lab VM")
    return _ensure


@pytest.fixture
def scsi_paths(lab_topology: Callable[[str], list[topo.LabPath]]) -> Iterator[list[topo.LabPath]]:
    """1 LUN x 2 paths of scsi_debug, all running."""
    paths = lab_topology("1x2")
    yield paths
    for p in paths:  # restore any path a test left offline
        with contextlib.suppress(OSError):
            topo.set_state(p, "running")


@pytest.fixture
def dmpathd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DaemonUnderTest]]:
    """Factory: ``dmpathd(defaults={...}, extra="...", env={...})`` starts the real daemon
    in the guest.

    On teardown the daemon is stopped and every map it made is removed (they are ours:
    dm uuid prefix ``mpath-`` or md name ``dmpath-``), so the next test starts clean.
    """
    if not IN_GUEST:
        pytest.skip("needs the lab VM")
    started: list[DaemonUnderTest] = []

    def start(
        defaults: dict[str, Any] | None = None,
        extra: str = "",
        env: dict[str, str] | None = None,
    ) -> DaemonUnderTest:
        d = DaemonUnderTest(
            str(tmp_path_factory.mktemp("dmpathd")), dict(defaults or {}), extra, dict(env or {})
        )
        started.append(d)
        return d.start()

    yield start
    for d in started:
        d.stop()
    cleanup_maps()


@pytest.fixture(scope="module")
def fabric(request: pytest.FixtureRequest) -> Iterator[tuple[iscsi.Fabric, list[iscsi.IscsiPath]]]:
    """The lab's iSCSI fabric (two portals; as many LUNs as the module's ``LUNS``, else
    one) for the tests of one module, taken down after them: the scsi_debug tests'
    daemons manage every disk they see."""
    if not IN_GUEST:
        pytest.skip("needs the lab VM")
    f = iscsi.Fabric(luns=getattr(request.module, "LUNS", 1))
    paths = f.setup()
    try:
        yield f, paths
    finally:
        f.teardown()

