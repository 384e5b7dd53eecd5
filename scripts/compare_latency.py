"""Batch-1 latency of several exported models, timed in one process in interleaved rounds.

For like-for-like comparisons of two exports of the same run (e.g. two INT8 recipes), where
separate bench runs would differ by more than the effect (runs here differ by up to 25 %).
Each model predicts one frame (a test image, or random pixels at the model size).

    python scripts/compare_latency.py bench/magnetic-tile/models/openvino-int8 \\
        bench/magnetic-tile-stem/models/openvino-int8 --frame path/to/image.png --rounds 10
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--frame", type=Path, help="image to predict (default: random pixels at the model size)")
    parser.add_argument("--runs", type=int, default=100, help="timed calls per model, over all rounds")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    import numpy as np

    from fractalad_edge.allocator import keep_freed_memory
    from fractalad_edge.bench.latency import LatencyStats, PredictorTimer, interleaved_rounds
    from fractalad_edge.data.images import read_image_bgr
    from fractalad_edge.predictor import Predictor

    keep_freed_memory()
    predictors = {str(path): Predictor.load(path) for path in args.models}
    if args.frame is not None:
        frame = read_image_bgr(args.frame)
    else:
        size = next(iter(predictors.values())).metadata.input.height
        frame = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    tasks = {name: PredictorTimer(predictor, frame, [frame]).full for name, predictor in predictors.items()}
    times = interleaved_rounds(tasks, runs=args.runs, rounds=args.rounds, warmup=5, settle=2)
    first = LatencyStats.from_seconds(times[str(args.models[0])]).p50_ms
    print(f"frame {frame.shape[1]} x {frame.shape[0]}, {args.runs} calls per model in {args.rounds} interleaved rounds\n")
    print(f"| model | p50 ms (p10-p90) | {args.models[0]} / this |\n|---|---|---|")
    for name, values in times.items():
        stats = LatencyStats.from_seconds(values)
        print(f"| {name} | {stats.p50_ms:.1f} ({stats.p10_ms:.1f}-{stats.p90_ms:.1f}) | {first / stats.p50_ms:.2f}x |")


if __name__ == "__main__":
    main()
