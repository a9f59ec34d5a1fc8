"""Which paths to check, and when: a pure scheduler that notices a dead link first and
checks little while nothing happens.

Why not "every path every second": paths share fate. Every LUN behind one I_T nexus
(SCSI host:channel:target - one FC remote port, one iSCSI session, one SAS port) dies and
returns together when a cable, a switch port or a link does, so checking 256 LUNs of one
nexus every second buys 256 answers to one question. Instead:

- Each *nexus* is probed once per ``nexus_probe`` seconds (default ``tight``), the probe
  rotating through its members, so a nexus-wide failure is noticed within one probe
  interval whatever the number of LUNs behind it.
- Each *path* has its own adaptive interval: ``tight`` while it is DOWN, PENDING or
  UNKNOWN, just changed, or flapping (>= 4 changes in 60 s, ``healing.is_flapping``); a
  stable healthy path doubles its interval at each check up to ``relaxed``. That own timer
  catches what the probe cannot: one LUN failing alone on a healthy nexus (with I/O on it,
  the kernel's PATH_FAILED uevent is faster still: the caller ``kick``s the path).
- When a verdict changes a path's usability (usable <-> not usable), every sibling in its
  nexus is handed out for an immediate check and its interval reset to ``tight``: the
  first path to see a cable go (or come back) brings the whole nexus along at once.
- A nexus whose members are all down needs only its probe (a returning link shows on any
  member), so those members' own intervals relax; when the probe sees one come back, the
  fan-out above checks all of them at once.

The arithmetic, for 1,024 paths on 4 nexuses with tight = 1 s and relaxed = R seconds: the
probes cost 4 checks/s and the own timers 1,024/R checks/s (a rotation visits each of 256
members only every 256 s, so nearly every own timer still fires), so idle checking costs
about 4 + 1024/R checks/s - 21/s at R = 60 - against 1,024/s when every path is checked
every second; a dead link is still seen within 1 s. The cost grows with the number of
nexuses, which is the number of independent failures there can be.

Cost of the bookkeeping: one heap of (time, entry) for path timers and nexus probes;
superseded entries are left in the heap and skipped when they surface (each costs one
pop, paid for by the push that superseded it), and the heap is rebuilt when those make up
most of it. ``due(now)`` pops only entries whose time has come: O(k log n) for k due, never
a scan of all paths. A probe looks at no more than ``PROBE_SCAN_LIMIT`` members to find one
to check.

Time is passed in (``now``, seconds on a monotonic clock): this module reads no clock and
does no I/O, so it is tested with a fake clock.

Contract with the caller: every path ``due`` returns, or ``result`` returns for an
immediate check, is *outstanding*: the caller checks it and reports the verdict with
``result``; an outstanding path is never handed out again until then. After ``add``,
``kick`` or ``result`` the next wake-up may be sooner: re-read ``next_wakeup``.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from dmpath.errors import DmpathError
from dmpath.model import Check
from dmpath.policy.healing import is_flapping

#: flapping: this many verdict changes within this many seconds (as ``healing``)
FLAP_WINDOW = 60.0
FLAP_LIMIT = 4

#: a probe looks at most at this many members to find one not checked soon anyway; the
#: cursor moves past those it looked at, so a large nexus is still covered in turn
PROBE_SCAN_LIMIT = 32

#: verdicts that say the path carries I/O (a standby path does, as a last resort)
_USABLE = frozenset({Check.UP, Check.GHOST})
#: verdicts that decide nothing about usability: keep the last decided state
_UNDECIDED = frozenset({Check.PENDING, Check.UNKNOWN, Check.UNSUPPORTED})
#: verdicts that keep a path on the tight interval whatever its nexus does
_WATCH = frozenset({Check.PENDING, Check.UNKNOWN})

_PATH, _NEXUS = 0, 1


class UnknownPath(DmpathError):
    """A path the scheduler does not know (never added, or removed)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: not a scheduled path")
        self.path = path


def nexus_of(hctl: str, fallback: str) -> str:
    """The I_T nexus ("host:channel:target") of a SCSI path: "3:0:0:12" -> "3:0:0".

    A path without a well-formed H:C:T:L (NVMe, a virtual disk, sysfs not read yet) gets
    ``fallback`` - the caller passes the path's own key, so it forms a nexus of one and
    shares fate with nobody. A fallback never collides with a real nexus, which is digits
    and colons only, as long as it is not itself of that form.
    """
    parts = hctl.strip().split(":")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts):
        return fallback
    host, channel, target, _lun = (int(p) for p in parts)
    return f"{host}:{channel}:{target}"


@dataclass(frozen=True)
class SchedulerStats:
    """Counters for tests and metrics (totals since the scheduler was made)."""

    paths: int
    nexuses: int
    outstanding: int
    issued: int  # checks handed out: by ``due`` (own timer, kick, probe) and by fan-outs
    probes: int  # of which chosen by a nexus probe
    fanouts: int  # usability changes that sent a nexus' siblings to be checked
    fanned: int  # of ``issued``: siblings handed out by those fan-outs
    heap: int  # entries in the heap now (live and superseded)
    pops: int  # heap entries looked at: what ``due``/``next_wakeup`` cost


@dataclass
class _PathState:
    nexus: str
    interval: float
    due_at: float
    gen: int  # the heap entry carrying this gen is the live one; others are superseded
    verdict: Check = Check.UNKNOWN
    usable: bool | None = None  # last decided usability; None until a deciding verdict
    outstanding: bool = False
    recheck: bool = False  # asked for again while outstanding: check at once afterwards
    next_fanout_ok: bool = True  # may the next check issued fan out?
    fanout_ok: bool = True  # may the outstanding check fan out?
    issued_seq: int = 0  # the nexus' fan-out count when the outstanding check was issued
    changes: list[float] = field(default_factory=list)


@dataclass
class _NexusState:
    gen: int
    members: list[str] = field(default_factory=list)  # in the order they were added
    cursor: int = 0
    down: int = 0  # members whose last decided state is "not usable"
    fanout_seq: int = 0


class CheckScheduler:
    """Per-path adaptive intervals, one rotating probe per nexus, fan-out on change.

    ``tight`` is the interval while a path needs watching (the config's polling interval),
    ``relaxed`` the longest a healthy path goes unchecked (``max_polling_interval``),
    ``nexus_probe`` the interval between two probes of one nexus (default ``tight``).
    """

    def __init__(self, tight: float, relaxed: float, nexus_probe: float | None = None) -> None:
        if not 0 < tight <= relaxed:
            raise ValueError(f"need 0 < tight <= relaxed, got {tight} and {relaxed}")
        self.tight = tight
        self.relaxed = relaxed
        self.nexus_probe = tight if nexus_probe is None else nexus_probe
        if self.nexus_probe <= 0:
            raise ValueError(f"nexus_probe must be > 0, got {self.nexus_probe}")
        self._paths: dict[str, _PathState] = {}
        self._nexuses: dict[str, _NexusState] = {}
        # (time, seq, kind, key, gen); seq makes the order total and deterministic
        self._heap: list[tuple[float, int, int, str, int]] = []
        self._seq = itertools.count(1)
        self._outstanding = 0
        self._issued = 0
        self._probes = 0
        self._fanouts = 0
        self._fanned = 0
        self._pops = 0

    # ------------------------------------------------------------------ membership

    def add(self, path: str, nexus: str, now: float) -> None:
        """Schedule ``path`` (behind ``nexus``) for a check at once.

        Adding a path that is already scheduled starts it afresh (its hctl may have
        changed): a late verdict of its previous check is then taken as its first.
        """
        if path in self._paths:
            self.remove(path)
        nx = self._nexuses.get(nexus)
        if nx is None:
            nx = self._nexuses[nexus] = _NexusState(gen=next(self._seq))
            # the new path is checked now; the probe takes over one interval later
            self._push(now + self.nexus_probe, _NEXUS, nexus, nx.gen)
        nx.members.append(path)
        st = _PathState(nexus=nexus, interval=self.tight, due_at=now, gen=next(self._seq))
        st.issued_seq = nx.fanout_seq
        self._paths[path] = st
        self._push(now, _PATH, path, st.gen)

    def remove(self, path: str) -> None:
        """Forget ``path``: its timers, its state, its place in the nexus rotation. A
        verdict reported for it afterwards is ignored."""
        st = self._paths.pop(path, None)
        if st is None:
            return
        if st.outstanding:
            self._outstanding -= 1
        nx = self._nexuses[st.nexus]
        i = nx.members.index(path)
        del nx.members[i]
        if i < nx.cursor:
            nx.cursor -= 1
        if st.usable is False:
            nx.down -= 1
        if not nx.members:
            del self._nexuses[st.nexus]  # its probe entry is now superseded

    # ------------------------------------------------------------------ the clock

    def due(self, now: float) -> list[str]:
        """Paths to check now, in the order they fell due; each is marked outstanding."""
        out: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            when, _seq, kind, key, gen = heapq.heappop(self._heap)
            self._pops += 1
            if kind == _PATH:
                st = self._paths.get(key)
                if st is None or st.gen != gen:
                    continue  # superseded (rescheduled, outstanding or removed)
                self._issue(st)
                out.append(key)
                continue
            nx = self._nexuses.get(key)
            if nx is None or nx.gen != gen:
                continue
            pick = self._probe_pick(nx, when)
            if pick is not None:
                self._issue(self._paths[pick])
                self._probes += 1
                out.append(pick)
            # a late call probes once, not once per missed interval
            nxt = when + self.nexus_probe
            self._push(nxt if nxt > now else now + self.nexus_probe, _NEXUS, key, nx.gen)
        return out

    def next_wakeup(self) -> float | None:
        """When ``due`` next has something to hand out (None: nothing is scheduled)."""
        while self._heap and not self._live(self._heap[0]):
            heapq.heappop(self._heap)
            self._pops += 1
        return self._heap[0][0] if self._heap else None

    def kick(self, path: str, now: float) -> None:
        """Check ``path`` at once (the kernel failed it, udev says it changed). If its
        check is outstanding, that check may predate the news: check again right after."""
        st = self._paths.get(path)
        if st is None:
            return
        if st.outstanding:
            st.recheck = True
            return
        self._reschedule(path, st, now)

    # ------------------------------------------------------------------ verdicts

    def result(self, path: str, verdict: Check, now: float) -> list[str]:
        """Record ``verdict`` for ``path`` and schedule its next check.

        Returns the siblings to check AT ONCE (already marked outstanding) when this
        verdict flipped the path between usable (UP, GHOST) and not usable (DOWN): they
        share its nexus, so they most likely flipped too. PENDING, UNKNOWN and UNSUPPORTED
        decide nothing and keep the last decided state. No fan-out comes from a check that
        a fan-out issued (that would be N^2 checks for one event), from a check issued
        before a newer fan-out of its nexus (the siblings are being checked already), or
        from a flapping path (its changes say nothing new about the link). A verdict for
        a path not scheduled (removed while checked) is ignored.
        """
        st = self._paths.get(path)
        if st is None:
            return []
        nx = self._nexuses[st.nexus]
        if st.outstanding:
            st.outstanding = False
            self._outstanding -= 1
        changed = st.verdict not in (verdict, Check.UNKNOWN)
        if changed:
            st.changes.append(now)
        st.changes[:] = [t for t in st.changes if now - t <= FLAP_WINDOW]
        st.verdict = verdict
        flapping = is_flapping(st.changes, now, FLAP_WINDOW, FLAP_LIMIT)

        flipped = False
        usable = None if verdict in _UNDECIDED else verdict in _USABLE
        if usable is not None and usable != st.usable:
            flipped = st.usable is not None
            nx.down += (usable is False) - (st.usable is False)
            st.usable = usable

        if changed or flapping or verdict in _WATCH:
            st.interval = self.tight
        elif verdict == Check.DOWN and nx.down < len(nx.members):
            st.interval = self.tight  # its nexus works: watch the path for its return
        else:
            # healthy and stable, or down with its whole nexus: the probe watches that
            st.interval = min(self.relaxed, max(self.tight, st.interval * 2))
        self._reschedule(path, st, now if st.recheck else now + st.interval)
        st.recheck = False

        if not (
            flipped and st.fanout_ok and st.issued_seq == nx.fanout_seq and not flapping
        ):
            return []
        nx.fanout_seq += 1
        self._fanouts += 1
        out: list[str] = []
        for m in nx.members:
            if m == path:
                continue
            sib = self._paths[m]
            sib.interval = self.tight
            sib.next_fanout_ok = False
            if sib.outstanding:
                sib.recheck = True  # its check may have started before the change
                continue
            self._issue(sib)
            self._fanned += 1
            out.append(m)
        return out

    # ------------------------------------------------------------------ reading

    def interval_of(self, path: str) -> float:
        """The path's current polling interval in seconds (for display)."""
        st = self._paths.get(path)
        if st is None:
            raise UnknownPath(path)
        return st.interval

    def nexus_members(self, nexus: str) -> list[str]:
        """Paths behind ``nexus``, in the order they were added (empty if none)."""
        nx = self._nexuses.get(nexus)
        return list(nx.members) if nx else []

    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            paths=len(self._paths),
            nexuses=len(self._nexuses),
            outstanding=self._outstanding,
            issued=self._issued,
            probes=self._probes,
            fanouts=self._fanouts,
            fanned=self._fanned,
            heap=len(self._heap),
            pops=self._pops,
        )

    # ------------------------------------------------------------------ internals

    def _issue(self, st: _PathState) -> None:
        """Hand the path out: outstanding until its result, no timer meanwhile."""
        st.outstanding = True
        st.gen = next(self._seq)  # supersedes any timer entry in the heap
        st.fanout_ok = st.next_fanout_ok
        st.next_fanout_ok = True
        st.issued_seq = self._nexuses[st.nexus].fanout_seq
        self._outstanding += 1
        self._issued += 1

    def _reschedule(self, path: str, st: _PathState, when: float) -> None:
        st.due_at = when
        st.gen = next(self._seq)
        self._push(when, _PATH, path, st.gen)

    def _probe_pick(self, nx: _NexusState, when: float) -> str | None:
        """The next member in rotation not outstanding and not due before the next probe
        (a member due sooner is checked anyway; probing it would be a wasted check)."""
        n = len(nx.members)
        horizon = when + self.nexus_probe
        for step in range(min(n, PROBE_SCAN_LIMIT)):
            i = (nx.cursor + step) % n
            st = self._paths[nx.members[i]]
            if not st.outstanding and st.due_at >= horizon:
                nx.cursor = (i + 1) % n
                return nx.members[i]
        nx.cursor = (nx.cursor + min(n, PROBE_SCAN_LIMIT)) % n
        return None

    def _live(self, entry: tuple[float, int, int, str, int]) -> bool:
        _when, _seq, kind, key, gen = entry
        if kind == _PATH:
            st = self._paths.get(key)
            return st is not None and st.gen == gen
        nx = self._nexuses.get(key)
        return nx is not None and nx.gen == gen

    def _push(self, when: float, kind: int, key: str, gen: int) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, key, gen))
        live = len(self._paths) + len(self._nexuses)
        if len(self._heap) > 4 * live + 64:
            # mostly superseded entries: rebuild, O(n) paid for by the > 3n pushes since
            self._heap = [e for e in self._heap if self._live(e)]
            heapq.heapify(self._heap)
