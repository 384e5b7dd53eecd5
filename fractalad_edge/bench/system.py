"""The machine a benchmark ran on, recorded next to its numbers.

A latency figure without the CPU, the thread settings and the package versions that
produced it cannot be reproduced or compared, so every report carries this. Everything is
read locally (``/proc``, ``importlib.metadata``, environment variables); nothing is sent
anywhere, and the host name is not recorded.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from fractalad_edge.allocator import malloc_settings

#: distributions whose versions change benchmark numbers; the first installed name of each entry is reported
PACKAGES: dict[str, tuple[str, ...]] = {
    "fractalad-edge": ("fractalad-edge",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "torch": ("torch",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "openvino": ("openvino",),
    "nncf": ("nncf",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11"),
}

#: environment variables that set thread pools of the libraries a benchmark runs
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_AFFINITY", "OMP_PROC_BIND")


@dataclass(frozen=True, kw_only=True)
class EnvironmentInfo:
    """Where and with what a benchmark ran."""

    date: str
    cpu_model: str
    logical_cpus: int  # in the machine
    usable_cpus: int  # this process may run on (affinity / container limits)
    cpu_quota: float | None  # cgroup CPU quota in cores, when a container caps it
    memory_total_mb: float | None
    platform: str
    python: str
    packages: dict[str, str]
    thread_env: dict[str, str]
    torch_threads: int | None
    gpu: str | None
    notes: list[str] = field(default_factory=list)
    malloc: str = "unknown"  # allocator.malloc_settings(): 1.4x on torch eager, so it belongs with the numbers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def short_cpu(self) -> str:
        """CPU model for a plot title: vendor noise removed, at most 40 characters."""
        name = self.cpu_model
        for noise in ("(R)", "(TM)", "(tm)", "CPU ", "Processor", "  "):
            name = name.replace(noise, " " if noise == "  " else "")
        name = " ".join(name.split())
        return name if len(name) <= 40 else name[:39] + "…"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name; falls back to platform.processor() off Linux."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "Processor", "cpu model", "uarch"):  # x86, then ARM / RISC-V spellings
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def usable_cpus() -> int:
    """CPUs this process may run on (affinity mask), which is what thread pools should size to."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """A container's CPU limit in cores (cgroup v2 ``cpu.max`` or v1 cfs quota), None when unlimited."""
    try:
        parts = (cgroup_root / "cpu.max").read_text().split()
    except OSError:
        parts = []
    if len(parts) == 2:
        try:
            return None if parts[0] == "max" else int(parts[0]) / int(parts[1])
        except ValueError:
            return None
    try:
        quota_us = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def memory_total_mb(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers; missing ones are left out."""
    versions: dict[str, str] = {}
    for label, distributions in PACKAGES.items():
        for distribution in distributions:
            try:
                version = importlib_metadata.version(distribution)
            except importlib_metadata.PackageNotFoundError:
                continue
            versions[label] = version if distribution == distributions[0] else f"{version} ({distribution})"
            break
    return versions


def gpu_name() -> str | None:
    """The CUDA device torch sees, if torch is already imported (never imported just for this)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        index = torch.cuda.current_device()
        capability = ".".join(str(v) for v in torch.cuda.get_device_capability(index))
        return f"{torch.cuda.get_device_name(index)} (sm {capability}, CUDA {torch.version.cuda})"
    except Exception:  # noqa: BLE001 - a broken driver must not stop the report
        return None


def capture_environment(*, notes: list[str] | None = None) -> EnvironmentInfo:
    """Snapshot the machine and settings now (call after the runtimes are configured)."""
    torch = sys.modules.get("torch")
    return EnvironmentInfo(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        cpu_model=cpu_model(),
        logical_cpus=os.cpu_count() or 1,
        usable_cpus=usable_cpus(),
        cpu_quota=cpu_quota(),
        memory_total_mb=memory_total_mb(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        python=platform.python_version(),
        packages=package_versions(),
        thread_env={name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
        torch_threads=None if torch is None else int(torch.get_num_threads()),
        gpu=gpu_name(),
        notes=list(notes or []),
        malloc=malloc_settings(),
    )
