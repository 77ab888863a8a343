#!/usr/bin/env bash
# The GPU budget of the HMR and CLIFF baselines, end to end on one machine (one GPU, ~16 cores):
#   1. synthesize the 8,000-scene training split, the validation split and synth-v1;
#   2. pre-train the ResNet-50 backbone on the keypoint pretext (configs/keypoints-r50-128-gpu.yaml);
#   3. train HMR and CLIFF from it, side by side, with the same budget
#      (configs/{hmr,cliff}-r50-128-gpu.yaml);
#   4. evaluate both and the mean-pose floor on synth-v1 (runs/eval/*-r50-128-gpu).
# Usage (from the repository root):  bash scripts/baselines_gpu.sh
# Environment: PY (python with hmrkit importable; default python3), SYNTH_WORKERS (16),
# LOG_DIR (training logs; runs), MAX_TIME_PRETEXT / MAX_TIME_BASELINE (optional Lightning max_time guards, DD:HH:MM:SS),
# and for a quick smoke run on CPU: SCENES, STEPS, LOADER_WORKERS, EVAL_DATA, EVAL_LIMIT, DEVICE.
set -euo pipefail
PY=${PY:-python3}
hmrkit() { "$PY" -m hmrkit.cli "$@"; }
SCENES=${SCENES:-8000}
SYNTH_WORKERS=${SYNTH_WORKERS:-16}
EVAL_DATA=${EVAL_DATA:-data/synth/synth-v1}
DEVICE=${DEVICE:-cuda}
LOG_DIR=${LOG_DIR:-runs}; mkdir -p "$LOG_DIR"
stamp() { echo "[$(date +%T)] $*"; }

overrides=()
[ -n "${STEPS:-}" ] && overrides+=(--trainer.max_steps "$STEPS" --trainer.val_check_interval "$STEPS")
[ -n "${LOADER_WORKERS:-}" ] && overrides+=(--data.num_workers "$LOADER_WORKERS")

stamp "synthesize"
complete() { grep -qs '"complete": true' "$1/manifest.json"; }
synth() { complete "$1" || OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 hmrkit synth --out "$@"; }
synth data/synth/train --n "$SCENES" --split train --seed 0 --workers "$SYNTH_WORKERS" \
    --shard-size 1000 --poses v1 >/dev/null &
synth data/synth/val --n 150 --split val --seed 0 --workers 2 --poses v1 >/dev/null &
synth "$EVAL_DATA" --benchmark synth-v1 --workers 4 >/dev/null &
wait
for d in data/synth/train data/synth/val "$EVAL_DATA"; do
    complete "$d" || { echo "synthesis of $d failed"; exit 1; }
done

stamp "pretext"
hmrkit train --config configs/keypoints-r50-128-gpu.yaml "${overrides[@]}" \
    ${MAX_TIME_PRETEXT:+--trainer.max_time "$MAX_TIME_PRETEXT"} >"$LOG_DIR/pretext.log" 2>&1 \
    || { tail -40 "$LOG_DIR/pretext.log"; exit 1; }

stamp "baselines"
for m in hmr cliff; do
    hmrkit train --config "configs/$m-r50-128-gpu.yaml" "${overrides[@]}" \
        ${MAX_TIME_BASELINE:+--trainer.max_time "$MAX_TIME_BASELINE"} >"$LOG_DIR/$m.log" 2>&1 &
done
wait -n && wait -n || { tail -40 "$LOG_DIR/hmr.log" "$LOG_DIR/cliff.log"; exit 1; }

stamp "evaluate"
limit=(); [ -n "${EVAL_LIMIT:-}" ] && limit=(--limit "$EVAL_LIMIT")
for m in hmr cliff; do
    hmrkit evaluate --checkpoint "runs/$m-r50-128-gpu/version_0/checkpoints/last.ckpt" \
        --data "$EVAL_DATA" --out "runs/eval/$m-r50-128-gpu" --device "$DEVICE" --workers 4 \
        "${limit[@]}" >/dev/null &
done
hmrkit evaluate --method mean-pose --data "$EVAL_DATA" --out runs/eval/mean-pose-gpu-data \
    --workers 2 "${limit[@]}" >/dev/null &
wait
stamp "done"
for m in mean-pose-gpu-data hmr-r50-128-gpu cliff-r50-128-gpu; do
    echo "## $m"; cat "runs/eval/$m/metrics.md"
done
