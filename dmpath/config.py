"""The configuration file ``/etc/dmpath/dmpath.toml``: parsed strictly into frozen records.

Why strict: a multipath daemon that silently ignores a misspelt ``blacklist`` key grabs
devices the administrator meant to keep away from it. So every unknown key, wrong type or
bad value is a ``ConfigError`` naming the file, the dotted key (``defaults.no_path_retry``,
``multipaths[1].alias``) and the line. ``tomllib`` reports no lines for values, so
``_LineIndex`` finds them by scanning the text for the key inside its table's section.

Why frozen dataclasses: the daemon swaps the whole ``Config`` on reload, and the policies
(``dmpath.policy``) take it as a plain input, so nothing may change it behind their back.

A missing file means "all defaults" (dmpath works out of the box, as multipathd does
without ``multipath.conf``); an unreadable one is an error, never a silent default.

Every option, its default and its meaning is in ``OPTIONS`` below; this docstring's table,
the man page ``man/dmpath.toml.5`` (between its GENERATED markers) and the tests are all
derived from it, so they cannot drift apart. Regenerate the man page with
``python -m dmpath.config --update-man man/dmpath.toml.5``.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, TypeAlias

from dmpath.errors import ConfigError
from dmpath.model import Backend

DEFAULT_CONFIG_PATH: Final = "/etc/dmpath/dmpath.toml"


class GroupingPolicy(StrEnum):
    FAILOVER = "failover"
    MULTIBUS = "multibus"
    GROUP_BY_PRIO = "group_by_prio"


class Prio(StrEnum):
    ALUA = "alua"
    CONST = "const"


class Checker(StrEnum):
    TUR = "tur"
    DIRECTIO = "directio"
    NONE = "none"


class FindMultipaths(StrEnum):
    STRICT = "strict"
    ON = "on"
    GREEDY = "greedy"


#: the dm path selectors dmpath tables may name (all take no per-path arguments)
PATH_SELECTORS: Final = ("service-time 0", "queue-length 0", "round-robin 0")
#: SCSI device handlers (scsi_dh_*) a table may name; "" names none
HARDWARE_HANDLERS: Final = ("", "alua", "emc", "rdac", "hp_sw")

Failback: TypeAlias = Literal["immediate", "manual"] | int
NoPathRetry: TypeAlias = Literal["queue", "fail"] | int

#: Device names that are never paths, whatever the configuration says (exceptions cannot
#: lift this): stacked (dm, md, bcache, drbd), virtual (ram, zram, loop, nbd, rbd, zd,
#: nullb, pmem), floppy, optical and tape devices, and NVMe native multipath's hidden
#: per-controller nodes. A dm map over any of these would be wrong or would loop.
NEVER_PATH_DEVNODE: Final = (
    r"^(ram|zram|loop|fd|md|dm-|sr|scd|st|nst|nbd|rbd|zd|nullb|pmem|drbd|bcache)[0-9]"
    r"|^md_|^nvme[0-9]+c[0-9]+n[0-9]+"
)

# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Defaults:
    """``[defaults]``: values for every map unless ``[[devices]]``/``[[multipaths]]`` say else."""

    backend: Backend = Backend.DM
    path_grouping_policy: GroupingPolicy = GroupingPolicy.GROUP_BY_PRIO
    path_selector: str = "service-time 0"
    features: tuple[str, ...] = ()
    hardware_handler: str = ""
    retain_hwhandler: bool = True
    prio: Prio = Prio.ALUA
    failback: Failback = "immediate"
    no_path_retry: NoPathRetry = 12
    checker: Checker = Checker.TUR
    polling_interval: float = 1.0
    max_polling_interval: float = 1.0
    checker_timeout: float = 5.0
    user_friendly_names: bool = True
    alias_prefix: str = "mpath"
    find_multipaths: FindMultipaths = FindMultipaths.ON
    uid_attribute: tuple[str, ...] = ("ID_SERIAL", "ID_WWN")
    bindings_file: str = "/etc/dmpath/bindings"
    wwids_file: str = "/etc/dmpath/wwids"
    socket: str = "/run/dmpath/dmpathd.sock"
    dm_uuid_prefix: str = "dmpath-"
    flush_on_last_del: bool = False
    coalesce_ms: int = 200

    def __post_init__(self) -> None:
        # The parser never builds this; it guards records built in code (tests, tools).
        if self.max_polling_interval < self.polling_interval:
            raise ValueError("max_polling_interval must be >= polling_interval")


@dataclass(frozen=True)
class DeviceMatch:
    """A ``vendor``/``product`` pair of regular expressions; "" matches anything."""

    vendor: str = ""
    product: str = ""


@dataclass(frozen=True)
class FilterList:
    """One of ``[blacklist]`` / ``[blacklist_exceptions]`` (regular expressions)."""

    devnode: tuple[str, ...] = ()
    wwid: tuple[str, ...] = ()
    property: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()
    device: tuple[DeviceMatch, ...] = ()


#: Built into every ``[blacklist]``: the file's entries are added to these. Devices that
#: are not SAN paths in practice (IDE, virtio-blk, Xen, MMC/SD cards) and USB storage.
#: Lift one with ``[blacklist_exceptions]``.
BUILTIN_BLACKLIST: Final = FilterList(
    devnode=(r"^(hd|vd|xvd)[a-z]", r"^mmcblk[0-9]"),
    protocol=(r"^scsi:usb$",),
)
#: Built into every ``[blacklist_exceptions]``: a device must carry a SCSI identifier or
#: a WWN in udev (as multipath-tools requires), which keeps devices without a stable
#: identity (most virtual disks, card readers) out even with find_multipaths = "greedy".
BUILTIN_EXCEPTIONS: Final = FilterList(property=(r"^(SCSI_IDENT_|ID_WWN)",))


@dataclass(frozen=True)
class Overrides:
    """Options a ``[[devices]]`` or ``[[multipaths]]`` table may set; None = not set there."""

    backend: Backend | None = None
    path_grouping_policy: GroupingPolicy | None = None
    path_selector: str | None = None
    features: tuple[str, ...] | None = None
    hardware_handler: str | None = None
    prio: Prio | None = None
    failback: Failback | None = None
    no_path_retry: NoPathRetry | None = None
    checker: Checker | None = None


OVERRIDABLE: Final = tuple(f.name for f in fields(Overrides))


@dataclass(frozen=True)
class DeviceEntry:
    """``[[devices]]``: options for every path whose vendor and product match."""

    vendor: str = ""
    product: str = ""
    overrides: Overrides = Overrides()


@dataclass(frozen=True)
class MultipathEntry:
    """``[[multipaths]]``: options (and a fixed name) for the map of one WWID."""

    wwid: str
    alias: str | None = None
    overrides: Overrides = Overrides()


@dataclass(frozen=True)
class Config:
    defaults: Defaults = Defaults()
    blacklist: FilterList = BUILTIN_BLACKLIST
    blacklist_exceptions: FilterList = BUILTIN_EXCEPTIONS
    multipaths: tuple[MultipathEntry, ...] = ()
    devices: tuple[DeviceEntry, ...] = ()
    #: where it was read from (shown by ``mpathctl show config``); not part of equality
    source: str = field(default="<defaults>", compare=False)


@dataclass(frozen=True)
class MapOptions:
    """What one map gets after merging defaults < devices < multipaths.

    ``origins`` says, per overridable option, which table decided it ("defaults",
    "devices[2]", "multipaths[0]"): the answer to "why does this map queue?".
    """

    wwid: str
    alias: str | None
    backend: Backend
    path_grouping_policy: GroupingPolicy
    path_selector: str
    features: tuple[str, ...]
    hardware_handler: str
    prio: Prio
    failback: Failback
    no_path_retry: NoPathRetry
    checker: Checker
    user_friendly_names: bool
    alias_prefix: str
    origins: tuple[tuple[str, str], ...] = ()

    def origin(self, option: str) -> str:
        return dict(self.origins).get(option, "defaults")

    @property
    def feature_words(self) -> tuple[str, ...]:
        """The features as the words of a dm table (without the leading count)."""
        return tuple(w for f in self.features for w in f.split())


# --------------------------------------------------------------------------- documentation


@dataclass(frozen=True)
class OptionDoc:
    section: str  # "defaults", "blacklist", "blacklist.device", "multipaths", "devices"
    name: str
    kind: str  # value type as the man page says it
    default: str  # as TOML; "" for "no default"
    text: str


def _toml_value(value: object) -> str:
    """A value as TOML source (the subset dmpath's options use)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_D = Defaults()

_OVERRIDE_NOTE = "Also settable per device type ([[devices]]) and per map ([[multipaths]])."

OPTIONS: Final[tuple[OptionDoc, ...]] = (
    OptionDoc(
        "defaults",
        "backend",
        '"dm" | "md"',
        _toml_value(_D.backend.value),
        "Which kernel machinery assembles a map: the device-mapper multipath target "
        "(dmsetup) or md's multipath personality (mdadm). Linux removed the md personality "
        "in 6.8; use md only on kernels that still have it, such as 6.1. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "path_grouping_policy",
        '"failover" | "multibus" | "group_by_prio"',
        _toml_value(_D.path_grouping_policy.value),
        "How the paths of a map form priority groups: one path per group (failover), all "
        "paths in one group with I/O spread over them (multibus), or one group per path "
        "priority, best first (group_by_prio: with ALUA the active/optimized paths carry "
        "the I/O and the others stand by). dm backend only. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "path_selector",
        '"service-time 0" | "queue-length 0" | "round-robin 0"',
        _toml_value(_D.path_selector),
        "The dm path selector that spreads I/O over the paths of the active group: least "
        "outstanding bytes relative to throughput (service-time), fewest outstanding I/Os "
        '(queue-length) or plain rotation (round-robin). A bare name ("round-robin") is '
        "accepted and completed. dm backend only. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "features",
        "list of strings",
        _toml_value(_D.features),
        "Extra dm-multipath table features, one string per feature with its arguments, "
        'e.g. ["pg_init_retries 50", "queue_mode bio"]. Accepted: pg_init_retries N, '
        "pg_init_delay_msecs N, queue_mode bio|rq|mq. queue_if_no_path is refused (say "
        "no_path_retry instead: two knobs for one behaviour disagree sooner or later), and "
        "so is retain_attached_hw_handler (see retain_hwhandler). " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "hardware_handler",
        '"" | "alua" | "emc" | "rdac" | "hp_sw"',
        _toml_value(_D.hardware_handler),
        "The SCSI device handler the table names. The default names none: since Linux 4.3 "
        "the SCSI layer attaches scsi_dh_alua by itself to every device that reports ALUA "
        "support when it is scanned, and dm-multipath keeps an attached handler; naming "
        '"alua" for a device without ALUA makes the table fail to load. Name a handler '
        "only for arrays that need a non-ALUA one (emc, rdac, hp_sw). " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "retain_hwhandler",
        "boolean",
        _toml_value(_D.retain_hwhandler),
        "Keep the device handler the SCSI layer attached to a path rather than the one "
        "hardware_handler names. Kernels since 4.3 always do; false is accepted so that "
        "configurations written for older kernels load, and changes nothing on them.",
    ),
    OptionDoc(
        "defaults",
        "prio",
        '"alua" | "const"',
        _toml_value(_D.prio.value),
        "Where path priorities come from: the path's ALUA access state (REPORT TARGET PORT "
        "GROUPS: active/optimized above active/non-optimized above standby), or the same "
        "for every path (const). Paths of a device without ALUA support all get the same "
        "priority under alua too. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "failback",
        '"immediate" | "manual" | integer >= 1',
        _toml_value(_D.failback),
        "When a map moves its I/O back to a better path group that has become usable "
        "again: at once, never by itself (an administrator switches groups), or after the "
        "group has stayed usable for that many seconds (so that a flapping path does not "
        "drag I/O back and forth). " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "no_path_retry",
        '"queue" | "fail" | integer >= 1',
        _toml_value(_D.no_path_retry),
        "What happens to I/O once the last path of a map has failed: queue it until a path "
        "returns, however long that takes (processes doing I/O then hang and cannot be "
        "killed); fail it at once (a short blip becomes file system errors); or queue it "
        "for that many checks (about N times polling_interval seconds), then fail it. The "
        "default, 12 checks (about 12 s), rides out the seconds-long outages that fabric "
        "events and controller failovers cause without ever hanging applications for "
        "good. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "checker",
        '"tur" | "directio" | "none"',
        _toml_value(_D.checker.value),
        "How paths are tested: SCSI TEST UNIT READY through SG_IO (tur: cheap, reads no "
        "data), a read of one block with O_DIRECT (directio: for devices without SCSI "
        "pass-through), or not at all (none: nothing is sent to the paths, and their "
        "state is what the kernel reports after I/O errors). " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "polling_interval",
        "seconds (0.1 to 3600)",
        _toml_value(_D.polling_interval),
        "Time between two checks of a path. Failed paths are always checked this often, "
        "so a path that comes back is reinstated within about this time.",
    ),
    OptionDoc(
        "defaults",
        "max_polling_interval",
        "seconds (polling_interval to 3600)",
        "polling_interval",
        "The longest time between two checks of a healthy path: after a run of good "
        "checks a path's interval may grow up to this; any change brings it back to "
        "polling_interval. By default it equals polling_interval (no growth), so that an "
        "idle path that dies is noticed within one polling_interval too, not only one "
        "carrying I/O (the kernel fails those at once). A check costs one small SCSI "
        "command; on hosts with thousands of paths raise this to check healthy paths less "
        "often.",
    ),
    OptionDoc(
        "defaults",
        "checker_timeout",
        "seconds (0.1 to 300)",
        _toml_value(_D.checker_timeout),
        "How long one check may take. A path answers TEST UNIT READY in well under a "
        "millisecond; a check still unanswered after this time is abandoned and counts as "
        "pending (neither up nor down). Far below the 30 s SCSI command timeout, so that a "
        "hung path is reported while it hangs.",
    ),
    OptionDoc(
        "defaults",
        "user_friendly_names",
        "boolean",
        _toml_value(_D.user_friendly_names),
        "Name maps alias_prefix plus letters (mpatha, mpathb, ..., mpathz, mpathaa, ...), "
        "remembered per WWID in bindings_file, instead of by WWID. An alias in "
        "[[multipaths]] wins over both.",
    ),
    OptionDoc(
        "defaults",
        "alias_prefix",
        "string",
        _toml_value(_D.alias_prefix),
        "The prefix of user-friendly names: letters, digits, '_', '.', '-'.",
    ),
    OptionDoc(
        "defaults",
        "find_multipaths",
        '"strict" | "on" | "greedy"',
        _toml_value(_D.find_multipaths.value),
        "Which devices become maps: only WWIDs known from wwids_file or [[multipaths]] "
        "(strict); those and every WWID seen through at least two non-blacklisted paths "
        "(on); or every non-blacklisted device, even with one path (greedy). A WWID that "
        "became a map is remembered in wwids_file, so it stays a map when it is down to one "
        "path or after a reboot.",
    ),
    OptionDoc(
        "defaults",
        "uid_attribute",
        "list of udev property names",
        _toml_value(_D.uid_attribute),
        "The udev properties tried, in order, for a path's WWID; the first one present "
        "and not empty wins. ID_SERIAL first gives the WWIDs multipath-tools uses, so its "
        "bindings and wwids files carry over.",
    ),
    OptionDoc(
        "defaults",
        "bindings_file",
        "absolute path",
        _toml_value(_D.bindings_file),
        'The user-friendly names, one "alias wwid" line each: the format of multipath-'
        "tools' /etc/multipath/bindings, which can be copied here unchanged. Rewritten "
        "atomically (temporary file, fsync, rename).",
    ),
    OptionDoc(
        "defaults",
        "wwids_file",
        "absolute path",
        _toml_value(_D.wwids_file),
        'The WWIDs that have been maps, one "/wwid/" line each: the format of multipath-'
        "tools' /etc/multipath/wwids. LVM reads this format: point devices/"
        "multipath_wwids_file in lvm.conf(5) here so that LVM ignores the paths of maps.",
    ),
    OptionDoc(
        "defaults",
        "socket",
        "absolute path",
        _toml_value(_D.socket),
        "dmpathd's control socket, where mpathctl sends its requests.",
    ),
    OptionDoc(
        "defaults",
        "dm_uuid_prefix",
        "string",
        _toml_value(_D.dm_uuid_prefix),
        "Start of the dm UUID of every map dmpath creates (the UUID is this plus the "
        "WWID); it is how dmpath tells its maps from others. Deliberately not multipath-"
        "tools' mpath-: multipath-tools' udev rules and multipathd treat every map whose "
        "UUID starts with mpath- as theirs and act on it and on its paths, so the two "
        "tools must never claim the same maps. Prefixes that belong to other tools "
        "(mpath-, LVM-, CRYPT-, partN-) are refused.",
    ),
    OptionDoc(
        "defaults",
        "flush_on_last_del",
        "boolean",
        _toml_value(_D.flush_on_last_del),
        "Remove a map when its last path is removed, unless the map is open. false keeps "
        "the map (its I/O queued or failed as no_path_retry says) so that a path coming "
        "back finds it.",
    ),
    OptionDoc(
        "defaults",
        "coalesce_ms",
        "milliseconds (0 to 10000)",
        _toml_value(_D.coalesce_ms),
        "A burst of udev events (a rescan, a fabric event) is gathered for this long and "
        "acted on once. 0 acts on every event at once.",
    ),
    # ---- blacklist / blacklist_exceptions
    OptionDoc(
        "blacklist",
        "devnode",
        "list of regular expressions",
        _toml_value(BUILTIN_BLACKLIST.devnode),
        "Kernel device names (sda, nvme0n1): a device whose name matches is not a path.",
    ),
    OptionDoc(
        "blacklist",
        "wwid",
        "list of regular expressions",
        "[]",
        "WWIDs: a device whose WWID matches is not a path.",
    ),
    OptionDoc(
        "blacklist",
        "property",
        "list of regular expressions",
        "[]",
        "udev property NAMES (not values): a device that has a property whose name matches "
        "is not a path, unless that same name also matches blacklist_exceptions.property. "
        "In [blacklist_exceptions] the list is also a requirement: when it is not empty, a "
        "device must have at least one property whose name matches, or it is not a path. "
        "The built-in requirement is "
        + _toml_value(BUILTIN_EXCEPTIONS.property)
        + ' (a SCSI identifier or a WWN); to lift it, add "." to '
        "blacklist_exceptions.property.",
    ),
    OptionDoc(
        "blacklist",
        "protocol",
        "list of regular expressions",
        _toml_value(BUILTIN_BLACKLIST.protocol),
        "The path's transport as mpathctl shows it: scsi:fcp, scsi:iscsi, scsi:sas, "
        "scsi:ata, scsi:usb, scsi:unspec (no transport class, e.g. scsi_debug or "
        "virtio-scsi), nvme:pcie, nvme:tcp, nvme:rdma, nvme:fc, nvme:loop, nvme:unspec, "
        "ccw, cciss or undef.",
    ),
    OptionDoc(
        "blacklist.device",
        "vendor",
        "regular expression",
        "",
        "Matched against the SCSI vendor of a device (as in sysfs, without padding). A "
        "device matches a table when every expression the table gives matches; at least "
        "one of vendor and product is required.",
    ),
    OptionDoc(
        "blacklist.device",
        "product",
        "regular expression",
        "",
        "Matched against the SCSI product (model) of a device.",
    ),
    # ---- multipaths
    OptionDoc(
        "multipaths",
        "wwid",
        "string (required)",
        "",
        "The WWID of the map this table is about; each WWID at most once.",
    ),
    OptionDoc(
        "multipaths",
        "alias",
        "string",
        "",
        "The map's name, instead of a user-friendly name or the WWID: letters, digits and "
        "'_', '.', '+', ':', '@', '-', starting with a letter or digit, at most 127 "
        "characters; each alias at most once. A user-friendly name is never given out if "
        "an alias here already uses it.",
    ),
    # ---- devices
    OptionDoc(
        "devices",
        "vendor",
        "regular expression",
        "",
        "Matched against the SCSI vendor of a path (sysfs, without padding).",
    ),
    OptionDoc(
        "devices",
        "product",
        "regular expression",
        "",
        "Matched against the SCSI product (model) of a path. A table applies to a map when "
        "every expression it gives matches; at least one of vendor and product is "
        "required.",
    ),
)


def _docstring_table() -> str:
    width = max(len(f"{o.section}.{o.name}") for o in OPTIONS)
    lines = ["", "Options (section.key = default: type)", ""]
    for o in OPTIONS:
        default = o.default or "(none)"
        lines.append(f"    {o.section + '.' + o.name:<{width}}  = {default}: {o.kind}")
    lines.append("")
    lines.extend(
        textwrap.wrap(
            "[[devices]] and [[multipaths]] may also set: " + ", ".join(OVERRIDABLE) + ".",
            width=88,
            initial_indent="    ",
            subsequent_indent="    ",
        )
    )
    return "\n".join(lines) + "\n"


__doc__ = (__doc__ or "") + _docstring_table()


# --------------------------------------------------------------------------- line finding

_KEYPART = r'(?:"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)'
_DOTTED = rf"{_KEYPART}(?:\s*\.\s*{_KEYPART})*"
_HEADER_RE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(rf"^\s*({_DOTTED})\s*=")
_KEYPART_RE = re.compile(_KEYPART)


def _norm_key(dotted: str) -> str:
    parts = []
    for m in _KEYPART_RE.finditer(dotted):
        p = m.group(0)
        if p[:1] in ('"', "'"):
            p = p[1:-1]
        parts.append(p)
    return ".".join(parts)


PathPart: TypeAlias = str | int
KeyPath: TypeAlias = tuple[PathPart, ...]


class _LineIndex:
    """Where each table header and key sits in the TOML text (a heuristic, good enough).

    Tables are identified by their dotted name and, for arrays of tables, by their
    occurrence (``[[multipaths]]`` number 0, 1, ...). Lines inside multi-line strings are
    skipped so that text looking like ``key =`` in a string does not count.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")  # as tomllib counts lines
        self.headers: dict[tuple[str, int], int] = {("", 0): 0}
        self.keys: dict[tuple[str, int], dict[str, int]] = {("", 0): {}}
        counts: dict[str, int] = {}
        current = ("", 0)
        in_string: str | None = None
        for lineno, line in enumerate(self.lines, 1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            hm = _HEADER_RE.match(line)
            if hm:
                name = _norm_key(hm.group(2))
                occurrence = 0
                if hm.group(1) == "[[":
                    occurrence = counts.get(name, 0)
                    counts[name] = occurrence + 1
                current = (name, occurrence)
                self.headers.setdefault(current, lineno)
                self.keys.setdefault(current, {})
                continue
            km = _KEY_RE.match(line)
            rest = line
            if km:
                self.keys[current].setdefault(_norm_key(km.group(1)), lineno)
                rest = line[km.end() :]
            for delim in ('"""', "'''"):  # a multi-line string opens (list items too)
                if rest.count(delim) % 2 == 1:
                    in_string = delim
                    break

    def lookup(self, path: KeyPath, needle: str | None = None) -> int | None:
        """The line of ``path`` (e.g. ("multipaths", 1, "alias")), or of its table."""
        fallback: int | None = None
        for k in range(len(path), -1, -1):
            head, rest = path[:k], path[k:]
            if head and isinstance(head[-1], int):
                table = (".".join(str(p) for p in head if isinstance(p, str)), head[-1])
            else:
                table = (".".join(str(p) for p in head if isinstance(p, str)), 0)
            if table not in self.headers:
                continue
            if not rest:
                if fallback is None and table != ("", 0):
                    fallback = self.headers[table]
                continue
            key_parts: list[str] = []
            for p in rest:
                if isinstance(p, int):
                    break
                key_parts.append(p)
            if not key_parts:
                continue
            line = self.keys[table].get(".".join(key_parts))
            if line is not None:
                return self._refine(line, needle)
            if fallback is None and table != ("", 0):
                fallback = self.headers[table]
        return fallback

    def _refine(self, line: int, needle: str | None) -> int:
        """For a list element: the line, from the key's on, that holds the element."""
        if not needle:
            return line
        for i in range(line - 1, len(self.lines)):
            text = self.lines[i]
            if i > line - 1 and (_KEY_RE.match(text) or _HEADER_RE.match(text)):
                break
            if needle in text:
                return i + 1
        return line


# --------------------------------------------------------------------------- validation


def dotted(path: KeyPath) -> str:
    """``("multipaths", 1, "alias")`` → ``"multipaths[1].alias"``."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out


class _Ctx:
    def __init__(self, source: str, index: _LineIndex | None) -> None:
        self.source = source
        self.index = index

    def fail(self, path: KeyPath, detail: str, needle: str | None = None) -> NoReturn:
        line = self.index.lookup(path, needle) if self.index is not None else None
        raise ConfigError(self.source, detail, key=dotted(path), line=line)


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _got(value: object) -> str:
    if isinstance(value, str | int | float | bool):
        return f"{_type_name(value)} ({_toml_value(value)})"
    return _type_name(value)


Validator: TypeAlias = Callable[[_Ctx, KeyPath, object], Any]


def _string(ctx: _Ctx, path: KeyPath, value: object) -> str:
    if not isinstance(value, str):
        ctx.fail(path, f"must be a string, not {_got(value)}")
    return value


def _choice(choices: Sequence[str]) -> Validator:
    def check(ctx: _Ctx, path: KeyPath, value: object) -> str:
        s = _string(ctx, path, value)
        if s not in choices:
            shown = ", ".join(_toml_string(c) for c in choices)
            ctx.fail(path, f"must be one of {shown}, not {_toml_string(s)}")
        return s

    return check


def _enum(kind: type[StrEnum]) -> Validator:
    choose = _choice([m.value for m in kind])

    def check(ctx: _Ctx, path: KeyPath, value: object) -> StrEnum:
        return kind(choose(ctx, path, value))

    return check


def _bool(ctx: _Ctx, path: KeyPath, value: object) -> bool:
    if not isinstance(value, bool):
        ctx.fail(path, f"must be true or false, not {_got(value)}")
    return value


def _int(lo: int, hi: int) -> Validator:
    def check(ctx: _Ctx, path: KeyPath, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            ctx.fail(path, f"must be an integer, not {_got(value)}")
        if not lo <= value <= hi:
            ctx.fail(path, f"must be between {lo} and {hi}, not {value}")
        return value

    return check


def _seconds(lo: float, hi: float) -> Validator:
    def check(ctx: _Ctx, path: KeyPath, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            ctx.fail(path, f"must be a number of seconds, not {_got(value)}")
        f = float(value)
        if not math.isfinite(f) or not lo <= f <= hi:
            ctx.fail(path, f"must be between {lo:g} and {hi:g} seconds, not {value}")
        return f

    return check


def _word_or_count(words: Sequence[str], what: str) -> Validator:
    """``failback`` / ``no_path_retry``: one of some words, or a positive integer."""

    def check(ctx: _Ctx, path: KeyPath, value: object) -> str | int:
        if isinstance(value, str) and value in words:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                ctx.fail(path, f"a number of {what} must be at least 1, not {value}")
            return value
        if isinstance(value, str) and value.isdigit():
            ctx.fail(path, f"write a number of {what} without quotes: {int(value)}")
        shown = " or ".join(_toml_string(w) for w in words)
        ctx.fail(path, f"must be {shown} or a number of {what}, not {_got(value)}")

    return check


def _list(item: Validator) -> Validator:
    def check(ctx: _Ctx, path: KeyPath, value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            ctx.fail(path, f"must be a list, not {_got(value)}")
        return tuple(item(ctx, (*path, i), v) for i, v in enumerate(value))

    return check


def _regex(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    needle = _toml_string(s)[1:-1]
    if s.startswith("!"):
        ctx.fail(
            path,
            f"inverted patterns ({_toml_string(s)}) are not supported: "
            "list what to admit in blacklist_exceptions instead",
            needle,
        )
    try:
        re.compile(s)
    except re.error as exc:
        ctx.fail(path, f"invalid regular expression {_toml_string(s)}: {exc}", needle)
    return s


_PROPERTY_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


def _property_name(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not _PROPERTY_NAME_RE.match(s):
        ctx.fail(path, f"{_toml_string(s)} is not a udev property name", s)
    return s


def _uid_attribute(ctx: _Ctx, path: KeyPath, value: object) -> tuple[str, ...]:
    names: tuple[str, ...] = _list(_property_name)(ctx, path, value)
    if not names:
        ctx.fail(path, "needs at least one udev property name")
    return names


def _abs_path(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not s.startswith("/") or "\0" in s or s.endswith("/"):
        ctx.fail(path, f"must be an absolute file path, not {_toml_string(s)}")
    return s


def _path_selector(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = " ".join(_string(ctx, path, value).split())
    if s in PATH_SELECTORS:
        return s
    if f"{s} 0" in PATH_SELECTORS:
        return f"{s} 0"
    shown = ", ".join(_toml_string(c) for c in PATH_SELECTORS)
    ctx.fail(path, f"must be one of {shown}, not {_toml_string(s)}")


_FEATURE_ARGS: Final[dict[str, Callable[[str], bool]]] = {
    "pg_init_retries": lambda a: a.isdigit() and 1 <= int(a) <= 50,
    "pg_init_delay_msecs": lambda a: a.isdigit() and int(a) <= 60000,
    "queue_mode": lambda a: a in ("bio", "rq", "mq"),
}
_FEATURE_REFUSED: Final = {
    "queue_if_no_path": 'set no_path_retry = "queue" (or a number of checks) instead',
    "retain_attached_hw_handler": "kernels since 4.3 always retain it; see retain_hwhandler",
    "no_partitions": "not a kernel feature; dmpath never creates partition maps",
}


def _feature(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    words = s.split()
    needle = _toml_string(s)[1:-1]
    if not words:
        ctx.fail(path, "an empty feature", needle)
    name, args = words[0], words[1:]
    if name in _FEATURE_REFUSED:
        ctx.fail(path, f"feature {name} is not accepted: {_FEATURE_REFUSED[name]}", needle)
    if name not in _FEATURE_ARGS:
        ctx.fail(
            path,
            f"unknown feature {_toml_string(name)} (known: {', '.join(_FEATURE_ARGS)})",
            needle,
        )
    if len(args) != 1 or not _FEATURE_ARGS[name](args[0]):
        ctx.fail(path, f"feature {name} takes one valid argument, not {s!r}", needle)
    return " ".join(words)


def _features(ctx: _Ctx, path: KeyPath, value: object) -> tuple[str, ...]:
    feats: tuple[str, ...] = _list(_feature)(ctx, path, value)
    seen: set[str] = set()
    for i, f in enumerate(feats):
        name = f.split()[0]
        if name in seen:
            ctx.fail((*path, i), f"feature {name} given twice", f)
        seen.add(name)
    return feats


_NAME_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+:@-]{0,126}$")
_UUID_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:+-]{1,32}$")
_FOREIGN_UUID_PREFIXES: Final = (
    ("mpath-", "multipath-tools"),
    ("LVM-", "LVM"),
    ("CRYPT-", "cryptsetup"),
)
_PART_PREFIX_RE = re.compile(r"^part[0-9]")


def _alias_prefix(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not _NAME_PREFIX_RE.match(s):
        ctx.fail(path, f"{_toml_string(s)}: use 1 to 32 letters, digits, '_', '.' or '-'")
    return s


def _alias(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not _ALIAS_RE.match(s):
        ctx.fail(
            path,
            f"{_toml_string(s)} is not a usable map name: letters, digits, '_', '.', '+', "
            "':', '@', '-', starting with a letter or digit, at most 127 characters",
        )
    return s


def _dm_uuid_prefix(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not _UUID_PREFIX_RE.match(s):
        ctx.fail(path, f"{_toml_string(s)}: use 1 to 32 letters, digits, '_', '.', ':', '+', '-'")
    for prefix, owner in _FOREIGN_UUID_PREFIXES:
        if s.lower().startswith(prefix.lower()):
            ctx.fail(
                path,
                f"{_toml_string(s)} starts with {prefix}, which {owner} owns: its tools would "
                "treat dmpath's maps as theirs",
            )
    if _PART_PREFIX_RE.match(s):
        ctx.fail(path, f"{_toml_string(s)}: partN- prefixes mark partition maps (kpartx)")
    return s


_WWID_RE = re.compile(r"^[^\s/#]+$")


def valid_wwid(wwid: str) -> bool:
    """Whether a WWID can be stored in the bindings and wwids files (and named in a map)."""
    return bool(_WWID_RE.match(wwid))


def _wwid(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not valid_wwid(s):
        ctx.fail(path, f"{_toml_string(s)} is not a WWID (empty, or has spaces, '/' or '#')")
    return s


_DEFAULTS_SCHEMA: Final[dict[str, Validator]] = {
    "backend": _enum(Backend),
    "path_grouping_policy": _enum(GroupingPolicy),
    "path_selector": _path_selector,
    "features": _features,
    "hardware_handler": _choice(HARDWARE_HANDLERS),
    "retain_hwhandler": _bool,
    "prio": _enum(Prio),
    "failback": _word_or_count(("immediate", "manual"), "seconds"),
    "no_path_retry": _word_or_count(("queue", "fail"), "checks"),
    "checker": _enum(Checker),
    "polling_interval": _seconds(0.1, 3600.0),
    "max_polling_interval": _seconds(0.1, 3600.0),
    "checker_timeout": _seconds(0.1, 300.0),
    "user_friendly_names": _bool,
    "alias_prefix": _alias_prefix,
    "find_multipaths": _enum(FindMultipaths),
    "uid_attribute": _uid_attribute,
    "bindings_file": _abs_path,
    "wwids_file": _abs_path,
    "socket": _abs_path,
    "dm_uuid_prefix": _dm_uuid_prefix,
    "flush_on_last_del": _bool,
    "coalesce_ms": _int(0, 10000),
}
assert set(_DEFAULTS_SCHEMA) == {f.name for f in fields(Defaults)}
assert set(OVERRIDABLE) <= set(_DEFAULTS_SCHEMA)

_FILTER_KEYS: Final = ("devnode", "wwid", "property", "protocol", "device")
_TOP_SECTIONS: Final = ("defaults", "blacklist", "blacklist_exceptions", "multipaths", "devices")


def _table(ctx: _Ctx, path: KeyPath, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        ctx.fail(path, f"must be a table, not {_got(value)}")
    return value


def _array_of_tables(ctx: _Ctx, path: KeyPath, value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        name = dotted(path)
        ctx.fail(path, f"must be an array of tables ([[{name}]]), not {_got(value)}")
    return [_table(ctx, (*path, i), v) for i, v in enumerate(value)]


#: multipath.conf spellings whose dmpath name difflib would not guess
_SYNONYMS: Final = {
    "model": "product",
    "path_checker": "checker",
    "retain_attached_hw_handler": "retain_hwhandler",
}


def _reject_unknown(
    ctx: _Ctx, path: KeyPath, table: Mapping[str, Any], known: Iterable[str]
) -> None:
    known = list(known)
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            if not close and _SYNONYMS.get(key) in known:
                close = [_SYNONYMS[key]]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"[{dotted(path)}]" if path else "the top level"
            ctx.fail((*path, key), f"unknown option in {where}{hint}")


def _merge_unique(builtin: Iterable[str], given: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*builtin, *given]))


def _device_match(ctx: _Ctx, path: KeyPath, table: Mapping[str, Any]) -> DeviceMatch:
    _reject_unknown(ctx, path, table, ("vendor", "product"))
    vendor = _regex(ctx, (*path, "vendor"), table["vendor"]) if "vendor" in table else ""
    product = _regex(ctx, (*path, "product"), table["product"]) if "product" in table else ""
    if not vendor and not product:
        ctx.fail(path, "needs a non-empty vendor or product (or both)")
    return DeviceMatch(vendor, product)


def _filter(ctx: _Ctx, path: KeyPath, value: object, builtin: FilterList) -> FilterList:
    table = _table(ctx, path, value)
    _reject_unknown(ctx, path, table, _FILTER_KEYS)
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("devnode", "wwid", "property", "protocol"):
        given: tuple[str, ...] = (
            _list(_regex)(ctx, (*path, key), table[key]) if key in table else ()
        )
        lists[key] = _merge_unique(getattr(builtin, key), given)
    devices: list[DeviceMatch] = list(builtin.device)
    if "device" in table:
        for i, t in enumerate(_array_of_tables(ctx, (*path, "device"), table["device"])):
            dm = _device_match(ctx, (*path, "device", i), t)
            if dm not in devices:
                devices.append(dm)
    return FilterList(device=tuple(devices), **lists)


def _overrides(ctx: _Ctx, path: KeyPath, table: Mapping[str, Any]) -> Overrides:
    values = {
        key: _DEFAULTS_SCHEMA[key](ctx, (*path, key), table[key])
        for key in OVERRIDABLE
        if key in table
    }
    return Overrides(**values)


def _defaults(ctx: _Ctx, value: object) -> Defaults:
    path: KeyPath = ("defaults",)
    table = _table(ctx, path, value)
    _reject_unknown(ctx, path, table, _DEFAULTS_SCHEMA)
    values = {k: _DEFAULTS_SCHEMA[k](ctx, (*path, k), v) for k, v in table.items()}
    polling = values.get("polling_interval", _D.polling_interval)
    values.setdefault("max_polling_interval", polling)
    if values["max_polling_interval"] < polling:
        ctx.fail(
            (*path, "max_polling_interval"),
            f"must be at least polling_interval ({polling:g}), not "
            f"{values['max_polling_interval']:g}",
        )
    return Defaults(**values)


def config_from_dict(
    data: Mapping[str, Any], source: str = "<dict>", text: str | None = None
) -> Config:
    """Validate an already-decoded TOML document (``text``, if given, locates errors)."""
    ctx = _Ctx(source, _LineIndex(text) if text is not None else None)
    _reject_unknown(ctx, (), data, _TOP_SECTIONS)
    defaults = _defaults(ctx, data.get("defaults", {}))
    blacklist = _filter(ctx, ("blacklist",), data.get("blacklist", {}), BUILTIN_BLACKLIST)
    exceptions = _filter(
        ctx, ("blacklist_exceptions",), data.get("blacklist_exceptions", {}), BUILTIN_EXCEPTIONS
    )
    multipaths: list[MultipathEntry] = []
    wwid_seen: dict[str, int] = {}
    alias_seen: dict[str, int] = {}
    for i, t in enumerate(_array_of_tables(ctx, ("multipaths",), data.get("multipaths", []))):
        path: KeyPath = ("multipaths", i)
        _reject_unknown(ctx, path, t, ("wwid", "alias", *OVERRIDABLE))
        if "wwid" not in t:
            ctx.fail((*path, "wwid"), "missing: every [[multipaths]] table names its WWID")
        wwid = _wwid(ctx, (*path, "wwid"), t["wwid"])
        if wwid in wwid_seen:
            ctx.fail(
                (*path, "wwid"), f"WWID {wwid} already configured in multipaths[{wwid_seen[wwid]}]"
            )
        wwid_seen[wwid] = i
        alias = _alias(ctx, (*path, "alias"), t["alias"]) if "alias" in t else None
        if alias is not None:
            if alias in alias_seen:
                ctx.fail(
                    (*path, "alias"),
                    f"alias {alias} already names multipaths[{alias_seen[alias]}]: two WWIDs "
                    "under one name would mix their paths",
                )
            alias_seen[alias] = i
        multipaths.append(MultipathEntry(wwid, alias, _overrides(ctx, path, t)))
    devices: list[DeviceEntry] = []
    for i, t in enumerate(_array_of_tables(ctx, ("devices",), data.get("devices", []))):
        path = ("devices", i)
        _reject_unknown(ctx, path, t, ("vendor", "product", *OVERRIDABLE))
        vendor = _regex(ctx, (*path, "vendor"), t["vendor"]) if "vendor" in t else ""
        product = _regex(ctx, (*path, "product"), t["product"]) if "product" in t else ""
        if not vendor and not product:
            ctx.fail(path, "needs a non-empty vendor or product (or both)")
        devices.append(DeviceEntry(vendor, product, _overrides(ctx, path, t)))
    return Config(
        defaults=defaults,
        blacklist=blacklist,
        blacklist_exceptions=exceptions,
        multipaths=tuple(multipaths),
        devices=tuple(devices),
        source=source,
    )


_TOML_POS_RE = re.compile(r"\(at line (\d+), column \d+\)")


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate the text of a configuration file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POS_RE.search(msg)
        detail = _TOML_POS_RE.sub("", msg).strip() or "invalid TOML"
        raise ConfigError(
            source, f"invalid TOML: {detail}", line=int(m.group(1)) if m else None
        ) from exc
    return config_from_dict(data, source, text)


def load_config(path: str | Path = DEFAULT_CONFIG_PATH) -> Config:
    """Read ``path``; a file that does not exist gives the defaults (dmpath needs no file).

    Anything else that stops us reading it (permissions, a directory, bad UTF-8) is an
    error: running on defaults the administrator did not choose would be worse.
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return replace(Config(), source=source)
    except OSError as exc:
        raise ConfigError(source, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(source, "not UTF-8 text", line=line) from exc
    return parse_config(text, source)


# --------------------------------------------------------------------------- merging


def _matches(pattern: str, value: str) -> bool:
    return not pattern or re.search(pattern, value) is not None


def effective_options(cfg: Config, wwid: str, vendor: str, product: str) -> MapOptions:
    """The options of the map of ``wwid``: defaults < matching [[devices]] < [[multipaths]].

    Every [[devices]] table whose expressions all match applies, in file order, so a later
    table overrides an earlier one option by option. ``vendor``/``product`` are compared
    stripped of the padding SCSI INQUIRY keeps.
    """
    d = cfg.defaults
    values: dict[str, Any] = {name: getattr(d, name) for name in OVERRIDABLE}
    origins: dict[str, str] = {}

    def apply(ov: Overrides, origin: str) -> None:
        for name in OVERRIDABLE:
            v = getattr(ov, name)
            if v is not None:
                values[name] = v
                origins[name] = origin

    vendor, product = vendor.strip(), product.strip()
    for i, dev in enumerate(cfg.devices):
        if _matches(dev.vendor, vendor) and _matches(dev.product, product):
            apply(dev.overrides, f"devices[{i}]")
    alias = None
    for i, mp in enumerate(cfg.multipaths):
        if mp.wwid == wwid:
            apply(mp.overrides, f"multipaths[{i}]")
            alias = mp.alias
            break
    return MapOptions(
        wwid=wwid,
        alias=alias,
        user_friendly_names=d.user_friendly_names,
        alias_prefix=d.alias_prefix,
        origins=tuple(sorted(origins.items())),
        **values,
    )


def configured_wwids(cfg: Config) -> frozenset[str]:
    """WWIDs the administrator named in [[multipaths]]: "known" for find_multipaths."""
    return frozenset(mp.wwid for mp in cfg.multipaths)


def configured_aliases(cfg: Config) -> dict[str, str]:
    """alias → WWID of [[multipaths]]: names a user-friendly name must never take."""
    return {mp.alias: mp.wwid for mp in cfg.multipaths if mp.alias is not None}


# --------------------------------------------------------------------------- output


def _plain(value: object) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _overrides_dict(ov: Overrides) -> dict[str, Any]:
    return {n: _plain(getattr(ov, n)) for n in OVERRIDABLE if getattr(ov, n) is not None}


def _filter_dict(fl: FilterList) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: list(getattr(fl, k)) for k in ("devnode", "wwid", "property", "protocol")
    }
    out["device"] = [
        {k: v for k, v in (("vendor", d.vendor), ("product", d.product)) if v} for d in fl.device
    ]
    return out


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data (JSON- and TOML-ready) for ``show config``.

    Every option appears with its value, defaults included, and the blacklists include
    their built-in entries; feeding the result back to ``config_from_dict`` gives an equal
    ``Config``.
    """
    multipaths = []
    for mp in cfg.multipaths:
        entry: dict[str, Any] = {"wwid": mp.wwid}
        if mp.alias is not None:
            entry["alias"] = mp.alias
        entry.update(_overrides_dict(mp.overrides))
        multipaths.append(entry)
    devices = []
    for dev in cfg.devices:
        dentry: dict[str, Any] = {
            k: v for k, v in (("vendor", dev.vendor), ("product", dev.product)) if v
        }
        dentry.update(_overrides_dict(dev.overrides))
        devices.append(dentry)
    return {
        "defaults": {f.name: _plain(getattr(cfg.defaults, f.name)) for f in fields(Defaults)},
        "blacklist": _filter_dict(cfg.blacklist),
        "blacklist_exceptions": _filter_dict(cfg.blacklist_exceptions),
        "multipaths": multipaths,
        "devices": devices,
    }


def _toml_table(name: str, table: Mapping[str, Any], out: list[str]) -> None:
    out.append(f"[{name}]")
    subtables: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in table.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            subtables.append((key, value))
        elif isinstance(value, list) and not value and key == "device":
            continue
        else:
            out.append(f"{key} = {_toml_value(value)}")
    out.append("")
    for key, items in subtables:
        for item in items:
            _toml_array_item(f"{name}.{key}", item, out)


def _toml_array_item(name: str, table: Mapping[str, Any], out: list[str]) -> None:
    out.append(f"[[{name}]]")
    out.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    out.append("")


def config_to_toml(cfg: Config) -> str:
    """The effective configuration as a valid dmpath.toml (``mpathctl show config``)."""
    d = config_to_dict(cfg)
    out = [f"# effective configuration (from {cfg.source})", ""]
    for section in ("defaults", "blacklist", "blacklist_exceptions"):
        _toml_table(section, d[section], out)
    for section in ("multipaths", "devices"):
        for item in d[section]:
            _toml_array_item(section, item, out)
    return "\n".join(out)


# --------------------------------------------------------------------------- man page


def _roff_text(text: str) -> str:
    """Prose for a roff text line: backslashes escaped, no control character first."""
    s = text.replace("\\", "\\e")
    return "\\&" + s if s[:1] in (".", "'") else s


def _roff_code(text: str) -> str:
    """A literal (name, value): also '-' as a real minus, so it can be copied."""
    return _roff_text(text).replace("-", "\\-")


def render_man_options(section: str) -> str:
    """The option list of one section as man(7) markup (between the GENERATED markers).

    Section "never" is the fixed never-a-path rule, one alternative per line.
    """
    if section == "never":
        return "\n".join(
            _roff_code(("^" if i else "") + alt)
            for i, alt in enumerate(NEVER_PATH_DEVNODE.split("|^"))
        )
    out: list[str] = []
    for o in OPTIONS:
        if o.section != section:
            continue
        out.append(".TP")
        head = f"\\fB{_roff_code(o.name)}\\fR"
        if o.default:
            head += f" = \\fI{_roff_code(o.default)}\\fR"
        out.append(head)
        out.append(f"Type: {_roff_code(o.kind)}.")
        out.append(".br")
        out.append(_roff_text(o.text))
    return "\n".join(out)


_MARK_RE = re.compile(
    r"(^\.\\\" BEGIN GENERATED ([a-z_.]+)\n)(.*?)(^\.\\\" END GENERATED \2$)", re.M | re.S
)


def update_man_page(text: str) -> str:
    """``text`` with every GENERATED block replaced by ``render_man_options`` output."""
    return _MARK_RE.sub(
        lambda m: m.group(1) + render_man_options(m.group(2)) + "\n" + m.group(4), text
    )


def _main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] in ("--update-man", "--check-man"):
        page = Path(argv[1])
        old = page.read_text(encoding="utf-8")
        new = update_man_page(old)
        if argv[0] == "--check-man":
            print(f"{page}: {'up to date' if new == old else 'OUT OF DATE'}")
            return 0 if new == old else 1
        page.write_text(new, encoding="utf-8")
        return 0
    if len(argv) == 1 and argv[0] == "--defaults":
        print(config_to_toml(Config()))
        return 0
    print(
        "usage: python -m dmpath.config --update-man|--check-man PAGE | --defaults", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
