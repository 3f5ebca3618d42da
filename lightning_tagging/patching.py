"""Cutting a whole clip's front-end output into backbone-sized patches.

Song-level evaluation follows musicnn and Pons et al. (ISMIR 2018): the front-end runs
over the whole clip once, its output is cut into non-overlapping patches of the
backbone's ``input_length`` along the last (time) axis, the leftover is dropped, and
the patch predictions are averaged per clip. Running the front-end over the whole
clip (instead of per patch) keeps the edge frames identical to the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_clip(audio: torch.Tensor, min_samples: int) -> torch.Tensor:
    """Zero-pad ``[..., samples]`` audio at the end to at least ``min_samples``.

    Clips shorter than one patch would otherwise give no patch at all; silence is the
    most neutral filler and is what the front-end sees at a clip's end anyway.
    """
    missing = min_samples - audio.shape[-1]
    return F.pad(audio, (0, missing)) if missing > 0 else audio


def cut_into_patches(features: torch.Tensor, patch_length: int) -> torch.Tensor:
    """Split one clip's features into non-overlapping patches along the last axis.

    Args:
        features: ``[*feature_dims, T]`` for one clip, e.g. ``[1, n_mels, n_frames]``
            for a spectrogram or ``[samples]`` for a waveform.
        patch_length: time steps per patch (the backbone's ``input_length``).

    Returns:
        ``[n_patches, *feature_dims, patch_length]`` with ``n_patches = T // patch_length``;
        the last ``T % patch_length`` steps are dropped.
    """
    n_patches = features.shape[-1] // patch_length
    if n_patches == 0:
        raise ValueError(
            f"clip has {features.shape[-1]} time steps, fewer than one patch ({patch_length}); "
            "pad the audio first (pad_clip)"
        )
    kept = features[..., : n_patches * patch_length]
    return kept.unflatten(-1, (n_patches, patch_length)).movedim(-2, 0)
