"""Backbones: one file per family, and the registry that maps names to classes.

A new backbone is one new file in this package plus one line in :data:`BACKBONES`.
"""

from __future__ import annotations

from typing import Any

from lightning_tagging.errors import UserError

from .base import Backbone
from .musicnn import Musicnn, MusicnnBig
from .samplecnn import SampleCNN
from .vgg import VGG

BACKBONES: dict[str, type[Backbone]] = {
    "samplecnn": SampleCNN,
    "musicnn": Musicnn,
    "musicnn_big": MusicnnBig,
    "vgg": VGG,
}
"""Backbone name → class."""


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """Instantiate the backbone registered as ``name`` with ``kwargs``; ValueError naming the valid ones."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; valid backbones: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](**kwargs)


__all__ = ["BACKBONES", "VGG", "Backbone", "Musicnn", "MusicnnBig", "SampleCNN", "build_backbone"]
