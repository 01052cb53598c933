"""The hand-written Pipecat frame codec against pipecat's own generated protobuf classes."""

import pytest
from pipecat.frames.protobufs import frames_pb2 as pb

from callboard.agents import pipecat_frames as frames


def test_audio_matches_the_documented_bytes_and_the_runtime() -> None:
    encoded = frames.encode_audio(b"\x01\x02", 16000, 1)
    assert encoded.hex() == "12091a02010220807d2801"  # PROVIDERS-AGENTS.md's example
    parsed = pb.Frame()
    parsed.ParseFromString(frames.encode_audio(b"\x00" * 640, 16000, 1))
    assert parsed.audio.audio == b"\x00" * 640
    assert (parsed.audio.sample_rate, parsed.audio.num_channels) == (16000, 1)


def test_text_and_transcription_parse_with_the_runtime() -> None:
    parsed = pb.Frame()
    parsed.ParseFromString(frames.encode_transcription("héllo", "callboard", "2026-01-01"))
    assert parsed.WhichOneof("frame") == "transcription"
    assert (parsed.transcription.text, parsed.transcription.user_id) == ("héllo", "callboard")
    parsed.ParseFromString(frames.encode_text("say this"))
    assert parsed.text.text == "say this"
    parsed.ParseFromString(frames.encode_message({"a": 1}))
    assert parsed.message.data == '{"a": 1}'
    parsed.ParseFromString(frames.encode_interruption())
    assert parsed.WhichOneof("frame") == "interruption"


def test_decoding_what_a_bot_sends() -> None:
    out = pb.Frame()
    out.audio.id, out.audio.name, out.audio.pts = 7, "OutputAudioRawFrame#1", 123
    out.audio.audio, out.audio.sample_rate, out.audio.num_channels = b"abcd", 24000, 1
    assert frames.decode(out.SerializeToString()) == frames.Audio(b"abcd", 24000, 1)
    cut = pb.Frame()
    cut.interruption.id = 9
    assert frames.decode(cut.SerializeToString()) == frames.Interruption()
    message = pb.Frame()
    message.message.data = '{"label": "rtvi-ai", "type": "bot-ready"}'
    assert frames.decode(message.SerializeToString()) == frames.Message(
        {"label": "rtvi-ai", "type": "bot-ready"}
    )
    message.message.data = "not json"
    assert frames.decode(message.SerializeToString()) == frames.Message(None)
    assert frames.decode(b"") is None  # no oneof set: nothing to do


@pytest.mark.parametrize("garbage", [b"\x12\x09\x1a", b"\xff\xff\xff", b"\x12\x02\x1a\x05"])
def test_garbage_is_a_frame_error(garbage: bytes) -> None:
    with pytest.raises(frames.FrameError):
        frames.decode(garbage)
