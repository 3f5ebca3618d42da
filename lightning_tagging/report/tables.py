"""Results grouped over seeds (mean ± std, n), as Markdown and CSV; missing and failed cells stay visible."""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from lightning_tagging.matrix.spec import Matrix
from lightning_tagging.report.collect import METRICS, CellResult

SEED_AXIS = "seed"
TITLES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "alpha": "α", "beta": "β"}


@dataclass
class Group:
    """The cells that differ only by seed."""

    axes: dict[str, str]
    cells: list[CellResult]

    @property
    def done(self) -> list[CellResult]:
        return [c for c in self.cells if c.state == "done"]

    def stats(self, name: str) -> tuple[float, float, int]:
        """(mean, sample standard deviation, n) of value ``name`` over the done cells; NaN where undefined."""
        return mean_std([c.values[name] for c in self.done if not math.isnan(c.values.get(name, math.nan))])

    def missing(self) -> list[str]:
        """One note per cell that is not done, e.g. ``seed=2 failed (3f2a1b9c: ValueError: ...)``."""
        notes = []
        for c in self.cells:
            if c.state != "done":
                seed = f"seed={c.cell.axes[SEED_AXIS]} " if SEED_AXIS in c.cell.axes else ""
                detail = f": {c.detail}" if c.detail else ""
                notes.append(f"{seed}{c.state} ({c.cell.id}{detail})")
        return notes


def mean_std(values: list[float]) -> tuple[float, float, int]:
    n = len(values)
    mean = statistics.fmean(values) if n else math.nan
    return mean, statistics.stdev(values) if n >= 2 else math.nan, n


def value_names(results: list[CellResult]) -> list[str]:
    """The metrics, then any front-end values (α, β) that some done cell has."""
    extra = sorted({k for r in results for k in r.values} - set(METRICS))
    return [*METRICS, *extra]


def group_results(results: list[CellResult], axes: list[str]) -> list[Group]:
    """Group cells by their labels on ``axes`` (all axes but the seed), in matrix order."""
    groups: dict[tuple[str, ...], Group] = {}
    for result in results:
        key = tuple(result.cell.axes[a] for a in axes)
        groups.setdefault(key, Group(dict(zip(axes, key, strict=True)), [])).cells.append(result)
    return list(groups.values())


def fmt(mean: float, std: float, digits: int = 4) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}g}" if math.isnan(std) else f"{mean:.{digits}g} ± {std:.2g}"


def summary_table(groups: list[Group], names: list[str]) -> list[list[str]]:
    """Header + one row per group: axes, mean ± std of each value, n done / cells, what is missing."""
    axes = list(groups[0].axes) if groups else []
    rows = [[*axes, *(TITLES.get(n, n) for n in names), "n", "missing / failed"]]
    for group in groups:
        cells = [fmt(*group.stats(name)[:2]) for name in names]
        rows.append(
            [*group.axes.values(), *cells, f"{len(group.done)}/{len(group.cells)}", "; ".join(group.missing()) or ""]
        )
    return rows


def cell_table(results: list[CellResult], names: list[str]) -> list[list[str]]:
    """Header + one row per cell, every state included."""
    axes = list(results[0].cell.axes) if results else []
    rows = [["#", "cell", *axes, "status", *(TITLES.get(n, n) for n in names), "note"]]
    for r in results:
        values = [fmt(r.values.get(n, math.nan), math.nan) for n in names]
        rows.append(
            [
                str(r.cell.index),
                r.cell.id,
                *r.cell.axes.values(),
                r.state,
                *values,
                r.detail if r.state != "done" else "",
            ]
        )
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    escape = [[value.replace("|", "\\|") for value in row] for row in rows]
    lines = ["| " + " | ".join(escape[0]) + " |", "|" + "---|" * len(escape[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in escape[1:]])


def write_csvs(results: list[CellResult], groups: list[Group], names: list[str], out: Path) -> list[Path]:
    """``cells.csv`` (every cell, raw numbers) and ``summary.csv`` (per group: mean, std, n)."""
    axes = list(results[0].cell.axes) if results else []
    cells_path, summary_path = out / "cells.csv", out / "summary.csv"
    with cells_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "cell", *axes, "state", *names, "train_clips", "detail"])
        for r in results:
            writer.writerow(
                [
                    r.cell.index,
                    r.cell.id,
                    *r.cell.axes.values(),
                    r.state,
                    *(_csv(r.values.get(n, math.nan)) for n in names),
                    r.train_clips or "",
                    r.detail,
                ]
            )
    group_axes = list(groups[0].axes) if groups else []
    with summary_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [*group_axes, *(f"{n}_{s}" for n in names for s in ("mean", "std")), "n_done", "n_cells", "missing"]
        )
        for g in groups:
            numbers = [_csv(x) for n in names for x in g.stats(n)[:2]]
            writer.writerow([*g.axes.values(), *numbers, len(g.done), len(g.cells), "; ".join(g.missing())])
    return [cells_path, summary_path]


def _csv(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"


def markdown(
    matrix: Matrix,
    results: list[CellResult],
    groups: list[Group],
    names: list[str],
    figures: list[tuple[str, str, str]],
    runs: Path,
) -> str:
    """The report: counts, the grouped table, figures (title, file, caption), then every cell."""
    counts = {s: sum(r.state == s for r in results) for s in ("done", "running", "pending", "failed")}
    lines = [
        f"# {matrix.name}",
        "",
        f"{len(results)} cells: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f". From the run dirs in `{runs / matrix.name}`; matrix file `{matrix.path}`.",
        "",
        "## Results over seeds",
        "",
        "Mean ± sample standard deviation over the seeds that finished; n = finished / cells. "
        "Cells that are not done are listed, never dropped.",
        "",
        markdown_table(summary_table(groups, names)),
    ]
    for title, filename, caption in figures:
        lines += ["", f"## {title}", "", caption, "", f"![{title}]({filename})"]
    lines += ["", "## Every cell", "", markdown_table(cell_table(results, names)), ""]
    return "\n".join(lines)
