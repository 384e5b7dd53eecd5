"""Training: the plain torch loop, losses, checkpoints. Needs the ``train`` extra."""

from fractalad_edge.train.config import TrainConfig
from fractalad_edge.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
