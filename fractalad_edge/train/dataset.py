"""The training stream: normal images cycled, each turned into a fractal-anomaly sample.

Sample ``i`` is made with an RNG seeded by ``(seed, i)``, so a run is reproducible
whatever the number of DataLoader workers, and resuming at step ``k`` regenerates
exactly the samples the interrupted run would have seen.

Decoded images are kept in memory up to ``cache_bytes`` (per process: each DataLoader
worker holds its own), so a PNG is decoded once per run rather than once per epoch. The
cached arrays are read-only; decoding is deterministic, so caching changes no sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fractalad_edge.data.images import read_image
from fractalad_edge.synth.anomaly import FractalAnomalyGenerator, SynthConfig

# Enough for MVTec AD's largest training folders at their stored resolution (bottle: 0.5 GiB).
DEFAULT_CACHE_BYTES = 2 * 1024**3


class FractalAnomalyDataset(Dataset):
    def __init__(
        self,
        paths: Sequence[Path],
        synth: SynthConfig,
        *,
        seed: int,
        length: int,
        start: int = 0,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.paths = list(paths)
        self.cache_bytes = cache_bytes
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0
        self.generator = FractalAnomalyGenerator(synth)
        self.seed = seed
        self.length = length
        self.start = start  # global index of this dataset's first sample (resume)

    def __len__(self) -> int:
        return self.length - self.start

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        global_index = self.start + index
        rng = np.random.default_rng((self.seed, global_index))
        image = self._image(global_index % len(self.paths))
        sample = self.generator(image, rng)
        return (
            torch.from_numpy(sample.clean),
            torch.from_numpy(sample.augmented),
            torch.from_numpy(sample.mask)[None],
        )

    def _image(self, index: int) -> np.ndarray:
        image = self._cache.get(index)
        if image is None:
            image = read_image(self.paths[index])
            if self._cached_bytes + image.nbytes <= self.cache_bytes:
                image.setflags(write=False)  # shared by every later sample of this image
                self._cache[index] = image
                self._cached_bytes += image.nbytes
        return image


def worker_init(_: int) -> None:
    """One thread per worker: workers share the cores with the training process."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
