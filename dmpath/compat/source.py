"""Where the compat commands get their facts: dmpathd's control socket, or the kernel when
no daemon runs. Thin I/O; what they print is built by ``views``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from dmpath import client
from dmpath.errors import DmpathError
from dmpath.protocol import DEFAULT_SOCKET_PATH

if TYPE_CHECKING:
    from dmpath.model import Snapshot

#: the control socket, as for mpathctl (``DMPATH_SOCKET`` names another one)
SOCKET_ENV = "DMPATH_SOCKET"

#: multipath-tools' exit statuses
EXIT_OK = 0
EXIT_FAIL = 1


def socket_path() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET_PATH


def request(op: str, args: Mapping[str, Any] | None = None) -> Any:
    return client.request(op, args, socket_path=socket_path())


def daemon_snapshot() -> Snapshot:
    """dmpathd's view; DaemonNotRunning when nobody listens."""
    return client.parse_snapshot(request("show"))


def any_snapshot() -> tuple[Snapshot, bool]:
    """dmpathd's view, or the kernel's when it does not run (and whether it runs)."""
    try:
        return daemon_snapshot(), True
    except client.DaemonNotRunning:
        from dmpath.cli import kernelview

        return kernelview.read_snapshot(uuid_prefix=uuid_prefix()), False


def uuid_prefix() -> str:
    """The configured ``dm_uuid_prefix`` marking dmpathd's maps; the default when the
    configuration does not load (multipath-tools prints nothing about it either)."""
    from dmpath.config import DEFAULT_CONFIG_PATH, installed_uuid_prefix

    return installed_uuid_prefix(DEFAULT_CONFIG_PATH)[0]


def resolve(device: str, sys_root: str = "/sys") -> str:
    """A device argument in the names the model uses: ``/dev/mapper/NAME`` and other
    links become the kernel name they point at (``dm-3``, ``sdb``), ``MAJ:MIN`` too;
    anything else (a map name, a WWID) is returned as it is."""
    if device.startswith("/dev/"):
        real = os.path.realpath(device)
        if real.startswith("/dev/mapper/"):  # no such map: its name, as given
            return real.removeprefix("/dev/mapper/")
        if real.startswith("/dev/"):
            return real.removeprefix("/dev/")
        return device
    if ":" in device and all(part.isdigit() for part in device.split(":", 1)):
        link = os.path.join(sys_root, "dev", "block", device)
        if os.path.exists(link):
            return os.path.basename(os.path.realpath(link))
    return device


def map_name(target: str, sys_root: str = "/sys") -> str:
    """A dm kernel name (``dm-3``) as its map name; a map name as it is."""
    if target.startswith("dm-"):
        try:
            with open(os.path.join(sys_root, "block", target, "dm", "name")) as fh:
                return fh.read().strip()
        except OSError:
            return target
    return target


def quiet_logging() -> None:
    """Library log lines must not reach the output a script reads (the error is reported
    once, as one line)."""
    logger = logging.getLogger("dmpath")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def one_line(text: str) -> str:
    return " ".join(text.split())


def run_guarded(prog: str, body: Any, argv: list[str], err: TextIO | None = None) -> int:
    """Run ``body(argv)``; any error is one line on stderr and exit status 1, never a
    traceback (multipath-tools fails with 1 whatever went wrong)."""
    err = err or sys.stderr
    quiet_logging()
    try:
        status: int = body(argv)
        return status
    except DmpathError as exc:
        err.write(f"{prog}: {one_line(str(exc))}\n")
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAIL
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, reported
        err.write(f"{prog}: internal error: {type(exc).__name__}: {one_line(str(exc))}\n")
        return EXIT_FAIL
