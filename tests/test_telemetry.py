"""The SDK's OpenVINO imports and conversion send no usage telemetry (fractalad_edge/telemetry.py).

Each case runs in a fresh interpreter with an empty HOME, like a first run on a new machine:
with telemetry on, OpenVINO writes its client id under ``$HOME/intel`` before sending; with it
off nothing is written. (pytest itself switches NNCF's telemetry off, hence the subprocess.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import importlib
    import sys
    import onnx
    from onnx import TensorProto, helper
    from fractalad_edge.extras import require
    from fractalad_edge.telemetry import openvino_telemetry_declined
    sdk = sys.argv[2] == "sdk"
    ov = require("openvino") if sdk else importlib.import_module("openvino")  # the import sends an event
    nncf = require("nncf") if sdk else importlib.import_module("nncf")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), sys.argv[1])
    if sdk:
        with openvino_telemetry_declined():  # as export/openvino.py converts
            ov.convert_model(sys.argv[1])
    else:
        ov.convert_model(sys.argv[1])
    import openvino_telemetry
    print("consent", openvino_telemetry.Telemetry().consent)
    """
)


def _convert(tmp_path: Path, mode: str) -> tuple[str, Path]:
    home = tmp_path / f"home-{mode}"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI", "NNCF_DEV")}
    env.update(HOME=str(home), FRACTALAD_OPENVINO_TELEMETRY="0")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / f"{mode}.onnx"), mode],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, home


def test_export_path_sends_no_openvino_telemetry(tmp_path: Path) -> None:
    for module in ("openvino", "openvino_telemetry", "nncf", "onnx"):
        pytest.importorskip(module)
    out, home = _convert(tmp_path, "sdk")
    assert "consent False" in out
    assert not (home / "intel").exists(), sorted(p.name for p in (home / "intel").iterdir())
    # the same imports and conversion as plain OpenVINO: its default (opt-out) telemetry is on
    out, home = _convert(tmp_path, "plain")
    if "consent True" not in out:
        pytest.skip("this OpenVINO sends no telemetry by default: nothing to switch off")
    assert (home / "intel").exists()


def test_the_env_keeps_openvinos_own_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from fractalad_edge.telemetry import KEEP_TELEMETRY_ENV, openvino_telemetry_declined

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(KEEP_TELEMETRY_ENV, "1")
    with openvino_telemetry_declined() as declined:
        assert declined is False and "CI" not in os.environ
    monkeypatch.setenv(KEEP_TELEMETRY_ENV, "0")
    with openvino_telemetry_declined() as declined:
        assert declined is True and os.environ["CI"] == "true"
    assert "CI" not in os.environ  # restored
