"""`lt bench suite`: every figure of the performance tables (docs/performance.md), from one command on one GPU.

    lt bench suite --out runs/bench-suite --scratch /tmp/lt-bench   # sized for one GPU and 16 CPU cores
    lt bench suite --out /tmp/suite --quick                         # tiny models and data: a CPU check

On a GPU machine with a command time limit, run scripts/device-bench.sh (it installs the carried
wheels and keeps the corpus out of the folder that comes back).

Runs, in this order (the lists are the constants below), the rows that decide the targets first:

1. `lt bench model` rows at batch 256: musicnn and samplecnn, fp32 and bf16-mixed, each with
   each of its implementations (musicnn's ``conv_impl``, samplecnn's ``block_impl``: ``IMPL_ARGUMENTS``);
   each next to its plain eager fp32 baseline (added automatically);
2. `lt bench fit` rows at batch 256, from synthetic PCM16 shards built in ``SCRATCH/corpus``
   (reused by a rerun), with as many DataLoader workers as the CPUs allow: both backbones in
   bf16-mixed, each with the implementation that was fastest in the model rows at that
   batch and precision; then both again with ``model.compile`` (musicnn with the fastest of conv2d,
   mel_windows and mel_band; each in its own process, as a compiler crash or hang must cost that row only);
   then both in 32-true;
   and, where there are several GPUs (or ``--ddp-devices N``), one bf16 fit row again on N DDP
   processes: the multi-GPU scaling, measured beside its one-GPU row;
3. the same model rows at batch 16 (the batch the reference implementations are quoted at),
   then musicnn with channels_last once, and each backbone with library convs and cuDNN's
   algorithm search (``cudnn.benchmark``; the same row without it is the plain one);
4. torch.compile rows, one per backbone, last because compiling is slow and the least
   certain; each runs in its own process (``isolated.py``), so a compiler crash or hang costs
   that row only.

Every row that raises (out of memory, a missing implementation, a compile error) is
recorded as failed with its message and the suite goes on. When ``--budget-s`` seconds have
passed, the remaining rows are recorded as skipped, so a command with a hard time limit
still ends with its tables. ``OUT/suite.json`` (everything) and ``OUT/suite.md`` (the
Markdown tables) are rewritten after every row, so a killed run leaves what it measured;
the Markdown is printed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from lightning_tagging.bench import fit as bench_fit
from lightning_tagging.bench import model as bench_model
from lightning_tagging.bench.configs import ModelConfig, parse_backbone_args, with_baselines
from lightning_tagging.bench.isolated import ChildFailed, call_isolated
from lightning_tagging.bench.model import ModelResult
from lightning_tagging.bench.suite_report import Row, markdown
from lightning_tagging.bench.timing import resolve_device
from lightning_tagging.jsonio import write_json_atomically
from lightning_tagging.models.triton_kernels import tiles_in_use

# What the full suite measures (the defaults of Plan). Each musicnn conv implementation runs at
# every batch and precision: conv2d at fp32 is the baseline itself, conv2d at bf16 separates the
# gain of the precision from that of the implementation.
MODEL_BACKBONES = ("musicnn", "samplecnn")
MODEL_BATCHES = (16, 256)
MODEL_PRECISIONS = ("fp32", "bf16-mixed")
MUSICNN_CONV_IMPLS = ("conv2d", "mel_windows", "mel_band", "fused", "fused_compiled", "fused_triton")
SAMPLECNN_BLOCK_IMPLS = ("plain", "pool_first", "nhwc", "pool_first_nhwc")
# The constructor argument that picks each backbone's implementation (the model rows vary it, the fit
# rows set the fastest), and what compiled fit rows choose from: implementations made of library ops,
# and fused_triton, whose kernels run between the compiled graphs (the other fused ones hold an
# autograd.Function with a Python loop of chunks).
IMPL_ARGUMENTS = {"musicnn": "conv_impl", "samplecnn": "block_impl"}
COMPILED_IMPLS = {"musicnn": ("conv2d", "mel_windows", "mel_band", "fused_triton"), "samplecnn": SAMPLECNN_BLOCK_IMPLS}
LARGE_BATCH, LARGE_PRECISION = 256, "bf16-mixed"  # of the compile, channels_last and fit rows
COMPILE_BACKBONES = ("musicnn", "samplecnn")  # with library convs
COMPILE_MODE = "default"  # "reduce-overhead" adds CUDA graphs; "max-autotune" takes minutes to tune
CHANNELS_LAST_BACKBONES = ("musicnn",)  # with library convs
CUDNN_BENCHMARK_BACKBONES = ("musicnn", "samplecnn")  # with library convs: does cuDNN's search fix them?
FIT_BACKBONES = ("musicnn", "samplecnn")
FIT_PRECISIONS = ("bf16-mixed", "32-true")  # in this order: bf16 is what the targets need
FIT_COMPILE_PRECISIONS = ("bf16-mixed",)  # fit rows again with model.compile, after the eager ones
# The front-end and backbone classes `lt fit` gets for each backbone (as experiments/matrices/ switch them).
FIT_MODELS = {
    "musicnn": ("lightning_tagging.frontends.LogMel", "lightning_tagging.models.Musicnn"),
    "samplecnn": ("lightning_tagging.frontends.Waveform", "lightning_tagging.models.SampleCNN"),
}
DEFAULT_BUDGET_S = 480.0


@dataclass(frozen=True)
class Plan:
    """What the suite measures and how big: the full suite, or :data:`QUICK` for a CPU."""

    backbones: tuple[str, ...] = MODEL_BACKBONES
    batches: tuple[int, ...] = MODEL_BATCHES
    precisions: tuple[str, ...] = MODEL_PRECISIONS
    conv_impls: tuple[str, ...] = MUSICNN_CONV_IMPLS
    samplecnn_block_impls: tuple[str, ...] = SAMPLECNN_BLOCK_IMPLS
    large_batch: int = LARGE_BATCH
    large_precision: str = LARGE_PRECISION
    compile_backbones: tuple[str, ...] = COMPILE_BACKBONES
    compile_mode: str = COMPILE_MODE
    compile_backend: str = "inductor"
    channels_last_backbones: tuple[str, ...] = CHANNELS_LAST_BACKBONES
    cudnn_benchmark_backbones: tuple[str, ...] = CUDNN_BENCHMARK_BACKBONES
    fit_backbones: tuple[str, ...] = FIT_BACKBONES
    fit_precisions: tuple[str, ...] = FIT_PRECISIONS
    fit_compile_precisions: tuple[str, ...] = FIT_COMPILE_PRECISIONS
    fit_compile_backbones: tuple[str, ...] = FIT_BACKBONES  # of the compiled fit rows
    musicnn_args: str = "{}"  # JSON kwargs every musicnn gets, e.g. a width
    steps: int = 10  # timed model steps (median)
    warmup: int = 3
    fit_workers: int | None = None  # DataLoader workers of the fit rows; None: every CPU but one, at most 15
    fit_steps: int = 20  # timed fit steps
    fit_warmup: int = 3  # untimed fit steps, at least one per DataLoader worker (each one's first batch waits)
    ddp_devices: int | None = None  # one more fit row on this many DDP processes; None: every GPU, if several
    patches_per_clip: int = 16  # crops per decoded clip: enough that 15 workers keep ahead of an H100
    clips: int = 1024  # synthetic corpus: ~1 GB of PCM16, built in seconds by 16 processes
    clip_seconds: float = 29.0  # like MagnaTagATune
    shard_size: int = 16  # 64 shards: several per DataLoader worker


# Tiny models and data, one step each, and what a CPU does fast: the large-batch rows in fp32
# (bf16 is emulated on most CPUs, several times slower), one compiled model with the compiler's
# eager backend (no code generation), fit rows in fp32 (compiled ones with that backend too, musicnn
# only), two of sampleCNN's block implementations (a choice, and the fastest of it), and no Triton
# kernels (a CPU runs them in Triton's interpreter, minutes a step). About a minute on two CPU cores.
QUICK = Plan(batches=(2,), large_batch=2, large_precision="fp32", compile_backbones=("musicnn",),
             conv_impls=tuple(impl for impl in MUSICNN_CONV_IMPLS if impl != "fused_triton"),
             samplecnn_block_impls=("plain", "nhwc"), fit_compile_backbones=("musicnn",),
             compile_backend="eager", fit_precisions=("32-true",), fit_compile_precisions=("32-true",),
             musicnn_args='{"width": 0.1}', steps=1, warmup=0,
             fit_workers=1, fit_steps=1, fit_warmup=1, patches_per_clip=4, clips=8, clip_seconds=4.0, shard_size=2)


def implementations(plan: Plan, backbone: str) -> tuple[str | None, ...]:
    """The implementations the model rows of ``backbone`` try (None: the backbone has no such choice)."""
    return {"musicnn": plan.conv_impls, "samplecnn": plan.samplecnn_block_impls}.get(backbone, (None,))


def backbone_args(plan: Plan, backbone: str, impl: str | None = None) -> str:
    """The JSON backbone kwargs of a model row: the plan's (musicnn's width), and ``impl`` if given."""
    args = json.loads(plan.musicnn_args) if backbone == "musicnn" else {}
    if impl is not None:
        args[IMPL_ARGUMENTS[backbone]] = impl
    return parse_backbone_args(json.dumps(args))


def model_configs(plan: Plan) -> list[ModelConfig]:
    """The model rows, baselines included, in the order they run (compiled ones last)."""
    configs = [
        ModelConfig(backbone, batch, precision, backbone_args=backbone_args(plan, backbone, impl))
        for backbone in plan.backbones
        for batch in plan.batches
        for impl in implementations(plan, backbone)
        for precision in plan.precisions
    ]
    # The rows that vary another setting run musicnn with library convs, samplecnn as it comes.
    large, precision = plan.large_batch, plan.large_precision

    def library(backbone: str) -> str:
        return backbone_args(plan, backbone, "conv2d" if backbone == "musicnn" else None)

    configs += [ModelConfig(b, large, precision, channels_last=True, backbone_args=library(b))
                for b in plan.channels_last_backbones]
    configs += [ModelConfig(b, large, precision, cudnn_benchmark=True, backbone_args=library(b))
                for b in plan.cudnn_benchmark_backbones]
    configs += [ModelConfig(b, large, precision, compile=True, backbone_args=library(b),
                            compile_mode=plan.compile_mode, compile_backend=plan.compile_backend)
                for b in plan.compile_backbones]
    ordered = with_baselines(configs)  # baselines are never compiled, so they stay ahead of the compiled rows
    return [c for c in ordered if not c.compile] + [c for c in ordered if c.compile]


def is_variant(config: ModelConfig) -> bool:
    """A row that varies a setting other than implementation, batch and precision (compile, layout, cuDNN search)."""
    return config.compile or config.channels_last or config.cudnn_benchmark


def fit_workers(plan: Plan) -> int:
    """DataLoader workers for the fit rows: the plan's, or every CPU but the one that trains, at most 15."""
    if plan.fit_workers is not None:
        return plan.fit_workers
    return max(0, min((os.cpu_count() or 1) - 1, 15))


def fit_arguments(backbone: str, run_name: str, corpus: Path, scratch: Path, plan: Plan, workers: int) -> list[str]:
    """`lt fit` arguments for one fit row: front-end + backbone, the corpus, batch and workers; its run dir
    is ``SCRATCH/fit-runs/<backbone>-<run_name>``."""
    frontend, backbone_class = FIT_MODELS[backbone]
    args = ["--seed_everything", "0", "--model.frontend", frontend, "--model.backbone", backbone_class]
    if backbone == "musicnn":
        for key, value in json.loads(plan.musicnn_args).items():
            args += [f"--model.backbone.init_args.{key}", json.dumps(value)]
    return [
        *args,
        "--data.root", str(corpus),
        "--data.batch_size", str(plan.large_batch),
        "--data.num_workers", str(workers),
        "--data.patches_per_clip", str(plan.patches_per_clip),
        "--trainer.default_root_dir", str(scratch / "fit-runs" / f"{backbone}-{run_name}"),
    ]


def build_corpus(scratch: Path, plan: Plan) -> Path:
    """Synthetic training shards (PCM16: decoding keeps up; FLAC runs at ~50 clips/s per core).

    Built once: a rerun with the same plan finds the shards complete and returns at once.
    """
    from lightning_tagging.data.build import build_shards
    from lightning_tagging.data.sources.synthetic import SyntheticSource

    corpus = scratch / "corpus"
    source = SyntheticSource(plan.clips, seed=0, valid_fraction=0.0, test_fraction=0.0,
                             min_seconds=plan.clip_seconds, max_seconds=plan.clip_seconds)
    workers = min(os.cpu_count() or 1, 16) if plan.clips > 64 else 1  # a process pool only pays for itself
    build_shards(source, corpus, workers=workers, shard_size=plan.shard_size, payload="pcm16", progress=False)
    return corpus


class Suite:
    """The rows, their runners, the time budget, and the files rewritten after every row."""

    def __init__(self, out: Path, plan: Plan, budget_s: float, device: torch.device, quick: bool = False,
                 scratch: Path | None = None) -> None:
        self.out, self.plan, self.budget_s, self.device = out, plan, budget_s, device
        self.scratch = scratch or out  # the corpus and the fit rows' run dirs
        self.start = time.monotonic()
        self.header: dict[str, Any] = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": bench_model.device_name(device),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "quick": quick,
            "triton_tiles": tiles_in_use().label,  # LT_TRITON_TILES, or the default
            "budget_s": budget_s,
            "plan": asdict(plan),
            "elapsed_s": 0.0,
            "finished": False,
        }
        self.rows: list[Row] = []
        self.runners: list[Callable[[Row], dict[str, Any]]] = []
        self._corpus: Path | Exception | None = None
        self._results: dict[ModelConfig, ModelResult] = {}
        self.workers = fit_workers(plan)
        # The targets first: the large-batch model rows (which pick musicnn's implementation for
        # the fits), then the fits, then the rest, so a budget that runs out costs the least needed.
        configs = model_configs(plan)
        first = [c for c in configs if c.batch == plan.large_batch and not is_variant(c)]
        for config in first:
            self._add_model(config)
        for precision in plan.fit_precisions:
            for backbone in plan.fit_backbones:
                self._add_fit(backbone, precision)
            if precision in plan.fit_compile_precisions:
                for backbone in plan.fit_compile_backbones:
                    self._add_command_fit(backbone, precision, devices=1, compiled=True)
        ddp_devices = plan.ddp_devices if plan.ddp_devices is not None else torch.cuda.device_count()
        if ddp_devices > 1 and plan.fit_backbones and plan.fit_precisions:
            self._add_command_fit(plan.fit_backbones[0], plan.fit_precisions[0], ddp_devices, compiled=False)
        for config in (c for c in configs if not c.compile and c not in first):
            self._add_model(config)
        for config in (c for c in configs if c.compile):
            self._add_model(config)

    # --- the rows ---------------------------------------------------------------------------

    def _add_model(self, config: ModelConfig) -> None:
        row = Row("model", config.label, details={"config": asdict(config)})
        self.rows.append(row)
        self.runners.append(lambda row, config=config: self._run_model(config))

    def _run_model(self, config: ModelConfig) -> dict[str, Any]:
        args = (config, self.device, self.plan.steps, self.plan.warmup)
        if config.compile:
            torch.cuda.empty_cache()  # the child needs the memory this process's allocator keeps
            result = call_isolated(bench_model.measure, args, timeout_s=self.remaining_s())
        else:
            result = bench_model.measure(*args)
        baseline = self._results.get(config.baseline)
        if baseline is not None and config != config.baseline:
            result.baseline_train_clips_per_s = baseline.train_clips_per_s
        self._results[config] = result
        print(bench_model.format_row(result), flush=True)
        return bench_model.as_json(result)

    def _add_fit(self, backbone: str, precision: str) -> None:
        label = f"{backbone} b={self.plan.large_batch} {precision}, {self.workers} workers"
        row = Row("fit", label, details={"backbone": backbone, "precision": precision})
        self.rows.append(row)
        self.runners.append(lambda row, b=backbone, p=precision: self._run_fit(row, b, p))

    def _run_fit(self, row: Row, backbone: str, precision: str) -> dict[str, Any]:
        corpus = self.corpus()
        args = fit_arguments(backbone, precision, corpus, self.scratch, self.plan, self.workers)
        impl = self.fastest_impl(backbone, precision)
        if impl is not None:  # end to end with the implementation the model rows found fastest
            args += [f"--model.backbone.init_args.{IMPL_ARGUMENTS[backbone]}", impl]
            row.label += f", {IMPL_ARGUMENTS[backbone]} {impl}"
        row.details["impl"] = impl
        warmup = max(self.plan.fit_warmup, self.workers)  # each worker's first batch waits for its start-up
        row.details["command"] = ["lt", "bench", "fit", "--precision", precision, "--steps",
                                  str(self.plan.fit_steps), "--warmup", str(warmup), *args]
        result = bench_fit.run(args, steps=self.plan.fit_steps, warmup=warmup, precision=precision)
        print(bench_fit.format_result(result), flush=True)
        return result

    def _add_command_fit(self, backbone: str, precision: str, devices: int, compiled: bool) -> None:
        """A fit row run as its own `lt bench fit` command: on ``devices`` DDP processes (the multi-GPU
        scaling, beside the one-GPU row), or compiled (musicnn with library convs)."""
        workers = self.ddp_workers(devices)
        label = f"{backbone} b={self.plan.large_batch}"
        if devices > 1:
            label += f" per device {precision}, {workers} workers each, × {devices} devices"
        else:
            label += f" {precision}, {workers} workers"
        if compiled:
            label += ", model.compile" + ("" if self.plan.compile_backend == "inductor"
                                          else f" ({self.plan.compile_backend})")
        details = {"backbone": backbone, "precision": precision, "devices": devices, "compile": compiled}
        row = Row("fit", label, details=details)
        self.rows.append(row)
        self.runners.append(lambda row: self._run_command_fit(row, backbone, precision, devices, compiled))

    def _run_command_fit(self, row: Row, backbone: str, precision: str, devices: int, compiled: bool) -> dict[str, Any]:
        # Lightning's DDP reruns the command line in every extra process, and a compiler may crash or
        # hang: such rows run as their own `lt bench fit` command, not inside this long-lived process.
        corpus = self.corpus()
        workers = self.ddp_workers(devices)
        run_name = f"{precision}-ddp{devices}" if devices > 1 else precision
        args = fit_arguments(backbone, run_name + "-compiled" * compiled, corpus, self.scratch, self.plan, workers)
        # Compiled: the fastest of COMPILED_IMPLS (for musicnn on an H100, of conv2d and mel_windows:
        # mel_windows; on an H200 fused_triton trained fastest compiled too, 2026-11-26).
        among = COMPILED_IMPLS.get(backbone, ()) if compiled else None
        impl = self.fastest_impl(backbone, precision, among)
        if impl is None and among:
            impl = among[0]  # no model row measured them: the first (musicnn: library convs)
        if impl is not None:
            args += [f"--model.backbone.init_args.{IMPL_ARGUMENTS[backbone]}", impl]
        if compiled:
            args += ["--model.compile", "true", "--model.compile_mode", self.plan.compile_mode,
                     "--model.compile_backend", self.plan.compile_backend]
        row.details["impl"] = impl
        warmup = max(self.plan.fit_warmup, workers)
        command = ["bench", "fit", "--devices", str(devices), "--precision", precision, "--steps",
                   str(self.plan.fit_steps), "--warmup", str(warmup), "--json", *args]
        row.details["command"] = ["lt", *command]
        if compiled:
            torch.cuda.empty_cache()  # the child needs the memory this process's allocator keeps
        stdout = run_command([sys.executable, "-m", "lightning_tagging.cli", *command], self.remaining_s())
        result = json.loads(stdout[stdout.index("\n{") + 1:])  # the JSON after the report line
        print(bench_fit.format_result(result), flush=True)
        return result

    def ddp_workers(self, devices: int) -> int:
        """DataLoader workers per DDP process: the fit rows' workers shared out among the processes."""
        return max(1, self.workers // devices) if self.workers else 0

    def fastest_impl(self, backbone: str, precision: str, among: tuple[str, ...] | None = None) -> str | None:
        """The implementation (``IMPL_ARGUMENTS``) of the fastest eager model row of ``backbone`` at the fit
        batch and precision, if any; with ``among``, of those implementations only. A row counts if setting
        that one argument reproduces it (not musicnn's baseline, whose input BN is not folded)."""
        model_precision = "bf16-mixed" if precision.startswith("bf16") else "fp32"
        key = IMPL_ARGUMENTS.get(backbone)
        candidates = []
        for config, result in self._results.items():
            impl = json.loads(config.backbone_args).get(key) if key else None
            if (impl is not None and (among is None or impl in among) and config.backbone == backbone
                    and config.batch == self.plan.large_batch and config.precision == model_precision
                    and config.backbone_args == backbone_args(self.plan, backbone, impl) and not is_variant(config)):
                candidates.append((result.train_clips_per_s, impl))
        return max(candidates)[1] if candidates else None

    def corpus(self) -> Path:
        """The fit rows' shards, built by the first fit row that runs (a failed build fails them all)."""
        if self._corpus is None:
            started = time.monotonic()
            print(f"building {self.plan.clips} synthetic clips of {self.plan.clip_seconds:g} s (PCM16) ...",
                  flush=True)
            try:
                self._corpus = build_corpus(self.scratch, self.plan)
            except Exception as error:
                self._corpus = error
            self.header["corpus_build_s"] = time.monotonic() - started
        if isinstance(self._corpus, Exception):
            raise RuntimeError(f"building the corpus failed: {self._corpus}")
        return self._corpus

    # --- running ----------------------------------------------------------------------------

    def remaining_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def run(self) -> None:
        """Every row in order: measured, failed with its message, or skipped once the budget is spent."""
        self.write()
        for index, (row, runner) in enumerate(zip(self.rows, self.runners, strict=True)):
            if index > 0 and self.remaining_s() <= 0:  # the first row always runs: some number is better than none
                row.status, row.error = "skipped", f"time budget of {self.budget_s:g} s spent"
                self.write()
                continue
            print(f"--- {row.kind}: {row.label}", flush=True)
            started = time.monotonic()
            try:
                row.result, row.status = runner(row), "ok"
            except (Exception, SystemExit) as error:  # SystemExit: jsonargparse rejecting arguments
                row.status, row.error = "failed", describe(error)
                print(f"FAILED {row.label}: {row.error}", flush=True)
            row.seconds = time.monotonic() - started
            release_memory(self.device)
            if self.device.type == "cuda":  # what a row left behind would inflate every later row's peak
                row.details["allocated_after_gib"] = torch.cuda.memory_allocated(self.device) / 2**30
                if row.details["allocated_after_gib"] > 0.5:
                    print(f"WARNING: {row.details['allocated_after_gib']:.2f} GiB still allocated after this row",
                          flush=True)
            self.write()
        self.header["finished"] = True
        self.write()

    def write(self) -> None:
        """suite.json and suite.md as they stand (atomically: a reader or a kill never sees half a file)."""
        self.header["elapsed_s"] = time.monotonic() - self.start
        document = {**self.header, "rows": [asdict(row) for row in self.rows]}
        write_json_atomically(self.out / "suite.json", document)
        text = self.markdown()
        temporary = self.out / f"suite.md.{os.getpid()}.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.out / "suite.md")

    def markdown(self) -> str:
        return markdown(self.header, self.rows)


def run_command(argv: list[str], timeout_s: float) -> str:
    """Run ``argv`` in a session of its own; its stdout. A failure or timeout raises with the end of stderr.

    On a timeout the whole process group is killed: a DDP rank whose partner died would
    otherwise wait in a collective for ever, holding its GPU.
    """
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise RuntimeError(f"timed out after {timeout_s:.0f} s (killed)") from None
    if process.returncode != 0:
        raise RuntimeError(f"exit code {process.returncode}: {stderr.strip()[-2000:]}")
    return stdout


MAX_ERROR_CHARS = 4000  # compiler errors run to pages; the log has them whole


def describe(error: BaseException) -> str:
    """An error as one message (a child's message is already complete), at most MAX_ERROR_CHARS long."""
    if isinstance(error, ChildFailed):
        message = str(error)
    elif isinstance(error, SystemExit):
        message = f"exited with code {error.code} (rejected arguments? see the output above)"
    else:
        message = f"{type(error).__name__}: {error}"
    return message[:MAX_ERROR_CHARS]


def release_memory(device: torch.device) -> None:
    """Drop what the last row left (its model, optimizer state, a failed step's tensors)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="where suite.json and suite.md go")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="where the synthetic corpus (~1 GB) and the fit rows' run dirs go (default: --out)")
    parser.add_argument("--quick", action="store_true", help="tiny models and data, one step each (a CPU check)")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help=f"skip the rows still to run after this many seconds (default: {DEFAULT_BUDGET_S:g})")
    parser.add_argument("--clips", type=int, default=None, help="synthetic clips for the fit rows (default: 1024)")
    parser.add_argument("--conv-impls", nargs="+", default=None,
                        help=f"musicnn conv implementations (default: {' '.join(MUSICNN_CONV_IMPLS)})")
    parser.add_argument("--block-impls", nargs="+", default=None,
                        help=f"samplecnn block implementations (default: {' '.join(SAMPLECNN_BLOCK_IMPLS)})")
    parser.add_argument("--ddp-devices", type=int, default=None,
                        help="one more fit row on this many DDP processes (default: every GPU, if several)")
    parser.add_argument("--device", default="auto")


def main(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else Plan()
    if args.clips is not None:
        plan = replace(plan, clips=args.clips)
    if args.conv_impls is not None:
        plan = replace(plan, conv_impls=tuple(args.conv_impls))
    if args.block_impls is not None:
        plan = replace(plan, samplecnn_block_impls=tuple(args.block_impls))
    if args.ddp_devices is not None:
        plan = replace(plan, ddp_devices=args.ddp_devices)
    device = resolve_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    suite = Suite(args.out, plan, args.budget_s, device, quick=args.quick, scratch=args.scratch)
    header = suite.header
    print(f"lt bench suite: {header['device']}, torch {header['torch']} (CUDA {header['cuda']}), "
          f"{header['cpus']} CPUs, {header['date']}; {len(suite.rows)} rows, budget {args.budget_s:g} s, "
          f"results in {args.out}", flush=True)
    suite.run()
    print(suite.markdown(), flush=True)
    return 0
