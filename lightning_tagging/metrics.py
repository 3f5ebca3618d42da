"""Song-level tagging metrics: macro and per-tag ROC-AUC and PR-AUC.

Tags whose ground truth is constant over the evaluated clips (no positive clip, or
every clip positive) have no defined ROC-AUC; they are left out of the macro means
and reported by name, as the musicnn and ISMIR 2018 evaluations do implicitly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics.functional.classification import binary_auroc, binary_average_precision


def song_level_metrics(probs: torch.Tensor, targets: torch.Tensor, tags: list[str]) -> dict[str, Any]:
    """Macro and per-tag ROC-AUC / PR-AUC of clip-level predictions.

    Args:
        probs: ``[n_clips, n_tags]`` tag probabilities in [0, 1].
        targets: ``[n_clips, n_tags]`` multi-hot ground truth (0/1).
        tags: names of the ``n_tags`` columns.

    Returns:
        ``roc_auc`` and ``pr_auc`` (macro over evaluable tags), ``per_tag``
        (tag → {"roc_auc", "pr_auc", "n_positive"}; NaN AUCs for left-out tags),
        ``n_clips``, ``n_tags_evaluated`` and ``tags_left_out``.
    """
    if probs.shape != targets.shape or probs.shape[1] != len(tags):
        raise ValueError(
            f"shape mismatch: probs {tuple(probs.shape)}, targets {tuple(targets.shape)}, {len(tags)} tags"
        )
    probs = probs.detach().float().cpu()
    targets = targets.detach().cpu().round().int()
    n_clips = probs.shape[0]
    n_positive = targets.sum(dim=0)
    evaluable = (n_positive > 0) & (n_positive < n_clips)
    per_tag: dict[str, dict[str, float]] = {
        tag: {"roc_auc": math.nan, "pr_auc": math.nan, "n_positive": int(n_positive[i])} for i, tag in enumerate(tags)
    }
    for i in evaluable.nonzero().flatten().tolist():
        per_tag[tags[i]]["roc_auc"] = float(binary_auroc(probs[:, i], targets[:, i]))
        per_tag[tags[i]]["pr_auc"] = float(binary_average_precision(probs[:, i], targets[:, i]))
    evaluated = [per_tag[tag] for i, tag in enumerate(tags) if evaluable[i]]
    roc = sum(t["roc_auc"] for t in evaluated) / len(evaluated) if evaluated else math.nan
    pr = sum(t["pr_auc"] for t in evaluated) / len(evaluated) if evaluated else math.nan
    return {
        "roc_auc": roc,
        "pr_auc": pr,
        "n_clips": n_clips,
        "n_tags_evaluated": int(evaluable.sum()),
        "tags_left_out": [tag for i, tag in enumerate(tags) if not evaluable[i]],
        "per_tag": per_tag,
    }
