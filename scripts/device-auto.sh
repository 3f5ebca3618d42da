#!/usr/bin/env bash
# What musicnn's `conv_impl="auto"` should pick on this GPU, in one call of at most TOTAL_S seconds
# (default 560, inside the device tool's 10 minutes; every step has its own time limit, and the fits
# get what is left): the measurements behind its batch thresholds, rerun with the kernels' current
# tiles (LT_TRITON_TILES, or triton_kernels.DEFAULT_TILES). Not yet run on a GPU (written 2026-11-27).
#
# Here first (once): scripts/fetch-device-wheels.sh   # the wheels the GPU image lacks, into .whl/ (~3 MiB)
# Then the device tool: command "bash scripts/device-auto.sh", carry [".whl"], timeout_s 420.
# Back under $OUT/auto/:
# - batches.txt: the whole musicnn (`lt bench model`) at each batch of BATCHES, fp32 and bf16-mixed, with
#   mel_windows and fused_triton, training and inference clips/s beside the plain fp32 baseline of the same
#   batch. Training decides musicnn.auto_branch_impl's thresholds, inference single_channel_conv.auto_impl's;
# - graphs.txt: end to end at batch 256 in bf16 (`lt bench fit`) with model.compile, default mode and
#   CUDA graphs (reduce-overhead), on the synthetic PCM16 corpus `lt bench suite` builds.
# On a CPU, a check of the script itself: DEVICE=cpu BATCHES=2 WIDTH=0.1 IMPLS=mel_windows FIT=0.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder whose files come back}"
BATCHES=${BATCHES:-16 32 64 128 256}
IMPLS=${IMPLS:-mel_windows fused_triton}
WIDTH=${WIDTH:-1.0}
DEVICE=${DEVICE:-cuda}
FIT=${FIT:-1}
TOTAL_S=${TOTAL_S:-560}

if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || { echo "installing .whl/*.whl failed: run scripts/fetch-device-wheels.sh here and carry .whl" >&2
                        exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
LT=("$PYTHON" -m lightning_tagging.cli)
mkdir -p "$OUT/auto"

variants=()
for impl in $IMPLS; do variants+=("{\"conv_impl\": \"$impl\", \"width\": $WIDTH}"); done
# One command per batch, so that a batch which runs out of time or memory costs only its own rows.
for batch in $BATCHES; do
    timeout --kill-after=5 80 "${LT[@]}" bench model --backbone musicnn --batch "$batch" \
        --precision fp32 bf16-mixed --backbone-args "${variants[@]}" --steps 5 --warmup 2 --device "$DEVICE" \
        2>&1 | grep -v "^\s*$" | tee -a "$OUT/auto/batches.txt"
done
echo "after ${SECONDS} s: batches done" | tee -a "$OUT/auto/batches.txt"
[ "$FIT" = 1 ] || exit 0

# The corpus as `lt bench suite` builds it (1,024 clips of 29 s, PCM16), then its fit row's arguments.
timeout --kill-after=5 60 "$PYTHON" -c "
from pathlib import Path
from lightning_tagging.bench.suite import Plan, build_corpus
build_corpus(Path('/tmp/lt-auto'), Plan())" 2>&1 | tail -3 | tee "$OUT/auto/graphs.txt"
for mode in default reduce-overhead; do
    LEFT_S=$((TOTAL_S - SECONDS - 10))
    if [ "$LEFT_S" -lt 60 ]; then echo "compile mode $mode: skipped, ${LEFT_S} s left" | tee -a "$OUT/auto/graphs.txt"; continue; fi
    timeout --kill-after=5 $((LEFT_S < 150 ? LEFT_S : 150)) "${LT[@]}" bench fit --precision bf16-mixed --steps 20 --warmup 16 \
        --seed_everything 0 --model.compile true --model.compile_mode "$mode" \
        --model.frontend lightning_tagging.frontends.LogMel --model.backbone lightning_tagging.models.Musicnn \
        --data.root /tmp/lt-auto/corpus --data.batch_size 256 --data.num_workers 15 --data.patches_per_clip 16 \
        --trainer.default_root_dir "/tmp/lt-auto/fit-$mode" 2>&1 | grep "lt bench fit\|rror" \
        | tee -a "$OUT/auto/graphs.txt"
done
echo "after ${SECONDS} s: done" | tee -a "$OUT/auto/graphs.txt"
