"""Shared, session-scoped fixtures: tiny seeded data and a tiny run directory.

Everything is generated (nothing downloaded) and small (64 px) so the whole suite runs in
seconds on two shared CPU cores. ``tiny_run`` is a training run directory without training:
a seeded random-weight FractalAD saved as a ``torch`` artifact, with ``config.json`` pointing
at ``normal_images_dir`` the way a real run points at its training folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import pytest

def pytest_configure(config: pytest.Config) -> None:
    """Run torch single-threaded in tests unless OMP_NUM_THREADS says otherwise.

    The suite runs on two CPU cores shared with other jobs; torch's OpenMP pool spin-waits
    at every op, and with its threads descheduled a 64 px forward pass takes 20-40x longer
    on 2 threads than on 1 (measured: 1.7-3.4 s vs 0.06-0.08 s). Timings belong in the
    benchmarks, which set their own thread counts. Denormals are flushed: random-weight test
    models produce them, and they make x86 CPUs 5-10x slower.
    """
    if config.pluginmanager.hasplugin("benchmark") and not config.getoption("benchmark_enable", False):
        config.option.benchmark_disable = True  # pytest-benchmark is a dev extra: the base install runs without it
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_flush_denormal(True)
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(1)


TINY_SIZE = 64
TINY_HEAD_CHANNELS = 16
NUM_NORMAL_IMAGES = 12


def _part_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bright textured disc (the "part") on a darker, slightly noisy background, uint8 RGB.

    Structured like an inspection frame (object, edges, texture), so calibration and int8
    statistics taken on it are not those of random noise. Position, radius, colour and
    texture vary a little per image, as parts do on a line.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = rng.uniform(30, 50) + rng.normal(0.0, 3.0, (size, size))
    cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
    radius = size * rng.uniform(0.28, 0.34)
    dist = np.hypot(xx - cx, yy - cy)
    inside = np.clip(radius - dist + 0.5, 0.0, 1.0)  # anti-aliased edge
    stripes = 12.0 * np.sin((xx * np.cos(0.6) + yy * np.sin(0.6)) * rng.uniform(0.5, 0.7))
    grain = rng.normal(0.0, 4.0, (size, size))
    rim = 25.0 * np.exp(-((dist - radius * 0.7) ** 2) / 6.0)  # a machined ring
    part = 170.0 + stripes + grain + rim
    grey = inside * part + (1.0 - inside) * background
    tint = np.array([1.0, 0.95, 0.85]) * rng.uniform(0.95, 1.05, 3)
    rgb = grey[..., None] * tint[None, None, :]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def normal_images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~12 generated 64x64 PNG "good part" images (seeded; written as files like a real dataset)."""
    folder = tmp_path_factory.mktemp("normal_images")
    rng = np.random.default_rng(20260)
    for index in range(NUM_NORMAL_IMAGES):
        image = _part_image(rng, TINY_SIZE)
        cv2.imwrite(str(folder / f"good_{index:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, normal_images_dir: Path) -> Path:
    """A run directory (torch artifact) of a seeded 64 px FractalAD with random weights.

    Holds model.safetensors, metadata.json (no score calibration: export fits its own with
    the exported runtime) and config.json whose "data" is ``normal_images_dir``.
    """
    torch = pytest.importorskip("torch")
    from fractalad_edge.artifact import ScoreSpec, write_metadata
    from fractalad_edge.models.fractalad import ModelConfig, build_model
    from fractalad_edge.models.torch_format import MODEL_FILENAME, save_model, torch_metadata

    run_dir = tmp_path_factory.mktemp("tiny_run")
    torch.manual_seed(2026)
    model = build_model(ModelConfig(input_size=TINY_SIZE, head_channels=TINY_HEAD_CHANNELS), pretrained_teacher=False).eval()
    save_model(model, run_dir / MODEL_FILENAME)
    write_metadata(run_dir, torch_metadata(model, ScoreSpec(), directory=run_dir, category="test"))
    (run_dir / "config.json").write_text(json.dumps({"data": str(normal_images_dir)}, indent=2) + "\n")
    return run_dir



class ExportedArtifact(NamedTuple):
    """An artifact exported once per session, with the console lines its export printed."""

    path: Path
    metadata: Any  # ArtifactMetadata
    messages: list[str]


#: Small but real: 8 calibration images (4 with fractal anomalies), 4 held-out parity images.
TEST_EXPORT_OPTIONS = {"calib_count": 8, "parity_images": 4}


def _export_once(tmp_path_factory: pytest.TempPathFactory, run_dir: Path, format: str) -> ExportedArtifact:
    from fractalad_edge.export import ExportOptions, export_model

    messages: list[str] = []
    out = tmp_path_factory.mktemp(f"export_{format}") / "model"
    metadata = export_model(run_dir, format=format, out=out, options=ExportOptions(**TEST_EXPORT_OPTIONS), progress=messages.append)
    return ExportedArtifact(out, metadata, messages)


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> ExportedArtifact:
    """``tiny_run`` exported to ONNX fp32 (thresholds refitted with onnxruntime)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return _export_once(tmp_path_factory, tiny_run, "onnx")


@pytest.fixture(scope="session")
def openvino_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> ExportedArtifact:
    """``tiny_run`` exported to OpenVINO IR fp32 (thresholds refitted with OpenVINO)."""
    pytest.importorskip("onnx")
    pytest.importorskip("openvino")
    return _export_once(tmp_path_factory, tiny_run, "openvino")


@pytest.fixture(scope="session")
def tensorrt_export(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> ExportedArtifact:
    """``tiny_run`` exported to the tensorrt format (an engine where TensorRT runs, else model.onnx only)."""
    pytest.importorskip("onnx")
    if importlib.util.find_spec("tensorrt") is None:
        pytest.importorskip("onnxruntime")  # checks the ONNX in TensorRT's absence
    return _export_once(tmp_path_factory, tiny_run, "tensorrt")
