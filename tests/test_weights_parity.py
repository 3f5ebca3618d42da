"""Parity with musicnn on real music: our pipeline + imported weights vs musicnn's TF models.

The reference is ``fixtures/musicnn_reference.npz``, made by ``fixtures/make_musicnn_reference.py``
(musicnn's own graph code and TF1 checkpoints, run with TensorFlow 2.21 in a separate venv; see
that script for the command). It holds per-patch sigmoid outputs of all four published models
on the two real clips in ``../shared/data/real-audio`` and musicnn's per-patch penultimate
features.

Tolerance. musicnn rounds the mel power spectrogram to float16 before log10(10000·x + 1)
(a storage artefact of its training data); our LogMel(log_c) keeps float32. float16 keeps 11
significant bits, so each input value moves by up to 0.434·2⁻¹¹ ≈ 2.1e-4 in log10 units;
through the network that moves the per-patch probabilities by up to ~8e-5 on these clips, so
we require |Δp| ≤ 2e-4. Replaying the float16 rounding on our own spectrogram removes most of
that: the rest (≤ ~2e-5; bound 5e-5) is float32 summation order in the STFT and convolutions
(TF vs torch) plus the occasional float16 rounding tie that falls the other way because of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_tagging.data.audio import decode_audio
from lightning_tagging.patching import cut_into_patches, pad_clip
from lightning_tagging.tag import TaggedFile, Tagger
from lightning_tagging.weights.musicnn_import import PUBLISHED, import_module
from lightning_tagging.weights.musicnn_source import checkpoint_prefix

REAL_AUDIO = Path(__file__).resolve().parents[2] / "shared/data/real-audio"
REFERENCE = Path(__file__).parent / "fixtures" / "musicnn_reference.npz"
CLIPS = ("joram-moments_of_clarity-08-solipsism-59-88", "TRWJAZW128F42760DD_test")
PROBABILITY_TOLERANCE = 2e-4  # float32 log_c vs musicnn's float16-rounded spectrogram (see module docstring)
FLOAT16_REPLAY_TOLERANCE = 5e-5  # with musicnn's float16 rounding replayed: float32 arithmetic order only
EMBEDDING_TOLERANCE = 1e-3  # penultimate features reach ±3; ≤ 3.3e-4 observed

# musicnn's README (github.com/jordipons/musicnn): MTT_musicnn's top tags of the two clips.
PUBLISHED_TOP = {
    CLIPS[0]: ["techno", "electronic", "synth", "fast", "beat", "drums", "no vocals", "no vocal", "dance", "ambient"],
    CLIPS[1]: ["guitar", "piano", "fast"],
}


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    if not REAL_AUDIO.is_dir():
        pytest.skip(f"the real clips are not here: these tests need {REAL_AUDIO} (../shared beside the repo)")
    return {clip: decode_audio(REAL_AUDIO / f"{clip}.mp3") for clip in CLIPS}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return dict(data)


@pytest.fixture(scope="module")
def taggers(musicnn_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tagger]:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    folder = tmp_path_factory.mktemp("extract")
    prefixes = {model: checkpoint_prefix(model, wheel=musicnn_wheel, cache_dir=folder) for model in PUBLISHED}
    return {model: Tagger(import_module(model, prefix), device="cpu") for model, prefix in prefixes.items()}


@pytest.fixture(scope="module")
def results(taggers, clips) -> dict[tuple[str, str], TaggedFile]:
    """Every model on every clip, through `lt tag`'s engine (with penultimate features for musicnn)."""
    return {
        (model, clip): tagger.tag_audio(audio, clip, embeddings="musicnn" in model)
        for model, tagger in taggers.items()
        for clip, audio in clips.items()
    }


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_per_patch_scores_match_musicnn(model: str, results, reference) -> None:
    for clip in CLIPS:
        result = results[model, clip]
        expected = reference[f"{model}__{clip}__probs"]
        assert result.taggram.shape == expected.shape  # same patches: whole-clip front-end, leftover dropped
        diff = np.abs(result.taggram - expected).max()
        assert diff <= PROBABILITY_TOLERANCE, f"{model} {clip}: max |Δp| {diff:.2e}"
        if "musicnn" in model:  # musicnn's penultimate, per patch (not 0.1.0's repeated first patch)
            features = reference[f"{model}__{clip}__penultimate"]
            diff = np.abs(result.embeddings - features).max()
            assert diff <= EMBEDDING_TOLERANCE, f"{model} {clip}: max |Δ penultimate| {diff:.2e}"
            assert not np.allclose(result.embeddings[0], result.embeddings[1])


def test_mtt_musicnn_gives_musicnn_published_top_tags(results) -> None:
    for clip, expected in PUBLISHED_TOP.items():
        assert [tag for tag, _ in results["MTT_musicnn", clip].top(len(expected))] == expected, clip


def test_replaying_musicnn_float16_rounding_explains_the_residual(taggers, clips, reference) -> None:
    """The same comparison with the spectrogram rounded to float16 as musicnn does: the gap shrinks ~4×."""
    module = taggers["MTT_musicnn"].module
    clip, n_patches = CLIPS[1], 4  # the clip with the larger residual; a few patches suffice
    with torch.no_grad():
        power = module.frontend.mel_power(torch.from_numpy(clips[clip])[None])
        features = module.frontend.compression(power.half().float())[0]
        probs = torch.sigmoid(module.backbone(cut_into_patches(features, 187)[:n_patches])).numpy()
    diff = np.abs(probs - reference[f"MTT_musicnn__{clip}__probs"][:n_patches]).max()
    assert diff <= FLOAT16_REPLAY_TOLERANCE, f"max |Δp| {diff:.2e}"


def test_clips_shorter_than_one_patch_are_zero_padded_to_one(taggers, clips) -> None:
    """musicnn crashes on them; we tag the clip followed by silence up to one patch (as evaluation does)."""
    tagger = taggers["MTT_musicnn"]
    short = clips[CLIPS[0]][: 16000 * 2]  # 2 s < one patch (47,616 samples, 187 frames)
    result = tagger.tag_audio(short)
    padded = pad_clip(torch.from_numpy(short), tagger.patch_samples).numpy()
    assert padded.shape == (47616,) and result.taggram.shape == (1, 50)
    np.testing.assert_allclose(result.taggram, tagger.tag_audio(padded).taggram, atol=1e-7)
    clip_probabilities = tagger.module.clip_probabilities(torch.from_numpy(short)).numpy()
    np.testing.assert_allclose(result.probabilities, clip_probabilities, atol=1e-6)


def test_published_weights_keep_parity_with_the_fused_front_end(taggers, clips, reference) -> None:
    """conv_impl="fused" (models/fused_branch.py) computes the same function on the imported weights."""
    tagger = taggers["MTT_musicnn"]
    backbone = tagger.module.backbone
    clip = CLIPS[0]
    try:
        backbone.use_conv_impl("fused")
        result = tagger.tag_audio(clips[clip])
    finally:
        backbone.use_conv_impl("auto")
    diff = np.abs(result.taggram - reference[f"MTT_musicnn__{clip}__probs"]).max()
    assert diff <= PROBABILITY_TOLERANCE, f"max |Δp| {diff:.2e}"
