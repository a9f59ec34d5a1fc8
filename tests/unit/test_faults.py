"""The fault plan: its lines, which call each fault meets, and the two layers that act."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from dmpath.kernel import dmioctl, faults
from dmpath.kernel.dmioctl import DmControl, DmFlag, DmIoctlError, DmOp
from dmpath.lab import faultbin


def test_a_line_names_layer_op_call_action_and_options() -> None:
    f = faults.parse_line("dm resume 2 hang seconds=1.5 then=fail errno=EBUSY map=mpatha  # x")
    assert f == faults.Fault(
        "dm", "resume", 2, "hang", err=errno.EBUSY, seconds=1.5, then="fail", map="mpatha"
    )
    assert faults.parse_line("   # only a comment") is None
    assert faults.parse_line("mdadm create 1 die") == faults.Fault("mdadm", "create", 1, "die")


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("dm resume 1", "expected LAYER OP NTH ACTION"),
        ("lvm create 1 fail", "layer 'lvm'"),
        ("mdadm resume 1 fail", "mdadm has no operation 'resume'"),
        ("dm resume 0 fail", "NTH is a call number from 1"),
        ("dm resume 1 explode", "action 'explode'"),
        ("dm resume 1 fail errno=EWHAT", "unknown errno 'EWHAT'"),
        ("dm resume 1 fail colour=red", "unknown option 'colour=red'"),
        ("dm resume 1 hang then=later", "then='later'"),
        ("dm resume 1 fail count=-1", "count='-1'"),
    ],
)
def test_a_bad_line_is_named_with_its_number(line: str, says: str) -> None:
    with pytest.raises(faults.FaultPlanError, match=f"plan:2: {says}"):
        faults.parse_plan("# faults\n" + line, "plan")


def test_the_nth_call_and_count_calls_after_it_meet_the_fault() -> None:
    plan = faults.FaultPlan(faults.parse_plan("dm resume 2 fail count=2\ndm load 3 die count=0"))
    got = [plan.consult("dm", "resume", "m") is not None for _ in range(5)]
    assert got == [False, True, True, False, False]
    got = [plan.consult("dm", "load", "m") is not None for _ in range(5)]
    assert got == [False, False, True, True, True]


def test_a_fault_for_one_map_counts_only_that_maps_calls(tmp_path: Path) -> None:
    record = tmp_path / "fired"
    plan = faults.FaultPlan(
        faults.parse_plan("dm message 2 fail map=mpathb"), record=str(record)
    )
    assert plan.consult("dm", "message", "mpatha") is None
    assert plan.consult("dm", "message", "mpathb") is None
    assert plan.consult("dm", "message", "mpatha") is None
    assert plan.consult("dm", "message", "mpathb") is not None
    assert record.read_text().split(" ", 2)[2] == "dm message on mpathb: fail (EIO)\n"


def test_ioctls_are_named_as_the_plan_names_them() -> None:
    assert faults.ioctl_op(DmOp.DEV_SUSPEND, DmFlag.SUSPEND | DmFlag.NOFLUSH) == "suspend"
    assert faults.ioctl_op(DmOp.DEV_SUSPEND, 0) == "resume"
    assert faults.ioctl_op(DmOp.TABLE_LOAD, 0) == "load"
    assert faults.ioctl_op(DmOp.TABLE_STATUS, DmFlag.STATUS_TABLE) == "read"
    assert faults.ioctl_op(99, 0) == "read"


class Kernel:
    """Answers every ioctl with success and notes which it saw."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, str]] = []

    def __call__(self, fd: int, request: int, buf: bytearray) -> int:
        head = dmioctl.parse_header(buf)
        self.ops.append((faults.ioctl_op(request & 0xFF, head.flags), head.name))
        return 0


TABLE = "0 8 multipath 0 0 1 1 service-time 0 1 1 8:0 1"


def test_an_ioctl_fault_is_the_kernels_error_and_the_call_is_not_made() -> None:
    kernel = Kernel()
    plan = faults.FaultPlan(faults.parse_plan("dm resume 1 fail errno=EBUSY count=2"))
    with DmControl("/dev/null", ioctl=faults.faulty_ioctl(plan, kernel)) as ctl:
        with pytest.raises(DmIoctlError, match="Device or resource busy") as exc:
            ctl.reload("mpatha", TABLE)
        assert "left SUSPENDED" in str(exc.value)
        with pytest.raises(DmIoctlError, match="Device or resource busy"):
            ctl.resume("mpatha")  # the second call of the fault
        ctl.resume("mpatha")  # the third resume goes through
    assert kernel.ops == [("load", "mpatha"), ("suspend", "mpatha"), ("resume", "mpatha")]


def test_a_hang_that_goes_on_makes_the_call() -> None:
    kernel = Kernel()
    plan = faults.FaultPlan(faults.parse_plan("dm message 1 hang seconds=0"))
    with DmControl("/dev/null", ioctl=faults.faulty_ioctl(plan, kernel)) as ctl:
        ctl.fail_path("mpatha", "8:0")
    assert kernel.ops == [("message", "mpatha")]


@pytest.mark.parametrize(
    ("tool", "args", "want"),
    [
        ("dmsetup", ["remove", "--force", "--noudevsync", "mpatha"], ("remove", "mpatha")),
        ("dmsetup", ["reload", "mpatha"], ("load", "mpatha")),
        ("dmsetup", ["info", "-c", "mpatha"], ("read", "mpatha")),
        ("mdadm", ["--manage", "/dev/md127", "--add", "/dev/sdb"], ("add", "/dev/md127")),
        ("mdadm", ["--create", "/dev/md/a", "--level=multipath"], ("create", "/dev/md/a")),
        ("mdadm", ["--detail", "--export", "/dev/md127"], ("read", "/dev/md127")),
    ],
)
def test_a_tool_call_is_named_by_its_operation_and_target(
    tool: str, args: list[str], want: tuple[str, str]
) -> None:
    assert faults.tool_call(tool, args) == want


def test_the_stand_in_counts_across_processes_and_fails_as_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan"
    plan.write_text("dmsetup remove 2 fail errno=EBUSY\n")
    monkeypatch.setenv(faults.ENV, str(plan))
    ran: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: ran.append(argv))
    monkeypatch.setattr(faultbin, "real_tool", lambda tool: "/sbin/" + tool)
    assert faultbin.main(["dmsetup", "remove", "mpatha"]) is None  # exec'd the real one
    with pytest.raises(SystemExit) as exc:
        faultbin.main(["dmsetup", "remove", "mpatha"])
    assert exc.value.code == 1
    assert "remove mpatha: Device or resource busy (injected)" in capsys.readouterr().err
    assert faultbin.main(["dmsetup", "remove", "mpatha"]) is None
    assert ran == [["/sbin/dmsetup", "remove", "mpatha"]] * 2
    assert json.loads((tmp_path / "plan.counts").read_text()) == [3]


def test_the_stand_ins_are_what_the_runner_runs(tmp_path: Path) -> None:
    env = faultbin.write_standins(str(tmp_path))
    assert env == {
        "DMPATH_BIN_DMSETUP": str(tmp_path / "dmsetup"),
        "DMPATH_BIN_MDADM": str(tmp_path / "mdadm"),
    }
    assert os.access(tmp_path / "mdadm", os.X_OK)
