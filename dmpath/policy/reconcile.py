"""One map's healing as a reconciler: (state, event) -> effects, with no I/O.

The daemon keeps one ``MapHealth`` per map next to its ``Map`` model and hands every event
about the map to ``step``: a checker verdict, a dm path uevent, a kernel read, the outcome
of messages or policy changes it asked for, a timer, the end of an assembly change. ``step``
updates the state and returns the effects to carry out (send messages, read the map,
switch group or queueing, log an event, check a path now, wake at a time); the executor
(``dmpath.daemon.engine``) runs them off the event loop and hands their results back as
events. Nothing here reads a clock, a file or the kernel: ``now`` (monotonic, for timers)
and ``wall`` (epoch, for what is shown) come in the ``Context``, so every rule can be driven
step by step in a unit test.

One heal is a pipeline: [full read] -> fail/reinstate messages -> [status read] -> the
timed policies (failback, no_path_retry) -> a wake-up for the next deadline. While one is
under way (``busy``), news only marks the map (``again``) and the model takes the facts;
a second heal starts when the first is over, so a fabric of verdicts on one map costs one
or two heals, not one per path. An assembly change (paths joining or leaving, a flush, an
admin request) takes the map the same way (``claim``/``Released``), so nothing the
reconciler planned reaches the kernel after the table it was planned on was replaced.

Our own messages are remembered (``expected``), so the kernel's uevent saying the same is
its echo and costs nothing. A path the kernel fails on its own (an I/O error) is PENDING
until a check issued after that failure answers: a verdict from before would reinstate a
path that is dead now.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dmpath.config import Backend
from dmpath.kernel.dmmap import set_map_fields
from dmpath.model import Check, GroupState, KernelMap, KernelState, Map, Path, PathGroup
from dmpath.policy import healing, marginal

#: how long the kernel's uevent for a message we sent counts as its echo (seconds):
#: udev hands uevents on after its rules ran, which under load takes seconds
ECHO_WINDOW = 30.0

#: what the executor may send in one trip: the personality's two messages
Message = healing.FailPath | healing.ReinstatePath
#: timed policies of a dm map
PolicyAction = healing.SwitchGroup | healing.SetQueueing


class Stage(enum.Enum):
    IDLE = "idle"
    READING = "reading"  # full read before planning
    SENDING = "sending"  # fail/reinstate messages out
    SETTLING = "settling"  # status read after the messages
    POLICIES = "policies"  # failback / queueing change out
    CLAIMED = "claimed"  # an assembly change or admin request holds the map


@dataclass
class MapHealth:
    """What the reconciler keeps about one map between events (besides its ``Map``)."""

    name: str
    backend: Backend
    failback: str = "immediate"
    no_path_retry: str = "fail"
    #: queueing as the administrator set it (mpathctl queueing): on queues, off fails,
    #: whatever no_path_retry says; None: no_path_retry decides
    queueing: bool | None = None
    #: the group the kernel switches to next (0: its own choice)
    next_group: int = 0
    #: monotonic time the map lost its last usable path (None while one works)
    no_path_since: float | None = None
    #: monotonic time the best group became usable while another is in use (failback N)
    best_usable_since: float | None = None
    #: devnum -> (state our own message puts the path in, when it was sent)
    expected: dict[str, tuple[KernelState, float]] = field(default_factory=dict)
    #: path name -> monotonic time the kernel failed it on its own
    kernel_failed_at: dict[str, float] = field(default_factory=dict)
    #: the last full read (None: the next read before planning must be a full one)
    kernel: KernelMap | None = None
    #: devnum -> path name, the map's members as the kernel last said
    members: dict[str, str] = field(default_factory=dict)
    stage: Stage = Stage.IDLE
    #: what is out while SENDING / POLICIES, to match the outcomes that come back
    out_messages: tuple[Message, ...] = ()
    out_policies: tuple[PolicyAction, ...] = ()
    #: news arrived while busy: heal again when the current work is over
    again: bool = False
    #: path name -> its record under the marginal-path rule
    marginal: dict[str, marginal.PathRecord] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return self.stage is not Stage.IDLE

    @property
    def no_path_policy(self) -> str:
        """no_path_retry as it stands: the administrator's queueing before the config's."""
        if self.queueing is None:
            return self.no_path_retry
        return "queue" if self.queueing else "fail"


# ---------------------------------------------------------------------- events


@dataclass(frozen=True)
class Verdict:
    """A check of ``path`` answered (a check out too long answers DOWN)."""

    path: str
    check: Check
    reason: str
    dev_state: str
    issued_at: float  # monotonic time the check was issued
    latency: float = 0.0  # seconds the path took to answer (0: not measured)


@dataclass(frozen=True)
class PathUevent:
    """The kernel says it failed or reinstated a path of the map (dm PATH_FAILED /
    PATH_REINSTATED)."""

    devnum: str
    failed: bool
    nr_valid: int | None = None


@dataclass(frozen=True)
class KernelRead:
    """A read of the map. ``mine``: the answer to our ``Read`` (else an assembly change
    read it). ``names``: devnum -> name of members no known path has."""

    km: KernelMap
    mine: bool = True
    names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadFailed:
    error: str


@dataclass(frozen=True)
class Outcome:
    """A message or policy change the kernel refused; ``busy``: md's "not now" (EBUSY)."""

    error: str
    busy: bool = False


@dataclass(frozen=True)
class Sent:
    """What became of the messages of our ``Send``, in order (None: done)."""

    outcomes: tuple[Outcome | None, ...]


@dataclass(frozen=True)
class PoliciesDone:
    outcomes: tuple[Outcome | None, ...]


@dataclass(frozen=True)
class Timer:
    """A deadline asked for with ``WakeAt`` has come (or any time: it only re-plans)."""


@dataclass(frozen=True)
class Heal:
    """Look at the map again (its options changed, it was adopted, ...)."""


@dataclass(frozen=True)
class Released:
    """The assembly change or admin request that claimed the map is over."""


Event = (
    Verdict | PathUevent | KernelRead | ReadFailed | Sent | PoliciesDone | Timer | Heal | Released
)


# ---------------------------------------------------------------------- effects


@dataclass(frozen=True)
class Note:
    """An event for the history and the log."""

    kind: str
    path: str
    message: str


@dataclass(frozen=True)
class Kick:
    """Check ``path`` now."""

    path: str


@dataclass(frozen=True)
class Recheck:
    """The verdict on ``path`` answered for the past (issued before the kernel failed it):
    the path stays PENDING and a new check goes out now."""

    path: str


@dataclass(frozen=True)
class Read:
    """Read the map: everything (``full``) or only the paths' states (``KernelRead``)."""

    full: bool


@dataclass(frozen=True)
class Send:
    """Send these messages to the map, in order, in one trip (``Sent``)."""

    messages: tuple[Message, ...]


@dataclass(frozen=True)
class ApplyPolicies:
    """Switch group / change queueing, in order (``PoliciesDone``)."""

    actions: tuple[PolicyAction, ...]


@dataclass(frozen=True)
class WakeAt:
    """Send ``Timer`` at monotonic time ``when`` even if nothing else happens."""

    when: float


Effect = Note | Kick | Recheck | Read | Send | ApplyPolicies | WakeAt


@dataclass(frozen=True)
class Context:
    now: float  # monotonic: timers, echo windows
    wall: float  # epoch seconds: what is shown (last_change)
    polling_interval: float
    #: the daemon's path model by devnum (None: a member no known path has)
    lookup: Callable[[str], Path | None]
    marginal: marginal.MarginalPolicy = field(default_factory=marginal.MarginalPolicy)


# ---------------------------------------------------------------------- the step


def step(h: MapHealth, m: Map, ev: Event, ctx: Context) -> list[Effect]:
    """Take one event about map ``m``; returns the effects to carry out, in order."""
    if isinstance(ev, Verdict):
        return _verdict(h, m, ev, ctx)
    if isinstance(ev, PathUevent):
        return _uevent(h, m, ev, ctx)
    if isinstance(ev, KernelRead):
        seen = absorb(h, m, ev.km, ctx, ev.names)
        if not ev.mine:
            return seen
        if h.stage is Stage.READING:
            return seen + _plan_paths(h, m, ctx)
        if h.stage is Stage.SETTLING:
            return seen + _after_paths(h, m, ctx)
        return seen
    if isinstance(ev, ReadFailed):
        h.kernel = None
        out: list[Effect] = [Note("error", "", f"cannot read map: {ev.error}")]
        if h.stage is Stage.SETTLING:
            # the messages went through; the model learns their effect at the next
            # read, which is a full one now
            return out + _after_paths(h, m, ctx)
        return out + _finish(h, m, ctx)
    if isinstance(ev, Sent):
        return _sent(h, m, ev, ctx)
    if isinstance(ev, PoliciesDone):
        return _policies_done(h, m, ev, ctx)
    if isinstance(ev, Released):
        return _finish(h, m, ctx)
    return _news(h, m, ctx)  # Timer, Heal


def claim(h: MapHealth) -> bool:
    """Take the map for an assembly change or an admin request (``Released`` gives it
    back); False while a heal or another claim holds it."""
    if h.busy:
        return False
    h.stage = Stage.CLAIMED
    return True


def expect(h: MapHealth, devnum: str, state: KernelState, now: float) -> None:
    """Our own message is about to put ``devnum`` in ``state``: its uevent is an echo."""
    h.expected[devnum] = (state, now)


def is_echo(h: MapHealth, devnum: str, state: KernelState, now: float) -> bool:
    """Each expectation answers one uevent, and only for ECHO_WINDOW: a stale one must
    not hide a real failure."""
    want = h.expected.pop(devnum, None)
    return want is not None and want[0] == state and now - want[1] < ECHO_WINDOW


def record_check(p: Path, check: Check, reason: str, dev_state: str, wall: float) -> bool:
    """Put a verdict in the path's model; True if it changed from a known verdict (news
    worth an event and a heal)."""
    changed = p.check not in (check, Check.UNKNOWN)
    if check != p.check:
        p.check, p.check_reason = check, reason
        p.last_change = wall
    p.dev_state = dev_state or p.dev_state
    return changed


def _member(m: Map, *, name: str = "", devnum: str = "") -> Path | None:
    for p in m.paths:
        if (name and p.name == name) or (devnum and p.devnum == devnum):
            return p
    return None


def _kernel_failed(h: MapHealth, p: Path, ctx: Context) -> list[Effect]:
    """The kernel failed ``p`` on its own: its last verdict predates that."""
    h.kernel_failed_at[p.name] = ctx.now
    if p.check in healing.USABLE and not p.held:
        p.check = Check.PENDING
        p.check_reason = "failed by the kernel on I/O; checking"
    return _marked(h, p, marginal.fell(_record(h, p), ctx.now, ctx.marginal), ctx)


def _record(h: MapHealth, p: Path) -> marginal.PathRecord:
    rec = h.marginal.get(p.name)
    if rec is None:
        rec = h.marginal[p.name] = marginal.PathRecord()
    return rec


def _marked(h: MapHealth, p: Path, reason: str | None, ctx: Context) -> list[Effect]:
    """The marginal-path rule's verdict into the model: an event if it marked ``p``."""
    if reason is None:
        return []
    p.marginal, p.marginal_reason = True, reason
    p.last_change = ctx.wall
    return [
        Note(
            "path_marginal",
            p.name,
            f"{p.name} is marginal: {reason}; kept out of use while another path works, "
            f"until it is healthy for {ctx.marginal.recovery:g} s",
        )
    ]


def _checked(h: MapHealth, p: Path, ev: Verdict, ctx: Context) -> list[Effect]:
    """A verdict under the marginal-path rule: a fall, a slow answer or a healthy one."""
    rec = _record(h, p)
    if ev.check == Check.DOWN:
        return _marked(h, p, marginal.fell(rec, ctx.now, ctx.marginal), ctx)
    if ev.check not in healing.USABLE:
        return []
    was = marginal.recovery_due(rec, ctx.marginal)
    out = _marked(
        h, p, marginal.checked(rec, ctx.now, ctx.marginal, usable=True, latency=ev.latency), ctx
    )
    due = marginal.recovery_due(rec, ctx.marginal)
    if due is not None and due != was:
        # its term may end with no other news about the map
        out.append(WakeAt(due + healing.TIMER_SLACK))
    return out


def forgive(h: MapHealth, p: Path) -> bool:
    """The administrator reinstated ``p``: a marginal term ends now and its strikes are
    forgotten (their word stands, as for a path they failed). True if it was marginal."""
    was = p.marginal
    h.marginal.pop(p.name, None)
    p.marginal, p.marginal_reason = False, ""
    return was


def _settle_marginal(h: MapHealth, m: Map, ctx: Context) -> list[Effect]:
    """End the terms of marginal paths healthy for long enough, before planning."""
    out: list[Effect] = []
    for p in m.paths:
        rec = h.marginal.get(p.name)
        if p.marginal and rec is not None and marginal.recovered(rec, ctx.now, ctx.marginal):
            p.marginal, p.marginal_reason = False, ""
            p.last_change = ctx.wall
            out.append(
                Note(
                    "path_marginal_cleared",
                    p.name,
                    f"{p.name} has been healthy for {ctx.marginal.recovery:g} s: "
                    "no longer marginal",
                )
            )
    return out


def _verdict(h: MapHealth, m: Map, ev: Verdict, ctx: Context) -> list[Effect]:
    p = _member(m, name=ev.path)
    if p is None:
        return []
    if ev.check in healing.USABLE and ev.issued_at < h.kernel_failed_at.get(p.name, 0.0):
        return [Recheck(p.name)]
    out = _checked(h, p, ev, ctx)
    # a map that should queue and does not (made by dmpathd --once, which has nobody to
    # count no_path_retry): its first working path is news, its heal turns queueing on
    unqueued = (
        p.check == Check.UNKNOWN
        and ev.check in healing.USABLE
        and h.backend == Backend.DM
        and not m.queueing
        and h.no_path_policy != "fail"
    )
    if record_check(p, ev.check, ev.reason, ev.dev_state, ctx.wall):
        out.append(Note("check", p.name, f"{p.name} checker: {ev.check.value} ({ev.reason})"))
        return out + _news(h, m, ctx)
    if unqueued or healing.path_needs_action(p) or _recovered(h, p, ctx):
        return out + _news(h, m, ctx)
    return out


def _recovered(h: MapHealth, p: Path, ctx: Context) -> bool:
    """A marginal path whose term is over: the next heal ends it and may reinstate it."""
    rec = h.marginal.get(p.name)
    due = None if rec is None else marginal.recovery_due(rec, ctx.marginal)
    return p.marginal and due is not None and ctx.now >= due


def _uevent(h: MapHealth, m: Map, ev: PathUevent, ctx: Context) -> list[Effect]:
    """The kernel's own word goes into the model at once (a plan made from older state
    would count paths that are gone), then a full re-read and a heal."""
    p = _member(m, devnum=ev.devnum)
    if p is None:
        return []
    state = KernelState.FAILED if ev.failed else KernelState.ACTIVE
    if is_echo(h, ev.devnum, state, ctx.now):
        return []
    out: list[Effect] = []
    if ev.failed:
        out += _kernel_failed(h, p, ctx)
        if p.kernel_state == KernelState.ACTIVE:
            p.kernel_state = KernelState.FAILED
            p.last_change = ctx.wall
            p.fail_count += 1
            left = ev.nr_valid if ev.nr_valid is not None else "?"
            out.append(
                Note(
                    "kernel_path_failed",
                    p.name,
                    f"IO failure on {p.name}: the kernel disabled the path and redirects "
                    f"I/O to another IO path ({left} left)",
                )
            )
    else:
        p.kernel_state = KernelState.ACTIVE
    out.append(Kick(p.name))
    h.kernel = None
    return out + _news(h, m, ctx)


def absorb(
    h: MapHealth, m: Map, km: KernelMap, ctx: Context, names: Mapping[str, str]
) -> list[Effect]:
    """The kernel's view of the map into the model (the kernel is the truth)."""
    h.kernel = km
    set_map_fields(m, km)
    m.no_path_retry, m.failback = h.no_path_retry, h.failback
    h.next_group = km.next_group
    out: list[Effect] = []
    members: list[Path] = []
    h.members = {}
    for devnum, st in km.members.items():
        p = ctx.lookup(devnum)
        if p is None:
            # in the table but no path we know (an adopted map, a path being removed)
            p = Path(
                name=names.get(devnum, devnum),
                devnum=devnum,
                wwid=m.wwid,
                kernel_state=st,
                check=Check.UNKNOWN,
            )
        elif (
            st == KernelState.FAILED
            and p.kernel_state == KernelState.ACTIVE
            and devnum not in h.expected
            and p.check in healing.USABLE
        ):
            # failed by the kernel and its uevent not (yet) heard: as for the uevent
            out += _kernel_failed(h, p, ctx)
            out.append(Kick(p.name))
        if p.kernel_state != st or not p.last_change:
            p.kernel_state = st
            p.last_change = ctx.wall
        h.members[devnum] = p.name
        members.append(p)
    m.paths = members
    for gone in set(h.kernel_failed_at) - set(h.members.values()):
        del h.kernel_failed_at[gone]
    for gone in set(h.marginal) - set(h.members.values()):
        del h.marginal[gone]
    by_name = {p.name: p for p in members}
    m.groups = []
    for g in km.groups:
        gnames = [h.members.get(d, names.get(d, d)) for d in g.devnums]
        prio = max((by_name[n].priority for n in gnames if n in by_name), default=0)
        m.groups.append(PathGroup(g.number, g.selector, prio, g.state, gnames))
        for n in gnames:
            if n in by_name:
                by_name[n].group = g.number
    if members and not m.vendor:
        m.vendor, m.model, m.rev = members[0].vendor, members[0].model, members[0].rev
    if not m.wwid and members:
        m.wwid = members[0].wwid
    return out


def relink(h: MapHealth, m: Map, lookup: Callable[[str], Path | None]) -> None:
    """Point the map's members at the daemon's path models again (a path became known
    after the read that listed it), keeping every state as it is."""
    m.paths = [lookup(p.devnum) or p for p in m.paths if p.devnum in h.members]


def _news(h: MapHealth, m: Map, ctx: Context) -> list[Effect]:
    if h.busy:
        h.again = True
        return []
    return _begin(h, m, ctx)


def _begin(h: MapHealth, m: Map, ctx: Context) -> list[Effect]:
    h.again = False
    if h.kernel is None and h.backend == Backend.DM:
        # the last read failed, the table changed, or the kernel spoke: plan from its word
        h.stage = Stage.READING
        return [Read(full=True)]
    return _plan_paths(h, m, ctx)


def _plan_paths(h: MapHealth, m: Map, ctx: Context) -> list[Effect]:
    out = _settle_marginal(h, m, ctx)
    messages: list[Message] = []
    for a in healing.plan_paths(m):
        if isinstance(a, healing.Alert):
            m.alerts.append(a.message)
            out.append(Note("alert", a.path, a.message))
            continue
        fail = isinstance(a, healing.FailPath)
        expect(h, a.devnum, KernelState.FAILED if fail else KernelState.ACTIVE, ctx.now)
        messages.append(a)
    if messages:
        h.stage = Stage.SENDING
        h.out_messages = tuple(messages)
        return [*out, Send(h.out_messages)]
    return out + _after_paths(h, m, ctx)


def _sent(h: MapHealth, m: Map, ev: Sent, ctx: Context) -> list[Effect]:
    out: list[Effect] = []
    acted = False
    sent, h.out_messages = h.out_messages, ()
    for a, outcome in zip(sent, ev.outcomes, strict=True):
        if outcome is not None and outcome.busy:
            out.append(Note("busy", a.path, f"{outcome.error} (will retry)"))
        elif outcome is not None:
            h.expected.pop(a.devnum, None)
            out.append(Note("error", a.path, outcome.error))
        elif isinstance(a, healing.FailPath):
            p = _member(m, name=a.path)
            if p is not None:
                p.fail_count += 1
            out.append(Note("path_failed", a.path, a.message))
            acted = True
        else:
            p = _member(m, name=a.path)
            if p is not None:
                p.reinstate_count += 1
            out.append(Note("path_reinstated", a.path, a.message))
            m.alerts[:] = [x for x in m.alerts if not x.startswith(f"{a.path}:")]
            acted = True
    if acted:
        h.stage = Stage.SETTLING
        return [*out, Read(full=h.kernel is None)]
    return out + _after_paths(h, m, ctx)


def _after_paths(h: MapHealth, m: Map, ctx: Context) -> list[Effect]:
    if healing.has_usable_path(m):
        m.alerts[:] = [x for x in m.alerts if healing.LAST_PATH_ALERT not in x]
    if h.backend != Backend.DM:
        return _finish(h, m, ctx)
    actions = _policies(h, m, ctx.now, ctx.polling_interval)
    if actions:
        h.stage = Stage.POLICIES
        h.out_policies = tuple(actions)
        return [ApplyPolicies(h.out_policies)]
    return _finish(h, m, ctx)


def _policies(h: MapHealth, m: Map, now: float, polling_interval: float) -> list[PolicyAction]:
    """Failback and no_path_retry for a dm map, with the clocks they run on."""
    best = healing.best_group(m)
    if best and best != h.next_group:
        if h.best_usable_since is None:
            h.best_usable_since = now
    else:
        h.best_usable_since = None
    if healing.has_usable_path(m):
        h.no_path_since = None
    elif h.no_path_since is None:
        h.no_path_since = now
    current = h.next_group or next((g.number for g in m.groups if g.state == GroupState.ACTIVE), 0)
    # no_path_retry N means N polling intervals of queueing, as multipath-tools counts
    # it, measured from when the last path was lost, however often paths are checked
    waited = 0.0 if h.no_path_since is None else now - h.no_path_since
    rounds = int(waited / polling_interval + 1e-6)
    actions: list[PolicyAction] = []
    for a in healing.plan_failback(m, current, h.failback, h.best_usable_since, now):
        if isinstance(a, healing.SwitchGroup):
            actions.append(a)
    for a in healing.plan_no_path(m, h.no_path_policy, rounds, m.queueing):
        if isinstance(a, healing.SetQueueing):
            actions.append(a)
    return actions


def _policies_done(h: MapHealth, m: Map, ev: PoliciesDone, ctx: Context) -> list[Effect]:
    out: list[Effect] = []
    done, h.out_policies = h.out_policies, ()
    for a, outcome in zip(done, ev.outcomes, strict=True):
        if outcome is not None:
            out.append(Note("error", "", outcome.error))
        elif isinstance(a, healing.SwitchGroup):
            h.next_group = a.group
            h.best_usable_since = None
            out.append(Note("switch_group", "", a.message))
        else:
            m.queueing = a.enabled
            # the table's features say queue_if_no_path as it is now: the copy kept for
            # status-only re-reads is stale, read it afresh next time
            h.kernel = None
            out.append(Note("queueing", "", a.message))
    return out + _finish(h, m, ctx)


def _finish(h: MapHealth, m: Map, ctx: Context) -> list[Effect]:
    h.stage = Stage.IDLE
    out: list[Effect] = []
    due = [
        d + healing.TIMER_SLACK
        for rec in h.marginal.values()
        if (d := marginal.recovery_due(rec, ctx.marginal)) is not None
    ]
    if h.backend == Backend.DM:
        policy_due = healing.next_policy_deadline(
            h.failback,
            h.best_usable_since,
            h.no_path_policy,
            h.no_path_since,
            polling_interval=ctx.polling_interval,
            queueing=m.queueing,
        )
        if policy_due is not None:
            due.append(policy_due)
    if due:
        out.append(WakeAt(min(due)))
    if h.again:
        out += _begin(h, m, ctx)
    return out
