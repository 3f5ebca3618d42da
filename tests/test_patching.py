"""Cutting whole-clip front-end output into backbone patches."""

import pytest
import torch

from lightning_tagging.patching import cut_into_patches, pad_clip


def test_spectrogram_patches_keep_order_and_drop_leftover() -> None:
    features = torch.arange(2 * 3 * 10, dtype=torch.float32).reshape(1, 2 * 3, 10)[..., :10]
    features = features.reshape(1, 6, 10)  # [1, F, T]
    patches = cut_into_patches(features, 4)  # 10 frames -> 2 patches of 4, 2 dropped
    assert patches.shape == (2, 1, 6, 4)
    assert torch.equal(patches[0], features[..., 0:4])
    assert torch.equal(patches[1], features[..., 4:8])


def test_waveform_patches() -> None:
    audio = torch.arange(25.0)
    patches = cut_into_patches(audio, 8)
    assert patches.shape == (3, 8)
    assert torch.equal(patches.flatten(), audio[:24])


def test_short_clip_needs_padding() -> None:
    with pytest.raises(ValueError, match="fewer than one patch"):
        cut_into_patches(torch.zeros(5), 8)
    padded = pad_clip(torch.ones(1, 5), 8)
    assert padded.shape == (1, 8)
    assert padded[0, :5].eq(1).all() and padded[0, 5:].eq(0).all()
    assert pad_clip(torch.ones(1, 9), 8).shape == (1, 9)
