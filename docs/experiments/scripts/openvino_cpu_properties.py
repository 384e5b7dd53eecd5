"""OpenVINO CPU compile properties on one IR: inference time per call, interleaved in one process.

Each variant is ``DIR`` or ``DIR@KEY=VALUE,KEY=VALUE`` with OpenVINO CPU property names
(e.g. ``INFERENCE_PRECISION_HINT=bf16``, ``CPU_DENORMALS_OPTIMIZATION=YES``,
``INFERENCE_NUM_THREADS=1``, ``TBB_PARTITIONER=STATIC``); the latency hint and the f32
precision hint are the defaults, as in runtimes/openvino.py. Times the compiled model on a
pre-processed test frame (inference only), wall and process CPU time per call.

    python docs/experiments/scripts/openvino_cpu_properties.py S/bq-ov-int8 \\
        "S/bq-ov-int8@INFERENCE_PRECISION_HINT=bf16" "S/bq-ov-int8@CPU_DENORMALS_OPTIMIZATION=YES" \\
        --frame $DATA/mvtec_ad/bottle/test/broken_large/000.png --runs 300 --rounds 6
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--frame", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    import numpy as np
    import openvino as ov

    from fractalad_edge.artifact import read_metadata
    from fractalad_edge.bench.latency import LatencyStats, interleaved_rounds
    from fractalad_edge.data.images import read_image_bgr
    from fractalad_edge.preprocess import prepare_batch

    core = ov.Core()
    frame = read_image_bgr(args.frame)
    tasks = {}
    for text in args.variants:
        path, _, rest = text.partition("@")
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        for item in filter(None, rest.split(",")):
            key, value = item.split("=", 1)
            config[key] = int(value) if value.isdigit() else value
        metadata = read_metadata(path)
        compiled = core.compile_model(core.read_model(metadata.model_file(path, ".xml")), "CPU", config)
        request = compiled.create_infer_request()
        batch = np.ascontiguousarray(prepare_batch([frame], metadata.input, channel_order="bgr")[0])
        print(f"{text}: runs {compiled.get_property('INFERENCE_PRECISION_HINT')}, "
              f"{compiled.get_property('INFERENCE_NUM_THREADS')} threads, {compiled.get_property('NUM_STREAMS')} stream(s)")

        def run(request=request, batch=batch) -> tuple[float, float]:
            started, cpu = time.perf_counter(), time.process_time()
            request.infer({0: batch})
            return time.process_time() - cpu, time.perf_counter() - started

        tasks[text] = run
    times = interleaved_rounds(tasks, runs=args.runs, rounds=args.rounds, warmup=10, settle=2)
    cpu = {name: [t[0] for t in values] for name, values in times.items()}
    wall = {name: [t[1] for t in values] for name, values in times.items()}
    first_cpu = LatencyStats.from_seconds(cpu[args.variants[0]]).p50_ms
    first_wall = LatencyStats.from_seconds(wall[args.variants[0]]).p50_ms
    print(f"\ninference only, {args.runs} calls per variant in {args.rounds} interleaved rounds\n")
    print(f"| variant | CPU ms p50 (p10-p90) | first / this | wall ms p50 (p10-p90) | first / this |\n|---|---|---|---|---|")
    for name in args.variants:
        c = LatencyStats.from_seconds(cpu[name])
        w = LatencyStats.from_seconds(wall[name])
        print(f"| {name} | {c.p50_ms:.2f} ({c.p10_ms:.2f}-{c.p90_ms:.2f}) | {first_cpu / c.p50_ms:.2f}x | "
              f"{w.p50_ms:.2f} ({w.p10_ms:.2f}-{w.p90_ms:.2f}) | {first_wall / w.p50_ms:.2f}x |")


if __name__ == "__main__":
    main()
