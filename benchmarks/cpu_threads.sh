#!/usr/bin/env bash
# Idle CPU benchmark of issue 22: the step idle and beside one busy process under three thread
# settings, the cifar10 step's MFU in both dtypes, and `vitgan eval -n 1000` in fp32 and bf16.
# Run it with nothing else on the machine; one JSON object per line goes to $OUT (default
# benchmarks/cpu-threads-<date>.jsonl), the eval timings as benchmarks/eval_policy.sh's lines.
#   bash benchmarks/cpu_threads.sh CHECKPOINT_FOR_EVAL [OUT]
set -euo pipefail
CKPT=${1:?a generator checkpoint for the eval timing}
OUT=${2:-benchmarks/cpu-threads-$(date -u +%Y-%m-%d).jsonl}
DATA=${VITGAN_DATA:-../shared/data/cifar10-yk-jpeg.tar.gz}

# setting A: what `vitgan` does (PASSIVE + spin 3000, the thread count follows the free cores)
vitgan_default() { python -m vitgan bench --json --contention "$@"; }
# setting B: libgomp's own wait policy (torch loaded before vitgan can set it), threads adapting
libgomp() { python -c "import torch, sys; from vitgan.bench import main; sys.exit(main(sys.argv[1:]))" \
    --json --contention "$@"; }

note() { python -c "import json, sys; print(json.dumps({'setting': sys.argv[1]}))" "$1" >> "$OUT"; }
: > "$OUT"
for args in "--preset tiny --batch 32 --repeats 10 --warmup 3" \
            "--preset small --batch 32 --dtype bf16 --repeats 5 --warmup 2" \
            "--preset cifar10 --batch 32 --repeats 3 --warmup 1"; do
    note "A: vitgan default (PASSIVE, spin 3000), adapt_threads"; vitgan_default $args >> "$OUT"
    note "B: libgomp default, adapt_threads"; libgomp $args >> "$OUT"
    case $args in *cifar10*) continue ;; esac  # C beside a busy process: minutes per cifar10 step
    note "C: libgomp default, adapt_threads=false"; libgomp $args --set adapt_threads=false >> "$OUT"
done
note "A: 1 thread"; vitgan_default --preset tiny --batch 32 --repeats 10 --warmup 3 --threads 1 >> "$OUT"
note "A: cifar10 bf16"; vitgan_default --preset cifar10 --batch 32 --dtype bf16 --repeats 3 --warmup 1 >> "$OUT"

for precision in fp32 bf16; do  # `vitgan eval -n 1000` as `vitgan eval` runs it (setting A)
    PRECISION=$precision SETTINGS=A bash benchmarks/eval_policy.sh "$CKPT" "$OUT"
done
echo "wrote $OUT"
