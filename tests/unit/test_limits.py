"""The daemon's open-file limit plan, and a checker that runs out of descriptors."""

from __future__ import annotations

import errno
import os

import pytest

from dmpath.daemon.checkers import PathChecker
from dmpath.daemon.limits import plan_nofile
from dmpath.model import Check

INF = -1  # resource.RLIM_INFINITY on Linux


def test_both_limits_go_up_to_the_kernels_ceiling() -> None:
    assert plan_nofile(1024, 4096, 1048576) == (1048576, 1048576)
    assert plan_nofile(1024, 524288, 1048576) == (1048576, 1048576)


def test_without_a_ceiling_the_soft_limit_takes_the_hard_one() -> None:
    assert plan_nofile(1024, 4096, None) == (4096, 4096)


def test_nothing_is_ever_lowered() -> None:
    assert plan_nofile(2_000_000, 2_000_000, 1048576) == (2_000_000, 2_000_000)
    assert plan_nofile(1024, INF, 1048576) == (1048576, INF)
    assert plan_nofile(INF, INF, 1048576) == (INF, INF)


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOMEM])
def test_a_daemon_out_of_descriptors_never_calls_the_path_down(
    monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refuse(*_a: object, **_k: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "open", refuse)
    check, reason = PathChecker("/dev/sdq", "tur").check()
    assert check == Check.PENDING
    assert reason == f"dmpathd cannot open /dev/sdq: {os.strerror(code)}"


def test_a_path_that_refuses_the_open_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> int:
        raise OSError(errno.ENXIO, os.strerror(errno.ENXIO))

    monkeypatch.setattr(os, "open", refuse)
    check, _reason = PathChecker("/dev/sdq", "tur").check()
    assert check == Check.DOWN
