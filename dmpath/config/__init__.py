"""The configuration file ``/etc/dmpath/dmpath.toml``: parsed strictly into frozen records.

Why strict: a multipath daemon that silently ignores a misspelt ``blacklist`` key grabs
devices the administrator meant to keep away from it. So every unknown key, wrong type or
bad value is a ``ConfigError`` naming the file, the dotted key (``defaults.no_path_retry``,
``multipaths[1].alias``) and the line. ``tomllib`` reports no lines for values, so
``_LineIndex`` finds them by scanning the text for the key inside its table's section.

Why frozen dataclasses: the daemon swaps the whole ``Config`` on reload, and the policies
(``dmpath.policy``) take it as a plain input, so nothing may change it behind their back.

A missing file means "all defaults" (dmpath works out of the box, as multipathd does
without ``multipath.conf``); an unreadable one is an error, never a silent default.

Every option, its default and its meaning is in ``OPTIONS`` (``dmpath.config.docs``); that
module's docstring table, the man page ``man/dmpath.toml.5`` (between its GENERATED
markers) and the tests are all derived from it, so they cannot drift apart. Regenerate
the man page with ``python -m dmpath.config --update-man man/dmpath.toml.5``.

The package's modules (import the names from ``dmpath.config`` itself, except ``docs``'s:
the udev helper loads the configuration at every udev event, and the documentation
tables are a third of that import, so only their users import ``dmpath.config.docs``):

    records    the enums, fixed lists and frozen records (``Config``, ``MapOptions``, ...)
    docs       ``OPTIONS``, the option table and the man page's option lists
    toml_text  Python values written as TOML source
    lines      ``_LineIndex``: the line of a key in TOML text
    validate   the validators, ``config_from_dict``, ``parse_config``, ``load_config``
    merge      ``effective_options``, ``configured_wwids``, ``configured_aliases``
    output     ``config_to_dict``, ``config_to_toml``
    mptconf    multipath-tools' multipath.conf syntax (and its config_dir) as a tree
    mptimport  that tree as a dmpath.toml (``mpathctl import multipath.conf``)
    __main__   ``python -m dmpath.config``
"""

from __future__ import annotations

from dmpath.config.lines import KeyPath, PathPart
from dmpath.config.merge import configured_aliases, configured_wwids, effective_options
from dmpath.config.output import config_to_dict, config_to_toml
from dmpath.config.records import (
    BUILTIN_BLACKLIST,
    BUILTIN_EXCEPTIONS,
    DEFAULT_CONFIG_PATH,
    HARDWARE_HANDLERS,
    NEVER_PATH_DEVNODE,
    OVERRIDABLE,
    PATH_SELECTORS,
    Backend,
    Checker,
    Config,
    Defaults,
    DeviceEntry,
    DeviceMatch,
    Failback,
    FilterList,
    FindMultipaths,
    GroupingPolicy,
    MapOptions,
    MultipathEntry,
    NoPathRetry,
    Overrides,
    Prio,
)
from dmpath.config.validate import (
    Validator,
    config_from_dict,
    dotted,
    installed_uuid_prefix,
    load_config,
    parse_config,
    valid_wwid,
)

__all__ = [
    "BUILTIN_BLACKLIST",
    "BUILTIN_EXCEPTIONS",
    "DEFAULT_CONFIG_PATH",
    "HARDWARE_HANDLERS",
    "NEVER_PATH_DEVNODE",
    "OVERRIDABLE",
    "PATH_SELECTORS",
    "Backend",
    "Checker",
    "Config",
    "Defaults",
    "DeviceEntry",
    "DeviceMatch",
    "Failback",
    "FilterList",
    "FindMultipaths",
    "GroupingPolicy",
    "KeyPath",
    "MapOptions",
    "MultipathEntry",
    "NoPathRetry",
    "Overrides",
    "PathPart",
    "Prio",
    "Validator",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "configured_aliases",
    "configured_wwids",
    "dotted",
    "effective_options",
    "installed_uuid_prefix",
    "load_config",
    "parse_config",
    "valid_wwid",
]

