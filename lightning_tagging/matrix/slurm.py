"""`lt matrix submit`: render ``slurm/array.sbatch`` for some cells of a matrix and hand it to sbatch.

One array task per cell (``--array=0-N%K``: at most K at a time), each running
``lt matrix run M --cell <id>`` under ``srun`` with one task per GPU. The rendered script is kept
in ``<runs>/<matrix>/slurm/<job id>.sbatch`` and task logs go next to it (``<job>_<task>.out``);
each submitted cell gets ``submitted.json`` so `lt matrix list` can show it queued.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lightning_tagging.errors import UserError
from lightning_tagging.jsonio import write_json_atomically
from lightning_tagging.matrix.spec import Cell, Matrix
from lightning_tagging.matrix.status import SUBMITTED_FILE

TEMPLATE = Path(__file__).resolve().parents[2] / "slurm" / "array.sbatch"


@dataclass
class Resources:
    """What each array task asks for. ``gpus`` = GPUs per cell = srun tasks per node."""

    partition: str | None = None
    gpus: int = 0
    cpus_per_gpu: int = 4
    cpus: int = 1  # per cell, when it has no GPU
    mem: str | None = None
    time: str | None = None
    max_parallel: int = 8
    account: str | None = None
    sbatch_args: list[str] = field(default_factory=list)


def render(
    matrix: Matrix,
    cells: list[Cell],
    runs: Path,
    resources: Resources,
    extra: list[str] | None = None,
    template: Path = TEMPLATE,
) -> str:
    """The sbatch script that runs ``cells`` as one array job."""
    if not cells:
        raise UserError("no cells to submit")
    lines = []
    if resources.gpus > 0:
        lines.append(f"#SBATCH --gpus-per-node={resources.gpus}")
    for flag in ("partition", "mem", "time", "account"):
        if getattr(resources, flag):
            lines.append(f"#SBATCH --{flag}={getattr(resources, flag)}")
    lines += [f"#SBATCH {arg}" for arg in resources.sbatch_args]
    extra = list(extra or [])
    if resources.gpus > 0:  # as many devices as srun tasks, or Lightning refuses the SLURM setup
        extra += ["--trainer.accelerator", "gpu", "--trainer.devices", str(resources.gpus)]
    runs = runs.resolve()
    values = {
        "header": f"matrix {matrix.name}: {len(cells)} cells, rendered {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "matrix": matrix.name,
        "last_task": str(len(cells) - 1),
        "max_parallel": str(max(1, resources.max_parallel)),
        "tasks_per_node": str(max(1, resources.gpus)),
        "cpus_per_task": str(resources.cpus_per_gpu if resources.gpus > 0 else resources.cpus),
        "resources": "\n".join(lines),
        "log_dir": shlex.quote(str(runs / matrix.name / "slurm")),
        "workdir": shlex.quote(str(Path.cwd())),
        "cells": " ".join(cell.id for cell in cells),
        "python": shlex.quote(sys.executable),
        "matrix_file": shlex.quote(str(matrix.path)),
        "runs": shlex.quote(str(runs)),
        "extra": (" -- " + shlex.join(extra)) if extra else "",
    }

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise UserError(f"{template}: unknown placeholder {{{{{match.group(1)}}}}}")
        return values[match.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", substitute, template.read_text())


def submit(matrix: Matrix, cells: list[Cell], runs: Path, script: str) -> str:
    """Hand ``script`` to sbatch; returns the job id. Keeps the script and marks the cells as submitted."""
    if shutil.which("sbatch") is None:
        raise UserError(
            "sbatch not found: submit from a Slurm login node (to rehearse here: "
            "`slurm/local-cluster.sh start`, then the `export SLURM_CONF=...` it prints)"
        )
    folder = runs / matrix.name / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UserError(f"sbatch refused the job: {result.stderr.strip()}")
    job = result.stdout.strip().split(";")[0]
    (folder / f"{job}.sbatch").write_text(script)
    for task, cell in enumerate(cells):
        write_json_atomically(matrix.run_dir(runs, cell) / SUBMITTED_FILE, {"job": f"{job}_{task}"})
    return job
