"""`lt weights import musicnn` as a function: published checkpoint → our ``.ckpt``, cached."""

from __future__ import annotations

from pathlib import Path

from lightning_tagging.errors import UserError
from lightning_tagging.weights import musicnn_source
from lightning_tagging.weights.musicnn_import import import_module, save_lightning_checkpoint


def default_weights_dir() -> Path:
    """Where converted checkpoints go unless ``--out`` says otherwise: ``<cache root>/weights``."""
    return musicnn_source.cache_root() / "weights"


def checkpoint_path(model: str, out_dir: Path | None = None) -> Path:
    """Path of the converted checkpoint of ``model``: ``<out_dir>/musicnn-0.1.0-<model>.ckpt``."""
    directory = default_weights_dir() if out_dir is None else out_dir
    return directory / f"{musicnn_source.PACKAGE}-{musicnn_source.VERSION}-{model}.ckpt"


def import_musicnn(model: str, out_dir: Path | None = None, wheel: Path | None = None, overwrite: bool = True) -> Path:
    """Convert one published musicnn model into a TaggingModule checkpoint; return its path.

    Args:
        model: ``MTT_musicnn``, ``MSD_musicnn``, ``MTT_vgg`` or ``MSD_vgg``.
        out_dir: folder of the ``.ckpt`` (default :func:`default_weights_dir`).
        wheel: musicnn wheel or unpacked package folder (default: installed package, else pip download).
        overwrite: rewrite an existing checkpoint; False returns a cached one as is.
    """
    path = checkpoint_path(model, out_dir)
    if path.is_file() and not overwrite:
        return path
    prefix = musicnn_source.checkpoint_prefix(model, wheel=wheel)
    module = import_module(model, prefix)
    source = {
        "index_sha256": musicnn_source.SHA256[model][0],
        "data_sha256": musicnn_source.SHA256[model][1],
    }
    return save_lightning_checkpoint(module, model, path, source)


def resolve_weights(spec: str) -> Path:
    """``musicnn:<model>`` → the cached converted checkpoint (converted on first use)."""
    package, _, model = spec.partition(":")
    if package != musicnn_source.PACKAGE or not model:
        raise UserError(
            f"unknown weights {spec!r}; published weights are named musicnn:<model> with <model> one of "
            f"{', '.join(musicnn_source.SHA256)}"
        )
    return import_musicnn(model, overwrite=False)
