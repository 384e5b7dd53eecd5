"""The torch runtime's CUDA-graph path: refused with a clear error off CUDA, eager-equal on a GPU.

The GPU tests skip where torch sees no CUDA device (they have not run on a GPU yet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fractalad_edge.errors import ConfigError, RuntimeMismatchError
from fractalad_edge.predictor import Predictor

torch = pytest.importorskip("torch")


def test_cuda_graphs_need_a_cuda_device(tiny_run: Path) -> None:
    with pytest.raises(RuntimeMismatchError, match="cuda_graphs=True needs device='cuda'"):
        Predictor.load(tiny_run, cuda_graphs=True)
    with pytest.raises(ConfigError, match="cuda_graphs must be True or False"):
        Predictor.load(tiny_run, cuda_graphs="yes")
    with Predictor.load(tiny_run) as eager:
        assert eager.backend.describe()["cuda_graphs"] == "False"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graphs_give_the_eager_maps(tiny_run: Path, precision: str) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (80, 100, 3), dtype=np.uint8) for _ in range(3)]
    with Predictor.load(tiny_run, device="cuda", precision=precision) as eager, Predictor.load(
        tiny_run, device="cuda", precision=precision, cuda_graphs=True
    ) as graphed:
        assert graphed.backend.describe()["cuda_graphs"] == "True"
        for batch in ([frames[0]], frames):  # batch 1 (captured at load) and batch 3 (captured on first use)
            np.testing.assert_allclose(graphed.raw_maps(batch), eager.raw_maps(batch), rtol=0, atol=1e-5)
        again = graphed.raw_maps(frames[::-1])  # replays read the new input, not the captured one
        np.testing.assert_allclose(again, eager.raw_maps(frames[::-1]), rtol=0, atol=1e-5)
