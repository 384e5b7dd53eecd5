"""The facade: load any exported model, get a score, a decision and a heat map per frame.

```python
from fractalad_edge import Predictor
p = Predictor.load("models/bottle-ov")      # runtime picked from the artifact
r = p.predict(frame)                        # HxWx3 uint8, BGR by default (OpenCV order)
r.score, r.is_anomalous, r.anomaly_map, r.mask
```
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fractalad_edge.artifact import ArtifactMetadata, ScoreCalibration, read_metadata
from fractalad_edge.errors import ConfigError, InvalidInputError, InvalidOutputError
from fractalad_edge.preprocess import (
    DECISION_THRESHOLD,
    calibrated_maps,
    calibrated_scores,
    frame_list,
    image_scores,
    prepare_batch,
    resize_map,
)
from fractalad_edge.runtimes.base import Backend, load_backend


@dataclass(frozen=True)
class AnomalyResult:
    """One frame's verdict. Scores are normalised so that 0.5 is the calibrated threshold."""

    pred_score: float  # image score in [0, 1]; >= 0.5 means anomalous
    pred_label: bool  # the decision
    anomaly_map: np.ndarray  # float32 (H, W) at the frame's own size, normalised like pred_score
    pred_mask: np.ndarray  # bool (H, W): anomaly_map >= 0.5
    raw_score: float  # before normalisation, in the model's own units (metadata score.space: a logit, a probability, ...)

    # short names for embedded code
    @property
    def score(self) -> float:
        return self.pred_score

    @property
    def is_anomalous(self) -> bool:
        return self.pred_label

    @property
    def mask(self) -> np.ndarray:
        return self.pred_mask

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {
            "pred_score": round(self.pred_score, 6),
            "pred_label": self.pred_label,
            "raw_score": round(self.raw_score, 6),
            "anomalous_pixels": int(self.pred_mask.sum()),
        }


class Predictor:
    """One API over every runtime; pre/post-processing come from the artifact's metadata."""

    def __init__(self, backend: Backend, metadata: ArtifactMetadata, *, channel_order: str = "bgr") -> None:
        if channel_order not in ("bgr", "rgb"):
            msg = f"channel_order must be 'bgr' (OpenCV frames) or 'rgb', got {channel_order!r}"
            raise ConfigError(msg)
        produces = backend.score_space
        if produces is not None and produces is not metadata.score_space:
            msg = (
                f"the {backend.name} model outputs {produces.value!r} maps but its metadata says score.space "
                f"{metadata.score_space.value!r}; load it with Predictor.load, or set the model's output_space to match"
            )
            raise ConfigError(msg)
        self.backend = backend
        self.metadata = metadata
        self.channel_order = channel_order

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        runtime: str | None = None,
        device: str = "cpu",
        channel_order: str = "bgr",
        verify: bool = True,
        **runtime_options: Any,
    ) -> Predictor:
        """Open a model directory; ``runtime`` defaults to the one the artifact was exported for."""
        directory = Path(path)
        metadata = read_metadata(directory, verify=verify)
        backend = load_backend(directory, metadata, runtime=runtime, device=device, **runtime_options)
        return cls(backend, metadata, channel_order=channel_order)

    # -- the hot path --------------------------------------------------------------------
    def raw_maps(
        self,
        frames: Iterable[np.ndarray] | np.ndarray,
        *,
        channel_order: str | None = None,
        batch_size: int | None = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Model-size anomaly maps (N, S, S) before calibration; for evaluation and calibration.

        Frames are prepared and run ``batch_size`` at a time, so memory stays flat over a
        whole test set on a small device (``None``: all frames as one batch);
        ``progress(done, total)`` is called after each batch.
        """
        order = channel_order or self.channel_order
        frames = frame_list(frames)
        if batch_size is not None and batch_size < 1:
            msg = f"batch_size must be a positive number of frames (or None for one batch), got {batch_size}"
            raise ConfigError(msg)
        step = batch_size if batch_size is not None else max(1, len(frames))
        chunks = []
        for start in range(0, len(frames), step):
            batch, _ = prepare_batch(frames[start : start + step], self.metadata.input, channel_order=order)
            chunks.append(self._infer(batch))
            if progress is not None:
                progress(min(start + step, len(frames)), len(frames))
        if not chunks:
            prepare_batch([], self.metadata.input)  # raises the "no frames" error
        return np.concatenate(chunks)

    def predict(self, frame: np.ndarray) -> AnomalyResult:
        """One frame's result. Safe to call from many threads on one Predictor."""
        if isinstance(frame, np.ndarray) and frame.ndim == 4:
            msg = f"predict takes one frame (H, W[, C]), got a batch of shape {frame.shape}; use predict_batch"
            raise InvalidInputError(msg)
        return self.predict_batch([frame])[0]

    def predict_batch(self, frames: Iterable[np.ndarray] | np.ndarray) -> list[AnomalyResult]:
        """Results for a list or iterator of frames, or an (N, H, W, C) array.

        Raises InvalidOutputError when the model yields NaN or infinite values: a NaN score is
        never reported as a decision (NaN >= 0.5 would read as "not anomalous").
        """
        batch, sizes = prepare_batch(frames, self.metadata.input, channel_order=self.channel_order)
        maps = self._infer(batch)
        return self.results_from_maps(maps, sizes)

    def results_from_maps(self, maps: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[AnomalyResult]:
        finite = np.isfinite(maps.reshape(maps.shape[0], -1)).all(axis=1)
        if not finite.all():
            bad = [int(i) for i in np.flatnonzero(~finite)]
            msg = (
                f"the {self.runtime} model produced NaN or infinite anomaly values for frame(s) {bad}; no score or "
                "decision can be given. The model file or its weights are broken: re-export or retrain it"
            )
            raise InvalidOutputError(msg)
        raw = image_scores(maps, self.metadata.score)
        calibration = self.metadata.calibration
        spec = self.metadata.score
        scores, norm_maps = calibrated_scores(raw, spec, calibration), calibrated_maps(maps, spec, calibration)
        results = []
        for index, (height, width) in enumerate(sizes):
            full = resize_map(np.ascontiguousarray(norm_maps[index], dtype=np.float32), height, width)
            results.append(
                AnomalyResult(
                    pred_score=float(scores[index]),
                    pred_label=bool(scores[index] >= DECISION_THRESHOLD),
                    anomaly_map=full,
                    pred_mask=full >= DECISION_THRESHOLD,
                    raw_score=float(raw[index]),
                )
            )
        return results

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        limit = self.backend.max_batch
        if limit is None or batch.shape[0] <= limit:
            return self.backend.infer(batch)
        return np.concatenate([self.backend.infer(batch[i : i + limit]) for i in range(0, batch.shape[0], limit)])

    # -- configuration ---------------------------------------------------------------------
    def with_calibration(self, calibration: ScoreCalibration) -> Predictor:
        """The same model with other thresholds (nothing is reloaded)."""
        return Predictor(self.backend, dataclasses.replace(self.metadata, calibration=calibration), channel_order=self.channel_order)

    @property
    def runtime(self) -> str:
        return self.backend.name

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.metadata
        return f"Predictor(runtime={self.runtime!r}, format={m.format.value!r}, precision={m.precision.value!r}, input={m.input.height}x{m.input.width})"
