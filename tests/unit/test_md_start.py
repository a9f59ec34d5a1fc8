"""How the md backend starts a map's array: assemble what carries its superblock, create
only over paths that carry none, and never overwrite anyone else's superblock."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from dmpath.daemon.backends import ForeignSuperblock, free_md_slot, plan_md_start, short_md_name
from dmpath.kernel.mdstat import MdExamine, parse_examine

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
SB = parse_examine((FIXTURES / "md" / "mdadm_examine_member.txt").read_text())


def ours(name: str = "host:dmpath-mpatha", uuid: str | None = None) -> MdExamine:
    return dataclasses.replace(SB, name=name, array_uuid=uuid or SB.array_uuid)


def test_fixture_is_a_multipath_member() -> None:
    assert SB.level == "multipath" and SB.name is not None and SB.name.startswith("virtme-ng:")


def test_paths_without_superblocks_are_created_afresh() -> None:
    plan = plan_md_start("dmpath-mpatha", {"/dev/sdb": None, "/dev/sda": None})
    assert plan.create
    assert plan.add == ["/dev/sda", "/dev/sdb"]


def test_paths_with_this_arrays_superblock_are_assembled_and_new_ones_added() -> None:
    plan = plan_md_start(
        "dmpath-mpatha", {"/dev/sdc": None, "/dev/sdb": ours(), "/dev/sda": ours("dmpath-mpatha")}
    )
    assert not plan.create
    assert plan.assemble == ["/dev/sda", "/dev/sdb"]
    assert plan.add == ["/dev/sdc"]


@pytest.mark.parametrize(
    "sb",
    [
        SB,  # another array's name (virtme-ng:0)
        ours("host:dmpath-mpathb"),  # another of our maps
        dataclasses.replace(ours(), level="raid1"),  # a RAID member with the right name
    ],
)
def test_a_foreign_superblock_is_never_overwritten(sb: MdExamine) -> None:
    with pytest.raises(ForeignSuperblock, match="/dev/sda carries the md superblock"):
        plan_md_start("dmpath-mpatha", {"/dev/sda": sb, "/dev/sdb": None})


def test_superblocks_of_two_different_arrays_are_refused() -> None:
    with pytest.raises(ForeignSuperblock, match="2 different arrays"):
        plan_md_start(
            "dmpath-mpatha", {"/dev/sda": ours(uuid="a:b:c:d"), "/dev/sdb": ours(uuid="e:f:0:1")}
        )


def test_short_md_name_drops_the_home_host() -> None:
    assert short_md_name("host:dmpath-x") == "dmpath-x"
    assert short_md_name("dmpath-x") == "dmpath-x"
    assert short_md_name(None) == ""


def test_free_md_slot_is_the_lowest_slot_without_an_rd_link(tmp_path: pathlib.Path) -> None:
    (tmp_path / "raid_disks").write_text("3\n")
    for n in (0, 2):
        (tmp_path / f"rd{n}").symlink_to(f"dev-sd{'ab'[n // 2]}")  # dangling, as seen by lexists
    assert free_md_slot(str(tmp_path)) == 1
    (tmp_path / "rd1").symlink_to("dev-sdc")
    assert free_md_slot(str(tmp_path)) is None
    assert free_md_slot(str(tmp_path / "gone")) is None
