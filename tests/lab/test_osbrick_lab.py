"""OpenStack os-brick, unchanged, attaching and detaching a multipath iSCSI volume as a
compute node does, and calling LinuxSCSI's multipath functions on it: first with
multipath-tools' multipathd managing the paths, then with dmpathd and dmpath's
multipath-tools-compatible commands as ``multipath`` and ``multipathd`` on PATH, which
must give os-brick the same answers.

os-brick runs in its own virtualenv (``dmpath.lab.osbrick``, made by ``python -m
dmpath.lab provision``) through tests/lab/osbrick_probe.py, which prints each call's
result. The two daemons never manage the paths at once: multipathd is stopped and its
maps removed, and the volume detached, before dmpathd starts.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dmpath.compat.multipath import CONFIG_ENV
from dmpath.compat.source import SOCKET_ENV
from dmpath.lab import iscsi, osbrick
from dmpath.lab.bench import Multipathd
from dmpath.lab.harness import DaemonUnderTest, wait_for
from dmpath.lab.stallbench import DMPATHD_ISCSI_ONLY, MULTIPATH_CONF_LIO

pytestmark = pytest.mark.lab

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "osbrick_probe.py")
#: a whole attach, the calls and a detach under emulation
PROBE_TIMEOUT = 600.0

_PATH = {"device": "/dev/sd0", "host": "H0", "channel": "0", "id": "0", "lun": "0"}
_MPATH_DEVICE = {
    "device": "/dev/mapper/mpatha",
    "id": "WWN",
    "name": "mpatha",
    "devices": [_PATH, {**_PATH, "device": "/dev/sd1", "host": "H1"}],
}
#: what os-brick 7.1.1 gets from multipath-tools 0.9.4 (find_multipaths no, friendly
#: names); disks, hosts, dm-N and the WWN as the probe normalises them
EXPECTED: list[tuple[str, Any]] = [
    ("is_multipath_running", True),
    (
        "connect_volume",
        {"type": "block", "scsi_wwn": "WWN", "path": "/dev/dm-X", "multipath_id": "WWN"},
    ),
    ("connected paths", 2),
    ("get_dm_name", "mpatha"),
    ("find_sysfs_multipath_dm", "dm-X"),
    ("get_sysfs_wwn", "WWN"),
    ("find_multipath_device(path)", _MPATH_DEVICE),
    ("find_multipath_device(name)", _MPATH_DEVICE),
    ("find_multipath_device_path", "/dev/disk/by-id/dm-uuid-mpath-WWN"),
    ("wait_for_rw", None),
    ("wait_for_mpath_device", None),
    ("multipath_add_wwid", True),
    ("multipath_add_path", True),
    ("multipath_show_paths(%d)", ["sd0", "sd1"]),
    ("multipath_reconfigure", "ok"),
    ("multipath_resize_map", None),
    ("multipath_del_path", True),
    ("path out of the map", True),
    ("multipath_show_paths after del", ["sd1"]),
    ("multipath_add_path again", True),
    ("path back in the map", True),
    ("multipath_del_map", None),
    ("map gone", True),
    ("multipath_add_wwid after del map", True),
    ("multipath_add_path makes the map", True),
    ("map made again with both paths", True),
    ("get_dm_name of the new map", "mpatha"),
    ("disconnect_volume", None),
    ("devices gone", []),
    ("maps of the volume left", None),
    ("is_multipath_running at the end", True),
]


@pytest.fixture
def logged_out(
    fabric: tuple[iscsi.Fabric, list[iscsi.IscsiPath]],
) -> Iterator[iscsi.Fabric]:
    """The fabric's target with no session: os-brick logs in itself, as on a compute node."""
    f, _paths = fabric
    _logout(f)
    yield f
    _logout(f)


def _logout(f: iscsi.Fabric) -> None:
    subprocess.run(
        ["iscsiadm", "-m", "node", "-T", iscsi.TARGET_IQN, "--logout"],
        check=False,
        capture_output=True,
        timeout=iscsi.LOGIN_TIMEOUT,
    )
    wait_for(lambda: not f.paths(), iscsi.LOGIN_TIMEOUT, "the fabric's disks gone")


def _probe(
    f: iscsi.Fabric, path_prefix: str | None = None, env_extra: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Run the probe with os-brick's interpreter; ``path_prefix`` goes first on PATH."""
    env = {**os.environ, **(env_extra or {})}
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env["PATH"]
    p0, p1 = (p.address for p in f.portals)
    started = time.monotonic()
    res = subprocess.run(
        [osbrick.python(), PROBE, p0, p1, iscsi.TARGET_IQN],
        check=False,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
        env=env,
    )
    print(f"os-brick probe: exit {res.returncode} in {time.monotonic() - started:.1f} s")
    print("".join(ln for ln in res.stderr.splitlines(True) if ln.startswith("probe: ")))
    assert res.returncode == 0, f"os-brick probe failed:\n{res.stdout}\n{res.stderr[-6000:]}"
    steps: list[dict[str, Any]] = json.loads(res.stdout)
    print(json.dumps(steps, indent=1))
    return steps


def _mismatches(got: list[dict[str, Any]], want: list[tuple[str, Any]]) -> list[str]:
    """One line per call whose result is not the one wanted (or that is missing)."""
    out = []
    by_call = {s["call"]: s for s in got}
    for call, value in want:
        step = by_call.get(call)
        if step is None:
            out.append(f"{call}: not called")
        elif "error" in step:
            out.append(f"{call}: expected {value!r}, raised {step['error']}")
        elif step["value"] != value:
            out.append(f"{call}: expected {value!r}, got {step['value']!r}")
    return out


def _with_multipathd(f: iscsi.Fabric, workdir: str) -> list[dict[str, Any]]:
    d = Multipathd(workdir, verbosity=2, conf=MULTIPATH_CONF_LIO)
    d.start()
    try:
        return _probe(f)
    finally:
        d.stop()
        d.remove_maps()  # any the probe left: dmpathd must find none of multipathd's


def _compat_commands(bindir: pathlib.Path) -> str:
    """``multipath`` and ``multipathd`` in ``bindir``: dmpath's compatible commands, run
    by this interpreter from this tree (the venv's entry points may be another tree's)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    bindir.mkdir()
    for name in ("multipath", "multipathd"):
        exe = bindir / name
        exe.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH={root} exec {sys.executable} -c 'import sys; from "
            f"dmpath.compat.{name} import main; sys.exit(main())' \"$@\"\n"
        )
        exe.chmod(0o755)
    return str(bindir)


def _with_dmpathd(
    f: iscsi.Fabric, start: Callable[..., DaemonUnderTest], bindir: pathlib.Path
) -> list[dict[str, Any]]:
    # as multipathd was set up: every path claimed at once (find_multipaths no), friendly
    # names; the iSCSI disks only
    d = start(defaults={"find_multipaths": "greedy"}, extra=DMPATHD_ISCSI_ONLY)
    return _probe(f, _compat_commands(bindir), {SOCKET_ENV: d.socket, CONFIG_ENV: d.config})


def test_osbrick_same_answers_from_multipath_tools_and_dmpath(
    logged_out: iscsi.Fabric,
    dmpathd: Callable[..., DaemonUnderTest],
    tmp_path: pathlib.Path,
) -> None:
    theirs = _with_multipathd(logged_out, str(tmp_path / "multipathd"))
    wrong = _mismatches(theirs, EXPECTED)
    assert not wrong, "os-brick against multipath-tools:\n" + "\n".join(wrong)
    _logout(logged_out)  # the volume is detached: the same start for dmpath
    ours = _with_dmpathd(logged_out, dmpathd, tmp_path / "bin")
    wrong = _mismatches(ours, [(s["call"], s.get("value", s.get("error"))) for s in theirs])
    assert not wrong, "os-brick against dmpath (expected: multipath-tools'):\n" + "\n".join(wrong)
