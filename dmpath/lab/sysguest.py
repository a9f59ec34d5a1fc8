"""Guest side of the systemd lab flavour: what one boot of the image does.

Started by the image's ``dmpath-lab.service`` (after multi-user.target) with the
project's source tree shared read-only and the run's output directory shared writable;
the boot's phase is on the kernel command line (``dmpath.lab.phase=``):

``prepare`` (first boot of a run) installs dmpath as an administrator would (pip into a
venv, ``python -m dmpath.install``, ``systemctl enable dmpathd.socket``), lets the udev
rule start dmpathd on the two-path SAN disk, makes a file system on the map with an
fstab entry, writes data without syncing it, and ends: the unit's ``SuccessAction``
powers the machine off the orderly way, so the unmount at shutdown is what saves it.

``test`` (second boot) runs the pytest command line the host wrote into the output
directory: the tests see a machine that booted with dmpath installed, its map mounted
from fstab, and the previous boot's journal.

Writes ``<out>/<phase>-status`` (the exit status); the host trusts only that file.
Runs with the image's system Python, before dmpath's dependencies are installed: the
standard library only.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: where the project is copied and installed in the guest (persists into the next boot)
SRC = "/opt/dmpath-src"
VENV = "/opt/dmpath"
#: the SAN disk's file system, mounted from fstab at the next boot
MOUNTPOINT = "/srv/san"
#: what the prepare phase leaves for the tests (on the root disk, read in the next boot)
STATE = "/var/lib/dmpath-lab/prepared.json"
#: the two SCSI disks qemu attaches for the same image file carry this serial
SAN_SERIAL = "DMPATHLAB0001"
DATA_BYTES = 8 << 20

#: never copied into the guest: the host's venv, caches and VCS data
IGNORED = (".venv", ".git", "__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache",
           ".pytest_cache", ".hypothesis", "build")


def log(msg: str) -> None:
    print(f"dmpath-lab: {msg}", flush=True)


def sh(*argv: str, timeout: float = 600) -> str:
    """Run a command; its output is echoed on the console (the host's log)."""
    log("$ " + " ".join(argv))
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    out = (res.stdout + res.stderr).strip()
    if out:
        print(out[-4000:], flush=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit status {res.returncode}")
    return res.stdout


def phase_of(cmdline: str) -> str:
    for word in cmdline.split():
        if word.startswith("dmpath.lab.phase="):
            return word.split("=", 1)[1]
    return ""


class WaitTimeout(AssertionError):
    """What ``wait_for`` waited for did not come (an assertion: the tests use it too)."""


def wait_for(pred: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1.0)


def prepared_state() -> dict[str, object]:
    """What the prepare phase left for the tests (``STATE``)."""
    with open(STATE) as fh:
        state: dict[str, object] = json.load(fh)
    return state


def journal_entries(*args: str) -> list[dict[str, str]]:
    """The journal's entries that ``journalctl`` matches with ``args``, as JSON."""
    res = subprocess.run(["journalctl", "--no-pager", "-o", "json", *args],
                         capture_output=True, text=True, timeout=120, check=False)
    return [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]


def san_paths() -> list[str]:
    """The SCSI disks of the SAN (both paths of the one image file)."""
    found = []
    for dev in sorted(glob.glob("/sys/block/sd*")):
        try:
            with open(os.path.join(dev, "device/vpd_pg80"), "rb") as fh:
                serial = fh.read()
        except OSError:
            continue
        if SAN_SERIAL.encode() in serial:
            found.append(os.path.basename(dev))
    return found


def san_map() -> str:
    """The dm map holding the SAN's paths ("" while there is none)."""
    paths = set(san_paths())
    for dm in glob.glob("/sys/block/dm-*"):
        slaves = set(os.listdir(os.path.join(dm, "slaves")))
        if paths and slaves == paths:
            with open(os.path.join(dm, "dm/name")) as fh:
                return fh.read().strip()
    return ""


def install() -> None:
    """dmpath installed the way the README tells an administrator to."""
    if os.path.exists(SRC):
        shutil.rmtree(SRC)
    shutil.copytree(os.getcwd(), SRC, ignore=shutil.ignore_patterns(*IGNORED))
    sh(f"{VENV}/bin/pip", "install", "-q", "--no-deps", "--no-build-isolation",
       "--no-index", SRC)
    # in the clone's top directory: dmpath.install reads the units from there
    res = subprocess.run([f"{VENV}/bin/python", "-m", "dmpath.install"], cwd=SRC,
                         capture_output=True, text=True, check=False)
    print(res.stdout + res.stderr, flush=True)
    if res.returncode != 0:
        raise RuntimeError(f"python -m dmpath.install: exit status {res.returncode}")
    sh("systemctl", "daemon-reload")
    sh("udevadm", "control", "--reload")
    # only the socket: dmpathd.service itself is started by the udev rule when a path
    # appears (or by the socket when mpathctl connects); the tests prove both
    sh("systemctl", "enable", "dmpathd.socket")


def prepare(out: str) -> None:
    install()
    sh("systemctl", "start", "dmpathd.socket")
    wait_for(lambda: len(san_paths()) == 2, 60, "the SAN's two SCSI paths")
    # the disks were probed before the rule existed: replay their add events
    sh("udevadm", "trigger", "--action=add", "--subsystem-match=block")
    sh("udevadm", "settle", "--timeout=120", timeout=180)
    name = wait_for(san_map, 180, "dmpathd's map over the SAN's two paths")
    log(f"map {name} over {' '.join(san_paths())}")
    dev = f"/dev/mapper/{name}"
    sh("mkfs.ext4", "-q", "-L", "dmpathsan", dev)
    os.makedirs(MOUNTPOINT, exist_ok=True)
    with open("/etc/fstab", "a") as fh:
        fh.write(f"{dev} {MOUNTPOINT} ext4 defaults 0 2\n")
    sh("systemctl", "daemon-reload")
    sh("mount", MOUNTPOINT)
    # data the page cache holds when the phase ends: no sync, no fsync; only an orderly
    # shutdown (unmount before the map and its paths go) gets it onto the disk
    data = os.urandom(DATA_BYTES)
    with open(os.path.join(MOUNTPOINT, "data.bin"), "wb") as fh:
        fh.write(data)
    os.makedirs(os.path.dirname(STATE), exist_ok=True)
    with open(STATE, "w") as fh:
        json.dump({"map": name, "device": dev, "mountpoint": MOUNTPOINT,
                   "file": "data.bin", "sha256": hashlib.sha256(data).hexdigest(),
                   "paths": san_paths()}, fh)
    shutil.copy(STATE, os.path.join(out, "prepared.json"))


def test(out: str) -> int:
    with open(os.path.join(out, "guest-argv.json")) as fh:
        spec = json.load(fh)
    env = dict(os.environ)
    env.update(spec.get("env", {}))
    env["DMPATH_LAB"] = "1"
    env["DMPATH_LAB_BOOT"] = "systemd"
    env["PATH"] = f"{VENV}/bin:" + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", "/tmp/dmpath-hypothesis")
    log("$ " + " ".join(spec["argv"]))
    return subprocess.call(spec["argv"], cwd=SRC, env=env)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dmpath.lab.sysguest")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    with open("/proc/cmdline") as fh:
        phase = phase_of(fh.read())
    rc = 1
    try:
        if phase == "prepare":
            prepare(args.out)
            rc = 0
        elif phase == "test":
            rc = test(args.out)
        else:
            log(f"unknown phase {phase!r}")
    except Exception as exc:  # noqa: BLE001 - one line for the host, then power off
        log(f"{phase} failed: {exc}")
        # what the host needs to see why: the daemon's side of the story
        subprocess.call(["journalctl", "-b", "--no-pager", "-n", "80", "-u", "dmpathd.service",
                         "-u", "dmpathd.socket"])
        rc = 1
    finally:
        with open(os.path.join(args.out, f"{phase or 'unknown'}-status"), "w") as fh:
            fh.write(f"{rc}\n")
    log(f"{phase} ended with status {rc}; powering off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
