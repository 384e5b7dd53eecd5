"""The training stream: normal images cycled, each turned into a fractal-anomaly sample.

Sample ``i`` is made with an RNG seeded by ``(seed, i)``, so a run is reproducible
whatever the number of DataLoader workers, and resuming at step ``k`` regenerates
exactly the samples the interrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fractalad_edge.data.images import read_image
from fractalad_edge.synth.anomaly import FractalAnomalyGenerator, SynthConfig


class FractalAnomalyDataset(Dataset):
    def __init__(self, paths: Sequence[Path], synth: SynthConfig, *, seed: int, length: int, start: int = 0) -> None:
        self.paths = list(paths)
        self.generator = FractalAnomalyGenerator(synth)
        self.seed = seed
        self.length = length
        self.start = start  # global index of this dataset's first sample (resume)

    def __len__(self) -> int:
        return self.length - self.start

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        global_index = self.start + index
        rng = np.random.default_rng((self.seed, global_index))
        image = read_image(self.paths[global_index % len(self.paths)])
        sample = self.generator(image, rng)
        return (
            torch.from_numpy(sample.clean),
            torch.from_numpy(sample.augmented),
            torch.from_numpy(sample.mask)[None],
        )


def worker_init(_: int) -> None:
    """One thread per worker: workers share the cores with the training process."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
