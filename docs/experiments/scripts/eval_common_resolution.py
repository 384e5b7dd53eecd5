"""Pixel metrics of models with different input sizes, compared at one mask resolution.

`fractalad-edge eval` scores each model at its own map size: the masks are shrunk (nearest)
to the model's input size, so a 192 x 192 model is scored on 192 x 192 masks. To compare
input sizes on the same pixels, this script also resizes every model's raw maps to one
common size (bilinear, as `Predictor.predict` resizes a map back to the frame) and scores
them against the masks at that size. Image AUROC does not depend on it (the image score is
taken from the model-size map, as in `predict`).

    python docs/experiments/scripts/eval_common_resolution.py --data $DATA/mvtec_ad/bottle --size 256 \\
        /work/runs/bottle-quick S/runs/bq-s224 S/runs/bq-s192 S/s224-ov-int8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="run or export directories")
    parser.add_argument("--data", type=Path, required=True, help="an MVTec category (its test/ is scored)")
    parser.add_argument("--size", type=int, default=256, help="the common mask resolution (default 256)")
    args = parser.parse_args()

    from fractalad_edge import Predictor
    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.metrics import evaluate_maps
    from fractalad_edge.preprocess import image_scores, resize_map

    common = load_test_set(args.data, args.size)
    labels = np.array([s.label for s in common.samples], dtype=np.int64)
    print(f"| model | runtime / precision | input | at model size: image / pixel / AUPRO | at {args.size}: pixel / AUPRO |")
    print("|---|---|---|---|---|")
    for model in args.models:
        predictor = Predictor.load(model)
        size = predictor.metadata.input.height
        maps = predictor.raw_maps(common.images, channel_order="rgb")
        scores = image_scores(maps, predictor.metadata.score)
        own = load_test_set(args.data, size) if size != args.size else common
        at_model = evaluate_maps(labels, scores, own.masks, maps)
        resized = np.stack([resize_map(m, args.size, args.size) for m in maps]) if size != args.size else maps
        at_common = evaluate_maps(labels, scores, common.masks, resized)
        print(
            f"| {model} | {predictor.runtime} / {predictor.metadata.precision.value} | {size} | "
            f"{100 * at_model.image_auroc:.2f} / {100 * at_model.pixel_auroc:.2f} / {100 * at_model.aupro:.2f} | "
            f"{100 * at_common.pixel_auroc:.2f} / {100 * at_common.aupro:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
