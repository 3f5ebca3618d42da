"""What each cell of a matrix left in its run dir: state, test metrics, learned front-end values over time."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from lightning_tagging.matrix.spec import Cell, Matrix
from lightning_tagging.matrix.status import cell_status

METRICS = ("roc_auc", "pr_auc")


@dataclass
class CellResult:
    """One cell as the report sees it.

    Attributes:
        cell: the matrix cell.
        state: pending, running, done or failed (from the run dir alone).
        detail: the error of a failed cell, why a pending one waits, ...
        values: test ``roc_auc`` / ``pr_auc`` and final front-end values (``alpha``, ``beta``) of a done cell.
        train_clips: training clips the cell used (the subset size), when recorded.
        trajectory: ``frontend_values.csv`` as columns (``step``, ``alpha``, ``beta``), possibly of an unfinished cell.
    """

    cell: Cell
    state: str
    detail: str
    values: dict[str, float] = field(default_factory=dict)
    train_clips: int | None = None
    trajectory: dict[str, list[float]] = field(default_factory=dict)


def collect(matrix: Matrix, runs: Path) -> list[CellResult]:
    """Every cell of ``matrix``, in order, with what its run dir under ``runs`` holds."""
    return [collect_cell(cell, matrix.run_dir(runs, cell)) for cell in matrix.cells()]


def collect_cell(cell: Cell, run_dir: Path) -> CellResult:
    status = cell_status(run_dir)  # no Slurm queue: the report reads files only
    result = CellResult(cell, status.state, status.detail, trajectory=read_trajectory(run_dir / "frontend_values.csv"))
    if status.results is not None:
        results = status.results
        result.values = {m: _number(results.get(m)) for m in METRICS}
        result.values.update({k: _number(v) for k, v in (results.get("frontend") or {}).items()})
        result.train_clips = (results.get("data") or {}).get("train_clips")
    return result


def read_trajectory(path: Path) -> dict[str, list[float]]:
    """Columns of a ``frontend_values.csv`` (step and one column per learned value); empty when absent."""
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    by_step = {int(row["step"]): row for row in rows}  # a resumed run may repeat steps: the last write wins
    columns: dict[str, list[float]] = {name: [] for name in (rows[0] if rows else {})}
    for step in sorted(by_step):
        for name in columns:
            columns[name].append(float(by_step[step][name]))
    return columns


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
