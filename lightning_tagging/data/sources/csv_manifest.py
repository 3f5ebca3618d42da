"""`csv`: your own collection, listed in a CSV (or TSV) manifest.

    lt data build csv --out data/mine --manifest clips.csv                       # columns path, tags, split
    lt data build csv --out data/mine --manifest clips.csv --split-ratio 0.8 0.1 0.1

The manifest has a header row. Columns (names configurable):

- ``path`` (``--path-column``): the audio file (MP3, FLAC, WAV, OGG, ...), relative to
  ``--audio-root`` (default: the manifest's folder) or absolute;
- ``tags`` (``--tags-column``): the clip's tags separated by ``;`` or ``|`` (whichever the
  manifest uses; ``--tags-separator`` to say), e.g. ``rock;guitar;male vocal``;
- ``split`` (``--split-column``): train, valid (or validation, val) or test. Without such a
  column, ``--split-ratio TRAIN VALID TEST`` assigns each clip by a hash of its key, so a
  clip keeps its split when the manifest grows or is reordered;
- optionally a key column (``--key-column``); by default the key is the path without its
  extension, with every character other than letters, digits, ``-`` and ``_`` made ``_``.

Files ending in ``.tsv`` are read tab-separated, others comma-separated (``--delimiter``).
The vocabulary is every tag of the manifest, most frequent first (ties by name).
"""

from __future__ import annotations

import argparse
import collections
import csv
import functools
import hashlib
import os
import re
from collections.abc import Iterator
from typing import Any

from lightning_tagging.data.clip_files import ClipOptions, add_clip_arguments, clip_options, load_clip_file
from lightning_tagging.data.errors import BuildError

from . import Item, Source, register_source

SPLIT_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid", "test": "test"}
SEPARATORS = (";", "|")


def key_of_path(path: str) -> str:
    """A shard key from a file path: the path without extension, odd characters made ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", os.path.splitext(path)[0]).strip("_") or "clip"


def split_by_hash(key: str, ratios: tuple[float, float, float]) -> str:
    """train/valid/test for ``key`` with probabilities ``ratios`` (normalised), fixed by the key alone."""
    u = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64
    train, valid, _ = (r / sum(ratios) for r in ratios)
    return "train" if u < train else "valid" if u < train + valid else "test"


@register_source
class CsvSource(Source):
    """Clips listed in a CSV manifest (see the module docstring)."""

    name = "csv"
    description = "your own clips, listed in a CSV/TSV manifest (path, tags separated by ; or |, split)"

    def __init__(
        self,
        manifest: str,
        audio_root: str | None = None,
        path_column: str = "path",
        tags_column: str = "tags",
        split_column: str | None = "split",
        key_column: str | None = None,
        split_ratio: tuple[float, float, float] | None = None,
        tags_separator: str | None = None,
        delimiter: str | None = None,
        options: ClipOptions | None = None,
    ) -> None:
        self.manifest = os.path.abspath(manifest)
        self.audio_root = os.path.abspath(audio_root or os.path.dirname(self.manifest))
        self.path_column, self.tags_column, self.key_column = path_column, tags_column, key_column
        self.split_column, self.split_ratio = (None if split_ratio else split_column), split_ratio
        if split_ratio is not None and (len(split_ratio) != 3 or min(split_ratio) < 0 or sum(split_ratio) <= 0):
            raise BuildError("--split-ratio takes three non-negative numbers: train valid test (e.g. 0.8 0.1 0.1)")
        if tags_separator not in (None, *SEPARATORS):
            raise BuildError(f"--tags-separator must be one of {' '.join(SEPARATORS)}")
        self.delimiter = delimiter or ("\t" if self.manifest.lower().endswith(".tsv") else ",")
        self.options = options or ClipOptions()
        self.rows = self._read()
        self.tags_separator = tags_separator or self._detect_separator()

    def _read(self) -> list[dict[str, str]]:
        try:
            with open(self.manifest, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f, delimiter=self.delimiter)
                rows = list(reader)
                columns = reader.fieldnames or []
        except OSError as error:
            raise BuildError(f"cannot read the manifest {self.manifest}: {error}") from error
        needed = [self.path_column, self.tags_column] + [c for c in (self.split_column, self.key_column) if c]
        missing = [c for c in needed if c not in columns]
        if missing:
            hint = " (or give --split-ratio)" if missing == [self.split_column] else ""
            raise BuildError(
                f"{self.manifest} has no column {', '.join(map(repr, missing))}{hint}; its columns: "
                f"{', '.join(columns)}"
            )
        return rows

    def _detect_separator(self) -> str:
        used = {sep for row in self.rows for sep in SEPARATORS if sep in (row[self.tags_column] or "")}
        if len(used) > 1:
            raise BuildError(f"{self.manifest} separates tags with both ';' and '|'; say which with --tags-separator")
        return used.pop() if used else ";"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--manifest", required=True, help="the CSV (or .tsv) file listing the clips")
        parser.add_argument(
            "--audio-root", default=None, help="folder relative paths start from (default: the manifest's folder)"
        )
        parser.add_argument("--path-column", default="path", help="column of the audio path (default: path)")
        parser.add_argument("--tags-column", default="tags", help="column of the tags (default: tags)")
        parser.add_argument("--split-column", default="split", help="column of the split (default: split)")
        parser.add_argument(
            "--split-ratio",
            type=float,
            nargs=3,
            metavar=("TRAIN", "VALID", "TEST"),
            help="no split column: assign splits by key hash in these proportions",
        )
        parser.add_argument("--key-column", default=None, help="column of unique clip keys (default: from the path)")
        parser.add_argument(
            "--tags-separator",
            choices=SEPARATORS,
            default=None,
            help="what separates tags (default: detected, ';' or '|')",
        )
        parser.add_argument("--delimiter", default=None, help="field delimiter (default: tab for .tsv, else comma)")
        add_clip_arguments(parser)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> CsvSource:
        return cls(
            args.manifest,
            args.audio_root,
            args.path_column,
            args.tags_column,
            args.split_column,
            args.key_column,
            tuple(args.split_ratio) if args.split_ratio else None,
            args.tags_separator,
            args.delimiter,
            clip_options(args),
        )

    def _tags(self, row: dict[str, str]) -> tuple[str, ...]:
        cell = row[self.tags_column] or ""
        return tuple(dict.fromkeys(t.strip() for t in cell.split(self.tags_separator) if t.strip()))

    def items(self) -> Iterator[Item]:
        for number, row in enumerate(self.rows, start=2):
            path = (row[self.path_column] or "").strip()
            if not path:
                raise BuildError(f"{self.manifest}, line {number}: empty {self.path_column!r}")
            key = (row[self.key_column] or "").strip() if self.key_column else key_of_path(path)
            if self.split_column:
                split = SPLIT_NAMES.get((row[self.split_column] or "").strip().lower())
                if split is None:
                    raise BuildError(
                        f"{self.manifest}, line {number}: split {row[self.split_column]!r} is not one "
                        f"of {', '.join(SPLIT_NAMES)}"
                    )
            else:
                split = split_by_hash(key, self.split_ratio)  # type: ignore[arg-type]
            yield Item(
                key=key,
                split=split,
                tags=self._tags(row),
                origin=path,
                load=functools.partial(load_clip_file, os.path.join(self.audio_root, path), self.options),
            )

    def arguments(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "audio_root": self.audio_root,
            "path_column": self.path_column,
            "tags_column": self.tags_column,
            "split_column": self.split_column,
            "key_column": self.key_column,
            "split_ratio": list(self.split_ratio) if self.split_ratio else None,
            "tags_separator": self.tags_separator,
            "delimiter": self.delimiter,
            **self.options.arguments(),
        }

    def vocab(self) -> list[str]:
        counts = collections.Counter(tag for row in self.rows for tag in self._tags(row))
        return sorted(counts, key=lambda tag: (-counts[tag], tag))

    def n_items(self) -> int:
        return len(self.rows)
