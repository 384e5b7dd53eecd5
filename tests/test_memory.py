"""The nearest-neighbour memory branch: coreset, build, artifact, export parity, INT8 float region, bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fractalad_edge.artifact import read_metadata  # noqa: E402
from fractalad_edge.errors import (  # noqa: E402
    ArtifactIntegrityError,
    ConfigError,
    DatasetError,
    InsufficientMemoryError,
)
from fractalad_edge.models.memory import FusionRule, Method  # noqa: E402
from fractalad_edge.train.memory import MemoryBuildConfig, build_memory, greedy_coreset  # noqa: E402

TINY = 64
FAST = {"input_size": TINY, "calibration_images": 8, "batch_size": 4}


# ----------------------------------------------------------------------------- coreset
def test_coreset_covering_radius_decreases_and_beats_random() -> None:
    rng = np.random.default_rng(0)
    points = torch.from_numpy(np.concatenate([rng.normal(c, 0.3, (300, 8)) for c in range(6)]).astype(np.float32))
    chosen, radius = greedy_coreset(points, 60, projection_dim=64, seed=1)
    assert len(set(chosen.tolist())) == 60
    assert torch.all(radius[1:] <= radius[:-1] + 1e-6)
    random_pick = torch.from_numpy(rng.choice(len(points), 60, replace=False))
    random_radius = torch.cdist(points, points[random_pick]).min(dim=1).values.max()
    greedy_radius = torch.cdist(points, points[chosen]).min(dim=1).values.max()
    assert greedy_radius < random_radius
    assert torch.isclose(greedy_radius, radius[-1], rtol=1e-4)


def test_coreset_is_deterministic_with_seed_and_projection() -> None:
    points = torch.randn(2000, 96, generator=torch.Generator().manual_seed(3))
    a, _ = greedy_coreset(points, 50, projection_dim=16, seed=7)
    b, _ = greedy_coreset(points, 50, projection_dim=16, seed=7)
    c, _ = greedy_coreset(points, 50, projection_dim=16, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ----------------------------------------------------------------------------- builds
@pytest.fixture(scope="module")
def memory_run(tmp_path_factory: pytest.TempPathFactory, normal_images_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("memory") / "run"
    build_memory(MemoryBuildConfig(size=120, channels=32, **FAST), normal_images_dir, out, progress=False)
    return out


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory: pytest.TempPathFactory, normal_images_dir: Path, tiny_run: Path) -> Path:
    out = tmp_path_factory.mktemp("fused") / "run"
    config = MemoryBuildConfig(method="fused", size=100, k=2, fusion="weighted", **FAST)
    build_memory(config, normal_images_dir, out, init_from=tiny_run, progress=False)
    return out


def test_memory_artifact_records_method_and_holdout(memory_run: Path) -> None:
    metadata = read_metadata(memory_run)
    assert metadata.model["method"] == "memory"
    assert metadata.model["memory"]["size"] == 120
    assert metadata.calibration is not None
    run_config = json.loads((memory_run / "config.json").read_text())
    assert len(run_config["holdout"]) >= 2
    # the held-out images are not in the memory: their distances are clearly above zero
    from fractalad_edge.predictor import Predictor

    predictor = Predictor.load(memory_run)
    held = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in run_config["holdout"]]
    assert predictor.raw_maps(held, channel_order="rgb").min() > 0.0


def test_fused_records_fusion_rule_and_statistics(fused_run: Path) -> None:
    memory = read_metadata(fused_run).model["memory"]
    assert memory["fusion"] == FusionRule.WEIGHTED.value
    stats = memory["stats"]
    assert stats["head_high"] > stats["head_low"] and stats["memory_high"] > stats["memory_low"]
    assert stats["head_weight"] + stats["memory_weight"] == pytest.approx(1.0)
    assert (fused_run / "model.safetensors").stat().st_size > 0


def test_sha256_covers_the_memory(memory_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "copy"
    shutil.copytree(memory_run, copy)
    state = load_file(str(copy / "model.safetensors"))
    state["memory.bank"] = state["memory.bank"] + 1.0
    save_file(state, str(copy / "model.safetensors"))
    with pytest.raises(ArtifactIntegrityError):
        read_metadata(copy)


@pytest.mark.parametrize("rule", [r.value for r in FusionRule])
def test_fusion_rules_rank_a_branch_increase_higher(rule: str) -> None:
    from fractalad_edge.models.memory import FusionStats, MemoryConfig, fuse_maps

    config = MemoryConfig(size=1, fusion=rule, stats=FusionStats(head_low=0.0, head_high=2.0, memory_low=1.0, memory_high=3.0))
    head = torch.tensor([0.0, 0.0, 4.0])
    distance = torch.tensor([1.0, 5.0, 1.0])
    fused = fuse_maps(head, distance, config)
    assert fused[1] > fused[0] and fused[2] > fused[0]


# ----------------------------------------------------------------------------- export
def _maps(directory: Path, images: list[np.ndarray]) -> np.ndarray:
    from fractalad_edge.predictor import Predictor

    predictor = Predictor.load(directory)
    try:
        return predictor.raw_maps(images, channel_order="rgb")
    finally:
        predictor.close()


@pytest.mark.parametrize("run_name", ["memory_run", "fused_run"])
def test_exported_graph_parity(request: pytest.FixtureRequest, run_name: str, tmp_path: Path, normal_images_dir: Path) -> None:
    from fractalad_edge.calibration.workflow import recalibrate
    from fractalad_edge.errors import MemoryOverlapError
    from fractalad_edge.export.pipeline import ExportOptions, export_model
    from fractalad_edge.memory_images import read_memory_images

    run = request.getfixturevalue(run_name)
    # held-out images: a patch that is itself in the memory has distance ~0, where the squared-norm
    # formula's cancellation (amplified by the square root) dominates; real frames are never in the memory
    holdout = json.loads((run / "config.json").read_text())["holdout"]
    images = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in holdout]
    reference = _maps(run, images)
    options = ExportOptions(calib_count=8, parity_images=4)
    for fmt, module in (("torch", "torch"), ("onnx", "onnxruntime"), ("openvino", "openvino")):
        pytest.importorskip(module)
        out = tmp_path / fmt
        metadata = export_model(run, format=fmt, out=out, options=options, progress=None)
        assert metadata.parity is not None and metadata.parity.passed
        assert metadata.model["method"] == read_metadata(run).model["method"]
        np.testing.assert_allclose(_maps(out, images), reference, rtol=1e-4, atol=1e-4 * float(np.abs(reference).max()))
        # the export carries the list of memory images, so its own calibrate leaves them out too
        assert read_memory_images(out, read_metadata(out)) == read_memory_images(run, read_metadata(run))
        in_memory, _ = _memory_and_holdout(run, normal_images_dir)
        with pytest.raises(MemoryOverlapError, match="training run's config.json"):
            recalibrate(out, normal=_copies(in_memory, tmp_path / f"good-{fmt}"), count=8)


def test_int8_keeps_the_memory_search_in_float(memory_run: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from fractalad_edge.export.pipeline import ExportOptions, export_model

    out = tmp_path / "int8"
    metadata = export_model(
        memory_run, format="onnx", out=out, options=ExportOptions(precision="int8", calib_count=8, parity_images=4,
                                                                  allow_accuracy_drop=True), progress=None,
    )
    assert metadata.quantization is not None
    graph = onnx.load(str(out / "model.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    assert any(n.op_type == "QuantizeLinear" for n in graph.node), "the backbone should be quantized"
    search = [n for n in graph.node if n.op_type in ("ReduceMin", "TopK")]
    assert search
    # walk back from the search to the teacher: no DequantizeLinear feeds the memory's float ops
    stack, seen = [search[0]], set()
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        for name in node.input:
            parent = producer.get(name)
            if parent is None:
                continue
            if parent.name.startswith("/memory/") or parent.op_type in ("ReduceMin", "TopK"):
                stack.append(parent)
            elif node.name.startswith("/memory/"):
                assert parent.op_type != "DequantizeLinear", f"{node.name} reads INT8 input {name}"


# ----------------------------------------------------------------------------- bad input
def test_memory_larger_than_candidates_is_refused_and_nothing_written(normal_images_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(DatasetError, match="lower --memory-size"):
        build_memory(MemoryBuildConfig(size=100_000, **FAST), normal_images_dir, out, progress=False)
    assert not out.exists()


def test_mixed_image_sizes_are_refused(normal_images_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(normal_images_dir, folder)
    first = sorted(folder.iterdir())[0]
    cv2.imwrite(str(first), cv2.resize(cv2.imread(str(first)), (80, 64)))
    with pytest.raises(DatasetError, match="mixed sizes"):
        build_memory(MemoryBuildConfig(size=50, **FAST), folder, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_ram_is_estimated_before_building(monkeypatch: pytest.MonkeyPatch, normal_images_dir: Path, tmp_path: Path) -> None:
    import fractalad_edge.train.memory as memory_module

    monkeypatch.setattr(memory_module, "available_memory_bytes", lambda: 1024)
    with pytest.raises(InsufficientMemoryError, match="GiB of RAM"):
        build_memory(MemoryBuildConfig(size=50, **FAST), normal_images_dir, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_fused_needs_a_fractalad_run(memory_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FractalAD training run"):
        build_memory(MemoryBuildConfig(method=Method.FUSED, size=50, **FAST), normal_images_dir, tmp_path / "r",
                     init_from=memory_run, progress=False)
    with pytest.raises(ConfigError, match="holdout"):
        MemoryBuildConfig(method="fused", holdout_fraction=0.0)
    with pytest.raises(ConfigError, match="fusion rule"):
        MemoryBuildConfig(fusion="median")


def test_cli_bad_memory_size_is_one_line(normal_images_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fractalad_edge.cli import app

    result = CliRunner().invoke(app, ["train", "--method", "memory", "--data", str(normal_images_dir), "--out",
                                      str(tmp_path / "r"), "--input-size", str(TINY), "--memory-size", "999999"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "lower --memory-size" in lines[0]


def test_tensorrt_reduced_precision_is_refused_for_memory(memory_run: Path, tmp_path: Path) -> None:
    from fractalad_edge.errors import ExportError
    from fractalad_edge.export.pipeline import ExportOptions, export_model

    with pytest.raises(ExportError, match="float32"):
        export_model(memory_run, format="tensorrt", out=tmp_path / "trt", options=ExportOptions(precision="fp16"), progress=None)
    assert not (tmp_path / "trt").exists()


def test_schema_1_artifacts_read_as_fractalad(tiny_run: Path, tmp_path: Path) -> None:
    from fractalad_edge.models.fractalad import ModelConfig

    copy = tmp_path / "old"
    shutil.copytree(tiny_run, copy)
    data = json.loads((copy / "metadata.json").read_text())
    data["schema_version"] = 1
    (copy / "metadata.json").write_text(json.dumps(data))
    metadata = read_metadata(copy)
    assert "method" not in metadata.model
    assert ModelConfig.from_dict(dict(metadata.model)).method is Method.FRACTALAD


def test_fused_cli_checks_the_memory_before_training(normal_images_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fractalad_edge.cli import app

    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["train", "--method", "fused", "--data", str(normal_images_dir), "--out", str(out),
                                      "--input-size", str(TINY), "--steps", "1", "--memory-size", "999999"])
    assert result.exit_code == 2 and "lower --memory-size" in result.output
    assert not out.exists()


def test_macs_count_the_memory_search(memory_run: Path) -> None:
    from fractalad_edge.bench.flops import count_artifact_macs

    macs = count_artifact_macs(memory_run)
    grid = TINY // 8
    assert macs.by_type["memory"] >= grid * grid * 120 * 32  # patches x memory rows x width
    assert macs.total > macs.by_type["memory"]


def test_build_prints_the_bank_size_the_bench_reports(normal_images_dir: Path, tmp_path: Path) -> None:
    from fractalad_edge.bench.memory_branch import memory_bank_size

    result = build_memory(MemoryBuildConfig(size=50, **FAST), normal_images_dir, tmp_path / "run", progress=False)
    bank = memory_bank_size(tmp_path / "run", read_metadata(tmp_path / "run"))
    assert bank is not None and result.memory_mb == pytest.approx(bank.mb, rel=1e-9)


def test_memory_bank_size_is_read_from_the_stored_weights(memory_run: Path, tiny_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from fractalad_edge.bench.memory_branch import memory_bank_size
    from fractalad_edge.errors import ArtifactError

    bank = memory_bank_size(memory_run, read_metadata(memory_run))
    assert bank is not None and (bank.rows, bank.channels, bank.dtype) == (120, 32, "F32")
    assert bank.bytes == 120 * 32 * 4 and bank.mb == pytest.approx(120 * 32 * 4 / 1e6)
    assert memory_bank_size(tiny_run, read_metadata(tiny_run)) is None  # fractalad: no memory branch
    # stored in half precision: the size follows the file, not a float32 guess
    copy = tmp_path / "half"
    shutil.copytree(memory_run, copy)
    state = load_file(str(copy / "model.safetensors"))
    save_file({**state, "memory.bank": state["memory.bank"].half()}, str(copy / "model.safetensors"))
    half = memory_bank_size(copy, read_metadata(copy, verify=False))
    assert half is not None and (half.dtype, half.bytes) == ("F16", 120 * 32 * 2)
    # a bank that disagrees with metadata.json is an error that says what to do
    save_file({**state, "memory.bank": state["memory.bank"][:100]}, str(copy / "model.safetensors"))
    with pytest.raises(ArtifactError, match="100 rows but metadata.json says 120; rebuild"):
        memory_bank_size(copy, read_metadata(copy, verify=False))


def test_bench_rows_carry_the_memory_branch_cost(memory_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    from fractalad_edge.bench.config import BenchConfig
    from fractalad_edge.bench.flops import count_artifact_macs
    from fractalad_edge.bench.matrix import run_bench

    category = tmp_path / "mvtec" / "widget"
    sources = sorted(normal_images_dir.glob("*.png"))[-4:]
    for folder in ("test/good", "test/dent", "ground_truth/dent"):
        (category / folder).mkdir(parents=True)
    for index, path in enumerate(sources):
        image = cv2.imread(str(path))
        if index < 2:
            cv2.imwrite(str(category / "test" / "good" / f"{index:03d}.png"), image)
            continue
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[10:30, 20:40] = 255
        image[mask > 0] = (20, 20, 90)
        cv2.imwrite(str(category / "test" / "dent" / f"{index:03d}.png"), image)
        cv2.imwrite(str(category / "ground_truth" / "dent" / f"{index:03d}_mask.png"), mask)
    config = BenchConfig(runtimes=("torch",), precisions=("fp32",), warmup=0, runs=2, rounds=1, throughput_batch=1,
                         threads=1, memory=False, async_throughput=False)
    report = run_bench(memory_run, category, tmp_path / "bench", config, progress=lambda _: None)
    row = report.result("torch-fp32")
    assert row.ok, row.status
    assert row.memory_bank_mb == pytest.approx(120 * 32 * 4 / 1e6)
    assert row.memory_macs == count_artifact_macs(memory_run).by_type["memory"] > 0
    assert report.memory_bank is not None and report.memory_bank.rows == 120
    data = json.loads((tmp_path / "bench" / "report.json").read_text())
    assert data["results"][0]["memory_macs"] == row.memory_macs and data["memory_bank"]["dtype"] == "F32"


def test_pca_projection_keeps_the_main_directions() -> None:
    from fractalad_edge.train.memory import fit_pca

    rng = np.random.default_rng(0)
    signal = rng.normal(0, 5, (4000, 2)) @ rng.normal(size=(2, 10))
    features = torch.from_numpy((signal + rng.normal(0, 0.1, (4000, 10)) + 3.0).astype(np.float32))
    mean, components = fit_pca(features, 2)
    reconstructed = (features - mean) @ components @ components.T + mean
    assert float((features - reconstructed).pow(2).mean()) < 0.05
    assert torch.allclose(components.T @ components, torch.eye(2), atol=1e-4)


def _edited_metadata(run: Path, tmp_path: Path, edit) -> Path:  # noqa: ANN001 - a callable on the metadata dict
    copy = tmp_path / "edited"
    shutil.copytree(run, copy)
    data = json.loads((copy / "metadata.json").read_text())
    edit(data)
    (copy / "metadata.json").write_text(json.dumps(data))
    return copy


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["model"]["memory"].update(radius=3), "unknown"),
        (lambda d: d["model"]["memory"]["stats"].update(bias=1.0), "unknown"),
        (lambda d: d["model"]["memory"].update(k="3"), "k must be an int"),
        (lambda d: d["model"].update(method="patchcore"), "method must be one of"),
        (lambda d: d["model"].pop("memory"), "needs model.memory"),
        (lambda d: d.update(schema_version=1), "schema version >= 2"),
    ],
)
def test_memory_metadata_is_validated(memory_run: Path, tmp_path: Path, edit, match: str) -> None:  # noqa: ANN001
    from fractalad_edge.errors import ArtifactError

    with pytest.raises(ArtifactError, match=match):
        read_metadata(_edited_metadata(memory_run, tmp_path, edit), verify=False)


def test_memory_run_folder_is_checked_before_work(memory_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    from fractalad_edge.errors import OutputExistsError

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a training run"):
        build_memory(MemoryBuildConfig(size=50, **FAST), normal_images_dir, foreign, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    copy = tmp_path / "again"
    shutil.copytree(memory_run, copy)
    (copy / "notes.txt").write_text("kept")
    with pytest.raises(OutputExistsError, match="--force"):
        build_memory(MemoryBuildConfig(size=50, **FAST), normal_images_dir, copy, progress=False)
    build_memory(MemoryBuildConfig(size=50, **FAST), normal_images_dir, copy, progress=False, force=True)
    assert read_metadata(copy).model["memory"]["size"] == 50
    assert (copy / "notes.txt").read_text() == "kept"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_default_method_follows_the_category(normal_images_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fractalad_edge.cli import app
    from fractalad_edge.data.categories import default_method

    assert default_method("bottle") == "fractalad"
    assert default_method("carpet") == "memory" and default_method("magnetic_tile") == "memory"
    # a folder that is not an MVTec object defaults to memory: training options are refused, nothing written
    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["train", "--data", str(normal_images_dir), "--out", str(out), "--steps", "5"])
    assert result.exit_code == 2 and "--method fractalad" in result.output
    assert not out.exists()


def test_holdout_is_small_but_never_too_few() -> None:
    from fractalad_edge.train.memory import MIN_HOLDOUT, holdout_count

    assert holdout_count(761, 0.05) == 38  # magnetic tile
    assert holdout_count(209, 0.05) == 10  # bottle
    assert holdout_count(100, 0.05) == MIN_HOLDOUT
    assert holdout_count(12, 0.05) == 2  # at most a fifth, never under 2
    assert holdout_count(500, 0.0) == 0


def test_export_calibrates_on_images_outside_the_memory(memory_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    from fractalad_edge.errors import CalibrationError
    from fractalad_edge.export.pipeline import _calibration_sources

    holdout = json.loads((memory_run / "config.json").read_text())["holdout"]
    # the training folder itself: only its held-out images remain
    paths, _ = _calibration_sources(memory_run, normal_images_dir, read_metadata(memory_run))
    assert sorted(p.resolve() for p in paths) == sorted(Path(p).resolve() for p in holdout)
    only_memory = tmp_path / "in-memory"
    only_memory.mkdir()
    for path in sorted(normal_images_dir.iterdir()):
        if str(path) not in holdout:
            (only_memory / path.name).symlink_to(path)  # the same files, reached another way
    with pytest.raises(CalibrationError, match="in the model's memory"):
        _calibration_sources(memory_run, only_memory, read_metadata(memory_run))
    # copies elsewhere are recognised by content (the run's list of memory images)
    in_memory, held_out = _memory_and_holdout(memory_run, normal_images_dir)
    mixed = _copies(in_memory + held_out, tmp_path / "copies")
    paths, _ = _calibration_sources(memory_run, mixed, read_metadata(memory_run))
    assert len(paths) == len(held_out)


# ----------------------------------------------------------------------------- calibrate leaves the memory out
def _memory_and_holdout(run: Path, normal_images_dir: Path) -> tuple[list[Path], list[Path]]:
    holdout = {Path(p).resolve() for p in json.loads((run / "config.json").read_text())["holdout"]}
    images = sorted(normal_images_dir.glob("*.png"))
    return [p for p in images if p.resolve() not in holdout], [p for p in images if p.resolve() in holdout]


def _copies(paths: list[Path], folder: Path) -> Path:
    """The same images under other names and another folder: recognised by content, not path."""
    folder.mkdir()
    for index, path in enumerate(paths):
        shutil.copyfile(path, folder / f"frame_{index:03d}.png")
    return folder


@pytest.mark.parametrize("run_name", ["memory_run", "fused_run"])
def test_build_records_the_images_in_its_memory(request: pytest.FixtureRequest, run_name: str, normal_images_dir: Path) -> None:
    from fractalad_edge.memory_images import image_digest, read_memory_images

    run = request.getfixturevalue(run_name)
    metadata = read_metadata(run)  # the list is a listed, sha256-checked file
    assert "memory_images.json" in [f.path for f in metadata.files]
    in_memory, held_out = _memory_and_holdout(run, normal_images_dir)
    assert in_memory and held_out
    assert read_memory_images(run, metadata) == {image_digest(p) for p in in_memory}


def test_an_altered_memory_image_list_is_refused(memory_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(memory_run, copy)
    record = json.loads((copy / "memory_images.json").read_text())
    record["images"] = record["images"][1:]
    record["count"] -= 1
    (copy / "memory_images.json").write_text(json.dumps(record))
    with pytest.raises(ArtifactIntegrityError, match="memory_images.json"):
        read_metadata(copy)
    # a list whose sha256 matches but whose content is not a list of digests: refused when read
    from fractalad_edge.artifact import ModelFile, sha256_file, write_metadata
    from fractalad_edge.errors import ArtifactError
    from fractalad_edge.memory_images import read_memory_images

    record["images"][0] = "not-a-digest"
    (copy / "memory_images.json").write_text(json.dumps(record))
    metadata = read_metadata(copy, verify=False)
    files = tuple(ModelFile(path=f.path, sha256=sha256_file(copy / f.path)) for f in metadata.files)
    write_metadata(copy, dataclasses.replace(metadata, files=files))
    with pytest.raises(ArtifactError, match="not a memory image list"):
        read_memory_images(copy, read_metadata(copy))


def test_calibrate_refuses_normals_that_all_built_the_memory(memory_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    from fractalad_edge.calibration.workflow import recalibrate
    from fractalad_edge.errors import CalibrationError, MemoryOverlapError

    model = tmp_path / "model"
    shutil.copytree(memory_run, model)
    before = (model / "metadata.json").read_text()
    in_memory, _ = _memory_and_holdout(memory_run, normal_images_dir)
    folder = _copies(in_memory, tmp_path / "good")
    with pytest.raises(MemoryOverlapError, match=f"all {len(in_memory)} images in .*'holdout' in .*config.json") as caught:
        recalibrate(model, normal=folder, count=8)
    assert isinstance(caught.value, CalibrationError) and "\n" not in str(caught.value)
    assert (model / "metadata.json").read_text() == before  # nothing written


def test_calibrate_leaves_out_exactly_the_memory_images(memory_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    from fractalad_edge.calibration.workflow import recalibrate

    model = tmp_path / "model"
    shutil.copytree(memory_run, model)
    in_memory, held_out = _memory_and_holdout(memory_run, normal_images_dir)
    result = recalibrate(model, normal=normal_images_dir, count=8)
    assert result.normal_images == len(in_memory) + len(held_out)
    assert result.memory_images_left_out == len(in_memory)
    assert f"left out {len(in_memory)} of {len(in_memory) + len(held_out)} normal images" in result.summary()
    # the thresholds are those fitted on the held-out images alone (same names, so the same calibration set)
    only_held_out = tmp_path / "held-out"
    only_held_out.mkdir()
    for path in held_out:
        (only_held_out / path.name).symlink_to(path)
    alone = recalibrate(model, normal=only_held_out, count=8)
    assert alone.memory_images_left_out == 0 and f"none of the {len(held_out)} normal images" in alone.summary()
    assert result.written == alone.written


def test_calibrate_on_a_memory_model_without_the_list_warns(memory_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    from fractalad_edge.artifact import write_metadata
    from fractalad_edge.calibration.workflow import recalibrate
    from fractalad_edge.errors import CalibrationWarning

    old = tmp_path / "old"  # as built before the list existed
    shutil.copytree(memory_run, old)
    metadata = read_metadata(old)
    write_metadata(old, dataclasses.replace(metadata, files=tuple(f for f in metadata.files if f.path != "memory_images.json")))
    (old / "memory_images.json").unlink()
    # a run of that age still names its memory's images in config.json: no guess needed
    in_memory, _ = _memory_and_holdout(memory_run, normal_images_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        assert recalibrate(old, normal=normal_images_dir, count=8).memory_images_left_out == len(in_memory)
    # an export of that age (no config.json) cannot tell
    (old / "config.json").unlink()
    with pytest.warns(CalibrationWarning, match="does not record which images built its memory") as record:
        result = recalibrate(old, normal=normal_images_dir, count=8)
    assert len(record) == 1
    assert result.memory_images_left_out is None and result.written.num_normal > 0
    assert read_metadata(old).calibration == result.written
    from typer.testing import CliRunner

    from fractalad_edge.cli import app

    result = CliRunner().invoke(app, ["calibrate", str(old), "--normal", str(normal_images_dir), "--count", "8"])
    assert result.exit_code == 0, result.output
    assert result.output.count("warning:") == 1 and "rebuild the model" in result.output


def test_cli_calibrate_says_what_it_left_out(memory_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fractalad_edge.cli import app

    model = tmp_path / "model"
    shutil.copytree(memory_run, model)
    in_memory, held_out = _memory_and_holdout(memory_run, normal_images_dir)
    runner = CliRunner()
    result = runner.invoke(app, ["calibrate", str(model), "--normal", str(normal_images_dir), "--count", "8"])
    assert result.exit_code == 0, result.output
    assert f"left out {len(in_memory)} of {len(in_memory) + len(held_out)} normal images" in result.output
    folder = _copies(in_memory, tmp_path / "good")
    result = runner.invoke(app, ["calibrate", str(model), "--normal", str(folder), "--count", "8"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.count("error:") == 1 and "built this model's memory" in result.output
