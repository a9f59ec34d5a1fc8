"""The soak's pure parts: its daemon config, the model comparison, fio's figures."""

from __future__ import annotations

import errno
import tomllib

from dmpath.lab import soak
from dmpath.lab.fio import FioJob


def test_the_md_lun_is_on_the_md_backend_and_both_are_named() -> None:
    text = soak.multipaths_config({soak.DM_MAP: "wa", soak.MD_MAP: "wb"})
    entries = tomllib.loads(text)["multipaths"]
    assert entries == [
        {"wwid": "wa", "alias": "soak_dm"},
        {"wwid": "wb", "alias": "soak_md", "backend": "md"},
    ]


def test_the_daemon_s_model_is_compared_by_kernel_name_and_path_states() -> None:
    show = {
        "maps": [
            {"name": "soak_dm", "sysfs": "dm-0", "backend": "dm",
             "paths": [{"name": "sda", "kernel_state": "active"},
                       {"name": "sdc", "kernel_state": "failed"}]},
            {"name": "soak_md", "sysfs": "md127", "backend": "md",
             "paths": [{"name": "sdb", "kernel_state": "active"}]},
        ]
    }
    mine = soak.daemon_model(show)
    assert mine == {
        "dm-0": ("dm", {"sda": "active", "sdc": "failed"}),
        "md127": ("md", {"sdb": "active"}),
    }
    assert soak.model_difference(mine, dict(mine)) == ""
    kernel = {**mine, "dm-0": ("dm", {"sda": "active", "sdc": "active"})}
    del kernel["md127"]
    assert soak.model_difference(mine, kernel) == (
        "dm-0: daemon ('dm', {'sda': 'active', 'sdc': 'failed'}), "
        "kernel ('dm', {'sda': 'active', 'sdc': 'active'}); "
        "md127: daemon ('md', {'sdb': 'active'}), kernel None"
    )


def _job(error: int, ios: int) -> FioJob:
    return FioJob("map0", error, 4096 * ios, 4096 * ios, ios, 0.01, 0.01)


def test_fio_s_figures_tell_io_errors_from_bad_blocks() -> None:
    jobs = [_job(0, 100), _job(errno.EIO, 5), _job(errno.EILSEQ, 7), _job(0, 1)]
    assert soak.fio_figures(jobs) == {
        "io_operations": 113.0,
        "io_errors": 1.0,
        "verify_failures": 1.0,
        "fio_jobs": 4.0,
    }
