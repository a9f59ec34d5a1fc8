"""Our udev rule installed in the lab guest, for the tests that need udev to claim paths.

The guest has no systemd as PID 1 and shares the host's /lib read-only: the rule goes to
/etc/udev/rules.d (a writable overlay), calling the venv's helper with a private config.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
from collections.abc import Iterator

from dmpath import install
from dmpath.runner import run

INSTALLED = pathlib.Path("/etc/udev/rules.d/62-dmpath.rules")
#: the rule for the maps' own events (its helper, for a non-default dm_uuid_prefix's link,
#: called as the paths' rule calls it)
MAPS_RULE = pathlib.Path("/etc/udev/rules.d/56-dmpath-maps.rules")


def props(name: str) -> dict[str, str]:
    out = run("udevadm", ["info", "--query=property", f"/dev/{name}"]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def claimed(name: str) -> dict[str, str] | None:
    got = props(name)
    return got if got.get("DMPATH_PATH") == "1" else None


def retrigger(names: list[str], action: str = "change") -> None:
    for name in names:
        run("udevadm", ["trigger", f"--action={action}", f"/dev/{name}"])
    run("udevadm", ["settle", "-t", "60"])


def private_files(tmp_path: pathlib.Path) -> dict[str, str]:
    """The ``[defaults]`` that keep a test's daemon and the rule's helper to files of the
    test's own (the wwids, admin state and bindings files, the control socket)."""
    return {
        "wwids_file": f"{tmp_path}/wwids",
        "admin_state_file": f"{tmp_path}/admin-state",
        "bindings_file": f"{tmp_path}/bindings",
        "socket": f"{tmp_path}/run/dmpathd.sock",
    }


@contextlib.contextmanager
def installed_rule(tmp_path: pathlib.Path, extra: str = "") -> Iterator[pathlib.Path]:
    """The project's rules, the paths' with the venv's helper and a private config; yields
    the config.

    udev passes no environment to its programs, so DMPATH_CONFIG is baked into the rule.
    """
    helper = os.path.join(os.path.dirname(sys.executable), "dmpath-udev")
    cfg = tmp_path / "dmpath.toml"
    cfg.write_text(
        "[defaults]\n" + "".join(f'{k} = "{v}"\n' for k, v in private_files(tmp_path).items())
        + extra
    )
    # the installer's own rewrite: the rule calls the venv's helper (and dmpathd)
    steps = install.plan(install.source_tree(), str(tmp_path / "root"), os.path.dirname(helper))
    text = next(s.text for s in steps if s.source == "udev-rules/62-dmpath.rules")
    if "/usr/bin/" in text:
        raise RuntimeError("the installer left /usr/bin/ paths in the udev rule")
    private = f'"/usr/bin/env DMPATH_CONFIG={cfg} {helper}'
    INSTALLED.write_text(text.replace(f'"{helper}', private))
    maps = next(s.text for s in steps if s.source == f"udev-rules/{MAPS_RULE.name}")
    MAPS_RULE.write_text(maps.replace(f'"{helper}', private))
    try:
        run("udevadm", ["control", "--reload"])
        yield cfg
    finally:
        INSTALLED.unlink()
        MAPS_RULE.unlink()
        run("udevadm", ["control", "--reload"])
