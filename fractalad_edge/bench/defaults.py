"""The bench defaults, named once: BenchConfig and the CLI read them here.

Import-light on purpose (no numpy), so the CLI can show them in its help.
"""

DEFAULT_RUNTIMES = ("torch", "onnxruntime", "openvino")
DEFAULT_PRECISIONS = ("fp32", "int8")  # Precision values
DEFAULT_WARMUP = 10  # untimed predict calls per configuration
DEFAULT_RUNS = 100  # timed predict calls per configuration
DEFAULT_ROUNDS = 10  # interleaved rounds the timed calls are split into

__all__ = ["DEFAULT_PRECISIONS", "DEFAULT_ROUNDS", "DEFAULT_RUNS", "DEFAULT_RUNTIMES", "DEFAULT_WARMUP"]
