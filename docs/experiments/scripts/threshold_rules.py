"""Image thresholds fitted on synthetic anomalies, two ways, applied to a real test set.

``edge``: the top of the best-F1 gap (metrics.f1_max, the rule before 2026-11-28);
``middle``: the middle of that gap (calibration.thresholds.f1_threshold, the rule since).
Both are fitted on the same synthetic set (the ``calibrate`` command's: 64 images, half
with a fractal anomaly, seed 2026) with the model's own runtime.

    python docs/experiments/scripts/threshold_rules.py runs/bottle-published --data $DATA/mvtec_ad/bottle
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    import numpy as np

    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
    from fractalad_edge.calibration.thresholds import f1_threshold
    from fractalad_edge.data.datasets import find_training_images
    from fractalad_edge.metrics import binary_rates, f1_max
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.preprocess import image_scores

    print("| model | rule | threshold | real F1 | recall | false alarms | synthetic gap (normal max .. anomaly min) |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models:
        predictor = Predictor.load(model)
        size = predictor.metadata.input.height
        calibration, _ = build_calibration_sets(
            find_training_images(args.data),
            CalibrationConfig(count=args.count, validation_count=0, seed=args.seed, image_size=size),
        )
        synthetic = image_scores(predictor.raw_maps(calibration.images, channel_order="rgb"), predictor.metadata.score)
        labels = np.asarray(calibration.labels).astype(bool)
        test_set = load_test_set(args.data, size)
        truth = np.array([s.label for s in test_set.samples], dtype=bool)
        real = image_scores(predictor.raw_maps(test_set.images, channel_order="rgb"), predictor.metadata.score)
        gap = f"{synthetic[~labels].max():.5f} .. {synthetic[labels].min():.5f}"
        rules = {
            "edge (old)": f1_max(labels.astype(np.int64), synthetic)[1],
            "middle (new)": f1_threshold(labels, synthetic),
            "ceiling: F1-optimal on the test set": f1_max(truth.astype(np.int64), real)[1],
        }
        for rule, threshold in rules.items():
            rates = binary_rates(truth, real, threshold)
            print(
                f"| {model} | {rule} | {threshold:.6f} | {100 * rates.f1:.2f} | {100 * rates.recall:.1f} % | "
                f"{100 * rates.false_alarm_rate:.1f} % | {gap} |",
                flush=True,
            )
        predictor.close()


if __name__ == "__main__":
    main()
