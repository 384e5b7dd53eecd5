"""Soak one model directory: a long prediction loop with RSS sampled, then a threads run.

    python scripts/soak.py MODEL_DIR [--runtime openvino] [--predictions 10000] [--threads 1,2,4,8]

1. ``--predictions`` frames through one Predictor, RSS (resident memory) sampled every
   ``--predictions / 20`` calls; growth after the warm-up tenth is reported and checked
   against ``--max-rss-growth-mib``.
2. For each thread count, ``--frames-per-thread`` distinct frames per thread on the *same*
   Predictor: images/s, errors, and whether every result is bit-identical to the
   sequential answer for that frame.

Exit status 1 when RSS grew too much, any call raised or any result differed. One JSON
line per measurement on stdout, so runs can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from fractalad_edge.predictor import Predictor


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(predictor: Predictor, frames: list[np.ndarray], count: int) -> dict:
    samples: list[tuple[int, float]] = []
    every = max(1, count // 20)
    start = time.perf_counter()
    for index in range(count):
        predictor.predict(frames[index % len(frames)])
        if index % every == 0 or index == count - 1:
            samples.append((index + 1, rss_mib()))
    seconds = time.perf_counter() - start
    after_warmup = [rss for done, rss in samples if done > count // 10] or [samples[-1][1]]
    return {
        "predictions": count,
        "images_per_s": round(count / seconds, 2),
        "rss_mib_first": round(samples[0][1], 1),
        "rss_mib_after_warmup": round(after_warmup[0], 1),
        "rss_mib_last": round(samples[-1][1], 1),
        "rss_growth_mib": round(samples[-1][1] - after_warmup[0], 1),
    }


def threads_run(predictor: Predictor, frames: list[np.ndarray], threads: int, expected: list) -> dict:
    results: list = [None] * len(frames)
    errors: list[str] = []
    barrier = threading.Barrier(threads + 1)

    def work(worker: int) -> None:
        barrier.wait()
        for index in range(worker, len(frames), threads):
            try:
                results[index] = predictor.predict(frames[index])
            except Exception as exc:  # noqa: BLE001 - counted, this is what the soak measures
                errors.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    differ = sum(
        1
        for got, want in zip(results, expected)
        if got is None or got.raw_score != want.raw_score or not np.array_equal(got.anomaly_map, want.anomaly_map)
    )
    return {
        "threads": threads,
        "frames": len(frames),
        "images_per_s": round(len(frames) / seconds, 2),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "differ_from_sequential": differ,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--runtime", default=None, help="default: the artifact's own runtime")
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--threads", default="1,2,4,8")
    parser.add_argument("--frames-per-thread", type=int, default=200, help="frames per thread at the largest count")
    parser.add_argument("--performance-hint", default=None, help="openvino only: latency or throughput")
    parser.add_argument("--max-rss-growth-mib", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    options = {} if args.performance_hint is None else {"performance_hint": args.performance_hint}
    predictor = Predictor.load(args.model, runtime=args.runtime, **options)
    rng = np.random.default_rng(args.seed)
    size = predictor.metadata.input.height
    base = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(16)]
    ok = True
    head = {"model": str(args.model), "runtime": predictor.runtime, "precision": predictor.metadata.precision.value}
    if args.predictions > 0:
        report = soak(predictor, base, args.predictions)
        ok &= report["rss_growth_mib"] <= args.max_rss_growth_mib
        print(json.dumps({**head, "soak": report}), flush=True)
    if thread_counts:
        total = max(thread_counts) * args.frames_per_thread
        frames = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(total)]
        expected = [predictor.predict(f) for f in frames]  # sequential answer, one thread
        for threads in thread_counts:
            report = threads_run(predictor, frames, threads, expected)
            ok &= report["errors"] == 0 and report["differ_from_sequential"] == 0
            print(json.dumps({**head, "threads_run": report}), flush=True)
    predictor.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
