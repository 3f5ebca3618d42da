"""Tagging audio files with a trained (or imported) TaggingModule: `lt tag`'s engine.

Per file, exactly as song-level evaluation (:meth:`TaggingModule.clip_probabilities`): decode
to 16 kHz mono, zero-pad a clip shorter than one patch up to one patch, run the front-end over
the whole clip, cut its output into non-overlapping backbone-sized patches (leftover dropped),
run the backbone per patch; the song-level probabilities are the mean of the patch sigmoids.
The reference (musicnn) crashes on clips shorter than one patch; padding with silence is what
the front-end sees at a clip's end anyway.

Throughput: files are decoded by a small thread pool ahead of the model (libsndfile and soxr
release the GIL), and patches of consecutive files share backbone batches, on the GPU when
there is one.
"""

from __future__ import annotations

import os
import pickle
from argparse import ArgumentError
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lightning_tagging.data.audio import decode_audio
from lightning_tagging.errors import UserError
from lightning_tagging.module import TaggingModule
from lightning_tagging.patching import cut_into_patches, pad_clip


@dataclass
class TaggedFile:
    """The tags of one file.

    Attributes:
        path: the file as given.
        tags: the model's vocabulary, in output order.
        taggram: ``[n_patches, n_tags]`` sigmoid outputs per patch (time runs down the rows).
        patch_seconds: duration of one patch in seconds (the taggram's time step).
        seconds: duration of the decoded audio in seconds (before any padding).
        embeddings: ``[n_patches, D]`` penultimate-layer features per patch, when asked for.
    """

    path: str
    tags: list[str]
    taggram: np.ndarray
    patch_seconds: float
    seconds: float
    embeddings: np.ndarray | None = None

    @property
    def probabilities(self) -> np.ndarray:
        """Song-level tag probabilities ``[n_tags]``: the mean over patches."""
        return self.taggram.mean(axis=0)

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most probable tags with their probabilities, most probable first."""
        probs = self.probabilities
        order = np.argsort(-probs, kind="stable")[:k]
        return [(self.tags[i], float(probs[i])) for i in order]


@dataclass
class FailedFile:
    """A file that could not be tagged, and why."""

    path: str
    error: str


@contextmanager
def full_float32(enabled: bool = True) -> Iterator[None]:
    """Run convolutions and matrix products in true float32 (no TF32) inside the block, then restore.

    TF32 keeps 10 mantissa bits: with it, the published musicnn weights on an H200 moved per-patch
    probabilities by up to 4.4e-4 from musicnn's TF outputs (penultimate features by 2.5e-3); in
    float32 by at most 8.2e-5, as on CPU. float32 runs the model ~13× slower there (26 vs 348
    30-s clips/s), still faster than 4 threads decode MP3s, so it is the default.
    """
    if not enabled:
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_module(checkpoint: str | Path, device: torch.device | str = "cpu") -> TaggingModule:
    """A TaggingModule from a ``.ckpt`` (its front-end and backbone rebuilt from its hyper-parameters)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        module = TaggingModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except (TypeError, ValueError, KeyError, RuntimeError, ArgumentError, pickle.UnpicklingError) as error:
        raise UserError(
            f"cannot rebuild a TaggingModule from {path} ({type(error).__name__}: {str(error)[:200]}); "
            "it must be a Lightning checkpoint whose hyper-parameters give the front-end and backbone as "
            "class_path/init_args (those of `lt weights import` do)"
        ) from error
    return module.eval().to(device)


class Tagger:
    """Runs a TaggingModule over whole audio files.

    Args:
        module: the model (its ``tags`` name the outputs).
        device: where the model runs (default: CUDA when available, else CPU).
        batch_patches: patches per backbone forward, shared across consecutive files.
        decode_workers: threads decoding files ahead of the model.
        allow_tf32: let CUDA use TF32 for convolutions and matrix products (faster on
            Ampere and later, up to ~5e-4 off in probabilities); off by default (see :func:`full_float32`).
    """

    def __init__(
        self,
        module: TaggingModule,
        device: torch.device | str | None = None,
        batch_patches: int = 64,
        decode_workers: int = min(8, os.cpu_count() or 1),
        allow_tf32: bool = False,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.module = module.eval().to(self.device)
        self.batch_patches = batch_patches
        self.decode_workers = decode_workers
        self.allow_tf32 = allow_tf32
        frontend = self.module.frontend
        self.sample_rate = frontend.sample_rate
        self.patch_length = self.module.backbone.input_length
        self.patch_samples = self.module.train_crop_samples
        # The taggram's time step: patch_length front-end steps (hop_length samples each for LogMel, 1 for Waveform).
        step = frontend.n_samples_for(self.patch_length + 1) - frontend.n_samples_for(self.patch_length)
        self.patch_seconds = self.patch_length * step / self.sample_rate

    # --- one clip ------------------------------------------------------------------------------

    @torch.no_grad()
    def patches(self, audio: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Front-end output of one clip ``[samples]`` cut into patches ``[n_patches, *patch_shape]``."""
        waveform = torch.as_tensor(audio, dtype=torch.float32, device=self.device).reshape(1, -1)
        with full_float32(not self.allow_tf32):
            features = self.module.frontend(pad_clip(waveform, self.patch_samples))[0]
        return cut_into_patches(features, self.patch_length)

    @torch.no_grad()
    def run_patches(self, patches: torch.Tensor, embeddings: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sigmoid outputs ``[N, n_tags]`` (and penultimate features ``[N, D]``) of a batch of patches."""
        backbone = self.module.backbone
        with full_float32(not self.allow_tf32):
            if embeddings and hasattr(backbone, "features"):  # one pass gives both (musicnn)
                out = backbone.features(patches)
                return torch.sigmoid(out["logits"].float()), out["penultimate"].float()
            probs = torch.sigmoid(backbone(patches).float())
            return probs, backbone.embed(patches).float() if embeddings else None

    def tag_audio(
        self, audio: np.ndarray | torch.Tensor, path: str = "<audio>", embeddings: bool = False
    ) -> TaggedFile:
        """Tag one decoded clip ``[samples]`` at the front-end's sample rate."""
        return next(self._tag_decoded([(path, np.asarray(audio, dtype=np.float32))], embeddings))

    # --- many files ----------------------------------------------------------------------------

    def tag_files(
        self, paths: Iterable[str | Path], embeddings: bool = False, progress: bool = True
    ) -> Iterator[TaggedFile | FailedFile]:
        """Tag files in order; a file that cannot be decoded yields a :class:`FailedFile` and the rest go on."""
        paths = [str(p) for p in paths]
        bar = tqdm(total=len(paths), unit="file", desc="tagging", disable=not progress or None, leave=False)
        try:
            for result in self._tag_decoded(self._decoded(paths), embeddings):
                bar.update()
                yield result
        finally:
            bar.close()

    def _decoded(self, paths: list[str]) -> Iterator[tuple[str, np.ndarray | Exception]]:
        """(path, waveform or the decode error), in order, decoding a few files ahead in threads."""
        window = max(1, 2 * self.decode_workers)
        with ThreadPoolExecutor(max_workers=max(1, self.decode_workers)) as pool:
            pending: list[tuple[str, Future[np.ndarray]]] = []
            for path in paths:
                pending.append((path, pool.submit(decode_audio, path, self.sample_rate)))
                if len(pending) >= window:
                    yield _result(*pending.pop(0))
            for item in pending:
                yield _result(*item)

    def _tag_decoded(
        self, decoded: Iterable[tuple[str, np.ndarray | Exception]], embeddings: bool
    ) -> Iterator[TaggedFile | FailedFile]:
        """Batch the patches of consecutive files through the backbone; yield results in input order."""
        queue: list[tuple[str, float, torch.Tensor] | FailedFile] = []  # files waiting for the backbone
        queued_patches = 0
        for path, audio in decoded:
            if isinstance(audio, Exception):
                queue.append(FailedFile(path, str(audio)))
                continue
            patches = self.patches(audio)
            queue.append((path, audio.shape[-1] / self.sample_rate, patches))
            queued_patches += len(patches)
            if queued_patches >= self.batch_patches:
                yield from self._flush(queue, embeddings)
                queue, queued_patches = [], 0
        yield from self._flush(queue, embeddings)

    def _flush(
        self, queue: list[tuple[str, float, torch.Tensor] | FailedFile], embeddings: bool
    ) -> Iterator[TaggedFile | FailedFile]:
        files = [item for item in queue if not isinstance(item, FailedFile)]
        if files:
            all_patches = torch.cat([patches for _, _, patches in files])
            outputs = [self.run_patches(chunk, embeddings) for chunk in all_patches.split(self.batch_patches)]
            probs = torch.cat([p for p, _ in outputs]).cpu().numpy()
            features = torch.cat([e for _, e in outputs]).cpu().numpy() if embeddings else None
        start = 0
        for item in queue:
            if isinstance(item, FailedFile):
                yield item
                continue
            path, seconds, patches = item
            stop = start + len(patches)
            yield TaggedFile(
                path=path,
                tags=list(self.module.tags),
                taggram=probs[start:stop],
                patch_seconds=self.patch_seconds,
                seconds=seconds,
                embeddings=None if features is None else features[start:stop],
            )
            start = stop


def _result(path: str, future: Future[np.ndarray]) -> tuple[str, np.ndarray | Exception]:
    try:
        return path, future.result()
    except UserError as error:  # AudioDecodeError: unreadable, missing, empty or non-finite
        return path, error
