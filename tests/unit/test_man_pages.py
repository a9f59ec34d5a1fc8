"""Every man page renders without groff warnings, and documents every CLI command."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

MAN = pathlib.Path(__file__).resolve().parents[2] / "man"
PAGES = sorted(MAN.glob("*.[0-9]"))


def test_the_three_pages_exist() -> None:
    assert {p.name for p in PAGES} >= {"dmpathd.8", "mpathctl.8", "dmpath.toml.5"}


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_renders_without_warnings(page: pathlib.Path) -> None:
    res = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
        capture_output=True, text=True, check=False,
    )
    assert res.returncode == 0
    assert res.stderr == ""


def test_daemon_page_names_every_socket_operation() -> None:
    from dmpath.protocol import OPS

    text = (MAN / "dmpathd.8").read_text().replace("\\-", "-").replace("\\_", "_")
    missing = [op for op in OPS if op not in text]
    assert missing == []
