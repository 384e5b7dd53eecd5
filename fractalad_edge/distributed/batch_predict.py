"""Score large image sets with Ray Data and a pool of Predictor actors.

The driver lists the inputs and checks ``--out`` exactly as the local ``predict`` does
(:func:`fractalad_edge.inference.plan_predictions`: same relative names, list files,
``--pattern``, foreign-folder refusal, ``--force``). The listed images become a Ray
dataset; ``map_batches`` sends batches to a fixed pool of actors that each load the model
once and read and score their files with the local path's own
:func:`~fractalad_edge.inference.score_images` (same pixel limit, same bad-file errors),
returning one row per file: the error, or the result and its overlay PNG. The driver puts
the rows back in input order and hands them to
:func:`~fractalad_edge.inference.write_predictions`, the staged writer of the local
``predict``, so predictions.jsonl has the same rows in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fractalad_edge.distributed.cluster import ray_session
from fractalad_edge.errors import ConfigError
from fractalad_edge.inference import (
    InputImage,
    PredictSummary,
    ScoredImage,
    plan_predictions,
    score_images,
    write_predictions,
)


@dataclass(frozen=True, kw_only=True)
class RayPredictOptions:
    """How the pool is sized: ``actors`` Predictor actors of ``cpus_per_actor`` cores, ``batch_size`` files per call."""

    actors: int | None = None  # None: as many as the cluster's CPUs allow, at most 8
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            msg = f"actors must be at least 1 (or None to size the pool to the cluster), got {self.actors}"
            raise ConfigError(msg)
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            msg = f"cpus_per_actor must be > 0 and gpus_per_actor >= 0, got {self.cpus_per_actor} and {self.gpus_per_actor}"
            raise ConfigError(msg)
        if self.batch_size < 1:
            msg = f"batch_size must be at least 1, got {self.batch_size}"
            raise ConfigError(msg)


class PredictorActor:
    """One model per actor, loaded once; called with batches of {"index", "path", "name"} columns."""

    def __init__(self, model: str, runtime: str | None, device: str, overlays: bool, max_pixels: int) -> None:
        from fractalad_edge.predictor import Predictor

        self.predictor = Predictor.load(model, runtime=runtime, device=device, channel_order="rgb")
        self.overlays = overlays
        self.max_pixels = max_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = [InputImage(Path(str(path)), str(name)) for path, name in zip(batch["path"], batch["name"])]
        scored = score_images(self.predictor, images, max_pixels=self.max_pixels, overlays=self.overlays)
        return {
            "index": np.asarray(batch["index"]),
            "error": np.array([s.error or "" for s in scored], dtype=object),
            "result": np.array([json.dumps(s.result) if s.result is not None else "" for s in scored], dtype=object),
            "overlay": np.array([s.overlay_png or b"" for s in scored], dtype=object),
        }


def predict_files_ray(
    model: str | Path,
    inputs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    runtime: str | None = None,
    device: str = "cpu",
    options: RayPredictOptions | None = None,
    address: str | None = None,
    echo: Callable[[str], None] = print,
    recursive: bool = True,
    pattern: str | None = None,
    force: bool = False,
    max_pixels: int | None = None,
) -> PredictSummary:
    """``predict`` on a Ray cluster; the same outputs as :func:`fractalad_edge.inference.predict_files`.

    On a multi-node cluster the model directory, the images and ``out`` must be on storage
    every node sees (the actors read files and the driver writes results).
    """
    from fractalad_edge.artifact import read_metadata

    options = options or RayPredictOptions()
    read_metadata(Path(model))  # a bad model directory fails here, before a cluster starts
    job = plan_predictions(inputs, out=out, recursive=recursive, pattern=pattern, force=force, max_pixels=max_pixels)
    with ray_session(address) as ray:
        actors = options.actors or max(1, min(8, int(ray.cluster_resources().get("CPU", 1) // options.cpus_per_actor)))
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        dataset = ray.data.from_items(
            [{"index": index, "path": str(image.path), "name": image.name} for index, image in enumerate(job.images)],
            override_num_blocks=max(1, min(len(job.images), actors * 4)),
        )
        scored = dataset.map_batches(
            PredictorActor,
            fn_constructor_kwargs={
                "model": str(Path(model).resolve()),
                "runtime": runtime,
                "device": device,
                "overlays": job.out is not None,
                "max_pixels": job.max_pixels,  # the driver's limit (its environment), not each worker's
            },
            batch_size=options.batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=options.cpus_per_actor,
            num_gpus=options.gpus_per_actor,
            batch_format="numpy",
        )
        echo(f"scoring {len(job.images)} images with {actors} Predictor actors on Ray")
        return write_predictions(job, _in_input_order(scored.iter_rows(), job.images), echo=echo)


def _in_input_order(rows: Any, images: Sequence[InputImage]) -> Iterator[ScoredImage]:
    """Yield the actors' rows in input order, whatever order they arrive in."""
    pending: dict[int, dict[str, Any]] = {}
    next_index = 0
    for row in rows:
        pending[int(row["index"])] = row
        while next_index in pending:
            row = pending.pop(next_index)
            yield ScoredImage(
                image=images[next_index],
                error=str(row["error"]) or None,
                result=json.loads(row["result"]) if row["result"] else None,
                overlay_png=bytes(row["overlay"]) or None,
            )
            next_index += 1
