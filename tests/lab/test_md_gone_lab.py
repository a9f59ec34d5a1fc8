"""On Debian's 6.12 kernel md's multipath personality is gone (removed in Linux 6.8): the
md backend says so in one line that points at ``mpathctl migrate-md``, from the mdadm
layer and from the daemon, and nothing is half-made."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from dmpath.errors import MissingKernelFeature
from dmpath.kernel import dmsetup, mdadm
from dmpath.lab.harness import DaemonUnderTest, wait_for
from dmpath.lab.topology import LabPath

# the item fails (not skips) if the guest is not 6.12: see dmpath.lab.pytest_plugin
pytestmark = pytest.mark.lab(boot="6.12")

Start = Callable[..., DaemonUnderTest]


def test_the_mdadm_layer_says_the_personality_is_gone_in_one_line() -> None:
    with pytest.raises(MissingKernelFeature) as ei:
        mdadm.ensure_multipath_personality()
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("kernel has no md multipath personality: it was removed in Linux 6.8")
    assert os.uname().release in msg and "mpathctl migrate-md" in msg
    assert ei.value.exit_code == 6
    assert not mdadm.read_mdstat().has_multipath


def test_the_daemon_with_backend_md_says_it_in_one_line_and_makes_nothing(
    scsi_paths: list[LabPath], dmpathd: Start
) -> None:
    d = dmpathd(defaults={"backend": "md"})
    errors = wait_for(
        lambda: [e for e in d.events("error") if "md multipath personality" in e["message"]],
        60,
        "the daemon's error about the md personality",
    )
    msg = errors[0]["message"]
    assert "removed in Linux 6.8" in msg and "mpathctl migrate-md" in msg and "\n" not in msg
    # no array, no map, no superblock written; the daemon is still up and answering
    assert not mdadm.read_mdstat().arrays
    assert dmsetup.list_maps() == []
    for p in scsi_paths:
        assert mdadm.examine("/dev/" + p.name) is None
    assert d.maps() == {}
    assert "Traceback" not in d.log()
