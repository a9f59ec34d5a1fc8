"""The command lines of ``multipath`` and ``multipathd`` (multipath-tools 0.9.4), parsed
into what dmpath is asked to do. Pure: no I/O.

``multipath`` takes getopt options (GNU order: options may follow the device) from the
string ``:adDcChl::eFfM:v:p:b:BrR:itTquUwW``; ``multipathd`` takes one command, either as
words (``multipathd show paths raw format "%d %w"``) or as one string (``multipathd -k"show
status"``). A request dmpath does not serve raises ``Unsupported`` with one line saying so.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

#: ``multipath`` options that take an argument; ``l`` takes an optional one (``-ll``)
_WITH_ARG = frozenset("vpbRM")
_FLAGS = frozenset("adDcChlFfeBritTquUwW")
#: options accepted and without effect on what dmpath does (they tune multipath-tools'
#: own map building, which dmpathd does by its configuration)
_IGNORED = frozenset("BDeiqbMRp")
#: options dmpath does not serve, and what they would do
_NOT_SERVED = {
    "c": "-c (is this device a multipath path?)",
    "u": "-u (udev's is-a-path check)",
    "U": "-U (udev's usable-paths check)",
    "d": "-d (dry run)",
    "t": "-t (show the configuration)",
    "T": "-T (show the configuration)",
    "W": "-W (reset the wwids file)",
}


class Unsupported(Exception):
    """A command or option dmpath does not serve; the message is the one line to print."""


class UsageError(Exception):
    """Not a valid command line (multipath-tools prints its usage and exits 1)."""


@dataclass(frozen=True)
class MultipathCmd:
    """What ``multipath`` is asked: ``action`` is one of ``create`` (no option), ``reload``
    (``-r``), ``list`` (``-l``, ``long`` for ``-ll``), ``add_wwid`` (``-a``),
    ``remove_wwid`` (``-w``), ``usable`` (``-C``), ``flush`` (``-f``), ``flush_all``
    (``-F``), ``usage`` (``-h``)."""

    action: str
    device: str = ""
    long: bool = False
    verbosity: int = 2


def parse_multipath(argv: Sequence[str]) -> MultipathCmd:
    opts: list[tuple[str, str]] = []
    operands: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            operands.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        j = 1
        while j < len(arg):
            c = arg[j]
            j += 1
            if c in _WITH_ARG:
                value = arg[j:]
                if not value:
                    if i >= len(argv):
                        raise UsageError("Missing option argument")
                    value = argv[i]
                    i += 1
                opts.append((c, value))
                break
            if c == "l":
                opts.append((c, arg[j:]))  # -ll: the optional argument "l"
                break
            if c not in _FLAGS:
                raise UsageError(f"Unknown switch: -{c}")
            opts.append((c, ""))
    return _multipath_cmd(opts, operands)


def _multipath_cmd(opts: list[tuple[str, str]], operands: list[str]) -> MultipathCmd:
    action, long, verbosity = "create", False, 2
    for c, value in opts:
        if c == "v":
            if not value[:1].isdigit():
                raise UsageError(f"invalid verbosity {value!r}")
            verbosity = int("".join(ch for ch in value if ch.isdigit()) or "0")
        elif c == "h":
            return MultipathCmd("usage")
        elif c in _NOT_SERVED:
            raise Unsupported(f"multipath {_NOT_SERVED[c]} is not supported by dmpath")
        elif c == "l":
            action, long = "list", value.startswith("l")
        elif c == "a":
            action = "add_wwid"
        elif c == "w":
            action = "remove_wwid"
        elif c == "C":
            action = "usable"
        elif c == "f":
            action = "flush"
        elif c == "F":
            action = "flush_all"
        elif c == "r" and action == "create":
            action = "reload"
        # everything else is in _IGNORED
    device = operands[0] if operands else ""
    if action in ("add_wwid", "remove_wwid", "usable", "flush") and not device:
        what = {"add_wwid": "-a", "remove_wwid": "-w", "usable": "-C", "flush": "-f"}[action]
        raise UsageError(f"the {what} option requires a device")
    return MultipathCmd(action, device, long, verbosity)


# --------------------------------------------------------------------------- multipathd


@dataclass(frozen=True)
class DaemonCmd:
    """One ``multipathd`` command: ``what`` names it (``show paths``, ``add path``, ...),
    ``target`` is its path or map, ``fmt`` a caller's format, ``raw`` its raw form."""

    what: str
    target: str = ""
    fmt: str = ""
    raw: bool = False
    number: int = 0


_VERB_SYNONYMS = {"list": "show", "remove": "del"}
_OBJECT_SYNONYMS = {"multipaths": "maps", "multipath": "map"}


def daemon_words(argv: Sequence[str]) -> list[str]:
    """The command's words: ``-k"show status"`` or one quoted string are split like a
    shell would; separate words are taken as they are (a format keeps its spaces)."""
    args = list(argv)
    while args and args[0].startswith("-v"):  # -v N: verbosity of the client, no effect
        args = args[2:] if args[0] == "-v" else args[1:]
    if args and args[0].startswith("-k"):
        rest = args[0][2:]
        args = ([rest] if rest else []) + args[1:]
    if len(args) == 1:
        try:
            return shlex.split(args[0])
        except ValueError as exc:
            raise UsageError(f"cannot read the command: {exc}") from None
    return args


def parse_multipathd(argv: Sequence[str]) -> DaemonCmd:
    if not argv:
        raise Unsupported(
            "multipathd without a command starts multipath-tools' daemon: not supported by"
            " dmpath (dmpathd is its daemon: systemctl start dmpathd)"
        )
    if argv[0].startswith("-") and not argv[0].startswith(("-k", "-v")):
        raise Unsupported(f"multipathd {argv[0]} (daemon option) is not supported by dmpath")
    words = daemon_words(argv)
    if not words:
        raise Unsupported("multipathd's interactive mode (-k) is not supported by dmpath")
    low = [w.lower() for w in words]
    low[0] = _VERB_SYNONYMS.get(low[0], low[0])
    if len(low) > 1:
        low[1] = _OBJECT_SYNONYMS.get(low[1], low[1])
    cmd = _daemon_cmd(low, words)
    if cmd is None:
        raise Unsupported(f"multipathd '{' '.join(words)}' is not supported by dmpath")
    return cmd


def _format_tail(low: list[str], words: list[str], at: int) -> tuple[bool, str] | None:
    """``[raw] format FMT`` from word ``at`` on, as (raw, FMT); None if the words are not
    that."""
    raw = at < len(low) and low[at] == "raw"
    at += raw
    if len(low) == at + 2 and low[at] == "format":
        return raw, words[at + 1]
    return None


def _daemon_cmd(low: list[str], words: list[str]) -> DaemonCmd | None:
    n = len(low)
    verb = low[0]
    obj = low[1] if n > 1 else ""
    if n == 1 and verb in ("reconfigure", "show"):
        return DaemonCmd("reconfigure") if verb == "reconfigure" else None
    if verb == "reconfigure" and low[1:] == ["all"]:
        return DaemonCmd("reconfigure")
    if verb == "show":
        return _show_cmd(low, words)
    if n == 3 and obj == "path" and verb in ("add", "del", "fail", "reinstate"):
        return DaemonCmd(f"{verb} path", words[2])
    if n == 3 and obj == "map" and verb in ("add", "del", "resize", "reload"):
        return DaemonCmd(f"{verb} map", words[2])
    if low == ["del", "maps"]:
        return DaemonCmd("del maps")
    if n == 5 and verb == "switchgroup" and obj == "map" and low[3] == "group":
        if not low[4].isdigit() or int(low[4]) < 1:
            return None
        return DaemonCmd("switchgroup", words[2], number=int(low[4]))
    if n == 3 and obj == "map" and verb in ("disablequeueing", "restorequeueing"):
        return DaemonCmd(verb, words[2])
    return None


def _show_cmd(low: list[str], words: list[str]) -> DaemonCmd | None:
    n = len(low)
    rest = low[1:]
    simple = {
        ("status",): "show status",
        ("daemon",): "show daemon",
        ("paths",): "show paths",
        ("maps",): "show maps",
        ("topology",): "show topology",
        ("maps", "topology"): "show topology",
        ("maps", "status"): "show maps status",
        ("maps", "stats"): "show maps stats",
        ("maps", "json"): "show maps json",
        ("wildcards",): "show wildcards",
    }
    if tuple(rest) in simple:
        return DaemonCmd(simple[tuple(rest)])
    if n >= 2 and low[1] in ("paths", "maps"):
        tail = _format_tail(low, words, 2)
        if tail is not None:
            return DaemonCmd(f"show {low[1]}", fmt=tail[1], raw=tail[0])
    if n == 4 and low[1] == "map" and low[3] in ("topology", "json"):
        return DaemonCmd(f"show map {low[3]}", words[2])
    if n >= 3 and low[1] == "map":
        tail = _format_tail(low, words, 3)
        if tail is not None:
            return DaemonCmd("show map", words[2], fmt=tail[1], raw=tail[0])
    if n == 4 and low[1] == "topology" and low[2] == "map":
        return DaemonCmd("show map topology", words[3])
    return None
