"""The lab's boot flavours: which machine a group of lab tests runs in.

A lab test says where it runs with its marker: ``@pytest.mark.lab`` runs in the default
boot (Debian 12's 6.1 kernel with the host's root file system shared read-only);
``@pytest.mark.lab(boot="NAME")`` runs in the boot named NAME: ``systemd`` boots a Debian
12 image with systemd as PID 1 (``sysboot.py``). The pytest bridge boots
each flavour once per session and runs all of that flavour's tests inside it.

``@pytest.mark.lab(kernels=("6.1", "6.12"))`` runs one test in several kernel boots: the
plugin makes one item per kernel (``test_x[6.12]``), each in the boot of that name, and in
the guest each item fails unless ``uname -r`` is of its kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from dmpath.errors import DmpathError
from dmpath.lab.vm import LabRun, run_in_lab

#: the flavour of a plain ``@pytest.mark.lab``
DEFAULT_BOOT = "6.1"
#: Debian 12's backported modern kernel: dm multipath as current distributions ship it,
#: and no md multipath personality (gone from Linux 6.8 on)
MODERN_BOOT = "6.12"


class BootRunner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        outdir: str,
        echo: Callable[[str], None],
        progress: Callable[[str], None],
    ) -> LabRun: ...


class UnknownBoot(DmpathError):
    exit_code = 2


def _kernel_boot(series: str | None) -> BootRunner:
    """The runner for a boot of the host's root file system on a kernel of ``series``
    (None: the default choice, the newest kernel that still has md multipath)."""

    def boot(
        argv: Sequence[str],
        *,
        outdir: str,
        echo: Callable[[str], None],
        progress: Callable[[str], None],
    ) -> LabRun:
        return run_in_lab(argv, outdir=outdir, echo=echo, progress=progress, kernel=series)

    return boot


def _systemd(
    argv: Sequence[str],
    *,
    outdir: str,
    echo: Callable[[str], None],
    progress: Callable[[str], None],
) -> LabRun:
    from dmpath.lab.sysboot import run_systemd_lab

    return run_systemd_lab(argv, outdir=outdir, echo=echo, progress=progress)


#: flavour name -> how to boot it and run a command inside
BOOTS: dict[str, BootRunner] = {
    DEFAULT_BOOT: _kernel_boot(None),
    MODERN_BOOT: _kernel_boot(MODERN_BOOT),
    # a Debian 12 image with systemd as PID 1 and dmpath installed (docs/lab-systemd.md)
    "systemd": _systemd,
}

#: flavours named after the kernel series they boot: an item of one of these checks in the
#: guest that ``uname -r`` is of that series (``kernels=`` items, ``boot="6.12"`` items)
KERNEL_BOOTS = (DEFAULT_BOOT, MODERN_BOOT)
#: ``@pytest.mark.lab(kernels=BOTH_KERNELS)``: the dm tests CI runs on both kernels
BOTH_KERNELS = (DEFAULT_BOOT, MODERN_BOOT)


def kernel_matches(series: str, release: str) -> bool:
    """Whether ``uname -r`` ``release`` is of kernel ``series`` ("6.1" is not "6.12")."""
    want = series.split(".")
    got = release.split("-", 1)[0].split("+", 1)[0].split(".")
    return len(got) >= len(want) and got[: len(want)] == want


def runner(name: str) -> BootRunner:
    try:
        return BOOTS[name]
    except KeyError:
        known = ", ".join(sorted(BOOTS))
        raise UnknownBoot(f"lab boot {name!r} is not known (known: {known})") from None
