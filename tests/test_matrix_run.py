"""`lt matrix run` on this machine: cells as subprocesses, a failing cell isolated and visible, done cells skipped."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from lightning_tagging.cli import main
from lightning_tagging.matrix.spec import load_matrix

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"


def test_a_failing_cell_never_takes_down_the_others(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(
        textwrap.dedent(f"""
        configs: [{DEMO}]
        fixed:
          trainer.max_epochs: 1
          trainer.limit_train_batches: 2
          trainer.enable_progress_bar: false
          model.backbone.init_args.width: 0.1
          data.batch_size: 2
          data.num_workers: 0
          data.shuffle_buffer: 8
          data.train_size: 0.5
        axes:
          model.frontend.init_args.compression: [log_learn, log_pi]   # log_pi does not exist
        seeds: [0]
    """)
    )
    good, bad = load_matrix(path).cells()
    runs = tmp_path / "runs"
    assert (
        main(
            ["matrix", "run", str(path), "--runs", str(runs), "--parallel", "2", "--", "--data.root", str(tiny_corpus)]
        )
        == 1
    )  # not every cell ended done
    out = capsys.readouterr().out
    assert f"{good.id} compression=log_learn seed=0: done ROC-AUC" in out
    assert f"{bad.id} compression=log_pi seed=0: failed UserError: unknown compression 'log_pi'" in out

    assert main(["matrix", "list", str(path), "--runs", str(runs)]) == 0
    listing = capsys.readouterr().out
    assert "1 done, 0 running, 0 pending, 1 failed" in listing
    assert "unknown compression 'log_pi'" in next(line for line in listing.splitlines() if bad.id in line)

    done = runs / "local" / good.id
    for name in (
        "config.yaml",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "results.json",
        "log.txt",
        "cell.json",
        "frontend_values.csv",
    ):
        assert (done / name).is_file(), name
    assert list((done / "wandb").glob(f"offline-run-*-{good.id}"))
    results = json.loads((done / "results.json").read_text())
    assert results["data"]["train_size"] == 0.5 and results["data"]["train_clips"] == 14  # half of 28 clips
    assert "Traceback" in (runs / "local" / bad.id / "error.txt").read_text()
    assert json.loads((done / "cell.json").read_text())["lt_run_args"][-1] == str(done)

    # Run again: the done cell is skipped (here alone, in this process), the failed one can be resubmitted alone.
    assert main(["matrix", "run", str(path), "--runs", str(runs), "--cell", good.id]) == 0
    assert "is done" in capsys.readouterr().out
    assert main(["matrix", "submit", str(path), "--runs", str(runs), "--failed", "--dry-run"]) == 0
    script = capsys.readouterr().out
    assert f"CELLS=({bad.id})" in script and "#SBATCH --array=0-0%8" in script
