"""The report's figures: metric vs training size, log_learn vs log_eps, α/β trajectories.

Each function draws one PNG with matplotlib's Agg canvas (no display, no pyplot state) and
returns False when the matrix has nothing to draw for it (no training-size axis, say). Points
that rest on fewer seeds than the matrix has are marked ``n=k/N``; a group with no finished
cell has no point, and the Markdown table says why.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from matplotlib.ticker import NullFormatter, ScalarFormatter

from lightning_tagging.matrix.spec import Axis, Matrix
from lightning_tagging.report.collect import METRICS, CellResult
from lightning_tagging.report.tables import SEED_AXIS, TITLES, Group, group_results


def _figure(n_panels: int, width: float = 5.0, height: float = 3.8) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * n_panels, height))
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def axis_setting(matrix: Matrix, key_suffix: str) -> Axis | None:
    """The first axis one of whose values sets a config key ending in ``key_suffix``."""
    for axis in matrix.axes:
        if any(key.endswith(key_suffix) for _, overrides in axis.values for key in overrides):
            return axis
    return None


def _series_name(group: Group, leave_out: str) -> str:
    return " ".join(f"{a}={v}" for a, v in group.axes.items() if a != leave_out) or "all"


def _incomplete_note(axes: Any, x: float, y: float, group: Group) -> None:
    if len(group.done) < len(group.cells):
        axes.annotate(
            f"n={len(group.done)}/{len(group.cells)}",
            (x, y),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
            color="firebrick",
        )


def plot_metric_vs_size(matrix: Matrix, results: list[CellResult], path: Path) -> bool:
    """The ISMIR 2018 figure: test ROC-AUC and PR-AUC versus training clips, one line per front-end/backbone."""
    size_axis = axis_setting(matrix, "data.train_size")
    if size_axis is None:
        return False
    axes_names = [a.name for a in matrix.axes if a.name != SEED_AXIS]
    groups = group_results(results, axes_names)
    figure, panels = _figure(len(METRICS))
    by_series: dict[str, list[tuple[float, Group]]] = {}
    for group in groups:
        clips = [c.train_clips for c in group.done if c.train_clips]
        x = statistics.fmean(clips) if clips else float(group.axes[size_axis.name])
        by_series.setdefault(_series_name(group, size_axis.name), []).append((x, group))
    uses_clips = any(c.train_clips for c in results)
    for panel, metric in zip(panels, METRICS, strict=True):
        for name, points in by_series.items():
            points = sorted((x, g) for x, g in points if g.done)
            if not points:
                continue
            stats = [g.stats(metric) for _, g in points]
            xs = [x for x, _ in points]
            panel.errorbar(
                xs,
                [m for m, _, _ in stats],
                yerr=[0 if math.isnan(s) else s for _, s, _ in stats],
                marker="o",
                capsize=3,
                label=name,
            )
            for (x, g), (m, _, _) in zip(points, stats, strict=True):
                _incomplete_note(panel, x, m, g)
        panel.set_xscale("log")
        panel.xaxis.set_major_formatter(ScalarFormatter())  # 100, 1000, not 10^2, 10^3
        panel.xaxis.set_minor_formatter(NullFormatter())
        panel.set_xlabel("training clips" if uses_clips else f"{size_axis.name} (fraction of training clips)")
        panel.set_ylabel(f"test {TITLES[metric]}")
        panel.grid(alpha=0.3)
        if panel.get_legend_handles_labels()[0]:
            panel.legend(fontsize=8)
    figure.suptitle(f"{matrix.name}: metric vs training size (mean ± std over seeds)", fontsize=10)
    _save(figure, path)
    return True


def plot_compression(matrix: Matrix, results: list[CellResult], path: Path) -> bool:
    """Bars per compression (log_learn vs log_eps, ...) within each setting of the other axes."""
    axis = axis_setting(matrix, "compression")
    if axis is None or len(axis.values) < 2:
        return False
    labels = [label for label, _ in axis.values]
    others = [a.name for a in matrix.axes if a.name not in (SEED_AXIS, axis.name)]
    groups = group_results(results, [*others, axis.name])
    settings = list(dict.fromkeys(_series_name(g, axis.name) for g in groups))
    figure, panels = _figure(len(METRICS), width=max(4.0, 1.6 * len(settings) + 2))
    width = 0.8 / len(labels)
    for panel, metric in zip(panels, METRICS, strict=True):
        for i, label in enumerate(labels):
            for j, setting in enumerate(settings):
                matching = (g for g in groups if g.axes[axis.name] == label and _series_name(g, axis.name) == setting)
                group = next(matching, None)
                if group is None:
                    continue
                x = j + (i - (len(labels) - 1) / 2) * width
                mean, std, _ = group.stats(metric)
                if math.isnan(mean):
                    panel.text(x, 0.0, "missing", rotation=90, fontsize=7, ha="center", va="bottom", color="firebrick")
                    continue
                panel.bar(
                    x,
                    mean,
                    width,
                    yerr=0 if math.isnan(std) else std,
                    capsize=3,
                    color=f"C{i}",
                    label=label if j == 0 else None,
                )
                _incomplete_note(panel, x, mean, group)
        panel.set_xticks(range(len(settings)), labels=settings, fontsize=8)
        panel.set_ylabel(f"test {TITLES[metric]}")
        if panel.get_legend_handles_labels()[0]:
            panel.legend(fontsize=8, title=axis.name)
        panel.grid(alpha=0.3, axis="y")
    figure.suptitle(f"{matrix.name}: {' vs '.join(labels)} (mean ± std over seeds)", fontsize=10)
    _save(figure, path)
    return True


def plot_trajectories(matrix: Matrix, results: list[CellResult], path: Path) -> bool:
    """α and β of log_learn at every step, one line per cell, one colour per setting of the other axes."""
    names = sorted({k for r in results for k in r.trajectory if k != "step"})
    drawn = [r for r in results if r.trajectory.get("step")]
    if not names or not drawn:
        return False
    figure, panels = _figure(len(names))
    settings = list(dict.fromkeys(_series_name(Group(_without_seed(r), []), "") for r in drawn))
    for panel, name in zip(panels, names, strict=True):
        labelled: set[str] = set()
        for r in drawn:
            if name not in r.trajectory:
                continue
            setting = _series_name(Group(_without_seed(r), []), "")
            colour = f"C{settings.index(setting) % 10}"
            label = None if setting in labelled else setting
            labelled.add(setting)
            suffix = "" if r.state == "done" else f" ({r.state})"
            panel.plot(
                r.trajectory["step"], r.trajectory[name], color=colour, lw=1, label=label + suffix if label else None
            )
        panel.set_xlabel("step")
        panel.set_ylabel(TITLES.get(name, name))
        panel.grid(alpha=0.3)
        if panel.get_legend_handles_labels()[0]:
            panel.legend(fontsize=7)
    figure.suptitle(f"{matrix.name}: learned front-end values during training (one line per cell)", fontsize=10)
    _save(figure, path)
    return True


def _without_seed(result: CellResult) -> dict[str, str]:
    return {a: v for a, v in result.cell.axes.items() if a != SEED_AXIS}
