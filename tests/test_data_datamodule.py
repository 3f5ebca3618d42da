"""TaggingDataModule on real shards: batch shapes, epoch length, eval coverage, clear errors, Lightning."""

from __future__ import annotations

import json
import logging
import math
import shutil
import tarfile
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lightning_tagging.data.build import build_shards
from lightning_tagging.data.datamodule import TaggingDataModule
from lightning_tagging.data.errors import DataError, ShardDirectoryError, ShardOpenError, VocabularyMismatchError
from lightning_tagging.data.shards import TarShardWriter, list_shards, read_samples
from lightning_tagging.data.sources.synthetic import SyntheticSource
from lightning_tagging.data.synth import TAGS


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    build_shards(
        SyntheticSource(40, seed=5, min_seconds=2.0, max_seconds=3.0), out, workers=1, shard_size=4, progress=False
    )
    return out


@pytest.fixture
def copy_of(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


def keys_of(root: Path, split: str) -> list[str]:
    return [s["__key__"] for shard in list_shards(root, split) for s in read_samples(shard)]


def n_train(root: Path) -> int:
    return json.loads((root / "stats.json").read_text())["splits"]["train"]["clips"]


def test_vocab_and_n_tags(root: Path) -> None:
    dm = TaggingDataModule(str(root))
    assert dm.vocab == list(TAGS) and dm.n_tags == 24


@pytest.mark.parametrize("workers", [0, 2])
def test_train_batches_and_epoch_length(root: Path, workers: int) -> None:
    dm = TaggingDataModule(str(root), batch_size=8, num_workers=workers, crop_samples=16000, shuffle_buffer=32)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = list(loader)
    per_worker = math.ceil(math.ceil(n_train(root) * 4 / 8) / max(1, workers))
    assert len(batches) == len(loader) == per_worker * max(1, workers)
    for batch in batches:
        assert set(batch) == {"audio", "tags", "skipped"} and batch["skipped"].item() == 0
        assert batch["audio"].shape == (8, 16000) and batch["audio"].dtype == torch.int16  # 16-bit shards
        assert batch["tags"].shape == (8, 24) and batch["tags"].dtype == torch.float32
        assert batch["audio"].abs().max() > 0  # audio, not padding
        assert set(batch["tags"].unique().tolist()) <= {0.0, 1.0} and (batch["tags"].sum(1) > 0).all()


def test_epoch_length_can_be_set_and_epochs_differ(root: Path) -> None:
    dm = TaggingDataModule(str(root), batch_size=8, num_workers=0, crop_samples=8000, train_samples_per_epoch=50)
    loader = dm.train_dataloader()
    first, second = list(loader), list(loader)
    assert len(first) == len(second) == len(loader) == 7  # ceil(50 / 8)
    assert not torch.equal(first[0]["audio"], second[0]["audio"])  # the next epoch draws anew
    again = TaggingDataModule(str(root), batch_size=8, num_workers=0, crop_samples=8000, train_samples_per_epoch=50)
    assert torch.equal(next(iter(again.train_dataloader()))["audio"], first[0]["audio"])  # seeded


def test_clips_shorter_than_the_crop_are_zero_padded(root: Path) -> None:
    dm = TaggingDataModule(
        str(root), batch_size=4, num_workers=0, crop_samples=16000 * 5, shuffle_buffer=4, train_samples_per_epoch=4
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (4, 80000)
    assert (batch["audio"][:, 16000 * 3 :] == 0).all()  # clips last at most 3 s


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_eval_yields_every_clip_exactly_once_whole(root: Path, split: str, workers: int) -> None:
    dm = TaggingDataModule(str(root), num_workers=workers)
    loader = dm.val_dataloader() if split == "valid" else dm.test_dataloader()
    batches = list(loader)
    keys = [b["key"][0] for b in batches]
    assert sorted(keys) == sorted(keys_of(root, split)) and len(keys) == len(set(keys)) == len(loader)
    for batch in batches:
        assert batch["audio"].ndim == 2 and batch["audio"].shape[0] == 1
        assert batch["audio"].dtype == torch.float32  # evaluation decodes to float32, unlike training
        assert 2 * 16000 <= batch["audio"].shape[1] <= 3 * 16000  # whole clips (2–3 s)
        assert batch["tags"].shape == (1, 24) and isinstance(batch["key"][0], str)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ShardDirectoryError, match="lt data build synthetic --out"):
        TaggingDataModule(str(tmp_path / "nowhere"))


def test_directory_without_vocab_is_a_clear_error(copy_of: Path) -> None:
    (copy_of / "vocab.json").unlink()
    with pytest.raises(ShardDirectoryError, match=r"vocab\.json"):
        TaggingDataModule(str(copy_of))


def test_a_missing_shard_fails_fast_with_its_name(copy_of: Path) -> None:
    (copy_of / "test-000001.tar").unlink()
    dm = TaggingDataModule(str(copy_of))
    with pytest.raises(ShardOpenError, match=r"test-000001\.tar"):
        dm.test_dataloader()  # before any clip is read


def test_split_without_shards_is_a_clear_error(copy_of: Path) -> None:
    index = json.loads((copy_of / "index.json").read_text())
    (copy_of / "index.json").write_text(json.dumps({k: v for k, v in index.items() if not k.startswith("test")}))
    dm = TaggingDataModule(str(copy_of))
    with pytest.raises(ShardDirectoryError, match="no test shards"):
        dm.test_dataloader()


def test_directory_without_index_is_indexed_from_its_tars(root: Path, copy_of: Path) -> None:
    (copy_of / "index.json").unlink()  # as built before index.json existed
    assert TaggingDataModule(str(copy_of)).split_keys("test") == keys_of(root, "test")


@pytest.mark.parametrize("workers", [0, 2])
def test_tags_missing_from_the_vocabulary_are_an_error(copy_of: Path, workers: int) -> None:
    vocab = [t for t in TAGS if t != "drums"]
    (copy_of / "vocab.json").write_text(json.dumps(vocab))
    dm = TaggingDataModule(str(copy_of), num_workers=workers)
    with pytest.raises(VocabularyMismatchError, match="'drums'"):
        list(dm.val_dataloader())
        list(dm.test_dataloader())


def rewrite_shard(path: Path, edit: dict[str, dict[str, bytes | None]]) -> None:
    """Rewrite a shard in place, replacing (bytes) or dropping (None) members of some samples."""
    samples = list(read_samples(path))
    writer = TarShardWriter(path)
    for sample in samples:
        for extension, data in sample.items():
            if extension == "__key__":
                continue
            data = edit.get(sample["__key__"], {}).get(extension, data)
            if data is not None:
                writer._add(f"{sample['__key__']}.{extension}", data)
    writer.commit()


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_samples_and_broken_shards_are_skipped_and_counted(
    root: Path, copy_of: Path, workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    # A test split of three shards made of the directory's eval samples, then damaged.
    samples = [s for split in ("valid", "test") for shard in list_shards(root, split) for s in read_samples(shard)]
    layout = {"test-000000.tar": samples[:4], "test-000001.tar": samples[4:7], "test-000002.tar": samples[7:9]}
    index = {k: v for k, v in json.loads((copy_of / "index.json").read_text()).items() if not k.startswith("test")}
    for shard in list_shards(copy_of, "test"):
        shard.unlink()
    for name, members in layout.items():
        writer = TarShardWriter(copy_of / name)
        for sample in members:
            writer.add(sample["__key__"], "flac", sample["flac"], sample["json"])
        writer.commit()
        index[name] = [sample["__key__"] for sample in members]
    (copy_of / "index.json").write_text(json.dumps(index))
    a, b, c, d = index["test-000000.tar"]
    rewrite_shard(
        copy_of / "test-000000.tar",
        {a: {"flac": b"this is not a flac file"}, b: {"json": b"{not json"}, c: {"json": None}},
    )  # corrupt audio, corrupt JSON, no JSON
    e, f, _ = index["test-000001.tar"]  # e: empty audio, f: cut off, then the rest is lost
    rewrite_shard(copy_of / "test-000001.tar", {e: {"flac": b""}})  # empty audio
    with tarfile.open(copy_of / "test-000001.tar") as tar:
        cut = next(m.offset_data + m.size // 2 for m in tar if m.name == f"{f}.flac")
    data = (copy_of / "test-000001.tar").read_bytes()
    (copy_of / "test-000001.tar").write_bytes(data[:cut])  # breaks off in f's audio
    (copy_of / "test-000002.tar").write_bytes(b"")  # cannot be read at all: fails fast with its name

    dm = TaggingDataModule(str(copy_of), num_workers=workers)
    with pytest.raises(ShardOpenError, match=r"test-000002\.tar"):
        list(dm.test_dataloader())
    writer = TarShardWriter(copy_of / "test-000002.tar")
    for sample in layout["test-000002.tar"]:
        writer.add(sample["__key__"], "flac", sample["flac"], sample["json"])
    writer.commit()
    loader = dm.test_dataloader()
    with caplog.at_level(logging.WARNING):
        keys = [b["key"][0] for b in loader]
    assert sorted(keys) == sorted([d, *index["test-000002.tar"]])  # every other clip, once
    if workers == 0:  # (workers count and log in their own processes)
        assert loader.dataset.reader.skipped == 6
        assert any("skipping corrupt sample" in r.getMessage() for r in caplog.records)


def keys_of_shard(path: Path) -> list[str]:
    return [s["__key__"] for s in read_samples(path)]


def test_unknown_crop_length_is_a_clear_error(root: Path) -> None:
    with pytest.raises(DataError, match="crop_samples"):
        TaggingDataModule(str(root)).setup("fit")


class TinyModel(pl.LightningModule):
    """Declares its crop length the way TaggingModule does; records what it was fed."""

    train_crop_samples = 4000

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(1, 24)
        self.train_shapes: list[tuple[int, ...]] = []
        self.train_dtypes: set[torch.dtype] = set()
        self.val_keys: list[str] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.train_shapes.append(tuple(batch["audio"].shape))
        self.train_dtypes.add(batch["audio"].dtype)
        logits = self.linear(batch["audio"].abs().mean(1, keepdim=True))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["tags"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_keys += batch["key"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_fit_asks_the_model_for_the_crop(root: Path) -> None:
    model = TinyModel()
    dm = TaggingDataModule(str(root), batch_size=4, num_workers=0, shuffle_buffer=8, train_samples_per_epoch=12)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    assert dm.train_crop == 4000
    assert model.train_shapes == [(4, 4000)] * 6  # 3 batches per epoch, 2 epochs
    # The loader yields int16 (16-bit shards); any model gets float32, converted after the transfer.
    assert model.train_dtypes == {torch.float32}
    assert sorted(model.val_keys) == sorted(keys_of(root, "valid") * 2)  # every valid clip, each epoch
