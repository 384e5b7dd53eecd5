"""Batch prediction over image files: JSON lines + overlay PNGs, bad files reported and skipped.

A production line must not stop because one frame on disk is truncated: each failure is
written as its own record with the reason, and the rest are scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fractalad_edge.data.images import IMAGE_SUFFIXES, read_image
from fractalad_edge.errors import DatasetNotFoundError, FractalADError
from fractalad_edge.predictor import Predictor
from fractalad_edge.preprocess import overlay

RESULTS_FILENAME = "predictions.jsonl"


@dataclass(frozen=True, kw_only=True)
class PredictSummary:
    total: int
    anomalous: int
    failed: int
    out: Path | None


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted); missing paths are an error up front."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            files.append(path)
        else:
            msg = f"input not found: {path}"
            raise DatasetNotFoundError(msg)
    if not files:
        msg = f"no images found in {', '.join(map(str, inputs))} (accepted: {', '.join(IMAGE_SUFFIXES)})"
        raise DatasetNotFoundError(msg)
    return files


def predict_files(
    model: str | Path,
    inputs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    runtime: str | None = None,
    device: str = "cpu",
    batch_size: int = 1,
    echo: Callable[[str], None] = print,
) -> PredictSummary:
    predictor = Predictor.load(model, runtime=runtime, device=device, channel_order="rgb")
    files = expand_inputs(inputs)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    records = open(out_dir / RESULTS_FILENAME, "w") if out_dir is not None else None
    anomalous = failed = 0
    try:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            images: list[np.ndarray] = []
            good: list[Path] = []
            for path in chunk:
                try:
                    images.append(read_image(path))
                    good.append(path)
                except FractalADError as exc:
                    failed += 1
                    echo(f"skipped {path}: {exc}")
                    if records is not None:
                        records.write(json.dumps({"image": str(path), "error": str(exc)}) + "\n")
            if not images:
                continue
            for path, image, result in zip(good, images, predictor.predict_batch(images)):
                anomalous += result.pred_label
                record = {"image": str(path), **result.to_dict()}
                echo(f"{path}: score {result.pred_score:.3f} {'ANOMALOUS' if result.pred_label else 'ok'}")
                if records is not None:
                    records.write(json.dumps(record) + "\n")
                    panel = overlay(image, result.anomaly_map)
                    cv2.imwrite(str(out_dir / "overlays" / f"{path.stem}.png"), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
    finally:
        if records is not None:
            records.close()
        predictor.close()
    scored = len(files) - failed
    echo(f"{scored} images scored, {anomalous} anomalous, {failed} failed" + (f"; results in {out_dir}" if out_dir else ""))
    return PredictSummary(total=len(files), anomalous=anomalous, failed=failed, out=out_dir)
