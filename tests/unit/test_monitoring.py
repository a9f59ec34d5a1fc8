"""The shipped alerting rules and Grafana dashboard: the rules pass promtool's own tests,
and both use only metrics a real exposition of dmpathd's metrics has."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dmpath.daemon.exposition import exposition, registry_for
from dmpath.sim.kernel import SimSan
from dmpath.sim.run import running, wait_until

MONITORING = pathlib.Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "dmpath.rules.yml"
RULES_TEST = MONITORING / "dmpath.rules.test.yml"
DASHBOARD = MONITORING / "dmpath-dashboard.json"
METRIC = re.compile(r"\bdmpath_[a-z_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (Debian's prometheus package, APT_PACKAGES)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=MONITORING, capture_output=True, text=True, timeout=120,
        check=False,
    )


def test_rules_are_valid_and_pass_their_promtool_tests() -> None:
    check = run_promtool("check", "rules", RULES.name)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = run_promtool("test", "rules", RULES_TEST.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_rules_alert_on_a_map_down_a_map_degraded_and_a_flapping_path() -> None:
    names = re.findall(r"^\s+- alert: (\S+)", RULES.read_text(), re.M)
    assert names == ["DmpathMapDown", "DmpathMapDegraded", "DmpathPathFlapping"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name of a scrape of the real engine after a path failed and came
    back (so that every histogram has observations)."""
    work = tmp_path_factory.mktemp("sim")

    async def scrape() -> str:
        san = SimSan(2, 2)
        async with running(san, str(work), "polling_interval = 0.1\ncoalesce_ms = 10") as (
            d,
            ops,
        ):
            victim = san.paths[0]
            san.set_path(victim.name, False)
            await wait_until(lambda: ops.failed({victim.devnum}) == 1, "path failed")
            san.set_path(victim.name, True)
            await wait_until(
                lambda: d.paths[victim.name].model.reinstate_count == 1, "path reinstated"
            )
            maps = [mr.model for mr in d.maps.values()]
            paths = [pr.model for pr in d.paths.values()]
            return exposition(registry_for(lambda: d.metrics.readout(maps, paths)))

    text = asyncio.run(scrape())
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def expressions(node: Any) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets and variable queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, v in node.items():
            # a variable's "query" is PromQL (label_values(...)); the datasource's is a name
            promql = key in ("expr", "definition") or (key == "query" and "(" in str(v))
            if promql and isinstance(v, str):
                found.append(v)
            else:
                found.extend(expressions(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(expressions(v))
    return found


def test_the_dashboard_uses_only_metrics_the_daemon_exports(exported: set[str]) -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = expressions(dash["panels"]) + expressions(dash["templating"])
    used = {name for e in exprs for name in METRIC.findall(e)}
    assert len(exprs) > 20
    assert used - exported == set()
    # it shows what the daemon is for: paths, failures, latencies
    assert {
        "dmpath_map_active_paths",
        "dmpath_path_state",
        "dmpath_path_failures_total",
        "dmpath_detection_seconds_bucket",
        "dmpath_recovery_seconds_bucket",
        "dmpath_check_duration_seconds_bucket",
        "dmpath_map_queueing_seconds_total",
        "dmpath_path_marginal",
    } <= used


def test_the_dashboard_panels_have_unique_ids_and_titles() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert all(p.get("title") for p in panels)


def test_the_rules_use_only_metrics_the_daemon_exports(exported: set[str]) -> None:
    exprs = re.findall(r"^\s+expr: (.+)$", RULES.read_text(), re.M)
    used = {name for e in exprs for name in METRIC.findall(e)}
    assert used and used - exported == set()


def test_the_daemon_page_lists_every_metric(exported: set[str]) -> None:
    text = (pathlib.Path(__file__).resolve().parents[2] / "man" / "dmpathd.8").read_text()
    text = text.replace("\\%", "").replace("\\-", "-")
    own = {
        re.sub(r"_(bucket|sum|count|created)$", "", name)
        for name in exported
        if not name.startswith("dmpath_process_")
    }
    assert len(own) >= 19
    assert sorted(name for name in own if not re.search(rf"\b{name}\b", text)) == []
