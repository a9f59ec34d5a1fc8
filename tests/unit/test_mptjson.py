"""``--format multipath-tools``: the same document multipathd 0.9 writes for ``show maps json``.

The fixture is multipath-tools' real output on the lab's two scsi_debug LUNs; the snapshot
built here describes the same topology the way dmpathd would.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from dmpath.cli import mptjson
from dmpath.config import Backend
from dmpath.model import Check, GroupState, KernelState, Map, Path, PathGroup, Snapshot

FIXTURE = "multipath-tools/multipathd_show_maps_json.txt"

#: what dmpath cannot know or does not count; everything else must match the fixture
NOT_TRACKED = {"action", "write_prot", "map_loads"}


def _fixture(root: pathlib.Path) -> str:
    return (root / FIXTURE).read_text()


def _path(name: str, devnum: str, hctl: str, prio: int, group: int) -> Path:
    return Path(
        name=name,
        devnum=devnum,
        wwid="",
        hctl=hctl,
        vendor="Linux",
        model="scsi_debug",
        dev_state="running",
        checker="tur",
        check=Check.UP,
        kernel_state=KernelState.ACTIVE,
        priority=prio,
        group=group,
    )


DEVNUMS = {"sda": "8:0", "sdb": "8:16", "sdc": "8:32", "sdd": "8:48"}


def _map(name: str, lun: int, sysfs: str, first: str, second: str) -> Map:
    a = _path(first, DEVNUMS[first], f"6:0:0:{lun}", 50, 1)
    b = _path(second, DEVNUMS[second], f"7:0:0:{lun}", 10, 2)
    return Map(
        name=name,
        wwid=f"1Linux_scsi_debug_{2000 + lun}",
        backend=Backend.DM,
        sysfs=sysfs,
        size_sectors=65536,
        vendor="Linux",
        model="scsi_debug",
        rev="0191",
        features="0",
        hwhandler="1 alua",
        groups=[
            PathGroup(1, "service-time 0", 50, GroupState.ACTIVE, [first]),
            PathGroup(2, "service-time 0", 10, GroupState.ENABLED, [second]),
        ],
        paths=[a, b],
    )


def fixture_snapshot() -> Snapshot:
    return Snapshot(
        maps=[_map("mpatha", 0, "dm-0", "sda", "sdc"), _map("mpathb", 1, "dm-1", "sdb", "sdd")]
    )


def _shape(value: Any) -> Any:
    """Keys (in order) and value types, recursively: the structure a script relies on."""
    if isinstance(value, dict):
        return [(k, _shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def _without(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def test_layout_reproduces_multipath_tools_text(shared_fixtures: pathlib.Path) -> None:
    text = _fixture(shared_fixtures)
    assert mptjson.format_mpt(json.loads(text)) == text


def test_same_keys_and_structure_as_fixture(shared_fixtures: pathlib.Path) -> None:
    ours = json.loads(mptjson.format_mpt(mptjson.snapshot_to_mpt(fixture_snapshot())))
    theirs = json.loads(_fixture(shared_fixtures))
    assert _shape(ours) == _shape(theirs)


def test_same_values_as_fixture_where_dmpath_knows_them(shared_fixtures: pathlib.Path) -> None:
    ours = mptjson.snapshot_to_mpt(fixture_snapshot())
    theirs = json.loads(_fixture(shared_fixtures))
    assert _without(ours, NOT_TRACKED) == _without(theirs, NOT_TRACKED)


def test_failed_path_in_multipath_tools_words() -> None:
    snap = fixture_snapshot()
    sda = snap.maps[0].paths[0]
    sda.kernel_state, sda.check, sda.dev_state = KernelState.FAILED, Check.DOWN, "offline"
    sda.fail_count = 2
    doc = mptjson.snapshot_to_mpt(snap)
    path = doc["maps"][0]["path_groups"][0]["paths"][0]
    # as in multipathd_show_topology_one_down.txt: "failed faulty offline"
    assert (path["dm_st"], path["chk_st"], path["dev_st"]) == ("failed", "faulty", "offline")
    assert doc["maps"][0]["path_faults"] == 2
    assert '"chk_st" : "faulty"' in mptjson.format_mpt(doc)


@pytest.mark.parametrize(
    ("hctl", "expected"),
    [
        ("6:0:0:0", "0x0000000000000000"),
        ("6:0:0:1", "0x0001000000000000"),
        ("1:0:3:256", "0x0100000000000000"),
        ("1:0:3:16385", "0x4001000000000000"),
        ("1:0:3:65537", "0x0001000100000000"),
        ("", "[undef]"),
        ("nvme0n1", "[undef]"),
    ],
)
def test_lun_hex(hctl: str, expected: str) -> None:
    assert mptjson.lun_hex(hctl) == expected


@pytest.mark.parametrize(
    ("no_path_retry", "word"),
    [("", "-"), ("queue", "on"), ("fail", "off"), ("12", "12 chk"), ("junk", "-")],
)
def test_queueing_word(no_path_retry: str, word: str) -> None:
    assert mptjson.queueing_word(no_path_retry) == word


def test_md_array_is_one_group_of_its_paths() -> None:
    m = Map(name="md0", wwid="naa.1", backend=Backend.MD, sysfs="md0")
    m.paths = [_path("sdc", "8:32", "7:0:0:0", 0, 0), _path("sda", "8:0", "6:0:0:0", 0, 0)]
    m.paths[1].kernel_state = KernelState.FAILED
    doc = mptjson.map_to_mpt(m)
    assert [g["group"] for g in doc["path_groups"]] == [1]
    assert [p["dev"] for p in doc["path_groups"][0]["paths"]] == ["sdc", "sda"]
    assert doc["path_groups"][0]["paths"][1]["dm_st"] == "failed"


def test_no_maps_is_still_a_document() -> None:
    text = mptjson.format_mpt(mptjson.snapshot_to_mpt(Snapshot()))
    assert json.loads(text) == {"major_version": 0, "minor_version": 1, "maps": []}


def test_hostile_strings_stay_one_json_value_per_line() -> None:
    snap = fixture_snapshot()
    snap.maps[0].vendor = 'Evil\n"x" : 1,\x1b[31m'
    snap.maps[0].model = "ﺏ🔥\u202e"
    text = mptjson.format_mpt(mptjson.snapshot_to_mpt(snap))
    assert text.isascii()
    assert json.loads(text)["maps"][0]["vend"] == 'Evil\n"x" : 1,\x1b[31m'
    assert json.loads(text)["maps"][0]["prod"] == "ﺏ🔥\u202e"
    vend_lines = [ln for ln in text.splitlines() if '"vend"' in ln]
    assert len(vend_lines) == 2  # one per map: the newline did not split the value
