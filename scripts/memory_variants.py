"""Memory-branch variants on cached teacher features (issue 13, step "defaults by measurement").

Reads the caches of ``scripts/memory_study.py features`` (teacher stride-8/16 features of
train/good split into ``mem`` and ``hold``, of the test set, and fractal anomalies pasted into
the held-out images) and measures, per variant, memory-only accuracy on test/:

* which normal images fill the memory: ``--memory-splits mem`` (80 % of train/good) or
  ``mem hold`` (all of it);
* the search grid (``--grid`` 8 or 16) and the coreset size (nested greedy prefixes);
* neighbours averaged (``--knn``), Gaussian blur ``--sigmas``, and the image score (map max
  or the mean of the top fraction of pixels, ``--topk``).

Normalisation and thresholds without defects when every normal image is in the memory:
each memory row remembers its source image, and a training image is scored against the
memory with its own rows left out (leave-one-image-out). That is compared with the held-out
images' true scores when the memory holds ``mem`` only. Results append to
``--out`` (default ``CACHE/variants.jsonl``).

    python scripts/memory_variants.py --cache /work/scratch/memory-research/mt --grid 16 --memory-splits mem hold
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_study import SIZE, Variant, blur_maps, patch_features, to_rows  # noqa: E402

from fractalad_edge.calibration.thresholds import f1_threshold  # noqa: E402
from fractalad_edge.metrics import binary_rates, evaluate_maps, f1_max  # noqa: E402


def greedy_order(rows: torch.Tensor, m: int, seed: int, proj_dim: int = 64) -> torch.Tensor:
    """Greedy k-center picks (first ``m``), distances in a fixed Gaussian projection (as the package)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows.shape[1], proj_dim, generator=gen) / math.sqrt(proj_dim)
    z = rows @ w
    zt = z.T.contiguous()
    z_sq = (z * z).sum(1)
    nearest = torch.full((z.shape[0],), float("inf"))
    picks = torch.empty(m, dtype=torch.long)
    current = int(torch.randint(z.shape[0], (1,), generator=gen))
    for i in range(m):
        picks[i] = current
        d2 = z[current] @ zt
        d2.mul_(-2).add_(z_sq).add_(z_sq[current])
        torch.minimum(nearest, d2, out=nearest)
        current = int(torch.argmax(nearest))
    return picks


def distances(q: torch.Tensor, mem: torch.Tensor, knn: int, *, q_ids: torch.Tensor | None = None,
              mem_ids: torch.Tensor | None = None, chunk: int = 2048) -> torch.Tensor:
    """(Q,) mean distance to the ``knn`` nearest rows; rows of the query's own image excluded when ids are given."""
    out = torch.empty(q.shape[0])
    mem_sq = (mem**2).sum(1)
    for i in range(0, q.shape[0], chunk):
        x = q[i : i + chunk]
        d2 = (x**2).sum(1, keepdim=True) - 2 * x @ mem.T + mem_sq
        if q_ids is not None:
            d2.masked_fill_(q_ids[i : i + chunk, None] == mem_ids[None, :], float("inf"))
        v = d2.amin(1, keepdim=True) if knn == 1 else d2.topk(knn, dim=1, largest=False).values
        out[i : i + chunk] = v.clamp_min(0).sqrt().mean(1)
    return out


def image_scores(maps: np.ndarray, reduction: str) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    if reduction == "max":
        return flat.max(1)
    k = max(1, int(round(float(reduction) * flat.shape[1])))
    return np.partition(flat, -k, axis=1)[:, -k:].mean(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--memory-splits", nargs="+", default=["mem", "hold"])
    p.add_argument("--hold-in", type=int, default=0,
                   help="with --memory-splits mem: also put the first N held-out images in the memory (the rest stay held out)")
    p.add_argument("--pool-size", type=int, default=200_000)
    p.add_argument("--sizes", type=int, nargs="+", default=[8000, 16000])
    p.add_argument("--knn", type=int, nargs="+", default=[1, 3])
    p.add_argument("--sigmas", type=float, nargs="+", default=[4.0, 8.0])
    p.add_argument("--reductions", nargs="+", default=["max", "0.001", "0.01"])
    p.add_argument("--calib-images", type=int, default=152, help="training images scored leave-one-out for thresholds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="results file (default CACHE/variants.jsonl)")
    p.add_argument("--order", default=None, help="cache file of the greedy order (.pt): reused when it exists")
    p.add_argument("--save", default=None, help="folder for the distance grids of the largest M and first --knn "
                   "(test/hold/syn_grid.npy, read by 'memory_study.py fuse --grids')")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the greedy loop is slower with 2 on a shared CPU)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    v = Variant(grid=args.grid)
    g = SIZE // args.grid
    feats = {sp: patch_features(cache, sp, v) for sp in ("mem", "hold", "syn", "test")}
    mem_imgs = torch.cat([feats[sp] for sp in args.memory_splits])
    if args.hold_in:  # a smaller hold-out: the first N held-out images (and their synthetic copies) join the memory
        mem_imgs = torch.cat([mem_imgs, feats["hold"][: args.hold_in]])
        feats["hold"], feats["syn"] = feats["hold"][args.hold_in :], feats["syn"][args.hold_in :]
    n_img = mem_imgs.shape[0]
    rows = to_rows(mem_imgs)
    ids = torch.arange(n_img).repeat_interleave(g * g)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    if args.order and Path(args.order).is_file():
        order, build_s = torch.load(args.order)
    else:
        pool_idx = torch.randperm(rows.shape[0], generator=gen)[: args.pool_size] if rows.shape[0] > args.pool_size else torch.arange(rows.shape[0])
        order = pool_idx[greedy_order(rows[pool_idx], max(args.sizes), args.seed)]
        build_s = time.perf_counter() - t0
        if args.order:
            torch.save((order, build_s), args.order)
    print(json.dumps({"images": n_img, "patches": rows.shape[0], "build_s": round(build_s, 1)}), flush=True)
    labels = np.load(cache / "test_labels.npy")
    masks = np.load(cache / "test_masks.npy")
    loo = "hold" in args.memory_splits
    # normals for thresholds: held-out images (true hold-out) or, with them in the memory, their leave-one-out scores
    hold_offset = sum(feats[sp].shape[0] for sp in args.memory_splits[: args.memory_splits.index("hold")]) if loo else 0
    for m in args.sizes:
        mem = rows[order[:m]].contiguous()
        mem_ids = ids[order[:m]]
        for knn in args.knn:
            t1 = time.perf_counter()
            test_grid = distances(to_rows(feats["test"]), mem, knn).reshape(-1, g, g).numpy()
            hold_q = to_rows(feats["hold"])
            hold_ids = (torch.arange(feats["hold"].shape[0]) + hold_offset).repeat_interleave(g * g) if loo else None
            hold_grid = distances(hold_q, mem, knn, q_ids=hold_ids, mem_ids=mem_ids if loo else None).reshape(-1, g, g).numpy()
            # synthetic anomalies are pasted into the held-out images: leave their source image out too
            syn_ids = hold_ids
            syn_grid = distances(to_rows(feats["syn"]), mem, knn, q_ids=syn_ids, mem_ids=mem_ids if loo else None).reshape(-1, g, g).numpy()
            score_s = time.perf_counter() - t1
            if args.save and m == max(args.sizes) and knn == args.knn[0]:
                Path(args.save).mkdir(parents=True, exist_ok=True)
                for split, grid_map in (("test", test_grid), ("hold", hold_grid), ("syn", syn_grid)):
                    np.save(Path(args.save) / f"{split}_grid.npy", grid_map.astype(np.float32))
            for sigma in args.sigmas:
                tm, hm, sm = (blur_maps(x, sigma) for x in (test_grid, hold_grid, syn_grid))
                pix = evaluate_maps(labels, image_scores(tm, "max"), masks, tm)
                for red in args.reductions:
                    ts = image_scores(tm, red)
                    cal = np.r_[image_scores(hm, red), image_scores(sm, red)]
                    cal_labels = np.r_[np.zeros(len(hm), int), np.ones(len(sm), int)]
                    thr = f1_threshold(cal_labels, cal)
                    best, _ = f1_max(labels, ts)
                    img = evaluate_maps(labels, ts)
                    row = {"name": args.name, "grid": args.grid, "memory": "+".join(args.memory_splits) + (f"+{args.hold_in}hold" if args.hold_in else ""), "images": n_img,
                           "M": m, "knn": knn, "sigma": sigma, "reduction": red,
                           "image": round(100 * img.image_auroc, 2), "pixel": round(100 * pix.pixel_auroc, 2),
                           "aupro": round(100 * pix.aupro, 2), "f1_best": round(100 * best, 2),
                           "f1_synthetic_thr": round(100 * binary_rates(labels, ts, thr).f1, 2),
                           "build_s": round(build_s, 1), "score_s": round(score_s, 1),
                           "gmacs": round(g * g * 152 * m / 1e9, 3)}
                    print(json.dumps(row), flush=True)
                    with open(args.out or cache / "variants.jsonl", "a") as fh:
                        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
