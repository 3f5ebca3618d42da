"""Errors of the data side a user can cause and fix; each message says what to do.

All are :class:`~lightning_tagging.errors.UserError` s, so ``lt`` prints them as one line.
"""

from __future__ import annotations

from lightning_tagging.errors import UserError


class DataError(UserError):
    """Base class of the data side's user errors."""


class AudioDecodeError(DataError):
    """Audio bytes or a file that cannot be decoded (unreadable, unsupported, empty, not finite)."""


class ShardDirectoryError(DataError):
    """A shard directory that is missing, incomplete (no vocab.json / stats.json) or has no shards for a split."""


class VocabularyMismatchError(DataError):
    """A sample carries a tag that the directory's vocab.json does not list."""


class BuildError(DataError):
    """A shard build that cannot go on (bad arguments, an output directory built differently)."""


class ShardOpenError(DataError):
    """A shard that cannot be opened or read at all (missing, no permission, HTTP error, not a tar)."""


class SkipItem(Exception):
    """Raised by an item's loader to leave the item out of the shards, counted with this reason.

    :class:`AudioDecodeError` has the same effect (kind "unreadable"); raise ``SkipItem``
    for other reasons (e.g. a clip shorter than the source accepts).

    Args:
        reason: what went wrong, for people (recorded in stats.json).
        kind: the category counted in stats.json's ``skipped_by_kind``: one of
            :data:`SKIP_KINDS` ("missing", "unreadable", "empty", "too_short", "silent")
            or a source's own word.
    """

    def __init__(self, reason: str, kind: str = "other") -> None:
        super().__init__(reason)
        self.kind = kind


SKIP_KINDS = ("missing", "unreadable", "empty", "too_short", "silent", "invalid", "other")
