"""`lt bench suite --quick`: every planned row ends measured, failed with its reason, or skipped by the budget.

The quick plan is the full suite's machinery on tiny models and data (a CPU check); no timing
assertions, since this machine is noisy.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from lightning_tagging.bench.configs import ModelConfig
from lightning_tagging.bench.suite import QUICK, SAMPLECNN_BLOCK_IMPLS, Plan, Suite, is_variant, run_command
from lightning_tagging.cli import main


def musicnn(conv_impl: str) -> str:
    return json.dumps({"conv_impl": conv_impl, "width": 0.1}, sort_keys=True)


def samplecnn(block_impl: str) -> str:
    return json.dumps({"block_impl": block_impl})


# The quick plan with conv implementations conv2d, mel_windows and one that does not exist, after the
# baseline: library convs on the BN'd spectrogram (Musicnn.plain_args).
PLAIN = json.dumps({"conv_impl": "conv2d", "fold_input_bn": False, "width": 0.1}, sort_keys=True)
BASELINE = ModelConfig("musicnn", 2, "fp32", backbone_args=PLAIN)
PRECISIONS = ("fp32", "bf16-mixed")
EXPECTED_MODEL_ROWS = [
    BASELINE,
    *(ModelConfig("musicnn", 2, precision, backbone_args=musicnn(impl))
      for impl in ("conv2d", "mel_windows", "no_such_impl") for precision in PRECISIONS),
    # samplecnn's plain fp32 row is its own baseline (SampleCNN.plain_args)
    *(ModelConfig("samplecnn", 2, precision, backbone_args=samplecnn(impl))
      for impl in QUICK.samplecnn_block_impls for precision in PRECISIONS),
]
# After the fit rows: the rows that vary another setting (the quick plan has no second batch).
VARIANT_ROWS = [
    ModelConfig("musicnn", 2, "fp32", channels_last=True, backbone_args=musicnn("conv2d")),
    ModelConfig("musicnn", 2, "fp32", cudnn_benchmark=True, backbone_args=musicnn("conv2d")),
    ModelConfig("samplecnn", 2, "fp32", cudnn_benchmark=True),
]
COMPILED = ModelConfig("musicnn", 2, "fp32", compile=True, backbone_args=musicnn("conv2d"), compile_backend="eager")
# Each fit row runs the implementation that was fastest in its model rows (fp32, batch 2).
# Then musicnn again with model.compile (the quick plan: the compiler's eager backend), in its own process.
EXPECTED_FIT_ROWS = ["musicnn b=2 32-true, 1 workers, conv_impl {fastest}",
                     "samplecnn b=2 32-true, 1 workers, block_impl {fastest_block}",
                     "musicnn b=2 32-true, 1 workers, model.compile (eager)"]


def run_suite(out: Path, *extra: str) -> tuple[dict[str, Any], str]:
    code = main(["bench", "suite", "--quick", "--out", str(out), "--conv-impls", "conv2d", "mel_windows",
                 "no_such_impl", *extra])
    assert code == 0
    return json.loads((out / "suite.json").read_text()), (out / "suite.md").read_text()


def test_quick_suite_measures_every_row_and_records_failures(tmp_path: Path) -> None:
    suite, text = run_suite(tmp_path)
    rows = {row["label"]: row for row in suite["rows"]}
    speeds = {impl: rows[ModelConfig("musicnn", 2, "fp32", backbone_args=musicnn(impl)).label]["result"]
              ["train_clips_per_s"] for impl in ("conv2d", "mel_windows")}
    block_speeds = {impl: rows[ModelConfig("samplecnn", 2, "fp32", backbone_args=samplecnn(impl)).label]["result"]
                    ["train_clips_per_s"] for impl in QUICK.samplecnn_block_impls}
    fit_labels = [label.format(fastest=max(speeds, key=speeds.__getitem__),
                               fastest_block=max(block_speeds, key=block_speeds.__getitem__))
                  for label in EXPECTED_FIT_ROWS]
    expected_labels = ([c.label for c in EXPECTED_MODEL_ROWS] + fit_labels + [c.label for c in VARIANT_ROWS]
                       + [COMPILED.label])
    # The rows the targets need first, so a budget that runs out costs the least; compiled last:
    # slowest, least certain.
    assert [row["label"] for row in suite["rows"]] == expected_labels
    assert suite["finished"] and suite["torch"] and suite["device"]

    for config in EXPECTED_MODEL_ROWS + VARIANT_ROWS:
        row = rows[config.label]
        if "no_such_impl" in config.label:  # recorded, and the suite went on
            assert row["status"] == "failed" and "no_such_impl" in row["error"]
            continue
        assert row["status"] == "ok", row["error"]
        result = row["result"]
        assert result["train_clips_per_s"] > 0 and result["infer_clips_per_s"] > 0
        assert result["saved_activation_gib"] > 0
        assert result["peak_train_memory_gib"] is None  # CUDA only
        baseline = rows[config.baseline.label]["result"]
        if config == config.baseline:
            assert result["speedup_vs_eager_fp32"] is None
        else:
            assert result["speedup_vs_eager_fp32"] == pytest.approx(
                result["train_clips_per_s"] / baseline["train_clips_per_s"])

    compiled = rows[COMPILED.label]  # in a child process; the compiler may be unsupported on some platforms
    assert compiled["status"] == "ok" or compiled["error"]
    if compiled["status"] == "ok":
        assert compiled["result"]["train_clips_per_s"] > 0

    for label in fit_labels:
        row = rows[label]
        assert row["status"] == "ok", row["error"]
        assert row["result"]["train_clips_per_s"] > 0 and 0.0 <= row["result"]["data_wait_fraction"] < 1.0
        assert row["result"]["weights_finite"] is True
        assert row["result"]["compile"] == ("model.compile" in label)
        assert row["result"]["compile_mode"] == ("default" if "model.compile" in label else None)
        assert row["details"]["command"][:3] == ["lt", "bench", "fit"]  # how to reproduce the row
    # The compiled musicnn row runs the faster implementation made of library ops (here: of the two).
    assert rows[fit_labels[2]]["details"]["impl"] == max(speeds, key=speeds.__getitem__)

    assert text.startswith("Measured ") and "torch " in text
    for label in expected_labels:
        assert f"| {label} |" in text
    assert text.count("| failed: ") == 2 and "| baseline |" in text


def test_rows_past_the_time_budget_are_skipped(tmp_path: Path) -> None:
    suite, text = run_suite(tmp_path, "--budget-s", "0")
    first, *rest = suite["rows"]
    assert first["status"] == "ok"  # the first row always runs
    assert rest and all(row["status"] == "skipped" and "budget" in row["error"] for row in rest)
    assert not (tmp_path / "corpus").exists()  # no fit row ran, so no shards were built
    assert text.count("| skipped: ") == len(rest)


def test_the_full_plan_runs_the_rows_the_targets_need_first(tmp_path: Path) -> None:
    """Batch-256 model rows (every musicnn implementation, both precisions), then the fits, then the rest."""
    rows = Suite(tmp_path, Plan(), budget_s=0, device=torch.device("cpu")).rows
    first_fit = next(i for i, row in enumerate(rows) if row.kind == "fit")
    before = [ModelConfig(**row.details["config"]) for row in rows[:first_fit]]
    assert before and all(c.batch == 256 and not is_variant(c) for c in before)
    impls = {json.loads(c.backbone_args).get("conv_impl") for c in before if c.backbone == "musicnn"}
    assert impls == {"conv2d", "mel_windows", "mel_band", "fused", "fused_compiled", "fused_triton"}
    blocks = {json.loads(c.backbone_args).get("block_impl") for c in before if c.backbone == "samplecnn"}
    assert blocks == set(SAMPLECNN_BLOCK_IMPLS) == {"plain", "pool_first", "nhwc", "pool_first_nhwc"}
    after = [ModelConfig(**row.details["config"]) for row in rows[first_fit:] if row.kind == "model"]
    assert {c.batch for c in after if not is_variant(c)} == {16}
    assert [c.compile for c in after] == sorted(c.compile for c in after)  # compiled ones last
    # The fits: bf16 (what the targets need), then bf16 with model.compile, then fp32.
    fits = [(row.details["backbone"], row.details["precision"], row.details.get("compile", False))
            for row in rows if row.kind == "fit"]
    assert fits == [("musicnn", "bf16-mixed", False), ("samplecnn", "bf16-mixed", False),
                    ("musicnn", "bf16-mixed", True), ("samplecnn", "bf16-mixed", True),
                    ("musicnn", "32-true", False), ("samplecnn", "32-true", False)]


def test_with_several_devices_one_fit_row_runs_again_on_all_of_them(tmp_path: Path) -> None:
    """The multi-GPU scaling row: the first fit row's backbone and precision as one `lt bench fit` command
    on N DDP processes, sharing the workers, after the compiled fits. (That command on two gloo processes:
    tests/test_bench.py.)"""
    suite = Suite(tmp_path, replace(QUICK, ddp_devices=2, fit_workers=4), budget_s=0, device=torch.device("cpu"))
    fits = [row for row in suite.rows if row.kind == "fit"]
    assert [row.details.get("devices", 1) for row in fits] == [1, 1, 1, 2]
    assert fits[-1].label == "musicnn b=2 per device 32-true, 2 workers each, × 2 devices"
    assert fits[-1].details["compile"] is False
    no_gpu = Suite(tmp_path, QUICK, budget_s=0, device=torch.device("cpu"))  # devices: CUDA's count, here none
    assert [row.details.get("devices", 1) for row in no_gpu.rows if row.kind == "fit"] == [1, 1, 1]


def test_a_command_past_its_time_is_killed_with_its_children(tmp_path: Path) -> None:
    """A DDP row's rank whose partner died would wait for ever: the suite kills the whole process group."""
    pid_file = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="timed out after 3 s"):
        run_command([sys.executable, "-c", script], timeout_s=3)
    assert time.monotonic() - started < 30
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # gone, or a zombie nobody has reaped yet: not running either way
        status = Path(f"/proc/{grandchild}/status")
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"process {grandchild} still runs")


def test_a_failing_command_reports_the_end_of_its_stderr() -> None:
    with pytest.raises(RuntimeError, match="exit code 3: boom"):
        run_command([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"], timeout_s=30)
