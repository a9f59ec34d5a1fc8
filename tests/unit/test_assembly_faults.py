"""What the fault matrix found in assembly: when to try a refused create or reload again,
and which maps a crash left without a table (the engine's side: test_engine_sim)."""

from __future__ import annotations

from dmpath.daemon.backends import DmBackend, half_made_maps
from dmpath.errors import DmpathError
from dmpath.kernel.dmtable import DmDevice, DmInfo
from dmpath.policy.retry import backoff


def test_backoff_doubles_from_the_polling_interval_up_to_its_cap() -> None:
    assert [backoff(n, 5, 30) for n in range(6)] == [5, 5, 10, 20, 30, 30]
    assert backoff(10_000, 1, 60) == 60


def info(name: str, uuid: str, segments: int, open_count: int = 0) -> DmInfo:
    return DmInfo(name, uuid, 253, 0, open_count, segments, 0)


def test_half_made_maps_are_ours_with_no_table_and_not_open() -> None:
    infos = [
        info("mpatha", "mpath-3600a", 0),  # a create cut short: remove
        info("mpathb", "mpath-3600b", 1),  # whole
        info("mpathc", "mpath-3600c", 0, open_count=1),  # held: leave it
        info("vg-lv", "LVM-xyz", 0),  # not ours
        info("mpatha-part1", "part1-mpath-3600a", 0),  # a partition map: kpartx's
    ]
    assert half_made_maps(infos, "mpath-") == ["mpatha"]


class Listing:
    """DmOps enough for ``half_made``: a listing and infos, one map vanishing meanwhile."""

    def list_maps(self) -> list[DmDevice]:
        return [DmDevice(n, 253, i) for i, n in enumerate(("mpatha", "mpathb", "gone"))]

    def info(self, name: str) -> DmInfo:
        if name == "gone":
            raise DmpathError("gone: no such map")
        return info(name, "mpath-" + name, 0)


def test_half_made_looks_only_at_the_maps_not_read_whole() -> None:
    be = DmBackend(ops=Listing())  # type: ignore[arg-type]
    assert be.half_made({"mpatha"}) == ["mpathb"]
