"""What the administrator asked of the daemon that must outlive it: the record kept in
``admin_state_file`` and its text, with no I/O (``dmpath.policy.files`` reads and
writes it atomically).

The kernel remembers a failed path and a queueing setting only as long as the map lives,
and nothing at all of a flushed map or a removed path: without this record a restarted
daemon (or the next boot) would reinstate the path the administrator failed, turn
queueing back on, make the flushed map again and take the removed path back. Paths are
recorded by name with the WWID they had, so a name the kernel gives to another disk
after a reboot carries nothing over; maps by WWID, which their names follow.

The text is JSON with a version; a file that cannot be read as this record is an error
the daemon reports (and then starts from an empty record), never a reason not to run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 1


class IntentFormatError(ValueError):
    """The state file's text is not an admin-intent record."""


@dataclass
class AdminIntent:
    """The administrator's standing requests; paths carry the WWID they had, and a name
    now on another disk (``applies``) carries none of them over."""

    #: path name -> its WWID: failed by the administrator (mpathctl fail)
    held: dict[str, str] = field(default_factory=dict)
    #: path name -> its WWID: removed by the administrator (mpathctl remove)
    removed: dict[str, str] = field(default_factory=dict)
    #: map WWID -> queueing on (True) or off (False) as the administrator set it
    queueing: dict[str, bool] = field(default_factory=dict)
    #: WWIDs whose map the administrator flushed (mpathctl flush)
    flushed: set[str] = field(default_factory=set)

    @staticmethod
    def applies(table: dict[str, str], name: str, wwid: str) -> bool:
        """Does the entry for ``name`` in ``held`` or ``removed`` stand for that disk?"""
        return table.get(name) == wwid


def to_text(intent: AdminIntent) -> str:
    doc = {
        "version": VERSION,
        "held_paths": dict(sorted(intent.held.items())),
        "removed_paths": dict(sorted(intent.removed.items())),
        "queueing": dict(sorted(intent.queueing.items())),
        "flushed_maps": sorted(intent.flushed),
    }
    return json.dumps(doc, indent=1) + "\n"


def _names(doc: dict[str, Any], key: str) -> dict[str, str]:
    value = doc.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in value.items()
    ):
        raise IntentFormatError(f"{key}: an object of path name -> WWID expected")
    return dict(value)


def from_text(text: str) -> AdminIntent:
    """The record in ``text`` (empty text: an empty record); IntentFormatError if it is
    not one."""
    if not text.strip():
        return AdminIntent()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IntentFormatError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise IntentFormatError("a JSON object expected")
    if doc.get("version") != VERSION:
        raise IntentFormatError(f"version {doc.get('version')!r}, {VERSION} expected")
    queueing = doc.get("queueing", {})
    if not isinstance(queueing, dict) or not all(
        isinstance(k, str) and k and isinstance(v, bool) for k, v in queueing.items()
    ):
        raise IntentFormatError("queueing: an object of WWID -> true/false expected")
    flushed = doc.get("flushed_maps", [])
    if not isinstance(flushed, list) or not all(isinstance(w, str) and w for w in flushed):
        raise IntentFormatError("flushed_maps: a list of WWIDs expected")
    return AdminIntent(
        held=_names(doc, "held_paths"),
        removed=_names(doc, "removed_paths"),
        queueing=dict(queueing),
        flushed=set(flushed),
    )
