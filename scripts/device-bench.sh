#!/usr/bin/env bash
# The one command for a GPU machine that produces the README's performance table (`lt bench suite`).
#
# Here first (once): scripts/fetch-device-wheels.sh   # the wheels the GPU image lacks, into .whl/ (~3 MiB)
# Then the device tool: command "bash scripts/device-bench.sh", carry [".whl"], timeout_s 600
# (further arguments go to `lt bench suite`, e.g. --conv-impls conv2d mel_windows).
# Back under $OUT/suite/: gpu-tests.txt (the numerical tests of our kernels, run on the GPU first),
# frontend.txt (musicnn's front-end alone, `lt bench frontend`: mel_windows against fused_triton with each
# candidate Triton tile choice, both precisions), suite.md (the Markdown tables), suite.json (every figure),
# log.txt (all output), profile.txt (where each batch-256 training step's GPU time goes, operator by
# operator: `lt bench model --profile`).
#
# The tests get at most 75 + 150 + 75 + 40 + 120 s, usually less; the front-end sweep SWEEP_S seconds
# (default 90; 0 skips it). The suite then stops starting rows after BUDGET_S seconds: by default what is
# left of TOTAL_S (590 s, inside the tool's 10-minute limit) after those, less 90 s for the row in flight
# and 60 s for the profile, and never under 30 s. It rewrites suite.json / suite.md after every row, so
# even a killed run returns what it measured. The synthetic corpus (~1 GB) goes to /tmp, not $OUT, since
# only a few small files come back.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder whose files come back}"
TOTAL_S=${TOTAL_S:-590}
SWEEP_S=${SWEEP_S:-90}

nvidia-smi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl/*.whl failed: run scripts/fetch-device-wheels.sh here and carry .whl" >&2; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT/suite"
# Same function on the GPU too: fused and mel-window convs, sampleCNN's pool-first blocks and NHWC layers
# against the plain modules (tests/conftest.py adds the "cuda" device when there is one; the "cpu" variants ran in CI).
# Then the Triton kernels and CUDA's sync debug mode, and the fused branch with compiled (Triton)
# epilogues, apart because compiling takes a while. A failure here is reported, and the benchmarks still run.
timeout --kill-after=5 75 python3 -m pytest -q -p no:cacheprovider -k "not cpu and not compiled" \
    tests/test_fused_branch.py tests/test_single_channel_conv.py tests/test_pool_first_bn.py tests/test_samplecnn_nhwc.py 2>&1 \
    | tee "$OUT/suite/gpu-tests.txt"
# The Triton kernels of conv_impl "fused_triton" (first compiled on a GPU here; on CPUs they ran in Triton's
# interpreter), with every candidate tile choice, and a CUDA training step under sync debug mode with each
# fused implementation.
timeout --kill-after=5 150 python3 -m pytest -q -p no:cacheprovider \
    -k "not cpu and not compile_for and not compiles_for and not compiled_musicnn" \
    tests/test_triton_branch.py tests/test_triton_tiles.py tests/test_no_host_sync.py 2>&1 \
    | tee -a "$OUT/suite/gpu-tests.txt"
timeout --kill-after=5 75 python3 -m pytest -q -p no:cacheprovider -k "cuda and compiled and not float64_same" \
    tests/test_fused_branch.py 2>&1 | tee -a "$OUT/suite/gpu-tests.txt"
# `lt bench estimate`'s fake-tensor peak memory against CUDA's measured peak (musicnn b64, conv2d and fused).
timeout --kill-after=5 40 python3 -m pytest -q -s -p no:cacheprovider \
    tests/test_bench_estimate.py::test_the_estimate_matches_cudas_peak_allocation_less_convolution_workspaces 2>&1 | tee -a "$OUT/suite/gpu-tests.txt"
# model.compile on the GPU: the compiled training forward against the eager one, fp32 and bf16 (finite
# gradients); and a whole musicnn with fused_triton, compiled by inductor, against eager.
timeout --kill-after=5 120 python3 -m pytest -q -p no:cacheprovider -k "cuda" tests/test_compiling.py \
    "tests/test_triton_branch.py::test_a_compiled_musicnn_with_fused_triton_trains_like_the_eager_one" 2>&1 \
    | tee -a "$OUT/suite/gpu-tests.txt"
# musicnn's front-end alone: which Triton tile choice is fastest, and how fused_triton compares with mel_windows.
if [ "$SWEEP_S" -gt 0 ]; then
    timeout --kill-after=5 $((SWEEP_S + 30)) python3 -m lightning_tagging.cli bench frontend \
        --precision bf16-mixed fp32 --conv-impls mel_windows fused_triton --tiles candidates \
        --warmup 1 --repeats 3 --budget-s "$SWEEP_S" --json 2>&1 | tee "$OUT/suite/frontend.txt"
fi
BUDGET_S=${BUDGET_S:-$((TOTAL_S - SECONDS - 90 - 60))}
if [ "$BUDGET_S" -lt 30 ]; then BUDGET_S=30; fi
echo "tests took ${SECONDS} s; the suite gets a budget of ${BUDGET_S} s" | tee -a "$OUT/suite/gpu-tests.txt"
# A hard stop well inside the tool's limit, so tee and the files written so far are kept.
timeout --signal=TERM --kill-after=10 $((BUDGET_S + 80)) \
    python3 -m lightning_tagging.cli bench suite --out "$OUT/suite" --scratch /tmp/lt-bench-suite --budget-s "$BUDGET_S" "$@" \
    2>&1 | tee "$OUT/suite/log.txt"
# Where the time goes: musicnn (default settings, and the plain baseline) and sampleCNN, both precisions.
timeout --kill-after=5 60 python3 -m lightning_tagging.cli bench model --backbone musicnn samplecnn --batch 256 \
    --precision fp32 bf16-mixed --steps 3 --warmup 2 --profile 12 2>&1 | tee "$OUT/suite/profile.txt"
