"""migrate-md's decisions: the plan from mdadm's real outputs, the data map's table, the
configuration entry (dmpath.policy.mdmigrate), and the CLI's one-line refusals."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from dmpath import config as c
from dmpath.cli import main as cli
from dmpath.config.records import DEFAULT_DM_UUID_PREFIX
from dmpath.errors import DmpathError
from dmpath.kernel.dmtable import DmInfo
from dmpath.kernel.mdstat import MdDetail, MdExamine, parse_detail, parse_examine
from dmpath.policy import mdmigrate as mm

MD = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "md"


def detail() -> MdDetail:
    return parse_detail((MD / "mdadm_detail_healthy.txt").read_text())


def examine(dev: str) -> MdExamine:
    sb = parse_examine((MD / "mdadm_examine_member.txt").read_text())
    return dataclasses.replace(sb, device=dev)


def supers() -> dict[str, MdExamine | None]:
    return {"/dev/sdc": examine("/dev/sdc"), "/dev/sda": examine("/dev/sda")}


SIZES = {"/dev/sda": 65536, "/dev/sdc": 65536}  # 32 MiB scsi_debug disks


def test_plan_from_the_lab_array() -> None:
    plan = mm.plan_migration("/dev/md0", detail(), supers(), SIZES, name="oradata")
    assert plan.members == ("/dev/sda", "/dev/sdc")
    assert plan.data_offset == 2048  # "Data Offset : 2048 sectors" of 1.2 metadata
    assert plan.data_sectors == 31744 * 2  # "Array Size : 31744" KiB
    assert plan.array_uuid == "1aa3baf3:3a5c3b7d:791cd71d:bcab4a7c"
    assert (plan.map_name, plan.data_map) == ("oradata", "oradata-data")


@pytest.mark.parametrize(
    ("md_name", "wanted", "name"),
    [
        ("host:dmpath-mpatha", None, "mpatha"),
        ("dmpath-mpatha", None, "mpatha"),
        ("myhost:oradata", None, "oradata"),
        ("virtme-ng:0", "db1", "db1"),
    ],
)
def test_map_name(md_name: str, wanted: str | None, name: str) -> None:
    assert mm.map_name_for(md_name, wanted) == name


@pytest.mark.parametrize(
    ("md_name", "wanted"), [("virtme-ng:0", None), (None, None), ("h:x", "a/b"), ("h:x", "-a")]
)
def test_map_name_refused(md_name: str | None, wanted: str | None) -> None:
    with pytest.raises(mm.MigrationRefused):
        mm.map_name_for(md_name, wanted)


def test_refuses_a_raid1() -> None:
    with pytest.raises(mm.MigrationRefused, match="not an md multipath array"):
        mm.plan_migration("/dev/md0", dataclasses.replace(detail(), level="raid1"), supers(), SIZES)


def test_refuses_members_that_disagree_on_the_offset() -> None:
    sbs = supers()
    other = examine("/dev/sdc")
    moved = {**other.fields, "Data Offset": "4096 sectors"}
    sbs["/dev/sdc"] = dataclasses.replace(other, fields=moved)
    with pytest.raises(mm.MigrationRefused, match="disagree on the data offset"):
        mm.plan_migration("/dev/md0", detail(), sbs, SIZES, name="x")


def test_refuses_a_member_without_superblock_or_of_another_array() -> None:
    sbs = supers()
    sbs["/dev/sdc"] = None
    with pytest.raises(mm.MigrationRefused, match="no md superblock"):
        mm.plan_migration("/dev/md0", detail(), sbs, SIZES, name="x")
    sbs["/dev/sdc"] = dataclasses.replace(examine("/dev/sdc"), array_uuid="1:2:3:4")
    with pytest.raises(mm.MigrationRefused, match="another array"):
        mm.plan_migration("/dev/md0", detail(), sbs, SIZES, name="x")


def test_refuses_when_the_data_would_not_fit_a_path() -> None:
    with pytest.raises(mm.MigrationRefused, match="fewer than the data needs"):
        mm.plan_migration("/dev/md0", detail(), supers(), {**SIZES, "/dev/sda": 60000}, name="x")


def test_metadata_at_the_end_gives_offset_zero() -> None:
    sbs = {}
    for dev in ("/dev/sda", "/dev/sdc"):
        sb = examine(dev)
        fields = {k: v for k, v in sb.fields.items() if k != "Data Offset"}
        sbs[dev] = dataclasses.replace(sb, fields=fields)
    assert mm.plan_migration("/dev/md0", detail(), sbs, SIZES, name="x").data_offset == 0


def test_data_table() -> None:
    assert mm.data_table("253:0", 65536, 2048, 63488) == "0 63488 linear 253:0 2048"
    assert mm.data_table("253:0", 65536, 2048, None) == "0 63488 linear 253:0 2048"
    assert mm.data_table("253:0", 65536, 0, 65536) == "0 65536 linear 253:0 0"
    for offset, sectors in ((2048, 63489), (65536, None), (-1, 8)):
        with pytest.raises(DmpathError, match="does not fit"):
            mm.data_table("253:0", 65536, offset, sectors)


def test_the_entry_is_a_valid_multipaths_table_with_the_plan() -> None:
    plan = mm.plan_migration("/dev/md0", detail(), supers(), SIZES, name="oradata")
    text = "[defaults]\nbackend = \"md\"\n" + mm.multipaths_entry(plan, "1Linux_scsi_debug_2000")
    cfg = c.parse_config(text)
    opts = c.effective_options(cfg, "1Linux_scsi_debug_2000", "", "")
    assert opts.alias == "oradata" and opts.backend.value == "dm"
    assert (opts.data_offset, opts.data_sectors) == (2048, 63488)
    assert mm.data_uuid("dmpath-1Linux_scsi_debug_2000") == "data-dmpath-1Linux_scsi_debug_2000"


def test_mpathctl_migrate_md_refusal_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    rc = cli.main(["migrate-md", "/dev/sda"])
    err = capsys.readouterr().err
    assert rc == 5 and err.count("\n") == 1
    assert err.startswith("mpathctl: error: /dev/sda: not an md device path")
    rc = cli.main(["migrate-md", "/dev/md/nosuch"])
    err = capsys.readouterr().err
    assert rc == 7 and err.count("\n") == 1 and "is not a running md array" in err


# --------------------------------------------------------------------------- the steps


@pytest.fixture
def fake_array(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> dict[str, object]:
    """migrate() against a fake array: every kernel and tool call replaced, recorded."""
    from dmpath import mdmigrate
    from dmpath.kernel import dmsetup, mdadm

    calls: list[tuple[str, ...]] = []
    state: dict[str, object] = {"stop": None, "calls": calls}
    monkeypatch.setattr(mdmigrate, "_kname", lambda array: "md127")
    monkeypatch.setattr(mdmigrate, "_members", lambda kname: ["/dev/sda", "/dev/sdc"])
    monkeypatch.setattr(mdmigrate, "_sectors", lambda kname: 65536)
    monkeypatch.setattr(mdmigrate, "_wwid", lambda members, attrs: "1Linux_scsi_debug_2000")
    monkeypatch.setattr(mdmigrate, "_in_use", lambda kname, array: "")
    monkeypatch.setattr(mdmigrate, "_devnum", lambda dev: {"/dev/sda": "8:0"}.get(dev, "8:32"))
    monkeypatch.setattr(mdadm, "detail", lambda dev: detail())
    monkeypatch.setattr(mdadm, "examine", examine)
    monkeypatch.setattr(mdadm, "read_mdstat", lambda: mdmigrate.mdadm.MdStat(personalities=()))

    def stop(dev: str) -> None:
        calls.append(("stop", dev))
        if state["stop"] is not None:
            raise state["stop"]  # type: ignore[misc]

    monkeypatch.setattr(mdadm, "stop", stop)
    monkeypatch.setattr(mdadm, "zero_superblock", lambda m: calls.append(("zero", m)) or True)

    def create(name: str, table: object, *, uuid: str) -> None:
        calls.append(("create", name, str(table).strip(), uuid))

    monkeypatch.setattr(dmsetup, "create", create)
    monkeypatch.setattr(dmsetup, "info", lambda name: DmInfo(name, "u", 253, 0, 0, 1, 0))
    cfg = tmp_path / "dmpath.toml"
    cfg.write_text(
        f'[defaults]\nsocket = "{tmp_path}/s.sock"\nwwids_file = "{tmp_path}/wwids"\n'
        f'bindings_file = "{tmp_path}/bindings"\n'
    )
    state["config"] = cfg
    state["wwids"] = tmp_path / "wwids"
    return state


def test_migrate_records_stops_erases_then_makes_both_maps(fake_array: dict[str, object]) -> None:
    from dmpath import mdmigrate

    cfg = fake_array["config"]
    assert isinstance(cfg, pathlib.Path)
    m = mdmigrate.migrate("/dev/md127", name="ora", config_path=str(cfg))
    assert m.done and m.plan.map_name == "ora"
    calls = fake_array["calls"]
    assert calls[:3] == [("stop", "/dev/md127"), ("zero", "/dev/sda"), ("zero", "/dev/sdc")]
    uuid = DEFAULT_DM_UUID_PREFIX + "1Linux_scsi_debug_2000"
    assert calls[3][:2] == ("create", "ora") and calls[3][3] == uuid
    assert calls[4] == (
        "create",
        "ora-data",
        "0 63488 linear 253:0 2048",
        "data-" + uuid,
    )
    opts = c.effective_options(c.load_config(cfg), "1Linux_scsi_debug_2000", "", "")
    assert (opts.alias, opts.data_offset, opts.data_sectors) == ("ora", 2048, 63488)
    assert "1Linux_scsi_debug_2000" in pathlib.Path(str(fake_array["wwids"])).read_text()


def test_an_open_array_is_refused_and_the_record_taken_back(fake_array: dict[str, object]) -> None:
    from dmpath import mdmigrate
    from dmpath.kernel.mdadm import ArrayBusy
    from dmpath.runner import CommandResult

    cfg = fake_array["config"]
    assert isinstance(cfg, pathlib.Path)
    before = cfg.read_text()
    busy = CommandResult(("mdadm", "--stop"), 1, "", "Cannot get exclusive access", 0.0)
    fake_array["stop"] = ArrayBusy(busy, "/dev/md127")
    with pytest.raises(mm.MigrationRefused, match=r"is open.*nothing was changed"):
        mdmigrate.migrate("/dev/md127", name="ora", config_path=str(cfg))
    assert cfg.read_text() == before
    wwids = pathlib.Path(str(fake_array["wwids"]))
    assert not wwids.exists() or "1Linux_scsi_debug_2000" not in wwids.read_text()
    assert [k for k, *_ in fake_array["calls"]] == ["stop"]  # type: ignore[attr-defined]


def test_a_dry_run_and_a_configured_wwid_change_nothing(fake_array: dict[str, object]) -> None:
    from dmpath import mdmigrate

    cfg = fake_array["config"]
    assert isinstance(cfg, pathlib.Path)
    m = mdmigrate.migrate("/dev/md127", name="ora", config_path=str(cfg), dry_run=True)
    assert not m.done and fake_array["calls"] == []
    cfg.write_text(cfg.read_text() + '[[multipaths]]\nwwid = "1Linux_scsi_debug_2000"\n')
    with pytest.raises(mm.MigrationRefused, match=r"multipaths\[0\] already configures"):
        mdmigrate.migrate("/dev/md127", name="ora", config_path=str(cfg))
    assert fake_array["calls"] == []
