"""Partition maps: the pure parts of dmpath.kernel.kpartx (kpartx itself runs in the lab)."""

from __future__ import annotations

import pathlib

from dmpath.kernel import kpartx


def test_a_partition_table_is_told_by_the_boot_signature() -> None:
    mbr = bytes(446) + bytes(64) + b"\x55\xaa"
    assert kpartx.has_table(mbr)
    assert not kpartx.has_table(bytes(512))  # a PV label or a filesystem: no scan
    assert not kpartx.has_table(mbr[:511])  # a short read is not a table


def test_partition_maps_are_found_by_their_uuid() -> None:
    maps = [
        ("mpatha-part1", "part1-mpath-3600a098"),
        ("mpatha-part12", "part12-mpath-3600a098"),
        ("mpathb-part1", "part1-mpath-3600a099"),
        ("vg-lv", "LVM-abc"),
        ("odd", "partx-mpath-3600a098"),
    ]
    assert kpartx.partition_maps("mpath-3600a098", maps) == ["mpatha-part1", "mpatha-part12"]
    assert kpartx.partition_maps("mpath-none", maps) == []


def test_dm_holders_reads_names_and_uuids(tmp_path: pathlib.Path) -> None:
    (tmp_path / "block/dm-0/holders/dm-1").mkdir(parents=True)
    (tmp_path / "block/dm-0/holders/dm-2").mkdir(parents=True)
    for kname, name, uuid in (("dm-1", "mpatha-part1", "part1-mpath-x"), ("dm-2", "vg-lv", "")):
        d = tmp_path / "block" / kname / "dm"
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "uuid").write_text(uuid + "\n")
    assert kpartx.dm_holders("dm-0", str(tmp_path)) == [
        ("mpatha-part1", "part1-mpath-x"),
        ("vg-lv", ""),
    ]
    assert kpartx.dm_holders("dm-9", str(tmp_path)) == []
