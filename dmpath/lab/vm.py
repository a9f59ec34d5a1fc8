"""Boot the lab VM once and run one command inside it.

virtme-ng shares the host's root file system read-only with the guest (writable overlays
on /etc, /tmp, /var ...), so the project's virtualenv runs inside unchanged. Results come
back through a ``--rwdir`` directory, because the guest's stdout and stderr arrive on
separate channels and can interleave.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dmpath.errors import DmpathError
from dmpath.lab import guestpython
from dmpath.lab.provision import ensure_lab, vng_path

#: The guest needs no network and boots on 2 emulated CPUs (the host has 2 cores). 2 GB
#: held 256 scsi_debug paths with both daemons; 1,024 paths want more (``memory=``).
GUEST_MEMORY = "2G"
GUEST_CPUS = "2"


@dataclass(frozen=True)
class LabRun:
    returncode: int
    output: str
    outdir: str
    duration: float


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


#: directories the guest mounts afresh over the shared root (virtme-ng's init)
GUEST_PRIVATE_DIRS = ("/tmp", "/var", "/etc", "/run")

#: what the guest command may take of the kernel's 2 KiB command line (virtme-ng adds
#: its own options; past the limit the line is cut and the guest never starts)
MAX_GUEST_COMMAND = 700  # base64 in the kernel line: 4/3 of this


class LabCommandTooLong(DmpathError):
    exit_code = 2


class LabMemoryError(DmpathError):
    exit_code = 2


def check_memory(memory: str) -> str:
    """A guest memory size qemu takes: a whole number with an ``M`` or ``G`` suffix."""
    m = re.fullmatch(r"([1-9]\d*)([MG])", memory)
    if not m:
        raise LabMemoryError(f"guest memory {memory!r}: use a size like 2G or 4096M")
    return memory


#: a boot that prints nothing for this long is stuck (seen: up to ~200 s on a busy host)
BOOT_TIMEOUT = 900.0


def _hidden_project_mount() -> list[str]:
    """A clone under /tmp (or /var, ...) would be hidden by the guest's own mounts there:
    share it explicitly, at the same path, so the virtualenv and the tests are visible."""
    root = _project_root()
    if any(root == d or root.startswith(d + "/") for d in GUEST_PRIVATE_DIRS):
        return ["--rodir", root]
    return []


def guest_command(argv: Sequence[str], outdir: str, topology: str | None) -> str:
    """The shell line vng runs in the guest: our guest entry point, then ``argv``."""
    py = sys.executable
    parts = [py, "-m", "dmpath.lab.guest", "--outdir", outdir]
    if topology:
        parts += ["--topology", topology]
    parts += ["--", *argv]
    return " ".join(shlex.quote(p) for p in parts)


def precompile_project() -> None:
    """Write the bytecode of every dmpath module before the guest starts.

    The guest sees this tree read-only, so a module without bytecode here is compiled
    again by every Python process there: measured in the lab, 4 of the 11 s a daemon took
    to import itself (the host may run with PYTHONDONTWRITEBYTECODE). An installed
    package has its bytecode written at install time; this puts the lab on the same
    footing. Only modules whose source changed are compiled.
    """
    import compileall

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with _COMPILING:  # boots run side by side compile once
        compileall.compile_dir(package, quiet=1)


_COMPILING = threading.Lock()


def run_in_lab(
    argv: Sequence[str],
    *,
    topology: str | None = None,
    outdir: str | None = None,
    timeout: float = 4800.0,  # a loaded machine ran the 6.1 boot's tests past 3,600 s
    echo: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    memory: str = GUEST_MEMORY,
    kernel: str | None = None,
) -> LabRun:
    """Boot the kernel, set up ``topology`` (if any), run ``argv``; return its exit status.

    ``echo`` receives each output line as it arrives; ``progress`` receives boot
    progress messages (the boot is silent for ~25 s under emulation). ``memory`` is the
    guest's RAM in qemu's notation (``2G``, ``4096M``). ``kernel`` is the series to boot
    ("6.12"); None boots the default lab kernel (the newest < 6.8, which has md multipath).
    """
    check_memory(memory)
    image = ensure_lab(progress or (lambda _m: None), kernel)
    precompile_project()
    line = guest_command(argv, outdir or "/tmp/dmpath-lab-XXXXXXXX", topology)
    if len(line) > MAX_GUEST_COMMAND:
        raise LabCommandTooLong(
            f"guest command is {len(line)} bytes; it rides on the kernel command line (2 KiB "
            f"in all): pass long argument lists in a file"
        )
    outdir = outdir or tempfile.mkdtemp(prefix="dmpath-lab-")
    os.makedirs(outdir, exist_ok=True)
    guestpython.pack(outdir)
    try:
        return _boot(
            argv, image, outdir=outdir, topology=topology, timeout=timeout, echo=echo,
            progress=progress, memory=memory,
        )
    finally:
        guestpython.discard(outdir)


def _boot(
    argv: Sequence[str],
    image: str,
    *,
    outdir: str,
    topology: str | None,
    timeout: float,
    echo: Callable[[str], None] | None,
    progress: Callable[[str], None] | None,
    memory: str,
) -> LabRun:
    """Boot, run, wait: ``run_in_lab`` once the guest's files are ready."""
    cmd = [
        vng_path(),
        "--run",
        image,
        "--disable-kvm",  # the paravirtual KVM of these hosts hangs a stock kernel
        "--user",
        "root",
        "--memory",
        memory,
        "--cpus",
        GUEST_CPUS,
        "--rwdir",
        outdir,
        *_hidden_project_mount(),
        "--cwd",
        _project_root(),
        "--exec",
        guest_command(argv, outdir, topology),
    ]
    env = dict(os.environ)
    # vng calls its sibling tools (virtme-run) by name
    env["PATH"] = os.path.dirname(vng_path()) + os.pathsep + env.get("PATH", "")
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        errors="replace",
    )
    booted = threading.Event()
    lines: list[str] = []

    def ticker() -> None:
        while not booted.wait(5.0):
            if progress:
                elapsed = time.monotonic() - started
                progress(f"booting lab kernel under emulation... {elapsed:.0f} s")

    if progress:
        progress(f"booting {os.path.basename(image)} under qemu (TCG, ~25 s)...")
        threading.Thread(target=ticker, daemon=True).start()
    assert proc.stdout is not None

    def boot_watchdog() -> None:
        if not booted.wait(BOOT_TIMEOUT):
            lines.append(f"lab: no output from the guest after {BOOT_TIMEOUT:.0f} s: killed\n")
            proc.kill()

    threading.Thread(target=boot_watchdog, daemon=True).start()
    try:
        deadline = started + timeout
        for line in proc.stdout:
            if not booted.is_set():
                booted.set()
                if progress:
                    progress(f"lab kernel up after {time.monotonic() - started:.1f} s")
            lines.append(line)
            if echo:
                echo(line.rstrip("\n"))
            if time.monotonic() > deadline:
                proc.kill()
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    finally:
        booted.set()
    status_file = os.path.join(outdir, "exit-status")
    # vng propagates the guest's exit status, but a crashed guest would report 0: trust
    # only the status our guest entry point wrote.
    if os.path.exists(status_file):
        with open(status_file) as fh:
            rc = int(fh.read().strip() or "1")
    elif rc == 0:
        rc = 125
    return LabRun(rc, "".join(lines), outdir, time.monotonic() - started)
