"""SCSI CDBs, parsers and verdicts, checked against answers captured from scsi_debug.

The byte strings are rebuilt from what ``sg_inq``/``sg_rtpg`` printed for the same device
(fixtures/sgio), and the expected results come from those printouts and from what udev and
multipath-tools said about the device (fixtures/udev, fixtures/multipath-tools).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmpath.errors import ParseError
from dmpath.kernel import scsi
from dmpath.kernel.scsi import (
    AluaState,
    Association,
    CodeSet,
    DesignatorType,
    PathState,
    SenseKey,
    Tpgs,
)

# captured real outputs live in shared/, beside the work tree (main/)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(rel: str) -> str:
    return (FIXTURES / rel).read_text()


def udev_props(name: str) -> dict[str, str]:
    out = {}
    for line in fixture(f"udev/udev_{name}.txt").splitlines():
        key, _, value = line.partition("=")
        out[key] = value.strip("'")
    return out


# --------------------------------------------------------------------------- CDBs


def test_tur_cdb() -> None:
    assert scsi.cdb_test_unit_ready() == bytes(6)


def test_inquiry_cdbs() -> None:
    assert scsi.cdb_inquiry(96) == bytes.fromhex("120000006000")
    assert scsi.cdb_inquiry(255, 0x83) == bytes.fromhex("120183 00ff00".replace(" ", ""))
    assert scsi.cdb_inquiry(0x1234, 0x80) == bytes.fromhex("120180123400")
    assert scsi.cdb_inquiry(page=0) == bytes.fromhex("12010000ff00")


def test_rtpg_cdb_matches_sg_rtpg() -> None:
    m = re.search(r"cdb: \[([0-9a-f ]+)\]", fixture("sgio/sg_rtpg_sda.txt"))
    assert m is not None
    assert scsi.cdb_report_target_port_groups(1024) == bytes.fromhex(m.group(1))
    ext = scsi.cdb_report_target_port_groups(1024, extended=True)
    assert ext[:2] == bytes([0xA3, 0x2A]) and ext[2:] == bytes.fromhex(m.group(1))[2:]


@pytest.mark.parametrize(
    "call",
    [
        lambda: scsi.cdb_inquiry(-1),
        lambda: scsi.cdb_inquiry(0x10000),
        lambda: scsi.cdb_inquiry(255, 256),
        lambda: scsi.cdb_report_target_port_groups(-1),
    ],
)
def test_cdb_bounds(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


# --------------------------------------------------------------------------- INQUIRY


def scsi_debug_inquiry() -> bytes:
    """Standard INQUIRY as scsi_debug 0191 builds it with vpd_use_hostno=0."""
    data = bytearray(96)
    data[0] = 0x00  # disk
    data[2] = 0x07  # SPC-5
    data[3] = 0x02
    data[4] = 96 - 5
    data[5] = 0x10  # implicit TPGS
    data[6] = 0x10  # MultiP
    data[7] = 0x0A
    data[8:16] = b"Linux   "
    data[16:32] = b"scsi_debug      "
    data[32:36] = b"0191"
    return bytes(data)


def test_standard_inquiry_matches_udev() -> None:
    inq = scsi.parse_standard_inquiry(scsi_debug_inquiry())
    props = udev_props("sda")
    assert inq.vendor == props["SCSI_VENDOR"] == "Linux"
    assert inq.product == props["SCSI_MODEL"] == "scsi_debug"
    assert inq.revision == props["SCSI_REVISION"]
    assert inq.tpgs == Tpgs(int(props["SCSI_TPGS"])) == Tpgs.IMPLICIT
    assert inq.alua and inq.multip and not inq.removable
    assert inq.device_type == 0 and inq.peripheral_qualifier == 0


def test_standard_inquiry_too_short() -> None:
    with pytest.raises(ParseError):
        scsi.parse_standard_inquiry(scsi_debug_inquiry()[:35])


def test_vpd80_matches_sg_inq() -> None:
    expected = re.search(r"Unit serial number: (\S+)", fixture("sgio/sg_inq_vpd80_sda.txt"))
    assert expected is not None
    page = bytes([0x00, 0x80, 0x00, 0x04]) + b"2000"
    assert scsi.parse_vpd_unit_serial(page) == expected.group(1)
    assert scsi.parse_vpd_unit_serial(page) == udev_props("sda")["SCSI_IDENT_SERIAL"]


def test_vpd_wrong_page_code() -> None:
    with pytest.raises(ParseError, match="page code"):
        scsi.parse_vpd_unit_serial(bytes([0, 0x83, 0, 1, 0x41]))


def test_supported_pages() -> None:
    page = bytes([0, 0, 0, 3, 0x00, 0x80, 0x83])
    assert scsi.parse_vpd_supported_pages(page) == (0x00, 0x80, 0x83)


# --------------------------------------------------------------------------- VPD 0x83


def desc(b0: int, b1: int, value: bytes) -> bytes:
    return bytes([b0, b1, 0, len(value)]) + value


def vpd83_sda() -> bytes:
    """VPD 0x83 of sda, descriptor by descriptor as sg_inq_vpd83_sda.txt lists them."""
    body = b"".join(
        [
            desc(0x02, 0x01, b"Linux   " + b"scsi_debug      " + b"2000"),  # T10, ASCII, LU
            desc(0x01, 0x03, bytes.fromhex("33333330000007d0")),  # NAA 3, LU
            desc(0x61, 0x94, bytes.fromhex("00000001")),  # SAS, rel. target port 1
            desc(0x61, 0x93, bytes.fromhex("32222220000007ce")),  # SAS, NAA, target port
            desc(0x61, 0x95, bytes.fromhex("00000700")),  # SAS, target port group 0x700
            desc(0x61, 0xA3, bytes.fromhex("32222220000007cd")),  # SAS, NAA, target device
            desc(0x63, 0xA8, b"naa.32222220000007CD" + bytes(4)),  # SAS, name string
        ]
    )
    return bytes([0x00, 0x83]) + len(body).to_bytes(2, "big") + body


_SG_TYPES = {
    "T10 vendor identification": DesignatorType.T10_VENDOR_ID,
    "NAA": DesignatorType.NAA,
    "Relative target port": DesignatorType.RELATIVE_TARGET_PORT,
    "Target port group": DesignatorType.TARGET_PORT_GROUP,
    "SCSI name string": DesignatorType.SCSI_NAME_STRING,
}
_SG_CODESETS = {"ASCII": CodeSet.ASCII, "Binary": CodeSet.BINARY, "UTF-8": CodeSet.UTF8}
_SG_ASSOC = {
    "Addressed logical unit": Association.LOGICAL_UNIT,
    "Target port": Association.TARGET_PORT,
    "Target device that contains addressed lu": Association.TARGET_DEVICE,
}


def sg_inq_designators() -> list[tuple[int, int, int, int]]:
    """(type, code set, association, descriptor length) as sg_inq printed them."""
    text = fixture("sgio/sg_inq_vpd83_sda.txt")
    out: list[tuple[int, int, int, int]] = []
    for block in text.split("Designation descriptor number")[1:]:
        length = re.search(r"descriptor length: (\d+)", block)
        kind = re.search(r"designator_type: (.+?),\s+code_set: (\S+)", block)
        assoc = re.search(r"associated with the (.+)", block)
        assert length and kind and assoc
        out.append(
            (
                _SG_TYPES[kind.group(1)],
                _SG_CODESETS[kind.group(2)],
                _SG_ASSOC[assoc.group(1).strip()],
                int(length.group(1)),
            )
        )
    return out


def test_vpd83_designators_match_sg_inq() -> None:
    ids = scsi.parse_vpd83(vpd83_sda())
    assert not ids.truncated
    got = [(d.type_code, d.code_set, d.association, 4 + len(d.value)) for d in ids.designators]
    assert got == sg_inq_designators()
    t10, naa = ids.designators[0], ids.designators[1]
    assert t10.text == "Linux   scsi_debug      2000"
    assert naa.naa == scsi.Naa.LOCALLY_ASSIGNED and naa.hex == "33333330000007d0"
    assert ids.designators[2].protocol == 6  # SAS, as "transport: Serial Attached SCSI"
    assert t10.protocol is None  # PIV clear
    assert ids.designators[6].text == "naa.32222220000007CD"


def test_vpd83_port_designators_match_udev() -> None:
    ids = scsi.parse_vpd83(vpd83_sda())
    props = udev_props("sda")
    assert ids.relative_target_port == int(props["SCSI_IDENT_PORT_RELATIVE"]) == 1
    assert ids.target_port_group == int(props["SCSI_IDENT_PORT_TARGET_PORT_GROUP"], 16)


def test_wwid_matches_udev_wwn_and_by_id_link() -> None:
    wwid = scsi.wwid_from_vpd83(scsi.parse_vpd83(vpd83_sda()))
    assert wwid is not None
    props = udev_props("sda")
    assert wwid.wwn == props["ID_WWN"] == "0x33333330000007d0"
    assert wwid.wwn_with_extension == props["ID_WWN_WITH_EXTENSION"]
    assert wwid.serial == "333333330000007d0"
    assert f"/dev/disk/by-id/scsi-{wwid.serial}" in props["DEVLINKS"].split()
    assert wwid.serial == "3" + props["SCSI_IDENT_LUN_NAA_LOCAL"]
    sysfs = fixture("udev/sysfs_paths.txt").splitlines()[0].split()
    assert f"wwid={wwid.sysfs}" in sysfs


def test_udev_id_serial_prefers_t10_over_local_naa() -> None:
    """Debian's sg3-utils rules: a locally assigned NAA ranks below the T10 vendor id."""
    ids = scsi.parse_vpd83(vpd83_sda())
    props = udev_props("sda")
    assert scsi.udev_id_serial(ids) == props["ID_SERIAL"] == "1Linux_scsi_debug_2000"
    assert scsi.udev_id_serial(ids) == "1" + props["SCSI_IDENT_LUN_T10"]
    assert scsi.udev_id_serial(ids, sources="L") == "333333330000007d0"
    assert scsi.udev_id_serial(ids, sources="") is None
    # and multipath-tools, which keys on ID_SERIAL, named the map after it
    assert "mpatha 1Linux_scsi_debug_2000" in fixture("multipath-tools/bindings")


def test_wwid_preference_order() -> None:
    t10 = desc(0x02, 0x01, b"VEND    PRODUCT  SER1")
    eui = desc(0x01, 0x02, bytes.fromhex("0011223344556677"))
    naa3 = desc(0x01, 0x03, bytes.fromhex("3000000000000001"))
    naa6 = desc(0x01, 0x03, bytes.fromhex("6000000000000000000000000000abcd"))
    port_naa = desc(0x61, 0x93, bytes.fromhex("5000000000000009"))

    def page(*descs: bytes) -> scsi.DeviceIdentification:
        body = b"".join(descs)
        return scsi.parse_vpd83(bytes([0, 0x83]) + len(body).to_bytes(2, "big") + body)

    def serial(*descs: bytes) -> str | None:
        w = scsi.wwid_from_vpd83(page(*descs))
        return w.serial if w else None

    assert serial(t10, eui, naa3) == "33000000000000001"
    assert serial(t10, naa3, naa6) == "36000000000000000000000000000abcd"
    assert serial(t10, eui) == "20011223344556677"
    assert serial(t10) == "1VEND_PRODUCT_SER1"
    assert serial(port_naa) is None  # a target port's NAA is not the LU's name
    w6 = scsi.wwid_from_vpd83(page(naa6))
    assert w6 is not None
    assert w6.wwn == "0x6000000000000000" and w6.wwn_with_extension == "0x" + naa6[4:].hex()
    assert scsi.udev_id_serial(page(t10, naa6)) == "36000000000000000000000000000abcd"
    assert scsi.udev_id_serial(page(t10, eui)) == "20011223344556677"
    w_t10 = scsi.wwid_from_vpd83(page(t10))
    assert w_t10 is not None and w_t10.wwn is None and w_t10.sysfs.startswith("t10.VEND")


def test_vpd83_truncated_and_malformed() -> None:
    full = vpd83_sda()
    cut = scsi.parse_vpd83(full[:40])  # header says more: allocation length was short
    assert cut.truncated and len(cut.designators) == 1
    bad = bytearray(full)
    bad[4 + 3] = 200  # first descriptor claims more than the page holds
    with pytest.raises(ParseError, match="overruns"):
        scsi.parse_vpd83(bytes(bad))


# --------------------------------------------------------------------------- RTPG


def sg_rtpg_groups(name: str) -> list[dict[str, object]]:
    """The target port groups sg_rtpg printed, as dicts."""
    groups: list[dict[str, object]] = []
    for line in fixture(f"sgio/sg_rtpg_{name}.txt").splitlines():
        if m := re.search(r"target port group id : 0x([0-9a-f]+) , Pref=(\d)", line):
            groups.append({"id": int(m.group(1), 16), "pref": m.group(2) == "1", "ports": []})
        elif m := re.search(r"asymmetric access state : 0x([0-9a-f]+)", line):
            groups[-1]["state"] = int(m.group(1), 16)
        elif "T_SUP" in line:
            bits = dict(re.findall(r"(\w+)_SUP : (\d)", line))
            groups[-1]["sup"] = bits
        elif m := re.fullmatch(r"\s+0x([0-9a-f]+)", line):
            ports = groups[-1]["ports"]
            assert isinstance(ports, list)
            ports.append(int(m.group(1), 16))
    return groups


def rtpg_bytes(host_no: int) -> bytes:
    """RTPG answer of scsi_debug (vpd_use_hostno=0) on SCSI host ``host_no``."""
    group_a = ((host_no + 1) & 0x7F) << 8
    desc_a = bytes([host_no % 3, 0x0F]) + group_a.to_bytes(2, "big") + bytes([0, 0, 0, 1])
    desc_a += bytes([0, 0, 0, 1])
    desc_b = bytes([0x03, 0x08]) + (group_a + 0x80).to_bytes(2, "big") + bytes([0, 0, 0, 1])
    desc_b += bytes([0, 0, 0, 2])
    body = desc_a + desc_b
    return len(body).to_bytes(4, "big") + body


_SUP_NAMES = {
    "T": AluaState.TRANSITIONING,
    "O": AluaState.OFFLINE,
    "LBD": AluaState.LBA_DEPENDENT,
    "U": AluaState.UNAVAILABLE,
    "S": AluaState.STANDBY,
    "AN": AluaState.ACTIVE_NON_OPTIMIZED,
    "AO": AluaState.ACTIVE_OPTIMIZED,
}


@pytest.mark.parametrize(("name", "host_no"), [("sda", 6), ("sdc", 7)])
def test_rtpg_matches_sg_rtpg(name: str, host_no: int) -> None:
    data = rtpg_bytes(host_no)
    report = scsi.parse_rtpg(data)
    assert report.needed_length == len(data) == 28  # sg_rtpg: "Report list length = 28"
    assert not report.extended_header and not report.truncated
    expected = sg_rtpg_groups(name)
    assert len(report.groups) == len(expected) == 2
    for got, want in zip(report.groups, expected, strict=True):
        assert got.group_id == want["id"]
        assert got.access_state == want["state"]
        assert got.preferred == want["pref"]
        assert got.relative_ports == tuple(want["ports"])  # type: ignore[arg-type]
        sup = want["sup"]
        assert isinstance(sup, dict)
        assert got.supported == frozenset(_SUP_NAMES[k] for k, v in sup.items() if v == "1")


@pytest.mark.parametrize(
    ("name", "host_no", "state", "prio"),
    [("sda", 6, AluaState.ACTIVE_OPTIMIZED, 50), ("sdc", 7, AluaState.ACTIVE_NON_OPTIMIZED, 10)],
)
def test_own_group_state_and_priority(name: str, host_no: int, state: AluaState, prio: int) -> None:
    props = udev_props(name)
    tpg = int(props["SCSI_IDENT_PORT_TARGET_PORT_GROUP"], 16)
    report = scsi.parse_rtpg(rtpg_bytes(host_no))
    group = scsi.own_port_group(report, tpg, int(props["SCSI_IDENT_PORT_RELATIVE"]))
    assert group is not None and group.state == state
    assert scsi.alua_priority(group.access_state, group.preferred) == prio
    # multipath-tools' alua prioritizer gave the same numbers for the same paths
    line = next(
        ln
        for ln in fixture("multipath-tools/multipathd_show_paths.txt").splitlines()
        if f" {name} " in ln
    )
    assert int(line.split()[3]) == prio
    assert scsi.alua_path_state(group.access_state) == PathState.UP


def test_own_group_fallback_and_miss() -> None:
    report = scsi.parse_rtpg(rtpg_bytes(6))
    by_port = scsi.own_port_group(report, None, 2)
    assert by_port is not None and by_port.group_id == 0x780
    assert by_port.state == AluaState.UNAVAILABLE and by_port.state_name == "unavailable"
    assert scsi.own_port_group(report, 0x1234, None) is None


def test_rtpg_extended_header_and_truncation() -> None:
    plain = rtpg_bytes(8)  # host 8: standby
    body = plain[4:]
    ext = (len(body) + 4).to_bytes(4, "big") + bytes([0x10, 30, 0, 0]) + body
    report = scsi.parse_rtpg(ext)
    assert report.extended_header and report.implicit_transition_time == 30
    assert [g.state for g in report.groups] == [AluaState.STANDBY, AluaState.UNAVAILABLE]
    cut = scsi.parse_rtpg(plain[:20])
    assert cut.truncated and cut.needed_length == 28 and len(cut.groups) == 1
    bad = bytearray(plain)
    bad[4 + 7] = 9  # group A claims 9 ports inside a 24-byte list
    with pytest.raises(ParseError):
        scsi.parse_rtpg(bytes(bad))


def test_reserved_state_and_pref_bit() -> None:
    desc_ = bytes([0x80 | 0x05, 0xFF, 0x01, 0x00, 0, 0, 0, 0])
    report = scsi.parse_rtpg(len(desc_).to_bytes(4, "big") + desc_)
    g = report.groups[0]
    assert g.preferred and g.state is None and g.state_name == "reserved(0x5)"
    assert g.relative_ports == ()


@pytest.mark.parametrize(
    ("state", "pref", "exclusive", "prio"),
    [
        (AluaState.ACTIVE_OPTIMIZED, False, False, 50),
        (AluaState.ACTIVE_NON_OPTIMIZED, False, False, 10),
        (AluaState.LBA_DEPENDENT, False, False, 5),
        (AluaState.STANDBY, False, False, 1),
        (AluaState.UNAVAILABLE, False, False, 0),
        (AluaState.OFFLINE, False, False, 0),
        (AluaState.TRANSITIONING, False, False, 0),
        (AluaState.ACTIVE_OPTIMIZED, True, False, 50),
        (AluaState.ACTIVE_OPTIMIZED, True, True, 130),
        (AluaState.ACTIVE_NON_OPTIMIZED, True, False, 90),
        (AluaState.STANDBY, True, False, 81),
        (None, True, False, 0),
        (0x07, False, False, 0),
    ],
)
def test_alua_priority(state: int | None, pref: bool, exclusive: bool, prio: int) -> None:
    assert scsi.alua_priority(state, pref, exclusive) == prio


@pytest.mark.parametrize(
    ("state", "path_state"),
    [
        (AluaState.ACTIVE_OPTIMIZED, PathState.UP),
        (AluaState.ACTIVE_NON_OPTIMIZED, PathState.UP),
        (AluaState.LBA_DEPENDENT, PathState.UP),
        (AluaState.STANDBY, PathState.GHOST),
        (AluaState.UNAVAILABLE, PathState.GHOST),
        (AluaState.TRANSITIONING, PathState.PENDING),
        (AluaState.OFFLINE, PathState.DOWN),
        (None, PathState.DOWN),
    ],
)
def test_alua_path_state(state: int | None, path_state: PathState) -> None:
    assert scsi.alua_path_state(state) == path_state


# --------------------------------------------------------------------------- sense


def fixed_sense(key: int, asc: int, ascq: int, code: int = 0x70) -> bytes:
    data = bytearray(18)
    data[0] = code
    data[2] = key
    data[7] = 10
    data[12] = asc
    data[13] = ascq
    return bytes(data)


def descriptor_sense(key: int, asc: int, ascq: int, code: int = 0x72) -> bytes:
    return bytes([code, key, asc, ascq, 0, 0, 0, 0])


def test_fixed_sense() -> None:
    s = scsi.decode_sense(fixed_sense(0x02, 0x04, 0x0B))
    assert (s.response_code, s.sense_key, s.asc, s.ascq) == (0x70, 2, 0x04, 0x0B)
    assert not s.descriptor_format and not s.deferred
    assert s.key_name == "NOT READY"
    assert s.asc_name == "target port in standby state"
    assert str(s) == "NOT READY: target port in standby state (04/0b)"


def test_fixed_sense_valid_bit_deferred_and_short() -> None:
    s = scsi.decode_sense(bytes([0xF1]) + fixed_sense(0x06, 0x29, 0x00)[1:])
    assert s.response_code == 0x71 and s.deferred and s.sense_key == SenseKey.UNIT_ATTENTION
    short = bytearray(fixed_sense(0x02, 0x04, 0x0A))
    short[7] = 4  # additional length stops before ASC: the ASC byte is not valid
    s2 = scsi.decode_sense(bytes(short))
    assert (s2.sense_key, s2.asc, s2.ascq) == (2, 0, 0)
    s3 = scsi.decode_sense(bytes([0x70, 0, 0x05]))
    assert (s3.sense_key, s3.asc) == (5, 0)


def test_descriptor_sense() -> None:
    s = scsi.decode_sense(descriptor_sense(0x06, 0x2A, 0x06))
    assert s.descriptor_format and s.sense_key == SenseKey.UNIT_ATTENTION
    assert (s.asc, s.ascq) == (0x2A, 0x06)
    assert s.asc_name == "asymmetric access state changed"
    d = scsi.decode_sense(bytes([0x73, 0x0B]))
    assert d.deferred and d.key_name == "ABORTED COMMAND" and (d.asc, d.ascq) == (0, 0)
    assert "asc/ascq 99/01" in str(scsi.decode_sense(descriptor_sense(0x0C, 0x99, 0x01)))


@pytest.mark.parametrize("raw", [b"", b"\x00\x00\x00", b"\x7f" + bytes(17), b"\x72", b"\x70\x00"])
def test_bad_sense(raw: bytes) -> None:
    with pytest.raises(ParseError):
        scsi.decode_sense(raw)


# --------------------------------------------------------------------------- verdicts

CC = scsi.STATUS_CHECK_CONDITION
H = scsi.HostStatus


@pytest.mark.parametrize(
    ("status", "host", "driver", "sense", "state", "retry"),
    [
        (0x00, H.DID_OK, 0, b"", PathState.UP, False),
        (0x18, H.DID_OK, 0, b"", PathState.UP, False),  # reservation conflict
        (0x08, H.DID_OK, 0, b"", PathState.PENDING, True),  # busy
        (0x28, H.DID_OK, 0, b"", PathState.PENDING, True),  # task set full
        (0x40, H.DID_OK, 0, b"", PathState.DOWN, True),  # task aborted
        (0x00, H.DID_NO_CONNECT, 0, b"", PathState.DOWN, False),
        (0x00, H.DID_BAD_TARGET, 0, b"", PathState.DOWN, False),
        (0x00, H.DID_TRANSPORT_FAILFAST, 0, b"", PathState.DOWN, False),
        (0x00, H.DID_ABORT, 0, b"", PathState.DOWN, False),
        (0x00, H.DID_TIME_OUT, 0, b"", PathState.PENDING, False),
        (0x00, H.DID_BUS_BUSY, 0, b"", PathState.DOWN, True),
        (0x00, H.DID_TRANSPORT_DISRUPTED, 0, b"", PathState.DOWN, True),
        (0x00, H.DID_ERROR, 0, b"", PathState.DOWN, True),
        (0x00, H.DID_OK, scsi.DRIVER_TIMEOUT, b"", PathState.PENDING, False),
        (0x00, H.DID_OK, 0x04, b"", PathState.DOWN, True),
        (CC, H.DID_OK, 8, fixed_sense(0x02, 0x04, 0x0B), PathState.GHOST, False),
        (CC, H.DID_OK, 8, fixed_sense(0x02, 0x04, 0x0C), PathState.GHOST, False),
        (CC, H.DID_OK, 8, fixed_sense(0x02, 0x04, 0x0A), PathState.PENDING, False),
        (CC, H.DID_OK, 8, descriptor_sense(0x02, 0x04, 0x0A), PathState.PENDING, False),
        (CC, H.DID_OK, 8, fixed_sense(0x02, 0x04, 0x01), PathState.PENDING, False),
        (CC, H.DID_OK, 8, fixed_sense(0x02, 0x04, 0x03), PathState.DOWN, False),
        (CC, H.DID_OK, 8, fixed_sense(0x02, 0x3A, 0x00), PathState.DOWN, False),
        (CC, H.DID_OK, 8, fixed_sense(0x06, 0x29, 0x00), PathState.UP, True),
        (CC, H.DID_OK, 8, descriptor_sense(0x06, 0x2A, 0x06), PathState.UP, True),
        (CC, H.DID_OK, 8, fixed_sense(0x05, 0x20, 0x00), PathState.UNSUPPORTED, False),
        (CC, H.DID_OK, 8, fixed_sense(0x05, 0x25, 0x00), PathState.DOWN, False),
        (CC, H.DID_OK, 8, fixed_sense(0x03, 0x11, 0x00), PathState.UP, False),  # medium
        (CC, H.DID_OK, 8, fixed_sense(0x01, 0x17, 0x01), PathState.UP, False),  # recovered
        (CC, H.DID_OK, 8, fixed_sense(0x04, 0x44, 0x00), PathState.DOWN, False),  # hardware
        (CC, H.DID_OK, 8, fixed_sense(0x0B, 0x47, 0x00), PathState.DOWN, True),  # aborted
        (CC, H.DID_OK, 8, b"", PathState.DOWN, False),  # no sense at all
        (CC, H.DID_OK, 8, b"\x00" * 18, PathState.DOWN, False),  # not sense data
        (0x22, H.DID_OK, 8, fixed_sense(0x02, 0x04, 0x0B), PathState.GHOST, False),
        (0x02, H.DID_NO_CONNECT, 8, fixed_sense(0x06, 0x29, 0x00), PathState.DOWN, False),
    ],
)
def test_classify_check(  # noqa: PLR0917 - one parameter per table column
    status: int, host: int, driver: int, sense: bytes, state: PathState, retry: bool
) -> None:
    outcome = scsi.classify_check(status, host, driver, sense)
    assert (outcome.state, outcome.retry) == (state, retry), outcome.reason
    assert outcome.reason


def test_classify_keeps_sense_and_names_it() -> None:
    outcome = scsi.classify_check(CC, 0, 8, fixed_sense(0x02, 0x04, 0x0B))
    assert outcome.sense is not None and outcome.sense.asc == 0x04
    assert "standby" in outcome.reason
    gone = scsi.classify_check(0, H.DID_NO_CONNECT, 0)
    assert "DID_NO_CONNECT" in gone.reason
    assert "0x77" in scsi.classify_check(0, 0x77, 0).reason


# --------------------------------------------------------------------------- fuzz


def _parse_or_parse_error(fn: object, data: bytes) -> None:
    with contextlib.suppress(ParseError):
        fn(data)  # type: ignore[operator]


PARSERS = [
    scsi.parse_standard_inquiry,
    scsi.parse_vpd_unit_serial,
    scsi.parse_vpd_supported_pages,
    scsi.parse_vpd83,
    scsi.parse_rtpg,
    scsi.decode_sense,
]


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_parsers_raise_only_parse_error(data: bytes) -> None:
    for fn in PARSERS:
        _parse_or_parse_error(fn, data)


@settings(max_examples=300)
@given(st.binary(max_size=260), st.integers(0, 0xFFFF))
def test_vpd83_fuzz_with_valid_header(payload: bytes, declared: int) -> None:
    data = bytes([0, 0x83]) + declared.to_bytes(2, "big") + payload
    try:
        ids = scsi.parse_vpd83(data)
    except ParseError:
        return
    scsi.wwid_from_vpd83(ids)
    scsi.udev_id_serial(ids, "TL")
    _ = ids.target_port_group, ids.relative_target_port
    for d in ids.designators:
        d.render()


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(0, 300))
def test_rtpg_fuzz_with_valid_header(payload: bytes, declared: int) -> None:
    data = declared.to_bytes(4, "big") + payload
    try:
        report = scsi.parse_rtpg(data)
    except ParseError:
        return
    for g in report.groups:
        _ = g.state_name
        scsi.alua_priority(g.access_state, g.preferred)
    scsi.own_port_group(report, 1, 1)


@settings(max_examples=300)
@given(st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=64))
def test_classify_never_raises(status: int, host: int, driver: int, sense: bytes) -> None:
    outcome = scsi.classify_check(status, host, driver, sense)
    assert isinstance(outcome.state, PathState) and outcome.reason
