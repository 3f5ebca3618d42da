"""Real 2-process DDP on CPU (gloo) under Lightning's launcher, torchrun and srun's environment.

The data: 13 test clips (a prime) in shards of 5, 5 and 3 — fewer shards than 2 ranks × 2
workers — and 4 validation clips. What must hold:

- evaluation sees every clip exactly once across ranks and workers: results.json's
  ``n_clips`` is the split size and the metrics equal a single process's on the same weights;
- every rank runs the same number of training batches, and the ranks draw different data;
- rank and world size are right in the main process and inside "spawn" / "forkserver"
  DataLoader workers, whichever launcher started the processes;
- corrupt samples are skipped and counted (in results and as a metric) without changing
  which clips the other rank evaluates; a shard that cannot be read stops the run with its
  name, without hanging the other rank.

This file is also the program the launchers start (``python tests/test_ddp.py probe ...``):
see :func:`probe`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from torch.utils.data import IterableDataset

REPO = Path(__file__).resolve().parents[1]
LAUNCHER_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "NODE_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "TORCHELASTIC_RUN_ID",
)
TIMEOUT_S = 300


# --- the program the launchers run -----------------------------------------------------------


def make_model(vocab: list[str]) -> Any:
    """The same small musicnn on every rank and in the single-process reference (seeded init)."""
    import torch

    from lightning_tagging.frontends import LogMel
    from lightning_tagging.models import Musicnn
    from lightning_tagging.module import TaggingModule

    torch.manual_seed(0)
    return TaggingModule(LogMel(), Musicnn(n_tags=len(vocab), width=0.1), tags=vocab)


def make_trainer(devices: int, callbacks: list, max_epochs: int = 1) -> Any:
    import pytorch_lightning as pl

    return pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )


class WorkerView(IterableDataset):
    """Evaluation clips built without a rank (resolved now, in the main process), read in a worker
    that also reports what rank detection says there: ``[rank, world]`` first, then the keys."""

    def __init__(self, shards: list, vocab: list[str]) -> None:
        from lightning_tagging.data.streams import EvalClips

        self.clips = EvalClips(shards, vocab)

    def __iter__(self) -> Any:
        from lightning_tagging.data.distributed import detect_distribution

        yield list(detect_distribution())
        for batch in self.clips:
            yield batch["key"]


def probe(out: str, root: str, start_method: str, workers: int, epochs: int) -> None:
    """Fit ``epochs`` epochs (0: none) with ``workers`` DataLoader workers started by
    ``start_method``, then test; write what this rank saw to ``out/rank<r>.json``."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    from lightning_tagging.data.datamodule import TaggingDataModule
    from lightning_tagging.data.distributed import detect_distribution

    class Record(pl.Callback):
        def __init__(self) -> None:
            self.train: dict[int, list[float]] = {}
            self.test_keys: list[str] = []
            self.val_batches: list[list[str]] = []
            self.logged_train_skipped = -1.0

        def on_validation_batch_start(
            self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self.val_batches.append(list(batch["key"]))

        def on_train_end(self, trainer: pl.Trainer, module: Any) -> None:
            self.logged_train_skipped = float(trainer.callback_metrics["data/train_skipped"])

        def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int) -> None:
            self.train.setdefault(trainer.current_epoch, []).append(round(float(batch["audio"].abs().sum()), 3))

        def on_test_batch_start(
            self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self.test_keys += batch["key"]

    dm = TaggingDataModule(
        root,
        batch_size=4,
        num_workers=workers,
        shuffle_buffer=8,
        train_samples_per_epoch=24,
        worker_start_method=start_method,
    )
    model, record = make_model(dm.vocab), Record()
    trainer = make_trainer(2, [record], max_epochs=epochs)
    t0 = time.monotonic()
    if epochs:
        trainer.fit(model, datamodule=dm)
    t1 = time.monotonic()
    # Test with at most one worker: each one started costs seconds on a small CI machine, and
    # 2 workers per rank over fewer shards than slots are covered in test_data_distributed.py.
    dm.num_workers = min(workers, 1)
    trainer.test(model, datamodule=dm)
    print(f"probe rank {trainer.global_rank}: fit {t1 - t0:.1f} s, test {time.monotonic() - t1:.1f} s", file=sys.stderr)
    rank = trainer.global_rank
    view = list(
        DataLoader(
            WorkerView(dm.directory.split_shards("test"), dm.vocab),
            batch_size=None,
            num_workers=1,
            multiprocessing_context=start_method,
        )
    )
    if rank == 0:
        torch.save(model.state_dict(), Path(out) / "weights.pt")
        Path(out, "results.json").write_text(json.dumps(model.test_results, default=str))
    Path(out, f"rank{rank}.json").write_text(
        json.dumps(
            {
                "trainer": [rank, trainer.world_size],
                "detected": list(detect_distribution()),
                "in_worker": view[0],
                "train": record.train,
                "test_keys": record.test_keys,
                "val_batches": record.val_batches,
                "undeclared_keys": [key for keys in view[1:] for key in keys],
                "logged_train_skipped": record.logged_train_skipped,
            }
        )
    )


# --- helpers of the tests ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES and not k.startswith("SLURM_")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def run(command: list[str], env: dict[str, str], expect_ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
    if expect_ok and result.returncode != 0:
        raise AssertionError(f"{command[:6]} exited {result.returncode}:\n{result.stderr[-4000:]}")
    print(*(line for line in result.stderr.splitlines() if line.startswith("probe rank")), sep="\n")
    return result


def probe_command(out: Path, root: Path, start_method: str, workers: int, epochs: int) -> list[str]:
    return [str(Path(__file__)), "probe", str(out), str(root), start_method, str(workers), str(epochs)]


def rank_reports(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def single_process_results(root: Path, weights: Path | None = None) -> dict[str, Any]:
    """The same model tested by one process (the reference)."""
    import torch

    from lightning_tagging.data.datamodule import TaggingDataModule

    dm = TaggingDataModule(str(root), num_workers=0)
    model = make_model(dm.vocab)
    if weights is not None:
        model.load_state_dict(torch.load(weights, weights_only=True))
    make_trainer(1, []).test(model, datamodule=dm, verbose=False)
    return model.test_results


def assert_same_metrics(ddp: dict[str, Any], single: dict[str, Any]) -> None:
    for name in ("n_clips", "n_tags_evaluated", "n_clips_expected", "n_skipped", "skipped_keys"):
        assert ddp[name] == single[name], name
    assert ddp["roc_auc"] == pytest.approx(single["roc_auc"], abs=1e-6)
    assert ddp["pr_auc"] == pytest.approx(single["pr_auc"], abs=1e-6)
    for tag, values in single["per_tag"].items():
        assert ddp["per_tag"][tag]["roc_auc"] == pytest.approx(values["roc_auc"], abs=1e-6, nan_ok=True)


def expected_halves(root: Path) -> tuple[list[str], list[str]]:
    from lightning_tagging.data.directory import ShardDirectory

    keys = ShardDirectory(str(root)).split_keys("test")
    return keys[:7], keys[7:]  # 13 clips: 7 for rank 0, 6 for rank 1


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lightning_tagging.data.build import build_shards
    from lightning_tagging.data.sources.synthetic import SyntheticSource

    out = tmp_path_factory.mktemp("shards")
    build_shards(
        SyntheticSource(40, seed=4, valid_fraction=0.1, test_fraction=0.3, min_seconds=0.5, max_seconds=0.7),
        out,
        workers=1,
        shard_size=5,
        progress=False,
    )
    stats = json.loads((out / "stats.json").read_text())
    assert stats["splits"]["test"]["clips"] == 13 and stats["splits"]["test"]["shards"] == 3
    return out


def damaged_copy(root: Path, out: Path) -> tuple[Path, list[str]]:
    """A copy with a corrupt sample in test shard 0, test shard 2 cut off mid-sample, a corrupt
    first sample in every training shard, and a validation split of one clip (so one rank has
    none). Returns it and the test keys lost."""
    import shutil

    from lightning_tagging.data.shards import TarShardWriter, list_shards, read_samples

    copy = Path(shutil.copytree(root, out))
    lost = []
    for shard in list_shards(copy, "train") + list_shards(copy, "test")[:1]:
        samples = list(read_samples(shard))
        victim = samples[0 if shard.name.startswith("train") else 2]
        victim["flac"] = b"fLaC but not really"
        writer = TarShardWriter(shard)
        for sample in samples:
            writer.add(sample["__key__"], "flac", sample["flac"], sample["json"])
        writer.commit()
        lost += [victim["__key__"]] if shard.name.startswith("test") else []
    last = list_shards(copy, "test")[2]
    with tarfile.open(last) as tar:
        members = tar.getmembers()
    cut = members[2].offset_data + members[2].size // 2  # inside the second sample's audio
    last.write_bytes(last.read_bytes()[:cut])
    lost += [m.name.partition(".")[0] for m in members[2::2]]  # the second and third samples
    index = json.loads((copy / "index.json").read_text())
    index["valid-000000.tar"] = index["valid-000000.tar"][:1]
    (copy / "index.json").write_text(json.dumps(index))
    return copy, lost


# --- the tests ------------------------------------------------------------------------------------


def test_lt_test_under_lightnings_launcher_evaluates_each_clip_once(root: Path, tmp_path: Path) -> None:
    """`lt test` with `--trainer.devices 2 --trainer.strategy ddp`: Lightning starts the second process."""
    from lightning_tagging.cli import main as lt_main

    common = [
        "test",
        "--config",
        str(REPO / "experiments" / "demo.yaml"),
        "--data.root",
        str(root),
        "--data.batch_size",
        "4",
        "--model.backbone.init_args.width",
        "0.1",
        "--trainer.logger",
        "false",
        "--trainer.accelerator",
        "cpu",
    ]
    start = time.monotonic()
    run(
        [
            sys.executable,
            "-m",
            "lightning_tagging.cli",
            *common,
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--data.num_workers",
            "1",
            "--data.worker_start_method",
            "spawn",
            "--trainer.default_root_dir",
            str(tmp_path / "ddp"),
        ],
        clean_env(),
    )
    print(f"2-process lt test: {time.monotonic() - start:.1f} s")
    ddp = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert ddp["n_clips"] == ddp["n_clips_expected"] == ddp["data"]["clips"]["test"] == 13 and ddp["n_skipped"] == 0
    assert ddp["data"]["train_size"] == 1.0 and ddp["data"]["train_clips"] == 23
    assert (
        lt_main(
            [
                *common,
                "--trainer.devices",
                "1",
                "--data.num_workers",
                "0",
                "--trainer.default_root_dir",
                str(tmp_path / "single"),
            ]
        )
        == 0
    )
    assert_same_metrics(ddp, json.loads((tmp_path / "single" / "results.json").read_text()))


def test_torchrun_fit_and_test_with_forkserver_workers_and_corrupt_data(root: Path, tmp_path: Path) -> None:
    data, lost = damaged_copy(root, tmp_path / "damaged")
    out = tmp_path / "out"
    out.mkdir()
    start = time.monotonic()
    run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            *probe_command(out, data, "forkserver", workers=2, epochs=1),
        ],
        clean_env(),
    )
    print(f"2-process torchrun fit + test: {time.monotonic() - start:.1f} s")
    reports, results = rank_reports(out), json.loads((out / "results.json").read_text())
    for rank, report in enumerate(reports):
        assert report["trainer"] == report["detected"] == report["in_worker"] == [rank, 2]
    # the same number of training batches on both ranks, every epoch; different data on each
    batches = [{epoch: len(fingerprints) for epoch, fingerprints in r["train"].items()} for r in reports]
    assert batches[0] == batches[1] == {"0": 4}  # workers × ceil(ceil(24 / (4 × 2)) / workers)
    assert reports[0]["train"] != reports[1]["train"]
    # validation of one clip: rank 0 evaluates it, rank 1 runs the loop on one empty batch (no hang)
    assert [r["val_batches"] for r in reports] == [
        [[json.loads((data / "index.json").read_text())["valid-000000.tar"][0]]],
        [[]],
    ]
    # evaluation: each rank its own half, minus the lost clips only
    halves = expected_halves(root)
    for report, half in zip(reports, halves, strict=True):
        assert sorted(report["test_keys"]) == sorted(set(half) - set(lost))
        assert sorted(report["undeclared_keys"]) == sorted(set(half) - set(lost))
    assert results["n_clips"] == 13 - len(lost) and results["n_skipped"] == len(lost) == 3
    assert results["skipped_keys"] == sorted(lost) and results["n_clips_expected"] == 13
    assert results["train_skipped"] > 0  # every training shard starts with a corrupt sample
    assert reports[0]["logged_train_skipped"] == results["train_skipped"]  # logged as data/train_skipped
    assert_same_metrics(results, single_process_results(data, out / "weights.pt"))


def test_srun_environment_with_spawn_workers(root: Path, tmp_path: Path) -> None:
    """Two processes started the way srun starts tasks: SLURM_PROCID, SLURM_NTASKS, ... (no other launcher)."""
    out = tmp_path / "out"
    out.mkdir()
    port, job = str(free_port()), str(10_000 + os.getpid() % 50_000)
    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": job,
        "SLURM_JOB_NAME": "lt-probe",
        "SLURM_NODELIST": "127.0.0.1",
        "MASTER_PORT": port,
    }
    start = time.monotonic()
    tasks = [
        subprocess.Popen(
            [sys.executable, *probe_command(out, root, "spawn", workers=0, epochs=0)],
            cwd=REPO,
            env=clean_env(**slurm, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [task.communicate(timeout=TIMEOUT_S) for task in tasks]
    print(f"2-task srun-style test: {time.monotonic() - start:.1f} s")
    assert [t.returncode for t in tasks] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    reports = rank_reports(out)
    for rank, (report, half) in enumerate(zip(reports, expected_halves(root), strict=True)):
        assert report["trainer"] == report["detected"] == report["in_worker"] == [rank, 2]
        assert sorted(report["test_keys"]) == sorted(report["undeclared_keys"]) == sorted(half)
    results = json.loads((out / "results.json").read_text())
    assert results["n_clips"] == results["n_clips_expected"] == 13 and results["n_skipped"] == 0


@pytest.mark.skipif(not os.environ.get("LT_TEST_SRUN"), reason="set LT_TEST_SRUN=1 with SLURM_CONF naming a cluster")
def test_real_srun(root: Path, tmp_path: Path) -> None:
    """The same under a real `srun -n 2` (e.g. slurm/local-cluster.sh start; export SLURM_CONF=...)."""
    out = tmp_path / "out"
    out.mkdir()
    env = {**clean_env(), **{k: v for k, v in os.environ.items() if k == "SLURM_CONF"}}
    run(
        [
            "srun",
            "-n",
            "2",
            "--ntasks-per-node",
            "2",
            "--job-name",
            "lt-probe",
            sys.executable,
            *probe_command(out, root, "spawn", workers=1, epochs=1),
        ],
        env,
    )
    reports = rank_reports(out)
    for rank, (report, half) in enumerate(zip(reports, expected_halves(root), strict=True)):
        assert report["trainer"] == report["detected"] == report["in_worker"] == [rank, 2]
        assert sorted(report["test_keys"]) == sorted(half)
    assert reports[0]["train"] == {"0": 3} and reports[1]["train"] == {"0": 3}
    assert json.loads((out / "results.json").read_text())["n_clips"] == 13


def test_an_unreadable_shard_stops_every_rank_with_its_name(root: Path, tmp_path: Path) -> None:
    import shutil

    data = Path(shutil.copytree(root, tmp_path / "data"))
    (data / "test-000002.tar").write_bytes(b"")  # only rank 1 reads it; rank 0 would wait for rank 1
    start = time.monotonic()
    result = run(
        [
            sys.executable,
            "-m",
            "lightning_tagging.cli",
            "test",
            "--config",
            str(REPO / "experiments" / "demo.yaml"),
            "--data.root",
            str(data),
            "--data.num_workers",
            "0",
            "--model.backbone.init_args.width",
            "0.1",
            "--trainer.logger",
            "false",
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
        ],
        clean_env(),
        expect_ok=False,
    )
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert "test-000002.tar" in result.stderr
    assert elapsed < 120  # not a hang until the collective's 30-minute timeout


if __name__ == "__main__" and len(sys.argv) >= 2 and sys.argv[1] == "probe":
    probe(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
