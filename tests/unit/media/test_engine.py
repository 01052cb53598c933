import math

import numpy as np
import pytest

from callboard.media.engine import LegMedia, MediaEngine
from callboard.media.g711 import ALAW, ULAW, G711Law
from callboard.media.speaking import SpeakingAnalyser

from .audio_analysis import db, peak_frequency, rms, tone

AMPLITUDE = 10000.0
SETTLE = 5  # frames: covers the resamplers' few ms of delay


class FakeEndpoint:
    """Gives queued frames (None once they run out) and keeps copies of what it hears."""

    law = None  # plain PCM, not a G.711 endpoint that the engine would code in bulk
    forward_key: str | None = None  # nor one whose packets could be forwarded

    def __init__(self, sample_rate: int, frames: list[np.ndarray | None] | None = None) -> None:
        self.sample_rate = sample_rate
        self.frames: list[np.ndarray | None] = frames if frames is not None else []
        self.written: list[np.ndarray] = []

    def read_frame(self) -> np.ndarray | None:
        return self.frames.pop(0) if self.frames else None

    def write_frame(self, pcm: np.ndarray) -> None:
        self.written.append(pcm.copy())

    def prefer_rate(self, rate: int) -> None:
        self.preferred = rate  # a fixed-rate codec's endpoint stays where it is

    def heard(self, start: int = SETTLE) -> np.ndarray:
        return np.concatenate(self.written[start:])


def tone_frames(freq: float, rate: int, count: int, start: int = 0) -> list[np.ndarray | None]:
    """`count` 20 ms frames of one continuous tone, from frame `start` of it on."""
    n = rate // 50
    signal = tone(freq, rate, n * (start + count), amplitude=AMPLITUDE)[n * start :]
    return [signal[i * n : (i + 1) * n] for i in range(count)]


def line_db(x: np.ndarray, rate: int, freq: float) -> float:
    """Amplitude of the spectral line at `freq` (Hann window), in dB re 1."""
    data = np.asarray(x, dtype=np.float64)
    window = np.hanning(len(data))
    spectrum = np.abs(np.fft.rfft(data * window)) * 2 / window.sum()
    k = round(freq * len(data) / rate)
    return db(float(spectrum[k - 2 : k + 3].max()))


def assert_hears(
    frames: list[np.ndarray], rate: int, tones: list[float], silent: list[float]
) -> None:
    """Every frame is 20 ms at `rate`; each of `tones` at the source level, `silent` absent."""
    assert all(len(frame) == rate // 50 for frame in frames)
    heard = np.concatenate(frames)
    if len(tones) == 1:
        assert abs(peak_frequency(heard, rate) - tones[0]) < 3.0
        assert abs(db(rms(heard) / (AMPLITUDE / math.sqrt(2)))) < 1.0
    loudest = min(line_db(heard, rate, f) for f in tones)
    for freq in tones:
        assert abs(line_db(heard, rate, freq) - db(AMPLITUDE)) < 1.0, freq
    for freq in silent:
        assert line_db(heard, rate, freq) < loudest - 40.0, freq


def _room(engine: MediaEngine, room: str, **endpoints: FakeEndpoint) -> dict[str, LegMedia]:
    legs = {key: engine.attach(key, endpoint) for key, endpoint in endpoints.items()}
    for media in legs.values():
        engine.join_room(media, room)
    return legs


def _run(engine: MediaEngine, ticks: int) -> None:
    for _ in range(ticks):
        engine.tick()


def test_8k_and_16k_parties_hear_each_other_and_not_themselves() -> None:
    engine = MediaEngine()
    narrow = FakeEndpoint(8000, tone_frames(1000.0, 8000, 55))
    wide = FakeEndpoint(16000, tone_frames(600.0, 16000, 55))
    _room(engine, "call", narrow=narrow, wide=wide)
    _run(engine, 55)
    assert_hears(wide.written[SETTLE:], 16000, [1000.0], silent=[600.0])
    assert_hears(narrow.written[SETTLE:], 8000, [600.0], silent=[1000.0])


def test_three_rates_in_one_room_each_hear_the_other_two() -> None:
    engine = MediaEngine()
    freqs = {8000: 700.0, 16000: 1100.0, 48000: 1900.0}
    endpoints = {rate: FakeEndpoint(rate, tone_frames(f, rate, 55)) for rate, f in freqs.items()}
    _room(engine, "conf", **{str(rate): ep for rate, ep in endpoints.items()})
    _run(engine, 55)
    for rate, endpoint in endpoints.items():
        others = [f for r, f in freqs.items() if r != rate]
        assert_hears(endpoint.written[SETTLE:], rate, others, silent=[freqs[rate]])


def test_rate_change_mid_call_keeps_audio_flowing_both_ways() -> None:
    engine = MediaEngine()
    switching = FakeEndpoint(8000, tone_frames(1000.0, 8000, 30))
    wide = FakeEndpoint(16000, tone_frames(600.0, 16000, 90))
    _room(engine, "call", switching=switching, wide=wide)
    _run(engine, 30)
    switching.sample_rate = 48000  # a re-INVITE to Opus
    switching.frames = tone_frames(1000.0, 48000, 60, start=30)
    _run(engine, 60)
    assert len(switching.written) == 90
    assert_hears(switching.written[SETTLE:30], 8000, [600.0], silent=[1000.0])
    assert_hears(switching.written[30 + SETTLE :], 48000, [600.0], silent=[1000.0])
    assert_hears(wide.written[SETTLE:30], 16000, [1000.0], silent=[600.0])
    assert_hears(wide.written[30 + SETTLE :], 16000, [1000.0], silent=[600.0])
    assert list(engine._lanes) == [(48000, 16000)]  # the emptied 8 kHz lane is gone


def test_detaching_a_leg_in_the_middle_of_a_lane_leaves_no_clicks() -> None:
    """Three 8 kHz legs share a lane; the middle one leaves and the last takes its row."""
    engine = MediaEngine()
    first = FakeEndpoint(8000, tone_frames(500.0, 8000, 60))
    middle = FakeEndpoint(8000, tone_frames(1500.0, 8000, 60))
    last = FakeEndpoint(8000, tone_frames(900.0, 8000, 60))
    first_peer = FakeEndpoint(16000, tone_frames(1200.0, 16000, 60))
    middle_peer = FakeEndpoint(16000, tone_frames(300.0, 16000, 60))
    last_peer = FakeEndpoint(16000, tone_frames(1700.0, 16000, 60))
    _room(engine, "one", first=first, first_peer=first_peer)
    _room(engine, "two", middle=middle, middle_peer=middle_peer)
    legs = _room(engine, "three", last=last, last_peer=last_peer)
    _run(engine, 30)
    seat = legs["last"].seat
    assert seat is not None
    assert seat.row == 2
    engine.detach("middle")
    _run(engine, 30)
    assert seat.row == 1
    assert len(middle.written) == 30

    for listener, rate, freq in [
        (first, 8000, 1200.0),
        (first_peer, 16000, 500.0),
        (last, 8000, 1700.0),
        (last_peer, 16000, 900.0),
    ]:
        assert_hears(listener.written[SETTLE:], rate, [freq], silent=[])
        # No step beyond what a sine of this amplitude and frequency can do between samples.
        steepest = 2 * math.pi * freq / rate * AMPLITUDE
        jumps = np.abs(np.diff(listener.heard().astype(np.int32)))
        assert jumps.max() < 1.2 * steepest, (rate, freq)
    # The middle peer now sits alone and hears silence.
    assert not np.any(middle_peer.heard(31))


def test_a_leg_without_media_yet_sends_silence() -> None:
    engine = MediaEngine()
    quiet = FakeEndpoint(8000)  # read_frame() gives None throughout
    wide = FakeEndpoint(16000, tone_frames(600.0, 16000, 55))
    _room(engine, "call", quiet=quiet, wide=wide)
    events: list[str] = []
    engine.add_analyser("quiet", SpeakingAnalyser(events.append))
    _run(engine, 55)
    assert rms(wide.heard(0)) == 0
    assert_hears(quiet.written[SETTLE:], 8000, [600.0], silent=[])
    assert events == []


@pytest.mark.parametrize(
    ("frames", "muted", "expected"),
    [("tone", False, ["started"]), ("none", False, []), ("tone", True, [])],
)
def test_speaking_detection_of_an_8k_leg(frames: str, muted: bool, expected: list[str]) -> None:
    engine = MediaEngine()
    given = tone_frames(1000.0, 8000, 50)
    if frames == "none":  # two loud frames (too short to start), then no media at all
        given[2:] = [None] * 48
    narrow = FakeEndpoint(8000, given)
    wide = FakeEndpoint(16000)
    legs = _room(engine, "call", narrow=narrow, wide=wide)
    events: list[str] = []
    engine.add_analyser("narrow", SpeakingAnalyser(events.append))
    legs["narrow"].muted = muted
    _run(engine, 50)  # one second
    assert events == expected
    assert (rms(wide.heard(SETTLE)) > 1000) == (frames == "tone" and not muted)


class FakeG711Endpoint(FakeEndpoint):
    """An 8 kHz G.711 endpoint: whole frames travel encoded, as an RTP leg's do."""

    def __init__(self, law: G711Law, frames: list[np.ndarray | None], *, as_pcm: bool) -> None:
        super().__init__(8000, frames)
        self.law = law  # type: ignore[assignment]
        self.as_pcm = as_pcm  # give PCM (like a concealed or re-cut frame) instead of bytes
        self.encoded_reads = 0

    def read_encoded(self) -> np.ndarray | bytes | None:
        frame = self.read_frame()
        if frame is None or self.as_pcm:
            return frame
        self.encoded_reads += 1
        return self.law.encode_rows(frame.reshape(1, -1))

    def write_encoded(self, payload: bytes) -> None:
        assert len(payload) == 160
        self.written.append(self.law.decode_table.take(np.frombuffer(payload, np.uint8)))


def _g711_round_trip(law: G711Law, frame: np.ndarray) -> np.ndarray:
    return law.decode_table.take(np.frombuffer(law.encode_rows(frame.reshape(1, -1)), np.uint8))


def _mixed_lane_call(coded: bool, as_pcm: bool = False) -> dict[str, FakeEndpoint]:
    """PCMU, PCMA and plain 8 kHz legs plus a 16 kHz listener in one room. The G.711 legs
    send G.711-quantised tones, so coding them in bulk or not must not change what anyone
    hears. coded=False gives the same legs as plain PCM endpoints."""
    ticks = 40
    sources = {"u": (ULAW, 700.0), "a": (ALAW, 1100.0)}
    legs: dict[str, FakeEndpoint] = {}
    for key, (law, freq) in sources.items():
        frames: list[np.ndarray | None] = [
            _g711_round_trip(law, f) for f in tone_frames(freq, 8000, ticks) if f is not None
        ]
        legs[key] = (
            FakeG711Endpoint(law, frames, as_pcm=as_pcm) if coded else FakeEndpoint(8000, frames)
        )
    legs["p"] = FakeEndpoint(8000, tone_frames(1700.0, 8000, ticks))
    legs["w"] = FakeEndpoint(16000)
    engine = MediaEngine()
    _room(engine, "r", **legs)
    _run(engine, ticks)
    return legs


@pytest.mark.parametrize("as_pcm", [False, True])
def test_g711_legs_coded_in_bulk_sound_exactly_like_pcm_legs(as_pcm: bool) -> None:
    coded, plain = _mixed_lane_call(True, as_pcm), _mixed_lane_call(False)
    ulaw, alaw = coded["u"], coded["a"]
    assert isinstance(ulaw, FakeG711Endpoint) and isinstance(alaw, FakeG711Endpoint)
    assert ulaw.encoded_reads == (0 if as_pcm else 40)
    # What the others hear is bit-identical: bulk decoding is exact.
    for key in ("p", "w"):
        assert len(coded[key].written) == len(plain[key].written) == 40
        for got, want in zip(coded[key].written, plain[key].written, strict=True):
            assert np.array_equal(got, want), key
    # What the G.711 legs hear is exactly the law's round trip of the plain legs' frames.
    for key, law in (("u", ULAW), ("a", ALAW)):
        for got, want in zip(coded[key].written, plain[key].written, strict=True):
            assert np.array_equal(got, _g711_round_trip(law, want)), key
    assert_hears(coded["w"].written[SETTLE:], 16000, [700.0, 1100.0, 1700.0], [])
    # Each hears the other two; its own tone is absent down to G.711's quantisation noise.
    for leg, own, others in ((ulaw, 700.0, [1100.0, 1700.0]), (alaw, 1100.0, [700.0, 1700.0])):
        assert_hears(leg.written[SETTLE:], 8000, others, [])
        assert line_db(leg.heard(), 8000, own) < db(AMPLITUDE) - 30.0


class Recorder:
    """A tap that keeps copies of what it is fed."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[np.ndarray | None, ...]] = []
        self.members: list[list[str]] = []
        self.rates: list[int] = []

    def feed(self, first: np.ndarray | None, second: object, rate: int) -> None:
        self.rates.append(rate)
        if self.fail:
            raise RuntimeError("broken tap")
        if isinstance(second, np.ndarray):  # a leg tap: (received, heard)
            self.calls.append((None if first is None else first.copy(), second.copy()))
        else:  # a room tap: (mix, [(key, frame)])
            assert first is not None
            members = list(second)  # type: ignore[call-overload]
            self.calls.append((first.copy(), *(f if f is None else f.copy() for _, f in members)))
            self.members.append([key for key, _ in members])


def test_taps_get_what_a_leg_says_and_hears_and_the_room_mix() -> None:
    engine = MediaEngine()
    ticks = 20
    a = FakeEndpoint(16000, tone_frames(500.0, 16000, ticks))
    b = FakeEndpoint(16000, tone_frames(900.0, 16000, ticks))
    legs = _room(engine, "r", a=a, b=b)
    leg_tap, room_tap, broken = Recorder(), Recorder(), Recorder(fail=True)
    broken_handle = engine.add_leg_tap("a", broken)
    engine.add_leg_tap("a", leg_tap)
    legs["a"].muted = True  # taps still get a muted leg's own audio
    engine.add_room_tap("r", room_tap)
    _run(engine, ticks)
    assert not broken_handle.attached  # the broken tap was dropped, the clock went on
    assert legs["a"].taps == [leg_tap]
    received = np.concatenate([c[0] for c in leg_tap.calls if c[0] is not None])
    assert abs(peak_frequency(received, 16000) - 500.0) < 3.0
    heard = np.concatenate([c[1] for c in leg_tap.calls])  # type: ignore[misc]
    assert abs(peak_frequency(heard, 16000) - 900.0) < 3.0
    assert len(heard) == ticks * 320
    # The room mix leaves the muted leg out; members come with their own input.
    assert room_tap.members == [["a", "b"]] * ticks
    mix = np.concatenate([c[0] for c in room_tap.calls])  # type: ignore[misc]
    assert np.array_equal(mix, np.concatenate(tone_frames(900.0, 16000, ticks)))  # type: ignore[arg-type]
    own_a = np.concatenate([c[1] for c in room_tap.calls])  # type: ignore[misc]
    assert np.array_equal(own_a, np.concatenate(tone_frames(500.0, 16000, ticks)))  # type: ignore[arg-type]


def test_a_room_tap_ticks_with_silence_while_the_room_is_empty() -> None:
    engine = MediaEngine()
    engine.room("empty")
    tap = Recorder()
    engine.add_room_tap("empty", tap)
    _run(engine, 3)
    assert len(tap.calls) == 3
    assert all(c[0] is not None and not c[0].any() and len(c) == 1 for c in tap.calls)


# -- rooms that mix at 8 or 48 kHz -------------------------------------------------------


class _Source:
    """A FrameSource: a 16 kHz tone for `count` frames."""

    def __init__(self, freq: float, count: int) -> None:
        self.frames = tone_frames(freq, 16000, count)

    def next_frame(self) -> np.ndarray | None:
        return self.frames.pop(0) if self.frames else None


@pytest.mark.parametrize("room_rate", [8000, 48000])
def test_every_rate_in_a_room_of_another_mixing_rate(room_rate: int) -> None:
    engine = MediaEngine()
    engine.room("conf", room_rate)
    freqs = {8000: 700.0, 16000: 1100.0, 48000: 1900.0}
    if room_rate == 8000:
        freqs[48000] = 2900.0  # passes an 8 kHz mix (below 4 kHz)
        freqs[16000] = 1500.0
    endpoints = {rate: FakeEndpoint(rate, tone_frames(f, rate, 55)) for rate, f in freqs.items()}
    legs = _room(engine, "conf", **{str(rate): ep for rate, ep in endpoints.items()})
    _run(engine, 55)
    for rate, endpoint in endpoints.items():
        others = [f for r, f in freqs.items() if r != rate]
        assert_hears(endpoint.written[SETTLE:], rate, others, silent=[freqs[rate]])
    # The endpoint at the room's rate is mixed as it is: no lane, no resampling.
    assert legs[str(room_rate)].seat is None
    assert sorted(engine._lanes) == sorted((r, room_rate) for r in freqs if r != room_rate)


def test_an_8k_room_of_g711_legs_resamples_nothing() -> None:
    engine = MediaEngine()
    engine.room("narrow", 8000)
    a = FakeEndpoint(8000, tone_frames(500.0, 8000, 55))
    b = FakeEndpoint(8000, tone_frames(900.0, 8000, 55))
    _room(engine, "narrow", a=a, b=b)
    _run(engine, 55)
    assert engine._lanes == {}
    # Nothing to settle: the mix is exact, sample for sample.
    assert np.array_equal(np.concatenate(a.written), np.concatenate(tone_frames(900.0, 8000, 55)))
    assert np.array_equal(np.concatenate(b.written), np.concatenate(tone_frames(500.0, 8000, 55)))


def test_room_and_leg_sources_are_heard_at_the_rooms_rate() -> None:
    engine = MediaEngine()
    room = engine.room("wide", 48000)
    listener = FakeEndpoint(48000)
    legs = _room(engine, "wide", listener=listener)
    room.sources.append(_Source(800.0, 60))
    legs["listener"].sources.append(_Source(2300.0, 60))
    _run(engine, 55)
    assert_hears(listener.written[SETTLE:], 48000, [800.0, 2300.0], silent=[1600.0])


def test_moving_to_a_room_of_another_rate_follows_it() -> None:
    engine = MediaEngine()
    engine.room("eight", 8000)
    engine.room("wide", 48000)
    mover = FakeEndpoint(16000, tone_frames(1000.0, 16000, 90))
    eight = FakeEndpoint(8000, tone_frames(600.0, 8000, 90))
    wide = FakeEndpoint(48000, tone_frames(1700.0, 48000, 90))
    legs = _room(engine, "eight", mover=mover, eight=eight)
    _room(engine, "wide", wide=wide)
    tap = Recorder()
    engine.add_leg_tap("mover", tap)
    _run(engine, 30)
    engine.join_room(legs["mover"], "wide")
    _run(engine, 60)
    assert_hears(mover.written[SETTLE:30], 16000, [600.0], silent=[1000.0, 1700.0])
    assert_hears(mover.written[30 + SETTLE :], 16000, [1700.0], silent=[1000.0, 600.0])
    assert_hears(wide.written[30 + SETTLE :], 48000, [1000.0], silent=[600.0, 1700.0])
    left_alone = np.concatenate(eight.written[30 + SETTLE :])
    assert line_db(left_alone, 8000, 1000.0) < db(AMPLITUDE) - 40.0
    # Taps get the leg's audio at its mix rate, and are told which.
    assert tap.rates == [8000] * 30 + [48000] * 60
    assert [len(c[1]) for c in tap.calls] == [160] * 30 + [960] * 60  # type: ignore[arg-type]
    assert sorted(engine._lanes) == [(16000, 48000)]  # the emptied (16000, 8000) lane is gone


class FollowingEndpoint(FakeEndpoint):
    """An endpoint whose codec codes at any rate (Opus): it moves to its mix rate, and its
    queued frames are generated at whatever rate it is at when the clock reads them."""

    def __init__(self, freq: float) -> None:
        super().__init__(16000)
        self.freq = freq
        self.read = 0

    def read_frame(self) -> np.ndarray | None:
        self.read += 1
        return tone_frames(self.freq, self.sample_rate, 1, start=self.read)[0]

    def prefer_rate(self, rate: int) -> None:
        self.sample_rate = rate


def test_an_endpoint_that_can_follows_its_mix_rate_and_nothing_is_resampled() -> None:
    engine = MediaEngine()
    engine.room("eight", 8000)
    engine.room("wide", 48000)
    follower = FollowingEndpoint(1000.0)
    wide = FakeEndpoint(48000, tone_frames(1700.0, 48000, 90))
    eight = FakeEndpoint(8000, tone_frames(600.0, 8000, 90))
    legs = _room(engine, "wide", follower=follower, wide=wide)
    _room(engine, "eight", eight=eight)
    _run(engine, 30)
    assert follower.sample_rate == 48000
    assert legs["follower"].seat is None  # no lane: the codec itself is at 48 kHz
    engine.join_room(legs["follower"], "eight")
    _run(engine, 60)
    assert follower.sample_rate == 8000
    assert legs["follower"].seat is None
    assert_hears(follower.written[SETTLE:30], 48000, [1700.0], silent=[1000.0, 600.0])
    assert_hears(follower.written[30 + SETTLE :], 8000, [600.0], silent=[1000.0])
    assert_hears(wide.written[SETTLE:30], 48000, [1000.0], silent=[1700.0])
    assert_hears(eight.written[30 + SETTLE :], 8000, [1000.0], silent=[600.0])


class PacketEndpoint(FakeEndpoint):
    """An endpoint on a codec whose packets can be forwarded: each frame read comes with a
    packet (its index as bytes) unless `lost`; keeps what was forwarded to it, by tick."""

    def __init__(self, name: str, freq: float, key: str = "opus") -> None:
        super().__init__(16000)
        self.forward_key = key
        self.name = name
        self.freq = freq
        self.ticks = 0
        self.lost: set[int] = set()
        self.last_payload: bytes | None = None
        self.forwarded: dict[int, bytes] = {}
        self.encoded: list[int] = []  # ticks whose heard frame was written (to encode)

    def read_frame(self) -> np.ndarray | None:
        self.ticks += 1
        tick = self.ticks
        self.last_payload = None if tick in self.lost else f"{self.name}{tick}".encode()
        return tone_frames(self.freq, 16000, 1, start=tick)[0]

    def write_frame(self, pcm: np.ndarray) -> None:
        super().write_frame(pcm)
        self.encoded.append(self.ticks)

    def forward(self, payload: bytes) -> None:
        self.forwarded[self.ticks] = payload


def test_a_leg_that_hears_one_other_on_its_codec_is_sent_its_packets() -> None:
    engine = MediaEngine()
    a, b = PacketEndpoint("a", 700.0), PacketEndpoint("b", 1100.0)
    legs = _room(engine, "call", a=a, b=b)
    b.lost = {5}
    _run(engine, 10)
    assert a.forwarded == {t: f"b{t}".encode() for t in range(1, 11) if t != 5}
    assert a.encoded == [5]  # a loss is concealed and encoded instead
    assert b.forwarded == {t: f"a{t}".encode() for t in range(1, 11)}
    assert engine.forwarded == 19
    # What a leg hears is still computed for its taps and analysers: the other's audio.
    tap = Recorder()
    engine.add_leg_tap("a", tap)
    _run(engine, 1)
    heard = tap.calls[-1][1]
    assert heard is not None
    assert abs(peak_frequency(np.asarray(heard), 16000) - 1100.0) < 60.0
    # Anything else in what it hears, and it is encoded again.
    for change in ("mute", "deaf", "third", "source"):
        engine2 = MediaEngine()
        a2, b2 = PacketEndpoint("a", 700.0), PacketEndpoint("b", 1100.0)
        legs = _room(engine2, "call", a=a2, b=b2)
        if change == "mute":
            legs["b"].muted = True
        elif change == "deaf":
            legs["a"].deaf = True
        elif change == "third":
            _room(engine2, "call", c=FakeEndpoint(16000, tone_frames(300.0, 16000, 5)))
        else:
            engine2.room("call").sources.append(_Source(300.0, 5))
        _run(engine2, 3)
        assert a2.forwarded == {} and a2.encoded == [1, 2, 3], change


def test_legs_on_different_codecs_are_not_forwarded_to_each_other() -> None:
    engine = MediaEngine()
    a, b = PacketEndpoint("a", 700.0, key="opus"), PacketEndpoint("b", 1100.0, key="G722")
    _room(engine, "call", a=a, b=b)
    _run(engine, 3)
    assert a.forwarded == b.forwarded == {}
    assert a.encoded == b.encoded == [1, 2, 3]


def test_room_taps_are_fed_at_the_rooms_rate() -> None:
    engine = MediaEngine()
    engine.room("wide", 48000)
    tap = Recorder()
    engine.add_room_tap("wide", tap)
    _room(engine, "wide", a=FakeEndpoint(8000, tone_frames(700.0, 8000, 10)))
    _run(engine, 10)
    assert tap.rates == [48000] * 10
    assert all(len(c[0]) == 960 for c in tap.calls)  # type: ignore[arg-type]


def test_a_room_mixes_at_one_of_the_mixing_rates() -> None:
    with pytest.raises(ValueError, match="mixes at one of"):
        MediaEngine().room("odd", 44100)


def test_g711_legs_in_an_8k_room_are_coded_in_bulk_and_mixed_exactly() -> None:
    engine = MediaEngine()
    engine.room("narrow", 8000)
    ticks = 30
    frames = {
        key: [_g711_round_trip(law, f) for f in tone_frames(freq, 8000, ticks) if f is not None]
        for key, law, freq in (("u", ULAW, 700.0), ("a", ALAW, 1300.0))
    }
    u = FakeG711Endpoint(ULAW, list(frames["u"]), as_pcm=False)
    a = FakeG711Endpoint(ALAW, list(frames["a"]), as_pcm=False)
    legs = _room(engine, "narrow", u=u, a=a)
    _run(engine, ticks)
    # One lane that converts nothing: the legs' frames are decoded and encoded in bulk.
    assert list(engine._lanes) == [(8000, 8000)]
    assert u.encoded_reads == a.encoded_reads == ticks
    assert legs["u"].seat is not None and legs["u"].coded is u
    # Nothing resampled: each hears exactly the other's frames through its own law.
    for got, want in zip(u.written, frames["a"], strict=True):
        assert np.array_equal(got, _g711_round_trip(ULAW, want))
    for got, want in zip(a.written, frames["u"], strict=True):
        assert np.array_equal(got, _g711_round_trip(ALAW, want))


# -- attachments: taps and analysers through handles ----------------------------------------


class LevelLog:
    """An Analyser that keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, float, bool]] = []

    def analyse(self, frame: np.ndarray, rate: int, level_dbfs: float, muted: bool) -> None:
        self.calls.append((len(frame), rate, level_dbfs, muted))


def test_analysers_hear_every_input_frame_with_its_level_until_removed() -> None:
    engine = MediaEngine()
    narrow = FakeEndpoint(8000, tone_frames(1000.0, 8000, 30))  # in a lane: levels in bulk
    wide = FakeEndpoint(16000, tone_frames(700.0, 16000, 30))  # at its mix rate: one by one
    legs = _room(engine, "r", narrow=narrow, wide=wide)
    logs = {key: LevelLog() for key in legs}
    handles = {key: engine.add_analyser(key, log) for key, log in logs.items()}
    legs["wide"].muted = True
    _run(engine, 10)
    handles["narrow"].remove()
    assert not handles["narrow"].attached and handles["wide"].attached
    _run(engine, 10)
    # A full-scale sine of amplitude AMPLITUDE reads 20*log10(AMPLITUDE/32768) dBFS.
    expected = db(AMPLITUDE / 32768)
    assert len(logs["narrow"].calls) == 10 and len(logs["wide"].calls) == 20
    for length, rate, level, muted in logs["narrow"].calls[2:]:
        assert (length, rate, muted) == (320, 16000, False)
        assert abs(level - expected) < 0.5
    assert all(call[3] for call in logs["wide"].calls)  # told it is muted, still analysed
    handles["narrow"].remove()  # twice: a no-op


def test_a_failing_analyser_is_dropped_and_the_others_go_on() -> None:
    class Broken:
        def analyse(self, frame: np.ndarray, rate: int, level_dbfs: float, muted: bool) -> None:
            raise RuntimeError("broken analyser")

    engine = MediaEngine()
    _room(engine, "r", a=FakeEndpoint(16000, tone_frames(500.0, 16000, 5)))
    broken = engine.add_analyser("a", Broken())
    log = LevelLog()
    engine.add_analyser("a", log)
    _run(engine, 5)
    assert not broken.attached and len(log.calls) == 5


def test_attachments_need_a_participant_or_room_and_outlive_nothing() -> None:
    engine = MediaEngine()
    with pytest.raises(KeyError):
        engine.add_leg_tap("nobody", Recorder())
    with pytest.raises(KeyError):
        engine.add_room_tap("nowhere", Recorder())
    with pytest.raises(KeyError):
        engine.add_analyser("nobody", LevelLog())
    _room(engine, "r", a=FakeEndpoint(16000))
    handle = engine.add_leg_tap("a", Recorder())
    engine.detach("a")
    handle.remove()  # the participant is gone: no error
    assert not handle.attached and engine.get("a") is None


class ToneSource:
    """A 16 kHz FrameSource of `count` frames of one tone."""

    def __init__(self, freq: float, count: int) -> None:
        self.frames = tone_frames(freq, 16000, count)

    def next_frame(self) -> np.ndarray | None:
        frame = self.frames.pop(0) if self.frames else None
        return frame


def test_a_leg_voice_is_heard_by_the_leg_alone_outside_rooms() -> None:
    engine = MediaEngine()
    caller, other = FakeEndpoint(8000), FakeEndpoint(16000)
    engine.attach("caller", caller)
    engine.attach("other", other)
    handle = engine.add_leg_voice("caller", ToneSource(1000.0, 30))
    _run(engine, 25)
    assert_hears(caller.written[SETTLE:25], 8000, [1000.0], [])
    assert rms(np.concatenate(other.written)) == 0
    handle.remove()
    _run(engine, 3)
    assert rms(np.concatenate(caller.written[-2:])) == 0


def test_a_leg_voice_goes_into_its_rooms_mix_and_follows_the_leg() -> None:
    """Everyone in the room hears it, the leg itself too, at each one's rate; out of the room
    only the leg hears it."""
    engine = MediaEngine()
    legs = _room(
        engine, "r", caller=FakeEndpoint(8000), wide=FakeEndpoint(48000), mid=FakeEndpoint(16000)
    )
    endpoints = {key: media.endpoint for key, media in legs.items()}
    engine.add_leg_voice("caller", ToneSource(1000.0, 200))
    _run(engine, 40)
    for key, rate in (("caller", 8000), ("wide", 48000), ("mid", 16000)):
        written = endpoints[key].written  # type: ignore[attr-defined]
        assert_hears(written[SETTLE:40], rate, [1000.0], [])
    engine.leave_room(legs["caller"])
    _run(engine, 40)
    assert_hears(endpoints["caller"].written[40 + SETTLE : 80], 8000, [1000.0], [])  # type: ignore[attr-defined]
    assert rms(np.concatenate(endpoints["mid"].written[40 + SETTLE : 80])) == 0  # type: ignore[attr-defined]
