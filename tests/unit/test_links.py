"""Link messages to link states (pure), and the interface of an iSCSI path's portal."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmpath.daemon.links import LinkChange, link_change
from dmpath.kernel import sysfs


class Msg(dict[str, object]):
    """A link message as pyroute2 hands it over: header fields by key, attributes by
    ``get_attr``."""

    def __init__(self, event: str, index: int, attrs: dict[str, str]) -> None:
        super().__init__(event=event, index=index)
        self.attrs = attrs

    def get_attr(self, name: str) -> object:
        return self.attrs.get(name)


@pytest.mark.parametrize(
    ("event", "state", "up"),
    [
        ("RTM_NEWLINK", "UP", True),
        ("RTM_NEWLINK", "UNKNOWN", True),  # no carrier detection, administratively up
        ("RTM_NEWLINK", "DOWN", False),
        ("RTM_NEWLINK", "LOWERLAYERDOWN", False),
        ("RTM_NEWLINK", "NOTPRESENT", False),
        ("RTM_DELLINK", "UP", False),  # gone is down, whatever it said last
    ],
)
def test_link_change(event: str, state: str, up: bool) -> None:
    msg = Msg(event, 7, {"IFLA_IFNAME": "eth2", "IFLA_OPERSTATE": state})
    assert link_change(msg) == LinkChange(7, "eth2", up)


def test_other_messages_are_not_link_changes() -> None:
    assert link_change(Msg("RTM_NEWADDR", 7, {})) is None
    assert link_change(Msg("RTM_NEWLINK", 7, {})) == LinkChange(7, "if7", False)


def test_iscsi_portal_address(tmp_path: Path) -> None:
    dev = "/devices/platform/host3/session2/target3:0:0/3:0:0:0/block/sdb"
    assert sysfs.iscsi_session_of(dev) == "session2"
    assert sysfs.iscsi_session_of("/devices/pseudo_0/adapter0/host6/target6:0:0/6:0:0:0") is None
    conn = tmp_path / "class" / "iscsi_connection" / "connection2:0"
    conn.mkdir(parents=True)
    (conn / "persistent_address").write_text("192.0.2.2\n")
    other = tmp_path / "class" / "iscsi_connection" / "connection12:0"
    other.mkdir()
    (other / "persistent_address").write_text("198.51.100.2\n")
    assert sysfs.iscsi_portal_address("session2", str(tmp_path)) == "192.0.2.2"
    assert sysfs.iscsi_portal_address("session12", str(tmp_path)) == "198.51.100.2"
    assert sysfs.iscsi_portal_address("session3", str(tmp_path)) is None
    (conn / "persistent_port").write_text("3260\n")
    assert sysfs.iscsi_portal("session2", str(tmp_path)) == ("192.0.2.2", 3260)
    assert sysfs.iscsi_portal("session12", str(tmp_path)) == ("198.51.100.2", 0)
