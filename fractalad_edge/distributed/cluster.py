"""Connect to a Ray cluster, or start a local one sized to this machine and stop it after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fractalad_edge.errors import ConfigError
from fractalad_edge.extras import require

#: Object store of a local instance: enough for batches of images, small enough for an edge box.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2


def import_ray() -> Any:
    """Ray, or a one-line error naming the extra to install (fractalad_edge/extras.py)."""
    return require("ray")


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module connected to ``address``, or to a local instance started here.

    A local instance (``address`` None) gets this machine's cores (or ``num_cpus``), no
    dashboard and a small object store, and is shut down on exit. When Ray is already
    initialised in this process (a test session, a notebook), it is used as is and left
    running. An existing cluster is never shut down, only disconnected from.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is not None:
        if num_cpus is not None:
            msg = "num_cpus sizes a local Ray instance; an existing cluster (--address) brings its own resources"
            raise ConfigError(msg)
        ray.init(address=address, log_to_driver=True)
    else:
        cores = num_cpus or os.cpu_count() or 1
        if cores < 1:
            msg = f"num_cpus must be at least 1, got {cores}"
            raise ConfigError(msg)
        ray.init(
            num_cpus=cores,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            log_to_driver=True,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_gpus(ray: Any) -> int:
    """How many GPUs the connected cluster offers (0 on a CPU-only machine)."""
    return int(ray.cluster_resources().get("GPU", 0))
