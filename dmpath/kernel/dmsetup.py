"""Thin I/O over ``dmsetup`` for multipath maps: every call goes through ``dmpath.runner.run``.

No policy here: these functions do what they are told and return parsed models (from
:mod:`dmpath.kernel.dmtable`). Deciding *whether* to fail a path or remove a map belongs to
the engine.

udev: dmsetup's default udev synchronisation is kept (a cookie per call, waited for before
dmsetup returns), so when ``create`` returns, ``/dev/mapper/NAME`` exists and udev has seen
the map. Nothing here ever needs ``dmsetup udevcomplete``: the commands that create a cookie
wait for it themselves, and ``udev_sync=False`` (``--noudevsync``) skips cookies entirely
for callers that wait for the uevent some other way (the daemon's udev monitor).
"""

from __future__ import annotations

from collections.abc import Sequence

from dmpath.errors import CommandError, DmpathError, ParseError
from dmpath.kernel.dmtable import (
    INFO_FIELDS,
    INFO_SEPARATOR,
    TARGET,
    DmDevice,
    DmInfo,
    MultipathStatus,
    MultipathTable,
    format_table,
    parse_info_columns,
    parse_ls,
    parse_status,
    parse_table,
)
from dmpath.runner import CommandResult, run

TOOL = "dmsetup"
#: seconds one dmsetup call may take (udev sync included) before it is killed
TIMEOUT = 60.0
#: DM_NAME_LEN and DM_UUID_LEN in <linux/dm-ioctl.h> include the terminating NUL
MAX_NAME_LEN = 127
MAX_UUID_LEN = 128


class MapNameError(DmpathError):
    """A map name (or uuid) the kernel or dmsetup would refuse or misread."""

    exit_code = 2

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"invalid map name {name!r}: {detail}")
        self.name = name
        self.detail = detail


def _check_text(what: str, value: str, max_len: int) -> str:
    if not isinstance(value, str) or not value:
        raise MapNameError(str(value), f"{what} must not be empty")
    if len(value) > max_len:
        raise MapNameError(value, f"{what} is {len(value)} characters, at most {max_len}")
    if value.startswith("-"):
        raise MapNameError(value, f"{what} must not start with '-' (dmsetup reads it as an option)")
    if any(c.isspace() or not c.isprintable() for c in value):
        # dmsetup "mangles" such names to \xNN, so the name in /dev/mapper would differ
        raise MapNameError(value, f"{what} must not contain whitespace or control characters")
    return value


def validate_map_name(name: str) -> str:
    """Check a dm map name before any command sees it; returns it unchanged.

    The kernel refuses ``/`` and names of 128 bytes or more; ``.`` and ``..`` cannot be
    nodes in /dev/mapper.
    """
    _check_text("map name", name, MAX_NAME_LEN)
    if len(name.encode()) > MAX_NAME_LEN:
        raise MapNameError(name, f"map name is more than {MAX_NAME_LEN} bytes")
    if "/" in name:
        raise MapNameError(name, "map name must not contain '/'")
    if name in (".", ".."):
        raise MapNameError(name, "map name must not be '.' or '..'")
    return name


def validate_uuid(uuid: str) -> str:
    """Check a dm uuid (e.g. ``mpath-<wwid>``); returns it unchanged."""
    _check_text("uuid", uuid, MAX_UUID_LEN)
    if len(uuid.encode()) > MAX_UUID_LEN:
        raise MapNameError(uuid, f"uuid is more than {MAX_UUID_LEN} bytes")
    return uuid


def _table_text(table: MultipathTable | str) -> str:
    """The table line for stdin: models are validated and formatted; text is passed as is."""
    if isinstance(table, MultipathTable):
        return format_table(table) + "\n"
    lines = [ln for ln in table.splitlines() if ln.strip()]
    if len(lines) != 1:
        raise DmpathError(f"a multipath table is one line, got {len(lines)}")
    return lines[0].strip() + "\n"


def _udev(udev_sync: bool) -> list[str]:
    return [] if udev_sync else ["--noudevsync"]


def _dmsetup(
    args: Sequence[str], *, stdin: str | None = None, timeout: float = TIMEOUT
) -> CommandResult:
    return run(TOOL, list(args), stdin=stdin, timeout=timeout)


# --------------------------------------------------------------------------- lifecycle


def create(
    name: str,
    table: MultipathTable | str,
    *,
    uuid: str | None = None,
    udev_sync: bool = True,
    timeout: float = TIMEOUT,
) -> None:
    """Create map ``name`` with ``table`` (given on stdin) and resume it.

    A uuid is what ties a map to its LUN across renames; dmpath uses ``mpath-<wwid>``
    (multipath-tools' own form, which LVM, kpartx and udev's links recognise; see
    dmpathd(8) for why multipath-tools' own udev rules must not be installed beside it).
    """
    validate_map_name(name)
    opts = ["--uuid", validate_uuid(uuid)] if uuid is not None else []
    _dmsetup(["create", *opts, *_udev(udev_sync), name], stdin=_table_text(table), timeout=timeout)


def load(name: str, table: MultipathTable | str, *, timeout: float = TIMEOUT) -> None:
    """Load ``table`` as the *inactive* table of ``name``; nothing changes until resume."""
    validate_map_name(name)
    _dmsetup(["load", name], stdin=_table_text(table), timeout=timeout)


def clear(name: str, *, timeout: float = TIMEOUT) -> None:
    """Drop the inactive table of ``name`` (undo a ``load`` that will not be resumed)."""
    validate_map_name(name)
    _dmsetup(["clear", name], timeout=timeout)


def suspend(name: str, *, noflush: bool = False, timeout: float = TIMEOUT) -> None:
    """Suspend ``name``. ``noflush`` keeps queued and in-flight I/O instead of completing it.

    Without ``--noflush`` the kernel must drain every I/O before the suspend completes, so
    dm-mpath switches ``queue_if_no_path`` off for the duration and any I/O waiting for a
    path is failed with EIO: never what a multipath map wants.
    """
    validate_map_name(name)
    _dmsetup(["suspend", *(["--noflush"] if noflush else []), name], timeout=timeout)


def resume(name: str, *, udev_sync: bool = True, timeout: float = TIMEOUT) -> None:
    """Resume ``name``, switching to its inactive table if one was loaded."""
    validate_map_name(name)
    _dmsetup(["resume", *_udev(udev_sync), name], timeout=timeout)


def reload(
    name: str, table: MultipathTable | str, *, udev_sync: bool = True, timeout: float = TIMEOUT
) -> None:
    """Replace the table of a live map without losing I/O: load, ``suspend --noflush``, resume.

    Why this order and flag: the load comes first so a table the kernel refuses leaves the
    map untouched and running. The suspend is ``--noflush`` because a flushing suspend has
    to complete every outstanding I/O, and dm-mpath achieves that by turning
    ``queue_if_no_path`` off, erroring whatever waits for a path — exactly the I/O that a
    reload (often adding the path that came back) is meant to save. With ``--noflush`` that
    I/O is pushed back into dm core and re-issued through the new table after resume.

    If the suspend fails the loaded table is cleared again (the map keeps running on the old
    one). If the resume fails the map is left suspended with the new table and the error
    says so: resuming it is the caller's next step, not something to retry blindly here.
    """
    validate_map_name(name)
    text = _table_text(table)
    load(name, text, timeout=timeout)
    try:
        suspend(name, noflush=True, timeout=timeout)
    except CommandError:
        try:
            clear(name, timeout=timeout)
        except CommandError as exc:
            exc.add_note(f"{name}: could not clear the inactive table after a failed suspend")
        raise
    try:
        resume(name, udev_sync=udev_sync, timeout=timeout)
    except CommandError as exc:
        exc.add_note(f"{name} is left SUSPENDED with the new table loaded: resume it")
        raise


def remove(
    name: str,
    *,
    force: bool = False,
    retry: bool = True,
    udev_sync: bool = True,
    timeout: float = TIMEOUT,
) -> None:
    """Remove map ``name``.

    A plain remove fails on an open map (the kernel answers EBUSY), which is what protects
    a mounted file system. ``force`` (``--force``) first replaces the table with one that
    errors all I/O, so holders get EIO: only when the user asked for it. ``retry``
    (``--retry``) retries for a few seconds on EBUSY, which covers udev or blkid briefly
    opening a map that just changed.
    """
    validate_map_name(name)
    opts = (["--force"] if force else []) + (["--retry"] if retry else [])
    _dmsetup(["remove", *opts, *_udev(udev_sync), name], timeout=timeout)


def rename(name: str, new_name: str, *, udev_sync: bool = True, timeout: float = TIMEOUT) -> None:
    """Rename map ``name`` to ``new_name`` (the uuid stays: it identifies the LUN)."""
    validate_map_name(name)
    validate_map_name(new_name)
    _dmsetup(["rename", *_udev(udev_sync), name, new_name], timeout=timeout)


# --------------------------------------------------------------------------- reading


def list_maps(*, timeout: float = TIMEOUT) -> list[DmDevice]:
    """Every map whose table uses the ``multipath`` target (``dmsetup ls --target``)."""
    return parse_ls(_dmsetup(["ls", "--target", TARGET], timeout=timeout).stdout)


def table(name: str, *, timeout: float = TIMEOUT) -> MultipathTable:
    """The live table of ``name``, parsed (ParseError if it is not a multipath map)."""
    validate_map_name(name)
    return parse_table(_dmsetup(["table", name], timeout=timeout).stdout)


def status(name: str, *, timeout: float = TIMEOUT) -> MultipathStatus:
    """The live status of ``name``: group and path states, fail counts."""
    validate_map_name(name)
    return parse_status(_dmsetup(["status", name], timeout=timeout).stdout)


def info(name: str, *, timeout: float = TIMEOUT) -> DmInfo:
    """Name, uuid, device number, open count, segments and event counter of ``name``."""
    validate_map_name(name)
    res = _dmsetup(
        [
            "info",
            "-c",
            "--noheadings",
            "--separator",
            INFO_SEPARATOR,
            "-o",
            ",".join(INFO_FIELDS),
            name,
        ],
        timeout=timeout,
    )
    rows = parse_info_columns(res.stdout, name=name)
    if len(rows) != 1:
        detail = f"one row expected for {name}, got {len(rows)}"
        raise ParseError("dmsetup info -c", detail, res.stdout)
    return rows[0]


def suspended(name: str, *, timeout: float = TIMEOUT) -> bool:
    """Is ``name`` suspended (its I/O held until a resume)? ``dmsetup info -c -o attr``'s
    third letter is ``s`` then (``L--w`` live, ``LIsw`` suspended with a table loaded)."""
    validate_map_name(name)
    res = _dmsetup(["info", "-c", "--noheadings", "-o", "attr", name], timeout=timeout)
    attr = res.stdout.strip()
    if len(attr) != 4:
        raise ParseError("dmsetup info -c -o attr", "four attribute letters expected", attr)
    return attr[2] == "s"


# --------------------------------------------------------------------------- messages


def message(name: str, *words: str, timeout: float = TIMEOUT) -> str:
    """Send a target message (``dmsetup message NAME 0 WORDS...``); returns its reply text.

    The kernel refuses unknown messages with EINVAL and logs the reason only to dmesg, so a
    CommandError here carries "Invalid argument" and little else.
    """
    validate_map_name(name)
    if not words:
        raise DmpathError("a dm message needs at least one word")
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise DmpathError(f"dm message word {w!r} must be one non-empty word")
    return _dmsetup(["message", name, "0", *words], timeout=timeout).stdout.strip()


def _group_number(group: int) -> str:
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise DmpathError(f"path group numbers start at 1, got {group!r}")
    return str(group)


def fail_path(name: str, dev: str, *, timeout: float = TIMEOUT) -> None:
    """Take path ``dev`` (``8:0`` or ``/dev/sda``) out of use; its fail count goes up by one."""
    message(name, "fail_path", dev, timeout=timeout)


def reinstate_path(name: str, dev: str, *, timeout: float = TIMEOUT) -> None:
    """Put a failed path ``dev`` back in use."""
    message(name, "reinstate_path", dev, timeout=timeout)


def switch_group(name: str, group: int, *, timeout: float = TIMEOUT) -> None:
    """Make the next I/O use group ``group`` (1-based); also re-enables disabled groups."""
    message(name, "switch_group", _group_number(group), timeout=timeout)


def enable_group(name: str, group: int, *, timeout: float = TIMEOUT) -> None:
    """Stop bypassing group ``group``."""
    message(name, "enable_group", _group_number(group), timeout=timeout)


def disable_group(name: str, group: int, *, timeout: float = TIMEOUT) -> None:
    """Bypass group ``group`` while another group has usable paths."""
    message(name, "disable_group", _group_number(group), timeout=timeout)


def queue_if_no_path(name: str, *, timeout: float = TIMEOUT) -> None:
    """Queue I/O (instead of failing it) while no path is usable."""
    message(name, "queue_if_no_path", timeout=timeout)


def fail_if_no_path(name: str, *, timeout: float = TIMEOUT) -> None:
    """Fail I/O when no path is usable, releasing any I/O queued now."""
    message(name, "fail_if_no_path", timeout=timeout)
