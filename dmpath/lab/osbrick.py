"""OpenStack's os-brick in a virtualenv of its own, for the lab test that drives it
(tests/lab/test_osbrick_lab.py) against multipath-tools and against dmpath's compatible
commands.

Why its own virtualenv and not an extra of the project: os-brick brings some 40 packages
(oslo.*, eventlet, greenlet) that nothing else here uses; in the project's environment
they would be imported by no test but could be by pytest plugins, and eventlet patches
the standard library where it is imported. A compute node runs os-brick in its own
process too. Every version is pinned (what pip resolved for os-brick 7.1.1 on Python
3.11), so a fresh machine gets the same set. The lab guest sees the host's root file
system read-only except /tmp, /var, /etc and /run, so the virtualenv lives under /opt.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from dmpath.runner import run

OS_BRICK_VERSION = "7.1.1"
#: os-brick and everything it needs, as resolved on Python 3.11
REQUIREMENTS = (
    f"os-brick=={OS_BRICK_VERSION}",
    "certifi==2026.10.19.post1",
    "cffi==2.1.1",
    "charset-normalizer==3.5.3",
    "debtcollector==3.1.0",
    "dnspython==2.9.2",
    "eventlet==0.41.3",
    "fasteners==0.20",
    "greenlet==3.5.6",
    "idna==3.20",
    "iso8601==2.1.0",
    "msgpack==1.2.4",
    "netaddr==1.3.0",
    "oslo.concurrency==7.6.1",
    "oslo.config==10.7.0",
    "oslo.context==6.5.0",
    "oslo.i18n==6.9.0",
    "oslo.log==8.3.2",
    "oslo.privsep==3.12.0",
    "oslo.serialization==5.11.0",
    "oslo.service==4.8.0",
    "oslo.utils==10.2.0",
    "packaging==26.4",
    "Paste==3.10.1",
    "PasteDeploy==3.1.0",
    "pbr==7.1.3",
    "psutil==7.2.2",
    "pycparser==3.12",
    "pyparsing==3.3.3",
    "python-dateutil==4.0.0",
    "PyYAML==6.0.4",
    "repoze-lru==0.8",
    "requests==2.34.2",
    "rfc3986==2.0.0",
    "Routes==2.5.1",
    "six==1.17.0",
    "stevedore==5.10.0",
    "tenacity==9.2.1",
    "typing_extensions==4.16.0",
    "tzdata==2026.6",
    "urllib3==2.8.0",
    "WebOb==1.8.11",
    "wrapt==2.5.2",
    "yappi==1.7.6",
)

VENV = f"/opt/dmpath-lab/os-brick-{OS_BRICK_VERSION}"
#: written last, holding REQUIREMENTS: a virtualenv without it (or with other pins) is
#: made again, so an interrupted install is never taken for a finished one
DONE_FILE = os.path.join(VENV, "dmpath-requirements.txt")
INSTALL_TIMEOUT = 1800.0


def python() -> str:
    """The virtualenv's interpreter (host and guest see the same path)."""
    return os.path.join(VENV, "bin", "python")


def is_ready() -> bool:
    try:
        with open(DONE_FILE) as fh:
            return fh.read().split() == list(REQUIREMENTS)
    except OSError:
        return False


def ensure_venv(log: Callable[[str], None] = print) -> str:
    """Make the virtualenv with the pinned os-brick unless it is there; returns its python."""
    if is_ready():
        return python()
    log(f"installing os-brick {OS_BRICK_VERSION} into {VENV} (pip)...")
    # the base interpreter, not the project's virtualenv: nothing of ours leaks in
    base = getattr(sys, "_base_executable", sys.executable)
    run(base, ["-m", "venv", "--clear", VENV], timeout=300)
    run(
        python(),
        ["-m", "pip", "install", "--quiet", "--no-cache-dir", *REQUIREMENTS],
        timeout=INSTALL_TIMEOUT,
    )
    with open(DONE_FILE, "w") as fh:
        fh.write("\n".join(REQUIREMENTS) + "\n")
    return python()
