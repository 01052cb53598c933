"""The baresip harness proven against SIPp: calls connect, audio is sent, heard and recorded."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.helpers.audio import (
    active_spans,
    dominant_frequency,
    level_dbfs,
    tone,
    write_wav,
)
from tests.helpers.baresip import BaresipFactory
from tests.helpers.capture import LoopbackCapture, can_capture
from tests.helpers.sipp import SippRunner

pytestmark = pytest.mark.peer


def _offer(messages: str) -> str:
    match = re.search(r"INVITE sip:.*?(m=audio [^\r\n]*)", messages, re.S)
    assert match, messages[-2000:]
    return match.group(1).strip()


def test_baresip_calls_sipp_and_records_the_sine_and_its_echo(
    baresip_factory: BaresipFactory, sipp: SippRunner
) -> None:
    callee = sipp.start("uas_answer", rtp_echo=True, timeout=20)
    phone = baresip_factory("alice", sine_hz=1000)
    capture = LoopbackCapture(ports={callee.media_port}) if can_capture() else None
    if capture:
        capture.start()
    try:
        phone.start(dial=callee.uri("echo"))
        phone.wait_established()
        time.sleep(1.5)
        phone.send_dtmf("5", gap_s=0.5)
        phone.hangup()
        closed = phone.wait_closed()
    finally:
        if capture:
            capture.stop()
    assert closed["direction"] == "outgoing"
    callee.wait().assert_ok()  # got the BYE and answered it

    rate, sent = phone.sent()
    assert rate == 8000  # PCMU was chosen: sndfile records at the codec's rate
    assert abs(dominant_frequency(sent, rate) - 1000) < 2
    assert -9 < level_dbfs(sent) < -3  # ausine plays at about -6 dBFS

    rate, heard = phone.heard()
    assert len(heard) > rate  # more than a second of echo
    assert abs(dominant_frequency(heard, rate) - 1000) < 2
    assert level_dbfs(heard) > -12

    if capture:
        events = [p for p in capture.rtp(dst_port=callee.media_port) if p.rtp_payload_type == 101]
        assert events and {p.rtp_body[0] for p in events} == {5}


def test_sipp_calls_baresip_which_answers_by_itself(
    baresip_factory: BaresipFactory, sipp: SippRunner
) -> None:
    phone = baresip_factory("bob", sine_hz=440).start()
    result = sipp.run("uac_pcma_audio", phone.target, service="bob", timeout=20)
    result.assert_ok()  # 200 OK from auto-answer, then our BYE was answered
    assert "User-Agent: baresip" in result.messages or "baresip" in result.messages
    event = phone.wait_closed()
    assert event["direction"] == "incoming"

    rate, heard = phone.heard()  # the PCMA speech from g711a.pcap
    assert rate == 8000
    speech = active_spans(heard, rate, threshold_dbfs=-45)
    assert sum(end - start for start, end in speech) > 1.5, speech
    rate, sent = phone.sent()
    assert abs(dominant_frequency(sent, rate) - 440) < 2


def test_baresip_plays_a_wav_and_restricts_codecs(
    baresip_factory: BaresipFactory, sipp: SippRunner, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "source.wav", 16000, tone(600, 3000, 16000, -12))
    callee = sipp.start("uas_answer", rtp_echo=True, timeout=20)
    phone = baresip_factory("carol", source_wav=wav, codecs=["PCMA"])
    phone.start(dial=callee.uri())
    phone.wait_established()
    time.sleep(1.0)
    phone.hangup()
    phone.wait_closed()
    result = callee.wait().assert_ok()

    assert _offer(result.messages).split(" RTP/AVP ")[1].split()[0] == "8"  # PCMA only
    rate, sent = phone.sent()
    assert abs(dominant_frequency(sent, rate) - 600) < 2
    assert -15 < level_dbfs(sent) < -9


def test_a_wav_source_that_ends_makes_baresip_hang_up(
    baresip_factory: BaresipFactory, sipp: SippRunner, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "short.wav", 8000, tone(800, 1000, 8000, -12))
    callee = sipp.start("uas_answer", timeout=15)
    phone = baresip_factory("dave", source_wav=wav, pad_source_s=None)
    phone.start(dial=callee.uri())
    closed = phone.wait_closed(timeout=10)
    assert "end of file" in closed.get("param", "")
    callee.wait().assert_ok()  # the BYE came from baresip
