"""`msd`: the Million Song Dataset's 7digital previews with the Last.fm top-50 tags.

    lt data build msd --out data/msd --split-dir MSD_split --audio-root /data/msd/songs

The standard split (Lee et al., SMC 2017; github.com/jongpillee/music_dataset_split, also in
minzwon/sota-music-tagging-models ``split/msd``), which ISMIR 2018 and musicnn use. The files in
``--split-dir``:

==========================  =========================================================
filtered_list_train.cP      MSD track ids: the first 201,680 are train, the other 11,774 valid
filtered_list_test.cP       28,435 test track ids
msd_id_to_tag_vector.cP     track id → 50 × 1 vector of 0/1 (the tags, in 50tagList.txt order)
50tagList.txt               the 50 Last.fm tags, one per line (default: musicnn's MSD labels,
                            which are the same list in the same order)
MSD_id_to_7D_id.pkl         track id → 7digital preview id   (for the default --path-template)
7D_id_to_path.pkl           7digital id → path of the preview MP3, e.g. "8/9/8947470.clip.mp3"
==========================  =========================================================

The ``.cP`` / ``.pkl`` files are Python 2 pickles from the internet. They are never given to
the stock unpickler: ``data/safe_pickle.py`` accepts only lists, dicts, strings, numbers and
numeric arrays, and refuses anything that would call code.

``--path-template`` says where a track's MP3 is under ``--audio-root``: ``{path7d}`` (default:
through the two 7digital maps) or a pattern of the track id, e.g.
``{msd_id[2]}/{msd_id[3]}/{msd_id[4]}/{msd_id}.clip.mp3``. Tracks whose file is missing are
skipped with the reason "missing" (some previews were never downloadable). Keys are the MSD
track ids.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lightning_tagging.data.clip_files import ClipOptions, add_clip_arguments, clip_options, load_clip_file
from lightning_tagging.data.errors import BuildError
from lightning_tagging.data.safe_pickle import load_restricted_pickle
from lightning_tagging.weights.musicnn_labels import MSD_LABELS

from . import Item, Source, register_source

N_TRAIN = 201_680  # the first N_TRAIN ids of filtered_list_train.cP are train, the rest valid (Lee et al.)
FILES = {
    "train": "filtered_list_train.cP",
    "test": "filtered_list_test.cP",
    "tags": "msd_id_to_tag_vector.cP",
    "tag_list": "50tagList.txt",
    "to_7d": "MSD_id_to_7D_id.pkl",
    "7d_path": "7D_id_to_path.pkl",
}


def _text(value: Any) -> str:
    """A Python 2 pickle's str arrives as latin-1 text or bytes: make it str."""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _load_ids(path: Path) -> list[str]:
    ids = load_restricted_pickle(path)
    if isinstance(ids, np.ndarray):
        ids = ids.ravel().tolist()
    if not isinstance(ids, list | tuple):
        raise BuildError(f"{path} should hold a list of MSD track ids, not a {type(ids).__name__}")
    return [_text(i) for i in ids]


def _load_map(path: Path) -> dict[str, Any]:
    mapping = load_restricted_pickle(path)
    if not isinstance(mapping, dict):
        raise BuildError(f"{path} should hold a dict, not a {type(mapping).__name__}")
    return {_text(k): v for k, v in mapping.items()}


@register_source
class MsdSource(Source):
    """MSD previews with the Last.fm top-50 split of Lee et al. (see the module docstring)."""

    name = "msd"
    description = "Million Song Dataset 7digital previews, Last.fm top-50 tags, the split of Lee et al. (ISMIR 2018)"

    def __init__(
        self,
        split_dir: str,
        audio_root: str,
        path_template: str = "{path7d}",
        n_train: int = N_TRAIN,
        options: ClipOptions | None = None,
    ) -> None:
        self.split_dir, self.audio_root = os.path.abspath(split_dir), os.path.abspath(audio_root)
        self.path_template, self.n_train, self.options = path_template, n_train, options or ClipOptions()
        try:
            path_template.format(msd_id="TRAAAAK128F9318786", path7d="x")
        except (KeyError, IndexError, ValueError) as error:
            raise BuildError(
                f"--path-template {path_template!r} may use only {{msd_id}} (and indexing like "
                f"{{msd_id[2]}}) and {{path7d}}: {error}"
            ) from error
        self.tags = self._tag_list()
        self._id_lists: tuple[list[str], list[str]] | None = None

    def _file(self, role: str) -> Path:
        path = Path(self.split_dir) / FILES[role]
        if not path.is_file():
            raise BuildError(f"{self.split_dir} lacks {FILES[role]} (the MSD split files of Lee et al.)")
        return path

    def _tag_list(self) -> list[str]:
        path = Path(self.split_dir) / FILES["tag_list"]
        if not path.is_file():
            return list(MSD_LABELS)
        tags = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(tags) != len(set(tags)):
            raise BuildError(f"{path} lists a tag twice")
        return tags

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--split-dir",
            required=True,
            help="folder with filtered_list_*.cP, msd_id_to_tag_vector.cP, 50tagList.txt and the 7digital maps",
        )
        parser.add_argument("--audio-root", required=True, help="folder the preview paths are relative to")
        parser.add_argument(
            "--path-template",
            default="{path7d}",
            help="a track's MP3 under --audio-root: {path7d} (default, via the 7digital maps) or "
            "e.g. '{msd_id[2]}/{msd_id[3]}/{msd_id[4]}/{msd_id}.clip.mp3'",
        )
        parser.add_argument(
            "--n-train",
            type=int,
            default=N_TRAIN,
            help=f"ids of filtered_list_train.cP that are train; the rest are valid "
            f"(default: {N_TRAIN}, the standard split)",
        )
        add_clip_arguments(parser)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> MsdSource:
        return cls(args.split_dir, args.audio_root, args.path_template, args.n_train, clip_options(args))

    def _paths(self, ids: list[str]) -> dict[str, str]:
        """Track id → MP3 path under ``audio_root`` ("" where the 7digital maps do not know the track)."""
        to_7d = to_path = None
        if "{path7d" in self.path_template:
            to_7d, to_path = _load_map(self._file("to_7d")), _load_map(self._file("7d_path"))
            to_path = {_text(k): _text(v) for k, v in to_path.items()}
        paths = {}
        for msd_id in ids:
            path7d = ""
            if to_7d is not None and to_path is not None:
                seven = to_7d.get(msd_id)
                path7d = to_path.get(_text(seven), "") if seven is not None else ""
            if "{path7d" in self.path_template and not path7d:
                paths[msd_id] = ""
            else:
                paths[msd_id] = self.path_template.format(msd_id=msd_id, path7d=path7d)
        return paths

    def _ids(self) -> tuple[list[str], list[str]]:
        """(filtered_list_train, filtered_list_test), read once."""
        if self._id_lists is None:
            self._id_lists = (_load_ids(self._file("train")), _load_ids(self._file("test")))
        return self._id_lists

    def n_items(self) -> int:
        return sum(map(len, self._ids()))

    def items(self) -> Iterator[Item]:
        train_ids, test_ids = self._ids()
        if not 0 < self.n_train <= len(train_ids):
            raise BuildError(f"--n-train {self.n_train} does not fit the {len(train_ids)} ids of {FILES['train']}")
        vectors = _load_map(self._file("tags"))
        paths = self._paths(train_ids + test_ids)
        splits = [("train", train_ids[: self.n_train]), ("valid", train_ids[self.n_train :]), ("test", test_ids)]
        for split, ids in splits:
            for msd_id in ids:
                vector = vectors.get(msd_id)
                if vector is None:
                    raise BuildError(f"{FILES['tags']} has no tags for {msd_id}; are the split files complete?")
                flags = np.asarray(vector).ravel()
                if flags.size != len(self.tags):
                    raise BuildError(
                        f"the tag vector of {msd_id} has {flags.size} entries, "
                        f"but {FILES['tag_list']} lists {len(self.tags)} tags"
                    )
                relative = paths[msd_id]
                path = os.path.join(self.audio_root, relative) if relative else f"<no 7digital preview for {msd_id}>"
                yield Item(
                    key=msd_id,
                    split=split,
                    tags=tuple(tag for tag, flag in zip(self.tags, flags, strict=True) if flag > 0),
                    load=functools.partial(load_clip_file, path, self.options),
                    origin=relative or msd_id,
                )

    def arguments(self) -> dict[str, Any]:
        return {
            "split_dir": self.split_dir,
            "audio_root": self.audio_root,
            "path_template": self.path_template,
            "n_train": self.n_train,
            **self.options.arguments(),
        }

    def vocab(self) -> list[str]:
        return list(self.tags)
