"""dmpathd at scale on the real kernel: 32 LUNs x 4 paths (128 paths), one fabric lost and
back, with verified I/O running through it. (256 paths took 8 of the CI run's 87 minutes,
most of them the kernel and udev making and removing the disks; the bench's scale rows,
``python -m dmpath.lab bench --scale 256x4``, measure 256 and more.)

A state test, never a timing test: every wait has a generous deadline scaled to the
number of paths (the engine needed ~3 minutes to coldplug 256 paths and ~5 to take a
fabric back, under emulation), and the phase times are printed, not asserted.

The topology is loaded with ``drop_standby=True``: once any earlier test of the session
attached ``scsi_dh_alua`` (test_dm_lab does), every newly scanned scsi_debug path gets it,
and the handler fails all I/O to scsi_debug's standby hosts (``host_no % 3 == 2``) while
TEST UNIT READY succeeds, so those paths would flap. Scanning only the other hosts keeps
4 usable paths per LUN whatever the session ran before.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import pytest

from dmpath.kernel.dmtable import MultipathStatus
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, VerifiedIO, wait_for

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]

SCALE = topo.get_topology("32x4")
#: per phase: 15 minutes (at 256 paths coldplug took ~3, fabric up ~5)
PHASE_TIMEOUT = 900.0
POLL_STEP = 1.0  # one dmsetup run per poll costs ~0.2 s of the guest's CPU


def _paths_by_state(st: dict[str, MultipathStatus]) -> dict[str, bool]:
    """devnum -> active, over every map."""
    return {p.dev: p.active for s in st.values() for _g, p in s.paths()}


@pytest.fixture
def scale_paths() -> Iterator[list[topo.LabPath]]:
    paths = topo.setup(SCALE, drop_standby=True)
    yield paths
    for p in paths:  # never leave a fabric offline for the next test
        with contextlib.suppress(OSError):
            topo.set_state(p, "running")


def test_32x4_coldplug_fabric_down_and_up_under_verified_io(
    scale_paths: list[topo.LabPath], dmpathd: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    times: dict[str, float] = {}
    paths = scale_paths
    assert len(paths) == SCALE.disks == 128
    assert len({p.wwid for p in paths}) == SCALE.luns
    everyone = {p.devnum for p in paths}
    fabric0 = [p for p in paths if p.fabric == 0]
    down = {p.devnum for p in fabric0}
    assert len(down) == SCALE.disks // 2
    # each LUN keeps half its paths on fabric 1
    assert all(
        sum(1 for p in paths if p.wwid == w and p.fabric == 1) == SCALE.paths // 2
        for w in {p.wwid for p in paths}
    )

    def coldplugged() -> dict[str, MultipathStatus] | None:
        st = topo.multipath_statuses()
        ok = len(st) == SCALE.luns and all(
            len(list(s.paths())) == SCALE.paths and s.valid_paths == SCALE.paths
            for s in st.values()
        )
        return st if ok and set(_paths_by_state(st)) == everyone else None

    t0 = time.monotonic()
    d = dmpathd(defaults={"path_grouping_policy": "multibus"})
    every = f"{SCALE.luns} maps with 4 active paths each"
    st = wait_for(coldplugged, PHASE_TIMEOUT, every, POLL_STEP)
    times["coldplug"] = time.monotonic() - t0

    names = sorted(st)
    ios = [VerifiedIO(f"/dev/mapper/{name}") for name in (names[0], names[-1])]
    # the tables are read from the kernel; the nodes are udev's, which may lag at scale
    wait_for(
        lambda: all(os.path.exists(io.devnode) for io in ios), 60, "udev to make the map nodes"
    )
    for io in ios:
        io.start()
    try:
        for io in ios:
            io.wait_writes(20, 60, f"verified I/O to start on {io.devnode}")

        def model_states() -> dict[str, str]:
            return {p["name"]: p["kernel_state"] for m in d.show()["maps"] for p in m["paths"]}

        t0 = time.monotonic()
        for p in fabric0:
            topo.set_state(p, "offline")

        def fabric_failed() -> bool:
            state = _paths_by_state(topo.multipath_statuses())
            return set(state) == everyone and all(state[dev] == (dev not in down) for dev in state)

        wait_for(fabric_failed, PHASE_TIMEOUT, "every fabric-0 path failed in dm", POLL_STEP)
        times["fabric down (dm)"] = time.monotonic() - t0

        def model_failed() -> bool:
            states = model_states()  # one request per poll, not one per path
            return all(states.get(p.name) == "failed" for p in fabric0)

        wait_for(
            model_failed,
            PHASE_TIMEOUT,
            "dmpathd's model to show every fabric-0 path failed",
            POLL_STEP,
        )
        times["fabric down (model)"] = time.monotonic() - t0
        assert [io.errors for io in ios] == [[], []]

        t0 = time.monotonic()
        for p in fabric0:
            topo.set_state(p, "running")
        wait_for(
            lambda: coldplugged() is not None,
            PHASE_TIMEOUT,
            f"all {SCALE.disks} paths active",
            POLL_STEP,
        )
        times["fabric up (dm)"] = time.monotonic() - t0
        wait_for(
            lambda: set(model_states().values()) == {"active"},
            PHASE_TIMEOUT,
            "dmpathd's model to show every path active",
            POLL_STEP,
        )
        times["fabric up (model)"] = time.monotonic() - t0
    finally:
        for io in ios:
            io.stop()
        kept = d.keep_log(f"scale-{SCALE.name}-dmpathd.log")
    for io in ios:
        assert io.errors == [], io.errors[:5]
        assert io.mismatches == 0
        assert io.writes > 0
        assert io.verify_all() == 0
    with capsys.disabled():  # figures for the reader, never a verdict
        shown = ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
        writes = [io.writes for io in ios]
        print(f"\n[scale {SCALE.name}, {len(paths)} paths] {shown}; I/O writes {writes}")
        if kept:
            print(f"[scale {SCALE.name}] daemon log: {kept}")
