"""Deterministic calibration and validation sets made from normal images and fractal anomalies.

Quantizers need data that looks like production frames, and thresholds need anomalies;
users have neither labelled defects nor a validation split. The method's own generator
makes both from the normal images: a share of the samples get a fractal anomaly, the rest
stay normal. Calibration and validation draw from disjoint source images, so the accuracy
gate after quantization is measured on images the quantizer never saw.

Which sources are held out depends on the images and the seed only, never on how many
validation samples are asked for: an fp32 export (8 parity images), an INT8 export (32 for
its gate) and ``calibrate`` (none) fit their thresholds on the same calibration set, so
their decisions differ only where their runtimes do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fractalad_edge.calibration.defaults import ANOMALY_RATIO, CALIBRATION_COUNT, CALIBRATION_SEED
from fractalad_edge.data.images import read_image
from fractalad_edge.errors import CalibrationError, ConfigError
from fractalad_edge.synth.anomaly import FractalAnomalyGenerator, SynthConfig


#: at most this many normal images are held out for validation (a third of them below 3 x this)
MAX_HOLDOUT_SOURCES = 32


def holdout_source_count(num_sources: int) -> int:
    """How many of ``num_sources`` normal images are held out: a third, 2 to :data:`MAX_HOLDOUT_SOURCES`;
    0 below 4 images (too few to hold any out; the sets then share them)."""
    if num_sources < 4:
        return 0
    return max(2, min(num_sources // 3, MAX_HOLDOUT_SOURCES))


@dataclass(frozen=True, kw_only=True)
class CalibrationConfig:
    count: int = CALIBRATION_COUNT  # calibration samples
    validation_count: int = 32  # held-out samples for the accuracy gate / threshold check
    anomaly_ratio: float = ANOMALY_RATIO  # share of samples carrying a fractal anomaly
    seed: int = CALIBRATION_SEED
    image_size: int = 256
    object_placement: bool = False
    #: keep the validation sources out of the calibration set even when no validation samples
    #: are asked for, so every caller's calibration set is the one exports fit on (True; what
    #: `calibrate` needs); False: a caller that never validates calibrates on every image
    #: (a memory build's few held-out images, a run's own thresholds at the end of training)
    hold_out: bool = True

    def __post_init__(self) -> None:
        if self.count < 2 or self.validation_count < 0:
            msg = f"calibration count must be >= 2 and validation_count >= 0, got {self.count} and {self.validation_count}"
            raise ConfigError(msg)
        if not self.hold_out and self.validation_count:
            msg = f"validation_count={self.validation_count} needs held-out images; leave hold_out=True"
            raise ConfigError(msg)
        if not 0.0 <= self.anomaly_ratio <= 1.0:
            msg = f"anomaly_ratio must be in [0, 1], got {self.anomaly_ratio}"
            raise ConfigError(msg)


@dataclass(frozen=True)
class CalibrationSample:
    image: np.ndarray  # uint8 (S, S, 3) RGB
    mask: np.ndarray  # float32 (S, S), all zero for normal samples
    is_anomalous: bool
    source: str  # the normal image it was made from


class CalibrationSet(Sequence[CalibrationSample]):
    """An ordered, reproducible list of samples with the recipe that made it."""

    def __init__(self, samples: list[CalibrationSample], config: CalibrationConfig) -> None:
        self._samples = samples
        self.config = config

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index):  # type: ignore[override]
        return self._samples[index]

    def __iter__(self) -> Iterator[CalibrationSample]:
        return iter(self._samples)

    @property
    def images(self) -> list[np.ndarray]:
        return [s.image for s in self._samples]

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.is_anomalous for s in self._samples], dtype=np.int64)

    @property
    def masks(self) -> np.ndarray:
        return np.stack([s.mask > 0.5 for s in self._samples])


def _make_samples(paths: Sequence[Path], count: int, config: CalibrationConfig, stream: int) -> list[CalibrationSample]:
    generator = FractalAnomalyGenerator(
        SynthConfig(image_size=config.image_size, object_placement=config.object_placement)
    )
    n_anomalous = int(round(count * config.anomaly_ratio))
    samples = []
    for index in range(count):
        path = paths[index % len(paths)]
        rng = np.random.default_rng((config.seed, stream, index))
        image = read_image(path)
        if index < n_anomalous:
            sample = generator(image, rng)
            samples.append(CalibrationSample(image=sample.augmented, mask=sample.mask, is_anomalous=True, source=str(path)))
        else:
            sample = generator.normal(image, rng)
            samples.append(CalibrationSample(image=sample.clean, mask=sample.mask, is_anomalous=False, source=str(path)))
    # Interleave normal and anomalous samples so any prefix (e.g. a quantizer's subset) holds both.
    order = np.random.default_rng((config.seed, stream, 1 << 30)).permutation(count)
    return [samples[i] for i in order]


def build_calibration_sets(paths: Sequence[str | Path], config: CalibrationConfig) -> tuple[CalibrationSet, CalibrationSet]:
    """(calibration, validation) sets from disjoint normal images, reproducible from ``config.seed``.

    Paths are sorted first, so the sets do not depend on the order a directory listing or
    glob happened to return them in. The held-out sources (:func:`holdout_source_count`) are
    the same whatever ``config.validation_count`` is, so the calibration set is too.
    """
    paths = sorted({Path(p) for p in paths})
    if not paths:
        msg = "calibration needs normal images and none were given; pass --calib-data with a folder of good images"
        raise CalibrationError(msg)
    shuffled = [paths[i] for i in np.random.default_rng(config.seed).permutation(len(paths))]
    n_val_sources = holdout_source_count(len(shuffled)) if config.hold_out else 0
    if n_val_sources:
        val_sources, cal_sources = shuffled[:n_val_sources], shuffled[n_val_sources:]
    else:  # too few images to hold any out (said in the report), or nothing to validate
        val_sources, cal_sources = shuffled, shuffled
    calibration = CalibrationSet(_make_samples(cal_sources, config.count, config, stream=0), config)
    validation = CalibrationSet(
        _make_samples(val_sources, config.validation_count, config, stream=1) if config.validation_count else [], config
    )
    return calibration, validation
