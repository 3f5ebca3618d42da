"""The synthetic corpus: tag statistics, clip lengths, splits, determinism, and audible properties."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from lightning_tagging.data.sources.synthetic import SyntheticSource
from lightning_tagging.data.synth import TAGS, plan_clip, render_clip
from lightning_tagging.data.synth.plan import ClipPlan

N = 300


@pytest.fixture(scope="module")
def plans() -> list[ClipPlan]:
    return [plan_clip(0, i) for i in range(N)]


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64))))


def test_every_tag_occurs_and_frequencies_are_skewed(plans: list[ClipPlan]) -> None:
    counts = collections.Counter(tag for plan in plans for tag in plan.tags)
    assert set(counts) == set(TAGS) and len(TAGS) == 24
    shares = sorted(counts[t] / N for t in TAGS)
    assert shares[-1] > 0.4 and shares[-4] > 0.3  # head tags
    assert shares[0] < 0.08 and shares[3] < 0.12  # tail tags
    assert shares[-1] / shares[0] > 6


def test_tags_are_consistent(plans: list[ClipPlan]) -> None:
    for plan in plans:
        tags = set(plan.tags)
        assert len(tags & {"major", "minor", "dissonant"}) == 1  # every clip has harmony
        assert len(tags & {"fast", "slow"}) <= 1 and len(tags & {"loud", "quiet"}) <= 1
        assert ("vocal" in tags) == (len(tags & {"male vocal", "female vocal"}) == 1)
        assert tags & {"drums", "bass", "piano", "guitar", "brass", "flute", "bells", "synth", "vocal"}
        assert list(plan.tags) == [t for t in TAGS if t in tags]  # vocabulary order


def test_clips_last_10_to_30_seconds(plans: list[ClipPlan]) -> None:
    seconds = np.array([plan.n_samples / 16000 for plan in plans])
    assert seconds.min() >= 10 and seconds.max() <= 30
    assert seconds.min() < 11 and seconds.max() > 29  # the whole range is used


def test_splits_follow_the_fractions() -> None:
    splits = collections.Counter(item.split for item in SyntheticSource(N, 0).items())
    assert abs(splits["test"] - 30) <= 2 and abs(splits["valid"] - 30) <= 2
    small = collections.Counter(item.split for item in SyntheticSource(30, 0).items())
    assert small["test"] >= 2 and small["valid"] >= 2  # even a tiny corpus has every split


def test_plans_and_audio_are_pure_functions_of_seed_and_index(plans: list[ClipPlan]) -> None:
    assert plan_clip(0, 7) == plans[7] and plan_clip(1, 7) != plans[7]
    a, b = render_clip(plans[7]), render_clip(plan_clip(0, 7))
    assert a.dtype == np.float32 and len(a) == plans[7].n_samples
    np.testing.assert_array_equal(a, b)


def test_loud_and_quiet_clips_differ_by_tens_of_db(plans: list[ClipPlan]) -> None:
    levels = {}
    for loudness in ("quiet", "loud"):
        chosen = [p for p in plans if p.loudness == loudness][:3]
        levels[loudness] = [rms_db(render_clip(p)) for p in chosen]
    assert max(levels["quiet"]) < -35 and min(levels["loud"]) > -14
    assert min(levels["loud"]) - max(levels["quiet"]) > 25


def test_audio_stays_in_range_and_lofi_is_band_limited(plans: list[ClipPlan]) -> None:
    lofi = next(p for p in plans if "lofi" in p.tags and "loud" in p.tags)
    clean = next(p for p in plans if not {"lofi", "noisy"} & set(p.tags) and "drums" in p.tags)
    for plan in (lofi, clean):
        audio = render_clip(plan)
        assert np.abs(audio).max() <= 1.0
        spectrum = np.abs(np.fft.rfft(audio[:160000])) ** 2
        freqs = np.fft.rfftfreq(160000, 1 / 16000)
        above_4k = spectrum[freqs > 4500].sum() / spectrum.sum()
        if plan is lofi:
            assert above_4k < 1e-3
        else:
            assert above_4k > 1e-3
