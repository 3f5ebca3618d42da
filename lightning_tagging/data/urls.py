"""Where shards and their metadata live: local paths, any URL WebDataset opens, fsspec URLs.

    /data/mtt  or  file:///data/mtt               local files
    https://host/mtt   http://...                  WebDataset's opener (curl, fails on HTTP errors)
    pipe:aws s3 cp s3://bucket/mtt/{name} -        any command writing the shard to stdout
    s3://bucket/mtt   gs://bucket/mtt   ...         fsspec, when fsspec and its backend (s3fs,
                                                   gcsfs, ...) are installed; gs:// falls back to
                                                   WebDataset's gsutil opener without gcsfs

A shard URL is the directory URL + "/" + shard name, or a template with ``{name}`` (the
DataModule's ``shard_url``), which is how ``pipe:`` commands are given.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import IO

import webdataset as wds

from .errors import ShardOpenError

# Schemes WebDataset's gopen handles itself (besides "pipe:" and local files).
WDS_SCHEMES = ("http", "https", "sftp", "ftps", "scp", "ais", "hf", "htgs")


def scheme_of(url: str) -> str:
    """ "pipe" for ``pipe:...``, the URL scheme for ``scheme://...``, "" for a local path."""
    if url.startswith("pipe:"):
        return "pipe"
    head, sep, _ = url.partition("://")
    return head.lower() if sep and head.isidentifier() else ""


def local_path(url: str) -> str | None:
    """The file system path of a local location (plain path or file://), else None."""
    scheme = scheme_of(url)
    if scheme == "":
        return url
    if scheme == "file":
        return url[len("file://") :]
    return None


def join(root: str, name: str) -> str:
    """``name`` inside the directory ``root`` (a path or URL)."""
    path = local_path(root)
    return os.path.join(path, name) if path is not None else root.rstrip("/") + "/" + name


def _fsspec_open(url: str, mode: str = "rb") -> IO[bytes] | None:
    """Open ``url`` with fsspec, or None when fsspec (or the backend for its scheme) is not installed."""
    try:
        import fsspec

        fsspec.get_filesystem_class(scheme_of(url))
    except (ImportError, ValueError):
        return None
    return fsspec.open(url, mode).open()


def open_stream(url: str) -> IO[bytes]:
    """A binary stream of the file at ``url`` (see the module docstring for what ``url`` may be).

    Raises:
        ShardOpenError: no handler for the scheme, or the open itself failed; says which URL.
    """
    scheme = scheme_of(url)
    try:
        path = local_path(url)
        if path is not None:
            return open(path, "rb")
        if scheme == "pipe" or scheme in WDS_SCHEMES:
            return wds.gopen(url, "rb")
        stream = _fsspec_open(url)
        if stream is not None:
            return stream
        if scheme == "gs":
            return wds.gopen(url, "rb")  # gsutil
    except Exception as error:  # every backend raises its own types; the message names the shard
        raise ShardOpenError(f"cannot open {url}: {error}") from error
    raise ShardOpenError(
        f"cannot open {url}: no reader for {scheme}:// URLs; install fsspec and its backend "
        f"(e.g. `pip install s3fs` for s3://, `pip install gcsfs` for gs://), or give the shards as "
        "a `pipe:` command"
    )


def read_bytes(url: str) -> bytes | None:
    """All bytes of a small file (vocab.json, stats.json, index.json), or None if there is none.

    Raises:
        ShardOpenError: the location exists but cannot be read, or nothing can read such URLs.
    """
    path = local_path(url)
    if path is not None:
        return open(path, "rb").read() if os.path.isfile(path) else None
    try:
        if scheme_of(url) in ("http", "https"):
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.read()
        with open_stream(url) as stream:
            return stream.read()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise ShardOpenError(f"cannot read {url}: {error}") from error
    except ShardOpenError as error:
        if isinstance(error.__cause__, FileNotFoundError):
            return None
        raise
    except FileNotFoundError:
        return None
    except Exception as error:
        raise ShardOpenError(f"cannot read {url}: {error}") from error
