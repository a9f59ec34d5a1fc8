"""The os-brick virtualenv is made once, and again only if its pins changed or its
install did not finish."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import pytest

from dmpath.lab import osbrick


@pytest.fixture
def venv(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """A virtualenv path under tmp_path and a runner that records instead of running."""
    monkeypatch.setattr(osbrick, "VENV", str(tmp_path / "venv"))
    monkeypatch.setattr(osbrick, "DONE_FILE", str(tmp_path / "venv" / "done"))
    calls: list[list[str]] = []

    def fake_run(tool: str, args: Sequence[str] = (), **_kw: object) -> None:
        calls.append([tool, *args])
        (tmp_path / "venv").mkdir(exist_ok=True)

    monkeypatch.setattr(osbrick, "run", fake_run)
    return calls


def test_installs_the_pinned_os_brick_once(venv: list[list[str]]) -> None:
    py = osbrick.ensure_venv(lambda _m: None)
    assert py == osbrick.python()
    assert [c[1:3] for c in venv] == [["-m", "venv"], ["-m", "pip"]]
    assert f"os-brick=={osbrick.OS_BRICK_VERSION}" in venv[1]
    assert all("==" in r for r in osbrick.REQUIREMENTS)  # every package pinned
    assert osbrick.is_ready()
    osbrick.ensure_venv(lambda _m: None)
    assert len(venv) == 2  # the second call found it made


def test_made_again_when_the_pins_changed(
    venv: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    osbrick.ensure_venv(lambda _m: None)
    monkeypatch.setattr(osbrick, "REQUIREMENTS", ("os-brick==9.9.9",))
    assert not osbrick.is_ready()
    osbrick.ensure_venv(lambda _m: None)
    assert len(venv) == 4
    assert "--clear" in venv[2]


def test_an_unfinished_install_is_not_taken_for_a_made_one(
    venv: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def pip_fails(tool: str, args: Sequence[str] = (), **_kw: object) -> None:
        if "pip" in args:
            raise RuntimeError("no network")

    monkeypatch.setattr(osbrick, "run", pip_fails)
    with pytest.raises(RuntimeError):
        osbrick.ensure_venv(lambda _m: None)
    assert not osbrick.is_ready()
