"""The checker reads the iSCSI session's (or NVMe controller's) state before it sends anything
down the path."""

from __future__ import annotations

from pathlib import Path

from dmpath.daemon.checkers import PathChecker
from dmpath.kernel import sysfs
from dmpath.model import Check

ISCSI_SDB = "/devices/platform/host3/session2/target3:0:0/3:0:0:0/block/sdb"


def _checker(tmp_path: Path, state: str | None) -> PathChecker:
    transport = sysfs.transport_state(ISCSI_SDB, str(tmp_path))
    assert transport is not None
    assert transport.attribute == f"{tmp_path}/class/iscsi_session/session2/state"
    if state is not None:
        Path(transport.attribute).parent.mkdir(parents=True)
        Path(transport.attribute).write_text(state + "\n")
    # a device node that does not exist: reaching the open says the check went on
    return PathChecker(str(tmp_path / "no-such-disk"), "tur", 5.0, transport)


def test_a_failed_session_is_down_without_a_command_that_would_hang(tmp_path: Path) -> None:
    assert _checker(tmp_path, "FAILED").check() == (
        Check.DOWN,
        "iSCSI session2 FAILED: connection lost",
    )


def test_a_logged_in_or_vanished_session_leaves_the_verdict_to_the_check(
    tmp_path: Path,
) -> None:
    check, reason = _checker(tmp_path, "LOGGED_IN").check()
    assert check == Check.DOWN and reason.startswith("cannot open")
    check, reason = _checker(tmp_path / "gone", None).check()
    assert check == Check.DOWN and reason.startswith("cannot open")


def test_only_iscsi_and_nvme_fabrics_paths_have_a_transport_state() -> None:
    scsi_debug = "/devices/pseudo_0/adapter0/host6/target6:0:0/6:0:0:0/block/sda"
    assert sysfs.transport_state(scsi_debug) is None
    assert sysfs.transport_state("/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1") is None


def test_a_reconnecting_nvme_controller_is_down_and_a_live_one_is_checked(
    tmp_path: Path,
) -> None:
    # a real DEVPATH from the lab; states as the 6.1 kernel showed them there
    transport = sysfs.transport_state(
        "/devices/virtual/nvme-fabrics/ctl/nvme1/nvme1n1", str(tmp_path)
    )
    assert transport is not None
    state = tmp_path / "class" / "nvme" / "nvme1" / "state"
    state.parent.mkdir(parents=True)
    checker = PathChecker(str(tmp_path / "no-such-disk"), "directio", 5.0, transport)
    for down in ("resetting", "connecting"):
        state.write_text(down + "\n")
        assert checker.check() == (Check.DOWN, f"NVMe controller nvme1 {down}: connection lost")
    state.write_text("live\n")
    check, reason = checker.check()
    assert check == Check.DOWN and reason.startswith("cannot open")
