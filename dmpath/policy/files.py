"""The thin I/O under ``naming``: read the bindings and wwids files, write them atomically.

Why atomic: these files decide what /dev/mapper names and which
devices get multipathed after the next boot. A crash or a full disk in the middle of a
write must leave the old file or the new one, never half of one: so the new text goes to
a temporary file in the same directory, is fsynced, renamed over the old name (atomic on
POSIX file systems), and the directory is fsynced so that the rename itself survives a
power cut.

The daemon is the only writer; it calls these from its one kernel-worker thread, so there
is no locking here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Sequence
from pathlib import Path

from dmpath.errors import DmpathError
from dmpath.policy import intent, naming


class StateFileError(DmpathError):
    """A bindings or wwids file could not be read or written."""

    exit_code = 5

    def __init__(self, path: str, action: str, err: OSError) -> None:
        super().__init__(f"{path}: cannot {action}: {err.strerror or err}")
        self.path = path
        self.errno = err.errno


def read_text(path: str | os.PathLike[str]) -> str | None:
    """The file's text, or None if it does not exist (a fresh system has neither file).

    Bytes that are not UTF-8 are replaced rather than refused: a damaged line is then
    skipped by the parser with a warning, and the good lines are kept.
    """
    try:
        return Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(os.fspath(path), "read", exc) from exc


def write_atomic(path: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    """Replace the file at ``path`` by ``text``: readers see the old or the new, never a mix.

    ``mode``: permissions of the new file; by default those of the file it replaces, or
    0644 for a new one. Creates the parent directory if needed (``/etc/dmpath`` on a fresh
    system).
    """
    target = Path(path)
    data = text.encode("utf-8")
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode is None:
            try:
                mode = target.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o644
        # imported here: the udev helper reads the wwids file at every disk event and
        # never writes, and tempfile and logging are a third of this module's import
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except OSError as exc:
        raise StateFileError(os.fspath(path), "write", exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _warn(path: str | os.PathLike[str], warnings: list[str]) -> None:
    if not warnings:
        return
    import logging  # only for bad lines (see write_atomic)

    for w in warnings:
        logging.getLogger("dmpath.files").warning("%s: %s", os.fspath(path), w)


# --------------------------------------------------------------------------- bindings


def load_bindings(path: str | os.PathLike[str]) -> naming.Bindings:
    """The bindings in the file (none if it does not exist); bad lines are logged."""
    text = read_text(path)
    if text is None:
        return naming.Bindings()
    bindings, warnings = naming.parse_bindings(text)
    _warn(path, warnings)
    return bindings


def save_bindings(path: str | os.PathLike[str], bindings: naming.Bindings) -> None:
    write_atomic(path, naming.format_bindings(bindings))


def bind_alias(
    bindings_file: str | os.PathLike[str], wwid: str, prefix: str, taken: Collection[str] = ()
) -> str:
    """The friendly name of ``wwid``, binding a new one in the file if it has none yet.

    ``taken``: names this WWID must not get (``config.configured_aliases``, names of other
    maps). The file is rewritten only when a binding was added.
    """
    bindings = load_bindings(bindings_file)
    alias, new = naming.assign_alias(bindings, wwid, prefix, taken)
    if new != bindings:
        save_bindings(bindings_file, new)
    return alias


def bind_aliases(
    bindings_file: str | os.PathLike[str],
    wwids: Sequence[str],
    prefix: str,
    taken: Collection[str] = (),
) -> dict[str, str]:
    """``bind_alias`` for many WWIDs with one read and at most one write of the file:
    a coldplug of hundreds of LUNs must not rewrite (and fsync) it once per LUN."""
    bindings = load_bindings(bindings_file)
    names, new = naming.assign_aliases(bindings, wwids, prefix, taken)
    if new != bindings:
        save_bindings(bindings_file, new)
    return names


# --------------------------------------------------------------------------- wwids


def load_wwids(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The WWIDs in the file, in order (none if it does not exist); bad lines are logged."""
    text = read_text(path)
    if text is None:
        return ()
    wwids, warnings = naming.parse_wwids(text)
    _warn(path, warnings)
    return wwids


def read_wwids(path: str | os.PathLike[str]) -> set[str]:
    """The WWIDs in the file as a set, for ``filter.should_manage``."""
    return set(load_wwids(path))


def save_wwids(path: str | os.PathLike[str], wwids: Collection[str]) -> None:
    write_atomic(path, naming.format_wwids(wwids))


def remember_wwid(wwids_file: str | os.PathLike[str], wwid: str) -> bool:
    """Add ``wwid`` to the file; True if it was new (the file is untouched otherwise)."""
    wwids = load_wwids(wwids_file)
    new = naming.add_wwid(wwids, wwid)
    if new == wwids:
        return False
    save_wwids(wwids_file, new)
    return True


def remember_wwids(wwids_file: str | os.PathLike[str], wwids: Collection[str]) -> bool:
    """``remember_wwid`` for many, with at most one write; True if any was new."""
    old = load_wwids(wwids_file)
    new = naming.add_wwids(old, sorted(wwids))
    if new == old:
        return False
    save_wwids(wwids_file, new)
    return True


def forget_wwid(wwids_file: str | os.PathLike[str], wwid: str) -> bool:
    """Remove ``wwid`` from the file; True if it was there."""
    wwids = load_wwids(wwids_file)
    new = naming.remove_wwid(wwids, wwid)
    if new == wwids:
        return False
    save_wwids(wwids_file, new)
    return True


# --------------------------------------------------------------------------- admin intent


def load_intent(path: str | os.PathLike[str]) -> intent.AdminIntent:
    """The administrator's record in the file (an empty one if it does not exist);
    StateFileError if it cannot be read or is not such a record."""
    text = read_text(path)
    if text is None:
        return intent.AdminIntent()
    try:
        return intent.from_text(text)
    except intent.IntentFormatError as exc:
        raise StateFileError(os.fspath(path), "read", OSError(0, str(exc))) from exc


def save_intent(path: str | os.PathLike[str], record: intent.AdminIntent) -> None:
    write_atomic(path, intent.to_text(record))
