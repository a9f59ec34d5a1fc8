"""SCSI commands and answers as pure data: CDBs, INQUIRY/VPD/RTPG parsers, sense, verdicts.

Nothing here does I/O. ``sgio`` sends the CDBs built here and hands the raw bytes back to
the parsers here, so every decision about what a device said can be tested with byte
strings captured (or rebuilt) from real devices. Parsers raise only ``ParseError``.

The classification of a check outcome follows two references, because dmpath replaces
both: multipath-tools' ``tur`` checker (what a *path checker* concludes) and the kernel's
``scsi_dh_alua`` handler (how ALUA sense codes are meant). Where they disagree the
choice is written down at the function that makes it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dmpath.errors import ParseError

# --------------------------------------------------------------------------- opcodes

TEST_UNIT_READY = 0x00
INQUIRY = 0x12
MAINTENANCE_IN = 0xA3
MI_REPORT_TARGET_PGS = 0x0A
#: RTPG "parameter data format" bit: ask for the extended header (implicit transition time)
MI_EXT_HDR_PARAM_FMT = 0x20

VPD_SUPPORTED_PAGES = 0x00
VPD_UNIT_SERIAL = 0x80
VPD_DEVICE_ID = 0x83


def cdb_test_unit_ready() -> bytes:
    """TEST UNIT READY: six zero bytes; the cheapest command that proves the path works."""
    return bytes(6)


def cdb_inquiry(alloc_len: int = 255, page: int | None = None) -> bytes:
    """INQUIRY, standard (``page=None``) or EVPD page ``page``.

    The allocation length defaults to 255 because some old targets reject larger values in
    a 6-byte INQUIRY; callers re-issue with the page's own length when it is longer.
    """
    if not 0 <= alloc_len <= 0xFFFF:
        raise ValueError(f"INQUIRY allocation length out of range: {alloc_len}")
    if page is not None and not 0 <= page <= 0xFF:
        raise ValueError(f"VPD page out of range: {page}")
    evpd = 0 if page is None else 1
    return bytes([INQUIRY, evpd, page or 0, alloc_len >> 8, alloc_len & 0xFF, 0])


def cdb_report_target_port_groups(alloc_len: int = 1024, extended: bool = False) -> bytes:
    """REPORT TARGET PORT GROUPS (MAINTENANCE IN, service action 0x0A), 12 bytes.

    ``extended`` asks for the extended header; some arrays reject it (ILLEGAL REQUEST
    24/00) although they should not, so the default is the plain header, as ``sg_rtpg``
    sends it.
    """
    if not 0 <= alloc_len <= 0xFFFFFFFF:
        raise ValueError(f"RTPG allocation length out of range: {alloc_len}")
    sa = MI_REPORT_TARGET_PGS | (MI_EXT_HDR_PARAM_FMT if extended else 0)
    return bytes([MAINTENANCE_IN, sa, 0, 0, 0, 0]) + alloc_len.to_bytes(4, "big") + bytes(2)


# --------------------------------------------------------------------------- helpers


def _ascii(raw: bytes) -> str:
    """Device strings are space padded ASCII; anything else is shown, never trusted."""
    return raw.decode("ascii", errors="replace").strip(" \x00")


def _collapse_ws(text: str) -> str:
    """Runs of whitespace become one ``_`` (udev's ``--replace-whitespace``)."""
    return re.sub(r"\s+", "_", text.strip())


def _vpd_payload(data: bytes, page: int) -> tuple[bytes, int]:
    """Return (payload as far as present, declared page length) of a VPD page."""
    if len(data) < 4:
        raise ParseError(f"VPD page 0x{page:02x}", "shorter than its 4-byte header", data.hex())
    if data[1] != page:
        raise ParseError(f"VPD page 0x{page:02x}", f"page code is 0x{data[1]:02x}", data[:8].hex())
    declared = int.from_bytes(data[2:4], "big")
    return data[4 : 4 + declared], declared


# --------------------------------------------------------------------------- INQUIRY


class Tpgs(enum.IntEnum):
    """TPGS field of standard INQUIRY: which kinds of ALUA the target claims."""

    NONE = 0
    IMPLICIT = 1
    EXPLICIT = 2
    BOTH = 3


@dataclass(frozen=True)
class StandardInquiry:
    """The fields of standard INQUIRY data that path handling needs."""

    peripheral_qualifier: int
    device_type: int
    removable: bool
    version: int
    tpgs: Tpgs
    multip: bool
    vendor: str
    product: str
    revision: str

    @property
    def alua(self) -> bool:
        """True when the target claims ALUA (implicit or explicit): RTPG is worth asking."""
        return self.tpgs != Tpgs.NONE


def parse_standard_inquiry(data: bytes) -> StandardInquiry:
    """Parse standard INQUIRY data (SPC: at least 36 bytes)."""
    if len(data) < 36:
        raise ParseError("INQUIRY data", f"{len(data)} bytes, need at least 36", data.hex())
    return StandardInquiry(
        peripheral_qualifier=data[0] >> 5,
        device_type=data[0] & 0x1F,
        removable=bool(data[1] & 0x80),
        version=data[2],
        tpgs=Tpgs((data[5] >> 4) & 0x3),
        multip=bool(data[6] & 0x10),
        vendor=_ascii(data[8:16]),
        product=_ascii(data[16:32]),
        revision=_ascii(data[32:36]),
    )


def parse_vpd_supported_pages(data: bytes) -> tuple[int, ...]:
    """VPD page 0x00: the page codes the device supports."""
    payload, _ = _vpd_payload(data, VPD_SUPPORTED_PAGES)
    return tuple(payload)


def parse_vpd_unit_serial(data: bytes) -> str:
    """VPD page 0x80: the unit serial number, trimmed like ``sg_inq`` shows it."""
    payload, _ = _vpd_payload(data, VPD_UNIT_SERIAL)
    return _ascii(payload)


# --------------------------------------------------------------------------- VPD 0x83


class DesignatorType(enum.IntEnum):
    VENDOR_SPECIFIC = 0x0
    T10_VENDOR_ID = 0x1
    EUI64 = 0x2
    NAA = 0x3
    RELATIVE_TARGET_PORT = 0x4
    TARGET_PORT_GROUP = 0x5
    LOGICAL_UNIT_GROUP = 0x6
    MD5_LU_ID = 0x7
    SCSI_NAME_STRING = 0x8
    PROTOCOL_SPECIFIC_PORT_ID = 0x9
    UUID = 0xA


class CodeSet(enum.IntEnum):
    BINARY = 0x1
    ASCII = 0x2
    UTF8 = 0x3


class Association(enum.IntEnum):
    LOGICAL_UNIT = 0x0
    TARGET_PORT = 0x1
    TARGET_DEVICE = 0x2


class Naa(enum.IntEnum):
    """NAA field (first nibble of an NAA designator)."""

    IEEE_EXTENDED = 0x2
    LOCALLY_ASSIGNED = 0x3
    IEEE_REGISTERED = 0x5
    IEEE_REGISTERED_EXTENDED = 0x6


@dataclass(frozen=True)
class Designator:
    """One designation descriptor of VPD page 0x83, fields as the device sent them.

    Codes are kept as ints (compare with the IntEnums above) so that reserved values from a
    device still parse.
    """

    type_code: int
    code_set: int
    association: int
    protocol: int | None  # only meaningful when PIV is set
    value: bytes

    @property
    def hex(self) -> str:
        return self.value.hex()

    @property
    def text(self) -> str:
        """ASCII/UTF-8 designators as text, NUL padding removed."""
        return self.value.decode("utf-8", errors="replace").rstrip("\x00").strip()

    @property
    def naa(self) -> int | None:
        if self.type_code != DesignatorType.NAA or not self.value:
            return None
        return self.value[0] >> 4

    @property
    def port_number(self) -> int | None:
        """Relative target port or target port group: a 16-bit number in bytes 2-3."""
        if self.type_code not in (
            DesignatorType.RELATIVE_TARGET_PORT,
            DesignatorType.TARGET_PORT_GROUP,
        ):
            return None
        if len(self.value) < 4:
            return None
        return int.from_bytes(self.value[2:4], "big")

    def render(self) -> str:
        """The value as text: hex for binary designators, trimmed text otherwise."""
        if self.code_set in (CodeSet.ASCII, CodeSet.UTF8):
            return self.text
        return self.hex


@dataclass(frozen=True)
class DeviceIdentification:
    """VPD page 0x83 as a list of designators, with the lookups path handling needs."""

    designators: tuple[Designator, ...]
    truncated: bool = False  # the page was cut by the allocation length

    def for_lu(self) -> tuple[Designator, ...]:
        return tuple(d for d in self.designators if d.association == Association.LOGICAL_UNIT)

    def _port_number(self, kind: DesignatorType) -> int | None:
        for d in self.designators:
            if d.association == Association.TARGET_PORT and d.type_code == kind:
                return d.port_number
        return None

    @property
    def relative_target_port(self) -> int | None:
        return self._port_number(DesignatorType.RELATIVE_TARGET_PORT)

    @property
    def target_port_group(self) -> int | None:
        return self._port_number(DesignatorType.TARGET_PORT_GROUP)


def parse_vpd83(data: bytes) -> DeviceIdentification:
    """Parse VPD page 0x83 (Device Identification).

    A page cut short by the allocation length yields the complete descriptors with
    ``truncated=True`` (the caller may ask again with a larger buffer); a descriptor that
    overruns the page's own declared length is a malformed page.
    """
    payload, declared = _vpd_payload(data, VPD_DEVICE_ID)
    cut = len(payload) < declared
    out: list[Designator] = []
    off = 0
    while off < len(payload):
        if off + 4 > len(payload):
            if cut:
                break
            raise ParseError("VPD page 0x83", f"descriptor header at {off} overruns page")
        head = payload[off : off + 4]
        length = head[3]
        end = off + 4 + length
        if end > len(payload):
            if cut:
                break
            raise ParseError(
                "VPD page 0x83", f"descriptor at {off} (length {length}) overruns page"
            )
        piv = bool(head[1] & 0x80)
        out.append(
            Designator(
                type_code=head[1] & 0x0F,
                code_set=head[0] & 0x0F,
                association=(head[1] >> 4) & 0x3,
                protocol=(head[0] >> 4) if piv else None,
                value=bytes(payload[off + 4 : end]),
            )
        )
        off = end
    return DeviceIdentification(tuple(out), truncated=cut)


@dataclass(frozen=True)
class Wwid:
    """A LUN's world wide identifier, rendered the ways the rest of the system spells it.

    - ``serial``: scsi_id / udev ``ID_SERIAL`` style, type digit + value
      (``3`` + NAA hex, ``2`` + EUI-64 hex, ``1`` + T10 id with ``_`` for whitespace);
      also the suffix of the ``/dev/disk/by-id/scsi-…`` link.
    - ``wwn``: udev ``ID_WWN`` (``0x`` + first 8 bytes of NAA/EUI-64), None for text ids.
    - ``wwn_with_extension``: udev ``ID_WWN_WITH_EXTENSION`` (all bytes).
    - ``sysfs``: the kernel's ``device/wwid`` attribute (``naa.…``, ``eui.…``, ``t10.…``).
    """

    serial: str
    wwn: str | None
    wwn_with_extension: str | None
    sysfs: str
    designator: Designator


def _render_wwid(d: Designator) -> Wwid:
    if d.type_code == DesignatorType.NAA:
        return Wwid(
            serial="3" + d.hex,
            wwn="0x" + d.value[:8].hex(),
            wwn_with_extension="0x" + d.hex,
            sysfs="naa." + d.hex,
            designator=d,
        )
    if d.type_code == DesignatorType.EUI64:
        return Wwid(
            serial="2" + d.hex,
            wwn="0x" + d.value[:8].hex(),
            wwn_with_extension="0x" + d.hex,
            sysfs="eui." + d.hex,
            designator=d,
        )
    if d.type_code == DesignatorType.SCSI_NAME_STRING:
        return Wwid(
            serial="8" + d.text, wwn=None, wwn_with_extension=None, sysfs=d.text, designator=d
        )
    text = d.render()
    return Wwid(
        serial="1" + _collapse_ws(text),
        wwn=None,
        wwn_with_extension=None,
        sysfs="t10." + d.value.decode("ascii", errors="replace").rstrip("\x00"),
        designator=d,
    )


# NAA kinds from most to least trustworthy: registered ids are unique by construction,
# a locally assigned one only within its vendor's care.
_NAA_RANK: dict[int, int] = {
    Naa.IEEE_REGISTERED_EXTENDED: 0,
    Naa.IEEE_REGISTERED: 1,
    Naa.IEEE_EXTENDED: 2,
    Naa.LOCALLY_ASSIGNED: 3,
}


def wwid_from_vpd83(ids: DeviceIdentification | Iterable[Designator]) -> Wwid | None:
    """Pick the LU's identifier: NAA (registered kinds first) > EUI-64 > name string > T10.

    This is the order udev's ``scsi_id`` and the kernel search in, and it is what
    ``ID_WWN`` and the ``scsi-3…`` by-id link are made from. Note that udev's ``ID_SERIAL``
    may differ: sg3-utils' rules rank a *locally assigned* NAA below the T10 vendor id
    (see ``udev_id_serial``).
    """
    designators = (
        ids.for_lu()
        if isinstance(ids, DeviceIdentification)
        else tuple(d for d in ids if d.association == Association.LOGICAL_UNIT)
    )
    best: tuple[int, int] | None = None
    chosen: Designator | None = None
    for d in designators:
        if not d.value:
            continue
        if d.type_code == DesignatorType.NAA and d.code_set == CodeSet.BINARY:
            rank = (0, _NAA_RANK.get(d.value[0] >> 4, 4))
        elif d.type_code == DesignatorType.EUI64 and d.code_set == CodeSet.BINARY:
            rank = (1, 0)
        elif d.type_code == DesignatorType.SCSI_NAME_STRING:
            rank = (2, 0)
        elif d.type_code == DesignatorType.T10_VENDOR_ID:
            rank = (3, 0)
        else:
            continue
        if best is None or rank < best:
            best, chosen = rank, d
    return _render_wwid(chosen) if chosen is not None else None


def udev_id_serial(ids: DeviceIdentification, sources: str = "T") -> str | None:
    """What udev puts in ``ID_SERIAL`` from page 0x83 when sg3-utils' rules are installed.

    Order of 55-scsi-sg3_id.rules: NAA registered-extended, registered, IEEE-extended,
    EUI-64, SCSI name string, then the "ambiguous" sources enabled in ``sources`` (T: T10
    vendor id, L: locally assigned NAA). For scsi_debug that gives
    ``1Linux_scsi_debug_2000`` (the fixtures, and multipath-tools' WWID there); without
    those rules udev's ``scsi_id`` sets ``ID_SERIAL`` to ``wwid_from_vpd83(...).serial``
    (``3333…``, seen in the lab VM). Sources V and S (vendor-specific designator, page 0x80
    serial) also need vendor/model strings and are not rendered here.
    """
    lu = ids.for_lu()
    steps: list[Callable[[Designator], bool]] = [
        lambda d: d.type_code == DesignatorType.NAA and d.naa == Naa.IEEE_REGISTERED_EXTENDED,
        lambda d: d.type_code == DesignatorType.NAA and d.naa == Naa.IEEE_REGISTERED,
        lambda d: d.type_code == DesignatorType.NAA and d.naa == Naa.IEEE_EXTENDED,
        lambda d: d.type_code == DesignatorType.EUI64,
        lambda d: d.type_code == DesignatorType.SCSI_NAME_STRING,
    ]
    if "T" in sources:
        steps.append(lambda d: d.type_code == DesignatorType.T10_VENDOR_ID)
    if "L" in sources:
        steps.append(lambda d: d.type_code == DesignatorType.NAA and d.naa == Naa.LOCALLY_ASSIGNED)
    for step in steps:
        for d in lu:
            if d.value and step(d):
                return _render_wwid(d).serial
    return None


# --------------------------------------------------------------------------- ALUA / RTPG


class AluaState(enum.IntEnum):
    """Asymmetric access states (SPC-4), as RTPG reports them in the low nibble."""

    ACTIVE_OPTIMIZED = 0x0
    ACTIVE_NON_OPTIMIZED = 0x1
    STANDBY = 0x2
    UNAVAILABLE = 0x3
    LBA_DEPENDENT = 0x4
    OFFLINE = 0xE
    TRANSITIONING = 0xF


ALUA_STATE_NAMES = {
    AluaState.ACTIVE_OPTIMIZED: "active/optimized",
    AluaState.ACTIVE_NON_OPTIMIZED: "active/non-optimized",
    AluaState.STANDBY: "standby",
    AluaState.UNAVAILABLE: "unavailable",
    AluaState.LBA_DEPENDENT: "lba dependent",
    AluaState.OFFLINE: "offline",
    AluaState.TRANSITIONING: "transitioning",
}

# Supported-states byte of a target port group descriptor (T_SUP .. AO_SUP).
_SUPPORT_BITS = (
    (0x80, AluaState.TRANSITIONING),
    (0x40, AluaState.OFFLINE),
    (0x10, AluaState.LBA_DEPENDENT),
    (0x08, AluaState.UNAVAILABLE),
    (0x04, AluaState.STANDBY),
    (0x02, AluaState.ACTIVE_NON_OPTIMIZED),
    (0x01, AluaState.ACTIVE_OPTIMIZED),
)


def _alua_state(code: int) -> AluaState | None:
    try:
        return AluaState(code)
    except ValueError:
        return None


@dataclass(frozen=True)
class TargetPortGroup:
    """One target port group descriptor of an RTPG answer."""

    group_id: int
    access_state: int  # raw low nibble; see ``state``
    preferred: bool
    supported: frozenset[AluaState]
    status_code: int
    vendor_specific: int
    relative_ports: tuple[int, ...]

    @property
    def state(self) -> AluaState | None:
        """The state as an enum, None for a reserved code."""
        return _alua_state(self.access_state)

    @property
    def state_name(self) -> str:
        st = self.state
        return ALUA_STATE_NAMES[st] if st is not None else f"reserved(0x{self.access_state:x})"


@dataclass(frozen=True)
class RtpgReport:
    """A parsed REPORT TARGET PORT GROUPS answer."""

    groups: tuple[TargetPortGroup, ...]
    extended_header: bool
    implicit_transition_time: int | None
    #: bytes the full answer needs (4 + returned data length); re-issue if larger than sent
    needed_length: int
    truncated: bool = False


def parse_rtpg(data: bytes) -> RtpgReport:
    """Parse RTPG parameter data, plain or extended header (detected as the kernel does)."""
    if len(data) < 4:
        raise ParseError("RTPG data", "shorter than its 4-byte header", data.hex())
    list_len = int.from_bytes(data[0:4], "big")
    needed = list_len + 4
    extended = len(data) > 4 and (data[4] & 0x70) == 0x10
    transition = data[5] if extended and len(data) > 5 else None
    start = 8 if extended else 4
    avail = min(len(data), needed)
    cut = len(data) < needed
    groups: list[TargetPortGroup] = []
    off = start
    while off < avail:
        if off + 8 > avail:
            if cut:
                break
            raise ParseError("RTPG data", f"descriptor header at {off} overruns the list")
        d = data[off : off + 8]
        count = d[7]
        end = off + 8 + 4 * count
        if end > avail:
            if cut:
                break
            raise ParseError(
                "RTPG data", f"descriptor at {off} with {count} ports overruns the list"
            )
        ports = tuple(int.from_bytes(data[p + 2 : p + 4], "big") for p in range(off + 8, end, 4))
        groups.append(
            TargetPortGroup(
                group_id=int.from_bytes(d[2:4], "big"),
                access_state=d[0] & 0x0F,
                preferred=bool(d[0] & 0x80),
                supported=frozenset(st for bit, st in _SUPPORT_BITS if d[1] & bit),
                status_code=d[5],
                vendor_specific=d[6],
                relative_ports=ports,
            )
        )
        off = end
    return RtpgReport(
        groups=tuple(groups),
        extended_header=extended,
        implicit_transition_time=transition,
        needed_length=needed,
        truncated=cut,
    )


def own_port_group(
    report: RtpgReport,
    group_id: int | None = None,
    relative_port: int | None = None,
) -> TargetPortGroup | None:
    """The group a path belongs to, from its VPD 0x83 TPG id (or relative port).

    The group id is the key, as in the kernel and multipath-tools: relative port numbers
    repeat across target ports of different hosts (every scsi_debug host calls its port
    1), group ids are what the target keeps distinct. The relative port is the fallback for
    targets that leave the TPG designator out.
    """
    if group_id is not None:
        for g in report.groups:
            if g.group_id == group_id:
                return g
    if relative_port is not None:
        for g in report.groups:
            if relative_port in g.relative_ports:
                return g
    return None


_ALUA_PRIO: dict[int, int] = {
    AluaState.ACTIVE_OPTIMIZED: 50,
    AluaState.ACTIVE_NON_OPTIMIZED: 10,
    AluaState.LBA_DEPENDENT: 5,
    AluaState.STANDBY: 1,
}


def alua_priority(
    state: int | None, preferred: bool = False, exclusive_pref_bit: bool = False
) -> int:
    """Priority for a path, with the values of multipath-tools' ``alua`` prioritizer.

    active/optimized 50, active/non-optimized 10, lba-dependent 5, standby 1, anything
    else (unavailable, offline, transitioning, unknown) 0; the preferred bit adds 80 unless
    the group is already active/optimized (or always, with ``exclusive_pref_bit``).
    """
    if state is None:
        return 0
    code = state & 0x0F
    prio = _ALUA_PRIO.get(code, 0)
    if preferred and (code != AluaState.ACTIVE_OPTIMIZED or exclusive_pref_bit):
        prio += 80
    return prio


# --------------------------------------------------------------------------- sense


class SenseKey(enum.IntEnum):
    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    COMPLETED = 0xF


SENSE_KEY_NAMES = {k: k.name.replace("_", " ") for k in SenseKey}

# Additional sense codes a multipath checker meets; the rest are shown as numbers.
ASC_NAMES: dict[tuple[int, int], str] = {
    (0x04, 0x01): "logical unit is in process of becoming ready",
    (0x04, 0x02): "initializing command required",
    (0x04, 0x03): "manual intervention required",
    (0x04, 0x07): "operation in progress",
    (0x04, 0x0A): "asymmetric access state transition",
    (0x04, 0x0B): "target port in standby state",
    (0x04, 0x0C): "target port in unavailable state",
    (0x20, 0x00): "invalid command operation code",
    (0x24, 0x00): "invalid field in cdb",
    (0x25, 0x00): "logical unit not supported",
    (0x28, 0x00): "not ready to ready change, medium may have changed",
    (0x29, 0x00): "power on, reset, or bus device reset occurred",
    (0x29, 0x04): "device internal reset",
    (0x2A, 0x01): "mode parameters changed",
    (0x2A, 0x06): "asymmetric access state changed",
    (0x2A, 0x07): "implicit asymmetric access state transition failed",
    (0x3A, 0x00): "medium not present",
    (0x3F, 0x03): "inquiry data has changed",
    (0x3F, 0x0E): "reported luns data has changed",
}


@dataclass(frozen=True)
class SenseData:
    """The normalized head of sense data (what ``scsi_normalize_sense`` keeps)."""

    response_code: int
    sense_key: int
    asc: int
    ascq: int

    @property
    def descriptor_format(self) -> bool:
        return self.response_code >= 0x72

    @property
    def deferred(self) -> bool:
        return self.response_code in (0x71, 0x73)

    @property
    def key_name(self) -> str:
        try:
            return SENSE_KEY_NAMES[SenseKey(self.sense_key)]
        except ValueError:
            return f"sense key 0x{self.sense_key:x}"

    @property
    def asc_name(self) -> str:
        return ASC_NAMES.get((self.asc, self.ascq), f"asc/ascq {self.asc:02x}/{self.ascq:02x}")

    def __str__(self) -> str:
        return f"{self.key_name}: {self.asc_name} ({self.asc:02x}/{self.ascq:02x})"


def decode_sense(sense: bytes) -> SenseData:
    """Decode fixed (0x70/0x71) or descriptor (0x72/0x73) format sense data.

    Short buffers give 0 for the fields they lack, as the kernel does; a buffer whose
    response code is not one of those four is not sense data.
    """
    if not sense:
        raise ParseError("sense data", "empty")
    code = sense[0] & 0x7F
    if code in (0x72, 0x73):
        if len(sense) < 2:
            raise ParseError("sense data", "descriptor format shorter than 2 bytes", sense.hex())
        key = sense[1] & 0x0F
        asc = sense[2] if len(sense) > 2 else 0
        ascq = sense[3] if len(sense) > 3 else 0
        return SenseData(code, key, asc, ascq)
    if code in (0x70, 0x71):
        if len(sense) < 3:
            raise ParseError("sense data", "fixed format shorter than 3 bytes", sense.hex())
        key = sense[2] & 0x0F
        length = len(sense)
        if length > 7:
            length = min(length, sense[7] + 8)
        asc = sense[12] if length > 12 else 0
        ascq = sense[13] if length > 13 else 0
        return SenseData(code, key, asc, ascq)
    raise ParseError("sense data", f"response code 0x{code:02x}", sense[:8].hex())


# --------------------------------------------------------------------------- verdicts


class PathState(enum.StrEnum):
    """What a check concluded about a path."""

    UP = "up"
    DOWN = "down"
    GHOST = "ghost"  # reachable but not usable for I/O now (ALUA standby/unavailable)
    PENDING = "pending"  # no verdict yet: transitioning, busy, or the check timed out
    UNSUPPORTED = "unsupported"  # the device cannot answer this kind of check


@dataclass(frozen=True)
class CheckOutcome:
    """A checker's verdict, with the reason a human reads and the sense behind it.

    ``retry`` means "ask again right away": the answer was a one-shot notice (UNIT
    ATTENTION) or a transient host condition. The state is what to conclude if retries run
    out.
    """

    state: PathState
    reason: str
    retry: bool = False
    sense: SenseData | None = None


# SAM status byte
STATUS_GOOD = 0x00
STATUS_CHECK_CONDITION = 0x02
STATUS_CONDITION_MET = 0x04
STATUS_BUSY = 0x08
STATUS_INTERMEDIATE = 0x10
STATUS_INTERMEDIATE_CONDITION_MET = 0x14
STATUS_RESERVATION_CONFLICT = 0x18
STATUS_COMMAND_TERMINATED = 0x22
STATUS_TASK_SET_FULL = 0x28
STATUS_ACA_ACTIVE = 0x30
STATUS_TASK_ABORTED = 0x40


class HostStatus(enum.IntEnum):
    """``DID_*`` host byte codes (include/scsi/scsi_status.h)."""

    DID_OK = 0x00
    DID_NO_CONNECT = 0x01
    DID_BUS_BUSY = 0x02
    DID_TIME_OUT = 0x03
    DID_BAD_TARGET = 0x04
    DID_ABORT = 0x05
    DID_PARITY = 0x06
    DID_ERROR = 0x07
    DID_RESET = 0x08
    DID_BAD_INTR = 0x09
    DID_PASSTHROUGH = 0x0A
    DID_SOFT_ERROR = 0x0B
    DID_IMM_RETRY = 0x0C
    DID_REQUEUE = 0x0D
    DID_TRANSPORT_DISRUPTED = 0x0E
    DID_TRANSPORT_FAILFAST = 0x0F
    DID_TARGET_FAILURE = 0x10
    DID_NEXUS_FAILURE = 0x11
    DID_ALLOC_FAILURE = 0x12
    DID_MEDIUM_ERROR = 0x13
    DID_TRANSPORT_MARGINAL = 0x14


DRIVER_SENSE = 0x08
DRIVER_TIMEOUT = 0x06

# The host codes multipath-tools' tur checker does not retry: the transport says the
# target is gone, retrying only delays failover.
_HOST_GONE = frozenset(
    {
        HostStatus.DID_NO_CONNECT,
        HostStatus.DID_BAD_TARGET,
        HostStatus.DID_ABORT,
        HostStatus.DID_TRANSPORT_FAILFAST,
    }
)


def host_status_name(code: int) -> str:
    """``DID_*`` name of a host status byte, for messages."""
    try:
        return HostStatus(code).name
    except ValueError:
        return f"host status 0x{code:02x}"


def classify_sense(sense: SenseData) -> CheckOutcome:
    """Verdict for a CHECK CONDITION with this sense, for a TEST UNIT READY.

    - NOT READY 04/0B (standby) and 04/0C (unavailable): GHOST. multipath-tools calls
      unavailable DOWN; we keep the path as a ghost because the LUN is reachable and the
      target may move it back to active on its own (implicit ALUA).
    - NOT READY 04/0A (ALUA transition), 04/01 (becoming ready), 04/07 (operation in
      progress): PENDING, as scsi_dh_alua retries transitions rather than failing.
    - UNIT ATTENTION: UP with retry (the target answered; the notice is one-shot). tur
      ends in DOWN if UAs persist past its retries; a responsive target is not a dead path.
    - ILLEGAL REQUEST 20/00: the device has no TEST UNIT READY, UNSUPPORTED.
    - Errors about the medium or data (MEDIUM ERROR, DATA PROTECT, BLANK CHECK, MISCOMPARE),
      RECOVERED ERROR and NO SENSE: UP, the path carried the command (a path checker
      must not fail paths for target-side data errors; the kernel does not either).
    - ABORTED COMMAND: retry, DOWN if it persists. Everything else: DOWN.
    """
    key, asc, ascq = sense.sense_key, sense.asc, sense.ascq
    why = str(sense)
    if key == SenseKey.NOT_READY:
        if asc == 0x04 and ascq in (0x0B, 0x0C):
            return CheckOutcome(PathState.GHOST, why, sense=sense)
        if asc == 0x04 and ascq in (0x01, 0x07, 0x0A):
            return CheckOutcome(PathState.PENDING, why, sense=sense)
        return CheckOutcome(PathState.DOWN, why, sense=sense)
    if key == SenseKey.UNIT_ATTENTION:
        return CheckOutcome(PathState.UP, why, retry=True, sense=sense)
    if key == SenseKey.ILLEGAL_REQUEST:
        if (asc, ascq) == (0x20, 0x00):
            return CheckOutcome(PathState.UNSUPPORTED, why, sense=sense)
        return CheckOutcome(PathState.DOWN, why, sense=sense)
    if key in (
        SenseKey.NO_SENSE,
        SenseKey.RECOVERED_ERROR,
        SenseKey.MEDIUM_ERROR,
        SenseKey.DATA_PROTECT,
        SenseKey.BLANK_CHECK,
        SenseKey.MISCOMPARE,
    ):
        return CheckOutcome(PathState.UP, why, sense=sense)
    if key == SenseKey.ABORTED_COMMAND:
        return CheckOutcome(PathState.DOWN, why, retry=True, sense=sense)
    return CheckOutcome(PathState.DOWN, why, sense=sense)


def classify_check(
    status: int,
    host_status: int,
    driver_status: int,
    sense: bytes = b"",
) -> CheckOutcome:
    """Verdict for a completed SG_IO TEST UNIT READY (the ioctl itself succeeded).

    Order of trust: the host byte first (if the transport failed, status and sense are not
    the target's word), then the driver byte's timeout, then the SCSI status, then sense.
    Never raises: malformed sense becomes a DOWN with a reason.
    """
    if host_status != HostStatus.DID_OK:
        name = host_status_name(host_status)
        if host_status in _HOST_GONE:
            return CheckOutcome(PathState.DOWN, f"transport reports {name}")
        if host_status == HostStatus.DID_TIME_OUT:
            return CheckOutcome(PathState.PENDING, "command timed out (DID_TIME_OUT)")
        return CheckOutcome(PathState.DOWN, f"transport reports {name}", retry=True)
    if driver_status & 0x0F == DRIVER_TIMEOUT:
        return CheckOutcome(PathState.PENDING, "command timed out (DRIVER_TIMEOUT)")
    if status in (
        STATUS_GOOD,
        STATUS_CONDITION_MET,
        STATUS_INTERMEDIATE,
        STATUS_INTERMEDIATE_CONDITION_MET,
    ):
        if driver_status & 0x0F not in (0, DRIVER_SENSE):
            return CheckOutcome(PathState.DOWN, f"driver status 0x{driver_status:02x}", retry=True)
        return CheckOutcome(PathState.UP, "ready")
    if status == STATUS_RESERVATION_CONFLICT:
        # Reserved by another initiator: the path works, the LU just is not ours to write.
        return CheckOutcome(PathState.UP, "reservation conflict (path is working)")
    if status in (STATUS_BUSY, STATUS_TASK_SET_FULL):
        what = "busy" if status == STATUS_BUSY else "task set full"
        return CheckOutcome(PathState.PENDING, f"target {what}", retry=True)
    if status in (STATUS_CHECK_CONDITION, STATUS_COMMAND_TERMINATED):
        if not sense:
            return CheckOutcome(PathState.DOWN, "check condition without sense data")
        try:
            decoded = decode_sense(sense)
        except ParseError as err:
            return CheckOutcome(PathState.DOWN, f"check condition, {err.detail}")
        return classify_sense(decoded)
    return CheckOutcome(PathState.DOWN, f"SCSI status 0x{status:02x}", retry=True)


def alua_path_state(state: int | None) -> PathState:
    """What an ALUA state means for I/O on the path (as scsi_dh_alua's prep_fn decides)."""
    st = _alua_state(state) if state is not None else None
    if st in (
        AluaState.ACTIVE_OPTIMIZED,
        AluaState.ACTIVE_NON_OPTIMIZED,
        AluaState.LBA_DEPENDENT,
    ):
        return PathState.UP
    if st in (AluaState.STANDBY, AluaState.UNAVAILABLE):
        return PathState.GHOST
    if st == AluaState.TRANSITIONING:
        return PathState.PENDING
    return PathState.DOWN
