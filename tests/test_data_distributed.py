"""Which data each rank and worker reads: rank detection per launcher, exact evaluation dealing.

Real DataLoader workers, real shards; the launchers themselves run in tests/test_ddp.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from lightning_tagging.data.build import build_shards
from lightning_tagging.data.directory import ShardDirectory
from lightning_tagging.data.distributed import detect_distribution, share
from lightning_tagging.data.errors import DataError
from lightning_tagging.data.sources.synthetic import SyntheticSource
from lightning_tagging.data.streams import EvalClips, TrainPatches

LAUNCHER_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "NODE_RANK",
    "LOCAL_WORLD_SIZE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (0, 1)),
        ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (3, 4)),  # torchrun
        ({"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}, (1, 2)),  # Lightning's launcher, one node
        ({"LOCAL_RANK": "1", "NODE_RANK": "2", "LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "12"}, (9, 12)),
        ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8"}, (5, 8)),  # srun
        (
            {"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"},
            (1, 2),
        ),  # torchrun in an sbatch job
    ],
)
def test_rank_detection_per_launcher(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], expected: tuple[int, int]
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert detect_distribution() == expected


def test_lightning_launcher_on_another_node_without_its_size_is_an_error(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in {"LOCAL_RANK": "0", "NODE_RANK": "1", "WORLD_SIZE": "4"}.items():
        clean_env.setenv(name, value)
    with pytest.raises(DataError, match="LOCAL_WORLD_SIZE"):
        detect_distribution()


@pytest.mark.parametrize("n", [0, 1, 7, 13, 100])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_share_tiles_the_range(n: int, parts: int) -> None:
    ranges = [share(n, parts, p) for p in range(parts)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """13 test clips (a prime) in shards of 5, 5 and 3: fewer shards than 2 ranks × 2 workers."""
    out = tmp_path_factory.mktemp("shards")
    build_shards(
        SyntheticSource(40, seed=4, valid_fraction=0.1, test_fraction=0.3, min_seconds=0.5, max_seconds=0.7),
        out,
        workers=1,
        shard_size=5,
        progress=False,
    )
    return out


@pytest.mark.parametrize(("world", "workers"), [(1, 0), (2, 2), (3, 1), (5, 2), (16, 0)])
def test_every_eval_clip_exactly_once(root: Path, world: int, workers: int) -> None:
    directory = ShardDirectory(str(root))
    shards = directory.split_shards("test")
    assert [len(keys) for _, keys in shards] == [5, 5, 3]
    per_rank = []
    for rank in range(world):
        dataset = EvalClips(shards, directory.vocab, rank=rank, world_size=world)
        loader = DataLoader(dataset, batch_size=None, num_workers=min(workers, dataset.n_clips))
        keys = [key for batch in loader for key in batch["key"]]
        assert len(keys) == dataset.n_clips and len(loader) == max(1, dataset.n_clips)
        per_rank.append(keys)
    everything = [key for keys in per_rank for key in keys]
    assert sorted(everything) == sorted(directory.split_keys("test"))  # the union is the split, each clip once
    assert max(map(len, per_rank)) - min(map(len, per_rank)) <= 1  # balanced
    if world > 13:  # more ranks than clips: the idle ones still yield one (empty) batch
        idle = EvalClips(shards, directory.vocab, rank=world - 1, world_size=world)
        assert [b["key"] for b in idle] == [[]]


def test_rank_is_fixed_when_the_dataset_is_built(root: Path, clean_env: pytest.MonkeyPatch) -> None:
    """A dataset built without a rank resolves it in the main process, not in its (spawned) workers."""
    directory = ShardDirectory(str(root))
    clean_env.setenv("SLURM_PROCID", "1")
    clean_env.setenv("SLURM_NTASKS", "2")
    dataset = EvalClips(directory.split_shards("test"), directory.vocab)
    clean_env.delenv("SLURM_PROCID")  # the workers' environment no longer says: they must not need it
    clean_env.delenv("SLURM_NTASKS")
    loader = DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    assert sorted(k for b in loader for k in b["key"]) == sorted(directory.split_keys("test")[7:])  # rank 1's half


def test_training_with_one_shard_for_two_ranks_of_two_workers(tmp_path: Path) -> None:
    """Shards are drawn with replacement: one shard feeds any number of ranks × workers, same step counts."""
    build_shards(SyntheticSource(12, seed=6, min_seconds=0.5, max_seconds=0.6), tmp_path, workers=1, shard_size=64,
                 progress=False)  # fmt: skip
    directory = ShardDirectory(str(tmp_path))
    assert len(directory.split_shards("train")) == 1
    batches = []
    for rank in (0, 1):
        dataset = TrainPatches(directory.split_shards("train"), directory.vocab, crop_samples=4000,
                               patches_per_clip=2, shuffle_buffer=4, batch_size=3, batches_per_worker=2, workers=2,
                               seed=0, rank=rank, world_size=2)  # fmt: skip
        batches.append([b["audio"] for b in DataLoader(dataset, batch_size=None, num_workers=2)])
    assert len(batches[0]) == len(batches[1]) == 4 and all(b.shape == (3, 4000) for b in batches[0] + batches[1])
    assert not all(a.equal(b) for a, b in zip(batches[0], batches[1], strict=True))  # each rank its own draws
