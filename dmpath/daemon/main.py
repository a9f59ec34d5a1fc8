"""``dmpathd``: the multipath daemon's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from typing import NoReturn

from dmpath import __version__
from dmpath.errors import DmpathError
from dmpath.safetext import sanitize

DEFAULT_CONFIG = "/etc/dmpath/dmpath.toml"


class MultipathdRunning(DmpathError):
    exit_code = 6


#: multipath-tools' udev rules that act on every map whose dm uuid starts with mpath-
#: (dmpathd's maps too: dmpathd(8), "LVM, partitions and the uuid prefix")
MULTIPATH_TOOLS_RULES = ("11-dm-mpath.rules", "56-dm-mpath.rules", "60-multipath.rules")
UDEV_RULE_DIRS = ("/etc/udev/rules.d", "/run/udev/rules.d", "/usr/lib/udev/rules.d",
                  "/lib/udev/rules.d")


def multipath_tools_rules(dirs: tuple[str, ...] = UDEV_RULE_DIRS) -> list[str]:
    """multipath-tools' udev rules where udev reads them (a /dev/null link masks one)."""
    found = []
    for d in dirs:
        for name in MULTIPATH_TOOLS_RULES:
            path = os.path.join(d, name)
            if os.path.exists(path) and os.path.realpath(path) != "/dev/null":
                found.append(path)
    return found


def pids_named(comm: str, proc: str = "/proc") -> list[int]:
    """PIDs of running processes the kernel calls ``comm`` (e.g. multipathd, which must
    not manage the paths we manage)."""
    pids = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "comm")) as fh:
                if fh.read().strip() == comm:
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def _exit_past_stuck_workers() -> None:
    """Leave now if a kernel worker is still inside an operation (an md array whose every
    path is dead can hold an mdadm run in D state): the interpreter would join that
    thread at exit and the stop would hang. The maps need nothing more from us."""
    workers = [t for t in threading.enumerate() if t.name.startswith("kernel")]
    for t in workers:
        t.join(timeout=5.0)  # an idle worker is on its way out already
    stuck = [t.name for t in workers if t.is_alive()]
    if stuck:
        logging.getLogger("dmpathd").warning(
            "leaving %s behind (a kernel operation has not returned)", ", ".join(stuck)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (as every other error of dmpathd), not
    the usage text followed by the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {sanitize(message)} (see '{self.prog} --help')\n")


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(
        prog="dmpathd", description="Multipath daemon: assemble, check and heal multipath devices."
    )
    ap.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help=f"config file ({DEFAULT_CONFIG})"
    )
    ap.add_argument("--socket", help="control socket path (overrides the config)")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    ap.add_argument("--check-config", action="store_true", help="validate the config and exit")
    ap.add_argument(
        "--once",
        action="store_true",
        help="assemble the maps that are missing, then exit (no checking); what the udev "
        "rule runs when dmpathd is not installed as a service",
    )
    ap.add_argument("--version", action="version", version=f"dmpathd {__version__}")
    args = ap.parse_args(argv)
    from dmpath.daemon.logwriter import BatchedStreamHandler

    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(levelname)s %(name)s: %(message)s"
            if os.environ.get("INVOCATION_ID")  # the journal stamps lines itself
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    )
    level = logging.DEBUG if args.verbose > 1 else logging.INFO
    logging.basicConfig(level=level, handlers=[handler])
    # sh logs every process start at INFO; the runner already logs what matters
    logging.getLogger("sh").setLevel(logging.WARNING)
    if args.verbose < 2:
        logging.getLogger("dmpath.runner").setLevel(logging.WARNING)
    from dmpath import config as cfgmod

    try:
        cfg = cfgmod.load_config(args.config)
        if args.check_config:
            print(f"{args.config}: ok")
            return 0
        pids = pids_named("multipathd")
        if pids:
            raise MultipathdRunning(
                f"multipathd is running (pid {', '.join(map(str, pids))}): it would fight "
                "dmpathd over the same paths; stop it first (systemctl stop multipathd "
                "multipathd.socket)"
            )
        if os.geteuid() != 0:
            raise DmpathError("dmpathd must run as root (it drives device-mapper and SG_IO)")
        foreign = multipath_tools_rules()
        if foreign and cfg.defaults.dm_uuid_prefix.startswith("mpath-"):
            logging.getLogger("dmpath.daemon").warning(
                "multipath-tools' udev rules are installed (%s): they act on every mpath- "
                "map, dmpathd's too; remove the multipath-tools package (kpartx may stay)",
                ", ".join(foreign),
            )
        from dmpath.daemon.engine import Daemon, assemble_once, serve
        from dmpath.daemon.limits import raise_nofile_limit
        from dmpath.daemon.notify import sd_notify

        # one open descriptor per path: a thousand paths outgrow the default 1,024
        raise_nofile_limit()

        if args.once:
            once = Daemon(cfg, args.config, socket_path=args.socket, checking=False)
            events = asyncio.run(assemble_once(once))
            errors = [e for e in events if e.kind == "error"]
            for e in errors:
                print(f"dmpathd: error: {e.map}: {e.message}", file=sys.stderr)
            return 1 if errors else 0
        daemon = Daemon(cfg, args.config, socket_path=args.socket)
        asyncio.run(serve(daemon, sd_notify))
        _exit_past_stuck_workers()
        return 0
    except DmpathError as exc:
        print(f"dmpathd: error: {sanitize(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
