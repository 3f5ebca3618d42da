"""Training batches carry 16-bit shards' samples as int16, and train exactly as float32 batches do.

Real encoded bytes and real tar shards throughout: soundfile's float32 reading of 16-bit PCM is
int16 / 32768, so keeping int16 until the model (which divides on the device) changes no value,
and a short fit gives bit-identical weights either way.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from lightning_tagging.data.audio import decode_audio, decode_audio_keeping_pcm16, pcm16_to_float, pcm16_to_float32
from lightning_tagging.data.build import build_shards
from lightning_tagging.data.directory import ShardDirectory
from lightning_tagging.data.shards import TarShardWriter, encode_audio, sample_json, to_pcm16
from lightning_tagging.data.sources.synthetic import SyntheticSource
from lightning_tagging.data.streams import TrainPatches
from lightning_tagging.frontends import LogMel, Waveform
from lightning_tagging.models import VGG, Musicnn, SampleCNN
from lightning_tagging.module import TaggingModule


def every_int16_and_noise() -> np.ndarray:
    """Every 16-bit value once (-32768 and 32767 included), then loud noise that clips: float ``[samples]``."""
    ramp = np.arange(-32768, 32768, dtype=np.float64) / 32768
    noise = np.random.default_rng(0).standard_normal(20_000) * 0.6
    return np.concatenate([ramp, noise])


def encoded(audio: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


# --- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", ["pcm16", "flac"])
def test_shard_audio_decodes_to_its_int16_samples_which_are_the_float32_decoding_times_32768(payload: str) -> None:
    waveform = every_int16_and_noise()
    _, data = encode_audio(waveform, payload)  # exactly what the shard builder writes
    samples = decode_audio_keeping_pcm16(data)
    floats = decode_audio(data)
    assert samples.dtype == np.int16 and samples.shape == floats.shape == waveform.shape
    assert np.array_equal(samples, to_pcm16(waveform))  # the file's own samples
    assert samples.min() == -32768 and samples.max() == 32767
    assert np.array_equal(floats * np.float32(32768), samples.astype(np.float32))  # soundfile's float read, exactly
    assert np.array_equal(pcm16_to_float32(samples), floats)
    assert np.array_equal(pcm16_to_float(torch.from_numpy(samples)).numpy(), floats)


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "channels"),
    [
        ("WAV", "FLOAT", 16000, 1),
        ("WAV", "PCM_24", 16000, 1),
        ("FLAC", "PCM_24", 16000, 1),
        ("FLAC", "PCM_16", 44100, 1),  # 16-bit, but resampled: not exact
        ("WAV", "PCM_16", 16000, 2),  # 16-bit, but averaged: not exact
    ],
    ids=["float-wav", "pcm24-wav", "pcm24-flac", "pcm16-44k", "pcm16-stereo"],
)
def test_other_audio_decodes_to_float32_as_decode_audio_does(fmt: str, subtype: str, rate: int,
                                                             channels: int) -> None:
    t = np.arange(rate) / rate
    tone = 0.4 * np.sin(2 * np.pi * 440 * t)
    data = encoded(np.stack([tone, 0.5 * tone][:channels], axis=1), rate, fmt, subtype)
    audio = decode_audio_keeping_pcm16(data)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.array_equal(audio, decode_audio(data))


# --- training batches --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pcm16_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 synthetic clips of 2–3 s in WAV (pcm16) shards of 4."""
    out = tmp_path_factory.mktemp("pcm16_corpus")
    build_shards(SyntheticSource(24, seed=3, min_seconds=2.0, max_seconds=3.0), out, workers=1, shard_size=4,
                 payload="pcm16", progress=False)
    return out


def train_patches(root: Path, keep_pcm16: bool, **options: Any) -> TrainPatches:
    """The training stream of ``root`` as the DataModule builds it (one rank), 16-bit kept as int16 or not."""
    directory = ShardDirectory(str(root))
    settings: dict[str, Any] = {"crop_samples": 16000, "patches_per_clip": 4, "shuffle_buffer": 16, "batch_size": 8,
                                "batches_per_worker": 6, "workers": 0, "seed": 7} | options
    return TrainPatches(directory.split_shards("train"), directory.vocab, rank=0, world_size=1,
                        keep_pcm16=keep_pcm16, **settings)


@pytest.mark.parametrize("workers", [0, 1], ids=["main-process", "worker"])
@pytest.mark.parametrize("corpus", ["pcm16", "flac"])
def test_batches_from_16bit_shards_are_int16_with_the_float32_paths_values(
    corpus: str, workers: int, pcm16_corpus: Path, tiny_corpus: Path
) -> None:
    root = pcm16_corpus if corpus == "pcm16" else tiny_corpus
    loaders = [DataLoader(train_patches(root, keep, workers=workers), batch_size=None, num_workers=workers)
               for keep in (True, False)]
    batches = list(zip(*loaders, strict=True))
    assert len(batches) == 6 * max(1, workers)
    for int16_batch, float_batch in batches:
        assert int16_batch["audio"].dtype == torch.int16 and float_batch["audio"].dtype == torch.float32
        assert int16_batch["audio"].shape == float_batch["audio"].shape == (8, 16000)
        assert torch.equal(pcm16_to_float(int16_batch["audio"]), float_batch["audio"])
        assert torch.equal(int16_batch["tags"], float_batch["tags"])


def test_a_batch_with_any_float32_patch_is_float32_and_short_clips_are_zero_padded(tmp_path: Path) -> None:
    """One real shard: a short 16-bit WAV, a 24-bit WAV (float32), a long 16-bit FLAC; patches kept in order."""
    rng = np.random.default_rng(1)
    clips = {"a": (rng.standard_normal(700) * 0.3, "wav", "WAV", "PCM_16"),  # shorter than a patch
             "b": (rng.standard_normal(3000) * 0.3, "wav", "WAV", "PCM_24"),
             "c": (rng.standard_normal(3000) * 0.3, "flac", "FLAC", "PCM_16")}
    shard = tmp_path / "train-000000.tar"
    writer = TarShardWriter(shard)
    for key, (audio, extension, fmt, subtype) in clips.items():
        writer.add(key, extension, encoded(np.clip(audio, -1, 0.99), 16000, fmt, subtype), sample_json(["x"], "t"))
    writer.commit()

    def batches(keep_pcm16: bool) -> list[dict[str, torch.Tensor]]:
        # shuffle_buffer=1 keeps the patches in tar order: a a a | b b b | c c c | a a a ...; 2 per batch
        stream = TrainPatches([(str(shard), ["a", "b", "c"])], ["x"], crop_samples=1000, patches_per_clip=3,
                              shuffle_buffer=1, batch_size=2, batches_per_worker=9, workers=0, seed=0,
                              rank=0, world_size=1, keep_pcm16=keep_pcm16)
        return list(stream)

    kept, reference = batches(True), batches(False)
    # (a a) (a b) (b b) (c c) (c a) (a a) (b b) (b c) (c c)
    expected = [torch.int16, torch.float32, torch.float32, torch.int16, torch.int16, torch.int16, torch.float32,
                torch.float32, torch.int16]
    assert [b["audio"].dtype for b in kept] == expected
    assert all(b["audio"].dtype == torch.float32 for b in reference)
    for batch, ref in zip(kept, reference, strict=True):
        assert torch.equal(pcm16_to_float(batch["audio"]), ref["audio"])
    padded = kept[0]["audio"]  # two patches of clip a, 700 samples then zeros
    assert (padded[:, 700:] == 0).all() and (padded[:, :700] != 0).any()
    assert (kept[1]["audio"][0, 700:] == 0).all()  # a's int16 patch, divided by 32768 in a float32 batch


# --- the model -------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", ["logmel-musicnn", "waveform-samplecnn"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_forward_gives_the_same_output_for_int16_and_float32_audio(pair: str, autocast: bool) -> None:
    torch.manual_seed(0)
    frontend, backbone = (LogMel("log_c"), Musicnn(n_tags=5, width=0.1)) if pair == "logmel-musicnn" \
        else (Waveform(), SampleCNN(n_tags=5))
    module = TaggingModule(frontend, backbone).eval()
    samples = torch.randint(-32768, 32768, (2, module.train_crop_samples), dtype=torch.int16)
    as_float = torch.from_numpy(pcm16_to_float32(samples.numpy()))
    seen: list[torch.dtype] = []
    module.frontend.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        from_int16, from_float = module(samples), module(as_float)
        clip_int16, clip_float = module.clip_probabilities(samples[0]), module.clip_probabilities(as_float[0])
    assert seen == [torch.float32] * 4  # the front-end always gets float32, autocast or not
    assert torch.equal(from_int16, from_float) and torch.equal(clip_int16, clip_float)


class BatchDtypes(pl.Callback):
    """The dtype of every training batch's audio, as the training step received it."""

    def __init__(self) -> None:
        self.dtypes: list[torch.dtype] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.dtypes.append(batch["audio"].dtype)


Weights = dict[str, torch.Tensor]


def fit_weights(root: Path, keep_pcm16: bool) -> tuple[Weights, Weights, list[torch.dtype]]:
    """Weights before and after 2 epochs × 3 steps of a tiny VGG on log_learn (CPU), and its batches' dtypes."""
    pl.seed_everything(0)
    vocab = ShardDirectory(str(root)).vocab
    model = TaggingModule(LogMel("log_learn"), VGG(n_tags=len(vocab), filters=8), tags=vocab)
    initial = {name: value.detach().clone() for name, value in model.state_dict().items()}
    stream = train_patches(root, keep_pcm16, crop_samples=model.train_crop_samples, patches_per_clip=2, batch_size=4,
                           batches_per_worker=3)
    dtypes = BatchDtypes()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False, callbacks=[dtypes],
                         default_root_dir=root.parent)
    trainer.fit(model, train_dataloaders=DataLoader(stream, batch_size=None, num_workers=0))
    return initial, {name: value.detach().clone() for name, value in model.state_dict().items()}, dtypes.dtypes


def test_training_on_int16_batches_gives_bit_identical_weights(pcm16_corpus: Path) -> None:
    initial, int16_weights, int16_dtypes = fit_weights(pcm16_corpus, keep_pcm16=True)
    same_start, float_weights, float_dtypes = fit_weights(pcm16_corpus, keep_pcm16=False)
    assert int16_dtypes == [torch.int16] * 6 and float_dtypes == [torch.float32] * 6
    assert all(torch.equal(initial[name], same_start[name]) for name in initial)
    head = "backbone.classifier.weight"
    assert not torch.equal(initial[head], int16_weights[head])  # it trained
    assert int16_weights.keys() == float_weights.keys()
    for name, weight in int16_weights.items():
        assert torch.equal(weight, float_weights[name]), name
