#!/usr/bin/env bash
# Score spaces on a trained fractalad run (docs/experiments/score-space.md).
#
#   bash docs/experiments/scripts/score_space.sh RUN DATA OUT
#
# RUN: a trained `fractalad` run (torch artifact), DATA: its MVTec category folder (train/good
# for calibration, test/ for the measurement), OUT: a new folder.
# "before": the package at BEFORE_COMMIT (sigmoid graphs, span normalisation, calibration
# sources that depended on the hold-out count), "sigmoid": this tree with --score-space sigmoid
# (the space alone, everything else as "after"), "after": this tree (logit graphs, two-sided
# normalisation). Each side exports torch fp32, ONNX Runtime fp32 and INT8, OpenVINO fp32
# and OpenVINO INT8 with thresholds fitted on synthetic anomalies, then
# score_space.py runs all of them on the test set. "after" also gets a copy of the run moved
# to logits by `calibrate --score-space logit` (no re-export).
# PY: a python with the package's dependencies (default: the repository's .venv);
# SIDES: the sides to export (default "before sigmoid after"; the measurement needs all three).
# FUSED_RUN: optionally a `fused` run, exported and measured as well.
set -euo pipefail
RUN=$(realpath "$1") DATA=$(realpath "$2") OUT=$(realpath -m "$3")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
PY=${PY:-$REPO/.venv/bin/python}
BEFORE_COMMIT=${BEFORE_COMMIT:-34aa73b}
mkdir -p "$OUT"
BEFORE_TREE=$OUT/before-src
if [ ! -d "$BEFORE_TREE" ]; then  # the package as it was, extracted (no checkout is touched)
  mkdir -p "$BEFORE_TREE"
  git -C "$REPO" archive "$BEFORE_COMMIT" fractalad_edge | tar -x -C "$BEFORE_TREE"
fi

cli() {  # $1: source tree; the rest: fractalad-edge arguments (run from $OUT: `python -m` puts the cwd first on sys.path)
  local tree=$1; shift
  (cd "$OUT" && PYTHONPATH=$tree nice -n 10 "$PY" -m fractalad_edge.cli "$@")
}

ALL="before sigmoid after"
for side in ${SIDES:-$ALL}; do
  tree=$REPO; [ "$side" = before ] && tree=$BEFORE_TREE
  space=(); [ "$side" = sigmoid ] && space=(--score-space sigmoid)
  for target in "torch fp32" "onnx fp32" "onnx int8" "openvino fp32" "openvino int8"; do
    read -r format precision <<<"$target"
    dest=$OUT/$side/$format-$precision
    [ -e "$dest/metadata.json" ] && continue
    start=$SECONDS
    cli "$tree" export "$RUN" --format "$format" --precision "$precision" --calib-data "$DATA" --out "$dest" "${space[@]}"
    echo "$side $format $precision: export took $((SECONDS - start)) s"
  done
done

# optional: a `fused` run (its space does not change) exported by this tree, decisions measured the same way
if [ -n "${FUSED_RUN:-}" ]; then
  for target in "torch fp32" "onnx fp32" "onnx int8" "openvino fp32" "openvino int8"; do
    read -r format precision <<<"$target"
    dest=$OUT/fused/$format-$precision
    [ -e "$dest/metadata.json" ] && continue
    start=$SECONDS
    cli "$REPO" export "$(realpath "$FUSED_RUN")" --format "$format" --precision "$precision" --out "$dest"
    echo "fused $format $precision: export took $((SECONDS - start)) s"
  done
fi

[ "${SIDES:-$ALL}" = "$ALL" ] || exit 0
# an old sigmoid run switched to logits in place (a copy: the run stays as it is)
if [ ! -e "$OUT/after/run-calibrate-logit/metadata.json" ]; then
  mkdir -p "$OUT/after/run-calibrate-logit"
  cp "$RUN/model.safetensors" "$RUN/metadata.json" "$OUT/after/run-calibrate-logit/"
  cli "$REPO" calibrate "$OUT/after/run-calibrate-logit" --normal "$DATA" --score-space logit
fi

args=()
for side in $ALL; do
  for name in torch-fp32 onnx-fp32 onnx-int8 openvino-fp32 openvino-int8; do
    args+=(--artifact "$side/$name=$OUT/$side/$name")
  done
  args+=(--reference "$side=$side/torch-fp32")
done
args+=(--artifact "after/run-calibrate-logit=$OUT/after/run-calibrate-logit")
if [ -n "${FUSED_RUN:-}" ]; then
  for name in torch-fp32 onnx-fp32 onnx-int8 openvino-fp32 openvino-int8; do
    args+=(--artifact "fused/$name=$OUT/fused/$name")
  done
  args+=(--reference "fused=fused/torch-fp32")
fi
args+=(--artifact "before/run=$RUN")
args+=(--host-logit "before/onnx-fp32=after/onnx-fp32")
for side in $ALL; do  # the fp32 graphs run with bf16 arithmetic at their fp32 thresholds: a change of numeric path
  args+=(--variant "$side/openvino-fp32:inference_precision=bf16" --variant "$side/torch-fp32:precision=bf16")
done
PYTHONPATH=$REPO nice -n 10 "$PY" "$HERE/score_space.py" --data "$DATA" "${args[@]}" --out "$OUT/results.json"
