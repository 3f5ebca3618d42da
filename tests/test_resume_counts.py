"""A preempted and resumed run reports the same count of corrupt training samples as an uninterrupted one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_wandb import signal_when, tiny_data, tiny_matrix

from lightning_tagging.cli import main
from lightning_tagging.data.shards import TarShardWriter, list_shards, read_samples
from lightning_tagging.matrix.spec import load_matrix


def with_corrupt_training_samples(root: Path, out: Path) -> Path:
    """A copy of ``root`` whose training shards each start with a sample that does not decode."""
    copy = Path(shutil.copytree(root, out))
    for shard in list_shards(copy, "train"):
        samples = list(read_samples(shard))
        payload = next(name for name in samples[0] if name not in ("__key__", "json"))
        samples[0][payload] = b"not audio at all"
        writer = TarShardWriter(shard)
        for sample in samples:
            writer.add(sample["__key__"], payload, sample[payload], sample["json"])
        writer.commit()
    return copy


def test_train_skipped_survives_preemption(tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    corpus = with_corrupt_training_samples(tiny_corpus, tmp_path / "corpus")
    path = tiny_matrix(tmp_path, epochs=2, batches=3)
    cell = load_matrix(path).cells()[0]

    def run(runs: Path) -> int:
        return main(["matrix", "run", str(path), "--cell", "0", "--runs", str(runs), "--", *tiny_data(corpus)])

    assert run(tmp_path / "straight") == 0
    straight = json.loads((tmp_path / "straight" / "wb" / cell.id / "results.json").read_text())

    run_dir = tmp_path / "preempted" / "wb" / cell.id
    watcher = signal_when(run_dir / "frontend_values.csv", rows=4)  # in epoch 2, after its first batch
    assert run(tmp_path / "preempted") == 3  # checkpointed mid-epoch and stopped
    watcher.join()
    assert run(tmp_path / "preempted") == 0  # resumed and finished
    resumed = json.loads((run_dir / "results.json").read_text())

    assert straight["train_skipped"] > 0  # every shard opened starts with a corrupt sample
    assert resumed["train_skipped"] == straight["train_skipped"]
    assert resumed["roc_auc"] == pytest.approx(straight["roc_auc"], abs=1e-6)  # the same run, resumed
