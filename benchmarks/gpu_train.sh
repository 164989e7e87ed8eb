#!/usr/bin/env bash
# The paper-size training run on one lent GPU (issue 10, item 6), within ~10 minutes of device time:
#
#   cp ../shared/data/cifar10-yk-jpeg.tar.gz .gpu_data/      # here, once (19 MB; .gpu_data is ignored)
#   run(command="OUT=$OUT bash benchmarks/gpu_train.sh", carry=[".gpu_data"], timeout_s=600)
#
# 1. trains the `cifar10` preset at the paper's batch 128 (bf16, every default: lr 0.002, bCR 1,
#    equalised lr) on the CIFAR-10 archive for TRAIN_S seconds (SIGINT at the end: the trainer saves
#    a checkpoint and stops cleanly), with the per-tick diagnostics (r_t, logits, D's input
#    gradient, spectral norms, attention entropy, update ratios) and the loss peaks per tick;
# 2. writes 10,000 samples of the EMA generator (seed 0) as $OUT/fakes10k.npz (uint8 NHWC, 30 MB):
#    the device machine has no Inception network (87 MB, over what a run may carry), so FID-10k is
#    computed back on the CPU machine, against the archive's train split:
#      vitgan eval FILES_AT/fakes10k.npz --real ../shared/data/cifar10-yk-jpeg.tar.gz -n 10000 --metrics fid,kid
# 3. copies stats.jsonl, log.txt, curves.png, the sample grids and training_options.json to $OUT.
# DEVICE=cpu PRESET=tiny BATCH=32 TRAIN_S=30 bash benchmarks/gpu_train.sh: a dry run on a CPU machine.
# Uses the checkout as is (PYTHONPATH=$PWD): no pip install, no network. Exit status: that of training.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
DATA="${DATA:-.gpu_data/cifar10-yk-jpeg.tar.gz}"
TRAIN_S="${TRAIN_S:-420}"          # seconds of training (the rest of 10 minutes: start-up, sampling)
PRESET="${PRESET:-cifar10}"
BATCH="${BATCH:-128}"
RUN="${TMPDIR:-/tmp}/vitgan-gpu-train"
PY="${PY:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"; rm -rf "$RUN"
START=$(date +%s)
log() { echo "[gpu_train +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/gpu_train.txt"; }

log "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'); $(uptime)"
"$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())' | tee -a "$OUT/gpu_train.txt"
[ -f "$DATA" ] || { log "no data at $DATA (copy ../shared/data/cifar10-yk-jpeg.tar.gz to .gpu_data/ and carry it)"; exit 2; }

log "train --preset $PRESET --batch $BATCH for ${TRAIN_S}s"
timeout -s INT -k 60 "$TRAIN_S" "$PY" -m vitgan train --preset "$PRESET" --data "$DATA" --out "$RUN" \
  --batch "$BATCH" --kimg 100000 --set precision=bf16 --set tick_kimg=8 --set image_kimg=100 \
  --set ckpt_kimg=100 --set snap_kimg=100000 --set metrics_kimg=0 --set device="${DEVICE:-cuda}" \
  > "$OUT/train.log" 2>&1
RC=$?
log "training exit $RC (124/130: stopped by the time limit, as planned)"
grep "^tick" "$OUT/train.log" | cut -c1-200 | awk 'NR % 5 == 1' | tail -n 20
for f in stats.jsonl log.txt curves.png training_options.json reals.png; do cp "$RUN/$f" "$OUT/" 2>/dev/null; done
cp "$RUN"/fakes*.png "$OUT/" 2>/dev/null

log "10,000 EMA samples -> $OUT/fakes10k.npz"
"$PY" - "$RUN" "$OUT/fakes10k.npz" "${DEVICE:-cuda}" <<'EOF'
import sys, numpy as np, torch
from vitgan.runs.source import open_run
dev = sys.argv[3]
src = open_run(sys.argv[1], device=dev, discriminator=False)
G, cfg = src.G, src.cfg
out = []
with torch.no_grad():
    for i in range(0, 10000, 500):
        z = torch.randn(500, cfg.z_dim, generator=torch.Generator().manual_seed(i)).to(dev)
        x = G(z).float().clamp(-1, 1)
        out.append(((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
np.savez(sys.argv[2], x=np.concatenate(out))
print("saved", sum(len(o) for o in out), "samples")
EOF
log "done"
case "$RC" in 0|124|130) exit 0 ;; *) exit "$RC" ;; esac
