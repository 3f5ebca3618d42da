"""A cell's status, read from its run dir: pending, running, done or failed.

The run dir is the only record (no database, no network):

    results.json     written when the cell's test ends            → done
    status.json      written by the cell runner at each change:   {"state": "running" | "failed" | "preempted"
                     | "stopped", "host", "pid", "slurm_job", "error", "step", ...}
    submitted.json   written by `lt matrix submit`: {"job": "123_4"}

A cell whose status says running but whose process is gone (same host, dead pid; or a Slurm job
that squeue no longer lists) was interrupted: it is pending and resumes from its checkpoint.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_tagging.jsonio import read_json, write_json_atomically

STATUS_FILE = "status.json"
SUBMITTED_FILE = "submitted.json"
RESULTS_FILE = "results.json"
STATES = ("pending", "running", "done", "failed")


@dataclass
class CellStatus:
    """``state`` is one of `STATES`; ``detail`` says more (result, error, why pending)."""

    state: str
    detail: str = ""
    results: dict[str, Any] | None = None


def write_status(run_dir: Path, state: str, **fields: Any) -> None:
    """Record the cell's state (atomically), keeping earlier fields such as the attempt count."""
    record = read_json(run_dir / STATUS_FILE) or {}
    record.update(fields, state=state, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_json_atomically(run_dir / STATUS_FILE, record)


def slurm_queue() -> dict[str, str] | None:
    """Job id ("123_4" for array tasks) → Slurm state of this user's queued and running jobs; None without Slurm."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "--me", "-o", "%i %T"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return dict(line.split(maxsplit=1) for line in out.splitlines() if " " in line)


def cell_status(run_dir: Path, queue: dict[str, str] | None = None) -> CellStatus:
    """The state of the cell in ``run_dir``; ``queue`` (from `slurm_queue`) tells whether Slurm jobs still live."""
    results = read_json(run_dir / RESULTS_FILE)
    if results is not None:
        return CellStatus("done", f"ROC-AUC {results['roc_auc']:.4f} | PR-AUC {results['pr_auc']:.4f}", results)
    status = read_json(run_dir / STATUS_FILE) or {}
    state, job = status.get("state"), status.get("slurm_job")
    submitted = (read_json(run_dir / SUBMITTED_FILE) or {}).get("job")
    resumes = " (resumes from its checkpoint)" if (run_dir / "checkpoints").is_dir() else ""
    if state == "running":
        if _alive(status, queue):
            where = f"Slurm job {job}" if job else f"pid {status.get('pid')} on {status.get('host')}"
            return CellStatus("running", where)
        if job and queue is not None and queue.get(job) == "PENDING":
            return CellStatus("pending", f"requeued as Slurm job {job}{resumes}")
        return CellStatus("pending", f"interrupted{resumes}")
    if submitted and queue is not None and submitted in queue:
        starting = queue[submitted] in ("RUNNING", "CONFIGURING")
        return CellStatus("pending", f"{'starting' if starting else 'queued'} as Slurm job {submitted}")
    if state == "failed":
        return CellStatus("failed", status.get("error", "failed"))
    if state == "preempted":
        where = f"requeued as Slurm job {job}" if status.get("requeued") else "run it again to resume"
        return CellStatus("pending", f"preempted at step {status.get('step')}; {where}")
    if state == "stopped":
        return CellStatus("pending", f"stopped{resumes}")
    return CellStatus("pending")


def _alive(status: dict[str, Any], queue: dict[str, str] | None) -> bool:
    """Whether the process recorded in a running status still runs (as far as this machine can tell)."""
    job = status.get("slurm_job")
    if job:
        # Without squeue (a machine outside the cluster) the file's word is all there is.
        return queue is None or queue.get(job) in ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")
    if status.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(status["pid"]), 0)
    except (KeyError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
