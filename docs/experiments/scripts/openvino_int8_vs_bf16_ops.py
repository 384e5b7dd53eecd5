"""Per-op time of an INT8 IR (float layers bf16) against the fp32 IR of the same run run all in bf16.

Both compiled with the bf16 inference precision, one thread, PERF_COUNT on, called in turn
(so both see the same load); medians per (region, op type) over the calls, in ms.

    python docs/experiments/scripts/openvino_int8_vs_bf16_ops.py S/bq-ov-int8 S/bq-ov-fp32 --calls 30
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("int8", type=Path)
    parser.add_argument("fp32", type=Path)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()

    import numpy as np
    import openvino as ov

    core = ov.Core()
    config = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}
    requests = {
        name: core.compile_model(core.read_model(str(path / "model.xml")), "CPU", config).create_infer_request()
        for name, path in (("int8", args.int8), ("fp32", args.fp32))
    }
    shape = [d.get_length() for d in next(iter(requests.values())).get_compiled_model().input(0).get_partial_shape()]
    frame = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    times: dict[str, dict[tuple[str, str], list[float]]] = {name: collections.defaultdict(list) for name in requests}
    for _ in range(args.calls):
        for name, request in requests.items():
            request.infer({0: frame})
            per: dict[tuple[str, str], float] = collections.defaultdict(float)
            for info in request.profiling_info:
                where = next((r for r in ("teacher", "student") if f"/{r}/" in info.node_name), "head / other")
                ms = info.real_time.total_seconds() * 1e3
                per[(where, info.node_type)] += ms
                per[("total", "")] += ms
            for key, value in per.items():
                times[name][key].append(value)
    print("| region | op type | INT8 IR, float layers bf16 (ms) | fp32 IR, all bf16 (ms) |\n|---|---|---|---|")
    for key in sorted(set(times["int8"]) | set(times["fp32"])):
        a, b = (float(np.median(times[n].get(key, [0.0]))) for n in ("int8", "fp32"))
        if max(a, b) >= 0.2:
            print(f"| {key[0]} | {key[1]} | {a:.2f} | {b:.2f} |")


if __name__ == "__main__":
    main()
