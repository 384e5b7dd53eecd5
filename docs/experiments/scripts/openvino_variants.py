"""OpenVINO compile settings on exported artifacts: accuracy on a test set and like-for-like latency.

Each variant is ``DIR`` or ``DIR@key=value,key=value`` with keys ``precision`` (the
runtime option ``inference_precision``: f32, bf16, f16), ``hint`` (latency, throughput) and ``threads``.
Every variant is scored on the test set (MVTec protocol, the artifact's own thresholds) and
then timed through ``Predictor.predict`` in one process, in interleaved rounds.

    python docs/experiments/scripts/openvino_variants.py --data $DATA/mvtec_ad/bottle \\
        base-ov-int8 "base-ov-int8@precision=bf16" base-ov-fp32 --runs 200 --rounds 10
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_variant(text: str) -> tuple[Path, dict[str, str]]:
    path, _, rest = text.partition("@")
    settings = dict(item.split("=", 1) for item in rest.split(",") if item)
    unknown = set(settings) - {"precision", "hint", "threads"}
    if unknown:
        raise SystemExit(f"unknown variant keys {sorted(unknown)} in {text!r}; use precision, hint, threads")
    return Path(path), settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--data", type=Path, required=True, help="an MVTec category (its test/ is scored)")
    parser.add_argument("--frame", type=Path, help="frame to time (default: the first test image)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--what", choices=("predict", "infer"), default="predict", help="full Predictor.predict, or the backend's inference alone")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="cpu: process CPU time per call (with threads=1, the single-core cost; robust on a shared machine)",
    )
    args = parser.parse_args()

    import numpy as np

    from fractalad_edge.allocator import keep_freed_memory
    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.evaluation import evaluate_predictor
    from fractalad_edge.bench.latency import LatencyStats, interleaved_rounds
    from fractalad_edge.data.images import read_image_bgr
    from fractalad_edge.predictor import Predictor

    keep_freed_memory()
    predictors: dict[str, Predictor] = {}
    for text in args.variants:
        path, settings = parse_variant(text)
        predictor = Predictor.load(
            path,
            performance_hint=settings.get("hint", "latency"),
            threads=int(settings["threads"]) if "threads" in settings else None,
            inference_precision=settings.get("precision"),
        )
        predictors[text] = predictor
        backend = predictor.backend
        print(f"{text}: runs {backend.inference_precision()} (artifact {predictor.metadata.precision.value}, input {predictor.metadata.input.dtype})")

    test_set = load_test_set(args.data, next(iter(predictors.values())).metadata.input.height)
    if not args.no_accuracy:
        print("\n| variant | image AUROC | pixel AUROC | AUPRO |\n|---|---|---|---|")
        for name, predictor in predictors.items():
            report, _ = evaluate_predictor(predictor, test_set)
            print(f"| {name} | {100 * report.image_auroc:.2f} | {100 * report.pixel_auroc:.2f} | {100 * report.aupro:.2f} |")
    frame = read_image_bgr(args.frame) if args.frame else np.ascontiguousarray(test_set.images[0][..., ::-1])
    import time

    from fractalad_edge.preprocess import prepare_batch

    clock = time.perf_counter if args.clock == "wall" else time.process_time

    def task(predictor: Predictor):
        if args.what == "predict":
            call = lambda: predictor.predict(frame)  # noqa: E731
        else:
            batch = prepare_batch([frame], predictor.metadata.input, channel_order=predictor.channel_order)[0]
            call = lambda: predictor.backend.infer(batch)  # noqa: E731

        def run() -> float:
            started = clock()
            call()
            return clock() - started

        return run

    tasks = {name: task(p) for name, p in predictors.items()}
    times = interleaved_rounds(tasks, runs=args.runs, rounds=args.rounds, warmup=10, settle=2)
    first = LatencyStats.from_seconds(times[args.variants[0]]).p50_ms
    print(f"\n{args.clock} clock, frame {frame.shape[1]} x {frame.shape[0]}, {args.runs} {args.what} calls per variant in {args.rounds} interleaved rounds\n")
    print(f"| variant | p50 ms (p10-p90) | {args.variants[0]} / this |\n|---|---|---|")
    for name, values in times.items():
        stats = LatencyStats.from_seconds(values)
        print(f"| {name} | {stats.p50_ms:.2f} ({stats.p10_ms:.2f}-{stats.p90_ms:.2f}) | {first / stats.p50_ms:.2f}x |")


if __name__ == "__main__":
    main()
