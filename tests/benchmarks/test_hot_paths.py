"""pytest-benchmark suite over the hot paths, on the tiny 64 px fixtures.

CI runs it with ``--benchmark-disable`` (the project default), so each benchmark body runs
once as an ordinary test and its assertions still guard behaviour. For numbers:

    python -m pytest tests/benchmarks -p no:cacheprovider --benchmark-enable --benchmark-only \
        --benchmark-columns=min,median,iqr,ops --benchmark-sort=name

Speed claims about real models come from ``fractalad-edge bench``, not from these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark", reason="the benchmarks need the dev extra (pytest-benchmark)")

from fractalad_edge.data.images import read_image
from fractalad_edge.preprocess import prepare_batch
from fractalad_edge.synth.anomaly import FractalAnomalyGenerator, SynthConfig
from fractalad_edge.synth.fractal import random_fractal_mask

SIZE = 64
FRAME_SIDE = 200  # a camera frame larger than the model input, so pre/post-processing resize


@pytest.fixture(scope="module")
def frame(normal_images_dir: Path) -> np.ndarray:
    """A BGR frame at camera-like size made from a fixture image."""
    import cv2

    rgb = read_image(sorted(normal_images_dir.glob("*.png"))[0])
    return np.ascontiguousarray(cv2.resize(rgb, (FRAME_SIDE, FRAME_SIDE), interpolation=cv2.INTER_LINEAR)[..., ::-1])


@pytest.fixture(scope="module")
def torch_predictor(tiny_run: Path):
    from fractalad_edge.predictor import Predictor

    return Predictor.load(tiny_run)


def test_fractal_mask(benchmark) -> None:
    rng = np.random.default_rng(0)
    mask = benchmark(random_fractal_mask, SIZE, rng)
    assert mask.shape == (SIZE, SIZE) and mask.dtype == bool
    assert 0 < mask.mean() < 1


def test_synthetic_anomaly_sample(benchmark, normal_images_dir: Path) -> None:
    image = read_image(sorted(normal_images_dir.glob("*.png"))[0])
    generator = FractalAnomalyGenerator(SynthConfig(image_size=SIZE))
    rng = np.random.default_rng(1)
    sample = benchmark(generator, image, rng)
    assert sample.augmented.shape == (SIZE, SIZE, 3) and sample.mask.shape == (SIZE, SIZE)
    changed = np.any(sample.augmented != sample.clean, axis=2)
    assert not np.any(changed & ~sample.mask.astype(bool)), "pixels outside the mask must be untouched"


def test_preprocess(benchmark, frame: np.ndarray, torch_predictor) -> None:
    spec = torch_predictor.metadata.input
    batch, sizes = benchmark(prepare_batch, [frame], spec, channel_order="bgr")
    assert batch.shape == (1, 3, SIZE, SIZE) and batch.dtype == np.float32
    assert sizes == [(FRAME_SIDE, FRAME_SIDE)]


def test_postprocess(benchmark, frame: np.ndarray, torch_predictor) -> None:
    batch, sizes = prepare_batch([frame], torch_predictor.metadata.input, channel_order="bgr")
    maps = torch_predictor.backend.infer(batch)
    results = benchmark(torch_predictor.results_from_maps, maps, sizes)
    assert results[0].anomaly_map.shape == (FRAME_SIDE, FRAME_SIDE)
    assert 0.0 <= results[0].pred_score <= 1.0


_PACKAGES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}


@pytest.fixture(scope="module")
def onnx_model(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as the ONNX graph every non-torch format is built from (no calibration: not timed here)."""
    pytest.importorskip("onnx")
    from fractalad_edge.artifact import read_metadata
    from fractalad_edge.export.onnx import export_onnx
    from fractalad_edge.models.torch_format import load_model

    model = load_model(tiny_run, read_metadata(tiny_run))
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", input_size=SIZE)


def _backend(runtime: str, tiny_run: Path, onnx_model: Path):
    if runtime == "torch":
        from fractalad_edge.predictor import Predictor

        return Predictor.load(tiny_run).backend
    if runtime == "onnxruntime":
        from fractalad_edge.runtimes.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_model)
    from fractalad_edge.runtimes.openvino import OpenVINOBackend

    return OpenVINOBackend(onnx_model)


@pytest.mark.parametrize("runtime", list(_PACKAGES))
def test_inference(benchmark, runtime: str, tiny_run: Path, frame: np.ndarray, request: pytest.FixtureRequest) -> None:
    """The runtime's graph alone (batch 1, already pre-processed), as each backend runs it."""
    pytest.importorskip(_PACKAGES[runtime])
    onnx_model = None if runtime == "torch" else request.getfixturevalue("onnx_model")
    backend = _backend(runtime, tiny_run, onnx_model)
    try:
        from fractalad_edge.artifact import read_metadata

        batch, _ = prepare_batch([frame], read_metadata(tiny_run).input, channel_order="bgr")
        maps = benchmark(backend.infer, batch)
    finally:
        backend.close()
    assert maps.shape == (1, SIZE, SIZE) and maps.dtype == np.float32
    assert np.all(np.isfinite(maps)) and (maps.min() < 0 or maps.max() > 1)  # the head's logits (score.space), not probabilities


def test_training_step(benchmark, normal_images_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from fractalad_edge.models.fractalad import ModelConfig, build_model
    from fractalad_edge.train.loop import normalise_batch
    from fractalad_edge.train.losses import segmentation_loss

    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=SIZE, head_channels=16), pretrained_teacher=False).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-3)
    generator = FractalAnomalyGenerator(SynthConfig(image_size=SIZE))
    rng = np.random.default_rng(2)
    images = [read_image(p) for p in sorted(normal_images_dir.glob("*.png"))[:2]]
    samples = [generator(image, rng) for image in images]
    spec = model.teacher.spec
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    clean = normalise_batch(torch.from_numpy(np.stack([s.clean for s in samples])), mean, std, channels_last=False)
    augmented = normalise_batch(torch.from_numpy(np.stack([s.augmented for s in samples])), mean, std, channels_last=False)
    mask = torch.from_numpy(np.stack([s.mask for s in samples]).astype(np.float32))[:, None]
    head_before = model.head.state_dict()
    head_before = {k: v.clone() for k, v in head_before.items()}

    def step() -> float:
        logits, distill = model.training_step_outputs(clean, augmented)
        loss = distill + segmentation_loss(logits, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    loss = benchmark(step)
    assert np.isfinite(loss)
    changed = any(not torch.equal(head_before[k], v) for k, v in model.head.state_dict().items() if v.is_floating_point())
    assert changed, "one optimizer step must change the head's weights"
