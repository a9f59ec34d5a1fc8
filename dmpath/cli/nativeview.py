"""The kernel's native NVMe multipath as ``mpathctl status`` shows it: read-only.

dmpathd manages none of it (the kernel joins the controllers' paths itself when
``nvme_core.multipath`` is on); an administrator still wants it in the same view as the
dm maps: each subsystem, each namespace's one disk, and every controller's path with its
state and ANA state. Pure, like :mod:`dmpath.cli.render`, whose conventions it follows.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from rich.tree import Tree

from dmpath.cli.render import _STYLE, Health, RenderOptions, human_size, safe
from dmpath.kernel.nvme import NativePath, NativeSubsystem
from dmpath.safetext import sanitize

TITLE = "native NVMe multipath (the kernel's; dmpathd leaves it alone)"
#: ANA states in which a path carries I/O
_USABLE_ANA = frozenset({"optimized", "non-optimized"})
#: controller states in which a lost path may come back by itself
_RETURNING = frozenset({"connecting", "resetting", "new"})


def native_path_health(p: NativePath) -> Health:
    """OK when the controller is live and the path usable (or without ANA); a warning
    while it reconnects or is ANA-inaccessible; bad when it is going away."""
    if p.state == "live":
        return Health.OK if not p.ana_state or p.ana_state in _USABLE_ANA else Health.WARN
    return Health.WARN if p.state in _RETURNING else Health.BAD


def render_native(subsystems: Sequence[NativeSubsystem], opts: RenderOptions) -> Tree:
    tree = Tree(Text(TITLE, style="bold"), guide_style="dim")
    for s in subsystems:
        node = tree.add(
            safe(f"{s.name}  {s.nqn}  {s.model.strip()} {s.serial.strip()}  iopolicy {s.iopolicy}")
        )
        for ns in s.namespaces:
            live = sum(1 for p in ns.paths if native_path_health(p) == Health.OK)
            worst = max((native_path_health(p) for p in ns.paths), default=Health.BAD)
            label = Text(opts.glyphs.mark(worst), style=_STYLE[worst])
            label.append(
                f" {sanitize(ns.name)}  nsid {ns.nsid}  {human_size(ns.size_sectors)}  "
                f"{live}/{len(ns.paths)} paths usable  {sanitize(ns.wwid)}"
            )
            branch = node.add(label)
            for p in ns.paths:
                h = native_path_health(p)
                line = Text(opts.glyphs.mark(h), style=_STYLE[h])
                line.append(
                    f" {sanitize(p.node)}  {sanitize(p.controller)}  {sanitize(p.transport)}  "
                    f"{sanitize(p.address) or '-'}  {sanitize(p.state)}  "
                    f"ana {sanitize(p.ana_state) or '-'}"
                )
                branch.add(line)
    return tree
