"""onnxruntime INT8 recipes compared the way the export gate judges them: on held-out
*synthetic* anomalies (no real defects), with the real test set printed beside for the record.

Each variant is ``method:weights:scope``:

* method: ``minmax``, ``entropy`` or ``percentile`` (onnxruntime calibration methods);
* weights: ``s8r`` (signed 7-bit, ``reduce_range``: the SDK's default), ``s8`` (signed full
  range) or ``u8`` (unsigned full range);
* scope: ``all`` (every op onnxruntime quantizes) or ``conv`` (Conv inputs only);
* optional fourth field, a sensitivity probe: ``+``-separated node-name prefixes kept in
  float on top of the SDK's regions, e.g. ``entropy:s8r:all:/head/`` or
  ``entropy:s8r:all:/teacher/_blocks.15/+/student/_blocks.15/``.

The fp32 artifact comes from a bench folder (``<bench>/models/onnxruntime-fp32``).

    python scripts/ort_int8_variants.py bench/bottle --data ../shared/data/mvtec_ad/bottle \\
        --variants minmax:s8r:all,entropy:s8r:all,percentile:s8r:all,minmax:u8:all,minmax:s8r:conv
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
    parser.add_argument("--variants", default="minmax:s8r:all,entropy:s8r:all")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved latency rounds (0: accuracy only)")
    args = parser.parse_args()

    import numpy as np

    import onnxruntime.quantization as ortq

    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.evaluation import evaluate_predictor
    from fractalad_edge.bench.latency import LatencyStats, PredictorTimer, interleaved_rounds
    from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
    from fractalad_edge.data.datasets import find_training_images
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.quantize.gate import compare_on_validation
    from fractalad_edge.quantize.onnxruntime import quantize_onnx_model

    original = ortq.quantize_static
    overrides: dict = {}

    float_prefixes: list[str] = []

    def quantize_static(*a, **k):  # the SDK's call, with the variant's settings on top
        if float_prefixes:
            import onnx

            names = [n.name for n in onnx.load(str(a[0])).graph.node]  # the pre-processed model
            extra = [n for n in names if n.startswith(tuple(float_prefixes))]
            k = {**k, "nodes_to_exclude": [*k.get("nodes_to_exclude", []), *extra]}
        return original(*a, **{**k, **overrides})

    ortq.quantize_static = quantize_static

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
            method, weights, scope, *probe = variant.split(":")
            overrides.clear()
            float_prefixes[:] = probe[0].split("+") if probe else []
            if weights == "u8":
                overrides.update(weight_type=ortq.QuantType.QUInt8, reduce_range=False)
            elif weights == "s8":
                overrides.update(reduce_range=False)
            if scope == "conv":
                overrides.update(op_types_to_quantize=["Conv"])
            out = Path(tmp) / variant.replace(":", "-").replace("/", "_").replace("+", "_")
            shutil.copytree(fp32_dir, out)
            started = time.perf_counter()
            quantize_onnx_model(fp32_dir / "model.onnx", out / "model.onnx", calibration, reference.metadata.input, calibrate_method=method)
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
