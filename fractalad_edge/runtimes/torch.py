"""The reference runtime: the FractalAD module in eager torch, CPU or CUDA.

``cuda_graphs=True`` (CUDA only) removes the launch overhead that dominates batch-1 CUDA
inference of this small network (docs/experiments/gpu-h200.md: 10.5 ms for 1.17 GMAC):
each batch size is captured once as a CUDA graph on static input/output buffers (batch 1
at load, others on first use) and every call replays it. The graph runs exactly the eager
kernels, so the maps equal the eager path's. Calls on one backend are serialised around the
static buffers. Written against torch.cuda.CUDAGraph; not run on a GPU yet
(docs/experiments/edge-speed.md).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fractalad_edge.artifact import ArtifactMetadata, Precision
from fractalad_edge.errors import ConfigError, RuntimeMismatchError
from fractalad_edge.models.fractalad import FractalAD
from fractalad_edge.models.torch_format import load_model
from fractalad_edge.runtimes.base import Backend
from fractalad_edge.score_space import ScoreSpace

_DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self, model: FractalAD, *, device: str = "cpu", precision: Precision = Precision.FP32, cuda_graphs: bool = False
    ) -> None:
        if not isinstance(cuda_graphs, bool):
            msg = f"cuda_graphs must be True or False, got {cuda_graphs!r}"
            raise ConfigError(msg)
        if cuda_graphs and not str(device).startswith("cuda"):
            msg = f"cuda_graphs=True needs device='cuda' (CUDA graphs exist only on NVIDIA GPUs), got device {device!r}"
            raise RuntimeMismatchError(msg)
        if precision not in _DTYPES:
            msg = f"the torch runtime runs fp32, fp16 or bf16, not {precision.value}; export to openvino or onnx for int8"
            raise RuntimeMismatchError(msg)
        if device.startswith("cuda") and not torch.cuda.is_available():
            msg = f"device {device!r} requested but torch sees no CUDA device; use device='cpu'"
            raise RuntimeMismatchError(msg)
        self.device = torch.device(device)
        self.dtype = _DTYPES[precision]
        self.model = model.eval().to(self.device)
        if self.dtype is not torch.float32 and self.device.type == "cuda":
            self.model = self.model.to(self.dtype)
        self.channels_last = True
        self.model = self.model.to(memory_format=torch.channels_last)
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self._graph_lock = threading.Lock()
        if cuda_graphs:
            size = model.config.input_size
            with self._graph_lock:
                self._graph((1, 3, size, size))  # warm-up and capture at load, not on the first frame

    @classmethod
    def open(cls, directory: Path, metadata: ArtifactMetadata, *, device: str = "cpu", **options: Any) -> TorchBackend:
        model = load_model(directory, metadata)
        precision = Precision(options.pop("precision", metadata.precision))
        threads = options.pop("threads", None)
        cuda_graphs = options.pop("cuda_graphs", False)
        if options:
            msg = f"the torch runtime takes the options device, precision, threads and cuda_graphs, not {sorted(options)}"
            raise RuntimeMismatchError(msg)
        if threads is not None:
            torch.set_num_threads(int(threads))  # torch's intra-op pool is per process: this sets it for the process
        return cls(model, device=device, precision=precision, cuda_graphs=cuda_graphs)

    def _graph(self, shape: tuple[int, ...]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """The captured graph and its static input/output for one batch shape (caller holds the lock)."""
        if shape not in self._graphs:
            static_in = torch.zeros(shape, device=self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last)
            side = torch.cuda.Stream(device=self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.inference_mode(), torch.cuda.stream(side):
                for _ in range(3):  # cuDNN autotuning and lazy allocations happen outside the capture
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                static_out = self.model(static_in)
            self._graphs[shape] = (graph, static_in, static_out)
        return self._graphs[shape]

    @property
    def score_space(self) -> ScoreSpace:
        """The space the module's forward outputs (``FractalAD.output_space``)."""
        return self.model.output_space

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.cuda_graphs:
            with self._graph_lock:
                graph, static_in, static_out = self._graph(tuple(batch.shape))
                static_in.copy_(torch.from_numpy(batch).pin_memory().to(self.device, non_blocking=True))
                graph.replay()
                return static_out[:, 0].float().cpu().numpy()
        x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            maps = self.model(x.to(self.dtype))
        else:
            # On CPU, reduced precision runs through autocast: weights stay fp32, convs run bf16.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype is not torch.float32):
                maps = self.model(x)
        return maps[:, 0].float().cpu().numpy()

    def describe(self) -> dict[str, str]:
        return {"runtime": self.name, "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "threads": str(torch.get_num_threads()), "cuda_graphs": str(self.cuda_graphs), "torch": torch.__version__}
