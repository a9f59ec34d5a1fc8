"""The lab's boot flavours: which machine a group of lab tests runs in.

A lab test says where it runs with its marker: ``@pytest.mark.lab`` runs in the default
boot (Debian 12's 6.1 kernel with the host's root file system shared read-only);
``@pytest.mark.lab(boot="NAME")`` runs in the boot named NAME: ``systemd`` boots a Debian
12 image with systemd as PID 1 (``sysboot.py``). The pytest bridge boots
each flavour once per session and runs all of that flavour's tests inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from dmpath.errors import DmpathError
from dmpath.lab.vm import LabRun, run_in_lab

#: the flavour of a plain ``@pytest.mark.lab``
DEFAULT_BOOT = "6.1"


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


def _default(
    argv: Sequence[str],
    *,
    outdir: str,
    echo: Callable[[str], None],
    progress: Callable[[str], None],
) -> LabRun:
    return run_in_lab(argv, outdir=outdir, echo=echo, progress=progress)


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
    DEFAULT_BOOT: _default,
    # a Debian 12 image with systemd as PID 1 and dmpath installed (docs/lab-systemd.md)
    "systemd": _systemd,
}


def runner(name: str) -> BootRunner:
    try:
        return BOOTS[name]
    except KeyError:
        known = ", ".join(sorted(BOOTS))
        raise UnknownBoot(f"lab boot {name!r} is not known (known: {known})") from None
