"""The systemd lab flavour's root file system: a Debian 12 image built with mmdebstrap.

The image holds what a server running dmpath has (systemd as PID 1, udev, dmsetup, kmod,
Python with dmpath's dependencies, sg3-utils, e2fsprogs) and never dmpath itself: the
project changes with every commit, so each run installs it afresh (``sysguest.py``). The
kernel is the host's lab kernel; its modules are copied in, and the host's initramfs
(Debian's generic one) finds the root disk.

The image is cached under ``CACHE_DIR`` named by a hash of everything that goes into it
(the recipe below, the kernel version, the bootstrap files): the first run builds it (a
few minutes, from deb.debian.org), later runs reuse it read-only (each boot writes to a
qcow2 overlay of its own).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dmpath.errors import DmpathError
from dmpath.runner import run

CACHE_DIR = os.environ.get("DMPATH_LAB_CACHE", "/var/cache/dmpath-lab")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"

#: Debian packages in the image. Python libraries come from Debian where its version
#: meets pyproject.toml (pyudev 0.24, rich 13.3); Debian 12's python3-sh (1.14) and
#: python3-pyroute2 (0.7.2, without the AsyncIPRoute dmpathd's link watch imports: the
#: first boot of this flavour found that) are too old, so those two go into the venv by
#: pip.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "dmsetup",
    # dmpathd makes a map's partition maps with it (a server needs it as much as dmsetup)
    "kpartx",
    "kmod",
    "python3",
    "python3-venv",
    # pip builds the project at each boot without build isolation (no index there)
    "python3-wheel",
    "python3-pyudev",
    "python3-rich",
    # the lab tests run inside with pytest; tests/conftest.py imports hypothesis
    "python3-pytest",
    "python3-hypothesis",
    "sg3-utils",
    "e2fsprogs",
    "util-linux",
    "procps",
)

#: from PyPI into the image's venv (pinned: the image hash must name what is inside)
PIP_PACKAGES = ("sh==2.4.0", "pyroute2==0.9.7", "prometheus-client==0.26.0")

#: the venv dmpath is installed into at each boot (``--system-site-packages`` sees the
#: Debian libraries)
VENV = "/opt/dmpath"

IMAGE_SIZE = "3G"  # sparse: about 1 GB is used

#: 9p mount tags of the two shares (the project's source tree, the run's output dir)
SRC_TAG = "dmpathsrc"
OUT_TAG = "dmpathout"

#: The only lab logic in the image: mount the shares, run the guest side from the shared
#: source tree (``dmpath.lab.sysguest``, which changes with the project), power off
#: whatever happened. Everything else about a run lives in the repository.
BOOTSTRAP_SCRIPT = f"""#!/bin/sh
# dmpath lab: hand the boot to the guest side in the shared source tree
set -u
modprobe -q 9pnet_virtio; modprobe -q 9p
mkdir -p /run/dmpath-lab/src /run/dmpath-lab/out
mount -t 9p -o trans=virtio,version=9p2000.L,ro {SRC_TAG} /run/dmpath-lab/src || exit 1
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 {OUT_TAG} /run/dmpath-lab/out \\
    || exit 1
cd /run/dmpath-lab/src
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/run/dmpath-lab/src \\
    exec python3 -m dmpath.lab.sysguest --out /run/dmpath-lab/out
"""

BOOTSTRAP_UNIT = """[Unit]
Description=dmpath lab: run this boot's phase, then power off
After=multi-user.target
# only when the lab boots the image (a phase is named on the kernel command line)
ConditionKernelCommandLine=dmpath.lab.phase
# the machine goes down when the phase ends, however it ends, the orderly way: units
# stopped, file systems unmounted (poweroff-force would skip that: the shutdown is
# under test)
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/dmpath-lab-boot
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""

#: units that cost boot time under emulation and do nothing for the lab
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "systemd-timesyncd.service",
)

#: files written into the image (path -> text, mode)
FILES: dict[str, tuple[str, int]] = {
    "/usr/local/sbin/dmpath-lab-boot": (BOOTSTRAP_SCRIPT, 0o755),
    "/etc/systemd/system/dmpath-lab.service": (BOOTSTRAP_UNIT, 0o644),
    # the root file system is the qcow2 overlay's virtio disk; no fsck at boot (time)
    "/etc/fstab": ("/dev/vda / ext4 rw,errors=remount-ro 0 0\n", 0o644),
    "/etc/hostname": ("dmpath-lab\n", 0o644),
    # a persistent journal: a test in the next boot reads the previous boot's shutdown
    "/etc/systemd/journald.conf.d/dmpath-lab.conf": ("[Journal]\nStorage=persistent\n", 0o644),
}


class SysImageError(DmpathError):
    exit_code = 8


@dataclass(frozen=True)
class Kernel:
    version: str
    vmlinuz: str
    initrd: str
    modules: str


def host_kernel(vmlinuz: str) -> Kernel:
    """The host's kernel image with its initramfs and modules (all three are needed)."""
    version = os.path.basename(vmlinuz).removeprefix("vmlinuz-")
    boot = os.path.dirname(vmlinuz)
    k = Kernel(
        version,
        vmlinuz,
        os.path.join(boot, f"initrd.img-{version}"),
        os.path.join("/lib/modules", version),
    )
    for what, path in (("initramfs", k.initrd), ("modules", k.modules)):
        if not os.path.exists(path):
            raise SysImageError(
                f"{path}: the {what} of kernel {version} is missing (reinstall linux-image-"
                f"{version})"
            )
    return k


def recipe(kernel_version: str) -> dict[str, object]:
    """Everything the image is made of; its hash names the cached image."""
    return {
        "format": 1,
        "suite": SUITE,
        "packages": sorted(PACKAGES),
        "pip": list(PIP_PACKAGES),
        "venv": VENV,
        "kernel": kernel_version,
        "files": {p: [t, m] for p, (t, m) in sorted(FILES.items())},
        "masked": sorted(MASKED_UNITS),
        "size": IMAGE_SIZE,
    }


def recipe_hash(kernel_version: str) -> str:
    blob = json.dumps(recipe(kernel_version), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def image_path(kernel_version: str, cache_dir: str = CACHE_DIR) -> str:
    return os.path.join(cache_dir, f"debian-{SUITE}-{recipe_hash(kernel_version)}.img")


def mmdebstrap_command(target: str) -> list[str]:
    """The mmdebstrap call for a root tree in ``target`` (pure: no side effects)."""
    return [
        "mmdebstrap",
        "--mode=root",
        "--variant=apt",
        "--format=directory",
        "--include=" + ",".join(PACKAGES),
        SUITE,
        target,
        MIRROR,
    ]


@contextlib.contextmanager
def _build_lock(cache_dir: str) -> Iterator[None]:
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, ".build.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _write_files(root: str) -> None:
    for path, (text, mode) in FILES.items():
        dest = root + path
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w") as fh:
            fh.write(text)
        os.chmod(dest, mode)


def _customize(root: str, kernel: Kernel, log: Callable[[str], None]) -> None:
    _write_files(root)
    os.makedirs(root + "/var/log/journal", exist_ok=True)
    log("image: venv " + VENV + " with " + " ".join(PIP_PACKAGES))
    run("chroot", [root, "python3", "-m", "venv", "--system-site-packages", VENV], timeout=600)
    site = f"{root}{VENV}/lib/python3.11/site-packages"
    if not os.path.isdir(site):
        raise SysImageError(f"{site}: the image's venv is not Python 3.11's")
    # the host's pip fetches them (the chroot has no resolver set up); pure Python only
    run(
        sys.executable,
        ["-m", "pip", "install", "-q", "--no-deps", "--target", site, *PIP_PACKAGES],
        timeout=600,
    )
    run("chroot", [root, "systemctl", "enable", "dmpath-lab.service"], timeout=120)
    run("chroot", [root, "systemctl", "mask", *MASKED_UNITS], timeout=120)
    # root without a password: the lab machine has no network and no login prompt
    run("chroot", [root, "passwd", "-d", "root"], timeout=60)
    log(f"image: kernel modules {kernel.version}")
    dest = f"{root}/usr/lib/modules/{kernel.version}"
    shutil.copytree(kernel.modules, dest, symlinks=True, dirs_exist_ok=True)


def build_image(kernel: Kernel, log: Callable[[str], None] = print,
                cache_dir: str = CACHE_DIR) -> str:
    """The cached image for ``kernel``, built first if the recipe changed."""
    final = image_path(kernel.version, cache_dir)
    if os.path.exists(final):
        return final
    if os.geteuid() != 0:
        raise SysImageError("building the systemd lab image needs root (mmdebstrap --mode=root)")
    if not shutil.which("mmdebstrap"):
        raise SysImageError("mmdebstrap is missing: apt-get install mmdebstrap")
    with _build_lock(cache_dir):
        if os.path.exists(final):  # another run built it while we waited
            return final
        started = time.monotonic()
        work = tempfile.mkdtemp(prefix="sysimage-", dir=cache_dir)
        try:
            root = os.path.join(work, "root")
            log(f"image: mmdebstrap {SUITE} ({len(PACKAGES)} packages) into {root}...")
            run("mmdebstrap", mmdebstrap_command(root)[1:], timeout=1800)
            _customize(root, kernel, log)
            tmp = os.path.join(work, "image.raw")
            log("image: mkfs.ext4 -d (populating the file system from the tree)")
            run("mkfs.ext4", ["-q", "-F", "-L", "dmpathlab", "-d", root, tmp, IMAGE_SIZE],
                timeout=1800)
            os.chmod(tmp, 0o444)  # the base is never written: boots get overlays
            os.replace(tmp, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"image: built {final} in {time.monotonic() - started:.0f} s")
        for old in os.listdir(cache_dir):  # images of older recipes
            path = os.path.join(cache_dir, old)
            if old.startswith("debian-") and old.endswith(".img") and path != final:
                with contextlib.suppress(OSError):
                    os.unlink(path)
    return final


def main(argv: list[str] | None = None) -> int:
    """``python -m dmpath.lab.sysimage``: build (or find) the image and print its path."""
    from dmpath.lab.provision import find_kernel

    try:
        kernel = host_kernel(find_kernel())
        print(build_image(kernel, log=lambda m: print(m, file=sys.stderr)))
    except DmpathError as exc:
        print(f"sysimage: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
