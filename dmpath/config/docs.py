"""The documentation of every option (``OPTIONS``) and what is rendered from it.

The option table at the end of this docstring (``_docstring_table``) and the option
lists of the man page ``man/dmpath.toml.5`` (``render_man_options``, ``update_man_page``)
are derived from ``OPTIONS``, so they cannot drift apart.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Final

from dmpath.config.records import (
    _D,
    BUILTIN_BLACKLIST,
    BUILTIN_EXCEPTIONS,
    NEVER_PATH_DEVNODE,
    OVERRIDABLE,
)
from dmpath.config.toml_text import _toml_value

# --------------------------------------------------------------------------- documentation


@dataclass(frozen=True)
class OptionDoc:
    section: str  # "defaults", "blacklist", "blacklist.device", "multipaths", "devices"
    name: str
    kind: str  # value type as the man page says it
    default: str  # as TOML; "" for "no default"
    text: str


_OVERRIDE_NOTE = "Also settable per device type ([[devices]]) and per map ([[multipaths]])."

OPTIONS: Final[tuple[OptionDoc, ...]] = (
    OptionDoc(
        "defaults",
        "backend",
        '"dm" | "md"',
        _toml_value(_D.backend.value),
        "Which kernel machinery assembles a map: the device-mapper multipath target "
        "(dmsetup) or md's multipath personality (mdadm). Linux removed the md personality "
        "in 6.8; use md only on kernels that still have it, such as 6.1. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "path_grouping_policy",
        '"failover" | "multibus" | "group_by_prio"',
        _toml_value(_D.path_grouping_policy.value),
        "How the paths of a map form priority groups: one path per group (failover), all "
        "paths in one group with I/O spread over them (multibus), or one group per path "
        "priority, best first (group_by_prio: with ALUA the active/optimized paths carry "
        "the I/O and the others stand by). dm backend only. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "path_selector",
        '"service-time 0" | "queue-length 0" | "round-robin 0"',
        _toml_value(_D.path_selector),
        "The dm path selector that spreads I/O over the paths of the active group: least "
        "outstanding bytes relative to throughput (service-time), fewest outstanding I/Os "
        '(queue-length) or plain rotation (round-robin). A bare name ("round-robin") is '
        "accepted and completed. dm backend only. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "features",
        "list of strings",
        _toml_value(_D.features),
        "Extra dm-multipath table features, one string per feature with its arguments, "
        'e.g. ["pg_init_retries 50", "queue_mode bio"]. Accepted: pg_init_retries N, '
        "pg_init_delay_msecs N, queue_mode bio|rq|mq. queue_if_no_path is refused (say "
        "no_path_retry instead: two knobs for one behaviour disagree sooner or later), and "
        "so is retain_attached_hw_handler (see retain_hwhandler). " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "hardware_handler",
        '"" | "alua" | "emc" | "rdac" | "hp_sw"',
        _toml_value(_D.hardware_handler),
        "The SCSI device handler the table names. The default names none: since Linux 4.3 "
        "the SCSI layer attaches scsi_dh_alua by itself to every device that reports ALUA "
        "support when it is scanned, and dm-multipath keeps an attached handler; naming "
        '"alua" for a device without ALUA makes the table fail to load. Name a handler '
        "only for arrays that need a non-ALUA one (emc, rdac, hp_sw). " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "retain_hwhandler",
        "boolean",
        _toml_value(_D.retain_hwhandler),
        "Keep the device handler the SCSI layer attached to a path rather than the one "
        "hardware_handler names. Kernels since 4.3 always do; false is accepted so that "
        "configurations written for older kernels load, and changes nothing on them.",
    ),
    OptionDoc(
        "defaults",
        "prio",
        '"alua" | "const"',
        _toml_value(_D.prio.value),
        "Where path priorities come from: the path's ALUA access state (REPORT TARGET PORT "
        "GROUPS: active/optimized above active/non-optimized above standby), or the same "
        "for every path (const). Paths of a device without ALUA support all get the same "
        "priority under alua too. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "failback",
        '"immediate" | "manual" | integer >= 1',
        _toml_value(_D.failback),
        "When a map moves its I/O back to a better path group that has become usable "
        "again: at once, never by itself (an administrator switches groups), or after the "
        "group has stayed usable for that many seconds (so that a flapping path does not "
        "drag I/O back and forth). " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "no_path_retry",
        '"queue" | "fail" | integer >= 1',
        _toml_value(_D.no_path_retry),
        "What happens to I/O once the last path of a map has failed: queue it until a path "
        "returns, however long that takes (processes doing I/O then hang and cannot be "
        "killed); fail it at once (a short blip becomes file system errors); or queue it "
        "for N times polling_interval seconds from the moment the last path was lost, then "
        "fail it (as multipath-tools counts it). The default, 12 (12 s), rides out the "
        "seconds-long outages that fabric events and controller failovers cause without "
        "ever hanging applications for good. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "checker",
        '"tur" | "directio" | "none"',
        _toml_value(_D.checker.value),
        "How paths are tested: SCSI TEST UNIT READY through SG_IO (tur: cheap, reads no "
        "data), a read of one block with O_DIRECT (directio: for devices without SCSI "
        "pass-through), or not at all (none: nothing is sent to the paths, and their "
        "state is what the kernel reports after I/O errors). An NVMe path has no SCSI "
        "behind it: where tur is set, it is checked with directio. " + _OVERRIDE_NOTE,
    ),
    OptionDoc(
        "defaults",
        "polling_interval",
        "seconds (0.1 to 3600)",
        _toml_value(_D.polling_interval),
        "How soon a change is noticed. Paths share fate: every LUN behind one I_T nexus "
        "(SCSI host:channel:target - one FC remote port, one iSCSI session) dies and "
        "returns together when a cable, switch port or link does, so each nexus is probed "
        "once per polling_interval, the probe rotating through its LUNs, and when one path "
        "changes (down, or back) all its siblings are checked at once: a dead link is "
        "noticed within about this time whatever the number of LUNs behind it. A path that "
        "is down, pending, just changed or flapping is also checked this often itself, so "
        "a path that comes back is reinstated within about this time.",
    ),
    OptionDoc(
        "defaults",
        "max_polling_interval",
        "seconds (polling_interval to 3600)",
        _toml_value(_D.max_polling_interval),
        "The longest time between two checks of one healthy path: a stable path's interval "
        "doubles after each good check, from polling_interval up to this. It bounds how "
        "long one LUN failing alone on a healthy nexus, with no I/O on it, can go unseen "
        "(with I/O the kernel fails the path at once and dmpathd checks it that moment). "
        "Why 60 s: at 1,024 paths on 4 nexuses idle checking costs 4 probes plus 1024/60 "
        "own checks per second, about 21 SCSI commands per second, where checking every "
        "path every polling_interval would cost 1,024 (multipathd's defaults, 5 s growing "
        "to 20 s, cost about 51). Defaults to the larger of 60 and polling_interval.",
    ),
    OptionDoc(
        "defaults",
        "checker_timeout",
        "seconds (0.1 to 300)",
        _toml_value(_D.checker_timeout),
        "How long one check may take. A path answers TEST UNIT READY in well under a "
        "millisecond; a check still unanswered after this time counts as down: that is "
        "how a hung path looks (a dead link or a blocked iSCSI session neither answers nor "
        "fails its commands for tens of seconds). The check itself goes on in its own "
        "thread, which the daemon replaces, so a hung path never holds up the others. Far "
        "below the 30 s SCSI command timeout, so that a hung path is failed while it hangs.",
    ),
    OptionDoc(
        "defaults",
        "fast_io_fail_tmo",
        '"off" or seconds (1 or more)',
        _toml_value(_D.fast_io_fail_tmo),
        "How long the transport holds the I/O of a path whose link is lost before it "
        "hands that I/O back failed, so that dm sends it down another path. dmpathd writes "
        "it, for every path it manages, to the iSCSI session's recovery_tmo (the "
        "replacement_timeout of iscsid.conf: while the session reconnects, its disks are "
        "blocked and their commands wait; when it expires, waiting and new commands fail "
        "at once, and they work again when the session is back) and to the FC remote "
        "port's fast_io_fail_tmo (the port is kept until dev_loss_tmo, its I/O failed from "
        "this time), and to an NVMe over Fabrics controller's fast_io_fail_tmo (a "
        "reconnecting controller otherwise holds I/O that is not fail-fast, a check's "
        "read among it, until ctrl_loss_tmo, 600 s by default). The kernel's own "
        "defaults, 120 s for iSCSI, leave a map's I/O stalled for two minutes when a "
        "portal goes dark; 5 s, as multipath-tools, bounds the stall by the iSCSI ping "
        "(noop_out_timeout, 5 s) plus this. A session (or controller) is shared by every "
        'LUN behind it, other LUNs included, and is written once. "off" leaves the '
        "transports' timers alone.",
    ),
    OptionDoc(
        "defaults",
        "dev_loss_tmo",
        '"off" or seconds (1 or more, above fast_io_fail_tmo)',
        _toml_value(_D.dev_loss_tmo),
        "How long an FC remote port that has gone is kept before the kernel removes it and "
        "its disks (the paths leave their maps; they come back as new disks when the port "
        "returns). dmpathd writes it to the FC remote port of every path it manages, "
        "before fast_io_fail_tmo (the kernel refuses a fast_io_fail_tmo that is not below "
        "it). iSCSI has no such timer: a session is kept until it is logged out. "
        '"off" (the default, as multipath-tools) leaves the kernel\'s value (60 s).',
    ),
    OptionDoc(
        "defaults",
        "eh_deadline",
        '"off" or seconds (1 or more)',
        _toml_value(_D.eh_deadline),
        "How long the SCSI error handler may work on a host before it goes straight to a "
        "host reset. A command that times out (30 s) starts the error handler, which "
        "tries to abort it, then resets the device, the target, the bus and the host in "
        "turn, and every disk of that host (of every map) waits meanwhile: on a "
        "misbehaving FC HBA that can take minutes. dmpathd writes it to the SCSI host of "
        "every path it manages; a host with no host reset (iSCSI's software hosts, whose "
        "recovery is the session's) has none and is skipped. \"off\" (the default, as "
        "multipath-tools) leaves the kernel's value (no deadline).",
    ),
    OptionDoc(
        "defaults",
        "tcp_stall_timeout",
        "seconds (0 to 60)",
        _toml_value(_D.tcp_stall_timeout),
        "An iSCSI session whose TCP connection has data out, has retransmitted it at least "
        "twice in a row and has had no acknowledgement for this long is stalled: a dark "
        "portal (a dead switch port, a black hole). dmpathd reads every session's "
        "connection twice a second (one sock_diag dump), fails a stalled session's paths "
        "(event tcp_stall) and aborts the connection (SOCK_DESTROY), so that the session's "
        "recovery starts then rather than when the iSCSI ping gives up (noop_out_interval "
        "+ noop_out_timeout, 10 s by default); while another path carries each of its "
        "maps, the session's recovery_tmo is 1 s until it logs in again, so the I/O held "
        "on the dead connection is failed over at once. A SAN acknowledges in well under a "
        "millisecond and a lossy link acknowledges between its retransmissions: neither "
        "stalls. 0 turns it off (the checks alone find a dark portal).",
    ),
    OptionDoc(
        "defaults",
        "marginal_failures",
        "integer (0 to 1000)",
        _toml_value(_D.marginal_failures),
        "A path that fails this many times within marginal_window seconds (or answers its "
        "checks slower than marginal_latency, each slow answer counting as a failure) is "
        "marginal: it flaps or drags, and each time it came back the kernel would send I/O "
        "down it again only to wait for the transport to fail that I/O over. A marginal "
        "path is failed and kept failed, even while its checks pass, as long as another "
        "path of its map works (when none does, it is used: a flapping path beats none); "
        "it is used again once it has been healthy for marginal_recovery seconds. A fall "
        "counts once, whichever signal told it (an I/O error, a check, the link going "
        "down). mpathctl status shows the path as marginal and why; the events are "
        "path_marginal and path_marginal_cleared; mpathctl reinstate ends the term at "
        "once. 0 turns the rule off.",
    ),
    OptionDoc(
        "defaults",
        "marginal_window",
        "seconds (1 to 86400)",
        _toml_value(_D.marginal_window),
        "The window in which marginal_failures failures make a path marginal. With the "
        "defaults, a path that drops three times in a minute is taken out of use; one "
        "that fails once an hour (a controller reboot, a planned switch update) never is.",
    ),
    OptionDoc(
        "defaults",
        "marginal_latency",
        "seconds (0 to 300)",
        _toml_value(_D.marginal_latency),
        "A check answered slower than this counts as a failure for the marginal rule (a "
        "congested or lossy link answers, but late, and drags the map's I/O with it). A "
        "healthy path answers TEST UNIT READY in well under a millisecond; the default "
        "leaves room for a loaded host. 0: answer times never count.",
    ),
    OptionDoc(
        "defaults",
        "marginal_recovery",
        "seconds (0 to 86400)",
        _toml_value(_D.marginal_recovery),
        "How long a marginal path must stay healthy (every check passing, in time, and no "
        "failure) before it is used again; any failure starts the time again.",
    ),
    OptionDoc(
        "defaults",
        "user_friendly_names",
        "boolean",
        _toml_value(_D.user_friendly_names),
        "Name maps alias_prefix plus letters (mpatha, mpathb, ..., mpathz, mpathaa, ...), "
        "remembered per WWID in bindings_file, instead of by WWID. An alias in "
        "[[multipaths]] wins over both.",
    ),
    OptionDoc(
        "defaults",
        "alias_prefix",
        "string",
        _toml_value(_D.alias_prefix),
        "The prefix of user-friendly names: letters, digits, '_', '.', '-'.",
    ),
    OptionDoc(
        "defaults",
        "find_multipaths",
        '"strict" | "on" | "greedy"',
        _toml_value(_D.find_multipaths.value),
        "Which devices become maps: only WWIDs known from wwids_file or [[multipaths]] "
        "(strict); those and every WWID seen through at least two non-blacklisted paths "
        "(on); or every non-blacklisted device, even with one path (greedy). A WWID that "
        "became a map is remembered in wwids_file, so it stays a map when it is down to one "
        "path or after a reboot.",
    ),
    OptionDoc(
        "defaults",
        "uid_attribute",
        "list of udev property names",
        _toml_value(_D.uid_attribute),
        "The udev properties tried, in order, for a path's WWID; the first one present "
        "and not empty wins. ID_SERIAL first gives the WWIDs multipath-tools uses, so its "
        "bindings and wwids files carry over.",
    ),
    OptionDoc(
        "defaults",
        "bindings_file",
        "absolute path",
        _toml_value(_D.bindings_file),
        'The user-friendly names, one "alias wwid" line each: the format of multipath-'
        "tools' /etc/multipath/bindings, which can be copied here unchanged or named here "
        "and used in place (mpathctl import multipath.conf names it). Rewritten "
        "atomically (temporary file, fsync, rename).",
    ),
    OptionDoc(
        "defaults",
        "wwids_file",
        "absolute path",
        _toml_value(_D.wwids_file),
        'The WWIDs that have been maps, one "/wwid/" line each: the format of multipath-'
        "tools' /etc/multipath/wwids, which can be named here and used in place (mpathctl "
        "import multipath.conf names it). LVM reads this format: point devices/"
        "multipath_wwids_file in lvm.conf(5) here so that LVM ignores the paths of maps.",
    ),
    OptionDoc(
        "defaults",
        "admin_state_file",
        "absolute path",
        _toml_value(_D.admin_state_file),
        "What the administrator asked of dmpathd that the kernel does not remember and "
        "that must outlive a restart: paths failed (mpathctl fail) or removed (mpathctl "
        "remove), queueing set on or off (mpathctl queueing) and maps flushed (mpathctl "
        "flush). dmpathd reads it when it starts and honours it when it heals; mpathctl "
        "reinstate, queueing MAP config, create and add undo it. JSON, rewritten "
        "atomically (temporary file, fsync, rename) at each change; a missing file is an "
        "empty one.",
    ),
    OptionDoc(
        "defaults",
        "socket",
        "absolute path",
        _toml_value(_D.socket),
        "dmpathd's control socket, where mpathctl sends its requests.",
    ),
    OptionDoc(
        "defaults",
        "dm_uuid_prefix",
        "string",
        _toml_value(_D.dm_uuid_prefix),
        "Start of the dm UUID of every map dmpath creates (the UUID is this plus the "
        "WWID); it is how dmpath tells its maps from others. multipath-tools' own mpath- "
        "by default, on purpose: LVM recognises a path of a multipath map by its holder's "
        "mpath- UUID (with any other prefix it sees every path as a duplicate PV and "
        "refuses a volume group on the map), kpartx's udev rules make partition maps only "
        "on mpath- maps, and udev's /dev/disk/by-id/dm-uuid-mpath-WWID links are what "
        "OpenStack and CSI drivers look for (with another prefix, 56-dmpath-maps.rules "
        "makes that link). dmpathd refuses to run beside multipathd, and "
        "multipath-tools' own udev rules must not be installed with it (dmpathd(8)). "
        "Prefixes that belong to other tools (LVM-, CRYPT-, partN-) are refused.",
    ),
    OptionDoc(
        "defaults",
        "flush_on_last_del",
        "boolean",
        _toml_value(_D.flush_on_last_del),
        "Remove a map when its last path is removed, unless the map is open. true removes "
        "it as mpathctl flush without --force does: its unused partition maps first, and "
        "never while anything holds it or one of its partition maps open (a mount, LVM, a "
        "process, udev's probe waiting on the queue of a map with no path), so no queued "
        "or in-flight I/O is lost: an open map is kept, with an alert, and flushed once "
        "nothing holds it (its user gone, or its queued I/O failed when no_path_retry ran "
        "out), unless a path comes back first. A path coming back after the flush makes "
        "the map again. false keeps the map (its I/O queued or failed as no_path_retry "
        "says) so that a path coming back finds it.",
    ),
    OptionDoc(
        "defaults",
        "coalesce_ms",
        "milliseconds (0 to 10000)",
        _toml_value(_D.coalesce_ms),
        "A burst of udev events (a rescan, a fabric event) is gathered for this long and "
        "acted on once. 0 acts on every event at once.",
    ),
    OptionDoc(
        "defaults",
        "metrics_listen",
        '"ADDRESS:PORT" | ""',
        _toml_value(_D.metrics_listen),
        'Serve Prometheus metrics over HTTP at http://ADDRESS:PORT/metrics, e.g. '
        '"127.0.0.1:9650" ("[::1]:9650" for IPv6, "0.0.0.0:9650" for every address: '
        "the endpoint has no authentication). Empty: no endpoint. The metrics are listed "
        "in dmpathd(8). Read at start; a change needs a restart.",
    ),
    OptionDoc(
        "defaults",
        "metrics_textfile",
        'absolute path ending in .prom | ""',
        _toml_value(_D.metrics_textfile),
        "Write the same metrics to this file for node_exporter's textfile collector (e.g. "
        '"/var/lib/prometheus/node-exporter/dmpath.prom" with Debian\'s prometheus-node-'
        "exporter), every metrics_textfile_interval seconds, atomically (a temporary file "
        "renamed over it); removed when dmpathd stops. Empty: no file. Read at start.",
    ),
    OptionDoc(
        "defaults",
        "metrics_textfile_interval",
        "seconds (1 to 3600)",
        _toml_value(_D.metrics_textfile_interval),
        "How often metrics_textfile is rewritten.",
    ),
    OptionDoc(
        "defaults",
        "history_file",
        'absolute path, or ""',
        _toml_value(_D.history_file),
        "Where dmpathd keeps its events (path failures and reinstatements, maps made, "
        "administrators' requests, its own starts and stops) across restarts: one JSON "
        "object per line, appended by a thread of its own, loaded at start so that "
        "mpathctl show events lists what happened before. A line cut short by a crash is "
        'skipped. "" keeps the history in memory only, lost at each restart; so does a '
        "file that cannot be read or written (one warning; the daemon runs on). dmpathd "
        "starts before the local file systems are mounted (it may provide them): with /var "
        "on a file system of its own, name a file on the root file system here. Read at "
        "start only.",
    ),
    OptionDoc(
        "defaults",
        "history_max_events",
        "integer (10 to 50000)",
        _toml_value(_D.history_max_events),
        "How many events the history keeps, the newest, in memory and in history_file; "
        "the file grows to one and a half times as many lines and is then rewritten to "
        "this many (a temporary file renamed over it). An event line is about 150 bytes. "
        "A coldplug of a thousand paths makes over a thousand events. The whole history is "
        "one reply of mpathctl show events (at most 16 MiB), hence the upper bound; the "
        "snapshot of mpathctl status carries the newest 1,000. Read at start only.",
    ),
    # ---- blacklist / blacklist_exceptions
    OptionDoc(
        "blacklist",
        "devnode",
        "list of regular expressions",
        _toml_value(BUILTIN_BLACKLIST.devnode),
        "Kernel device names (sda, nvme0n1): a device whose name matches is not a path.",
    ),
    OptionDoc(
        "blacklist",
        "wwid",
        "list of regular expressions",
        "[]",
        "WWIDs: a device whose WWID matches is not a path.",
    ),
    OptionDoc(
        "blacklist",
        "property",
        "list of regular expressions",
        "[]",
        "udev property NAMES (not values): a device that has a property whose name matches "
        "is not a path, unless that same name also matches blacklist_exceptions.property. "
        "In [blacklist_exceptions] the list is also a requirement: when it is not empty, a "
        "device must have at least one property whose name matches, or it is not a path. "
        "The built-in requirement is "
        + _toml_value(BUILTIN_EXCEPTIONS.property)
        + ' (a SCSI identifier or a WWN); to lift it, add "." to '
        "blacklist_exceptions.property.",
    ),
    OptionDoc(
        "blacklist",
        "protocol",
        "list of regular expressions",
        _toml_value(BUILTIN_BLACKLIST.protocol),
        "The path's transport as mpathctl shows it: scsi:fcp, scsi:iscsi, scsi:sas, "
        "scsi:ata, scsi:usb, scsi:unspec (no transport class, e.g. scsi_debug or "
        "virtio-scsi), nvme:pcie, nvme:tcp, nvme:rdma, nvme:fc, nvme:loop, nvme:unspec, "
        "ccw, cciss or undef.",
    ),
    OptionDoc(
        "blacklist.device",
        "vendor",
        "regular expression",
        "",
        "Matched against the SCSI vendor of a device (as in sysfs, without padding). A "
        "device matches a table when every expression the table gives matches; at least "
        "one of vendor and product is required.",
    ),
    OptionDoc(
        "blacklist.device",
        "product",
        "regular expression",
        "",
        "Matched against the SCSI product (model) of a device.",
    ),
    # ---- multipaths
    OptionDoc(
        "multipaths",
        "wwid",
        "string (required)",
        "",
        "The WWID of the map this table is about; each WWID at most once.",
    ),
    OptionDoc(
        "multipaths",
        "alias",
        "string",
        "",
        "The map's name, instead of a user-friendly name or the WWID: letters, digits and "
        "'_', '.', '+', ':', '@', '-', starting with a letter or digit, at most 127 "
        "characters; each alias at most once. A user-friendly name is never given out if "
        "an alias here already uses it.",
    ),
    OptionDoc(
        "multipaths",
        "data_offset",
        "integer (sectors of 512 bytes)",
        "",
        "Where the data on this LUN starts: the daemon keeps a linear map named "
        "<map>-data over the map from this sector on, and makes it again at every start. "
        "Written by mpathctl migrate-md: the data of an md multipath array starts after "
        "its superblock, so the data map shows it at sector 0, as /dev/mdN did.",
    ),
    OptionDoc(
        "multipaths",
        "data_sectors",
        "integer (sectors of 512 bytes)",
        "",
        "The data map's length (the former array's size); without it, the rest of the "
        "LUN. Needs data_offset.",
    ),
    # ---- devices
    OptionDoc(
        "devices",
        "vendor",
        "regular expression",
        "",
        "Matched against the SCSI vendor of a path (sysfs, without padding).",
    ),
    OptionDoc(
        "devices",
        "product",
        "regular expression",
        "",
        "Matched against the SCSI product (model) of a path. A table applies to a map when "
        "every expression it gives matches; at least one of vendor and product is "
        "required.",
    ),
)


def _docstring_table() -> str:
    width = max(len(f"{o.section}.{o.name}") for o in OPTIONS)
    lines = ["", "Options (section.key = default: type)", ""]
    for o in OPTIONS:
        default = o.default or "(none)"
        lines.append(f"    {o.section + '.' + o.name:<{width}}  = {default}: {o.kind}")
    lines.append("")
    lines.extend(
        textwrap.wrap(
            "[[devices]] and [[multipaths]] may also set: " + ", ".join(OVERRIDABLE) + ".",
            width=88,
            initial_indent="    ",
            subsequent_indent="    ",
        )
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- man page


def _roff_text(text: str) -> str:
    """Prose for a roff text line: backslashes escaped, no control character first."""
    s = text.replace("\\", "\\e")
    return "\\&" + s if s[:1] in (".", "'") else s


def _roff_code(text: str) -> str:
    """A literal (name, value): also '-' as a real minus, so it can be copied."""
    return _roff_text(text).replace("-", "\\-")


def render_man_options(section: str) -> str:
    """The option list of one section as man(7) markup (between the GENERATED markers).

    Section "never" is the fixed never-a-path rule, one alternative per line.
    """
    if section == "never":
        return "\n".join(
            _roff_code(("^" if i else "") + alt)
            for i, alt in enumerate(NEVER_PATH_DEVNODE.split("|^"))
        )
    out: list[str] = []
    for o in OPTIONS:
        if o.section != section:
            continue
        out.append(".TP")
        head = f"\\fB{_roff_code(o.name)}\\fR"
        if o.default:
            head += f" = \\fI{_roff_code(o.default)}\\fR"
        out.append(head)
        out.append(f"Type: {_roff_code(o.kind)}.")
        out.append(".br")
        out.append(_roff_text(o.text))
    return "\n".join(out)


_MARK_RE = re.compile(
    r"(^\.\\\" BEGIN GENERATED ([a-z_.]+)\n)(.*?)(^\.\\\" END GENERATED \2$)", re.M | re.S
)


def update_man_page(text: str) -> str:
    """``text`` with every GENERATED block replaced by ``render_man_options`` output."""
    return _MARK_RE.sub(
        lambda m: m.group(1) + render_man_options(m.group(2)) + "\n" + m.group(4), text
    )


__doc__ = (__doc__ or "") + _docstring_table()
