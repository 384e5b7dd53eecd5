"""The reference runtime: the FractalAD module in eager torch, CPU or CUDA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fractalad_edge.artifact import ArtifactMetadata, Precision
from fractalad_edge.errors import RuntimeMismatchError
from fractalad_edge.models.fractalad import FractalAD
from fractalad_edge.models.torch_format import load_model
from fractalad_edge.runtimes.base import Backend

_DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: FractalAD, *, device: str = "cpu", precision: Precision = Precision.FP32) -> None:
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

    @classmethod
    def open(cls, directory: Path, metadata: ArtifactMetadata, *, device: str = "cpu", **options: Any) -> TorchBackend:
        model = load_model(directory, metadata)
        precision = Precision(options.pop("precision", metadata.precision))
        threads = options.pop("threads", None)
        if options:
            msg = f"the torch runtime takes the options device, precision and threads, not {sorted(options)}"
            raise RuntimeMismatchError(msg)
        if threads is not None:
            torch.set_num_threads(int(threads))  # torch's intra-op pool is per process: this sets it for the process
        return cls(model, device=device, precision=precision)

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> np.ndarray:
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
                "threads": str(torch.get_num_threads()), "torch": torch.__version__}
