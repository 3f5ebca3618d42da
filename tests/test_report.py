"""`lt report`: real cells (run in this process), grouped over seeds, with failed and missing cells shown."""

from __future__ import annotations

import csv
import json
import statistics
import textwrap
from pathlib import Path

import pytest

from lightning_tagging.cli import main
from lightning_tagging.matrix.spec import load_matrix

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def finished_matrix(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """compression × train_size × seed (8 cells): 5 done, 1 failed (its checkpoint is corrupt), 2 never run."""
    folder = tmp_path_factory.mktemp("report")
    path = folder / "rep.yaml"
    path.write_text(
        textwrap.dedent(f"""
        configs: [{DEMO}]
        fixed:
          trainer.max_epochs: 1
          trainer.limit_train_batches: 2
          trainer.logger: false
          trainer.enable_progress_bar: false
          model.backbone.init_args.width: 0.1
          data.batch_size: 2
          data.num_workers: 0
          data.shuffle_buffer: 8
        axes:
          model.frontend.init_args.compression: [log_eps, log_learn]
          data.train_size: [0.5, 1.0]
        seeds: [0, 1]
    """)
    )
    runs = folder / "runs"
    cells = load_matrix(path).cells()
    corrupt = runs / "rep" / cells[4].id / "checkpoints" / "last.ckpt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"not a checkpoint")
    for index in (0, 1, 2, 4, 6, 7):
        main(
            [
                "matrix",
                "run",
                str(path),
                "--runs",
                str(runs),
                "--cell",
                str(index),
                "--",
                "--data.root",
                str(tiny_corpus),
            ]
        )
    assert main(["report", str(path), "--runs", str(runs)]) == 0
    return path, runs


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_summary_is_mean_and_std_over_seeds_with_n(finished_matrix: tuple[Path, Path]) -> None:
    path, runs = finished_matrix
    cells = load_matrix(path).cells()
    rows = {(r["compression"], r["train_size"]): r for r in read_csv(runs / "rep" / "report" / "summary.csv")}
    assert len(rows) == 4
    both = [json.loads((runs / "rep" / c.id / "results.json").read_text()) for c in cells[:2]]
    row = rows[("log_eps", "0.5")]
    assert (row["n_done"], row["n_cells"]) == ("2", "2") and row["missing"] == ""
    assert float(row["roc_auc_mean"]) == pytest.approx(statistics.fmean(r["roc_auc"] for r in both), rel=1e-5)
    assert float(row["pr_auc_std"]) == pytest.approx(statistics.stdev(r["pr_auc"] for r in both), rel=1e-5)
    one = rows[("log_eps", "1.0")]
    assert (one["n_done"], one["roc_auc_std"]) == ("1", "")  # one seed: a mean, no std
    assert "pending" in one["missing"] and cells[3].id in one["missing"]
    learned = rows[("log_learn", "1.0")]
    assert float(learned["alpha_mean"]) > 0 and learned["n_done"] == "2"  # α and β of log_learn cells
    failed = rows[("log_learn", "0.5")]
    assert failed["n_done"] == "0" and failed["roc_auc_mean"] == ""
    assert f"failed ({cells[4].id}: " in failed["missing"] and f"pending ({cells[5].id})" in failed["missing"]


def test_every_cell_is_listed_with_its_state(finished_matrix: tuple[Path, Path]) -> None:
    _, runs = finished_matrix
    rows = read_csv(runs / "rep" / "report" / "cells.csv")
    assert [r["state"] for r in rows] == ["done", "done", "done", "pending", "failed", "pending", "done", "done"]
    assert {r["train_clips"] for r in rows if r["state"] == "done"} == {"14", "28"}  # the subset sizes trained on
    assert rows[4]["detail"].startswith("UnpicklingError") or "checkpoint" in rows[4]["detail"]


def test_markdown_and_figures(finished_matrix: tuple[Path, Path]) -> None:
    _, runs = finished_matrix
    report = runs / "rep" / "report"
    text = (report / "report.md").read_text()
    assert "8 cells: 5 done, 0 running, 2 pending, 1 failed" in text
    assert "| log_learn | 0.5 | — | — | — | — | 0/2 |" in text
    assert " ± " in text
    for figure in ("metric_vs_size.png", "compression.png", "frontend_values.png"):
        assert f"]({figure})" in text
        assert (report / figure).read_bytes()[:8] == PNG
