"""`lt matrix list | run | submit`: an experiment matrix on this machine or as a Slurm array job.

    lt matrix list M                                        cells, their axes and their status
    lt matrix run M [--cell ID|INDEX ...] [--parallel N]    run cells here (done ones are skipped)
    lt matrix submit M [--partition P --gpus-per-cell G --cpus-per-gpu C --mem 32G --time 24:00:00
                        --max-parallel K --failed --cell ... --dry-run]

M is a matrix file or the name of one in experiments/matrices/. Run dirs are
``<runs>/<matrix>/<cell id>/`` (``--runs``, default ``runs``). Arguments after ``--`` go to every
cell's `lt run` (e.g. ``-- --data.root /scratch/mtt``); they do not change cell ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning_tagging.errors import UserError
from lightning_tagging.matrix.spec import Cell, Matrix, load_matrix
from lightning_tagging.matrix.status import cell_status, slurm_queue

MATRICES_DIR = Path("experiments") / "matrices"
REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_matrix(name: str) -> Path:
    """A matrix file path, or a name in ``experiments/matrices/`` (here, or in this repository)."""
    for candidate in (Path(name), MATRICES_DIR / f"{name}.yaml", REPO_ROOT / MATRICES_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in (REPO_ROOT / MATRICES_DIR).glob("*.yaml"))
    raise UserError(f"no matrix {name!r}: give a matrix file or one of {', '.join(known) or '(none)'}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="lt matrix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True)
    for name, text in (
        ("list", "cells and their status"),
        ("run", "run cells on this machine"),
        ("submit", "submit cells to Slurm as one array job"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("matrix", help="matrix file, or a name in experiments/matrices/")
        sub.add_argument("--runs", type=Path, default=Path("runs"), help="root of run dirs (default: runs)")
        if name in ("run", "submit"):
            sub.add_argument("--cell", action="append", default=[], help="cell id or index (repeatable)")
        if name == "run":
            sub.add_argument("--parallel", type=int, default=1, help="cells at a time (default 1)")
        if name == "submit":
            sub.add_argument("--failed", action="store_true", help="only the failed cells")
            sub.add_argument("--partition")
            sub.add_argument("--gpus-per-cell", type=int, default=0, help="GPUs (= srun tasks) per cell")
            sub.add_argument("--cpus-per-gpu", type=int, default=4)
            sub.add_argument("--cpus", type=int, default=1, help="CPUs per cell without GPUs")
            sub.add_argument("--mem", help="memory per cell, e.g. 32G")
            sub.add_argument("--time", help="time limit per cell, e.g. 24:00:00")
            sub.add_argument("--max-parallel", type=int, default=8, help="array throttle %%K")
            sub.add_argument("--account")
            sub.add_argument("--sbatch-arg", action="append", default=[], help="another #SBATCH line, e.g. --qos=x")
            sub.add_argument("--template", type=Path, help="sbatch template (default: slurm/array.sbatch)")
            sub.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    return top


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = parser().parse_args(argv)
    matrix = load_matrix(resolve_matrix(args.matrix))
    if args.command == "list":
        return list_cells(matrix, args.runs)
    cells = [matrix.find(s) for s in args.cell] if args.cell else matrix.cells()
    if args.command == "run":
        from lightning_tagging.matrix.runner import run_cell, run_cells

        if len(cells) == 1 and args.cell and args.parallel <= 1:
            return run_cell(matrix, cells[0], args.runs, extra)
        return run_cells(matrix, cells, args.runs, max(1, args.parallel), extra)
    return submit_cells(matrix, cells, args, extra)


def list_cells(matrix: Matrix, runs: Path) -> int:
    queue = slurm_queue()
    names = [axis.name for axis in matrix.axes]
    rows = [["#", "cell", "status", *names, "result / error"]]
    counts = dict.fromkeys(("done", "running", "pending", "failed"), 0)
    for cell in matrix.cells():
        status = cell_status(matrix.run_dir(runs, cell), queue)
        counts[status.state] += 1
        rows.append([str(cell.index), cell.id, status.state, *cell.axes.values(), status.detail])
    print(f"matrix {matrix.name} ({matrix.path}): {len(rows) - 1} cells in {runs / matrix.name}/<cell>/")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  " + "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=False)) + "  " + row[-1])
    print("  " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    for axis in matrix.axes:  # what each label stands for, so the overrides are on screen too
        for label, overrides in axis.values:
            settings = " ".join(f"{key}={value}" for key, value in overrides.items())
            print(f"  {axis.name}={label}: {settings}")
    return 0


def submit_cells(matrix: Matrix, cells: list[Cell], args: argparse.Namespace, extra: list[str]) -> int:
    from lightning_tagging.matrix.slurm import TEMPLATE, Resources, render, submit

    queue = slurm_queue()
    statuses = {cell.id: cell_status(matrix.run_dir(args.runs, cell), queue) for cell in cells}
    if args.failed:
        cells = [c for c in cells if statuses[c.id].state == "failed"]
    elif not args.cell:  # the whole matrix: what is neither done nor already running or queued
        cells = [
            c
            for c in cells
            if statuses[c.id].state in ("failed", "pending")
            and not statuses[c.id].detail.startswith(("queued", "requeued"))
        ]
    if not cells:
        print(f"nothing to submit: every selected cell of {matrix.name} is done, running or queued")
        return 0
    resources = Resources(
        partition=args.partition,
        gpus=args.gpus_per_cell,
        cpus_per_gpu=args.cpus_per_gpu,
        cpus=args.cpus,
        mem=args.mem,
        time=args.time,
        max_parallel=args.max_parallel,
        account=args.account,
        sbatch_args=args.sbatch_arg,
    )
    script = render(matrix, cells, args.runs, resources, extra, args.template or TEMPLATE)
    if args.dry_run:
        sys.stdout.write(script)
        return 0
    job = submit(matrix, cells, args.runs, script)
    print(
        f"submitted job {job}: {len(cells)} cells of {matrix.name} (array 0-{len(cells) - 1}"
        f"%{args.max_parallel}); logs in {args.runs / matrix.name / 'slurm'}/{job}_<task>.out"
    )
    return 0
