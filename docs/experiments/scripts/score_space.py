"""Score spaces on a real test set: decisions across runtimes, normalised scores, metrics.

Runs every artifact given on the labelled test set with the package's own Predictor path
(pre-processing, runtime, score reduction, the artifact's calibration) and reports, per
artifact: its score space and normalisation, thresholds, image decisions that agree with a
reference artifact (each at its own threshold), the median normalised score of defective
and of good images, image/pixel AUROC and AUPRO. With ``--host-logit SIGMOID=LOGIT`` it
also measures what ``logit(p)`` computed on the host from a sigmoid export loses against
the logits a logit export outputs (float32 saturation of the sigmoid).

    python docs/experiments/scripts/score_space.py --data DATA/bottle \
        --artifact before/torch=OUT/before/torch ... --reference before/torch=before/ --out results.json

Used by score_space.sh (docs/experiments/score-space.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fractalad_edge.data.test_set import load_test_set
from fractalad_edge.metrics import evaluate_maps
from fractalad_edge.predictor import Predictor
from fractalad_edge.preprocess import calibrated_scores, convert_maps, decisions, image_scores
from fractalad_edge.score_space import ScoreSpace


def _pair(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    if not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def measure(
    data: Path,
    artifacts: dict[str, Path],
    references: dict[str, str],
    host_logit: dict[str, str],
    options: dict[str, dict[str, str]] | None = None,
) -> dict:
    """``options``: runtime options per artifact name (e.g. ``{"inference_precision": "bf16"}``)."""
    options = options or {}
    first = Predictor.load(next(iter(artifacts.values())))
    test_set = load_test_set(data, first.metadata.input.height)
    first.close()
    labels = np.array([s.label for s in test_set.samples])
    names = [f"{s.defect}/{s.image_path.name}" for s in test_set.samples]
    rows: dict[str, dict] = {}
    maps_by: dict[str, np.ndarray] = {}
    decided: dict[str, np.ndarray] = {}
    specs = {}
    for name, path in artifacts.items():
        tic = time.perf_counter()
        predictor = Predictor.load(path, **options.get(name, {}))
        metadata = predictor.metadata
        maps = predictor.raw_maps(test_set.images, channel_order="rgb")
        predictor.close()
        spec, cal = metadata.score, metadata.calibration
        specs[name] = spec
        raw = image_scores(maps, spec)
        normalised = calibrated_scores(raw, spec, cal)
        decided[name] = decisions(maps, spec, cal)
        maps_by[name] = maps
        metrics = evaluate_maps(labels, raw, test_set.masks, maps)
        rows[name] = {
            "path": str(path),
            "runtime_options": options.get(name, {}),
            "format": metadata.format.value,
            "precision": metadata.precision.value,
            "space": metadata.score_space.value,
            "normalization": None if cal is None else cal.normalization.value,
            "image_threshold": None if cal is None else cal.image_threshold,
            "image_min": None if cal is None else cal.image_min,
            "image_max": None if cal is None else cal.image_max,
            "pixel_threshold": None if cal is None else cal.pixel_threshold,
            "image_auroc": metrics.image_auroc,
            "pixel_auroc": metrics.pixel_auroc,
            "aupro": metrics.aupro,
            "median_normalised_defect": float(np.median(normalised[labels == 1])),
            "median_normalised_good": float(np.median(normalised[labels == 0])),
            "normalised_defect_quartiles": [float(q) for q in np.percentile(normalised[labels == 1], [25, 50, 75])],
            "median_normalised_by_type": {
                defect: float(np.median(normalised[[s.defect == defect for s in test_set.samples]]))
                for defect in sorted({s.defect for s in test_set.samples})
            },
            "normalised": [round(float(v), 5) for v in normalised],
            "flagged": int(decided[name].sum()),
            "false_alarms": int((decided[name] & (labels == 0)).sum()),
            "missed": int((~decided[name] & (labels == 1)).sum()),
            # how close the closest call is: the smallest |normalised - 0.5| over the test set
            "closest_call": float(np.min(np.abs(normalised - 0.5))),
            "seconds": time.perf_counter() - tic,
        }
        print(f"{name}: {json.dumps({k: v for k, v in rows[name].items() if k not in ('path', 'normalised')})}", flush=True)
    for name, reference in references.items():
        prefix = name.rstrip("/")
        for other in rows:
            if other.startswith(prefix + "/") and reference in decided:
                agree = decided[other] == decided[reference]
                rows[other]["reference"] = reference
                rows[other]["decisions_agree"] = f"{int(agree.sum())}/{agree.size}"
                rows[other]["disagree_on"] = [names[i] for i in np.flatnonzero(~agree)]
    host = {}
    for sigmoid_name, logit_name in host_logit.items():
        p, z = maps_by[sigmoid_name], maps_by[logit_name]
        assert rows[sigmoid_name]["space"] == ScoreSpace.SIGMOID.value and rows[logit_name]["space"] == ScoreSpace.LOGIT.value
        recovered = convert_maps(p, ScoreSpace.SIGMOID, ScoreSpace.LOGIT)
        saturated = p >= np.float32(1.0)
        diff = np.abs(recovered.astype(np.float64) - z)
        unsat = ~saturated
        host[f"{sigmoid_name} -> {logit_name}"] = {
            "pixels_saturated_fraction": float(saturated.mean()),
            "images_with_saturated_pixels": int(saturated.reshape(len(p), -1).any(axis=1).sum()),
            "max_abs_logit_diff_unsaturated": float(diff[unsat].max()) if unsat.any() else None,
            "median_abs_logit_diff_unsaturated": float(np.median(diff[unsat])) if unsat.any() else None,
            "logit_range_of_saturated_pixels": [float(z[saturated].min()), float(z[saturated].max())] if saturated.any() else None,
            "max_abs_image_score_diff": float(np.abs(image_scores(recovered, specs[logit_name]) - image_scores(z, specs[logit_name])).max()),
        }
        print(f"host logit {sigmoid_name} -> {logit_name}: {json.dumps(host[f'{sigmoid_name} -> {logit_name}'])}", flush=True)
    return {"data": str(data), "images": len(labels), "defective": int(labels.sum()), "artifacts": rows, "host_logit": host}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="MVTec category folder (test/, ground_truth/)")
    parser.add_argument("--artifact", type=_pair, action="append", required=True, help="NAME=PATH (NAME: group/label)")
    parser.add_argument("--reference", type=_pair, action="append", default=[], help="GROUP=NAME: decisions of GROUP/* vs NAME")
    parser.add_argument("--host-logit", type=_pair, action="append", default=[], help="SIGMOID_NAME=LOGIT_NAME")
    parser.add_argument(
        "--variant", action="append", default=[],
        help="NAME:KEY=VALUE: NAME run again with the runtime option KEY=VALUE, as NAME@VALUE (e.g. inference_precision=bf16)",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    artifacts = {n: Path(p) for n, p in args.artifact}
    options: dict[str, dict[str, str]] = {}
    for variant in args.variant:
        base, _, option = variant.partition(":")
        key, _, value = option.partition("=")
        artifacts[f"{base}@{value}"] = artifacts[base]
        options[f"{base}@{value}"] = {key: value}
    result = measure(args.data, artifacts, dict(args.reference), dict(args.host_logit), options)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
