"""The pure parts of the lab bench: /proc/PID/stat, multipathd's log, summaries, ratios."""

from __future__ import annotations

import argparse
import io
import math

import pytest
from rich.console import Console

from dmpath.lab import bench
from dmpath.lab.bench import (
    PhaseResult,
    ProcCpu,
    Round,
    Summary,
    count_multipathd_checks,
    estimate_checks,
    format_ratio,
    format_summary,
    parse_iocounter,
    parse_proc_stat,
    per_minute,
    ratio,
    ratios,
    result_table,
    ticks_to_seconds,
)
from dmpath.lab.topology import TopologyError

# a real line (multipathd in the lab VM): utime 25, stime 56, cutime 0, cstime 0
MULTIPATHD_STAT = (
    "416 (multipathd) S 410 255 255 0 -1 4194560 3521 0 157 0 25 56 0 0 -100 0 7 0 2222 "
    "429981696 6607 18446744073709551615 94074531176448 94074531249161 140726562071888 0 0 0 "
    "2147217151 4 23043 0 0 0 17 0 99 2 0 0 0 94074531275696 94074531278912 94075124940800 "
    "140726562078289 140726562078310 140726562078310 140726562078695 0\n"
)


def test_parse_proc_stat_real_line() -> None:
    cpu = parse_proc_stat(MULTIPATHD_STAT)
    assert cpu == ProcCpu(utime=25, stime=56, cutime=0, cstime=0)
    assert cpu.own == 81
    assert cpu.total == 81


def test_parse_proc_stat_name_with_spaces_and_parens() -> None:
    line = "77 (a (b) c) ) R 1 1 1 0 -1 0 0 0 0 0 11 22 33 44 20 0 1 0 5 0 0\n"
    cpu = parse_proc_stat(line)
    assert (cpu.utime, cpu.stime, cpu.cutime, cpu.cstime) == (11, 22, 33, 44)
    assert cpu.children == 77


@pytest.mark.parametrize("bad", ["", "no parens here", "1 (x) S 1 2 3", "1 (x) S " + "y " * 20])
def test_parse_proc_stat_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_proc_stat(bad)


def test_proc_cpu_difference() -> None:
    d = ProcCpu(30, 70, 5, 6) - ProcCpu(25, 56, 1, 1)
    assert d == ProcCpu(5, 14, 4, 5)
    assert (d.own, d.children, d.total) == (19, 9, 28)


def test_ticks_to_seconds() -> None:
    assert ticks_to_seconds(250, 100) == 2.5
    with pytest.raises(ValueError):
        ticks_to_seconds(1, 0)


@pytest.mark.parametrize(("text", "n"), [("0x1a\n", 26), ("0x0", 0), ("12", 12)])
def test_parse_iocounter(text: str, n: int) -> None:
    assert parse_iocounter(text) == n


MPD_LOG = """\
sda: tur state = pending
sdb: tur state = pending
sda: tur state = up
sda: reported target port group is 1792
sda: aas = 00 [active/optimized]
sdb: tur state = up
uevent 'change' from '/devices/virtual/block/dm-0'
sdc: tur state = down
sdd: directio state = ghost
mpatha: sda - path offline
sdb: tur state = pending
"""


def test_count_multipathd_checks_counts_results_not_pending() -> None:
    assert count_multipathd_checks(MPD_LOG) == 4
    assert count_multipathd_checks("") == 0
    # a cut at the window's edge: half a line is no check
    assert count_multipathd_checks("sda: tur sta") == 0


def test_estimate_checks() -> None:
    assert estimate_checks([1.0, 1.0, 2.0], 60.0) == 150.0
    assert estimate_checks([0.0, 1.0], 10.0) == 10.0  # unknown interval: not counted
    assert estimate_checks([], 10.0) == 0.0


def test_summary() -> None:
    s = Summary.of([3.0, 1.0, 2.0, 10.0])
    assert (s.n, s.min, s.median, s.max) == (4, 1.0, 2.5, 10.0)
    assert Summary.of([]) == Summary(0, None, None, None)
    assert format_summary(Summary.of([0.5, 1.25, 2.0])) == "0.50 / 1.25 / 2.00"
    assert format_summary(Summary.of([])) == "n/a"


def test_ratio_and_format() -> None:
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(None, 4.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None
    assert ratio(0.0, 2.0) == 0.0
    assert format_ratio(0.25) == "0.25x"
    assert format_ratio(1 / 3) == "0.333x"
    assert format_ratio(20.17) == "20.2x"
    assert format_ratio(None) == "n/a"


def test_per_minute() -> None:
    assert math.isclose(per_minute(1.0, 120.0), 0.5)
    with pytest.raises(ValueError):
        per_minute(1.0, 0.0)


def phase(
    name: str, detect: list[float], recover: list[float], ticks: int, checks: int
) -> PhaseResult:
    p = PhaseResult(name, window_s=60.0, clk_tck=100)
    p.rounds = [
        Round(f"sd{chr(97 + i)}", "mpatha", detect_s=d, recover_s=r)
        for i, (d, r) in enumerate(zip(detect, recover, strict=True))
    ]
    p.cpu_ticks_own, p.cpu_ticks_children = ticks, 0
    p.checks, p.checks_source = checks, "test"
    return p


def test_phase_figures_and_ratios() -> None:
    mine = phase("dmpathd", [0.5, 0.7, 0.6], [0.8, 0.9, 1.0], ticks=120, checks=240)
    theirs = phase("multipathd", [4.0, 12.0, 20.0], [5.0, 5.5, 6.0], ticks=30, checks=12)
    assert mine.cpu_seconds == 1.2
    assert mine.cpu_per_idle_minute == pytest.approx(1.2)
    assert mine.cpu_per_check == pytest.approx(0.005)
    assert theirs.cpu_per_check == pytest.approx(0.025)
    r = ratios(mine, theirs)
    assert r["detection_median"] == pytest.approx(0.6 / 12.0)
    assert r["recovery_max"] == pytest.approx(1.0 / 6.0)
    assert r["cpu_per_idle_minute"] == pytest.approx(4.0)
    assert r["cpu_per_check"] == pytest.approx(0.2)
    d = mine.to_dict()
    assert d["detection_s"]["median"] == 0.6
    assert d["cpu_seconds_per_check"] == pytest.approx(0.005)
    assert d["rounds"][0]["path"] == "sda"


def test_phase_without_measurements_has_no_figures() -> None:
    p = PhaseResult("multipathd")
    assert p.cpu_seconds is None
    assert p.cpu_per_idle_minute is None
    assert p.cpu_per_check is None
    assert p.detection.n == 0
    assert ratios(p, p)["cpu_per_check"] is None


def test_result_table_renders_ratios() -> None:
    mine = phase("dmpathd", [0.5], [0.8], ticks=120, checks=240)
    theirs = phase("multipathd", [10.0], [5.0], ticks=30, checks=12)
    out = io.StringIO()
    Console(file=out, width=120, no_color=True).print(result_table([mine, theirs]))
    text = out.getvalue()
    assert "0.05x" in text  # detection median 0.5 / 10
    assert "0.16x" in text  # recovery 0.8 / 5
    assert "4x" in text  # CPU per idle minute
    # one daemon alone: no ratio column
    out = io.StringIO()
    Console(file=out, width=120, no_color=True).print(result_table([mine]))
    alone = out.getvalue()
    assert "0.05x" not in alone
    assert "dmpathd / multipathd" not in alone  # nor the caption explaining it


def test_guest_argv_carries_the_options() -> None:
    ap = argparse.ArgumentParser()
    bench.add_arguments(ap)
    args = ap.parse_args(["--rounds", "3", "--window", "90", "--topology", "1x2"])
    argv = bench.guest_argv(args, ["--width", "100", "--no-color"])
    assert argv[1:3] == ["-m", "dmpath.lab.bench"]
    tail = argv[3:]
    assert tail[:3] == ["--width", "100", "--no-color"]
    assert tail[tail.index("--rounds") + 1] == "3"
    assert tail[tail.index("--window") + 1] == "90"
    assert tail[tail.index("--topology") + 1] == "1x2"
    assert tail[tail.index("--settle") + 1] == "30"


# ---------------------------------------------------------------------- scale rows


def test_scale_phase_timeout_grows_with_paths() -> None:
    # 256 paths: today's engine needs ~5 minutes for a fabric back; 15 minutes allowed
    assert bench.scale_phase_timeout(256) == pytest.approx(888.0)
    assert bench.scale_phase_timeout(1024) > bench.scale_phase_timeout(256)
    assert bench.scale_phase_timeout(0) == bench.SCALE_TIMEOUT_BASE_S


def test_parse_scale_list_repeatable_and_comma_lists() -> None:
    assert bench.parse_scale_list(["64x4", "256x4,64x4", " 8x4 ,"]) == ["64x4", "256x4", "8x4"]
    assert bench.parse_scale_list([]) == []
    with pytest.raises(TopologyError):
        bench.parse_scale_list(["64by4"])
    with pytest.raises(bench.BenchError, match="at least 2 paths"):
        bench.parse_scale_list(["8x1"])


def test_guest_memory_bigger_from_1024_paths_unless_told() -> None:
    assert bench.guest_memory_for([], None) == "2G"
    assert bench.guest_memory_for(["64x4"], None) == "2G"
    assert bench.guest_memory_for(["64x4", "256x4"], None) == "4G"
    assert bench.guest_memory_for(["256x4"], "6G") == "6G"


PROC_STATUS = """\
Name:\tpython3
VmPeak:\t  260112 kB
VmHWM:\t   61236 kB
VmRSS:\t   52224 kB
Threads:\t4
"""


def test_parse_vm_kb() -> None:
    assert bench.parse_vm_kb(PROC_STATUS, "VmRSS") == 52224
    assert bench.parse_vm_kb(PROC_STATUS, "VmHWM") == 61236
    assert bench.parse_vm_kb("Name:\tkthreadd\n", "VmRSS") is None  # kernel threads have none
    with pytest.raises(ValueError):
        bench.parse_vm_kb("VmRSS:\tlots\n", "VmRSS")


PROC_NET_UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 17842 @/org/kernel/linux/storage/multipathd
0000000000000000: 00000003 00000000 00000000 0001 03 17900
0000000000000000: 00000002 00000000 00010000 0001 01 16001 /run/udev/control
"""


def test_unix_socket_listed() -> None:
    assert bench.unix_socket_listed(PROC_NET_UNIX, bench.MULTIPATHD_SOCKET)
    assert bench.unix_socket_listed(PROC_NET_UNIX, "/run/udev/control")
    assert not bench.unix_socket_listed(PROC_NET_UNIX, "@/org/kernel/linux/storage/other")
    assert not bench.unix_socket_listed(PROC_NET_UNIX.splitlines()[0], "Path")


def scale_result(name: str, coldplug: float, ticks: int, rss_kb: int) -> bench.ScaleResult:
    r = bench.ScaleResult(name, "64x4", 64, 256, window_s=120.0, clk_tck=100)
    r.coldplug_s, r.fabric_down_s, r.fabric_up_s = coldplug, coldplug / 4, coldplug / 2
    r.cpu_ticks, r.rss_kb, r.peak_rss_kb = ticks, rss_kb, rss_kb * 2
    r.poll_seconds = [0.4, 0.6]
    return r


def test_scale_result_figures_and_ratios() -> None:
    mine = scale_result("dmpathd", 180.0, ticks=1024, rss_kb=51200)
    theirs = scale_result("multipathd", 60.0, ticks=512, rss_kb=20480)
    # 10.24 s CPU over 2 minutes and 256 paths
    assert mine.cpu_per_path_minute == pytest.approx(10.24 / 2 / 256)
    assert mine.rss_mb == 50.0
    r = bench.scale_ratios(mine, theirs)
    assert r["coldplug_s"] == pytest.approx(3.0)
    assert r["idle_cpu_s_per_path_minute"] == pytest.approx(2.0)
    assert r["rss_mb"] == pytest.approx(2.5)
    d = mine.to_dict()
    assert d["coldplug_s"] == 180.0
    assert d["peak_rss_mb"] == 100.0
    assert d["polls"] == 2 and d["poll_seconds_mean"] == pytest.approx(0.5)
    assert "poll_seconds" not in d
    empty = bench.ScaleResult("dmpathd", "64x4", 64, 256)
    assert empty.cpu_per_path_minute is None and empty.rss_mb is None


def test_scale_table_renders_rows_and_ratio() -> None:
    mine = scale_result("dmpathd", 180.0, ticks=1024, rss_kb=51200)
    theirs = scale_result("multipathd", 60.0, ticks=512, rss_kb=20480)
    out = io.StringIO()
    Console(file=out, width=140, no_color=True).print(bench.scale_table([mine, theirs]))
    text = out.getvalue()
    assert "64 LUNs x 4 paths = 256 paths" in text
    assert "coldplug s" in text and "180.0" in text and "3x" in text
    assert "2.5x" in text  # RSS


def guest_doc() -> dict[str, object]:
    mine = scale_result("dmpathd", 180.0, ticks=1024, rss_kb=51200)
    theirs = scale_result("multipathd", 60.0, ticks=512, rss_kb=20480)
    return {
        "started": "2024-05-01T10:00:00+00:00",
        "kernel": "6.1.0-57-amd64",
        "scale_settle_s": 60.0,
        "scale_window_s": 120.0,
        "scale": [
            {
                "topology": "64x4",
                "luns": 64,
                "paths": 256,
                "daemons": {"dmpathd": mine.to_dict(), "multipathd": theirs.to_dict()},
                "ratios": bench.scale_ratios(mine, theirs),
                "error": None,
            }
        ],
    }


def test_measured_records_from_the_guest_document() -> None:
    (rec,) = bench.measured_records(guest_doc(), commit="abc1234", dirty=True, memory="2G")
    assert rec["kind"] == "measured"
    assert (rec["topology"], rec["paths"], rec["git_commit"], rec["git_dirty"]) == (
        "64x4",
        256,
        "abc1234",
        True,
    )
    assert rec["daemons"]["dmpathd"]["coldplug_s"] == 180.0
    assert rec["daemons"]["multipathd"]["rss_mb"] == 20.0
    assert rec["ratios"]["coldplug_s"] == pytest.approx(3.0)
    assert bench.measured_records({"scale": []}, commit="", dirty=False, memory="2G") == []


def test_append_records_keeps_history_and_refuses_other_files() -> None:
    doc = bench.append_records(bench.empty_results(), [{"kind": "measured", "n": 1}])
    doc = bench.append_records(doc, [{"kind": "measured", "n": 2}])
    assert [r["n"] for r in doc["records"]] == [1, 2]
    with pytest.raises(bench.BenchError):
        bench.append_records({"records": {}}, [])


SIMULATED = {
    "kind": "simulated",
    "date": "2024-05-02T09:00:00+00:00",
    "git_commit": "def5678",
    "topology": "256x4",
    "paths": 1024,
    "phases": {
        "coldplug": {"cpu_s": 12.5, "wall_s": 20.25, "rss_mb": 80.0},
        "fabric_down": {"cpu_s": 1.5, "wall_s": 2.0},
    },
}


def test_render_results_md_a_table_per_topology_newest_first() -> None:
    old = bench.measured_records(guest_doc(), commit="aaa1111", dirty=False, memory="2G")[0]
    new = {**old, "date": "2024-06-01T10:00:00+00:00", "git_commit": "bbb2222"}
    text = bench.render_results_md([old, SIMULATED, new])
    assert text.index("## 64x4 (256 paths)") < text.index("## 256x4 (1024 paths)")
    assert text.index("bbb2222") < text.index("aaa1111")  # newest first
    row = next(ln for ln in text.splitlines() if "| dmpathd |" in ln and "bbb2222" in ln)
    assert (
        row == "| 2024-06-01T10:00:00+00:00 | bbb2222 | 120 | dmpathd "
        "| 180.0 | 45.0 | 90.0 | 0.0200 | 50.0 |"
    )
    assert "| bbb2222 | 120 | ratio | 3x | 3x | 3x | 2x | 2.5x |" in text
    # simulated rows render with their phases; a missing figure is n/a
    assert "| def5678 | dmpathd | coldplug | 12.50 | 20.25 | 80.0 |" in text
    assert "| def5678 | dmpathd | fabric_down | 1.50 | 2.00 | n/a |" in text
    assert bench.render_results_md([old, SIMULATED, new]) == text  # pure


def test_render_results_md_without_records() -> None:
    assert "No runs recorded yet." in bench.render_results_md([])


def test_guest_argv_carries_scale_options_only_when_asked() -> None:
    ap = argparse.ArgumentParser()
    bench.add_arguments(ap)
    plain = bench.guest_argv(ap.parse_args([]), [])
    assert "--scale" not in plain
    args = ap.parse_args(
        ["--scale", "8x4", "--scale", "64x4", "--scale-only", "--scale-window", "30"]
    )
    argv = bench.guest_argv(args, [])
    assert argv[argv.index("--scale") + 1] == "8x4,64x4"
    assert argv[argv.index("--scale-window") + 1] == "30"
    assert "--scale-only" in argv and "--phase-timeout" not in argv
    # the guest parses what the host sends
    back = ap.parse_args(argv[3:])
    assert back.scale == ["8x4,64x4"] and back.scale_only and back.scale_window == 30.0


def test_run_timeout_covers_the_scale_phases() -> None:
    ap = argparse.ArgumentParser()
    bench.add_arguments(ap)
    small = bench.run_timeout(ap.parse_args(["--scale", "8x4", "--scale-only"]))
    big = bench.run_timeout(ap.parse_args(["--scale", "256x4", "--scale-only"]))
    assert big > small > 6 * bench.scale_phase_timeout(32)
    assert big > 6 * bench.scale_phase_timeout(1024)


def test_simulated_results_become_records_with_each_phase_and_the_core_share() -> None:
    from dmpath.lab import bench as b

    res = {
        "kind": "simulated", "topology": "1024x16", "paths": 16384,
        "phases": {
            "coldplug": {"cpu_s": 2.5, "wall_s": 3.0, "rss_mb": 120.0, "detail": {"create": 1}},
            "idle_hour": {"cpu_s": 50.0, "wall_s": 3600.0, "rss_mb": 130.0,
                          "detail": {"cpu_pct_of_core": 1.39}},
        },
    }
    (rec,) = b.simulated_records([res], commit="abc1234", dirty=True, date="2026-12-02")
    assert rec["kind"] == "simulated" and rec["paths"] == 16384
    assert rec["git_commit"] == "abc1234+dirty"
    assert rec["phases"]["coldplug"] == {"cpu_s": 2.5, "wall_s": 3.0, "rss_mb": 120.0}
    assert rec["phases"]["idle_hour"]["cpu_pct_of_core"] == 1.39
    md = b.render_results_md([rec])
    assert "idle_hour" in md and "1.39" in md and "1024x16" in md
