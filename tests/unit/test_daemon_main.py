"""dmpathd's start-up checks and its systemd notifications."""

from __future__ import annotations

import pathlib
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmpath.daemon.main import main, pids_named
from dmpath.daemon.notify import sd_notify


def test_finds_a_running_multipathd(tmp_path: pathlib.Path) -> None:
    for pid, comm in ((1, "systemd"), (4242, "multipathd"), (77, "dmpathd")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
    (tmp_path / "self").mkdir()
    (tmp_path / "999").mkdir()  # vanished process: no comm file
    assert pids_named("multipathd", str(tmp_path)) == [4242]
    assert pids_named("dmpathd", str(tmp_path)) == [77]


def test_check_config_reports_key_and_line(tmp_path: pathlib.Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "dmpath.toml"
    cfg.write_text('[defaults]\npolling_interval = 1\nno_path_retry = "sometimes"\n')
    assert main(["-c", str(cfg), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}:3" in err and "no_path_retry" in err
    cfg.write_text('[defaults]\nno_path_retry = "queue"\n')
    assert main(["-c", str(cfg), "--check-config"]) == 0


def test_sd_notify_sends_one_datagram(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": path})
        assert srv.recv(100) == b"READY=1"
    assert not sd_notify("READY=1", {})  # outside systemd: nothing to do
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_multipath_tools_rules_are_found_unless_masked(tmp_path: pathlib.Path) -> None:
    from dmpath.daemon.main import multipath_tools_rules

    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir()
    lib.mkdir()
    assert multipath_tools_rules((str(etc), str(lib))) == []
    (lib / "56-dm-mpath.rules").write_text("# rules\n")
    (lib / "60-kpartx.rules").write_text("# kpartx may stay\n")
    assert multipath_tools_rules((str(etc), str(lib))) == [str(lib / "56-dm-mpath.rules")]
    (etc / "56-dm-mpath.rules").symlink_to("/dev/null")  # masked by the administrator
    (lib / "56-dm-mpath.rules").unlink()
    assert multipath_tools_rules((str(etc), str(lib))) == []


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dmpathd: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "argv", [["--bogus"], ["-c"], ["--socket"], ["-v", "x"], ["--check-config=yes"]]
)
def test_a_bad_command_line_is_one_error_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--check-config"])
    assert info.value.code == 2
    assert "--help" in _one_error_line(capsys.readouterr().err)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from(["-c", "--config", "--socket", "-v", "-vv", "--once", "--bogus", "-"])
        | st.text(max_size=6),
        max_size=4,
    ),
    st.sampled_from(
        ["[defaults]\nno_path_retry = 1" + "0" * 5000, '"a\\nb" = 1', "[defaults", "x = 1", ""]
    ),
)
def test_start_up_errors_are_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], argv: list[str], text: str
) -> None:
    cfg = tmp_path / "dmpath.toml"
    cfg.write_text(text)
    capsys.readouterr()
    try:
        code = main([*argv, "--check-config", "-c", str(cfg)])
    except SystemExit as exc:  # argparse: a usage error
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    if code == 0:
        assert out == f"{cfg}: ok\n" and not err
    else:
        assert code == 2
        _one_error_line(err)
