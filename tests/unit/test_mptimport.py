"""mpathctl import multipath.conf: real forms of multipath.conf become a dmpath.toml that
loads, and every setting left behind is named with its line and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmpath import config as c
from dmpath.cli import main
from dmpath.config.mptconf import parse_mptconf, read_with_config_dir
from dmpath.config.mptimport import Imported, import_mptconf, python_regex
from dmpath.model import Backend
from dmpath.policy import files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "multipath-conf"
MPT = Path(__file__).resolve().parents[1] / "fixtures" / "multipath-tools"


def convert(name: str) -> Imported:
    imp = import_mptconf(read_with_config_dir(str(FIXTURES / name), ""))
    # the output is a dmpath.toml our own loader takes as it is
    assert c.parse_config(imp.text, "out.toml") == imp.config
    return imp


def not_carried(imp: Imported) -> dict[str, tuple[int, str]]:
    """setting → (line, value) of every note."""
    return {n.setting: (int(n.where.rsplit(":", 1)[1]), n.value) for n in imp.notes}


def only(imp: Imported, vendor: str) -> c.DeviceEntry:
    (dev,) = [d for d in imp.config.devices if d.vendor == vendor]
    return dev


# --------------------------------------------------------------------------- the samples


def test_manpage_forms() -> None:
    imp = convert("manpage-forms.conf")
    d = imp.config.defaults
    assert d.polling_interval == 10.0 and d.max_polling_interval == 40.0
    assert d.path_grouping_policy is c.GroupingPolicy.GROUP_BY_PRIO
    assert d.path_selector == "service-time 0"
    assert d.uid_attribute == ("ID_SERIAL", "ID_WWN")
    assert (d.prio, d.checker, d.failback, d.no_path_retry) == (
        c.Prio.ALUA,
        c.Checker.TUR,
        "immediate",
        12,
    )
    assert d.features == ()
    assert (d.user_friendly_names, d.alias_prefix) == (True, "lun")
    assert d.find_multipaths is c.FindMultipaths.STRICT
    assert (d.checker_timeout, d.fast_io_fail_tmo, d.dev_loss_tmo, d.eh_deadline) == (
        30.0,
        5,
        600,
        "off",
    )
    assert (d.flush_on_last_del, d.retain_hwhandler) == (False, True)
    assert (d.bindings_file, d.wwids_file) == ("/etc/multipath/bindings", "/etc/multipath/wwids")
    # san_path_err_threshold 2: multipath-tools acts on the third failure
    assert (d.marginal_failures, d.marginal_recovery) == (3, 300.0)
    bl = imp.config.blacklist
    assert "^cciss!c[0-9]d[0-9]*" in bl.devnode
    assert "^36005076[0-9A-Fa-f]+$" in bl.wwid  # [[:xdigit:]] spelt out for Python
    assert "ID_ATA" in bl.property and "scsi:usb" in bl.protocol
    assert c.DeviceMatch("DELL", "MD3[0-9]{3}") in bl.device
    assert c.DeviceMatch("SSDCORP", '2.5" SSD') in bl.device
    assert "^3600508b400105e210000900000490000$" in imp.config.blacklist_exceptions.wwid
    yellow, red = imp.config.multipaths
    assert (yellow.wwid, yellow.alias) == ("3600508b4000156d700012000000b0000", "yellow")
    assert yellow.overrides == c.Overrides(
        path_grouping_policy=c.GroupingPolicy.MULTIBUS,
        path_selector="round-robin 0",
        failback="manual",
        no_path_retry=5,
    )
    assert (red.wwid, red.alias) == ("1DEC_____321816758474", "red")
    compellent, overrides = imp.config.devices
    assert (compellent.vendor, compellent.product) == ("COMPELNT", "Compellent Vol")
    assert compellent.overrides.no_path_retry == "queue"
    # overrides: a last table matching every device, below the multipaths
    assert (overrides.vendor, overrides.overrides.no_path_retry) == (".*", "fail")
    opts = c.effective_options(imp.config, "3600508b4000156d700012000000b0000", "X", "Y")
    assert opts.no_path_retry == 5
    assert c.effective_options(imp.config, "36x", "COMPELNT", "Compellent Vol").no_path_retry == (
        "fail"
    )
    assert not_carried(imp) == {
        "defaults.verbosity": (6, "2"),
        "defaults.detect_prio": (26, "yes"),
        "defaults.reservation_key": (29, "file"),
        "defaults.san_path_err_forget_rate": (31, "100"),
        "devices.device.revision": (57, "0702"),
        "multipaths.multipath.rr_weight": (69, "priorities"),
        "overrides.protocol[scsi:iscsi].fast_io_fail_tmo": (81, "15"),
    }
    assert imp.carried == 47


def test_rhel_mpathconf_enable() -> None:
    imp = convert("rhel-mpathconf.conf")
    d = imp.config.defaults
    assert d.user_friendly_names is True
    assert d.find_multipaths is c.FindMultipaths.ON
    # multipath-tools' requirement, unanchored as written, beside dmpath's built-in one
    assert imp.config.blacklist_exceptions.property == (
        "^(SCSI_IDENT_|ID_WWN)",
        "(SCSI_IDENT_|ID_WWN)",
    )
    assert imp.config.blacklist == c.BUILTIN_BLACKLIST  # the empty blacklist adds nothing
    (note,) = imp.notes
    assert (note.setting, note.value, note.where.endswith(":14")) == (
        "defaults.enable_foreign",
        "^$",
        True,
    )
    assert "NVMe native multipath" in note.why


def test_distribution_commented_sample() -> None:
    imp = convert("distro-commented-sample.conf")
    d = imp.config.defaults
    assert d.user_friendly_names is True
    assert d.find_multipaths is c.FindMultipaths.ON  # smart: claimed at the second path
    assert d.polling_interval == c.Defaults().polling_interval  # commented out: not set
    assert imp.config.blacklist.devnode[-3:] == (
        "^(ram|raw|loop|fd|md|dm-|sr|scd|st)[0-9]*",
        "^hd[a-z]",
        "^cciss!c[0-9]d[0-9]*",
    )
    assert imp.config.multipaths == () and imp.config.devices == ()
    assert not_carried(imp) == {"devnode_blacklist": (27, "{...}")}
    assert "not a multipath.conf section" in imp.notes[0].why


def test_netapp_ontap() -> None:
    imp = convert("netapp-ontap.conf")
    d = imp.config.defaults
    assert (d.checker, d.no_path_retry) == (c.Checker.DIRECTIO, "fail")  # readsector0
    # the file is silent on them: multipath-tools' own values, so nothing is renamed or taken
    assert (d.user_friendly_names, d.find_multipaths) == (False, c.FindMultipaths.STRICT)
    dev = only(imp, "NETAPP")
    assert dev.product == "LUN.*"
    assert dev.overrides == c.Overrides(
        path_grouping_policy=c.GroupingPolicy.GROUP_BY_PRIO,
        features=("pg_init_retries 50",),
        no_path_retry="queue",
        failback="immediate",
        checker=c.Checker.TUR,
    )
    assert c.DeviceMatch("NETAPP", "LUN C-Mode") in imp.config.blacklist.device
    notes = not_carried(imp)
    assert notes == {
        "devices.device.prio": (13, "ontap"),
        "devices.device.flush_on_last_del": (15, "always"),
        "devices.device.dev_loss_tmo": (16, "infinity"),
        "devices.device.user_friendly_names": (17, "no"),
        "devices.device.retain_attached_hw_handler": (19, "yes"),
    }
    by = {n.setting: n.why for n in imp.notes}
    assert "alua (ALUA states) and const" in by["devices.device.prio"]
    assert "only in [defaults]" in by["devices.device.dev_loss_tmo"]


def test_pure_flasharray() -> None:
    imp = convert("pure-flasharray.conf")
    assert imp.config.defaults.polling_interval == 10.0
    dev = only(imp, "PURE")
    assert dev.overrides == c.Overrides(
        path_selector="queue-length 0",
        path_grouping_policy=c.GroupingPolicy.GROUP_BY_PRIO,
        checker=c.Checker.TUR,
        no_path_retry="fail",  # no_path_retry 0 is fail in multipath-tools
        hardware_handler="alua",  # "1 alua"
        prio=c.Prio.ALUA,
        failback="immediate",
    )
    assert not_carried(imp) == {
        "devices.device.fast_io_fail_tmo": (12, "10"),
        "devices.device.dev_loss_tmo": (17, "600"),
    }


def test_dell_powerstore() -> None:
    imp = convert("dell-powerstore.conf")
    d = imp.config.defaults
    assert (d.polling_interval, d.checker_timeout) == (5.0, 15.0)
    assert d.find_multipaths is c.FindMultipaths.GREEDY  # no: every device not blacklisted
    dev = only(imp, "DellEMC")
    assert dev.product == "PowerStore"
    assert dev.overrides.path_selector == "queue-length 0"
    assert dev.overrides.path_grouping_policy is c.GroupingPolicy.GROUP_BY_PRIO  # quoted
    assert (dev.overrides.no_path_retry, dev.overrides.failback) == (3, "immediate")
    assert set(not_carried(imp)) == {
        "defaults.disable_changed_wwids",
        "devices.device.detect_prio",
        "devices.device.fast_io_fail_tmo",
        "devices.device.rr_min_io_rq",
        "devices.device.max_sectors_kb",
        "devices.device.dev_loss_tmo",
    }


def test_hpe_3par() -> None:
    imp = convert("hpe-3par.conf")
    d = imp.config.defaults
    assert (d.polling_interval, d.user_friendly_names, d.find_multipaths) == (
        10.0,
        False,
        c.FindMultipaths.ON,
    )
    dev = only(imp, "3PARdata")
    assert dev.overrides == c.Overrides(
        path_grouping_policy=c.GroupingPolicy.GROUP_BY_PRIO,
        path_selector="round-robin 0",
        checker=c.Checker.TUR,
        features=(),
        hardware_handler="alua",
        prio=c.Prio.ALUA,
        failback="immediate",
        no_path_retry=18,
    )
    # in file order, each with its line
    assert [str(n).split(": ")[1] for n in imp.notes] == [
        'devices.device.rr_weight "uniform"',
        'devices.device.rr_min_io_rq "1"',
        'devices.device.detect_prio "yes"',
        'devices.device.fast_io_fail_tmo "10"',
        'devices.device.dev_loss_tmo "infinity"',
    ]
    assert [n.where.rsplit(":", 1)[1] for n in imp.notes] == ["18", "20", "21", "22", "23"]


def test_multipaths_with_aliases_and_overrides_with_protocol() -> None:
    imp = convert("multipaths-overrides.conf")
    d = imp.config.defaults
    # overrides win over defaults for what dmpath has only in [defaults]
    assert d.user_friendly_names is False
    assert (d.fast_io_fail_tmo, d.dev_loss_tmo) == (5, 60)
    assert d.bindings_file == "/etc/multipath/bindings.db"
    assert d.wwids_file == "/etc/multipath/wwids"
    # marginal_path_double_failed_time 60: two failures within 60 s; recheck gap: recovery
    assert (d.marginal_failures, d.marginal_window, d.marginal_recovery) == (2, 60.0, 1800.0)
    assert imp.config.blacklist.wwid == (".*",)
    assert imp.config.blacklist_exceptions.wwid == ("^3624a9370",)
    names = {m.wwid[-4:]: m.alias for m in imp.config.multipaths}
    assert names == {
        "1a2b": "oradata01",
        "1a2c": "oradata02",
        "1a2d": "oraredo01",
        "1a2e": None,  # "ora fra" is no map name dmpath makes
        "1a2f": None,  # oradata01 names 1a2b already
    }
    assert c.configured_aliases(imp.config)["oradata01"].endswith("1a2b")
    by_wwid = {m.wwid[-4:]: m for m in imp.config.multipaths}
    assert by_wwid["1a2c"].overrides.no_path_retry == "queue"
    assert by_wwid["1a2d"].overrides.failback == 30
    (overrides,) = imp.config.devices
    assert (overrides.vendor, overrides.overrides.no_path_retry) == (".*", 30)
    notes = not_carried(imp)
    assert notes["multipaths.multipath.alias"] == (39, "oradata01")  # the later one
    assert notes["overrides.protocol[scsi:fcp].dev_loss_tmo"] == (49, "infinity")
    assert notes["overrides.protocol[scsi:iscsi].fast_io_fail_tmo"] == (53, "15")
    assert {n.value for n in imp.notes if n.setting == "multipaths.multipath.alias"} == {
        "ora fra",
        "oradata01",
    }
    assert "defaults.marginal_path_err_sample_time" in notes


# --------------------------------------------------------------------------- the rules


def _imp(text: str) -> Imported:
    imp = import_mptconf([parse_mptconf(text, "m.conf")])
    assert c.parse_config(imp.text, "out.toml") == imp.config
    return imp


def test_multipath_tools_own_full_configuration() -> None:
    # what multipath-tools itself prints as its effective configuration (multipath -t):
    # its defaults and the whole built-in hardware table, 122 arrays
    imp = convert("multipath-t-debian12.conf")
    assert len(imp.config.devices) == 122
    netapp = [d for d in imp.config.devices if d.vendor == "NETAPP" and d.product == "LUN"]
    assert len(netapp) == 1
    assert netapp[0].overrides == c.Overrides(
        path_grouping_policy=c.GroupingPolicy.GROUP_BY_PRIO,
        features=("pg_init_retries 50",),
        no_path_retry="queue",
        failback="immediate",
    )
    # every setting left behind says where it was and why
    assert imp.notes and all(n.why and n.where.startswith(str(FIXTURES)) for n in imp.notes)
    left = {n.setting for n in imp.notes}
    assert "devices.device.prio" in left  # "ontap", "rdac", ...: no such prio here
    assert "devices.device.path_checker" in left  # "hp_sw", "rdac", "emc_clariion"


def test_the_output_opens_with_the_notes_as_comments_and_loads_from_a_file(
    tmp_path: Path,
) -> None:
    imp = convert("netapp-ontap.conf")
    head = imp.text.split("\n[defaults]")[0].splitlines()
    assert all(line.startswith("#") or not line for line in head)
    assert sum(" devices.device." in line for line in head) == len(imp.notes)
    target = tmp_path / "dmpath.toml"
    target.write_text(imp.text)
    assert c.load_config(target) == imp.config


def test_queue_if_no_path_is_no_path_retry_unless_that_is_set() -> None:
    imp = _imp('defaults {\n features "1 queue_if_no_path"\n}\n')
    assert (imp.config.defaults.no_path_retry, imp.config.defaults.features) == ("queue", ())
    imp = _imp('defaults {\n features "1 queue_if_no_path"\n no_path_retry 5\n}\n')
    assert imp.config.defaults.no_path_retry == 5
    (note,) = imp.notes
    assert "no_path_retry in the same section decides" in note.why


def test_values_without_equivalent_are_named() -> None:
    imp = _imp(
        "defaults {\n"
        " failback followover\n"
        ' path_selector "historical-service-time 0"\n'
        " path_grouping_policy group_by_tpg\n"
        " path_checker emc_clariion\n"
        ' uid_attribute ""\n'
        " flush_on_last_del always\n"
        " polling_interval 9999\n"
        " no_such_keyword 1\n"
        "}\n"
    )
    assert imp.config.defaults == c.Defaults(
        user_friendly_names=False,
        find_multipaths=c.FindMultipaths.STRICT,
        bindings_file="/etc/multipath/bindings",
        wwids_file="/etc/multipath/wwids",
    )
    why = {n.setting: n.why for n in imp.notes}
    assert "no followover" in why["defaults.failback"]
    assert "path_selector refuses it" in why["defaults.path_selector"]
    assert "group_by_prio" in why["defaults.path_grouping_policy"]
    assert "tur, directio and none" in why["defaults.path_checker"]
    assert "no sysfs method" in why["defaults.uid_attribute"]
    assert "never removes a map that is open" in why["defaults.flush_on_last_del"]
    assert "between 0.1 and 3600" in why["defaults.polling_interval"]
    assert "not a multipath.conf keyword" in why["defaults.no_such_keyword"]


def test_pairs_dmpath_checks_are_met() -> None:
    imp = _imp(
        "defaults {\n polling_interval 20\n max_polling_interval 10\n"
        " fast_io_fail_tmo 10\n dev_loss_tmo 5\n}\n"
    )
    d = imp.config.defaults
    assert (d.polling_interval, d.max_polling_interval) == (20.0, 60.0)
    assert (d.fast_io_fail_tmo, d.dev_loss_tmo) == (10, "off")
    assert {n.setting for n in imp.notes} == {
        "defaults.max_polling_interval",
        "defaults.dev_loss_tmo",
    }


def test_drop_ins_override_the_file_and_add_entries(tmp_path: Path) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "50-site.conf").write_text(
        "defaults {\n polling_interval 30\n}\n"
        "multipaths {\n multipath {\n  wwid 36001\n  alias later\n }\n}\n"
    )
    main_file = tmp_path / "multipath.conf"
    main_file.write_text(
        f'defaults {{\n polling_interval 10\n config_dir "{confd}"\n}}\n'
        "multipaths {\n multipath {\n  wwid 36001\n  alias first\n  no_path_retry 4\n }\n}\n"
    )
    imp = import_mptconf(read_with_config_dir(str(main_file)))
    assert imp.sources == (str(main_file), str(confd / "50-site.conf"))
    assert imp.config.defaults.polling_interval == 30.0
    (mp,) = imp.config.multipaths  # one WWID's sections are merged, the later winning
    assert (mp.alias, mp.overrides.no_path_retry) == ("later", 4)
    assert [n.setting for n in imp.notes] == []


def test_blacklist_entries_dmpath_refuses() -> None:
    imp = _imp('blacklist {\n devnode "!^sd[a-z]"\n wwid "*"\n device {\n  revision 1\n }\n}\n')
    why = [(n.setting, n.why.split(":")[0]) for n in imp.notes]
    assert why == [
        ("blacklist.devnode", 'inverted patterns ("!^sd[a-z]") are not supported'),
        ("blacklist.wwid", 'invalid regular expression "*"'),
        ("blacklist.device.revision", "dmpath matches vendor and product only"),
        ("blacklist.device", "no vendor or product"),
    ]
    assert imp.config.blacklist == c.BUILTIN_BLACKLIST


def test_odd_file_names_stay_in_their_comments() -> None:
    imp = import_mptconf([parse_mptconf("defaults {\n verbosity 3\n}\n", "a\nb\x01.conf")])
    assert c.parse_config(imp.text) == imp.config
    assert "a?b?.conf:2: defaults.verbosity" in imp.text


def test_posix_classes_become_python_ones() -> None:
    assert python_regex("^sd[[:alpha:]]+[[:digit:]]*$") == "^sd[A-Za-z]+[0-9]*$"
    assert python_regex("[[:unknown:]]") == "[[:unknown:]]"
    # "[[0-9]" is "[" or a digit in both; escaped, Python does not warn of a nested set
    assert python_regex("^hd[a-z][[0-9]*]") == r"^hd[a-z][\[0-9]*]"


def test_multipath_tools_state_files_are_read_in_place() -> None:
    """The bindings and wwids files multipath-tools wrote (captured in the lab) are read by
    the readers dmpathd uses: the output points at them, so names and known WWIDs stay."""
    bindings = files.load_bindings(MPT / "bindings")
    wwids = files.load_wwids(MPT / "wwids")
    assert bindings.entries and wwids
    assert bindings.alias_of(wwids[0]) is not None


def test_backend_is_never_set() -> None:
    assert convert("manpage-forms.conf").config.defaults.backend is Backend.DM


# --------------------------------------------------------------------------- the command


def test_cli_prints_the_toml_and_the_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = str(FIXTURES / "pure-flasharray.conf")
    code = main.main(["import", "multipath.conf", path, "--config-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert c.parse_config(out, "out.toml").devices[0].vendor == "PURE"
    assert err == (
        f"mpathctl: {path}: 10 settings carried over, 2 not carried (the # lines at the top "
        "of the output say which and why)\n"
    )


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = str(FIXTURES / "rhel-mpathconf.conf")
    assert main.main(["import", "multipath.conf", path, "--config-dir", "", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert doc["result"]["not_carried"][0]["setting"] == "defaults.enable_foreign"
    assert c.parse_config(doc["result"]["toml"]).defaults.find_multipaths.value == "on"


def test_cli_reads_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("defaults {\n polling_interval 7\n}\n"))
    assert main.main(["import", "multipath.conf", "-"]) == 0
    out, err = capsys.readouterr()
    assert c.parse_config(out).defaults.polling_interval == 7.0
    assert "<stdin>: 1 setting carried over, 0 not carried\n" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read: No such file or directory"),
        ("defaults {\n", ":1: section 'defaults' is never closed"),
        ('defaults {\n x "y\n}\n', ":2: missing closing quote"),
    ],
)
def test_cli_bad_input_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "multipath.conf"
    if text is not None:
        path.write_text(text)
    code = main.main(["import", "multipath.conf", str(path), "--config-dir", ""])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith(f"mpathctl: error: {path}")
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
