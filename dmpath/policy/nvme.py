"""NVMe paths: which checker and which priority (pure decisions).

An NVMe namespace has no SCSI behind it: SG_IO's TEST UNIT READY (``tur``, the default
checker) has nothing to ask, so an NVMe path is checked with ``directio`` (one O_DIRECT
read) unless the configuration chose ``directio`` or ``none`` itself. Its priority under
``prio = "alua"`` comes from the namespace's ANA state, ranked as the ALUA state of the
same meaning (optimized as active/optimized, ...); without ANA (native multipath off: the
kernel reads no ANA log then) every path is equal.
"""

from __future__ import annotations

from dmpath.kernel.nvme import ANA_AS_ALUA
from dmpath.kernel.scsi import alua_priority

#: the priority of a path that says nothing to rank it by (prio "const")
CONST_PRIORITY = 1


def is_nvme(transport: str) -> bool:
    return transport.startswith("nvme:")


def checker_for(configured: str, transport: str) -> str:
    """The checker a path gets: ``tur`` means ``directio`` on NVMe."""
    if configured == "tur" and is_nvme(transport):
        return "directio"
    return configured


def ana_priority(ana_state: str) -> int:
    """A path's priority from its ANA state; ``CONST_PRIORITY`` when there is none (an
    unknown state ranks lowest, as an unknown ALUA state does)."""
    if not ana_state:
        return CONST_PRIORITY
    return alua_priority(ANA_AS_ALUA.get(ana_state.strip()))
