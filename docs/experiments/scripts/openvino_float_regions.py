"""OpenVINO INT8 (NNCF PTQ) with different float regions, judged like the export gate
(synthetic drop) with the real test set beside it.

The fp32 IR comes from a bench folder (``<bench>/models/openvino-fp32``). Each variant is a
``+``-separated list of FloatRegion values, or ``none`` for full INT8:

    python docs/experiments/scripts/openvino_float_regions.py bench/magnetic-tile --data $DATA/magnetic_tile/magnetic_tile \\
        --variants csam+flow+classifier,csam+flow+classifier+teacher-stem

``--fp32 DIR`` takes the fp32 OpenVINO export from elsewhere; ``--keep DIR`` saves every
variant there as a complete int8 artifact (``DIR/<variant>``) for latency comparisons.
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
    parser.add_argument("--variants", default="csam+flow+classifier,csam+flow+classifier+teacher-stem")
    parser.add_argument("--fp32", type=Path, help="fp32 OpenVINO export (default: BENCH/models/openvino-fp32)")
    parser.add_argument("--keep", type=Path, help="save each variant as an int8 artifact in this folder")
    args = parser.parse_args()

    import openvino as ov

    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.evaluation import evaluate_predictor
    from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
    from fractalad_edge.data.datasets import find_training_images
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.quantize.gate import compare_on_validation
    from fractalad_edge.quantize.openvino import quantize_openvino_model

    import dataclasses

    from fractalad_edge.artifact import Precision, describe_files, write_metadata

    fp32_dir = args.fp32 or args.bench / "models" / "openvino-fp32"
    reference = Predictor.load(fp32_dir)
    size = reference.metadata.input.height
    calibration, validation = build_calibration_sets(
        find_training_images(args.data), CalibrationConfig(count=64, validation_count=32, image_size=size)
    )
    test_set = load_test_set(args.data, size)
    real, _ = evaluate_predictor(reference, test_set)
    print("| float regions | synthetic pixel AUROC drop, points | real image / pixel / AUPRO | s |")
    print("|---|---|---|---|")
    print(f"| fp32 model | - | {100 * real.image_auroc:.2f} / {100 * real.pixel_auroc:.2f} / {100 * real.aupro:.2f} | - |")
    with tempfile.TemporaryDirectory(prefix="ov-int8-") as tmp:
        for variant in args.variants.split(","):
            regions = () if variant == "none" else tuple(variant.split("+"))
            started = time.perf_counter()
            model = quantize_openvino_model(
                ov.Core().read_model(fp32_dir / "model.xml"), calibration, reference.metadata.input,
                validation=validation, keep_float=regions,
            )
            out = Path(tmp) / variant.replace("+", "_")
            shutil.copytree(fp32_dir, out)
            ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)
            candidate = Predictor.load(out, verify=False)  # model.xml replaced: the sha check would refuse it
            gate = compare_on_validation(reference, candidate, validation)
            real, _ = evaluate_predictor(candidate, test_set)
            print(
                f"| {variant} | {gate.worst_drop:.2f} | {100 * real.image_auroc:.2f} / {100 * real.pixel_auroc:.2f} / "
                f"{100 * real.aupro:.2f} | {time.perf_counter() - started:.0f} |",
                flush=True,
            )
            candidate.close()
            if args.keep is not None:
                kept = args.keep / out.name
                shutil.copytree(out, kept)
                files = describe_files(kept, tuple(f.path for f in reference.metadata.files))
                write_metadata(kept, dataclasses.replace(reference.metadata, precision=Precision.INT8, files=files))


if __name__ == "__main__":
    main()
