"""Where the time of one ``Predictor.predict`` goes: stages, sub-steps, and OpenVINO layers.

For each artifact, in one process and interleaved rounds (so a contended machine bills every
artifact alike): the full predict, then the same work with a clock between each sub-step of
pre-processing (resize; colour order, normalise, layout), the backend's inference, and
post-processing (finite check, score, calibration, map resize, mask). For OpenVINO artifacts
also a PERF_COUNT profile of the compiled graph, grouped by op type, by kernel and by region
of the network (teacher, student, attention, head).

    python docs/experiments/scripts/edge_speed_profile.py MODEL_DIR [MODEL_DIR ...] \\
        --frame $DATA/mvtec_ad/bottle/test/broken_large/000.png --runs 200 --rounds 10
"""

from __future__ import annotations

import argparse
import collections
import re
import time
from pathlib import Path


def region(name: str) -> str:
    """Coarse part of FractalAD a node belongs to, from its (ONNX-derived) name."""
    for prefix in ("teacher", "student"):
        if f"/{prefix}/" in name or name.startswith(prefix):
            return prefix
    if "/head/" in name or name.startswith("head"):
        part = re.search(r"/head/(\w+?)[./]", name)
        return f"head/{part.group(1)}" if part else "head"
    if any(k in name for k in ("ReduceSum", "Div", "Sqrt", "Mul", "Sub")):
        return "attention / other"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--frame", type=Path, required=True, help="an image to predict (e.g. a test image)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--no-layers", action="store_true", help="skip the PERF_COUNT layer profile")
    parser.add_argument("--threads", type=int, help="INFERENCE_NUM_THREADS for everything (default: OpenVINO's)")
    args = parser.parse_args()

    import numpy as np

    from fractalad_edge.allocator import keep_freed_memory
    from fractalad_edge.bench.latency import LatencyStats, interleaved_rounds
    from fractalad_edge.data.images import read_image_bgr, to_uint8_rgb
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.preprocess import (
        image_scores,
        normalize,
        normalize_image_scores,
        normalize_pixel_map,
        resize_image,
        resize_map,
    )

    keep_freed_memory()
    frame = read_image_bgr(args.frame)
    options = {} if args.threads is None else {"threads": args.threads}
    predictors = {str(path): Predictor.load(path, **options) for path in args.models}

    def staged(predictor: Predictor):  # the work of predict(), clocked between sub-steps
        spec, meta = predictor.metadata.input, predictor.metadata

        def run() -> tuple[float, ...]:
            t = [time.perf_counter()]
            image = resize_image(to_uint8_rgb(frame, channel_order="rgb"), spec.height, spec.width)[None]
            t.append(time.perf_counter())
            if predictor.channel_order != spec.channel_order:
                image = image[..., ::-1]
            batch = np.ascontiguousarray(image) if spec.dtype == "uint8" else normalize(image, spec.mean, spec.std)
            t.append(time.perf_counter())
            sizes = [frame.shape[:2]]
            maps = predictor.backend.infer(batch)
            t.append(time.perf_counter())
            np.isfinite(maps.reshape(maps.shape[0], -1)).all(axis=1)
            t.append(time.perf_counter())
            raw = image_scores(maps, meta.score)
            t.append(time.perf_counter())
            scores, norm = normalize_image_scores(raw, meta.calibration), normalize_pixel_map(maps, meta.calibration)
            t.append(time.perf_counter())
            full = resize_map(np.ascontiguousarray(norm[0], dtype=np.float32), *sizes[0])
            t.append(time.perf_counter())
            _ = full >= 0.5, bool(scores[0] >= 0.5)
            t.append(time.perf_counter())
            return tuple(b - a for a, b in zip(t, t[1:]))

        return run

    def full(predictor: Predictor):
        def run() -> float:
            started = time.perf_counter()
            predictor.predict(frame)
            return time.perf_counter() - started

        return run

    tasks = {}
    for name, predictor in predictors.items():
        tasks[f"{name}|full"] = full(predictor)
        tasks[f"{name}|stages"] = staged(predictor)
    times = interleaved_rounds(tasks, runs=args.runs, rounds=args.rounds, warmup=10, settle=2)
    steps = ("resize", "colour order+normalise+layout", "inference", "finite check", "score (top-k)", "calibration", "map resize", "mask")
    print(f"frame {args.frame} ({frame.shape[1]} x {frame.shape[0]}), {args.runs} calls per series, {args.rounds} interleaved rounds\n")
    print("| model | full predict p50 ms (p10-p90) | " + " | ".join(steps) + " |")
    print("|---|---|" + "---|" * len(steps))
    for name in predictors:
        stats = LatencyStats.from_seconds(times[f"{name}|full"])
        columns = list(zip(*times[f"{name}|stages"]))
        medians = [f"{1e3 * float(np.median(c)):.3f}" for c in columns]
        print(f"| {name} | {stats.p50_ms:.2f} ({stats.p10_ms:.2f}-{stats.p90_ms:.2f}) | " + " | ".join(medians) + " |")

    if args.no_layers:
        return
    import openvino as ov

    core = ov.Core()
    for name, predictor in predictors.items():
        backend = predictor.backend
        if backend.name != "openvino":
            continue
        model = core.read_model(str(predictor.metadata.model_file(Path(name), ".xml")))
        config = {
            "PERF_COUNT": True,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": backend.inference_precision(),  # what the predictor runs (bf16 where its gate passed)
            **({} if args.threads is None else {"INFERENCE_NUM_THREADS": args.threads}),
        }
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        port = compiled.input(0)
        shape = [d.get_length() for d in port.get_partial_shape()]
        x = np.random.default_rng(0).integers(0, 256, shape).astype(port.get_element_type().to_dtype())
        for _ in range(10):
            request.infer({0: x})
        runs = 30
        by_type: collections.Counter[str] = collections.Counter()
        by_kernel: collections.Counter[str] = collections.Counter()
        by_region: collections.Counter[str] = collections.Counter()
        by_node: collections.Counter[str] = collections.Counter()
        kernel: dict[str, str] = {}
        for _ in range(runs):
            request.infer({0: x})
            for info in request.profiling_info:
                ms = info.real_time.total_seconds() * 1e3 / runs
                by_type[info.node_type] += ms
                by_kernel[info.exec_type] += ms
                by_region[region(info.node_name)] += ms
                by_node[info.node_name] += ms
                kernel[info.node_name] = info.exec_type
        total = sum(by_type.values())
        print(f"\n### {name}: {total:.2f} ms per inference with PERF_COUNT on ({len(kernel)} executed nodes)\n")
        for title, counter in (("op type", by_type), ("kernel", by_kernel), ("region", by_region)):
            print(f"| {title} | ms | % |\n|---|---|---|")
            for key, ms in counter.most_common(args.top):
                print(f"| {key} | {ms:.3f} | {100 * ms / total:.1f} |")
            print()
        print("| node | ms | kernel |\n|---|---|---|")
        for key, ms in by_node.most_common(args.top):
            print(f"| {key[:70]} | {ms:.3f} | {kernel[key]} |")


if __name__ == "__main__":
    main()
