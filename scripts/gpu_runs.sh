#!/usr/bin/env bash
# Training runs on one CUDA GPU, evaluated there when their test set came along.
#
#   scripts/gpu_runs.sh OUT NAME=DATA[,TRAIN_ARG...] ...
#   scripts/gpu_runs.sh out mt=data/mt,--no-kd bottle=data/bottle bottle-s1=data/bottle,--seed,1
#
# Each NAME trains `fractalad-edge train --data DATA --out runs/gpu-NAME --device $DEVICE` with
# the published schedule unless TRAIN_ARGs say otherwise. Where DATA has test/ and
# ground_truth/, the run is evaluated on the GPU (`eval --device $DEVICE`). Under OUT:
#   gpu-NAME.tar.part-*  the run (weights, metadata, config, train log) in parts of at most
#                        15 MiB, for the runs named in PACK (default: all):
#                        `cat gpu-NAME.tar.part-* | tar -x`
#   logs.tar.gz          summary.txt, every training log, eval reports, and a torch CUDA
#                        bench of the run named in BENCH (if any)
# Environment: PYTHON (python3), DEVICE (cuda), WORKERS (DataLoader workers: all cores but
# two), TRAIN_TIMEOUT (s per run, 300), PACK, BENCH, BENCH_TIMEOUT (150).
set -uo pipefail
OUT=$1
shift
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))}
mkdir -p "$OUT/logs" runs
SUMMARY="$OUT/logs/summary.txt"
cli() { "$PY" -m fractalad_edge.cli "$@"; }

{
  date -u
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, numpy, cv2, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, 'opencv', cv2.__version__); print('cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
  echo "cores $(nproc), workers $WORKERS, device $DEVICE"
} > "$SUMMARY" 2>&1

packed() { [ -z "${PACK+x}" ] || [[ ",$PACK," == *",$1,"* ]]; }

for spec in "$@"; do
  name=${spec%%=*}
  IFS=, read -r -a fields <<< "${spec#*=}"
  data=${fields[0]}
  run=runs/gpu-$name
  started=$SECONDS
  timeout "${TRAIN_TIMEOUT:-300}" "$PY" -m fractalad_edge.cli train --method fractalad --data "$data" --out "$run" \
    --device "$DEVICE" --workers "$WORKERS" "${fields[@]:1}" > "$OUT/logs/train-$name.log" 2>&1
  echo "train $name (${fields[*]:1}) rc=$? wall_s=$(( SECONDS - started ))" >> "$SUMMARY"
  tr '\r' '\n' < "$OUT/logs/train-$name.log" | grep -E '^(done|Error|.*Error)' | tail -n 2 >> "$SUMMARY"
  [ -f "$run/model.safetensors" ] || continue
  if [ -d "$data/test" ] && [ -d "$data/ground_truth" ]; then
    started=$SECONDS
    cli eval "$run" --data "$data" --device "$DEVICE" --overlays 4 --out "$OUT/logs/eval-$name" > "$OUT/logs/eval-$name.log" 2>&1
    echo "eval $name rc=$? wall_s=$(( SECONDS - started ))" >> "$SUMMARY"
    "$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print('  image %.2f pixel %.2f aupro %.2f' % (100*m['image_auroc'], 100*m['pixel_auroc'], 100*m['aupro']))" \
      "$OUT/logs/eval-$name/metrics.json" >> "$SUMMARY" 2>&1
  fi
  if packed "$name"; then
    tar -cf - "$run/model.safetensors" "$run/metadata.json" "$run/config.json" "$run/train_log.jsonl" \
      | split -b 15M - "$OUT/gpu-$name.tar.part-"
  fi
  if [ "${BENCH:-}" = "$name" ]; then
    started=$SECONDS
    timeout "${BENCH_TIMEOUT:-150}" "$PY" -m fractalad_edge.cli bench "$run" --data "$data" --runtimes torch \
      --precisions fp32,fp16,bf16 --device "$DEVICE" --no-memory --out "$OUT/logs/bench-$name-$DEVICE" > "$OUT/logs/bench-$name.log" 2>&1
    echo "bench $name rc=$? wall_s=$(( SECONDS - started ))" >> "$SUMMARY"
  fi
done
cat "$SUMMARY"
# Bench models are rebuilt from the run; leaving them out keeps the archive small.
tar -C "$OUT" --exclude=models -czf "$OUT/logs.tar.gz" logs && rm -rf "$OUT/logs"
