"""dmpathd's metrics on the real kernel: the endpoint and the textfile say what
``dmsetup status`` says, before, during and after a path failure."""

from __future__ import annotations

import os
import pathlib
import socket
import urllib.request
from collections.abc import Callable

import pytest

from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.harness import DaemonUnderTest, wait_for
from dmpath.lab.promtext import Samples, parse, value

pytestmark = pytest.mark.lab

Start = Callable[..., DaemonUnderTest]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        return parse(resp.read().decode())


def scrape_agreeing(url: str, names: dict[str, str]) -> Samples:
    """A scrape, once it is known to say what dmsetup says of mpatha."""
    samples = scrape(url)
    assert disagreements(samples, "mpatha", names) == []
    return samples


def read_textfile(path: pathlib.Path) -> Samples:
    return parse(path.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def disagreements(samples: Samples, map_name: str, names: dict[str, str]) -> list[str]:
    """Where the metrics of ``map_name`` differ from ``dmsetup status`` (``names``:
    devnum -> path name); empty when they agree."""
    st = dmsetup.status(map_name)
    paths = [p for _g, p in st.paths()]
    out = []
    want = {
        "dmpath_map_paths": len(paths),
        "dmpath_map_active_paths": sum(p.active for p in paths),
        "dmpath_map_failed_paths": sum(not p.active for p in paths),
    }
    for metric, n in want.items():
        got = value(samples, metric, map=map_name)
        if got != n:
            out.append(f"{metric} {got} != dmsetup's {n}")
    for p in paths:
        name = names[p.dev]
        for state, on in (("active", p.active), ("failed", not p.active)):
            got = value(samples, "dmpath_path_state", map=map_name, path=name, state=state)
            if got != int(on):
                out.append(f"{name} state {state} {got}, dmsetup says {p.state.value}")
        failures = value(samples, "dmpath_path_failures_total", map=map_name, path=name)
        if failures != p.fail_count:
            out.append(f"{name} failures {failures} != dmsetup's fail count {p.fail_count}")
    return out


def test_endpoint_and_textfile_follow_a_path_failure_as_dmsetup_sees_it(
    scsi_paths: list[topo.LabPath], dmpathd: Start, tmp_path: pathlib.Path
) -> None:
    port = free_port()
    textfile = tmp_path / "dmpath.prom"
    d = dmpathd(
        defaults={
            "metrics_listen": f"127.0.0.1:{port}",
            "metrics_textfile": str(textfile),
            "metrics_textfile_interval": 1.0,
        }
    )
    d.wait_maps({"mpatha": 2})
    url = f"http://127.0.0.1:{port}/metrics"
    names = {p.devnum: p.name for p in scsi_paths}
    victim = scsi_paths[0]

    first = scrape_agreeing(url, names)
    wwid = d.maps()["mpatha"]["wwid"]
    info = [k for k in first if k[0] == "dmpath_map_info"]
    assert [dict(labels)["wwid"] for _n, labels in info] == [wwid]
    assert value(first, "dmpath_map_queue_if_no_path", map="mpatha") == int(
        dmsetup.table("mpatha").features.queue_if_no_path
    )
    detected = first.get(("dmpath_detection_seconds_count", ()), 0.0)
    recovered = first.get(("dmpath_recovery_seconds_count", ()), 0.0)
    # the file carries the same (written within its interval of the map's creation)
    wait_for(lambda: textfile.exists() and disagreements(read_textfile(textfile), "mpatha",
                                                         names) == [], 30, "the textfile")

    try:
        topo.set_state(victim, "offline")
        d.wait_path(victim.name, timeout=30, kernel_state="failed", check="down")
        down = scrape_agreeing(url, names)
        assert value(down, "dmpath_path_failures_total", map="mpatha", path=victim.name) == 1
        assert value(down, "dmpath_path_checker_state", map="mpatha", path=victim.name,
                     state="down") == 1
        assert value(down, "dmpath_map_active_paths", map="mpatha") == 1
        assert value(down, "dmpath_detection_seconds_count") == detected + 1
        print(f"\ndetection: {value(down, 'dmpath_detection_seconds_sum'):.3f} s in all")
        wait_for(
            lambda: value(read_textfile(textfile), "dmpath_path_state", map="mpatha",
                          path=victim.name, state="failed") == 1,
            30,
            "the textfile to show the path failed",
        )
        assert disagreements(read_textfile(textfile), "mpatha", names) == []
    finally:
        topo.set_state(victim, "running")
    d.wait_path(victim.name, timeout=30, kernel_state="active", check="up")
    back = scrape_agreeing(url, names)
    assert value(back, "dmpath_path_reinstatements_total", map="mpatha", path=victim.name) == 1
    assert value(back, "dmpath_recovery_seconds_count") == recovered + 1
    assert value(back, "dmpath_map_queueing", map="mpatha") == 0

    d.stop()
    assert not textfile.exists()  # a stopped daemon leaves no stale figures behind
    assert not [f for f in os.listdir(tmp_path) if f.startswith("dmpath.prom.")]
