"""Install what the lab needs on a Debian host, only where it is missing.

Run as root on a fresh Debian machine; on a machine that already has everything it only
checks (dpkg-query) and returns, so it is cheap to call before every lab run.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable

from dmpath.errors import DmpathError
from dmpath.runner import run

#: Debian packages the lab needs on the host (the guest shares the host's root file system)
APT_PACKAGES = (
    "qemu-system-x86",
    "linux-image-amd64",
    # the modern-kernel boot ("6.12" flavour): no md multipath personality there, and the
    # dm lab tests run on it too. In Debian 12's bookworm-security archive (6.12.x~deb12u1);
    # the guest loads its modules from the host's /lib/modules/<release>, so the package is
    # all a boot needs
    "linux-image-6.12-amd64",
    "mdadm",
    "sg3-utils",
    "udev",
    "kmod",
    "busybox-static",
    "dmsetup",
    "groff-base",
    "man-db",
    # the iSCSI fabric (dmpath/lab/iscsi.py): initiator, fault rules, links, namespaces
    "open-iscsi",
    "nftables",
    "iproute2",
    # verified I/O under faults, the blktests way (crc32c verify, direct I/O)
    "fio",
    # LVM on a map, with Debian's lvm2 and its udev rules as they ship
    "lvm2",
    # partition maps on multipath maps (dmpathd runs it; dmpath/kernel/kpartx.py), and
    # sfdisk to write the tables the partition tests read
    "kpartx",
    "fdisk",
    # the systemd flavour (sysimage.py, sysboot.py): the Debian image is built with
    # mmdebstrap and mkfs.ext4 -d; each boot writes to a qcow2 overlay made by qemu-img
    "mmdebstrap",
    "e2fsprogs",
    "qemu-utils",
    # promtool, which tests the shipped alerting rules (dmpath/monitoring); Debian ships
    # it only in the server's package (whose service nothing here uses)
    "prometheus",
)

#: md's multipath personality left the kernel in 6.8; the lab must boot an older kernel
MAX_KERNEL_FOR_MD_MULTIPATH = (6, 7)
#: the modern kernel the lab also boots (APT_PACKAGES installs it): dm tests run on it too
MODERN_KERNEL = "6.12"


class LabSetupError(DmpathError):
    """The lab cannot be prepared on this machine."""

    exit_code = 8


def missing_packages(packages: tuple[str, ...] = APT_PACKAGES) -> list[str]:
    """Packages from ``packages`` that dpkg does not report as installed."""
    res = run(
        "dpkg-query",
        ["-W", "-f", "${Package} ${db:Status-Status}\n", *packages],
        check=False,
    )
    installed = {
        ln.split()[0] for ln in res.stdout.splitlines() if ln.endswith(" installed")
    }
    return [p for p in packages if p not in installed]


def _apt_get_install(packages: list[str], log: Callable[[str], None]) -> None:
    log("installing " + " ".join(packages) + " (apt-get)...")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", ["update", "-q"], timeout=900, env=env)
    run(
        "apt-get",
        ["install", "-y", "-q", "--no-install-recommends", *packages],
        timeout=1800,
        env=env,
    )


def install_packages(log: Callable[[str], None] = print) -> None:
    """apt-get install whatever is missing (needs root)."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise LabSetupError(
            "the lab needs these Debian packages: " + " ".join(missing) + " (run as root)"
        )
    _apt_get_install(missing, log)


#: multipath-tools (multipathd, multipath), what the bench measures against and the os-brick
#: lab test runs os-brick against. Apart from APT_PACKAGES: it also puts udev rules in
#: /lib/udev/rules.d, which the guest shares; the guest moves them aside (guest.py).
OPTIONAL_MULTIPATH_TOOLS = ("multipath-tools",)


def ensure_multipath_tools(log: Callable[[str], None] = print) -> None:
    """Install multipath-tools on the host if it is missing (needs root)."""
    missing = missing_packages(OPTIONAL_MULTIPATH_TOOLS)
    if not missing:
        return
    if os.geteuid() != 0:
        raise LabSetupError(
            "the lab compares dmpath with multipath-tools: apt-get install "
            + " ".join(missing)
            + " (run as root)"
        )
    _apt_get_install(missing, log)
    still = missing_packages(OPTIONAL_MULTIPATH_TOOLS)
    if still:
        raise LabSetupError("apt-get did not install " + " ".join(still))


def _version_key(path: str) -> tuple[int, ...]:
    # Debian's ABI number (6.1.0-57) orders releases of one series: 57 is newer than 9
    m = re.search(r"vmlinuz-(\d+)\.(\d+)(?:\.(\d+))?(?:-(\d+))?", path)
    if not m:
        return (0,)
    return tuple(int(x or 0) for x in m.groups())


def kernel_series(path: str) -> tuple[int, int]:
    """``/boot/vmlinuz-6.12.117+deb12-amd64`` -> ``(6, 12)`` (``(0, 0)`` if unversioned)."""
    key = _version_key(path)
    return (key[0], key[1]) if len(key) >= 2 else (0, 0)


def parse_series(series: str) -> tuple[int, int]:
    """``"6.12"`` -> ``(6, 12)``; LabSetupError for anything else."""
    m = re.fullmatch(r"(\d+)\.(\d+)", series)
    if not m:
        raise LabSetupError(f"kernel series {series!r}: use MAJOR.MINOR, e.g. 6.1 or 6.12")
    return (int(m.group(1)), int(m.group(2)))


def choose_kernel(images: list[str], series: str | None = None) -> str:
    """Pick the image to boot from ``images`` (pure, for tests).

    With ``series`` ("6.12"): the newest image of exactly that MAJOR.MINOR. Without: the
    newest that still has md multipath (< 6.8), the default lab kernel.
    """
    ordered = sorted(images, key=_version_key)
    found = ", ".join(os.path.basename(i) for i in ordered) or "none"
    if series is not None:
        want = parse_series(series)
        match = [i for i in ordered if kernel_series(i) == want]
        if not match:
            raise LabSetupError(
                f"no {series} kernel image (found: {found}); install Debian 12's "
                f"linux-image-{series}-amd64"
                if want >= (6, 8)
                else f"no {series} kernel image (found: {found})"
            )
        return match[-1]
    suitable = [i for i in ordered if kernel_series(i) <= MAX_KERNEL_FOR_MD_MULTIPATH]
    if not suitable:
        raise LabSetupError(
            f"no kernel image below 6.8 (found: {found}); install Debian 12's linux-image-amd64"
        )
    return suitable[-1]


def find_kernel(boot: str = "/boot", series: str | None = None) -> str:
    """The kernel image to boot: the newest of ``series`` ("6.12"), or by default the
    newest Debian kernel image that still has md multipath (< 6.8).

    ``DMPATH_LAB_KERNEL`` overrides the default choice (e.g. to try a newer kernel's dm
    side); a boot that asks for a series gets that series whatever it says.
    """
    forced = os.environ.get("DMPATH_LAB_KERNEL")
    if forced and series is None:
        if not os.path.exists(forced):
            raise LabSetupError(f"DMPATH_LAB_KERNEL={forced} does not exist")
        return forced
    return choose_kernel(glob.glob(os.path.join(boot, "vmlinuz-*")), series)


def vng_path() -> str:
    """virtme-ng's ``vng`` from the running virtualenv (it needs its sibling tools on PATH)."""
    here = os.path.dirname(sys.executable)
    cand = os.path.join(here, "vng")
    if os.access(cand, os.X_OK):
        return cand
    found = shutil.which("vng")
    if not found:
        raise LabSetupError(
            "virtme-ng (vng) is not installed in this environment: pip install virtme-ng"
        )
    return found


#: lab boots run side by side (dmpath.lab.shards) make the host ready one at a time
_READYING = threading.Lock()


def ensure_lab(log: Callable[[str], None] = print, kernel: str | None = None) -> str:
    """Make the host ready; returns the kernel image to boot (of series ``kernel``, e.g.
    "6.12", or the default lab kernel)."""
    with _READYING:
        return _ensure_lab(log, kernel)


def _ensure_lab(log: Callable[[str], None], kernel: str | None) -> str:
    install_packages(log)
    ensure_multipath_tools(log)
    # os-brick against multipath-tools and dmpath (tests/lab/test_osbrick_lab.py)
    from dmpath.lab import osbrick

    osbrick.ensure_venv(log)
    vng_path()
    if not shutil.which("qemu-system-x86_64"):
        raise LabSetupError("qemu-system-x86_64 is missing after install")
    return find_kernel(series=kernel)
