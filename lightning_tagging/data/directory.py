"""A shard directory as readers see it: vocabulary, stats, the clip index, and shard URLs.

The directory (``root``) may be local or remote (see ``urls.py``); its small JSON files are
read once, in the process that builds the DataModule. The *index* lists the keys of every
shard in order (index.json, written by ``lt data build``); it is what lets evaluation deal
clips to ranks and workers exactly, and training draw a subset, without opening shards.
A local directory built before index.json existed is indexed from its tar headers.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from .errors import ShardDirectoryError, ShardOpenError
from .shards import INDEX_FILE, SPLITS, STATS_FILE, VOCAB_FILE, shard_keys
from .urls import join, local_path, read_bytes

BUILD_HINT = "build one with `lt data build synthetic --out {root}` (or another source, see `lt data build -h`)"
_SHARD_NAME = re.compile(r"^(train|valid|test)-\d{6}\.tar$")


def _read_json(root: str, name: str) -> Any | None:
    data = read_bytes(join(root, name))
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError as error:
        raise ShardDirectoryError(f"{join(root, name)} is not valid JSON ({error}); rebuild the directory") from error


def read_vocab(root: str) -> list[str]:
    """The directory's vocab.json, checked (a clear error when missing or malformed)."""
    path = local_path(root)
    if path is not None and not os.path.isdir(path):
        raise ShardDirectoryError(f"the shard directory {root} does not exist; " + BUILD_HINT.format(root=root))
    vocab = _read_json(root, VOCAB_FILE)
    if vocab is None:
        raise ShardDirectoryError(
            f"{root} has no {VOCAB_FILE}, so it is not a finished shard directory (an "
            "interrupted build? rerun the same `lt data build` command to finish it); or "
            + BUILD_HINT.format(root=root)
        )
    if not (
        isinstance(vocab, list) and vocab and all(isinstance(t, str) for t in vocab) and len(set(vocab)) == len(vocab)
    ):
        raise ShardDirectoryError(
            f"{join(root, VOCAB_FILE)} must be a non-empty list of distinct tag names; rebuild the directory"
        )
    return vocab


class ShardDirectory:
    """The metadata of a shard directory and where its shards are.

    Args:
        root: the directory (path or URL) holding vocab.json, stats.json, index.json.
        shard_url: where the tars are, as a template with ``{name}`` (e.g.
            ``"pipe:aws s3 cp s3://bucket/mtt/{name} -"``); None: inside ``root``.
    """

    def __init__(self, root: str, shard_url: str | None = None) -> None:
        if shard_url is not None and "{name}" not in shard_url:
            raise ShardDirectoryError(f"data.shard_url must contain '{{name}}' (the shard's file name): {shard_url!r}")
        self.root, self.shard_url = str(root), shard_url
        self.vocab = read_vocab(self.root)
        self.stats: dict[str, Any] = _read_json(self.root, STATS_FILE) or {}
        self._index: dict[str, list[str]] | None = None

    def url(self, name: str) -> str:
        """Where the shard called ``name`` (``train-000000.tar``) is read from."""
        return self.shard_url.format(name=name) if self.shard_url else join(self.root, name)

    @property
    def index(self) -> dict[str, list[str]]:
        """Shard name → its keys in order, for every shard of every split (loaded on first use)."""
        if self._index is None:
            self._index = self._load_index()
        return self._index

    def _load_index(self) -> dict[str, list[str]]:
        index = _read_json(self.root, INDEX_FILE)
        if index is not None:
            if not (
                isinstance(index, dict) and all(_SHARD_NAME.match(k) and isinstance(v, list) for k, v in index.items())
            ):
                raise ShardDirectoryError(f"{join(self.root, INDEX_FILE)} is malformed; rebuild the directory")
            return dict(sorted(index.items()))
        path = local_path(self.root)
        if path is None or self.shard_url is not None:
            raise ShardDirectoryError(
                f"{self.root} has no {INDEX_FILE}; rerun the `lt data build` command that made "
                "it (it adds the index without rebuilding the shards) and copy the file there"
            )
        names = sorted(n for n in os.listdir(path) if _SHARD_NAME.match(n))
        return {name: shard_keys(os.path.join(path, name)) for name in names}

    def split_shards(self, split: str) -> list[tuple[str, list[str]]]:
        """(shard URL, keys in order) of every shard of ``split`` that holds at least one clip."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        shards = [(self.url(name), keys) for name, keys in self.index.items() if name.startswith(split + "-") and keys]
        for url, _ in shards:
            path = local_path(url)
            if path is not None and not os.path.isfile(path):  # fail now, not hours into training
                raise ShardOpenError(
                    f"cannot open shard {url}: no such file; the directory is incomplete "
                    "(rerun the `lt data build` command that made it)"
                )
        if not shards:
            hint = "set trainer.limit_val_batches=0 to train without validation, or " if split == "valid" else ""
            raise ShardDirectoryError(
                f"{self.root} has no {split} shards ({split}-000000.tar ...); {hint}"
                + BUILD_HINT.format(root=self.root)
            )
        return shards

    def split_keys(self, split: str) -> list[str]:
        """Every key of ``split``, in shard order."""
        return [key for _, keys in self.split_shards(split) for key in keys]
