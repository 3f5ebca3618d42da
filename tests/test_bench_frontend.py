"""`lt bench frontend`: musicnn's front-end timed per implementation and tile choice, against its baseline.

No timing assertions (this machine is noisy): the rows asked for, in order, each measured or
skipped with its reason, with the ratio to the baseline row of the same run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_bench import json_tail

from lightning_tagging.bench.frontend import FrontendRow, fastest_tiles
from lightning_tagging.cli import main
from lightning_tagging.models import Musicnn
from lightning_tagging.models.triton_kernels import DEFAULT_TILES, Tiles

TINY = ["--width", "0.05", "--n-mels", "16", "--n-frames", "24", "--batch", "2", "--warmup", "0", "--repeats", "1",
        "--device", "cpu", "--json"]
# A choice other than the default, with large tiles: few programs, and the interpreter runs each in Python.
OTHER_TILES = "t64c64k32w4s1/wg64x64x32s2w4/p8/cs/sv"


def test_rows_for_each_implementation_and_tile_choice_against_the_baseline(capsys: pytest.CaptureFixture[str],
                                                                           tmp_path: Path) -> None:
    fastest = tmp_path / "fastest-tiles"
    code = main(["bench", "frontend", *TINY, "--precision", "fp32", "--conv-impls", "mel_windows", "fused_triton",
                 "--tiles", "default", OTHER_TILES, "--branches", "timbral_f74", "--fastest-tiles-to", str(fastest)])
    assert code == 0
    rows = json_tail(capsys.readouterr().out)
    assert [(r["precision"], r["conv_impl"], r["fold_input_bn"], r["tiles"]) for r in rows] == [
        ("fp32", "conv2d", False, None),  # the baseline: musicnn's plain_args
        ("fp32", "mel_windows", True, None),
        ("fp32", "fused_triton", True, DEFAULT_TILES.label),
        ("fp32", "fused_triton", True, OTHER_TILES),
    ]
    for row in rows:
        assert row["error"] is None, row
        assert row["train_ms"] > 0 and row["forward_ms"] > 0 and row["first_call_s"] > 0
        assert row["clips_per_s"] == pytest.approx(2 / (row["train_ms"] / 1000))
        assert row["speedup"] == pytest.approx(rows[0]["train_ms"] / row["train_ms"])
    triton_rows = [row for row in rows if row["conv_impl"] == "fused_triton"]
    assert fastest.read_text() == min(triton_rows, key=lambda row: row["train_ms"])["tiles"]


def test_rows_past_the_budget_are_skipped_but_the_baseline_runs(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "frontend", *TINY, "--budget-s", "0", "--precision", "fp32", "bf16-mixed",
                 "--conv-impls", "mel_windows"])
    assert code == 0
    baseline, *rest = json_tail(capsys.readouterr().out)
    assert baseline["train_ms"] > 0 and baseline["speedup"] == 1.0
    assert [r["precision"] for r in rest] == ["fp32", "bf16-mixed"]
    assert all(r["train_ms"] is None and r["error"] == "skipped: over the budget" for r in rest)
    assert fastest_tiles([FrontendRow(**{k: v for k, v in r.items() if k != "name"}) for r in rest], "fp32") is None


def test_a_malformed_tile_label_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "frontend", "--tiles", "t64c64k16"])
    assert f"expected the form {Tiles().label!r}, then optionally '/p8'" in capsys.readouterr().err


def test_frontend_branches_are_the_features_front_end() -> None:
    """What the benchmark times is what musicnn's features() concatenates, and a subset is that subset."""
    torch.manual_seed(0)
    model = Musicnn(n_tags=3, n_mels=16, width=0.1).eval()
    x = torch.randn(2, 1, 16, 30)
    with torch.no_grad():
        features = model.features(x)
        branches = model.frontend_branches(x)
        assert torch.equal(torch.cat(branches, dim=1), torch.cat([features["timbral"], features["temporal"]], dim=1))
        (only,) = model.frontend_branches(x, ["temporal_s2"])
        assert torch.equal(only, branches[3])
