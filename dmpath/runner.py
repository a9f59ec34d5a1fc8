"""The one command runner: every external program dmpath runs goes through ``run``.

Why one function: the kernel tools (dmsetup, mdadm, udevadm, modprobe) are where things go
wrong at 3 a.m., so every call is logged the same way (argv, exit status, output, duration),
runs with ``LC_ALL=C`` so parsers see stable text, and is kept in a small flight recorder
that is dumped when something fails. Tests point a tool at a fault-injecting stand-in by
setting ``DMPATH_BIN_<TOOL>`` (e.g. ``DMPATH_BIN_DMSETUP=/tmp/fake-dmsetup``).
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dmpath.errors import CommandError, CommandTimeout

log = logging.getLogger("dmpath.runner")

#: how many finished commands the flight recorder keeps
RECORDER_SIZE = 100

_SEARCH_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


_recorder: collections.deque[CommandResult] = collections.deque(maxlen=RECORDER_SIZE)
_recorder_lock = threading.Lock()


def recent_commands() -> list[CommandResult]:
    """The flight recorder: the last commands run, oldest first."""
    with _recorder_lock:
        return list(_recorder)


def dump_recent(logger: logging.Logger = log, count: int = 10) -> None:
    """Log the last ``count`` commands; called when an operation fails."""
    for res in recent_commands()[-count:]:
        logger.error(
            "recent: %s -> %s in %.3fs stdout=%r stderr=%r",
            " ".join(res.argv),
            res.returncode,
            res.duration,
            res.stdout[-400:],
            res.stderr[-400:],
        )


def tool_path(tool: str) -> str:
    """Where ``tool`` lives: ``DMPATH_BIN_<TOOL>`` if set, else the usual system dirs."""
    override = os.environ.get("DMPATH_BIN_" + tool.upper().replace("-", "_"))
    if override:
        return override
    for d in _SEARCH_DIRS:
        cand = os.path.join(d, tool)
        if os.access(cand, os.X_OK):
            return cand
    found = shutil.which(tool)
    return found or tool


def _record(res: CommandResult) -> None:
    with _recorder_lock:
        _recorder.append(res)
    log.debug(
        "ran %s -> %d in %.3fs%s%s",
        " ".join(res.argv),
        res.returncode,
        res.duration,
        f" stdout={res.stdout[-200:]!r}" if res.stdout else "",
        f" stderr={res.stderr[-200:]!r}" if res.stderr else "",
    )


def run(
    tool: str,
    args: Iterable[str] = (),
    *,
    check: bool = True,
    timeout: float | None = 60.0,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``tool args...`` and return its result.

    ``check``: raise CommandError on a non-zero exit status (after recording it).
    ``timeout``: seconds before the command is killed and CommandTimeout raised.
    """
    path = tool_path(tool)
    argv = (path, *args)
    shown = (tool, *args)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    full_env["LC_ALL"] = "C"
    # imported here, not at the top: sh brings some 40 modules (email, zipfile, pty...),
    # and the daemon, which runs a process only to remove a map, starts without them
    import sh

    started = time.monotonic()
    try:
        cmd = sh.Command(path)
        proc = cmd(
            *argv[1:],
            _env=full_env,
            _in=stdin,
            _timeout=timeout,
            _ok_code=list(range(256)),
            _return_cmd=True,
            _tty_out=False,
        )
        res = CommandResult(
            argv=shown,
            returncode=int(proc.exit_code),
            stdout=proc.stdout.decode(errors="replace"),
            stderr=proc.stderr.decode(errors="replace"),
            duration=time.monotonic() - started,
        )
    except sh.TimeoutException as exc:
        res = CommandResult(shown, -9, "", "timed out", time.monotonic() - started)
        _record(res)
        raise CommandTimeout(shown, timeout or 0.0) from exc
    except sh.CommandNotFound as exc:
        res = CommandResult(shown, 127, "", "not found", time.monotonic() - started)
        _record(res)
        raise CommandError(shown, 127, "", reason=f"{tool} is not installed") from exc
    except sh.SignalException as exc:
        res = CommandResult(shown, -1, "", str(exc), time.monotonic() - started)
        _record(res)
        raise CommandError(shown, None, "", reason="killed by a signal") from exc
    _record(res)
    if check and res.returncode != 0:
        dump_recent(count=3)
        raise CommandError(shown, res.returncode, res.stderr or res.stdout)
    return res
