"""dmpath's ``multipath``/``multipathd`` compatible commands (dmpath.compat).

Golden texts: multipath-tools 0.9.4's own output captured in the lab
(``fixtures/multipath-tools/`` and ``fixtures/mpt-compat/``, whose README says how, and
which three files were written by hand from print.c before the capture). The snapshot is
the lab's topology as dmpathd describes it (test_mptjson's), with the capture's 64 MB LUNs
for ``mpt-compat/``.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from test_mptjson import fixture_snapshot

from dmpath.compat import args as cargs
from dmpath.compat import fields, multipath, multipathd, source, views
from dmpath.compat.args import DaemonCmd, MultipathCmd, Unsupported, UsageError
from dmpath.errors import DmpathError
from dmpath.model import Check, GroupState, KernelState, Map, Path, Snapshot
from dmpath.protocol import BadRequest, NotFound, Refused

MPT = "multipath-tools"
OURS = "mpt-compat"


def _golden(root: pathlib.Path, name: str) -> str:
    return (root / name).read_text()


# --------------------------------------------------------------------------- golden texts


def test_multipath_ll_is_multipath_tools_text(shared_fixtures: pathlib.Path) -> None:
    assert views.topology(fixture_snapshot()) == _golden(shared_fixtures, f"{MPT}/multipath_ll.txt")


def test_multipath_l_has_no_checker_words(shared_fixtures: pathlib.Path) -> None:
    text = views.topology(fixture_snapshot(), checked=False)
    assert text == _golden(shared_fixtures, f"{OURS}/multipath_l.txt")


def test_show_maps_tables(shared_fixtures: pathlib.Path) -> None:
    snap = fixture_snapshot()
    assert views.map_table(snap) == _golden(shared_fixtures, f"{MPT}/multipathd_show_maps.txt")
    assert views.map_table(snap, views.MAPS_STATUS_FORMAT) == _golden(
        shared_fixtures, f"{MPT}/multipathd_show_maps_status.txt"
    )


@pytest.mark.parametrize(
    ("golden", "failed"),
    [
        (f"{MPT}/multipathd_show_paths.txt", False),
        (f"{OURS}/show_paths.out", False),
        (f"{OURS}/show_paths_failed.out", True),
    ],
)
def test_show_paths_columns(shared_fixtures: pathlib.Path, golden: str, failed: bool) -> None:
    """Every column but next_check (dmpathd keeps no tick count: it prints 0 of the
    interval) is multipathd's text, padding included."""
    ours = views.path_table(lab_snapshot(failed)).splitlines()
    theirs = _golden(shared_fixtures, golden).splitlines()
    cut = theirs[0].index("next_check")
    assert [line[:cut] for line in ours] == [line[:cut] for line in theirs]
    assert ours[0] == theirs[0].rstrip() + " " * (len(ours[0]) - len(theirs[0].rstrip()))


def test_show_status(shared_fixtures: pathlib.Path) -> None:
    text = views.status(fixture_snapshot())
    assert text == _golden(shared_fixtures, f"{MPT}/multipathd_show_status.txt")


def test_show_paths_raw_format(shared_fixtures: pathlib.Path) -> None:
    text = views.path_table(fixture_snapshot(), "%d %w %t %T %i %o %s %c %m", pretty=False)
    assert text == _golden(shared_fixtures, f"{OURS}/show_paths_raw_format.txt")


def test_show_map_json(shared_fixtures: pathlib.Path) -> None:
    snap = fixture_snapshot()
    text = views.map_json(snap.maps[0])
    assert text == _golden(shared_fixtures, f"{OURS}/show_map_json.txt")
    # the same members as the map in show maps json
    import json

    assert json.loads(text)["map"] == json.loads(views.maps_json(snap))["maps"][0]


def test_os_brick_reads_the_topology() -> None:
    """What os-brick's find_multipath_device takes from ``multipath -l DEV``: the first
    word is the map name, ``(wwid)`` the WWID, and from the fourth line on each line
    without "policy" starts with H:C:T:L and the path's name."""
    snap = fixture_snapshot()
    lines = views.topology(snap, views.find_maps(snap, "sdc"), checked=False).splitlines()
    assert lines[0].split(" ")[0] == "mpatha"
    assert "(1Linux_scsi_debug_2000)" in lines[0]
    paths = [line.lstrip(" |-`").split()[:2] for line in lines[3:] if "policy" not in line]
    assert paths == [["6:0:0:0", "sda"], ["7:0:0:0", "sdc"]]


def test_failed_path_in_topology() -> None:
    snap = fixture_snapshot()
    sda = snap.maps[0].paths[0]
    sda.kernel_state, sda.check, sda.dev_state = KernelState.FAILED, Check.DOWN, "offline"
    snap.maps[0].groups[0].state = GroupState.ENABLED
    text = views.topology(snap, snap.maps[:1])
    assert "| `- 6:0:0:0 sda 8:0  failed faulty offline\n" in text
    assert "  `- 7:0:0:0 sdc 8:32 active ready  running\n" in text


@pytest.mark.parametrize(
    ("sectors", "text"),
    [(65536, "32M"), (2 * 1024 * 1024 * 3 // 2, "1.5G"), (1000, "500K"), (0, "0.0K")],
)
def test_size_text(sectors: int, text: str) -> None:
    assert fields.size_text(sectors) == text


def test_format_engine() -> None:
    values = {"d": "sda", "t": "active"}
    assert fields.expand("%d %t", values) == "sda active\n"
    assert fields.expand("[%d] %X %% end", values) == "[sda]   end\n"  # unknown: nothing
    assert fields.expand("%d|%t", values, {"d": 5, "t": 7}) == "sda  |active \n"
    assert fields.expand("trailing %", values) == "trailing \n"


def test_no_checker_word_but_offline_is_faulty() -> None:
    """multipath -ll on the kernel's view (no daemon: no checker result) and -l."""
    p = Path(name="sda", devnum="8:0", wwid="X", dev_state="offline")
    for checked in (True, False):
        assert fields.path_values(fields.PathView(p, "mpatha", checked))["T"] == "faulty"
    p.dev_state = "running"
    assert fields.path_values(fields.PathView(p, "mpatha"))["T"] == "undef"


def test_orphan_path_words() -> None:
    p = Path(name="sde", devnum="8:64", wwid="X", check=Check.UP)
    v = fields.path_values(fields.PathView(p, None))
    assert (v["T"], v["o"], v["C"], v["m"], v["t"]) == (
        "undef", "unknown", "orphan", "[orphan]", "undef"
    )


def test_md_arrays_are_not_shown() -> None:
    from dmpath.config import Backend

    snap = fixture_snapshot()
    snap.maps[1] = dataclasses.replace(snap.maps[1], backend=Backend.MD)
    assert "mpathb" not in views.topology(snap) + views.map_table(snap)


def test_empty_tables_print_nothing() -> None:
    assert views.path_table(Snapshot()) == views.map_table(Snapshot()) == ""


# --------------------------------------------------------------------------- the capture

#: the capture's LUNs are 64 MB
LAB_SECTORS = 131072


def lab_snapshot(sda_failed: bool = False) -> Snapshot:
    """mpt-compat's state: healthy, or with sda offline and failed (its group enabled
    with priority 0, the other group active), as the capture's second step."""
    snap = fixture_snapshot()
    for m in snap.maps:
        m.size_sectors = LAB_SECTORS
    if sda_failed:
        m = snap.maps[0]
        sda = m.paths[0]
        sda.kernel_state, sda.check, sda.dev_state = KernelState.FAILED, Check.DOWN, "offline"
        sda.fail_count = 1
        m.groups[0].state, m.groups[0].priority = GroupState.ENABLED, 0
        m.groups[1].state = GroupState.ACTIVE
    return snap


def _mpatha(snap: Snapshot) -> list[Map]:
    return views.find_maps(snap, "mpatha")


CAPTURED = {
    "ll.out": lambda: views.topology(lab_snapshot()),
    "l_name.out": lambda: views.topology(s := lab_snapshot(), _mpatha(s), checked=False),
    "ll_failed.out": lambda: views.topology(lab_snapshot(True)),
    "l_name_failed.out": lambda: views.topology(
        s := lab_snapshot(True), _mpatha(s), checked=False
    ),
    "show_status.out": lambda: views.status(lab_snapshot()),
    "show_maps.out": lambda: views.map_table(lab_snapshot()),
    "show_paths_raw.out": lambda: views.path_table(
        lab_snapshot(), "%d %w %t %T %i %o %s %c %m", pretty=False
    ),
    "show_paths_raw_d.out": lambda: views.path_table(lab_snapshot(), "%d", pretty=False),
    "show_maps_raw.out": lambda: views.map_table(lab_snapshot(), "%n %w %d %N", pretty=False),
    "show_maps_json_none.out": lambda: views.maps_json(Snapshot()),
}


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_captured_output_byte_for_byte(shared_fixtures: pathlib.Path, name: str) -> None:
    assert CAPTURED[name]() == _golden(shared_fixtures, f"{OURS}/{name}")


def test_show_topology_pads_over_every_path_multipath_ll_per_map(
    shared_fixtures: pathlib.Path,
) -> None:
    """multipathd's columns are as wide as over all its paths (mpathb's "ready" is padded
    to mpatha's "faulty"), multipath -ll's per map (ll_failed.out, byte for byte above).
    Only the "create: " that multipathd keeps from making the map is not dmpath's."""
    theirs = _golden(shared_fixtures, f"{OURS}/show_topology_failed.out")
    assert views.topology(lab_snapshot(True), daemon=True) == theirs.replace("create: ", "")


def test_show_maps_json_with_a_failed_path(shared_fixtures: pathlib.Path) -> None:
    import json

    from test_mptjson import NOT_TRACKED, _without

    ours = json.loads(views.maps_json(lab_snapshot(True)))
    theirs = json.loads(_golden(shared_fixtures, f"{OURS}/show_maps_json_failed.out"))
    assert _without(ours, NOT_TRACKED) == _without(theirs, NOT_TRACKED)
    assert ours["maps"][0]["paths"] == 1  # the paths the checker finds up


# --------------------------------------------------------------------------- multipath args


@pytest.mark.parametrize(
    ("argv", "cmd"),
    [
        (["-ll"], MultipathCmd("list", long=True)),
        (["-l", "/dev/sdb"], MultipathCmd("list", "/dev/sdb")),
        (["/dev/sdb", "-l"], MultipathCmd("list", "/dev/sdb")),  # GNU getopt order
        (["-ll", "-v1"], MultipathCmd("list", long=True, verbosity=1)),
        (["-l", "-v", "0"], MultipathCmd("list", verbosity=0)),
        (["-a", "3600a0b8"], MultipathCmd("add_wwid", "3600a0b8")),
        (["-w", "/dev/sdb"], MultipathCmd("remove_wwid", "/dev/sdb")),
        (["-C", "dm-3"], MultipathCmd("usable", "dm-3")),
        (["-f", "mpatha"], MultipathCmd("flush", "mpatha")),
        (["-F"], MultipathCmd("flush_all")),
        (["-r"], MultipathCmd("reload")),
        ([], MultipathCmd("create")),
        (["-R", "3", "-f", "mpatha"], MultipathCmd("flush", "mpatha")),
        (["-h"], MultipathCmd("usage")),
    ],
)
def test_parse_multipath(argv: list[str], cmd: MultipathCmd) -> None:
    assert cargs.parse_multipath(argv) == cmd


@pytest.mark.parametrize("argv", [["-t"], ["-T"], ["-c", "/dev/sdb"], ["-W"], ["-d"]])
def test_multipath_unsupported(argv: list[str]) -> None:
    with pytest.raises(Unsupported, match="not supported by dmpath"):
        cargs.parse_multipath(argv)


@pytest.mark.parametrize("argv", [["-a"], ["-f"], ["-C"], ["-x"], ["-v"], ["-v", "x", "-l"]])
def test_multipath_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        cargs.parse_multipath(argv)


def test_multipath_unsupported_exits_1_with_one_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert multipath.run(["-t"], out, err) == 1
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and "not supported by dmpath" in err.getvalue()


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (Refused("mpathb: open: not flushing (use --force)"), "mpathb: map in use"),
        (multipath.InUse("x"), "mpathb: map in use"),
        (NotFound("mpathb: no such map"), "mpathb is not a multipath device"),
        (multipath.NotOurs("x"), "mpathb is not a multipath device"),
    ],
)
def test_flush_refusals_in_multipath_tools_words(exc: DmpathError, line: str) -> None:
    assert multipath.flush_refusal("mpathb", exc) == line


def test_a_path_of_a_map_stands_for_the_maps_wwid() -> None:
    snap = fixture_snapshot()
    for arg in ("sdc", "/dev/sdc", "mpatha", "dm-0", "1Linux_scsi_debug_2000"):
        assert multipath.wwid_of(arg, snap, ("ID_SERIAL",)) == "1Linux_scsi_debug_2000"
    assert multipath.wwid_of("3600a0b8", snap, ("ID_SERIAL",)) == "3600a0b8"


def test_usable_paths() -> None:
    m = fixture_snapshot().maps[0]
    assert multipath.usable_paths(m)
    for p in m.paths:
        p.check = Check.DOWN
    assert not multipath.usable_paths(m)
    m.paths[1].check, m.paths[1].dev_state = Check.UNKNOWN, "running"  # the kernel's view
    assert multipath.usable_paths(m)
    m.paths[1].kernel_state = KernelState.FAILED
    assert not multipath.usable_paths(m)


# --------------------------------------------------------------------------- multipathd


RAW_PATHS = DaemonCmd("show paths", fmt="%d %w", raw=True)


@pytest.mark.parametrize(
    ("argv", "cmd"),
    [
        (["show", "status"], DaemonCmd("show status")),
        (["show status"], DaemonCmd("show status")),
        (["-k", "show paths"], DaemonCmd("show paths")),
        (["-kshow maps"], DaemonCmd("show maps")),
        (["list", "maps", "status"], DaemonCmd("show maps status")),
        (["show", "paths", "raw", "format", "%d %w"], RAW_PATHS),
        (['show paths raw format "%d %w"'], RAW_PATHS),
        (["show", "maps", "format", "%n %w"], DaemonCmd("show maps", fmt="%n %w")),
        (["show", "map", "mpatha", "json"], DaemonCmd("show map json", "mpatha")),
        (["show", "maps", "topology"], DaemonCmd("show topology")),
        (["add", "path", "/dev/sdb"], DaemonCmd("add path", "/dev/sdb")),
        (["del", "path", "sdb"], DaemonCmd("del path", "sdb")),
        (["remove", "path", "sdb"], DaemonCmd("del path", "sdb")),
        (["del", "map", "mpatha"], DaemonCmd("del map", "mpatha")),
        (["resize", "map", "mpatha"], DaemonCmd("resize map", "mpatha")),
        (["reconfigure"], DaemonCmd("reconfigure")),
        (["switchgroup", "map", "mpatha", "group", "2"],
         DaemonCmd("switchgroup", "mpatha", number=2)),
    ],
)
def test_parse_multipathd(argv: list[str], cmd: DaemonCmd) -> None:
    assert cargs.parse_multipathd(argv) == cmd


@pytest.mark.parametrize(
    "argv", [[], ["-d"], ["shutdown"], ["show", "config"], ["show", "blacklist"], ["-k"]]
)
def test_multipathd_unsupported(argv: list[str]) -> None:
    with pytest.raises(Unsupported, match="not supported by dmpath"):
        cargs.parse_multipathd(argv)


class FakeDaemon:
    def __init__(self, refuse: str = "") -> None:
        self.sent: list[tuple[str, Mapping[str, Any] | None]] = []
        self.refuse = refuse

    def request(self, op: str, args: Mapping[str, Any] | None) -> Any:
        self.sent.append((op, args))
        if op == self.refuse:
            raise Refused(f"{op} refused")
        return {}


@pytest.mark.parametrize(
    ("cmd", "op", "args"),
    [
        (DaemonCmd("add path", "/dev/sdb"), "add_path", {"path": "sdb"}),
        (DaemonCmd("del path", "sdb"), "remove_path", {"path": "sdb"}),
        (DaemonCmd("del map", "mpatha"), "flush_map", {"map": "mpatha"}),
        (DaemonCmd("resize map", "mpatha"), "resize_map", {"map": "mpatha"}),
        (DaemonCmd("reconfigure"), "reconfigure", None),
        (DaemonCmd("add map", "3600a0b8"), "create_map", {"wwid": "3600a0b8"}),
        (DaemonCmd("add map", "sdb"), "create_map", {"path": "sdb"}),
    ],
)
def test_multipathd_actions_are_their_requests(cmd: DaemonCmd, op: str, args: Any) -> None:
    assert multipathd.plan(cmd, fixture_snapshot) == [(op, args)]


def test_a_map_named_by_its_dm_device(tmp_path: pathlib.Path) -> None:
    """``resize map /dev/dm-0`` (multipath-tools takes it): the name from sysfs."""
    (tmp_path / "block/dm-0/dm").mkdir(parents=True)
    (tmp_path / "block/dm-0/dm/name").write_text("mpatha\n")
    assert source.map_name("dm-0", str(tmp_path)) == "mpatha"
    assert source.map_name("mpatha", str(tmp_path)) == "mpatha"
    assert source.resolve("/dev/mapper/nonexistent-map") == "nonexistent-map"


class ServingDaemon(FakeDaemon):
    """The daemon's side of the two multipathd requests, over ``snapshot``: the text of a
    show command, or the command's requests sent on (and recorded) one by one."""

    def __init__(self, snapshot: Callable[[], Snapshot], refuse: str = "") -> None:
        super().__init__(refuse)
        self.snapshot = snapshot

    def request(self, op: str, args: Mapping[str, Any] | None) -> Any:
        words = (args or {})["words"]
        cmd = multipathd.parse_words(words)
        self.sent.append((op, args))
        if op == "multipathd_show":
            return {"text": multipathd.show(cmd, self.snapshot(), 4242)}
        for step in multipathd.plan(cmd, self.snapshot):
            super().request(*step)
        return {"text": ""}


def test_multipathd_refusal_is_fail_and_status_1(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = ServingDaemon(fixture_snapshot, refuse="flush_map")
    monkeypatch.setattr(multipathd, "_request", fake.request)
    out, err = io.StringIO(), io.StringIO()
    assert multipathd.run(["del", "map", "mpatha"], out, err) == 1
    assert out.getvalue() == "fail\n"
    assert "flush_map refused" in err.getvalue()
    assert fake.sent[0] == ("multipathd", {"words": ["del", "map", "mpatha"]})


def test_multipathd_show_paths_raw_for_os_brick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command sends its words; the daemon's answer is the text printed."""
    fake = ServingDaemon(fixture_snapshot)
    monkeypatch.setattr(multipathd, "_request", fake.request)
    out, err = io.StringIO(), io.StringIO()
    argv = ["show", "paths", "raw", "format", "%d %T"]
    assert multipathd.run(argv, out, err) == 0
    assert out.getvalue() == "sda ready\nsdb ready\nsdc ready\nsdd ready\n"
    assert fake.sent == [("multipathd_show", {"words": argv})]


def test_the_daemon_refuses_what_multipathd_does_not_serve() -> None:
    with pytest.raises(BadRequest, match="not supported by dmpath"):
        multipathd.parse_words(["show", "config"])


def test_multipathd_without_daemon_fails_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMPATH_SOCKET", "/nonexistent/dmpathd.sock")
    out, err = io.StringIO(), io.StringIO()
    assert multipathd.run(["show", "status"], out, err) == 1
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and "not running" in err.getvalue()


def test_multipathd_empty_answer_is_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multipathd, "_request", ServingDaemon(Snapshot).request)
    out, err = io.StringIO(), io.StringIO()
    assert multipathd.run(["show", "paths"], out, err) == 0
    assert out.getvalue() == "ok\n"


def test_wildcards_list_every_path_wildcard() -> None:
    text = multipathd.wildcards()
    assert text.startswith("multipath format wildcards:\n%n  name\n")
    assert "\npath format wildcards:\n%w  uuid\n%i  hcil\n" in text
    assert text.endswith("%M  marginal_st\n")
