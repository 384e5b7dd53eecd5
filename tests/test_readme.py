"""The README's commands run as written, in order, on tiny data, so the README cannot rot silently.

Every line of the README's ```bash blocks that starts with ``fractalad-edge`` runs, in order,
in one empty folder, after these mechanical substitutions (and no others):

* ``fractalad-edge`` -> ``python -m fractalad_edge.cli`` (this checkout's code);
* ``path/to/bottle`` -> a tiny MVTec-layout category generated here (the demo's part, 64 px);
  ``path/to/images/`` -> its ``test/scratch`` folder;
* long schedules and measurements shrink (``SHRINK``): ``train`` gets 2 steps of 2 images at
  64 px, ``demo`` 2 steps, exports and benches few calibration images and timed runs, INT8
  exports ``--allow-accuracy-drop`` (a 2-step model has nothing for the gate to protect);
* trailing ``# comments`` are dropped.

The set-up lines run without their ``bash scripts/bootstrap &&`` (CI runs bootstrap itself,
.ci/run; the pytest line is this suite). Skipped:
commands whose optional package is missing here (TensorRT, a runtime). The Python snippet
runs too, against the OpenVINO model the commands before it wrote.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

SHRINK = {
    "train": ["--steps", "2", "--batch-size", "2", "--input-size", "64", "--head-channels", "16"],
    "demo": ["--steps", "2"],
    "export": ["--calib-count", "8"],
    "bench": ["--runs", "2", "--rounds", "1", "--warmup", "1", "--no-memory", "--calib-count", "8"],
    "calibrate": ["--count", "8"],
}
NEEDS = {"tensorrt": "tensorrt", "openvino": "openvino", "onnx": "onnxruntime", "onnxruntime": "onnxruntime"}


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def readme_commands() -> list[str]:
    lines = [line.strip() for block in readme_blocks("bash") for line in block.splitlines()]
    # the set-up lines: "bash scripts/bootstrap && .venv/bin/fractalad-edge demo ..." keeps its command
    lines = [line.split("&& ", 1)[1].replace(".venv/bin/", "", 1) if line.startswith("bash scripts/bootstrap && ") else line for line in lines]
    return [line for line in lines if line.startswith("fractalad-edge ")]


def adapt(command: str, data: Path) -> list[str]:
    command = command.split("  #")[0].split(" # ")[0].strip()
    command = command.replace("path/to/images/", f"{data}/test/scratch/").replace("path/to/bottle", str(data))
    args = shlex.split(command)[1:]
    name = args[0]
    extra = list(SHRINK.get(name, []))
    if name == "export" and "int8" in args:
        extra.append("--allow-accuracy-drop")
    return [sys.executable, "-m", "fractalad_edge.cli", *args, *extra]


def missing_package(args: list[str]) -> str | None:
    wanted = {NEEDS[v] for v in args if v in NEEDS}
    for flag in ("--runtimes",):
        if flag in args:
            wanted |= {NEEDS.get(r, r) for r in args[args.index(flag) + 1].split(",") if r != "torch"}
    return next((p for p in sorted(wanted) if importlib.util.find_spec(p) is None), None)


def test_readme_has_the_commands_this_test_runs() -> None:
    commands = readme_commands()
    assert any(c.startswith("fractalad-edge train") for c in commands)
    assert any(c.startswith("fractalad-edge export") and "int8" in c for c in commands)
    # every export names its output folder: run as written, none may fail on a missing --out
    assert all("--out" in c for c in commands if c.startswith(("fractalad-edge export", "fractalad-edge train")))
    assert readme_blocks("python")


@pytest.mark.slow
def test_readme_commands_run_in_order_on_tiny_data(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from fractalad_edge.data.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "data" / "bottle", size=64, train=8, test_good=3, test_defect=3)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    ran = []
    for command in readme_commands():
        args = adapt(command, data)
        missing = missing_package(args[3:])
        if missing:
            continue
        result = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"README command failed: {command}\n{result.stdout}\n{result.stderr}"
        ran.append(command)
        if args[3] == "demo":  # it says where its reports are and what to type next
            assert "next:" in result.stdout and "threshold fitted on" in result.stdout, result.stdout
            assert (work / "demo" / "run" / "eval" / "report.md").is_file()
            assert (work / "demo" / "run" / "eval" / "report.html").is_file() and "report.html (open in a browser" in result.stdout
    assert any(c.startswith("fractalad-edge export") and "int8" in c for c in ran) or importlib.util.find_spec("openvino") is None

    if importlib.util.find_spec("openvino") is None:
        return
    frame = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    cv2.imwrite(str(work / "frame.png"), frame)
    code = "\n".join(readme_blocks("python"))
    setup = "import cv2\nframe = cv2.imread('frame.png')\nframes = [frame, frame]\n"
    result = subprocess.run([sys.executable, "-c", setup + code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
