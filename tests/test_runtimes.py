"""One contract suite run over every runtime: torch, onnxruntime, openvino, tensorrt.

Each runtime loads its artifact of the same tiny model through ``Predictor`` and must give
the torch module's maps, well-formed results, typed errors on bad input and a description
for benchmark reports. A runtime whose package or hardware is missing is skipped (never
passed): TensorRT runs where ``import tensorrt`` works and a CUDA device is visible.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fractalad_edge.artifact import EngineInfo, ModelFormat, Precision, read_metadata, write_metadata
from fractalad_edge.errors import (
    ConfigError,
    EngineMismatchError,
    ImageReadError,
    InvalidInputError,
    RuntimeMismatchError,
    RuntimeNotAvailableError,
)
from fractalad_edge.predictor import Predictor

REPO_ROOT = Path(__file__).resolve().parents[1]
FP32_TOLERANCE = 1e-4

RUNTIME_PARAMS = [
    pytest.param("torch", id="torch"),
    pytest.param("onnxruntime", marks=pytest.mark.onnxruntime, id="onnxruntime"),
    pytest.param("openvino", marks=pytest.mark.openvino, id="openvino"),
    pytest.param("tensorrt", marks=[pytest.mark.tensorrt, pytest.mark.gpu], id="tensorrt"),
]


def _needs_cuda_for_tensorrt() -> None:
    pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but no CUDA device is visible")


def _load(runtime: str, request: pytest.FixtureRequest) -> Predictor:
    """The runtime's own artifact of the tiny model, loaded through the public facade."""
    if runtime == "torch":
        pytest.importorskip("torch")
        return Predictor.load(request.getfixturevalue("tiny_run"))
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
        return Predictor.load(request.getfixturevalue("onnx_artifact").path, threads=1)
    if runtime == "openvino":
        pytest.importorskip("openvino")
        return Predictor.load(request.getfixturevalue("openvino_artifact").path, threads=1)
    _needs_cuda_for_tensorrt()
    return Predictor.load(request.getfixturevalue("tensorrt_export").path, device="cuda")


@pytest.fixture(scope="module", params=RUNTIME_PARAMS)
def predictor(request: pytest.FixtureRequest) -> Predictor:
    loaded = _load(request.param, request)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def frames(normal_images_dir: Path) -> list[np.ndarray]:
    """BGR camera-like frames of other sizes than the model's: normals and one with a bright defect."""
    images = [cv2.imread(str(p)) for p in sorted(normal_images_dir.glob("*.png"))[:3]]
    frames = [cv2.resize(images[0], (100, 80)), images[1], cv2.resize(images[2], (48, 48))]
    defect = images[1].copy()
    defect[20:34, 24:40] = (250, 250, 250)
    return [*frames, defect]


@pytest.fixture(scope="session")
def torch_reference_maps(tiny_run: Path, frames: list[np.ndarray]) -> np.ndarray:
    """Maps straight from the torch module on the shared preprocessing: the contract's reference."""
    torch = pytest.importorskip("torch")
    from fractalad_edge.models.torch_format import load_model
    from fractalad_edge.preprocess import prepare_batch

    metadata = read_metadata(tiny_run)
    model = load_model(tiny_run, metadata)
    batch, _ = prepare_batch(frames, metadata.input, channel_order="bgr")
    with torch.no_grad():
        return model(torch.from_numpy(batch))[:, 0].numpy()


# ----------------------------------------------------------------------------- the contract
def test_maps_match_the_torch_module(predictor: Predictor, frames: list[np.ndarray], torch_reference_maps: np.ndarray) -> None:
    maps = predictor.raw_maps(frames)
    assert maps.shape == torch_reference_maps.shape == (len(frames), 64, 64)
    assert maps.dtype == np.float32
    np.testing.assert_allclose(maps, torch_reference_maps, rtol=0, atol=FP32_TOLERANCE)


def test_predict_gives_well_formed_results_at_frame_size(predictor: Predictor, frames: list[np.ndarray]) -> None:
    for frame in frames:
        result = predictor.predict(frame)
        assert result.anomaly_map.shape == frame.shape[:2] and result.anomaly_map.dtype == np.float32
        assert 0.0 <= result.anomaly_map.min() and result.anomaly_map.max() <= 1.0
        assert 0.0 <= result.pred_score <= 1.0 and np.isfinite(result.raw_score)
        assert result.pred_label == (result.pred_score >= 0.5)
        np.testing.assert_array_equal(result.pred_mask, result.anomaly_map >= 0.5)
        assert set(result.to_dict()) == {"pred_score", "pred_label", "raw_score", "anomalous_pixels"}


def test_predict_batch_equals_one_at_a_time(predictor: Predictor, frames: list[np.ndarray]) -> None:
    batch = predictor.predict_batch(frames)
    single = [predictor.predict(f) for f in frames]
    assert [r.pred_label for r in batch] == [r.pred_label for r in single]
    np.testing.assert_allclose([r.raw_score for r in batch], [r.raw_score for r in single], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(np.zeros((0, 0, 3), np.uint8), id="empty"),
        pytest.param(np.zeros((1, 64, 64, 3), np.uint8), id="rank4"),
        pytest.param(np.zeros(64, np.uint8), id="rank1"),
        pytest.param(np.zeros((64, 64, 2), np.uint8), id="two-channels"),
        pytest.param(np.full((64, 64, 3), np.nan, np.float32), id="nan"),
        pytest.param(np.full((64, 64, 3), np.inf, np.float32), id="inf"),
        pytest.param([[0, 0, 0]], id="not-an-array"),
    ],
)
def test_bad_input_is_an_invalid_input_error(predictor: Predictor, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        predictor.predict(bad)  # type: ignore[arg-type]


def test_an_empty_batch_is_an_invalid_input_error(predictor: Predictor) -> None:
    with pytest.raises(InvalidInputError, match="no frames"):
        predictor.predict_batch([])


def test_describe_names_runtime_and_version(predictor: Predictor) -> None:
    info = predictor.backend.describe()
    assert info["runtime"] == predictor.runtime == predictor.backend.name
    assert info[predictor.runtime]  # the runtime's own version string, for benchmark reports
    assert info["device"]


# ----------------------------------------------------------------------------- across runtimes
def test_every_runtime_decides_the_same_on_the_same_artifact(request: pytest.FixtureRequest, frames: list[np.ndarray]) -> None:
    """The ONNX artifact run by onnxruntime and by OpenVINO, and the torch model, with one calibration."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    onnx_artifact = request.getfixturevalue("onnx_artifact")
    calibration = onnx_artifact.metadata.calibration
    predictors = {
        "onnxruntime": Predictor.load(onnx_artifact.path),
        "openvino": Predictor.load(onnx_artifact.path, runtime="openvino"),
        "torch": Predictor.load(request.getfixturevalue("tiny_run")).with_calibration(calibration),
    }
    # The calibration set itself holds normals and fractal anomalies: decisions of both kinds.
    cal_images = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in _calibration_images(request)]
    inputs = [*frames, *cal_images]
    results = {name: p.predict_batch(inputs) for name, p in predictors.items()}
    labels = {name: [r.pred_label for r in rs] for name, rs in results.items()}
    assert labels["onnxruntime"] == labels["openvino"] == labels["torch"]
    assert len(set(labels["torch"])) == 2, "the comparison should cover both decisions"
    for name in ("openvino", "torch"):
        np.testing.assert_allclose(
            [r.pred_score for r in results[name]], [r.pred_score for r in results["onnxruntime"]], rtol=0, atol=1e-3
        )
    for p in predictors.values():
        p.close()


def _calibration_images(request: pytest.FixtureRequest) -> list[np.ndarray]:
    from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
    from fractalad_edge.data.datasets import find_training_images

    paths = find_training_images(request.getfixturevalue("normal_images_dir"))
    calibration, _ = build_calibration_sets(paths, CalibrationConfig(count=8, validation_count=0, image_size=64, seed=7))
    return calibration.images


@pytest.mark.onnxruntime
@pytest.mark.openvino
def test_onnxruntime_and_openvino_never_import_torch(onnx_artifact, openvino_artifact) -> None:
    code = f"""
import sys
import numpy as np
from fractalad_edge import Predictor
frame = np.full((70, 90, 3), 128, np.uint8)
for path, runtime in (({str(onnx_artifact.path)!r}, None), ({str(openvino_artifact.path)!r}, None), ({str(onnx_artifact.path)!r}, "openvino")):
    with Predictor.load(path, runtime=runtime) as predictor:
        result = predictor.predict(frame)
        assert 0.0 <= result.pred_score <= 1.0
        print(predictor.runtime, round(result.pred_score, 4))
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("torch modules:", loaded)
assert not loaded, loaded
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "torch modules: []" in done.stdout
    assert done.stdout.count("onnxruntime") == 1 and done.stdout.count("openvino") == 2


# ----------------------------------------------------------------------------- typed errors
@pytest.mark.onnxruntime
@pytest.mark.openvino
def test_a_runtime_that_cannot_run_the_artifact_is_refused(onnx_artifact, openvino_artifact) -> None:
    with pytest.raises(RuntimeMismatchError, match="cannot run a 'openvino' artifact"):
        Predictor.load(openvino_artifact.path, runtime="onnxruntime")
    with pytest.raises(RuntimeMismatchError, match="cannot run a 'onnx' artifact"):
        Predictor.load(onnx_artifact.path, runtime="torch")
    with pytest.raises(RuntimeMismatchError, match="does not run on device 'npu'"):
        Predictor.load(onnx_artifact.path, device="npu")
    with pytest.raises(ConfigError, match="takes the options"):
        Predictor.load(onnx_artifact.path, performance_hint="latency")


@pytest.mark.parametrize(
    ("module", "fixture", "extra"),
    [
        pytest.param("onnxruntime", "onnx_artifact", "onnxruntime", marks=pytest.mark.onnxruntime),
        pytest.param("openvino", "openvino_artifact", "openvino", marks=pytest.mark.openvino),
    ],
)
def test_a_missing_runtime_package_names_the_extra(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, module: str, fixture: str, extra: str
) -> None:
    artifact = request.getfixturevalue(fixture)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now really fails
    with pytest.raises(RuntimeNotAvailableError, match=rf"pip install 'fractalad-edge\[{extra}\]'"):
        Predictor.load(artifact.path)


def test_an_unreadable_image_file_is_an_image_read_error(tmp_path: Path) -> None:
    from fractalad_edge.data.images import read_image

    truncated = tmp_path / "cut.png"
    ok, encoded = cv2.imencode(".png", np.full((32, 32, 3), 200, np.uint8))
    truncated.write_bytes(encoded.tobytes()[:40])
    with pytest.raises(ImageReadError):
        read_image(truncated)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "text.png")


# ----------------------------------------------------------------------------- openvino specifics
@pytest.mark.openvino
def test_openvino_runs_the_precision_the_artifact_asks_for(openvino_artifact, tmp_path: Path) -> None:
    """fp32 runs f32 (never OpenVINO's silent bf16); bf16 runs bf16 where the CPU has it, else f32."""
    import openvino as ov

    with Predictor.load(openvino_artifact.path) as fp32:
        assert fp32.backend.describe()["inference_precision"] == "f32"
    bf16_dir = tmp_path / "bf16"
    shutil.copytree(openvino_artifact.path, bf16_dir)
    write_metadata(bf16_dir, dataclasses.replace(openvino_artifact.metadata, precision=Precision.BF16))
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    with Predictor.load(bf16_dir) as bf16:
        assert bf16.backend.describe()["inference_precision"] == ("bf16" if has_bf16 else "f32")


@pytest.mark.openvino
def test_openvino_throughput_hint_gives_the_same_maps(openvino_artifact, frames: list[np.ndarray]) -> None:
    with Predictor.load(openvino_artifact.path, performance_hint="latency", threads=1) as latency, Predictor.load(
        openvino_artifact.path, performance_hint="throughput"
    ) as throughput:
        assert throughput.backend.describe()["performance_hint"] == "throughput"
        np.testing.assert_allclose(latency.raw_maps(frames), throughput.raw_maps(frames), rtol=0, atol=FP32_TOLERANCE)
    with pytest.raises(ConfigError, match="performance_hint"):
        Predictor.load(openvino_artifact.path, performance_hint="fast")


# ----------------------------------------------------------------------------- tensorrt logic (no TensorRT needed)
ORIN = EngineInfo(tensorrt_version="8.6.2", gpu_name="Orin", compute_capability="8.7")


def test_engine_built_elsewhere_is_an_engine_mismatch() -> None:
    from fractalad_edge.runtimes.tensorrt_compat import check_engine_compatible

    check_engine_compatible(ORIN, dataclasses.replace(ORIN), source="model.engine")  # same: fine
    with pytest.raises(EngineMismatchError, match=r"TensorRT 8\.6\.2 \(this machine: 10\.3\.0\)"):
        check_engine_compatible(ORIN, dataclasses.replace(ORIN, tensorrt_version="10.3.0"), source="model.engine")
    with pytest.raises(EngineMismatchError, match="GPU Orin sm8.7"):
        check_engine_compatible(ORIN, dataclasses.replace(ORIN, gpu_name="NVIDIA H100", compute_capability="9.0"), source="m")
    with pytest.raises(RuntimeMismatchError):  # EngineMismatchError is a RuntimeMismatchError
        check_engine_compatible(ORIN, dataclasses.replace(ORIN, compute_capability="8.6"), source="m")


def test_engine_cache_names_are_keyed_by_model_version_gpu_and_precision() -> None:
    from fractalad_edge.runtimes.tensorrt_compat import engine_cache_name

    name = engine_cache_name(ORIN, onnx_sha256="ab" * 32, precision=Precision.FP16)
    assert name == "model.abababababab.trt8.6.2.orin.sm87-0sm-0gib.fp16.engine"  # SMs, memory: not recorded
    others = {
        engine_cache_name(ORIN, onnx_sha256="cd" * 32, precision=Precision.FP16),
        engine_cache_name(dataclasses.replace(ORIN, tensorrt_version="10.3.0"), onnx_sha256="ab" * 32, precision=Precision.FP16),
        engine_cache_name(dataclasses.replace(ORIN, gpu_name="NVIDIA RTX 4090"), onnx_sha256="ab" * 32, precision=Precision.FP16),
        engine_cache_name(ORIN, onnx_sha256="ab" * 32, precision=Precision.FP32),
    }
    assert name not in others and len(others) == 4


@pytest.fixture()
def tensorrt_artifact_without_engine(onnx_artifact, tmp_path: Path) -> Path:
    """A tensorrt artifact as exported on a machine without TensorRT: model.onnx, engine None."""
    directory = tmp_path / "trt"
    shutil.copytree(onnx_artifact.path, directory)
    write_metadata(directory, dataclasses.replace(onnx_artifact.metadata, format=ModelFormat.TENSORRT, runtime="tensorrt"))
    return directory


@pytest.mark.onnxruntime
def test_tensorrt_runtime_without_tensorrt_names_the_extra(tensorrt_artifact_without_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(RuntimeNotAvailableError, match=r"fractalad-edge\[tensorrt\]"):
        Predictor.load(tensorrt_artifact_without_engine, device="cuda")
    with pytest.raises(RuntimeMismatchError, match="does not run on device 'cpu'"):
        Predictor.load(tensorrt_artifact_without_engine)  # TensorRT is CUDA only


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.onnxruntime
def test_tensorrt_builds_caches_and_refuses_foreign_engines(tensorrt_artifact_without_engine: Path, frames, torch_reference_maps) -> None:
    _needs_cuda_for_tensorrt()
    directory = tensorrt_artifact_without_engine
    with Predictor.load(directory, device="cuda") as first:  # builds the engine and caches it
        np.testing.assert_allclose(first.raw_maps(frames), torch_reference_maps, rtol=0, atol=FP32_TOLERANCE)
        info = first.backend.engine_info
    cached = sorted(directory.glob("model.*.engine"))
    assert len(cached) == 1 and json.loads(cached[0].with_suffix(".json").read_text())["gpu_name"] == info.gpu_name
    with Predictor.load(directory, device="cuda") as second:  # reuses the cache
        np.testing.assert_allclose(second.raw_maps(frames), torch_reference_maps, rtol=0, atol=FP32_TOLERANCE)
    # An artifact whose engine records another TensorRT version is refused before deserialising.
    shutil.copy2(cached[0], directory / "model.engine")
    from fractalad_edge.artifact import describe_files

    metadata = read_metadata(directory)
    foreign = dataclasses.replace(
        metadata,
        engine=dataclasses.replace(info, tensorrt_version="0.0.1"),
        files=describe_files(directory, ["model.onnx", "model.engine"]),
    )
    write_metadata(directory, foreign)
    with pytest.raises(EngineMismatchError, match="TensorRT 0.0.1"):
        Predictor.load(directory, device="cuda")

