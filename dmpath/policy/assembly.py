"""Turning the paths of one LUN into a dm multipath table: grouping and table construction.

Pure: the daemon gives the paths (with priorities) and the map's options; this returns
the table to load. Path groups are ordered best first, and dm starts with group 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from dmpath.errors import DmpathError
from dmpath.kernel.dmtable import (
    Features,
    HardwareHandler,
    MultipathTable,
    PathGroup,
    TablePath,
    selector_path_args,
)

POLICIES = ("failover", "multibus", "group_by_prio")


class AssemblyError(DmpathError):
    """The options cannot make a table (e.g. an unknown grouping policy)."""


@dataclass(frozen=True)
class Member:
    """One path as assembly sees it."""

    name: str
    devnum: str
    priority: int


@dataclass(frozen=True)
class Grouped:
    priority: int
    members: tuple[Member, ...]


def group_paths(members: Sequence[Member], policy: str) -> list[Grouped]:
    """Priority groups for ``policy``, best first; ties broken by name for stability.

    - failover: one path per group, so I/O uses one path and moves on failure;
    - multibus: every path in one group, I/O spread over all;
    - group_by_prio: paths of equal priority together (ALUA: optimized first).
    """
    ordered = sorted(members, key=lambda m: (-m.priority, m.name))
    if not ordered:
        return []
    if policy == "failover":
        return [Grouped(m.priority, (m,)) for m in ordered]
    if policy == "multibus":
        return [Grouped(max(m.priority for m in ordered), tuple(ordered))]
    if policy == "group_by_prio":
        groups: dict[int, list[Member]] = {}
        for m in ordered:
            groups.setdefault(m.priority, []).append(m)
        return [Grouped(p, tuple(ms)) for p, ms in groups.items()]
    raise AssemblyError(
        f"unknown path_grouping_policy {policy!r}: use one of {', '.join(POLICIES)}"
    )


def split_selector(selector: str) -> tuple[str, tuple[str, ...]]:
    """``"service-time 0"`` (multipath-tools' spelling: name and arg count) → name, args."""
    words = selector.split()
    if not words:
        raise AssemblyError("empty path_selector")
    name, rest = words[0], words[1:]
    if rest and rest[0].isdigit():
        count = int(rest[0])
        if count != len(rest) - 1:
            raise AssemblyError(
                f"path_selector {selector!r}: says {count} args, has {len(rest) - 1}"
            )
        rest = rest[1:]
    return name, tuple(rest)


def build_table(
    size_sectors: int,
    members: Sequence[Member],
    *,
    policy: str,
    selector: str,
    features: Sequence[str] = (),
    hwhandler: str = "",
    queueing: bool = False,
) -> tuple[MultipathTable, list[Grouped]]:
    """The table for one map, and the grouping it encodes (for the daemon's model)."""
    groups = group_paths(members, policy)
    if not groups:
        raise AssemblyError("a map needs at least one path")
    name, sel_args = split_selector(selector)
    path_args = selector_path_args(name)
    # queueing follows no_path_retry, whatever the features list says
    feat = dataclasses.replace(Features.from_words(list(features)), queue_if_no_path=queueing)
    hw = None
    if hwhandler:
        hw_words = hwhandler.split()
        hw = HardwareHandler(hw_words[0], tuple(hw_words[1:]))
    table = MultipathTable(
        length=size_sectors,
        groups=tuple(
            PathGroup(name, tuple(TablePath(m.devnum, path_args) for m in g.members), sel_args)
            for g in groups
        ),
        features=feat,
        hw_handler=hw,
        initial_pg=1,
    )
    return table, groups
