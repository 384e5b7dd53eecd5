"""Per-layer time of an OpenVINO artifact on the CPU (PERF_COUNT), grouped by op type.

    python docs/experiments/scripts/openvino_profile.py bench/bottle-c32/models/openvino-int8/model.xml
"""

from __future__ import annotations

import argparse
import collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model.xml of an exported artifact")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    import numpy as np
    import openvino as ov

    core = ov.Core()
    model = core.read_model(args.model)
    config = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    request = core.compile_model(model, "CPU", config).create_infer_request()
    shape = [d.get_length() for d in model.input(0).get_partial_shape()]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(10):
        request.infer({0: x})
    by_type: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    kernel: dict[str, str] = {}
    for _ in range(args.runs):
        request.infer({0: x})
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1e3 / args.runs
            by_type[info.node_type] += ms
            by_node[info.node_name] += ms
            kernel[info.node_name] = info.exec_type
    total = sum(by_type.values())
    print(f"total {total:.2f} ms per inference (profiling on)")
    for name, ms in by_type.most_common(args.top):
        print(f"{name:24s} {ms:7.2f} ms  {100 * ms / total:5.1f} %")
    print()
    for name, ms in by_node.most_common(args.top):
        print(f"{name[:64]:64s} {ms:6.2f} ms  {kernel[name]}")


if __name__ == "__main__":
    main()
