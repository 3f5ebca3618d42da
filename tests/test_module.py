"""TaggingModule: pairing checks, song-level clip probabilities, vocabulary safety."""

import pytest
import torch

from lightning_tagging.errors import UserError
from lightning_tagging.frontends import LogMel, Waveform
from lightning_tagging.models import VGG, Musicnn, SampleCNN
from lightning_tagging.module import TaggingModule


def small_musicnn(n_tags: int = 5) -> Musicnn:
    return Musicnn(n_tags=n_tags, width=0.1)


def test_incompatible_pairs_are_clear_errors() -> None:
    with pytest.raises(UserError, match="SampleCNN takes waveform input but LogMel produces spectrogram"):
        TaggingModule(LogMel(), SampleCNN(n_tags=5))
    with pytest.raises(UserError, match="spectrogram input but Waveform"):
        TaggingModule(Waveform(), small_musicnn())
    with pytest.raises(UserError, match="makes 128 mel bands but VGG expects 96"):
        TaggingModule(LogMel(n_mels=128), VGG(n_tags=5))
    with pytest.raises(UserError, match="5 outputs but the vocabulary has 2 tags"):
        TaggingModule(LogMel(), small_musicnn(), tags=["a", "b"])


def test_train_crop_is_what_frontend_and_backbone_need() -> None:
    assert TaggingModule(LogMel(), small_musicnn()).train_crop_samples == 186 * 256
    assert TaggingModule(Waveform(), SampleCNN(n_tags=5)).train_crop_samples == 59049


def test_clip_probabilities_average_whole_clip_patches() -> None:
    torch.manual_seed(0)
    module = TaggingModule(LogMel(compression="log_c"), small_musicnn()).eval()
    audio = torch.randn(187 * 256 * 2 + 1000) * 0.1  # two full patches + leftover frames
    probs = module.clip_probabilities(audio)
    features = module.frontend(audio[None])[0]  # [1, 96, T]
    patches = torch.stack([features[..., :187], features[..., 187:374]])
    expected = torch.sigmoid(module.backbone(patches)).mean(0)
    assert features.shape[-1] > 374  # leftover existed and was dropped
    torch.testing.assert_close(probs, expected)


def test_short_clip_is_zero_padded_to_one_patch() -> None:
    torch.manual_seed(0)
    module = TaggingModule(LogMel(compression="log_eps"), small_musicnn()).eval()
    short = torch.randn(10_000) * 0.1
    padded = torch.cat([short, torch.zeros(module.train_crop_samples - len(short))])
    torch.testing.assert_close(module.clip_probabilities(short), torch.sigmoid(module(padded[None]))[0])


def test_vocabulary_mismatch_on_checkpoint_load_is_an_error() -> None:
    module = TaggingModule(LogMel(), small_musicnn(n_tags=2), tags=["rock", "jazz"])
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    other = TaggingModule(LogMel(), small_musicnn(n_tags=2), tags=["rock", "pop"])
    with pytest.raises(UserError, match="position 1: 'jazz' vs 'pop'"):
        other.on_load_checkpoint(checkpoint)
