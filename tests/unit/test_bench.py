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
