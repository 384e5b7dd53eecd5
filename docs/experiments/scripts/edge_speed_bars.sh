#!/bin/bash
# The two CPU bars of issue 16, each as ratios inside one process, interleaved rounds.
#   BASE_INT8: today's OpenVINO INT8 artifact (float input, float layers f32)
#   NEW_INT8:  this branch's export (uint8 input; float layers bf16 where its gate passed)
#   NEW_FP32:  this branch's fp32 export
# (a) full predict, NEW_INT8 vs BASE_INT8: wall at the default settings, and process CPU time
#     with one inference thread; (b) inference only, NEW_INT8 vs NEW_FP32, the same two clocks.
# (c) OpenVINO CPU properties (pinning, denormals, TBB partitioner, one thread) on NEW_INT8.
# Usage: bash docs/experiments/scripts/edge_speed_bars.sh BASE_INT8 NEW_INT8 NEW_FP32 [RUNS] [ROUNDS] [REPEATS]
set -euo pipefail
BASE=$1 NEW=$2 FP32=$3 RUNS=${4:-400} ROUNDS=${5:-10} REPEATS=${6:-2}
FRAME=${FRAME:-/work/shared/data/mvtec_ad/bottle/test/broken_large/000.png}
DATA=$(dirname "$(dirname "$(dirname "$FRAME")")")
PY=${PY:-python}
lscpu | grep -E "Model name|^CPU\(s\)"
grep -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_bf16|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
uptime
for repeat in $(seq "$REPEATS"); do
  echo "## repeat $repeat"
  echo "### (a) full predict, wall, default settings"
  $PY scripts/compare_latency.py "$BASE" "$NEW" "$FP32" --frame "$FRAME" --runs "$RUNS" --rounds "$ROUNDS"
  echo "### (a) full predict, process CPU time, 1 inference thread"
  $PY docs/experiments/scripts/openvino_variants.py --data "$DATA" --no-accuracy --clock cpu --frame "$FRAME" \
    "$BASE@threads=1" "$NEW@threads=1" "$NEW@threads=1,precision=f32" --runs "$RUNS" --rounds "$ROUNDS" | tail -6
  echo "### (b) inference only, wall, default settings"
  $PY docs/experiments/scripts/openvino_variants.py --data "$DATA" --no-accuracy --what infer --frame "$FRAME" \
    "$FP32" "$NEW" "$NEW@precision=f32" "$BASE" --runs "$RUNS" --rounds "$ROUNDS" | tail -7
  echo "### (b) inference only, process CPU time, 1 inference thread"
  $PY docs/experiments/scripts/openvino_variants.py --data "$DATA" --no-accuracy --what infer --clock cpu --frame "$FRAME" \
    "$FP32@threads=1" "$NEW@threads=1" "$NEW@threads=1,precision=f32" "$BASE@threads=1" --runs "$RUNS" --rounds "$ROUNDS" | tail -7
done
echo "### (c) CPU settings on NEW_INT8 (bf16 float layers), inference only"
B=INFERENCE_PRECISION_HINT=bf16
$PY docs/experiments/scripts/openvino_cpu_properties.py "$NEW@$B" "$NEW@$B,ENABLE_CPU_PINNING=YES" \
  "$NEW@$B,CPU_DENORMALS_OPTIMIZATION=YES" "$NEW@$B,TBB_PARTITIONER=STATIC" "$NEW@$B,INFERENCE_NUM_THREADS=1" \
  --frame "$FRAME" --runs "$RUNS" --rounds "$ROUNDS" | tail -7
