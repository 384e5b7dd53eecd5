"""Design study for the nearest-neighbour memory branch (issue 13), on the frozen Lite0 teacher.

Three steps, each re-runnable as is (CPU; wrap in ``nice -n 10`` on a shared machine):

    # 1. cache teacher features (and the FractalAD head's logits when --model is given)
    python scripts/memory_study.py features --data DATA --model RUN --cache DIR
    # 2. memory-only variants: features, pooling, projection, coreset size, blur, scoring
    python scripts/memory_study.py memory --cache DIR --variant NAME [...]
    # 3. fusion with the FractalAD head and threshold calibration without real defects
    python scripts/memory_study.py fuse --cache DIR --variant NAME

train/good is split once (seed 0) into 80 % memory images and 20 % held-out normals; the
held-out images (and fractal anomalies pasted into them, made by the package's own
generator) give every statistic that normalises, fuses or thresholds. test/ is used only to
score. Results go to DIR/results.jsonl, one JSON line per evaluated setting.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fractalad_edge.data.datasets import find_training_images
from fractalad_edge.data.images import read_image
from fractalad_edge.data.test_set import load_test_set
from fractalad_edge.calibration.thresholds import f1_threshold
from fractalad_edge.metrics import binary_rates, evaluate_maps, f1_max, roc_auc
from fractalad_edge.models.attention import cosine_similarity_attention
from fractalad_edge.preprocess import normalize, resize_image
from fractalad_edge.synth.anomaly import FractalAnomalyGenerator, SynthConfig

SIZE = 256
STRIDES = (4, 8, 16)
HOLDOUT = 0.2


# --------------------------------------------------------------------------- step 1: cache


def _load_model(run: Path):
    from fractalad_edge.artifact import read_metadata
    from fractalad_edge.models.torch_format import load_model

    return load_model(run, read_metadata(run))


@torch.inference_mode()
def _forward(model, teacher, images: list[np.ndarray], batch: int = 16) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    feats: dict[int, list[np.ndarray]] = {s: [] for s in STRIDES}
    logits: list[np.ndarray] = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(normalize(np.stack(images[i : i + batch]), teacher.spec.mean, teacher.spec.std))
        t = teacher(x)
        for s, f in zip(STRIDES, t[:3]):
            feats[s].append(f.numpy().astype(np.float16))
        if model is not None:
            head_in = t if model.student is None else cosine_similarity_attention(t, model.student(x))
            logits.append(model.head(head_in)[:, 0].numpy().astype(np.float16))
    return {s: np.concatenate(v) for s, v in feats.items()}, (np.concatenate(logits) if logits else None)


def cmd_features(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    model = _load_model(Path(args.model)) if args.model else None
    if model is not None:
        teacher = model.teacher
    else:
        from fractalad_edge.models.backbones import build_backbone

        teacher = build_backbone("efficientnet_lite0", pretrained=True, input_size=SIZE).eval()
    paths = find_training_images(args.data)
    order = np.random.default_rng(0).permutation(len(paths))
    n_hold = int(round(HOLDOUT * len(paths)))
    hold_paths = [paths[i] for i in order[:n_hold]]
    mem_paths = [paths[i] for i in order[n_hold:]]
    load = lambda ps: [resize_image(read_image(p), SIZE, SIZE) for p in ps]  # noqa: E731
    t0 = time.perf_counter()
    # synthetic anomalies: one per held-out image, the package's own generator, fixed seeds
    gen = FractalAnomalyGenerator(SynthConfig(image_size=SIZE, object_placement=False))
    syn_imgs, syn_masks = [], []
    for k, p in enumerate(hold_paths):
        sample = gen(read_image(p), np.random.default_rng((2026, k)))
        syn_imgs.append(sample.augmented)
        syn_masks.append(sample.mask > 0.5)
    test = load_test_set(args.data, SIZE)
    sets = {
        "mem": load(mem_paths),
        "hold": load(hold_paths),
        "syn": syn_imgs,
        "test": [resize_image(im, SIZE, SIZE) for im in test.images],
    }
    for name, imgs in sets.items():
        feats, logits = _forward(model if name != "mem" else None, teacher, imgs)
        for s, f in feats.items():
            np.save(cache / f"{name}_s{s}.npy", f)
        if logits is not None:
            np.save(cache / f"{name}_logits.npy", logits)
        print(f"{name}: {len(imgs)} images, {time.perf_counter() - t0:.0f} s", flush=True)
    np.save(cache / "syn_masks.npy", np.stack(syn_masks))
    np.save(cache / "test_masks.npy", test.masks)
    np.save(cache / "test_labels.npy", np.array([s.label for s in test.samples]))
    (cache / "split.json").write_text(json.dumps({"mem": [str(p) for p in mem_paths], "hold": [str(p) for p in hold_paths],
                                                   "test_defects": [s.defect for s in test.samples]}, indent=1))


# --------------------------------------------------------------------------- step 2: memory


@dataclass(frozen=True)
class Variant:
    layers: tuple[int, ...] = (8, 16)  # teacher strides concatenated
    pool: int = 3  # avg-pool neighbourhood (1 = none)
    grid: int = 8  # stride of the patch grid the search runs on
    proj: str = "none"  # none | pca | rand
    dim: int = 0  # projected dimension (0 = all channels)
    pool_size: int = 200_000  # random patches the coreset is chosen from
    sizes: tuple[int, ...] = (4000, 8000, 16000)  # coreset prefixes evaluated
    coreset: str = "greedy"  # greedy | random
    knn: int = 1


def patch_features(cache: Path, split: str, v: Variant) -> torch.Tensor:
    """(N, D, g, g) float32 patch features of one split under variant ``v``."""
    g = SIZE // v.grid
    parts = []
    for s in v.layers:
        f = torch.from_numpy(np.load(cache / f"{split}_s{s}.npy")).float()
        if v.pool > 1:
            f = F.avg_pool2d(f, v.pool, stride=1, padding=v.pool // 2, count_include_pad=False)
        if f.shape[-1] > g:
            f = F.adaptive_avg_pool2d(f, g)
        elif f.shape[-1] < g:
            f = F.interpolate(f, size=(g, g), mode="bilinear", align_corners=False)
        parts.append(f)
    return torch.cat(parts, 1)


def to_rows(f: torch.Tensor) -> torch.Tensor:
    return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])


def fit_projection(rows: torch.Tensor, v: Variant, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, W) with rows -> (rows - mean) @ W, or None for no projection."""
    if v.proj == "none":
        return None
    d_in = rows.shape[1]
    if v.proj == "rand":
        w = torch.randn(d_in, v.dim, generator=gen) / math.sqrt(v.dim)
        return torch.zeros(d_in), w
    sub = rows[torch.randperm(rows.shape[0], generator=gen)[:100_000]]
    mean = sub.mean(0)
    cov = (sub - mean).T @ (sub - mean) / sub.shape[0]
    _, vecs = torch.linalg.eigh(cov)
    return mean, vecs[:, -v.dim :].flip(1).contiguous()


def greedy_coreset(rows: torch.Tensor, m: int, gen: torch.Generator, proj_dim: int = 64) -> torch.Tensor:
    """PatchCore's greedy k-center order (first m picks), distances in a random projection."""
    w = torch.randn(rows.shape[1], proj_dim, generator=gen) / math.sqrt(proj_dim)
    z = rows @ w
    zt = z.T.contiguous()  # (proj_dim, N): the vector-matrix product below streams it once per pick
    z_sq = (z * z).sum(1)
    first = int(torch.randint(z.shape[0], (1,), generator=gen))
    picks = [first]
    mind = z_sq - 2 * (z[first] @ zt) + z_sq[first]
    for _ in range(m - 1):
        i = int(torch.argmax(mind))
        picks.append(i)
        d2 = z[i] @ zt
        d2.mul_(-2).add_(z_sq).add_(z_sq[i])
        torch.minimum(mind, d2, out=mind)
    return torch.tensor(picks)


def nn_distances(q: torch.Tensor, mem: torch.Tensor, bounds: tuple[int, ...], knn: int = 1, chunk: int = 4096) -> torch.Tensor:
    """(len(bounds), Q) distance of each query to its nearest (mean of knn) in mem[:b] per prefix bound."""
    out = torch.empty(len(bounds), q.shape[0])
    mem_sq = (mem**2).sum(1)
    for i in range(0, q.shape[0], chunk):
        x = q[i : i + chunk]
        d2 = (x**2).sum(1, keepdim=True) - 2 * x @ mem.T + mem_sq
        for j, b in enumerate(bounds):
            if knn == 1:
                out[j, i : i + chunk] = d2[:, :b].amin(1)
            else:
                out[j, i : i + chunk] = d2[:, :b].topk(knn, dim=1, largest=False).values.mean(1)
    return out.clamp_min(0).sqrt()


def blur_maps(grid_maps: np.ndarray, sigma: float) -> np.ndarray:
    """(N, g, g) -> (N, 256, 256): bilinear upsampling then Gaussian blur."""
    t = F.interpolate(torch.from_numpy(grid_maps)[:, None].float(), size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    maps = t[:, 0].numpy()
    if sigma > 0:
        k = int(2 * round(4 * sigma) + 1)
        maps = np.stack([cv2.GaussianBlur(m, (k, k), sigma) for m in maps])
    return maps


def evaluate(cache: Path, maps: np.ndarray, image_scores: np.ndarray, pixel: bool = True) -> dict[str, float]:
    labels = np.load(cache / "test_labels.npy")
    if not pixel:
        m = evaluate_maps(labels, image_scores)
        return {"image_auroc": round(100 * m.image_auroc, 2)}
    m = evaluate_maps(labels, image_scores, np.load(cache / "test_masks.npy"), maps)
    return {"image_auroc": round(100 * m.image_auroc, 2), "pixel_auroc": round(100 * m.pixel_auroc, 2),
            "aupro": round(100 * m.aupro, 2), "f1_max": round(100 * m.image_f1_max, 2)}


def build_memory(cache: Path, v: Variant, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    rows = to_rows(patch_features(cache, "mem", v))
    n_rows, d_in = rows.shape
    t0 = time.perf_counter()
    proj = fit_projection(rows, v, gen)
    if proj is not None:
        rows = (rows - proj[0]) @ proj[1]
    pool = rows[torch.randperm(n_rows, generator=gen)[: v.pool_size]] if n_rows > v.pool_size else rows
    m = max(v.sizes)
    if v.coreset == "greedy":
        mem = pool[greedy_coreset(pool, m, gen)]
    else:
        mem = pool[torch.randperm(pool.shape[0], generator=gen)[:m]]
    return mem.contiguous(), proj, {"patches": n_rows, "d_in": d_in, "build_s": round(time.perf_counter() - t0, 1)}


def score_split(cache: Path, split: str, v: Variant, mem: torch.Tensor, proj) -> np.ndarray:
    """(len(sizes), N, g, g) distance maps."""
    f = patch_features(cache, split, v)
    n, _, g, _ = f.shape
    q = to_rows(f)
    if proj is not None:
        q = (q - proj[0]) @ proj[1]
    d = nn_distances(q, mem, v.sizes, v.knn)
    return d.reshape(len(v.sizes), n, g, g).numpy()


def cmd_memory(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    v = Variant(layers=tuple(args.layers), pool=args.pool, grid=args.grid, proj=args.proj, dim=args.dim,
                pool_size=args.pool_size, sizes=tuple(args.sizes), coreset=args.coreset, knn=args.knn)
    mem, proj, info = build_memory(cache, v)
    print(json.dumps({"variant": args.name, **info}), flush=True)
    t0 = time.perf_counter()
    grids = {split: score_split(cache, split, v, mem, proj) for split in args.splits}
    info["score_s"] = round(time.perf_counter() - t0, 1)
    out = Path(args.save) if args.save else None
    for j, m in enumerate(v.sizes):
        if out is not None and m == max(v.sizes):
            out.mkdir(parents=True, exist_ok=True)
            for split, gmap in grids.items():
                np.save(out / f"{split}_grid.npy", gmap[j].astype(np.float32))
            (out / "variant.json").write_text(json.dumps({"name": args.name, **asdict(v)}))
        for sigma in args.sigmas:
            maps = blur_maps(grids["test"][j], sigma)
            res = evaluate(cache, maps, maps.reshape(len(maps), -1).max(1), pixel=sigma in args.pixel_sigmas)
            g = SIZE // v.grid
            dim = v.dim or info["d_in"]
            row = {"variant": args.name, **asdict(v), "M": m, "sigma": sigma, **res, **info,
                   "gmacs": round(g * g * dim * m / 1e9, 3), "mem_mb_fp32": round(m * dim * 4 / 2**20, 2)}
            row.pop("sizes")
            print(json.dumps(row), flush=True)
            with open(cache / "results.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")


# --------------------------------------------------------------------------- step 3: fusion, thresholds


def topk_mean(maps: np.ndarray, fraction: float = 0.001) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    return np.partition(flat, -k, axis=1)[:, -k:].mean(1)


@dataclass(frozen=True)
class TailModel:
    """Survival function of a branch's pixel values on held-out normals, exponential beyond q99.

    ``-log S(x)`` keeps growing past the largest normal value, so a sum of them (noisy-OR of
    tail probabilities in log space) never saturates the way 1 - prod S does in float.
    """

    sorted_values: np.ndarray
    q99: float
    beta: float

    @classmethod
    def fit(cls, values: np.ndarray) -> TailModel:
        v = np.sort(values.reshape(-1).astype(np.float64))
        q99 = float(np.quantile(v, 0.99))
        excess = v[v > q99] - q99
        return cls(v[:: max(1, len(v) // 200_000)], q99, float(excess.mean()) if excess.size else 1.0)

    def neg_log_survival(self, x: np.ndarray) -> np.ndarray:
        body = 1.0 - np.searchsorted(self.sorted_values, x, side="right") / len(self.sorted_values)
        body = np.clip(body, 0.01, 1.0)
        tail = 0.01 * np.exp(-(x - self.q99) / self.beta)
        return -np.log(np.where(x > self.q99, tail, body))


def head_maps(logits: np.ndarray, space: str, sigma: float) -> np.ndarray:
    """The FractalAD branch's map in logit or sigmoid space, optionally Gaussian-blurred."""
    maps = logits.astype(np.float32)
    if space == "sigmoid":
        maps = 1.0 / (1.0 + np.exp(-maps))
    if sigma > 0:
        k = int(2 * round(4 * sigma) + 1)
        maps = np.stack([cv2.GaussianBlur(m, (k, k), sigma) for m in maps])
    return maps


def cmd_fuse(args: argparse.Namespace) -> None:
    cache, grids = Path(args.cache), Path(args.grids)
    labels = np.load(cache / "test_labels.npy")
    syn_masks = np.load(cache / "syn_masks.npy")
    sigma = args.sigma
    raw = {
        "fractalad": {sp: head_maps(np.load(cache / f"{sp}_logits.npy"), args.head_space, args.head_sigma)
                      for sp in ("hold", "syn", "test")},
        "memory": {sp: blur_maps(np.load(grids / f"{sp}_grid.npy"), sigma) for sp in ("hold", "syn", "test")},
    }
    # per-branch normalisation on held-out normal pixels: (x - p50) / (p99.9 - p50)
    norm, stats, tails = {}, {}, {}
    for b, d in raw.items():
        h = d["hold"].reshape(-1)
        p50, p999 = np.quantile(h, [0.5, 0.999])
        norm[b] = {sp: (m - p50) / (p999 - p50) for sp, m in d.items()}
        hz = norm[b]["hold"]
        sz = norm[b]["syn"]
        # separation on synthetic anomalies vs spread on normals (pixel level, normalised units)
        sep = (sz[syn_masks].mean() - hz.mean()) / hz.std()
        img_h, img_s = hz.reshape(len(hz), -1).max(1), sz.reshape(len(sz), -1).max(1)
        img_sep = (np.median(img_s) - np.median(img_h)) / img_h.std()
        syn_auc = roc_auc(np.r_[np.zeros(len(img_h), int), np.ones(len(img_s), int)], np.r_[img_h, img_s])
        stats[b] = {"p50": float(p50), "p999": float(p999), "pixel_sep": float(sep), "image_sep": float(img_sep),
                    "syn_image_auroc": float(syn_auc), "hold_image_p99": float(np.quantile(img_h, 0.99))}
        tails[b] = TailModel.fit(d["hold"])
    wp = {b: max(stats[b]["pixel_sep"], 0.0) for b in raw}
    wi = {b: max(stats[b]["image_sep"], 0.0) for b in raw}
    print(json.dumps({"stats": stats}), flush=True)

    def rule(name: str, sp: str) -> np.ndarray:
        a, m = norm["fractalad"][sp], norm["memory"][sp]
        if name == "fractalad":
            return a
        if name == "memory":
            return m
        if name == "mean":
            return (a + m) / 2
        if name == "max":
            return np.maximum(a, m)
        if name == "noisy_or":
            return tails["fractalad"].neg_log_survival(raw["fractalad"][sp]) + tails["memory"].neg_log_survival(raw["memory"][sp])
        if name == "w_pixel":
            return (wp["fractalad"] * a + wp["memory"] * m) / (wp["fractalad"] + wp["memory"])
        if name == "w_image":
            return (wi["fractalad"] * a + wi["memory"] * m) / (wi["fractalad"] + wi["memory"])
        raise ValueError(name)

    syn_labels = np.r_[np.zeros(len(norm["memory"]["hold"]), int), np.ones(len(syn_masks), int)]
    for name in args.rules:
        maps = rule(name, "test")
        row = {"rule": name, "sigma": sigma, "head_space": args.head_space, "head_sigma": args.head_sigma, "grids": str(grids)}
        for red in ("max", "topk"):
            score = lambda x: x.reshape(len(x), -1).max(1) if red == "max" else topk_mean(x)  # noqa: E731
            test_scores = score(maps)
            cal_scores = np.r_[score(rule(name, "hold")), score(rule(name, "syn"))]
            res = evaluate(cache, maps, test_scores, pixel=red == "max")
            best_f1, _ = f1_max(labels, test_scores)
            thr_f1 = f1_threshold(syn_labels, cal_scores)
            normal_cal = cal_scores[syn_labels == 0]
            thr_fpr = float(np.quantile(normal_cal, 0.99, method="higher"))
            thr_max = float(normal_cal.max())
            row[red] = {**res, "f1_best": round(100 * best_f1, 2),
                        **{f"f1_at_{k}": round(100 * binary_rates(labels, test_scores, t).f1, 2)
                           for k, t in (("synF1", thr_f1), ("fpr1", thr_fpr), ("maxnormal", thr_max))}}
        print(json.dumps(row), flush=True)
        with open(cache / "fusion.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features")
    f.add_argument("--data", required=True)
    f.add_argument("--model", default=None)
    f.add_argument("--cache", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--cache", required=True)
    m.add_argument("--name", required=True)
    m.add_argument("--layers", type=int, nargs="+", default=[8, 16])
    m.add_argument("--pool", type=int, default=3)
    m.add_argument("--grid", type=int, default=8)
    m.add_argument("--proj", default="none", choices=["none", "pca", "rand"])
    m.add_argument("--dim", type=int, default=0)
    m.add_argument("--pool-size", type=int, default=200_000)
    m.add_argument("--sizes", type=int, nargs="+", default=[4000, 8000, 16000])
    m.add_argument("--coreset", default="greedy", choices=["greedy", "random"])
    m.add_argument("--knn", type=int, default=1)
    m.add_argument("--sigmas", type=float, nargs="+", default=[4.0])
    m.add_argument("--pixel-sigmas", type=float, nargs="+", default=[4.0])
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--splits", nargs="+", default=["test", "hold", "syn"], help="splits to score (test is always needed)")
    m.add_argument("--save", default=None, help="folder for the largest memory's distance grids (fusion step)")
    u = sub.add_parser("fuse")
    u.add_argument("--cache", required=True)
    u.add_argument("--grids", required=True, help="a memory run's --save folder")
    u.add_argument("--sigma", type=float, default=4.0)
    u.add_argument("--head-space", default="logit", choices=["logit", "sigmoid"])
    u.add_argument("--head-sigma", type=float, default=0.0)
    u.add_argument("--rules", nargs="+", default=["fractalad", "memory", "mean", "max", "noisy_or", "w_pixel", "w_image"])
    args = p.parse_args()
    {"features": cmd_features, "memory": cmd_memory, "fuse": cmd_fuse}[args.cmd](args)


if __name__ == "__main__":
    main()
