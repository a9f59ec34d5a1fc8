"""dmpath.policy.filter: blacklist/exceptions, find_multipaths and protocol names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmpath import config as c
from dmpath.policy.filter import (
    PROTOCOLS,
    Candidate,
    is_blacklisted,
    protocol_of,
    should_manage,
)

#: real outputs captured in the lab (tests/fixtures, see its README)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "udev"


def udev_props(name: str) -> dict[str, str]:
    """``udevadm info --export`` output (KEY='value' lines) as a dict."""
    props = {}
    for line in (FIXTURES / f"udev_{name}.txt").read_text().splitlines():
        key, _, value = line.partition("=")
        props[key] = value.strip("'")
    return props


SCSI_PROPS = {"ID_SERIAL": "36001405abc", "ID_WWN": "0x6001405abc", "SCSI_IDENT_SERIAL": "x"}


def cand(name: str = "sdb", wwid: str = "36001405abc", **kw: object) -> Candidate:
    args: dict[str, object] = {
        "vendor": "LIO-ORG",
        "product": "disk1",
        "properties": SCSI_PROPS,
        "protocol": "scsi:iscsi",
    }
    args.update(kw)
    return Candidate(devnode_name=name, wwid=wwid, **args)  # type: ignore[arg-type]


def cfg(text: str = "") -> c.Config:
    return c.parse_config(text)


# --------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("name", ["sda", "sdb", "sdc", "sdd"])
def test_lab_scsi_debug_paths_are_accepted(name: str) -> None:
    props = udev_props(name)
    proto = protocol_of(props)
    assert proto == "scsi:unspec"
    cnd = Candidate(name, props["ID_SERIAL"], "Linux", "scsi_debug", props, proto)
    assert is_blacklisted(cnd, cfg()) == (False, "")


# --------------------------------------------------------------------------- never paths


@pytest.mark.parametrize(
    "name",
    [
        "sr0",
        "loop0",
        "loop12",
        "dm-0",
        "dm-17",
        "md0",
        "md127",
        "md_d0",
        "ram3",
        "zram0",
        "nbd0",
        "st0",
        "scd0",
        "fd0",
        "rbd0",
        "zd16",
        "nullb0",
        "pmem0",
        "drbd1",
        "bcache0",
        "nvme0c0n1",
        "nvme12c3n4",
    ],
)
def test_never_paths_even_with_catch_all_exceptions(name: str) -> None:
    everything = cfg(
        '[blacklist_exceptions]\ndevnode = [".*"]\nwwid = [".*"]\nproperty = [".*"]\n'
        'protocol = [".*"]\n[[blacklist_exceptions.device]]\nvendor = ".*"\n'
    )
    blocked, why = is_blacklisted(cand(name), everything)
    assert blocked
    assert "never a path" in why


@pytest.mark.parametrize("name", ["sda", "sdaa", "nvme0n1", "dasda", "stx", "mdx"])
def test_ordinary_names_are_not_never_paths(name: str) -> None:
    assert is_blacklisted(cand(name), cfg()) == (False, "")


# --------------------------------------------------------------------------- categories


def test_builtin_devnode_blacklist_and_its_exception() -> None:
    blocked, why = is_blacklisted(cand("vda"), cfg())
    assert blocked and "devnode" in why and "vda" in why
    assert (
        is_blacklisted(cand("vda"), cfg('[blacklist_exceptions]\ndevnode = ["^vda$"]'))[0] is False
    )


def test_exception_in_another_category_does_not_lift_a_blacklist_entry() -> None:
    conf = cfg('[blacklist]\ndevnode = ["^sdb$"]\n[blacklist_exceptions]\nwwid = [".*"]\n')
    blocked, why = is_blacklisted(cand("sdb"), conf)
    assert blocked and "devnode" in why


def test_wwid_blacklist_with_exceptions() -> None:
    conf = cfg('[blacklist]\nwwid = [".*"]\n[blacklist_exceptions]\nwwid = ["^3600a0980"]\n')
    assert is_blacklisted(cand(wwid="3600a0980383030"), conf) == (False, "")
    blocked, why = is_blacklisted(cand(wwid="36001405abc"), conf)
    assert blocked and "WWID '36001405abc'" in why


def test_empty_wwid_skips_the_wwid_category() -> None:
    conf = cfg('[blacklist]\nwwid = [".*"]\n')
    assert is_blacklisted(cand(wwid=""), conf) == (False, "")


def test_property_requirement_from_builtin_exceptions() -> None:
    blocked, why = is_blacklisted(cand(properties={"ID_SERIAL": "x", "ID_BUS": "ata"}), cfg())
    assert blocked and "no udev property matches blacklist_exceptions.property" in why
    assert is_blacklisted(cand(properties={"ID_WWN": "0x5"}), cfg())[0] is False
    assert is_blacklisted(cand(properties={"SCSI_IDENT_LUN_NAA_REG": "6"}), cfg())[0] is False
    lifted = cfg('[blacklist_exceptions]\nproperty = ["."]\n')
    assert is_blacklisted(cand(properties={"ID_SERIAL": "x"}), lifted)[0] is False


def test_property_blacklist_matches_names_not_values() -> None:
    conf = cfg('[blacklist]\nproperty = ["^ID_ATA$"]\n')
    blocked, why = is_blacklisted(cand(properties={**SCSI_PROPS, "ID_ATA": "1"}), conf)
    assert blocked and "ID_ATA" in why
    assert is_blacklisted(cand(properties={**SCSI_PROPS, "X": "ID_ATA"}), conf)[0] is False


def test_property_exception_wins_over_property_blacklist() -> None:
    conf = cfg(
        '[blacklist]\nproperty = ["^ID_ATA$"]\n[blacklist_exceptions]\nproperty = ["^ID_ATA$"]\n'
    )
    assert is_blacklisted(cand(properties={"ID_ATA": "1"}), conf)[0] is False


def test_device_blacklist_needs_every_given_expression() -> None:
    conf = cfg('[[blacklist.device]]\nvendor = "^LIO"\nproduct = "^disk2$"\n')
    assert is_blacklisted(cand(product="disk1"), conf)[0] is False
    blocked, why = is_blacklisted(cand(product="disk2"), conf)
    assert blocked and "blacklist.device[0]" in why
    vendor_only = cfg('[[blacklist.device]]\nvendor = "^LIO-ORG$"\n')
    assert is_blacklisted(cand(vendor="LIO-ORG ", product="any"), vendor_only)[0] is True


def test_device_exception_wins() -> None:
    conf = cfg(
        '[[blacklist.device]]\nvendor = ".*"\n[[blacklist_exceptions.device]]\n'
        'vendor = "^Linux$"\nproduct = "^scsi_debug$"\n'
    )
    assert is_blacklisted(cand(vendor="Linux", product="scsi_debug"), conf)[0] is False
    assert is_blacklisted(cand(vendor="Linux", product="other"), conf)[0] is True


def test_usb_is_blacklisted_by_default_and_can_be_admitted() -> None:
    blocked, why = is_blacklisted(cand(protocol="scsi:usb"), cfg())
    assert blocked and "protocol" in why
    conf = cfg('[blacklist_exceptions]\nprotocol = ["^scsi:usb$"]\n')
    assert is_blacklisted(cand(protocol="scsi:usb"), conf)[0] is False


def test_protocol_blacklist() -> None:
    conf = cfg('[blacklist]\nprotocol = ["scsi:unspec", "^undef$"]\n')
    assert is_blacklisted(cand(protocol="scsi:unspec"), conf)[0] is True
    assert is_blacklisted(cand(protocol="undef"), conf)[0] is True
    assert is_blacklisted(cand(protocol="scsi:fcp"), conf)[0] is False


_names = st.from_regex(r"\A[a-z]{1,6}[0-9]{0,3}\Z")
_wwids = st.from_regex(r"\A[0-9a-f]{1,20}\Z")


@given(name=_names, wwid=_wwids, protocol=st.sampled_from(PROTOCOLS))
def test_an_exact_exception_always_lifts_its_own_category(
    name: str, wwid: str, protocol: str
) -> None:
    """A catch-all blacklist in one category excludes every device; adding the device's
    own value as an exception makes the catch-all irrelevant for it."""
    c0 = cand(name, wwid, protocol=protocol)
    for key, value in (("devnode", name), ("wwid", wwid), ("protocol", protocol)):
        exception = f"[blacklist_exceptions]\n{key} = ['^{re.escape(value)}$']\n"
        assert is_blacklisted(c0, cfg(f'[blacklist]\n{key} = [".*"]\n'))[0] is True
        with_catch_all = cfg(f'[blacklist]\n{key} = [".*"]\n' + exception)
        assert is_blacklisted(c0, with_catch_all) == is_blacklisted(c0, cfg(exception))


@given(
    name=st.text(max_size=20),
    wwid=st.text(max_size=20),
    vendor=st.text(max_size=10),
    props=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5),
)
def test_filter_never_raises(name: str, wwid: str, vendor: str, props: dict[str, str]) -> None:
    blocked, why = is_blacklisted(
        Candidate(name, wwid, vendor, vendor, props, protocol_of(props)), cfg()
    )
    assert blocked == bool(why)


# --------------------------------------------------------------------------- find_multipaths


@pytest.mark.parametrize(
    ("mode", "paths", "known", "expected"),
    [
        ("strict", 1, False, False),
        ("strict", 4, False, False),
        ("strict", 1, True, True),
        ("on", 1, False, False),
        ("on", 2, False, True),
        ("on", 1, True, True),
        ("greedy", 1, False, True),
        ("greedy", 0, False, False),
        ("on", 0, True, False),
    ],
)
def test_should_manage(mode: str, paths: int, known: bool, expected: bool) -> None:
    known_wwids = {"w1"} if known else {"other"}
    assert should_manage("w1", paths, known_wwids, mode) is expected
    assert should_manage("w1", paths, known_wwids, c.FindMultipaths(mode)) is expected


def test_should_manage_never_takes_an_empty_wwid() -> None:
    for mode in c.FindMultipaths:
        assert should_manage("", 5, {""}, mode) is False


def test_should_manage_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError):
        should_manage("w", 2, set(), "yes")


def test_configured_wwids_are_known() -> None:
    conf = cfg('[[multipaths]]\nwwid = "w1"\n')
    assert should_manage("w1", 1, c.configured_wwids(conf), "strict")


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize(
    ("devpath", "expected"),
    [
        ("/devices/pseudo_0/adapter0/host6/target6:0:0/6:0:0:0/block/sda", "scsi:unspec"),
        (
            "/devices/pci0000:00/0000:00:03.0/0000:08:00.0/host3/rport-3:0-0/target3:0:0/"
            "3:0:0:1/block/sdb",
            "scsi:fcp",
        ),
        ("/devices/platform/host2/session1/target2:0:0/2:0:0:0/block/sdc", "scsi:iscsi"),
        (
            "/devices/pci0000:00/0000:00:1f.0/host0/port-0:0/end_device-0:0/target0:0:0/"
            "0:0:0:0/block/sdd",
            "scsi:sas",
        ),
        ("/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sde", "scsi:ata"),
        (
            "/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host7/target7:0:0/7:0:0:0/block/sdf",
            "scsi:usb",
        ),
        ("/devices/pci0000:00/0000:00:05.0/virtio1/block/vda", "undef"),
    ],
)
def test_protocol_from_devpath(devpath: str, expected: str) -> None:
    assert protocol_of({"DEVPATH": devpath}) == expected


def test_protocol_nvme_and_others() -> None:
    nvme = {"DEVPATH": "/devices/virtual/nvme-fabrics/ctl/nvme1/nvme1n1", "DEVNAME": "/dev/nvme1n1"}
    assert protocol_of(nvme, "tcp") == "nvme:tcp"
    assert protocol_of(nvme) == "nvme:unspec"
    assert protocol_of(nvme, "nvme:rdma") == "nvme:rdma"
    assert protocol_of({"DEVNAME": "/dev/dasda"}) == "ccw"
    assert protocol_of({"DEVNAME": "/dev/cciss!c0d0"}) == "cciss"
    assert protocol_of({}) == "undef"


def test_protocol_passes_known_transport_through() -> None:
    for p in PROTOCOLS:
        assert protocol_of({}, p) == p
