"""``mpathctl``: command line, daemon requests, error reporting and exit statuses.

Why it is built this way:

* Every error a user can cause or meet ends as one line on stderr, ``mpathctl: error:
  ...``, and an exit status a script can branch on; a traceback appears
  only with ``--debug``. The statuses are listed in ``EXIT_CODES`` and the man page.
* Global options work before and after the command (``mpathctl status --json`` and
  ``mpathctl --json status``), because admins type them both ways.
* Read-only views still work when the daemon is down (that is often *why* someone runs
  ``mpathctl status``): they fall back to :mod:`dmpath.cli.kernelview` and say so.
* Actions never decide policy here: the daemon refuses what would hurt (failing the last
  path, flushing an open map) and this module only adds the hint about ``--force``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from dmpath import __version__, client
from dmpath.errors import DmpathError, PolicyRefusal
from dmpath.model import Event, Path, Snapshot, snapshot_to_dict
from dmpath.protocol import (
    DEFAULT_SOCKET_PATH,
    Busy,
    PermissionDenied,
    ProtocolError,
    kind_for_exception,
)
from dmpath.safetext import sanitize

from . import KERNEL_NOTICE, mptjson
from .schema import SCHEMAS

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from . import render

PROG = "mpathctl"

#: environment variable naming the control socket (``--socket`` wins)
SOCKET_ENV = "DMPATH_SOCKET"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 7
EXIT_NOT_RUNNING = 9
EXIT_PERMISSION = 10
EXIT_NOT_FOUND = 11
EXIT_BUSY = 12
EXIT_INTERRUPTED = 130

#: every exit status mpathctl uses, as documented in man/mpathctl.8
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILURE: "failure (including an internal error of mpathctl or the daemon)",
    EXIT_USAGE: "usage error: bad command, option or argument (also a request the daemon "
    "calls malformed)",
    3: "unparseable kernel or tool output",
    4: "the kernel operation or a tool it runs failed",
    5: "a device is unusable",
    6: "the kernel lacks a feature (e.g. the md multipath personality)",
    EXIT_REFUSED: "refused: the daemon will not do it because it would hurt; see --force "
    "(migrate-md: the array cannot be moved as it is; nothing was changed)",
    EXIT_NOT_RUNNING: "dmpathd is not running (and the kernel could not be read instead)",
    EXIT_PERMISSION: "permission denied: actions need root",
    EXIT_NOT_FOUND: "no such map or path",
    EXIT_BUSY: "busy: in use, or the daemon is saturated or slow; retry later",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C), except in watch",
}


class UsageError(DmpathError):
    """A bad command line: nothing was sent to the daemon."""

    exit_code = EXIT_USAGE


class MapNotFound(DmpathError):
    """A map asked for by name is not in the snapshot."""

    exit_code = EXIT_NOT_FOUND


class NoView(DmpathError):
    """Neither the daemon nor the kernel could be read: the daemon error's status (9)."""

    exit_code = EXIT_NOT_RUNNING


# --------------------------------------------------------------------------- argument values

_DEVNUM = re.compile(r"([0-9]{1,10}):([0-9]{1,10})")
#: kernel block device names: sdb, sdaa, nvme0n1, nvme0c1n1, vdb, xvda, cciss!c0d0, dm-3
_KNAME = re.compile(r"[a-z][a-z0-9!_+-]*")
_KNAME_MAX = 31  # DISK_NAME_LEN (32) minus the NUL
_MAJOR_MAX = (1 << 12) - 1
_MINOR_MAX = (1 << 20) - 1

_PATH_HELP = "give a kernel name (sdb), a device node (/dev/sdb) or MAJ:MIN (8:16)"


def _shown(value: str) -> str:
    """An argument quoted for an error line, control characters escaped."""
    return "'" + sanitize(value) + "'"


def normalize_path(arg: str) -> str:
    """The daemon's spelling of a PATH argument: ``sdb``, ``/dev/sdb`` -> ``sdb``;
    ``8:16`` stays ``8:16``. Junk is a usage error here, before anything is sent.

    Pure on purpose: symlinks such as ``/dev/disk/by-id/...`` are resolved by the caller
    (:func:`resolve_path_arg`), so this can be tested exhaustively.
    """
    m = _DEVNUM.fullmatch(arg)
    if m:
        major, minor = int(m.group(1)), int(m.group(2))
        if major > _MAJOR_MAX or minor > _MINOR_MAX:
            raise UsageError(f"invalid PATH {_shown(arg)}: no such device number")
        return f"{major}:{minor}"
    name = arg.removeprefix("/dev/")
    if not name or len(name) > _KNAME_MAX or not _KNAME.fullmatch(name):
        raise UsageError(f"invalid PATH {_shown(arg)}: {_PATH_HELP}")
    return name


def resolve_path_arg(arg: str) -> str:
    """Like :func:`normalize_path`, but ``/dev/disk/by-*/...`` links are followed first:
    admins copy those names from their SAN documentation."""
    if arg.startswith("/dev/") and "/" in arg[len("/dev/") :]:
        target = os.path.realpath(arg)
        if target.startswith("/dev/") and "/" not in target[len("/dev/") :]:
            return normalize_path(target)
        raise UsageError(f"invalid PATH {_shown(arg)}: not a link to a /dev node; {_PATH_HELP}")
    return normalize_path(arg)


def looks_like_path(target: str) -> bool:
    """Whether ``create``'s TARGET names a device rather than a WWID.

    WWIDs start with a digit (``3600a0b8...``, ``1Linux_scsi_debug_2000``) or carry a
    type prefix with a dot (``naa.``, ``eui.``, ``t10.``, ``nvme.``); device names are
    lowercase letters first and have no dot.
    """
    if _DEVNUM.fullmatch(target) or target.startswith("/dev/"):
        return True
    return bool(_KNAME.fullmatch(target))


def check_text(what: str, value: str) -> str:
    """A name sent to the daemon: non-empty, no control characters (one log line each)."""
    if not value:
        raise UsageError(f"{what} must not be empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UsageError(f"invalid {what} {_shown(value)}: contains control characters")
    return value


def create_args(target: str, name: str | None) -> dict[str, Any]:
    """``create_map`` arguments for a TARGET that is a path or a WWID."""
    args: dict[str, Any] = {}
    if looks_like_path(target):
        args["path"] = resolve_path_arg(target)
    else:
        args["wwid"] = check_text("WWID", target)
    if name is not None:
        args["name"] = check_text("map name", name)
    return args


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """``--since``: an age (``90s``, ``15m``, ``2h``, ``1d``) or a local ISO time
    (``2024-05-01T03:00``), as epoch seconds."""
    m = _DURATION.fullmatch(text.strip())
    if m:
        return max(now - float(m.group(1)) * _UNIT_SECONDS[m.group(2)], 0.0)
    try:
        return max(datetime.fromisoformat(text.strip()).timestamp(), 0.0)
    except ValueError:
        raise UsageError(
            f"invalid --since {_shown(text)}: give an age (30m, 2h, 1d) or a time "
            "(2024-05-01T03:00)"
        ) from None


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so usage errors go
    through the same one-line reporting (and exit status 2) as every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _count(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}: {text!r}")
    return value


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The global options; on subcommands they default to SUPPRESS so that, when given
    only before the command, the subcommand's parse does not reset them."""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--socket",
        metavar="PATH",
        default=d(None),
        help=f"control socket of dmpathd (default: ${SOCKET_ENV} or {DEFAULT_SOCKET_PATH})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=d(client.DEFAULT_TIMEOUT),
        help=f"how long to wait for dmpathd's answer (default: {client.DEFAULT_TIMEOUT:g} s)",
    )
    parser.add_argument(
        "--json", action="store_true", default=d(False), help="machine-readable output"
    )
    parser.add_argument(
        "--no-color", action="store_true", default=d(False), help="no colours (also NO_COLOR=1)"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=d(False),
        help="log what is done and show tracebacks on errors",
    )


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)

    parser = _Parser(
        prog=PROG,
        description="Show and act on dmpath's multipath maps (dm and md) and their paths.",
        epilog="Exit status: "
        + "; ".join(f"{k} {v.split(':')[0].split(' (')[0]}" for k, v in EXIT_CODES.items())
        + ". See mpathctl(8).",
    )
    _global_options(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"{PROG} (dmpath) {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, help_text: str, func: Callable[..., int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(func=func)
        return p

    fmt_help = "dmpath (default) or multipath-tools (JSON as 'multipathd show maps json')"
    p = cmd("status", "every map as a tree: groups, paths, their states", cmd_status)
    p.add_argument("maps", nargs="*", metavar="MAP", help="only these maps")
    p.add_argument(
        "--format", choices=("dmpath", "multipath-tools"), default="dmpath", help=fmt_help
    )

    p = cmd("show", "one view: paths, maps, map NAME, config, events, schema", cmd_show)
    show = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    def view(name: str, help_text: str, func: Callable[..., int]) -> argparse.ArgumentParser:
        v = show.add_parser(name, help=help_text, description=help_text, parents=[common])
        v.set_defaults(func=func)
        return v

    view("paths", "every path with its states and last change", cmd_show_paths)
    v = view("maps", "one line per map", cmd_show_maps)
    v.add_argument("--names", action="store_true", help="only the names, one per line")
    v.add_argument(
        "--format", choices=("dmpath", "multipath-tools"), default="dmpath", help=fmt_help
    )
    v = view("map", "one map in detail", cmd_show_map)
    v.add_argument("name", metavar="NAME")
    view("config", "the daemon's effective configuration", cmd_show_config)
    v = view("events", "history of failures, reinstatements and actions", cmd_show_events)
    v.add_argument("--since", metavar="WHEN", help="age (30m, 2h, 1d) or time (ISO 8601)")
    v.add_argument("--limit", metavar="N", type=lambda s: _count(s, 0), help="at most N events")
    v = view("schema", "the JSON Schema of a --json output", cmd_show_schema)
    v.add_argument(
        "name",
        nargs="?",
        default="status",
        choices=sorted(SCHEMAS),
        metavar="NAME",
        help=f"one of {', '.join(sorted(SCHEMAS))} (default: status)",
    )

    p = cmd("watch", "status, updated live until Ctrl-C", cmd_watch)
    p.add_argument("maps", nargs="*", metavar="MAP", help="only these maps")
    p.add_argument(
        "--interval",
        "-n",
        metavar="S",
        type=_positive_float,
        default=2.0,
        help="seconds between updates (default: 2)",
    )
    p.add_argument("--count", metavar="N", type=lambda s: _count(s, 1), help="stop after N updates")

    p = cmd("fail", "fail a path (the daemon refuses the last working one)", cmd_fail)
    p.add_argument("path", metavar="PATH")
    p.add_argument("--force", action="store_true", help="even if it is the last working path")
    cmd("reinstate", "put a failed path back in use", cmd_reinstate).add_argument(
        "path", metavar="PATH"
    )
    cmd("add", "add a path to the map of its LUN", cmd_add).add_argument("path", metavar="PATH")
    cmd("remove", "remove a path (it must be failed and idle)", cmd_remove).add_argument(
        "path", metavar="PATH"
    )
    p = cmd("create", "create a map for a path's LUN or a WWID", cmd_create)
    p.add_argument("target", metavar="PATH|WWID")
    p.add_argument("--name", metavar="NAME", help="map name (default: from the bindings)")
    p = cmd("flush", "remove a map (the daemon refuses an open one)", cmd_flush)
    p.add_argument("map", metavar="MAP")
    p.add_argument("--force", action="store_true", help="even if it is open or queues I/O")
    p = cmd("switchgroup", "make group N of a map the active one", cmd_switchgroup)
    p.add_argument("map", metavar="MAP")
    p.add_argument("group", metavar="N", type=lambda s: _count(s, 1))
    p = cmd(
        "queueing",
        "queue I/O when no path is left (on), fail it (off), or as configured (config)",
        cmd_queueing,
    )
    p.add_argument("map", metavar="MAP")
    p.add_argument("state", choices=("on", "off", "config"))
    cmd("reconfigure", "re-read the configuration", cmd_reconfigure)
    p = cmd(
        "migrate-md",
        "move an md multipath array's data to dm maps over the same paths (dmpathd stopped)",
        cmd_migrate_md,
    )
    p.add_argument("array", metavar="ARRAY", help="/dev/mdN or /dev/md/NAME of a running array")
    p.add_argument("--name", metavar="NAME", help="map name (default: the array's md name)")
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="configuration to record the map in (default: /etc/dmpath/dmpath.toml)",
    )
    p.add_argument("--dry-run", action="store_true", help="check and show the plan only")

    p = cmd("import", "convert another tool's configuration to a dmpath.toml", cmd_import)
    source = p.add_subparsers(dest="what", metavar="FORMAT", required=True)
    v = source.add_parser(
        "multipath.conf",
        help="multipath-tools' configuration (and its config_dir drop-ins)",
        description="Print the dmpath.toml equivalent of multipath-tools' configuration, "
        "with a comment line for each setting not carried over and why.",
        parents=[common],
    )
    v.set_defaults(func=cmd_import_mptconf)
    v.add_argument(
        "file",
        nargs="?",
        default=None,
        metavar="FILE",
        help="the file to convert ('-': standard input; default: /etc/multipath.conf)",
    )
    v.add_argument(
        "--config-dir",
        metavar="DIR",
        default=None,
        help="read the drop-ins from DIR instead of the file's config_dir ('' for none)",
    )
    return parser


# --------------------------------------------------------------------------- context


@dataclasses.dataclass
class Ctx:
    """What every command needs: where the daemon is and how to print."""

    socket: str
    json: bool
    out: TextIO
    err: TextIO
    no_color: bool = False
    timeout: float = client.DEFAULT_TIMEOUT

    # rich and the renderers are imported on first use: JSON and actions never need
    # them, and importing them is a third of mpathctl's start (seconds on a slow CPU)
    @cached_property
    def console(self) -> Console:
        return make_console(self.no_color, self.out)

    @cached_property
    def opts(self) -> render.RenderOptions:
        return render_options(self.console)

    def request(self, op: str, args: dict[str, Any] | None = None) -> Any:
        return client.request(op, args, socket_path=self.socket, timeout=self.timeout)

    def print_json(self, obj: Any, *, indent: int | None = 2) -> None:
        # ASCII-only: whatever a device string holds, the output is safe on a terminal
        self.out.write(json.dumps(obj, indent=indent, ensure_ascii=True) + "\n")
        self.out.flush()

    def show(self, renderable: RenderableType) -> None:
        self.console.print(renderable)

    def notice(self, text: str) -> None:
        """A line for the human; on stderr when stdout is JSON for a script."""
        if self.json:
            self.err.write(f"{PROG}: {text}\n")
        else:
            from rich.text import Text

            self.console.print(Text(f"{self.opts.glyphs.warn} {text}", style="bold yellow"))

    def done(self, *parts: str) -> None:
        """A done mark and ``parts`` (device strings made safe to print)."""
        from rich.text import Text

        line = Text(f"{self.opts.glyphs.ok} ", style="green")
        for part in parts:
            line.append(sanitize(part))
        self.show(line)


def make_console(no_color: bool, file: TextIO | None = None) -> Console:
    """The output console: no markup, emoji codes or highlighting of our strings; colour
    only on a terminal and unless NO_COLOR or --no-color."""
    from rich.console import Console

    return Console(
        file=file,
        no_color=True if no_color else None,
        markup=False,
        emoji=False,
        highlight=False,
    )


def render_options(console: Console) -> render.RenderOptions:
    """ASCII marks when colour is off (pipes, NO_COLOR) or the terminal is not UTF-8."""
    from . import render

    plain = console.no_color or console.color_system is None
    return render.RenderOptions(ascii=plain or not console.encoding.lower().startswith("utf"))


# --------------------------------------------------------------------------- snapshots


parse_snapshot = client.parse_snapshot


def fetch_snapshot(ctx: Ctx) -> Snapshot:
    """The daemon's snapshot, or the kernel's view when no daemon runs (any other error,
    a daemon that is busy or refuses us, is reported: its view would be the right one)."""
    try:
        return parse_snapshot(ctx.request("show"))
    except client.DaemonNotRunning as exc:
        from dmpath.cli import kernelview

        try:
            return kernelview.read_snapshot(uuid_prefix=_uuid_prefix(ctx))
        except DmpathError as kexc:
            raise NoView(f"{exc}; reading the kernel directly failed too: {kexc}") from kexc


def _uuid_prefix(ctx: Ctx) -> str:
    """The configured ``dm_uuid_prefix`` that marks dmpathd's maps in the kernel; a
    configuration that does not load leaves the default, and says so."""
    from dmpath.config import DEFAULT_CONFIG_PATH, installed_uuid_prefix

    prefix, exc = installed_uuid_prefix(DEFAULT_CONFIG_PATH)
    if exc is not None:
        ctx.notice(f"{exc}; maps are read with the uuid prefix {prefix}")
    return prefix


def _filter(snap: Snapshot, names: Sequence[str]) -> Snapshot:
    if not names:
        return snap
    known = {m.name for m in snap.maps}
    missing = [n for n in names if n not in known]
    if missing:
        raise MapNotFound(f"no map named {', '.join(_shown(n) for n in missing)}")
    return dataclasses.replace(snap, maps=[m for m in snap.maps if m.name in names])


def _kernel_notice(ctx: Ctx, snap: Snapshot) -> None:
    if snap.source == "kernel":
        ctx.notice(KERNEL_NOTICE)


# --------------------------------------------------------------------------- views


def cmd_status(ctx: Ctx, args: argparse.Namespace) -> int:
    snap = _filter(fetch_snapshot(ctx), args.maps)
    if args.format == "multipath-tools":
        if snap.source == "kernel":
            ctx.err.write(f"{PROG}: {KERNEL_NOTICE}\n")
        ctx.out.write(mptjson.format_mpt(mptjson.snapshot_to_mpt(snap)))
        return EXIT_OK
    if ctx.json:
        _kernel_notice(ctx, snap)
        ctx.print_json(snapshot_to_dict(snap))
        return EXIT_OK
    from . import render

    ctx.show(render.render_status(snap, time.time(), ctx.opts))
    return EXIT_OK


def cmd_show(ctx: Ctx, args: argparse.Namespace) -> int:  # pragma: no cover - never chosen
    raise UsageError("show what? (see 'mpathctl show --help')")


def path_record(map_name: str, p: Path) -> dict[str, Any]:
    """A path in ``show paths --json``: the path's fields and its map's name."""
    return {**dataclasses.asdict(p), "map": map_name}


def cmd_show_paths(ctx: Ctx, args: argparse.Namespace) -> int:
    snap = fetch_snapshot(ctx)
    if ctx.json:
        _kernel_notice(ctx, snap)
        records = [path_record(m.name, p) for m in snap.maps for p in m.paths]
        records += [path_record("", p) for p in snap.unmapped_paths]
        ctx.print_json(records)
        return EXIT_OK
    _kernel_notice(ctx, snap)
    from . import render

    ctx.show(render.render_paths(snap, time.time(), ctx.opts))
    return EXIT_OK


def cmd_show_maps(ctx: Ctx, args: argparse.Namespace) -> int:
    snap = fetch_snapshot(ctx)
    if args.names:
        names = [m.name for m in snap.maps]
        if ctx.json:
            ctx.print_json(names)
        else:
            ctx.out.write("".join(sanitize(n) + "\n" for n in names))
        return EXIT_OK
    if args.format == "multipath-tools":
        return cmd_status(ctx, argparse.Namespace(maps=[], format=args.format))
    _kernel_notice(ctx, snap)
    if ctx.json:
        ctx.print_json(snapshot_to_dict(snap))
    else:
        from . import render

        ctx.show(render.render_maps(snap, ctx.opts))
    return EXIT_OK


def cmd_show_map(ctx: Ctx, args: argparse.Namespace) -> int:
    name = check_text("map name", args.name)
    snap = _filter(fetch_snapshot(ctx), [name])
    _kernel_notice(ctx, snap)
    if ctx.json:
        ctx.print_json(snapshot_to_dict(snap)["maps"][0])
    else:
        from . import render

        ctx.show(render.render_map(snap.maps[0], time.time(), ctx.opts))
    return EXIT_OK


def cmd_show_config(ctx: Ctx, args: argparse.Namespace) -> int:
    config = ctx.request("show_config")
    if ctx.json:
        ctx.print_json(config)
    else:
        from . import render

        ctx.show(render.render_config(config))
    return EXIT_OK


def parse_events(data: Any) -> list[Event]:
    """The ``events`` reply: a list of events (or ``{"events": [...]}``)."""
    if isinstance(data, dict) and "events" in data:
        data = data["events"]
    if not isinstance(data, list):
        raise ProtocolError(f"unexpected events reply from dmpathd: {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(Event)}
    try:
        return [Event(**{k: v for k, v in e.items() if k in names}) for e in data]
    except (AttributeError, TypeError) as exc:
        raise ProtocolError(f"unexpected events reply from dmpathd: {exc}") from None


def cmd_show_events(ctx: Ctx, args: argparse.Namespace) -> int:
    now = time.time()
    req: dict[str, Any] = {}
    if args.since is not None:
        req["since"] = parse_since(args.since, now)
    if args.limit is not None:
        req["limit"] = args.limit
    events = parse_events(ctx.request("events", req or None))
    if ctx.json:
        ctx.print_json([dataclasses.asdict(e) for e in events])
    else:
        from . import render

        ctx.show(render.render_events(events, now, ctx.opts))
    return EXIT_OK


def cmd_show_schema(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.print_json(SCHEMAS[args.name])
    return EXIT_OK


def _watch_frame(ctx: Ctx, args: argparse.Namespace) -> tuple[RenderableType, Snapshot | None]:
    """One update: the status, or why there is none this time (the watch goes on: a
    daemon restarting must not end the administrator's watch)."""
    from rich.console import Group
    from rich.text import Text

    from . import render

    now = time.time()
    footer = Text(
        f"every {args.interval:g}s, updated {time.strftime('%H:%M:%S', time.localtime(now))}"
        " - Ctrl-C to quit",
        style="dim",
    )
    try:
        snap = _filter(fetch_snapshot(ctx), args.maps)
    except DmpathError as exc:
        err = Text(f"{ctx.opts.glyphs.bad} ", style="bold red")
        err.append(sanitize(str(exc)))
        return Group(err, footer), None
    return Group(render.render_status(snap, now, ctx.opts), footer), snap


def cmd_watch(ctx: Ctx, args: argparse.Namespace) -> int:
    from rich.live import Live

    n = 0
    try:
        if ctx.json:
            # JSON Lines: one snapshot per update, for `mpathctl watch --json | jq`
            while True:
                ctx.print_json(
                    snapshot_to_dict(_filter(fetch_snapshot(ctx), args.maps)), indent=None
                )
                n += 1
                if args.count is not None and n >= args.count:
                    return EXIT_OK
                time.sleep(args.interval)
        with Live(console=ctx.console, auto_refresh=False, transient=False) as live:
            while True:
                frame, _snap = _watch_frame(ctx, args)
                live.update(frame, refresh=True)
                n += 1
                if args.count is not None and n >= args.count:
                    return EXIT_OK
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return EXIT_OK


# --------------------------------------------------------------------------- actions


def _act(ctx: Ctx, op: str, req: dict[str, Any], done: str) -> int:
    """Send one action and report it: ``{"ok": true, "result": ...}`` or one line."""
    result = ctx.request(op, req)
    if ctx.json:
        ctx.print_json({"ok": True, "result": result})
        return EXIT_OK
    detail = result.get("message") if isinstance(result, dict) else result
    ctx.done(done, *((": " + detail,) if isinstance(detail, str) and detail else ()))
    return EXIT_OK


def cmd_fail(ctx: Ctx, args: argparse.Namespace) -> int:
    path = resolve_path_arg(args.path)
    return _act(ctx, "fail_path", {"path": path, "force": args.force}, f"{path} failed")


def cmd_reinstate(ctx: Ctx, args: argparse.Namespace) -> int:
    path = resolve_path_arg(args.path)
    return _act(ctx, "reinstate_path", {"path": path}, f"{path} reinstated")


def cmd_add(ctx: Ctx, args: argparse.Namespace) -> int:
    path = resolve_path_arg(args.path)
    return _act(ctx, "add_path", {"path": path}, f"{path} added")


def cmd_remove(ctx: Ctx, args: argparse.Namespace) -> int:
    path = resolve_path_arg(args.path)
    return _act(ctx, "remove_path", {"path": path}, f"{path} removed")


def cmd_create(ctx: Ctx, args: argparse.Namespace) -> int:
    req = create_args(args.target, args.name)
    what = req.get("path") or req.get("wwid")
    return _act(ctx, "create_map", req, f"map created for {what}")


def cmd_flush(ctx: Ctx, args: argparse.Namespace) -> int:
    name = check_text("map name", args.map)
    return _act(ctx, "flush_map", {"map": name, "force": args.force}, f"{name} flushed")


def cmd_switchgroup(ctx: Ctx, args: argparse.Namespace) -> int:
    name = check_text("map name", args.map)
    return _act(
        ctx,
        "switch_group",
        {"map": name, "group": args.group},
        f"{name}: switching to group {args.group}",
    )


def cmd_queueing(ctx: Ctx, args: argparse.Namespace) -> int:
    name = check_text("map name", args.map)
    req: dict[str, Any] = {"map": name}
    if args.state != "config":
        req["enabled"] = args.state == "on"
    what = "as no_path_retry says" if args.state == "config" else args.state
    return _act(ctx, "queueing", req, f"{name}: queueing {what}")


def cmd_reconfigure(ctx: Ctx, args: argparse.Namespace) -> int:
    return _act(ctx, "reconfigure", {}, "configuration reloaded")


def cmd_migrate_md(ctx: Ctx, args: argparse.Namespace) -> int:
    """Runs here, not in the daemon: the daemon must be stopped while an array moves."""
    from dmpath import mdmigrate
    from dmpath.config import DEFAULT_CONFIG_PATH

    if os.geteuid() != 0 and not args.dry_run:
        raise PermissionDenied("migrate-md stops an md array and creates dm maps: run as root")
    m = mdmigrate.migrate(
        args.array,
        name=check_text("map name", args.name) if args.name else None,
        config_path=args.config or DEFAULT_CONFIG_PATH,
        dry_run=args.dry_run,
    )
    p = m.plan
    result = {
        "array": p.array,
        "array_uuid": p.array_uuid,
        "wwid": m.wwid,
        "map": p.map_name,
        "map_uuid": m.map_uuid,
        "data_map": p.data_map,
        "paths": list(p.members),
        "data_offset": p.data_offset,
        "data_sectors": p.data_sectors,
        "config": m.config_path,
        "done": m.done,
    }
    if ctx.json:
        ctx.print_json({"ok": True, "result": result})
        return EXIT_OK
    verb = "would move" if not m.done else "moved"
    ctx.done(
        f"{verb} {p.array} to /dev/mapper/{p.data_map}: sectors {p.data_offset}.."
        f"{p.data_offset + p.data_sectors - 1} of map {p.map_name} over "
        f"{', '.join(p.members)} (WWID {m.wwid}); recorded in {m.config_path}"
    )
    return EXIT_OK


# --------------------------------------------------------------------------- import


def cmd_import(ctx: Ctx, args: argparse.Namespace) -> int:  # pragma: no cover - never chosen
    raise UsageError("import what? (see 'mpathctl import --help')")


def cmd_import_mptconf(ctx: Ctx, args: argparse.Namespace) -> int:
    """Runs here, reads files only: nothing is asked of the daemon or changed."""
    from dmpath.config import mptconf, mptimport

    path = args.file or mptconf.DEFAULT_MPT_CONFIG
    # standard input has no directory of its own: its drop-ins only when asked for
    config_dir = "" if path == "-" and args.config_dir is None else args.config_dir
    result = mptimport.import_mptconf(mptconf.read_with_config_dir(path, config_dir))
    if ctx.json:
        ctx.print_json(
            {
                "ok": True,
                "result": {
                    "toml": result.text,
                    "sources": list(result.sources),
                    "carried": result.carried,
                    "not_carried": [
                        {"where": n.where, "setting": n.setting, "value": n.value, "why": n.why}
                        for n in result.notes
                    ],
                },
            }
        )
        return EXIT_OK
    ctx.out.write(result.text)
    ctx.out.flush()
    ctx.err.write(
        f"{PROG}: {sanitize(', '.join(result.sources))}: "
        + mptimport.summary(result.carried, len(result.notes))
        + (" (the # lines at the top of the output say which and why)" if result.notes else "")
        + "\n"
    )
    return EXIT_OK


# --------------------------------------------------------------------------- errors


def hint_for(exc: DmpathError, args: argparse.Namespace | None) -> str:
    """What to do next, for the errors where the next step is not in the message."""
    command = getattr(args, "command", None)
    if isinstance(exc, PolicyRefusal) and getattr(args, "force", True) is False:
        return f"use '{PROG} {command} --force' to do it anyway"
    if isinstance(exc, PermissionDenied) and command not in (None, "status", "show", "watch"):
        return "actions need root"
    if isinstance(exc, Busy) and command == "remove":
        return f"a path must be failed and idle first: {PROG} fail PATH"
    return ""


def error_kind(exc: DmpathError) -> str:
    """The protocol's name for an error (for ``--json`` failures)."""
    if isinstance(exc, UsageError):
        return "usage"
    if isinstance(exc, MapNotFound):
        return "not_found"
    if isinstance(exc, NoView | client.DaemonNotRunning):
        return "not_running"
    return str(kind_for_exception(exc))


def report(ctx_err: TextIO, exc: DmpathError, args: argparse.Namespace | None) -> None:
    line = sanitize(" ".join(str(exc).split()))
    hint = hint_for(exc, args)
    ctx_err.write(f"{PROG}: error: {line}" + (f" ({hint})" if hint else "") + "\n")


# --------------------------------------------------------------------------- main


def _quiet_logging() -> None:
    """Without --debug, library log lines (the runner's flight-recorder dump when dmsetup
    fails) must not reach stderr through logging's last-resort handler: the error is
    reported once, as one line. A NullHandler does that without hiding records from any
    handler configured above (``--debug``, or a test's log capture)."""
    logger = logging.getLogger("dmpath")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def main(argv: Sequence[str] | None = None) -> int:
    """Run mpathctl; returns the exit status (the console script exits with it)."""
    out, err = sys.stdout, sys.stderr
    args: argparse.Namespace | None = None
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        debug = args.debug
        _quiet_logging()
        if debug:
            logging.basicConfig(
                level=logging.DEBUG, stream=err, format="%(name)s: %(levelname)s: %(message)s"
            )
        ctx = Ctx(
            socket=args.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET_PATH,
            json=args.json,
            out=out,
            err=err,
            no_color=args.no_color,
            timeout=args.timeout,
        )
        func: Callable[[Ctx, argparse.Namespace], int] = args.func
        return func(ctx, args)
    except DmpathError as exc:
        if debug:
            traceback.print_exc(file=err)
        report(err, exc, args)
        if args is not None and args.json:
            failure = {
                "ok": False,
                "error": {"kind": error_kind(exc), "message": str(exc), "exit_code": exc.exit_code},
            }
            with contextlib.suppress(OSError):
                out.write(json.dumps(failure, ensure_ascii=True) + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `mpathctl show paths | head`: the reader is gone, so is our output; stay quiet
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, reported
        if debug:
            traceback.print_exc(file=err)
        err.write(
            f"{PROG}: error: internal error: {type(exc).__name__}: "
            f"{sanitize(str(exc))} (a bug; run with --debug for the traceback)\n"
        )
        return EXIT_FAILURE


def _entry() -> NoReturn:  # pragma: no cover - for python -m
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()
