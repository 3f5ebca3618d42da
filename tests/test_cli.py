"""`lt` end to end on real shards: models table, fit of every backbone, run → results, clear errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from lightning_tagging.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = str(REPO / "experiments" / "demo.yaml")

# Settings that make any experiment config tiny: few small batches, no worker processes.
TINY = ["--data.batch_size", "2", "--data.num_workers", "0", "--data.shuffle_buffer", "8"]


def test_models_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, count, length in [("samplecnn", "1,869,874", "59049 samples"), ("musicnn", "787,159", "187 frames"),
                                ("musicnn_big", "7,980,235", "187 frames"), ("vgg", "605,748", "187 frames")]:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert count in line and length in line


BACKBONE_ARGS = {
    "samplecnn": ["--model.frontend", "lightning_tagging.frontends.Waveform",
                  "--model.backbone", "lightning_tagging.models.SampleCNN"],
    "musicnn": ["--model.backbone.init_args.width", "0.1"],
    "musicnn_big": ["--model.backbone", "lightning_tagging.models.MusicnnBig",
                    "--model.backbone.init_args.width", "0.1"],
    "vgg": ["--model.backbone", "lightning_tagging.models.VGG", "--model.backbone.init_args.filters", "8"],
}


@pytest.mark.parametrize("backbone", list(BACKBONE_ARGS))
def test_fast_dev_run_fit_of_each_backbone(backbone: str, tiny_corpus: Path, tmp_path: Path) -> None:
    code = main(["fit", "--config", DEMO_CONFIG, "--data.root", str(tiny_corpus), *TINY,
                 *BACKBONE_ARGS[backbone], "--trainer.fast_dev_run", "1", "--trainer.logger", "false",
                 "--trainer.default_root_dir", str(tmp_path / "run")])
    assert code == 0


def test_run_writes_results_checkpoints_and_an_offline_wandb_run(tiny_corpus: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    code = main(["run", "--config", DEMO_CONFIG, "--data.root", str(tiny_corpus), *TINY,
                 "--model.backbone.init_args.width", "0.1", "--trainer.max_epochs", "1",
                 "--trainer.limit_train_batches", "3", "--trainer.default_root_dir", str(run_dir)])
    assert code == 0
    stats = json.loads((tiny_corpus / "stats.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert results["n_clips"] == stats["splits"]["test"]["clips"]
    assert 0.0 <= results["roc_auc"] <= 1.0 and 0.0 <= results["pr_auc"] <= 1.0
    assert set(results["per_tag"]) == set(json.loads((tiny_corpus / "vocab.json").read_text()))
    assert results["frontend"]["alpha"] == pytest.approx(1096.63, rel=0.05)  # log_learn, a few steps from a = 7
    assert results["checkpoint"].endswith("best.ckpt")
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "log_learn" in (run_dir / "config.yaml").read_text()
    with (run_dir / "frontend_values.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and {"alpha", "beta"} <= set(rows[0])
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert "RESULT test ROC-AUC" in capsys.readouterr().out


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `lt`, expect exit code 2 and a one-line error; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_user_errors_are_one_clear_line(tiny_corpus: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["fit", "--config", DEMO_CONFIG, "--data.root", str(tiny_corpus), *TINY, "--trainer.logger", "false",
            "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path)]
    assert "unknown compression 'log_pi'" in error_of([*base, "--model.frontend.init_args.compression", "log_pi"],
                                                      capsys)
    assert "does not exist" in error_of([*base, "--data.root", str(tmp_path / "nowhere")], capsys)
    assert "Musicnn takes spectrogram input but Waveform" in error_of(
        [*base, "--model.frontend", "lightning_tagging.frontends.Waveform"], capsys)
    assert "sample rate" in error_of([*base, "--model.frontend.init_args.sample_rate", "22050"], capsys)
    assert "unknown command" in error_of(["frobnicate"], capsys)


def test_checkpoint_on_data_with_another_vocabulary_is_refused(tiny_corpus: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["fit", "--config", DEMO_CONFIG, "--data.root", str(tiny_corpus), *TINY,
                 "--model.backbone.init_args.width", "0.1", "--trainer.max_steps", "1", "--trainer.logger", "false",
                 "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(run_dir)]) == 0
    other = Path(shutil.copytree(tiny_corpus, tmp_path / "other"))
    vocab = json.loads((other / "vocab.json").read_text())
    (other / "vocab.json").write_text(json.dumps(vocab[::-1]))  # same tags, another order: outputs would swap
    line = error_of(["test", "--config", DEMO_CONFIG, "--data.root", str(other), *TINY, "--trainer.logger", "false",
                     "--model.backbone.init_args.width", "0.1", "--trainer.default_root_dir", str(tmp_path / "t"),
                     "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt")], capsys)
    assert "different tag vocabulary" in line
