"""The SIPp harness proven against SIPp itself, so that it is known-good before any server."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.helpers.capture import LoopbackCapture, can_capture
from tests.helpers.sipp import SippRunner

pytestmark = pytest.mark.peer


def _sdp_answer(messages: str) -> str:
    """The m=audio line of the 200 OK that carried SDP."""
    match = re.search(r"SIP/2\.0 200 OK.*?(m=audio [^\r\n]*)", messages, re.S)
    assert match, messages[-3000:]
    return match.group(1).strip()


def test_uac_pcma_audio_against_uas_answer_with_echo(sipp: SippRunner) -> None:
    callee = sipp.start("uas_answer", rtp_echo=True, timeout=20)
    capture = LoopbackCapture(ports={callee.media_port}) if can_capture() else None
    if capture:
        capture.start()
    try:
        caller = sipp.run("uac_pcma_audio", callee.target, service="alice", timeout=20)
    finally:
        if capture:
            capture.stop()
    caller.assert_ok()
    callee.wait().assert_ok()

    # One codec from the offer (PCMA only) and the offered telephone-event came back.
    assert _sdp_answer(caller.messages).endswith("RTP/AVP 8 101")
    assert "BYE sip:" in caller.messages

    if capture is None:
        return
    sent = capture.rtp(dst_port=callee.media_port)
    echoed = capture.rtp(src_port=callee.media_port)
    # ~4 s of 30 ms PCMA packets were played before the BYE, and every one came back.
    assert len(sent) > 100, len(sent)
    assert {p.rtp_payload_type for p in sent} == {8}
    assert {len(p.rtp_body) for p in sent} == {240}
    assert len(echoed) >= len(sent) - 2
    assert echoed[0].payload == sent[0].payload


def test_uac_dtmf_sends_telephone_events_after_the_audio(sipp: SippRunner) -> None:
    callee = sipp.start("uas_answer", rtp_echo=True, timeout=25)
    capture = LoopbackCapture(ports={callee.media_port}) if can_capture() else None
    if capture:
        capture.start()
    try:
        caller = sipp.run("uac_dtmf", callee.target, timeout=25)
    finally:
        if capture:
            capture.stop()
    caller.assert_ok()
    callee.wait().assert_ok()
    if capture is None:
        return
    sent = capture.rtp(dst_port=callee.media_port)
    types = Counter(p.rtp_payload_type for p in sent)
    assert types[8] > 200 and types[101] >= 5, types
    events = [p for p in sent if p.rtp_payload_type == 101]
    assert all(p.rtp_body[0] == 1 for p in events)  # the digit "1"
    assert any(p.rtp_body[1] & 0x80 for p in events)  # an end-of-event packet
    last_audio = max(p.time for p in sent if p.rtp_payload_type == 8)
    assert min(p.time for p in events) > last_audio


def test_uas_answer_prefers_pcmu_and_omits_unoffered_telephone_event(sipp: SippRunner) -> None:
    callee = sipp.start("uas_answer", timeout=15)
    caller = sipp.run("uac", callee.target, timeout=15)  # built-in: offers PCMU only
    caller.assert_ok()
    callee.wait().assert_ok()
    assert _sdp_answer(caller.messages) == f"m=audio {callee.media_port} RTP/AVP 0"


def test_uas_answer_picks_pcmu_from_a_multi_codec_offer(sipp: SippRunner) -> None:
    callee = sipp.start("uas_hangup", timeout=15)
    caller = sipp.run("uac_wait_bye", callee.target, timeout=15)
    caller.assert_ok()
    result = callee.wait().assert_ok()
    assert _sdp_answer(caller.messages) == f"m=audio {callee.media_port} RTP/AVP 0 101"
    # The callee hung up: its BYE reached the caller's Contact and was answered.
    assert re.search(r"BYE sip:sipp@127\.0\.0\.1:\d+", result.messages)


def test_uas_busy_answers_486(sipp: SippRunner) -> None:
    callee = sipp.start("uas_busy", timeout=10)
    caller = sipp.run("uac", callee.target, timeout=10)
    callee.wait().assert_ok()
    assert not caller.ok  # the built-in uac expects 200
    assert "SIP/2.0 486 Busy Here" in caller.messages


def test_tcp_transport(sipp: SippRunner) -> None:
    callee = sipp.start("uas_answer", transport="t1", timeout=15)
    assert callee.uri("bob").endswith(";transport=tcp")
    caller = sipp.run("uac", callee.target, transport="t1", timeout=15)
    caller.assert_ok()
    callee.wait().assert_ok()
    assert "SIP/2.0/TCP" in caller.messages


def test_a_uas_that_gets_no_call_fails_within_its_timeout(sipp: SippRunner) -> None:
    callee = sipp.start("uas_answer", timeout=1)
    result = callee.wait()
    assert not result.ok
    assert result.log_dir is not None and result.log_dir.is_dir()
