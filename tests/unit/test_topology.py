"""The pure parts of the lab topologies: names, module parameters, settle arithmetic,
fabric split, standby hosts, and the all-maps ``dmsetup status`` reader. No kernel needed."""

from __future__ import annotations

import pytest

from dmpath.errors import ParseError
from dmpath.lab import topology as topo
from dmpath.lab.topology import (
    TOPOLOGIES,
    Topology,
    TopologyError,
    fabric_of,
    get_topology,
    hosts_for_active,
    hosts_to_drop,
    is_standby,
    parse_status_all,
    parse_topology_name,
    settle_deadline,
    settle_step,
    udev_db_entry,
    without_udev_entry,
)


@pytest.mark.parametrize(
    ("name", "want"),
    [("2x2", (2, 2)), ("64x4", (64, 4)), ("256x4", (256, 4)), ("10x12", (10, 12))],
)
def test_parse_topology_name(name: str, want: tuple[int, int]) -> None:
    assert parse_topology_name(name) == want


@pytest.mark.parametrize("name", ["", "2x", "x4", "2 x 4", "2X4", "default", "2x4x1", "-1x2"])
def test_parse_topology_name_refuses_other_text(name: str) -> None:
    assert parse_topology_name(name) is None


def test_scale_topologies_are_named_with_two_fabrics_and_a_small_store() -> None:
    for name, luns in (("64x4", 64), ("256x4", 256)):
        t = TOPOLOGIES[name]
        assert (t.luns, t.paths, t.fabrics) == (luns, 4, 2)
        assert t.disks == luns * 4
        assert t.dev_size_mb <= 16
    assert get_topology("64x4") is TOPOLOGIES["64x4"]


def test_unnamed_topology_gets_fabrics_by_paths_and_small_store_when_large() -> None:
    assert get_topology("3x2") == Topology("3x2", 3, 2, fabrics=1, dev_size_mb=64)
    big = get_topology("32x8")
    assert (big.luns, big.paths, big.fabrics, big.dev_size_mb) == (32, 8, 2, 16)


def test_unknown_topology_names_the_known_ones() -> None:
    with pytest.raises(TopologyError, match=r"unknown topology 'huge'.*64x4"):
        get_topology("huge")


def test_module_params_default_and_with_more_hosts() -> None:
    t = TOPOLOGIES["64x4"]
    assert t.module_params() == [
        "num_tgts=1",
        "add_host=4",
        "max_luns=64",
        "vpd_use_hostno=0",
        "dev_size_mb=16",
    ]
    assert "add_host=6" in t.module_params(hosts=6)
    assert "max_luns=64" in t.module_params(hosts=6)


def test_settle_deadline_grows_with_disks() -> None:
    assert settle_deadline(0) == topo.SETTLE_BASE_S
    # 256 disks were measured to need up to 225 s: the deadline must be well past that
    assert settle_deadline(256) == topo.SETTLE_BASE_S + 256 * topo.SETTLE_PER_DISK_S
    assert settle_deadline(256) > 2 * 225
    assert settle_deadline(1024) > settle_deadline(256) > settle_deadline(8)


@pytest.mark.parametrize(
    ("remaining", "step"), [(600.0, 60), (60.0, 60), (12.2, 13), (0.4, 1), (-5.0, 1)]
)
def test_settle_step_is_bounded(remaining: float, step: int) -> None:
    assert settle_step(remaining) == step


def test_fabric_of_counts_only_hosts_with_disks() -> None:
    # hosts 0..5 loaded, 2 and 5 emptied (standby): 0,1,3,4 remain -> 0,1,0,1
    remaining = [0, 1, 3, 4]
    assert [fabric_of(h, remaining, 2) for h in remaining] == [0, 1, 0, 1]
    assert [fabric_of(h, [7, 8, 9, 10], 2) for h in (7, 8, 9, 10)] == [0, 1, 0, 1]
    assert fabric_of(3, remaining, 1) == 0
    assert fabric_of(99, remaining, 2) == 0  # not a path host


def test_standby_is_host_number_mod_3() -> None:
    assert [is_standby(h) for h in range(6)] == [False, False, True, False, False, True]


@pytest.mark.parametrize("paths", range(1, 9))
@pytest.mark.parametrize("first", range(6))
def test_hosts_for_active_leaves_enough_whatever_the_first_number(paths: int, first: int) -> None:
    hosts = list(range(first, first + hosts_for_active(paths)))
    kept = sorted(set(hosts) - set(hosts_to_drop(hosts, paths)))
    assert len(kept) == paths
    assert not any(is_standby(h) for h in kept)


def test_hosts_to_drop_standby_then_surplus() -> None:
    assert hosts_to_drop([3, 4, 5, 6, 7, 8], 4) == [5, 8]
    assert hosts_to_drop([2, 3, 4, 5, 6, 7, 8], 3) == [2, 5, 7, 8]
    assert hosts_to_drop([0, 1], 4) == []  # too few: nothing more to take away
    assert hosts_for_active(4) == 6
    assert hosts_for_active(0) == 0


def test_udev_db_entries() -> None:
    assert udev_db_entry("8:16") == "b8:16"
    entries = ["b8:0", "c21:0", "b8:32", "n3"]
    assert without_udev_entry(["8:0", "8:16", "8:32", "65:0"], entries) == ["8:16", "65:0"]


ALL_STATUS = (
    "mpatha: 0 32768 multipath 2 0 0 0 1 1 A 0 4 1 8:0 A 0 0 8:16 F 1 0 8:32 A 0 0 "
    "8:48 A 0 0 \n"
    "mpathb: 0 32768 multipath 2 0 0 0 1 1 A 0 4 1 8:64 A 0 0 8:80 A 0 0 8:96 A 0 0 "
    "8:112 A 0 0 \n"
    "mpathc:\n"
)


def test_parse_status_all_reads_every_map_of_one_call() -> None:
    st = parse_status_all(ALL_STATUS)
    assert sorted(st) == ["mpatha", "mpathb"]  # mpathc has no table yet
    assert st["mpatha"].valid_paths == 3
    failed = st["mpatha"].path("8:16")
    assert failed is not None and not failed.active
    assert [p.dev for _g, p in st["mpathb"].paths()] == ["8:64", "8:80", "8:96", "8:112"]
    assert parse_status_all("No devices found\n") == {}


def test_parse_status_all_refuses_a_broken_line() -> None:
    with pytest.raises(ParseError):
        parse_status_all("mpatha: 0 32768 multipath 2 0 0 0 1 1 A 0 4 1 8:0 X 0 0\n")
