"""W&B: a matrix cell's real offline run (id, group, job type, tags, config, metrics, table, images),
a preempted cell continuing the same run, and only rank zero logging under DDP.

The offline run files are read back with the W&B record format (LevelDB-style log of protobuf
``Record`` s, as ``wandb sync`` reads them), so the checks see exactly what would be uploaded.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wandb.proto import wandb_internal_pb2

from lightning_tagging.cli import main
from lightning_tagging.matrix.spec import load_matrix

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"


def offline_records(run_dir: Path) -> Iterator[Any]:
    """Protobuf records of an offline run folder's ``run-<id>.wandb`` file, in order."""
    (path,) = run_dir.glob("run-*.wandb")
    data, pos, block, pending = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"  # 7-byte file header, then 32 KiB blocks of (crc, length, type) chunks
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def summarize(run_dir: Path, timeout: float = 60) -> dict[str, Any]:
    """The run record, the config keys, every history key and the exit code of a finished offline run.

    W&B's writer flushes the file a little after ``finish()`` returns: wait for the exit record.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = _summarize(run_dir)
        if "exit_code" in summary:
            return summary
        time.sleep(0.5)
    raise AssertionError(f"{run_dir} has no exit record after {timeout} s")


def _summarize(run_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"config": {}, "history": set(), "steps": []}
    for record in offline_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update if i.key})
        elif kind == "history":
            items = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
            out["history"] |= set(items)
            if "trainer/global_step" in items and "frontend/alpha" in items:
                out["steps"].append(int(float(items["trainer/global_step"])))
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def tiny_matrix(folder: Path, epochs: int = 1, batches: int = 2) -> Path:
    path = folder / "wb.yaml"
    path.write_text(
        textwrap.dedent(f"""
        configs: [{DEMO}]
        fixed:
          trainer.max_epochs: {epochs}
          trainer.limit_train_batches: {batches}
          trainer.log_every_n_steps: 1
          trainer.enable_progress_bar: false
          model.backbone.init_args.width: 0.1
        axes:
          model.frontend.init_args.compression: [log_learn]
        seeds: [0]
        wandb: {{project: lt_tests, job_type: smoke}}
    """)
    )
    return path


def tiny_data(corpus: Path) -> list[str]:
    return [
        "--data.root",
        str(corpus),
        "--data.batch_size",
        "2",
        "--data.num_workers",
        "0",
        "--data.shuffle_buffer",
        "8",
    ]


@pytest.fixture
def no_wandb_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_PROJECT", raising=False)  # the matrix's project applies
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_a_cell_logs_an_offline_run_named_after_the_cell(
    tiny_corpus: Path, tmp_path: Path, no_wandb_project: None
) -> None:
    path = tiny_matrix(tmp_path)
    cell = load_matrix(path).cells()[0]
    assert (
        main(
            ["matrix", "run", str(path), "--cell", "0", "--runs", str(tmp_path / "runs"), "--", *tiny_data(tiny_corpus)]
        )
        == 0
    )
    (offline,) = (tmp_path / "runs" / "wb" / cell.id / "wandb").glob(f"offline-run-*-{cell.id}")
    run = summarize(offline)
    record = run["run"]
    assert (record.run_id, record.project, record.run_group, record.job_type) == (cell.id, "lt_tests", "wb", "smoke")
    assert list(record.tags) == ["compression=log_learn", "seed=0"]
    resolved = run["config"]["config"]
    assert resolved["model"]["frontend"]["init_args"]["compression"] == "log_learn"
    assert resolved["trainer"]["default_root_dir"].endswith(cell.id) and resolved["seed_everything"] == 0
    assert run["config"]["axes"] == {"compression": "log_learn", "seed": "0"} and run["config"]["cell_id"] == cell.id
    for key in (
        "train/loss_step",
        "val/roc_auc",
        "val/pr_auc",
        "test/roc_auc",
        "test/pr_auc",
        "frontend/alpha",
        "frontend/beta",
        "test/per_tag/_type",
        "test/spectrogram/_type",
        "test/taggram/_type",
    ):
        assert key in run["history"], key
    assert run["exit_code"] == 0
    media = offline / "files" / "media"
    assert len(list(media.glob("images/test/taggram_*.png"))) == 2
    assert len(list(media.glob("images/test/spectrogram_*.png"))) == 2
    (table,) = media.glob("table/test/per_tag_*.table.json")
    content = json.loads(table.read_text())
    assert content["columns"] == ["tag", "roc_auc", "pr_auc", "n_positive"]
    assert len(content["data"]) == len(json.loads((tiny_corpus / "vocab.json").read_text()))


def signal_when(path: Path, rows: int, timeout: float = 300) -> threading.Thread:
    """A thread that sends SIGUSR1 to this process once ``path`` (a CSV) has ``rows`` data rows."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and len(path.read_text().splitlines()) > rows:
                os.kill(os.getpid(), signal.SIGUSR1)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_preempted_cell_resumes_and_continues_its_wandb_run(
    tiny_corpus: Path, tmp_path: Path, no_wandb_project: None
) -> None:
    path = tiny_matrix(tmp_path, epochs=2, batches=3)
    cell = load_matrix(path).cells()[0]
    run_dir = tmp_path / "runs" / "wb" / cell.id
    argv = ["matrix", "run", str(path), "--cell", "0", "--runs", str(tmp_path / "runs"), "--", *tiny_data(tiny_corpus)]
    # The file is written in blocks, at the latest at an epoch's end: 3 rows = epoch 1 done, so the signal
    # lands in epoch 2 (3 batches), after its first or second batch.
    watcher = signal_when(run_dir / "frontend_values.csv", rows=3)
    assert main(argv) == 3  # checkpointed and stopped (outside Slurm: nothing to requeue)
    watcher.join()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "preempted" and status["step"] >= 4
    assert main(["matrix", "list", str(path), "--runs", str(tmp_path / "runs")]) == 0
    assert (run_dir / "checkpoints" / "preempted.ckpt").is_file()
    assert main(argv) == 0  # resumes from preempted.ckpt and finishes
    assert json.loads((run_dir / "status.json").read_text())["attempt"] == 2
    assert not (run_dir / "checkpoints" / "preempted.ckpt").exists()
    # Folders offline-run-<start time>-<id>. With both attempts in this one process (never under Slurm), W&B
    # once gave both the same start time and the second folder a suffix: offline-run-…_205613-<id>-1.
    first, second = sorted((run_dir / "wandb").glob(f"offline-run-*-{cell.id}*"))
    a, b = summarize(first), summarize(second)
    assert a["run"].run_id == b["run"].run_id == cell.id  # one W&B run once synced (`wandb sync` appends)
    assert a["steps"] and b["steps"] and max(a["steps"]) < min(b["steps"])  # the second attempt continues
    steps = [int(line.split(",")[0]) for line in (run_dir / "frontend_values.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 7))  # every step once, none lost or repeated across the two attempts


def test_only_rank_zero_logs_under_ddp(tiny_corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "lightning_tagging.cli",
        "run",
        "--config",
        str(DEMO),
        *tiny_data(tiny_corpus),
        "--model.backbone.init_args.width",
        "0.1",
        "--trainer.max_steps",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(run_dir),
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert (run_dir / "results.json").is_file()
