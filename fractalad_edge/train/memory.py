"""Build the nearest-neighbour memory (``--method memory``) or add it to a FractalAD run (``--method fused``).

No gradient steps: teacher patch features of the normal training images are pooled into a
random candidate pool, and a greedy k-center coreset (PatchCore's selection) keeps the
``size`` vectors that cover the pool best. Distances during the selection are computed in
a low-dimensional random projection, which keeps it to minutes on a small CPU. The greedy
loop is one matrix-vector product per pick, written in torch: a nearest-neighbour library
answers queries against a fixed index and does not speed up this update (faiss-cpu 28x
slower per pick, scripts/memory_search_bench.py, docs/experiments/memory-method.md).

A small share of the normal images (``holdout_fraction``, 5 %) is kept out of the memory: distances
of images in the memory are near zero, so normalisation (``fused``) and thresholds are
fitted on the held-out ones, and the exporter refits thresholds on them too (the run's
``config.json`` lists them). The content hashes of the memory's images are written beside
the model (``memory_images.json``, fractalad_edge/memory_images.py) and travel with every
export, so ``calibrate`` leaves those images out too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fractalad_edge.artifact import METADATA_FILENAME, MODEL_FILENAME, RUN_CONFIG_FILENAME, ScoreSpec, describe_files, write_metadata
from fractalad_edge.calibration.defaults import CALIBRATION_COUNT
from fractalad_edge.data.datasets import category_name, find_training_images
from fractalad_edge.data.images import read_image
from fractalad_edge.errors import ConfigError, DatasetError, InsufficientMemoryError
from fractalad_edge.models.fractalad import FractalAD, ModelConfig, build_model
from fractalad_edge.method import FusionRule, FusionStats, MemoryConfig, Method, parse_method
from fractalad_edge.memory_images import write_memory_images
from fractalad_edge.models.memory import head_map
from fractalad_edge.outputs import StagedOutput, atomic_write_text
from fractalad_edge.preprocess import prepare_batch

log = logging.getLogger(__name__)

#: fewest held-out images when there are enough (5 per cent of magnetic tile's 761 is 38)
MIN_HOLDOUT = 8
#: percentiles of a branch's pixel values on held-out normals that map to 0 and 1
NORMALISE_PERCENTILES = (50.0, 99.9)


#: Per-method defaults (docs/experiments/memory-method.md, measured on bottle and magnetic
#: tile): both search stride-16 patches (stride-8 features pooled to that grid; the search
#: costs a quarter of stride 8's). ``memory`` (textures): 16 000 rows, blur sigma 8, image
#: score = mean of the top 2 % of the map (magnetic tile 95.56 / 83.91, bottle 100.00 /
#: 98.01). ``fused`` (objects): 8 000 rows (0.31 GMACs: the head gives the fine map), sigma 4,
#: map max (bottle 100.00 / 99.09; top 0.1 % 99.92, top 1-2 % 99.76-99.84).
METHOD_DEFAULTS: dict[Method, dict[str, Any]] = {
    Method.MEMORY: {"grid_stride": 16, "size": 16_000, "blur_sigma": 8.0, "score": ScoreSpec(reduction="topk", topk_fraction=0.02)},
    Method.FUSED: {"grid_stride": 16, "size": 8_000, "blur_sigma": 4.0, "score": ScoreSpec(reduction="max")},
}


@dataclass(frozen=True, kw_only=True)
class MemoryBuildConfig:
    """How to build the memory. ``size`` (rows) wins over ``fraction`` (of the candidate pool).

    ``grid_stride``, ``blur_sigma``, ``score`` and ``size`` left at None take the method's
    :data:`METHOD_DEFAULTS` (``size``: capped at the candidates, see :func:`check_memory_size`).
    """

    method: Method = Method.MEMORY
    backbone: str = "efficientnet_lite0"
    input_size: int = 256
    strides: tuple[int, ...] = (8, 16)
    grid_stride: int | None = None
    pool: int = 3
    channels: int | None = None
    k: int = 1
    blur_sigma: float | None = None
    fusion: FusionRule = FusionRule.MEAN
    head_space: str = "sigmoid"
    size: int | None = None
    fraction: float | None = None
    candidates: int = 200_000  # random pool the coreset is chosen from
    projection_dim: int = 64  # random projection for the selection's distances
    #: share of the normal images kept out of the memory (at least MIN_HOLDOUT images, at most a fifth)
    holdout_fraction: float = 0.05
    seed: int = 0
    batch_size: int = 8
    calibration_images: int = CALIBRATION_COUNT
    score: ScoreSpec | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", parse_method(self.method))
        if self.method is Method.FRACTALAD:
            msg = "MemoryBuildConfig builds 'memory' or 'fused' models; train 'fractalad' with fractalad_edge.train.loop.train"
            raise ConfigError(msg)
        object.__setattr__(self, "strides", tuple(self.strides))
        defaults = METHOD_DEFAULTS[self.method]
        for name in ("grid_stride", "blur_sigma", "score"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])
        # validates fusion/strides/pool/channels/k/blur the same way the model will
        object.__setattr__(self, "fusion", MemoryConfig(
            strides=self.strides, grid_stride=self.grid_stride, pool=self.pool, channels=self.channels, k=self.k, size=max(self.k, 1),
            blur_sigma=self.blur_sigma, fusion=self.fusion, head_space=self.head_space,
        ).fusion)
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1):
            msg = f"memory size must be an int >= 1, got {self.size!r}; e.g. 16000"
            raise ConfigError(msg)
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            msg = f"memory fraction must be in (0, 1], got {self.fraction!r}; e.g. 0.1"
            raise ConfigError(msg)
        checks = {
            "candidates": self.candidates >= 1,
            "projection_dim": self.projection_dim >= 1,
            "batch_size": self.batch_size >= 1,
            "calibration_images": self.calibration_images >= 4,
            "holdout_fraction": 0.0 <= self.holdout_fraction < 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"memory build option {name}={getattr(self, name)!r} is out of range"
                raise ConfigError(msg)
        if self.method is Method.FUSED and self.holdout_fraction <= 0.0:
            msg = "'fused' normalises each branch on held-out normal images; give holdout_fraction > 0 (e.g. 0.05)"
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(method=self.method.value, fusion=self.fusion.value, strides=list(self.strides),
                    score={"reduction": self.score.reduction.value, "topk_fraction": self.score.topk_fraction})
        return data


@dataclass(frozen=True, kw_only=True)
class MemoryBuildResult:
    run_dir: Path
    seconds: float  # feature extraction + coreset + calibration
    size: int  # memory rows
    candidates: int  # pool the coreset was chosen from
    memory_mb: float  # the bank as stored, in 1e6 bytes: the bench report's "memory bank MB"
    memory_images: int
    holdout_images: int
    covering_radius: float  # largest candidate distance to the memory (projection space)


# ----------------------------------------------------------------------------- coreset
def greedy_coreset(
    features: torch.Tensor,
    size: int,
    *,
    projection_dim: int = 64,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy k-center selection: ``(indices (size,), covering radius after each pick (size,))``.

    Starts at a seeded random row and repeatedly adds the row farthest from the rows chosen
    so far; distances are taken in a ``projection_dim`` Gaussian random projection
    (Johnson-Lindenstrauss) when the features are wider than that. The covering radius,
    the largest distance of any row to its nearest chosen row, never increases.
    """
    n = features.shape[0]
    if not 1 <= size <= n:
        msg = f"coreset size {size} must be in [1, {n}] (the candidate rows)"
        raise ConfigError(msg)
    generator = torch.Generator().manual_seed(seed)
    x = features.float()
    if x.shape[1] > projection_dim:
        projection = torch.randn(x.shape[1], projection_dim, generator=generator) / math.sqrt(projection_dim)
        x = x @ projection
    sqnorm = x.pow(2).sum(dim=1)
    columns = x.t().contiguous()  # (dim, n): a row vector times this streams memory once per pick
    chosen = torch.empty(size, dtype=torch.long)
    radius = torch.empty(size)
    current = int(torch.randint(n, (1,), generator=generator))
    nearest = torch.full((n,), float("inf"))
    d2 = torch.empty(1, n)
    threads = torch.get_num_threads()
    # One pick is a few small passes over n floats: on a shared 2-core CPU a second OpenMP
    # thread made it 2.4x slower (docs/experiments/memory-method.md), so the loop runs on one.
    torch.set_num_threads(1)
    try:
        for pick in range(size):
            chosen[pick] = current
            torch.matmul(x[current].unsqueeze(0), columns, out=d2)
            d2.mul_(-2.0).add_(sqnorm).add_(sqnorm[current])
            torch.minimum(nearest, d2[0], out=nearest)
            current = int(torch.argmax(nearest))
            radius[pick] = nearest[current].clamp_min(0.0).sqrt()
            if progress is not None:
                progress(pick + 1)
    finally:
        torch.set_num_threads(threads)
    return chosen, radius


def fit_pca(features: torch.Tensor, channels: int, *, seed: int = 0, rows: int = 100_000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean (D,), components (D, channels))``: the top principal directions of (a random subset of) the rows."""
    if features.shape[0] > rows:
        pick = torch.from_numpy(np.random.default_rng(seed).choice(features.shape[0], rows, replace=False))
        features = features[pick]
    x = features.double()
    mean = x.mean(dim=0)
    centred = x - mean
    covariance = centred.t() @ centred / max(1, x.shape[0] - 1)
    _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    components = vectors[:, -channels:].flip(1)
    return mean.float(), components.float().contiguous()


# ----------------------------------------------------------------------------- checks
def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def estimate_build_bytes(num_images: int, grid: int, feature_dim: int, candidates: int, size: int, width: int, batch: int) -> int:
    """Peak bytes of the build: every patch vector, the candidate pool and its projection, the bank,
    and a batch's distance matrix while thresholds are fitted."""
    patches = num_images * grid * grid
    pool = min(patches, candidates)
    return 4 * (patches * width + pool * (width + 64 + 2) + size * (width + 1) + batch * grid * grid * size) + 4 * num_images * 256 * 256 * 3


def check_memory_size(config: MemoryBuildConfig, num_memory_images: int) -> tuple[int, int, int]:
    """``(grid, candidate rows, memory rows)``; refuses a memory larger than its candidates.

    Neither ``size`` nor ``fraction`` given: the method's default size, or every candidate
    when there are fewer (a small data set keeps all its patches).
    """
    grid = config.input_size // (config.grid_stride or min(config.strides))
    patches = num_memory_images * grid * grid
    pool_rows = min(patches, config.candidates)
    if config.size is not None:
        size = config.size
    elif config.fraction is not None:
        size = max(config.k, int(round(config.fraction * pool_rows)))
    else:
        size = min(METHOD_DEFAULTS[config.method]["size"], pool_rows)
    if size > pool_rows or size < config.k:
        msg = (
            f"a memory of {size} patches needs at least that many candidates, but {num_memory_images} memory images give "
            f"{patches} patches ({grid}x{grid} each; candidate pool {pool_rows}); add normal images or lower --memory-size "
            f"to <= {pool_rows}"
        )
        raise DatasetError(msg)
    return grid, pool_rows, size


def check_memory_request(config: MemoryBuildConfig, data: str | Path) -> None:
    """The checks that need no image decoded, run before a ``fused`` head is trained."""
    memory_paths, _ = _split(find_training_images(data), config.holdout_fraction, config.seed)
    check_memory_size(config, len(memory_paths))


def _read_images(paths: Sequence[Path]) -> list[np.ndarray]:
    images = [read_image(p) for p in paths]
    shapes = {img.shape[:2] for img in images}
    if len(shapes) > 1:
        sizes = ", ".join(f"{w}x{h}" for h, w in sorted(shapes)[:4])
        msg = (
            f"the normal images have mixed sizes ({sizes}{', ...' if len(shapes) > 4 else ''}); a memory compares patches "
            "at one scale, so resize or crop them to one size first (one camera and setup per model)"
        )
        raise DatasetError(msg)
    return images


def holdout_count(num_images: int, holdout_fraction: float) -> int:
    """Images kept out of the memory: ``holdout_fraction`` of them, but at least :data:`MIN_HOLDOUT`
    (the normalisation percentiles and thresholds need a few), at most a fifth, never under 2."""
    if holdout_fraction <= 0:
        return 0
    wanted = max(MIN_HOLDOUT, int(round(holdout_fraction * num_images)))
    return max(2, min(wanted, num_images // 5))


def _split(paths: Sequence[Path], holdout_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    order = np.random.default_rng(seed).permutation(len(paths))
    n_hold = holdout_count(len(paths), holdout_fraction)
    if n_hold and len(paths) - n_hold < 1:
        msg = f"{len(paths)} normal images cannot be split into memory and {n_hold} held-out images; add images or lower --holdout"
        raise DatasetError(msg)
    hold = sorted(paths[i] for i in order[:n_hold])
    memory = sorted(paths[i] for i in order[n_hold:])
    return memory, hold


# ----------------------------------------------------------------------------- features
@torch.inference_mode()
def patch_features(model: FractalAD, images: Sequence[np.ndarray], batch_size: int) -> torch.Tensor:
    """Memory-branch patch vectors of RGB images before channel reduction: ``(len(images) * grid^2, D)``."""
    from fractalad_edge.models.torch_format import input_spec_for

    input_spec = input_spec_for(model)
    chunks = []
    for start in range(0, len(images), batch_size):
        batch, _ = prepare_batch(list(images[start : start + batch_size]), input_spec, channel_order="rgb")
        feats = model.teacher(torch.from_numpy(batch))
        chunks.append(model.memory.patch_features(feats, project=False).reshape(-1, model.memory.feature_dim))
    return torch.cat(chunks)


@torch.inference_mode()
def _branch_maps(model: FractalAD, images: Sequence[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    from fractalad_edge.models.torch_format import input_spec_for

    input_spec = input_spec_for(model)
    heads, memories = [], []
    for start in range(0, len(images), batch_size):
        batch, _ = prepare_batch(list(images[start : start + batch_size]), input_spec, channel_order="rgb")
        logits, distances = model.branch_maps(torch.from_numpy(batch))
        heads.append(head_map(logits, model.config.memory)[:, 0].numpy())
        memories.append(distances[:, 0].numpy())
    return np.concatenate(heads), np.concatenate(memories)


def fit_fusion(model: FractalAD, normal: Sequence[np.ndarray], synthetic: Any, batch_size: int) -> FusionStats:
    """Normalisation of each branch on held-out normals, weights from synthetic anomalies (no real defects)."""
    head, memory = _branch_maps(model, normal, batch_size)
    low_p, high_p = NORMALISE_PERCENTILES
    h_low, h_high = (float(v) for v in np.percentile(head, [low_p, high_p]))
    m_low, m_high = (float(v) for v in np.percentile(memory, [low_p, high_p]))
    h_high, m_high = max(h_high, h_low + 1e-6), max(m_high, m_low + 1e-6)
    weights = [0.5, 0.5]
    if synthetic is not None and len(synthetic) and synthetic.masks.any():
        s_head, s_memory = _branch_maps(model, synthetic.images, batch_size)
        masks = synthetic.masks
        weights = []
        for values, low, high, normal_values in ((s_head, h_low, h_high, head), (s_memory, m_low, m_high, memory)):
            z = (values - low) / (high - low)
            z_normal = (normal_values - low) / (high - low)
            separation = float(z[masks].mean() - np.median(z_normal))
            weights.append(max(separation, 0.0) / max(float(z_normal.std()), 1e-6))
        if sum(weights) <= 0:
            weights = [0.5, 0.5]
        total = sum(weights)
        weights = [w / total for w in weights]
    return FusionStats(head_low=h_low, head_high=h_high, memory_low=m_low, memory_high=m_high,
                       head_weight=weights[0], memory_weight=weights[1])


# ----------------------------------------------------------------------------- build
def build_memory(
    config: MemoryBuildConfig,
    data: str | Path,
    out: str | Path,
    *,
    init_from: str | Path | None = None,
    backbone_weights: str | Path | None = None,
    category: str | None = None,
    object_placement: bool = False,
    progress: bool = True,
    force: bool = False,
) -> MemoryBuildResult:
    """Build a ``memory`` model, or a ``fused`` one on top of the FractalAD run ``init_from``.

    Everything is checked (``out``, image count and sizes, memory size against the
    candidates, RAM) before work starts; the run is staged beside ``out`` and moved into
    place at the end (fractalad_edge/outputs.py), so a failure leaves nothing half-written.
    ``force`` replaces a run in ``out`` (only a run's files, as ``train --force``).
    """
    from fractalad_edge.models.torch_format import save_model, torch_metadata
    from fractalad_edge.train.loop import check_new_run_folder

    data, out = Path(data), Path(out)
    started = time.perf_counter()
    check_new_run_folder(out, force=force)
    if config.method is Method.FUSED and init_from is None:
        msg = "'fused' builds on a trained FractalAD run; pass init_from (--init-from RUN), or train with --method fused"
        raise ConfigError(msg)
    base, base_config, base_train = _base_model(init_from, config, backbone_weights)
    paths = find_training_images(data)
    category = category or category_name(data)
    memory_paths, holdout_paths = _split(paths, config.holdout_fraction, config.seed)
    images = _read_images(paths)
    by_path = dict(zip(paths, images))

    grid, pool_rows, size = check_memory_size(config, len(memory_paths))
    probe = MemoryConfig(strides=config.strides, grid_stride=config.grid_stride, pool=config.pool, channels=config.channels, k=config.k, size=config.k,
                         blur_sigma=config.blur_sigma, fusion=config.fusion, head_space=config.head_space)
    probe_model = FractalAD(dataclasses.replace(base_config, method=Method.MEMORY, memory=probe), pretrained_teacher=False)
    width = probe_model.memory.width
    feature_dim = probe_model.memory.feature_dim
    needed = estimate_build_bytes(len(paths), grid, max(width, feature_dim), config.candidates, size, width, config.batch_size)
    available = available_memory_bytes()
    if available is not None and needed > available:
        msg = (
            f"building this memory needs about {needed / 2**30:.1f} GiB of RAM and {available / 2**30:.1f} GiB is available; "
            "lower --memory-size, --memory-channels or the number of images"
        )
        raise InsufficientMemoryError(msg)

    memory_config = dataclasses.replace(probe, size=size)
    model_config = dataclasses.replace(base_config, method=config.method, memory=memory_config)
    model = FractalAD(model_config, pretrained_teacher=False).eval()
    missing, _ = model.load_state_dict(base.state_dict(), strict=False)
    if any(not k.startswith("memory.") for k in missing):
        msg = f"the FractalAD run {init_from} does not fit this model ({missing[0]} missing)"
        raise ConfigError(msg)

    bar = _bar(len(memory_paths), "features", progress)
    feats = []
    for start in range(0, len(memory_paths), config.batch_size):
        chunk = [by_path[p] for p in memory_paths[start : start + config.batch_size]]
        feats.append(patch_features(model, chunk, config.batch_size))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    pool = torch.cat(feats)
    del feats
    if model.memory.projection is not None:
        mean, components = fit_pca(pool, model.memory.width, seed=config.seed)
        model.memory.set_projection(mean, components)
        pool = (pool - mean) @ components
    if pool.shape[0] > config.candidates:
        pick = torch.from_numpy(np.sort(np.random.default_rng(config.seed).choice(pool.shape[0], config.candidates, replace=False)))
        pool = pool[pick]
    bar = _bar(size, "coreset", progress)
    last = [0]

    def advance(done: int) -> None:
        if bar is not None and (done - last[0] >= 200 or done == size):
            bar.update(done - last[0])
            last[0] = done

    chosen, radius = greedy_coreset(pool, size, projection_dim=config.projection_dim, seed=config.seed, progress=advance)
    if bar is not None:
        bar.close()
    model.memory.set_bank(pool[chosen])
    del pool

    holdout_images = [by_path[p] for p in holdout_paths]
    calibration_paths = holdout_paths or memory_paths
    if config.method is Method.FUSED:
        from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets

        synthetic, _ = build_calibration_sets(
            holdout_paths,
            CalibrationConfig(count=config.calibration_images, validation_count=0, seed=config.seed + 2,
                              image_size=config.input_size, object_placement=object_placement, hold_out=False),
        )
        stats = fit_fusion(model, holdout_images, synthetic, config.batch_size)
        fused_config = dataclasses.replace(model_config, memory=dataclasses.replace(memory_config, stats=stats))
        fused = FractalAD(fused_config, pretrained_teacher=False).eval()
        fused.load_state_dict(model.state_dict(), strict=True)
        model = fused
        log.info("fusion statistics %s", stats)

    with StagedOutput(out) as staged:
        save_model(model, staged.files / MODEL_FILENAME)
        metadata = torch_metadata(model, config.score, directory=staged.files, category=category)
        # which images are in the memory, so `calibrate` can leave them out (fractalad_edge/memory_images.py)
        listed = write_memory_images(staged.files, memory_paths)
        metadata = dataclasses.replace(metadata, files=metadata.files + describe_files(staged.files, [listed]))
        metadata = _calibrate(model, metadata, calibration_paths, config, object_placement)
        train_section = base_train or {"synth": {"object_placement": object_placement}}
        atomic_write_text(staged.files / RUN_CONFIG_FILENAME, json.dumps({
            "train": train_section,
            "memory_build": config.to_dict(),
            "init_from": None if init_from is None else str(init_from),
            "data": str(data),
            "category": category,
            "num_images": len(paths),
            "holdout": [str(p) for p in holdout_paths],
        }, indent=2))
        write_metadata(staged.files, metadata)
        staged.commit([MODEL_FILENAME, listed, RUN_CONFIG_FILENAME], manifest=METADATA_FILENAME)
    bank_bytes = model.memory.bank.numel() * model.memory.bank.element_size()
    return MemoryBuildResult(
        run_dir=out, seconds=time.perf_counter() - started, size=size, candidates=pool_rows, memory_mb=bank_bytes / 1e6,
        memory_images=len(memory_paths), holdout_images=len(holdout_paths), covering_radius=float(radius[-1]),
    )


def _base_model(init_from: str | Path | None, config: MemoryBuildConfig, backbone_weights: str | Path | None) -> tuple[FractalAD, ModelConfig, dict | None]:
    """The teacher (and for ``fused`` the trained student and head) the memory is added to."""
    if init_from is None:
        model_config = ModelConfig(backbone=config.backbone, input_size=config.input_size)
        base = build_model(model_config, pretrained_teacher=True, weights_path=backbone_weights)
        return base, dataclasses.replace(model_config, distillation=False), None
    from fractalad_edge.artifact import ModelFormat, read_metadata
    from fractalad_edge.models.torch_format import load_model

    run = Path(init_from)
    metadata = read_metadata(run)
    model_config = ModelConfig.from_dict(dict(metadata.model))
    if metadata.format is not ModelFormat.TORCH or model_config.method is not Method.FRACTALAD:
        msg = (
            f"--init-from {run}: a 'fused' model starts from a FractalAD training run (torch artifact, method fractalad), "
            f"got a {metadata.format.value} artifact of method {model_config.method.value!r}"
        )
        raise ConfigError(msg)
    if model_config.input_size != config.input_size or model_config.backbone != config.backbone:
        msg = (
            f"--init-from {run} was trained with {model_config.backbone} at {model_config.input_size} px; build the memory "
            f"with the same --backbone and --input-size"
        )
        raise ConfigError(msg)
    base = load_model(run, metadata)  # the listed, hashed .safetensors
    train_section = None
    config_path = run / RUN_CONFIG_FILENAME
    if config_path.is_file():
        train_section = json.loads(config_path.read_text()).get("train")
    return base, model_config, train_section


def _calibrate(model: FractalAD, metadata: Any, paths: Sequence[Path], config: MemoryBuildConfig, object_placement: bool) -> Any:
    """Thresholds on synthetic anomalies made from the held-out normals (images not in the memory)."""
    from fractalad_edge.calibration.dataset import CalibrationConfig, build_calibration_sets
    from fractalad_edge.calibration.thresholds import calibrate_scores
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.runtimes.torch import TorchBackend

    predictor = Predictor(TorchBackend(model), metadata)
    calibration_set, _ = build_calibration_sets(
        paths,
        CalibrationConfig(count=config.calibration_images, validation_count=0, seed=config.seed + 1,
                          image_size=config.input_size, object_placement=object_placement, hold_out=False),
    )
    calibration = calibrate_scores(
        predictor, calibration_set.images, calibration_set.labels, calibration_set.masks, seed=config.seed + 1
    )
    return dataclasses.replace(metadata, calibration=calibration)


def _bar(total: int, desc: str, enabled: bool):  # noqa: ANN202 - tqdm type is optional
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True)
