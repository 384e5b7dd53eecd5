"""The writer both predict engines share (inference.write_predictions): rows only in input order, all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fractalad_edge.errors import ScoringOrderError
from fractalad_edge.inference import RESULTS_FILENAME, ScoredImage, plan_predictions, write_predictions

RESULT = {"pred_score": 0.25, "pred_label": False, "raw_score": 0.5, "anomalous_pixels": 0}


def test_lost_or_reordered_results_are_an_error_and_nothing_is_written(normal_images_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    job = plan_predictions([normal_images_dir], out=out)
    scored = [ScoredImage(image=image, result=RESULT, overlay_png=b"\x89PNG") for image in job.images]
    total = len(scored)
    with pytest.raises(ScoringOrderError, match=f"results for {total - 1} of {total}"):
        write_predictions(job, iter(scored[:-1]), echo=lambda _: None)
    with pytest.raises(ScoringOrderError, match="lost or reordered"):
        write_predictions(job, iter([scored[1], scored[0], *scored[2:]]), echo=lambda _: None)
    with pytest.raises(ScoringOrderError, match="lost or reordered"):
        write_predictions(job, iter([*scored, scored[0]]), echo=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no scratch folder left

    summary = write_predictions(job, iter(scored), echo=lambda _: None)
    assert (summary.total, summary.failed, summary.anomalous) == (total, 0, 0)
    rows = [json.loads(line) for line in (out / RESULTS_FILENAME).read_text().splitlines()]
    assert [r["image"] for r in rows] == [image.name for image in job.images]
    assert all((out / r["overlay"]).read_bytes() == b"\x89PNG" for r in rows)
