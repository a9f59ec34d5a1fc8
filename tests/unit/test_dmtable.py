"""dm multipath tables and statuses: parsed from real 6.1 captures, built back word for word."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmpath.errors import DmpathError, ParseError
from dmpath.kernel.dmtable import (
    QUEUE_MODES,
    DmDevice,
    DmInfo,
    Features,
    GroupState,
    GroupStatus,
    HardwareHandler,
    MultipathStatus,
    MultipathTable,
    PathGroup,
    PathState,
    PathStatus,
    TableError,
    TablePath,
    as_reported,
    decode_path_args,
    decode_path_status,
    format_status,
    format_table,
    parse_info_columns,
    parse_ls,
    parse_status,
    parse_table,
    selector_path_args,
    validate_table,
)

FIXTURES = Path(
    os.environ.get("DMPATH_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures")
)


def fixture(rel: str) -> str:
    return (FIXTURES / rel).read_text()


def norm(text: str) -> str:
    return " ".join(text.split())


A, F = PathState.ACTIVE, PathState.FAILED
GA, GE, GD = GroupState.ACTIVE, GroupState.ENABLED, GroupState.DISABLED
ST2 = ("1", "1")  # service-time repeat_count, relative_throughput as the kernel reports them


def tp(dev: str, *args: str) -> TablePath:
    return TablePath(dev, args)


def ps(dev: str, state: PathState, fails: int, *args: str) -> PathStatus:
    return PathStatus(dev, state, fails, args)


# --------------------------------------------------------------------------- tables

TWO_GROUPS = (
    PathGroup("service-time", (tp("8:0", *ST2),)),
    PathGroup("round-robin", (tp("8:32", "1"),)),
)

TABLE_CASES = [
    (
        "dm/dm_table_2pg.txt",
        "0 65536 multipath 1 queue_if_no_path 0 2 1 service-time 0 1 2 8:0 1 1 "
        "round-robin 0 1 1 8:32 1",
        MultipathTable(65536, TWO_GROUPS, Features(queue_if_no_path=True)),
    ),
    (
        # after fail_if_no_path: the kernel no longer reports queue_if_no_path
        "dm/dm_table_after_msgs.txt",
        "0 65536 multipath 0 0 2 1 service-time 0 1 2 8:0 1 1 round-robin 0 1 1 8:32 1",
        MultipathTable(65536, TWO_GROUPS),
    ),
    (
        "dm/dm_table_ql_alua.txt",
        "0 65536 multipath 0 1 alua 1 1 queue-length 0 2 1 8:0 1 8:32 1",
        MultipathTable(
            65536,
            (PathGroup("queue-length", (tp("8:0", "1"), tp("8:32", "1"))),),
            hw_handler=HardwareHandler("alua"),
        ),
    ),
]


@pytest.mark.parametrize(("rel", "raw", "expected"), TABLE_CASES, ids=[c[0] for c in TABLE_CASES])
def test_table_fixtures(rel: str, raw: str, expected: MultipathTable) -> None:
    text = fixture(rel)
    assert norm(text) == raw  # the capture is what this test shows
    t = parse_table(text)
    assert t == expected
    assert format_table(t) == norm(text)


def _multipathd_lines() -> list[str]:
    return [
        ln
        for ln in fixture("multipath-tools/multipathd_dm_tables.txt").splitlines()
        if ln.strip() and not ln.startswith("==")
    ]


def _addmap_tables() -> list[str]:
    return re.findall(r"addmap \[(.*)\]", fixture("multipath-tools/multipathd_log.txt"))


def test_multipathd_tables_round_trip() -> None:
    """Tables and statuses of maps multipath-tools 0.9.4 built on the same paths."""
    lines = _multipathd_lines()
    tables = [ln for ln in lines if ln.split()[3] != "2"]
    statuses = [ln for ln in lines if ln.split()[3] == "2"]
    assert len(tables) == 2 and len(statuses) == 2
    for ln in tables:
        t = parse_table(ln)
        assert t.hw_handler == HardwareHandler("alua")
        assert [g.selector for g in t.groups] == ["service-time", "service-time"]
        assert all(len(g.paths) == 1 and g.paths[0].args == ST2 for g in t.groups)
        assert format_table(t) == norm(ln)
    for ln in statuses:
        s = parse_status(ln)
        assert s.pg_init_count == 1  # alua initialised the group once
        assert [g.state for g in s.groups] == [GA, GE]
        assert format_status(s) == norm(ln)


def test_multipathd_addmap_round_trip_and_kernel_readback() -> None:
    """multipathd loads service-time with ONE path arg; the kernel reports two."""
    loaded = [parse_table(x) for x in _addmap_tables()]
    assert len(loaded) == 2
    for text, t in zip(_addmap_tables(), loaded, strict=True):
        assert format_table(t) == norm(text)
        assert t.groups[0].paths[0].args == ("1",)
    reported = [parse_table(ln) for ln in _multipathd_lines() if ln.split()[3] != "2"]
    assert [as_reported(t) for t in loaded] == reported


# --------------------------------------------------------------------------- statuses


def two_group_status(
    next_pg: int, g1: GroupState, p1: PathStatus, g2: GroupState, p2: PathStatus
) -> MultipathStatus:
    return MultipathStatus(65536, (GroupStatus(g1, (p1,)), GroupStatus(g2, (p2,))), next_pg)


STATUS_CASES = [
    (
        "dm/dm_status_2pg_healthy.txt",
        "0 65536 multipath 2 0 0 0 2 1 A 0 1 2 8:0 A 0 0 1 E 0 1 0 8:32 A 0",
        two_group_status(1, GA, ps("8:0", A, 0, "0", "1"), GE, ps("8:32", A, 0)),
    ),
    (
        "dm/dm_status_after_io.txt",
        "0 65536 multipath 2 0 0 0 2 1 A 0 1 2 8:0 A 0 0 1 E 0 1 0 8:32 A 0",
        two_group_status(1, GA, ps("8:0", A, 0, "0", "1"), GE, ps("8:32", A, 0)),
    ),
    (
        "dm/dm_status_one_failed.txt",
        "0 65536 multipath 2 0 0 0 2 2 E 0 1 2 8:0 F 1 0 1 A 0 1 0 8:32 A 0",
        two_group_status(2, GE, ps("8:0", F, 1, "0", "1"), GA, ps("8:32", A, 0)),
    ),
    (
        # switch_group 2: no group is current until the next I/O
        "dm/dm_status_switched.txt",
        "0 65536 multipath 2 0 0 0 2 2 E 0 1 2 8:0 F 1 0 1 E 0 1 0 8:32 A 0",
        two_group_status(2, GE, ps("8:0", F, 1, "0", "1"), GE, ps("8:32", A, 0)),
    ),
    (
        "dm/dm_status_group_disabled.txt",
        "0 65536 multipath 2 0 0 0 2 2 D 0 1 2 8:0 F 1 0 1 E 0 1 0 8:32 A 0",
        two_group_status(2, GD, ps("8:0", F, 1, "0", "1"), GE, ps("8:32", A, 0)),
    ),
    (
        # queue_io is not queue_if_no_path: both all-failed captures read the same
        "dm/dm_status_all_failed_queueing.txt",
        "0 65536 multipath 2 0 0 0 2 2 D 0 1 2 8:0 F 1 0 1 E 0 1 0 8:32 F 1",
        two_group_status(2, GD, ps("8:0", F, 1, "0", "1"), GE, ps("8:32", F, 1)),
    ),
    (
        "dm/dm_status_all_failed_noqueue.txt",
        "0 65536 multipath 2 0 0 0 2 2 D 0 1 2 8:0 F 1 0 1 E 0 1 0 8:32 F 1",
        two_group_status(2, GD, ps("8:0", F, 1, "0", "1"), GE, ps("8:32", F, 1)),
    ),
    (
        # reinstated paths keep their cumulative fail count
        "dm/dm_status_reinstated.txt",
        "0 65536 multipath 2 0 0 0 2 1 A 0 1 2 8:0 A 1 0 1 E 0 1 0 8:32 A 1",
        two_group_status(1, GA, ps("8:0", A, 1, "0", "1"), GE, ps("8:32", A, 1)),
    ),
    (
        "dm/dm_status_ql_alua.txt",
        "0 65536 multipath 2 0 1 0 1 1 A 0 2 1 8:0 A 0 0 8:32 A 0 0",
        MultipathStatus(
            65536,
            (GroupStatus(GA, (ps("8:0", A, 0, "0"), ps("8:32", A, 0, "0"))),),
            1,
            pg_init_count=1,
        ),
    ),
]


@pytest.mark.parametrize(("rel", "raw", "expected"), STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
def test_status_fixtures(rel: str, raw: str, expected: MultipathStatus) -> None:
    text = fixture(rel)
    assert norm(text) == raw
    s = parse_status(text)
    assert s == expected
    assert format_status(s) == norm(text)


def test_status_helpers() -> None:
    s = parse_status(fixture("dm/dm_status_one_failed.txt"))
    assert s.active_group == 2
    assert s.valid_paths == 1
    assert s.path("8:0") == ps("8:0", F, 1, "0", "1")
    assert s.path("8:16") is None
    assert [(n, p.dev) for n, p in s.paths()] == [(1, "8:0"), (2, "8:32")]
    assert parse_status(fixture("dm/dm_status_switched.txt")).active_group is None
    assert decode_path_status("service-time", s.groups[0].paths[0].selector_args) == {
        "in_flight_size": 0,
        "relative_throughput": 1,
    }
    ql = parse_status(fixture("dm/dm_status_ql_alua.txt"))
    assert decode_path_status("queue-length", ql.groups[0].paths[0].selector_args) == {
        "in_flight": 0
    }
    assert decode_path_status("round-robin", ()) == {}
    with pytest.raises(ParseError):
        decode_path_status("service-time", ("0",))
    with pytest.raises(ParseError):
        decode_path_status("queue-length", ("x",))


# --------------------------------------------------------------------------- listings


def test_ls_fixture() -> None:
    text = fixture("dm/dm_ls_target.txt")
    assert text == "mpt0\t(254, 0)\n"
    assert parse_ls(text) == [DmDevice("mpt0", 254, 0)]
    assert parse_ls(text)[0].devnum == "254:0"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("No devices found\n", []),
        ("", []),
        ("a\t(254, 0)\nb\t(254, 1)\n", [DmDevice("a", 254, 0), DmDevice("b", 254, 1)]),
        ("mpath-x (254:3)\n", [DmDevice("mpath-x", 254, 3)]),  # the -j/--exec format
    ],
)
def test_ls_variants(raw: str, expected: list[DmDevice]) -> None:
    assert parse_ls(raw) == expected


@pytest.mark.parametrize("raw", ["mpt0\n", "mpt0 (254)\n", "(254, 0)\n", "mpt0 (a, b)\n"])
def test_ls_malformed(raw: str) -> None:
    with pytest.raises(ParseError):
        parse_ls(raw)


def test_info_fixture() -> None:
    text = fixture("dm/dm_info_c.txt")
    assert text == "mpt0:dmpath-test0:254:0:0:1:0\n"
    (info,) = parse_info_columns(text)
    assert info == DmInfo("mpt0", "dmpath-test0", 254, 0, 0, 1, 0)
    assert info.devnum == "254:0"
    assert parse_info_columns(text, name="mpt0") == [info]


@pytest.mark.parametrize(
    ("raw", "name", "expected"),
    [
        ("mpt0::254:0:1:1:7\n", None, DmInfo("mpt0", "", 254, 0, 1, 1, 7)),  # no uuid
        ("a:b::254:2:0:1:0\n", "a:b", DmInfo("a:b", "", 254, 2, 0, 1, 0)),  # ':' in name
        ("m:u:v:254:2:0:1:0\n", "m", DmInfo("m", "u:v", 254, 2, 0, 1, 0)),  # ':' in uuid
    ],
)
def test_info_variants(raw: str, name: str | None, expected: DmInfo) -> None:
    assert parse_info_columns(raw, name=name) == [expected]


@pytest.mark.parametrize(
    "raw", ["mpt0:254:0:0:1:0\n", "mpt0:u:254:x:0:1:0\n", "mpt0\n", ":u:254:0:0:1:0\n"]
)
def test_info_malformed(raw: str) -> None:
    with pytest.raises(ParseError):
        parse_info_columns(raw)


def test_info_several_rows() -> None:
    rows = parse_info_columns("a:dmpath-1:254:0:0:1:0\nb::254:1:2:1:5\n")
    assert [r.name for r in rows] == ["a", "b"]
    assert rows[1].open_count == 2


# --------------------------------------------------------------------------- malformed input

MALFORMED_TABLES = [
    ("", "empty output"),
    ("0 65536 linear 8:0 0", "not 'multipath'"),
    ("x 65536 multipath 0 0 0 0", "start sector"),
    ("0 -1 multipath 0 0 0 0", "length"),
    ("0 65536 multipath", "number of feature words"),
    ("0 65536 multipath 2 queue_if_no_path", "line ends inside feature words"),
    ("0 65536 multipath 1 pg_init_retries 0 0 0", "pg_init_retries has no value"),
    ("0 65536 multipath 2 pg_init_retries x 0 0 0", "is not a number"),
    ("0 65536 multipath 2 queue_if_no_path queue_if_no_path 0 0 0", "given twice"),
    ("0 65536 multipath 0 2 alua", "line ends inside hardware handler words"),
    ("0 65536 multipath 0 0 1 1 service-time 0 1 2 8:0 1", "line ends inside args of path"),
    ("0 65536 multipath 0 0 2 1 round-robin 0 1 1 8:0 1", "group 2 path selector"),
    ("0 65536 multipath 0 0 1 1 round-robin 0 0 1", "has no paths"),
    ("0 65536 multipath 0 0 1 1 round-robin 0 1 1 8:0 1 junk", "unexpected trailing"),
    ("0 65536 multipath 0 0 1 1 round-robin 0 1 1 8:0 1\n0 8 multipath 0 0 0 0", "2 lines"),
    ("0 65536 multipath 0 0 1 1 round-robin 0 1 2000 8:0", "more than 1024"),
]


@pytest.mark.parametrize(("raw", "detail"), MALFORMED_TABLES)
def test_malformed_tables(raw: str, detail: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_table(raw)
    assert detail in str(err.value)


MALFORMED_STATUSES = [
    ("0 65536 multipath 1 0 0 0 0", "queue_io and pg_init_count expected"),
    ("0 65536 multipath 2 2 0 0 0 0", "queue_io must be 0 or 1"),
    ("0 65536 multipath 2 0 0 0 1 1 X 0 1 0 8:0 A 0", "state must be A, E or D"),
    ("0 65536 multipath 2 0 0 0 1 1 A 0 1 0 8:0 Q 0", "state must be A or F"),
    ("0 65536 multipath 2 0 0 0 1 1 A 0 1 0 8:0 A", "fail count of path 8:0"),
    ("0 65536 multipath 2 0 0 0 1 1 A 0 1 2 8:0 A 0 0", "values of path 8:0"),
    ("0 65536 multipath 2 0 0 0 1 1 A 0 0 0", "has no paths"),
    ("0 65536 multipath 2 0 0 0 2 1 A 0 1 0 8:0 A 0", "group 2 state"),
    ("0 65536 striped 2 0 0 0 0 0", "not 'multipath'"),
]


@pytest.mark.parametrize(("raw", "detail"), MALFORMED_STATUSES)
def test_malformed_statuses(raw: str, detail: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_status(raw)
    assert detail in str(err.value)


def _all_fixture_lines() -> list[str]:
    lines = [fixture(c[0]) for c in TABLE_CASES + STATUS_CASES]
    return [norm(x) for x in lines + _multipathd_lines() + _addmap_tables()]


@settings(max_examples=300)
@given(st.data())
def test_mutated_fixture_lines_never_escape_as_other_errors(data: st.DataObject) -> None:
    """Drop, duplicate or replace words of real lines: ParseError or a valid model, only."""
    words = data.draw(st.sampled_from(_all_fixture_lines())).split()
    i = data.draw(st.integers(0, len(words) - 1))
    op = data.draw(st.sampled_from(["drop", "dup", "replace", "truncate"]))
    if op == "drop":
        del words[i]
    elif op == "dup":
        words.insert(i, words[i])
    elif op == "truncate":
        words = words[:i]
    else:
        words[i] = data.draw(st.sampled_from(["-1", "x", "0", "1", "2", "1025", "A", "F", "D"]))
    text = " ".join(words)
    with contextlib.suppress(ParseError):
        assert format_table(parse_table(text), validate=False) == text
    with contextlib.suppress(ParseError):
        assert format_status(parse_status(text)) == text


@given(st.text(max_size=80))
def test_random_text_never_escapes_as_other_errors(text: str) -> None:
    for parse in (parse_table, parse_status, parse_ls, parse_info_columns):
        with contextlib.suppress(ParseError):
            parse(text)


# --------------------------------------------------------------------------- building


def test_table_error_is_a_dmpath_error_not_a_parse_error() -> None:
    assert issubclass(TableError, DmpathError)
    assert not issubclass(TableError, ParseError)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PathGroup("round-robin", ()),
        lambda: PathGroup("round-robin", (tp("8:0", "1"), tp("8:16"))),
        lambda: PathGroup("round robin", (tp("8:0"),)),
        lambda: TablePath("8 0"),
        lambda: TablePath(""),
        lambda: HardwareHandler("alua", ("a b",)),
        lambda: Features(pg_init_retries=-1),
        lambda: Features(extra=("queue_if_no_path",)),
        lambda: MultipathTable(-5, ()),
        lambda: PathStatus("8:0", A, -1),
        lambda: GroupStatus(GA, ()),
    ],
)
def test_models_refuse_what_cannot_be_written(make: object) -> None:
    with pytest.raises(TableError):
        make()  # type: ignore[operator]


def _one(selector: str, *args: str, **kw: object) -> MultipathTable:
    return MultipathTable(8, (PathGroup(selector, (tp("8:0", *args),)),), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("table", "detail"),
    [
        (_one("service-time", "1", "1", "1"), "at most 2 path args"),
        (_one("service-time", "1", "101"), "relative_throughput must be at most 100"),
        (_one("round-robin", "x"), "repeat_count must be an unsigned integer"),
        (_one("queue-length", "1", "1"), "at most 1 path args"),
        (_one("round-robin", initial_pg=0), "not a group number"),
        (_one("round-robin", initial_pg=2), "not a group number"),
        (MultipathTable(8, ()), "without path groups must have initial_pg 0"),
        (_one("round-robin", features=Features(pg_init_retries=0)), "pg_init_retries"),
        (_one("round-robin", features=Features(pg_init_retries=51)), "pg_init_retries"),
        (_one("round-robin", features=Features(pg_init_delay_msecs=60001)), "pg_init_delay"),
        (_one("round-robin", features=Features(queue_mode="nvme")), "queue_mode"),
        (_one("round-robin", features=Features(extra=("bogus",))), "unknown multipath feature"),
        (
            MultipathTable(8, (PathGroup("round-robin", (tp("8:0"), tp("8:0"))),)),
            "appears twice",
        ),
    ],
)
def test_validate_refuses_what_the_kernel_refuses(table: MultipathTable, detail: str) -> None:
    with pytest.raises(TableError) as err:
        format_table(table)
    assert detail in str(err.value)
    format_table(table, validate=False)  # still writable when asked


def test_valid_edge_tables() -> None:
    validate_table(MultipathTable(8, (), initial_pg=0))
    assert format_table(MultipathTable(8, (), initial_pg=0)) == "0 8 multipath 0 0 0 0"
    validate_table(_one("service-time"))  # every selector arg is optional
    validate_table(_one("my-selector", "anything", "goes"))  # unknown selectors: not checked
    t = MultipathTable(
        8,
        (PathGroup.of("service-time", ["8:0", "/dev/sdc"], relative_throughput=50),),
        Features(True, 5, 100, True, "bio"),
        HardwareHandler("rdac", ("1", "x")),
        start=16,
    )
    line = format_table(t)
    assert line == (
        "16 8 multipath 8 queue_if_no_path pg_init_retries 5 pg_init_delay_msecs 100 "
        "retain_attached_hw_handler queue_mode bio 3 rdac 1 x 1 1 "
        "service-time 0 2 2 8:0 1 50 /dev/sdc 1 50"
    )
    assert parse_table(line) == t
    assert t.devs == ("8:0", "/dev/sdc")


def test_features_keep_their_parsed_order() -> None:
    line = (
        "0 8 multipath 6 queue_mode bio some_future_flag pg_init_retries 3 queue_if_no_path "
        "0 1 1 round-robin 0 1 0 8:0"
    )
    t = parse_table(line)
    assert t.features == Features(
        queue_if_no_path=True, pg_init_retries=3, queue_mode="bio", extra=("some_future_flag",)
    )
    assert format_table(t, validate=False) == line
    # the order is remembered, not compared; a changed model still formats sensibly
    assert t.features == Features(True, 3, None, False, "bio", ("some_future_flag",))
    changed = Features.from_words(t.features.words())
    assert changed.words() == t.features.words()


def test_selector_helpers() -> None:
    assert selector_path_args("service-time") == ("1", "1")
    assert selector_path_args("service-time", relative_throughput=7) == ("1", "7")
    assert selector_path_args("round-robin") == ("1",)
    assert selector_path_args("queue-length", repeat_count=1) == ("1",)
    with pytest.raises(TableError):
        selector_path_args("service-time", throughput=1)
    with pytest.raises(TableError):
        selector_path_args("historical-service-time")
    assert decode_path_args("service-time", ("1",)) == {
        "repeat_count": 1,
        "relative_throughput": 1,
    }
    assert decode_path_args("service-time", ("2", "9")) == {
        "repeat_count": 2,
        "relative_throughput": 9,
    }
    assert PathGroup.of("round-robin", ["8:0", "8:16"]) == PathGroup(
        "round-robin", (tp("8:0", "1"), tp("8:16", "1"))
    )


def test_as_reported() -> None:
    loaded = parse_table(
        "0 8 multipath 3 queue_mode mq queue_if_no_path 2 alua 0 2 2 "
        "service-time 0 1 0 8:0 queue-length 0 1 1 8:16 5"
    )
    assert format_table(as_reported(loaded)) == (
        "0 8 multipath 1 queue_if_no_path 1 alua 2 2 "
        "service-time 0 1 2 8:0 1 1 queue-length 0 1 1 8:16 1"
    )
    bio = _one(
        "round-robin", features=Features(queue_mode="bio"), hw_handler=HardwareHandler("alua")
    )
    assert format_table(as_reported(bio)) == (
        "0 8 multipath 3 retain_attached_hw_handler queue_mode bio 0 1 1 round-robin 0 1 1 8:0 1"
    )
    # the capture script's own table came back unchanged
    captured = fixture("dm/dm_table_2pg.txt")
    assert as_reported(parse_table(captured)) == parse_table(captured)


# --------------------------------------------------------------------------- properties

WORD = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)
DEV = st.one_of(
    st.builds(lambda a, b: f"{a}:{b}", st.integers(0, 4095), st.integers(0, 2**20)),
    st.from_regex(r"/dev/sd[a-z]{1,2}", fullmatch=True),
)
UINT = st.integers(0, 2**32 - 1).map(str)


@st.composite
def path_group(draw: st.DrawFn, devs: list[str]) -> PathGroup:
    selector = draw(
        st.sampled_from(["service-time", "queue-length", "round-robin", "historical-service-time"])
    )
    maker: st.SearchStrategy[tuple[str, ...]]
    if selector == "service-time":
        nargs = draw(st.integers(0, 2))
        maker = st.tuples(UINT, st.integers(0, 100).map(str))
    elif selector in ("queue-length", "round-robin"):
        nargs = draw(st.integers(0, 1))
        maker = st.tuples(UINT)
    else:  # a selector this module does not know: anything goes, verbatim
        nargs = draw(st.integers(0, 3))
        maker = st.tuples(WORD, WORD, WORD)
    paths = tuple(TablePath(d, draw(maker)[:nargs]) for d in devs)
    sel_args = draw(st.lists(WORD, max_size=2).map(tuple))
    return PathGroup(selector, paths, sel_args)


FEATURES = st.builds(
    Features,
    queue_if_no_path=st.booleans(),
    pg_init_retries=st.none() | st.integers(1, 50),
    pg_init_delay_msecs=st.none() | st.integers(0, 60000),
    retain_attached_hw_handler=st.booleans(),
    queue_mode=st.none() | st.sampled_from(QUEUE_MODES),
)


@st.composite
def tables(draw: st.DrawFn) -> MultipathTable:
    devs = draw(st.lists(DEV, unique=True, max_size=8))
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(devs) - 1)), max_size=3, unique=True)))
    chunks = [devs[a:b] for a, b in zip([0, *cuts], [*cuts, len(devs)], strict=True)]
    groups = tuple(draw(path_group(c)) for c in chunks if c)
    hw = draw(st.none() | st.builds(HardwareHandler, WORD, st.lists(WORD, max_size=3).map(tuple)))
    return MultipathTable(
        length=draw(st.integers(0, 2**40)),
        groups=groups,
        features=draw(FEATURES),
        hw_handler=hw,
        initial_pg=draw(st.integers(1, len(groups))) if groups else 0,
        start=draw(st.integers(0, 2**20)),
    )


@given(tables())
def test_table_build_parse_identity(t: MultipathTable) -> None:
    line = format_table(t)
    assert "  " not in line and line == line.strip() and "\n" not in line
    assert parse_table(line) == t
    assert format_table(parse_table(line)) == line
    assert parse_table(line + " \n") == t  # as dmsetup prints it: trailing space, newline


_VALUED = ("pg_init_retries", "pg_init_delay_msecs", "queue_mode")


@given(tables(), st.randoms(use_true_random=False))
def test_feature_words_in_any_order_round_trip(t: MultipathTable, rnd: Random) -> None:
    """A table written by hand may list features in any order: it formats back as written."""
    features: list[list[str]] = []
    words = list(t.features.words())
    while words:
        w = words.pop(0)
        features.append([w, words.pop(0)] if w in _VALUED else [w])
    rnd.shuffle(features)
    shuffled = [w for f in features for w in f]
    rest = format_table(t).split(" ", 4 + len(shuffled))[-1]
    text = " ".join([str(t.start), str(t.length), "multipath", str(len(shuffled)), *shuffled, rest])
    parsed = parse_table(text)
    assert parsed == t
    assert format_table(parsed) == text


@st.composite
def statuses(draw: st.DrawFn) -> MultipathStatus:
    devs = draw(st.lists(DEV, unique=True, max_size=8))
    groups = []
    i = 0
    while i < len(devs):
        n = draw(st.integers(1, len(devs) - i))
        nvals = draw(st.integers(0, 2))
        paths = tuple(
            PathStatus(
                d,
                draw(st.sampled_from(PathState)),
                draw(st.integers(0, 10**6)),
                tuple(draw(st.lists(UINT, min_size=nvals, max_size=nvals))),
            )
            for d in devs[i : i + n]
        )
        groups.append(
            GroupStatus(
                draw(st.sampled_from(GroupState)),
                paths,
                draw(st.lists(WORD, max_size=2).map(tuple)),
            )
        )
        i += n
    return MultipathStatus(
        length=draw(st.integers(0, 2**40)),
        groups=tuple(groups),
        next_pg=draw(st.integers(1, len(groups))) if groups else 0,
        queue_io=draw(st.booleans()),
        pg_init_count=draw(st.integers(0, 1000)),
        hw_status=draw(st.lists(WORD, max_size=2).map(tuple)),
        extra=draw(st.lists(WORD, max_size=2).map(tuple)),
        start=draw(st.integers(0, 2**20)),
    )


@given(statuses())
def test_status_build_parse_identity(s: MultipathStatus) -> None:
    line = format_status(s)
    assert parse_status(line) == s
    assert format_status(parse_status(line + " \n")) == line
