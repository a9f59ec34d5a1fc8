"""The installer: files where the system looks, console-script paths that exist, the
administrator's config never overwritten."""

from __future__ import annotations

import os
import pathlib

import pytest

from dmpath import install


def fake_bindir(tmp_path: pathlib.Path, programs: tuple[str, ...] = install.PROGRAMS) -> str:
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    for prog in programs:
        (bindir / prog).write_text("#!/bin/sh\n")
        (bindir / prog).chmod(0o755)
    return str(bindir)


def test_every_shipped_path_is_rewritten_and_nothing_else(tmp_path: pathlib.Path) -> None:
    bindir = fake_bindir(tmp_path)
    steps = {s.source: s for s in install.plan(install.source_tree(), str(tmp_path), bindir)}
    unit = steps["systemd/dmpathd.service"].text
    rule = steps["udev-rules/62-dmpath.rules"].text
    assert f"ExecStart={bindir}/dmpathd\n" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert f'IMPORT{{program}}="{bindir}/dmpath-udev $kernel"' in rule
    assert f'RUN+="{bindir}/dmpath-udev --assemble $kernel"' in rule
    for s in steps.values():
        assert "/usr/bin/dmpath" not in s.text, s.source
    # the man pages are copied as they are
    src = install.source_tree()
    assert steps["man/dmpathd.8"].text == (src / "man/dmpathd.8").read_text()


def test_apply_installs_then_reports_unchanged_and_keeps_the_admins_config(
    tmp_path: pathlib.Path,
) -> None:
    bindir = fake_bindir(tmp_path)
    root = tmp_path / "root"
    mine = root / "etc/dmpath/dmpath.toml"
    mine.parent.mkdir(parents=True)
    mine.write_text("[defaults]\npolling_interval = 2\n")
    steps = install.plan(install.source_tree(), str(root), bindir)

    first = install.apply(steps)
    assert sum(line.startswith("installed") for line in first) == len(steps) - 1
    assert any(line.startswith("kept") and str(mine) in line for line in first)
    assert mine.read_text() == "[defaults]\npolling_interval = 2\n"
    unit = root / "etc/systemd/system/dmpathd.service"
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    assert not [p for p in unit.parent.iterdir() if p.name.startswith(".dmpath-install")]

    again = install.apply(steps)
    assert all(line.startswith(("unchanged", "kept")) for line in again), again


def test_dry_run_changes_nothing(tmp_path: pathlib.Path) -> None:
    bindir = fake_bindir(tmp_path)
    root = tmp_path / "root"
    lines = install.apply(install.plan(install.source_tree(), str(root), bindir), dry_run=True)
    assert lines and all(line.startswith("would install") for line in lines)
    assert not root.exists()


def test_missing_console_scripts_are_a_clear_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    rc = install.main(["--root", str(tmp_path / "root"), "--bindir", str(empty)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "dmpathd, dmpath-udev not found in" in err and "--bindir" in err
    assert "Traceback" not in err
    assert not os.path.exists(tmp_path / "root")


def test_main_installs_into_a_root(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bindir = fake_bindir(tmp_path)
    root = tmp_path / "root"
    assert install.main(["--root", str(root), "--bindir", bindir]) == 0
    out = capsys.readouterr().out
    assert "installed" in out and "next:" not in out  # not the live system: no advice
    assert (root / "etc/udev/rules.d/62-dmpath.rules").exists()
    assert (root / "usr/local/share/man/man5/dmpath.toml.5").exists()


def _compat_bindir(tmp_path: pathlib.Path) -> str:
    return fake_bindir(tmp_path, install.PROGRAMS + tuple(install.COMPAT.values()))


def test_compat_links_only_when_asked(tmp_path: pathlib.Path) -> None:
    bindir = _compat_bindir(tmp_path)
    root = tmp_path / "root"
    assert install.main(["--root", str(root), "--bindir", bindir]) == 0
    assert not (root / bindir.lstrip("/") / "multipath").exists()
    assert install.main(["--root", str(root), "--bindir", bindir, "--compat"]) == 0
    for name, command in install.COMPAT.items():
        link = root / bindir.lstrip("/") / name
        assert os.readlink(link) == os.path.join(bindir, command)
    assert install.apply_compat(str(root), bindir) == [
        f"unchanged {root / bindir.lstrip('/') / name}" for name in install.COMPAT
    ]


def test_compat_refused_over_multipath_tools(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    (real := root / "usr/sbin/multipathd").write_text("ELF")  # multipath-tools' program
    bindir = _compat_bindir(tmp_path)
    assert install.main(["--root", str(root), "--bindir", bindir, "--compat"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "multipath-tools is installed" in err and str(real) in err
    # a refusal installs nothing at all
    assert not (root / "etc").exists()
    assert not (root / bindir.lstrip("/") / "multipath").exists()
