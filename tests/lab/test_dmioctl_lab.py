"""The dm ioctl layer against the real 6.1 kernel, checked word for word against dmsetup.

One map over scsi_debug's 1 LUN x 2 paths, created (and removed) with dmsetup, which keeps
the udev-cookie lifecycle; everything read or sent in between goes through
``/dev/mapper/control`` and is compared with what the dmsetup process reports. Maps the
ioctls create and reload themselves are compared with one ``dmsetup create`` made. The map has
no ``queue_if_no_path`` at creation, and it is switched back off before the forced remove,
so nothing can hang on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator

import pytest
import pyudev

from dmpath.errors import DmpathError
from dmpath.kernel import dmsetup
from dmpath.kernel.dmioctl import DmControl, DmIoctlError, NoSuchMap, open_control
from dmpath.kernel.dmtable import DmDevice, PathState, parse_ls, parse_status, parse_table
from dmpath.lab.boots import BOTH_KERNELS
from dmpath.lab.topology import LabPath
from dmpath.runner import run

# dm multipath as shipped now, too: every test here on both kernels
pytestmark = pytest.mark.lab(kernels=BOTH_KERNELS)

NAME = "dmpathtest-ioctl"
UUID = "dmpath-lab-ioctl"


def settle() -> None:
    """Let udev finish with the uevents a map change sent (its rules probe the map)."""
    run("udevadm", ["settle", "-t", "20"], check=False, timeout=30)


def dmsetup_out(*args: str) -> str:
    return run("dmsetup", list(args)).stdout


def stable_pair(ioctl_read: Callable[[], str], *dmsetup_args: str) -> tuple[str, str]:
    """(ioctl text, dmsetup stdout) read while nothing changed: the ioctl is read before and
    after the process, and only a round where both ioctl reads agree counts."""
    for _ in range(5):
        before = ioctl_read()
        out = dmsetup_out(*dmsetup_args)
        if ioctl_read() == before:
            return before, out
        settle()
    pytest.fail(f"the map kept changing under dmsetup {' '.join(dmsetup_args)}")


@pytest.fixture
def ctl() -> Iterator[DmControl]:
    with open_control() as c:
        yield c


@pytest.fixture
def ioctl_map(scsi_paths: list[LabPath]) -> Iterator[tuple[str, list[LabPath]]]:
    a, b = scsi_paths
    with open(f"/sys/block/{a.name}/size") as fh:
        size = int(fh.read())
    table = f"0 {size} multipath 0 0 1 1 service-time 0 2 1 {a.devnum} 1 {b.devnum} 1"
    dmsetup.create(NAME, table, uuid=UUID)
    try:
        settle()
        yield NAME, [a, b]
    finally:
        with contextlib.suppress(DmpathError):
            dmsetup.fail_if_no_path(NAME)
        dmsetup.remove(NAME, force=True)


def test_ioctl_reads_equal_dmsetup(ctl: DmControl, ioctl_map: tuple[str, list[LabPath]]) -> None:
    name, _ = ioctl_map
    assert ctl.version()[0] == 4

    text, out = stable_pair(lambda: ctl.status_text(name), "status", name)
    assert text + "\n" == out  # dmsetup prints the same line and a newline, nothing else
    assert ctl.status(name) == parse_status(out)

    text, out = stable_pair(lambda: ctl.table_text(name), "table", name)
    assert text + "\n" == out
    assert ctl.table(name) == dmsetup.table(name)

    info = ctl.info(name)
    assert info == dmsetup.info(name)
    assert (info.uuid, info.segments) == (UUID, 1)
    assert ctl.info_by_uuid(UUID) == info
    assert ctl.suspended(name) is False

    listed = ctl.list_devices()
    assert DmDevice(name, info.major, info.minor) in listed
    assert sorted(listed, key=lambda d: d.name) == sorted(
        parse_ls(dmsetup_out("ls")), key=lambda d: d.name
    )

    every = ctl.read_all()
    assert name in every
    r_info, r_table, r_status = every[name]
    assert (r_info.name, r_info.uuid, r_info.devnum) == (name, UUID, info.devnum)
    assert r_table == dmsetup.table(name)
    assert [p.dev for _, p in r_status.paths()] == [p.dev for _, p in dmsetup.status(name).paths()]


def path_state(name: str, dev: str) -> PathState:
    """The state of ``dev`` as the dmsetup process reports it."""
    path = dmsetup.status(name).path(dev)
    assert path is not None, f"{dev} is not in {name}"
    return path.state


def test_ioctl_messages_act_on_the_kernel(
    ctl: DmControl, ioctl_map: tuple[str, list[LabPath]]
) -> None:
    name, (_, b) = ioctl_map
    assert path_state(name, b.devnum) is PathState.ACTIVE
    before = ctl.status(name).path(b.devnum)
    assert before is not None

    ctl.fail_path(name, b.devnum)
    assert path_state(name, b.devnum) is PathState.FAILED
    after = ctl.status(name).path(b.devnum)
    assert after is not None and after.fail_count == before.fail_count + 1
    ctl.reinstate_path(name, b.devnum)
    assert path_state(name, b.devnum) is PathState.ACTIVE
    settle()

    ctl.queue_if_no_path(name)
    assert dmsetup.table(name).features.queue_if_no_path is True
    ctl.fail_if_no_path(name)
    assert dmsetup.table(name).features.queue_if_no_path is False
    ctl.switch_group(name, 1)  # the only group: accepted, nothing to see

    with pytest.raises(DmIoctlError) as exc:
        ctl.message(name, "bogus_message")
    assert not isinstance(exc.value, NoSuchMap)
    assert exc.value.errno == errno.EINVAL
    assert name in str(exc.value) and "Invalid argument" in str(exc.value)

    missing = "dmpathtest-no-such-map"
    for call in (ctl.info, ctl.status_text, ctl.table_text, ctl.fail_if_no_path):
        with pytest.raises(NoSuchMap, match=missing):
            call(missing)


@pytest.mark.lab  # a figure, not a check of the kernel: the default boot is enough
def test_ioctl_cost_against_dmsetup(
    ctl: DmControl, ioctl_map: tuple[str, list[LabPath]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Figures, not a verdict: the mean of 200 ioctl reads against 5 dmsetup processes."""
    name, _ = ioctl_map
    n_ioctl, n_proc = 200, 5
    t0 = time.perf_counter()
    for _ in range(n_ioctl):
        ctl.status_text(name)
    t_ioctl = (time.perf_counter() - t0) / n_ioctl
    t0 = time.perf_counter()
    for _ in range(n_proc):
        dmsetup_out("status", name)
    t_proc = (time.perf_counter() - t0) / n_proc
    t0 = time.perf_counter()
    for _ in range(n_ioctl):
        ctl.info(name)
    t_info = (time.perf_counter() - t0) / n_ioctl
    with capsys.disabled():
        print(
            f"\n[dmioctl] status: ioctl {t_ioctl * 1e6:.0f} us/call (mean of {n_ioctl}), "
            f"dmsetup {t_proc * 1e3:.1f} ms/call (mean of {n_proc}), "
            f"ratio {t_proc / t_ioctl:.0f}x; info: ioctl {t_info * 1e6:.0f} us/call"
        )
    assert parse_table(ctl.table_text(name)).devs  # the map is still readable afterwards


def change_event(monitor: pyudev.Monitor, name: str, timeout: float = 60.0) -> pyudev.Device:
    """The first udev-processed change event of map ``name`` (its resume)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        dev = monitor.poll(timeout=max(0.1, end - time.monotonic()))
        if dev is not None and dev.action == "change" and dev.properties.get("DM_NAME") == name:
            return dev
    pytest.fail(f"no udev change event for {name} in {timeout:g} s")


def wait_node(name: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not os.path.exists(f"/dev/mapper/{name}"):
        assert time.monotonic() < end, f"udev made no /dev/mapper/{name} in {timeout:g} s"
        time.sleep(0.05)


def test_ioctl_create_and_reload_as_dmsetup_does(
    ctl: DmControl, scsi_paths: list[LabPath]
) -> None:
    """A map made by ioctls is the map dmsetup --noudevsync makes: same table, resumed, the
    same udev flags (so the rules activate it and make /dev/mapper/NAME); a reload swaps
    the table and leaves it resumed; a refused table changes nothing."""
    a, b = scsi_paths
    with open(f"/sys/block/{a.name}/size") as fh:
        size = int(fh.read())
    both = f"0 {size} multipath 0 0 1 1 service-time 0 2 1 {a.devnum} 1 {b.devnum} 1"
    only_a = f"0 {size} multipath 0 0 1 1 service-time 0 1 1 {a.devnum} 1"
    ref, mine = "dmpathtest-ref", "dmpathtest-mine"
    monitor = pyudev.Monitor.from_netlink(pyudev.Context())
    monitor.filter_by("block")
    monitor.start()
    try:
        dmsetup.create(ref, both, uuid="dmpath-lab-ref", udev_sync=False)
        ref_ev = change_event(monitor, ref)
        ctl.create(mine, both, "dmpath-lab-mine")
        mine_ev = change_event(monitor, mine)
        wait_node(mine)
        assert dmsetup_out("table", mine) == dmsetup_out("table", ref)
        info = dmsetup.info(mine)
        assert info.uuid == "dmpath-lab-mine" and not ctl.suspended(mine)
        for key in ("DM_COOKIE", "DM_UDEV_PRIMARY_SOURCE_FLAG", "DM_ACTIVATION"):
            assert mine_ev.properties.get(key) == ref_ev.properties.get(key), key
        assert mine_ev.properties.get("DM_UDEV_PRIMARY_SOURCE_FLAG") == "1"
        settle()

        ctl.reload(mine, only_a)
        assert [p.dev for _, p in dmsetup.status(mine).paths()] == [a.devnum]
        assert not ctl.suspended(mine) and not ctl.dev_status(mine).inactive_present
        change_event(monitor, mine)
        settle()

        with pytest.raises(DmIoctlError):
            ctl.reload(mine, f"0 {size} multipath 0 0 1 1 service-time 0 1 1 0:0 1")
        assert [p.dev for _, p in dmsetup.status(mine).paths()] == [a.devnum]
        assert not ctl.suspended(mine) and not ctl.dev_status(mine).inactive_present

        # a refused create leaves no half-made device behind
        with pytest.raises(DmIoctlError):
            ctl.create("dmpathtest-bad", f"0 {size} multipath 0 0 1 1 bogus 0 1 1 0:0 1", "x-y")
        assert "dmpathtest-bad" not in {d.name for d in ctl.list_devices()}
    finally:
        settle()
        for name in (mine, ref):
            with contextlib.suppress(DmpathError):
                dmsetup.remove(name, force=True)
