"""dmpath.config: defaults, strict validation with key and line, merging, output forms."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmpath import config as c
from dmpath.config import Backend
from dmpath.config import docs as config_docs
from dmpath.config.lines import _LineIndex
from dmpath.config.toml_text import _toml_value
from dmpath.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "etc" / "dmpath.toml.example"
MAN = ROOT / "man" / "dmpath.toml.5"


# --------------------------------------------------------------------------- defaults


def test_empty_file_is_all_defaults() -> None:
    cfg = c.parse_config("", "x.toml")
    assert cfg == c.Config()
    d = cfg.defaults
    assert d.backend is Backend.DM
    assert d.path_grouping_policy is c.GroupingPolicy.GROUP_BY_PRIO
    assert d.path_selector == "service-time 0"
    assert d.features == ()
    assert d.hardware_handler == ""
    assert d.prio is c.Prio.ALUA
    assert d.failback == "immediate"
    assert d.no_path_retry == 12
    assert d.checker is c.Checker.TUR
    assert d.polling_interval == 1.0
    assert d.max_polling_interval == 60.0
    assert d.find_multipaths is c.FindMultipaths.ON
    assert d.uid_attribute == ("ID_SERIAL", "ID_WWN")
    assert d.dm_uuid_prefix == "mpath-"
    assert d.coalesce_ms == 200
    assert d.history_file == "/var/lib/dmpath/history"
    assert d.history_max_events == 10000
    assert cfg.blacklist == c.BUILTIN_BLACKLIST
    assert cfg.blacklist_exceptions == c.BUILTIN_EXCEPTIONS


def test_missing_file_gives_defaults_and_records_source(tmp_path: Path) -> None:
    cfg = c.load_config(tmp_path / "nope.toml")
    assert cfg == c.Config()
    assert cfg.source == str(tmp_path / "nope.toml")


def test_load_config_reads_file(tmp_path: Path) -> None:
    p = tmp_path / "dmpath.toml"
    p.write_text('[defaults]\nno_path_retry = "queue"\n')
    cfg = c.load_config(p)
    assert cfg.defaults.no_path_retry == "queue"
    assert cfg.source == str(p)


def test_unreadable_config_is_an_error_not_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        c.load_config(tmp_path)  # a directory


def test_non_utf8_config_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "dmpath.toml"
    p.write_bytes(b"[defaults]\n\n# caf\xe9\n")
    with pytest.raises(ConfigError) as ei:
        c.load_config(p)
    assert ei.value.line == 3
    assert "UTF-8" in str(ei.value)


def test_max_polling_interval_is_at_least_polling_interval() -> None:
    cfg = c.parse_config("[defaults]\npolling_interval = 2\n")
    assert cfg.defaults.polling_interval == 2.0
    assert cfg.defaults.max_polling_interval == 60.0
    cfg = c.parse_config("[defaults]\npolling_interval = 90\n")
    assert cfg.defaults.max_polling_interval == 90.0
    assert isinstance(cfg.defaults.polling_interval, float)
    cfg = c.parse_config("[defaults]\nmax_polling_interval = 5\n")
    assert cfg.defaults.max_polling_interval == 5.0


def test_defaults_record_refuses_inconsistent_intervals() -> None:
    with pytest.raises(ValueError):
        c.Defaults(polling_interval=90.0)


def test_path_selector_bare_name_is_completed() -> None:
    cfg = c.parse_config('[defaults]\npath_selector = "round-robin"\n')
    assert cfg.defaults.path_selector == "round-robin 0"


def test_user_lists_extend_the_builtin_ones() -> None:
    cfg = c.parse_config(
        '[blacklist]\ndevnode = ["^sdz$", "^mmcblk[0-9]"]\n'
        '[blacklist_exceptions]\nproperty = ["^ID_SERIAL$"]\n'
    )
    assert cfg.blacklist.devnode == (*c.BUILTIN_BLACKLIST.devnode, "^sdz$")
    assert cfg.blacklist.protocol == c.BUILTIN_BLACKLIST.protocol
    assert cfg.blacklist_exceptions.property == (
        *c.BUILTIN_EXCEPTIONS.property,
        "^ID_SERIAL$",
    )


def test_features_are_normalised_and_split_into_words() -> None:
    cfg = c.parse_config('[defaults]\nfeatures = ["pg_init_retries   50", "queue_mode bio"]\n')
    assert cfg.defaults.features == ("pg_init_retries 50", "queue_mode bio")
    opts = c.effective_options(cfg, "w", "", "")
    assert opts.feature_words == ("pg_init_retries", "50", "queue_mode", "bio")


# --------------------------------------------------------------------------- errors


# (toml text, dotted key, line, part of the message)
ERRORS: list[tuple[str, str, int | None, str]] = [
    ("[defualts]\nbackend = 'dm'\n", "defualts", 1, "did you mean 'defaults'"),
    ("[defaults]\nno_path_rety = 3\n", "defaults.no_path_rety", 2, "did you mean 'no_path_retry'"),
    ("\n[defaults]\nbackend = 'lvm'\n", "defaults.backend", 3, 'one of "dm", "md"'),
    (
        '[defaults]\nno_path_retry = "12s"\n',
        "defaults.no_path_retry",
        2,
        'must be "queue" or "fail" or a number of checks, not a string ("12s")',
    ),
    ('[defaults]\nno_path_retry = "12"\n', "defaults.no_path_retry", 2, "without quotes: 12"),
    ("[defaults]\nno_path_retry = 0\n", "defaults.no_path_retry", 2, "at least 1"),
    ("[defaults]\nno_path_retry = true\n", "defaults.no_path_retry", 2, "a boolean"),
    ("[defaults]\nfailback = -1\n", "defaults.failback", 2, "at least 1"),
    ("[defaults]\nfailback = 'later'\n", "defaults.failback", 2, '"immediate" or "manual"'),
    ("[defaults]\nfast_io_fail_tmo = 0\n", "defaults.fast_io_fail_tmo", 2, "at least 1"),
    ("[defaults]\nmarginal_failures = -1\n", "defaults.marginal_failures", 2, "between 0"),
    ("[defaults]\ndev_loss_tmo = 5\n", "defaults.dev_loss_tmo", 2, "above fast_io_fail_tmo (5)"),
    ("[defaults]\neh_deadline = 0\n", "defaults.eh_deadline", 2, "at least 1"),
    ("[defaults]\nmarginal_window = 0\n", "defaults.marginal_window", 2, "between 1"),
    ("[defaults]\nmarginal_latency = 'slow'\n", "defaults.marginal_latency", 2, "seconds"),
    ("[defaults]\nfast_io_fail_tmo = 'never'\n", "defaults.fast_io_fail_tmo", 2, '"off"'),
    ("[defaults]\ncoalesce_ms = true\n", "defaults.coalesce_ms", 2, "must be an integer"),
    ("[defaults]\ncoalesce_ms = 20000\n", "defaults.coalesce_ms", 2, "between 0 and 10000"),
    ("[defaults]\nuser_friendly_names = 1\n", "defaults.user_friendly_names", 2, "true or false"),
    ("[defaults]\npolling_interval = 0\n", "defaults.polling_interval", 2, "between 0.1"),
    ("[defaults]\npolling_interval = nan\n", "defaults.polling_interval", 2, "between 0.1"),
    ("[defaults]\npolling_interval = '1'\n", "defaults.polling_interval", 2, "number of seconds"),
    (
        "[defaults]\npolling_interval = 2\nmax_polling_interval = 1\n",
        "defaults.max_polling_interval",
        3,
        "at least polling_interval (2)",
    ),
    ("[defaults]\npath_selector = 'round-robin 2'\n", "defaults.path_selector", 2, "one of"),
    ("[defaults]\nfeatures = 'queue_mode bio'\n", "defaults.features", 2, "must be a list"),
    ("[defaults]\nfeatures = ['queue_if_no_path']\n", "defaults.features[0]", 2, "no_path_retry"),
    (
        "[defaults]\nfeatures = ['pg_init_retries']\n",
        "defaults.features[0]",
        2,
        "one valid argument",
    ),
    ("[defaults]\nfeatures = ['frobnicate 1']\n", "defaults.features[0]", 2, "unknown feature"),
    (
        "[defaults]\nfeatures = [\n  'pg_init_retries 5',\n  'pg_init_retries 6',\n]\n",
        "defaults.features[1]",
        4,
        "given twice",
    ),
    ("[defaults]\nhardware_handler = 'foo'\n", "defaults.hardware_handler", 2, '"alua"'),
    ("[defaults]\nuid_attribute = []\n", "defaults.uid_attribute", 2, "at least one"),
    (
        "[defaults]\nuid_attribute = ['ID SERIAL']\n",
        "defaults.uid_attribute[0]",
        2,
        "property name",
    ),
    ("[defaults]\nbindings_file = 'bindings'\n", "defaults.bindings_file", 2, "absolute"),
    ("[defaults]\nhistory_file = 'history'\n", "defaults.history_file", 2, "absolute"),
    ("[defaults]\nhistory_max_events = 0\n", "defaults.history_max_events", 2, "between"),
    ("[defaults]\ndm_uuid_prefix = 'CRYPT-'\n", "defaults.dm_uuid_prefix", 2, "cryptsetup"),
    ("[defaults]\ndm_uuid_prefix = 'LVM-x'\n", "defaults.dm_uuid_prefix", 2, "LVM"),
    ("[defaults]\ndm_uuid_prefix = 'part1-'\n", "defaults.dm_uuid_prefix", 2, "partition"),
    ("[defaults]\ndm_uuid_prefix = ''\n", "defaults.dm_uuid_prefix", 2, "1 to 32"),
    ("[defaults]\nalias_prefix = 'a/b'\n", "defaults.alias_prefix", 2, "letters"),
    (
        "[blacklist]\ndevnode = [\n  '^sd',\n  '^(vd',\n]\n",
        "blacklist.devnode[1]",
        4,
        "invalid regular expression",
    ),
    ("[blacklist]\ndevnode = ['!^sd']\n", "blacklist.devnode[0]", 2, "inverted patterns"),
    ("[blacklist]\nwwids = ['x']\n", "blacklist.wwids", 2, "did you mean 'wwid'"),
    (
        "[blacklist]\n[[blacklist.device]]\nproduct = ''\n",
        "blacklist.device[0]",
        2,
        "vendor or product",
    ),
    (
        "[[blacklist.device]]\nvendor = 'a'\n[[blacklist.device]]\nmodel = 'x'\n",
        "blacklist.device[1].model",
        4,
        "did you mean 'product'",
    ),
    (
        "[blacklist_exceptions]\nprotocol = 'scsi:fcp'\n",
        "blacklist_exceptions.protocol",
        2,
        "must be a list",
    ),
    (
        "[[multipaths]]\nwwid = 'a'\n\n[[multipaths]]\nalias = 'x'\n",
        "multipaths[1].wwid",
        4,
        "missing",
    ),
    (
        "[[multipaths]]\nwwid = 'a'\n[[multipaths]]\nwwid = 'a'\n",
        "multipaths[1].wwid",
        4,
        "already configured in multipaths[0]",
    ),
    (
        "[[multipaths]]\nwwid = 'a'\nalias = 'db'\n[[multipaths]]\nwwid = 'b'\nalias = 'db'\n",
        "multipaths[1].alias",
        6,
        "already names multipaths[0]",
    ),
    ("[[multipaths]]\nwwid = 'a'\nalias = 'my/db'\n", "multipaths[0].alias", 3, "map name"),
    ("[[multipaths]]\nwwid = 'a b'\n", "multipaths[0].wwid", 2, "not a WWID"),
    (
        "[[multipaths]]\nwwid = 'a'\nuser_friendly_names = false\n",
        "multipaths[0].user_friendly_names",
        3,
        "unknown option",
    ),
    (
        "[[devices]]\nvendor = 'X'\nno_path_rety = 3\n",
        "devices[0].no_path_rety",
        3,
        "did you mean 'no_path_retry'",
    ),
    (
        "[[devices]]\nvendor = 'X'\n[[devices]]\nno_path_retry = 3\n",
        "devices[1]",
        3,
        "vendor or product",
    ),
    ("[[devices]]\nvendor = 'X'\nprio = 'random'\n", "devices[0].prio", 3, '"alua"'),
    ("[multipaths]\nwwid = 'a'\n", "multipaths", 1, "array of tables ([[multipaths]])"),
    ("defaults = 3\n", "defaults", 1, "must be a table"),
    ("defaults.backend = 'x'\n", "defaults.backend", 1, "one of"),
    (
        "# inline tables\nmultipaths = [{wwid = 'a'}, {wwid = 'a'}]\n",
        "multipaths[1].wwid",
        2,
        "already configured",
    ),
    ("[ blacklist . device ]\nvendor = 'x'\n", "blacklist.device", 1, "array of tables"),
    (
        '[defaults]\nsocket = """/run/x\nbackend = "q"\n"""\nbackend = "lvm"\n',
        "defaults.backend",
        5,
        "one of",
    ),
    ('[defaults]\n"no_path_retry" = "x"\n', "defaults.no_path_retry", 2, "number of checks"),
    (
        "[blacklist]\ndevnode = [\n  '''\nwwid = 1\n''',\n]\nwwid = 3\n",
        "blacklist.wwid",
        7,
        "must be a list",
    ),
]


@pytest.mark.parametrize(("text", "key", "line", "detail"), ERRORS)
def test_every_error_names_file_key_and_line(
    text: str, key: str, line: int | None, detail: str
) -> None:
    with pytest.raises(ConfigError) as ei:
        c.parse_config(text, "/etc/dmpath/dmpath.toml")
    err = ei.value
    assert err.source == "/etc/dmpath/dmpath.toml"
    assert err.key == key
    assert err.line == line
    assert detail in err.detail
    assert str(err).startswith(f"/etc/dmpath/dmpath.toml:{line}: {key}: ")
    assert err.exit_code == 2


def test_toml_syntax_error_has_a_line() -> None:
    with pytest.raises(ConfigError) as ei:
        c.parse_config("[defaults]\n\nbackend = dm\n", "f.toml")
    assert ei.value.line == 3
    assert "invalid TOML" in str(ei.value)
    assert "(at line" not in str(ei.value)


def test_man_page_error_example_is_real() -> None:
    """The DESCRIPTION of the man page quotes an error: it must be what we print."""
    text = "[defaults]\n" + "\n" * 5 + 'no_path_retry = "12s"\n'
    with pytest.raises(ConfigError) as ei:
        c.parse_config(text, "/etc/dmpath/dmpath.toml")
    assert str(ei.value) in MAN.read_text().replace("\\-", "-")


def test_config_error_without_text_has_no_line() -> None:
    with pytest.raises(ConfigError) as ei:
        c.config_from_dict({"defaults": {"backend": "x"}})
    assert ei.value.line is None
    assert ei.value.key == "defaults.backend"


# --------------------------------------------------------------------------- line index


def test_line_index_tables_keys_and_occurrences() -> None:
    text = (
        "top = 1\n"  # 1
        "[defaults]\n"  # 2
        "backend = 'dm'  # comment\n"  # 3
        "  'quoted.key' = 1\n"  # 4
        "[[multipaths]]\n"  # 5
        "wwid = 'a'\n"  # 6
        "[[multipaths]]  # second\n"  # 7
        "wwid = 'b'\n"  # 8
        'alias = """\n'  # 9
        "wwid = 'not a key'\n"  # 10
        '"""\n'  # 11
        "[blacklist . device]\n"  # 12
    )
    idx = _LineIndex(text)
    assert idx.lookup(("top",)) == 1
    assert idx.lookup(("defaults", "backend")) == 3
    assert idx.lookup(("defaults", "quoted.key")) == 4
    assert idx.lookup(("defaults", "missing")) == 2
    assert idx.lookup(("multipaths", 0, "wwid")) == 6
    assert idx.lookup(("multipaths", 1, "wwid")) == 8
    assert idx.lookup(("multipaths", 1, "alias")) == 9
    assert idx.lookup(("multipaths", 1)) == 7
    assert idx.lookup(("blacklist", "device")) == 12
    assert idx.lookup(("nowhere", "x")) is None


def test_dotted_key_names() -> None:
    assert c.dotted(("multipaths", 1, "alias")) == "multipaths[1].alias"
    assert c.dotted(("blacklist", "devnode", 2)) == "blacklist.devnode[2]"
    assert c.dotted(("defaults", "no_path_retry")) == "defaults.no_path_retry"


# --------------------------------------------------------------------------- merging


MERGE = """
[defaults]
no_path_retry = "fail"
prio = "const"

[[devices]]
vendor = "^NETAPP$"
no_path_retry = 30
features = ["pg_init_retries 50"]

[[devices]]
vendor = "^NETAPP$"
product = "^LUN C-Mode"
no_path_retry = 60
hardware_handler = "alua"

[[multipaths]]
wwid = "3600a0980"
alias = "oradata"
failback = 10
no_path_retry = "queue"
"""


def test_effective_options_defaults_devices_multipaths() -> None:
    cfg = c.parse_config(MERGE)
    plain = c.effective_options(cfg, "other", "Linux", "scsi_debug")
    assert plain.no_path_retry == "fail"
    assert plain.alias is None
    assert plain.origin("no_path_retry") == "defaults"
    assert plain.origins == ()

    one = c.effective_options(cfg, "other", "NETAPP  ", "LUN 7-Mode      ")
    assert one.no_path_retry == 30
    assert one.features == ("pg_init_retries 50",)
    assert one.hardware_handler == ""
    assert one.origin("no_path_retry") == "devices[0]"

    both = c.effective_options(cfg, "other", "NETAPP", "LUN C-Mode")
    assert both.no_path_retry == 60  # the later table wins
    assert both.features == ("pg_init_retries 50",)  # the earlier one still applies
    assert both.hardware_handler == "alua"
    assert both.origin("no_path_retry") == "devices[1]"
    assert both.origin("features") == "devices[0]"

    mapped = c.effective_options(cfg, "3600a0980", "NETAPP", "LUN C-Mode")
    assert mapped.alias == "oradata"
    assert mapped.no_path_retry == "queue"
    assert mapped.failback == 10
    assert mapped.hardware_handler == "alua"
    assert mapped.prio is c.Prio.CONST
    assert mapped.origin("no_path_retry") == "multipaths[0]"
    assert mapped.user_friendly_names is True
    assert mapped.alias_prefix == "mpath"


def test_configured_wwids_and_aliases() -> None:
    cfg = c.parse_config(MERGE + "[[multipaths]]\nwwid = 'b'\n")
    assert c.configured_wwids(cfg) == {"3600a0980", "b"}
    assert c.configured_aliases(cfg) == {"oradata": "3600a0980"}


# --------------------------------------------------------------------------- output forms


def test_config_to_dict_has_every_option_and_is_json() -> None:
    d = c.config_to_dict(c.parse_config(MERGE))
    assert set(d) == {"defaults", "blacklist", "blacklist_exceptions", "multipaths", "devices"}
    assert set(d["defaults"]) == {f.name for f in dataclasses.fields(c.Defaults)}
    assert d["defaults"]["backend"] == "dm"
    assert d["multipaths"] == [
        {"wwid": "3600a0980", "alias": "oradata", "failback": 10, "no_path_retry": "queue"}
    ]
    json.dumps(d)


def test_to_dict_and_to_toml_round_trip_the_merge_example() -> None:
    cfg = c.parse_config(MERGE)
    assert c.config_from_dict(c.config_to_dict(cfg)) == cfg
    assert c.parse_config(c.config_to_toml(cfg)) == cfg


_regex_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="!\\[]()?*+{}|^$."),
    min_size=1,
    max_size=12,
).filter(lambda s: not s.startswith("!"))
_word = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.+:@-]{0,20}\Z")


def _overrides() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "backend": st.sampled_from(["dm", "md"]),
            "path_grouping_policy": st.sampled_from([p.value for p in c.GroupingPolicy]),
            "path_selector": st.sampled_from(c.PATH_SELECTORS),
            "features": st.lists(
                st.sampled_from(["pg_init_retries 3", "queue_mode bio", "pg_init_delay_msecs 9"]),
                unique_by=lambda f: f.split()[0],
            ),
            "hardware_handler": st.sampled_from(c.HARDWARE_HANDLERS),
            "prio": st.sampled_from(["alua", "const"]),
            "failback": st.one_of(st.sampled_from(["immediate", "manual"]), st.integers(1, 10**6)),
            "no_path_retry": st.one_of(st.sampled_from(["queue", "fail"]), st.integers(1, 10**6)),
            "checker": st.sampled_from([x.value for x in c.Checker]),
        },
    )


_config_dicts = st.fixed_dictionaries(
    {},
    optional={
        "defaults": st.fixed_dictionaries(
            {},
            optional={
                "polling_interval": st.floats(0.1, 60),
                "checker_timeout": st.floats(0.1, 300),
                "user_friendly_names": st.booleans(),
                "retain_hwhandler": st.booleans(),
                "flush_on_last_del": st.booleans(),
                "alias_prefix": st.from_regex(r"\A[A-Za-z0-9_.-]{1,10}\Z"),
                "find_multipaths": st.sampled_from(["strict", "on", "greedy"]),
                "uid_attribute": st.lists(st.from_regex(r"\A[A-Z_]{1,12}\Z"), min_size=1),
                "coalesce_ms": st.integers(0, 10000),
                "bindings_file": st.from_regex(r"\A/[a-z]{1,8}(/[a-z0-9.]{1,8}){0,3}\Z"),
                "history_file": st.sampled_from(["", "/var/lib/dmpath/history", "/h"]),
                "dm_uuid_prefix": st.sampled_from(["dmpath-", "x-", "site1."]),
            },
        ),
        "blacklist": st.fixed_dictionaries(
            {},
            optional={
                "devnode": st.lists(_regex_text, max_size=3),
                "wwid": st.lists(_regex_text, max_size=3),
                "property": st.lists(_regex_text, max_size=2),
                "protocol": st.lists(_regex_text, max_size=2),
                "device": st.lists(
                    st.fixed_dictionaries(
                        {"vendor": _regex_text}, optional={"product": _regex_text}
                    ),
                    max_size=2,
                ),
            },
        ),
        "multipaths": st.lists(
            st.builds(
                lambda w, a, o: {"wwid": w, **({"alias": a} if a else {}), **o},
                st.from_regex(r"\A[0-9a-f]{4,16}\Z"),
                st.one_of(st.none(), _word),
                _overrides(),
            ),
            max_size=4,
            unique_by=lambda m: m["wwid"],
        ).filter(
            lambda ms: (
                len({m["alias"] for m in ms if "alias" in m}) == sum(1 for m in ms if "alias" in m)
            )
        ),
        "devices": st.lists(
            st.builds(lambda v, o: {"vendor": v, **o}, _regex_text, _overrides()), max_size=3
        ),
    },
)


@settings(max_examples=150, deadline=None)
@given(_config_dicts)
def test_config_round_trips_through_dict_and_toml(data: dict[str, Any]) -> None:
    cfg = c.config_from_dict(data)
    as_dict = c.config_to_dict(cfg)
    json.dumps(as_dict)
    assert c.config_from_dict(as_dict) == cfg
    assert c.parse_config(c.config_to_toml(cfg)) == cfg


# --------------------------------------------------------------------------- documentation


def test_every_default_option_is_documented_with_its_real_default() -> None:
    docs = {o.name: o for o in config_docs.OPTIONS if o.section == "defaults"}
    assert set(docs) == {f.name for f in dataclasses.fields(c.Defaults)}
    d = c.Defaults()
    for name, doc in docs.items():
        value = getattr(d, name)
        assert c.parse_config(f"[defaults]\n{name} = {doc.default}\n").defaults == d, name
        assert doc.default == _toml_value(getattr(value, "value", value)), name
    assert "defaults.no_path_retry" in (config_docs.__doc__ or "")
    assert "= 12: " in (config_docs.__doc__ or "")


def test_man_page_generated_parts_are_up_to_date() -> None:
    text = MAN.read_text()
    fresh = config_docs.update_man_page(text)
    assert fresh == text, "run: python -m dmpath.config --update-man " + str(MAN)
    sections = set(re.findall(r"BEGIN GENERATED ([a-z_.]+)", text))
    assert sections == {o.section for o in config_docs.OPTIONS} | {"never"}


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_renders_without_warnings() -> None:
    res = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(MAN)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0
    assert res.stderr == ""


def _uncomment(text: str) -> str:
    return "\n".join(
        line[1:] if re.match(r"^#(\[|[a-z_]+ = )", line) else line for line in text.splitlines()
    )


def test_example_file_parses_as_is_and_uncommented() -> None:
    text = EXAMPLE.read_text()
    assert c.parse_config(text, str(EXAMPLE)) == c.Config()
    cfg = c.parse_config(_uncomment(text), str(EXAMPLE))
    assert cfg.defaults == c.Defaults()  # every value shown is the default
    assert cfg.blacklist.devnode == c.BUILTIN_BLACKLIST.devnode
    assert cfg.blacklist.protocol == c.BUILTIN_BLACKLIST.protocol
    assert cfg.blacklist_exceptions.property == c.BUILTIN_EXCEPTIONS.property
    assert len(cfg.devices) == 1 and len(cfg.multipaths) == 1


def test_example_file_shows_every_option() -> None:
    text = EXAMPLE.read_text()
    for o in config_docs.OPTIONS:
        section = o.section.split(".")[0]
        if section in ("defaults", "blacklist", "multipaths", "devices"):
            assert re.search(rf"^#{o.name} = ", text, re.M), o.name
    for name in c.OVERRIDABLE:
        assert name in text


# A valid line per [defaults] option, and a bad value for each: the heuristic must find
# the bad line wherever it sits among the good ones, comments and blank lines.
_GOOD = {
    o.name: f"{o.name} = {o.default}"
    for o in config_docs.OPTIONS
    if o.section == "defaults"
}
_BAD = {
    "backend": '"lvm"',
    "no_path_retry": '"forever"',
    "failback": "0",
    "checker": '"readsector0"',
    "coalesce_ms": "-1",
    "user_friendly_names": '"yes"',
    "socket": '"dmpathd.sock"',
    "history_file": '"history"',
    "history_max_events": "5",
}


@settings(max_examples=200, deadline=None)
@given(
    bad=st.sampled_from(sorted(_BAD)),
    others=st.lists(st.sampled_from(sorted(_GOOD)), unique=True, max_size=10),
    fillers=st.lists(st.sampled_from(["", "# backend = 'x'", "  # no_path_retry = 0"]), max_size=6),
    data=st.data(),
)
def test_line_heuristic_finds_the_bad_line(
    bad: str, others: list[str], fillers: list[str], data: st.DataObject
) -> None:
    body = [_GOOD[k] for k in others if k != bad] + fillers
    body = data.draw(st.permutations(body))
    pos = data.draw(st.integers(0, len(body)))
    body.insert(pos, f"{bad} = {_BAD[bad]}")
    n_before = data.draw(st.integers(0, 3))
    # some [[multipaths]] tables with the same key names before [defaults] must not confuse
    prefix = [f"[[multipaths]]\nwwid = 'w{i}'\nno_path_retry = 5\n" for i in range(n_before)]
    text = "".join(prefix) + "[defaults]\n" + "\n".join(body) + "\n"
    with pytest.raises(ConfigError) as ei:
        c.parse_config(text)
    assert ei.value.key == f"defaults.{bad}"
    assert ei.value.line == 3 * n_before + 1 + pos + 1


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 6), data=st.data())
def test_line_heuristic_counts_array_tables(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n - 1))
    tables = []
    line = 1
    bad_line = 0
    for i in range(n):
        rows = ["[[devices]]", f"vendor = 'V{i}'"]
        if i == k:
            rows.append("no_path_retry = 'forever'")
            bad_line = line + 2
        rows.append("")
        line += len(rows)
        tables.append("\n".join(rows))
    with pytest.raises(ConfigError) as ei:
        c.parse_config("\n".join(tables) + "\n")
    assert ei.value.key == f"devices[{k}].no_path_retry"
    assert ei.value.line == bad_line


def test_fast_io_fail_tmo(tmp_path: Path) -> None:
    assert c.Config().defaults.fast_io_fail_tmo == 5  # as multipath-tools
    p = tmp_path / "dmpath.toml"
    for text, want in (("'off'", "off"), ("30", 30)):
        p.write_text(f"[defaults]\nfast_io_fail_tmo = {text}\n")
        assert c.load_config(p).defaults.fast_io_fail_tmo == want


def test_multipaths_data_map_keys_round_trip_and_are_checked() -> None:
    text = '[[multipaths]]\nwwid = "w1"\nalias = "old"\ndata_offset = 2048\ndata_sectors = 61440\n'
    cfg = c.parse_config(text)
    mp = cfg.multipaths[0]
    assert (mp.data_offset, mp.data_sectors) == (2048, 61440)
    opts = c.effective_options(cfg, "w1", "", "")
    assert (opts.data_offset, opts.data_sectors) == (2048, 61440)
    assert c.effective_options(cfg, "w2", "", "").data_offset is None
    assert c.parse_config(c.config_to_toml(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"multipaths\[0\].data_sectors: needs data_offset"):
        c.parse_config('[[multipaths]]\nwwid = "w1"\ndata_sectors = 8\n')
    with pytest.raises(ConfigError, match=r"data_offset: must be between 0"):
        c.parse_config('[[multipaths]]\nwwid = "w1"\ndata_offset = -1\n')
    with pytest.raises(ConfigError, match=r"data_offset"):
        c.parse_config('[defaults]\ndata_offset = 8\n')


def test_an_empty_history_file_keeps_the_history_in_memory_only() -> None:
    assert c.parse_config('[defaults]\nhistory_file = ""\n').defaults.history_file == ""


# --- hostile files: every error is one line naming the key and the line ------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # tomllib lets int()'s ValueError through: a traceback of dmpathd once
        ("[defaults]\nno_path_retry = 1" + "0" * 5000 + "\n", "f.toml:2: no_path_retry: "),
        # a key with control characters: shown escaped, the message stays one line
        ('[defaults]\n"a\\rb\\u0002" = 1\n', 'f.toml:2: defaults."a\\u000db\\u0002": '),
        # a quoted key with an escape is found on its line
        ('\n"\\u001e[" = 1\n', 'f.toml:2: "\\u001e[": unknown option'),
        # a key inside an inline table: the line of the table's key
        ('\ndefaults = {no_path_retry = "x"}\n', "f.toml:2: defaults.no_path_retry: "),
        # tomllib says "at end of document", not a line
        ("[defaults]\nsocket = 1\nsocket = 2", "f.toml:3: invalid TOML: "),
    ],
)
def test_hostile_config_errors_are_one_line_with_key_and_line(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        c.parse_config(text, "f.toml")
    message = str(info.value)
    assert message.startswith(where), message
    assert "\n" not in message and "\r" not in message
    assert info.value.line is not None


_KEYS = st.sampled_from(
    [f.name for f in dataclasses.fields(c.Defaults)]
    + ["wwid", "alias", "vendor", "product", "devnode", "device", "x"]
) | st.text(min_size=1, max_size=6).map(_toml_value)
_SCALARS = st.sampled_from(
    ["1", "-1", "1" + "0" * 5000, "1e999", "nan", "3.5", "true", '"queue"', '""', "1979-05-27",
     "07:32:00", '"/x"', "'[('", '"\\u0000"', '"a\\nb"']
) | st.text(max_size=8).map(_toml_value) | st.integers().map(str)
_VALUES = st.recursive(
    _SCALARS,
    lambda v: st.lists(v, max_size=3).map(lambda items: "[" + ", ".join(items) + "]")
    | st.lists(st.tuples(_KEYS, v), max_size=2).map(
        lambda kv: "{" + ", ".join(f"{k} = {x}" for k, x in kv) + "}"
    ),
    max_leaves=4,
)
_SECTIONS = st.tuples(
    st.sampled_from(
        ["", "[defaults]", "[blacklist]", "[blacklist_exceptions]", "[[multipaths]]",
         "[[devices]]", "[overrides]", "[defaults.x]"]
    ),
    st.lists(st.tuples(_KEYS, _VALUES), max_size=4),
)


@st.composite
def _hostile_toml(draw: st.DrawFn) -> str:
    sections = draw(st.lists(_SECTIONS, max_size=4))
    text = "\n".join(h + "\n" + "".join(f"{k} = {v}\n" for k, v in kv) for h, kv in sections)
    if text and draw(st.booleans()):  # and broken TOML
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", "=", "[", '"', "\n", "]]", "\\"])) + text[at:]
    return text


@settings(max_examples=300, deadline=None)
@given(_hostile_toml())
def test_any_config_error_is_one_line_with_its_line(text: str) -> None:
    try:
        c.parse_config(text, "f.toml")
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message
        assert exc.line is not None, message
        assert message.startswith(f"f.toml:{exc.line}: " + (f"{exc.key}: " if exc.key else ""))
