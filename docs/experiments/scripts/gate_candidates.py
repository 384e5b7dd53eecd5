"""Candidate accuracy-gate statistics for INT8 models, computed on the gate's own synthetic
validation set, to see whether any of them predicts the real-data damage the AUROC gate misses.

For each bench folder (``<bench>/models/onnxruntime-fp32`` is the float reference) and each
INT8 model in it, on the export's held-out validation set (seed 2026, 32 images, half with a
fractal anomaly; normal images from the training folder, never the test set):

* map MAE: mean |int8 map - fp32 map| (what the gate records today);
* normal-score drift: median |int8 - fp32| image score over the normal images, in units of
  the fp32 normal scores' standard deviation (max in brackets);
* rank correlation (Spearman) of the normal images' scores, fp32 vs int8;
* normal-pixel MAE in units of the fp32 normal pixels' standard deviation;
* the 99.9th percentile of normal pixels, fp32 and int8 (false-alarm tail).

    python docs/experiments/scripts/gate_candidates.py bench/bottle-c32:$DATA/mvtec_ad/bottle \\
        bench/magnetic-tile:$DATA/magnetic_tile/magnetic_tile
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="+", help="BENCH_DIR:DATA_DIR pairs")
    parser.add_argument("--models", default="onnxruntime-int8,openvino-int8")
    args = parser.parse_args()

    import numpy as np

    from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
    from fractalad_edge.data.datasets import find_training_images
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.preprocess import image_scores

    def ranks(values: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(values)).astype(float)

    print("| bench | model | map MAE | normal-score drift / std (max) | Spearman, normal scores | normal-pixel MAE / std | p99.9 normal pixel fp32 -> int8 |")
    print("|---|---|---|---|---|---|---|")
    for pair in args.benches:
        bench, data = (Path(p) for p in pair.split(":", 1))
        reference = Predictor.load(bench / "models" / "onnxruntime-fp32")
        _, validation = build_calibration_sets(
            find_training_images(data),
            CalibrationConfig(count=64, validation_count=32, seed=2026, image_size=reference.metadata.input.height),
        )
        normal = ~validation.labels.astype(bool)
        spec = reference.metadata.score
        ref_maps = reference.raw_maps(validation.images, channel_order="rgb")
        ref_scores = image_scores(ref_maps, spec)
        spread = ref_scores[normal].std()
        for name in args.models.split(","):
            maps = Predictor.load(bench / "models" / name).raw_maps(validation.images, channel_order="rgb")
            drift = np.abs(image_scores(maps, spec) - ref_scores)[normal]
            spearman = np.corrcoef(ranks(ref_scores[normal]), ranks(image_scores(maps, spec)[normal]))[0, 1]
            pixel_mae = np.abs(maps[normal] - ref_maps[normal]).mean() / ref_maps[normal].std()
            print(
                f"| {bench.name} | {name} | {np.abs(maps - ref_maps).mean():.4f} | "
                f"{np.median(drift) / spread:.2f} ({drift.max() / spread:.2f}) | {spearman:.2f} | {pixel_mae:.2f} | "
                f"{np.quantile(ref_maps[normal], 0.999):.3f} -> {np.quantile(maps[normal], 0.999):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
