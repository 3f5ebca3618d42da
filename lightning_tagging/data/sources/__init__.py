"""Dataset sources: where the clips and tags of a shard build come from.

A source is one file in this package defining one :class:`Source` subclass decorated with
:func:`register_source`; every module here is imported when the registry is first used,
so a new dataset needs no other change. ``lt data build <name> --out DIR [options]`` then
builds its shards (see ``data/build.py``).

A source does three things:

1. adds its own command-line options (:meth:`Source.add_arguments`) and is constructed
   from them (:meth:`Source.from_arguments`);
2. lists its items (:meth:`Source.items`), cheaply and in a fixed order: key, split, tags,
   and a *loader* — a picklable zero-argument callable (a top-level function or a
   ``functools.partial`` of one) that returns the clip's waveform. Loaders run in the
   builder's worker processes, so listing a million items stays fast and decoding or
   synthesis runs in parallel;
3. reports the settings that determine the shards' contents (:meth:`Source.arguments`),
   which the builder records in stats.json and checks when it resumes a build.

Example (a hypothetical CSV manifest source)::

    @register_source
    class CsvSource(Source):
        name = "csv"
        description = "clips listed in a CSV file (path, split, tags)"

        @classmethod
        def add_arguments(cls, parser):
            parser.add_argument("--manifest", required=True)

        @classmethod
        def from_arguments(cls, args):
            return cls(args.manifest)

        def items(self):
            for row in read_rows(self.manifest):
                yield Item(key=row.key, split=row.split, tags=tuple(row.tags),
                           load=functools.partial(decode_audio, row.path), origin=row.path)
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lightning_tagging.data.errors import BuildError

Loader = Callable[[], np.ndarray]


@dataclass(frozen=True)
class Item:
    """One clip a source offers.

    Attributes:
        key: unique name of the clip in the shard directory; no dots, slashes or spaces
            (WebDataset splits file names at the first dot).
        split: "train", "valid" or "test".
        tags: the clip's tags.
        load: picklable zero-argument callable returning the waveform ``[samples]``
            float32, mono, 16 kHz (use ``data.audio.decode_audio`` for files). It may raise
            ``AudioDecodeError`` or ``SkipItem`` to leave the clip out (counted, with the reason).
        origin: where the clip came from inside the source (a path, an index); written
            to the sample's JSON as ``"source": "<source name>:<origin>"``.
    """

    key: str
    split: str
    tags: tuple[str, ...]
    load: Loader
    origin: str = ""


class Source(ABC):
    """A dataset the builder can turn into shards. Subclass, set ``name``, register."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this source's options to its ``lt data build <name>`` parser."""

    @classmethod
    @abstractmethod
    def from_arguments(cls, args: argparse.Namespace) -> Source:
        """Construct the source from parsed options (raise ``BuildError`` for bad values)."""

    @abstractmethod
    def items(self) -> Iterable[Item]:
        """The clips, in a fixed order (the order of samples in the shards)."""

    @abstractmethod
    def arguments(self) -> dict[str, Any]:
        """JSON-able settings that determine the shards' contents (recorded and checked on resume)."""

    def vocab(self) -> list[str] | None:
        """The tag vocabulary in output order, or None to use all tags, most frequent first."""
        return None

    def n_items(self) -> int | None:
        """How many items :meth:`items` yields, if known cheaply (for the progress bar)."""
        return None


_REGISTRY: dict[str, type[Source]] = {}
_discovered = False


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: make ``cls`` available as ``lt data build <cls.name>``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two data sources are named {cls.name!r}: {_REGISTRY[cls.name]} and {cls}")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if not _discovered:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _discovered = True


def available_sources() -> dict[str, type[Source]]:
    """All registered sources by name, sorted."""
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_source(name: str) -> type[Source]:
    """The source class registered as ``name``."""
    sources = available_sources()
    if name not in sources:
        raise BuildError(f"unknown data source {name!r}; available: {', '.join(sources)}")
    return sources[name]


__all__ = ["Item", "Loader", "Source", "available_sources", "get_source", "register_source"]
