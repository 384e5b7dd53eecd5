"""The benchmark driver and its parts: timing, MAC counting, environment, reports.

The end-to-end test runs ``run_bench`` on the tiny fixture run against a tiny generated
MVTec-layout test set, with every CPU runtime and a runtime that cannot run here, and
checks what a reader of the report relies on.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from fractalad_edge.artifact import ArtifactMetadata, ModelFormat, Precision
from fractalad_edge.bench.latency import LatencyStats, interleaved_rounds, latency_report, round_sizes
from fractalad_edge.bench.matrix import BenchConfig, plan, unavailable
from fractalad_edge.bench.render_markdown import console_table
from fractalad_edge.bench.render_plot import plot_report
from fractalad_edge.bench.report import BenchReport, ConfigResult, write_reports
from fractalad_edge.bench.system import capture_environment, cpu_model, package_versions
from fractalad_edge.errors import ConfigError
from fractalad_edge.evaluation import AccuracyReport, ThresholdCheck
from fractalad_edge.runtimes.base import RUNTIMES, Backend, RuntimeEntry, register_runtime

# --------------------------------------------------------------------------- timing


def test_round_sizes_split_runs_exactly() -> None:
    assert round_sizes(10, 3) == [4, 3, 3]
    assert sum(round_sizes(100, 7)) == 100
    with pytest.raises(ConfigError, match="runs >= rounds"):
        round_sizes(3, 5)


def test_interleaved_rounds_rotate_the_order_and_warm_up() -> None:
    calls: list[str] = []

    def task(name: str):
        def run() -> str:
            calls.append(name)
            return name

        return run

    results = interleaved_rounds({n: task(n) for n in "abc"}, runs=6, rounds=3, warmup=1, settle=1)
    assert {k: len(v) for k, v in results.items()} == {"a": 6, "b": 6, "c": 6}
    warm, timed = calls[:3], calls[3:]
    assert warm == ["a", "b", "c"]
    # each block: 1 settle call + 2 timed calls; block starts show the rotation
    block_starts = timed[::3]
    assert block_starts == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_latency_stats_are_order_statistics_in_ms() -> None:
    seconds = [0.001 * v for v in range(1, 101)]  # 1..100 ms
    stats = LatencyStats.from_seconds(seconds)
    assert stats.count == 100
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p10_ms == pytest.approx(10.9)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(100.0)
    assert stats.relative_spread == pytest.approx((stats.p90_ms - stats.p10_ms) / stats.p50_ms)
    with pytest.raises(ConfigError):
        LatencyStats.from_seconds([])


# --------------------------------------------------------------------------- MACs


def test_count_macs_by_hand() -> None:
    torch = pytest.importorskip("torch")
    from fractalad_edge.bench.flops import count_macs

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),  # 8*8*8 outputs x 3*9
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 8*8*8 x 9
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 10),  # 10 x 512
    )
    count = count_macs(model, 8)
    assert count.by_type == {"Conv2d": 512 * 27 + 512 * 9, "Linear": 5120}
    assert count.total == 512 * 27 + 512 * 9 + 5120
    assert count.layers == 3
    assert count.gflops_per_second(1e-3) == pytest.approx(2 * count.total / 1e-3 / 1e9)
    assert math.isnan(count.gflops_per_second(0.0))


def test_count_macs_matches_torch_flop_counter_on_fractalad() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from fractalad_edge.bench.flops import count_macs
    from fractalad_edge.models.fractalad import ModelConfig, build_model

    model = build_model(ModelConfig(input_size=64, head_channels=16), pretrained_teacher=False).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    assert count_macs(model, 64).total == counter.get_total_flops() // 2
    assert not model.training


# --------------------------------------------------------------------------- environment


def test_cpu_model_reads_proc_cpuinfo(tmp_path: Path) -> None:
    (tmp_path / "x86").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n")
    (tmp_path / "arm").write_text("processor\t: 0\nBogoMIPS\t: 62.50\n\nHardware\t: NVIDIA Jetson Orin Nano\n")
    assert cpu_model(tmp_path / "x86") == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert cpu_model(tmp_path / "arm") == "NVIDIA Jetson Orin Nano"
    assert cpu_model(tmp_path / "missing")  # falls back to platform, never empty


def test_package_versions_lists_installed_only() -> None:
    versions = package_versions()
    assert versions["numpy"] == np.__version__
    assert "tensorrt" not in versions or importlib.util.find_spec("tensorrt") is not None


# --------------------------------------------------------------------------- config and plan


def test_bench_config_validates() -> None:
    config = BenchConfig(precisions=("fp32",))
    assert config.precisions == (Precision.FP32,)
    with pytest.raises(ConfigError, match="unknown runtime"):
        BenchConfig(runtimes=("tflite",))
    with pytest.raises(ConfigError, match="runs >= rounds"):
        BenchConfig(runs=5, rounds=10)
    with pytest.raises(ConfigError, match="threads"):
        BenchConfig(threads=0)
    with pytest.raises(ConfigError, match="device"):
        BenchConfig(device="tpu")
    with pytest.raises(ConfigError, match="max_test_images"):
        BenchConfig(max_test_images=1)
    with pytest.raises(ConfigError, match="precision"):
        BenchConfig(precisions=("int4",))


def test_plan_skips_combinations_with_no_path() -> None:
    planned = {item.name: reason for item, reason in plan(BenchConfig(runtimes=("torch", "onnxruntime"), precisions=("fp32", "int8", "fp16")))}
    assert planned["torch-fp32"] is None and planned["onnxruntime-int8"] is None
    assert "no int8 path" in planned["torch-int8"]
    assert "no fp16 path on cpu" in planned["torch-fp16"]
    assert "no fp16 export" in planned["onnxruntime-fp16"]


def test_unavailable_names_device_or_package() -> None:
    assert "does not run on device 'cpu'" in unavailable("tensorrt", "cpu")
    assert unavailable("onnxruntime", "cpu") is None or importlib.util.find_spec("onnxruntime") is None


# --------------------------------------------------------------------------- report rendering


def _accuracy(pixel_auroc: float | None) -> AccuracyReport:
    check = ThresholdCheck(threshold=0.5, f1=0.85, precision=0.8, recall=0.9, false_alarm_rate=0.1)
    return AccuracyReport(
        category="widget", runtime="torch", precision="fp32", num_images=6, num_anomalous=3, image_auroc=0.9,
        pixel_auroc=math.nan if pixel_auroc is None else pixel_auroc, aupro=0.8, image_f1_max=0.9, reduction="max",
        by_reduction={}, calibrated=check, oracle=check, per_defect_auroc={}, seconds=0.1,
    )


def _row(name: str, p50_ms: float, spread: float, pixel_auroc: float | None) -> ConfigResult:
    runtime, precision = name.split("-")
    samples = [p50_ms * (1 + spread * (i - 4.5) / 9) / 1e3 for i in range(10)]
    accuracy = _accuracy(pixel_auroc)
    return ConfigResult(
        name=name, runtime=runtime, precision=precision, device="cpu", format=runtime, size_mb=3.0, accuracy=accuracy,
        latency=latency_report([(t, t / 10, t * 0.8, t / 10) for t in samples]),
    )


def _report(rows: tuple[ConfigResult, ...]) -> BenchReport:
    return BenchReport(
        category="widget", run_dir="runs/widget", data="data/widget", model={"backbone": "efficientnet_lite0"}, input_size=64,
        macs=None, test_images=6, test_anomalous=3, test_images_available=6, reference=rows[0].name,
        config=BenchConfig(threads=None, throughput_batch=8, runs=10, rounds=2, warmup=1),
        environment=capture_environment(), results=rows, seconds=1.0,
    )


def test_report_flags_noisy_timing_and_writes_all_three_files(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    quiet = _row("onnxruntime-fp32", 10.0, 0.1, 0.95)
    noisy = _row("openvino-int8", 4.0, 1.5, 0.93)
    failed = ConfigResult(name="tensorrt-fp32", runtime="tensorrt", precision="fp32", device="cpu", format="tensorrt", status="failed: no GPU")
    report = write_reports(_report((quiet, noisy, failed)), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "Timing was noisy" in markdown and "`openvino-int8`" in markdown.split("Timing was noisy")[1].split("\n")[0]
    assert "`onnxruntime-fp32`" not in markdown.split("Timing was noisy")[1].split("\n")[0]
    assert "| tensorrt-fp32 | cpu | failed: no GPU |" in markdown
    table = console_table(report)
    assert "tensorrt-fp32: failed: no GPU" in table and "noisy timing" in table
    assert report.files is not None and report.files.png == str(tmp_path / "report.png")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["files"] == {"markdown": report.files.markdown, "json": report.files.json, "png": report.files.png}
    assert data["config"]["throughput_batch"] == 8 and data["results"][0]["accuracy"]["calibrated"]["f1"] == 0.85
    assert "overlays" not in data["results"][0]["accuracy"]
    assert data["results"][0]["latency"]["full"]["count"] == 10
    assert len(data["results"][0]["latency"]["full"]["samples_ms"]) == 10


def test_plot_falls_back_to_image_auroc_without_masks(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = (_row("torch-fp32", 30.0, 0.2, None), _row("openvino-fp32", 10.0, 0.2, None))
    path = plot_report(_report(rows), tmp_path / "plot.png")
    assert path is not None and cv2.imread(str(path)) is not None
    failed_only = ConfigResult(name="tensorrt-fp32", runtime="tensorrt", precision="fp32", device="cpu", format="tensorrt", status="failed: x")
    assert plot_report(_report((failed_only,)), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_memory_branch_cost_is_a_column_in_markdown_json_and_html(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from fractalad_edge.bench.memory_branch import MemoryBankSize
    from fractalad_edge.report.html import render_html
    from fractalad_edge.report.pages import bench_page

    bank = MemoryBankSize(rows=16000, channels=152, dtype="F32", bytes=16000 * 152 * 4)
    with_memory = dataclasses.replace(_row("torch-fp32", 30.0, 0.2, 0.9), memory_bank_mb=bank.mb, memory_macs=2_490_368_000)
    without = _row("onnxruntime-fp32", 10.0, 0.2, 0.9)  # a fractalad model's row: no memory branch
    report = write_reports(dataclasses.replace(_report((with_memory, without)), memory_bank=bank), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| config | device |"))
    assert header.rstrip(" |").endswith("| memory bank MB | memory GMACs")
    torch_line = next(line for line in markdown.splitlines() if line.startswith("| torch-fp32 |"))
    assert torch_line.endswith("| 9.73 | 2.49 |")
    onnx_line = next(line for line in markdown.splitlines() if line.startswith("| onnxruntime-fp32 |"))
    assert onnx_line.endswith("| - | - |")
    assert "memory bank 16000 x 152 F32 (9.73 MB)" in markdown
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["memory_bank"] == {"rows": 16000, "channels": 152, "dtype": "F32", "bytes": 9728000, "mb": 9.728}
    assert data["results"][0]["memory_bank_mb"] == pytest.approx(9.728) and data["results"][0]["memory_macs"] == 2_490_368_000
    assert data["results"][1]["memory_bank_mb"] is None and data["results"][1]["memory_macs"] is None
    html = render_html(bench_page(report, [], None, {}))
    assert "<th>memory bank MB</th>" in html and "<td>9.73</td>" in html and "<td>2.49</td>" in html


# --------------------------------------------------------------------------- end to end


def _mvtec_test_set(root: Path, normal_images_dir: Path, *, side: int = 96) -> Path:
    """widget/test/{good,scratch} + ground_truth/scratch, made from the fixture's parts.

    Defects are dark red ellipses painted exactly where the mask says, on images resized to a
    camera-like size larger than the model input (so pre- and post-processing resize).
    """
    category = root / "widget"
    good, bad, truth = category / "test" / "good", category / "test" / "scratch", category / "ground_truth" / "scratch"
    for folder in (good, bad, truth, category / "train" / "good"):
        folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    sources = sorted(normal_images_dir.glob("*.png"))
    for index, path in enumerate(sources[-6:]):
        image = cv2.resize(cv2.imread(str(path)), (side, side), interpolation=cv2.INTER_LINEAR)
        if index < 3:
            cv2.imwrite(str(good / f"{index:03d}.png"), image)
            continue
        mask = np.zeros((side, side), np.uint8)
        centre = (int(rng.integers(30, 66)), int(rng.integers(30, 66)))
        cv2.ellipse(mask, centre, (int(rng.integers(6, 14)), int(rng.integers(3, 7))), float(rng.uniform(0, 180)), 0, 360, 255, -1)
        image[mask > 0] = (20, 20, 90)
        cv2.imwrite(str(bad / f"{index:03d}.png"), image)
        cv2.imwrite(str(truth / f"{index:03d}_mask.png"), mask)
    return category


def _quantization_available() -> bool:
    modules = ("nncf", "openvino", "onnxruntime", "fractalad_edge.quantize.openvino", "fractalad_edge.quantize.onnxruntime")
    return all(importlib.util.find_spec(m) is not None for m in modules)


#: the smallest export that still calibrates and checks parity (the default is 64 images)
_CALIB_COUNT = 8


@pytest.fixture(scope="module")
def bench_out(tiny_run: Path, normal_images_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One bench over every CPU runtime at fp32, plus tensorrt, which cannot run here."""
    pytest.importorskip("fractalad_edge.export.pipeline")
    from fractalad_edge.bench.matrix import run_bench

    data = _mvtec_test_set(tmp_path_factory.mktemp("mvtec"), normal_images_dir)
    out = tmp_path_factory.mktemp("bench")
    config = BenchConfig(
        runtimes=("torch", "onnxruntime", "openvino", "tensorrt"),
        precisions=("fp32",),
        warmup=1,
        runs=4,
        rounds=2,
        throughput_batch=2,
        threads=1,  # the test machine is shared: one thread per runtime keeps timings sane and the test short
        calib_count=_CALIB_COUNT,
    )
    messages: list[str] = []
    report = run_bench(tiny_run, data, out, config, progress=messages.append)
    return report, out, data, messages


def test_bench_writes_readable_reports(bench_out) -> None:
    report, out, _, messages = bench_out
    for name in ("report.md", "report.json", "report.png"):
        assert (out / name).is_file(), name
    png = cv2.imread(str(out / "report.png"))
    assert png is not None and png.shape[0] > 300 and png.shape[1] > 500
    markdown = (out / "report.md").read_text()
    assert "| onnxruntime-fp32 |" in markdown and "How this was measured" in markdown
    assert report.environment.cpu_model in markdown
    assert f"malloc: {report.environment.malloc}" in markdown
    assert any("p50 ms" in m for m in messages), "the console table is printed through progress"
    data = json.loads((out / "report.json").read_text())
    assert {r["name"] for r in data["results"]} == {r.name for r in report.results}
    assert data["environment"]["packages"]["numpy"] == np.__version__
    assert data["macs"]["total"] > 0
    assert data["memory_bank"] is None  # a fractalad model has no memory branch
    assert all(r["memory_bank_mb"] is None and r["memory_macs"] is None for r in data["results"])


def test_bench_html_report_has_table_plot_and_the_reference_gallery(bench_out, tmp_path: Path) -> None:
    from fractalad_edge.report import write_bench_html

    report, _, _, _ = bench_out
    html = write_bench_html(report, tmp_path).read_text()
    assert "<td>onnxruntime-fp32</td>" in html and "<td>tensorrt-fp32</td>" in html
    assert html.count("data:image/png;base64,") == 1  # the latency x accuracy plot, inline
    assert html.count('<figure class="card') == report.test_images
    assert f"through {report.reference}" in html


def test_every_working_row_has_latency_accuracy_and_memory(bench_out) -> None:
    report, _, _, _ = bench_out
    working = [r for r in report.results if r.ok]
    assert {"torch-fp32", "onnxruntime-fp32", "openvino-fp32"} <= {r.name for r in working}
    for row in working:
        lat = row.latency
        assert lat is not None and lat.full.count == 4
        assert 0 < lat.full.p10_ms <= lat.full.p50_ms <= lat.full.p90_ms <= lat.full.max_ms
        assert lat.preprocess.p50_ms > 0 and lat.inference.p50_ms > 0 and lat.postprocess.p50_ms > 0
        assert row.throughput is not None and row.throughput.images_per_second > 0
        assert row.accuracy is not None
        assert 0.0 <= row.accuracy.image_auroc <= 1.0 and 0.0 <= row.accuracy.pixel_auroc <= 1.0
        assert 0.0 <= row.accuracy.aupro <= 1.0
        assert row.accuracy.num_images == 6 and row.accuracy.num_anomalous == 3
        assert row.size_mb > 0 and row.gflops_per_second > 0
        assert row.memory is not None and row.memory.peak_mb >= row.memory.loaded_mb > row.memory.baseline_mb > 0
    reference = report.result("torch-fp32")
    assert report.reference == "torch-fp32" and reference.speedup == 1.0 and reference.map_max_abs_diff == 0.0
    onnx = report.result("onnxruntime-fp32")
    assert onnx.parity is not None and onnx.parity.passed
    assert onnx.map_mean_abs_diff < 1e-3, "fp32 ONNX must reproduce the torch maps on the test set"
    openvino = report.result("openvino-fp32")
    assert openvino.async_throughput is not None and openvino.async_throughput.images_per_second > 0
    assert openvino.async_throughput.method == "openvino-async(THROUGHPUT)" and openvino.async_throughput.requests >= 1
    assert onnx.async_throughput is None  # a runtime without an async queue gets no such column


def test_unrunnable_configurations_are_rows_that_say_why(bench_out) -> None:
    report, _, _, _ = bench_out
    trt = report.result("tensorrt-fp32")
    assert trt.status.startswith("failed:") and "tensorrt" in trt.status
    assert trt.latency is None and trt.artifact is None  # refused before any export work
    markdown = Path(report.files.markdown).read_text()
    assert trt.status in markdown


def test_rerun_reuses_exports_and_survives_a_broken_one(bench_out, tiny_run: Path) -> None:
    from fractalad_edge.bench.matrix import run_bench

    _, out, data, _ = bench_out
    # replace the openvino export with something that is not one: that row fails, the other is reused
    ov_dir = out / "models" / "openvino-fp32"
    for child in ov_dir.iterdir():
        child.unlink()
    (ov_dir / "notes.txt").write_text("not a model")
    config = BenchConfig(
        runtimes=("onnxruntime", "openvino"), precisions=("fp32",), warmup=0, runs=2, rounds=1, memory=False,
        calib_count=_CALIB_COUNT, threads=1,
    )
    report = run_bench(tiny_run, data, out, config, progress=lambda _: None)
    onnx = report.result("onnxruntime-fp32")
    assert onnx.ok and onnx.reused and onnx.export_seconds is None
    broken = report.result("openvino-fp32")
    # a folder of someone else's files is refused, never replaced: the row fails and the file stays
    assert broken.status.startswith("failed: export: OutputExistsError") and str(ov_dir) in broken.status
    assert (ov_dir / "notes.txt").read_text() == "not a model"
    assert report.reference == "onnxruntime-fp32" and onnx.speedup == 1.0


@pytest.mark.slow  # two int8 exports (calibration, quantization, accuracy gate): ~30 s of CPU
@pytest.mark.filterwarnings("ignore:INT8 model:RuntimeWarning")  # the gate's verdict on random weights, kept on purpose
@pytest.mark.skipif(not _quantization_available(), reason="int8 needs nncf, openvino, onnxruntime and fractalad_edge.quantize")
def test_int8_rows_carry_the_quantization_report(bench_out, tiny_run: Path) -> None:
    from fractalad_edge.bench.matrix import run_bench

    _, out, data, _ = bench_out
    config = BenchConfig(
        runtimes=("torch", "onnxruntime", "openvino"), precisions=("fp32", "int8"), warmup=0, runs=2, rounds=1,
        memory=False, async_throughput=False, calib_count=_CALIB_COUNT, threads=1,
    )
    report = run_bench(tiny_run, data, out, config, progress=lambda _: None)
    assert report.result("torch-int8").status.startswith("skipped:")
    assert report.result("torch-fp32").reused  # the fp32 exports of the first bench are reused
    for name in ("onnxruntime-int8", "openvino-int8"):
        row = report.result(name)
        assert row.ok, row.status
        assert row.quantization is not None and row.quantization.calibration_images == _CALIB_COUNT
        assert row.latency is not None and row.accuracy is not None and 0.0 <= row.accuracy.pixel_auroc <= 1.0
        assert row.map_mean_abs_diff is not None and row.map_mean_abs_diff > 0  # int8 is not bit-exact
        if not row.quantization.passed:  # random weights: the gate may fail; the row still measures and says so
            assert any("gate FAILED" in note for note in row.notes)


# --------------------------------------------------------------------------- a runtime added from outside


class PlainOnnxBackend(Backend):
    """A real, small runtime defined outside the package: ``model.onnx`` in a default onnxruntime session, batch 1.

    (ONNX's numpy reference evaluator would be the smaller engine, but it does not read the
    opset-17 GridSample mode name "bilinear" that the exporter writes.)
    """

    name = "plain-onnx"
    max_batch = 1

    def __init__(self, path: Path) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def open(cls, directory: Path, metadata: ArtifactMetadata, *, device: str = "cpu", **options: object) -> PlainOnnxBackend:
        if options:
            msg = f"the plain-onnx runtime takes no options, got {sorted(options)}"
            raise ConfigError(msg)
        return cls(metadata.model_file(directory, ".onnx"))  # the file metadata.json lists

    def infer(self, batch: np.ndarray) -> np.ndarray:
        (maps,) = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return maps[:, 0]


@pytest.fixture()
def toy_runtime():
    """Registers the toy runtime for one test: one module (this one) plus one entry."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    entry = register_runtime(
        RuntimeEntry(
            name="plain-onnx", module=__name__, cls="PlainOnnxBackend", package="onnxruntime", extra="onnxruntime",
            formats=(ModelFormat.ONNX,), devices=("cpu",),
        )
    )
    yield entry
    RUNTIMES.pop(entry.name)


def test_a_registered_runtime_runs_through_predictor_and_the_bench(
    toy_runtime, onnx_artifact, tiny_run: Path, normal_images_dir: Path, tmp_path: Path
) -> None:
    from fractalad_edge.bench.matrix import run_bench
    from fractalad_edge.predictor import Predictor

    with pytest.raises(ConfigError, match="already registered"):
        register_runtime(toy_runtime)
    with pytest.raises(ConfigError, match="at least one ModelFormat"):
        dataclasses.replace(toy_runtime, name="no-format", formats=())
    frames = [cv2.imread(str(p)) for p in sorted(normal_images_dir.glob("*.png"))[:2]]
    with Predictor.load(onnx_artifact.path, runtime="plain-onnx") as toy, Predictor.load(onnx_artifact.path) as ort:
        assert toy.runtime == "plain-onnx"
        np.testing.assert_allclose(toy.raw_maps(frames), ort.raw_maps(frames), atol=1e-4)
        assert [r.pred_label for r in toy.predict_batch(frames)] == [r.pred_label for r in ort.predict_batch(frames)]

    data = _mvtec_test_set(tmp_path / "mvtec", normal_images_dir)
    config = BenchConfig(
        runtimes=("plain-onnx",), precisions=("fp32",), warmup=0, runs=1, rounds=1, throughput_batch=1,
        memory=False, async_throughput=False, calib_count=_CALIB_COUNT,
    )
    report = run_bench(tiny_run, data, tmp_path / "bench", config, progress=lambda _: None)
    row = report.result("plain-onnx-fp32")
    assert row.ok, row.status
    assert row.format == "onnx" and row.latency is not None and row.throughput is not None
    assert row.accuracy is not None and 0.0 <= row.accuracy.pixel_auroc <= 1.0 and report.reference == row.name
