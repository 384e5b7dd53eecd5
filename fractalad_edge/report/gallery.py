"""Gallery cards for the HTML report: one per test image, worst misses first.

Each card carries what an inspector needs to judge one decision: the image's name, its
image score, the threshold the artifact applies and the decision, plus a small JPEG
thumbnail (the image next to its heat map, the ground-truth outline drawn on the heat
map). Cards are ordered by their *margin*, the signed distance of the score from the
threshold on the correct side: misses (false negatives and false alarms) come first, the
furthest wrong at the top, then correct decisions from the closest call to the clearest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from fractalad_edge.artifact import ArtifactMetadata
from fractalad_edge.data.datasets import TestSample
from fractalad_edge.errors import ConfigError, InvalidOutputError
from fractalad_edge.score_space import ScoreSpace
from fractalad_edge.preprocess import display_maps, decisions, image_scores, overlay, resize_image

#: largest thumbnail height in pixels (each panel is square, so a card image is 2x as wide);
#: maps smaller than this are kept at their own size, not blown up
THUMBNAIL_HEIGHT = 256
JPEG_QUALITY = 80
#: cards that get a thumbnail; the rest (the clearest correct decisions) are counted in the
#: tables but not shown, so a large test set still makes a page of a few MB (~16 kB a card)
MAX_THUMBNAILS = 300
_OUTLINE_RGB = (255, 255, 255)


class LabelledImages(Protocol):
    """A labelled test set as evaluation reads it: samples, RGB images, masks at map size."""

    @property
    def samples(self) -> Sequence[TestSample]: ...

    @property
    def images(self) -> Sequence[np.ndarray]: ...

    @property
    def masks(self) -> np.ndarray: ...


@dataclass(frozen=True, kw_only=True)
class GalleryCard:
    """One test image's decision. ``score`` and ``threshold`` are raw scores (the artifact's reduction)."""

    name: str  # relative to the category's test/ folder, e.g. "broken_small/003.png"
    defect: str  # the defect-type folder ("good" for normal images)
    label: int  # 0 good, 1 defective
    score: float
    threshold: float
    anomalous: bool  # the decision, by the rule the Predictor applies (preprocess.decisions)
    thumbnail: bytes | None  # JPEG; None: beyond the gallery's limit, counted but not shown

    @property
    def miss(self) -> bool:
        return self.anomalous != bool(self.label)

    @property
    def outcome(self) -> str:
        """false negative, false alarm, caught (true positive) or passed (true negative)."""
        if self.label:
            return "caught" if self.anomalous else "false negative"
        return "false alarm" if self.anomalous else "passed"

    @property
    def margin(self) -> float:
        """Distance of the score from the threshold, positive on the correct side."""
        return (self.score - self.threshold) if self.label else (self.threshold - self.score)


def misses_label(defect: str, count: int) -> str:
    """How many images of one defect type the threshold gets wrong, in the words for that type."""
    if defect == "good":
        return f"{count} false alarm{'s' * (count != 1)}"
    return f"{count} missed"


def decision_threshold(metadata: ArtifactMetadata) -> float:
    """The raw image score at which the Predictor's decision flips: calibrated, or the head's own midpoint
    (sigmoid 0.5, logit 0; preprocess.uncalibrated)."""
    if metadata.calibration is not None:
        return metadata.calibration.image_threshold
    return 0.0 if metadata.score_space is ScoreSpace.LOGIT else 0.5


def _worst_first_key(card: GalleryCard) -> tuple[bool, float, str]:
    return (not card.miss, card.margin, card.name)


def worst_first(cards: Sequence[GalleryCard]) -> list[GalleryCard]:
    """Misses first (furthest from the threshold at the top), then correct ones, closest call first."""
    return sorted(cards, key=_worst_first_key)


def thumbnail(image_rgb: np.ndarray, anomaly_map: np.ndarray, mask: np.ndarray, *, height: int = THUMBNAIL_HEIGHT) -> bytes:
    """image | heat map with the ground-truth outline, at most ``height`` pixels high, as JPEG bytes."""
    size = anomaly_map.shape[-1]
    height = min(height, size)
    image = resize_image(image_rgb, size, size)
    heat = np.ascontiguousarray(overlay(image, np.clip(anomaly_map, 0.0, 1.0)))  # callers pass display_maps
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(heat, contours, -1, _OUTLINE_RGB, max(1, size // 128))
    panel = np.concatenate([image, heat], axis=1)
    panel = cv2.resize(panel, (2 * height, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(panel, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB array
        msg = "OpenCV could not encode a gallery thumbnail as JPEG"
        raise RuntimeError(msg)
    return encoded.tobytes()


def gallery_cards(
    test_set: LabelledImages,
    maps: np.ndarray,
    metadata: ArtifactMetadata,
    *,
    height: int = THUMBNAIL_HEIGHT,
    limit: int = MAX_THUMBNAILS,
) -> list[GalleryCard]:
    """One card per test image, scored with the artifact's reduction and threshold, worst first.

    The first ``limit`` cards get a thumbnail; the others keep ``thumbnail=None``.
    """
    if maps.ndim != 3 or maps.shape[0] != len(test_set.samples):
        msg = (
            f"gallery needs one (H, W) anomaly map per test image: got maps of shape {maps.shape} for "
            f"{len(test_set.samples)} images; pass the maps evaluation returned for this test set"
        )
        raise ConfigError(msg)
    if height < 16:
        msg = f"thumbnail height must be at least 16 pixels, got {height}"
        raise ConfigError(msg)
    if limit < 0:
        msg = f"the gallery's limit is a number of cards, 0 or more, got {limit}"
        raise ConfigError(msg)
    threshold = decision_threshold(metadata)
    scores = image_scores(maps, metadata.score)
    anomalous = decisions(maps, metadata.score, metadata.calibration)
    heat = display_maps(maps, metadata.score, metadata.calibration)
    cards: list[tuple[GalleryCard, int]] = []
    for index, sample in enumerate(test_set.samples):
        score = float(scores[index])
        if not math.isfinite(score):
            msg = f"the anomaly map of {sample.image_path} has NaN or infinite values; the model is broken: re-export it"
            raise InvalidOutputError(msg)
        card = GalleryCard(
            name=f"{sample.defect}/{sample.image_path.name}", defect=sample.defect, label=sample.label,
            score=score, threshold=threshold, anomalous=bool(anomalous[index]), thumbnail=None,
        )
        cards.append((card, index))
    cards.sort(key=lambda pair: _worst_first_key(pair[0]))
    return [
        dataclasses.replace(card, thumbnail=thumbnail(test_set.images[i], heat[i], test_set.masks[i], height=height))
        if rank < limit
        else card
        for rank, (card, i) in enumerate(cards)
    ]
