"""The vocabulary of the configuration: its enums, fixed lists and frozen records.

``Config`` is what ``parse_config``/``load_config`` return; ``MapOptions`` is what
``effective_options`` makes of it for one map.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Final, Literal, TypeAlias

DEFAULT_CONFIG_PATH: Final = "/etc/dmpath/dmpath.toml"


class Backend(StrEnum):
    """The kernel multipath a map is made with: device-mapper or md's personality."""

    DM = "dm"
    MD = "md"


class GroupingPolicy(StrEnum):
    FAILOVER = "failover"
    MULTIBUS = "multibus"
    GROUP_BY_PRIO = "group_by_prio"


class Prio(StrEnum):
    ALUA = "alua"
    CONST = "const"


class Checker(StrEnum):
    TUR = "tur"
    DIRECTIO = "directio"
    NONE = "none"


class FindMultipaths(StrEnum):
    STRICT = "strict"
    ON = "on"
    GREEDY = "greedy"


#: the dm path selectors dmpath tables may name (all take no per-path arguments)
PATH_SELECTORS: Final = ("service-time 0", "queue-length 0", "round-robin 0")
#: SCSI device handlers (scsi_dh_*) a table may name; "" names none
HARDWARE_HANDLERS: Final = ("", "alua", "emc", "rdac", "hp_sw")

Failback: TypeAlias = Literal["immediate", "manual"] | int
NoPathRetry: TypeAlias = Literal["queue", "fail"] | int
#: a transport timer: seconds, or "off" (leave the kernel's value alone)
FastIoFail: TypeAlias = Literal["off"] | int

#: Device names that are never paths, whatever the configuration says (exceptions cannot
#: lift this): stacked (dm, md, bcache, drbd), virtual (ram, zram, loop, nbd, rbd, zd,
#: nullb, pmem), floppy, optical and tape devices, and NVMe native multipath's hidden
#: per-controller nodes. A dm map over any of these would be wrong or would loop.
NEVER_PATH_DEVNODE: Final = (
    r"^(ram|zram|loop|fd|md|dm-|sr|scd|st|nst|nbd|rbd|zd|nullb|pmem|drbd|bcache)[0-9]"
    r"|^md_|^nvme[0-9]+c[0-9]+n[0-9]+"
)

# --------------------------------------------------------------------------- records



#: multipath-tools' prefix, on purpose: LVM (its multipath component detection reads a
#: holder's dm uuid), kpartx's rules, udev's ``dm-uuid-mpath-<wwid>`` links and the tools
#: that look for them (os-brick, CSI drivers) recognise a multipath map by it. Measured in
#: the lab: with any other prefix LVM sees each path as a duplicate PV and refuses a VG on
#: the map ("Cannot use device ... with duplicates"). dmpathd refuses to run beside
#: multipathd, so the two never share maps.
DEFAULT_DM_UUID_PREFIX: Final = "mpath-"

@dataclass(frozen=True)
class Defaults:
    """``[defaults]``: values for every map unless ``[[devices]]``/``[[multipaths]]`` say else."""

    backend: Backend = Backend.DM
    path_grouping_policy: GroupingPolicy = GroupingPolicy.GROUP_BY_PRIO
    path_selector: str = "service-time 0"
    features: tuple[str, ...] = ()
    hardware_handler: str = ""
    retain_hwhandler: bool = True
    prio: Prio = Prio.ALUA
    failback: Failback = "immediate"
    no_path_retry: NoPathRetry = 12
    checker: Checker = Checker.TUR
    polling_interval: float = 1.0
    max_polling_interval: float = 60.0
    checker_timeout: float = 5.0
    fast_io_fail_tmo: FastIoFail = 5
    dev_loss_tmo: FastIoFail = "off"
    eh_deadline: FastIoFail = "off"
    tcp_stall_timeout: float = 2.0
    marginal_failures: int = 3
    marginal_window: float = 60.0
    marginal_latency: float = 2.0
    marginal_recovery: float = 60.0
    user_friendly_names: bool = True
    alias_prefix: str = "mpath"
    find_multipaths: FindMultipaths = FindMultipaths.ON
    uid_attribute: tuple[str, ...] = ("ID_SERIAL", "ID_WWN")
    bindings_file: str = "/etc/dmpath/bindings"
    wwids_file: str = "/etc/dmpath/wwids"
    admin_state_file: str = "/etc/dmpath/admin-state"
    socket: str = "/run/dmpath/dmpathd.sock"
    dm_uuid_prefix: str = DEFAULT_DM_UUID_PREFIX
    flush_on_last_del: bool = False
    coalesce_ms: int = 200
    #: the metrics endpoint, "ADDRESS:PORT" ("" = none)
    metrics_listen: str = ""
    #: the file for node_exporter's textfile collector ("" = none)
    metrics_textfile: str = ""
    metrics_textfile_interval: float = 15.0
    history_file: str = "/var/lib/dmpath/history"
    history_max_events: int = 10000

    def __post_init__(self) -> None:
        # The parser never builds this; it guards records built in code (tests, tools).
        if self.max_polling_interval < self.polling_interval:
            raise ValueError("max_polling_interval must be >= polling_interval")


@dataclass(frozen=True)
class DeviceMatch:
    """A ``vendor``/``product`` pair of regular expressions; "" matches anything."""

    vendor: str = ""
    product: str = ""


@dataclass(frozen=True)
class FilterList:
    """One of ``[blacklist]`` / ``[blacklist_exceptions]`` (regular expressions)."""

    devnode: tuple[str, ...] = ()
    wwid: tuple[str, ...] = ()
    property: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()
    device: tuple[DeviceMatch, ...] = ()


#: Built into every ``[blacklist]``: the file's entries are added to these. Devices that
#: are not SAN paths in practice (IDE, virtio-blk, Xen, MMC/SD cards) and USB storage.
#: Lift one with ``[blacklist_exceptions]``.
BUILTIN_BLACKLIST: Final = FilterList(
    devnode=(r"^(hd|vd|xvd)[a-z]", r"^mmcblk[0-9]"),
    protocol=(r"^scsi:usb$",),
)
#: Built into every ``[blacklist_exceptions]``: a device must carry a SCSI identifier or
#: a WWN in udev (as multipath-tools requires), which keeps devices without a stable
#: identity (most virtual disks, card readers) out even with find_multipaths = "greedy".
BUILTIN_EXCEPTIONS: Final = FilterList(property=(r"^(SCSI_IDENT_|ID_WWN)",))


@dataclass(frozen=True)
class Overrides:
    """Options a ``[[devices]]`` or ``[[multipaths]]`` table may set; None = not set there."""

    backend: Backend | None = None
    path_grouping_policy: GroupingPolicy | None = None
    path_selector: str | None = None
    features: tuple[str, ...] | None = None
    hardware_handler: str | None = None
    prio: Prio | None = None
    failback: Failback | None = None
    no_path_retry: NoPathRetry | None = None
    checker: Checker | None = None


OVERRIDABLE: Final = tuple(f.name for f in fields(Overrides))


@dataclass(frozen=True)
class DeviceEntry:
    """``[[devices]]``: options for every path whose vendor and product match."""

    vendor: str = ""
    product: str = ""
    overrides: Overrides = Overrides()


@dataclass(frozen=True)
class MultipathEntry:
    """``[[multipaths]]``: options (and a fixed name) for the map of one WWID."""

    wwid: str
    alias: str | None = None
    overrides: Overrides = Overrides()
    #: a data map ``<name>-data`` over the map from this sector on (``mpathctl
    #: migrate-md``: the data of a former md array starts after its superblock)
    data_offset: int | None = None
    #: the data map's length in sectors; None: the rest of the LUN
    data_sectors: int | None = None


@dataclass(frozen=True)
class Config:
    defaults: Defaults = Defaults()
    blacklist: FilterList = BUILTIN_BLACKLIST
    blacklist_exceptions: FilterList = BUILTIN_EXCEPTIONS
    multipaths: tuple[MultipathEntry, ...] = ()
    devices: tuple[DeviceEntry, ...] = ()
    #: where it was read from (shown by ``mpathctl show config``); not part of equality
    source: str = field(default="<defaults>", compare=False)


@dataclass(frozen=True)
class MapOptions:
    """What one map gets after merging defaults < devices < multipaths.

    ``origins`` says, per overridable option, which table decided it ("defaults",
    "devices[2]", "multipaths[0]"): the answer to "why does this map queue?".
    """

    wwid: str
    alias: str | None
    backend: Backend
    path_grouping_policy: GroupingPolicy
    path_selector: str
    features: tuple[str, ...]
    hardware_handler: str
    prio: Prio
    failback: Failback
    no_path_retry: NoPathRetry
    checker: Checker
    user_friendly_names: bool
    alias_prefix: str
    origins: tuple[tuple[str, str], ...] = ()
    #: [[multipaths]] data_offset / data_sectors (None: no data map)
    data_offset: int | None = None
    data_sectors: int | None = None

    def origin(self, option: str) -> str:
        return dict(self.origins).get(option, "defaults")

    @property
    def feature_words(self) -> tuple[str, ...]:
        """The features as the words of a dm table (without the leading count)."""
        return tuple(w for f in self.features for w in f.split())


#: the built-in defaults, which the option documentation and the validator quote
_D = Defaults()
