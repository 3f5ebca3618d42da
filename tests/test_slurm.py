"""On a real one-node Slurm (slurm/local-cluster.sh): the smoke matrix through sbatch, and a preempted cell.

Not skipped when Slurm is missing: `make test` installs it (slurm/system-deps.sh), and a machine
without it fails here with the command that installs it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lightning_tagging.cli import main
from lightning_tagging.matrix.spec import load_matrix

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "slurm" / "local-cluster.sh"
DEMO = REPO / "experiments" / "demo.yaml"


def free_port_pair() -> int:
    """A port p with p and p + 1 free (slurmctld, slurmd), so a cluster someone already runs is left alone."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two adjacent free ports")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private one-node Slurm cluster for this module; yields the environment that talks to it."""
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "LT_SLURM_PORT": str(free_port_pair())}
    started = subprocess.run(
        ["bash", str(CLUSTER), "start", str(folder)], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    if started.returncode != 0:
        pytest.fail(
            f"could not start a local Slurm cluster with {CLUSTER}:\n{started.stdout}{started.stderr}\n"
            "Install Slurm and munge first: as root, `bash slurm/system-deps.sh` "
            "(Debian: apt-get install slurmctld slurmd slurm-client munge)",
            pytrace=False,
        )
    env["SLURM_CONF"] = str(folder / "slurm.conf")
    try:
        yield env
    finally:
        subprocess.run(
            ["bash", str(CLUSTER), "stop", str(folder)], env=env, capture_output=True, timeout=180, check=False
        )


@pytest.fixture
def on_cluster(slurm: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process talks to the test cluster; jobs inherit the environment (offline W&B, one thread each)."""
    monkeypatch.setenv("SLURM_CONF", slurm["SLURM_CONF"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one CPU per cell; and identical arithmetic in every run
    return slurm


def submit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["matrix", "submit", *argv]) == 0
    match = re.search(r"submitted job (\d+)", capsys.readouterr().out)
    assert match, "lt matrix submit printed no job id"
    return match.group(1)


def queued(job: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-j", job, "-o", "%i %T"], capture_output=True, text=True, check=False
    ).stdout
    return out.splitlines()


def wait_for(condition: object, timeout: float, what: str, poll_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll_s)


def tiny(corpus: Path) -> list[str]:
    """`lt run` arguments that shrink a smoke cell further: the tiny corpus, two steps."""
    return [
        "--data.root",
        str(corpus),
        "--data.shuffle_buffer",
        "8",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "2",
    ]


def test_part_of_the_smoke_matrix_runs_as_one_array_job_reports_and_resubmits_only_the_rest(
    on_cluster: dict[str, str], tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed 0's four cells (both backbones × both compressions) as one array job, as a user starts a
    matrix; the report then has them and lists the four still pending; resubmitting the matrix takes
    exactly those four. (Half the matrix keeps the test short: two cells at a time take about 20 s here.)"""
    runs = tmp_path / "runs"
    cells = load_matrix(REPO / "experiments" / "matrices" / "smoke_log_compression.yaml").cells()
    assert len(cells) == 8
    first = [c for c in cells if c.axes["seed"] == "0"]
    rest = [c for c in cells if c not in first]
    assert len(first) == 4
    selection = [arg for cell in first for arg in ("--cell", cell.id)]
    job = submit(
        ["smoke_log_compression", *selection, "--runs", str(runs), "--max-parallel", "2", "--time", "15:00",
         "--", *tiny(tiny_corpus)],
        capsys,
    )
    assert len(queued(job)) == 4
    wait_for(lambda: not queued(job), 900, f"array job {job}")

    assert main(["matrix", "list", "smoke_log_compression", "--runs", str(runs)]) == 0
    listing = capsys.readouterr().out
    assert "4 done, 0 running, 4 pending, 0 failed" in listing, listing
    for task, cell in enumerate(first):
        status = json.loads((runs / "smoke_log_compression" / cell.id / "status.json").read_text())
        assert status["slurm_job"] == f"{job}_{task}" and status["state"] == "done"
        assert (runs / "smoke_log_compression" / "slurm" / f"{job}_{task}.out").is_file()
    assert (runs / "smoke_log_compression" / "slurm" / f"{job}.sbatch").is_file()

    assert main(["report", "smoke_log_compression", "--runs", str(runs)]) == 0
    report = runs / "smoke_log_compression" / "report"
    text = (report / "report.md").read_text()
    assert "8 cells: 4 done, 0 running, 4 pending, 0 failed" in text and all(c.id in text for c in cells)
    for name in ("summary.csv", "cells.csv", "compression.png", "frontend_values.png"):
        assert (report / name).stat().st_size > 0, name
    # resubmitting the matrix takes what is not done, and only that
    assert main(["matrix", "submit", "smoke_log_compression", "--runs", str(runs), "--dry-run"]) == 0
    script = capsys.readouterr().out
    listed = re.search(r"^CELLS=\((.*)\)$", script, re.MULTILINE)
    assert listed and listed.group(1).split() == [c.id for c in rest], script
    assert "#SBATCH --array=0-3%" in script


def preempt_matrix(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(f"""
        configs: [{DEMO}]
        fixed:
          trainer.max_epochs: 3
          trainer.limit_train_batches: 8
          trainer.enable_progress_bar: false
          model.backbone.init_args.width: 0.1
          data.batch_size: 2
          data.num_workers: 0
          data.shuffle_buffer: 8
        axes:
          model.frontend.init_args.compression: [log_learn]
        seeds: [0]
    """)
    )
    return path


def test_a_cell_signalled_to_requeue_resumes_and_ends_as_an_uninterrupted_run(
    on_cluster: dict[str, str], tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same cell twice; under another matrix name for the reference, so that the two concurrent
    # runs have W&B run ids of their own (W&B refuses two live runs with one id).
    path, ref_path = preempt_matrix(tmp_path, "preempt"), preempt_matrix(tmp_path, "reference")
    (cell,) = load_matrix(path).cells()
    (ref_cell,) = load_matrix(ref_path).cells()
    assert cell.overrides == ref_cell.overrides
    data = ["--", "--data.root", str(tiny_corpus)]
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    job = submit([str(path), "--runs", str(interrupted), *data], capsys)
    ref_job = submit([str(ref_path), "--runs", str(reference), *data], capsys)
    run_dir = interrupted / "preempt" / cell.id
    trajectory = run_dir / "frontend_values.csv"
    log_file = interrupted / "preempt" / "slurm" / f"{job}_0.out"

    def past_epoch_1() -> bool:  # the file is written in blocks, at the latest at each epoch's end
        return trajectory.exists() and len(trajectory.read_text().splitlines()) > 8

    # Signal once the first of three epochs (8 steps each) is done. A tiny step takes ~0.1 s: poll
    # often, and leave 14 steps (all but the epochs' last) for the signal to land in.
    wait_for(lambda: past_epoch_1() or not queued(job), 600, "epoch 1", poll_s=0.1)
    assert past_epoch_1(), log_file.read_text()[-3000:]
    subprocess.run(["scancel", "--signal=USR1", f"{job}_0"], check=True)
    wait_for(lambda: not queued(job) and not queued(ref_job), 900, "both jobs to finish")

    log = log_file.read_text()
    assert re.search(r"preempted at step \d+: saved .*preempted\.ckpt; requeued Slurm job " + job, log), log[-3000:]
    assert "restart 1" in log  # Slurm started the task a second time
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done" and status["attempt"] == 2
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{cell.id}"))) == 2  # one W&B run id, two attempts

    # Same seed, CPU, one thread, same steps on the same batches (resumable loader, per-step seeding):
    # the arithmetic is the same operations in the same order, so the results are equal to float rounding.
    # 1e-6 leaves room for nothing but that; any lost, repeated or reordered step moves them far more.
    ref_dir = reference / "reference" / ref_cell.id
    a, b = (json.loads((d / "results.json").read_text()) for d in (run_dir, ref_dir))
    assert a["global_step"] == b["global_step"] == 24
    for key in ("roc_auc", "pr_auc"):
        assert abs(a[key] - b[key]) <= 1e-6, key
    for name, value in b["frontend"].items():
        assert abs(a["frontend"][name] - value) <= 1e-6 * abs(value), name
    assert trajectory.read_text() == (ref_dir / "frontend_values.csv").read_text()
    weights = [
        torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        for d in (run_dir, ref_dir)
    ]
    assert max((weights[0][k].float() - weights[1][k].float()).abs().max().item() for k in weights[1]) <= 1e-6
