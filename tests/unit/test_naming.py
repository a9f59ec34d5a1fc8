"""dmpath.policy.naming (pure) and dmpath.policy.files (atomic I/O)."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmpath import config as c
from dmpath.policy import files, naming
from dmpath.policy.naming import Binding, Bindings

#: real outputs captured in the lab (tests/fixtures, see its README)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "multipath-tools"


def opts(alias: str | None = None, friendly: bool = True, prefix: str = "mpath") -> c.MapOptions:
    cfg = c.parse_config(
        f"[defaults]\nuser_friendly_names = {'true' if friendly else 'false'}\n"
        f'alias_prefix = "{prefix}"\n'
        + (f'[[multipaths]]\nwwid = "w0"\nalias = "{alias}"\n' if alias else "")
    )
    return c.effective_options(cfg, "w0", "", "")


# --------------------------------------------------------------------------- fixtures


def test_multipath_tools_bindings_fixture_parses() -> None:
    text = (FIXTURES / "bindings").read_text()
    b, warnings = naming.parse_bindings(text)
    assert warnings == []
    assert b.entries == (
        Binding("mpatha", "1Linux_scsi_debug_2000"),
        Binding("mpathb", "1Linux_scsi_debug_2001"),
    )
    # our rewrite keeps multipath-tools' version line and its data lines exactly
    out = naming.format_bindings(b)
    assert out.splitlines()[0] == text.splitlines()[0]
    data = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert [ln for ln in out.splitlines() if ln and not ln.startswith("#")] == data
    assert naming.parse_bindings(out) == (b, [])


def test_multipath_tools_wwids_fixture_parses() -> None:
    text = (FIXTURES / "wwids").read_text()
    wwids, warnings = naming.parse_wwids(text)
    assert warnings == []
    assert wwids == ("1Linux_scsi_debug_2000", "1Linux_scsi_debug_2001")
    out = naming.format_wwids(wwids)
    assert out.splitlines()[0] == text.splitlines()[0]
    data = [ln for ln in text.splitlines() if ln.startswith("/")]
    assert [ln for ln in out.splitlines() if ln.startswith("/")] == data


def test_next_alias_after_the_fixture_is_mpathc() -> None:
    b, _ = naming.parse_bindings((FIXTURES / "bindings").read_text())
    alias, new = naming.assign_alias(b, "1Linux_scsi_debug_2002", "mpath")
    assert alias == "mpathc"
    assert new.entries[-1] == Binding("mpathc", "1Linux_scsi_debug_2002")


# --------------------------------------------------------------------------- sequence


@pytest.mark.parametrize(
    ("n", "suffix"),
    [
        (1, "a"),
        (2, "b"),
        (26, "z"),
        (27, "aa"),
        (28, "ab"),
        (52, "az"),
        (53, "ba"),
        (702, "zz"),
        (703, "aaa"),
        (18278, "zzz"),
        (18279, "aaaa"),
        (2**31 - 1, "fxshrxw"),  # multipath-tools' largest id (INT_MAX)
    ],
)
def test_alias_sequence(n: int, suffix: str) -> None:
    assert naming.alias_for_id(n, "mpath") == "mpath" + suffix
    assert naming.id_of_alias("mpath" + suffix, "mpath") == n


def test_alias_sequence_is_gapless_through_z_to_aa() -> None:
    names = [naming.alias_for_id(n, "") for n in range(1, 30)]
    assert names[:26] == [chr(ord("a") + i) for i in range(26)]
    assert names[26:] == ["aa", "ab", "ac"]


@pytest.mark.parametrize("alias", ["mpath", "mpathA", "mpath1", "mpatha1", "disk", "mpathaaaaaaaa"])
def test_id_of_alias_rejects_other_names(alias: str) -> None:
    assert naming.id_of_alias(alias, "mpath") is None


def test_alias_for_id_starts_at_one() -> None:
    with pytest.raises(ValueError):
        naming.alias_for_id(0, "mpath")


@given(st.integers(1, 26**7))
def test_alias_id_round_trip(n: int) -> None:
    assert naming.id_of_alias(naming.alias_for_id(n, "p"), "p") == n


# --------------------------------------------------------------------------- assignment


def test_assign_fills_the_lowest_free_number() -> None:
    b = Bindings((Binding("mpatha", "w1"), Binding("mpathc", "w3"), Binding("data", "w4")))
    alias, new = naming.assign_alias(b, "w2", "mpath")
    assert alias == "mpathb"
    assert new.entries == (*b.entries, Binding("mpathb", "w2"))
    alias, _ = naming.assign_alias(new, "w5", "mpath")
    assert alias == "mpathd"


def test_assign_is_stable_for_a_bound_wwid() -> None:
    b = Bindings((Binding("mpathq", "w1"),))
    assert naming.assign_alias(b, "w1", "mpath") == ("mpathq", b)


def test_assign_rebinds_a_wwid_whose_name_became_taken() -> None:
    b = Bindings((Binding("mpatha", "w1"), Binding("mpathb", "w2")))
    alias, new = naming.assign_alias(b, "w1", "mpath", taken={"mpatha"})
    assert alias == "mpathc"
    assert new.entries == (Binding("mpathb", "w2"), Binding("mpathc", "w1"))


def test_assign_skips_taken_names() -> None:
    alias, _ = naming.assign_alias(Bindings(), "w1", "mpath", taken={"mpatha", "mpathb"})
    assert alias == "mpathc"


def test_assign_after_z_gives_aa() -> None:
    b = Bindings(tuple(Binding(naming.alias_for_id(n, "mpath"), f"w{n}") for n in range(1, 27)))
    assert naming.assign_alias(b, "new", "mpath")[0] == "mpathaa"


def test_assign_refuses_unstorable_wwids() -> None:
    for bad in ("", "a b", "a/b", "a#b"):
        with pytest.raises(ValueError):
            naming.assign_alias(Bindings(), bad, "mpath")


_wwid = st.from_regex(r"\A[0-9A-Za-z_.:-]{1,24}\Z")


@settings(max_examples=100, deadline=None)
@given(st.lists(_wwid, unique=True, min_size=1, max_size=60), st.randoms())
def test_many_wwids_get_unique_stable_aliases(wwids: list[str], rnd: random.Random) -> None:
    b = Bindings()
    given_out: dict[str, str] = {}
    for w in wwids:
        alias, b = naming.assign_alias(b, w, "mpath")
        given_out[w] = alias
    assert len(set(given_out.values())) == len(wwids)
    assert sorted(naming.id_of_alias(a, "mpath") or 0 for a in given_out.values()) == list(
        range(1, len(wwids) + 1)
    )
    # a restart: the file is written and read back; asking again, in any order, changes nothing
    reread, warnings = naming.parse_bindings(naming.format_bindings(b))
    assert warnings == [] and reread == b
    again = list(wwids)
    rnd.shuffle(again)
    for w in again:
        alias, reread = naming.assign_alias(reread, w, "mpath")
        assert alias == given_out[w]
    assert reread == b


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.from_regex(r"\Ampath[a-z]{1,2}\Z"), _wwid), max_size=20),
    _wwid,
    st.sets(st.from_regex(r"\Ampath[a-z]{1,2}\Z"), max_size=5),
)
def test_a_new_alias_is_never_one_bound_or_taken(
    lines: list[tuple[str, str]], wwid: str, taken: set[str]
) -> None:
    b, _ = naming.parse_bindings("".join(f"{a} {w}\n" for a, w in lines))
    if b.alias_of(wwid) is not None:
        return
    alias, new = naming.assign_alias(b, wwid, "mpath", taken)
    assert b.wwid_of(alias) is None
    assert alias not in taken
    assert new.wwid_of(alias) == wwid


# --------------------------------------------------------------------------- damaged files


def test_bad_lines_are_skipped_with_warnings() -> None:
    text = textwrap.dedent(
        """\
        # comment
        mpatha w1   # trailing comment
        mpathb
        mpathc w3 extra words
        bad/alias w4

        mpatha w5
        mpathd w1
        mpathe w6\r
        mpatha w1
        """
    )
    b, warnings = naming.parse_bindings(text)
    assert b.entries == (
        Binding("mpatha", "w1"),
        Binding("mpathc", "w3"),
        Binding("mpathe", "w6"),
    )
    joined = "\n".join(warnings)
    assert "line 3: alias 'mpathb' has no WWID" in joined
    assert "line 4: extra text" in joined
    assert "line 5: invalid alias 'bad/alias'" in joined
    assert "line 7: alias mpatha already bound to w1" in joined
    assert "line 8: WWID w1 already bound to mpatha" in joined
    assert "line 10: duplicate" in joined
    assert len(warnings) == 6


@given(st.text(max_size=400))
def test_parsers_never_crash(text: str) -> None:
    b, _ = naming.parse_bindings(text)
    assert len(b.aliases()) == len(b.entries)
    assert len({e.wwid for e in b.entries}) == len(b.entries)
    naming.parse_bindings(naming.format_bindings(b))
    wwids, _ = naming.parse_wwids(text)
    assert naming.parse_wwids(naming.format_wwids(wwids)) == (wwids, [])


def test_wwids_file_lines() -> None:
    text = "# c\n/w1/\n/w2/ trailing\nw3\n/w4\n/w1/\n  /w5/\n//\n"
    wwids, warnings = naming.parse_wwids(text)
    assert wwids == ("w1", "w2", "w5")
    assert len(warnings) == 4
    assert naming.add_wwid(wwids, "w2") is wwids
    assert naming.add_wwid(wwids, "w9") == ("w1", "w2", "w5", "w9")
    assert naming.remove_wwid(wwids, "w2") == ("w1", "w5")
    with pytest.raises(ValueError):
        naming.format_wwids(["a/b"])


# --------------------------------------------------------------------------- map names


def test_map_name_alias_beats_friendly_beats_wwid() -> None:
    b = Bindings((Binding("mpatha", "w0"),))
    assert naming.map_name("w0", opts(alias="oradata"), b) == ("oradata", b)
    assert naming.map_name("w0", opts(), b) == ("mpatha", b)
    assert naming.map_name("w0", opts(friendly=False), b) == ("w0", b)
    name, new = naming.map_name("w0", opts(prefix="disk"), Bindings())
    assert name == "diska" and new.alias_of("w0") == "diska"


def test_map_name_gives_up_a_binding_whose_name_is_taken() -> None:
    b = Bindings((Binding("mpatha", "w0"), Binding("mpathb", "w9")))
    name, new = naming.map_name("w0", opts(), b, taken={"mpatha"})
    assert name == "mpathc"
    assert new.alias_of("w0") == "mpathc" and new.wwid_of("mpatha") is None


def test_drop_conflicts_with_configured_aliases() -> None:
    b = Bindings((Binding("mpatha", "w1"), Binding("db", "w2"), Binding("web", "w3")))
    kept, warnings = naming.drop_conflicts(b, {"db": "w9", "web": "w3"})
    assert kept.entries == (Binding("mpatha", "w1"), Binding("web", "w3"))
    assert len(warnings) == 1 and "db" in warnings[0]


def test_bindings_add_refuses_duplicates() -> None:
    b = Bindings((Binding("mpatha", "w1"),))
    for alias, wwid in (("mpatha", "w2"), ("mpathb", "w1"), ("a b", "w3"), ("x", "")):
        with pytest.raises(ValueError):
            b.add(alias, wwid)


# --------------------------------------------------------------------------- files


def test_bind_alias_and_remember_wwid_in_files(tmp_path: Path) -> None:
    bfile = tmp_path / "etc" / "bindings"
    wfile = tmp_path / "etc" / "wwids"
    assert files.bind_alias(bfile, "w1", "mpath") == "mpatha"
    assert files.bind_alias(bfile, "w2", "mpath", taken={"mpathb"}) == "mpathc"
    mtime = bfile.stat().st_mtime_ns
    assert files.bind_alias(bfile, "w1", "mpath") == "mpatha"
    assert bfile.stat().st_mtime_ns == mtime  # not rewritten
    assert bfile.read_text().endswith("mpatha w1\nmpathc w2\n")
    assert files.read_wwids(wfile) == set()
    assert files.remember_wwid(wfile, "w1") is True
    assert files.remember_wwid(wfile, "w1") is False
    assert files.remember_wwid(wfile, "w2") is True
    assert files.load_wwids(wfile) == ("w1", "w2")
    assert files.forget_wwid(wfile, "w1") is True
    assert files.forget_wwid(wfile, "w1") is False
    assert files.read_wwids(wfile) == {"w2"}
    assert not [p for p in bfile.parent.iterdir() if p.name.endswith(".tmp")]


def test_copied_multipath_tools_files_carry_over(tmp_path: Path) -> None:
    bfile = tmp_path / "bindings"
    bfile.write_bytes((FIXTURES / "bindings").read_bytes())
    assert files.bind_alias(bfile, "1Linux_scsi_debug_2001", "mpath") == "mpathb"
    assert files.bind_alias(bfile, "1Linux_scsi_debug_2002", "mpath") == "mpathc"
    lines = bfile.read_text().splitlines()
    assert lines[0] == "# Multipath bindings, Version : 1.0"
    assert lines[-3:] == [
        "mpatha 1Linux_scsi_debug_2000",
        "mpathb 1Linux_scsi_debug_2001",
        "mpathc 1Linux_scsi_debug_2002",
    ]


def test_bad_lines_in_a_file_are_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bfile = tmp_path / "bindings"
    bfile.write_bytes(b"mpatha w1\nmpathb\n\xff\xfe garbage\n")
    assert files.load_bindings(bfile).entries[0] == Binding("mpatha", "w1")
    assert "has no WWID" in caplog.text


def test_write_atomic_keeps_mode_and_cleans_up(tmp_path: Path) -> None:
    p = tmp_path / "f"
    files.write_atomic(p, "one\n")
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    p.chmod(0o600)
    files.write_atomic(p, "two\n")
    assert p.read_text() == "two\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f"]


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    p = tmp_path / "bindings"
    p.write_text("old\n")

    def boom(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(files.StateFileError, match="No space left on device") as ei:
        files.write_atomic(p, "new\n" * 1000)
    monkeypatch.undo()
    assert ei.value.path == str(p)
    assert p.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["bindings"]


def test_unreadable_state_file_is_a_dmpath_error(tmp_path: Path) -> None:
    with pytest.raises(files.StateFileError, match="cannot read"):
        files.read_text(tmp_path)  # a directory


_WRITER = """
import sys
from dmpath.policy.files import write_atomic
path, a, b = sys.argv[1], sys.argv[2] * 50000, sys.argv[3] * 70000
write_atomic(path, a)
print("ready", flush=True)
while True:
    write_atomic(path, b)
    write_atomic(path, a)
"""


def test_killed_writer_leaves_old_or_new_content(tmp_path: Path) -> None:
    """SIGKILL a process that rewrites the file in a loop: it is always one whole version."""
    p = tmp_path / "bindings"
    a, b = "mpatha w1\n", "mpathb w2\n"
    for delay in (0.0, 0.01, 0.03, 0.07, 0.13):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(p), a, b],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"  # the first version is in place
        time.sleep(delay)  # crash injection at a varying moment, not synchronisation
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        content = p.read_text()
        assert content in (a * 50000, b * 70000)
        for leftover in tmp_path.glob(".bindings.*.tmp"):
            leftover.unlink()  # a killed writer may leave its temporary file, never the target


# --------------------------------------------------------------------------- batches


def _one_by_one(
    bindings: naming.Bindings, wwids: list[str], taken: set[str]
) -> tuple[dict[str, str], naming.Bindings]:
    out: dict[str, str] = {}
    for w in wwids:
        out[w], bindings = naming.assign_alias(bindings, w, "mpath", taken)
    return out, bindings


def test_assign_aliases_names_a_batch_exactly_as_one_at_a_time() -> None:
    start = naming.Bindings(
        (naming.Binding("mpatha", "3600a"), naming.Binding("mpathc", "3600c"),
         naming.Binding("mpathd", "3600d"))
    )
    wwids = ["3600b", "3600a", "3600e", "3600d", "3600f", "3600b"]
    taken = {"mpathd", "mpathe"}  # mpathd's binding must be given up, mpathe skipped
    got, after = naming.assign_aliases(start, wwids, "mpath", taken)
    want, want_after = _one_by_one(start, wwids, taken)
    assert got == want
    assert {(b.alias, b.wwid) for b in after.entries} == {
        (b.alias, b.wwid) for b in want_after.entries
    }
    assert got["3600d"] not in ("mpathd", "mpathe")


def test_assign_aliases_of_known_wwids_changes_nothing() -> None:
    start = naming.Bindings((naming.Binding("mpatha", "3600a"),))
    got, after = naming.assign_aliases(start, ["3600a"], "mpath")
    assert got == {"3600a": "mpatha"} and after is start


def test_assign_aliases_at_coldplug_scale_is_linear() -> None:
    wwids = [f"3600{i:06x}" for i in range(4096)]
    got, after = naming.assign_aliases(naming.Bindings(), wwids, "mpath")
    assert len(set(got.values())) == 4096 and len(after.entries) == 4096
    assert got[wwids[0]] == "mpatha" and got[wwids[26]] == "mpathaa"


def test_add_wwids_appends_only_new_ones_once() -> None:
    assert naming.add_wwids(("a1",), ["b2", "a1", "b2"]) == ("a1", "b2")
    old = ("a1",)
    assert naming.add_wwids(old, ["a1"]) is old
