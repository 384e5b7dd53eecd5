"""Bottle ``fused`` AUPRO study (issue 13): memory variants and fusion settings on cached maps.

Reads the caches of ``scripts/memory_study.py features`` (teacher features and the FractalAD
head's logits of train/good split into ``mem`` (80 %) and ``hold`` (20 %), of the test set,
and of one fractal anomaly pasted into each held-out image, ``syn``). Three steps:

    # 1. distance grids of a memory variant (memory = mem + hold; hold/syn scored leave-one-image-out)
    python scripts/fused_aupro.py grids CACHE OUT --grid 8 --sizes 2000 4000 [--random | --mix 0.5]
    # 2. fusion settings on those grids: every row has the synthetic criterion and the test numbers
    python scripts/fused_aupro.py fuse CACHE GRIDS [GRIDS ...] --out rows.jsonl --rules mean w0.6 sepw
    # 3. which images decide the image AUROC of a setting
    python scripts/fused_aupro.py images CACHE GRIDS --rule sepw

The synthetic criterion (pixel AUROC / AUPRO / image AUROC of the fused map on the held-out
normals plus their fractal anomalies) uses no defect; test/ only measures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_study import Variant, patch_features, to_rows  # noqa: E402
from memory_variants import distances, greedy_order  # noqa: E402

from fractalad_edge.metrics import evaluate_maps, roc_auc  # noqa: E402

SIZE = 256
SPLITS = ("hold", "syn", "test")


# --------------------------------------------------------------------------- step 1: grids
def cmd_grids(a: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    cache, out = Path(a.cache), Path(a.out)
    v = Variant(grid=a.grid)
    g = SIZE // a.grid
    feats = {sp: patch_features(cache, sp, v) for sp in ("mem", "hold", "syn", "test")}
    mem_imgs = torch.cat([feats["mem"], feats["hold"]])
    rows = to_rows(mem_imgs)
    ids = torch.arange(mem_imgs.shape[0]).repeat_interleave(g * g)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    pool = torch.randperm(rows.shape[0], generator=gen)[: a.pool_size] if rows.shape[0] > a.pool_size else torch.arange(rows.shape[0])
    greedy = None if a.random else pool[greedy_order(rows[pool], max(a.sizes), 0)]
    print(json.dumps({"rows": rows.shape[0], "build_s": round(time.perf_counter() - t0, 1)}), flush=True)
    q = {sp: to_rows(feats[sp]) for sp in SPLITS}
    hold_ids = (torch.arange(feats["hold"].shape[0]) + feats["mem"].shape[0]).repeat_interleave(g * g)
    for m in a.sizes:
        t1 = time.perf_counter()
        if a.random:
            sel = pool[:m]
        elif a.mix:  # the first greedy picks, then random rows of the pool
            n_greedy = int(round(a.mix * m))
            rest = pool[~torch.isin(pool, greedy[:n_greedy])]
            sel = torch.cat([greedy[:n_greedy], rest[: m - n_greedy]])
        else:
            sel = greedy[:m]
        mem, mem_ids = rows[sel].contiguous(), ids[sel]
        tag = "-rand" if a.random else (f"-mix{a.mix}" if a.mix else "")
        d = out / f"g{a.grid}-c152-{m}{tag}"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "test_grid.npy", distances(q["test"], mem, 1).reshape(-1, g, g).numpy())
        for sp in ("hold", "syn"):
            np.save(d / f"{sp}_grid.npy", distances(q[sp], mem, 1, q_ids=hold_ids, mem_ids=mem_ids).reshape(-1, g, g).numpy())
        print(json.dumps({"M": m, "dir": str(d), "score_s": round(time.perf_counter() - t1, 1),
                          "gmacs": round(g * g * 152 * m / 1e9, 3)}), flush=True)


# --------------------------------------------------------------------------- fusion
def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return x
    k = int(2 * round(4 * sigma) + 1)
    return np.stack([cv2.GaussianBlur(m, (k, k), sigma, borderType=cv2.BORDER_REPLICATE) for m in x])


class Maps:
    """Per-split head and memory maps of one cache, computed once per setting."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.logits = {sp: np.load(cache / f"{sp}_logits.npy").astype(np.float32) for sp in SPLITS}
        self.syn_masks = np.load(cache / "syn_masks.npy")

    @lru_cache(None)  # noqa: B019 - one object per run
    def head(self, space: str, sigma: float) -> dict[str, np.ndarray]:
        return {sp: blur(x if space == "logit" else 1 / (1 + np.exp(-x)), sigma) for sp, x in self.logits.items()}

    @lru_cache(None)  # noqa: B019
    def memory(self, grids: str, sigma: float) -> dict[str, np.ndarray]:
        out = {}
        for sp in SPLITS:
            g = torch.from_numpy(np.load(Path(grids) / f"{sp}_grid.npy")).float()[:, None]
            out[sp] = blur(F.interpolate(g, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0].numpy(), sigma)
        return out


def normalise(d: dict[str, np.ndarray], lo_p: float, hi_p: float) -> dict[str, np.ndarray]:
    """``(x - p_lo) / (p_hi - p_lo)`` with percentiles of the held-out normal pixels (as train/memory.py)."""
    lo, hi = np.percentile(d["hold"][:, ::2, ::2], [lo_p, hi_p])
    return {sp: (x - lo) / (hi - lo) for sp, x in d.items()}


def separation_weights(h: dict, m: dict, syn_masks: np.ndarray) -> list[float]:
    """Synthetic separation over normal spread per branch, summing to 1 (train/memory.py ``fit_fusion``)."""
    ws = []
    for z in (h, m):
        zn = z["hold"]
        ws.append(max(float(z["syn"][syn_masks].mean() - np.median(zn)), 0.0) / max(float(zn.std()), 1e-6))
    return [w / sum(ws) for w in ws]


def fuse(rule: str, h: np.ndarray, m: np.ndarray, w: list[float]) -> np.ndarray:
    if rule == "mean":
        return 0.5 * (h + m)
    if rule == "max":
        return np.maximum(h, m)
    if rule == "noisyor":  # exponential tails, as models/memory.py
        r = np.log(1000.0)
        return (np.maximum(r * h + np.log(2), 0) + np.maximum(r * m + np.log(2), 0)) / r
    if rule == "sepw":
        return w[0] * h + w[1] * m
    if rule.startswith("clip"):  # head capped at K (normalised units), then the mean
        return 0.5 * (np.minimum(h, float(rule[4:])) + m)
    if rule.startswith("w"):  # fixed head weight
        wh = float(rule[1:])
        return wh * h + (1 - wh) * m
    raise ValueError(rule)


def metrics(maps: np.ndarray, labels: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    r = evaluate_maps(labels, maps.reshape(len(maps), -1).max(1), masks, maps)
    return {"img": round(100 * r.image_auroc, 2), "pix": round(100 * r.pixel_auroc, 2), "pro": round(100 * r.aupro, 2)}


def fused_maps(maps: Maps, grids: str, space: str, hsig: float, msig: float, perc: str, rule: str, post: float):
    lo_p, hi_p = map(float, perc.split(","))
    h = normalise(maps.head(space, hsig), lo_p, hi_p)
    m = normalise(maps.memory(grids, msig), lo_p, hi_p)
    w = separation_weights(h, m, maps.syn_masks)
    return {sp: blur(fuse(rule, h[sp], m[sp], w).astype(np.float32), post) for sp in SPLITS}, w


def cmd_fuse(a: argparse.Namespace) -> None:
    cache = Path(a.cache)
    maps = Maps(cache)
    labels, masks = np.load(cache / "test_labels.npy"), np.load(cache / "test_masks.npy")
    n_hold = len(maps.logits["hold"])
    cal_masks = np.concatenate([np.zeros((n_hold, SIZE, SIZE), bool), maps.syn_masks])
    cal_labels = np.r_[np.zeros(n_hold, int), np.ones(len(maps.syn_masks), int)]
    with open(a.out, "a") as fh:
        for setting in itertools.product(a.grids, a.head_spaces, a.head_sigmas, a.mem_sigmas, a.percentiles, a.rules, a.post_sigmas):
            t0 = time.perf_counter()
            f, w = fused_maps(maps, *setting)
            row = dict(zip(("grids", "head", "hsig", "msig", "perc", "rule", "post"), setting))
            row.update(grids=Path(setting[0]).name, w_head=round(w[0], 3),
                       syn=metrics(np.concatenate([f["hold"], f["syn"]]), cal_labels, cal_masks),
                       test=metrics(f["test"], labels, masks), s=round(time.perf_counter() - t0, 1))
            print(json.dumps(row), flush=True)
            fh.write(json.dumps(row) + "\n")


def cmd_images(a: argparse.Namespace) -> None:
    cache = Path(a.cache)
    maps = Maps(cache)
    labels = np.load(cache / "test_labels.npy")
    defects = json.loads((cache / "split.json").read_text())["test_defects"]
    f, w = fused_maps(maps, a.grids, a.head_space, 0.0, a.mem_sigma, "50,99.9", a.rule, 0.0)
    h = normalise(maps.head(a.head_space, 0.0), 50, 99.9)["test"]
    m = normalise(maps.memory(a.grids, a.mem_sigma), 50, 99.9)["test"]
    flat = f["test"].reshape(len(labels), -1)
    scores = flat.max(1)
    by_reduction = {"max": round(100 * roc_auc(labels, scores), 2)}
    for frac in (0.001, 0.01):
        k = int(frac * flat.shape[1])
        by_reduction[f"top {frac:g}"] = round(100 * roc_auc(labels, np.sort(flat, 1)[:, -k:].mean(1)), 2)
    good = np.where(labels == 0)[0]
    worst_good = good[scores[good].argmax()]
    below = [(defects[i], round(float(scores[i]), 2)) for i in np.where((labels == 1) & (scores <= scores[worst_good]))[0]]
    print(json.dumps({"grids": Path(a.grids).name, "rule": a.rule, "head_space": a.head_space, "weights": [round(x, 3) for x in w],
                      "image_auroc": by_reduction, "highest_good_image": round(float(scores[worst_good]), 2),
                      "its_head_max": round(float(h[worst_good].max()), 2), "its_memory_max": round(float(m[worst_good].max()), 2),
                      "defects_at_or_below_it": below}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grids")
    g.add_argument("cache")
    g.add_argument("out")
    g.add_argument("--grid", type=int, default=8)
    g.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000])
    g.add_argument("--pool-size", type=int, default=200_000)
    g.add_argument("--random", action="store_true", help="random rows of the pool instead of the greedy coreset")
    g.add_argument("--mix", type=float, default=0.0, help="share of greedy rows, the rest random")
    u = sub.add_parser("fuse")
    u.add_argument("cache")
    u.add_argument("grids", nargs="+")
    u.add_argument("--out", required=True)
    u.add_argument("--head-spaces", nargs="+", default=["sigmoid", "logit"])
    u.add_argument("--head-sigmas", type=float, nargs="+", default=[0.0])
    u.add_argument("--mem-sigmas", type=float, nargs="+", default=[2.0, 4.0])
    u.add_argument("--percentiles", nargs="+", default=["50,99.9"])
    u.add_argument("--rules", nargs="+", default=["mean"])
    u.add_argument("--post-sigmas", type=float, nargs="+", default=[0.0])
    i = sub.add_parser("images")
    i.add_argument("cache")
    i.add_argument("grids")
    i.add_argument("--rule", default="sepw")
    i.add_argument("--head-space", default="sigmoid")
    i.add_argument("--mem-sigma", type=float, default=2.0)
    a = p.parse_args()
    {"grids": cmd_grids, "fuse": cmd_fuse, "images": cmd_images}[a.cmd](a)


if __name__ == "__main__":
    main()
