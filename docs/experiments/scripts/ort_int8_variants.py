"""onnxruntime INT8 recipes compared the way the export gate judges them: on held-out
*synthetic* anomalies (no real defects), with the real test set printed beside for the record.

Each variant is ``method:weights[:regions]``, all through the SDK's public
``quantize_onnx_model``:

* method: ``minmax``, ``entropy`` or ``percentile`` (onnxruntime calibration methods);
* weights: ``s8r`` (signed 7-bit, ``reduce_range``: the SDK's default) or ``s8`` (signed
  full range, ``--int8-weights full``);
* regions: ``+``-separated FloatRegion values kept in float (default: the SDK's
  ``DEFAULT_KEEP_FLOAT``), e.g. ``entropy:s8r:csam+flow+classifier`` quantizes the teacher stem.

The fp32 artifact comes from a bench folder (``<bench>/models/onnxruntime-fp32``).

    python docs/experiments/scripts/ort_int8_variants.py bench/bottle --data $DATA/mvtec_ad/bottle \\
        --variants minmax:s8r,entropy:s8r,percentile:s8r,entropy:s8

Unsigned weights, Conv-only quantization and float probes by node-name prefix
(docs/experiments/ort-int8-avx2.md, int8-float-regions.md) were measured with an earlier
version of this script that patched onnxruntime's ``quantize_static`` at run time; it is in
the git history (``git show f2829d3:scripts/ort_int8_variants.py``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--variants", default="minmax:s8r,entropy:s8r")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved latency rounds (0: accuracy only)")
    args = parser.parse_args()

    import numpy as np

    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.evaluation import evaluate_predictor
    from fractalad_edge.bench.latency import LatencyStats, PredictorTimer, interleaved_rounds
    from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
    from fractalad_edge.data.datasets import find_training_images
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.quantize import DEFAULT_KEEP_FLOAT
    from fractalad_edge.quantize.gate import compare_on_validation
    from fractalad_edge.quantize.onnxruntime import quantize_onnx_model

    fp32_dir = args.bench / "models" / "onnxruntime-fp32"
    reference = Predictor.load(fp32_dir)
    size = reference.metadata.input.height
    calibration, validation = build_calibration_sets(
        find_training_images(args.data), CalibrationConfig(count=64, validation_count=32, image_size=size)
    )
    test_set = load_test_set(args.data, size)
    print("| variant | synthetic pixel AUROC (float) | drop, points | real image / pixel / AUPRO | s |")
    print("|---|---|---|---|---|")
    candidates = {"fp32": reference}
    with tempfile.TemporaryDirectory(prefix="ort-int8-") as tmp:
        for variant in args.variants.split(","):
            method, weights, *regions = variant.split(":")
            keep_float = tuple(regions[0].split("+")) if regions else DEFAULT_KEEP_FLOAT
            out = Path(tmp) / variant.replace(":", "-").replace("+", "_")
            shutil.copytree(fp32_dir, out)
            started = time.perf_counter()
            quantize_onnx_model(
                fp32_dir / "model.onnx", out / "model.onnx", calibration, reference.metadata.input,
                calibrate_method=method, keep_float=keep_float, reduce_range=weights == "s8r",
            )
            candidate = Predictor.load(out, verify=False)  # model.onnx replaced: the sha check would refuse it
            candidates[variant] = candidate
            gate = compare_on_validation(reference, candidate, validation)
            real, _ = evaluate_predictor(candidate, test_set)
            print(
                f"| {variant} | {100 * gate.candidate_pixel_auroc:.2f} ({100 * gate.reference_pixel_auroc:.2f}) | "
                f"{gate.worst_drop:.2f} | {100 * real.image_auroc:.2f} / {100 * real.pixel_auroc:.2f} / {100 * real.aupro:.2f} | "
                f"{time.perf_counter() - started:.0f} |",
                flush=True,
            )
        if args.rounds:
            frame = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
            tasks = {name: PredictorTimer(predictor, frame, [frame]).full for name, predictor in candidates.items()}
            times = interleaved_rounds(tasks, runs=5 * args.rounds, rounds=args.rounds, warmup=2, settle=2)
            print("\n| variant | p50 ms (p10-p90) | vs fp32 |\n|---|---|---|")
            base = LatencyStats.from_seconds(times["fp32"]).p50_ms
            for name, values in times.items():
                stats = LatencyStats.from_seconds(values)
                print(f"| {name} | {stats.p50_ms:.1f} ({stats.p10_ms:.1f}-{stats.p90_ms:.1f}) | {base / stats.p50_ms:.2f}x |")

if __name__ == "__main__":
    main()
