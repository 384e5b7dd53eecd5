"""Latency of the full pipeline for several head widths C, every runtime, one process.

Accuracy does not enter here, so each model is trained for 2 steps only (teacher weights
are the real ImageNet ones; student and head are barely trained) and exported with the
SDK's own exporters (INT8 calibrated on synthetic anomalies of ``--data``'s normals).
All predictors are then timed in interleaved rounds, as the bench does, so a drifting
machine lands on every configuration alike.

    python docs/experiments/scripts/head_width_latency.py --data $DATA/mvtec_ad/bottle --widths 24,32,64
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CONFIGS = ("torch", "onnx-fp32", "openvino-fp32", "openvino-int8")


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fractalad_edge.cli", *args], check=True, stdout=subprocess.DEVNULL)


def build(work: Path, data: str, width: int) -> dict[str, Path]:
    run = work / f"c{width}"
    cli("train", "--data", data, "--out", str(run), "--steps", "2", "--batch-size", "2", "--head-channels", str(width))
    paths = {"torch": run}
    for name in CONFIGS[1:]:
        fmt, precision = name.split("-")
        out = work / f"c{width}-{name}"
        extra = ["--allow-accuracy-drop"] if precision == "int8" else []
        cli("export", str(run), "--format", fmt, "--precision", precision, "--out", str(out), *extra)
        paths[name] = out
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--widths", default="32,64")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=4)
    args = parser.parse_args()

    import torch

    torch.set_flush_denormal(True)
    from fractalad_edge.bench.latency import LatencyStats, PredictorTimer, interleaved_rounds
    from fractalad_edge.predictor import Predictor

    widths = [int(w) for w in args.widths.split(",")]
    with tempfile.TemporaryDirectory(prefix="head-width-") as tmp:
        predictors = {}
        for width in widths:
            print(f"building C={width}", flush=True)
            for name, path in build(Path(tmp), args.data, width).items():
                predictors[(width, name)] = Predictor.load(path)
        frame = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        tasks = {key: PredictorTimer(predictor, frame, [frame]).full for key, predictor in predictors.items()}
        times = interleaved_rounds(tasks, runs=args.rounds * args.per_round, rounds=args.rounds, warmup=5, settle=2)
    print("| C | config | p50 ms (p10-p90) | vs torch, same C |")
    print("|---|---|---|---|")
    for (width, name), values in times.items():
        stats = LatencyStats.from_seconds(values)
        base = LatencyStats.from_seconds(times[(width, "torch")]).p50_ms
        print(f"| {width} | {name} | {stats.p50_ms:.1f} ({stats.p10_ms:.1f}-{stats.p90_ms:.1f}) | {base / stats.p50_ms:.2f}x |")


if __name__ == "__main__":
    main()
