import numpy as np
import pytest

from callboard.media.resample import Resampler, ResamplerBank

from .audio_analysis import same_within_1_lsb, tone

PAIRS = [(8000, 16000), (16000, 8000), (48000, 16000), (16000, 48000)]


def _signals(rate: int, rows: int, frames: int, seed: int = 0) -> np.ndarray:
    """(rows, frames * rate // 50) int16: a different tone plus noise on every row."""
    rng = np.random.default_rng(seed)
    n = rate // 50 * frames
    out = np.empty((rows, n), dtype=np.int16)
    for row in range(rows):
        noise = rng.normal(0.0, 1500.0, n)
        signal = tone(300.0 + 470.0 * row, rate, n, amplitude=9000.0) + noise
        out[row] = np.clip(np.rint(signal), -32768, 32767)
    return out


def _frame(signal: np.ndarray, rate: int, index: int) -> np.ndarray:
    n = rate // 50
    return signal[index * n : (index + 1) * n]


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_bank_matches_one_resampler_per_row(src: int, dst: int) -> None:
    rows, frames = 4, 20
    signals = _signals(src, rows, frames)
    bank = ResamplerBank(src, dst)
    bank.resize(rows)
    singles = [Resampler(src, dst) for _ in range(rows)]
    for i in range(frames):
        for row in range(rows):
            bank.inputs()[row] = _frame(signals[row], src, i)
        out = bank.run()
        for row in range(rows):
            expected = singles[row].process(_frame(signals[row], src, i))
            assert same_within_1_lsb(out[row], expected), (i, row)
    assert np.any(out != 0)


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_rows_joining_and_leaving_keep_their_streams(src: int, dst: int) -> None:
    signals = _signals(src, 4, 30, seed=1)
    bank = ResamplerBank(src, dst)
    bank.resize(2)
    singles: dict[int, Resampler] = {0: Resampler(src, dst), 1: Resampler(src, dst)}
    row_of = {0: 0, 1: 1}  # stream -> row

    def step(i: int) -> None:
        inputs = bank.inputs()
        for stream, row in row_of.items():
            inputs[row] = _frame(signals[stream], src, i)
        out = bank.run()
        for stream, row in row_of.items():
            expected = singles[stream].process(_frame(signals[stream], src, i))
            assert same_within_1_lsb(out[row], expected), (i, stream)

    for i in range(8):
        step(i)
    # Two streams join mid-stream: their rows start from empty history.
    bank.resize(4)
    for stream in (2, 3):
        singles[stream] = Resampler(src, dst)
        row_of[stream] = stream
    for i in range(8, 16):
        step(i)
    # Stream 1 leaves: the last row (stream 3) takes its place and keeps its history.
    bank.move(3, 1)
    bank.resize(3)
    del row_of[1]
    row_of[3] = 1
    for i in range(16, 30):
        step(i)


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_full_scale_saturates_without_wrapping(src: int, dst: int) -> None:
    n_in = src // 50
    period = src // 100  # 100 Hz square wave, full scale
    square = np.where(np.arange(n_in * 10) % period < period // 2, 32767, -32767)
    bank = ResamplerBank(src, dst)
    bank.resize(2)
    outs = []
    for i in range(10):
        frame = square[i * n_in : (i + 1) * n_in]
        bank.inputs()[0] = frame
        bank.inputs()[1] = -frame
        outs.append(bank.run().copy())
    out = np.concatenate(outs, axis=1)[:, dst // 50 :].astype(np.int32)
    # The filter rings past full scale at every edge: those samples clip, they do not wrap.
    assert out.max() == 32767
    assert out.min() == -32768
    # A wrap-around jumps by ~65k between neighbours; band-limited edges take several samples.
    assert np.abs(np.diff(out, axis=1)).max() < 50000
    # On the plateaus the sign follows the input.
    delay = int(Resampler(src, dst).delay_ms * dst / 1000)  # type: ignore[operator]
    expected = np.where(np.arange(dst // 50 * 10) % (dst // 100) < dst // 200, 1, -1)
    expected = np.roll(expected, delay)[dst // 50 :]
    edges = np.flatnonzero(np.diff(expected)) + 1
    near_edge = np.zeros(len(expected), dtype=bool)
    for offset in range(-2, 3):
        near_edge[np.clip(edges + offset, 0, len(expected) - 1)] = True
    plateau = (np.abs(out[0]) > 16000) & ~near_edge
    assert plateau.mean() > 0.8
    assert np.all(np.sign(out[0][plateau]) == expected[plateau])
    assert np.all(np.sign(out[1][plateau]) == -expected[plateau])


@pytest.mark.parametrize(("src", "dst"), [(16000, 44100), (44100, 16000), (16000, 16000)])
def test_invalid_ratios_are_rejected(src: int, dst: int) -> None:
    with pytest.raises(ValueError):
        ResamplerBank(src, dst)


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_shapes_and_dtype(src: int, dst: int) -> None:
    bank = ResamplerBank(src, dst)
    assert bank.inputs().shape == (0, src // 50)
    assert bank.run().shape == (0, dst // 50)
    for rows in (3, 17, 5):  # 17 grows past the initial capacity
        bank.resize(rows)
        assert bank.inputs().shape == (rows, src // 50)
        out = bank.run()
        assert out.shape == (rows, dst // 50)
        assert out.dtype == np.int16
