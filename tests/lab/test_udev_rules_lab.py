"""Our udev rule, installed in the guest: it claims multipath paths so LVM/md/systemd skip
them, and assembles a map when a path appears and no dmpathd runs (the guest has no
systemd as PID 1, so the rule's one-shot ``dmpathd --once`` is what runs)."""

from __future__ import annotations

import functools
import pathlib
import sys

import pytest

from dmpath.daemon.main import pids_named
from dmpath.kernel import dmsetup
from dmpath.lab import topology as topo
from dmpath.lab.harness import remove_dm_maps, wait_for
from dmpath.lab.udevrule import claimed, installed_rule, props, retrigger
from dmpath.runner import run

pytestmark = pytest.mark.lab

def test_rule_claims_both_paths_of_a_lun(scsi_paths: list[topo.LabPath], tmp_path) -> None:  # type: ignore[no-untyped-def]
    names = [p.name for p in scsi_paths]
    with installed_rule(tmp_path):
        retrigger(names)
        for name in names:
            got = wait_for(functools.partial(claimed, name), 20, f"udev to claim {name}")
            assert got["DM_MULTIPATH_DEVICE_PATH"] == "1"
            assert got["SYSTEMD_READY"] == "0"
            assert got["ID_FS_TYPE"] == "mpath_member"
        # a change event is not a path appearing: nothing is assembled behind our back
        assert _our_map() is None
    retrigger(names)
    assert "DMPATH_PATH" not in props(scsi_paths[0].name)


def test_a_blacklisted_lun_is_neither_claimed_nor_mapped(
    scsi_paths: list[topo.LabPath], tmp_path: pathlib.Path
) -> None:
    """One decision for udev and the daemon: a LUN whose WWID is blacklisted, seen through
    two paths, stays visible to LVM and systemd, and dmpathd makes no map of it."""
    names = [p.name for p in scsi_paths]
    wwid = props(names[0])["ID_SERIAL"]
    with installed_rule(tmp_path, f'[blacklist]\nwwid = ["^{wwid}$"]\n') as cfg:
        retrigger(names)
        for name in names:
            got = props(name)
            assert "DMPATH_PATH" not in got and got.get("SYSTEMD_READY") != "0", name
        res = run(sys.executable, ["-m", "dmpath.daemon.main", "--once", "--config", str(cfg)],
                  check=False)
        assert res.returncode == 0, res.stderr
        assert _our_map() is None
        # lifted by an exception: claimed again (the same rules, both ways)
        cfg.write_text(cfg.read_text() + f'[blacklist_exceptions]\nwwid = ["^{wwid}$"]\n')
        retrigger(names)
        assert all(claimed(n) for n in names)
    retrigger(names)


def test_an_unreadable_config_claims_nothing_new_and_says_so_in_the_kernel_log(
    scsi_paths: list[topo.LabPath], tmp_path: pathlib.Path
) -> None:
    names = [p.name for p in scsi_paths]
    with installed_rule(tmp_path, 'find_multipath = "greedy"\n'):  # misspelt key
        retrigger(names)
        assert not any(claimed(n) for n in names)
        log = run("dmesg", []).stdout
        assert f"dmpath-udev: {names[0]}: " in log and "find_multipath" in log
    retrigger(names)


def _our_map() -> tuple[str, str, set[str]] | None:
    """(name, uuid, path devnums) of the one dmpath map, if there is one."""
    for dev in dmsetup.list_maps():
        uuid = dmsetup.info(dev.name).uuid
        if uuid.startswith("mpath-"):
            return dev.name, uuid, set(dmsetup.table(dev.name).devs)
    return None


def test_a_path_plugged_in_without_a_daemon_is_assembled_by_the_rule(
    scsi_paths: list[topo.LabPath], tmp_path: pathlib.Path
) -> None:
    """A third host appears (a cable plugged in) while no dmpathd runs: the rule's
    one-shot assembly makes the map over all three paths, named from the bindings file,
    and leaves no process behind."""
    wwid = props(scsi_paths[0].name)["ID_SERIAL"]
    assert _our_map() is None
    with installed_rule(tmp_path):
        try:
            topo.add_host()
            paths = topo.discover()
            assert len(paths) == 3
            want = {p.devnum for p in paths}

            def assembled() -> tuple[str, str, set[str]] | None:
                m = _our_map()
                return m if m is not None and m[2] == want else None

            # the paths that were there before join too: one scan sees the whole LUN
            name, uuid, _devnums = wait_for(assembled, 120, f"a map over {sorted(want)}")
            assert uuid == f"mpath-{wwid}"
            assert name == "mpatha"
            assert (tmp_path / "bindings").read_text().splitlines()[-1].split() == [
                "mpatha",
                wwid,
            ]
            # the one-shot runs exit: nothing of ours keeps running under udev (the map
            # appears before the run that made it has exited, and runs for the other
            # paths wait their turn for the assembly lock, then find nothing to do)
            wait_for(lambda: pids_named("dmpathd") == [], 60, "the one-shot runs to exit")
            # the run that made the map records the WWID after the map appears: read the
            # file once every run has exited
            assert f"/{wwid}/" in (tmp_path / "wwids").read_text()
            # an add for a path already in our map changes nothing
            before = dmsetup.table(name)
            retrigger([paths[0].name], action="add")
            assert dmsetup.table(name) == before
        finally:
            remove_dm_maps()
            topo.remove_last_host()
    retrigger([p.name for p in scsi_paths])

