"""dmpath.kernel.mdadm against a fake ``mdadm`` (and ``modprobe``) chosen via DMPATH_BIN_*.

The fake records its exact argv and answers from a per-test script of rules, so these
tests pin down what we ask mdadm to do and how its failures become our exceptions.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmpath.errors import CommandError, DeviceError, DmpathError, MissingKernelFeature
from dmpath.kernel import mdadm
from dmpath.kernel.mdadm import ArrayBusy, MemberBusy
from dmpath.kernel.mdstat import MdadmAction, MdStat

FAKE_TOOL = """#!{python}
import json, os, sys
tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.environ["FAKE_DIR"] + "/" + tool + ".log", "a") as fh:
    fh.write(json.dumps(args) + "\\n")
rules_path = os.environ["FAKE_DIR"] + "/" + tool + ".rules"
rules = json.load(open(rules_path)) if os.path.exists(rules_path) else []
for rule in rules:
    if all(word in args for word in rule.get("when", [])):
        for path, text in rule.get("write", {{}}).items():
            with open(path, "w") as fh:
                fh.write(text)
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("rc", 0))
sys.exit(0)
"""

WITH_MULTIPATH = "Personalities : [multipath] \nunused devices: <none>\n"
WITHOUT_MULTIPATH = "Personalities : [raid1] \nunused devices: <none>\n"


@dataclass
class Fakes:
    dir: Path
    mdstat: Path

    def program(self, tool: str, rules: list[dict[str, Any]]) -> None:
        """First rule whose ``when`` words all appear in argv answers; default: exit 0."""
        (self.dir / f"{tool}.rules").write_text(json.dumps(rules))

    def calls(self, tool: str) -> list[list[str]]:
        log = self.dir / f"{tool}.log"
        if not log.exists():
            return []
        return [json.loads(ln) for ln in log.read_text().splitlines()]


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("mdadm", "modprobe"):
        exe = bindir / tool
        exe.write_text(FAKE_TOOL.format(python=sys.executable))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv(f"DMPATH_BIN_{tool.upper()}", str(exe))
    monkeypatch.setenv("FAKE_DIR", str(bindir))
    mdstat = tmp_path / "mdstat"
    mdstat.write_text(WITH_MULTIPATH)
    return Fakes(bindir, mdstat)


# --------------------------------------------------------------------------------------
# exact argv
# --------------------------------------------------------------------------------------


def test_create_argv(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"when": ["--create"], "stderr": (
        "mdadm: Defaulting to version 1.2 metadata\nmdadm: array /dev/md/dmpathtest started.\n"
    )}])
    out = mdadm.create(
        "/dev/md/dmpathtest", ["/dev/sda", "/dev/sdb"], name="dmpathtest",
        mdstat_path=str(fakes.mdstat),
    )
    assert fakes.calls("mdadm") == [[
        "--create", "/dev/md/dmpathtest", "--run", "--level=multipath", "--raid-devices=2",
        "--metadata=1.2", "--name=dmpathtest", "/dev/sda", "/dev/sdb",
    ]]
    assert out.actions == (MdadmAction("started", None, "/dev/md/dmpathtest"),)
    assert out.metadata == "1.2"
    assert fakes.calls("modprobe") == []  # personality already there


def test_create_argv_with_homehost_and_metadata(fakes: Fakes) -> None:
    mdadm.create("/dev/md90", ["/dev/sdc"], metadata="1.0", homehost="any",
                 mdstat_path=str(fakes.mdstat))
    assert fakes.calls("mdadm") == [[
        "--create", "/dev/md90", "--run", "--level=multipath", "--raid-devices=1",
        "--metadata=1.0", "--homehost=any", "/dev/sdc",
    ]]


def test_assemble_argv(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"when": ["--assemble"],
                             "stderr": "mdadm: /dev/md90 has been started with 2 drives.\n"}])
    out = mdadm.assemble("/dev/md90", ["/dev/sda", "/dev/sdb"], mdstat_path=str(fakes.mdstat))
    assert fakes.calls("mdadm") == [["--assemble", "/dev/md90", "--run", "/dev/sda", "/dev/sdb"]]
    assert out.actions == (MdadmAction("started", None, "/dev/md90", drives=2),)


@pytest.mark.parametrize(
    ("call", "argv", "stderr", "verb"),
    [
        (lambda: mdadm.fail("/dev/md0", "/dev/sda"), ["--manage", "/dev/md0", "--fail", "/dev/sda"],
         "mdadm: set /dev/sda faulty in /dev/md0\n", "faulty"),
        (lambda: mdadm.remove("/dev/md0", "/dev/sda"),
         ["--manage", "/dev/md0", "--remove", "/dev/sda"],
         "mdadm: hot removed /dev/sda from /dev/md0\n", "removed"),
        (lambda: mdadm.add("/dev/md0", "/dev/sda"), ["--manage", "/dev/md0", "--add", "/dev/sda"],
         "mdadm: added /dev/sda\n", "added"),
        (lambda: mdadm.re_add("/dev/md0", "/dev/sda"),
         ["--manage", "/dev/md0", "--re-add", "/dev/sda"], "mdadm: re-added /dev/sda\n",
         "re-added"),
        (lambda: mdadm.stop("/dev/md/dmpathtest"), ["--stop", "/dev/md/dmpathtest"],
         "mdadm: stopped /dev/md/dmpathtest\n", "stopped"),
        (lambda: mdadm.remove("/dev/md0", "detached"),
         ["--manage", "/dev/md0", "--remove", "detached"], "", None),
        (lambda: mdadm.fail("/dev/md0", "detached"),
         ["--manage", "/dev/md0", "--fail", "detached"], "", None),
    ],
)
def test_manage_argv_and_outcome(
    fakes: Fakes, call: Callable[[], Any], argv: list[str], stderr: str, verb: str | None
) -> None:
    fakes.program("mdadm", [{"stderr": stderr}])
    out = call()
    assert fakes.calls("mdadm") == [argv]
    if verb:
        assert out.did(verb)


def test_detail_export_examine_argv_and_parse(fakes: Fakes) -> None:
    fakes.program("mdadm", [
        {"when": ["--export"], "stdout": "MD_LEVEL=multipath\nMD_DEVICES=2\n"},
        {"when": ["--detail"], "stdout": (
            "/dev/md0:\n        Raid Level : multipath\n      Raid Devices : 2\n"
            "    Number   Major   Minor   RaidDevice State\n"
            "       0       8       32        0      active sync   /dev/sdc\n"
        )},
        {"when": ["--examine"], "stdout": (
            "/dev/sdc:\n     Array UUID : 1:2:3:4\n     Raid Level : multipath\n"
            "   Device Role : Active device 0\n"
        )},
    ])
    d = mdadm.detail("/dev/md0")
    e = mdadm.detail_export("/dev/md0")
    x = mdadm.examine("/dev/sdc")
    assert fakes.calls("mdadm") == [
        ["--detail", "/dev/md0"], ["--detail", "--export", "/dev/md0"], ["--examine", "/dev/sdc"]
    ]
    assert d.raid_devices == 2 and d.members[0].device == "/dev/sdc"
    assert e.level == "multipath" and e.raid_devices == 2
    assert x is not None and x.slot == 0 and x.array_uuid == "1:2:3:4"


def test_zero_superblock(fakes: Fakes) -> None:
    assert mdadm.zero_superblock("/dev/sda") is True
    assert fakes.calls("mdadm") == [["--zero-superblock", "/dev/sda"]]


# --------------------------------------------------------------------------------------
# error mapping
# --------------------------------------------------------------------------------------


def test_remove_ebusy_is_member_busy(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"rc": 1, "stderr":
                             "mdadm: hot remove failed for /dev/sda: Device or resource busy\n"}])
    with pytest.raises(MemberBusy) as ei:
        mdadm.remove("/dev/md0", "/dev/sda")
    err = ei.value
    assert isinstance(err, CommandError) and isinstance(err, DmpathError)
    assert (err.md_dev, err.member, err.operation, err.returncode) == (
        "/dev/md0", "/dev/sda", "remove", 1
    )
    assert err.retryable
    assert "Device or resource busy" in err.stderr
    assert "\n" not in str(err) and "/dev/sda" in str(err) and "retry" in str(err)


def test_add_ebusy_is_member_busy_with_other_hint(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"rc": 1, "stderr":
                             "mdadm: Cannot open /dev/sda: Device or resource busy\n"}])
    with pytest.raises(MemberBusy) as ei:
        mdadm.add("/dev/md0", "/dev/sda")
    assert ei.value.operation == "add" and "holder" in str(ei.value)


def test_other_remove_failure_is_plain_command_error(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"rc": 1, "stderr":
                             "mdadm: /dev/sdz is not a member, cannot remove.\n"}])
    with pytest.raises(CommandError) as ei:
        mdadm.remove("/dev/md0", "/dev/sdz")
    assert not isinstance(ei.value, MemberBusy)
    assert "is not a member" in str(ei.value)


def test_stop_busy_is_array_busy(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"rc": 1, "stderr": (
        "mdadm: Cannot get exclusive access to /dev/md0:Perhaps a running process, mounted "
        "filesystem or active volume group?\n")}])
    with pytest.raises(ArrayBusy) as ei:
        mdadm.stop("/dev/md0")
    assert ei.value.md_dev == "/dev/md0" and "in use" in str(ei.value)


def test_examine_without_superblock_is_none(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"rc": 1, "stderr": "mdadm: No md superblock detected on /dev/sda.\n"}])
    assert mdadm.examine("/dev/sda") is None


def test_examine_other_failure_raises(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"rc": 2, "stderr": "mdadm: cannot open /dev/sda: No such device\n"}])
    with pytest.raises(CommandError):
        mdadm.examine("/dev/sda")


def test_zero_superblock_without_superblock_is_false(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"rc": 4, "stderr":
                             "mdadm: Unrecognised md component device - /dev/sda\n"}])
    assert mdadm.zero_superblock("/dev/sda") is False


def test_zero_superblock_in_use_raises(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"rc": 2, "stderr":
                             "mdadm: Couldn't open /dev/sda for write - not zeroing\n"}])
    with pytest.raises(CommandError, match="not zeroing"):
        mdadm.zero_superblock("/dev/sda")


def test_detail_failure_raises(fakes: Fakes) -> None:
    fakes.program("mdadm", [{"rc": 1, "stderr":
                             "mdadm: /dev/md5 does not appear to be an md device\n"}])
    with pytest.raises(CommandError, match="does not appear"):
        mdadm.detail("/dev/md5")


# --------------------------------------------------------------------------------------
# the personality
# --------------------------------------------------------------------------------------


def test_missing_personality_raises_before_mdadm_runs(fakes: Fakes) -> None:
    fakes.mdstat.write_text(WITHOUT_MULTIPATH)
    fakes.program("modprobe", [{"rc": 1, "stderr": (
        "modprobe: FATAL: Module multipath not found in directory /lib/modules/6.12.0\n")}])
    with pytest.raises(MissingKernelFeature) as ei:
        mdadm.create("/dev/md90", ["/dev/sda", "/dev/sdb"], mdstat_path=str(fakes.mdstat))
    assert ei.value.feature == "md multipath personality"
    msg = str(ei.value)
    assert os.uname().release in msg and "6.8" in msg and "dm backend" in msg
    assert fakes.calls("modprobe") == [["multipath"]]
    assert fakes.calls("mdadm") == []


def test_missing_personality_on_assemble_too(fakes: Fakes) -> None:
    fakes.mdstat.unlink()  # md not loaded at all
    fakes.program("modprobe", [{"rc": 1}])
    with pytest.raises(MissingKernelFeature):
        mdadm.assemble("/dev/md90", ["/dev/sda"], mdstat_path=str(fakes.mdstat))
    assert fakes.calls("mdadm") == []


def test_modprobe_loads_the_personality(fakes: Fakes) -> None:
    fakes.mdstat.unlink()  # /proc/mdstat appears once md_mod is loaded
    fakes.program(
        "modprobe", [{"when": ["multipath"], "write": {str(fakes.mdstat): WITH_MULTIPATH}}]
    )
    mdadm.create("/dev/md90", ["/dev/sda", "/dev/sdb"], mdstat_path=str(fakes.mdstat))
    assert fakes.calls("modprobe") == [["multipath"]]
    assert fakes.calls("mdadm")[0][0] == "--create"


def test_modprobe_not_installed(fakes: Fakes, monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:
    fakes.mdstat.write_text(WITHOUT_MULTIPATH)
    monkeypatch.setenv("DMPATH_BIN_MODPROBE", str(tmp_path / "no-such-modprobe"))
    with pytest.raises(MissingKernelFeature, match=r"did not load|removed"):
        mdadm.ensure_multipath_personality(str(fakes.mdstat))


@pytest.mark.parametrize(
    ("release", "output", "expect"),
    [
        ("6.8.0-31-generic", "", "it was removed in Linux 6.8; running kernel 6.8.0-31-generic; "
         "use the dm backend"),
        ("6.12.9+bpo-amd64", "modprobe: FATAL: Module multipath not found", "removed in Linux 6.8"),
        ("6.1.0-56-amd64", "modprobe: FATAL: Module multipath not found in directory x\n",
         "module 'multipath' did not load (modprobe: FATAL: Module multipath not found in "
         "directory x); running kernel 6.1.0-56-amd64"),
        ("weird", "", "running kernel weird"),
    ],
)
def test_missing_personality_detail(release: str, output: str, expect: str) -> None:
    detail = mdadm.missing_personality_detail(release, output)
    assert expect in detail and "dm backend" in detail and "\n" not in detail


def test_kernel_version() -> None:
    assert mdadm.kernel_version("6.1.0-56-amd64") == (6, 1)
    assert mdadm.kernel_version("10.20") == (10, 20)
    assert mdadm.kernel_version("x") is None


# --------------------------------------------------------------------------------------
# input validation: nothing reaches mdadm
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "md_dev", ["/dev/sda", "md0", "/dev/md", "/dev/md0p1", "/dev/md/", "/dev/md/../sda",
               "/dev/md/a b", "--force", "/dev/md/-x", ""],
)
def test_bad_md_device(fakes: Fakes, md_dev: str) -> None:
    with pytest.raises(DeviceError):
        mdadm.fail(md_dev, "/dev/sda")
    with pytest.raises(DeviceError):
        mdadm.create(md_dev, ["/dev/sda"], mdstat_path=str(fakes.mdstat))
    assert fakes.calls("mdadm") == []


@pytest.mark.parametrize("good", ["/dev/md0", "/dev/md127", "/dev/md_d0", "/dev/md/dmpathtest",
                                  "/dev/md/host:name", "/dev/md/a.b_c-d"])
def test_good_md_device(good: str) -> None:
    assert mdadm.validate_md_device(good) == good


@pytest.mark.parametrize(
    "member", ["sda", "dev/sda", "/dev/../etc/passwd", "/dev/./sda", "/dev//sda", "--force",
               "/dev/sda ", "/tmp/x", "/dev/", "failed"],
)
def test_bad_member(fakes: Fakes, member: str) -> None:
    with pytest.raises(DeviceError):
        mdadm.add("/dev/md0", member)
    with pytest.raises(DeviceError):
        mdadm.create("/dev/md0", ["/dev/sdb", member], mdstat_path=str(fakes.mdstat))
    assert fakes.calls("mdadm") == []


def test_good_members() -> None:
    for m in ("/dev/sda", "/dev/dm-3", "/dev/nvme0n1", "/dev/disk/by-id/wwn-0x3333",
              "/dev/mapper/mpath-a"):
        assert mdadm.validate_member(m) == m


@pytest.mark.parametrize(
    ("members", "kwargs"),
    [
        ([], {}),
        (["/dev/sda", "/dev/sda"], {}),
        (["/dev/md0"], {}),
        (["/dev/sda"], {"name": "bad name"}),
        (["/dev/sda"], {"name": "-x"}),
        (["/dev/sda"], {"metadata": "2.0"}),
        (["/dev/sda"], {"homehost": "a/b"}),
    ],
)
def test_create_refuses_bad_arguments(fakes: Fakes, members: list[str], kwargs: Any) -> None:
    with pytest.raises(DeviceError):
        mdadm.create("/dev/md0", members, mdstat_path=str(fakes.mdstat), **kwargs)
    assert fakes.calls("mdadm") == []


def test_members_as_one_string_is_refused(fakes: Fakes) -> None:
    with pytest.raises(DeviceError):
        mdadm.create("/dev/md0", "/dev/sda", mdstat_path=str(fakes.mdstat))


# --------------------------------------------------------------------------------------
# read_mdstat
# --------------------------------------------------------------------------------------


def test_read_mdstat(tmp_path: Path) -> None:
    path = tmp_path / "mdstat"
    assert mdadm.read_mdstat(str(path)) == MdStat(personalities=())  # md not loaded
    path.write_text(
        "Personalities : [multipath] \nmd0 : active multipath sdc[0] sda[1](F)\n"
        "      31744 blocks super 1.2 [2/1] [U_]\n      \nunused devices: <none>\n"
    )
    stat = mdadm.read_mdstat(str(path))
    assert stat.arrays[0].status_brackets == "[2/1] [U_]"


def test_read_mdstat_unreadable(tmp_path: Path) -> None:
    with pytest.raises(DmpathError, match="cannot read"):
        mdadm.read_mdstat(str(tmp_path))  # a directory: IsADirectoryError


@pytest.mark.parametrize(
    ("mdstat", "release", "gone"),
    [
        (WITH_MULTIPATH, "6.1.0-57-amd64", False),
        # a kernel that still carries it past 6.8 (a vendor's): /proc/mdstat decides
        (WITH_MULTIPATH, "6.12.117+deb12-amd64", False),
        (WITHOUT_MULTIPATH, "6.12.117+deb12-amd64", True),
        ("", "6.12.117+deb12-amd64", True),  # md_mod not even loaded
        (WITHOUT_MULTIPATH, "6.1.0-57-amd64", True),
    ],
)
def test_personality_missing_is_decided_by_mdstat(mdstat: str, release: str, gone: bool) -> None:
    why = mdadm.personality_missing(mdstat, release, "modprobe: FATAL: Module multipath not found")
    assert (why is not None) is gone
    if why is not None:
        assert "\n" not in why and "mpathctl migrate-md" in why and release in why
