"""INT8 quantization: real quantized graphs, float regions, the Predictor path, and the accuracy gate.

The tiny model has random weights, so AUROC values here are meaningless as accuracy; the
tests check structure (what is INT8, what stays float), that INT8 artifacts run through
the same Predictor, and the gate's decisions on measured numbers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from fractalad_edge.artifact import Precision, read_metadata
from fractalad_edge.calibration import CalibrationConfig, build_calibration_sets
from fractalad_edge.calibration.dataset import CalibrationSample, CalibrationSet
from fractalad_edge.errors import CalibrationError, ConfigError, QuantizationError
from fractalad_edge.preprocess import prepare_batch
from fractalad_edge.quantize import DEFAULT_KEEP_FLOAT, FloatRegion, float_regions, mask_at, model_input

SIZE = 64
has_openvino = importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None
has_onnxruntime = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
needs_openvino = pytest.mark.skipif(not has_openvino, reason="needs openvino and nncf")
needs_onnxruntime = pytest.mark.skipif(not has_onnxruntime, reason="needs onnx and onnxruntime")

#: the CSAM ops; the backbones (EfficientNet-Lite0, ResNet) contain none of them
CSAM_OV_TYPES = {"ReduceSum", "Sqrt", "Divide"}
CSAM_ONNX_TYPES = {"ReduceSum", "Sqrt", "Div"}


@pytest.fixture(scope="module")
def sets(normal_images_dir: Path) -> tuple[CalibrationSet, CalibrationSet]:
    paths = sorted(normal_images_dir.glob("*.png"))
    return build_calibration_sets(paths, CalibrationConfig(count=8, validation_count=8, image_size=SIZE, seed=11))


def _int8_export(tmp_path_factory: pytest.TempPathFactory, run_dir: Path, fmt: str) -> Path:
    from fractalad_edge.export import ExportOptions, export_model

    out = tmp_path_factory.mktemp(f"int8_{fmt}") / "model"
    # max_drop=100: random weights make AUROC noise; the gate itself is tested below on measured drops.
    options = ExportOptions(precision=Precision.INT8, calib_count=8, parity_images=4, max_drop=100.0)
    export_model(run_dir, format=fmt, out=out, options=options, progress=None)
    return out


@pytest.fixture(scope="module")
def openvino_int8(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    if not has_openvino:
        pytest.skip("needs openvino and nncf")
    return _int8_export(tmp_path_factory, tiny_run, "openvino")


@pytest.fixture(scope="module")
def onnx_int8(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    if not has_onnxruntime:
        pytest.skip("needs onnx and onnxruntime")
    return _int8_export(tmp_path_factory, tiny_run, "onnx")


def _bgr_frames(calibration_set: CalibrationSet) -> list[np.ndarray]:
    return [np.ascontiguousarray(s.image[..., ::-1]) for s in calibration_set]


# -- shared pieces ---------------------------------------------------------------------------------


def test_float_regions_are_validated() -> None:
    assert float_regions(["csam", FloatRegion.FLOW, "csam"]) == (FloatRegion.CSAM, FloatRegion.FLOW)
    assert float_regions([]) == ()
    assert set(DEFAULT_KEEP_FLOAT) <= set(FloatRegion)
    with pytest.raises(ConfigError, match="allowed"):
        float_regions(["head"])


def test_model_input_is_the_production_preprocessing(sets: tuple[CalibrationSet, CalibrationSet], tiny_run: Path) -> None:
    from fractalad_edge.artifact import read_metadata

    spec = read_metadata(tiny_run).input
    sample = sets[0][0]
    batch = model_input(sample, spec)
    assert batch.shape == (1, 3, SIZE, SIZE) and batch.dtype == np.float32
    # the same frame given BGR to prepare_batch, as a camera frame would be
    np.testing.assert_array_equal(batch, prepare_batch([sample.image[..., ::-1]], spec, channel_order="bgr")[0])


def test_mask_at_resizes_nearest() -> None:
    mask = np.zeros((8, 8), np.float32)
    mask[:4] = 1.0
    resized = mask_at(mask, 16, 16)
    assert resized.dtype == bool and resized.shape == (16, 16)
    assert resized[:8].all() and not resized[8:].any()


# -- OpenVINO / NNCF ------------------------------------------------------------------------------------


@needs_openvino
def test_openvino_float_regions_are_found_structurally(onnx_artifact) -> None:  # noqa: ANN001 - conftest NamedTuple
    import openvino as ov

    from fractalad_edge.quantize.openvino import float_node_names

    model = ov.Core().read_model(str(onnx_artifact.path / "model.onnx"))
    ops = {op.get_friendly_name(): op for op in model.get_ops()}
    assert float_node_names(model, ()) == []
    flow = [ops[n] for n in float_node_names(model, ["flow"])]
    kinds = [op.get_type_name() for op in flow]
    assert kinds.count("GridSample") == 3 and kinds.count("Convolution") == 3  # one flow conv per warp
    csam = {ops[n].get_type_name() for n in float_node_names(model, ["csam"])}
    assert csam >= CSAM_OV_TYPES and "Convolution" not in csam
    classifier = [ops[n] for n in float_node_names(model, ["classifier"])]
    convs = [op for op in classifier if op.get_type_name() == "Convolution"]
    assert len(convs) == 1 and convs[0].get_output_partial_shape(0)[1].get_length() == 1  # the one-channel logit
    kinds = {op.get_type_name() for op in classifier}
    assert "MatMul" in kinds and "Sigmoid" not in kinds  # the x4 upsampling is two MatMuls; a logit graph ends there
    output = model.get_results()[0].input_value(0).get_node().get_friendly_name()
    assert output in {op.get_friendly_name() for op in classifier}  # everything up to the output
    stem = [ops[n] for n in float_node_names(model, ["teacher-stem"])]
    assert stem and all(op.get_friendly_name().startswith("/teacher/") for op in stem)
    assert "/teacher/_conv_stem/Conv/WithoutBiases" in {op.get_friendly_name() for op in stem}
    assert {op.get_output_partial_shape(0)[2].get_length() for op in stem} == {SIZE // 2, SIZE // 4}


@needs_openvino
def test_openvino_int8_has_quantized_ops_and_float_regions(openvino_int8: Path) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(openvino_int8 / "model.xml"))
    ops = list(model.get_ops())
    kinds = [op.get_type_name() for op in ops]
    assert kinds.count("FakeQuantize") > 50
    int8_constants = [op for op in ops if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    assert len(int8_constants) > 50  # weights stored as int8

    def fed_by_fake_quantize(op) -> bool:  # noqa: ANN001
        return any(v.get_node().get_type_name() == "FakeQuantize" for v in op.input_values())

    for op in ops:
        if op.get_type_name() in CSAM_OV_TYPES | {"GridSample", "Sigmoid"}:
            assert not fed_by_fake_quantize(op), op.get_friendly_name()
    assert not fed_by_fake_quantize(model.get_results()[0].input_value(0).get_node())  # the logit map is float
    # the backbone convolutions do run INT8
    quantized_convs = [op for op in ops if op.get_type_name() in ("Convolution", "GroupConvolution") and fed_by_fake_quantize(op)]
    assert len(quantized_convs) > 50


@needs_openvino
def test_openvino_int8_artifact_predicts_through_the_predictor(
    openvino_int8: Path, tiny_run: Path, sets: tuple[CalibrationSet, CalibrationSet]
) -> None:
    from fractalad_edge.predictor import Predictor

    predictor = Predictor.load(openvino_int8)
    metadata = predictor.metadata
    assert predictor.runtime == "openvino" and metadata.precision is Precision.INT8
    report = metadata.quantization
    assert report is not None and report.toolchain == "nncf" and report.mode == "ptq"
    assert report.calibration_images == 8 and report.calibration_anomaly_ratio == 0.5
    assert any("GridSample" in name for name in report.ignored_layers)  # the float regions are recorded
    frames = _bgr_frames(sets[1])[:3]
    results = predictor.predict_batch(frames)
    assert [r.anomaly_map.shape for r in results] == [(SIZE, SIZE)] * 3
    assert all(0.0 <= r.score <= 1.0 for r in results)
    reference = Predictor.load(tiny_run).raw_maps(frames)
    maps = predictor.raw_maps(frames)
    assert 0.0 < float(np.abs(maps - reference).mean()) < 0.02  # INT8: close to, not equal to, float


@needs_openvino
def test_openvino_quantizer_refuses_bad_requests(onnx_artifact, sets: tuple[CalibrationSet, CalibrationSet]) -> None:  # noqa: ANN001
    import openvino as ov

    from fractalad_edge.quantize.openvino import quantize_openvino_model

    model = ov.Core().read_model(str(onnx_artifact.path / "model.onnx"))
    spec = onnx_artifact.metadata.input
    calibration, _ = sets
    with pytest.raises(ConfigError, match="mode"):
        quantize_openvino_model(model, calibration, spec, mode="qat")
    with pytest.raises(ConfigError, match="preset"):
        quantize_openvino_model(model, calibration, spec, preset="fast")
    with pytest.raises(CalibrationError, match="empty"):
        quantize_openvino_model(model, CalibrationSet([], calibration.config), spec)
    with pytest.raises(CalibrationError, match="validation set"):
        quantize_openvino_model(model, calibration, spec, mode="accuracy-control")


@needs_openvino
def test_openvino_int8_export_gates_bf16_float_layers_and_the_runtime_follows_the_verdict(
    openvino_int8: Path, tmp_path: Path
) -> None:
    import shutil

    from fractalad_edge.artifact import write_metadata
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.runtimes.openvino import cpu_has_bf16

    def runs(directory: Path, **options: str) -> str:
        with Predictor.load(directory, **options) as predictor:
            return predictor.backend.describe()["inference_precision"]

    report = read_metadata(openvino_int8).quantization
    assert report is not None
    if not cpu_has_bf16():
        assert (report.bf16_image_auroc, report.bf16_pixel_auroc, report.bf16_passed) == (None, None, None)
        assert runs(openvino_int8) == "f32"
        pytest.skip("no bf16 arithmetic on this CPU: the bf16 gate cannot run here (checked that nothing is recorded)")
    assert report.bf16_passed is True  # max_drop=100 in the fixture
    assert 0.0 <= report.bf16_image_auroc <= 1.0 and 0.0 <= report.bf16_pixel_auroc <= 1.0
    assert runs(openvino_int8) == "bf16"
    assert runs(openvino_int8, inference_precision="f32") == "f32"  # the caller's choice wins
    # the same files with a failed (or never run) bf16 gate run their float layers in f32
    for verdict in ({"bf16_passed": False}, {"bf16_image_auroc": None, "bf16_pixel_auroc": None, "bf16_passed": None}):
        copy = tmp_path / str(len(list(tmp_path.iterdir())))
        shutil.copytree(openvino_int8, copy)
        metadata = read_metadata(copy)
        write_metadata(copy, dataclasses.replace(metadata, quantization=dataclasses.replace(report, **verdict)))
        assert runs(copy) == "f32"
        assert runs(copy, inference_precision="bf16") == "bf16"


@needs_openvino
def test_openvino_int8_keep_float_chooses_the_float_regions(openvino_int8: Path, tiny_run: Path, tmp_path: Path) -> None:
    from fractalad_edge.errors import ExportError
    from fractalad_edge.export import ExportOptions, export_model
    from fractalad_edge.quantize import TEACHER_SCOPE

    default = read_metadata(openvino_int8).quantization.ignored_layers
    assert any(name.startswith(TEACHER_SCOPE) for name in default)
    keep = tuple(r.value for r in DEFAULT_KEEP_FLOAT if r is not FloatRegion.TEACHER_STEM)
    options = ExportOptions(precision=Precision.INT8, calib_count=8, parity_images=4, max_drop=100.0, keep_float=keep)
    export_model(tiny_run, format="openvino", out=tmp_path / "stem-int8", options=options, progress=None)
    layers = read_metadata(tmp_path / "stem-int8").quantization.ignored_layers
    assert layers and not any(name.startswith(TEACHER_SCOPE) for name in layers) and set(layers) < set(default)

    with pytest.raises(ConfigError, match="unknown float region"):
        ExportOptions(precision=Precision.INT8, keep_float=("teacher",))
    with pytest.raises(ConfigError, match="sequence"):
        ExportOptions(precision=Precision.INT8, keep_float="csam")
    with pytest.raises(ExportError, match="keep_float"):  # refused before any work where it would be ignored
        export_model(tiny_run, format="onnx", out=tmp_path / "onnx", options=dataclasses.replace(options), progress=None)
    with pytest.raises(ExportError, match="keep_float"):
        export_model(tiny_run, format="openvino", out=tmp_path / "fp32", options=ExportOptions(keep_float=keep), progress=None)


@needs_openvino
def test_bf16_gate_fields_are_validated_in_metadata(openvino_int8: Path) -> None:
    from fractalad_edge.artifact import ArtifactMetadata
    from fractalad_edge.errors import ArtifactError

    data = read_metadata(openvino_int8).to_dict()
    data["quantization"].update(bf16_image_auroc=0.9, bf16_pixel_auroc=0.8, bf16_passed=False)
    assert ArtifactMetadata.from_dict(data).quantization.bf16_passed is False
    for broken, match in (({"bf16_passed": "yes"}, "bf16_passed"), ({"bf16_passed": None}, "together")):
        with pytest.raises(ArtifactError, match=match):
            ArtifactMetadata.from_dict({**data, "quantization": {**data["quantization"], **broken}})


# -- onnxruntime ----------------------------------------------------------------------------------------


@needs_onnxruntime
def test_onnx_float_regions_are_found_structurally(onnx_artifact) -> None:  # noqa: ANN001
    import onnx

    from fractalad_edge.quantize.onnxruntime import onnx_float_node_names

    model = onnx.load(str(onnx_artifact.path / "model.onnx"))
    kind = {n.name: n.op_type for n in model.graph.node}
    assert onnx_float_node_names(model, ()) == []
    flow = [kind[n] for n in onnx_float_node_names(model, ["flow"])]
    assert flow.count("GridSample") == 3 and flow.count("Conv") == 3
    classifier = [kind[n] for n in onnx_float_node_names(model, ["classifier"])]
    assert classifier.count("Conv") == 1 and "MatMul" in classifier and "Sigmoid" not in classifier  # a logit graph
    producers = {o: n.name for n in model.graph.node for o in n.output}
    assert producers[model.graph.output[0].name] in onnx_float_node_names(model, ["classifier"])
    assert {kind[n] for n in onnx_float_node_names(model, ["csam"])} >= CSAM_ONNX_TYPES
    # the teacher's stem: its layers down to stride 4, and nothing of the student or of deeper stages
    stem = onnx_float_node_names(model, ["teacher-stem"])
    assert "/teacher/_conv_stem/Conv" in stem and all(n.startswith("/teacher/") for n in stem)
    teacher_convs = [n for n in kind if n.startswith("/teacher/") and kind[n] == "Conv"]
    stem_convs = [n for n in stem if kind[n] == "Conv"]
    assert 0 < len(stem_convs) < len(teacher_convs) // 2
    assert not any(n.startswith(f"/teacher/_blocks.{i}/") for n in stem for i in range(4, 16))
    assert "/teacher/_blocks.3/_expand_conv/Conv" in stem  # still at stride 4
    assert "/teacher/_blocks.3/_depthwise_conv/Conv" not in stem  # stride 8


@needs_onnxruntime
def test_teacher_stem_region_refuses_a_graph_without_the_teacher_scope(onnx_artifact) -> None:  # noqa: ANN001
    import onnx

    from fractalad_edge.quantize.onnxruntime import onnx_float_node_names

    model = onnx.load(str(onnx_artifact.path / "model.onnx"))
    for node in model.graph.node:
        node.name = node.name.replace("/teacher/", "/backbone_a/")
    assert onnx_float_node_names(model, ["flow"])  # the structural regions do not care
    with pytest.raises(QuantizationError, match="teacher-stem"):
        onnx_float_node_names(model, ["teacher-stem"])


@needs_onnxruntime
def test_onnx_int8_is_per_channel_qdq_with_uint8_activations(onnx_int8: Path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_int8 / "model.onnx"))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    kinds = [n.op_type for n in graph.node]
    assert kinds.count("QuantizeLinear") > 50 and kinds.count("DequantizeLinear") > 50

    quantized_weights = 0
    for conv in (n for n in graph.node if n.op_type == "Conv"):
        dequantize = producer.get(conv.input[1])
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        quantized_weights += 1
        weight = numpy_helper.to_array(initializers[dequantize.input[0]])
        scale = numpy_helper.to_array(initializers[dequantize.input[1]])
        assert weight.dtype == np.int8
        assert int(np.abs(weight.astype(np.int32)).max()) <= 64  # 7-bit (reduce_range), the default
        assert scale.shape == (weight.shape[0],)  # per output channel
        assert [a.i for a in dequantize.attribute if a.name == "axis"] in ([0], [])  # axis 0 is the default
    assert quantized_weights > 50

    activation_quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    zero_point_types = {helper.tensor_dtype_to_np_dtype(initializers[n.input[2]].data_type) for n in activation_quantizers}
    assert zero_point_types == {np.dtype(np.uint8)}

    # float regions compute on float inputs (not on dequantized INT8 copies)
    for node in [*graph.node]:
        if node.op_type in CSAM_ONNX_TYPES | {"GridSample", "Sigmoid"} or graph.output[0].name in node.output:
            sources = [producer[i].op_type for i in node.input if i in producer]
            assert "DequantizeLinear" not in sources, node.name
    # onnxruntime's default also keeps the teacher's stem in float; the student's is INT8
    stem_weights = {
        n.name: producer[n.input[1]].op_type if n.input[1] in producer else "initializer"
        for n in graph.node
        if n.op_type == "Conv" and n.name.endswith("_conv_stem/Conv")
    }
    assert stem_weights == {"/teacher/_conv_stem/Conv": "initializer", "/student/_conv_stem/Conv": "DequantizeLinear"}


@needs_onnxruntime
def test_onnx_int8_artifact_predicts_through_the_predictor(
    onnx_int8: Path, tiny_run: Path, sets: tuple[CalibrationSet, CalibrationSet]
) -> None:
    from fractalad_edge.predictor import Predictor

    predictor = Predictor.load(onnx_int8)
    assert predictor.runtime == "onnxruntime" and predictor.metadata.precision is Precision.INT8
    report = predictor.metadata.quantization
    assert report is not None and report.toolchain == "onnxruntime"
    assert any("GridSample" in name for name in report.ignored_layers)  # the float regions are recorded
    frames = _bgr_frames(sets[1])[:3]
    results = predictor.predict_batch(frames)
    assert [r.anomaly_map.shape for r in results] == [(SIZE, SIZE)] * 3
    reference = Predictor.load(tiny_run).raw_maps(frames)
    assert 0.0 < float(np.abs(predictor.raw_maps(frames) - reference).mean()) < 0.03


@needs_onnxruntime
def test_onnx_quantizer_full_int8_quantizes_the_float_regions_too(
    onnx_artifact, sets: tuple[CalibrationSet, CalibrationSet], tmp_path: Path  # noqa: ANN001
) -> None:
    import onnx

    from fractalad_edge.quantize.onnxruntime import quantize_onnx_model

    out = tmp_path / "full.onnx"
    quantize_onnx_model(onnx_artifact.path / "model.onnx", out, sets[0], onnx_artifact.metadata.input, keep_float=())
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}
    float_convs = [n.name for n in graph.node if n.op_type == "Conv" and producer[n.input[1]].op_type != "DequantizeLinear"]
    assert float_convs == []  # flow and logit convolutions are INT8 as well
    with pytest.raises(ConfigError, match="calibrate_method"):
        quantize_onnx_model(onnx_artifact.path / "model.onnx", out, sets[0], onnx_artifact.metadata.input, calibrate_method="kl")


@needs_onnxruntime
def test_onnx_full_range_weights_use_all_eight_bits(
    onnx_artifact, sets: tuple[CalibrationSet, CalibrationSet], tmp_path: Path  # noqa: ANN001
) -> None:
    import onnx
    from onnx import numpy_helper

    from fractalad_edge.quantize.onnxruntime import quantize_onnx_model

    out = tmp_path / "full-range.onnx"
    quantize_onnx_model(onnx_artifact.path / "model.onnx", out, sets[0], onnx_artifact.metadata.input, reduce_range=False)
    graph = onnx.load(str(out)).graph
    weights = [numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and i.dims]
    peaks = {int(np.abs(w.astype(np.int32)).max()) for w in weights if w.ndim == 4}
    assert peaks == {127}  # symmetric per channel: every tensor's largest weight maps to 127


def test_cpu_int8_saturates_reads_the_vnni_flags(tmp_path: Path) -> None:
    from fractalad_edge.export.onnx import cpu_int8_saturates

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_int8_saturates(cpuinfo)
    cpuinfo.write_text("processor : 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert not cpu_int8_saturates(cpuinfo)
    cpuinfo.write_text("processor : 0\nflags\t\t: fpu sse2 avx2 avx_vnni\n")
    assert not cpu_int8_saturates(cpuinfo)
    cpuinfo.write_text("processor : 0\nFeatures\t: fp asimd asimddp\n")  # ARM
    assert not cpu_int8_saturates(cpuinfo)
    assert not cpu_int8_saturates(tmp_path / "missing")


# -- the accuracy gate ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_and_other(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The tiny run's predictor and one of a differently seeded model (a wrong candidate)."""
    torch = pytest.importorskip("torch")
    from fractalad_edge.artifact import read_metadata
    from fractalad_edge.models.fractalad import ModelConfig, build_model
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.runtimes.torch import TorchBackend

    metadata = read_metadata(tiny_run)
    torch.manual_seed(99)
    other = build_model(ModelConfig.from_dict(dict(metadata.model)), pretrained_teacher=False).eval()
    return Predictor.load(tiny_run), Predictor(TorchBackend(other), metadata)


def _gate(reference, candidate, sets, **kwargs):  # noqa: ANN001, ANN202
    from fractalad_edge.quantize.gate import accuracy_gate

    calibration, validation = sets
    defaults = {"max_drop": 0.5, "toolchain": "nncf", "mode": "ptq", "calibration": calibration, "allow_drop": False}
    return accuracy_gate(reference, candidate, validation, **{**defaults, **kwargs})


@needs_onnxruntime
def test_gate_passes_a_faithful_candidate(onnx_artifact, reference_and_other, sets) -> None:  # noqa: ANN001
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.quantize.gate import compare_on_validation

    reference, _ = reference_and_other
    candidate = Predictor.load(onnx_artifact.path)  # the same model through onnxruntime
    report = _gate(reference, candidate, sets, max_drop=0.01, ignored_layers=("csam",))
    assert report.passed
    assert report.map_mean_abs_diff < 1e-4
    comparison = compare_on_validation(reference, candidate, sets[1], score=candidate.metadata.score)
    assert report.quantized_pixel_auroc == pytest.approx(comparison.candidate_pixel_auroc)
    assert report.float_image_auroc == pytest.approx(comparison.reference_image_auroc)
    assert (report.toolchain, report.mode, report.calibration_images, report.calibration_seed) == ("nncf", "ptq", 8, 11)
    assert report.ignored_layers == ("csam",)


def test_gate_fails_a_candidate_that_lost_accuracy(reference_and_other, sets) -> None:  # noqa: ANN001
    from fractalad_edge.metrics import pixel_auroc, roc_auc
    from fractalad_edge.preprocess import image_scores
    from fractalad_edge.quantize.gate import compare_on_validation

    first, second = reference_and_other
    comparison = compare_on_validation(first, second, sets[1])
    # the better model is the reference, the other one a candidate that lost accuracy
    better, worse = (first, second) if comparison.worst_drop > 0 else (second, first)
    comparison = compare_on_validation(better, worse, sets[1])
    drop = comparison.worst_drop
    assert drop > 0.5  # two random inits disagree by far more than quantization may

    # the comparison's numbers are the metrics of the two models' own maps
    validation = sets[1]
    maps = better.raw_maps(validation.images, channel_order="rgb")
    masks = np.stack([mask_at(s.mask, SIZE, SIZE) for s in validation])
    assert comparison.reference_pixel_auroc == pytest.approx(pixel_auroc(masks, maps))
    scores = image_scores(maps, better.metadata.score)
    assert comparison.reference_image_auroc == pytest.approx(roc_auc(validation.labels, scores))

    with pytest.raises(QuantizationError, match="allow-accuracy-drop") as caught:
        _gate(better, worse, sets, max_drop=drop / 2)
    assert f"{100 * comparison.reference_pixel_auroc:.2f}" in str(caught.value)

    with pytest.warns(RuntimeWarning, match="allow-accuracy-drop"):
        report = _gate(better, worse, sets, max_drop=drop / 2, allow_drop=True)
    assert report.passed is False and report.max_drop == pytest.approx(drop / 2)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pass warns about nothing
        assert _gate(better, worse, sets, max_drop=drop + 0.01).passed

    # the bf16 repeat records its verdict on the same numbers and refuses nothing
    from fractalad_edge.quantize.gate import bf16_gate

    for max_drop, passed in ((drop / 2, False), (drop + 0.01, True)):
        checked = bf16_gate(better, worse, validation, dataclasses.replace(report, max_drop=max_drop))
        assert checked.bf16_passed is passed and checked.passed is report.passed
        assert (checked.bf16_image_auroc, checked.bf16_pixel_auroc) == pytest.approx(
            (comparison.candidate_image_auroc, comparison.candidate_pixel_auroc)
        )


def test_gate_refuses_unusable_validation_sets(reference_and_other, sets) -> None:  # noqa: ANN001
    reference, other = reference_and_other
    calibration, validation = sets
    normals = CalibrationSet([s for s in validation if not s.is_anomalous], validation.config)
    with pytest.raises(CalibrationError, match="normal and anomalous"):
        _gate(reference, other, (calibration, normals))
    with pytest.raises(CalibrationError, match="empty"):
        _gate(reference, other, (calibration, CalibrationSet([], validation.config)))
    with pytest.raises(ConfigError, match="max_drop"):
        _gate(reference, other, sets, max_drop=-1.0)


def test_constant_calibration_images_make_a_worse_int8_model(
    openvino_int8: Path, onnx_artifact, sets: tuple[CalibrationSet, CalibrationSet]  # noqa: ANN001
) -> None:
    """Calibrating on constant images (a broken pipeline) sets wrong ranges; the maps show it."""
    import openvino as ov

    from fractalad_edge.quantize.openvino import quantize_openvino_model

    calibration, validation = sets
    spec = onnx_artifact.metadata.input
    constant = CalibrationSet(
        [CalibrationSample(image=np.zeros((SIZE, SIZE, 3), np.uint8), mask=np.zeros((SIZE, SIZE), np.float32),
                           is_anomalous=False, source="zeros")] * len(calibration),
        calibration.config,
    )
    core = ov.Core()
    batch = np.concatenate([model_input(s, spec) for s in validation])

    def maps(model, batch: np.ndarray = batch) -> np.ndarray:  # noqa: ANN001
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([compiled(batch[i : i + 1])[0] for i in range(len(batch))])

    source = str(onnx_artifact.path / "model.onnx")
    reference = maps(core.read_model(source))
    exported = np.concatenate([model_input(s, read_metadata(openvino_int8).input) for s in validation])  # uint8 NHWC
    good = maps(core.read_model(str(openvino_int8 / "model.xml")), exported)  # calibrated on fractal anomalies by export
    broken = maps(quantize_openvino_model(core.read_model(source), constant, spec))
    good_error = float(np.abs(good - reference).mean())
    broken_error = float(np.abs(broken - reference).mean())
    print(f"mean |map - fp32|: calibrated {good_error:.5f}, constant-image calibration {broken_error:.5f}")
    assert broken_error > 1.3 * good_error
