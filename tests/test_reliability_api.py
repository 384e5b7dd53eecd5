"""Reliability of the Python API (issue 11): threads, bad frames, metadata edits, file integrity.

Every case asserts the precise typed error or the correct conversion: no raw traceback from
numpy/OpenCV/JSON, no silent wrong result. Tiny artifacts are exported once per session
(tests/conftest.py); metadata cases only rewrite metadata.json in a private copy.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fractalad_edge.artifact import METADATA_FILENAME, Precision, read_metadata
from fractalad_edge.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    InvalidInputError,
    InvalidOutputError,
    PredictorClosedError,
    SchemaVersionError,
)
from fractalad_edge.predictor import Predictor

RNG = np.random.default_rng(11)
BGR = RNG.integers(0, 256, (48, 56, 3), dtype=np.uint8)  # the canonical frame: uint8 HxWx3 BGR


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def openvino_int8_path(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    if importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None:
        pytest.skip("needs openvino and nncf")
    from fractalad_edge.export import ExportOptions, export_model

    out = tmp_path_factory.mktemp("rel_int8_openvino") / "model"
    # max_drop=100: random weights make AUROC noise; the gate is tested in test_quantize.py.
    options = ExportOptions(precision=Precision.INT8, calib_count=8, parity_images=4, max_drop=100.0)
    export_model(tiny_run, format="openvino", out=out, options=options, progress=None)
    return out


def _artifact(kind: str, request: pytest.FixtureRequest) -> Path:
    if kind == "torch":
        pytest.importorskip("torch")
        return request.getfixturevalue("tiny_run")
    if kind == "onnxruntime":
        return request.getfixturevalue("onnx_artifact").path
    if kind == "openvino":
        return request.getfixturevalue("openvino_artifact").path
    return request.getfixturevalue("openvino_int8_path")


@pytest.fixture(scope="module")
def onnx_predictor(onnx_artifact) -> Predictor:  # noqa: ANN001 - conftest NamedTuple
    with Predictor.load(onnx_artifact.path, threads=1) as predictor:
        yield predictor


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(source, target)
    return target


# ----------------------------------------------------------------------------- threads
THREADS, FRAMES_PER_THREAD = 8, 6  # scripts/soak.py runs 8 x 200 on real models


@pytest.mark.parametrize(
    "kind",
    [
        "torch",
        pytest.param("onnxruntime", marks=pytest.mark.onnxruntime),
        pytest.param("openvino", marks=pytest.mark.openvino),
        pytest.param("openvino-int8", marks=pytest.mark.openvino),
    ],
)
def test_eight_threads_on_one_predictor_give_the_sequential_answer(kind: str, request: pytest.FixtureRequest) -> None:
    """Issue 11 item 1: one Predictor, 8 threads, every frame distinct; 0 errors, bit-identical maps."""
    frames = [RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(THREADS * FRAMES_PER_THREAD)]
    options = {} if kind == "torch" else {"threads": 1}
    with Predictor.load(_artifact(kind, request), **options) as predictor:
        sequential = [predictor.predict(f) for f in frames]
        got: list = [None] * len(frames)
        errors: list[BaseException] = []
        start = threading.Barrier(THREADS)

        def work(worker: int) -> None:
            start.wait()
            try:
                for index in range(worker, len(frames), THREADS):
                    got[index] = predictor.predict(frames[index])
            except BaseException as exc:  # noqa: BLE001 - counted and reported below
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert errors == []
    for one, other in zip(sequential, got):
        assert other.raw_score == one.raw_score and other.pred_label == one.pred_label
        np.testing.assert_array_equal(other.anomaly_map, one.anomaly_map)


def test_a_closed_predictor_is_a_typed_error(onnx_artifact) -> None:  # noqa: ANN001
    predictor = Predictor.load(onnx_artifact.path, threads=1)
    predictor.close()
    with pytest.raises(PredictorClosedError, match="closed"):
        predictor.predict(BGR)


@pytest.mark.openvino
def test_a_closed_openvino_predictor_is_a_typed_error(openvino_artifact) -> None:  # noqa: ANN001
    predictor = Predictor.load(openvino_artifact.path, threads=1)
    predictor.close()
    with pytest.raises(PredictorClosedError, match="closed"):
        predictor.predict(BGR)


# ----------------------------------------------------------------------------- bad frames
BAD_FRAMES = {
    "none": (None, "got NoneType"),
    "list": ([[0, 0, 0]], "got list"),
    "nested-list": (BGR.tolist(), "got list"),
    "bytes": (BGR.tobytes(), "got bytes"),
    "str": ("frame.png", "got str"),
    "int": (7, "got int"),
    "dict": ({"image": BGR}, "got dict"),
    "empty": (np.zeros((0, 0, 3), np.uint8), "empty"),
    "zero-height": (np.zeros((0, 10, 3), np.uint8), "empty"),
    "zero-width": (np.zeros((10, 0), np.uint8), "empty"),
    "numpy-scalar": (np.uint8(3), "got uint8"),
    "rank0": (np.array(3, np.uint8), "rank 0"),
    "rank1": (np.zeros(64, np.uint8), "rank 1"),
    "rank4": (np.zeros((1, 64, 64, 3), np.uint8), "predict_batch"),
    "rank5": (np.zeros((1, 1, 8, 8, 3), np.uint8), "rank 5"),
    "two-channels": (np.zeros((8, 8, 2), np.uint8), "2"),
    "five-channels": (np.zeros((8, 8, 5), np.uint8), "5"),
    "channels-first": (np.zeros((3, 64, 64), np.uint8), "channels-first"),
    "nan": (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
    "one-nan": (np.where(np.eye(8, dtype=bool)[..., None], np.nan, 0.5).astype(np.float64), "NaN"),
    "inf": (np.full((8, 8, 3), np.inf, np.float32), "NaN or infinite"),
    "float-0-255": (np.full((8, 8, 3), 200.0, np.float32), r"\[0, 1\]"),
    "float-negative": (np.full((8, 8, 3), -0.1, np.float64), r"\[0, 1\]"),
    "int32": (np.zeros((8, 8, 3), np.int32), "int32"),
    "int64": (np.zeros((8, 8, 3), np.int64), "int64"),
    "int8": (np.zeros((8, 8, 3), np.int8), "int8"),
    "uint32": (np.zeros((8, 8, 3), np.uint32), "uint32"),
    "complex": (np.zeros((8, 8, 3), np.complex64), "complex64"),
    "object": (np.full((8, 8, 3), None, object), "object"),
    "string-array": (np.full((8, 8, 3), "a"), "<U1"),
    "datetime": (np.zeros((8, 8, 3), "datetime64[s]"), "datetime64"),
    "structured": (np.zeros((8, 8), [("r", "u1"), ("g", "u1"), ("b", "u1")]), "Unsupported image dtype"),
    "masked": (np.ma.masked_array(BGR, mask=np.zeros(BGR.shape, bool) | (np.arange(3) == 0)), "masked"),
}


@pytest.mark.onnxruntime
@pytest.mark.parametrize(("frame", "match"), list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
def test_a_bad_frame_is_an_invalid_input_error(onnx_predictor: Predictor, frame: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        onnx_predictor.predict(frame)  # type: ignore[arg-type]


def _equal(a, b) -> None:  # noqa: ANN001
    assert a.raw_score == b.raw_score and a.pred_label == b.pred_label
    np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)


GREY = BGR[..., 1]
#: name -> (frame as given, the canonical uint8 BGR frame it must score exactly like)
CONVERSIONS: dict[str, tuple[Callable[[], np.ndarray], Callable[[], np.ndarray]]] = {
    "matrix": (lambda: np.matrix(GREY), lambda: np.repeat(GREY[..., None], 3, axis=2)),
    "grey": (lambda: GREY, lambda: np.repeat(GREY[..., None], 3, axis=2)),
    "grey-1-channel": (lambda: GREY[..., None], lambda: np.repeat(GREY[..., None], 3, axis=2)),
    "bgra": (lambda: np.dstack([BGR, np.full(GREY.shape, 7, np.uint8)]), lambda: BGR),
    "fortran-order": (lambda: np.asfortranarray(BGR), lambda: BGR),
    "non-contiguous": (lambda: np.zeros((96, 112, 3), np.uint8)[::2, ::2] + BGR, lambda: BGR),
    "negative-strides": (lambda: BGR[::-1, ::-1][::-1, ::-1], lambda: BGR),
    "read-only": (lambda: _read_only(BGR), lambda: BGR),
    "uint16": (lambda: BGR.astype(np.uint16) * 257, lambda: BGR),
    "uint16-big-endian": (lambda: (BGR.astype(np.uint16) * 257).astype(">u2"), lambda: BGR),
    "float32": (lambda: BGR.astype(np.float32) / 255, lambda: BGR),
    "float64": (lambda: BGR.astype(np.float64) / 255, lambda: BGR),
    "float16": (lambda: (BGR.astype(np.float16) / 255).astype(np.float16), lambda: np.rint(BGR.astype(np.float16) / np.float16(255) * 255.0).astype(np.uint8)),
    "float-big-endian": (lambda: (BGR.astype(np.float32) / 255).astype(">f4"), lambda: BGR),
    "bool": (lambda: GREY > 128, lambda: np.repeat(((GREY > 128) * 255).astype(np.uint8)[..., None], 3, axis=2)),
    "unmasked-masked-array": (lambda: np.ma.masked_array(BGR, mask=False), lambda: BGR),
    "tiny-1x1": (lambda: BGR[:1, :1], lambda: np.ascontiguousarray(BGR[:1, :1])),
    "wide-1x4000": (lambda: np.tile(BGR[:1], (1, 72, 1))[:, :4000], lambda: np.ascontiguousarray(np.tile(BGR[:1], (1, 72, 1))[:, :4000])),
}


def _read_only(array: np.ndarray) -> np.ndarray:
    copy_ = array.copy()
    copy_.flags.writeable = False
    return copy_


@pytest.mark.onnxruntime
@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_other_frame_layouts_are_converted_exactly(onnx_predictor: Predictor, name: str) -> None:
    given, canonical = CONVERSIONS[name]
    frame = given()
    result = onnx_predictor.predict(frame)
    assert result.anomaly_map.shape == frame.shape[:2]
    _equal(result, onnx_predictor.predict(canonical()))


@pytest.mark.onnxruntime
def test_a_huge_frame_gets_a_map_at_its_own_size(onnx_predictor: Predictor) -> None:
    frame = np.zeros((3000, 4000, 3), np.uint8)
    result = onnx_predictor.predict(frame)
    assert result.anomaly_map.shape == (3000, 4000) and result.pred_mask.shape == (3000, 4000)


# ----------------------------------------------------------------------------- predict_batch calls
BAD_BATCHES = {
    "none": (None, "got NoneType"),
    "int": (3, "got int"),
    "str": ("a.png", "got str"),
    "bytes": (b"\x00", "got bytes"),
    "dict": ({0: BGR}, "got dict"),
    "empty-list": ([], "no frames"),
    "empty-tuple": ((), "no frames"),
    "empty-generator": ((f for f in []), "no frames"),
    "empty-array": (np.zeros((0, 8, 8, 3), np.uint8), "no frames"),
    "one-frame-array": (BGR, r"shape \(48, 56, 3\)"),
    "grey-frame-array": (GREY, "predict"),
    "list-with-none": ([BGR, None], "frame 1: .*NoneType"),
    "generator-with-bad-frame": ((f for f in [BGR, np.zeros((4, 4, 3), np.int32)]), "frame 1: .*int32"),
}


@pytest.mark.onnxruntime
@pytest.mark.parametrize(("frames", "match"), list(BAD_BATCHES.values()), ids=list(BAD_BATCHES))
def test_a_bad_batch_is_an_invalid_input_error(onnx_predictor: Predictor, frames: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        onnx_predictor.predict_batch(frames)  # type: ignore[arg-type]


@pytest.mark.onnxruntime
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda fs: (f for f in fs), id="generator"),
        pytest.param(lambda fs: tuple(fs), id="tuple"),
        pytest.param(lambda fs: iter(fs), id="iterator"),
        pytest.param(lambda fs: np.stack(fs), id="nhwc-array"),
        pytest.param(lambda fs: map(np.asarray, fs), id="map"),
    ],
)
def test_other_batch_containers_give_the_list_answer(onnx_predictor: Predictor, make: Callable) -> None:
    frames = [BGR, BGR[::-1].copy(), 255 - BGR]
    for got, want in zip(onnx_predictor.predict_batch(make(frames)), onnx_predictor.predict_batch(frames), strict=True):
        _equal(got, want)


# ----------------------------------------------------------------------------- NaN is never a decision
@pytest.mark.onnxruntime
def test_nan_maps_are_an_invalid_output_error_not_a_normal_verdict(onnx_predictor: Predictor) -> None:
    maps = np.full((2, 64, 64), 0.1, np.float32)
    maps[1, 3, 4] = np.nan
    with pytest.raises(InvalidOutputError, match=r"frame\(s\) \[1\]"):
        onnx_predictor.results_from_maps(maps, [(64, 64), (64, 64)])
    maps[1, 3, 4] = np.inf
    with pytest.raises(InvalidOutputError):
        onnx_predictor.results_from_maps(maps, [(64, 64), (64, 64)])


def test_a_model_with_nan_weights_raises_instead_of_answering(tiny_run: Path, tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.numpy")
    from fractalad_edge.artifact import describe_files, write_metadata

    directory = _copy(tiny_run, tmp_path)
    weights = safetensors.load_file(str(directory / "model.safetensors"))
    for name, value in weights.items():
        if value.dtype.kind == "f" and value.size > 1:
            value.reshape(-1)[0] = np.nan
    safetensors.save_file(weights, str(directory / "model.safetensors"))
    metadata = read_metadata(directory, verify=False)
    write_metadata(directory, dataclasses.replace(metadata, files=describe_files(directory, ["model.safetensors"])))
    with Predictor.load(directory) as predictor, pytest.raises(InvalidOutputError, match="NaN"):
        predictor.predict(BGR)


# ----------------------------------------------------------------------------- metadata edits
def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        keys = path.split(".")
        target = data
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if value is _DELETE:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return edit


_DELETE = object()

METADATA_EDITS: dict[str, tuple[Callable[[dict], None], str]] = {
    "model-str": (_set("model", "abc"), "model must be an object"),
    "model-list": (_set("model", [1, 2]), "model must be an object"),
    "model-null": (_set("model", None), "model must be an object"),
    "file-path-int": (_set("files.0.path", 123), "relative path"),
    "file-path-null": (_set("files.0.path", None), "relative path"),
    "file-path-empty": (_set("files.0.path", ""), "relative path"),
    "file-path-dotdot": (_set("files.0.path", "../../etc/passwd"), "inside the artifact"),
    "file-path-absolute": (_set("files.0.path", "/etc/passwd"), "inside the artifact"),
    "file-path-windows-drive": (_set("files.0.path", "C:/model.onnx"), "inside the artifact"),
    "file-path-backslash": (_set("files.0.path", "..\\model.onnx"), "relative path"),
    "file-path-dot": (_set("files.0.path", "./model.onnx"), "inside the artifact"),
    "file-sha-short": (_set("files.0.sha256", "abc"), "64 lowercase hex"),
    "file-sha-int": (_set("files.0.sha256", 5), "64 lowercase hex"),
    "file-entry-str": (_set("files.0", "model.onnx"), "must be an object"),
    "file-extra-key": (_set("files.0.size", 5), "unknown fields"),
    "files-dict": (_set("files", {"path": "model.onnx"}), "files must be a list"),
    "files-empty": (_set("files", []), "at least one model file"),
    "files-wrong-kind": (_set("files.0.path", "notes.txt"), "exactly one .onnx"),
    "height-float": (_set("input.height", 128.0), "input.height must be an integer"),
    "height-str": (_set("input.height", "64"), "input.height must be an integer"),
    "height-bool": (_set("input.height", True), "input.height must be an integer"),
    "height-small": (_set("input.height", 8), r"input.height must be in \[32"),
    "height-huge": (_set("input.height", 10**9), r"input.height must be in \[32"),
    "width-null": (_set("input.width", None), "input.width must be an integer"),
    "mean-nan": (_set("input.mean", [float("nan"), 0, 0]), "input.mean must be a finite number"),
    "mean-inf": (_set("input.mean", [float("inf"), 0, 0]), "input.mean must be a finite number"),
    "mean-str": (_set("input.mean", ["a", 0, 0]), "input.mean must be a finite number"),
    "mean-two": (_set("input.mean", [1, 2]), "3 numbers"),
    "mean-scalar": (_set("input.mean", 5), "3 numbers"),
    "mean-out-of-range": (_set("input.mean", [300, 0, 0]), r"input.mean must be in \[0.0, 255.0\]"),
    "std-nan": (_set("input.std", [float("nan"), 1, 1]), "input.std must be a finite number"),
    "std-inf": (_set("input.std", [1, float("inf"), 1]), "input.std must be a finite number"),
    "std-zero": (_set("input.std", [1, 0, 1]), "std > 0"),
    "std-negative": (_set("input.std", [1, -1, 1]), r"input.std must be in \[0.0"),
    "channel-order": (_set("input.channel_order", "xyz"), "channel_order"),
    "input-extra": (_set("input.scale", 2), "unknown fields"),
    "input-missing": (_set("input", _DELETE), "'input' is missing"),
    "input-list": (_set("input", [64, 64]), "input must be an object"),
    "schema-0": (_set("schema_version", 0), "schema_version"),
    "schema-negative": (_set("schema_version", -7), "schema_version"),
    "schema-true": (_set("schema_version", True), "schema_version"),
    "schema-str": (_set("schema_version", "1"), "schema_version"),
    "schema-float": (_set("schema_version", 1.0), "schema_version"),
    "format-unknown": (_set("format", "tflite"), "format must be one of"),
    "format-list": (_set("format", ["onnx"]), "format must be a string"),
    "precision-unknown": (_set("precision", "int4"), "precision must be one of"),
    "precision-int": (_set("precision", 8), "precision must be a string"),
    "runtime-int": (_set("runtime", 1), "runtime must be a string"),
    "runtime-empty": (_set("runtime", ""), "runtime must name"),
    "reduction-unknown": (_set("score.reduction", "median"), "score reduction"),
    "topk-nan": (_set("score.topk_fraction", float("nan")), "topk_fraction must be a finite"),
    "topk-zero": (_set("score.topk_fraction", 0), "topk_fraction"),
    "topk-str": (_set("score.topk_fraction", "0.1"), "topk_fraction must be a finite"),
    "calibration-threshold-nan": (_set("calibration.image_threshold", float("nan")), "finite"),
    "calibration-threshold-str": (_set("calibration.image_threshold", "0.5"), "finite"),
    "calibration-span-inverted": (_set("calibration.image_max", -1e9), "max > min"),
    "calibration-source": (_set("calibration.source", "guess"), "source"),
    "calibration-count-float": (_set("calibration.num_normal", 1.5), "num_normal must be an integer"),
    "calibration-count-negative": (_set("calibration.num_normal", -1), "num_normal"),
    "calibration-rule-method-int": (_set("calibration.rule.method", 3), "rule.method must be a string"),
    "calibration-rule-unknown": (_set("calibration.rule.method", "guess"), "threshold method must be one of"),
    "calibration-rule-fpr-range": (_set("calibration.rule", {"method": "fpr", "target_fpr": 1.5}), r"target_fpr, a false-alarm rate in \(0, 1\)"),
    "calibration-rule-f1-with-fpr": (_set("calibration.rule.target_fpr", 0.1), "takes none"),
    "calibration-rule-label": (_set("calibration.rule", "f1"), "must be an object"),
    "calibration-rule-missing": (_set("calibration.rule", _DELETE), "'rule' is missing"),
    "calibration-label-in-v3": (_set("calibration.method", "f1"), "unknown fields"),
    "calibration-list": (_set("calibration", [1]), "calibration must be an object"),
    "parity-passed-str": (_set("parity.passed", "yes"), "passed must be true or false"),
    "parity-diff-nan": (_set("parity.max_abs_diff", float("nan")), "max_abs_diff must be a finite"),
    "parity-count-str": (_set("parity.num_images", "4"), "num_images must be an integer"),
    "category-int": (_set("category", 5), "category must be a string"),
    "created-list": (_set("created", []), "created must be a string"),
    "unknown-top-level": (_set("extra", 1), "unknown fields"),
}


@pytest.fixture(scope="module")
def onnx_metadata(onnx_artifact) -> dict:  # noqa: ANN001
    return json.loads((onnx_artifact.path / METADATA_FILENAME).read_text())


@pytest.mark.onnxruntime
@pytest.mark.parametrize(("edit", "match"), list(METADATA_EDITS.values()), ids=list(METADATA_EDITS))
def test_a_bad_metadata_field_is_a_one_line_artifact_error(
    onnx_metadata: dict, tmp_path: Path, edit: Callable[[dict], None], match: str
) -> None:
    data = copy.deepcopy(onnx_metadata)
    edit(data)
    (tmp_path / METADATA_FILENAME).write_text(json.dumps(data))  # NaN/Infinity as Python's json writes them
    with pytest.raises(ArtifactError, match=match) as caught:
        read_metadata(tmp_path, verify=False)
    assert "\n" not in str(caught.value)


@pytest.mark.onnxruntime
def test_a_newer_schema_is_a_schema_version_error(onnx_metadata: dict, tmp_path: Path) -> None:
    (tmp_path / METADATA_FILENAME).write_text(json.dumps({**onnx_metadata, "schema_version": 99}))
    with pytest.raises(SchemaVersionError):
        read_metadata(tmp_path, verify=False)


# ----------------------------------------------------------------------------- files and integrity
def _rewrite(directory: Path, change: Callable[[dict], None]) -> None:
    path = directory / METADATA_FILENAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.onnxruntime
def test_a_corrupted_model_with_a_decoy_listed_file_fails(onnx_artifact, tmp_path: Path) -> None:  # noqa: ANN001
    """Issue 11 item 7: metadata lists a hashed decoy; model.onnx is corrupt. Loading must fail."""
    from fractalad_edge.artifact import sha256_file

    directory = _copy(onnx_artifact.path, tmp_path)
    (directory / "decoy.txt").write_text("harmless")
    model = directory / "model.onnx"
    model.write_bytes(model.read_bytes()[:-100] + b"\x00" * 100)
    _rewrite(directory, lambda d: d.update(files=[{"path": "decoy.txt", "sha256": sha256_file(directory / "decoy.txt")}]))
    with pytest.raises(ArtifactError, match=r"exactly one \.onnx"):
        Predictor.load(directory)


@pytest.mark.onnxruntime
def test_the_runtime_loads_the_listed_file_not_a_fixed_name(onnx_artifact, tmp_path: Path) -> None:  # noqa: ANN001
    directory = _copy(onnx_artifact.path, tmp_path)
    (directory / "model.onnx").rename(directory / "bottle-v2.onnx")
    (directory / "model.onnx").write_bytes(b"not a model")  # an unlisted file under the old name is never read
    _rewrite(directory, lambda d: d["files"][0].update(path="bottle-v2.onnx"))
    with Predictor.load(directory, threads=1) as renamed, Predictor.load(onnx_artifact.path, threads=1) as original:
        _equal(renamed.predict(BGR), original.predict(BGR))


@pytest.mark.onnxruntime
def test_a_symlink_out_of_the_artifact_is_refused(onnx_artifact, tmp_path: Path) -> None:  # noqa: ANN001
    directory = _copy(onnx_artifact.path, tmp_path)
    outside = tmp_path / "outside.onnx"
    (directory / "model.onnx").rename(outside)
    os.symlink(outside, directory / "model.onnx")
    with pytest.raises(ArtifactIntegrityError, match="outside the artifact folder"):
        Predictor.load(directory)


@pytest.mark.onnxruntime
def test_a_symlinked_folder_out_of_the_artifact_is_refused(onnx_artifact, tmp_path: Path) -> None:  # noqa: ANN001
    directory = _copy(onnx_artifact.path, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (directory / "model.onnx").rename(elsewhere / "model.onnx")
    os.symlink(elsewhere, directory / "weights")
    _rewrite(directory, lambda d: d["files"][0].update(path="weights/model.onnx"))
    with pytest.raises(ArtifactIntegrityError, match="outside the artifact folder"):
        Predictor.load(directory)


@pytest.mark.onnxruntime
def test_a_listed_path_outside_is_refused_even_without_verification(onnx_artifact, tmp_path: Path) -> None:  # noqa: ANN001
    directory = _copy(onnx_artifact.path, tmp_path)
    _rewrite(directory, lambda d: d["files"][0].update(path="../model/model.onnx"))
    with pytest.raises(ArtifactError, match="inside the artifact"):
        Predictor.load(directory, verify=False)


@pytest.mark.onnxruntime
def test_a_listed_folder_instead_of_a_file_is_refused(onnx_artifact, tmp_path: Path) -> None:  # noqa: ANN001
    directory = _copy(onnx_artifact.path, tmp_path)
    (directory / "dir.onnx").mkdir()
    _rewrite(directory, lambda d: d["files"][0].update(path="dir.onnx"))
    with pytest.raises(ArtifactError, match="missing"):
        Predictor.load(directory)


@pytest.mark.onnxruntime
def test_a_duplicate_listed_path_is_refused(onnx_artifact, tmp_path: Path) -> None:  # noqa: ANN001
    directory = _copy(onnx_artifact.path, tmp_path)
    _rewrite(directory, lambda d: d["files"].append(dict(d["files"][0])))
    with pytest.raises(ArtifactError, match="twice"):
        Predictor.load(directory)


@pytest.mark.openvino
def test_openvino_loads_the_listed_weights_file(openvino_artifact, tmp_path: Path) -> None:  # noqa: ANN001
    directory = _copy(openvino_artifact.path, tmp_path)
    (directory / "model.bin").rename(directory / "weights-v2.bin")
    _rewrite(directory, lambda d: [f.update(path="weights-v2.bin") for f in d["files"] if f["path"] == "model.bin"])
    with Predictor.load(directory, threads=1) as renamed, Predictor.load(openvino_artifact.path, threads=1) as original:
        _equal(renamed.predict(BGR), original.predict(BGR))


@pytest.mark.openvino
def test_openvino_with_a_corrupt_unlisted_bin_and_a_decoy_fails(openvino_artifact, tmp_path: Path) -> None:  # noqa: ANN001
    directory = _copy(openvino_artifact.path, tmp_path)
    (directory / "model.bin").write_bytes(b"\x00" * 64)
    _rewrite(directory, lambda d: d.update(files=[f for f in d["files"] if f["path"] != "model.bin"]))
    with pytest.raises(ArtifactError, match=r"exactly one \.bin"):
        Predictor.load(directory)


def test_torch_loads_the_listed_weights_file(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    directory = tmp_path / "run"
    directory.mkdir()
    shutil.copy(tiny_run / METADATA_FILENAME, directory)
    shutil.copy(tiny_run / "model.safetensors", directory / "weights.safetensors")
    (directory / "model.safetensors").write_bytes(b"junk")
    _rewrite(directory, lambda d: d["files"][0].update(path="weights.safetensors"))
    with Predictor.load(directory) as renamed, Predictor.load(tiny_run) as original:
        _equal(renamed.predict(BGR), original.predict(BGR))
