"""Evaluate the ONNX a ``tensorrt`` artifact carries with onnxruntime CPU, next to its fp32 run.

TensorRT cannot run everywhere; the int8 ``tensorrt`` artifact's model.onnx is the explicit
symmetric Q/DQ graph the device builds its engine from, so onnxruntime can judge it on the
real test set where TensorRT is missing (docs/experiments/tensorrt-int8.md)::

    python scripts/eval_tensorrt_onnx.py ARTIFACT RUN --data DATASET/CATEGORY
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fractalad_edge.artifact import read_metadata
from fractalad_edge.data.test_set import load_test_set
from fractalad_edge.evaluation import evaluate_predictor
from fractalad_edge.predictor import Predictor
from fractalad_edge.runtimes.onnxruntime import OnnxRuntimeBackend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path, help="a tensorrt artifact (model.onnx inside)")
    parser.add_argument("run", type=Path, help="the fp32 training run it was exported from (torch)")
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout category folder")
    args = parser.parse_args()

    metadata = read_metadata(args.artifact)
    test_set = load_test_set(args.data, metadata.input.height)
    rows = {}
    candidates = {
        "fp32 (torch, the run)": lambda: Predictor.load(args.run, runtime="torch", device="cpu"),
        f"{metadata.precision.value} (onnxruntime cpu on the tensorrt artifact's model.onnx)": lambda: Predictor(
            OnnxRuntimeBackend(args.artifact / "model.onnx", device="cpu"), metadata
        ),
    }
    for name, make in candidates.items():
        predictor = make()
        try:
            report, _ = evaluate_predictor(predictor, test_set)
        finally:
            predictor.backend.close()
        rows[name] = {"image_auroc": 100 * report.image_auroc, "pixel_auroc": 100 * report.pixel_auroc, "aupro": 100 * report.aupro}
        print(f"{name}: image {rows[name]['image_auroc']:.2f}  pixel {rows[name]['pixel_auroc']:.2f}  aupro {rows[name]['aupro']:.2f}")
    fp32, quantized = rows.values()
    print(f"drop (points): image {fp32['image_auroc'] - quantized['image_auroc']:+.2f}  pixel {fp32['pixel_auroc'] - quantized['pixel_auroc']:+.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
