"""torch vs faiss-cpu for the memory build's two search jobs (issue 13: "a well-kept library unless measured otherwise").

1. exact nearest-neighbour distances of query patches to the memory (what the build runs to
   normalise and calibrate): ``faiss.IndexFlatL2.search`` vs the package's
   ``MemoryBranch.distances`` (one MatMul plus norms, ReduceMin);
2. one greedy k-center pick (the coreset loop): faiss has no k-center; its building block for
   "distances of every row to one new centre" is ``IndexFlatL2`` searched with every row,
   against the package's single row-vector x matrix product (``greedy_coreset``).

Same data, one thread each, several repeats; prints JSON lines. Run:
    python scripts/memory_search_bench.py --queries 8192 --memory 16000 --dim 152
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def timed(fn, repeats: int) -> tuple[float, object]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=8192)
    p.add_argument("--memory", type=int, default=16000)
    p.add_argument("--dim", type=int, default=152)
    p.add_argument("--pool", type=int, default=195_000, help="candidate rows of the greedy loop")
    p.add_argument("--proj", type=int, default=64, help="greedy loop's projected width")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import faiss

    from fractalad_edge.method import MemoryConfig
    from fractalad_edge.models.memory import MemoryBranch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(args.memory, args.dim)).astype(np.float32)
    queries = (bank[rng.integers(0, args.memory, args.queries)] + rng.normal(0, 0.5, (args.queries, args.dim))).astype(np.float32)

    branch = MemoryBranch(MemoryConfig(size=args.memory, grid_stride=16), stage_channels=(16, 24, 40, 112, 320),
                          stage_strides=(2, 4, 8, 16, 32), input_size=256)
    branch.set_bank(torch.from_numpy(bank))
    q = torch.from_numpy(queries)

    def torch_search() -> np.ndarray:
        with torch.inference_mode():
            return torch.cat([branch.distances(q[i : i + 1024][None])[0] for i in range(0, len(q), 1024)]).numpy()

    index = faiss.IndexFlatL2(args.dim)
    index.add(bank)

    def faiss_search() -> np.ndarray:
        d2, _ = index.search(queries, 1)
        return np.sqrt(np.maximum(d2[:, 0], 0))

    t_torch, d_torch = timed(torch_search, args.repeats)
    t_faiss, d_faiss = timed(faiss_search, args.repeats)
    print(json.dumps({"job": "nearest distance", "queries": args.queries, "memory": args.memory, "dim": args.dim,
                      "torch_s": round(t_torch, 3), "faiss_s": round(t_faiss, 3),
                      "max_abs_diff": float(np.abs(d_torch - d_faiss).max())}), flush=True)

    z = torch.from_numpy(rng.normal(size=(args.pool, args.proj)).astype(np.float32))
    columns, sqnorm = z.t().contiguous(), z.pow(2).sum(1)
    out = torch.empty(1, args.pool)

    def torch_pick() -> torch.Tensor:
        torch.matmul(z[7].unsqueeze(0), columns, out=out)
        return out.mul_(-2.0).add_(sqnorm).add_(sqnorm[7])

    zn = z.numpy()
    centre = faiss.IndexFlatL2(args.proj)
    centre.add(zn[7:8])

    def faiss_pick() -> np.ndarray:
        d2, _ = centre.search(zn, 1)
        return d2[:, 0]

    t_tp, a = timed(torch_pick, args.repeats * 5)
    t_fp, b = timed(faiss_pick, args.repeats * 5)
    print(json.dumps({"job": "one greedy pick", "pool": args.pool, "dim": args.proj, "torch_ms": round(1000 * t_tp, 2),
                      "faiss_ms": round(1000 * t_fp, 2), "max_abs_diff": float(np.abs(a[0].numpy() - b).max())}), flush=True)


if __name__ == "__main__":
    main()
