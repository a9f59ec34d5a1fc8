"""The daemon's open-file limit: one descriptor per path is kept open by its checker.

Linux starts processes with a soft limit of 1,024 descriptors. A daemon with a thousand
paths needs more than that: past the limit every new open fails with EMFILE, so checkers
cannot open their paths and files cannot be written. At start dmpathd raises its limit
to the most the kernel allows a process (``fs.nr_open``), as multipathd does with its
``max_fds = max`` default; without the privilege to raise the hard limit it takes the
hard limit as it is.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("dmpathd")

NR_OPEN = "/proc/sys/fs/nr_open"


def plan_nofile(soft: int, hard: int, nr_open: int | None) -> tuple[int, int]:
    """The (soft, hard) limits to ask for: both up to ``nr_open`` (the kernel's ceiling)
    when it is known, else the soft limit up to the hard one. Never lowers either."""
    inf = resource.RLIM_INFINITY
    ceiling = nr_open if nr_open else (hard if hard != inf else soft)
    new_hard = hard if hard == inf else max(hard, ceiling)
    new_soft = soft if soft == inf else max(soft, ceiling)
    if new_hard != inf:
        new_soft = min(new_soft, new_hard)
    return new_soft, new_hard


def raise_nofile_limit(nr_open_path: str = NR_OPEN) -> int:
    """Raise RLIMIT_NOFILE as ``plan_nofile`` says; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open(nr_open_path) as fh:
            nr_open: int | None = int(fh.read().strip())
    except (OSError, ValueError):
        nr_open = None
    want = plan_nofile(soft, hard, nr_open)
    if want == (soft, hard):
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, want)
    except (OSError, ValueError):
        # no CAP_SYS_RESOURCE (or a container's ceiling): the hard limit is ours to take
        want = (hard, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, want)
        except (OSError, ValueError) as exc:
            log.warning("open-file limit stays at %d: %s", soft, exc)
            return soft
    log.debug("open-file limit raised from %d to %d", soft, want[0])
    return want[0]
