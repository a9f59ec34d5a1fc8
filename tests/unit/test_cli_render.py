"""What the administrator sees: rendering of healthy, degraded and dead maps.

Rendered through ``Console(file=StringIO(), width=..., color_system=None)``,
so the assertions read the text a terminal or a pipe would get.
"""

from __future__ import annotations

import io
import unicodedata
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console, RenderableType

from dmpath.cli import render
from dmpath.cli.render import RenderOptions
from dmpath.model import (
    Backend,
    Check,
    Event,
    GroupState,
    KernelState,
    Map,
    Path,
    PathGroup,
    Snapshot,
)
from dmpath.safetext import sanitize

NOW = 1_700_000_000.0
ASCII = RenderOptions(ascii=True)
UNICODE = RenderOptions(ascii=False)

HOSTILE_ALIAS = "[red]boom[/red]"
HOSTILE_VENDOR = "\x1b[31mEVIL\x07"
HOSTILE_MODEL = "ﺏﺎﻠﻋﺮﺒﻳﺓ 🔥 \u202egnp.exe\x00\x9b"


def up(name: str, devnum: str, hctl: str, prio: int = 50, group: int = 1) -> Path:
    return Path(
        name=name,
        devnum=devnum,
        wwid="naa.33333330000007d0",
        hctl=hctl,
        vendor="Linux",
        model="scsi_debug",
        dev_state="running",
        check=Check.UP,
        kernel_state=KernelState.ACTIVE,
        priority=prio,
        group=group,
        last_change=NOW - 3 * 3600,
    )


def down(p: Path, *, since: float = 180, fails: int = 1) -> Path:
    p.kernel_state, p.check, p.dev_state = KernelState.FAILED, Check.DOWN, "offline"
    p.check_reason = "TUR: not ready"
    p.fail_count, p.last_change = fails, NOW - since
    return p


def dm_map(name: str, paths: list[Path], *, queueing: bool = False) -> Map:
    groups = [
        PathGroup(1, "service-time 0", 50, GroupState.ACTIVE, [paths[0].name]),
        PathGroup(2, "service-time 0", 10, GroupState.ENABLED, [p.name for p in paths[1:]]),
    ]
    return Map(
        name=name,
        wwid="1Linux_scsi_debug_2000",
        backend=Backend.DM,
        sysfs="dm-0",
        devnode=f"/dev/mapper/{name}",
        size_sectors=65536,
        vendor="Linux",
        model="scsi_debug",
        features="1 queue_if_no_path" if queueing else "0",
        hwhandler="1 alua",
        queueing=queueing,
        groups=groups,
        paths=paths,
    )


def healthy() -> Map:
    return dm_map("mpatha", [up("sda", "8:0", "6:0:0:0"), up("sdc", "8:32", "7:0:0:0", 10, 2)])


def degraded() -> Map:
    """The second path (sdd) failed: the md-style status reads ``[2/1] [U_]``."""
    return dm_map(
        "mpathb",
        [up("sdb", "8:16", "6:0:0:1"), down(up("sdd", "8:48", "7:0:0:1", 10, 2), fails=3)],
    )


def all_down() -> Map:
    return dm_map(
        "mpathc",
        [
            down(up("sde", "8:64", "6:0:0:2"), since=7200),
            down(up("sdf", "8:80", "7:0:0:2", 10, 2), since=42),
        ],
        queueing=True,
    )


ColorSystem = Literal["truecolor"] | None


def show(renderable: RenderableType, width: int = 140, color: ColorSystem = None) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=color, force_terminal=color is not None)
    console.print(renderable)
    return buf.getvalue()


def line_with(text: str, needle: str) -> str:
    lines = [ln for ln in text.splitlines() if needle in ln]
    assert lines, f"{needle!r} not in:\n{text}"
    return lines[0]


# --------------------------------------------------------------------------- status


def test_healthy_map() -> None:
    out = show(render.render_status(Snapshot(maps=[healthy()]), NOW, ASCII))
    header = line_with(out, "mpatha")
    assert "[OK]" in header and "[2/2] [UU]" in header and "ok" in header
    assert "[FAILED]" not in out and "[WARN]" not in out
    for needle in ("1Linux_scsi_debug_2000", "dm-0", "32M", "Linux,scsi_debug", "backend dm"):
        assert needle in out
    assert "features '0'" in out and "hwhandler '1 alua'" in out
    group1 = line_with(out, "group 1")
    assert "service-time 0" in group1 and "prio 50" in group1 and "active" in group1
    assert "enabled" in line_with(out, "group 2")
    sda = line_with(out, "sda")
    for needle in ("[OK]", "6:0:0:0", "8:0", "active", "up", "running", "prio 50", "fails 0"):
        assert needle in sda
    assert "3h ago" in sda


def test_degraded_map_marks_the_failed_path() -> None:
    out = show(render.render_status(Snapshot(maps=[degraded()]), NOW, ASCII))
    header = line_with(out, "mpathb")
    assert "[2/1] [U_]" in header
    assert "[WARN]" in header and "degraded: 1 of 2 paths down" in header
    sdd = line_with(out, "sdd")
    assert sdd.lstrip(" │└├─").startswith("[FAILED]")
    for needle in ("failed", "down (TUR: not ready)", "offline", "fails 3", "3m ago"):
        assert needle in sdd
    assert "[OK]" in line_with(out, "sdb")
    assert "1 degraded" in out and "1 failed" in out


def test_a_marginal_path_says_it_is_failed_on_purpose_and_why() -> None:
    flaky = up("sdd", "8:48", "7:0:0:1", 10, 2)
    flaky.kernel_state, flaky.marginal = KernelState.FAILED, True
    flaky.marginal_reason = "failed 3 times within 60 s"
    out = show(render.render_status(Snapshot(maps=[dm_map("mpathb", [up("sdb", "8:16",
               "6:0:0:1"), flaky])]), NOW, ASCII))
    sdd = line_with(out, "sdd")
    assert "failed marginal (failed 3 times within 60 s)" in sdd
    assert "up" in sdd  # its checks pass: that is the point of holding it out
    # the last resort, in use because no other path works: a warning, not a failure
    flaky.kernel_state = KernelState.ACTIVE
    assert render.path_health(flaky) == render.Health.WARN
    flaky.marginal = False
    assert render.path_health(flaky) == render.Health.OK


def test_all_paths_down() -> None:
    out = show(render.render_status(Snapshot(maps=[all_down()]), NOW, ASCII))
    header = line_with(out, "mpathc")
    assert "[FAILED]" in header and "[2/0] [__]" in header
    assert "all 2 paths down, I/O is queued" in header
    assert "queueing on" in out
    assert line_with(out, "sde").lstrip(" │└├─").startswith("[FAILED]")
    assert "2h ago" in line_with(out, "sde") and "42s ago" in line_with(out, "sdf")
    assert "1 down" in out


def test_all_down_without_queueing_says_io_fails() -> None:
    m = all_down()
    m.queueing = False
    assert "all 2 paths down, I/O fails" in show(render.render_map(m, NOW, ASCII))


def test_all_paths_failing_checks_is_down_before_the_kernel_notices() -> None:
    m = healthy()
    for p in m.paths:
        p.check = Check.DOWN
    assert render.map_health(m) == render.Health.BAD
    header = line_with(show(render.render_map(m, NOW, ASCII)), "mpatha")
    assert "[FAILED]" in header and "[2/2] [UU]" in header
    assert "all 2 paths failing, the kernel still uses 2" in header


def test_unicode_marks_read_without_colour() -> None:
    out = show(render.render_status(Snapshot(maps=[healthy(), degraded(), all_down()]), NOW))
    assert line_with(out, "mpatha").startswith("✔")
    assert line_with(out, "mpathb").startswith("⚠")
    assert line_with(out, "mpathc").startswith("✖")
    assert "✖" in line_with(out, "sdd") and "✔" in line_with(out, "sdb")


def test_colour_goes_with_the_marks() -> None:
    out = show(render.render_map(degraded(), NOW, UNICODE), color="truecolor")
    failed_line = line_with(out, "sdd")
    assert "\x1b[" in failed_line and "✖" in failed_line  # red AND marked


def test_overview_counts() -> None:
    snap = Snapshot(maps=[healthy(), degraded(), all_down()])
    text = render.overview(snap, ASCII).plain
    assert text == "[FAILED] 3 maps: 1 ok, 1 degraded, 1 down; 6 paths, 3 failed"


def test_no_maps() -> None:
    assert "no multipath maps" in show(render.render_status(Snapshot(), NOW, ASCII))


def test_kernel_view_notice() -> None:
    out = show(render.render_status(Snapshot(source="kernel", maps=[healthy()]), NOW, ASCII))
    assert out.splitlines()[0] == f"[WARN] {render.KERNEL_NOTICE}"


def test_unknown_check_is_a_dash_not_a_failure() -> None:
    m = healthy()
    for p in m.paths:
        p.check = Check.UNKNOWN
    out = show(render.render_map(m, NOW, ASCII))
    assert "[FAILED]" not in out
    assert "  -  " in line_with(out, "sda")


def test_md_map_without_groups_lists_paths_under_the_map() -> None:
    m = Map(name="md0", wwid="naa.1", backend=Backend.MD, sysfs="md0", size_sectors=63488)
    m.paths = [up("sdc", "8:32", "7:0:0:0", 0, 0), down(up("sda", "8:0", "6:0:0:0", 0, 0))]
    out = show(render.render_map(m, NOW, ASCII))
    assert "[2/1] [U_]" in out and "backend md" in out and "31M" in out
    assert "group" not in out
    assert "[FAILED]" in line_with(out, "sda")


def test_alerts_are_shown() -> None:
    m = healthy()
    m.alerts = ["multipathd runs on the same paths"]
    out = show(render.render_map(m, NOW, ASCII))
    assert "[WARN] multipathd runs on the same paths" in out
    assert "[WARN]" in line_with(out, "mpatha")


def test_unmapped_paths() -> None:
    stray = up("sdz", "65:144", "9:0:0:0")
    stray.kernel_state = KernelState.ABSENT
    out = show(render.render_status(Snapshot(maps=[healthy()], unmapped_paths=[stray]), NOW, ASCII))
    assert "paths in no map" in out
    assert "absent" in line_with(out, "sdz")


# --------------------------------------------------------------------------- width


@pytest.mark.parametrize("width", [60, 40])
def test_narrow_terminal_keeps_every_fact(width: int) -> None:
    snap = Snapshot(maps=[healthy(), degraded(), all_down()])
    out = show(render.render_status(snap, NOW, ASCII), width=width)
    assert all(cell_len(ln) <= width for ln in out.splitlines())
    assert "[2/1] [U_]" in out and "[2/0] [__]" in out
    # fields are never cut in the middle
    for needle in ("prio 50", "fails 3", "6:0:0:0", "7:0:0:2", "3m ago", "down (TUR: not ready)"):
        assert needle in out, needle


def test_width_60_status_is_readable() -> None:
    out = show(render.render_status(Snapshot(maps=[degraded()]), NOW, ASCII), width=60)
    sdd = line_with(out, "sdd")
    assert "[FAILED]" in sdd and "8:48" in sdd and "failed" in sdd


@pytest.mark.parametrize("width", [200, 60])
def test_paths_and_maps_views_fit(width: int) -> None:
    snap = Snapshot(maps=[healthy(), degraded()])
    for renderable in (render.render_paths(snap, NOW, ASCII), render.render_maps(snap, ASCII)):
        out = show(renderable, width=width)
        assert all(cell_len(ln) <= width for ln in out.splitlines())
        assert "mpathb" in out
    paths = show(render.render_paths(snap, NOW, ASCII), width=width)
    assert "[FAILED]" in line_with(paths, "sdd")
    assert "[OK]" in line_with(paths, "sdc")


def test_paths_table_when_wide() -> None:
    out = show(render.render_paths(Snapshot(maps=[degraded()]), NOW, ASCII), width=200)
    header = out.splitlines()[0].split()
    assert header[:4] == ["dev", "hctl", "dev_t", "dm_st"]
    assert "mpathb" in line_with(out, "sdd")


# --------------------------------------------------------------------------- hostile strings


def hostile_snapshot() -> Snapshot:
    m = healthy()
    m.name = HOSTILE_ALIAS
    m.vendor, m.model = HOSTILE_VENDOR, HOSTILE_MODEL
    m.alerts = ["[bold]alert[/bold]\x1b]0;pwned\x07"]
    m.paths[0].vendor = HOSTILE_VENDOR
    m.paths[0].check_reason = "\x1b[2J"
    m.paths[0].check = Check.DOWN
    return Snapshot(maps=[m])


@pytest.mark.parametrize("color", [None, "truecolor"])
def test_hostile_strings_are_shown_literally(color: ColorSystem) -> None:
    snap = hostile_snapshot()
    views = [
        render.render_status(snap, NOW, UNICODE),
        render.render_maps(snap, UNICODE),
        render.render_paths(snap, NOW, UNICODE),
    ]
    for i, view in enumerate(views):
        out = show(view, color=color)
        assert HOSTILE_ALIAS in out  # markup not interpreted
        if i < 2:  # the paths view shows no vendor
            assert "\\x1b[31mEVIL\\x07" in out  # escapes shown, not executed
            assert "\\u202egnp.exe\\x00\\x9b" in out
        assert "\x07" not in out and "\x00" not in out and "\x9b" not in out
        assert "\u202e" not in out
        assert "\\x1b[2J" in out or i == 1  # the maps view shows no check reason
        if color is None:
            assert "\x1b" not in out
        else:  # the only escape sequences are our own colour codes
            assert "\x1b[31mEVIL" not in out and "\x1b]0;" not in out and "\x1b[2J" not in out
    out = show(views[0])
    assert "ﺏﺎﻠﻋﺮﺒﻳﺓ 🔥" in out  # RTL letters and emoji are data, kept as they are
    assert "[bold]alert[/bold]\\x1b]0;pwned\\x07" in out
    assert "\\x1b[2J" in out


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("sdb", "sdb"),
        ("a\nb", "a\\nb"),
        ("tab\there", "tab\\there"),
        ("\x1b[31m", "\\x1b[31m"),
        ("\x07\x00\x7f", "\\x07\\x00\\x7f"),
        ("\x9b", "\\x9b"),
        ("\u2028", "\\u2028"),
        ("abc\u202edef", "abc\\u202edef"),
        ("\udcff", "\\udcff"),
        ("ﺏ 🔥 é", "ﺏ 🔥 é"),
        ("👩\u200d💻", "👩\u200d💻"),
        ("[red]x[/]", "[red]x[/]"),
    ],
)
def test_sanitize(raw: str, shown: str) -> None:
    assert sanitize(raw) == shown


@given(st.text())
def test_sanitize_leaves_nothing_a_terminal_would_act_on(raw: str) -> None:
    out = sanitize(raw)
    assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in out)
    assert not set(out) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert sanitize(out) == out


def test_safe_text_is_never_markup() -> None:
    t = render.safe("[bold red]x[/]")
    assert t.plain == "[bold red]x[/]" and not t.spans


# --------------------------------------------------------------------------- small formats


@pytest.mark.parametrize(
    ("sectors", "text"),
    [(0, "0"), (1, "512"), (2, "1K"), (65536, "32M"), (63488, "31M"), (3 * 2**30, "1.5T"),
     (2**31 * 25, "25T"), (2**21 * 10 + 2**20, "10G")],
)  # fmt: skip
def test_human_size(sectors: int, text: str) -> None:
    assert render.human_size(sectors) == text


@pytest.mark.parametrize(
    ("delta", "text"),
    [(0.2, "just now"), (-5, "just now"), (42, "42s ago"), (180, "3m ago"), (3 * 3600, "3h ago"),
     (86400 * 2 + 5, "2d ago")],
)  # fmt: skip
def test_age(delta: float, text: str) -> None:
    assert render.age(NOW - delta, NOW) == text


def test_age_never() -> None:
    assert render.age(0.0, NOW) == "never"


# --------------------------------------------------------------------------- events


def flapping_events() -> list[Event]:
    events = [
        Event(NOW - 3000 + i * 300, "path_failed", "mpathb", "sdc", "TUR failed") for i in range(4)
    ]
    events += [Event(NOW - 2900 + i * 300, "path_reinstated", "mpathb", "sdc") for i in range(4)]
    events += [
        Event(NOW - 7200 * 2, "path_failed", "mpatha", "sda", "old"),
        Event(NOW - 60, "path_failed", "mpatha", "sda", "once"),
        Event(NOW - 30, "map_created", "mpathd", "", "created by admin"),
    ]
    return events


def test_flapping_path_is_obvious() -> None:
    events = flapping_events()
    assert render.recent_failures(events, NOW) == {"sdc": 4, "sda": 1}
    assert render.flapping(events, NOW) == {"sdc": 4}
    out = show(render.render_events(events, NOW, ASCII), width=120)
    first = out.splitlines()[0]
    assert first.startswith("[WARN] failures in the last hour:")
    assert "sdc 4 (flapping)" in first and "sda 1" in first
    assert "sda 1 (flapping)" not in first


def test_events_history_is_timestamped_and_ordered() -> None:
    events = list(reversed(flapping_events()))
    out = show(render.render_events(events, NOW, ASCII), width=140)
    rows = [ln for ln in out.splitlines() if "path_" in ln or "map_created" in ln]
    assert len(rows) == len(events)
    assert "old" in rows[0] and "created by admin" in rows[-1]  # oldest first
    assert render.timestamp(NOW - 30) in rows[-1] and "30s ago" in rows[-1]
    assert rows[0].startswith("[FAILED]")
    assert line_with(out, "path_reinstated").startswith("[OK]")


def test_events_narrow() -> None:
    out = show(render.render_events(flapping_events(), NOW, ASCII), width=60)
    assert all(cell_len(ln) <= 60 for ln in out.splitlines())
    assert "created by admin" in out


def test_no_events() -> None:
    assert "no events" in show(render.render_events([], NOW, ASCII))


def test_hostile_event_message() -> None:
    e = Event(NOW - 1, "path_failed", HOSTILE_ALIAS, "sdb", "\x1b[31mred\x07")
    out = show(render.render_events([e], NOW, ASCII), width=60)
    assert HOSTILE_ALIAS in out and "\\x1b[31mred\\x07" in out and "\x1b" not in out


# --------------------------------------------------------------------------- config


def test_config_text_and_mapping() -> None:
    text = show(render.render_config("defaults {\n\tpolling_interval 5\n}\n[red]x[/red]\x07"))
    assert "polling_interval 5" in text and "[red]x[/red]\\x07" in text
    tree = show(
        render.render_config(
            {"defaults": {"polling_interval": 5, "find_multipaths": True},
             "blacklist": {"devnode": ["^sda$"]}, "file": None}
        )
    )  # fmt: skip
    assert "polling_interval: 5" in tree and "find_multipaths: yes" in tree
    assert "^sda$" in tree and "file: -" in tree
