#!/usr/bin/env bash
# The one command for a GPU machine that produces the performance tables (`lt bench suite`; docs/performance.md).
#
# Here first (once): scripts/fetch-device-wheels.sh   # the wheels the GPU image lacks, into .whl/ (~3 MiB)
# Then the device tool: command "bash scripts/device-bench.sh", carry [".whl"], timeout_s 600
# (further arguments go to `lt bench suite`, e.g. --conv-impls conv2d mel_windows; with none,
# --conv-impls mel_windows fused_triton).
# Back under $OUT/suite/ (seven files):
# - gpu-tests.txt: the numerical tests of our kernels, run on the GPU first;
# - frontend.txt: musicnn's front-end alone (`lt bench frontend`), mel_windows against fused_triton with
#   each candidate Triton tile choice, both precisions; then the timbral and temporal branches apart;
# - suite.md, suite.json, log.txt: the suite's Markdown tables, every figure, all output;
# - profile.txt: where each batch-256 training step's GPU time goes (`lt bench model --profile`);
# - batches.txt: musicnn at batch 32 and 64, where conv_impl "auto" switches.
#
# The tests get at most 60 + 120 s, usually less; the front-end sweep SWEEP_S seconds (default 100;
# 0 skips it) and 50 s for the branches apart, and its fastest bf16 tile choice becomes
# LT_TRITON_TILES for the rest. The suite then stops starting rows after BUDGET_S seconds: by default
# what is left of TOTAL_S (590 s, inside the tool's 10-minute limit) after those, less 90 s for the
# row in flight, 50 s for the profile and 60 s for the batch sweep, and never under 30 s. It measures
# musicnn's mel_windows (the default on CUDA below batch 32) and fused_triton unless arguments say
# otherwise (the other conv implementations were slower on an H100, 2026-11). What is left at the
# end goes to the compiled-model tests. The suite rewrites suite.json / suite.md after every row, so
# even a killed run returns what it measured. The synthetic corpus (~1 GB) goes to /tmp, not $OUT,
# since only a few small files come back.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder whose files come back}"
TOTAL_S=${TOTAL_S:-590}
SWEEP_S=${SWEEP_S:-100}

nvidia-smi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl/*.whl failed: run scripts/fetch-device-wheels.sh here and carry .whl" >&2; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT/suite"
# Same function on the GPU too: fused and mel-window convs, sampleCNN's pool-first blocks and NHWC layers
# against the plain modules (tests/conftest.py adds the "cuda" device when there is one; the "cpu" variants ran in CI).
# Then the Triton kernels of conv_impl "fused_triton" (first compiled on a GPU here; on CPUs they ran in
# Triton's interpreter), with every candidate tile choice, and a CUDA training step under sync debug mode
# with each fused implementation. A failure here is reported, and the benchmarks still run.
timeout --kill-after=5 60 python3 -m pytest -q -p no:cacheprovider -k "not cpu and not compiled" \
    tests/test_fused_branch.py tests/test_single_channel_conv.py tests/test_pool_first_bn.py tests/test_samplecnn_nhwc.py 2>&1 \
    | tee "$OUT/suite/gpu-tests.txt"
timeout --kill-after=5 120 python3 -m pytest -q -p no:cacheprovider \
    -k "not cpu and not compile_for and not compiles_for and not compiled_musicnn and not environment" \
    tests/test_triton_branch.py tests/test_triton_tiles.py tests/test_no_host_sync.py 2>&1 \
    | tee -a "$OUT/suite/gpu-tests.txt"
# musicnn's front-end alone: which Triton tile choice is fastest, and how fused_triton compares with mel_windows.
if [ "$SWEEP_S" -gt 0 ]; then
    timeout --kill-after=5 $((SWEEP_S + 30)) python3 -m lightning_tagging.cli bench frontend \
        --precision bf16-mixed fp32 --conv-impls mel_windows fused_triton --tiles candidates \
        --warmup 1 --repeats 3 --budget-s "$SWEEP_S" --json --fastest-tiles-to /tmp/fastest-tiles 2>&1 \
        | tee "$OUT/suite/frontend.txt"
    LT_TRITON_TILES=$(cat /tmp/fastest-tiles 2>/dev/null || true)
    export LT_TRITON_TILES
    # The timbral branches (the packed ones) apart from the temporal ones, default against fastest tiles.
    for branches in "timbral_f74 timbral_f77" "temporal_s1 temporal_s2 temporal_s3"; do
        timeout --kill-after=5 25 python3 -m lightning_tagging.cli bench frontend --precision bf16-mixed \
            --conv-impls fused_triton --tiles default ${LT_TRITON_TILES:-} --branches $branches \
            --warmup 1 --repeats 3 2>&1 | tee -a "$OUT/suite/frontend.txt"
    done
fi
BUDGET_S=${BUDGET_S:-$((TOTAL_S - SECONDS - 90 - 50 - 60))}
if [ "$BUDGET_S" -lt 30 ]; then BUDGET_S=30; fi
echo "tests and sweep took ${SECONDS} s; the suite gets a budget of ${BUDGET_S} s;" \
    "fused_triton tiles: ${LT_TRITON_TILES:-the default}" | tee -a "$OUT/suite/gpu-tests.txt"
if [ $# -eq 0 ]; then set -- --conv-impls mel_windows fused_triton; fi
# A hard stop well inside the tool's limit, so tee and the files written so far are kept.
timeout --signal=TERM --kill-after=10 $((BUDGET_S + 80)) \
    python3 -m lightning_tagging.cli bench suite --out "$OUT/suite" --scratch /tmp/lt-bench-suite --budget-s "$BUDGET_S" "$@" \
    2>&1 | tee "$OUT/suite/log.txt"
# Where the time goes in the new implementations (and their plain fp32 baselines), bf16-mixed.
timeout --kill-after=5 50 python3 -m lightning_tagging.cli bench model --backbone musicnn samplecnn --batch 256 \
    --precision bf16-mixed --backbone-args '{"conv_impl": "fused_triton"}' '{"block_impl": "nhwc"}' \
    --steps 3 --warmup 2 --profile 12 2>&1 | tee "$OUT/suite/profile.txt"
# Where musicnn's conv_impl "auto" should switch to fused_triton (musicnn.FUSED_TRITON_MIN_BATCH):
# the batches between the suite's 16 and 256, with the tiles above.
timeout --kill-after=5 60 python3 -m lightning_tagging.cli bench model --backbone musicnn --batch 32 64 \
    --precision fp32 bf16-mixed --backbone-args '{"conv_impl": "mel_windows"}' '{"conv_impl": "fused_triton"}' \
    --steps 5 --warmup 2 2>&1 | tee "$OUT/suite/batches.txt"
# model.compile on the GPU, with what time is left: the compiled training forward against the eager
# one, fp32 and bf16 (finite gradients); a whole musicnn with fused_triton, compiled by inductor, against eager.
LEFT_S=$((TOTAL_S - SECONDS - 5))
if [ "$LEFT_S" -gt 20 ]; then
    timeout --kill-after=5 "$LEFT_S" python3 -m pytest -q -p no:cacheprovider -k "cuda" tests/test_compiling.py \
        "tests/test_triton_branch.py::test_a_compiled_musicnn_with_fused_triton_trains_like_the_eager_one" 2>&1 \
        | tee -a "$OUT/suite/gpu-tests.txt"
fi
