"""The effective configuration as plain data and as TOML (``mpathctl show config``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from enum import StrEnum
from typing import Any

from dmpath.config.records import OVERRIDABLE, Config, Defaults, FilterList, Overrides
from dmpath.config.toml_text import _toml_value

# --------------------------------------------------------------------------- output


def _plain(value: object) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _overrides_dict(ov: Overrides) -> dict[str, Any]:
    return {n: _plain(getattr(ov, n)) for n in OVERRIDABLE if getattr(ov, n) is not None}


def _filter_dict(fl: FilterList) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: list(getattr(fl, k)) for k in ("devnode", "wwid", "property", "protocol")
    }
    out["device"] = [
        {k: v for k, v in (("vendor", d.vendor), ("product", d.product)) if v} for d in fl.device
    ]
    return out


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data (JSON- and TOML-ready) for ``show config``.

    Every option appears with its value, defaults included, and the blacklists include
    their built-in entries; feeding the result back to ``config_from_dict`` gives an equal
    ``Config``.
    """
    multipaths = []
    for mp in cfg.multipaths:
        entry: dict[str, Any] = {"wwid": mp.wwid}
        if mp.alias is not None:
            entry["alias"] = mp.alias
        entry.update(_overrides_dict(mp.overrides))
        for key in ("data_offset", "data_sectors"):
            if getattr(mp, key) is not None:
                entry[key] = getattr(mp, key)
        multipaths.append(entry)
    devices = []
    for dev in cfg.devices:
        dentry: dict[str, Any] = {
            k: v for k, v in (("vendor", dev.vendor), ("product", dev.product)) if v
        }
        dentry.update(_overrides_dict(dev.overrides))
        devices.append(dentry)
    return {
        "defaults": {f.name: _plain(getattr(cfg.defaults, f.name)) for f in fields(Defaults)},
        "blacklist": _filter_dict(cfg.blacklist),
        "blacklist_exceptions": _filter_dict(cfg.blacklist_exceptions),
        "multipaths": multipaths,
        "devices": devices,
    }


def _toml_table(name: str, table: Mapping[str, Any], out: list[str]) -> None:
    out.append(f"[{name}]")
    subtables: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in table.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            subtables.append((key, value))
        elif isinstance(value, list) and not value and key == "device":
            continue
        else:
            out.append(f"{key} = {_toml_value(value)}")
    out.append("")
    for key, items in subtables:
        for item in items:
            _toml_array_item(f"{name}.{key}", item, out)


def _toml_array_item(name: str, table: Mapping[str, Any], out: list[str]) -> None:
    out.append(f"[[{name}]]")
    out.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    out.append("")


def config_to_toml(cfg: Config) -> str:
    """The effective configuration as a valid dmpath.toml (``mpathctl show config``)."""
    d = config_to_dict(cfg)
    out = [f"# effective configuration (from {cfg.source})", ""]
    for section in ("defaults", "blacklist", "blacklist_exceptions"):
        _toml_table(section, d[section], out)
    for section in ("multipaths", "devices"):
        for item in d[section]:
            _toml_array_item(section, item, out)
    return "\n".join(out)
