"""The map reconciler, rule by rule, with no kernel and no clock: every event is handed to
``reconcile.step`` and the effects it returns are carried out by a small in-memory
kernel (``Rig``), whose answers go back as events, exactly as the daemon's executor does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dmpath.model import (
    Backend,
    Check,
    GroupState,
    KernelGroup,
    KernelMap,
    KernelState,
    Map,
    Path,
)
from dmpath.policy import healing, reconcile
from dmpath.policy.marginal import MarginalPolicy
from dmpath.policy.reconcile import (
    ApplyPolicies,
    Kick,
    Note,
    Outcome,
    Read,
    Recheck,
    Send,
    Stage,
    WakeAt,
)

A, F = KernelState.ACTIVE, KernelState.FAILED
INTERVAL = 5.0


@dataclass
class Rig:
    """One map, its paths, and a kernel that obeys messages at once."""

    groups: list[list[str]]  # path names per priority group, best first
    backend: Backend = Backend.DM
    failback: str = "immediate"
    no_path_retry: str = "fail"
    queueing: bool = False
    now: float = 1000.0
    paths: dict[str, Path] = field(default_factory=dict)  # devnum -> model
    kstate: dict[str, KernelState] = field(default_factory=dict)  # devnum -> kernel's
    next_group: int = 1
    notes: list[Note] = field(default_factory=list)
    kicks: list[str] = field(default_factory=list)
    rechecks: list[str] = field(default_factory=list)
    wakes: list[float] = field(default_factory=list)
    sent: list[reconcile.Message] = field(default_factory=list)
    policies: list[reconcile.PolicyAction] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # devnums whose messages fail
    held_back: list[reconcile.Effect] = field(default_factory=list)
    marginal: MarginalPolicy = field(default_factory=MarginalPolicy)

    def __post_init__(self) -> None:
        n = 0
        for gi, names in enumerate(self.groups):
            for name in names:
                devnum = f"8:{16 * n}"
                n += 1
                self.paths[devnum] = Path(
                    name=name,
                    devnum=devnum,
                    wwid="w1",
                    priority=50 - 10 * gi,
                    check=Check.UP,
                    kernel_state=A,
                )
                self.kstate[devnum] = A
        self.m = Map(name="mpatha", wwid="w1", backend=self.backend)
        self.h = reconcile.MapHealth("mpatha", self.backend, self.failback, self.no_path_retry)
        self.feed(reconcile.KernelRead(self.kernel(), mine=False))

    # -- the kernel
    def kernel(self) -> KernelMap:
        groups = []
        num = 0
        known = {d for d in self.kstate if d in self.paths}
        for gi, names in enumerate(self.groups):
            devs = [d for d in known if self.paths[d].name in names]
            if gi == len(self.groups) - 1:
                devs += [d for d in self.kstate if d not in known]  # members we do not know
            usable = any(self.kstate[d] == A for d in devs)
            state = GroupState.ACTIVE if gi + 1 == self.next_group and usable else (
                GroupState.ENABLED
            )
            num = gi + 1
            groups.append(KernelGroup(num, "service-time 0", state, devs))
        return KernelMap(
            name="mpatha",
            backend=self.backend,
            uuid="dmpath-w1",
            sysfs="dm-0",
            devnode="/dev/mapper/mpatha",
            size_sectors=2048,
            open_count=1,
            members=dict(self.kstate),
            groups=groups if self.backend == Backend.DM else [],
            next_group=self.next_group,
            queueing=self.queueing,
        )

    def dev(self, name: str) -> str:
        return next(d for d, p in self.paths.items() if p.name == name)

    def path(self, name: str) -> Path:
        return self.paths[self.dev(name)]

    # -- the executor
    def ctx(self) -> reconcile.Context:
        return reconcile.Context(
            self.now, self.now + 1e9, INTERVAL, self.paths.get, self.marginal
        )

    def feed(self, ev: reconcile.Event, hold: bool = False) -> list[reconcile.Effect]:
        effects = reconcile.step(self.h, self.m, ev, self.ctx())
        for e in effects:
            self.carry_out(e, hold)
        return effects

    def carry_out(self, e: reconcile.Effect, hold: bool = False) -> None:
        if isinstance(e, Note):
            self.notes.append(e)
        elif isinstance(e, Kick):
            self.kicks.append(e.path)
        elif isinstance(e, Recheck):
            self.rechecks.append(e.path)
        elif isinstance(e, WakeAt):
            self.wakes.append(e.when)
        elif hold:
            self.held_back.append(e)
        elif isinstance(e, Read):
            self.feed(reconcile.KernelRead(self.kernel()))
        elif isinstance(e, Send):
            self.sent += e.messages
            outcomes: list[Outcome | None] = []
            for a in e.messages:
                if a.devnum in self.refuse:
                    outcomes.append(Outcome(f"message to {a.path} refused"))
                    continue
                self.kstate[a.devnum] = F if isinstance(a, healing.FailPath) else A
                outcomes.append(None)
            self.feed(reconcile.Sent(tuple(outcomes)))
        else:
            assert isinstance(e, ApplyPolicies)
            self.policies += e.actions
            for p in e.actions:
                if isinstance(p, healing.SwitchGroup):
                    self.next_group = p.group
                else:
                    self.queueing = p.enabled
            self.feed(reconcile.PoliciesDone(tuple(None for _ in e.actions)))

    def release(self) -> None:
        """Carry out the effects held back (kernel work that was out)."""
        held, self.held_back = self.held_back, []
        for e in held:
            self.carry_out(e)

    def verdict(
        self, name: str, check: Check, issued_at: float | None = None, latency: float = 0.0
    ) -> None:
        at = self.now if issued_at is None else issued_at
        self.feed(reconcile.Verdict(name, check, "test", "", at, latency))

    def kinds(self, kind: str) -> list[str]:
        return [n.path for n in self.notes if n.kind == kind]


# ---------------------------------------------------------------------- the personality


def test_a_dead_path_is_failed_once_with_the_personality_message() -> None:
    r = Rig([["sda", "sdb"]])
    r.verdict("sda", Check.DOWN)
    assert r.kstate[r.dev("sda")] == F
    assert [n.message for n in r.notes if n.kind == "path_failed"] == [
        "IO failure on sda, disabling IO path. Operation continuing on 1 IO path."
    ]
    assert r.path("sda").fail_count == 1
    assert r.path("sda").kernel_state == F  # the model learnt it from the read after
    assert not r.h.busy
    r.verdict("sda", Check.DOWN)  # the same verdict again: nothing more to do
    assert len(r.sent) == 1


def test_the_last_working_path_is_never_failed_and_the_alert_is_said_once() -> None:
    r = Rig([["sda", "sdb"]])
    r.path("sdb").priority = 60  # the better one stays
    r.verdict("sda", Check.DOWN)
    r.verdict("sdb", Check.DOWN)
    assert r.kstate[r.dev("sda")] == F
    assert r.kstate[r.dev("sdb")] == A
    assert r.kinds("alert") == ["sdb"]
    assert any(healing.LAST_PATH_ALERT in a for a in r.m.alerts)
    r.verdict("sdb", Check.DOWN)
    r.feed(reconcile.Timer())
    assert r.kinds("alert") == ["sdb"]  # not again on every heal
    r.verdict("sda", Check.UP)
    assert r.kstate[r.dev("sda")] == A
    assert r.kinds("path_reinstated") == ["sda"]
    assert not any(healing.LAST_PATH_ALERT in a for a in r.m.alerts)  # a path works again


def test_a_path_back_up_is_reinstated_unless_the_admin_holds_it() -> None:
    r = Rig([["sda", "sdb"]])
    r.verdict("sda", Check.DOWN)
    r.path("sda").held = True
    r.verdict("sda", Check.UP)
    assert r.kstate[r.dev("sda")] == F
    r.path("sda").held = False
    r.feed(reconcile.Heal())
    assert r.kstate[r.dev("sda")] == A


def test_a_path_the_admin_failed_that_is_active_again_is_failed_while_another_works() -> None:
    """After a boot the map is made afresh with every path active: the path the admin had
    failed (remembered) is failed again, but never as the last working one."""
    r = Rig([["sda", "sdb"]])
    r.path("sda").held = True
    r.verdict("sda", Check.UP)
    assert r.kstate[r.dev("sda")] == F and r.kinds("path_failed") == ["sda"]
    assert "failed by the administrator" in r.sent[-1].message
    r.path("sda").held = False
    r.feed(reconcile.Heal())
    assert r.kstate[r.dev("sda")] == A
    lone = Rig([["sda"]])
    lone.path("sda").held = True
    lone.feed(reconcile.Heal())
    assert lone.kstate[lone.dev("sda")] == A and lone.sent == []


def test_queueing_the_admin_turned_off_is_not_turned_on_by_a_heal() -> None:
    r = Rig([["sda", "sdb"]], no_path_retry="12", queueing=False)
    r.h.queueing = False
    r.verdict("sda", Check.DOWN)
    r.verdict("sda", Check.UP)
    assert r.kinds("path_reinstated") == ["sda"]
    assert r.policies == [] and not r.queueing
    r.h.queueing = None  # mpathctl queueing MAP config: no_path_retry decides again
    r.feed(reconcile.Heal())
    assert r.queueing


def test_the_first_working_check_of_a_map_that_should_queue_turns_queueing_on() -> None:
    """A map made by dmpathd --once has no queueing (nobody would count no_path_retry);
    the daemon that adopts it turns queueing on once a path is seen working."""
    r = Rig([["sda", "sdb"]], no_path_retry="12", queueing=False)
    for name in ("sda", "sdb"):
        r.path(name).check = Check.UNKNOWN
    r.verdict("sda", Check.UP)
    assert [p.enabled for p in r.policies] == [True] and r.queueing  # type: ignore[union-attr]
    r.verdict("sdb", Check.UP)
    assert len(r.policies) == 1  # once


def test_a_first_check_that_finds_the_path_dead_does_not_turn_queueing_on() -> None:
    """no_path_retry ran out and the daemon restarted: queueing stays off while nothing
    works, as it was left."""
    r = Rig([["sda"]], no_path_retry="12", queueing=False)
    r.path("sda").check = Check.UNKNOWN
    r.verdict("sda", Check.DOWN)
    assert r.policies == [] and not r.queueing


def test_queueing_the_admin_turned_on_queues_for_ever() -> None:
    r = Rig([["sda"]], no_path_retry="3", queueing=True)
    r.h.queueing = True
    r.kstate[r.dev("sda")] = F
    r.feed(reconcile.PathUevent(r.dev("sda"), failed=True, nr_valid=0))
    r.now += 10_000
    r.feed(reconcile.Timer())
    assert r.policies == [] and r.queueing and r.wakes == []


def test_a_refused_message_is_an_error_and_its_expectation_is_dropped() -> None:
    r = Rig([["sda", "sdb"]])
    r.refuse.add(r.dev("sda"))
    r.verdict("sda", Check.DOWN)
    assert r.kinds("error") == ["sda"]
    assert r.kinds("path_failed") == []
    assert not r.h.busy  # no retry loop: the next verdict tries again
    assert r.dev("sda") not in r.h.expected
    # so the kernel failing the path later is news, not taken for our echo
    r.kstate[r.dev("sda")] = F
    r.feed(reconcile.PathUevent(r.dev("sda"), failed=True, nr_valid=1))
    assert r.kinds("kernel_path_failed") == ["sda"]


def test_md_busy_is_not_now_and_md_has_no_timed_policies() -> None:
    r = Rig([["sda", "sdb"]], backend=Backend.MD)
    effects = r.feed(reconcile.Verdict("sda", Check.DOWN, "t", "", r.now), hold=True)
    # no full read first: md is read as is
    assert [type(e) for e in effects if not isinstance(e, Note)] == [Send]
    r.held_back = []
    r.feed(reconcile.Sent((Outcome("sda: device busy", busy=True),)))
    assert r.kinds("busy") == ["sda"]
    assert r.kinds("error") == []
    assert r.policies == [] and r.wakes == []


# ---------------------------------------------------------------------- the kernel's word


def test_our_own_failure_echoes_cost_nothing_but_the_kernels_own_is_news() -> None:
    r = Rig([["sda", "sdb", "sdc"]])
    r.verdict("sda", Check.DOWN)
    before = len(r.notes)
    assert r.feed(reconcile.PathUevent(r.dev("sda"), failed=True, nr_valid=2)) == []
    assert len(r.notes) == before
    # an I/O error on sdb: the kernel failed it, not us
    r.kstate[r.dev("sdb")] = F
    effects = r.feed(reconcile.PathUevent(r.dev("sdb"), failed=True, nr_valid=1), hold=True)
    assert r.kinds("kernel_path_failed") == ["sdb"]
    assert r.path("sdb").kernel_state == F  # believed at once, before any read
    assert Kick("sdb") in effects and Read(full=True) in effects
    assert r.path("sdb").check == Check.PENDING


def test_an_echo_expires() -> None:
    r = Rig([["sda", "sdb"]])
    r.verdict("sda", Check.DOWN)
    r.now += reconcile.ECHO_WINDOW + 1
    r.feed(reconcile.PathUevent(r.dev("sda"), failed=True, nr_valid=1))
    assert r.kinds("kernel_path_failed") == []  # already failed in the model: no double
    assert r.dev("sda") not in r.h.expected


def test_a_check_issued_before_the_kernel_failed_the_path_answers_for_the_past() -> None:
    r = Rig([["sda", "sdb"]])
    issued = r.now
    r.now += 1
    r.kstate[r.dev("sda")] = F
    r.feed(reconcile.PathUevent(r.dev("sda"), failed=True, nr_valid=1))
    r.verdict("sda", Check.UP, issued_at=issued)
    assert r.rechecks == ["sda"]
    assert r.kstate[r.dev("sda")] == F  # not reinstated on an old word
    assert r.path("sda").check == Check.PENDING
    r.verdict("sda", Check.UP, issued_at=r.now)
    assert r.kstate[r.dev("sda")] == A


def test_a_read_that_shows_a_path_failed_behind_our_back_is_taken_like_its_uevent() -> None:
    r = Rig([["sda", "sdb"]])
    r.kstate[r.dev("sdb")] = F
    r.feed(reconcile.KernelRead(r.kernel(), mine=False))
    assert r.kicks == ["sdb"]
    assert r.path("sdb").check == Check.PENDING
    assert "sdb" in r.h.kernel_failed_at


# ---------------------------------------------------------------------- one heal at a time


def test_news_during_a_heal_waits_and_gives_one_more_heal() -> None:
    r = Rig([["sda", "sdb", "sdc", "sdd"]])
    first = r.feed(reconcile.Verdict("sda", Check.DOWN, "t", "", r.now), hold=True)
    assert [type(e) for e in first if not isinstance(e, Note)] == [Send]
    assert r.h.stage is Stage.SENDING
    # more verdicts while the messages are out: no new kernel work yet
    for name in ("sdb", "sdc"):
        effects = r.feed(reconcile.Verdict(name, Check.DOWN, "t", "", r.now), hold=True)
        assert [type(e) for e in effects] == [Note]
    assert r.h.again
    r.release()
    assert [a.path for a in r.sent] == ["sda", "sdb", "sdc"]
    assert r.kstate[r.dev("sdd")] == A and not r.h.busy


def test_a_claim_waits_for_the_heal_and_news_during_it_heals_after() -> None:
    r = Rig([["sda", "sdb"]])
    r.feed(reconcile.Verdict("sda", Check.DOWN, "t", "", r.now), hold=True)
    assert not reconcile.claim(r.h)
    r.release()
    assert reconcile.claim(r.h)
    assert r.h.stage is Stage.CLAIMED
    r.verdict("sda", Check.UP)  # news while an assembly change holds the map
    assert r.kstate[r.dev("sda")] == F
    r.feed(reconcile.Released())
    assert r.kstate[r.dev("sda")] == A


def test_a_failed_read_before_planning_plans_nothing_and_the_next_read_is_full() -> None:
    r = Rig([["sda", "sdb"]])
    r.h.kernel = None
    effects = r.feed(reconcile.Verdict("sda", Check.DOWN, "t", "", r.now), hold=True)
    assert effects[-1] == Read(full=True)
    r.held_back = []
    r.feed(reconcile.ReadFailed("dm: no such device"))
    assert r.kinds("error") == [""]
    assert r.sent == [] and not r.h.busy and r.h.kernel is None


# ---------------------------------------------------------------------- failback


def test_failback_immediate_switches_back_when_the_best_group_returns() -> None:
    r = Rig([["sda"], ["sdb"]])
    r.verdict("sda", Check.DOWN)
    assert r.kstate[r.dev("sda")] == F
    r.next_group = 2  # the kernel moved to the second group
    r.feed(reconcile.KernelRead(r.kernel(), mine=False))
    r.verdict("sda", Check.UP)
    assert r.policies == [healing.SwitchGroup("mpatha", 1, "failback: switching to path group 1")]
    assert r.next_group == 1 and r.kinds("switch_group") == [""]


def test_failback_manual_never_switches() -> None:
    r = Rig([["sda"], ["sdb"]], failback="manual")
    r.next_group = 2
    r.feed(reconcile.KernelRead(r.kernel(), mine=False))
    r.feed(reconcile.Heal())
    r.now += 3600
    r.feed(reconcile.Timer())
    assert r.policies == [] and r.wakes == []


def test_deferred_failback_fires_on_a_quiet_map() -> None:
    r = Rig([["sda"], ["sdb"]], failback="30")
    r.next_group = 2
    r.feed(reconcile.KernelRead(r.kernel(), mine=False))
    r.feed(reconcile.Heal())
    assert r.policies == []
    assert len(r.wakes) == 1 and r.wakes[0] >= r.now + 30
    r.now += 10
    r.feed(reconcile.Timer())  # too early: nothing
    assert r.policies == []
    r.now = r.wakes[-1]  # no verdict, no uevent: only the timer
    r.feed(reconcile.Timer())
    assert [type(p) for p in r.policies] == [healing.SwitchGroup]
    assert r.next_group == 1


# ---------------------------------------------------------------------- no_path_retry


def test_no_path_retry_n_queues_for_n_polling_intervals_then_fails_io() -> None:
    r = Rig([["sda", "sdb"]], no_path_retry="3", queueing=True)
    r.verdict("sda", Check.DOWN)
    r.verdict("sdb", Check.DOWN)
    r.feed(reconcile.Verdict("sdb", Check.DOWN, "t", "", r.now))
    # the kernel failed the last one on I/O: no path is left
    r.kstate[r.dev("sdb")] = F
    r.feed(reconcile.PathUevent(r.dev("sdb"), failed=True, nr_valid=0))
    lost_at = r.now
    assert r.h.no_path_since == lost_at
    assert r.wakes[-1] >= lost_at + 3 * INTERVAL
    r.now = lost_at + 2 * INTERVAL
    r.feed(reconcile.Timer())
    assert r.policies == []  # still queueing
    r.now = r.wakes[-1]
    r.feed(reconcile.Timer())
    assert r.policies == [
        healing.SetQueueing(
            "mpatha", False, "no path for 3 polling intervals: failing queued I/O (no_path_retry)"
        )
    ]
    assert not r.queueing and r.h.kernel is None  # the features changed: read afresh
    r.verdict("sda", Check.UP)
    assert r.kstate[r.dev("sda")] == A
    assert r.policies[-1].enabled is True and r.queueing  # type: ignore[union-attr]


def test_no_path_retry_queue_queues_for_ever() -> None:
    r = Rig([["sda"]], no_path_retry="queue", queueing=True)
    r.kstate[r.dev("sda")] = F
    r.feed(reconcile.PathUevent(r.dev("sda"), failed=True, nr_valid=0))
    r.now += 10_000
    r.feed(reconcile.Timer())
    assert r.policies == [] and r.queueing and r.wakes == []


def test_no_path_retry_fail_fails_queued_io_at_once() -> None:
    r = Rig([["sda"]], no_path_retry="fail", queueing=True)
    r.kstate[r.dev("sda")] = F
    r.feed(reconcile.PathUevent(r.dev("sda"), failed=True, nr_valid=0))
    assert [type(p) for p in r.policies] == [healing.SetQueueing]
    assert not r.queueing


# ---------------------------------------------------------------------- paths come and go


def test_hot_add_and_remove_follow_the_table() -> None:
    r = Rig([["sda", "sdb"]])
    r.kstate[r.dev("sda")] = F
    r.feed(reconcile.PathUevent(r.dev("sda"), failed=True, nr_valid=1))
    assert "sda" in r.h.kernel_failed_at
    # sda leaves the table; a member no path of ours knows joins it (an adopted map)
    gone = r.dev("sda")
    del r.kstate[gone]
    r.kstate["65:0"] = A
    r.feed(reconcile.KernelRead(r.kernel(), mine=False, names={"65:0": "sdq"}))
    assert [p.name for p in r.m.paths] == ["sdb", "sdq"]
    assert r.h.members == {r.dev("sdb"): "sdb", "65:0": "sdq"}
    assert "sda" not in r.h.kernel_failed_at
    # a verdict on the path that left changes nothing
    assert r.feed(reconcile.Verdict("sda", Check.UP, "t", "", r.now)) == []


def test_relink_takes_new_path_models_and_keeps_every_state() -> None:
    r = Rig([["sda", "sdb"]])
    r.kstate[r.dev("sdb")] = F
    r.feed(reconcile.PathUevent(r.dev("sdb"), failed=True, nr_valid=1), hold=True)
    # sda was removed and came back: the daemon has a new model for it
    fresh = Path(name="sda", devnum=r.dev("sda"), wwid="w1", check=Check.UP)
    r.paths[r.dev("sda")] = fresh
    reconcile.relink(r.h, r.m, r.paths.get)
    assert r.m.paths[0] is fresh
    assert r.m.paths[1].kernel_state == F  # not put back as the last read had it


# ---------------------------------------------------------------------- marginal paths


def _flap(r: Rig, name: str, times: int, every: float = 2.0) -> None:
    """``name`` goes down (its link: a check verdict) and comes back ``times`` times."""
    for _ in range(times):
        r.verdict(name, Check.DOWN)
        r.now += every / 2
        r.verdict(name, Check.UP)
        r.now += every / 2


def test_a_flapping_path_becomes_marginal_and_stays_failed_while_its_checks_pass() -> None:
    r = Rig([["sda", "sdb"]])
    _flap(r, "sda", 2)
    assert r.kstate[r.dev("sda")] == A  # two falls in a minute: still a path like any
    assert not r.path("sda").marginal
    r.verdict("sda", Check.DOWN)  # the third
    assert r.kinds("path_marginal") == ["sda"]
    assert r.path("sda").marginal
    assert r.path("sda").marginal_reason == "failed 3 times within 60 s"
    r.now += 1
    r.verdict("sda", Check.UP)
    assert r.kstate[r.dev("sda")] == F  # up, but kept out of use
    r.now += 30
    r.verdict("sda", Check.UP)
    assert r.kstate[r.dev("sda")] == F
    assert r.kinds("path_reinstated") == ["sda", "sda"]  # the first two returns only


def test_a_marginal_path_comes_back_after_recovery_time_of_health_and_a_new_fall_restarts_it(
) -> None:
    r = Rig([["sda", "sdb"]], marginal=MarginalPolicy(recovery=20.0))
    _flap(r, "sda", 3)
    assert r.path("sda").marginal and r.kstate[r.dev("sda")] == F
    healthy_from = r.now - 1.0  # the last UP of the flaps
    assert r.wakes[-1] >= healthy_from + 20.0  # a wake-up asked for the end of the term
    r.now = healthy_from + 15.0
    r.verdict("sda", Check.DOWN)  # falls again before the term is over
    r.now += 1
    r.verdict("sda", Check.UP)
    restart = r.now
    r.now = restart + 19.0
    r.feed(reconcile.Timer())
    assert r.path("sda").marginal and r.kstate[r.dev("sda")] == F
    r.now = restart + 20.5
    r.feed(reconcile.Timer())  # the wake-up: no check needed to end the term
    assert not r.path("sda").marginal
    assert r.kinds("path_marginal_cleared") == ["sda"]
    assert r.kstate[r.dev("sda")] == A
    r.verdict("sda", Check.DOWN)  # its record starts afresh: one fall is one fall
    r.now += 1
    r.verdict("sda", Check.UP)
    assert not r.path("sda").marginal and r.kstate[r.dev("sda")] == A


def test_a_marginal_path_is_used_when_no_other_path_works_and_benched_when_one_returns() -> None:
    r = Rig([["sda", "sdb"]])
    _flap(r, "sda", 3)
    assert r.kstate[r.dev("sda")] == F
    r.verdict("sdb", Check.DOWN)
    # sdb is dead: a path that flaps beats none
    assert r.kstate[r.dev("sda")] == A
    assert r.kstate[r.dev("sdb")] == F
    assert any("marginal, but no other path works" in a.message for a in r.sent)
    r.now += 1
    r.verdict("sdb", Check.UP)
    assert r.kstate[r.dev("sdb")] == A
    assert r.kstate[r.dev("sda")] == F
    benched = [a.message for a in r.sent if a.path == "sda"][-1]
    assert benched.startswith("sda is marginal (failed 3 times within 60 s): kept out of use")


def test_one_fall_told_by_the_kernel_and_then_the_check_counts_once() -> None:
    r = Rig([["sda", "sdb"]])
    for _ in range(2):
        r.feed(reconcile.PathUevent(r.dev("sda"), failed=True))
        r.kstate[r.dev("sda")] = F
        r.verdict("sda", Check.DOWN)
        r.verdict("sda", Check.DOWN)
        r.now += 1
        r.verdict("sda", Check.UP)
        r.now += 1
    assert not r.path("sda").marginal  # two falls, told five times each
    assert r.kstate[r.dev("sda")] == A


def test_slow_answers_count_as_strikes_and_fast_ones_do_not() -> None:
    r = Rig([["sda", "sdb"]])
    for _ in range(5):
        r.verdict("sda", Check.UP, latency=1.9)
        r.now += 5
    assert not r.path("sda").marginal
    for _ in range(3):
        r.verdict("sda", Check.UP, latency=2.5)
        r.now += 5
    assert r.path("sda").marginal
    assert r.path("sda").marginal_reason == "answered slowly (over 2 s) 3 times within 60 s"
    assert r.kstate[r.dev("sda")] == F


def test_falls_spread_wider_than_the_window_never_make_a_path_marginal() -> None:
    r = Rig([["sda", "sdb"]])
    _flap(r, "sda", 6, every=31.0)  # a fall every 31 s: at most two in any minute
    assert r.kinds("path_marginal") == []
    assert r.kstate[r.dev("sda")] == A


def test_the_rule_turned_off_never_marks_a_path() -> None:
    r = Rig([["sda", "sdb"]], marginal=MarginalPolicy(failures=0))
    _flap(r, "sda", 10, every=1.0)
    assert not r.path("sda").marginal and r.kstate[r.dev("sda")] == A


def test_forgive_ends_the_term_and_the_strikes() -> None:
    r = Rig([["sda", "sdb"]])
    _flap(r, "sda", 3)
    assert reconcile.forgive(r.h, r.path("sda"))
    assert not r.path("sda").marginal
    r.verdict("sda", Check.UP)
    assert r.kstate[r.dev("sda")] == A
    r.verdict("sda", Check.DOWN)  # one new fall is not the fourth of three
    r.now += 1
    r.verdict("sda", Check.UP)
    assert not r.path("sda").marginal
    assert not reconcile.forgive(r.h, r.path("sda"))
