"""dmpath.config.mptconf: multipath.conf syntax as multipath-tools reads it, and config_dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmpath.config.mptconf import (
    DEFAULT_CONFIG_DIR,
    Section,
    config_dir_of,
    parse_mptconf,
    read_mptconf,
    read_with_config_dir,
)
from dmpath.errors import ConfigError


def _settings(sec: Section) -> list[tuple[str, str, int]]:
    return [(s.keyword, s.value, s.line) for s in sec.settings]


def test_sections_settings_and_lines() -> None:
    root = parse_mptconf(
        "defaults {\n"
        "\tpolling_interval 10\n"
        "\tpath_selector \"round-robin 0\"\n"
        "}\n"
        "devices {\n"
        "  device {\n"
        '    vendor "NETAPP"\n'
        "    product LUN\n"
        "  }\n"
        "}\n",
        "m.conf",
    )
    assert [s.name for s in root.sections] == ["defaults", "devices"]
    defaults = root.sections[0]
    assert (defaults.source, defaults.line, defaults.where) == ("m.conf", 1, "m.conf:1")
    assert _settings(defaults) == [
        ("polling_interval", "10", 2),
        ("path_selector", "round-robin 0", 3),
    ]
    (device,) = root.sections[1].subsections("device")
    assert device.line == 6
    assert _settings(device) == [("vendor", "NETAPP", 7), ("product", "LUN", 8)]


def test_comments_hash_and_bang_outside_quotes_only() -> None:
    root = parse_mptconf(
        "# a comment\n"
        "  ! another\n"
        "blacklist {   # trailing\n"
        '\tdevnode "^cciss!c[0-9]d[0-9]*"  ! the ! in quotes is the pattern\'s\n'
        '\twwid "#1"\n'
        "\tdevnode ^sd[a-z]#comment right after the word\n"
        "}\n"
    )
    (bl,) = root.sections
    assert [s.value for s in bl.settings] == ["^cciss!c[0-9]d[0-9]*", "#1", "^sd[a-z]"]


def test_quotes_keep_spaces_and_two_quotes_are_one() -> None:
    root = parse_mptconf(
        'blacklist {\n device {\n  product "2.5"" SSD"\n  vendor "A  B"\n  model ""\n }\n}\n'
    )
    (dev,) = root.sections[0].sections
    assert [s.value for s in dev.settings] == ['2.5" SSD', "A  B", ""]


def test_unknown_sections_are_read_like_the_others() -> None:
    root = parse_mptconf("devnode_blacklist {\n devnode sda\n nested {\n  x 1\n }\n}\n")
    (sec,) = root.sections
    assert sec.name == "devnode_blacklist"
    assert _settings(sec) == [("devnode", "sda", 2)]
    assert [(s.name, s.line) for s in sec.sections] == [("nested", 3)]


def test_overrides_protocol_subsections() -> None:
    root = parse_mptconf(
        "overrides {\n"
        " no_path_retry fail\n"
        " protocol {\n  type scsi:fcp\n  dev_loss_tmo 60\n }\n"
        " protocol {\n  type \"scsi:iscsi\"\n }\n"
        "}\n"
    )
    (ov,) = root.sections
    protocols = list(ov.subsections("protocol"))
    assert [p.settings[0].value for p in protocols] == ["scsi:fcp", "scsi:iscsi"]
    assert _settings(ov) == [("no_path_retry", "fail", 2)]


def test_an_empty_file_and_an_empty_section() -> None:
    assert parse_mptconf("").sections == ()
    (bl,) = parse_mptconf("blacklist {\n}\n").sections
    assert bl.settings == () and bl.sections == ()


@pytest.mark.parametrize(
    ("text", "line", "detail"),
    [
        ('defaults {\n path_selector "round-robin 0\n}\n', 2, "missing closing quote"),
        ("defaults {\n polling_interval\n}\n", 2, "polling_interval: no value"),
        ("defaults\n{\n}\n", 1, "a section's '{' goes on the same line"),
        ("defaults {\n path_selector round-robin 0\n}\n", 2, "text after the value: '0'"),
        ("defaults {\n}\n}\n", 3, "'}' closes no section"),
        ("defaults {\n polling_interval 5 }\n}\n", 2, "text after the value: '}'"),
        ("defaults {\n} extra\n", 2, "'}' must stand alone"),
        ("blacklist {\n devnode x\n", 1, "section 'blacklist' is never closed"),
        ("defaults { polling_interval 5\n}\n", 1, "text after 'defaults {'"),
        ('"defaults" {\n}\n', 1, "must start with a keyword"),
        ("{\n}\n", 1, "must start with a keyword"),
    ],
)
def test_bad_syntax_is_one_error_naming_file_and_line(text: str, line: int, detail: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mptconf(text, "/etc/multipath.conf")
    assert info.value.line == line
    assert str(info.value).startswith(f"/etc/multipath.conf:{line}: ")
    assert detail in str(info.value)
    assert "\n" not in str(info.value)


def test_config_dir_default_named_and_off() -> None:
    assert config_dir_of(parse_mptconf("")) == DEFAULT_CONFIG_DIR == "/etc/multipath/conf.d"
    named = parse_mptconf('defaults {\n config_dir "/srv/mp.d"\n}\n')
    assert config_dir_of(named) == "/srv/mp.d"
    assert config_dir_of(parse_mptconf('defaults {\n config_dir ""\n}\n')) == ""


def test_drop_ins_are_read_in_alphabetical_order_after_the_file(tmp_path: Path) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "20-b.conf").write_text("defaults {\n polling_interval 20\n}\n")
    (confd / "10-a.conf").write_text("defaults {\n polling_interval 10\n}\n")
    (confd / "notes.txt").write_text("not a drop-in {\n")
    (confd / "dir.conf").mkdir()
    main = tmp_path / "multipath.conf"
    main.write_text(f'defaults {{\n config_dir "{confd}"\n}}\n')
    files = read_with_config_dir(str(main))
    assert [f.source for f in files] == [
        str(main),
        str(confd / "10-a.conf"),
        str(confd / "20-b.conf"),
    ]
    # the caller may name another directory, or none
    assert len(read_with_config_dir(str(main), "")) == 1
    assert len(read_with_config_dir(str(main), str(tmp_path / "absent"))) == 1


def test_a_drop_in_with_bad_syntax_names_itself(tmp_path: Path) -> None:
    (tmp_path / "x.conf").write_text("defaults {\n")
    main = tmp_path / "multipath.conf"
    main.write_text("")
    with pytest.raises(ConfigError, match=r"x\.conf:1: section 'defaults' is never closed"):
        read_with_config_dir(str(main), str(tmp_path))


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.conf: cannot read: No such file"):
        read_mptconf(str(tmp_path / "absent.conf"))
    bad = tmp_path / "latin1.conf"
    bad.write_bytes(b"defaults {\n}\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.conf:3: not UTF-8 text"):
        read_mptconf(str(bad))
    with pytest.raises(ConfigError, match="cannot read"):
        read_mptconf(str(tmp_path))
