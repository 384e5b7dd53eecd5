"""TensorRT: the explicit-quantization graph, the version branches, compatibility and error paths.

Most of TensorRT cannot run here, so what can be is checked without it, through the SDK's own
seams (the version policy takes a parsed version; the Q/DQ rules are read off the graph; the
compatibility check takes two EngineInfo values). Engine builds, parity and deprecation
warnings run only where TensorRT and a CUDA device exist (markers tensorrt and gpu).
"""

from __future__ import annotations

import ast
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from fractalad_edge.artifact import EngineInfo, Precision
from fractalad_edge.errors import ConfigError, CudaError, EngineMismatchError, RuntimeMismatchError
from fractalad_edge.export.tensorrt_policy import NetworkTyping, TensorRTVersion, plan_build

PACKAGE = Path(__file__).resolve().parents[1] / "fractalad_edge"
SIZE = 64
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs onnx and onnxruntime",
)

#: TensorRT APIs deprecated in 10.1 or earlier 10.x (implicit batch, implicit quantization) or removed in 11
#: (weak typing: precision builder flags and layer precision constraints)
DEPRECATED_OR_REMOVED = {
    "EXPLICIT_BATCH", "INT8", "FP16", "BF16", "PREFER_PRECISION_CONSTRAINTS", "OBEY_PRECISION_CONSTRAINTS",
    "IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator", "IInt8LegacyCalibrator",
    "IInt8Calibrator", "int8_calibrator", "set_calibration_profile", "set_dynamic_range",
}


# ----------------------------------------------------------------------------- version policy
@pytest.mark.parametrize(
    ("version", "precision", "typing", "network_flags", "builder_flags"),
    [
        ("8.6.1", Precision.FP32, NetworkTyping.WEAK, ("EXPLICIT_BATCH",), ()),
        ("8.6.2.3", Precision.FP16, NetworkTyping.WEAK, ("EXPLICIT_BATCH",), ("FP16",)),
        ("8.6.2", Precision.INT8, NetworkTyping.WEAK, ("EXPLICIT_BATCH",), ("INT8", "FP16")),
        ("10.3.0", Precision.FP32, NetworkTyping.STRONG, ("STRONGLY_TYPED",), ()),
        ("10.3.0", Precision.INT8, NetworkTyping.STRONG, ("STRONGLY_TYPED",), ()),
        ("10.3.0", Precision.FP16, NetworkTyping.WEAK, (), ("FP16",)),
        ("10.16.0", Precision.INT8, NetworkTyping.STRONG, ("STRONGLY_TYPED",), ()),
        ("11.1.0", Precision.FP32, NetworkTyping.STRONG, ("STRONGLY_TYPED",), ()),
        ("11.1.0", Precision.INT8, NetworkTyping.STRONG, ("STRONGLY_TYPED",), ()),
    ],
)
def test_each_supported_version_takes_its_branch(version, precision, typing, network_flags, builder_flags) -> None:  # noqa: ANN001
    plan = plan_build(version, precision)
    assert (plan.typing, plan.network_flags, plan.builder_flags) == (typing, network_flags, builder_flags)
    assert plan.pin_float_regions_fp16 == (version.startswith("8.") and precision is Precision.INT8)


@pytest.mark.parametrize("version", ["10.0.1", "10.3.0", "10.16.0", "11.0.0", "11.1.0"])
@pytest.mark.parametrize("precision", [Precision.FP32, Precision.INT8, Precision.FP16])
def test_no_deprecated_or_removed_api_on_the_10_and_11_branches(version: str, precision: Precision) -> None:
    try:
        plan = plan_build(version, precision)
    except RuntimeMismatchError:
        assert version.startswith("11.") and precision is Precision.FP16  # refused by name, below
        return
    used = set(plan.network_flags) | set(plan.builder_flags)
    if precision is Precision.FP16:  # 10.x fp16: BuilderFlag.FP16, deprecated in 10.12 (not 10.1), gone in 11
        assert version.startswith("10.") and used == {"FP16"}
        return
    assert not used & DEPRECATED_OR_REMOVED
    assert not plan.pin_float_regions_fp16
    assert plan.clear_tf32 == version.startswith("10.")  # BuilderFlag.TF32 not relied on in 11


def test_the_engine_code_calls_no_implicit_quantization_or_removed_api() -> None:
    """Read the TensorRT modules: flags come only from the plan; no calibrator, no implicit batch, anywhere."""
    modules = [
        PACKAGE / "export" / "tensorrt_engine.py",
        PACKAGE / "export" / "tensorrt.py",
        PACKAGE / "runtimes" / "tensorrt.py",
        PACKAGE / "runtimes" / "tensorrt_compat.py",
        PACKAGE / "runtimes" / "cuda_memory.py",
        PACKAGE / "quantize" / "tensorrt.py",
    ]
    for path in modules:
        tree = ast.parse(path.read_text())
        names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        literal = {
            node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr in ("BuilderFlag", "NetworkDefinitionCreationFlag")
        }
        # the one literal flag besides TF32 is the 8.6-only precision-constraint preference
        assert literal <= {"TF32", "PREFER_PRECISION_CONSTRAINTS"}, (path.name, literal)
        assert not names & (DEPRECATED_OR_REMOVED - {"PREFER_PRECISION_CONSTRAINTS", "INT8", "FP16"}), path.name
    engine = ast.parse((PACKAGE / "export" / "tensorrt_engine.py").read_text())
    guarded = [
        node for node in ast.walk(engine)
        if isinstance(node, ast.If) and "PREFER_PRECISION_CONSTRAINTS" in ast.unparse(node.body[0])
    ]
    assert len(guarded) == 1 and "plan.pin_float_regions_fp16" in ast.unparse(guarded[0].test)


@pytest.mark.parametrize("version", ["8.5.3", "8.2.1", "9.2.0", "12.0.0", "7.1.3"])
def test_unsupported_versions_are_refused_by_name(version: str) -> None:
    with pytest.raises(RuntimeMismatchError, match=rf"TensorRT {version} is not supported.*8\.6.*10\.x.*11\.x"):
        plan_build(version, Precision.INT8)


def test_fp16_on_tensorrt_11_is_refused_with_the_way_out() -> None:
    with pytest.raises(RuntimeMismatchError, match=r"TensorRT 11\.1\.0 builds strongly typed networks only.*--precision int8"):
        plan_build("11.1.0", Precision.FP16)


def test_version_strings_are_parsed_or_refused() -> None:
    assert TensorRTVersion.parse("10.3.0.26") == TensorRTVersion(major=10, minor=3, patch=0, text="10.3.0.26")
    assert TensorRTVersion.parse("8.6").patch == 0
    with pytest.raises(RuntimeMismatchError, match="cannot read a TensorRT version from 'ten'"):
        TensorRTVersion.parse("ten")
    with pytest.raises(RuntimeMismatchError, match="not bf16"):
        plan_build("10.3.0", Precision.BF16)


def test_pyproject_bounds_the_tensorrt_extra_like_the_policy() -> None:
    import tomllib

    from fractalad_edge.export.tensorrt_policy import NEWEST_MAJOR, OLDEST

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    (requirement,) = project["optional-dependencies"]["tensorrt"][:1]
    assert requirement.replace(" ", "") == f"tensorrt>={OLDEST[0]}.{OLDEST[1]},<{NEWEST_MAJOR + 1}"


# ----------------------------------------------------------------------------- the Q/DQ graph
@pytest.fixture(scope="module")
def tensorrt_qdq(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path, normal_images_dir: Path):  # noqa: ANN201
    """The tiny run's fp32 ONNX quantized for TensorRT, with the nodes left in float."""
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("needs onnxruntime")
    import onnx

    from fractalad_edge.artifact import read_metadata
    from fractalad_edge.calibration import CalibrationConfig, build_calibration_sets
    from fractalad_edge.export.onnx import export_onnx
    from fractalad_edge.models.torch_format import load_model
    from fractalad_edge.quantize.tensorrt import quantize_for_tensorrt

    folder = tmp_path_factory.mktemp("trt_qdq")
    metadata = read_metadata(tiny_run)
    fp32 = export_onnx(load_model(tiny_run, metadata), folder / "fp32.onnx", input_size=SIZE)
    calibration, _ = build_calibration_sets(
        sorted(normal_images_dir.glob("*.png")), CalibrationConfig(count=8, validation_count=2, image_size=SIZE, seed=3)
    )
    out = folder / "model.onnx"
    float_layers = quantize_for_tensorrt(fp32, out, calibration, metadata.input)
    return onnx.load(str(out)), float_layers, fp32


@needs_onnxruntime
def test_tensorrt_qdq_graph_follows_tensorrts_quantization_rules(tensorrt_qdq) -> None:  # noqa: ANN001
    from onnx import TensorProto, numpy_helper

    from fractalad_edge.quantize.tensorrt import check_tensorrt_qdq

    model, _, _ = tensorrt_qdq
    assert check_tensorrt_qdq(model) == []
    init = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 20
    for node in qdq:  # signed int8, zero point 0: read directly, not only through the checker
        zero = init[node.input[2]]
        assert zero.data_type == TensorProto.INT8 and not numpy_helper.to_array(zero).any()
    dq_by_output = {n.output[0]: n for n in qdq if n.op_type == "DequantizeLinear"}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in dq_by_output]
    assert convs, "no INT8 convolution"
    for conv in convs:  # per-channel weight scales on axis 0, one per output channel
        dq = dq_by_output[conv.input[1]]
        weight = numpy_helper.to_array(init[dq.input[0]])
        scales = numpy_helper.to_array(init[dq.input[1]])
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        assert weight.dtype == np.int8 and scales.shape == (weight.shape[0],) and axis == 0
        assert len(conv.input) < 3 or conv.input[2] in init  # biases stay float (no int32 DequantizeLinear)


@needs_onnxruntime
def test_tensorrt_qdq_graph_keeps_the_float_regions_float(tensorrt_qdq) -> None:  # noqa: ANN001
    model, float_layers, _ = tensorrt_qdq
    producer = {o: n for n in model.graph.node for o in n.output}
    nodes = {n.name: n for n in model.graph.node}
    assert any(name.startswith("/teacher/") for name in float_layers)  # TEACHER_STEM
    for op in ("GridSample", "ReduceSum"):  # FLOW, CSAM
        found = [n for n in model.graph.node if n.op_type == op]
        assert found and all(n.name in float_layers for n in found), op
    assert producer[model.graph.output[0].name].name in float_layers  # CLASSIFIER: up to the logit map
    for name in float_layers:  # no float-region node reads an INT8-rounded activation
        for tensor in nodes[name].input:
            source = producer.get(tensor)
            if source is not None and source.op_type == "DequantizeLinear":
                assert producer.get(source.input[0]) is None, f"{name} reads a quantized activation"


@needs_onnxruntime
def test_the_onnxruntime_int8_graph_breaks_tensorrts_rules(
    tmp_path: Path, tensorrt_qdq, tiny_run: Path, normal_images_dir: Path  # noqa: ANN001
) -> None:
    """The project's onnxruntime INT8 graph (u8 asymmetric activations, 7-bit weights) was what tensorrt got before."""
    import onnx

    from fractalad_edge.artifact import read_metadata
    from fractalad_edge.calibration import CalibrationConfig, build_calibration_sets
    from fractalad_edge.quantize.onnxruntime import quantize_onnx_model
    from fractalad_edge.quantize.tensorrt import check_tensorrt_qdq

    _, _, fp32 = tensorrt_qdq
    paths = sorted(normal_images_dir.glob("*.png"))
    calibration, _ = build_calibration_sets(paths, CalibrationConfig(count=4, validation_count=2, image_size=SIZE, seed=3))
    out = tmp_path / "ort.onnx"
    quantize_onnx_model(fp32, out, calibration, read_metadata(tiny_run).input)
    problems = check_tensorrt_qdq(onnx.load(str(out)))
    assert any("not signed INT8" in p for p in problems)
    assert check_tensorrt_qdq(onnx.load(str(fp32))) == ["no QuantizeLinear/DequantizeLinear node: the graph is not quantized"]


@needs_onnxruntime
@pytest.mark.slow
def test_int8_tensorrt_export_without_tensorrt_writes_the_qdq_graph_and_gates_it(
    tmp_path: Path, tiny_run: Path
) -> None:
    if HAS_TENSORRT:
        pytest.skip("TensorRT is installed: the engine path is tested below")
    import onnx

    from fractalad_edge.export import ExportOptions, export_model
    from fractalad_edge.quantize.tensorrt import QUANTIZATION_MODE, check_tensorrt_qdq

    messages: list[str] = []
    options = ExportOptions(precision=Precision.INT8, calib_count=8, parity_images=4, max_drop=100.0)
    md = export_model(tiny_run, format="tensorrt", out=tmp_path / "m", options=options, progress=messages.append)
    assert md.engine is None and [f.path for f in md.files] == ["model.onnx"]
    assert md.quantization is not None and md.quantization.mode == QUANTIZATION_MODE and md.quantization.ignored_layers
    assert any("int8 accuracy gate" in m for m in messages)
    assert check_tensorrt_qdq(onnx.load(str(tmp_path / "m" / "model.onnx"))) == []


# ----------------------------------------------------------------------------- compatibility
ORIN_NANO_8GB = EngineInfo(
    tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7",
    multiprocessor_count=8, total_memory_bytes=7_620_000_000,
)


def test_engines_of_another_orin_module_are_refused() -> None:
    from dataclasses import replace

    from fractalad_edge.runtimes.tensorrt_compat import check_engine_compatible

    agx_64 = replace(ORIN_NANO_8GB, multiprocessor_count=16, total_memory_bytes=64_300_000_000)
    with pytest.raises(EngineMismatchError, match=r"8 SMs \(this machine: 16\).*GiB"):
        check_engine_compatible(ORIN_NANO_8GB, agx_64, source="model.engine")
    nx_16 = replace(ORIN_NANO_8GB, total_memory_bytes=15_600_000_000)  # same SM count, twice the memory
    with pytest.raises(EngineMismatchError, match="GiB"):
        check_engine_compatible(ORIN_NANO_8GB, nx_16, source="model.engine")
    check_engine_compatible(ORIN_NANO_8GB, replace(ORIN_NANO_8GB, total_memory_bytes=7_640_000_000), source="e")
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.3\.0 \(this machine: 10\.16\.0\)"):
        check_engine_compatible(ORIN_NANO_8GB, replace(ORIN_NANO_8GB, tensorrt_version="10.16.0"), source="e")
    # engines recorded before SM count and memory were: the old check still applies
    old = EngineInfo(tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7")
    check_engine_compatible(old, agx_64, source="e")


def test_engine_cache_names_tell_modules_apart() -> None:
    from dataclasses import replace

    from fractalad_edge.runtimes.tensorrt_compat import engine_cache_name

    name = engine_cache_name(ORIN_NANO_8GB, onnx_sha256="ab" * 32, precision=Precision.INT8)
    assert name == "model.abababababab.trt10.3.0.orin.sm87-8sm-7gib.int8.engine"
    other = engine_cache_name(replace(ORIN_NANO_8GB, multiprocessor_count=16), onnx_sha256="ab" * 32, precision=Precision.INT8)
    assert other != name


def test_engine_info_round_trips_through_metadata(tensorrt_export) -> None:  # noqa: ANN001
    from dataclasses import replace

    from fractalad_edge.artifact import ArtifactMetadata, ModelFile

    # an artifact with engine info lists its engine file too (metadata validation requires it)
    engine_file = ModelFile(path="model.engine", sha256="0" * 64)
    md = replace(tensorrt_export.metadata, engine=ORIN_NANO_8GB, files=(*tensorrt_export.metadata.files, engine_file))
    assert ArtifactMetadata.from_dict(md.to_dict()).engine == ORIN_NANO_8GB


# ----------------------------------------------------------------------------- devices and CUDA errors
def test_device_strings() -> None:
    from fractalad_edge.runtimes.tensorrt import cuda_device_index

    assert cuda_device_index("cuda") == 0 and cuda_device_index("cuda:3") == 3
    with pytest.raises(ConfigError, match="'cuda' or 'cuda:N', got 'cpu'"):
        cuda_device_index("cpu")


@pytest.mark.skipif(importlib.util.find_spec("cuda") is not None, reason="cuda-python installed: torch fallback unused")
def test_torch_fallback_without_a_visible_device_raises_a_cuda_error() -> None:
    torch = pytest.importorskip("torch")
    from fractalad_edge.runtimes.cuda_memory import TorchCudaMemory, device_properties, use_device

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        for call in (lambda: use_device(count), lambda: TorchCudaMemory(count), lambda: device_properties(count)):
            with pytest.raises(CudaError, match=rf"cuda:{count} does not exist; this machine has {count}"):
                call()
        return
    for call in (lambda: use_device(1), lambda: TorchCudaMemory(1), lambda: device_properties(0)):
        with pytest.raises(CudaError, match="none is visible"):
            call()


# ----------------------------------------------------------------------------- where TensorRT runs
def _trt_and_cuda():  # noqa: ANN202
    trt = pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return trt


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_a_failed_deserialisation_releases_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    _trt_and_cuda()
    import fractalad_edge.runtimes.tensorrt as module

    created = []
    real = module.cuda_memory
    monkeypatch.setattr(module, "cuda_memory", lambda index: created.append(real(index)) or created[-1])
    with pytest.raises(EngineMismatchError, match="could not be deserialized"):
        module.TensorRTBackend(b"not an engine", device="cuda:0", engine_info=ORIN_NANO_8GB, source="garbage")
    assert len(created) == 1 and created[0].stream is None  # closed on the failure path


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", [Precision.FP16, Precision.INT8])
def test_engine_builds_run_and_match_onnxruntime_without_deprecation_warnings(
    precision: Precision, tmp_path: Path, tiny_run: Path
) -> None:
    """fp16 from the fp32 ONNX, int8 from the Q/DQ ONNX; parity against onnxruntime on the same graph."""
    trt = _trt_and_cuda()
    from fractalad_edge.export import ExportOptions, export_model
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    if precision is Precision.FP16 and TensorRTVersion.parse(trt.__version__).major >= 11:
        pytest.skip("fp16 is refused on TensorRT 11 (tested above)")
    options = ExportOptions(precision=precision, calib_count=8, parity_images=4, max_drop=100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        md = export_model(tiny_run, format="tensorrt", out=tmp_path / "m", options=options, progress=None)
        engine = Predictor.load(tmp_path / "m", device="cuda:0")
    reference = Predictor(OnnxRuntimeBackend(tmp_path / "m" / "model.onnx"), md)
    try:
        frames = [np.full((SIZE, SIZE, 3), v, np.uint8) for v in (40, 128, 220)]
        assert np.abs(engine.raw_maps(frames) - reference.raw_maps(frames)).max() < 0.05
    finally:
        engine.backend.close()
        reference.backend.close()
    assert md.engine is not None and md.engine.multiprocessor_count > 0 and md.engine.total_memory_bytes > 0
