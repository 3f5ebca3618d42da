"""A deterministic, music-like, multi-label synthetic corpus (the `synthetic` data source).

``plan_clip(seed, index)`` decides a clip's tags (cheap, no audio); ``render_clip(plan)``
makes its 16 kHz waveform. The tags and what they sound like are documented in
:mod:`lightning_tagging.data.sources.synthetic`.
"""

from .plan import TAGS, ClipPlan, plan_clip
from .render import render_clip

__all__ = ["TAGS", "ClipPlan", "plan_clip", "render_clip"]
