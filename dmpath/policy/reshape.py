"""What a new configuration changes in a live dm map: the table the daemon would build for
it now (``dmpath.policy.assembly.build_table``, as for any reload) against the table the
kernel holds. Pure: the daemon reads, plans here, and reloads or sends one message.

Compared as the kernel reports a loaded table (``dmtable.as_reported``), so a table that
would read back the same is never reloaded. Left out of the comparison:

* the initial group: the kernel reports the group it uses next (failback, switch_group);
* the hardware handler when the configuration names none: the kernel keeps and reports
  the handler already attached to the paths;
* queueing while no path works: the no_path_retry clock decides then (the reconciler),
  and a reload keeps what the kernel has. While a path works, queueing follows
  ``no_path_retry`` (``queue`` or a number: on; ``fail``: off), by a message when it is
  the only change (no reload for it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dmpath.kernel.dmtable import MultipathTable, as_reported


@dataclass(frozen=True)
class Reshape:
    #: what differs from the kernel's table (empty: no reload)
    changes: tuple[str, ...] = ()
    #: the table to load (None: no reload)
    table: MultipathTable | None = None
    #: queueing to set by message (None: no message)
    queueing: bool | None = None

    @property
    def needed(self) -> bool:
        return self.table is not None or self.queueing is not None


def _layout(t: MultipathTable) -> list[list[str]]:
    return [[p.dev for p in g.paths] for g in t.groups]


def _selectors(t: MultipathTable) -> set[tuple[str, tuple[str, ...]]]:
    return {(g.selector, g.selector_args) for g in t.groups}


def _path_args(t: MultipathTable) -> list[tuple[str, ...]]:
    return [p.args for g in t.groups for p in g.paths]


def plan_reshape(wanted: MultipathTable, kernel: MultipathTable, *, usable: bool) -> Reshape:
    """How to bring the kernel's table to ``wanted`` (built from the configuration in
    force); ``usable``: the map has a path that works."""
    queueing = wanted.features.queue_if_no_path if usable else kernel.features.queue_if_no_path
    wanted = dataclasses.replace(
        wanted, features=dataclasses.replace(wanted.features, queue_if_no_path=queueing)
    )
    want = as_reported(wanted)
    changes: list[str] = []
    same_layout = _layout(want) == _layout(kernel)
    if not same_layout:
        changes.append("path groups")
    if _selectors(want) != _selectors(kernel) or (
        same_layout and _path_args(want) != _path_args(kernel)
    ):
        changes.append("path selector")
    no_queue = dataclasses.replace(want.features, queue_if_no_path=False)
    if no_queue != dataclasses.replace(kernel.features, queue_if_no_path=False):
        changes.append("features")
    hw = want.hw_handler
    if hw is not None and (kernel.hw_handler is None or kernel.hw_handler.name != hw.name):
        changes.append("hardware handler")
    if changes:
        return Reshape(tuple(changes), wanted)
    if queueing != kernel.features.queue_if_no_path:
        return Reshape(("queueing",), None, queueing)
    return Reshape()
