"""`lt bench data` runs end to end on a tiny corpus and prints one row per (payload, workers)."""

from __future__ import annotations

import json

import pytest

from lightning_tagging.cli import main


def test_bench_data_prints_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "bench",
                "data",
                "--clips",
                "4",
                "--seconds",
                "2",
                "--workers",
                "1",
                "2",
                "--batches",
                "3",
                "--batch-size",
                "4",
                "--crop-samples",
                "8000",
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = json.loads(out[out.index("[") :])
    assert [(r["payload"], r["workers"]) for r in rows] == [("flac", 1), ("flac", 2), ("pcm16", 1), ("pcm16", 2)]
    assert all(r["batches"] >= 3 and r["clips_per_s"] > 0 and r["patches_per_s"] == 4 * r["clips_per_s"] for r in rows)
    assert "patches/s" in out
