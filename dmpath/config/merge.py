"""Merging: the options one map gets from defaults < [[devices]] < [[multipaths]]."""

from __future__ import annotations

import re
from typing import Any

from dmpath.config.records import OVERRIDABLE, Config, MapOptions, Overrides

# --------------------------------------------------------------------------- merging


def _matches(pattern: str, value: str) -> bool:
    return not pattern or re.search(pattern, value) is not None


def effective_options(cfg: Config, wwid: str, vendor: str, product: str) -> MapOptions:
    """The options of the map of ``wwid``: defaults < matching [[devices]] < [[multipaths]].

    Every [[devices]] table whose expressions all match applies, in file order, so a later
    table overrides an earlier one option by option. ``vendor``/``product`` are compared
    stripped of the padding SCSI INQUIRY keeps.
    """
    d = cfg.defaults
    values: dict[str, Any] = {name: getattr(d, name) for name in OVERRIDABLE}
    origins: dict[str, str] = {}

    def apply(ov: Overrides, origin: str) -> None:
        for name in OVERRIDABLE:
            v = getattr(ov, name)
            if v is not None:
                values[name] = v
                origins[name] = origin

    vendor, product = vendor.strip(), product.strip()
    for i, dev in enumerate(cfg.devices):
        if _matches(dev.vendor, vendor) and _matches(dev.product, product):
            apply(dev.overrides, f"devices[{i}]")
    alias = None
    data_offset: int | None = None
    data_sectors: int | None = None
    for i, mp in enumerate(cfg.multipaths):
        if mp.wwid == wwid:
            apply(mp.overrides, f"multipaths[{i}]")
            alias = mp.alias
            data_offset, data_sectors = mp.data_offset, mp.data_sectors
            break
    return MapOptions(
        wwid=wwid,
        alias=alias,
        user_friendly_names=d.user_friendly_names,
        alias_prefix=d.alias_prefix,
        origins=tuple(sorted(origins.items())),
        data_offset=data_offset,
        data_sectors=data_sectors,
        **values,
    )


def configured_wwids(cfg: Config) -> frozenset[str]:
    """WWIDs the administrator named in [[multipaths]]: "known" for find_multipaths."""
    return frozenset(mp.wwid for mp in cfg.multipaths)


def configured_aliases(cfg: Config) -> dict[str, str]:
    """alias → WWID of [[multipaths]]: names a user-friendly name must never take."""
    return {mp.alias: mp.wwid for mp in cfg.multipaths if mp.alias is not None}
