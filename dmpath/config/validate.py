"""Strict validation: a decoded TOML document (or the text, or the file) into a ``Config``.

Every unknown key, wrong type or bad value is a ``ConfigError`` naming the file, the
dotted key and, when the text is known, the line.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, NoReturn, TypeAlias

from dmpath.config.lines import KeyPath, _LineIndex, long_number
from dmpath.config.records import (
    _D,
    BUILTIN_BLACKLIST,
    BUILTIN_EXCEPTIONS,
    DEFAULT_CONFIG_PATH,
    DEFAULT_DM_UUID_PREFIX,
    HARDWARE_HANDLERS,
    OVERRIDABLE,
    PATH_SELECTORS,
    Backend,
    Checker,
    Config,
    Defaults,
    DeviceEntry,
    DeviceMatch,
    FilterList,
    FindMultipaths,
    GroupingPolicy,
    MultipathEntry,
    Overrides,
    Prio,
)
from dmpath.config.toml_text import _toml_string, _toml_value
from dmpath.errors import ConfigError

# --------------------------------------------------------------------------- validation


_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def dotted(path: KeyPath) -> str:
    """``("multipaths", 1, "alias")`` → ``"multipaths[1].alias"``."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            # a key that is not bare is shown as TOML spells it: its control characters
            # escaped, so that the message stays one line
            out += ("." if out else "") + (p if _BARE_KEY_RE.fullmatch(p) else _toml_string(p))
    return out


class _Ctx:
    def __init__(self, source: str, index: _LineIndex | None) -> None:
        self.source = source
        self.index = index

    def fail(self, path: KeyPath, detail: str, needle: str | None = None) -> NoReturn:
        line = self.index.lookup(path, needle) if self.index is not None else None
        raise ConfigError(self.source, detail, key=dotted(path), line=line)


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _got(value: object) -> str:
    if isinstance(value, str | int | float | bool):
        return f"{_type_name(value)} ({_toml_value(value)})"
    return _type_name(value)


Validator: TypeAlias = Callable[[_Ctx, KeyPath, object], Any]


def _string(ctx: _Ctx, path: KeyPath, value: object) -> str:
    if not isinstance(value, str):
        ctx.fail(path, f"must be a string, not {_got(value)}")
    return value


def _choice(choices: Sequence[str]) -> Validator:
    def check(ctx: _Ctx, path: KeyPath, value: object) -> str:
        s = _string(ctx, path, value)
        if s not in choices:
            shown = ", ".join(_toml_string(c) for c in choices)
            ctx.fail(path, f"must be one of {shown}, not {_toml_string(s)}")
        return s

    return check


def _enum(kind: type[StrEnum]) -> Validator:
    choose = _choice([m.value for m in kind])

    def check(ctx: _Ctx, path: KeyPath, value: object) -> StrEnum:
        return kind(choose(ctx, path, value))

    return check


def _bool(ctx: _Ctx, path: KeyPath, value: object) -> bool:
    if not isinstance(value, bool):
        ctx.fail(path, f"must be true or false, not {_got(value)}")
    return value


def _int(lo: int, hi: int) -> Validator:
    def check(ctx: _Ctx, path: KeyPath, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            ctx.fail(path, f"must be an integer, not {_got(value)}")
        if not lo <= value <= hi:
            ctx.fail(path, f"must be between {lo} and {hi}, not {value}")
        return value

    return check


def _seconds(lo: float, hi: float) -> Validator:
    def check(ctx: _Ctx, path: KeyPath, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            ctx.fail(path, f"must be a number of seconds, not {_got(value)}")
        f = float(value)
        if not math.isfinite(f) or not lo <= f <= hi:
            ctx.fail(path, f"must be between {lo:g} and {hi:g} seconds, not {value}")
        return f

    return check


def _word_or_count(words: Sequence[str], what: str) -> Validator:
    """``failback`` / ``no_path_retry``: one of some words, or a positive integer."""

    def check(ctx: _Ctx, path: KeyPath, value: object) -> str | int:
        if isinstance(value, str) and value in words:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                ctx.fail(path, f"a number of {what} must be at least 1, not {value}")
            return value
        if isinstance(value, str) and value.isdigit():
            ctx.fail(path, f"write a number of {what} without quotes: {int(value)}")
        shown = " or ".join(_toml_string(w) for w in words)
        ctx.fail(path, f"must be {shown} or a number of {what}, not {_got(value)}")

    return check


def _list(item: Validator) -> Validator:
    def check(ctx: _Ctx, path: KeyPath, value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            ctx.fail(path, f"must be a list, not {_got(value)}")
        return tuple(item(ctx, (*path, i), v) for i, v in enumerate(value))

    return check


def _regex(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    needle = _toml_string(s)[1:-1]
    if s.startswith("!"):
        ctx.fail(
            path,
            f"inverted patterns ({_toml_string(s)}) are not supported: "
            "list what to admit in blacklist_exceptions instead",
            needle,
        )
    try:
        re.compile(s)
    except re.error as exc:
        ctx.fail(path, f"invalid regular expression {_toml_string(s)}: {exc}", needle)
    return s


_PROPERTY_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


def _property_name(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not _PROPERTY_NAME_RE.match(s):
        ctx.fail(path, f"{_toml_string(s)} is not a udev property name", s)
    return s


def _uid_attribute(ctx: _Ctx, path: KeyPath, value: object) -> tuple[str, ...]:
    names: tuple[str, ...] = _list(_property_name)(ctx, path, value)
    if not names:
        ctx.fail(path, "needs at least one udev property name")
    return names


def _abs_path(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not s.startswith("/") or "\0" in s or s.endswith("/"):
        ctx.fail(path, f"must be an absolute file path, not {_toml_string(s)}")
    return s


def _abs_path_or_empty(ctx: _Ctx, path: KeyPath, value: object) -> str:
    """An absolute file path, or "" for none."""
    if value == "":
        return ""
    return _abs_path(ctx, path, value)


def _path_selector(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = " ".join(_string(ctx, path, value).split())
    if s in PATH_SELECTORS:
        return s
    if f"{s} 0" in PATH_SELECTORS:
        return f"{s} 0"
    shown = ", ".join(_toml_string(c) for c in PATH_SELECTORS)
    ctx.fail(path, f"must be one of {shown}, not {_toml_string(s)}")


_FEATURE_ARGS: Final[dict[str, Callable[[str], bool]]] = {
    "pg_init_retries": lambda a: a.isdigit() and 1 <= int(a) <= 50,
    "pg_init_delay_msecs": lambda a: a.isdigit() and int(a) <= 60000,
    "queue_mode": lambda a: a in ("bio", "rq", "mq"),
}
_FEATURE_REFUSED: Final = {
    "queue_if_no_path": 'set no_path_retry = "queue" (or a number of checks) instead',
    "retain_attached_hw_handler": "kernels since 4.3 always retain it; see retain_hwhandler",
    "no_partitions": "not a kernel feature; dmpath never creates partition maps",
}


def _feature(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    words = s.split()
    needle = _toml_string(s)[1:-1]
    if not words:
        ctx.fail(path, "an empty feature", needle)
    name, args = words[0], words[1:]
    if name in _FEATURE_REFUSED:
        ctx.fail(path, f"feature {name} is not accepted: {_FEATURE_REFUSED[name]}", needle)
    if name not in _FEATURE_ARGS:
        ctx.fail(
            path,
            f"unknown feature {_toml_string(name)} (known: {', '.join(_FEATURE_ARGS)})",
            needle,
        )
    if len(args) != 1 or not _FEATURE_ARGS[name](args[0]):
        ctx.fail(path, f"feature {name} takes one valid argument, not {s!r}", needle)
    return " ".join(words)


def _features(ctx: _Ctx, path: KeyPath, value: object) -> tuple[str, ...]:
    feats: tuple[str, ...] = _list(_feature)(ctx, path, value)
    seen: set[str] = set()
    for i, f in enumerate(feats):
        name = f.split()[0]
        if name in seen:
            ctx.fail((*path, i), f"feature {name} given twice", f)
        seen.add(name)
    return feats


_NAME_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+:@-]{0,126}$")
_UUID_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:+-]{1,32}$")
_FOREIGN_UUID_PREFIXES: Final = (
    ("LVM-", "LVM"),
    ("CRYPT-", "cryptsetup"),
)
_PART_PREFIX_RE = re.compile(r"^part[0-9]")


def _alias_prefix(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not _NAME_PREFIX_RE.match(s):
        ctx.fail(path, f"{_toml_string(s)}: use 1 to 32 letters, digits, '_', '.' or '-'")
    return s


def _alias(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not _ALIAS_RE.match(s):
        ctx.fail(
            path,
            f"{_toml_string(s)} is not a usable map name: letters, digits, '_', '.', '+', "
            "':', '@', '-', starting with a letter or digit, at most 127 characters",
        )
    return s


def _dm_uuid_prefix(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not _UUID_PREFIX_RE.match(s):
        ctx.fail(path, f"{_toml_string(s)}: use 1 to 32 letters, digits, '_', '.', ':', '+', '-'")
    for prefix, owner in _FOREIGN_UUID_PREFIXES:
        if s.lower().startswith(prefix.lower()):
            ctx.fail(
                path,
                f"{_toml_string(s)} starts with {prefix}, which {owner} owns: its tools would "
                "treat dmpath's maps as theirs",
            )
    if _PART_PREFIX_RE.match(s):
        ctx.fail(path, f"{_toml_string(s)}: partN- prefixes mark partition maps (kpartx)")
    return s


_WWID_RE = re.compile(r"^[^\s/#]+$")


def valid_wwid(wwid: str) -> bool:
    """Whether a WWID can be stored in the bindings and wwids files (and named in a map)."""
    return bool(_WWID_RE.match(wwid))


#: [[multipaths]] keys of the data map a migrated md array leaves (``mpathctl migrate-md``)
DATA_MAP_KEYS: Final = ("data_offset", "data_sectors")
#: 2^63 bytes in 512-byte sectors: more than any block device holds
_MAX_SECTORS: Final = (1 << 63) // 512
_offset = _int(0, _MAX_SECTORS)  # 0: md metadata 0.90/1.0 keep the superblock at the end
_sectors = _int(1, _MAX_SECTORS)


def _wwid(ctx: _Ctx, path: KeyPath, value: object) -> str:
    s = _string(ctx, path, value)
    if not valid_wwid(s):
        ctx.fail(path, f"{_toml_string(s)} is not a WWID (empty, or has spaces, '/' or '#')")
    return s


def _listen(ctx: _Ctx, path: KeyPath, value: object) -> str:
    """``ADDRESS:PORT`` of an IP address (IPv6 in brackets), or "" for none."""
    s = _string(ctx, path, value)
    if not s:
        return s
    host, sep, port = s.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        address = None
    ok_host = address is not None and bracketed == (address.version == 6)
    if not sep or not ok_host or not port.isdigit() or not 1 <= int(port) <= 65535:
        ctx.fail(
            path,
            f"must be ADDRESS:PORT (an IP address, IPv6 in brackets, and a port), or \"\" "
            f"for none, not {_toml_string(s)}",
        )
    return s


def _textfile(ctx: _Ctx, path: KeyPath, value: object) -> str:
    """An absolute path ending in .prom (node_exporter reads no other), or "" for none."""
    s = _string(ctx, path, value)
    if not s:
        return s
    _abs_path(ctx, path, s)
    if not s.endswith(".prom"):
        ctx.fail(
            path,
            f"must end in .prom (node_exporter's textfile collector reads no other file), "
            f"not {_toml_string(s)}",
        )
    return s


_DEFAULTS_SCHEMA: Final[dict[str, Validator]] = {
    "backend": _enum(Backend),
    "path_grouping_policy": _enum(GroupingPolicy),
    "path_selector": _path_selector,
    "features": _features,
    "hardware_handler": _choice(HARDWARE_HANDLERS),
    "retain_hwhandler": _bool,
    "prio": _enum(Prio),
    "failback": _word_or_count(("immediate", "manual"), "seconds"),
    "no_path_retry": _word_or_count(("queue", "fail"), "checks"),
    "checker": _enum(Checker),
    "polling_interval": _seconds(0.1, 3600.0),
    "max_polling_interval": _seconds(0.1, 3600.0),
    "checker_timeout": _seconds(0.1, 300.0),
    "fast_io_fail_tmo": _word_or_count(("off",), "seconds"),
    "dev_loss_tmo": _word_or_count(("off",), "seconds"),
    "eh_deadline": _word_or_count(("off",), "seconds"),
    "tcp_stall_timeout": _seconds(0.0, 60.0),
    "marginal_failures": _int(0, 1000),
    "marginal_window": _seconds(1.0, 86400.0),
    "marginal_latency": _seconds(0.0, 300.0),
    "marginal_recovery": _seconds(0.0, 86400.0),
    "user_friendly_names": _bool,
    "alias_prefix": _alias_prefix,
    "find_multipaths": _enum(FindMultipaths),
    "uid_attribute": _uid_attribute,
    "bindings_file": _abs_path,
    "wwids_file": _abs_path,
    "admin_state_file": _abs_path,
    "socket": _abs_path,
    "dm_uuid_prefix": _dm_uuid_prefix,
    "flush_on_last_del": _bool,
    "coalesce_ms": _int(0, 10000),
    "metrics_listen": _listen,
    "metrics_textfile": _textfile,
    "metrics_textfile_interval": _seconds(1.0, 3600.0),
    "history_file": _abs_path_or_empty,
    "history_max_events": _int(10, 50_000),
}
assert set(_DEFAULTS_SCHEMA) == {f.name for f in fields(Defaults)}
assert set(OVERRIDABLE) <= set(_DEFAULTS_SCHEMA)

_FILTER_KEYS: Final = ("devnode", "wwid", "property", "protocol", "device")
_TOP_SECTIONS: Final = ("defaults", "blacklist", "blacklist_exceptions", "multipaths", "devices")


def _table(ctx: _Ctx, path: KeyPath, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        ctx.fail(path, f"must be a table, not {_got(value)}")
    return value


def _array_of_tables(ctx: _Ctx, path: KeyPath, value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        name = dotted(path)
        ctx.fail(path, f"must be an array of tables ([[{name}]]), not {_got(value)}")
    return [_table(ctx, (*path, i), v) for i, v in enumerate(value)]


#: multipath.conf spellings whose dmpath name difflib would not guess
_SYNONYMS: Final = {
    "model": "product",
    "path_checker": "checker",
    "retain_attached_hw_handler": "retain_hwhandler",
}


def _reject_unknown(
    ctx: _Ctx, path: KeyPath, table: Mapping[str, Any], known: Iterable[str]
) -> None:
    known = list(known)
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            if not close and _SYNONYMS.get(key) in known:
                close = [_SYNONYMS[key]]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"[{dotted(path)}]" if path else "the top level"
            ctx.fail((*path, key), f"unknown option in {where}{hint}")


def _merge_unique(builtin: Iterable[str], given: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*builtin, *given]))


def _device_match(ctx: _Ctx, path: KeyPath, table: Mapping[str, Any]) -> DeviceMatch:
    _reject_unknown(ctx, path, table, ("vendor", "product"))
    vendor = _regex(ctx, (*path, "vendor"), table["vendor"]) if "vendor" in table else ""
    product = _regex(ctx, (*path, "product"), table["product"]) if "product" in table else ""
    if not vendor and not product:
        ctx.fail(path, "needs a non-empty vendor or product (or both)")
    return DeviceMatch(vendor, product)


def _filter(ctx: _Ctx, path: KeyPath, value: object, builtin: FilterList) -> FilterList:
    table = _table(ctx, path, value)
    _reject_unknown(ctx, path, table, _FILTER_KEYS)
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("devnode", "wwid", "property", "protocol"):
        given: tuple[str, ...] = (
            _list(_regex)(ctx, (*path, key), table[key]) if key in table else ()
        )
        lists[key] = _merge_unique(getattr(builtin, key), given)
    devices: list[DeviceMatch] = list(builtin.device)
    if "device" in table:
        for i, t in enumerate(_array_of_tables(ctx, (*path, "device"), table["device"])):
            dm = _device_match(ctx, (*path, "device", i), t)
            if dm not in devices:
                devices.append(dm)
    return FilterList(device=tuple(devices), **lists)


def _overrides(ctx: _Ctx, path: KeyPath, table: Mapping[str, Any]) -> Overrides:
    values = {
        key: _DEFAULTS_SCHEMA[key](ctx, (*path, key), table[key])
        for key in OVERRIDABLE
        if key in table
    }
    return Overrides(**values)


def _defaults(ctx: _Ctx, value: object) -> Defaults:
    path: KeyPath = ("defaults",)
    table = _table(ctx, path, value)
    _reject_unknown(ctx, path, table, _DEFAULTS_SCHEMA)
    values = {k: _DEFAULTS_SCHEMA[k](ctx, (*path, k), v) for k, v in table.items()}
    polling = values.get("polling_interval", _D.polling_interval)
    # a polling_interval above the default ceiling raises the ceiling with it
    values.setdefault("max_polling_interval", max(polling, _D.max_polling_interval))
    if values["max_polling_interval"] < polling:
        ctx.fail(
            (*path, "max_polling_interval"),
            f"must be at least polling_interval ({polling:g}), not "
            f"{values['max_polling_interval']:g}",
        )
    fast, loss = values.get("fast_io_fail_tmo", _D.fast_io_fail_tmo), values.get("dev_loss_tmo")
    if isinstance(fast, int) and isinstance(loss, int) and fast >= loss:
        # an FC remote port refuses it: I/O must be failed over before the port is removed
        ctx.fail(
            (*path, "dev_loss_tmo"),
            f"must be above fast_io_fail_tmo ({fast}), not {loss}",
        )
    return Defaults(**values)


def config_from_dict(
    data: Mapping[str, Any], source: str = "<dict>", text: str | None = None
) -> Config:
    """Validate an already-decoded TOML document (``text``, if given, locates errors)."""
    ctx = _Ctx(source, _LineIndex(text) if text is not None else None)
    _reject_unknown(ctx, (), data, _TOP_SECTIONS)
    defaults = _defaults(ctx, data.get("defaults", {}))
    blacklist = _filter(ctx, ("blacklist",), data.get("blacklist", {}), BUILTIN_BLACKLIST)
    exceptions = _filter(
        ctx, ("blacklist_exceptions",), data.get("blacklist_exceptions", {}), BUILTIN_EXCEPTIONS
    )
    multipaths: list[MultipathEntry] = []
    wwid_seen: dict[str, int] = {}
    alias_seen: dict[str, int] = {}
    for i, t in enumerate(_array_of_tables(ctx, ("multipaths",), data.get("multipaths", []))):
        path: KeyPath = ("multipaths", i)
        _reject_unknown(ctx, path, t, ("wwid", "alias", *DATA_MAP_KEYS, *OVERRIDABLE))
        if "wwid" not in t:
            ctx.fail((*path, "wwid"), "missing: every [[multipaths]] table names its WWID")
        wwid = _wwid(ctx, (*path, "wwid"), t["wwid"])
        if wwid in wwid_seen:
            ctx.fail(
                (*path, "wwid"), f"WWID {wwid} already configured in multipaths[{wwid_seen[wwid]}]"
            )
        wwid_seen[wwid] = i
        alias = _alias(ctx, (*path, "alias"), t["alias"]) if "alias" in t else None
        if alias is not None:
            if alias in alias_seen:
                ctx.fail(
                    (*path, "alias"),
                    f"alias {alias} already names multipaths[{alias_seen[alias]}]: two WWIDs "
                    "under one name would mix their paths",
                )
            alias_seen[alias] = i
        offset = (
            _offset(ctx, (*path, "data_offset"), t["data_offset"]) if "data_offset" in t else None
        )
        length = (
            _sectors(ctx, (*path, "data_sectors"), t["data_sectors"])
            if "data_sectors" in t
            else None
        )
        if length is not None and offset is None:
            ctx.fail((*path, "data_sectors"), "needs data_offset (the data map starts there)")
        multipaths.append(
            MultipathEntry(
                wwid, alias, _overrides(ctx, path, t), data_offset=offset, data_sectors=length
            )
        )
    devices: list[DeviceEntry] = []
    for i, t in enumerate(_array_of_tables(ctx, ("devices",), data.get("devices", []))):
        path = ("devices", i)
        _reject_unknown(ctx, path, t, ("vendor", "product", *OVERRIDABLE))
        vendor = _regex(ctx, (*path, "vendor"), t["vendor"]) if "vendor" in t else ""
        product = _regex(ctx, (*path, "product"), t["product"]) if "product" in t else ""
        if not vendor and not product:
            ctx.fail(path, "needs a non-empty vendor or product (or both)")
        devices.append(DeviceEntry(vendor, product, _overrides(ctx, path, t)))
    return Config(
        defaults=defaults,
        blacklist=blacklist,
        blacklist_exceptions=exceptions,
        multipaths=tuple(multipaths),
        devices=tuple(devices),
        source=source,
    )


_TOML_POS_RE = re.compile(r"\(at line (\d+), column \d+\)")
_TOML_END = "(at end of document)"


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate the text of a configuration file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POS_RE.search(msg)
        line = int(m.group(1)) if m else None
        if line is None and _TOML_END in msg:
            line = text.count("\n") + 1
        detail = _TOML_POS_RE.sub("", msg).replace(_TOML_END, "").strip() or "invalid TOML"
        raise ConfigError(source, f"invalid TOML: {detail}", line=line) from exc
    except ValueError as exc:
        # tomllib lets int()'s refusal of a number of thousands of digits through
        line, key = long_number(text)
        raise ConfigError(
            source, "invalid TOML: a number with too many digits", key=dotted(key), line=line
        ) from exc
    return config_from_dict(data, source, text)



def load_config(path: str | Path = DEFAULT_CONFIG_PATH) -> Config:
    """Read ``path``; a file that does not exist gives the defaults (dmpath needs no file).

    Anything else that stops us reading it (permissions, a directory, bad UTF-8) is an
    error: running on defaults the administrator did not choose would be worse.
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return replace(Config(), source=source)
    except OSError as exc:
        raise ConfigError(source, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(source, "not UTF-8 text", line=line) from exc
    return parse_config(text, source)


#: validators of values that are not [defaults] options (``checked_value``)
_VALUE_KINDS: Final[dict[str, Validator]] = {"regex": _regex, "alias": _alias, "wwid": _wwid}



def installed_uuid_prefix(path: str | Path) -> tuple[str, ConfigError | None]:
    """The ``dm_uuid_prefix`` that marks dmpathd's maps in the kernel, for a reader without
    the daemon: the configured one, or the default with the error of a configuration that
    does not load (the caller says so, or not, as its tool would)."""
    try:
        return load_config(path).defaults.dm_uuid_prefix, None
    except ConfigError as exc:
        return DEFAULT_DM_UUID_PREFIX, exc

def checked_value(key: str, value: object) -> object:
    """``value`` as dmpath reads it for ``key``: a [defaults] option, or "regex", "alias"
    or "wwid". A ``ConfigError`` whose ``detail`` says why refuses it: ``mpathctl import``
    reports such a value rather than writing a file that does not load."""
    check = _DEFAULTS_SCHEMA.get(key) or _VALUE_KINDS[key]
    result: object = check(_Ctx("<value>", None), (key,), value)
    return result
