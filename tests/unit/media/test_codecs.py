import numpy as np
import pytest

from callboard.media.codecs import SUPPORTED_CODECS, Codec, create_codec, normalize_codec_name

from .audio_analysis import db, peak_frequency, rms, tone

EXPECTED = {
    # name: (rtp_clock_rate, sample_rate, static PT, sdp channels, ts step at 20 ms)
    "PCMU": (8000, 8000, 0, 1, 160),
    "PCMA": (8000, 8000, 8, 1, 160),
    "G722": (8000, 16000, 9, 1, 160),
    "opus": (48000, 16000, None, 2, 960),  # codes at its mix rate; starts at 16 kHz
}


def test_supported_codecs_spelling() -> None:
    assert SUPPORTED_CODECS == ("PCMU", "PCMA", "G722", "opus")


@pytest.mark.parametrize("name", SUPPORTED_CODECS)
def test_codec_attributes(name: str) -> None:
    codec = create_codec(name)
    assert isinstance(codec, Codec)
    assert codec.name == name
    rtp_rate, rate, pt, channels, step = EXPECTED[name]
    assert codec.rtp_clock_rate == rtp_rate
    assert codec.sample_rate == rate
    assert codec.static_payload_type == pt
    assert codec.sdp_channels == channels
    assert codec.timestamp_step() == step
    assert codec.timestamp_step(30) == step * 3 // 2


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("pcmu", "PCMU"), ("Pcma", "PCMA"), ("g722", "G722"), ("OPUS", "opus"), ("opus", "opus")],
)
def test_names_are_case_insensitive(given: str, canonical: str) -> None:
    assert normalize_codec_name(given) == canonical
    assert create_codec(given).name == canonical


@pytest.mark.parametrize("name", ["G729", "", "pcm"])
def test_unknown_codec_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=f"unknown codec: {name}"):
        create_codec(name)
    with pytest.raises(ValueError):
        normalize_codec_name(name)


def _round_trip(name: str, frames: int = 50) -> tuple[np.ndarray, np.ndarray, int]:
    encoder, decoder = create_codec(name), create_codec(name)
    rate = encoder.sample_rate
    n = rate // 50
    signal = tone(1000.0, rate, n * frames, amplitude=8000.0)
    decoded = [decoder.decode(encoder.encode(signal[i * n : (i + 1) * n])) for i in range(frames)]
    return signal, np.concatenate(decoded), rate


# Measured delays, checked loosely here and quoted in the module docs.
MAX_DELAY_MS = {"PCMU": 0.0, "PCMA": 0.0, "G722": 3.0, "opus": 10.0}


@pytest.mark.parametrize("name", SUPPORTED_CODECS)
def test_tone_keeps_frequency_and_level(name: str) -> None:
    signal, decoded, rate = _round_trip(name)
    assert len(decoded) == len(signal)
    settled = decoded[len(decoded) // 2 :]
    assert abs(peak_frequency(settled, rate) - 1000.0) < 5.0
    assert abs(db(rms(settled) / rms(signal))) < 1.0


@pytest.mark.parametrize("name", SUPPORTED_CODECS)
def test_codec_delay(name: str) -> None:
    """Delay = lag of the best match between input and output of a chirp-like signal."""
    encoder, decoder = create_codec(name), create_codec(name)
    rate = encoder.sample_rate
    n = rate // 50
    rng = np.random.default_rng(1)
    # Band-limited noise bursts give an unambiguous cross-correlation peak.
    noise = rng.normal(0, 3000, n * 30)
    kernel = np.hanning(rate // 1000 * 2)  # gentle low-pass keeps the codecs in band
    signal = np.convolve(noise, kernel / kernel.sum() * 4, mode="same").astype(np.int16)
    out = np.concatenate(
        [decoder.decode(encoder.encode(signal[i * n : (i + 1) * n])) for i in range(30)]
    ).astype(np.float64)
    window = signal[n * 5 : n * 25].astype(np.float64)
    max_lag = int(rate * 0.012)
    scores = [np.dot(window, out[n * 5 + lag : n * 25 + lag]) for lag in range(max_lag)]
    delay_ms = int(np.argmax(scores)) / rate * 1000
    assert delay_ms <= MAX_DELAY_MS[name]
    assert abs(delay_ms - create_codec(name).delay_ms) <= 1.5


def test_g711_decodes_any_ptime() -> None:
    codec = create_codec("PCMA")
    assert len(codec.decode(bytes(240))) == 240  # 30 ms


def test_opus_packet_size_matches_bitrate() -> None:
    encoder = create_codec("opus")
    n = encoder.sample_rate // 50
    signal = tone(440.0, encoder.sample_rate, n * 50)
    sizes = [len(encoder.encode(signal[i * n : (i + 1) * n])) for i in range(50)]
    # 48 kbit/s at 20 ms is 120 bytes per packet on average.
    assert 90 <= np.mean(sizes[10:]) <= 150


@pytest.mark.parametrize("rate", [8000, 12000, 16000, 24000, 48000])
def test_opus_codes_at_the_rate_it_is_set_to(rate: int) -> None:
    encoder, decoder = create_codec("opus"), create_codec("opus")
    assert rate in encoder.rates
    encoder.set_rate(rate)
    decoder.set_rate(rate)
    n = rate // 50
    signal = tone(1000.0, rate, n * 25, amplitude=8000.0)
    decoded = np.concatenate(
        [decoder.decode(encoder.encode(signal[i * n : (i + 1) * n])) for i in range(25)]
    )
    assert len(decoded) == len(signal)
    assert encoder.timestamp_step() == 960  # the RTP clock stays at 48 kHz
    assert abs(peak_frequency(decoded[-n * 10 :], rate) - 1000.0) < 10.0
    assert abs(db(rms(decoded[-n * 10 :]) / rms(signal))) < 1.0
    assert len(decoder.conceal()) == n


def test_codecs_of_one_rate_refuse_another() -> None:
    for name in ("PCMU", "PCMA", "G722"):
        with pytest.raises(ValueError):
            create_codec(name).set_rate(48000)
    with pytest.raises(ValueError):
        create_codec("opus").set_rate(44100)


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "G722"])
def test_concealment_fades_the_last_frame_out(name: str) -> None:
    encoder, decoder = create_codec(name), create_codec(name)
    n = encoder.sample_rate // 50
    signal = tone(1000.0, encoder.sample_rate, n * 5)
    for i in range(5):
        decoder.decode(encoder.encode(signal[i * n : (i + 1) * n]))
    levels = [rms(decoder.conceal()) for _ in range(5)]
    assert levels[0] > 0.5 * rms(signal)
    assert levels[0] > levels[1] > levels[2]
    assert levels[3] == levels[4] == 0.0
    # A good packet resets the fade.
    decoder.decode(encoder.encode(signal[:n]))
    assert rms(decoder.conceal()) > 0.5 * rms(signal)


def test_opus_concealment_uses_decoder_plc() -> None:
    encoder, decoder = create_codec("opus"), create_codec("opus")
    rate = encoder.sample_rate
    n = rate // 50
    signal = tone(1000.0, rate, n * 20)
    for i in range(20):
        decoder.decode(encoder.encode(signal[i * n : (i + 1) * n]))
    concealed = decoder.conceal()
    assert len(concealed) == n
    assert rms(concealed) > 0.2 * rms(signal)
    # PLC extrapolates the tone (unlike a fade of a repeated frame, it keeps the pitch).
    assert abs(peak_frequency(concealed, rate) - 1000.0) < 60.0
    later = [rms(decoder.conceal()) for _ in range(4)]
    assert later[-1] < rms(concealed)


@pytest.mark.parametrize("name", SUPPORTED_CODECS)
def test_concealment_before_any_packet_is_silence(name: str) -> None:
    codec = create_codec(name)
    frame = codec.conceal()
    assert len(frame) == codec.sample_rate // 50
    assert not frame.any()


def test_opus_through_libopus_and_through_ffmpeg_understand_each_other() -> None:
    from callboard.media.codecs import OpusCodec, PyAvOpusCodec

    direct, fallback = OpusCodec(), PyAvOpusCodec()
    direct.set_rate(48000)  # the fallback codes at 48 kHz only
    signal = tone(700.0, 48000, 960 * 25)
    frames = [signal[i * 960 : (i + 1) * 960] for i in range(25)]
    one = np.concatenate([fallback.decode(direct.encode(f)) for f in frames])
    other = np.concatenate([direct.decode(fallback.encode(f)) for f in frames])
    for heard in (one, other):
        assert abs(peak_frequency(heard[-4800:], 48000) - 700.0) < 20.0
        assert rms(heard[-4800:]) > 0.5 * rms(signal)
