"""The synthetic criterion for ``fused`` settings, on built artifacts (issue 13; no defect used).

Each run directory is a ``fused`` (or ``fractalad``) model; the criterion is image AUROC,
pixel AUROC and AUPRO of the artifact's own map and image score on the normal images the
memory build held out (its ``config.json`` ``holdout``), half of them with a pasted fractal
anomaly (the package's calibration generator, with a seed the build did not use: the build
fits the fusion on seed 2 and thresholds on seed 1). Every run scored against the same
held-out images (same data and build seed) sees the same synthetic set, so the rows compare.
test/ is never read here.

    python scripts/fused_select.py score RUN [RUN ...] --out rows.jsonl [--holdout-from RUN] [--seed 100 --count 120] [--maps-dir DIR]
    # is a difference between two runs more than the synthetic set's sampling noise? (paired bootstrap over images)
    python scripts/fused_select.py compare DIR/A.npz DIR/B.npz [--boot 200]

``--holdout-from`` takes the held-out list from another run (for a ``fractalad`` run, which
has none: use a ``fused`` build on it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
from fractalad_edge.metrics import evaluate_maps
from fractalad_edge.predictor import Predictor
from fractalad_edge.preprocess import image_scores
from fractalad_edge.quantize import mask_at


def held_out(run: Path) -> tuple[list[str], bool]:
    """The run's held-out normal images and whether its synthetic anomalies are placed on the object."""
    config = json.loads((run / "config.json").read_text())
    paths = config.get("holdout") or []
    if not paths:
        msg = f"{run}/config.json lists no held-out images (a fractalad run?); pass --holdout-from a fused build on it"
        raise SystemExit(msg)
    placement = bool(((config.get("train") or {}).get("synth") or {}).get("object_placement", False))
    return paths, placement


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="the criterion of each run")
    score.add_argument("runs", nargs="+", type=Path)
    score.add_argument("--out", type=Path, required=True, help="JSON lines, one per run (appended)")
    score.add_argument("--holdout-from", type=Path, default=None)
    score.add_argument("--seed", type=int, default=100)
    score.add_argument("--count", type=int, default=120, help="synthetic images (half with an anomaly)")
    score.add_argument("--maps-dir", type=Path, default=None, help="also save each run's maps, labels and masks (NAME.npz) for paired bootstraps")
    compare = commands.add_parser("compare", help="B - A on the same synthetic set, with a paired bootstrap over images")
    compare.add_argument("a", type=Path)
    compare.add_argument("b", type=Path)
    compare.add_argument("--boot", type=int, default=200)
    args = parser.parse_args(argv)
    return cmd_score(args) if args.command == "score" else cmd_compare(args)


def _metrics(data: dict[str, np.ndarray], pick: np.ndarray) -> np.ndarray:
    m = evaluate_maps(data["labels"][pick], data["image_scores"][pick], data["masks"][pick], data["maps"][pick])
    return 100 * np.array([m.image_auroc, m.pixel_auroc, m.aupro])


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = (dict(np.load(p)) for p in (args.a, args.b))
    if not (np.array_equal(a["labels"], b["labels"]) and np.array_equal(a["masks"], b["masks"])):
        raise SystemExit("the two files hold different synthetic sets (score both with the same held-out images, seed and count)")
    n = len(a["labels"])
    everything = np.arange(n)
    diff = _metrics(b, everything) - _metrics(a, everything)
    rng = np.random.default_rng(0)
    normal, anomalous = np.flatnonzero(a["labels"] == 0), np.flatnonzero(a["labels"] == 1)
    boots = []
    for _ in range(args.boot):  # stratified: the same number of normal and anomalous images each draw
        pick = np.concatenate([rng.choice(normal, normal.size), rng.choice(anomalous, anomalous.size)])
        boots.append(_metrics(b, pick) - _metrics(a, pick))
    low, high = np.percentile(np.array(boots), [2.5, 97.5], axis=0)
    row = {"a": str(args.a), "b": str(args.b), "images": n, "boot": args.boot}
    for i, name in enumerate(("image_auroc", "pixel_auroc", "aupro")):
        row[name] = {"b_minus_a": round(float(diff[i]), 3), "ci95": [round(float(low[i]), 3), round(float(high[i]), 3)]}
    print(json.dumps(row), flush=True)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    sets: dict[tuple[tuple[str, ...], bool], object] = {}
    for run in args.runs:
        paths, placement = held_out(args.holdout_from or run)
        key = (tuple(paths), placement)
        if key not in sets:
            config = CalibrationConfig(count=args.count, validation_count=0, seed=args.seed, object_placement=placement, hold_out=False)
            sets[key] = build_calibration_sets(paths, config)[0]
        synthetic = sets[key]
        started = time.perf_counter()
        predictor = Predictor.load(run)
        maps = predictor.raw_maps(synthetic.images, channel_order="rgb").astype(np.float64)
        height, width = maps.shape[1:]
        masks = np.stack([mask_at(s.mask, height, width) & s.is_anomalous for s in synthetic])
        labels = synthetic.labels
        metrics = evaluate_maps(labels, image_scores(maps, predictor.metadata.score), masks, maps)
        memory = predictor.metadata.model.get("memory") or {}
        row = {
            "run": str(run), "seed": args.seed, "count": len(synthetic), "holdout_images": len(paths),
            "image_auroc": round(100 * metrics.image_auroc, 2), "pixel_auroc": round(100 * metrics.pixel_auroc, 2),
            "aupro": round(100 * metrics.aupro, 2),
            "fusion": memory.get("fusion"), "head_space": memory.get("head_space"), "grid_stride": memory.get("grid_stride"),
            "size": memory.get("size"), "blur_sigma": memory.get("blur_sigma"), "stats": memory.get("stats"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        predictor.close()
        if args.maps_dir is not None:
            args.maps_dir.mkdir(parents=True, exist_ok=True)
            np.savez(args.maps_dir / f"{run.name}.npz", maps=maps.astype(np.float32), labels=labels, masks=masks,
                     image_scores=image_scores(maps, predictor.metadata.score))
        print(json.dumps(row), flush=True)
        with args.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
