"""dmpathd as a service, on the real kernel: what systemd hears from it (sd_notify),
SIGHUP reloads (a bad config is refused, the old one stays), SIGTERM leaves the maps
serving, and one daemon per socket.

The lab has no systemd as PID 1, so the notify socket is ours: a datagram socket bound
where ``NOTIFY_SOCKET`` says, exactly what systemd would listen on.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest

from dmpath.daemon.main import pids_named
from dmpath.kernel import dmsetup
from dmpath.lab.harness import DaemonUnderTest, wait_for
from dmpath.lab.topology import LabPath

pytestmark = pytest.mark.lab

StartDaemon = Callable[..., DaemonUnderTest]


class NotifyListener:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.5)
        self.got: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.got

    def wait(self, pred: Callable[[list[str]], bool], timeout: float, what: str) -> list[str]:
        return list(wait_for(lambda: pred(self.drain()) and self.got, timeout, what))

    def close(self) -> None:
        self.sock.close()


def count(msgs: list[str], state: str) -> int:
    return sum(1 for m in msgs if state in m.splitlines())


def test_systemd_hears_ready_status_watchdog_and_stopping(
    scsi_paths: list[LabPath], dmpathd: StartDaemon, tmp_path: pathlib.Path
) -> None:
    listener = NotifyListener(str(tmp_path / "notify"))
    try:
        # WatchdogSec=2: systemd would expect a ping at least every 2 s
        d = dmpathd(env={"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "2000000"})
        d.wait_maps({"mpatha": 2})
        msgs = listener.wait(
            lambda m: count(m, "READY=1") == 1 and count(m, "WATCHDOG=1") >= 2,
            60,
            "READY=1 and two watchdog pings",
        )
        status = [m for m in msgs if m.startswith("STATUS=")]
        assert "STATUS=managing 1 maps over 2 paths" in status, msgs
        assert count(msgs, "STOPPING=1") == 0

        d.stop()  # SIGTERM
        assert d.proc is not None and d.proc.returncode == 0
        msgs = listener.wait(lambda m: count(m, "STOPPING=1") == 1, 10, "STOPPING=1")
        assert count(msgs, "READY=1") == 1
        # stopping the daemon never takes the maps down: they keep serving I/O
        assert [m.name for m in dmsetup.list_maps() if m.name == "mpatha"] == ["mpatha"]
    finally:
        listener.close()


def setting(text: str, key: str, value: str) -> str:
    """``text`` with the line ``key = ...`` set to ``value``."""
    return re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)


def test_sighup_refuses_a_bad_config_and_keeps_the_old_one(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    d = dmpathd(defaults={"polling_interval": 1, "max_polling_interval": 1})
    d.wait_maps({"mpatha": 2})
    assert d.proc is not None
    good = pathlib.Path(d.config).read_text()
    lines = good.splitlines()
    bad_line = next(i for i, ln in enumerate(lines, 1) if ln.startswith("polling_interval"))
    pathlib.Path(d.config).write_text(setting(good, "polling_interval", '"often"'))

    d.proc.send_signal(signal.SIGHUP)
    refused = wait_for(lambda: d.events("error"), 30, "the reload to be refused")
    msg = refused[0]["message"]
    assert "reconfigure refused" in msg
    assert f"{d.config}:{bad_line}" in msg and "defaults.polling_interval" in msg, msg
    assert d.request("show_config")["defaults"]["polling_interval"] == 1.0
    assert d.events("reconfigured") == []
    d.wait_maps({"mpatha": 2})  # alive, and the map untouched

    pathlib.Path(d.config).write_text(
        setting(setting(good, "polling_interval", "2"), "max_polling_interval", "4")
    )
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.events("reconfigured"), 30, "the good config to be taken")
    shown = d.request("show_config")["defaults"]
    assert (shown["polling_interval"], shown["max_polling_interval"]) == (2.0, 4.0)
    # and the checks run on them: every path's interval is now between the two
    wait_for(
        lambda: all(2.0 <= p["interval"] <= 4.0 for m in d.show()["maps"] for p in m["paths"]),
        30,
        "the paths to be checked on the new intervals",
    )


def test_a_second_daemon_on_the_same_socket_is_refused(
    scsi_paths: list[LabPath], dmpathd: StartDaemon
) -> None:
    d = dmpathd()
    d.wait_maps({"mpatha": 2})
    before = dmsetup.table("mpatha")
    second = subprocess.run(
        [sys.executable, "-m", "dmpath.daemon.main", "-c", d.config],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode != 0
    assert "another dmpathd is running" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    # the first one is untouched: same socket, same map
    assert os.path.exists(d.socket)
    d.wait_maps({"mpatha": 2})
    assert dmsetup.table("mpatha") == before


def test_refuses_to_start_while_multipathd_runs(
    scsi_paths: list[LabPath], tmp_path: pathlib.Path
) -> None:
    """A process the kernel calls ``multipathd`` (comm) is running: dmpathd says so, with
    its pid and what to do, and touches nothing."""
    fake = tmp_path / "multipathd"
    shutil.copy("/bin/sleep", fake)
    proc = subprocess.Popen([str(fake), "300"])
    try:
        wait_for(
            lambda: proc.pid in pids_named("multipathd"),
            10,
            "the stand-in to be called multipathd",
        )
        cfg = tmp_path / "dmpath.toml"
        cfg.write_text(f'[defaults]\nsocket = "{tmp_path}/d.sock"\n')
        res = subprocess.run(
            [sys.executable, "-m", "dmpath.daemon.main", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        proc.kill()
        proc.wait()
    assert res.returncode == 6, res.stderr
    assert f"multipathd is running (pid {proc.pid}" in res.stderr
    assert "systemctl stop multipathd" in res.stderr
    assert not (tmp_path / "d.sock").exists()
    assert [m.name for m in dmsetup.list_maps() if m.name.startswith("mpath")] == []
