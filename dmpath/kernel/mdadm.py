"""Thin I/O for md multipath arrays: every call is one ``mdadm`` run through the runner.

Policy (when to fail, remove or re-add a path) lives in the engine; this module only
checks its inputs, runs the command, parses what came back with ``dmpath.kernel.mdstat``
and turns the failures the daemon must tell apart into their own exception classes:

- ``MemberBusy``: the kernel refused a member operation with EBUSY. For ``remove`` that is
  the personality's rule (a path may be hot-removed only once it is faulty and has no I/O
  in flight), so the right reaction is to retry later, not to give up.
- ``ArrayBusy``: ``--stop`` on an array something still holds open.
- ``MissingKernelFeature``: no md multipath personality (removed from Linux in 6.8).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from dmpath.errors import CommandError, DeviceError, DmpathError, MissingKernelFeature
from dmpath.kernel.mdstat import (
    MdadmOutcome,
    MdDetail,
    MdDetailExport,
    MdExamine,
    MdStat,
    has_multipath_personality,
    parse_detail,
    parse_detail_export,
    parse_examine,
    parse_mdadm_messages,
    parse_mdstat,
)
from dmpath.runner import CommandResult, run

MDSTAT_PATH = "/proc/mdstat"
#: kernel module of md's multipath personality (CONFIG_MD_MULTIPATH)
PERSONALITY_MODULE = "multipath"
#: first Linux release without the personality
REMOVED_IN = (6, 8)

#: mdadm operations on a healthy array take well under a second; a minute means stuck
MDADM_TIMEOUT = 60.0
MODPROBE_TIMEOUT = 30.0


class MemberBusy(CommandError):
    """The kernel answered EBUSY for a member: retry later (after it is faulty and idle)."""

    #: the daemon may retry the same operation once the member's I/O has drained
    retryable = True

    def __init__(self, result: CommandResult, md_dev: str, member: str, operation: str) -> None:
        text = (result.stderr + result.stdout).strip()
        super().__init__(result.argv, result.returncode, text)
        self.md_dev = md_dev
        self.member = member
        self.operation = operation
        hint = (
            "it is still working or has I/O in flight; fail it first and retry when idle"
            if operation == "remove"
            else "another holder (array, dm map, mount) has it open"
        )
        self.message = f"{operation} {member} in {md_dev}: device busy ({hint})"
        self.args = (self.message,)


class ArrayBusy(CommandError):
    """``mdadm --stop`` refused: the array is open (mounted, in a dm table, in use)."""

    retryable = True

    def __init__(self, result: CommandResult, md_dev: str) -> None:
        text = (result.stderr + result.stdout).strip()
        super().__init__(result.argv, result.returncode, text)
        self.md_dev = md_dev
        self.message = f"stop {md_dev}: array is in use (open, mounted or held by a map)"
        self.args = (self.message,)


# --------------------------------------------------------------------------------------
# input checks: refuse anything that is not plainly an md device or a /dev node, so a
# typo can never reach mdadm as an option or a relative path
# --------------------------------------------------------------------------------------

_MD_DEV_RE = re.compile(r"^/dev/(?:md\d+|md_d\d+|md/[A-Za-z0-9_][A-Za-z0-9_.:+-]*)$")
_MEMBER_RE = re.compile(r"^/dev/[A-Za-z0-9_][A-Za-z0-9_.:+/-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]*$")
_METADATA_RE = re.compile(r"^(?:0\.90|1\.[012])$")
#: mdadm's words for members that no longer have a device node
_MANAGE_KEYWORDS = frozenset({"failed", "detached"})


def validate_md_device(md_dev: str) -> str:
    """``md_dev`` if it is /dev/mdN, /dev/md_dN or /dev/md/NAME, else DeviceError."""
    if not _MD_DEV_RE.match(md_dev):
        raise DeviceError(md_dev, "not an md device path (use /dev/mdN or /dev/md/NAME)")
    return md_dev


def validate_member(member: str, *, keywords: frozenset[str] = frozenset()) -> str:
    """``member`` if it is an absolute, normalised /dev path (or an allowed keyword)."""
    if member in keywords:
        return member
    if not _MEMBER_RE.match(member) or os.path.normpath(member) != member:
        raise DeviceError(member, "not an absolute /dev path of a block device")
    return member


def _validate_members(md_dev: str, members: Sequence[str]) -> list[str]:
    if isinstance(members, str):
        raise DeviceError(members, "members must be a list of paths, not one string")
    out = [validate_member(m) for m in members]
    if not out:
        raise DeviceError(md_dev, "no member paths given")
    if len(set(out)) != len(out):
        raise DeviceError(md_dev, "the same member path is given twice: " + " ".join(out))
    if md_dev in out:
        raise DeviceError(md_dev, "an array cannot be its own member")
    return out


# --------------------------------------------------------------------------------------
# the personality
# --------------------------------------------------------------------------------------


def kernel_version(release: str) -> tuple[int, int] | None:
    """``"6.1.0-56-amd64"`` -> ``(6, 1)``; None if the release string is not X.Y..."""
    m = re.match(r"^(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


#: where an admin with md arrays goes next (the dm backend; migrate-md for the data)
MIGRATE_HINT = (
    'use the dm backend (backend = "dm"); mpathctl migrate-md moves an md array\'s data '
    "to dm maps over the same paths (run it on a kernel that still has md multipath)"
)


def missing_personality_detail(release: str, modprobe_output: str = "") -> str:
    """The one line an admin reads when md multipath cannot work here (pure, for tests)."""
    version = kernel_version(release)
    if version is not None and version >= REMOVED_IN:
        return (
            f"it was removed in Linux {REMOVED_IN[0]}.{REMOVED_IN[1]}; running kernel "
            f"{release}; {MIGRATE_HINT}"
        )
    why = f" ({modprobe_output.strip().splitlines()[-1]})" if modprobe_output.strip() else ""
    return (
        f"module {PERSONALITY_MODULE!r} did not load{why}; running kernel {release} "
        f"(built without CONFIG_MD_MULTIPATH? it was removed in Linux "
        f"{REMOVED_IN[0]}.{REMOVED_IN[1]}); {MIGRATE_HINT}"
    )


def personality_missing(mdstat_text: str, release: str, modprobe_output: str = "") -> str | None:
    """The decision, pure: None when /proc/mdstat (read after ``modprobe multipath``)
    lists the personality, else the one line saying why md multipath cannot work here.

    /proc/mdstat decides, not the kernel version: a distribution kernel may carry the
    personality past 6.8, and a 6.1 kernel may be built without it; the version only
    chooses the explanation.
    """
    if has_multipath_personality(mdstat_text):
        return None
    return missing_personality_detail(release, modprobe_output)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        # /proc/mdstat exists only once md_mod is loaded: absent = no md at all
        return ""
    except OSError as exc:
        raise DmpathError(f"cannot read {path}: {exc.strerror or exc}") from exc


def ensure_multipath_personality(mdstat_path: str = MDSTAT_PATH) -> None:
    """Make sure md's multipath personality is registered, loading its module if needed.

    Checked before create/assemble because, without it, mdadm fails with an opaque
    "Invalid argument" after having written superblocks.
    """
    if has_multipath_personality(_read_text(mdstat_path)):
        return
    output = ""
    try:
        res = run("modprobe", [PERSONALITY_MODULE], check=False, timeout=MODPROBE_TIMEOUT)
        output = res.stderr or res.stdout
    except CommandError as exc:  # modprobe missing or hung: report, do not hide
        output = str(exc)
    why = personality_missing(_read_text(mdstat_path), os.uname().release, output)
    if why is not None:
        raise MissingKernelFeature("md multipath personality", why)


# --------------------------------------------------------------------------------------
# running mdadm
# --------------------------------------------------------------------------------------

_EBUSY_RE = re.compile(r"Device or resource busy|is busy - skipping|It is busy")
_ARRAY_BUSY_RE = re.compile(r"Cannot get exclusive access|Device or resource busy|Device is busy")


def _output(res: CommandResult) -> str:
    # mdadm reports results with pr_err (stderr), details on stdout
    return res.stderr + res.stdout


def _mdadm(args: list[str]) -> CommandResult:
    return run("mdadm", args, check=False, timeout=MDADM_TIMEOUT)


def _failed(res: CommandResult) -> CommandError:
    return CommandError(res.argv, res.returncode, _output(res))


def _member_op(
    md_dev: str, member: str, flag: str, operation: str, keywords: frozenset[str] = frozenset()
) -> MdadmOutcome:
    validate_md_device(md_dev)
    validate_member(member, keywords=keywords)
    res = _mdadm(["--manage", md_dev, flag, member])
    if res.returncode != 0:
        if _EBUSY_RE.search(_output(res)):
            raise MemberBusy(res, md_dev, member, operation)
        raise _failed(res)
    return parse_mdadm_messages(_output(res))


def create(
    md_dev: str,
    members: Sequence[str],
    name: str | None = None,
    metadata: str = "1.2",
    *,
    homehost: str | None = None,
    mdstat_path: str = MDSTAT_PATH,
) -> MdadmOutcome:
    """Create and start a multipath array with every member as one path (one slot each).

    ``--run`` skips mdadm's "continue creating array?" question (we run without a
    terminal); ``--name``/``--homehost`` set what udev-driven auto-assembly matches on.
    """
    validate_md_device(md_dev)
    paths = _validate_members(md_dev, members)
    if name is not None and not _NAME_RE.match(name):
        raise DeviceError(md_dev, f"array name {name!r} must be letters, digits, _.:+-")
    if homehost is not None and not _NAME_RE.match(homehost):
        raise DeviceError(md_dev, f"homehost {homehost!r} must be letters, digits, _.:+-")
    if not _METADATA_RE.match(metadata):
        raise DeviceError(md_dev, f"metadata {metadata!r} is not 0.90, 1.0, 1.1 or 1.2")
    ensure_multipath_personality(mdstat_path)
    args = [
        "--create",
        md_dev,
        "--run",
        "--level=multipath",
        f"--raid-devices={len(paths)}",
        f"--metadata={metadata}",
    ]
    if name is not None:
        args.append(f"--name={name}")
    if homehost is not None:
        args.append(f"--homehost={homehost}")
    res = _mdadm([*args, *paths])
    if res.returncode != 0:
        if _EBUSY_RE.search(_output(res)):
            raise MemberBusy(res, md_dev, " ".join(paths), "create")
        raise _failed(res)
    return parse_mdadm_messages(_output(res))


def assemble(
    md_dev: str, members: Sequence[str], *, mdstat_path: str = MDSTAT_PATH
) -> MdadmOutcome:
    """Assemble an existing array from its member paths; ``--run`` starts it with fewer."""
    validate_md_device(md_dev)
    paths = _validate_members(md_dev, members)
    ensure_multipath_personality(mdstat_path)
    res = _mdadm(["--assemble", md_dev, "--run", *paths])
    if res.returncode != 0:
        if _EBUSY_RE.search(_output(res)):
            raise MemberBusy(res, md_dev, " ".join(paths), "assemble")
        raise _failed(res)
    return parse_mdadm_messages(_output(res))


def stop(md_dev: str) -> MdadmOutcome:
    """Stop (deactivate) an array; ArrayBusy if something holds it open."""
    validate_md_device(md_dev)
    res = _mdadm(["--stop", md_dev])
    if res.returncode != 0:
        if _ARRAY_BUSY_RE.search(_output(res)):
            raise ArrayBusy(res, md_dev)
        raise _failed(res)
    return parse_mdadm_messages(_output(res))


def fail(md_dev: str, member: str) -> MdadmOutcome:
    """Mark a path faulty. Read mdstat afterwards to learn whether the kernel agreed.

    The personality refuses to fail its last working path, yet mdadm still prints "set
    ... faulty" and exits 0 (fixture ``mdadm_fail_last.txt``), so the outcome alone
    proves nothing. ``member`` may also be ``detached`` (paths whose node is gone).
    """
    return _member_op(md_dev, member, "--fail", "fail", frozenset({"detached"}))


def remove(md_dev: str, member: str) -> MdadmOutcome:
    """Hot-remove a path; MemberBusy while it is still working or has I/O in flight.

    ``member`` may also be ``failed`` or ``detached`` (mdadm's words for "all such").
    """
    return _member_op(md_dev, member, "--remove", "remove", _MANAGE_KEYWORDS)


def add(md_dev: str, member: str) -> MdadmOutcome:
    """Hot-add a path into a free slot (mdadm re-adds by itself when it can)."""
    return _member_op(md_dev, member, "--add", "add")


def re_add(md_dev: str, member: str) -> MdadmOutcome:
    """Re-add a path that was a member before, keeping its superblock identity."""
    return _member_op(md_dev, member, "--re-add", "re-add")


def detail(md_dev: str) -> MdDetail:
    validate_md_device(md_dev)
    res = _mdadm(["--detail", md_dev])
    if res.returncode != 0:
        raise _failed(res)
    return parse_detail(res.stdout)


def detail_export(md_dev: str) -> MdDetailExport:
    validate_md_device(md_dev)
    res = _mdadm(["--detail", "--export", md_dev])
    if res.returncode != 0:
        raise _failed(res)
    return parse_detail_export(res.stdout)


_NO_SUPER_RE = re.compile(r"No md superblock detected")


def examine(member: str) -> MdExamine | None:
    """The member's md superblock, or None when it has none (a plain path)."""
    validate_member(member)
    res = _mdadm(["--examine", member])
    if res.returncode != 0:
        if _NO_SUPER_RE.search(_output(res)):
            return None
        raise _failed(res)
    return parse_examine(res.stdout)


_UNRECOGNISED_RE = re.compile(r"Unrecognised md component device")


def zero_superblock(member: str) -> bool:
    """Erase the md superblock of a path that is in no running array.

    Returns False when there was no superblock (so clean-up can be repeated safely);
    fails when the path is still in use (mdadm cannot open it exclusively).
    """
    validate_member(member)
    res = _mdadm(["--zero-superblock", member])
    if res.returncode != 0:
        if _UNRECOGNISED_RE.search(_output(res)):
            return False
        raise _failed(res)
    return True


def read_mdstat(path: str = MDSTAT_PATH) -> MdStat:
    """Parse ``path``; with md not loaded (no file) that is no personalities, no arrays."""
    text = _read_text(path)
    if not text:
        return MdStat(personalities=())
    return parse_mdstat(text)
