"""The ``torch`` format's writer: the weights alone, no optimizer state or logs."""

from __future__ import annotations

from fractalad_edge.artifact import MODEL_FILENAME, Precision
from fractalad_edge.export.formats import ExportedModel, ExportJob
from fractalad_edge.models.torch_format import save_model
from fractalad_edge.runtimes.torch import TorchBackend


def write_torch_artifact(job: ExportJob) -> ExportedModel:
    """The ``torch`` format's writer: the weights alone, no optimizer state or logs."""
    save_model(job.model, job.directory / MODEL_FILENAME)
    return ExportedModel(
        files=(MODEL_FILENAME,),
        open_backend=lambda: TorchBackend(job.model, device=job.device),
        checked_with=f"torch {job.device}",
        checked_precision=Precision.FP32,
    )
