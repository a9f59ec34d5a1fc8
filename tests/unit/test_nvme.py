"""NVMe in sysfs and NVMe path policy: native multipath's view parsed from a tree
captured in the lab, the facts a namespace disk's device path carries, checker and
priority choices."""

from __future__ import annotations

import io
import pathlib
import re
from dataclasses import replace

import pytest
from rich.console import Console

from dmpath.cli.nativeview import native_path_health, render_native
from dmpath.cli.render import Health, RenderOptions, render_status
from dmpath.kernel import nvme
from dmpath.model import Snapshot, snapshot_from_dict, snapshot_to_dict
from dmpath.policy import nvme as pnvme
from dmpath.policy.claim import path_wwid

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "nvme"
#: real device paths from the lab (native multipath off, then on)
PATH_DISK = "/devices/virtual/nvme-fabrics/ctl/nvme1/nvme1n1"
HEAD = "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1"
HIDDEN = "/devices/virtual/nvme-fabrics/ctl/nvme1/nvme0c1n1"
WWID = "uuid.00000001-0f4d-4b6a-9e21-d0a7f1e5c0de"


def captured_tree() -> dict[str, str]:
    tree: dict[str, str] = {}
    for line in (FIXTURES / "native_tree.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            tree[key] = value
    return tree


def test_native_view_from_the_captured_tree() -> None:
    (sub,) = nvme.parse_native(captured_tree())
    assert (sub.name, sub.nqn, sub.model, sub.serial, sub.iopolicy) == (
        "nvme-subsys0", "nqn.2026-12.org.dmpath.lab:nvme", "Linux", "dmpath0001", "numa"
    )
    (ns,) = sub.namespaces
    assert (ns.name, ns.nsid, ns.wwid, ns.devnum) == ("nvme0n1", 1, WWID, "259:1")
    assert [(p.node, p.controller, p.state, p.transport, p.ana_state) for p in ns.paths] == [
        ("nvme0c0n1", "nvme0", "live", "tcp", "optimized"),
        ("nvme0c1n1", "nvme1", "live", "tcp", "optimized"),
    ]
    assert ns.paths[1].address == (
        "traddr=203.0.113.18,trsvcid=4420,host_traddr=203.0.113.17,src_addr=203.0.113.17"
    )
    assert ns.size_sectors == 65536


def test_a_path_node_of_another_namespace_is_not_this_ones() -> None:
    tree = captured_tree()
    tree["nvme-subsys0/nvme1/nvme0c1n2/nsid"] = "2"
    tree["nvme-subsys0/nvme1/nvme0c1n2/ana_state"] = "optimized"
    (sub,) = nvme.parse_native(tree)
    assert [p.node for p in sub.namespaces[0].paths] == ["nvme0c0n1", "nvme0c1n1"]


def test_a_subsystem_without_heads_is_no_native_view() -> None:
    # native multipath off: the subsystem exists, its namespaces' disks hang under the
    # controllers, no head under the subsystem
    tree = {k: v for k, v in captured_tree().items() if "/nvme0n1/" not in k}
    assert nvme.parse_native(tree) == []


def _write_tree(root: pathlib.Path, tree: dict[str, str]) -> None:
    """The captured tree as sysfs lays it out: subsystem dir, links to the controllers."""
    sub_dir = root / "class" / "nvme-subsystem"
    for key, value in tree.items():
        parts = key.split("/")
        if len(parts) >= 3 and re.fullmatch(r"nvme\d+", parts[1]):
            # a controller is a link in the subsystem to its own directory
            ctrl = root / "devices" / "ctl" / parts[1]
            target = ctrl.joinpath(*parts[2:])
            link = sub_dir / parts[0] / parts[1]
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(ctrl, target_is_directory=True)
        else:
            target = sub_dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(value + "\n")


def test_reading_a_tree_gives_back_what_was_captured(tmp_path: pathlib.Path) -> None:
    tree = captured_tree()
    _write_tree(tmp_path, tree)
    assert nvme.read_native_tree(str(tmp_path)) == tree
    # the view is read only while native multipath is on
    assert nvme.read_native(str(tmp_path)) == []
    param = tmp_path / nvme.MULTIPATH_PARAM
    param.parent.mkdir(parents=True)
    param.write_text("N\n")
    assert nvme.native_multipath(str(tmp_path)) is False
    assert nvme.read_native(str(tmp_path)) == []
    param.write_text("Y\n")
    assert nvme.read_native(str(tmp_path)) == nvme.parse_native(tree)


def test_device_paths() -> None:
    assert nvme.controller_of(PATH_DISK) == "nvme1"
    assert nvme.controller_of(HEAD) is None
    sda = "/devices/pseudo_0/adapter0/host6/target6:0:0/6:0:0:0/block/sda"
    assert nvme.controller_of(sda) is None
    assert nvme.is_native_head(HEAD) and not nvme.is_native_head(PATH_DISK)
    assert not nvme.is_native_head(HIDDEN)


def test_fabric_address(tmp_path: pathlib.Path) -> None:
    ctrl = tmp_path / "class" / "nvme" / "nvme1"
    ctrl.mkdir(parents=True)
    (ctrl / "address").write_text("traddr=203.0.113.18,trsvcid=4420,src_addr=203.0.113.17\n")
    assert nvme.fabric_address("nvme1", str(tmp_path)) == "203.0.113.18"
    (ctrl / "address").write_text("\n")  # PCIe controllers have an empty one
    assert nvme.fabric_address("nvme1", str(tmp_path)) is None
    assert nvme.fabric_address("nvme7", str(tmp_path)) is None


def test_nvme_wwid_is_the_namespaces_not_udevs_serial() -> None:
    # udev's ID_SERIAL on NVMe is model_serial_nsid of the subsystem, ID_WWN the wwid
    uid = ("ID_SERIAL", "ID_WWN")
    serial = {"ID_SERIAL": "Linux_dmpath0001_1"}
    assert path_wwid(serial, uid, "nvme:tcp", WWID) == WWID
    assert path_wwid(serial, uid, "nvme:tcp", "") == "Linux_dmpath0001_1"
    assert path_wwid({"ID_SERIAL": "36001405abc"}, uid, "scsi:iscsi", "naa.6001405abc") == (
        "36001405abc"
    )
    assert path_wwid({}, uid, "scsi:unspec", "naa.1") == ""


@pytest.mark.parametrize(
    ("configured", "transport", "want"),
    [
        ("tur", "nvme:tcp", "directio"),
        ("tur", "nvme:pcie", "directio"),
        ("none", "nvme:tcp", "none"),
        ("directio", "nvme:tcp", "directio"),
        ("tur", "scsi:iscsi", "tur"),
    ],
)
def test_checker_for(configured: str, transport: str, want: str) -> None:
    assert pnvme.checker_for(configured, transport) == want


def test_ana_priority_ranks_as_alua() -> None:
    assert pnvme.ana_priority("optimized") == 50
    assert pnvme.ana_priority("non-optimized") == 10
    assert pnvme.ana_priority("inaccessible") == 0
    assert pnvme.ana_priority("change") == 0
    assert pnvme.ana_priority("") == pnvme.CONST_PRIORITY  # no ANA: all paths equal


def _native_snapshot() -> Snapshot:
    return Snapshot(nvme_native=nvme.parse_native(captured_tree()))


def test_snapshot_round_trip_keeps_the_native_view() -> None:
    snap = _native_snapshot()
    doc = snapshot_to_dict(snap)
    assert doc["nvme_native"][0]["namespaces"][0]["paths"][1]["ana_state"] == "optimized"
    assert snapshot_from_dict(doc) == snap
    # a daemon from before the field: no native view, not an error
    doc = snapshot_to_dict(Snapshot())
    del doc["nvme_native"]
    assert snapshot_from_dict(doc).nvme_native == []


def _text(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(renderable)
    return out.getvalue()


def test_status_shows_the_native_view_after_the_maps() -> None:
    text = _text(render_status(_native_snapshot(), 0.0, RenderOptions(ascii=True)))
    lines = text.splitlines()
    assert lines[1] == "no multipath maps"
    assert "native NVMe multipath" in text
    assert "[OK] nvme0n1  nsid 1  32M  2/2 paths usable  " + WWID in text
    addr = "traddr=203.0.113.18,trsvcid=4420,host_traddr=203.0.113.17,src_addr=203.0.113.17"
    assert f"nvme0c1n1  nvme1  tcp  {addr}  live  ana optimized" in text
    # asked for named maps: the native view is not one of them
    assert "native NVMe" not in _text(render_status(_native_snapshot(), 0.0, maps=["x"]))


def test_native_path_health() -> None:
    (ns,) = nvme.parse_native(captured_tree())[0].namespaces
    ok = ns.paths[0]
    assert native_path_health(ok) == Health.OK
    assert native_path_health(replace(ok, state="connecting")) == Health.WARN
    assert native_path_health(replace(ok, ana_state="inaccessible")) == Health.WARN
    assert native_path_health(replace(ok, state="deleting")) == Health.BAD
    text = _text(render_native([nvme.NativeSubsystem("s", "nqn.x\x1b[31m", "", "", "numa", ())],
                               RenderOptions(ascii=True)))
    assert "\x1b" not in text and "nqn.x\\x1b[31m" in text


def test_the_lab_fabric_reads_the_connect_answer() -> None:
    from dmpath.lab import nvmetcp

    # what /dev/nvme-fabrics answered in the lab
    assert nvmetcp.parse_connect_answer("instance=0,cntlid=1\n") == "nvme0"
    assert nvmetcp.parse_connect_answer("instance=12,cntlid=2") == "nvme12"
    with pytest.raises(nvmetcp.FabricError, match="unexpected answer"):
        nvmetcp.parse_connect_answer("error")
    # the namespace's WWID as the host shows it, known before the host connects
    assert "uuid." + nvmetcp.ns_uuid(1) == WWID
