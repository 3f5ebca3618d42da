"""`lt report M [--runs DIR] [--out DIR]`: the tables and figures of a matrix, from its run dirs only.

Writes into ``--out`` (default ``<runs>/<matrix>/report/``):

    report.md            counts, mean ± std over seeds with n, figures, every cell with its status
    summary.csv          one row per setting of the non-seed axes: mean, std, n done, what is missing
    cells.csv            one row per cell: state, test metrics, learned α/β, training clips, error
    metric_vs_size.png   test ROC-AUC / PR-AUC vs training clips (when the matrix has a data.train_size axis)
    compression.png      log_learn vs log_eps, ... (when it has a compression axis)
    frontend_values.png  α and β at every step (when cells learned them)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning_tagging.matrix.cli import resolve_matrix
from lightning_tagging.matrix.spec import load_matrix
from lightning_tagging.report.collect import collect
from lightning_tagging.report.plots import plot_compression, plot_metric_vs_size, plot_trajectories
from lightning_tagging.report.tables import SEED_AXIS, group_results, markdown, value_names, write_csvs

FIGURES = (
    (
        "Metric vs training size",
        "metric_vs_size.png",
        plot_metric_vs_size,
        "Test ROC-AUC and PR-AUC against the number of training clips, per model (mean ± std over seeds).",
    ),
    (
        "Compression",
        "compression.png",
        plot_compression,
        "Test metrics per compression within each setting of the other axes (mean ± std over seeds).",
    ),
    (
        "Learned front-end values",
        "frontend_values.png",
        plot_trajectories,
        "log_learn's α and β after every optimisation step (frontend_values.csv), one line per cell.",
    ),
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lt report", description=__doc__.split("\n\n")[0])
    parser.add_argument("matrix", help="matrix file, or a name in experiments/matrices/")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="root of run dirs (default: runs)")
    parser.add_argument("--out", type=Path, help="output folder (default: <runs>/<matrix>/report)")
    args = parser.parse_args(argv)
    matrix = load_matrix(resolve_matrix(args.matrix))
    out = args.out or args.runs / matrix.name / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = collect(matrix, args.runs)
    names = value_names(results)
    groups = group_results(results, [a.name for a in matrix.axes if a.name != SEED_AXIS])
    written = write_csvs(results, groups, names, out)
    figures = []
    for title, filename, draw, caption in FIGURES:
        if draw(matrix, results, out / filename):
            figures.append((title, filename, caption))
            written.append(out / filename)
    report = out / "report.md"
    report.write_text(markdown(matrix, results, groups, names, figures, args.runs))
    done = sum(r.state == "done" for r in results)
    print(f"report of {matrix.name}: {done}/{len(results)} cells done → {report}")
    for path in written:
        print(f"  {path}")
    return 0
