"""The fault matrix's check that a fault was reported (dmpath.lab.faultmatrix), on
recorded events: which event or refused request counts as naming the victim."""

from __future__ import annotations

from typing import Any, cast

from dmpath.lab import faultmatrix as fm
from dmpath.lab.harness import DaemonUnderTest


class Recorded:
    """A daemon that answers ``events`` with the events given."""

    def __init__(self, *events: dict[str, Any]) -> None:
        self.events = list(events)

    def request(self, op: str, args: dict[str, Any] | None = None) -> Any:
        assert op == "events"
        return self.events


def ev(kind: str, map_name: str, message: str, time: float = 10.0) -> dict[str, Any]:
    return {"time": time, "kind": kind, "map": map_name, "path": "", "message": message}


def unreported(d: Recorded, words: tuple[str, ...], answer: str = "") -> str:
    return fm._unreported(cast(DaemonUnderTest, d), 5.0, words, answer)


def test_an_error_event_of_the_victim_counts_though_its_message_does_not_name_it() -> None:
    d = Recorded(ev("error", fm.VICTIM, "admin request 'fail_path sda' done but not recorded"))
    assert unreported(d, ("admin",)) == ""


def test_an_event_of_another_map_an_earlier_one_or_a_mild_kind_does_not_count() -> None:
    d = Recorded(
        ev("error", fm.OTHER, "mpathb: resume failed"),
        ev("error", fm.VICTIM, "mpatha: resume failed", time=1.0),
        ev("map_resumed", fm.VICTIM, "mpatha was suspended: resumed"),
    )
    why = unreported(d, ("resume",))
    assert why.startswith(f"no error naming {fm.VICTIM} and resume")
    assert "error mpathb: mpathb: resume failed" in why


def test_a_refused_request_counts_only_when_its_answer_names_the_victim() -> None:
    assert unreported(Recorded(), ("remove",), "mpatha: dmsetup remove failed") == ""
    assert unreported(Recorded(), ("remove",), "dmsetup remove failed") != ""
