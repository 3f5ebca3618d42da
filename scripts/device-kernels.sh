#!/usr/bin/env bash
# musicnn's Triton kernels on a GPU in one short call (about 7 minutes on an H200; every step has a time limit,
# the whole at most 9): device-bench.sh's smaller sibling, for when only the kernels or their
# choices (triton_kernels.Tiles) changed.
#
# Here first (once): scripts/fetch-device-wheels.sh   # the wheels the GPU image lacks, into .whl/ (~3 MiB)
# Then the device tool: command "bash scripts/device-kernels.sh", carry [".whl"], timeout_s 600.
# TESTS=0 skips the tests (a rerun on the same code); SWEEP_S bounds the sweep (default 150 s).
# Back under $OUT/kernels/ (five files; gpu-tests.txt and compiled.txt only with the tests):
# - gpu-tests.txt: the kernels' tests, compiled: every candidate tile choice against the default, the
#   saved conv output against the recompute, the fused branch against the plain modules;
# - frontend.txt: musicnn's front-end alone (`lt bench frontend`), bf16 then fp32: the library-conv
#   baseline, mel_windows, and fused_triton with each candidate tile choice (bench/frontend.py);
# - model.txt: the whole musicnn at batch 256 (`lt bench model`, baseline included), fused_triton with
#   the sweep's fastest bf16 choice, both precisions;
# - fit.txt: end to end from synthetic PCM16 shards (`lt bench fit`, 15 workers), that choice: bf16,
#   bf16 with model.compile, fp32;
# - compiled.txt: with the time left, the compiled-model tests (inductor).
# A slow or failing step leaves the others their time.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder whose files come back}"
TOTAL_S=${TOTAL_S:-570}
SWEEP_S=${SWEEP_S:-150}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl/*.whl failed: run scripts/fetch-device-wheels.sh here and carry .whl" >&2; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT/kernels"
LT=(python3 -m lightning_tagging.cli)
TESTS=${TESTS:-1}  # 0: skip the tests (a rerun)

if [ "$TESTS" = 1 ]; then timeout --kill-after=5 130 python3 -m pytest -q -p no:cacheprovider \
    -k "not cpu and not compile_for and not compiles_for and not compiled_musicnn and not environment" \
    tests/test_triton_tiles.py tests/test_triton_branch.py 2>&1 | tail -40 | tee "$OUT/kernels/gpu-tests.txt"; fi

timeout --kill-after=5 $((SWEEP_S + 40)) "${LT[@]}" bench frontend --precision bf16-mixed fp32 \
    --conv-impls mel_windows fused_triton --tiles candidates --warmup 1 --repeats 3 --budget-s "$SWEEP_S" \
    --fastest-tiles-to /tmp/fastest-tiles 2>&1 | tee "$OUT/kernels/frontend.txt"
LT_TRITON_TILES=$(cat /tmp/fastest-tiles 2>/dev/null || true)
export LT_TRITON_TILES
echo "after ${SECONDS} s: fused_triton tiles ${LT_TRITON_TILES:-the default}" | tee -a "$OUT/kernels/frontend.txt"

timeout --kill-after=5 70 "${LT[@]}" bench model --backbone musicnn --batch 256 --precision bf16-mixed fp32 \
    --backbone-args '{"conv_impl": "fused_triton"}' --steps 5 --warmup 2 2>&1 | tee "$OUT/kernels/model.txt"

# The corpus as `lt bench suite` builds it (1,024 clips of 29 s, PCM16), then its fit row's arguments.
timeout --kill-after=5 60 python3 -c "
from pathlib import Path
from lightning_tagging.bench.suite import Plan, build_corpus
build_corpus(Path('/tmp/lt-kernels'), Plan())" 2>&1 | tail -3 | tee "$OUT/kernels/fit.txt"
# bf16, bf16 with model.compile (the front-end's kernels run between the compiled graphs), fp32.
for row in "bf16-mixed false" "bf16-mixed true" "32-true false"; do
    read -r precision compiled <<< "$row"
    timeout --kill-after=5 120 "${LT[@]}" bench fit --precision "$precision" --steps 20 --warmup 16 \
        --seed_everything 0 --model.compile "$compiled" --model.frontend lightning_tagging.frontends.LogMel \
        --model.backbone lightning_tagging.models.Musicnn --model.backbone.init_args.conv_impl fused_triton \
        --data.root /tmp/lt-kernels/corpus --data.batch_size 256 --data.num_workers 15 --data.patches_per_clip 16 \
        --trainer.default_root_dir "/tmp/lt-kernels/fit-$precision-$compiled" 2>&1 | grep "lt bench fit\|rror" \
        | tee -a "$OUT/kernels/fit.txt"
done

LEFT_S=$((TOTAL_S - SECONDS - 5))
echo "after ${SECONDS} s: ${LEFT_S} s left for the compiled-model tests" | tee "$OUT/kernels/compiled.txt"
if [ "$TESTS" = 1 ] && [ "$LEFT_S" -gt 30 ]; then
    timeout --kill-after=5 "$LEFT_S" python3 -m pytest -q -p no:cacheprovider -k "cuda" \
        "tests/test_triton_branch.py::test_a_compiled_musicnn_with_fused_triton_trains_like_the_eager_one" 2>&1 \
        | tail -30 | tee -a "$OUT/kernels/compiled.txt"
fi
