"""What a new configuration changes in a live map's table (``dmpath.policy.reshape``)."""

from __future__ import annotations

import dataclasses

from dmpath.kernel import dmtable
from dmpath.policy.assembly import Member, build_table
from dmpath.policy.reshape import plan_reshape

MEMBERS = [Member("sda", "8:0", 1), Member("sdb", "8:16", 1)]


def table(
    policy: str = "multibus",
    selector: str = "service-time 0",
    *,
    features: tuple[str, ...] = (),
    hwhandler: str = "",
    queueing: bool = False,
) -> dmtable.MultipathTable:
    t, _ = build_table(
        65536, MEMBERS, policy=policy, selector=selector, features=features,
        hwhandler=hwhandler, queueing=queueing,
    )  # fmt: skip
    return t


def loaded(t: dmtable.MultipathTable) -> dmtable.MultipathTable:
    """The table as the kernel reports it once loaded."""
    return dmtable.parse_table(dmtable.format_table(dmtable.as_reported(t)))


def test_a_table_that_would_read_back_the_same_is_not_reloaded() -> None:
    kernel = loaded(table(queueing=True))
    plan = plan_reshape(table(queueing=True), kernel, usable=True)
    assert not plan.needed
    # the kernel keeps the handler attached to the paths: not ours to undo
    alua = dataclasses.replace(kernel, hw_handler=dmtable.HardwareHandler("alua"))
    assert not plan_reshape(table(queueing=True), alua, usable=True).needed


def test_grouping_selector_features_and_handler_reload() -> None:
    kernel = loaded(table())
    assert plan_reshape(table("failover"), kernel, usable=True).changes == ("path groups",)
    rr = plan_reshape(table(selector="round-robin 0"), kernel, usable=True)
    assert rr.changes == ("path selector",) and rr.table is not None
    feats = plan_reshape(table(features=("pg_init_retries", "5")), kernel, usable=True)
    assert feats.changes == ("features",)
    hw = plan_reshape(table(hwhandler="alua"), kernel, usable=True)
    assert hw.changes == ("hardware handler",)


def test_queueing_alone_is_a_message_while_a_path_works() -> None:
    kernel = loaded(table(queueing=True))
    plan = plan_reshape(table(queueing=False), kernel, usable=True)
    assert (plan.table, plan.queueing) == (None, False)
    # with no working path the no_path_retry clock decides, and a reload keeps it
    assert not plan_reshape(table(queueing=False), kernel, usable=False).needed
    regroup = plan_reshape(table("failover", queueing=False), kernel, usable=False)
    assert regroup.table is not None and regroup.table.features.queue_if_no_path
