#!/bin/bash
# MFU ceilings (issue 22): one profiled step per preset/dtype, 1 thread, beside the 1-thread paper-size run
cd "$(dirname "$0")/.."
out=benchmarks/ceiling-2026-12-08.jsonl
: > $out
for spec in "cifar10 fp32" "cifar10 bf16" "small bf16" "tiny fp32"; do
  set -- $spec
  echo "== $1 $2 $(date -u +%H:%M:%S) $(uptime)"
  python -m vitgan bench --preset $1 --batch 32 --dtype $2 --threads 1 --repeats 2 --warmup 1 --profile 12 --json | tail -1 >> $out
  echo "   $(uptime)"
done
python - <<'PY'
import json
for l in open("benchmarks/ceiling-2026-12-08.jsonl"):
    r=json.loads(l); p=r["profile"]
    print(f"{r['preset']:8s} {r['dtype']:5s} step {r['step_ms']:8.1f} ms  {r['step_gflop']:6.1f} GFLOP  peak {r['matmul_peak_tflops']*1e3:6.0f} GFLOP/s  MFU {r['mfu']:.3f}  matmul share {p['matmul_share_of_cpu_time']:.2f}  kernels {p['matmul_kernels_tflops']*1e3:6.0f} GFLOP/s  ceiling {p['mfu_ceiling']:.3f}  load {r['load_before']:.2f}/{r['load_after']:.2f}")
PY
