"""The history and the journal under a real systemd (the ``systemd`` lab flavour,
docs/lab-systemd.md): the events of the prepare boot are listed in the test boot, and a
path failure is one structured journal entry that ``journalctl MESSAGE_ID=...`` finds."""

from __future__ import annotations

import json
import os
import time

import pytest

from dmpath.daemon.journal import MESSAGE_IDS
from dmpath.lab.sysguest import journal_entries, prepared_state, sh, wait_for
from dmpath.lab.topology import set_state

pytestmark = pytest.mark.lab(boot="systemd")


@pytest.fixture(scope="module")
def prepared() -> dict[str, object]:
    if os.environ.get("DMPATH_LAB_BOOT") != "systemd":
        pytest.skip("runs in the systemd lab flavour only")
    sh("systemctl", "start", "dmpathd.service")  # started at boot; this waits for it
    return prepared_state()


def boot_time() -> float:
    with open("/proc/stat") as fh:
        return float(next(ln.split()[1] for ln in fh if ln.startswith("btime ")))


def test_the_events_of_the_prepare_boot_are_listed_in_this_one(
    prepared: dict[str, object],
) -> None:
    assert os.path.getsize("/var/lib/dmpath/history") > 0
    events = json.loads(sh("mpathctl", "--json", "show", "events"))
    earlier = [e for e in events if e["time"] < boot_time()]
    assert any(e["kind"] == "map_created" and e["map"] == prepared["map"] for e in earlier)
    # the prepare boot ended with an orderly shutdown: its daemon recorded its stop
    assert earlier[-1]["kind"] == "daemon_stopped", earlier[-3:]
    started = [e for e in events if e["kind"] == "daemon_started" and e not in earlier]
    assert started and "earlier events from /var/lib/dmpath/history" in started[0]["message"]


def test_a_path_failure_is_one_structured_journal_entry(prepared: dict[str, object]) -> None:
    name = str(prepared["map"])
    victim = str(prepared["paths"][0])  # type: ignore[index]
    since = f"@{int(time.time()) - 1}"
    set_state(victim, "offline")
    try:
        # failed by the daemon's checker, or by the kernel first if I/O met the path
        (entry,) = wait_for(
            lambda: journal_entries("--since", since, f"DMPATH_PATH={victim}",
                                    f"MESSAGE_ID={MESSAGE_IDS['path_failed']}",
                                    f"MESSAGE_ID={MESSAGE_IDS['kernel_path_failed']}"),
            90,
            f"a path_failed entry for {victim}",
        )
    finally:
        set_state(victim, "running")
    assert entry["SYSLOG_IDENTIFIER"] == "dmpathd"
    assert entry["_SYSTEMD_UNIT"] == "dmpathd.service"
    assert entry["DMPATH_MAP"] == name
    assert (entry["DMPATH_EVENT"], entry["PRIORITY"]) in (
        ("path_failed", "4"), ("kernel_path_failed", "6")
    ), entry
    assert entry["MESSAGE"].startswith(f"{name}: IO failure on {victim}"), entry["MESSAGE"]
    # standard error is the journal too: the event is not in it a second time as a line
    # ("WARNING dmpathd: " and the message)
    same = [e for e in journal_entries("--since", since, "-u", "dmpathd.service")
            if entry["MESSAGE"] in str(e.get("MESSAGE", ""))]
    assert same == [entry], same
    # and its return, found by map
    wait_for(
        lambda: [e for e in journal_entries("--since", since, f"DMPATH_MAP={name}")
                 if e.get("MESSAGE_ID") == MESSAGE_IDS["path_reinstated"]],
        90,
        f"a path_reinstated entry for {victim}",
    )
