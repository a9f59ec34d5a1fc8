"""``multipathd COMMAND``: multipath-tools' client commands answered by dmpathd.

Each command becomes a request on dmpathd's control socket; the answer is printed as
multipathd 0.9.4 prints it: the text of a ``show`` command, ``ok`` for a command that
worked, ``fail`` (exit status 1) for one that did not, the reason on stderr. An empty
answer is ``ok``, as multipathd sends it. With no dmpathd running, every command fails
with exit status 1 and one line on stderr (os-brick takes that as "multipathd is not in
use").
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

# The views, their fields and the object model are imported by the commands that print
# them: os-brick gives 'add path' and 'del path' 5 s, and an emulated or loaded host spends
# seconds importing what those commands never use.

PROG = "multipathd"

Request = Callable[[str, Mapping[str, Any] | None], Any]


def wildcards() -> str:
    from dmpath.compat.fields import GROUP_HEADERS, MAP_HEADERS, PATH_HEADERS

    """``show wildcards``."""
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


def act(cmd: DaemonCmd, request: Request) -> None:
    """Carry out a command that changes something; a refusal raises. A map may be named
    by its dm device or node (``resize map /dev/dm-0``), a path by a link to it."""
    w = cmd.what
    target = source.resolve(cmd.target) if cmd.target else ""
    t = source.map_name(target) if " map" in w or w in _MAP_COMMANDS else target
    if w == "reconfigure":
        request("reconfigure", None)
    elif w == "add path":
        request("add_path", {"path": t})
    elif w == "del path":
        request("remove_path", {"path": t})
    elif w == "fail path":
        request("fail_path", {"path": t, "force": True})
    elif w == "reinstate path":
        request("reinstate_path", {"path": t})
    elif w == "add map":
        request("create_map", {"wwid": t} if _looks_like_wwid(t) else {"path": t})
    elif w == "del map":
        request("flush_map", {"map": t})
    elif w == "del maps":
        from dmpath.compat import views

        snap = source.daemon_snapshot()
        for m in views.dm_maps(snap):
            request("flush_map", {"map": m.name})
    elif w == "resize map":
        request("resize_map", {"map": t})
    elif w == "switchgroup":
        request("switch_group", {"map": t, "group": cmd.number})
    elif w == "disablequeueing":
        request("queueing", {"map": t, "enabled": False})
    elif w == "restorequeueing":
        request("queueing", {"map": t})
    else:
        raise Unsupported(f"multipathd '{w}' is not supported by dmpath")


def answer(cmd: DaemonCmd, request: Request, snapshot: Callable[[], Snapshot]) -> tuple[str, int]:
    """What multipathd prints and its exit status; DaemonNotRunning propagates."""
    if cmd.what.startswith("show"):
        snap = snapshot()
        text = show(cmd, snap, snap.pid)
    else:
        act(cmd, request)
        text = ""
    return (text or "ok\n"), source.EXIT_OK


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    try:
        cmd = parse_multipathd(argv)
    except (Unsupported, UsageError) as exc:
        err.write(f"{PROG}: {exc}\n")
        return source.EXIT_FAIL
    from dmpath.client import DaemonNotRunning

    try:
        text, status = answer(cmd, _request, source.daemon_snapshot)
    except DaemonNotRunning as exc:
        err.write(f"{PROG}: {source.one_line(str(exc))}\n")
        return source.EXIT_FAIL
    except (DmpathError, Unsupported) as exc:
        # multipathd answers a refused command with "fail" alone; the reason goes to
        # stderr, where it cannot disturb a script reading the answer
        out.write("fail\n")
        err.write(f"{PROG}: {source.one_line(str(exc))}\n")
        return source.EXIT_FAIL
    out.write(text)
    return status


def _request(op: str, args: Mapping[str, Any] | None) -> Any:
    return source.request(op, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return source.run_guarded(PROG, lambda a: run(a, sys.stdout, sys.stderr), args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
