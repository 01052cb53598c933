"""The SIP stack (transaction layer and call router, as the server runs them) fed hostile
datagrams: mutations of real messages and plain random bytes. Nothing may escape as an
exception, and once the timers have run out no transaction, call or timer is left.
bench/fuzz.py runs the same idea for a million inputs outside CI."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callboard.sip.errors import SipParseError
from callboard.sip.message import parse_message
from tests.helpers.raw_sip import mutate
from tests.unit.sip.call_net import CallNet, assert_idle
from tests.unit.sip.sip_samples import BARESIP_INVITE, RINGING_RESPONSE, SIPP_INVITE

SAMPLES = [SIPP_INVITE, BARESIP_INVITE, RINGING_RESPONSE]


def _deliver(net: CallNet, data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError:
        return
    for event in net.bob.layer.receive(message, ("10.0.0.9", 5060), "udp", net.now):
        net.bob.router.receive(event, net.now)
    net.flush()


def _refusing_net() -> CallNet:
    net = CallNet()
    net.bob.on_incoming = lambda session, request: session.reject(486, now=net.now)
    return net


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.lists(st.integers(0, 2), min_size=1, max_size=6))
def test_mutated_messages_never_break_the_stack(rng: random.Random, picks: list[int]) -> None:
    net = _refusing_net()
    for pick in picks:
        _deliver(net, mutate(SAMPLES[pick], rng))
    net.run(120)
    assert_idle(net)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1500))
def test_random_bytes_never_break_the_stack(data: bytes) -> None:
    net = _refusing_net()
    _deliver(net, data)
    _deliver(net, SIPP_INVITE[:40] + data)
    net.run(120)
    assert_idle(net)
