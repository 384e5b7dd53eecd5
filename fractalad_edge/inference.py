"""Batch prediction over image files: JSON lines + overlay PNGs, bad files reported and skipped.

A production line must not stop because one frame on disk is truncated: each failure is
written as its own record with the reason, and the rest are scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fractalad_edge.data.images import IMAGE_SUFFIXES, read_image
from fractalad_edge.errors import DatasetNotFoundError, FractalADError, ImageReadError
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


def overlay_png(image: np.ndarray, anomaly_map: np.ndarray) -> bytes:
    """The image | heat map panel of one prediction, encoded as PNG bytes (RGB image in)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(overlay(image, anomaly_map), cv2.COLOR_RGB2BGR))
    if not ok:
        msg = f"OpenCV could not encode the overlay of a {image.shape} image as PNG"
        raise ImageReadError(msg)
    return encoded.tobytes()


@dataclass(frozen=True, kw_only=True)
class ScoredFile:
    """One input file's outcome: the read error, or ``AnomalyResult.to_dict()`` and its overlay PNG."""

    path: Path
    error: str | None = None
    result: dict[str, Any] | None = None
    overlay: bytes | None = None


def score_files(predictor: Predictor, paths: Sequence[Path], *, overlays: bool) -> list[ScoredFile]:
    """Read and score ``paths`` as one batch, in their order; a file that cannot be read becomes its error."""
    images: list[np.ndarray] = []
    errors: list[str | None] = []
    for path in paths:
        try:
            images.append(read_image(path))
            errors.append(None)
        except FractalADError as exc:
            errors.append(str(exc))
    scored = iter(zip(images, predictor.predict_batch(images) if images else []))
    outcomes = []
    for path, error in zip(paths, errors):
        if error is not None:
            outcomes.append(ScoredFile(path=path, error=error))
            continue
        image, result = next(scored)
        png = overlay_png(image, result.anomaly_map) if overlays else None
        outcomes.append(ScoredFile(path=path, result=result.to_dict(), overlay=png))
    return outcomes


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
    writer = PredictionWriter(out, echo=echo)
    try:
        for start in range(0, len(files), batch_size):
            for scored in score_files(predictor, files[start : start + batch_size], overlays=writer.out is not None):
                writer.write(scored)
    finally:
        writer.close()
        predictor.close()
    return writer.summary()


class PredictionWriter:
    """predictions.jsonl rows, overlay PNGs, console lines and counts for a stream of scored files.

    Shared by the local loop above and the Ray engine (fractalad_edge/distributed/batch_predict.py),
    so both write the same rows in the order they are handed in.
    """

    def __init__(self, out: str | Path | None, *, echo: Callable[[str], None] = print) -> None:
        self.out = Path(out) if out is not None else None
        self.echo = echo
        self.total = self.anomalous = self.failed = 0
        if self.out is not None:
            (self.out / "overlays").mkdir(parents=True, exist_ok=True)
        self._records = open(self.out / RESULTS_FILENAME, "w") if self.out is not None else None

    def write(self, scored: ScoredFile) -> None:
        """One file's row (a result, or the reason it was skipped), its console line and overlay."""
        self.total += 1
        path = scored.path
        if scored.error is not None or scored.result is None:
            self.failed += 1
            self.echo(f"skipped {path}: {scored.error}")
            if self._records is not None:
                self._records.write(json.dumps({"image": str(path), "error": scored.error}) + "\n")
            return
        result = scored.result
        self.anomalous += int(result["pred_label"])
        self.echo(f"{path}: score {result['pred_score']:.3f} {'ANOMALOUS' if result['pred_label'] else 'ok'}")
        if self._records is not None:
            self._records.write(json.dumps({"image": str(path), **result}) + "\n")
        if self.out is not None and scored.overlay is not None:
            (self.out / "overlays" / f"{path.stem}.png").write_bytes(scored.overlay)

    def close(self) -> None:
        if self._records is not None:
            self._records.close()
            self._records = None

    def summary(self) -> PredictSummary:
        scored = self.total - self.failed
        self.echo(
            f"{scored} images scored, {self.anomalous} anomalous, {self.failed} failed"
            + (f"; results in {self.out}" if self.out else "")
        )
        return PredictSummary(total=self.total, anomalous=self.anomalous, failed=self.failed, out=self.out)
