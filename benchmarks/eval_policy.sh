#!/usr/bin/env bash
# `vitgan eval -n 1000` (Inception in $PRECISION, default bf16; cold caches: 1000 reals and 1000
# fakes) under the two OpenMP settings (issue 22): A = what `vitgan eval` sets (PASSIVE, spin
# 3000), B = libgomp's own policy (torch loaded before vitgan can set it); SETTINGS=A or B for one.
# Both adapt the thread count between batches (vitgan.cores.sharing_cores). With BUSY=1 each also
# runs beside one busy process (a CPU-bound loop). Run it with nothing else on the machine; one
# JSON object per line to $OUT (benchmarks/cpu_threads.sh calls it for its eval rows).
#   bash benchmarks/eval_policy.sh CHECKPOINT [OUT]
set -euo pipefail
CKPT=${1:?a generator checkpoint}
OUT=${2:-benchmarks/eval-policy-$(date -u +%Y-%m-%d).jsonl}
DATA=${VITGAN_DATA:-../shared/data/cifar10-yk-jpeg.tar.gz}
PRECISION=${PRECISION:-bf16}
SETTINGS=${SETTINGS:-AB}

run() {  # setting, busy (0/1), command...
    local setting=$1 busy=$2; shift 2
    local cache; cache=$(mktemp -d)
    local hog=""
    if [ "$busy" = 1 ]; then python -c "while True: pass" & hog=$!; sleep 2; fi
    local start end; start=$(date +%s.%N)
    "$@" eval "$CKPT" -n 1000 --metrics fid --precision "$PRECISION" --real "$DATA" --cache-dir "$cache" --json > "$cache/out.json"
    end=$(date +%s.%N)
    [ -n "$hog" ] && kill "$hog"
    python -c "import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps({'setting': sys.argv[2], 'precision': sys.argv[6], 'busy': sys.argv[3] == '1', \
'seconds': round(float(sys.argv[5]) - float(sys.argv[4]), 1), 'fid': r.get('fid'), 'load': open('/proc/loadavg').read().split()[0], \
'cpu': [l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')][0]}))" \
        "$cache/out.json" "$setting" "$busy" "$start" "$end" "$PRECISION" | tee -a "$OUT"
    rm -rf "$cache"
}
A=(python -m vitgan)
B=(python -c "import torch, sys; from vitgan.cli import main; sys.argv[0] = 'vitgan'; sys.exit(main())")
for busy in 0 $([ "${BUSY:-0}" = 1 ] && echo 1); do
    case $SETTINGS in *A*) run "A: PASSIVE, spin 3000" "$busy" "${A[@]}" ;; esac
    case $SETTINGS in *B*) run "B: libgomp default" "$busy" "${B[@]}" ;; esac
done
echo "wrote $OUT"
