"""Following the target's ALUA states: which news means a port may have changed its
access state, and whether a map's path groups still match its paths' priorities. Pure.

A target moves its ports between active/optimized, non-optimized and standby on its own
(implicit ALUA: a controller failover, a maintenance). The host hears of it only through
the ports themselves: the first command through a changed port gets a UNIT ATTENTION
2a/06, which the SCSI midlayer also reports as a ``change`` uevent of the scsi_device
(``SDEV_UA=ASYMMETRIC_ACCESS_STATE_CHANGED``); a command sent to a standby port fails with
NOT READY 04/0b. The daemon then asks every path of the map for its state again (REPORT
TARGET PORT GROUPS) and, if the priorities no longer give the groups the map has, loads
the map again grouped by the new priorities: dm starts a new table on its first group,
the best one, so I/O leaves the port that turned standby.
"""

from __future__ import annotations

from collections.abc import Sequence

from dmpath.model import Check
from dmpath.policy.assembly import Grouped, Member, group_paths

#: how the checker's reasons name ALUA sense (``scsi.SenseData.__str__`` ends with the
#: codes): state changed, transition under way, standby, unavailable
ALUA_SENSE = ("(2a/06)", "(04/0a)", "(04/0b)", "(04/0c)")
#: the state name a port in transition reports (see ``scsi.AluaState``)
TRANSITIONING = "transitioning"


def check_hints_change(before: Check, after: Check, reason: str) -> bool:
    """A check's answer says the port's ALUA state may have moved: its verdict changed to
    or from ghost (standby or unavailable: 04/0b, 04/0c), or changed with ALUA sense in
    its reason. A first verdict (``before`` unknown) is no news: the state was read when
    the path was added."""
    if before in (after, Check.UNKNOWN):
        return False
    return Check.GHOST in (before, after) or any(code in reason for code in ALUA_SENSE)


def regroup(
    members: Sequence[Member],
    states: Sequence[str],
    current: Sequence[Sequence[str]],
    policy: str,
) -> list[Grouped] | None:
    """The groups a map's paths belong in now, when they are not the ones it has.

    ``members`` are the map's paths with their priorities now and ``states`` their ALUA
    states (same order); ``current`` the map's groups as path names, in table order. None
    when the map is grouped right, and while a port is in transition: its priority says
    nothing yet, and the target's next unit attention says where it landed.
    """
    if TRANSITIONING in states:
        return None
    want = group_paths(members, policy)
    have = [frozenset(g) for g in current if g]
    if [frozenset(m.name for m in g.members) for g in want] == have:
        return None
    return want


def describe(groups: Sequence[Grouped]) -> str:
    """Groups for an event's message, best first: ``sdc (50) | sdb (1)``."""
    return " | ".join(
        f"{', '.join(m.name for m in g.members)} ({g.priority})" for g in groups
    )
