"""dmpathd's snapshot and ``mpathctl``'s kernel view (no daemon) of the same captured
kernel records: the fields the kernel gives must read the same in both."""

from __future__ import annotations

import pathlib

import pytest

from dmpath.cli import kernelview
from dmpath.daemon.backends import DmBackend
from dmpath.kernel import dmtable
from dmpath.kernel.dmmap import wwid_of
from dmpath.model import Backend, Map
from dmpath.policy import reconcile

NAMES = {"8:0": "sda", "8:32": "sdc"}


class CapturedOps:
    """The dm operations the daemon's backend reads through, answering from captures."""

    def __init__(self, info: dmtable.DmInfo, table: str, status: str) -> None:
        self.records = (info, dmtable.parse_table(table), dmtable.parse_status(status))

    def info(self, name: str) -> dmtable.DmInfo:
        return self.records[0]

    def table(self, name: str) -> dmtable.MultipathTable:
        return self.records[1]

    def status(self, name: str) -> dmtable.MultipathStatus:
        return self.records[2]


def daemon_view(info: dmtable.DmInfo, ops: CapturedOps, prefix: str) -> Map:
    """The map as dmpathd shows it: its backend reads the kernel, the reconciler absorbs
    the reading (no path models yet: as for a map adopted at start)."""
    km = DmBackend(prefix, ops).read(info.name)  # type: ignore[arg-type]
    m = Map(name=info.name, wwid=wwid_of(info.uuid, prefix) or "", backend=Backend.DM)
    ctx = reconcile.Context(now=0.0, wall=0.0, polling_interval=5.0, lookup=lambda _d: None)
    reconcile.absorb(reconcile.MapHealth(info.name, Backend.DM), m, km, ctx, NAMES)
    return m


def kernel_fields(m: Map) -> tuple[object, ...]:
    return (
        m.name, m.wwid, m.uuid, m.sysfs, m.devnode, m.size_sectors, m.open_count,
        m.features, m.hwhandler, m.queueing,
        [(g.number, g.selector, g.state, g.paths) for g in m.groups],
        [(p.name, p.devnum, p.kernel_state, p.group, p.fail_count) for p in m.paths],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("table", "status", "prefix"),
    [
        ("dm_table_2pg.txt", "dm_status_one_failed.txt", "mpath-"),
        ("dm_table_ql_alua.txt", "dm_status_ql_alua.txt", "mpath-"),
        ("dm_table_after_msgs.txt", "dm_status_all_failed_queueing.txt", "san1-"),
    ],
)
def test_daemon_and_kernel_views_agree(
    shared_fixtures: pathlib.Path, table: str, status: str, prefix: str
) -> None:
    info = dmtable.DmInfo("mpt0", prefix + "naa.33333330000007d0", 254, 3, 1, 1, 3)
    ops = CapturedOps(
        info,
        (shared_fixtures / "dm" / table).read_text(),
        (shared_fixtures / "dm" / status).read_text(),
    )
    daemon = daemon_view(info, ops, prefix)
    kernel = kernelview.dm_map(*ops.records, NAMES, {}, uuid_prefix=prefix)
    assert kernel_fields(kernel) == kernel_fields(daemon)
    assert kernel.wwid == "naa.33333330000007d0"


def test_counted_fields_read_as_the_kernel_writes_them(shared_fixtures: pathlib.Path) -> None:
    info = dmtable.DmInfo("mpt0", "mpath-naa.33333330000007d0", 254, 3, 1, 1, 3)
    ops = CapturedOps(
        info,
        (shared_fixtures / "dm/dm_table_ql_alua.txt").read_text(),
        (shared_fixtures / "dm/dm_status_ql_alua.txt").read_text(),
    )
    m = daemon_view(info, ops, "mpath-")
    assert (m.features, m.hwhandler, m.queueing) == ("0", "1 alua", False)
    assert [g.selector for g in m.groups] == ["queue-length 0"]
