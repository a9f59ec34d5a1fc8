"""Guest entry point: prepare the kernel side of the lab, then run the requested command.

Runs as root inside the VM. Writes the command's exit status to ``OUTDIR/exit-status``
(the host trusts that file rather than the VM's exit status, see ``vm.py``).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys

from dmpath.errors import DmpathError
from dmpath.lab import guestpython
from dmpath.lab import topology as topo
from dmpath.runner import run

#: kernel modules the lab needs loaded up front
MODULES = (
    "dm-multipath",
    "dm-service-time",
    "dm-queue-length",
    "dm-round-robin",
    "sg",
    # not scsi_dh_alua: attached, it fails all I/O to scsi_debug's standby port (host_no % 3
    # == 2), which moves with every reload; tests that want the handler load it themselves
    "multipath",  # md's multipath personality (gone after 6.7; failure is reported by tests)
)

#: udev rules of other tools that act on the lab's paths and maps; moved aside inside the
#: guest only (its /lib is a writable overlay):
#: - multipath-tools' (when installed on the host) made the kernel fail every path of an
#:   mpath- map (seen in the lab: its 56-dm-mpath.rules runs `multipath -U`
#:   against our maps);
#: - mdadm's incremental assembly (64-md-raid-assembly) re-assembles an array a test has
#:   just stopped, as an inactive array holding its paths, before the superblocks are
#:   erased; the next test then finds the paths taken. On a server, dmpath's own rule
#:   keeps it off claimed paths (ID_FS_TYPE=mpath_member); the lab tests run without it.
FOREIGN_RULES = (
    "*multipath*.rules",
    "*dm-mpath*.rules",
    "*kpartx*.rules",
    "*md-raid-assembly*.rules",
)


def prepare_kernel() -> None:
    for mod in MODULES:
        run("modprobe", [mod], check=False)
    moved = False
    for pattern in FOREIGN_RULES:
        for rule in glob.glob(os.path.join("/lib/udev/rules.d", pattern)):
            try:
                os.rename(rule, rule + ".dmpath-lab-disabled")
                moved = True
            except OSError:
                pass
    if moved:
        run("udevadm", ["control", "--reload"], check=False)


def serve_python_from_ram(outdir: str) -> None:
    """The Python trees the host packed, from a tmpfs (``dmpath.lab.guestpython``); a
    failure leaves them on 9p, slower but the same, and says so in one line."""
    try:
        guestpython.unpack(outdir)
    except (OSError, DmpathError) as exc:
        print(f"lab: Python stays on 9p (slower): {exc}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dmpath.lab.guest")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--topology")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    status_file = os.path.join(args.outdir, "exit-status")
    rc = 1
    try:
        os.environ["DMPATH_LAB"] = "1"
        os.environ["DMPATH_LAB_OUTDIR"] = args.outdir
        # the project is read-only in the guest: hypothesis keeps its examples elsewhere
        os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", "/tmp/dmpath-hypothesis")
        # the venv's tools (pytest, dmpathd, mpathctl) first on PATH
        os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
        serve_python_from_ram(args.outdir)
        prepare_kernel()
        if args.topology:
            topo.setup(topo.get_topology(args.topology))
            os.environ["DMPATH_LAB_TOPOLOGY"] = args.topology
        rc = subprocess.call(cmd) if cmd else 0
    finally:
        with open(status_file, "w") as fh:
            fh.write(f"{rc}\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
