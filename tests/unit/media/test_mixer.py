import numpy as np
import pytest

from callboard.media.mixer import BatchMixer


def _frames(rng: np.random.Generator, count: int, scale: int = 8000) -> list[np.ndarray]:
    return [rng.integers(-scale, scale, 320).astype(np.int16) for _ in range(count)]


def test_each_member_hears_the_rest_of_its_own_room_only() -> None:
    rng = np.random.default_rng(1)
    sizes = [2, 1, 4, 3]
    mixer = BatchMixer()
    mixer.set_layout(sizes)
    inputs = _frames(rng, sum(sizes))
    out = mixer.mix(inputs)
    start = 0
    for size in sizes:
        members = inputs[start : start + size]
        for j in range(size):
            expected = sum(m.astype(np.int32) for k, m in enumerate(members) if k != j)
            if size == 1:
                expected = np.zeros(320, dtype=np.int32)
            assert np.array_equal(out[start + j], np.asarray(expected, dtype=np.int32))
        start += size


def test_clips_instead_of_wrapping() -> None:
    mixer = BatchMixer()
    mixer.set_layout([3])
    loud = np.full(320, 30000, dtype=np.int16)
    out = mixer.mix([loud, loud, loud])
    assert out.dtype == np.int16
    assert np.all(out == 32767)
    out = mixer.mix([-loud, -loud, -loud])
    assert np.all(out == -32768)


def test_none_contributes_nothing_but_still_hears() -> None:
    rng = np.random.default_rng(2)
    a, b = _frames(rng, 2)
    mixer = BatchMixer()
    mixer.set_layout([3])
    out = mixer.mix([a, None, b])
    assert np.array_equal(out[1], (a.astype(np.int32) + b).astype(np.int16))
    assert np.array_equal(out[0], b)
    assert np.array_equal(out[2], a)


def test_room_extra_is_heard_by_everyone_in_that_room_only() -> None:
    mixer = BatchMixer()
    mixer.set_layout([2, 2])
    zero = np.zeros(320, dtype=np.int16)
    tone = np.full(320, 1000, dtype=np.int16)
    out = mixer.mix([zero] * 4, {1: tone})
    assert np.all(out[:2] == 0)
    assert np.all(out[2:] == 1000)


def test_layout_is_checked() -> None:
    mixer = BatchMixer()
    with pytest.raises(ValueError):
        mixer.set_layout([2, 0])
    mixer.set_layout([2])
    with pytest.raises(ValueError):
        mixer.mix([None])
