"""`mtt`: MagnaTagATune, from its official files.

    lt data build mtt --out data/mtt --audio-root /data/mtt                  # the `pons` split
    lt data build mtt --out data/mtt_clean --audio-root /data/mtt --split clean \\
        --train-list split/mtat/train.npy --valid-list split/mtat/valid.npy --test-list split/mtat/test.npy

Input, as distributed (mirg.city.ac.uk/codeapps/the-magnatagatune-dataset):

- ``annotations_final.csv``: tab-separated, every field in double quotes; header ``clip_id``,
  188 tag columns of 0/1, ``mp3_path``; 25,863 rows (default: ``<audio-root>/annotations_final.csv``);
- the MP3s, ``<audio-root>/<mp3_path>``, in 16 folders ``0`` … ``f``.

Splits (``--split``):

- ``pons`` (musicnn; Pons et al., ISMIR 2018): train = folders 0–b, valid = c, test = d–f. Tags:
  the 50 most frequent, in musicnn's published output order (``weights/musicnn_labels.py``),
  so models trained here and the published musicnn weights share one vocabulary. Clips with
  no top-50 tag are kept (all-zero targets), as in musicnn. The clips 35644, 55753 and 57881
  (empty MP3s, excluded by musicnn's preprocessing) are left out: 18,706 / 1,825 / 5,329 clips.
- ``clean`` (Lee et al., SMC 2017, as used by Won et al., ICASSP 2020): the clips the user's
  split files list (15,244 / 1,529 / 4,332 in the published files), with the same 50 tags
  in the same order. Accepted list formats: ``.npy`` string arrays (loaded with
  ``allow_pickle=False``; entries ``"<index>\\t<mp3_path>"`` as in
  minzwon/sota-music-tagging-models, or plain paths), Python pickles (``.cP``/``.pkl``,
  read with the restricted unpickler of ``data/safe_pickle.py``), or text with one entry per
  line. Entries name clips by ``mp3_path`` or by its file name.

Keys are ``mtt_<clip_id>`` (zero-padded to 5 digits).
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lightning_tagging.data.clip_files import ClipOptions, add_clip_arguments, clip_options, load_clip_file
from lightning_tagging.data.errors import BuildError
from lightning_tagging.data.safe_pickle import load_restricted_pickle
from lightning_tagging.weights.musicnn_labels import MTT_LABELS

from . import Item, Source, register_source

PONS_FOLDERS = {**dict.fromkeys("0123456789ab", "train"), "c": "valid", **dict.fromkeys("def", "test")}
PONS_EXCLUDED = ("35644", "55753", "57881")  # empty MP3s; musicnn's preprocessing leaves them out
PICKLE_SUFFIXES = (".cp", ".pkl", ".pickle")


def read_annotations(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of annotations_final.csv, checked: clip_id first, mp3_path last, the top-50 tags present."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quotechar='"'))
    except OSError as error:
        raise BuildError(f"cannot read the MTT annotations {path}: {error}") from error
    if not rows or rows[0][0] != "clip_id" or rows[0][-1] != "mp3_path":
        raise BuildError(
            f"{path} is not MTT's annotations_final.csv (a tab-separated header clip_id, <tags>, mp3_path)"
        )
    header = rows[0]
    missing = [tag for tag in MTT_LABELS if tag not in header]
    if missing:
        raise BuildError(f"{path} lacks the tag columns {missing[:5]}: not MTT's annotations_final.csv")
    bad = [i + 2 for i, row in enumerate(rows[1:]) if len(row) != len(header)]
    if bad:
        raise BuildError(f"{path}: lines {bad[:5]} do not have {len(header)} fields")
    return header, rows[1:]


def read_clip_list(path: str | Path) -> list[str]:
    """Entries of a split file (see the module docstring), as mp3 paths or file names."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        try:
            entries = np.load(path, allow_pickle=False).ravel().tolist()
        except ValueError as error:  # an object array would need pickle: refused
            raise BuildError(f"{path} is not a plain string array (pickled objects are refused): {error}") from error
    elif suffix in PICKLE_SUFFIXES:
        entries = load_restricted_pickle(path)
        if isinstance(entries, np.ndarray):
            entries = entries.ravel().tolist()
    else:
        entries = Path(path).read_text(encoding="utf-8").splitlines()
    if not isinstance(entries, list | tuple):
        raise BuildError(f"{path} should hold a list of clips, not a {type(entries).__name__}")
    names = []
    for entry in entries:
        entry = entry.decode("latin-1") if isinstance(entry, bytes) else str(entry)
        entry = entry.strip().rsplit("\t", 1)[-1]  # "<index>\t<mp3_path>" → mp3_path
        if entry:
            names.append(entry)
    return names


@register_source
class MttSource(Source):
    """MagnaTagATune with the `pons` or `clean` split (see the module docstring)."""

    name = "mtt"
    description = "MagnaTagATune (annotations_final.csv + MP3s), split 'pons' (musicnn) or 'clean' (Lee et al.)"

    def __init__(
        self,
        audio_root: str,
        annotations: str | None = None,
        split: str = "pons",
        lists: dict[str, str] | None = None,
        options: ClipOptions | None = None,
    ) -> None:
        if split not in ("pons", "clean"):
            raise BuildError(f"--split must be 'pons' or 'clean', got {split!r}")
        if split == "clean" and (lists is None or set(lists) != {"train", "valid", "test"}):
            raise BuildError(
                "--split clean needs --train-list, --valid-list and --test-list (the split files of "
                "Lee et al. / Won et al.)"
            )
        self.audio_root = os.path.abspath(audio_root)
        self.annotations = os.path.abspath(annotations or os.path.join(audio_root, "annotations_final.csv"))
        self.split, self.lists, self.options = split, lists or {}, options or ClipOptions()
        self._rows = read_annotations(self.annotations)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--audio-root", required=True, help="folder holding the MP3 folders 0 ... f")
        parser.add_argument(
            "--annotations", default=None, help="annotations_final.csv (default: <audio-root>/annotations_final.csv)"
        )
        parser.add_argument(
            "--split",
            choices=("pons", "clean"),
            default="pons",
            help="pons: folders 0-b / c / d-f (musicnn); clean: the clips of the given lists",
        )
        for split in ("train", "valid", "test"):
            parser.add_argument(f"--{split}-list", default=None, help=f"--split clean: the {split} split file")
        add_clip_arguments(parser)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> MttSource:
        lists = {s: getattr(args, f"{s}_list") for s in ("train", "valid", "test") if getattr(args, f"{s}_list")}
        if args.split == "pons" and lists:
            raise BuildError("--train-list/--valid-list/--test-list go with --split clean")
        return cls(args.audio_root, args.annotations, args.split, lists or None, clip_options(args))

    def _split_of_clean(self) -> dict[str, str]:
        """mp3 path → split, from the user's lists, each entry matched to exactly one clip."""
        rows = self._rows[1]
        by_path = {row[-1]: row[-1] for row in rows if row[-1]}
        by_name: dict[str, list[str]] = {}
        for path in by_path:
            for name in (os.path.basename(path), os.path.splitext(os.path.basename(path))[0]):
                by_name.setdefault(name, []).append(path)
        assigned: dict[str, str] = {}
        unknown: list[str] = []
        for split, list_path in self.lists.items():
            for entry in read_clip_list(list_path):
                candidates = [entry] if entry in by_path else by_name.get(os.path.basename(entry), [])
                if len(candidates) != 1:
                    unknown.append(entry)
                    continue
                if assigned.setdefault(candidates[0], split) != split:
                    raise BuildError(
                        f"{candidates[0]} is listed in both the {assigned[candidates[0]]} and the {split} split files"
                    )
        if unknown:
            raise BuildError(
                f"{len(unknown)} entries of the split files name no clip of {self.annotations} "
                f"(e.g. {unknown[:3]}); are the lists and the annotations from the same MTT release?"
            )
        return assigned

    def items(self) -> Iterator[Item]:
        header, rows = self._rows
        columns = [header.index(tag) for tag in MTT_LABELS]
        clean = self._split_of_clean() if self.split == "clean" else None
        for row in rows:
            clip_id, mp3_path = row[0], row[-1]
            if clean is not None:
                split = clean.get(mp3_path)
            elif clip_id in PONS_EXCLUDED:
                split = None
            else:
                split = PONS_FOLDERS.get(mp3_path.split("/", 1)[0])
            if split is None:
                continue
            yield Item(
                key=f"mtt_{int(clip_id):05d}",
                split=split,
                tags=tuple(tag for tag, column in zip(MTT_LABELS, columns, strict=True) if row[column] == "1"),
                load=functools.partial(load_clip_file, os.path.join(self.audio_root, mp3_path), self.options),
                origin=mp3_path,
            )

    def arguments(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "audio_root": self.audio_root,
            "annotations": self.annotations,
            "lists": {s: os.path.abspath(p) for s, p in sorted(self.lists.items())},
            "excluded_clip_ids": list(PONS_EXCLUDED) if self.split == "pons" else [],
            **self.options.arguments(),
        }

    def vocab(self) -> list[str]:
        return list(MTT_LABELS)

    def n_items(self) -> int:
        return sum(1 for _ in self.items())  # listing is cheap: loaders run later
