"""Reading the samples of one shard: expected keys in, decoded clips out, losses counted.

A reader is told which keys it wants from a shard (from the index). It reads the tar as a
stream (any URL, see ``urls.py``), skips the members of other keys without decoding them,
stops as soon as it has seen every wanted key, and decodes the audio (soundfile) and JSON
of the wanted samples. Nothing is unpickled. Audio is float32, or for training
(``keep_pcm16``) the shards' own int16 samples (see ``audio.decode_audio_keeping_pcm16``).

Failures, and what each costs:

- the shard cannot be opened, or not one tar member can be read from it (missing file,
  HTTP error, failing ``pipe:`` command, not a tar): :class:`ShardOpenError` naming the
  shard, at once. A rank must not go on with a part of the data missing;
- a sample whose audio or JSON is corrupt, truncated or empty: skipped, counted;
- a shard that breaks off in the middle (truncated download, bad block): the wanted keys
  it did not deliver are counted as skipped, and reading goes on with the next shard;
- a tag missing from the vocabulary: :class:`VocabularyMismatchError` (no skipping fixes
  a model whose outputs mean something else).

Because every reader knows its keys in advance, a bad sample never shifts which clips
any other rank or worker reads.
"""

from __future__ import annotations

import json
import logging
import tarfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from .audio import decode_audio, decode_audio_keeping_pcm16
from .errors import AudioDecodeError, ShardOpenError, VocabularyMismatchError
from .shards import AUDIO_EXTENSIONS
from .urls import open_stream

log = logging.getLogger(__name__)
DecodedSample = tuple[str, np.ndarray, np.ndarray]  # key, audio [samples] (float32 or int16), multi-hot [n_tags]
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, ValueError)


class CorruptSample(Exception):
    """A sample whose audio or metadata cannot be read."""


def decode_sample(sample: dict[str, Any], vocab_index: dict[str, int], keep_pcm16: bool = False) -> DecodedSample:
    """One raw sample ``{"__key__": key, "<ext>": bytes}`` → (key, audio ``[samples]``, multi-hot ``[n_tags]``).

    Audio is float32 in [-1, 1]; with ``keep_pcm16``, int16 where the file's samples are exactly
    that (16-bit mono at 16 kHz: see ``audio.decode_audio_keeping_pcm16``).

    Raises:
        CorruptSample: missing or unreadable audio or JSON.
        VocabularyMismatchError: a tag missing from the vocabulary.
    """
    key = sample.get("__key__", "?")
    audio_bytes = next((sample[ext] for ext in AUDIO_EXTENSIONS if ext in sample), None)
    if audio_bytes is None or "json" not in sample:
        raise CorruptSample(f"sample {key!r} lacks an audio ({'/'.join(AUDIO_EXTENSIONS)}) or json member")
    try:
        meta = json.loads(sample["json"])
        tags = meta["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise TypeError("tags must be a list of strings")
    except (ValueError, KeyError, TypeError) as error:
        raise CorruptSample(f"sample {key!r} has unreadable metadata: {error}") from error
    target = np.zeros(len(vocab_index), np.float32)
    for tag in tags:
        index = vocab_index.get(tag)
        if index is None:
            raise VocabularyMismatchError(
                f"sample {key!r} ({sample.get('__url__', '?')}) has the tag {tag!r}, which vocab.json does not "
                "list: the shards and their vocabulary do not match; rebuild the directory with `lt data build`"
            )
        target[index] = 1.0
    try:
        audio = decode_audio_keeping_pcm16(audio_bytes) if keep_pcm16 else decode_audio(audio_bytes)
    except AudioDecodeError as error:
        raise CorruptSample(f"sample {key!r}: {error}") from error
    return key, audio, target


def _close(stream: IO[bytes]) -> Exception | None:
    """Close ``stream``; a ``pipe:`` reports its command's failure here, so return the error."""
    try:
        stream.close()
    except Exception as error:  # Pipe raises OSError for a non-zero exit status
        return error
    return None


def raw_samples(url: str, wanted: set[str]) -> Iterator[dict[str, Any]]:
    """The samples of ``wanted`` keys in the shard at ``url``, in tar order, undecoded.

    Members of other keys are passed over unread. Stops after the last wanted key.

    Raises:
        ShardOpenError: nothing at all could be read from ``url``.
    """
    stream = open_stream(url)
    members, remaining, error = 0, set(wanted), None
    sample: dict[str, Any] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                members += 1
                key, _, extension = member.name.partition(".")
                if sample and sample["__key__"] != key:  # a sample is complete when the next key starts
                    yield sample
                    sample = {}
                    if not remaining:
                        break  # the rest of the shard belongs to others
                if not member.isfile():
                    continue
                if key in remaining:
                    sample = {"__key__": key, "__url__": url}
                    remaining.discard(key)
                if sample and sample["__key__"] == key:
                    sample[extension] = tar.extractfile(member).read()  # type: ignore[union-attr]
            else:
                if sample:
                    yield sample
                    sample = {}
    except _READ_ERRORS as exception:
        error = exception
    finally:
        close_error = _close(stream)
    if error is None and remaining:
        error = close_error  # a pipe whose command failed looks like a short stream until it is closed
    if error is not None and members == 0:
        raise ShardOpenError(f"cannot read shard {url}: {error}") from error
    if error is None and remaining:
        log.warning("shard %s lacks %d samples its index lists (e.g. %r)", url, len(remaining), min(remaining))
    if error is not None and (remaining or sample):
        log.warning(
            "shard %s breaks off after %d tar members (%s); %d wanted samples lost",
            url,
            members,
            error,
            len(remaining) + bool(sample),
        )


class ShardReader:
    """Decoded samples of wanted keys from shards; counts what it had to skip (``skipped``).

    ``skipped`` counts wanted samples that were corrupt (unreadable audio or JSON, a member
    missing) or that a broken-off shard never delivered. ``keep_pcm16``: see :func:`decode_sample`.
    """

    def __init__(self, vocab_index: dict[str, int], keep_pcm16: bool = False) -> None:
        self.vocab_index = vocab_index
        self.keep_pcm16 = keep_pcm16
        self.skipped = 0

    def samples(self, url: str, wanted: set[str]) -> Iterator[DecodedSample]:
        """Decoded (key, audio, multi-hot) of the ``wanted`` keys of one shard, in shard order."""
        delivered = 0
        for sample in raw_samples(url, wanted):
            delivered += 1
            try:
                decoded = decode_sample(sample, self.vocab_index, self.keep_pcm16)
            except CorruptSample as error:
                self.skipped += 1
                log.warning("skipping corrupt sample in %s: %s", url, error)
                continue
            yield decoded
        # (not reached when the consumer stops early: those keys are not lost, just not asked for)
        self.skipped += len(wanted) - delivered  # never delivered: the shard broke off, or lacks them
