"""`lt bench` runs and reports well-formed numbers (no timing assertions: this machine is noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_tagging.bench.fit import format_result
from lightning_tagging.cli import main

REPO = Path(__file__).resolve().parents[1]


def json_tail(out: str) -> object:
    """The JSON document printed last (after the human-readable lines)."""
    start = min(i for i in (out.find("\n["), out.find("\n{")) if i >= 0)
    return json.loads(out[start:])


def test_bench_model_reports_each_config_against_its_eager_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "model", "--backbone", "vgg", "--batch", "2", "--precision", "fp32", "bf16-mixed",
                 "--steps", "1", "--warmup", "0", "--device", "cpu", "--json"])
    assert code == 0
    results = json_tail(capsys.readouterr().out)
    assert [r["config"]["precision"] for r in results] == ["fp32", "bf16-mixed"]
    assert results[0]["speedup_vs_eager_fp32"] is None  # the baseline itself
    assert results[1]["speedup_vs_eager_fp32"] == pytest.approx(
        results[1]["train_clips_per_s"] / results[0]["train_clips_per_s"])
    assert all(r["train_clips_per_s"] > 0 and r["infer_clips_per_s"] > 0 for r in results)
    # The model's arithmetic rate: its training FLOPs per clip (one count for both precisions) × clips/s.
    assert results[0]["model_gflop_per_clip"] == results[1]["model_gflop_per_clip"] > 0
    for r in results:
        assert r["model_tflops"] == pytest.approx(r["model_gflop_per_clip"] * r["train_clips_per_s"] / 1000)


def test_bench_fit_measures_steps_and_data_waiting(tiny_corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "fit", "--steps", "3", "--warmup", "1", "--json", "--config",
                 str(REPO / "experiments" / "demo.yaml"), "--data.root", str(tiny_corpus), "--data.batch_size", "2",
                 "--data.num_workers", "1", "--model.backbone.init_args.width", "0.1"])
    assert code == 0
    result = json_tail(capsys.readouterr().out)
    assert result["steps_timed"] == 3 and result["batch_size"] == 2
    assert result["compile"] is False and result["compile_mode"] is None
    assert result["train_clips_per_s"] > 0 and 0.0 <= result["data_wait_fraction"] < 1.0
    # Every figure comes from the one timed window.
    assert 0.0 <= result["data_wait_s"] <= result["timed_s"]
    assert result["ms_per_step"] * 3 == pytest.approx(1000 * result["timed_s"])
    assert result["train_clips_per_s"] == pytest.approx(2 * 3 / result["timed_s"])
    assert result["data_wait_fraction"] == pytest.approx(result["data_wait_s"] / result["timed_s"])


def test_a_fit_line_names_a_compile_mode_other_than_the_default() -> None:
    result = {"train_clips_per_s": 10.0, "ms_per_step": 200.0, "data_wait_fraction": 0.01, "batch_size": 2,
              "num_workers": 1, "precision": "bf16-mixed", "device": "cuda:0", "devices": 1}
    lines = {mode: format_result({**result, "compile": mode is not None, "compile_mode": mode})
             for mode in (None, "default", "reduce-overhead")}
    assert "compiled" not in lines[None]
    assert "bf16-mixed, compiled, cuda:0" in lines["default"]
    assert "bf16-mixed, compiled (reduce-overhead), cuda:0" in lines["reduce-overhead"]


def test_bench_model_measures_each_backbone_args_variant_against_one_baseline(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "model", "--backbone", "musicnn", "samplecnn", "--batch", "2", "--steps", "1", "--warmup",
                 "0", "--device", "cpu", "--json", "--backbone-args", '{"width": 0.1, "conv_impl": "mel_windows"}',
                 '{"fold_input_bn":false,"conv_impl":"conv2d","width":0.1}'])
    assert code == 0
    out = capsys.readouterr().out
    assert "samplecnn takes not all of" in out  # conv_impl is musicnn's: the variants skip samplecnn
    mel_windows, conv2d = json_tail(out)
    assert json.loads(mel_windows["config"]["backbone_args"]) == {"conv_impl": "mel_windows", "width": 0.1}
    # The second variant is the plain model itself (key order does not matter): it is the baseline.
    assert conv2d["speedup_vs_eager_fp32"] is None
    assert mel_windows["baseline_train_clips_per_s"] == conv2d["train_clips_per_s"]
    assert out.count(" baseline\n") == 1  # measured once
    assert all(r["saved_activation_gib"] > 0 for r in (mel_windows, conv2d))


def test_bench_fit_with_two_ddp_processes_counts_both(tiny_corpus: Path) -> None:
    """`--devices 2` on CPU: Lightning reruns the command in a second process (gloo); one report."""
    command = [sys.executable, "-m", "lightning_tagging.cli", "bench", "fit", "--devices", "2", "--steps", "2",
               "--warmup", "1", "--json", "--config", str(REPO / "experiments" / "demo.yaml"),
               "--data.root", str(tiny_corpus), "--data.batch_size", "2", "--data.num_workers", "0",
               "--model.backbone.init_args.width", "0.1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("lt bench fit:") == 1  # rank zero reports for both
    result = json_tail(done.stdout)
    assert result["devices"] == 2 and result["rank"] == 0 and result["steps_timed"] == 2
    assert result["train_clips_per_s"] > 0 and "× 2" in done.stdout


def test_bench_model_cudnn_benchmark_is_a_row_of_its_own_and_restored(capsys: pytest.CaptureFixture[str]) -> None:
    torch.backends.cudnn.benchmark = False
    code = main(["bench", "model", "--backbone", "vgg", "--batch", "2", "--steps", "1", "--warmup", "0",
                 "--device", "cpu", "--json", "--cudnn-benchmark"])
    assert code == 0
    out = capsys.readouterr().out
    (searched,) = json_tail(out)
    assert searched["config"]["cudnn_benchmark"] is True and searched["label"].endswith("fp32+cudnn.benchmark")
    assert searched["baseline_train_clips_per_s"] > 0  # against the same model without the search
    assert out.count(" baseline\n") == 1
    assert torch.backends.cudnn.benchmark is False  # the process's setting is restored


def test_a_measured_row_leaves_no_tensor_alive() -> None:
    """Each row's model, optimizer and graphs must go with the row: on a GPU the suite measures ~20 rows in
    one process, and what one row kept raised the peak of every later one (before a fix, by 12 GiB per
    musicnn row at batch 256, until sampleCNN ran out of memory)."""
    import gc

    from lightning_tagging.bench.configs import ModelConfig
    from lightning_tagging.bench.model import measure

    def live_tensors() -> int:
        gc.collect()
        return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())

    before = live_tensors()
    for conv_impl in ("conv2d", "mel_windows", "fused"):
        config = ModelConfig("musicnn", 2, backbone_args=json.dumps({"conv_impl": conv_impl, "width": 0.1}))
        measure(config, torch.device("cpu"), steps=1, warmup=0)
    assert live_tensors() == before


def test_bench_model_profile_names_the_operators_that_take_the_time(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "model", "--backbone", "vgg", "--batch", "2", "--steps", "1", "--warmup", "1",
                 "--device", "cpu", "--json", "--profile", "4"])
    assert code == 0
    out = capsys.readouterr().out
    (result,) = json_tail(out)
    shares = result["profile"]
    assert 1 <= len(shares) <= 4
    assert [s["share"] for s in shares] == sorted((s["share"] for s in shares), reverse=True)
    assert all(0 < s["share"] <= 1 and s["ms_per_step"] > 0 and s["calls_per_step"] > 0 for s in shares)
    assert sum(s["share"] for s in shares) <= 1 + 1e-9  # one partition of the step's time
    # A CNN's training step spends the most in convolutions (forward or backward).
    assert any("conv" in s["name"] for s in shares[:2]), shares
    for share in shares:
        assert share["name"][:44] in out  # printed under the row
