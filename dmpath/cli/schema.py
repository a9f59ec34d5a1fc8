"""JSON Schemas (draft 2020-12) of what ``mpathctl --json`` prints.

Why a schema in code: scripts that page someone at 3 a.m. parse this output, so its shape
is a promise. The unit tests validate real output against these schemas and check that
every field of the model appears in them, so a field added to :mod:`dmpath.model` without
being documented here (and in man/mpathctl.8) fails the tests instead of surprising a
script. ``mpathctl show schema NAME`` prints them.

The objects are closed (``additionalProperties: false``): a new field is a documented
change, announced by ``version`` in the status document when it is not backwards
compatible.
"""

from __future__ import annotations

from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://dmpath.invalid/schema/mpathctl/"

_STR: dict[str, Any] = {"type": "string"}
_INT0: dict[str, Any] = {"type": "integer", "minimum": 0}
_INT: dict[str, Any] = {"type": "integer"}
_NUM0: dict[str, Any] = {"type": "number", "minimum": 0}
_BOOL: dict[str, Any] = {"type": "boolean"}


def _obj(props: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


_PATH_PROPS: dict[str, Any] = {
    "name": {**_STR, "description": "kernel name, e.g. sdb"},
    "devnum": {
        "type": "string",
        "pattern": "^([0-9]+:[0-9]+)?$",
        "description": "MAJ:MIN, empty if unknown",
    },
    "wwid": _STR,
    "hctl": {**_STR, "description": "SCSI host:channel:target:lun, empty if not SCSI"},
    "vendor": _STR,
    "model": _STR,
    "rev": _STR,
    "size_sectors": _INT0,
    "transport": _STR,
    "dev_state": {**_STR, "description": "SCSI device state: running, offline, blocked, ..."},
    "checker": {**_STR, "description": "checker name, e.g. tur"},
    "check": {
        "enum": ["up", "down", "ghost", "pending", "unsupported", "unknown"],
        "description": "outcome of the last check; unknown in the kernel's view",
    },
    "check_reason": _STR,
    "kernel_state": {"enum": ["active", "failed", "absent", "spare"]},
    "priority": _INT,
    "alua_state": _STR,
    "group": {**_INT0, "description": "1-based group number in its map, 0 if none"},
    "fail_count": {**_INT0, "description": "failures the daemon has seen (0 in the kernel's view)"},
    "reinstate_count": {
        **_INT0,
        "description": "reinstatements by the daemon or the administrator",
    },
    "last_change": {**_NUM0, "description": "epoch seconds of the last state change, 0 never"},
    "interval": {**_NUM0, "description": "current polling interval in seconds"},
    "held": {
        "type": "boolean",
        "description": "failed by the administrator: stays failed until reinstated by hand",
    },
    "marginal": {
        "type": "boolean",
        "description": "flapping or slow: kept failed while another path works, until "
        "healthy for marginal_recovery seconds",
    },
    "marginal_reason": {**_STR, "description": "why the path is marginal, empty if it is not"},
}

_GROUP_PROPS: dict[str, Any] = {
    "number": {"type": "integer", "minimum": 1},
    "selector": {**_STR, "description": "path selector and its arguments"},
    "priority": _INT,
    "state": {"enum": ["active", "enabled", "disabled"]},
    "paths": {"type": "array", "items": _STR, "description": "path names in table order"},
}

_MAP_PROPS: dict[str, Any] = {
    "name": {**_STR, "description": "map name or alias"},
    "wwid": _STR,
    "backend": {"enum": ["dm", "md"]},
    "sysfs": {**_STR, "description": "dm-N or mdN"},
    "devnode": _STR,
    "uuid": {**_STR, "description": "dm uuid or md array uuid"},
    "size_sectors": _INT0,
    "vendor": _STR,
    "model": _STR,
    "rev": _STR,
    "features": _STR,
    "hwhandler": _STR,
    "queueing": {**_BOOL, "description": "I/O queues when no path is left"},
    "no_path_retry": _STR,
    "failback": _STR,
    "open_count": _INT0,
    "groups": {"type": "array", "items": {"$ref": "#/$defs/group"}},
    "paths": {"type": "array", "items": {"$ref": "#/$defs/path"}},
    "alerts": {"type": "array", "items": _STR},
    "status": {
        "type": "string",
        "pattern": r"^\[[0-9]+/[0-9]+\] \[[U_]*\]$",
        "description": "md-style [slots/working] [U_] string",
    },
    "working": {**_INT0, "description": "paths the kernel uses"},
}

_EVENT_PROPS: dict[str, Any] = {
    "time": {**_NUM0, "description": "epoch seconds"},
    "kind": {**_STR, "description": "path_failed, path_reinstated, path_added, ..."},
    "map": _STR,
    "path": _STR,
    "message": _STR,
}

_NATIVE_PATH_PROPS: dict[str, Any] = {
    "node": {**_STR, "description": "the kernel's hidden per-path node, e.g. nvme0c1n1"},
    "controller": {**_STR, "description": "controller, e.g. nvme1"},
    "state": {**_STR, "description": "controller state: live, connecting, resetting, ..."},
    "transport": {**_STR, "description": "tcp, rdma, fc, pcie, loop"},
    "address": {**_STR, "description": "the controller's address (traddr=...,trsvcid=...)"},
    "ana_state": {**_STR, "description": "optimized, non-optimized, inaccessible, ... or ''"},
}

_NATIVE_NS_PROPS: dict[str, Any] = {
    "name": {**_STR, "description": "the namespace's one disk (the head), e.g. nvme0n1"},
    "nsid": _INT,
    "wwid": _STR,
    "devnum": _STR,
    "size_sectors": _INT0,
    "paths": {"type": "array", "items": {"$ref": "#/$defs/native_path"}},
}

_NATIVE_SUBSYS_PROPS: dict[str, Any] = {
    "name": {**_STR, "description": "e.g. nvme-subsys0"},
    "nqn": _STR,
    "model": _STR,
    "serial": _STR,
    "iopolicy": {**_STR, "description": "numa, round-robin"},
    "namespaces": {"type": "array", "items": {"$ref": "#/$defs/native_namespace"}},
}

_SNAPSHOT_PROPS: dict[str, Any] = {
    "version": {"const": 1, "description": "schema version of this document"},
    "source": {"enum": ["daemon", "kernel"], "description": "kernel: no daemon was running"},
    "pid": _INT0,
    "started": _NUM0,
    "config_file": _STR,
    "maps": {"type": "array", "items": {"$ref": "#/$defs/map"}},
    "unmapped_paths": {"type": "array", "items": {"$ref": "#/$defs/path"}},
    "events": {"type": "array", "items": {"$ref": "#/$defs/event"}},
    "nvme_native": {
        "type": "array",
        "items": {"$ref": "#/$defs/native_subsystem"},
        "description": "the kernel's native NVMe multipath, read-only (dmpathd leaves it)",
    },
}

_LISTED_PATH_PROPS: dict[str, Any] = {
    **_PATH_PROPS,
    "map": {**_STR, "description": "name of the map holding the path, empty if none"},
}

DEFS: dict[str, Any] = {
    "path": _obj(_PATH_PROPS, "one path (a SCSI or NVMe device) to a LUN"),
    "group": _obj(_GROUP_PROPS, "a priority group of a dm map"),
    "map": _obj(_MAP_PROPS, "a multipath map (dm table or md multipath array)"),
    "event": _obj(_EVENT_PROPS, "one entry of the daemon's history"),
    "native_path": _obj(_NATIVE_PATH_PROPS, "one controller's path to a native namespace"),
    "native_namespace": _obj(_NATIVE_NS_PROPS, "a namespace under native NVMe multipath"),
    "native_subsystem": _obj(_NATIVE_SUBSYS_PROPS, "an NVMe subsystem under native multipath"),
    "listed_path": _obj(_LISTED_PATH_PROPS, "a path in show paths, with its map"),
    "error": _obj(
        {
            "kind": {**_STR, "description": "protocol error kind, or 'local'"},
            "message": _STR,
            "exit_code": _INT0,
        },
        "why a command failed",
    ),
}


def _doc(name: str, title: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": DRAFT, "$id": BASE_ID + name, "title": title, **body, "$defs": DEFS}


#: ``mpathctl status --json`` and ``show maps --json``: ``snapshot_to_dict``
STATUS_SCHEMA: dict[str, Any] = _doc(
    "status",
    "mpathctl status --json",
    _obj(_SNAPSHOT_PROPS, "everything the daemon (or the kernel) knows"),
)

#: ``mpathctl show map NAME --json``
MAP_SCHEMA: dict[str, Any] = _doc("map", "mpathctl show map NAME --json", {"$ref": "#/$defs/map"})

#: ``mpathctl show paths --json``
PATHS_SCHEMA: dict[str, Any] = _doc(
    "paths",
    "mpathctl show paths --json",
    {"type": "array", "items": {"$ref": "#/$defs/listed_path"}},
)

#: ``mpathctl show maps --names --json``
NAMES_SCHEMA: dict[str, Any] = _doc(
    "names", "mpathctl show maps --names --json", {"type": "array", "items": _STR}
)

#: ``mpathctl show events --json``
EVENTS_SCHEMA: dict[str, Any] = _doc(
    "events",
    "mpathctl show events --json",
    {"type": "array", "items": {"$ref": "#/$defs/event"}},
)

#: every action (``fail``, ``flush``, ...) with ``--json``, and any command's failure
ACTION_SCHEMA: dict[str, Any] = _doc(
    "action",
    "mpathctl ACTION --json",
    {
        "oneOf": [
            _obj({"ok": {"const": True}, "result": {}}, "the daemon did it"),
            _obj({"ok": {"const": False}, "error": {"$ref": "#/$defs/error"}}, "it did not"),
        ]
    },
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "status": STATUS_SCHEMA,
    "map": MAP_SCHEMA,
    "paths": PATHS_SCHEMA,
    "names": NAMES_SCHEMA,
    "events": EVENTS_SCHEMA,
    "action": ACTION_SCHEMA,
}
