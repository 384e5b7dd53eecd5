"""An OpenVINO INT8 export through the real export pipeline (its calibration set, its synthetic
gate, its thresholds) with some default float regions quantized (``ExportOptions.keep_float``),
then the real test set.

Unlike openvino_float_regions.py, which re-quantizes an fp32 IR and judges it on the training
folder's images, this runs ``export_model`` itself, so a memory model is calibrated and gated
on the images its build held out, exactly as ``fractalad-edge export`` does.

    python docs/experiments/scripts/float_region_export.py /work/runs/bottle-quick --out S/bq-int8-stem \\
        --quantize teacher-stem --calib-data $DATA/mvtec_ad/bottle --eval $DATA/mvtec_ad/bottle
    # --quantize '' exports with the default regions (the reference)
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run (torch artifact)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quantize", default="teacher-stem", help="+-separated FloatRegion values to quantize ('' for none)")
    parser.add_argument("--calib-data", type=Path)
    parser.add_argument("--eval", type=Path, help="an MVTec-layout category whose test/ is scored after the export")
    parser.add_argument("--precisions", default="f32,bf16", help="inference precisions the test set is scored with")
    args = parser.parse_args()

    from fractalad_edge.export.pipeline import ExportOptions, export_model
    from fractalad_edge.quantize import DEFAULT_KEEP_FLOAT, float_regions

    dropped = set(float_regions(r for r in args.quantize.split("+") if r))
    keep_float = tuple(r.value for r in DEFAULT_KEEP_FLOAT if r not in dropped)
    print(f"float regions: {', '.join(keep_float)}", flush=True)
    metadata = export_model(
        args.run, format="openvino", out=args.out,
        options=ExportOptions(precision="int8", calib_data=args.calib_data, keep_float=keep_float), force=True,
    )
    print(f"gate: {metadata.quantization}", flush=True)
    if args.eval is None:
        return
    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.evaluation import evaluate_predictor
    from fractalad_edge.predictor import Predictor

    test_set = load_test_set(args.eval, metadata.input.height)
    print("| export | inference precision | image AUROC | pixel AUROC | AUPRO |\n|---|---|---|---|---|")
    for precision in args.precisions.split(","):
        with Predictor.load(args.out, inference_precision=precision) as predictor:
            report, _ = evaluate_predictor(predictor, test_set)
        print(
            f"| {args.out.name} | {precision} | {100 * report.image_auroc:.2f} | {100 * report.pixel_auroc:.2f} | "
            f"{100 * report.aupro:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
