"""Running cells: one in this process (what a Slurm array task does), or many locally in subprocesses.

A cell is `lt run` with the cell's arguments (`Matrix.cell_args`) in its own run dir, plus its
W&B identity (group = matrix, tags = axis=value, id = cell id). Around it the runner keeps
``status.json`` up to date, so that `lt matrix list` can tell pending, running, done and failed
apart, and records a failure's message there (and its traceback in ``error.txt``).

Several cells run as one subprocess each, ``parallel`` at a time: a cell that crashes, even
hard, never takes the others down, and each cell's output goes to ``<run dir>/log.txt``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from lightning_tagging.errors import UserError
from lightning_tagging.jsonio import write_json_atomically
from lightning_tagging.matrix.spec import Cell, Matrix
from lightning_tagging.matrix.status import STATUS_FILE, cell_status, read_json, write_status
from lightning_tagging.wandb_setup import WandbRun

LOG_ENV = "LT_CELL_LOG"  # where this cell's output goes, when someone redirected it (status says so)


def process_rank() -> int:
    """This process's global rank as the launcher says (Lightning's own order of variables); 0 alone."""
    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if variable in os.environ:
            return int(os.environ[variable])
    return 0


def wandb_run_of(matrix: Matrix, cell: Cell) -> WandbRun:
    """The cell's W&B identity: group = matrix, tags = axis=value, id = cell id (resumable)."""
    return WandbRun(
        id=cell.id,
        name=f"{matrix.name}/{cell.label}",
        project=matrix.wandb.get("project"),
        group=matrix.name,
        job_type=matrix.wandb.get("job_type", "train"),
        tags=[f"{axis}={label}" for axis, label in cell.axes.items()],
        config={"matrix": matrix.name, "cell_id": cell.id, "cell_index": cell.index, "axes": dict(cell.axes)},
    )


@contextmanager
def cell_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``<run dir>/.lock`` while the cell runs, so two processes never train one cell at once."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            status = read_json(run_dir / STATUS_FILE) or {}
            raise UserError(
                f"cell {run_dir.name} is already running (pid {status.get('pid')} on "
                f"{status.get('host')}); wait for it or stop it first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_cell(matrix: Matrix, cell: Cell, runs: Path, extra: list[str] | None = None) -> int:
    """Run one cell here and now: skip it if done, resume it if it was interrupted.

    Returns an exit code: 0 done, 1 failed, 3 preempted (checkpointed; requeued under Slurm).
    """
    from lightning_tagging.preemption import Preempted, slurm_job_id
    from lightning_tagging.training_cli import PREEMPTED_EXIT_CODE, run_fit_and_test, summary_line

    run_dir = matrix.run_dir(runs, cell)
    if cell_status(run_dir).state == "done":
        print(f"cell {cell.id} ({cell.label}) is done: {run_dir}/results.json")
        return 0
    args = matrix.cell_args(cell, run_dir, extra)
    # The cell's arguments are not this process's sys.argv; that is intended, not a mistake.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    if process_rank() != 0:  # the other ranks of a DDP job train; rank zero keeps the books
        try:
            run_fit_and_test(args, wandb_run_of(matrix, cell))
        except Preempted:
            return PREEMPTED_EXIT_CODE
        return 0
    with cell_lock(run_dir):
        previous = read_json(run_dir / STATUS_FILE) or {}
        write_json_atomically(
            run_dir / "cell.json",
            {
                "matrix": matrix.name,
                "matrix_file": str(matrix.path),
                "index": cell.index,
                "id": cell.id,
                "axes": cell.axes,
                "overrides": cell.overrides,
                "lt_run_args": args,
            },
        )
        write_status(
            run_dir,
            "running",
            host=socket.gethostname(),
            pid=os.getpid(),
            slurm_job=slurm_job_id(),
            attempt=previous.get("attempt", 0) + 1,
            started=time.strftime("%Y-%m-%dT%H:%M:%S"),
            log=os.environ.get(LOG_ENV),
            error=None,  # what an earlier attempt left: not this attempt's
            step=None,
            requeued=None,
        )
        print(f"cell {cell.id} ({cell.label}) → {run_dir}", flush=True)
        try:
            results = run_fit_and_test(args, wandb_run_of(matrix, cell))
        except Preempted as stop:
            write_status(run_dir, "preempted", step=stop.step, requeued=slurm_job_id())
            try:
                stop.requeue()  # last: Slurm ends this job soon after
            except RuntimeError as error:  # e.g. a partition that forbids requeues: resubmit the cell
                write_status(run_dir, "preempted", requeued=None)
                print(f"cell {cell.id}: {error}", file=sys.stderr)
            print(f"cell {cell.id}: {stop}", file=sys.stderr, flush=True)
            return PREEMPTED_EXIT_CODE
        except KeyboardInterrupt:
            write_status(run_dir, "stopped")
            raise
        except BaseException as error:
            message = failure_message(error)
            (run_dir / "error.txt").write_text(traceback.format_exc())
            write_status(run_dir, "failed", error=message)
            print(f"cell {cell.id} failed: {message}", file=sys.stderr)
            return 1
        write_status(run_dir, "done")
        if results is not None:
            print(summary_line(results))
        return 0


def failure_message(error: BaseException) -> str:
    """One line for `lt matrix list`: the exception's type and first line (argument errors point to the log)."""
    if isinstance(error, SystemExit):  # jsonargparse rejected an argument; it printed why
        where = os.environ.get(LOG_ENV) or "the cell's output"
        return f"the cell's config was rejected (exit code {error.code}); the reason is in {where}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


def run_cells(matrix: Matrix, cells: list[Cell], runs: Path, parallel: int = 1, extra: list[str] | None = None) -> int:
    """Run ``cells`` locally, ``parallel`` at a time, one subprocess each; done cells are skipped.

    Returns 0 when every cell ends done, 1 otherwise.
    """
    todo = []
    for cell in cells:
        status = cell_status(matrix.run_dir(runs, cell))
        if status.state in ("done", "running"):
            print(f"[{cell.index}] {cell.id} {cell.label}: {status.state}, skipped ({status.detail})")
        else:
            todo.append(cell)
    if not todo:
        return 0
    logs = runs / matrix.name / "<cell>" / "log.txt"
    print(f"running {len(todo)} cells of {matrix.name}, {parallel} at a time; logs in {logs}", flush=True)
    env = dict(os.environ)
    if parallel > 1 and "OMP_NUM_THREADS" not in env:  # share the cores instead of oversubscribing them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    failed = 0
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {pool.submit(_run_in_subprocess, matrix, cell, runs, extra or [], env): cell for cell in todo}
        for future in as_completed(futures):
            cell, seconds = futures[future], future.result()
            status = cell_status(matrix.run_dir(runs, cell))
            failed += status.state != "done"
            line = f"[{cell.index}] {cell.id} {cell.label}: {status.state} {status.detail} ({seconds:.0f} s)"
            print(line, flush=True)
    return 1 if failed else 0


def _run_in_subprocess(matrix: Matrix, cell: Cell, runs: Path, extra: list[str], env: dict[str, str]) -> float:
    run_dir = matrix.run_dir(runs, cell)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "log.txt"
    command = [
        sys.executable,
        "-m",
        "lightning_tagging.cli",
        "matrix",
        "run",
        str(matrix.path),
        "--cell",
        cell.id,
        "--runs",
        str(runs),
    ]
    if extra:
        command += ["--", *extra]
    start = time.monotonic()
    with log.open("a") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env={**env, LOG_ENV: str(log)}).returncode
    if code != 0 and (read_json(run_dir / STATUS_FILE) or {}).get("state") == "running":
        # killed before it could record an outcome (out of memory, a signal): say so
        write_status(run_dir, "failed", error=f"the cell's process exited with code {code}; see {log}")
    return time.monotonic() - start
