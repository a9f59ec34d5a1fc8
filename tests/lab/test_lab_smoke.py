"""The lab itself: a real 6.1 kernel with dm, md and scsi_debug paths."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.lab


def test_kernel_has_multipath_pieces(scsi_paths):  # type: ignore[no-untyped-def]
    assert os.uname().release.startswith("6.1.")
    assert os.path.exists("/dev/mapper/control")
    with open("/proc/mdstat") as fh:
        assert "[multipath]" in fh.readline()
    assert len(scsi_paths) == 2
    assert scsi_paths[0].wwid == scsi_paths[1].wwid
    assert scsi_paths[0].host != scsi_paths[1].host
