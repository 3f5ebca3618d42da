"""Shards from anywhere: local paths, http(s) (a real local web server), `pipe:` commands, fsspec URLs.

Every reader sees the same clips as from the local directory; a shard that cannot be opened
stops the run at once, naming the shard.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightning_tagging.data.build import build_shards
from lightning_tagging.data.datamodule import TaggingDataModule
from lightning_tagging.data.errors import ShardDirectoryError, ShardOpenError
from lightning_tagging.data.sources.synthetic import SyntheticSource


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    build_shards(
        SyntheticSource(30, seed=2, min_seconds=1.0, max_seconds=1.5), out, workers=1, shard_size=2, progress=False
    )
    return out


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(root: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A copy of the directory behind http://127.0.0.1:<port>."""
    copy = Path(shutil.copytree(root, tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(copy)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", copy
    server.shutdown()
    thread.join()


def eval_keys(dm: TaggingDataModule) -> list[str]:
    return sorted(b["key"][0] for b in dm.test_dataloader())


def test_http(root: Path, served: tuple[str, Path]) -> None:
    url, copy = served
    local = TaggingDataModule(str(root), num_workers=0)
    remote = TaggingDataModule(url, num_workers=2, crop_samples=8000, batch_size=4, train_samples_per_epoch=8)
    assert remote.vocab == local.vocab and remote.stats == local.stats
    assert eval_keys(remote) == eval_keys(local)
    assert [b["audio"].shape for b in remote.train_dataloader()] == [(4, 8000)] * 2
    (copy / "test-000001.tar").unlink()  # an HTTP 404
    with pytest.raises(ShardOpenError, match=r"test-000001\.tar"):
        eval_keys(TaggingDataModule(url, num_workers=0))


def test_pipe_commands(root: Path, tmp_path: Path) -> None:
    local = eval_keys(TaggingDataModule(str(root), num_workers=0))
    piped = TaggingDataModule(str(root), num_workers=2, shard_url=f"pipe:cat {root}/{{name}}")
    assert eval_keys(piped) == local
    failing = TaggingDataModule(str(root), num_workers=0, shard_url=f"pipe:cat {tmp_path}/nowhere/{{name}}")
    with pytest.raises(ShardOpenError, match=r"test-000000\.tar"):
        eval_keys(failing)
    with pytest.raises(ShardDirectoryError, match=r"\{name\}"):
        TaggingDataModule(str(root), shard_url="pipe:cat shards.tar")


def test_fsspec_urls(root: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    for path in root.iterdir():
        if path.is_file():
            memory.pipe(f"/lt-test/{path.name}", path.read_bytes())
    try:
        remote = TaggingDataModule("memory://lt-test", num_workers=0)  # the same code path as s3:// and gs://
        assert eval_keys(remote) == eval_keys(TaggingDataModule(str(root), num_workers=0))
        memory.rm("/lt-test/test-000001.tar")
        with pytest.raises(ShardOpenError, match=r"test-000001\.tar"):
            eval_keys(remote)
    finally:
        memory.rm("/lt-test", recursive=True)


def test_a_scheme_nothing_reads_says_what_to_install() -> None:
    with pytest.raises(ShardOpenError, match="install fsspec"):
        TaggingDataModule("nosuchscheme://bucket/shards")
