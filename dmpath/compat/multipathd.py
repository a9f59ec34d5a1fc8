"""``multipathd COMMAND``: multipath-tools' client commands answered by dmpathd.

As multipathd's own client does, the command goes to the daemon as its words
(``multipathd_show`` and ``multipathd`` requests) and the daemon answers with the text to
print: the daemon holds the model and the views, so the command itself only parses its
words and talks to the socket (os-brick gives ``add path`` and ``show paths`` 5 s, and a
loaded or emulated host spends seconds importing what they would otherwise need). The
answer is printed as multipathd 0.9.4 prints it: the text of a ``show`` command, ``ok``
for a command that worked, ``fail`` (exit status 1) for one that did not, the reason on
stderr. An empty answer is ``ok``, as multipathd sends it. With no dmpathd running, every
command fails with exit status 1 and one line on stderr (os-brick takes that as
"multipathd is not in use").
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from dmpath.compat import source
from dmpath.compat.args import DaemonCmd, Unsupported, UsageError, parse_multipathd
from dmpath.errors import DmpathError

if TYPE_CHECKING:
    from dmpath.model import Map, Snapshot

# The views, their fields and the object model are imported where the daemon answers
# with them, never by the command itself.

PROG = "multipathd"

def wildcards() -> str:
    """``show wildcards``."""
    from dmpath.compat.fields import GROUP_HEADERS, MAP_HEADERS, PATH_HEADERS

    parts = []
    for title, table in (
        ("multipath", MAP_HEADERS),
        ("path", PATH_HEADERS),
        ("pathgroup", GROUP_HEADERS),
    ):
        parts.append(f"{title} format wildcards:\n" + "".join(
            f"%{k}  {v}\n" for k, v in table.items()
        ))
    return "\n".join(parts)


def _map(snap: Snapshot, name: str) -> Map:
    from dmpath.compat import views

    name = name.removeprefix("/dev/mapper/").removeprefix("/dev/")
    found = [m for m in views.dm_maps(snap) if name in (m.name, m.wwid, m.sysfs)]
    if not found:
        raise Unsupported(f"{name}: no such map")  # becomes "fail"
    return found[0]


def show(cmd: DaemonCmd, snap: Snapshot, pid: int) -> str:
    """The text of a ``show`` command (pure)."""
    from dmpath.compat import views
    from dmpath.model import Snapshot

    w = cmd.what
    if w == "show status":
        return views.status(snap)
    if w == "show daemon":
        return f"pid {pid} running\n"
    if w == "show paths":
        return views.path_table(snap, cmd.fmt or views.PATHS_FORMAT, pretty=not cmd.raw)
    if w == "show maps":
        return views.map_table(snap, cmd.fmt or views.MAPS_FORMAT, pretty=not cmd.raw)
    if w == "show maps status":
        return views.map_table(snap, views.MAPS_STATUS_FORMAT)
    if w == "show maps stats":
        return views.map_table(snap, views.MAPS_STATS_FORMAT)
    if w == "show maps json":
        return views.maps_json(snap)
    if w == "show topology":
        return views.topology(snap, daemon=True)
    if w == "show map topology":
        return views.topology(snap, [_map(snap, cmd.target)], daemon=True)
    if w == "show map json":
        return views.map_json(_map(snap, cmd.target))
    if w == "show map":
        one = Snapshot(maps=[_map(snap, cmd.target)])
        return views.map_table(one, cmd.fmt, pretty=False)
    if w == "show wildcards":
        return wildcards()
    raise Unsupported(f"multipathd '{w}' is not supported by dmpath")


def _looks_like_wwid(target: str) -> bool:
    from dmpath.cli.main import looks_like_path

    return not looks_like_path(target)


#: commands whose target is a map without saying "map" in their name
_MAP_COMMANDS = frozenset({"switchgroup", "disablequeueing", "restorequeueing"})


Step = tuple[str, dict[str, Any] | None]


def plan(cmd: DaemonCmd, snapshot: Callable[[], Snapshot]) -> list[Step]:
    """The control-socket requests a command that changes something is made of, in
    order. A map may be named by its dm device or node (``resize map /dev/dm-0``), a path
    by a link to it."""
    w = cmd.what
    target = source.resolve(cmd.target) if cmd.target else ""
    t = source.map_name(target) if " map" in w or w in _MAP_COMMANDS else target
    if w == "reconfigure":
        return [("reconfigure", None)]
    if w == "add path":
        return [("add_path", {"path": t})]
    if w == "del path":
        return [("remove_path", {"path": t})]
    if w == "fail path":
        return [("fail_path", {"path": t, "force": True})]
    if w == "reinstate path":
        return [("reinstate_path", {"path": t})]
    if w == "add map":
        return [("create_map", {"wwid": t} if _looks_like_wwid(t) else {"path": t})]
    if w == "del map":
        return [("flush_map", {"map": t})]
    if w == "del maps":
        from dmpath.compat import views

        return [("flush_map", {"map": m.name}) for m in views.dm_maps(snapshot())]
    if w == "resize map":
        return [("resize_map", {"map": t})]
    if w == "switchgroup":
        return [("switch_group", {"map": t, "group": cmd.number})]
    if w == "disablequeueing":
        return [("queueing", {"map": t, "enabled": False})]
    if w == "restorequeueing":
        return [("queueing", {"map": t})]
    raise Unsupported(f"multipathd '{w}' is not supported by dmpath")


def parse_words(words: Sequence[str]) -> DaemonCmd:
    """The daemon's parse of the words a client sent: what it does not serve is a bad
    request, whose one line the client prints."""
    from dmpath.protocol import BadRequest

    try:
        return parse_multipathd(words)
    except (Unsupported, UsageError) as exc:
        raise BadRequest(str(exc)) from None


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    try:
        cmd = parse_multipathd(argv)  # here too: a bad command line needs no daemon
    except (Unsupported, UsageError) as exc:
        err.write(f"{PROG}: {exc}\n")
        return source.EXIT_FAIL
    from dmpath.client import DaemonNotRunning

    op = "multipathd_show" if cmd.what.startswith("show") else "multipathd"
    try:
        reply = _request(op, {"words": list(argv)})
        text = reply.get("text") if isinstance(reply, dict) else None
        if not isinstance(text, str):
            raise DmpathError(f"unexpected answer from dmpathd to {op}: {reply!r}"[:200])
        status = source.EXIT_OK
    except DaemonNotRunning as exc:
        err.write(f"{PROG}: {source.one_line(str(exc))}\n")
        return source.EXIT_FAIL
    except (DmpathError, Unsupported) as exc:
        # multipathd answers a refused command with "fail" alone; the reason goes to
        # stderr, where it cannot disturb a script reading the answer
        out.write("fail\n")
        err.write(f"{PROG}: {source.one_line(str(exc))}\n")
        return source.EXIT_FAIL
    out.write(text or "ok\n")
    return status


def _request(op: str, args: Mapping[str, Any] | None) -> Any:
    return source.request(op, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return source.run_guarded(PROG, lambda a: run(a, sys.stdout, sys.stderr), args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
