"""Batch prediction over image files: JSON lines + overlay PNGs, bad files reported and skipped.

A production line must not stop because one frame on disk is truncated: each failure is
written as its own record with the reason, and the rest are scored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fractalad_edge.data.images import IMAGE_SUFFIXES, max_image_pixels, read_image
from fractalad_edge.errors import (
    ConfigError,
    DatasetNotFoundError,
    FractalADError,
    OutputExistsError,
    OutputPathError,
    ScoringOrderError,
)
from fractalad_edge.outputs import StagedOutput, check_output_folder, folder_is_empty
from fractalad_edge.predictor import Predictor
from fractalad_edge.preprocess import overlay

RESULTS_FILENAME = "predictions.jsonl"
OVERLAY_DIR = "overlays"


@dataclass(frozen=True, kw_only=True)
class PredictSummary:
    total: int
    anomalous: int
    failed: int
    out: Path | None


@dataclass(frozen=True)
class InputImage:
    path: Path  # where the file is
    name: str  # its path relative to the input root (POSIX separators): the key of its row and overlay


def _walk(folder: Path, *, recursive: bool, pattern: str | None, skip: Path | None) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (skip is None or Path(root, d).resolve() != skip))
        if not recursive:
            dirs[:] = []
        for name in files:
            path = Path(root, name)
            if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if pattern is None or fnmatch(path.relative_to(folder).as_posix(), pattern) or fnmatch(name, pattern):
                found.append(path)
    return found


def _list_file(path: Path) -> list[Path]:
    entries: list[Path] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line) if Path(line).is_absolute() else path.parent / line
        if not entry.exists():
            msg = f"{path} line {number}: {line} not found (relative paths are read from the list file's folder)"
            raise DatasetNotFoundError(msg)
        entries.append(entry)
    return entries


def expand_inputs(
    inputs: Iterable[str | Path], *, recursive: bool = True, pattern: str | None = None, skip: Path | None = None
) -> list[InputImage]:
    """Every image to score, once, named by its path relative to the inputs' common folder.

    Folders are searched recursively (``recursive``; hidden entries skipped) for image
    suffixes matching ``pattern`` (a glob on the relative path, e.g. ``*.png`` or
    ``broken_*/*``, matched against the relative path or the file name); a file with a non-image suffix (``.txt``, ``.lst``) is a list of paths,
    one a line, relative to its folder; image files are taken as given. ``skip`` (the
    output folder) is never searched. Missing paths are an error before any work.
    """
    inputs = [Path(item) for item in inputs]
    files: list[tuple[Path, Path]] = []  # (file, the folder its name is relative to)
    for path in inputs:
        if not path.exists():
            msg = f"input not found: {path}"
            raise DatasetNotFoundError(msg)
        entries = _list_file(path) if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES else [path]
        for entry in entries:
            if entry.is_dir():
                files.extend((f, entry) for f in _walk(entry, recursive=recursive, pattern=pattern, skip=skip))
            else:
                files.append((entry, entry.parent))
    roots = {os.path.abspath(root) for _, root in files}
    common = Path(os.path.commonpath(sorted(roots))) if roots else Path(".")
    seen: dict[Path, InputImage] = {}
    for path, _ in files:
        key = path.resolve()
        if key not in seen:
            seen[key] = InputImage(path, Path(os.path.abspath(path)).relative_to(common).as_posix())
    images = sorted(seen.values(), key=lambda image: image.name)
    if not images:
        msg = (
            f"no images found in {', '.join(map(str, inputs))} (accepted: {', '.join(IMAGE_SUFFIXES)}"
            + (f"; --pattern {pattern}" if pattern else "")
            + ("" if recursive else "; subfolders not searched (--no-recursive)")
            + ")"
        )
        raise DatasetNotFoundError(msg)
    return images


def overlay_name(image: InputImage) -> str:
    return f"{OVERLAY_DIR}/{image.name if image.name.lower().endswith('.png') else image.name + '.png'}"


def _check_out(out: Path, *, force: bool) -> tuple[str, ...]:
    """Refuse an --out predict did not write; the overlays an earlier run listed (replaced with --force)."""
    check_output_folder(out)
    if not out.exists() or folder_is_empty(out):
        return ()
    results = out / RESULTS_FILENAME
    if not results.is_file():
        msg = f"--out {out} is not empty and holds no {RESULTS_FILENAME}; predict never writes into a folder of other files: choose a new or empty folder"
        raise OutputExistsError(msg)
    if not force:
        msg = (
            f"--out {out} holds the results of an earlier predict; pass --force to replace them ({RESULTS_FILENAME} "
            f"and the overlays it lists; other files there are kept), or choose a new folder"
        )
        raise OutputExistsError(msg)
    previous = []
    for line in results.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            overlay_path = json.loads(line).get("overlay")
        except (ValueError, AttributeError):
            continue
        if isinstance(overlay_path, str) and overlay_path.startswith(f"{OVERLAY_DIR}/"):
            previous.append(overlay_path)
    for folder in (out, out / OVERLAY_DIR):
        if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
            msg = f"--out {out}: {folder} is not writable; fix its permissions or choose another folder"
            raise OutputPathError(msg)
    return tuple(previous)


@dataclass(frozen=True, kw_only=True)
class PredictionJob:
    """What a predict run scores and where it writes, checked before any model loads or cluster starts."""

    images: list[InputImage]
    out: Path | None
    previous: tuple[str, ...]  # overlays an earlier run in ``out`` listed (replaced with --force)
    max_pixels: int


@dataclass(frozen=True, kw_only=True)
class ScoredImage:
    """One input's outcome: why it was skipped, or its ``AnomalyResult.to_dict()`` and overlay PNG."""

    image: InputImage
    error: str | None = None
    result: dict[str, Any] | None = None
    overlay_png: bytes | None = None


def plan_predictions(
    inputs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    recursive: bool = True,
    pattern: str | None = None,
    force: bool = False,
    max_pixels: int | None = None,
) -> PredictionJob:
    """List the inputs and check ``out`` and the pixel limit: every refusal happens here, before any work."""
    limit = max_image_pixels(max_pixels)
    out_dir = Path(out) if out is not None else None
    previous = _check_out(out_dir, force=force) if out_dir is not None else ()
    images = expand_inputs(inputs, recursive=recursive, pattern=pattern, skip=out_dir.resolve() if out_dir else None)
    return PredictionJob(images=images, out=out_dir, previous=previous, max_pixels=limit)


def score_images(predictor: Predictor, images: Sequence[InputImage], *, max_pixels: int, overlays: bool) -> list[ScoredImage]:
    """Read and score ``images`` as one batch, in their order; a file that cannot be read becomes its error.

    Used by the local loop below and by each Ray actor (fractalad_edge/distributed/batch_predict.py),
    so a bad file is reported the same way by both.
    """
    pixels: list[np.ndarray] = []
    errors: list[str | None] = []
    for image in images:
        try:
            pixels.append(read_image(image.path, max_pixels=max_pixels))
            errors.append(None)
        except FractalADError as exc:
            errors.append(str(exc))
    results = iter(zip(pixels, predictor.predict_batch(pixels) if pixels else []))
    scored: list[ScoredImage] = []
    for image, error in zip(images, errors):
        if error is not None:
            scored.append(ScoredImage(image=image, error=error))
            continue
        frame, result = next(results)
        png = _encode_png(overlay(frame, result.anomaly_map), overlay_name(image)) if overlays else None
        scored.append(ScoredImage(image=image, result=result.to_dict(), overlay_png=png))
    return scored


def predict_files(
    model: str | Path,
    inputs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    runtime: str | None = None,
    device: str = "cpu",
    batch_size: int = 1,
    echo: Callable[[str], None] = print,
    recursive: bool = True,
    pattern: str | None = None,
    force: bool = False,
    max_pixels: int | None = None,
) -> PredictSummary:
    """Score image files; with ``out``, write predictions.jsonl and one overlay per image.

    Everything is checked before any output is touched; outputs are built in a scratch
    folder and moved into ``out`` at the end (predictions.jsonl last), so an interrupted
    or failed run leaves an earlier run's results as they were. Rows are in input order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"--batch-size must be a whole number >= 1, got {batch_size!r}"
        raise ConfigError(msg)
    job = plan_predictions(inputs, out=out, recursive=recursive, pattern=pattern, force=force, max_pixels=max_pixels)
    predictor = Predictor.load(model, runtime=runtime, device=device, channel_order="rgb")
    try:
        batches = (
            score_images(predictor, job.images[start : start + batch_size], max_pixels=job.max_pixels, overlays=job.out is not None)
            for start in range(0, len(job.images), batch_size)
        )
        return write_predictions(job, (scored for batch in batches for scored in batch), echo=echo)
    finally:
        predictor.close()


def write_predictions(job: PredictionJob, scored: Iterable[ScoredImage], *, echo: Callable[[str], None] = print) -> PredictSummary:
    """Console lines and, with ``job.out``, predictions.jsonl and overlays, staged and committed at the end.

    ``scored`` must hold one outcome per ``job.images``, in that order (both engines hand them
    in so); anything else is an error before ``out`` is touched.
    """
    if job.out is None:
        anomalous, failed, _ = _write_rows(job, scored, echo, None)
    else:
        with StagedOutput(job.out) as staged:
            anomalous, failed, written = _write_rows(job, scored, echo, staged.files)
            staged.commit(written, manifest=RESULTS_FILENAME, previous=job.previous)
    echo(
        f"{len(job.images) - failed} images scored, {anomalous} anomalous, {failed} failed"
        + (f"; results in {job.out}" if job.out else "")
    )
    return PredictSummary(total=len(job.images), anomalous=anomalous, failed=failed, out=job.out)


def _write_rows(
    job: PredictionJob, scored: Iterable[ScoredImage], echo: Callable[[str], None], folder: Path | None
) -> tuple[int, int, list[str]]:
    anomalous = failed = count = 0
    written: list[str] = []
    records = open(folder / RESULTS_FILENAME, "w", encoding="utf-8") if folder is not None else None
    try:
        for count, outcome in enumerate(scored, 1):
            image = outcome.image
            if count > len(job.images) or image != job.images[count - 1]:
                msg = f"predict got {image.name} as result {count} of {len(job.images)}; the scorer lost or reordered images"
                raise ScoringOrderError(msg)
            if outcome.error is not None or outcome.result is None:
                failed += 1
                echo(f"skipped {image.path}: {outcome.error}")
                if records is not None:
                    records.write(json.dumps({"image": image.name, "path": str(image.path), "error": outcome.error}) + "\n")
                continue
            result = outcome.result
            anomalous += int(result["pred_label"])
            echo(f"{image.name}: score {result['pred_score']:.3f} {'ANOMALOUS' if result['pred_label'] else 'ok'}")
            if records is None or folder is None:
                continue
            name = overlay_name(image)
            if outcome.overlay_png is None:
                msg = f"predict got no overlay for {image.name}; the scorer was not asked for overlays"
                raise ScoringOrderError(msg)
            _write_file(folder / name, outcome.overlay_png)
            written.append(name)
            records.write(json.dumps({"image": image.name, "path": str(image.path), "overlay": name, **result}) + "\n")
    finally:
        if records is not None:
            records.close()
    if count != len(job.images):
        msg = f"predict got results for {count} of {len(job.images)} images; the scorer lost the rest"
        raise ScoringOrderError(msg)
    return anomalous, failed, written


def _encode_png(rgb: np.ndarray, name: str) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        msg = f"cannot encode the overlay {name} as PNG"
        raise OutputPathError(msg)
    return encoded.tobytes()


def _write_file(path: Path, data: bytes) -> None:
    """Write with Python's I/O: a failure is an error, not an OpenCV warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        msg = f"cannot write the overlay {path} ({exc}); check the --out folder's permissions and free space"
        raise OutputPathError(msg) from None
