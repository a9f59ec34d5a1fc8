"""Pure parsers for md's view of the world: ``/proc/mdstat`` and what ``mdadm`` prints.

Nothing here does I/O (``dmpath.kernel.mdadm`` does, and calls these), so every parser is
tested against outputs captured on the lab's 6.1 kernel (``shared/fixtures/md/``).

Facts the parsers encode, because they are easy to get wrong:

- The number in ``sda[1]`` on an mdstat array line is the member's *descriptor number*
  (``desc_nr``), not its slot in the array. A path that is failed, removed and added back
  gets a new descriptor number (``sda[2]``) while it fills the old slot 1, so the
  ``[UU_]`` map — which is indexed by slot — is the only place slots show up.
- ``[n/m]``: n is the array's raid disks (slots), m the slots holding a working (in-sync)
  member, i.e. n minus the kernel's ``degraded`` count. The map has one character per slot,
  ``U`` for a working member and ``_`` otherwise. ``format_status_brackets`` renders the same
  string from slot states so dm maps can be shown the md way.
- Flags after a member: ``(F)`` faulty, ``(S)`` spare, ``(W)`` write-mostly, ``(J)`` journal,
  ``(R)`` replacement. A faulty member shows only ``(W)``/``(J)`` before its ``(F)``.
- The multipath personality never fails its last working path: ``mdadm --fail`` on it still
  prints "set ... faulty" and exits 0, but mdstat keeps it ``U``. Trust mdstat, not mdadm.
- mdadm writes its one-line results ("added /dev/sda") to stderr, prefixed ``mdadm:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dmpath.errors import ParseError

# --------------------------------------------------------------------------------------
# [n/m] [UU_]
# --------------------------------------------------------------------------------------


def format_status_brackets(slots: Sequence[bool]) -> str:
    """``[n/m] [UU_]`` for slot states (True = working), as the md personalities print it.

    n is the number of slots, m the number of working ones; the map is in slot order. The
    daemon renders dm maps with this too, so an admin reads both backends the same way.
    """
    working = sum(1 for s in slots if s)
    marks = "".join("U" if s else "_" for s in slots)
    return f"[{len(slots)}/{working}] [{marks}]"


_BRACKETS_RE = re.compile(r"\[(\d+)/(\d+)\]\s+\[([U_]*)\]")
_NM_RE = re.compile(r"\[(\d+)/(\d+)\]")


def parse_status_brackets(text: str) -> tuple[int, int, tuple[bool, ...]]:
    """Inverse of ``format_status_brackets``: ``(raid_disks, working, slots)``.

    Finds the brackets anywhere in ``text`` (mdstat puts blocks and chunk sizes before
    them). The map must have one character per slot and m may not exceed n: anything else
    is not what a kernel prints, so it is refused rather than guessed at.
    """
    m = _BRACKETS_RE.search(text)
    if not m:
        raise ParseError("md status brackets", "no [n/m] [U_] found", text)
    n, working, marks = int(m.group(1)), int(m.group(2)), m.group(3)
    if len(marks) != n:
        raise ParseError("md status brackets", f"map has {len(marks)} slots, [n/m] says {n}", text)
    if working > n:
        raise ParseError("md status brackets", f"{working} working out of {n} slots", text)
    return n, working, tuple(c == "U" for c in marks)


# --------------------------------------------------------------------------------------
# /proc/mdstat
# --------------------------------------------------------------------------------------

MemberFlag = Literal["F", "S", "W", "J", "R"]
_FLAG_NAMES: frozenset[str] = frozenset("FSWJR")


@dataclass(frozen=True, slots=True)
class MdMember:
    """One member on an mdstat array line, e.g. ``sda[1](F)``."""

    name: str  #: kernel block device name ("sda"; "/" in names shows as "!")
    desc_nr: int  #: descriptor number in brackets, NOT the slot (see module docstring)
    flags: tuple[str, ...] = ()  #: flag letters in the order printed: F, S, W, J, R

    @property
    def faulty(self) -> bool:
        return "F" in self.flags

    @property
    def spare(self) -> bool:
        return "S" in self.flags

    @property
    def write_mostly(self) -> bool:
        return "W" in self.flags

    @property
    def journal(self) -> bool:
        return "J" in self.flags

    @property
    def replacement(self) -> bool:
        return "R" in self.flags

    def render(self) -> str:
        return f"{self.name}[{self.desc_nr}]" + "".join(f"({f})" for f in self.flags)


@dataclass(frozen=True, slots=True)
class MdSync:
    """A resync/recovery/reshape/check/repair progress line of a redundant array."""

    action: str  #: resync, recovery, reshape, check or repair
    percent: float | None  #: None while DELAYED or PENDING
    waiting: str | None  #: "DELAYED" / "PENDING", else None
    raw: str


@dataclass(frozen=True, slots=True)
class MdArray:
    """One array of ``/proc/mdstat``. Fields the kernel did not print are None."""

    name: str  #: "md0", "md127"
    state: Literal["active", "inactive"]
    personality: str | None  #: "multipath", "raid1"...; None when inactive
    members: tuple[MdMember, ...]
    read_only: str | None = None  #: "read-only" / "auto-read-only" when so marked
    blocks: int | None = None  #: size in 1 KiB blocks
    super_version: str | None = None  #: "1.2", "external:imsm", "non-persistent"; None = 0.90
    raid_disks: int | None = None  #: n of [n/m]
    working_disks: int | None = None  #: m of [n/m]
    slots: tuple[bool, ...] | None = None  #: the [UU_] map, per slot, True = working
    sync: MdSync | None = None
    bitmap: str | None = None  #: the "bitmap: ..." line, verbatim
    extra: tuple[str, ...] = ()  #: continuation lines we do not interpret, stripped

    @property
    def active(self) -> bool:
        return self.state == "active"

    @property
    def degraded(self) -> bool:
        """True when some slot has no working member (m < n)."""
        return (
            self.raid_disks is not None
            and self.working_disks is not None
            and self.working_disks < self.raid_disks
        )

    @property
    def status_brackets(self) -> str | None:
        """The ``[n/m] [UU_]`` text, re-rendered from the parsed slots."""
        if self.slots is None:
            return None
        return format_status_brackets(self.slots)

    def member(self, name: str) -> MdMember | None:
        """The member called ``name`` ("sda" or "/dev/sda"), if present."""
        short = name.removeprefix("/dev/")
        for mem in self.members:
            if mem.name == short:
                return mem
        return None


@dataclass(frozen=True, slots=True)
class MdStat:
    """All of ``/proc/mdstat``."""

    personalities: tuple[str, ...]
    arrays: tuple[MdArray, ...] = ()
    unused: tuple[str, ...] = ()  #: the "unused devices:" list ("<none>" gives ())

    def array(self, name: str) -> MdArray | None:
        """The array ``name`` ("md0" or "/dev/md0"); /dev/md/NAME links are not resolved."""
        short = name.removeprefix("/dev/")
        for arr in self.arrays:
            if arr.name == short:
                return arr
        return None

    @property
    def has_multipath(self) -> bool:
        return "multipath" in self.personalities


_PERS_PREFIX = "Personalities :"
_PERS_TOKEN_RE = re.compile(r"\[([^\[\]\s]+)\]")
_ARRAY_HEAD_RE = re.compile(r"^(\S+) : (\S+)(.*)$")
_MEMBER_RE = re.compile(r"^(?P<name>[^\s\[\]]+)\[(?P<desc>\d+)\](?P<flags>(?:\([A-Z]\))*)$")
_BLOCKS_RE = re.compile(r"^\s*(\d+) blocks\b")
_SUPER_RE = re.compile(r"\bsuper (\S+)")
_SYNC_RE = re.compile(
    r"\b(resync|recovery|reshape|check|repair)\s*=\s*(?:(\d+(?:\.\d+)?)%|(DELAYED|PENDING))"
)
_UNUSED_PREFIX = "unused devices:"


def parse_personalities(text: str) -> tuple[str, ...]:
    """The names on the ``Personalities :`` line, e.g. ``("multipath", "raid1")``.

    Raises ParseError when there is no such line: every mdstat the kernel writes has one.
    """
    for line in text.splitlines():
        if line.startswith(_PERS_PREFIX):
            rest = line[len(_PERS_PREFIX) :]
            names = tuple(_PERS_TOKEN_RE.findall(rest))
            if rest.strip() and len(names) != len(rest.split()):
                raise ParseError("/proc/mdstat", "personalities line is not [name] [name]", line)
            return names
        if line.strip():
            break
    raise ParseError("/proc/mdstat", "no 'Personalities :' line first", text)


def has_multipath_personality(mdstat_text: str) -> bool:
    """Whether the md multipath personality is registered (module loaded, kernel < 6.8).

    A predicate for start-up checks, so it never raises: text without a Personalities
    line (md not loaded, garbage) simply has no multipath personality.
    """
    try:
        return "multipath" in parse_personalities(mdstat_text)
    except ParseError:
        return False


def _parse_member(token: str, line: str) -> MdMember:
    m = _MEMBER_RE.match(token)
    if not m:
        raise ParseError("/proc/mdstat", f"member {token!r} is not NAME[N](FLAGS)", line)
    flags = tuple(re.findall(r"\(([A-Z])\)", m.group("flags")))
    for f in flags:
        if f not in _FLAG_NAMES:
            raise ParseError("/proc/mdstat", f"unknown member flag ({f})", line)
    return MdMember(m.group("name"), int(m.group("desc")), flags)


@dataclass
class _ArrayBuilder:
    """Mutable accumulator while reading one array's lines (kept private)."""

    name: str
    state: Literal["active", "inactive"]
    personality: str | None
    read_only: str | None
    members: list[MdMember]
    super_version: str | None = None
    blocks: int | None = None
    raid_disks: int | None = None
    working: int | None = None
    slots: tuple[bool, ...] | None = None
    sync: MdSync | None = None
    bitmap: str | None = None
    extra: list[str] = field(default_factory=list)
    seen_status: bool = False

    def build(self) -> MdArray:
        return MdArray(
            name=self.name,
            state=self.state,
            personality=self.personality,
            members=tuple(self.members),
            read_only=self.read_only,
            blocks=self.blocks,
            super_version=self.super_version,
            raid_disks=self.raid_disks,
            working_disks=self.working,
            slots=self.slots,
            sync=self.sync,
            bitmap=self.bitmap,
            extra=tuple(self.extra),
        )


def _parse_array_head(line: str) -> _ArrayBuilder:
    m = _ARRAY_HEAD_RE.match(line)
    if not m:
        raise ParseError("/proc/mdstat", "array line is not 'NAME : STATE ...'", line)
    name, state, rest = m.group(1), m.group(2), m.group(3)
    if state not in ("active", "inactive"):
        raise ParseError("/proc/mdstat", f"array state {state!r} is not active/inactive", line)
    tokens = rest.split()
    read_only: str | None = None
    personality: str | None = None
    if state == "active":
        if tokens and tokens[0] in ("(read-only)", "(auto-read-only)"):
            read_only = tokens.pop(0)[1:-1]
        if not tokens or "[" in tokens[0]:
            raise ParseError("/proc/mdstat", "active array without a personality", line)
        personality = tokens.pop(0)
    b = _ArrayBuilder(
        name, "active" if state == "active" else "inactive", personality, read_only, []
    )
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        # an array with no member disks gets " super X.Y" on its head line
        if tok == "super" and i + 1 < len(tokens):
            b.super_version = tokens[i + 1]
            i += 2
            continue
        b.members.append(_parse_member(tok, line))
        i += 1
    return b


def _parse_continuation(b: _ArrayBuilder, line: str) -> None:
    stripped = line.strip()
    if not stripped:
        return
    blocks = _BLOCKS_RE.match(line)
    if not b.seen_status and (blocks or _NM_RE.search(line)):
        b.seen_status = True
        if blocks:
            b.blocks = int(blocks.group(1))
        sup = _SUPER_RE.search(line)
        if sup:
            b.super_version = sup.group(1)
        if _NM_RE.search(line):
            b.raid_disks, b.working, b.slots = parse_status_brackets(line)
        return
    sync = _SYNC_RE.search(line)
    if sync and b.sync is None:
        pct = float(sync.group(2)) if sync.group(2) is not None else None
        b.sync = MdSync(sync.group(1), pct, sync.group(3), stripped)
        return
    if stripped.startswith("bitmap:") and b.bitmap is None:
        b.bitmap = stripped
        return
    b.extra.append(stripped)


def parse_mdstat(text: str) -> MdStat:
    """Parse ``/proc/mdstat`` of any array type.

    Structure we rely on (head lines, member tokens, [n/m] [U_]) raises ParseError when
    broken; continuation lines we do not understand (new kernels, other personalities) are
    kept in ``MdArray.extra`` instead of failing, because one odd raid5 must not stop the
    daemon from seeing its multipath arrays.
    """
    personalities = parse_personalities(text)
    arrays: list[MdArray] = []
    unused: tuple[str, ...] = ()
    current: _ArrayBuilder | None = None
    seen_pers = False
    for line in text.splitlines():
        if not seen_pers:
            seen_pers = line.startswith(_PERS_PREFIX)
            continue
        if not line.strip():
            continue
        if line[0].isspace():
            if current is None:
                # e.g. read_ahead-era kernels; nothing array-specific to attach it to
                continue
            _parse_continuation(current, line)
            continue
        if current is not None:
            arrays.append(current.build())
            current = None
        if line.startswith(_UNUSED_PREFIX):
            rest = line[len(_UNUSED_PREFIX) :].split()
            unused = tuple(t for t in rest if t != "<none>")
            continue
        if line.startswith("read_ahead"):
            continue  # 2.4-era kernels printed "read_ahead 1024 sectors" here
        current = _parse_array_head(line)
    if current is not None:
        arrays.append(current.build())
    return MdStat(personalities, tuple(arrays), unused)


# --------------------------------------------------------------------------------------
# mdadm "Key : Value" reports (--detail, --examine)
# --------------------------------------------------------------------------------------

_KV_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 /-]*?)\s*:\s?(.*)$")
_HEAD_RE = re.compile(r"^(/\S+):\s*$")
_LOCAL_RE = re.compile(r"^(\S+)\s+\(local to host (\S+)\)$")


def _key_values(lines: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        m = _KV_RE.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _opt_int(fields: dict[str, str], key: str, what: str, text: str) -> int | None:
    raw = fields.get(key)
    if raw is None:
        return None
    first = raw.split()[0] if raw.split() else ""
    try:
        return int(first)
    except ValueError:
        raise ParseError(what, f"{key} is not a number: {raw!r}", text) from None


def _split_name(raw: str | None) -> tuple[str | None, str | None]:
    """``"virtme-ng:0  (local to host virtme-ng)"`` -> ``("virtme-ng:0", "virtme-ng")``."""
    if raw is None:
        return None, None
    m = _LOCAL_RE.match(raw)
    if m:
        return m.group(1), m.group(2)
    return raw or None, None


def _head(lines: list[str], what: str, text: str) -> tuple[str, int]:
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        m = _HEAD_RE.match(line)
        if not m:
            raise ParseError(what, "first line is not '/dev/NAME:'", text)
        return m.group(1), i
    raise ParseError(what, "empty output", text)


@dataclass(frozen=True, slots=True)
class DetailMember:
    """A row of ``mdadm --detail``'s member table.

    ``removed`` rows are empty slots (no device); a faulty member has no slot (``-``).
    """

    number: int | None  #: "Number" column (descriptor number); None for "-"
    major: int
    minor: int
    raid_device: int | None  #: slot; None for "-" (faulty or spare)
    state: tuple[str, ...]  #: words of the State column: ("active", "sync"), ("faulty",)
    device: str | None  #: "/dev/sda"; None on a removed row

    @property
    def removed(self) -> bool:
        return "removed" in self.state

    @property
    def faulty(self) -> bool:
        return "faulty" in self.state

    @property
    def in_sync(self) -> bool:
        return "sync" in self.state and not self.faulty


@dataclass(frozen=True, slots=True)
class MdDetail:
    """``mdadm --detail /dev/mdX``. ``fields`` keeps every "Key : Value" verbatim."""

    device: str
    level: str | None
    raid_devices: int | None
    total_devices: int | None
    active_devices: int | None
    working_devices: int | None
    failed_devices: int | None
    spare_devices: int | None
    state: tuple[str, ...]  #: "clean, degraded" -> ("clean", "degraded")
    uuid: str | None
    name: str | None
    homehost: str | None  #: from "(local to host X)"
    events: int | None
    version: str | None
    array_size_kib: int | None
    members: tuple[DetailMember, ...]
    fields: dict[str, str] = field(default_factory=dict, hash=False)

    def member(self, device: str) -> DetailMember | None:
        for mem in self.members:
            if mem.device == device:
                return mem
        return None


_TABLE_HEAD_RE = re.compile(r"^\s*Number\s+Major\s+Minor\s+RaidDevice\b")


def _dash_int(tok: str, what: str, col: str, line: str) -> int | None:
    if tok == "-":
        return None
    try:
        return int(tok)
    except ValueError:
        raise ParseError(what, f"{col} column is not a number or '-': {tok!r}", line) from None


def _parse_detail_row(line: str) -> DetailMember:
    what = "mdadm --detail member table"
    toks = line.split()
    if len(toks) < 4:
        raise ParseError(what, "row has fewer than 4 columns", line)
    number = _dash_int(toks[0], what, "Number", line)
    major = _dash_int(toks[1], what, "Major", line)
    minor = _dash_int(toks[2], what, "Minor", line)
    if major is None or minor is None:
        raise ParseError(what, "major/minor missing", line)
    raid_device = _dash_int(toks[3], what, "RaidDevice", line)
    rest = toks[4:]
    device = None
    if rest and rest[-1].startswith("/"):
        device = rest.pop()
    return DetailMember(number, major, minor, raid_device, tuple(rest), device)


def parse_detail(text: str) -> MdDetail:
    """Parse ``mdadm --detail /dev/mdX`` (human form, metadata 0.90 or 1.x)."""
    what = "mdadm --detail"
    lines = text.splitlines()
    device, start = _head(lines, what, text)
    head: list[str] = []
    rows: list[DetailMember] = []
    in_table = False
    for line in lines[start + 1 :]:
        if _TABLE_HEAD_RE.match(line):
            in_table = True
            continue
        if in_table:
            if line.strip():
                rows.append(_parse_detail_row(line))
        else:
            head.append(line)
    fields = _key_values(head)
    if not fields:
        raise ParseError(what, "no 'Key : Value' lines", text)
    name, homehost = _split_name(fields.get("Name"))
    state = tuple(s.strip() for s in fields.get("State", "").split(",") if s.strip())
    return MdDetail(
        device=device,
        level=fields.get("Raid Level"),
        raid_devices=_opt_int(fields, "Raid Devices", what, text),
        total_devices=_opt_int(fields, "Total Devices", what, text),
        active_devices=_opt_int(fields, "Active Devices", what, text),
        working_devices=_opt_int(fields, "Working Devices", what, text),
        failed_devices=_opt_int(fields, "Failed Devices", what, text),
        spare_devices=_opt_int(fields, "Spare Devices", what, text),
        state=state,
        uuid=fields.get("UUID"),
        name=name,
        homehost=homehost,
        events=_opt_int(fields, "Events", what, text),
        version=fields.get("Version"),
        array_size_kib=_opt_int(fields, "Array Size", what, text),
        members=tuple(rows),
        fields=fields,
    )


@dataclass(frozen=True, slots=True)
class MdExamine:
    """``mdadm --examine /dev/sdX``: what a member's superblock says."""

    device: str
    version: str | None
    array_uuid: str
    device_uuid: str | None  #: absent on 0.90 metadata
    name: str | None
    homehost: str | None
    level: str
    raid_devices: int | None
    events: int | None
    state: str | None  #: superblock state, "clean"/"active"
    role: str | None  #: "Active device 1", "spare", "Replacement device 0"...
    slot: int | None  #: the N of "Active device N"
    array_state: str | None  #: "AA", "A." ('A' active, '.' missing, 'R' replacing)
    fields: dict[str, str] = field(default_factory=dict, hash=False)


_ROLE_SLOT_RE = re.compile(r"^Active device (\d+)$")


def parse_examine(text: str) -> MdExamine:
    """Parse ``mdadm --examine MEMBER`` for one member with an md superblock."""
    what = "mdadm --examine"
    lines = text.splitlines()
    device, start = _head(lines, what, text)
    fields = _key_values(lines[start + 1 :])
    array_uuid = fields.get("Array UUID") or fields.get("UUID")
    level = fields.get("Raid Level")
    if not array_uuid:
        raise ParseError(what, "no Array UUID", text)
    if not level:
        raise ParseError(what, "no Raid Level", text)
    name, homehost = _split_name(fields.get("Name"))
    role = fields.get("Device Role")
    slot_m = _ROLE_SLOT_RE.match(role) if role else None
    array_state_raw = fields.get("Array State")
    array_state = array_state_raw.split()[0] if array_state_raw else None
    return MdExamine(
        device=device,
        version=fields.get("Version"),
        array_uuid=array_uuid,
        device_uuid=fields.get("Device UUID"),
        name=name,
        homehost=homehost,
        level=level,
        raid_devices=_opt_int(fields, "Raid Devices", what, text),
        events=_opt_int(fields, "Events", what, text),
        state=fields.get("State"),
        role=role,
        slot=int(slot_m.group(1)) if slot_m else None,
        array_state=array_state,
        fields=fields,
    )


# --------------------------------------------------------------------------------------
# mdadm --detail --export
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportMember:
    """A member of ``--detail --export``: ``MD_DEVICE_<key>_ROLE`` / ``_DEV``."""

    key: str  #: the mangled sysfs name in the variable ("dev_sdc")
    dev: str | None  #: "/dev/sdc"
    role: str | None  #: "0", "1", "faulty", "spare", "journal"

    @property
    def slot(self) -> int | None:
        return int(self.role) if self.role is not None and self.role.isdigit() else None

    @property
    def faulty(self) -> bool:
        return self.role == "faulty"


@dataclass(frozen=True, slots=True)
class MdDetailExport:
    """``mdadm --detail --export /dev/mdX`` (the udev-friendly KEY=VALUE form)."""

    level: str
    raid_devices: int | None  #: MD_DEVICES
    metadata: str | None
    uuid: str | None
    name: str | None  #: MD_NAME ("host:name")
    devname: str | None  #: MD_DEVNAME, the /dev/md/NAME link name, if any
    members: tuple[ExportMember, ...]
    fields: dict[str, str] = field(default_factory=dict, hash=False)

    def member(self, dev: str) -> ExportMember | None:
        for mem in self.members:
            if mem.dev == dev:
                return mem
        return None


_EXPORT_LINE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_EXPORT_MEMBER_RE = re.compile(r"^MD_DEVICE_(.+)_(ROLE|DEV)$")


def parse_detail_export(text: str) -> MdDetailExport:
    """Parse ``mdadm --detail --export``.

    The member key ("dev_sdc") is the sysfs name with punctuation mangled to "_", so it
    cannot be turned back into a device name: the ``_DEV`` variable is the device path.
    """
    what = "mdadm --detail --export"
    fields: dict[str, str] = {}
    members: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _EXPORT_LINE_RE.match(line.strip())
        if not m:
            raise ParseError(what, "line is not KEY=VALUE", line)
        key, value = m.group(1), m.group(2)
        fields[key] = value
        mm = _EXPORT_MEMBER_RE.match(key)
        if mm:
            members.setdefault(mm.group(1), {})[mm.group(2)] = value
    if "MD_LEVEL" not in fields:
        raise ParseError(what, "no MD_LEVEL", text)
    return MdDetailExport(
        level=fields["MD_LEVEL"],
        raid_devices=_opt_int(fields, "MD_DEVICES", what, text),
        metadata=fields.get("MD_METADATA"),
        uuid=fields.get("MD_UUID"),
        name=fields.get("MD_NAME"),
        devname=fields.get("MD_DEVNAME"),
        members=tuple(ExportMember(k, v.get("DEV"), v.get("ROLE")) for k, v in members.items()),
        fields=fields,
    )


# --------------------------------------------------------------------------------------
# mdadm one-line results (--create, --assemble, --fail, --remove, --add, --stop)
# --------------------------------------------------------------------------------------

ActionVerb = Literal["started", "faulty", "removed", "added", "re-added", "stopped"]


@dataclass(frozen=True, slots=True)
class MdadmAction:
    """One thing mdadm says it did, e.g. ``mdadm: hot removed /dev/sda from /dev/md0``."""

    verb: ActionVerb
    member: str | None
    array: str | None
    drives: int | None = None  #: "has been started with N drives" (assemble)


@dataclass(frozen=True, slots=True)
class MdadmOutcome:
    """All of mdadm's ``mdadm: ...`` lines from one command, sorted into actions and notes."""

    actions: tuple[MdadmAction, ...]
    notes: tuple[str, ...]  #: other lines, "mdadm: " prefix removed
    metadata: str | None = None  #: from "Defaulting to version X metadata"

    def did(self, verb: ActionVerb) -> bool:
        return any(a.verb == verb for a in self.actions)


_ACTION_PATTERNS: tuple[tuple[re.Pattern[str], ActionVerb, str], ...] = (
    (re.compile(r"^array (\S+) started\.?$"), "started", "a"),
    (re.compile(r"^(\S+) has been started with (\d+) drives?\b.*$"), "started", "ad"),
    (re.compile(r"^set (\S+) faulty in (\S+)$"), "faulty", "ma"),
    (re.compile(r"^hot removed (\S+) from (\S+)$"), "removed", "ma"),
    (re.compile(r"^re-added (\S+)$"), "re-added", "m"),
    (re.compile(r"^added (\S+)$"), "added", "m"),
    (re.compile(r"^stopped (\S+)$"), "stopped", "a"),
)
_DEFAULT_META_RE = re.compile(r"^Defaulting to version (\S+) metadata$")


def parse_mdadm_messages(text: str) -> MdadmOutcome:
    """Sort mdadm's chatter (stdout and stderr together) into actions and other notes.

    Never raises: these lines are informative, the exit status is what failed or not.
    """
    actions: list[MdadmAction] = []
    notes: list[str] = []
    metadata: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        line = line.removeprefix("mdadm:").strip()
        meta = _DEFAULT_META_RE.match(line)
        if meta:
            metadata = meta.group(1)
            continue
        for pattern, verb, roles in _ACTION_PATTERNS:
            m = pattern.match(line)
            if not m:
                continue
            got = dict(zip(roles, m.groups(), strict=True))
            actions.append(
                MdadmAction(
                    verb,
                    member=got.get("m"),
                    array=got.get("a"),
                    drives=int(got["d"]) if "d" in got else None,
                )
            )
            break
        else:
            notes.append(line)
    return MdadmOutcome(tuple(actions), tuple(notes), metadata)


# --------------------------------------------------------------------------------------
# the personality's kernel log lines
# --------------------------------------------------------------------------------------

LogKind = Literal["array_active", "path_failed", "continuing", "last_path_error"]


@dataclass(frozen=True, slots=True)
class MdLogEvent:
    """A line md's multipath personality logged (dmesg / journal -k).

    The kernel logs the same lines for a real I/O error and for ``mdadm --fail`` (both go
    through md's error handler; the fixture's lines came from ``--fail``). The one fact
    only the log carries is the refused last-path failure (``last_path_error``): mdstat
    does not change at all then.
    """

    kind: LogKind
    device: str | None  #: path ("sda") or array ("md0") the line names
    paths: int | None  #: working IO paths the line reports
    total: int | None  #: raid disks, for array_active
    timestamp: float | None  #: dmesg seconds; None on continuation lines
    raw: str


_LOG_TS_RE = re.compile(r"^\s*\[\s*(\d+\.\d+)\]\s*(.*)$")
_LOG_PATTERNS: tuple[tuple[re.Pattern[str], LogKind], ...] = (
    (
        re.compile(r"^array (?P<dev>\S+) active with (?P<n>\d+) out of (?P<t>\d+) IO paths"),
        "array_active",
    ),
    (re.compile(r"^IO failure on (?P<dev>\S+?), disabling IO path"), "path_failed"),
    (re.compile(r"^Operation continuing on (?P<n>\d+) IO paths"), "continuing"),
    (re.compile(r"^only one IO path left and IO error"), "last_path_error"),
)


def parse_md_multipath_log(text: str) -> tuple[MdLogEvent, ...]:
    """The personality's lines ("multipath: ...") of a kernel log; other lines are skipped.

    dm-multipath also logs with a "multipath" word ("device-mapper: multipath ..."); those
    lines do not start with "multipath:" once the timestamp is removed, so they are skipped.
    """
    events: list[MdLogEvent] = []
    for raw in text.splitlines():
        ts: float | None = None
        body = raw.strip()
        m = _LOG_TS_RE.match(raw)
        if m:
            ts, body = float(m.group(1)), m.group(2).strip()
        if not body.startswith("multipath:"):
            continue
        body = body.removeprefix("multipath:").strip()
        for pattern, kind in _LOG_PATTERNS:
            pm = pattern.match(body)
            if not pm:
                continue
            groups = pm.groupdict()
            events.append(
                MdLogEvent(
                    kind,
                    device=groups.get("dev"),
                    paths=int(groups["n"]) if groups.get("n") else None,
                    total=int(groups["t"]) if groups.get("t") else None,
                    timestamp=ts,
                    raw=raw.strip(),
                )
            )
            break
    return tuple(events)
