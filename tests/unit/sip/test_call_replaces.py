"""An INVITE with Replaces (RFC 3891) on the simulated network: the router hands the TU the
confirmed call it names, or refuses it without creating a call."""

from __future__ import annotations

import pytest

from callboard.sip.call_model import CallState
from callboard.sip.invite_session import InviteSession
from callboard.sip.refer import Replaces
from tests.unit.sip.call_net import CallNet, connected_call


def _replaces_for(bob_side: InviteSession, **overrides: object) -> str:
    """The Replaces naming Bob's call as Bob sees it: his own tag is the to-tag."""
    dialog = bob_side.dialog
    assert dialog is not None
    fields = {"call_id": dialog.call_id, "to_tag": dialog.local_tag, "from_tag": dialog.remote_tag}
    fields.update(overrides)
    return Replaces(**fields).header_value()  # type: ignore[arg-type]


def test_an_invite_naming_a_confirmed_call_is_handed_over_with_it() -> None:
    net = CallNet()
    _, b = connected_call(net)
    net.bob.on_incoming = None
    net.call(headers=(("Replaces", _replaces_for(b)),))
    net.run(1)
    assert len(net.bob.incoming) == 2 and net.bob.replacing[-1] is b
    assert net.bob.sent_statuses("INVITE")[-1] == 180
    assert b.state is CallState.CONFIRMED  # the TU decides; the router only matched it


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"from_tag": "someone-else"}, 481),
        ({"call_id": "no-such-call@10.0.0.9"}, 481),
        ({"early_only": True}, 486),
    ],
)
def test_an_invite_naming_no_confirmed_call_is_refused(
    overrides: dict[str, object], status: int
) -> None:
    net = CallNet()
    _, b = connected_call(net)
    net.bob.on_incoming = None
    net.call(headers=(("Replaces", _replaces_for(b, **overrides)),))
    net.run(1)
    assert len(net.bob.incoming) == 1  # no second call was created
    assert net.bob.sent_statuses("INVITE")[-1] == status
    assert b.state is CallState.CONFIRMED


def test_a_bad_replaces_is_a_400() -> None:
    net = CallNet()
    connected_call(net)
    net.call(headers=(("Replaces", "just-a-call-id"),))
    net.run(1)
    assert net.bob.sent_statuses("INVITE")[-1] == 400
    assert len(net.bob.incoming) == 1


def test_a_call_still_ringing_cannot_be_replaced() -> None:
    net = CallNet()
    net.call()  # Bob leaves it ringing
    net.run(1)
    ringing = net.bob.incoming[0]
    assert ringing.state is CallState.INCOMING
    value = Replaces(ringing.call_id, ringing.local_tag, "x").header_value()
    net.call(headers=(("Replaces", value),))
    net.run(1)
    assert net.bob.sent_statuses("INVITE")[-1] == 481
