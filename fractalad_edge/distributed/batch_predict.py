"""Score large image sets with Ray Data and a pool of Predictor actors.

The image paths become a Ray dataset; ``map_batches`` sends batches to a fixed pool of
actors that each load the model once, read and score their files, and return one JSON row
per file (or the read error) plus the overlay PNG when overlays are wanted. The driver puts
the rows back in input order and hands them to the same
:class:`~fractalad_edge.inference.PredictionWriter` as the local ``predict``, so
predictions.jsonl has the same rows, in the same order, and bad files are reported and
skipped the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fractalad_edge.distributed.cluster import ray_session
from fractalad_edge.errors import ConfigError, FractalADError
from fractalad_edge.inference import PredictionWriter, PredictSummary, ScoredFile, expand_inputs, score_files


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
    """One model per actor, loaded once; called with batches of {"index", "path"} columns."""

    def __init__(self, model: str, runtime: str | None, device: str, overlays: bool) -> None:
        from fractalad_edge.predictor import Predictor

        self.predictor = Predictor.load(model, runtime=runtime, device=device, channel_order="rgb")
        self.overlays = overlays

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scored = score_files(self.predictor, [Path(p) for p in batch["path"]], overlays=self.overlays)
        return {
            "index": np.asarray(batch["index"]),
            "error": np.array([s.error or "" for s in scored], dtype=object),
            "result": np.array([json.dumps(s.result) if s.result is not None else "" for s in scored], dtype=object),
            "overlay": np.array([s.overlay or b"" for s in scored], dtype=object),
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
) -> PredictSummary:
    """``predict`` on a Ray cluster; same outputs as :func:`fractalad_edge.inference.predict_files`.

    On a multi-node cluster the model directory, the images and ``out`` must be on storage
    every node sees (the actors read files and the driver writes results).
    """
    options = options or RayPredictOptions()
    from fractalad_edge.artifact import read_metadata

    read_metadata(Path(model))  # a bad model directory fails here, before a cluster starts
    files = expand_inputs(inputs)
    with ray_session(address) as ray:
        actors = options.actors or max(1, min(8, int(ray.cluster_resources().get("CPU", 1) // options.cpus_per_actor)))
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        dataset = ray.data.from_items(
            [{"index": index, "path": str(path)} for index, path in enumerate(files)],
            override_num_blocks=max(1, min(len(files), actors * 4)),
        )
        scored = dataset.map_batches(
            PredictorActor,
            fn_constructor_kwargs={
                "model": str(Path(model).resolve()),
                "runtime": runtime,
                "device": device,
                "overlays": out is not None,
            },
            batch_size=options.batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=options.cpus_per_actor,
            num_gpus=options.gpus_per_actor,
            batch_format="numpy",
        )
        echo(f"scoring {len(files)} images with {actors} Predictor actors on Ray")
        writer = PredictionWriter(out, echo=echo)
        try:
            _write_in_order(scored.iter_rows(), files, writer)
        finally:
            writer.close()
    return writer.summary()


def _write_in_order(rows: Any, files: Sequence[Path], writer: PredictionWriter) -> None:
    """Hand rows to ``writer`` in input order, whatever order they arrive in."""
    pending: dict[int, dict[str, Any]] = {}
    next_index = 0
    for row in rows:
        pending[int(row["index"])] = row
        while next_index in pending:
            row = pending.pop(next_index)
            writer.write(
                ScoredFile(
                    path=files[next_index],
                    error=str(row["error"]) or None,
                    result=json.loads(row["result"]) if row["result"] else None,
                    overlay=bytes(row["overlay"]) or None,
                )
            )
            next_index += 1
    if next_index != len(files):
        msg = f"Ray returned rows for {next_index} of {len(files)} images; the rest were lost"
        raise FractalADError(msg)
