"""`fractalad-edge demo`: the whole product on the generated dataset that ships with the package.

Generates a small inspection dataset, trains on its normal images only, evaluates on its
labelled test split, exports to every runtime installed here, and predicts on test images
through the last exported model. Minutes on a laptop CPU; nothing is downloaded. It ends
by printing where each report is and the next commands to type.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fractalad_edge.artifact import Precision
from fractalad_edge.extras import MODULE_EXTRAS, install_hint, missing_modules


def run_demo(out: str | Path, *, steps: int = 120, echo: Callable[[str], None] = print) -> dict[str, Path]:
    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.evaluation import evaluate_predictor, markdown_table, write_overlays, write_report
    from fractalad_edge.data.demo import make_demo_dataset
    from fractalad_edge.export.pipeline import ExportOptions, export_model
    from fractalad_edge.inference import predict_files
    from fractalad_edge.models.fractalad import ModelConfig
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.report import write_eval_html
    from fractalad_edge.synth.anomaly import SynthConfig
    from fractalad_edge.train.config import TrainConfig
    from fractalad_edge.train.loop import train

    out = Path(out)
    data = make_demo_dataset(out / "data" / "demo_part")
    echo(f"[1/4] dataset: {data}")
    size = 128
    config = TrainConfig(
        model=ModelConfig(input_size=size, head_channels=32),
        synth=SynthConfig(image_size=size),
        steps=steps,
        batch_size=8,
        calibration_images=32,
    )
    run = out / "run"
    result = train(config, data, run, force=True)  # the demo owns its folder: a rerun replaces its run
    echo(f"[2/4] trained {result.steps} steps in {result.seconds:.0f} s -> {run}")
    test_set = load_test_set(data, size)
    reports = []
    predictor = Predictor.load(run)
    report, maps = evaluate_predictor(predictor, test_set, category="demo_part")
    write_overlays(test_set, maps, run / "eval" / "overlays", count=8, metadata=predictor.metadata)
    write_report(report, run / "eval")
    html = write_eval_html(report, test_set, maps, predictor.metadata, run / "eval", model=str(run), data=str(data))
    reports.append(report)
    models = {"torch": run}
    for fmt, module in (("onnx", "onnxruntime"), ("openvino", "openvino")):
        if missing_modules([module, "onnx"]):
            echo(f"[3/4] skipping {fmt}: {install_hint(f'{MODULE_EXTRAS[module]},export')}")
            continue
        target = out / "models" / fmt
        export_model(run, format=fmt, out=target, options=ExportOptions(precision=Precision.FP32), progress=echo, force=True)
        models[fmt] = target
        report, _ = evaluate_predictor(Predictor.load(target), test_set, category="demo_part")
        write_report(report, target / "eval")
        reports.append(report)
    echo("[3/4] accuracy per runtime on the demo test split:\n" + markdown_table(reports))
    echo("\n" + threshold_table(models, data))
    last_name, last = list(models.items())[-1]
    preds = out / "preds"
    predict_files(last, [data / "test" / "scratch"], out=preds, echo=lambda _: None, force=True)
    echo(f"[4/4] predicted the scratch test images with the {last_name} model")
    echo("\nreports:")
    echo(f"  evaluation, torch:   {html} (open in a browser: every test image, misses first)")
    echo(f"                       {run / 'eval' / 'report.md'} (+ metrics.json, overlays/: image | truth | heat map)")
    for name, folder in list(models.items())[1:]:
        echo(f"  evaluation, {name + ':':<9}{folder / 'eval' / 'report.md'} (+ metrics.json)")
    echo(f"  predictions:         {preds / 'predictions.jsonl'} (+ overlays/)")
    echo("\nnext:")
    echo(f"  fractalad-edge predict {last} path/to/your/images --out {out / 'my-preds'}")
    echo("  fractalad-edge train --data path/to/your/category --out runs/mine --preset quick-cpu")
    echo("  fractalad-edge export runs/mine --format openvino --precision int8 --out models/mine-int8")
    return models


def threshold_table(models: dict[str, Path], data: Path) -> str:
    """Which images each model's decision threshold was fitted on (all synthetic: no real defect)."""
    from fractalad_edge.artifact import read_metadata

    lines = [
        "Each model decides with its own threshold, fitted on synthetic anomalies only (no real defect):",
        "",
        "| model | folder | threshold fitted on |",
        "|---|---|---|",
    ]
    for name, folder in models.items():
        cal = read_metadata(folder).calibration
        fitted = "-" if cal is None else f"{cal.num_normal} normal + {cal.num_anomalous} synthetic-anomaly images"
        when = "at the end of training" if name == "torch" else "by the export, with its own runtime"
        lines.append(f"| {name} | {folder} | {fitted}, {when} |")
    lines += [
        "",
        "The F1 and false-alarm columns above use these thresholds: fitted on different images, they can",
        "disagree (training fits on fewer images than an export, to stay quick). AUROC and AUPRO do",
        f"not depend on a threshold. To refit one on 32 + 32: fractalad-edge calibrate {models['torch']} --normal {data}",
    ]
    return "\n".join(lines)
