"""Export: the FORMATS table and its up-front checks, the ONNX graph, the written artifacts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from fractalad_edge.artifact import ModelFormat, Precision, read_metadata, sha256_file
from fractalad_edge.errors import ConfigError, ExportError, OutputExistsError, ParityError, RuntimeNotAvailableError
from fractalad_edge.export import FORMATS, ExportOptions, check_export_request, export_model
from fractalad_edge.export.parity import enforce_parity, tolerance_for

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


# ----------------------------------------------------------------------------- the table
def test_formats_table_lists_the_promised_precisions_and_runtimes() -> None:
    assert FORMATS[ModelFormat.TORCH].precisions == (Precision.FP32,)
    assert set(FORMATS[ModelFormat.ONNX].precisions) == {Precision.FP32, Precision.INT8}
    assert set(FORMATS[ModelFormat.OPENVINO].precisions) == {Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8}
    assert set(FORMATS[ModelFormat.TENSORRT].precisions) == {Precision.FP32, Precision.FP16, Precision.INT8}
    assert {f: s.runtime for f, s in FORMATS.items()} == {
        ModelFormat.TORCH: "torch",
        ModelFormat.ONNX: "onnxruntime",
        ModelFormat.OPENVINO: "openvino",
        ModelFormat.TENSORRT: "tensorrt",
    }
    with pytest.raises(TypeError):
        FORMATS[ModelFormat.ONNX] = FORMATS[ModelFormat.TORCH]  # type: ignore[index]  # read-only table


@pytest.mark.parametrize(
    ("format", "precision", "options", "needle"),
    [
        ("torch", "int8", (), "accepts fp32"),
        ("onnx", "bf16", (), "accepts fp32, int8"),
        ("tflite", "fp32", (), "choose one of torch, onnx, openvino, tensorrt"),
        ("onnx", "fp64", (), "choose one of fp32, fp16, bf16, int8"),
        ("onnx", "fp32", ("max_drop",), "int8"),
        ("openvino", "fp32", ("workspace",), "does not take option(s) workspace"),
        ("torch", "fp32", ("opset",), "does not take option(s) opset"),
        ("onnx", "fp32", ("int8_weights",), "apply to int8"),
        ("openvino", "int8", ("int8_weights",), "does not take option(s) int8_weights"),
        ("onnx", "int8", ("quant_mode",), "does not take option(s) quant_mode"),
    ],
)
def test_check_export_request_refuses_with_what_is_accepted(format: str, precision: str, options: tuple, needle: str) -> None:
    with pytest.raises(ExportError) as info:
        check_export_request(format, precision, options)
    assert needle in str(info.value)


def test_bad_request_fails_before_any_work(tmp_path: Path) -> None:
    """The request is refused before the run directory is even read (it does not exist here)."""
    for module in ("torch", "onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module)
    missing_run = tmp_path / "no-such-run"
    with pytest.raises(ExportError, match="accepts fp32"):
        export_model(missing_run, format="torch", out=tmp_path / "out", options=ExportOptions(precision="int8"), progress=None)
    with pytest.raises(ExportError, match="does not take option"):
        export_model(missing_run, format="torch", out=tmp_path / "out", options=ExportOptions(opset=18), progress=None)
    with pytest.raises(ExportError, match="runs on cpu, cuda, tensorrt; got device 'gpu'"):
        export_model(missing_run, format="onnx", out=tmp_path / "out", options=ExportOptions(device="gpu"), progress=None)
    assert not (tmp_path / "out").exists()


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("torch", "onnx", "onnxscript"):
        pytest.importorskip(module)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` really fail
    with pytest.raises(RuntimeNotAvailableError, match=r"fractalad-edge\[onnxruntime\]"):
        check_export_request("onnx", "fp32")
    monkeypatch.setitem(sys.modules, "nncf", None)
    if importlib.util.find_spec("openvino") is not None:
        check_export_request("openvino", "fp32")  # nncf is only needed for int8
    with pytest.raises(RuntimeNotAvailableError, match=r"nncf.*fractalad-edge\[openvino\]"):
        check_export_request("openvino", "int8")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(RuntimeNotAvailableError, match="one of tensorrt, onnxruntime"):
        check_export_request("tensorrt", "fp32")
    monkeypatch.delitem(sys.modules, "tensorrt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(RuntimeNotAvailableError, match=r"fractalad-edge\[onnxruntime\]"):
        check_export_request("tensorrt", "int8")  # the Q/DQ graph is made with onnxruntime's quantizer


def test_quant_modes_match_the_openvino_quantizer() -> None:
    from fractalad_edge.export.formats import QUANT_MODES
    from fractalad_edge.quantize.openvino import MODES

    assert QUANT_MODES == MODES


def test_export_options_validate_and_report_what_was_set() -> None:
    assert ExportOptions().explicit_options() == ()
    assert ExportOptions(precision="fp16", opset=17, calib_count=16).explicit_options() == ("precision", "calib_count")
    assert ExportOptions(calib_data="x").calib_data == Path("x")
    assert ExportOptions(int8_weights="full").explicit_options() == ("int8_weights",)
    for bad in ({"opset": 15}, {"calib_count": 1}, {"tolerance": 0.0}, {"parity_images": 0}, {"anomaly_ratio": 1.0}, {"precision": "fp8"}, {"int8_weights": "8bit"}, {"quant_mode": "qat"}):
        with pytest.raises(ConfigError):
            ExportOptions(**bad)


def test_destination_that_is_not_a_model_directory_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="export never writes into it"):
        export_model(tiny_run, format="torch", out=tmp_path, progress=None)
    with pytest.raises(ExportError, match="training run itself"):
        export_model(tiny_run, format="torch", out=tiny_run, progress=None)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- onnx
@pytest.mark.onnxruntime
def test_onnx_graph_is_static_checked_and_self_contained(onnx_artifact) -> None:
    onnx = pytest.importorskip("onnx")
    path = onnx_artifact.path / "model.onnx"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]
    ops = {n.op_type for n in proto.graph.node}
    assert "GridSample" in ops  # the flow warp survived export
    assert not ops & {"Shape", "ConstantOfShape", "Pad"}  # static shape arithmetic folded away
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert sorted(p.name for p in onnx_artifact.path.iterdir()) == ["metadata.json", "model.onnx"]


@pytest.mark.onnxruntime
def test_onnx_export_writes_checked_metadata_and_next_command(onnx_artifact, tiny_run: Path) -> None:
    md = onnx_artifact.metadata
    run = read_metadata(tiny_run)
    assert (md.format, md.precision, md.runtime) == (ModelFormat.ONNX, Precision.FP32, "onnxruntime")
    assert md.input == run.input and md.model == run.model and md.score == run.score
    assert [(f.path, f.sha256) for f in md.files] == [("model.onnx", sha256_file(onnx_artifact.path / "model.onnx"))]
    assert md.parity is not None and md.parity.passed and md.parity.max_abs_diff <= 1e-4 and md.parity.num_images == 4
    assert md.calibration is not None and md.calibration.source == "synthetic"
    assert (md.calibration.num_normal, md.calibration.num_anomalous) == (4, 4)
    assert md.package_version and md.created and md.engine is None
    assert read_metadata(onnx_artifact.path) == md  # what was returned is what was written
    assert any(m.startswith("parity vs torch-fp32") and "passed" in m for m in onnx_artifact.messages)
    assert onnx_artifact.messages[-1] == f"next: fractalad-edge predict {onnx_artifact.path} images/*.png --out preds/"
    assert not list(onnx_artifact.path.parent.glob(".model*.partial"))  # no scratch folder left behind


def test_the_checked_with_line_names_the_precision_the_runtime_resolved() -> None:
    from fractalad_edge.export.pipeline import _checked_with
    from fractalad_edge.runtimes.base import Backend

    class Plain(Backend):  # a runtime that runs the artifact's precision as stored
        name = "plain"

        @classmethod
        def open(cls, directory, metadata, *, device="cpu", **options):  # noqa: ANN001, ANN206
            return cls()

        def infer(self, batch: np.ndarray) -> np.ndarray:
            return np.zeros(batch.shape[:1] + batch.shape[2:], np.float32)

    class Resolving(Plain):  # reports its resolution only through the typed method, not through describe()
        def inference_precision(self) -> str:
            return "f32"

    assert Plain().inference_precision() is None
    assert _checked_with("plain cpu", Plain()) == "plain cpu"
    assert "inference_precision" not in Resolving().describe()
    assert _checked_with("openvino cpu", Resolving()) == "openvino cpu, runs f32"


# ----------------------------------------------------------------------------- openvino
@pytest.mark.openvino
def test_openvino_fp32_ir_keeps_fp32_weights(openvino_artifact) -> None:
    md = openvino_artifact.metadata
    assert (md.format, md.precision, md.runtime) == (ModelFormat.OPENVINO, Precision.FP32, "openvino")
    assert [f.path for f in md.files] == ["model.xml", "model.bin"]
    xml = (openvino_artifact.path / "model.xml").read_text()
    # ov.save_model compresses to fp16 unless told not to: an fp32 artifact must hold no f16 constants.
    assert 'element_type="f32"' in xml and 'element_type="f16"' not in xml
    assert md.parity is not None and md.parity.passed and md.parity.max_abs_diff <= 1e-4


# ----------------------------------------------------------------------------- tensorrt
@pytest.mark.slow
def test_tensorrt_export_without_tensorrt_carries_the_onnx(tensorrt_export) -> None:
    if HAS_TENSORRT:
        pytest.skip("TensorRT is installed: the engine path is tested in test_runtimes (tensorrt marker)")
    md = tensorrt_export.metadata
    assert (md.format, md.runtime, md.engine) == (ModelFormat.TENSORRT, "tensorrt", None)
    assert [f.path for f in md.files] == ["model.onnx"]
    assert md.parity is not None and md.parity.passed  # the ONNX the engine will be built from, checked here
    assert any("TensorRT is not installed here" in m for m in tensorrt_export.messages)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_export_with_tensorrt_writes_a_plain_engine(tensorrt_export) -> None:
    trt = pytest.importorskip("tensorrt")
    md = tensorrt_export.metadata
    assert md.engine is not None and md.engine.tensorrt_version == trt.__version__
    engine_bytes = (tensorrt_export.path / "model.engine").read_bytes()
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    assert runtime.deserialize_cuda_engine(engine_bytes) is not None  # no header: any TensorRT tool opens it
    assert md.parity is not None and md.parity.passed


# ----------------------------------------------------------------------------- torch + parity
def test_torch_export_runs_the_same_pipeline(tiny_run: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    md = export_model(tiny_run, format="torch", out=tmp_path / "t", options=ExportOptions(calib_count=4, parity_images=2), progress=messages.append)
    assert md.format is ModelFormat.TORCH and md.parity is not None and md.parity.max_abs_diff == 0.0
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["metadata.json", "model.safetensors"]
    assert md.calibration is not None and md.calibration.num_normal + md.calibration.num_anomalous == 4
    # Re-exporting over an earlier artifact of the same format replaces it when forced.
    again = export_model(
        tiny_run, format="torch", out=tmp_path / "t", options=ExportOptions(calib_count=4, parity_images=2), progress=None, force=True
    )
    assert again.created >= md.created and read_metadata(tmp_path / "t") == again


@pytest.mark.onnxruntime
def test_parity_beyond_tolerance_is_a_parity_error(onnx_artifact, tiny_run: Path, normal_images_dir: Path) -> None:
    from fractalad_edge.data.images import read_image
    from fractalad_edge.export.parity import compare_maps
    from fractalad_edge.predictor import Predictor

    images = [read_image(p) for p in sorted(normal_images_dir.glob("*.png"))[:2]]
    reference = Predictor.load(tiny_run, runtime="torch")
    candidate = Predictor.load(onnx_artifact.path)
    report = compare_maps(reference, candidate, images, tolerance=1e-4)
    assert report.passed and report.max_abs_diff <= 1e-4 and report.decisions_agree == 1.0
    # ORT and torch sum in another order, so their maps are not bit-identical; a zero
    # tolerance must therefore fail (this is how a real mismatch would surface).
    strict = compare_maps(reference, candidate, images, tolerance=1e-12)
    assert not strict.passed and strict.max_abs_diff > 0.0
    with pytest.raises(ParityError, match="beyond tolerance"):
        enforce_parity(strict, Precision.FP32, what="the onnx fp32 export")
    enforce_parity(strict, Precision.INT8, what="int8")  # int8 is judged by the accuracy gate instead


def test_reduced_precisions_get_looser_tolerances_never_tighter() -> None:
    assert tolerance_for(Precision.FP32, 1e-4) == 1e-4
    assert 1e-4 < tolerance_for(Precision.FP16, 1e-4) < tolerance_for(Precision.BF16, 1e-4) < tolerance_for(Precision.INT8, 1e-4)
    assert tolerance_for(Precision.FP16, 0.5) == 0.5
    assert np.isfinite([tolerance_for(p, 1e-4) for p in Precision]).all()


def test_memory_search_spaces_get_a_looser_fp32_tolerance() -> None:
    from fractalad_edge.score_space import ScoreSpace

    # the search's squared-norm distances cancel in float32 (export/parity.py); the head's spaces do not
    assert tolerance_for(Precision.FP32, 1e-4, ScoreSpace.SIGMOID) == 1e-4
    assert tolerance_for(Precision.FP32, 1e-4, ScoreSpace.LOGIT) == 1e-4
    assert tolerance_for(Precision.FP32, 1e-4, ScoreSpace.DISTANCE) == pytest.approx(1e-3)
    assert tolerance_for(Precision.FP32, 1e-4, ScoreSpace.FUSED) == pytest.approx(1e-3)
    for space in ScoreSpace:
        assert tolerance_for(Precision.FP16, 1e-4, space) >= tolerance_for(Precision.FP32, 1e-4, space)
