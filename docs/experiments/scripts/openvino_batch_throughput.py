"""Images/s of ``Predictor.predict_batch`` on an OpenVINO artifact: sequential against parallel requests.

One process, interleaved rounds. ``sequential`` forces one infer request at a time (what a
batch on a batch-1 graph did before), ``parallel`` lets the backend run as many requests
as OpenVINO reports optimal for the hint.

    python docs/experiments/scripts/openvino_batch_throughput.py MODEL_DIR --data $DATA/mvtec_ad/bottle --batch 8
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=30, help="timed batches per configuration")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import time

    import numpy as np

    from fractalad_edge.allocator import keep_freed_memory
    from fractalad_edge.bench.latency import LatencyStats, interleaved_rounds
    from fractalad_edge.data.datasets import find_test_samples
    from fractalad_edge.data.images import read_image_bgr
    from fractalad_edge.predictor import Predictor

    keep_freed_memory()
    frames = [read_image_bgr(s.image_path) for s in find_test_samples(args.data)[: args.batch]]
    configs = {}
    for hint in ("latency", "throughput"):
        for mode in ("sequential", "parallel"):
            predictor = Predictor.load(args.model, performance_hint=hint)
            if mode == "sequential":
                predictor.backend.parallel_requests = 1
            configs[f"{hint} hint, {mode} ({predictor.backend.parallel_requests} request(s))"] = predictor

    def task(predictor: Predictor):
        def run() -> float:
            started = time.perf_counter()
            predictor.predict_batch(frames)
            return time.perf_counter() - started

        return run

    times = interleaved_rounds({k: task(p) for k, p in configs.items()}, runs=args.runs, rounds=args.rounds, warmup=3, settle=1)
    print(f"{args.model}, batch {len(frames)}, {args.runs} batches per configuration in {args.rounds} interleaved rounds\n")
    print("| configuration | images/s at the median batch (p90-p10 batch) |\n|---|---|")
    for name, values in times.items():
        s = LatencyStats.from_seconds(values)
        n = len(frames)
        print(f"| {name} | {1e3 * n / s.p50_ms:.1f} ({1e3 * n / s.p90_ms:.1f}-{1e3 * n / s.p10_ms:.1f}) |")


if __name__ == "__main__":
    main()
