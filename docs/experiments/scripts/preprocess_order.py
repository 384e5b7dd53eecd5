"""CPU time of the host pre-processing of one frame: old order (whole frame to RGB, resize,
normalise) against the current prepare_batch (resize, then reorder; float or uint8 output).

    python docs/experiments/scripts/preprocess_order.py --size 1024 --runs 300
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="frame side in pixels")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    import dataclasses
    import time

    import cv2
    import numpy as np

    from fractalad_edge.artifact import InputSpec
    from fractalad_edge.bench.latency import LatencyStats, interleaved_rounds
    from fractalad_edge.preprocess import normalize, prepare_batch

    cv2.setNumThreads(1)
    spec = InputSpec(height=256, width=256, mean=(127.0,) * 3, std=(128.0,) * 3)
    frame = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)

    def old() -> None:
        rgb = np.ascontiguousarray(frame[..., ::-1])
        shrink = spec.height * spec.width < rgb.shape[0] * rgb.shape[1]
        small = cv2.resize(rgb, (spec.width, spec.height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        normalize(small[None], spec.mean, spec.std)

    calls = {
        "old order, float32 NCHW": old,
        "prepare_batch, float32 NCHW": lambda: prepare_batch([frame], spec),
        "prepare_batch, uint8 NHWC": lambda: prepare_batch([frame], dataclasses.replace(spec, dtype="uint8", layout="NHWC")),
    }

    def timed(call):
        def run() -> float:
            started = time.process_time()
            call()
            return time.process_time() - started

        return run

    times = interleaved_rounds({k: timed(c) for k, c in calls.items()}, runs=args.runs, rounds=args.rounds, warmup=10)
    print(f"frame {args.size} x {args.size} -> 256 x 256, process CPU time, one OpenCV thread, {args.runs} calls each\n")
    print("| pre-processing | p50 ms (p10-p90) |\n|---|---|")
    for name, values in times.items():
        s = LatencyStats.from_seconds(values)
        print(f"| {name} | {s.p50_ms:.3f} ({s.p10_ms:.3f}-{s.p90_ms:.3f}) |")


if __name__ == "__main__":
    main()
