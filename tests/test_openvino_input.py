"""uint8 NHWC graph inputs (OpenVINO artifacts normalise in the graph) and the host-side batch.

The OpenVINO export puts conversion, ``(x - mean) / std`` and the NHWC -> NCHW transpose in
front of the network; ``InputSpec.dtype`` records it and ``prepare_batch`` hands such a graph
the resized pixels. Artifacts written before the field existed must load as float32 NCHW.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fractalad_edge.artifact import (
    METADATA_FILENAME,
    ArtifactMetadata,
    InputSpec,
    describe_files,
    read_metadata,
    write_metadata,
)
from fractalad_edge.errors import ArtifactError, ConfigError, RuntimeMismatchError
from fractalad_edge.predictor import Predictor
from fractalad_edge.preprocess import normalize, prepare_batch

SPEC = InputSpec(height=64, width=64, mean=(127.0, 120.0, 110.0), std=(128.0, 60.0, 70.0))


@pytest.mark.parametrize(("dtype", "layout"), [("uint8", "NCHW"), ("float32", "NHWC"), ("float16", "NCHW"), (["uint8"], "NHWC")])
def test_input_spec_refuses_other_dtype_and_layout_pairs(dtype: object, layout: str) -> None:
    with pytest.raises(ConfigError, match="dtype"):
        dataclasses.replace(SPEC, dtype=dtype, layout=layout)


def test_metadata_without_input_dtype_loads_as_float32_and_unknown_input_fields_are_refused(onnx_artifact) -> None:
    data = read_metadata(onnx_artifact.path).to_dict()
    del data["input"]["dtype"]  # what every artifact written before the field looks like
    old = ArtifactMetadata.from_dict(data)
    assert (old.input.dtype, old.input.layout) == ("float32", "NCHW")
    data["input"]["dtype"] = "int4"
    with pytest.raises(ArtifactError, match="dtype"):
        ArtifactMetadata.from_dict(data)
    data["input"]["dtype"], data["input"]["pixel_format"] = "float32", "u8"
    with pytest.raises(ArtifactError, match="unknown fields"):
        ArtifactMetadata.from_dict(data)


def _reference_batch(frames: list[np.ndarray], spec: InputSpec, channel_order: str) -> np.ndarray:
    """The pre-processing before uint8 inputs: whole frame to RGB, resize, then normalise."""
    images = []
    for frame in frames:
        rgb = np.ascontiguousarray(frame[..., ::-1]) if channel_order == "bgr" else frame
        h, w = rgb.shape[:2]
        shrink = spec.height * spec.width < h * w
        images.append(cv2.resize(rgb, (spec.width, spec.height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))
    return normalize(np.stack(images), spec.mean, spec.std)


@pytest.mark.parametrize("channel_order", ["bgr", "rgb"])
def test_prepare_batch_gives_float_nchw_or_uint8_nhwc_of_the_same_pixels(channel_order: str) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((300, 200, 3), (40, 50, 3), (64, 64, 3))]
    reference = _reference_batch(frames, SPEC, channel_order)

    batch, sizes = prepare_batch(frames, SPEC, channel_order=channel_order)
    assert sizes == [(300, 200), (40, 50), (64, 64)]
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    np.testing.assert_array_equal(batch, reference)  # resizing before the channel reorder changes nothing

    pixels, _ = prepare_batch(frames, dataclasses.replace(SPEC, dtype="uint8", layout="NHWC"), channel_order=channel_order)
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 64, 64, 3) and pixels.flags.c_contiguous
    np.testing.assert_array_equal(normalize(pixels, SPEC.mean, SPEC.std), reference)


# ----------------------------------------------------------------------------- OpenVINO
@pytest.mark.openvino
def test_openvino_export_takes_uint8_nhwc_and_refuses_a_float_batch(openvino_artifact) -> None:
    metadata = openvino_artifact.metadata
    assert (metadata.input.dtype, metadata.input.layout) == ("uint8", "NHWC")
    size = metadata.input.height
    with Predictor.load(openvino_artifact.path, threads=1) as predictor:
        assert predictor.backend.input_shape == (1, size, size, 3)
        with pytest.raises(RuntimeMismatchError, match="uint8"):
            predictor.backend.infer(np.zeros((1, 3, size, size), np.float32))


@pytest.mark.openvino
def test_a_float_input_openvino_artifact_still_loads_and_gives_the_same_maps(openvino_artifact, onnx_artifact, tmp_path: Path) -> None:
    """An IR without the in-graph normalisation, with metadata as written before ``input.dtype``."""
    import openvino as ov

    old = tmp_path / "old"
    old.mkdir()
    ov.save_model(ov.convert_model(str(onnx_artifact.metadata.model_file(onnx_artifact.path, ".onnx"))), str(old / "model.xml"), compress_to_fp16=False)
    metadata = dataclasses.replace(
        openvino_artifact.metadata,
        input=dataclasses.replace(openvino_artifact.metadata.input, dtype="float32", layout="NCHW"),
        files=describe_files(old, ("model.xml", "model.bin")),
    )
    write_metadata(old, metadata)
    data = json.loads((old / METADATA_FILENAME).read_text())
    del data["input"]["dtype"]
    (old / METADATA_FILENAME).write_text(json.dumps(data))

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (90, 70, 3), dtype=np.uint8) for _ in range(3)]
    with Predictor.load(old, threads=1) as before, Predictor.load(openvino_artifact.path, threads=1) as now:
        assert before.metadata.input.dtype == "float32" and before.backend.input_shape[1] == 3
        np.testing.assert_allclose(now.raw_maps(frames), before.raw_maps(frames), rtol=0, atol=1e-5)
        assert [r.pred_label for r in now.predict_batch(frames)] == [r.pred_label for r in before.predict_batch(frames)]


@pytest.mark.openvino
@pytest.mark.parametrize("hint", ["latency", "throughput"])
def test_a_batch_on_parallel_requests_gives_the_one_at_a_time_maps(openvino_artifact, hint: str) -> None:
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (70, 90, 3), dtype=np.uint8) for _ in range(5)]
    with Predictor.load(openvino_artifact.path, performance_hint=hint) as predictor:
        backend = predictor.backend
        assert backend.describe()["parallel_requests"] == str(backend.parallel_requests) and backend.parallel_requests >= 1
        single = np.concatenate([predictor.raw_maps([f]) for f in frames])
        batch, _ = prepare_batch(frames, predictor.metadata.input)
        np.testing.assert_array_equal(backend.infer(batch), single)  # in order, one graph: identical
        backend.parallel_requests = 2  # the round robin, whatever OpenVINO chose on this machine
        np.testing.assert_array_equal(backend.infer(batch), single)
        with pytest.raises(RuntimeMismatchError, match="expects input"):
            backend.infer(batch[:, :-1])


@pytest.mark.openvino
def test_inference_precision_is_a_checked_runtime_option(openvino_artifact) -> None:
    with pytest.raises(ConfigError, match="inference_precision"):
        Predictor.load(openvino_artifact.path, inference_precision="int4")
    with Predictor.load(openvino_artifact.path, threads=1, inference_precision="bf16") as predictor:
        ran = predictor.backend.describe()["inference_precision"]
        assert ran in ("bf16", "f32")  # f32 where the CPU has no bf16 arithmetic (OpenVINO resolves the hint)
        assert predictor.backend.inference_precision() == ran  # typed, and what the report shows
        assert predictor.predict(np.zeros((64, 64, 3), np.uint8)).anomaly_map.shape == (64, 64)


def test_a_uint8_batch_is_a_copy_of_the_frame() -> None:
    frame = np.full((64, 64, 3), 7, np.uint8)
    spec = dataclasses.replace(SPEC, dtype="uint8", layout="NHWC", channel_order="bgr")
    batch, _ = prepare_batch([frame], spec, channel_order="bgr")  # no resize, no reorder
    assert not np.shares_memory(batch, frame)
    frame[:] = 0
    assert batch.max() == 7
