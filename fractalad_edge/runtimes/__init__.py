"""Runtimes: the small Backend interface and one module per inference engine.

Each backend module is imported only when its runtime is chosen (see ``RUNTIMES``), so a
device running OpenVINO or onnxruntime never imports torch or TensorRT.
"""

from fractalad_edge.runtimes.base import RUNTIMES, Backend, RuntimeEntry, get_runtime_entry, load_backend, register_runtime

__all__ = ["RUNTIMES", "Backend", "RuntimeEntry", "get_runtime_entry", "load_backend", "register_runtime"]
