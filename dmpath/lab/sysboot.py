"""The ``systemd`` lab boot flavour: a Debian 12 image with systemd as PID 1, two boots.

A run is two boots of the cached image (``sysimage.py``) under qemu (TCG) with the same
copy-on-write overlay over it and the same SAN disk:

1. ``prepare``: dmpath is installed from the shared source tree, the udev rule starts
   the daemon, a file system is made on the map with an fstab entry, data is written,
   and the machine powers off the orderly way;
2. ``test``: the machine boots as a server with dmpath would, and the lab tests run.

The SAN disk is one raw file attached twice, to two virtio-scsi controllers, with the
same WWN and serial: two real paths to one persistent LUN (scsi_debug's RAM disks do not
outlive a boot). ``-blockdev`` lets two devices share one node; ``share-rw=on`` on both
allows two writers, as a SAN LUN has.

Output comes back through a 9p share (the run's output directory); the exit status is
the one the guest wrote there, never qemu's.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from dmpath.errors import DmpathError
from dmpath.lab import sysimage
from dmpath.lab.vm import GUEST_CPUS, GUEST_MEMORY, LabRun

#: one boot (including the tests) may take this long in all
BOOT_TIMEOUT = 1800.0
#: a boot that prints nothing for this long is stuck
SILENCE_TIMEOUT = 600.0
SAN_SIZE = 256 << 20
SAN_WWN = "0x5000c500d0a7ab01"
#: where the output share is mounted in the guest (BOOTSTRAP_SCRIPT mounts it there)
GUEST_OUT = "/run/dmpath-lab/out"
GUEST_PYTHON = f"{sysimage.VENV}/bin/python"
PHASES = ("prepare", "test")


class SysBootError(DmpathError):
    exit_code = 8


def kernel_cmdline(phase: str) -> str:
    return " ".join(
        (
            "root=/dev/vda rw console=ttyS0",
            # a panic must end the boot (qemu -no-reboot exits), not hang it
            "panic=-1",
            "loglevel=4 systemd.show_status=1",
            # the guest has no network; predictable names cost udev time for nothing
            "net.ifnames=0",
            f"dmpath.lab.phase={phase}",
        )
    )


def qemu_command(
    kernel: sysimage.Kernel,
    overlay: str,
    san: str,
    src: str,
    out: str,
    *,
    phase: str,
    memory: str = GUEST_MEMORY,
    cpus: str = GUEST_CPUS,
) -> list[str]:
    """qemu's command line for one boot (pure)."""
    cmd = [
        "qemu-system-x86_64",
        # the paravirtual KVM here hangs a stock kernel, and -cpu host aborts: TCG only
        "-accel", "tcg",
        "-m", memory,
        "-smp", cpus,
        "-nographic",
        "-no-reboot",
        "-nic", "none",
        "-kernel", kernel.vmlinuz,
        "-initrd", kernel.initrd,
        "-append", kernel_cmdline(phase),
        "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
        "-blockdev", f"driver=file,filename={san},node-name=sanfile,locking=off",
        "-blockdev", "driver=raw,file=sanfile,node-name=san",
    ]
    for i in range(2):
        cmd += [
            "-device", f"virtio-scsi-pci,id=hba{i}",
            "-device",
            f"scsi-hd,bus=hba{i}.0,drive=san,share-rw=on,wwn={SAN_WWN},"
            f"serial=DMPATHLAB0001,vendor=DMPATH,product=LABSAN",
        ]
    cmd += [
        "-virtfs", f"local,path={src},mount_tag={sysimage.SRC_TAG},security_model=none,"
        "readonly=on",
        "-virtfs", f"local,path={out},mount_tag={sysimage.OUT_TAG},security_model=none",
    ]
    return cmd


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def guest_argv(
    argv: Sequence[str], host_out: str, read: Callable[[str], str] = _read
) -> dict[str, object]:
    """The host's pytest command as the guest runs it: ``env VAR=...`` split off, the
    host's Python replaced by the image's venv, paths in the output directory moved to
    where the guest mounts it, ``@FILE`` arguments spliced in (Debian 12's pytest, 7.2,
    does not read them; the command travels in a file, so its length does not matter)."""
    args: list[str] = []
    for a in argv:
        if a.startswith("@"):
            args += [ln.strip() for ln in read(a[1:]).splitlines() if ln.strip()]
        else:
            args.append(a)
    env: dict[str, str] = {}
    if args[:1] == ["env"]:
        args = args[1:]
        while args and "=" in args[0] and not args[0].startswith(("/", "@")):
            k, v = args.pop(0).split("=", 1)
            env[k] = v

    def moved(s: str) -> str:
        if s.startswith(host_out + "/"):
            return GUEST_OUT + s[len(host_out):]
        return s

    env = {k: moved(v) for k, v in env.items()}
    args = [moved(a) for a in args]
    if args and os.path.basename(args[0]).startswith("python"):
        args[0] = GUEST_PYTHON
    return {"env": env, "argv": args}


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _boot(
    cmd: list[str], phase: str, echo: Callable[[str], None], progress: Callable[[str], None]
) -> tuple[int, str, float]:
    started = time.monotonic()
    progress(f"systemd lab: booting the image ({phase}) under qemu (TCG)...")
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace",
    )
    lines: list[str] = []
    last = [time.monotonic()]
    done = threading.Event()

    def watchdog() -> None:
        while not done.wait(5.0):
            now = time.monotonic()
            if now - last[0] > SILENCE_TIMEOUT or now - started > BOOT_TIMEOUT:
                lines.append(f"systemd lab: {phase} boot stuck or too long: killed\n")
                proc.kill()
                return

    threading.Thread(target=watchdog, daemon=True).start()
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            last[0] = time.monotonic()
            line = raw.replace("\r", "")
            if not line.strip():
                continue  # the serial console's blank lines
            lines.append(line)
            echo(line.rstrip("\n"))
        rc = proc.wait()
    finally:
        done.set()
    return rc, "".join(lines), time.monotonic() - started


def _status(out: str, phase: str) -> int | None:
    try:
        with open(os.path.join(out, f"{phase}-status")) as fh:
            return int(fh.read().strip() or "1")
    except (OSError, ValueError):
        return None


def run_systemd_lab(
    argv: Sequence[str],
    *,
    outdir: str,
    echo: Callable[[str], None],
    progress: Callable[[str], None],
) -> LabRun:
    """Build or reuse the image, boot it to prepare, boot it again to run ``argv``."""
    from dmpath.lab.provision import ensure_lab

    started = time.monotonic()
    kernel = sysimage.host_kernel(ensure_lab(progress))
    image = sysimage.build_image(kernel, log=progress)
    work = os.path.join(outdir, "systemd-lab")
    os.makedirs(work, exist_ok=True)
    overlay = os.path.join(work, "root.qcow2")
    san = os.path.join(work, "san.img")
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", image, overlay],
        check=True, capture_output=True,
    )
    with open(san, "wb") as fh:
        fh.truncate(SAN_SIZE)
    with open(os.path.join(outdir, "guest-argv.json"), "w") as fh:
        json.dump(guest_argv(argv, outdir.rstrip("/")), fh)
    src = _project_root()
    output: list[str] = []
    rc = 1
    for phase in PHASES:
        cmd = qemu_command(kernel, overlay, san, src, outdir, phase=phase)
        echo("$ " + " ".join(shlex.quote(c) for c in cmd))
        qrc, text, took = _boot(cmd, phase, echo, progress)
        output.append(text)
        status = _status(outdir, phase)
        progress(f"systemd lab: {phase} boot ended after {took:.0f} s (guest status {status})")
        if status is None:
            output.append(
                f"systemd lab: the {phase} boot wrote no status (qemu exit status {qrc}):"
                " it did not reach the lab unit; see the boot output above\n"
            )
            rc = 125
            break
        rc = status
        if phase == "prepare" and status != 0:
            output.append("systemd lab: the prepare boot failed; see its output above\n")
            break
    return LabRun(rc, "".join(output), outdir, time.monotonic() - started)


if __name__ == "__main__":  # pragma: no cover - by hand: python -m dmpath.lab.sysboot CMD...
    import tempfile

    out = tempfile.mkdtemp(prefix="dmpath-syslab-")
    res = run_systemd_lab(sys.argv[1:] or ["true"], outdir=out, echo=print, progress=print)
    print(f"status {res.returncode} after {res.duration:.0f} s; output in {out}")
    sys.exit(res.returncode)
