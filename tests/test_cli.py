"""The command line as a user meets it: one-line errors, exit codes, files written."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fractalad_edge.artifact import read_metadata
from fractalad_edge.cli import PRESETS, Preset, app
from fractalad_edge.data.demo import make_demo_dataset

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "eval", "export", "calibrate", "predict", "bench", "demo"):
        assert command in result.output


def test_export_defaults_are_the_export_options_defaults() -> None:
    import dataclasses

    import typer.main

    from fractalad_edge.artifact import Precision
    from fractalad_edge.export import ExportOptions

    command = typer.main.get_command(app).commands["export"]  # type: ignore[attr-defined]
    cli = {p.name: p.default for p in command.params}
    library = {f.name: f.default for f in dataclasses.fields(ExportOptions)}
    shared = sorted(set(cli) & set(library))
    assert {"precision", "opset", "max_drop", "calib_count", "calib_seed", "int8_weights", "quant_mode"} <= set(shared)
    for name in shared:
        value = Precision(cli[name]) if name == "precision" else cli[name]
        assert value == library[name], f"--{name.replace('_', '-')} defaults to {cli[name]!r}, ExportOptions to {library[name]!r}"


def test_bench_defaults_are_the_bench_config_defaults() -> None:
    import dataclasses

    import typer.main

    from fractalad_edge.bench.config import BenchConfig

    command = typer.main.get_command(app).commands["bench"]  # type: ignore[attr-defined]
    cli = {p.name: p.default for p in command.params}
    library = {f.name: f.default for f in dataclasses.fields(BenchConfig)}
    # the CLI takes runtimes and precisions as comma-separated text
    assert tuple(cli.pop("runtimes").split(",")) == library["runtimes"]
    assert tuple(cli.pop("precisions").split(",")) == tuple(p.value for p in library["precisions"])
    shared = sorted(set(cli) & set(library))
    assert {"runs", "rounds", "warmup", "memory", "device", "threads", "calib_count"} <= set(shared)
    for name in shared:
        assert cli[name] == library[name], f"--{name.replace('_', '-')} defaults to {cli[name]!r}, BenchConfig to {library[name]!r}"


def test_the_cli_and_its_defaults_import_no_numpy() -> None:
    import os
    import subprocess

    # the defaults are shown in --help, so where they live must be as light as the CLI itself
    code = "import sys, fractalad_edge.export.defaults, fractalad_edge.bench.defaults, fractalad_edge.cli; print(sorted({'numpy', 'cv2', 'torch'} & set(sys.modules)))"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_train_without_torch_is_a_one_line_error_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as on an edge install: `import torch` fails
    assert_one_line_error(invoke("train", "--data", tmp_path, "--out", tmp_path / "run"), "fractalad-edge[train]")


def test_train_on_a_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    assert_one_line_error(invoke("train", "--data", tmp_path / "nope", "--out", tmp_path / "run"), "nope")


def test_train_on_an_empty_folder_is_a_one_line_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("train", "--data", tmp_path / "empty", "--out", tmp_path / "run"), "empty")


def test_export_refuses_a_precision_the_format_does_not_take_before_any_work(tiny_run: Path, tmp_path: Path) -> None:
    result = invoke("export", tiny_run, "--format", "torch", "--precision", "int8", "--out", tmp_path / "m")
    assert_one_line_error(result, "int8")
    assert not (tmp_path / "m").exists()
    assert_one_line_error(invoke("export", tiny_run, "--format", "tflite", "--out", tmp_path / "m"), "tflite")


def test_predict_reports_a_bad_image_and_scores_the_rest(tiny_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(normal_images_dir.glob("*.png"))[:2]:
        shutil.copy(path, images / path.name)
    good = (images / sorted(p.name for p in images.iterdir())[0]).read_bytes()
    (images / "truncated.png").write_bytes(good[: len(good) // 2])
    result = invoke("predict", tiny_run, images, "--out", tmp_path / "preds")
    assert result.exit_code == 1, result.output
    assert "truncated.png" in result.output and "2 images scored" in result.output
    records = [json.loads(line) for line in (tmp_path / "preds" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 3
    failed = [r for r in records if "error" in r]
    assert len(failed) == 1 and failed[0]["image"].endswith("truncated.png")
    assert all(0.0 <= r["pred_score"] <= 1.0 for r in records if "error" not in r)
    assert len(list((tmp_path / "preds" / "overlays").glob("*.png"))) == 2


def test_eval_writes_metrics_report_and_overlays(tiny_run: Path, tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "part", size=64, train=2, test_good=3, test_defect=2)
    result = invoke("eval", tiny_run, "--data", data, "--out", tmp_path / "eval", "--overlays", "4")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_images"] == 7 and metrics["num_anomalous"] == 4
    assert 0.0 <= metrics["image_auroc"] <= 1.0 and 0.0 <= metrics["pixel_auroc"] <= 1.0
    assert set(metrics["by_reduction"]) == {"mean", "max", "topk@0.01", "topk@0.001"}
    overlays = list((tmp_path / "eval" / "overlays").glob("*.png"))
    assert len(overlays) == 4
    panel = cv2.imread(str(overlays[0]))
    assert panel.shape == (64, 3 * 64, 3)  # image | ground truth | heat map
    html = (tmp_path / "eval" / "report.html").read_text()  # the gallery holds every image, not only --overlays
    assert html.count('<figure class="card') == 7 and str(tmp_path / "eval" / "report.html") in result.output


def test_eval_rejects_a_mask_of_the_wrong_size(tiny_run: Path, tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "part", size=64, train=2, test_good=1, test_defect=1)
    mask = next((data / "ground_truth" / "scratch").glob("*.png"))
    cv2.imwrite(str(mask), np.zeros((32, 32), np.uint8))
    assert_one_line_error(invoke("eval", tiny_run, "--data", data), mask.name)


def test_calibrate_writes_synthetic_and_real_thresholds(tiny_run: Path, normal_images_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_run, model)
    data = make_demo_dataset(tmp_path / "part", size=64, train=2, test_good=3, test_defect=2)
    result = invoke("calibrate", model, "--normal", normal_images_dir, "--count", "8")
    assert result.exit_code == 0, result.output
    calibration = read_metadata(model).calibration
    assert calibration is not None and calibration.source == "synthetic" and calibration.num_anomalous == 4
    result = invoke("calibrate", model, "--normal", normal_images_dir, "--count", "8", "--defects", data)
    assert result.exit_code == 0 and "real defects" in result.output
    assert read_metadata(model).calibration.source == "real"


def test_train_defaults_are_the_config_defaults() -> None:
    """The train command repeats a few library defaults as typer options: they must not drift apart."""
    import dataclasses

    import typer.main

    from fractalad_edge.models.fractalad import ModelConfig
    from fractalad_edge.train.config import TrainConfig
    from fractalad_edge.train.memory import MemoryBuildConfig

    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    cli = {p.name: p.default for p in command.params}
    train, model = TrainConfig(), ModelConfig()
    memory = {f.name: f.default for f in dataclasses.fields(MemoryBuildConfig)}
    assert cli["lr"] is None and PRESETS[Preset.published]["lr"] == train.lr and cli["seed"] == train.seed
    assert (cli["backbone"], cli["input_size"], cli["head_channels"]) == (model.backbone, model.input_size, model.head_channels)
    assert cli["memory_pool"] == memory["pool"] and cli["memory_k"] == memory["k"]
    assert cli["holdout"] == memory["holdout_fraction"] and cli["seed"] == memory["seed"]
    assert tuple(int(s) for s in cli["memory_strides"].split(",")) == memory["strides"]
    assert cli["fusion"].value == memory["fusion"].value


@pytest.mark.parametrize(("flags", "lr"), [(("--preset", "quick-cpu"), 2e-3), (("--preset", "quick-cpu", "--lr", "5e-4"), 5e-4)])
def test_the_preset_sets_the_learning_rate_unless_lr_is_given(
    flags: tuple[str, ...], lr: float, normal_images_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "run"
    tiny = ("--method", "fractalad", "--steps", "1", "--batch-size", "2", "--input-size", "64", "--head-channels", "8")
    result = invoke("train", "--data", normal_images_dir, "--out", out, *tiny, *flags)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == lr
    assert [json.loads(line)["lr"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [lr]


def test_calibrate_rejects_an_unknown_method(tiny_run: Path, normal_images_dir: Path) -> None:
    assert_one_line_error(invoke("calibrate", tiny_run, "--normal", normal_images_dir, "--method", "guess"), "guess")


def test_calibrate_pastes_anomalies_where_the_run_trained_them(tmp_path: Path, tiny_run: Path, normal_images_dir: Path) -> None:
    """Thresholds must match the ones train and export fitted: the run's placement, unless told otherwise."""
    import json

    model = tmp_path / "model"
    shutil.copytree(tiny_run, model)
    config = json.loads((model / "config.json").read_text())
    config["train"] = {"synth": {"object_placement": True}}
    (model / "config.json").write_text(json.dumps(config))
    result = invoke("calibrate", model, "--normal", normal_images_dir, "--count", "8")
    assert result.exit_code == 0, result.output
    assert "synthetic anomalies on the object" in result.output
    on_object = read_metadata(model).calibration
    result = invoke("calibrate", model, "--normal", normal_images_dir, "--count", "8", "--no-object-placement")
    assert result.exit_code == 0 and "anywhere in the frame" in result.output
    assert read_metadata(model).calibration != on_object  # other synthetic images, other thresholds


def test_anomaly_placement_falls_back_to_the_category_of_the_normal_folder(tmp_path: Path) -> None:
    """An exported artifact has no run config: the category default decides, as train does."""
    from fractalad_edge.calibration.workflow import anomaly_placement

    artifact = tmp_path / "export"
    artifact.mkdir()
    assert anomaly_placement(artifact, tmp_path / "screw" / "train" / "good", None) is True
    assert anomaly_placement(artifact, tmp_path / "bottle" / "train" / "good", None) is False
    assert anomaly_placement(artifact, tmp_path / "my_parts", None) is False
    assert anomaly_placement(artifact, tmp_path / "screw", False) is False
    (artifact / "config.json").write_text("{not json")
    assert anomaly_placement(artifact, tmp_path / "screw", None) is True


@pytest.mark.slow
def test_train_command_runs_a_tiny_schedule(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    data = make_demo_dataset(tmp_path / "part", size=64, train=4, test_good=1, test_defect=1)
    result = invoke(
        "train", "--data", data, "--out", tmp_path / "run", "--method", "fractalad", "--steps", "2", "--batch-size", "2",
        "--input-size", "64", "--head-channels", "8",
    )
    assert result.exit_code == 0, result.output
    assert "next: fractalad-edge eval" in result.output
    assert read_metadata(tmp_path / "run").model["head_channels"] == 8
