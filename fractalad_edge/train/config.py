"""Training configuration: one frozen dataclass, the published schedule as default."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fractalad_edge.artifact import ScoreSpec
from fractalad_edge.calibration.defaults import CALIBRATION_COUNT
from fractalad_edge.errors import ConfigError
from fractalad_edge.models.fractalad import ModelConfig
from fractalad_edge.synth.anomaly import SynthConfig

# The published schedule: 100 epochs of 391 samples (the normal set cycled), batch 32.
PUBLISHED_EPOCHS = 100
EPOCH_SIZE = 391
PUBLISHED_BATCH = 32


#: "constant": the published schedule (no decay). "cosine": lr * (1 + cos(pi * t / steps)) / 2,
#: annealed towards zero over the run, so the final weights are not one noisy step of many.
LR_SCHEDULES = ("constant", "cosine")


def steps_for_epochs(epochs: float, batch_size: int, epoch_size: int = EPOCH_SIZE) -> int:
    return max(1, math.ceil(epochs * epoch_size / batch_size))


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    score: ScoreSpec = field(default_factory=ScoreSpec)
    steps: int = steps_for_epochs(PUBLISHED_EPOCHS, PUBLISHED_BATCH)
    batch_size: int = PUBLISHED_BATCH
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 1e-3
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    bf16: bool = False  # autocast; fast on CPUs with AVX512-BF16 and on Ampere+ GPUs
    channels_last: bool = True
    workers: int = 0  # DataLoader worker processes; 0 generates in the training process
    checkpoint_every: int = 100
    calibration_images: int = CALIBRATION_COUNT  # synthetic set used to set thresholds after training

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "workers": self.workers >= 0,
            "checkpoint_every": self.checkpoint_every >= 1,
            "calibration_images": self.calibration_images >= 4,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"train config: {name}={getattr(self, name)!r} is out of range"
                raise ConfigError(msg)
        if self.lr_schedule not in LR_SCHEDULES:
            msg = f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            raise ConfigError(msg)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            msg = f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            raise ConfigError(msg)
        if self.synth.image_size != self.model.input_size:
            msg = (
                f"synthetic image size {self.synth.image_size} differs from the model input size "
                f"{self.model.input_size}; they must match"
            )
            raise ConfigError(msg)

    def learning_rate(self, step: int) -> float:
        """The learning rate for optimizer step ``step`` (0-based): a pure function of the step, so resume is exact."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return self.lr

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["score"] = {"reduction": self.score.reduction.value, "topk_fraction": self.score.topk_fraction}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        try:
            return cls(
                **{
                    **data,
                    "model": ModelConfig.from_dict(data["model"]),
                    "synth": SynthConfig(**data["synth"]),
                    "score": ScoreSpec(**data["score"]),
                }
            )
        except (KeyError, TypeError) as exc:
            msg = f"train config is malformed ({exc}); it was written by another version"
            raise ConfigError(msg) from None
