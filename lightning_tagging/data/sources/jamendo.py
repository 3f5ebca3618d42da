"""`jamendo`: MTG-Jamendo, the top-50 tags auto-tagging task.

    lt data build jamendo --out data/jamendo --splits-dir mtg-jamendo-dataset/data/splits/split-0 \\
        --audio-root /data/mtg-jamendo/audio [--excerpt-seconds 30 --excerpt-start middle]

Input, as distributed (Bogdanov et al., ICML 2019 ML4MD workshop; github.com/MTG/mtg-jamendo-dataset):

- ``autotagging_top50tags-{train,validation,test}.tsv`` in ``--splits-dir`` (split-0 … split-4):
  tab-separated, header ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS``, then one track per
  line with 1–16 tag columns like ``genre---rock``, ``instrument---piano``, ``mood/theme---happy``;
- the audio, ``<audio-root>/<PATH>`` (``14/214.mp3``); ``--low-quality`` reads the ``.low.mp3``
  versions (``14/214.low.mp3``) instead.

Tracks are full length (minutes): stored whole by default, or as one excerpt
(``--excerpt-seconds``, ``--excerpt-start start|middle|<seconds>``). The vocabulary is every tag
of the three TSVs, sorted by name (a fixed order, whatever files fail to decode). Tags keep
their category prefix. Keys are the TRACK_IDs (``track_0000214``).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Iterator
from typing import Any

from lightning_tagging.data.clip_files import ClipOptions, add_clip_arguments, clip_options, load_clip_file
from lightning_tagging.data.errors import BuildError

from . import Item, Source, register_source

TSV_SPLITS = {"train": "train", "validation": "valid", "test": "test"}  # file suffix → our split
TSV_PATTERN = "autotagging_top50tags-{}.tsv"
HEADER = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]


def read_tsv(path: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(track id, audio path, tags) of every line of one split TSV."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f if line.strip()]
    except OSError as error:
        raise BuildError(f"cannot read {path}: {error}") from error
    if not lines or lines[0].split("\t")[:6] != HEADER:
        raise BuildError(f"{path} is not an MTG-Jamendo split file (header {' '.join(HEADER)})")
    tracks = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) < 6:
            raise BuildError(f"{path}, line {number}: a track needs an id, artist, album, path, duration and a tag")
        tracks.append((fields[0], fields[3], tuple(dict.fromkeys(t.strip() for t in fields[5:] if t.strip()))))
    return tracks


@register_source
class JamendoSource(Source):
    """MTG-Jamendo top-50 (see the module docstring)."""

    name = "jamendo"
    description = "MTG-Jamendo auto-tagging, top-50 tags (autotagging_top50tags-*.tsv + full-track MP3s)"

    def __init__(
        self, splits_dir: str, audio_root: str, low_quality: bool = False, options: ClipOptions | None = None
    ) -> None:
        self.splits_dir, self.audio_root = os.path.abspath(splits_dir), os.path.abspath(audio_root)
        self.low_quality, self.options = low_quality, options or ClipOptions()
        self.tracks = {
            split: read_tsv(os.path.join(self.splits_dir, TSV_PATTERN.format(suffix)))
            for suffix, split in TSV_SPLITS.items()
        }

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--splits-dir",
            required=True,
            help="folder with autotagging_top50tags-{train,validation,test}.tsv (e.g. splits/split-0)",
        )
        parser.add_argument("--audio-root", required=True, help="folder the TSVs' PATHs are relative to")
        parser.add_argument("--low-quality", action="store_true", help="read the .low.mp3 versions")
        add_clip_arguments(parser)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> JamendoSource:
        return cls(args.splits_dir, args.audio_root, args.low_quality, clip_options(args))

    def items(self) -> Iterator[Item]:
        for split, tracks in self.tracks.items():
            for track_id, path, tags in tracks:
                if self.low_quality:
                    path = path[: -len(".mp3")] + ".low.mp3" if path.endswith(".mp3") else path
                yield Item(
                    key=track_id,
                    split=split,
                    tags=tags,
                    origin=path,
                    load=functools.partial(load_clip_file, os.path.join(self.audio_root, path), self.options),
                )

    def arguments(self) -> dict[str, Any]:
        return {
            "splits_dir": self.splits_dir,
            "audio_root": self.audio_root,
            "low_quality": self.low_quality,
            **self.options.arguments(),
        }

    def vocab(self) -> list[str]:
        return sorted({tag for tracks in self.tracks.values() for _, _, tags in tracks for tag in tags})

    def n_items(self) -> int:
        return sum(len(tracks) for tracks in self.tracks.values())
