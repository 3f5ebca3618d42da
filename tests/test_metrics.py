"""Song-level metrics against scikit-learn on hand-made predictions."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from lightning_tagging.metrics import song_level_metrics


def test_macro_and_per_tag_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 5)) < 0.3).astype(int)
    targets[0, :] = 1  # every tag has a positive
    targets[1, :] = 0  # and a negative
    # Informative but imperfect predictions, with ties, so AUCs are not trivially 1.
    probs = np.clip(targets * 0.4 + rng.random((40, 5)) * 0.6, 0, 1).round(2)
    result = song_level_metrics(torch.tensor(probs), torch.tensor(targets), list("abcde"))
    roc = [roc_auc_score(targets[:, i], probs[:, i]) for i in range(5)]
    ap = [average_precision_score(targets[:, i], probs[:, i]) for i in range(5)]
    assert result["roc_auc"] == pytest.approx(np.mean(roc), abs=1e-6)
    assert result["pr_auc"] == pytest.approx(np.mean(ap), abs=1e-6)
    for i, tag in enumerate("abcde"):
        assert result["per_tag"][tag]["roc_auc"] == pytest.approx(roc[i], abs=1e-6)
        assert result["per_tag"][tag]["pr_auc"] == pytest.approx(ap[i], abs=1e-6)
    assert result["n_clips"] == 40 and result["n_tags_evaluated"] == 5


def test_tags_without_positives_are_left_out_and_counted() -> None:
    targets = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    probs = torch.tensor([[0.9, 0.5, 0.2], [0.1, 0.5, 0.3], [0.8, 0.5, 0.9], [0.3, 0.5, 0.1]])
    result = song_level_metrics(probs, targets, ["x", "never", "always"])
    assert result["n_tags_evaluated"] == 1
    assert result["tags_left_out"] == ["never", "always"]
    assert result["roc_auc"] == pytest.approx(1.0)
    assert math.isnan(result["per_tag"]["never"]["roc_auc"])
    assert result["per_tag"]["always"]["n_positive"] == 4


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        song_level_metrics(torch.zeros(3, 2), torch.zeros(3, 2), ["only_one"])
