"""dmpath under a real systemd (PID 1), in the ``systemd`` lab flavour (docs/lab-systemd.md).

The machine was booted twice from a Debian 12 image: the first boot installed dmpath
(``python -m dmpath.install``, only ``dmpathd.socket`` enabled), let the udev rule start
dmpathd on a two-path SAN disk, made a file system on the map with an fstab entry, wrote
data without syncing it and powered off; these tests run in the second boot. They run in
file order: the boot's own evidence first, then the tests that stop, reload and hang the
daemon.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator

import pytest

from dmpath.lab.sysguest import STATE, wait_for

pytestmark = pytest.mark.lab(boot="systemd")



def sh(*argv: str, timeout: float = 120, check: bool = True) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)}: exit status {res.returncode}: {res.stdout}{res.stderr}"
        )
    return res.stdout


def show(unit: str, *props: str) -> dict[str, str]:
    out = sh("systemctl", "show", unit, *(f"--property={p}" for p in props))
    return dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)


def journal(*args: str) -> list[dict[str, str]]:
    out = sh("journalctl", "--no-pager", "-o", "json", *args, check=False)
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]


@pytest.fixture(scope="module")
def prepared() -> dict[str, object]:
    if os.environ.get("DMPATH_LAB_BOOT") != "systemd":
        pytest.skip("runs in the systemd lab flavour only")
    with open(STATE) as fh:
        state: dict[str, object] = json.load(fh)
    return state


@pytest.fixture
def active_daemon() -> Iterator[None]:
    """dmpathd running before and after the test (a test may stop or hang it)."""
    sh("systemctl", "start", "dmpathd.socket", "dmpathd.service")
    yield
    sh("systemctl", "start", "dmpathd.socket", "dmpathd.service", check=False)


def _mono(unit: str, prop: str) -> int:
    return int(show(unit, prop)[prop] or 0)


def test_the_fstab_entry_on_the_map_mounted_at_boot_before_local_fs(
    prepared: dict[str, object],
) -> None:
    dev = str(prepared["device"])
    src = sh("findmnt", "-n", "-o", "SOURCE", str(prepared["mountpoint"])).strip()
    assert os.path.realpath(src) == os.path.realpath(dev), f"mounted from {src}, not {dev}"
    mount_unit = sh("systemd-escape", "--path", "--suffix=mount",
                    str(prepared["mountpoint"])).strip()
    m = show(mount_unit, "ActiveState", "ActiveEnterTimestampMonotonic", "RequiredBy",
             "WantedBy")
    assert m["ActiveState"] == "active"
    # an fstab entry: the mount is a requirement of local-fs.target, mounted before it
    assert "local-fs.target" in m["RequiredBy"] + m["WantedBy"]
    mounted = int(m["ActiveEnterTimestampMonotonic"])
    local_fs = _mono("local-fs.target", "ActiveEnterTimestampMonotonic")
    assert 0 < mounted <= local_fs, (mounted, local_fs)
    # the daemon was started this boot before the mount (it made the map the mount waited
    # for), and fsck checked the map's file system first
    started = _mono("dmpathd.service", "ExecMainStartTimestampMonotonic")
    assert 0 < started < mounted, (started, mounted)
    dev_unit = sh("systemd-escape", "--path", dev).strip()
    fsck = show(f"systemd-fsck@{dev_unit}.service", "Result", "ActiveState")
    assert fsck == {"Result": "success", "ActiveState": "active"}, fsck


def test_data_written_before_the_orderly_shutdown_is_intact(
    prepared: dict[str, object],
) -> None:
    path = os.path.join(str(prepared["mountpoint"]), str(prepared["file"]))
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    # written without sync just before the first boot ended: only the unmount at shutdown
    # put it on the disk
    assert digest == prepared["sha256"]
    mount_unit = sh("systemd-escape", "--path", "--suffix=mount",
                    str(prepared["mountpoint"])).strip()
    prev = journal("-b", "-1")
    unmounted = [e for e in prev if e.get("UNIT") == mount_unit
                 and "Unmounted" in str(e.get("MESSAGE", ""))]
    about = [f"{e.get('UNIT')}: {e.get('MESSAGE')}" for e in prev
             if "san" in str(e.get("MESSAGE", "")) + str(e.get("UNIT", ""))]
    assert unmounted, (
        f"the previous boot's journal has no unmount of {mount_unit}: "
        f"{sh('journalctl', '--list-boots', check=False)} {about[-15:]} "
        f"{[e.get('MESSAGE') for e in prev[-15:]]}"
    )
    # dmpathd stopped after the file system was unmounted (the unit's ordering)
    stopped = [e for e in prev if e.get("UNIT") == "dmpathd.service"
               and re.search(r"Stopped|Deactivated", str(e.get("MESSAGE", "")))]
    if stopped:
        assert int(stopped[-1]["__MONOTONIC_TIMESTAMP"]) >= int(
            unmounted[-1]["__MONOTONIC_TIMESTAMP"]
        )


def test_dmpathd_started_at_boot_on_the_claimed_paths(prepared: dict[str, object]) -> None:
    assert os.path.exists(str(prepared["device"]))
    # not enabled: nothing but the rule (systemctl --no-block start) or the socket (the
    # rule's helper connects to it) could start it
    assert sh("systemctl", "is-enabled", "dmpathd.service", check=False).strip() == "disabled"
    assert show("dmpathd.service", "ActiveState")["ActiveState"] == "active"
    for path in prepared["paths"]:  # type: ignore[attr-defined]
        props = dict(
            ln.split("=", 1)
            for ln in sh("udevadm", "info", "-q", "property", f"/dev/{path}").splitlines()
        )
        # claimed by the rule, hidden from systemd and blkid-based mounts
        assert props.get("DMPATH_PATH") == "1", props
        assert props.get("SYSTEMD_READY") == "0", props
        assert props.get("ID_FS_TYPE") == "mpath_member", props


def test_notify_ready_and_status_reach_systemd(prepared: dict[str, object]) -> None:
    s = show("dmpathd.service", "Type", "ActiveState", "SubState", "StatusText",
             "NotifyAccess", "WatchdogUSec")
    # Type=notify: "active (running)" only comes after READY=1
    assert (s["Type"], s["ActiveState"], s["SubState"]) == ("notify", "active", "running")
    assert re.fullmatch(r"managing \d+ maps over \d+ paths", s["StatusText"]), s
    assert s["WatchdogUSec"] == "30s"


def _selector() -> str:
    cfg = json.loads(sh("mpathctl", "--json", "show", "config"))
    return str(cfg["defaults"]["path_selector"])


def test_systemctl_reload_reconfigures_the_daemon(
    prepared: dict[str, object], active_daemon: None
) -> None:
    conf = "/etc/dmpath/dmpath.toml"
    with open(conf) as fh:
        original = fh.read()
    pid = show("dmpathd.service", "MainPID")["MainPID"]
    assert _selector() != "round-robin 0"
    try:
        with open(conf, "a") as fh:
            fh.write('\n[defaults]\npath_selector = "round-robin 0"\n')
        sh("systemctl", "reload", "dmpathd.service")
        # ExecReload sends SIGHUP and returns: the daemon re-reads the file on its own time
        wait_for(lambda: _selector() == "round-robin 0", 60,
                 "the daemon's configuration to take the reloaded path selector")
        assert show("dmpathd.service", "MainPID")["MainPID"] == pid, "reload restarted it"
        msgs = [str(e.get("MESSAGE", "")) for e in journal("-b", "-u", "dmpathd.service")]
        assert any("Reloaded" in m or "Reloading" in m for m in msgs), msgs[-10:]
    finally:
        with open(conf, "w") as fh:
            fh.write(original)
        sh("systemctl", "reload", "dmpathd.service", check=False)


def test_the_socket_answers_mpathctl_while_the_daemon_is_stopped(
    prepared: dict[str, object], active_daemon: None
) -> None:
    sh("systemctl", "stop", "dmpathd.service")
    assert show("dmpathd.service", "ActiveState")["ActiveState"] == "inactive"
    assert show("dmpathd.socket", "ActiveState")["ActiveState"] == "active"
    # systemd holds the listening socket: the connection waits while it starts dmpathd
    out = sh("mpathctl", "--json", "status", timeout=180)
    assert str(prepared["map"]) in out
    # the daemon answers once it has adopted the kernel's maps, which can be before its
    # coldplug is done and it tells systemd READY=1 ("activating" until then)
    s = show("dmpathd.service", "ActiveState", "TriggeredBy")
    assert s["ActiveState"] in ("activating", "active"), s
    assert "dmpathd.socket" in s["TriggeredBy"]
    wait_for(lambda: show("dmpathd.service", "ActiveState")["ActiveState"] == "active", 180,
             "dmpathd.service to be ready")


def test_the_watchdog_restarts_a_hung_daemon(
    prepared: dict[str, object], active_daemon: None
) -> None:
    before = show("dmpathd.service", "MainPID", "NRestarts")
    pid = int(before["MainPID"])
    assert pid > 0
    os.kill(pid, signal.SIGSTOP)  # hung: alive, but no WATCHDOG=1 any more

    def restarted() -> bool:
        s = show("dmpathd.service", "MainPID", "NRestarts", "ActiveState")
        return (int(s["NRestarts"]) > int(before["NRestarts"]) and s["MainPID"] not in
                ("0", str(pid)) and s["ActiveState"] == "active")

    # WatchdogSec=30, then the abort, then RestartSec=1 and a start under emulation
    wait_for(restarted, 240, "systemd to restart dmpathd after its watchdog timeout")
    msgs = [str(e.get("MESSAGE", "")) for e in journal("-b", "-u", "dmpathd.service")]
    assert any("Watchdog timeout" in m for m in msgs), msgs[-20:]
    assert os.path.exists(str(prepared["device"])), "the map must outlive the hung daemon"


def _scsi_debug_disks() -> list[str]:
    found = []
    for dev in glob.glob("/sys/block/sd*"):
        try:
            with open(os.path.join(dev, "device/model")) as fh:
                if fh.read().strip() == "scsi_debug":
                    found.append(os.path.basename(dev))
        except OSError:
            pass
    return sorted(found)


def _map_over(disks: list[str]) -> str:
    for dm in glob.glob("/sys/block/dm-*"):
        if disks and sorted(os.listdir(os.path.join(dm, "slaves"))) == disks:
            with open(os.path.join(dm, "dm/name")) as fh:
                return fh.read().strip()
    return ""


def test_paths_appearing_start_the_stopped_service_through_the_rule(
    prepared: dict[str, object], active_daemon: None
) -> None:
    # nothing running and nothing listening: only the rule can start dmpathd now
    sh("systemctl", "stop", "dmpathd.socket", "dmpathd.service")
    assert show("dmpathd.service", "ActiveState")["ActiveState"] == "inactive"
    # udevd logs each program it runs and how it ended at debug level: the evidence if
    # the service does not start
    sh("udevadm", "control", "--log-level=debug")
    sh("modprobe", "scsi_debug", "num_tgts=1", "add_host=2", "vpd_use_hostno=0",
       "dev_size_mb=16")
    disks = wait_for(lambda: d if len(d := _scsi_debug_disks()) == 2 else [], 120,
                     "scsi_debug's two paths")
    try:
        wait_for(lambda: show("dmpathd.service", "ActiveState")["ActiveState"] == "active",
                 180, "the udev rule to start dmpathd.service")
    except AssertionError as exc:
        state = show("dmpathd.service", "ActiveState", "SubState", "NRestarts")
        service = [str(e.get("MESSAGE", "")) for e in journal("-b", "-u", "dmpathd.service")]
        udevd = [
            str(e.get("MESSAGE", ""))
            for e in journal("-b", "-u", "systemd-udevd.service")
            if any(w in str(e.get("MESSAGE", "")) for w in ("systemctl", "dmpath", "RUN"))
        ]
        raise AssertionError(
            f"{exc}: {state}\n{sh('udevadm', 'info', '-q', 'property', f'/dev/{disks[0]}')}\n"
            f"dmpathd.service: {service[-30:]}\nsystemd-udevd: {udevd[-60:]}"
        ) from None
    finally:
        sh("udevadm", "control", "--log-level=info")
    wait_for(lambda: _map_over(disks), 180, f"dmpathd's map over {' '.join(disks)}")
