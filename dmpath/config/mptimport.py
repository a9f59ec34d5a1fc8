"""multipath-tools' configuration (``mptconf`` trees) as a dmpath.toml.

Every setting is carried over or reported, never dropped in silence: a ``Note`` says which
setting (file:line), its value and why dmpath has no place for it. The notes open the
output as ``#`` lines, so that the output stays a file dmpath loads.

How multipath-tools' sections land in dmpath's:

* ``defaults`` → ``[defaults]``;
* ``overrides`` (above every ``device`` in multipath-tools) → a last ``[[devices]]`` table
  that matches every vendor (above the others, below ``[[multipaths]]``, the same order),
  and, for options dmpath has only in ``[defaults]``, ``[defaults]``;
* ``devices { device }`` → ``[[devices]]``; ``multipaths { multipath }`` → ``[[multipaths]]``;
* ``blacklist``/``blacklist_exceptions`` → the same sections (POSIX classes such as
  ``[:digit:]`` rewritten for Python's regular expressions).

Where the file is silent, multipath-tools' built-in values are written for the two options
that decide names and which devices are claimed (``user_friendly_names``,
``find_multipaths``), so that no map is renamed and no new device is taken; the bindings
and wwids files are the ones multipath-tools uses, read in place. Everything else the
file does not set keeps dmpath's default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from dmpath.config.mptconf import Section, Setting
from dmpath.config.records import OVERRIDABLE, Config
from dmpath.config.toml_text import _toml_string, _toml_value
from dmpath.config.validate import checked_value, parse_config
from dmpath.errors import ConfigError

MPT_BINDINGS: Final = "/etc/multipath/bindings"
MPT_WWIDS: Final = "/etc/multipath/wwids"
#: multipath-tools' built-in values where dmpath's differ in what gets a map and its name
MPT_BUILTIN: Final[dict[str, object]] = {
    "user_friendly_names": False,
    "find_multipaths": "strict",
}
#: a [[devices]] vendor that matches every path: where ``overrides`` lands
MATCH_ALL: Final = ".*"


@dataclass(frozen=True)
class Note:
    """A setting that is not carried over, and why."""

    where: str
    setting: str  # "defaults.rr_min_io", "devices.device.revision"
    value: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.setting} {_toml_string(self.value)}: {self.why}"


@dataclass(frozen=True)
class Imported:
    text: str  # the dmpath.toml
    config: Config  # the text, loaded by dmpath's own loader
    carried: int  # settings carried over
    notes: tuple[Note, ...]  # settings not carried over
    sources: tuple[str, ...]  # the files read, in order


class _NotCarried(Exception):
    """A value with no dmpath equivalent; the message says why."""


# --------------------------------------------------------------------------- reasons

_SELECTOR_WHY: Final = "dmpath's path selectors take no per-path repeat count or weight"
_OBSOLETE: Final = "obsolete in multipath-tools too (ignored there)"
_PR_WHY: Final = "dmpath does not manage SCSI persistent reservations (no mpathpersist)"
_SAMPLE_WHY: Final = (
    "dmpath sends no test I/O to a suspect path: it keeps a marginal path failed until it "
    "has been healthy for marginal_recovery seconds"
)

#: multipath-tools keywords dmpath has no equivalent for, and what dmpath does instead
WHY_NOT: Final[dict[str, str]] = {
    "verbosity": "dmpathd's log level is not configured here (dmpathd --debug)",
    "log_checker_err": "dmpathd logs a path's failure once, when its state changes",
    "rr_min_io": _SELECTOR_WHY,
    "rr_min_io_rq": _SELECTOR_WHY,
    "rr_weight": _SELECTOR_WHY,
    "prio_args": "dmpath's prioritizers (alua, const) take no arguments",
    "detect_prio": "dmpath uses the prio it is given (alua by default: ALUA states, or one "
    "priority for all paths of a device without ALUA)",
    "detect_checker": "dmpath uses the checker it is given (tur by default)",
    "detect_pgpolicy": "dmpath uses the path_grouping_policy it is given (group_by_prio by "
    "default)",
    "detect_pgpolicy_use_tpg": "dmpath has no group_by_tpg policy; group_by_prio with prio "
    "alua groups paths by ALUA state",
    "reassign_maps": "dmpath never remaps other device-mapper devices",
    "multipath_dir": _OBSOLETE,
    "pg_timeout": _OBSOLETE,
    "getuid_callout": _OBSOLETE,
    "udev_dir": _OBSOLETE,
    "max_fds": "dmpathd needs no file descriptor limit raised",
    "queue_without_daemon": "no_path_retry alone decides queueing, with or without dmpathd",
    "strict_timing": "dmpathd schedules each path's checks on its own timer",
    "force_sync": "dmpath's checks always run in their own threads",
    "deferred_remove": "dmpath never defers a map's removal",
    "partition_delimiter": "no equivalent: partition maps keep kpartx's default names",
    "skip_kpartx": "no equivalent: dmpathd makes partition maps for every map",
    "find_multipaths_timeout": 'dmpath\'s find_multipaths = "on" claims a WWID when its '
    "second path appears; it does not wait for one",
    "uxsock_timeout": "mpathctl has its own timeouts",
    "retrigger_tries": "dmpathd reads a path's WWID from udev and waits for its next event",
    "retrigger_delay": "dmpathd reads a path's WWID from udev and waits for its next event",
    "missing_uev_wait_timeout": "dmpathd does not wait for a map's udev event",
    "disable_changed_wwids": "no equivalent setting",
    "recheck_wwid": "no equivalent setting",
    "remove_retries": "dmpathd retries a refused removal on its own",
    "max_sectors_kb": "dmpath leaves max_sectors_kb as the kernel sets it",
    "ghost_delay": "no equivalent: a map is made at once, whatever its paths' states",
    "enable_foreign": "nothing to enable: mpathctl status always shows NVMe native multipath",
    "auto_resize": "no equivalent: resize a map with dmsetup after the LUN has grown",
    "all_tg_pt": _PR_WHY,
    "reservation_key": _PR_WHY,
    "prkeys_file": _PR_WHY,
    "marginal_pathgroups": "dmpath keeps a marginal path failed rather than in a group of "
    "its own",
    "marginal_path_err_sample_time": _SAMPLE_WHY,
    "marginal_path_err_rate_threshold": _SAMPLE_WHY,
    "san_path_err_forget_rate": "dmpath counts failures within marginal_window seconds "
    "instead of forgetting one every so many checks",
    "delay_watch_checks": "deprecated in multipath-tools; dmpath's marginal rule "
    "(marginal_failures, marginal_window, marginal_recovery) does this",
    "delay_wait_checks": "deprecated in multipath-tools; dmpath's marginal rule "
    "(marginal_failures, marginal_window, marginal_recovery) does this",
    "vpd_vendor": "no equivalent setting",
    "revision": "dmpath matches devices by vendor and product only: this table applies to "
    "every revision",
}

_PER_DEVICE_WHY: Final = "dmpath has this only in [defaults], for every device"


# --------------------------------------------------------------------------- values


def _yes(value: str) -> bool:
    if value in ("yes", "1"):
        return True
    if value in ("no", "0"):
        return False
    raise _NotCarried(f"multipath-tools reads only yes or no here, not {value!r}")


def _number(value: str) -> int:
    if not value.isdigit():
        raise _NotCarried(f"not a number of seconds: {value!r}")
    return int(value)


def _word_or_number(words: dict[str, object]) -> Callable[[str], object]:
    def convert(value: str) -> object:
        return words[value] if value in words else _number(value)

    return convert


_GROUPING: Final = ("failover", "multibus", "group_by_prio")
_PRIO: Final[dict[str, str]] = {
    "alua": "alua",
    "const": "const",
    # sysfs reads the ALUA state scsi_dh_alua keeps in sysfs: the states alua asks for
    "sysfs": "alua",
}
_CHECKERS: Final[dict[str, str]] = {
    "tur": "tur",
    "directio": "directio",
    "readsector0": "directio",  # multipath-tools maps it to directio itself
    "none": "none",
}


def _grouping(value: str) -> str:
    if value not in _GROUPING:
        raise _NotCarried(
            f"dmpath groups paths by {', '.join(_GROUPING)}; group_by_prio with prio alua "
            "comes closest to the policies that group by port or controller"
        )
    return value


def _prio(value: str) -> str:
    if value not in _PRIO:
        raise _NotCarried("dmpath's prioritizers are alua (ALUA states) and const")
    return _PRIO[value]


def _checker(value: str) -> str:
    if value not in _CHECKERS:
        raise _NotCarried("dmpath's checkers are tur, directio and none")
    return _CHECKERS[value]


def _hardware_handler(value: str) -> str:
    """``"1 alua"`` → ``"alua"``; ``"0"`` → none."""
    words = value.split()
    if words and words[0].isdigit():
        words = words[1:]
    return " ".join(words)


def _failback(value: str) -> object:
    if value == "followover":
        raise _NotCarried(
            "dmpath fails back at once, after N seconds, or never (manual); it has no "
            "followover"
        )
    return _word_or_number({"immediate": "immediate", "manual": "manual"})(value)


def _tmo(value: str) -> object:
    if value == "infinity":
        raise _NotCarried("dmpath writes a number of seconds, or leaves the kernel's (\"off\")")
    return _word_or_number({"off": "off"})(value)


def _flush_on_last_del(value: str) -> bool:
    if value in ("yes", "unused"):
        return True
    if value in ("no", "never"):
        return False
    raise _NotCarried("dmpath never removes a map that is open")


def _find_multipaths(value: str) -> str:
    # yes/on: known WWIDs and those seen through two paths; smart adds a wait dmpath
    # does not make; no/off/greedy: every device that is not blacklisted
    table = {"strict": "strict", "yes": "on", "on": "on", "smart": "on", "greedy": "greedy"}
    table.update(no="greedy", off="greedy")
    if value not in table:
        raise _NotCarried(f"not a find_multipaths value: {value!r}")
    return table[value]


def _uid_attribute(value: str) -> list[str]:
    if not value:
        raise _NotCarried("dmpath reads WWIDs from udev properties only (no sysfs method)")
    # multipath-tools' hardware table gives NVMe paths ID_WWN whatever the defaults say
    return list(dict.fromkeys((value, "ID_WWN")))


def _uid_attrs(value: str) -> list[str]:
    """``"sd:ID_SERIAL nvme:ID_WWN"``: the properties, tried in order for every device."""
    names = [w.split(":", 1)[1] for w in value.split() if ":" in w]
    if not names:
        raise _NotCarried("no type:PROPERTY record in it")
    return list(dict.fromkeys(names))


def _san_path_err_threshold(value: str) -> int:
    if value == "no":
        return 0
    n = _number(value)
    return n + 1 if n else 0  # multipath-tools acts once the count exceeds the threshold


#: multipath-tools keyword → (dmpath key, converter)
_CONVERT: Final[dict[str, tuple[str, Callable[[str], object]]]] = {
    "path_grouping_policy": ("path_grouping_policy", _grouping),
    "path_selector": ("path_selector", str),
    "hardware_handler": ("hardware_handler", _hardware_handler),
    "prio": ("prio", _prio),
    "failback": ("failback", _failback),
    # 0: fail in multipath-tools up to 0.8.3 (later ones raise it to 1 check); the
    # vendors that recommend it (Pure) mean fail
    "no_path_retry": (
        "no_path_retry",
        _word_or_number({"queue": "queue", "fail": "fail", "0": "fail"}),
    ),
    "path_checker": ("checker", _checker),
    "checker": ("checker", _checker),
    "polling_interval": ("polling_interval", _number),
    "max_polling_interval": ("max_polling_interval", _number),
    "checker_timeout": ("checker_timeout", _number),
    "fast_io_fail_tmo": ("fast_io_fail_tmo", _tmo),
    "dev_loss_tmo": ("dev_loss_tmo", _tmo),
    "eh_deadline": ("eh_deadline", _tmo),
    "user_friendly_names": ("user_friendly_names", _yes),
    "alias_prefix": ("alias_prefix", str),
    "find_multipaths": ("find_multipaths", _find_multipaths),
    "uid_attribute": ("uid_attribute", _uid_attribute),
    "uid_attrs": ("uid_attribute", _uid_attrs),
    "bindings_file": ("bindings_file", str),
    "wwids_file": ("wwids_file", str),
    "flush_on_last_del": ("flush_on_last_del", _flush_on_last_del),
    "retain_attached_hw_handler": ("retain_hwhandler", _yes),
    "san_path_err_threshold": ("marginal_failures", _san_path_err_threshold),
    "san_path_err_recovery_time": ("marginal_recovery", _number),
    # a second failure within this time makes a path marginal in both
    "marginal_path_double_failed_time": ("marginal_window", _number),
    "marginal_path_err_recheck_gap_time": ("marginal_recovery", _number),
}
#: a second [defaults] option a keyword also sets: (dmpath key, value)
_ALSO: Final[dict[str, tuple[str, object]]] = {
    "marginal_path_double_failed_time": ("marginal_failures", 2),
}

_FEATURE_WHY: Final = {
    "retain_attached_hw_handler": "kernels since 4.3 always retain the handler",
    "no_partitions": "not a kernel feature (kpartx reads it); dmpath has no equivalent",
}
_KEPT_FEATURES: Final = ("pg_init_retries", "pg_init_delay_msecs", "queue_mode")


def _features(value: str) -> tuple[list[str], bool, list[str]]:
    """``"2 pg_init_retries 50"``: the features dmpath takes, whether queue_if_no_path was
    there, and why each other word was dropped."""
    words = value.split()
    if words and words[0].isdigit():
        words = words[1:]
    kept: list[str] = []
    queue = False
    dropped: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "queue_if_no_path":
            queue = True
        elif w in _KEPT_FEATURES and i + 1 < len(words):
            kept.append(f"{w} {words[i + 1]}")
            i += 1
        else:
            dropped.append(f"{w}: {_FEATURE_WHY.get(w, 'not a feature dmpath knows')}")
        i += 1
    return kept, queue, dropped


_POSIX_CLASSES: Final = {
    "digit": "0-9",
    "alpha": "A-Za-z",
    "alnum": "A-Za-z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "xdigit": "0-9A-Fa-f",
    "space": r"\s",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
}
_POSIX_CLASS_RE = re.compile(r"\[:([a-z]+):\]")
#: "[[" opening a bracket expression whose first member is "[" (POSIX: a plain "[";
#: Python reads the same but warns of a nested set, so the "[" is escaped)
_OPEN_BRACKET_RE = re.compile(r"\[\[(?!:)")


def python_regex(pattern: str) -> str:
    """A POSIX extended expression as Python reads it (bracket classes spelt out)."""
    spelt = _POSIX_CLASS_RE.sub(lambda m: _POSIX_CLASSES.get(m.group(1), m.group(0)), pattern)
    return _OPEN_BRACKET_RE.sub(r"[\\[", spelt)


# --------------------------------------------------------------------------- the result


@dataclass
class _Table:
    """One dmpath table being filled: values and, per key, the setting it came from."""

    where: str = ""
    values: dict[str, object] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)


@dataclass
class _Filter:
    lists: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    devices: list[_Table] = field(default_factory=list)


class _Importer:
    def __init__(self) -> None:
        self.defaults = _Table()
        self.filters = {"blacklist": _Filter(), "blacklist_exceptions": _Filter()}
        self.multipaths: dict[str, _Table] = {}
        self.devices: list[_Table] = []
        self.overrides: _Table | None = None
        self.notes: list[Note] = []
        self.carried = 0

    def note(self, s: Setting, section: str, why: str) -> None:
        self.notes.append(Note(s.where, f"{section}.{s.keyword}", s.value, why))

    def skip_section(self, sec: Section, path: str, why: str) -> None:
        self.notes.append(Note(sec.where, f"{path}{sec.name}", "{...}", why))

    def set(self, table: _Table, key: str, value: object, s: Setting) -> None:
        table.values[key] = value
        table.origins[key] = s.where

    # ---- options (defaults, overrides, device, multipath)

    def options(self, sec: Section, path: str, table: _Table, globals_to: _Table | None) -> None:
        """The option settings of one section into ``table``; options dmpath has only in
        [defaults] go to ``globals_to`` (None: they are reported)."""
        said = {s.keyword for s in sec.settings}
        for s in sec.settings:
            if s.keyword == "config_dir" and path == "defaults":
                continue  # its files were read with this one (mptconf.read_with_config_dir)
            if s.keyword == "features":
                self.features(s, path, table, queue_ok="no_path_retry" not in said)
                continue
            if s.keyword not in _CONVERT:
                self.note(s, path, WHY_NOT.get(s.keyword, "not a multipath.conf keyword here"))
                continue
            key, convert = _CONVERT[s.keyword]
            target = table if key in OVERRIDABLE else globals_to
            if target is None:
                self.note(s, path, _PER_DEVICE_WHY)
                continue
            try:
                value = checked_value(key, convert(s.value))
            except _NotCarried as exc:
                self.note(s, path, str(exc))
                continue
            except ConfigError as exc:
                self.note(s, path, f"dmpath's {key} refuses it: {exc.detail}")
                continue
            self.set(target, key, value, s)
            if s.keyword in _ALSO:
                self.set(target, *_ALSO[s.keyword], s)
            self.carried += 1

    def features(self, s: Setting, path: str, table: _Table, queue_ok: bool) -> None:
        kept, queue, dropped = _features(s.value)
        for why in dropped:
            self.note(s, path, why)
        if queue and not queue_ok:
            self.note(s, path, "queue_if_no_path: no_path_retry in the same section decides")
        elif queue:
            self.set(table, "no_path_retry", "queue", s)
        try:
            self.set(table, "features", checked_value("features", kept), s)
        except ConfigError as exc:
            self.note(s, path, f"dmpath's features refuses it: {exc.detail}")
            return
        self.carried += 1

    # ---- sections

    def section_defaults(self, sec: Section) -> None:
        self.options(sec, "defaults", self.defaults, self.defaults)
        for sub in sec.sections:
            self.skip_section(sub, "defaults.", "not a multipath.conf section")

    def section_overrides(self, sec: Section) -> None:
        if self.overrides is None:
            self.overrides = _Table(sec.where)
        self.options(sec, "overrides", self.overrides, self.defaults)
        for sub in sec.sections:
            if sub.name != "protocol":
                self.skip_section(sub, "overrides.", "not a multipath.conf section")
                continue
            kind = next((s.value for s in sub.settings if s.keyword == "type"), "")
            for s in sub.settings:
                if s.keyword != "type":
                    self.note(
                        s,
                        f"overrides.protocol[{kind}]",
                        "dmpath's transport timers are the same for every protocol "
                        "([defaults])",
                    )

    def entries(self, sec: Section, entry: str, handler: Callable[[Section], None]) -> None:
        """``devices``/``multipaths``: a list of ``device``/``multipath`` subsections."""
        why = f"only {entry} subsections belong here"
        for s in sec.settings:
            self.note(s, sec.name, why)
        for sub in sec.sections:
            if sub.name == entry:
                handler(sub)
            else:
                self.skip_section(sub, f"{sec.name}.", why)

    def device(self, dev: Section) -> None:
        path = "devices.device"
        table = _Table(dev.where)
        ident = {s.keyword: s for s in dev.settings if s.keyword in ("vendor", "product")}
        rest = Section(
            dev.name,
            dev.source,
            dev.line,
            tuple(
                s
                for s in dev.settings
                if s.keyword not in ("vendor", "product", "product_blacklist", "alias_prefix")
            ),
        )
        for key, s in ident.items():
            try:
                self.set(table, key, checked_value("regex", python_regex(s.value)), s)
            except ConfigError as exc:
                self.note(s, path, f"{exc.detail}: the table is not carried over")
                return
        if not table.values:
            self.skip_section(dev, "devices.", "no vendor or product: it matches nothing")
            return
        vendor = str(table.values.get("vendor", ""))
        for s in dev.settings:
            if s.keyword == "product_blacklist":
                self.blacklist_device(s, vendor, python_regex(s.value))
            elif s.keyword == "alias_prefix":
                self.note(s, path, "dmpath has one alias_prefix, in [defaults]")
        self.options(rest, path, table, None)
        for sub in dev.sections:
            self.skip_section(sub, "devices.device.", "not a multipath.conf section")
        if len(table.values) > len(ident):
            self.carried += len(ident)
            self.devices.append(table)
        else:
            self.skip_section(dev, "devices.", "no option in it that dmpath carries over")

    def blacklist_device(self, s: Setting, vendor: str, product: str) -> None:
        """A device's product_blacklist: a [[blacklist.device]] of its vendor."""
        table = _Table(s.where)
        if vendor:
            table.values["vendor"] = vendor
        table.values["product"] = product
        try:
            checked_value("regex", product)
        except ConfigError as exc:
            self.note(s, "devices.device", exc.detail)
            return
        self.filters["blacklist"].devices.append(table)
        self.carried += 1

    def multipath(self, mp: Section) -> None:
        path = "multipaths.multipath"
        wwids = [s for s in mp.settings if s.keyword == "wwid"]
        if not wwids:
            self.skip_section(mp, "multipaths.", "no wwid: multipath-tools ignores it too")
            return
        try:
            wwid = str(checked_value("wwid", wwids[-1].value))
        except ConfigError as exc:
            self.note(wwids[-1], path, f"{exc.detail}: the section is not carried over")
            return
        # two sections for one WWID are merged, the later one winning (as multipath-tools)
        table = self.multipaths.setdefault(wwid, _Table(mp.where))
        self.set(table, "wwid", wwid, wwids[-1])
        self.carried += len(wwids)
        taken = {
            str(t.values["alias"]): w for w, t in self.multipaths.items() if "alias" in t.values
        }
        for s in mp.settings:
            if s.keyword != "alias":
                continue
            try:
                alias = str(checked_value("alias", s.value))
            except ConfigError as exc:
                self.note(s, path, exc.detail)
                continue
            if taken.get(alias, wwid) != wwid:
                self.note(s, path, f"alias already names WWID {taken[alias]}")
                continue
            self.set(table, "alias", alias, s)
            self.carried += 1
        rest = tuple(s for s in mp.settings if s.keyword not in ("wwid", "alias"))
        self.options(Section(mp.name, mp.source, mp.line, rest), path, table, None)
        for sub in mp.sections:
            self.skip_section(sub, "multipaths.multipath.", "not a multipath.conf section")

    def section_filter(self, sec: Section) -> None:
        f = self.filters[sec.name]
        for s in sec.settings:
            if s.keyword not in ("devnode", "wwid", "property", "protocol"):
                self.note(s, sec.name, "not a blacklist keyword")
                continue
            pattern = python_regex(s.value)
            try:
                checked_value("regex", pattern)
            except ConfigError as exc:
                self.note(s, sec.name, exc.detail)
                continue
            f.lists.setdefault(s.keyword, []).append((pattern, s.where))
            self.carried += 1
        for dev in sec.sections:
            if dev.name != "device":
                self.skip_section(dev, f"{sec.name}.", "only device subsections belong here")
                continue
            table = _Table(dev.where)
            for s in dev.settings:
                if s.keyword not in ("vendor", "product"):
                    self.note(
                        s, f"{sec.name}.device", "dmpath matches vendor and product only"
                    )
                    continue
                try:
                    table.values[s.keyword] = checked_value("regex", python_regex(s.value))
                except ConfigError as exc:
                    self.note(s, f"{sec.name}.device", exc.detail)
                    continue
                self.carried += 1
            if table.values:
                f.devices.append(table)
            else:
                self.skip_section(dev, f"{sec.name}.", "no vendor or product: matches nothing")

    # ---- whole files

    def run(self, files: Sequence[Section]) -> None:
        handlers: dict[str, Callable[[Section], None]] = {
            "defaults": self.section_defaults,
            "overrides": self.section_overrides,
            "devices": lambda sec: self.entries(sec, "device", self.device),
            "multipaths": lambda sec: self.entries(sec, "multipath", self.multipath),
            "blacklist": self.section_filter,
            "blacklist_exceptions": self.section_filter,
        }
        sections = [sec for root in files for sec in root.sections]
        for root in files:
            for s in root.settings:
                self.note(s, "(top level)", "outside any section: multipath-tools ignores it")
        # defaults first: overrides win over them whatever the order of the files
        for sec in sorted(sections, key=lambda sec: sec.name != "defaults"):
            handler = handlers.get(sec.name)
            if handler is None:
                self.skip_section(sec, "", "not a multipath.conf section")
            else:
                handler(sec)
        if self.overrides is not None and len(self.overrides.values):
            self.overrides.values = {"vendor": MATCH_ALL, **self.overrides.values}
            self.devices.append(self.overrides)
        self.fix_pairs()

    def fix_pairs(self) -> None:
        """The checks dmpath makes between two [defaults] options, met by dropping one."""
        d = self.defaults.values
        poll, ceiling = d.get("polling_interval"), d.get("max_polling_interval")
        if isinstance(poll, float) and isinstance(ceiling, float) and ceiling < poll:
            self.notes.append(
                Note(
                    self.defaults.origins["max_polling_interval"],
                    "defaults.max_polling_interval",
                    str(ceiling),
                    "below polling_interval: dmpath uses polling_interval",
                )
            )
            del d["max_polling_interval"]
            self.carried -= 1
        fast, loss = d.get("fast_io_fail_tmo", 5), d.get("dev_loss_tmo")
        if isinstance(fast, int) and isinstance(loss, int) and loss <= fast:
            self.notes.append(
                Note(
                    self.defaults.origins["dev_loss_tmo"],
                    "defaults.dev_loss_tmo",
                    str(loss),
                    f"not above fast_io_fail_tmo ({fast}), which the kernel refuses",
                )
            )
            del d["dev_loss_tmo"]
            self.carried -= 1


# --------------------------------------------------------------------------- TOML text


_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _c(text: str) -> str:
    """Text for a TOML comment, which must stay on its line (a file name may hold a
    newline) and may hold no control character but a tab."""
    return _CONTROL_RE.sub("?", text)


def _key_lines(table: _Table, skip: Sequence[str] = ()) -> list[str]:
    out = []
    for key, value in table.values.items():
        if key in skip:
            continue
        origin = table.origins.get(key)
        out.append(f"{key} = {_toml_value(value)}" + (f"  # {_c(origin)}" if origin else ""))
    return out


def _filter_lines(name: str, f: _Filter) -> list[str]:
    out = [f"[{name}]"]
    for key in ("devnode", "wwid", "property", "protocol"):
        if key in f.lists:
            out.append(f"{key} = [")
            out.extend(f"    {_toml_string(p)},  # {_c(where)}" for p, where in f.lists[key])
            out.append("]")
    out.append("")
    for dev in f.devices:
        out.append(f"[[{name}.device]]  # {_c(dev.where)}")
        out.extend(_key_lines(dev))
        out.append("")
    return out


def _header(imp: _Importer, sources: Sequence[str]) -> list[str]:
    out = [
        "# dmpath.toml(5), imported from multipath-tools' configuration by",
        "# mpathctl import multipath.conf, from: " + _c(", ".join(sources)),
        f"# {summary(imp.carried, len(imp.notes))}.",
        "#",
        "# dmpath has no built-in table of storage arrays: what multipath-tools took from",
        "# its hardware table for yours ('multipath -t' shows it) is not here; add a",
        "# [[devices]] table for your array if dmpath's defaults do not suit it.",
    ]
    if imp.notes:
        out.append("#")
        out.append("# Not carried over:")
        out.extend(f"#   {_c(str(note))}" for note in imp.notes)
    out.append("")
    return out


def summary(carried: int, not_carried: int) -> str:
    """``3 settings carried over, 1 not carried``."""
    return f"{carried} setting{'s' if carried != 1 else ''} carried over, {not_carried} not carried"


def render_toml(imp: _Importer, sources: Sequence[str]) -> str:
    out = _header(imp, sources)
    out.append("[defaults]")
    out.extend(_key_lines(imp.defaults))
    out.append("")
    for name in ("blacklist", "blacklist_exceptions"):
        f = imp.filters[name]
        if f.lists or f.devices:
            out.extend(_filter_lines(name, f))
    for mp in imp.multipaths.values():
        out.append(f"[[multipaths]]  # {_c(mp.where)}")
        out.extend(_key_lines(mp))
        out.append("")
    for dev in imp.devices:
        comment = "overrides" if dev is imp.overrides else "device"
        out.append(f"[[devices]]  # {comment}, {_c(dev.where)}")
        out.extend(_key_lines(dev))
        out.append("")
    return "\n".join(out)


def import_mptconf(files: Sequence[Section]) -> Imported:
    """multipath.conf and its drop-ins (in reading order) as a dmpath.toml that loads."""
    imp = _Importer()
    imp.run(files)
    d = imp.defaults
    for key, value in MPT_BUILTIN.items():
        if key not in d.values:
            d.values[key] = value
            d.origins[key] = "multipath-tools' built-in value"
    for key, path in (("bindings_file", MPT_BINDINGS), ("wwids_file", MPT_WWIDS)):
        if key not in d.values:
            d.values[key] = path
            d.origins[key] = "multipath-tools' file, used in place"
    sources = tuple(root.source for root in files)
    text = render_toml(imp, sources)
    try:
        config = parse_config(text, "<imported>")
    except ConfigError as exc:  # a gap in the checks above, not the file's fault
        raise ConfigError(
            sources[0] if sources else "<imported>",
            f"the converted configuration does not load: {exc}",
        ) from exc
    return Imported(text, config, imp.carried, tuple(imp.notes), sources)
