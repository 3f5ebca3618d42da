"""The tables of `lt bench suite`: its rows as Markdown, ready to paste into the README."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUSES = ("pending", "ok", "failed", "skipped")


@dataclass
class Row:
    """One configuration of the suite and what became of it.

    ``kind`` is "model" (`lt bench model`: one front-end + backbone on random audio) or "fit"
    (`lt bench fit`: shards → DataModule → Lightning). ``result`` is that benchmark's JSON
    record when ``status`` is "ok"; ``error`` says why when "failed" or "skipped".
    """

    kind: str
    label: str
    status: str = "pending"
    error: str | None = None
    result: dict[str, Any] | None = None
    seconds: float | None = None  # wall time of this row, set-up and compilation included
    details: dict[str, Any] = field(default_factory=dict)  # how to reproduce it (configuration, arguments)


def markdown(header: dict[str, Any], rows: list[Row]) -> str:
    """The suite's Markdown: a line saying where and when, the model table, the end-to-end table."""
    lines = [
        f"Measured {header['date']} on {header['device']}, torch {header['torch']}, {header['cpus']} CPUs "
        f"(`lt bench suite{' --quick' if header.get('quick') else ''}`, {header['elapsed_s']:.0f} s"
        f"{'' if header.get('finished') else ', unfinished'}; fused_triton tiles {header.get('triton_tiles', '?')}).",
        "",
        "Model only: random audio already on the device; median of timed optimizer steps. Speedup: train clips/s "
        "over the plain eager fp32 model (library conv2d) of the same backbone and batch, measured in the same run. "
        "act GiB: tensors autograd saves for backward in one training forward of the eager module. "
        "TFLOP/s: the plain model's training FLOPs per clip (convolutions and matrix products, "
        "`lt bench estimate`) × clips/s; a recompute is not counted.",
        "",
        "| config | train clips/s | speedup | TFLOP/s | infer clips/s | peak GiB | act GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if row.kind != "model":
            continue
        if row.status != "ok" or row.result is None:
            lines.append(f"| {_cell(row.label)} | {_status(row)} | | | | | |")
            continue
        r = row.result
        speedup = "baseline" if r.get("speedup_vs_eager_fp32") is None else f"×{r['speedup_vs_eager_fp32']:.2f}"
        tflops = "–" if r.get("model_tflops") is None else f"{r['model_tflops']:.3g}"
        lines.append(
            f"| {_cell(row.label)} | {r['train_clips_per_s']:.1f} | {speedup} | {tflops} | "
            f"{r['infer_clips_per_s']:.1f} | {_gib(r['peak_train_memory_gib'])} | {r['saved_activation_gib']:.3f} |"
        )
    fit = [row for row in rows if row.kind == "fit"]
    if fit:
        lines += [
            "",
            "End to end (`lt bench fit`): synthetic PCM16 shards → TaggingDataModule → Lightning; "
            "no host sync per step; data wait: share of the timed window spent blocked fetching the next batch "
            "from the DataLoader; weights finite: no weight became NaN or infinite in training.",
            "",
            "| config | clips/s | ms/step | data wait % | peak GiB | weights finite |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in fit:
            if row.status != "ok" or row.result is None:
                lines.append(f"| {_cell(row.label)} | {_status(row)} | | | | |")
                continue
            r = row.result
            finite = {True: "yes", False: "**no**"}.get(r.get("weights_finite"), "–")
            lines.append(
                f"| {_cell(row.label)} | {r['train_clips_per_s']:.1f} | {r['ms_per_step']:.0f} | "
                f"{100 * r['data_wait_fraction']:.1f} | {_gib(r['peak_memory_gib'])} | {finite} |"
            )
    return "\n".join(lines) + "\n"


def _status(row: Row) -> str:
    if row.status == "pending":
        return "not run"
    return f"{row.status}: {_cell(first_line(row.error or ''), 140)}"


def first_line(message: str) -> str:
    """The first non-empty line of an error message (compiler errors run to pages)."""
    return next((line.strip() for line in message.splitlines() if line.strip()), "")


def _cell(text: str, limit: int = 200) -> str:
    """``text`` safe inside a Markdown table cell, at most ``limit`` characters."""
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _gib(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
