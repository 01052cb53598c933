import itertools

import pytest

from callboard.media.quality import mos_score, r_to_mos


def test_clean_g711_is_about_4_4() -> None:
    assert mos_score(0.0, 0.0) == pytest.approx(4.4, abs=0.05)


def test_loss_lowers_the_score() -> None:
    clean = mos_score(0.0, 5.0)
    lossy = mos_score(0.05, 5.0)
    assert lossy < clean - 0.3


def test_monotonic_in_loss() -> None:
    scores = [mos_score(loss / 100, 10.0) for loss in range(0, 60, 2)]
    assert all(b < a for a, b in itertools.pairwise(scores))


def test_monotonic_in_jitter_and_rtt() -> None:
    by_jitter = [mos_score(0.01, jitter) for jitter in range(0, 300, 10)]
    assert all(b < a for a, b in itertools.pairwise(by_jitter))
    by_rtt = [mos_score(0.0, 0.0, rtt) for rtt in range(0, 1000, 50)]
    assert all(b < a for a, b in itertools.pairwise(by_rtt))


def test_without_plc_loss_hurts_more() -> None:
    assert mos_score(0.02, 0.0, plc=False) < mos_score(0.02, 0.0, plc=True) - 0.3


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722", "opus", "pcmu", "unknown"])
def test_range(codec: str) -> None:
    for loss in (0.0, 0.3, 1.0):
        for jitter in (0.0, 100.0, 5000.0):
            assert 1.0 <= mos_score(loss, jitter, 400.0, codec) <= 4.5


def test_r_to_mos_reference_points() -> None:
    assert r_to_mos(93.2) == pytest.approx(4.41, abs=0.01)
    assert r_to_mos(50) == pytest.approx(2.58, abs=0.01)
    assert r_to_mos(-5) == 1.0
    assert r_to_mos(120) == 4.5
