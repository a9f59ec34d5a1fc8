"""How a session's lab tests are spread over lab VMs that run side by side. Pure.

With ``DMPATH_LAB_PARALLEL`` above 1 (a host with cores to spare: on a 2-core host one VM
under emulation keeps both cores busy, and two side by side each ran 2.2 to 2.7 times
slower), the default boot, which holds most tests, is cut into shards, each booted on
its own, so the VMs have equal work. A test module stays whole in one shard: its
module-scoped fixtures (the iSCSI fabric) are set up once, and its tests run in the
order they were written. Shards are balanced by each test's measured duration
(``tests/lab/durations.json``); a test not measured yet counts as ``DEFAULT_COST``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: seconds a lab test is assumed to take before it has been measured
DEFAULT_COST = 60.0
#: seconds a boot costs before its first test (kernel, udev, the guest's set-up)
BOOT_COST = 150.0


@dataclass(frozen=True)
class BootRun:
    """One lab VM: the boot flavour it boots and the tests it runs, in collection order."""

    key: str
    flavour: str
    ids: tuple[str, ...]
    cost: float


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _modules(ids: Sequence[str], costs: Mapping[str, float]) -> dict[str, float]:
    """Module -> its tests' cost, in the order the modules first appear."""
    out: dict[str, float] = {}
    for i in ids:
        out[module_of(i)] = out.get(module_of(i), 0.0) + costs.get(i, DEFAULT_COST)
    return out


def split(ids: Sequence[str], shards: int, costs: Mapping[str, float]) -> list[list[str]]:
    """``ids`` in ``shards`` groups of whole modules, of costs as equal as the modules allow
    (longest module first to the cheapest group); each group in collection order. Empty
    groups are dropped."""
    loads = [0.0] * max(1, shards)
    where: dict[str, int] = {}
    mods = _modules(ids, costs)
    for mod in sorted(mods, key=lambda m: -mods[m]):
        k = loads.index(min(loads))
        where[mod] = k
        loads[k] += mods[mod]
    groups: list[list[str]] = [[] for _ in loads]
    for i in ids:
        groups[where[module_of(i)]].append(i)
    return [g for g in groups if g]


def plan(
    lab_ids: Mapping[str, Sequence[str]], parallel: int, costs: Mapping[str, float]
) -> list[BootRun]:
    """The boots to run for ``lab_ids`` (flavour -> test ids), costliest first, so that
    ``parallel`` VMs at a time finish together: a flavour holding more than a VM's share
    of the work is cut into as many shards as it holds shares."""
    flavour_cost = {
        f: BOOT_COST + sum(costs.get(i, DEFAULT_COST) for i in ids)
        for f, ids in lab_ids.items()
        if ids
    }
    share = sum(flavour_cost.values()) / max(1, parallel)
    runs: list[BootRun] = []
    for flavour, ids in lab_ids.items():
        if not ids:
            continue
        n = max(1, min(parallel, math.ceil(flavour_cost[flavour] / share - 0.05)))
        groups = split(ids, n, costs)
        for k, group in enumerate(groups, 1):
            key = flavour if len(groups) == 1 else f"{flavour} ({k}/{len(groups)})"
            cost = BOOT_COST + sum(costs.get(i, DEFAULT_COST) for i in group)
            runs.append(BootRun(key, flavour, tuple(group), cost))
    return sorted(runs, key=lambda r: -r.cost)


def durations(results: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """Each test's seconds (setup, call and teardown) from the guest's result records."""
    out: dict[str, float] = {}
    for rec in results:
        node, took = rec.get("nodeid"), rec.get("duration")
        if isinstance(node, str) and isinstance(took, (int, float)):
            out[node] = out.get(node, 0.0) + float(took)
    return out


def load_costs(path: str) -> dict[str, float]:
    """The measured durations file; none (or an unreadable one) balances by count."""
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: float(v) for k, v in raw.items() if isinstance(v, (int, float))}


def main(argv: Sequence[str]) -> int:
    """``python -m dmpath.lab.shards RESULTS.jsonl ...``: the durations file, from the
    result records of lab boots (each boot's output directory has one)."""
    if not argv:
        print("usage: python -m dmpath.lab.shards RESULTS.jsonl ... > tests/lab/durations.json")
        return 2
    recs: list[Mapping[str, object]] = []
    for path in argv:
        with open(path) as fh:
            recs += [json.loads(line) for line in fh if line.strip()]
    print(json.dumps({k: round(v, 1) for k, v in sorted(durations(recs).items())}, indent=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
