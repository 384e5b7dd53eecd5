"""The plain torch training loop: distillation + segmentation on fractal anomalies."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fractalad_edge.artifact import (
    CHECKPOINT_FILENAME,
    CHECKPOINT_STATE,
    METADATA_FILENAME,
    MODEL_FILENAME,
    RUN_CONFIG_FILENAME,
)
from fractalad_edge.data.datasets import category_name, find_training_images
from fractalad_edge.data.images import check_images
from fractalad_edge.errors import CheckpointError, ConfigError, OutputExistsError, RunIdentityError
from fractalad_edge.memory_images import MEMORY_IMAGES_FILENAME
from fractalad_edge.models.fractalad import FractalAD, build_model
from fractalad_edge.models.torch_format import save_model
from fractalad_edge.outputs import atomic_write_text, check_output_folder, folder_is_empty
from fractalad_edge.train.checkpoint import load_training_state, read_training_state, save_training_state
from fractalad_edge.train.config import TrainConfig
from fractalad_edge.train.dataset import FractalAnomalyDataset, worker_init
from fractalad_edge.train.losses import segmentation_loss
from fractalad_edge.train.run_artifact import write_run_artifact

log = logging.getLogger(__name__)

LOG_FILENAME = "train_log.jsonl"
SNAPSHOT_DIR = "snapshots"
#: Every file a run writes in its folder (plus snapshots/step_*.safetensors): what --force replaces.
RUN_FILES = (
    MODEL_FILENAME, METADATA_FILENAME, RUN_CONFIG_FILENAME, LOG_FILENAME, CHECKPOINT_FILENAME, CHECKPOINT_STATE,
    MEMORY_IMAGES_FILENAME,  # a memory/fused build's
)


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    run_dir: Path
    steps: int  # the step the model is at
    seconds: float  # wall time of the steps run in this call
    images_per_second: float
    final_loss: float
    steps_run: int = 0  # steps taken in this call (fewer than ``steps`` after --resume)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        msg = f"device {name!r} requested but torch sees no CUDA device; use --device cpu"
        raise ConfigError(msg)
    return device


def normalise_batch(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB -> normalised float (B, 3, H, W), the same math as preprocess.normalize."""
    x = images.permute(0, 3, 1, 2).float()
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def train(
    config: TrainConfig,
    data: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    backbone_weights: str | Path | None = None,
    category: str | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    snapshot_every: int | None = None,
    force: bool = False,
) -> TrainResult:
    """Train FractalAD on the normal images in ``data`` and write a run directory to ``out``.

    The run directory is a ``torch`` artifact (model.safetensors + metadata.json) that
    ``Predictor.load`` and every exporter read, plus config.json, train_log.jsonl and a
    resumable checkpoint. ``snapshot_every`` also keeps the weights every N steps under
    snapshots/, so one run answers "how good is it after k steps" for several budgets.

    ``out`` must be new or empty. ``resume`` continues the run in ``out`` only if its
    checkpoint's identity (a hash of the options and training images) matches; ``force``
    replaces a training run there (only the files a run writes, RUN_FILES; others stay).
    Everything is checked before ``out`` is touched.
    """
    data, out = Path(data), Path(out)
    paths = find_training_images(data)
    check_images(paths)  # a bad file is refused now, not after hours of training
    device = resolve_device(config.device)
    category = category or category_name(data)
    options = run_options(config, paths)
    if resume:
        run = _check_resume(out, config, options)
    else:
        check_new_run_folder(out, force=force)
        run = {"id": uuid.uuid4().hex, "options_sha256": options_digest(options), "options": options}
    run = {**run, "steps": config.steps}
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _train_in(
            config, data, out, paths, run, device=device, resume=resume, backbone_weights=backbone_weights,
            category=category, progress=progress, on_step=on_step, snapshot_every=snapshot_every,
        )
    except BaseException:
        if not resume and not (out / CHECKPOINT_FILENAME).exists():
            _remove_run_files(out)  # failed before its first checkpoint: nothing to resume, nothing kept
            if created and folder_is_empty(out):
                out.rmdir()
        raise


def _train_in(
    config: TrainConfig,
    data: Path,
    out: Path,
    paths: list[Path],
    run: dict,
    *,
    device: torch.device,
    resume: bool,
    backbone_weights: str | Path | None,
    category: str,
    progress: bool,
    on_step: Callable[[int, dict[str, float]], None] | None,
    snapshot_every: int | None,
) -> TrainResult:
    if device.type == "cpu":
        # Denormal floats (common in freshly initialised students) are 5-10x slower on x86 CPUs.
        torch.set_flush_denormal(True)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)  # only third-party code could read it; ours uses explicit generators
    model: FractalAD = build_model(config.model, pretrained_teacher=True, weights_path=backbone_weights)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    weight_decay = config.weight_decay if config.model.distillation else 0.0
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=weight_decay)

    start_step = 0
    if resume:
        start_step = int(load_training_state(out, model, optimizer)["step"])
        if start_step > config.steps:
            msg = f"--resume: the checkpoint in {out} is at step {start_step}, past --steps {config.steps}"
            raise CheckpointError(msg)
        log.info("resuming %s at step %d", out, start_step)
        _truncate_log(out / LOG_FILENAME, start_step)  # steps after the checkpoint are redone
    atomic_write_text(
        out / RUN_CONFIG_FILENAME,
        json.dumps(
            {"train": config.to_dict(), "data": str(data), "category": category, "num_images": len(paths), "run_id": run["id"]},
            indent=2,
        ),
    )

    dataset = FractalAnomalyDataset(
        paths, config.synth, seed=config.seed, length=config.steps * config.batch_size, start=start_step * config.batch_size
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=False,  # randomness lives in the per-sample generator; order is part of the seed
        num_workers=config.workers,
        worker_init_fn=worker_init if config.workers else None,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
        drop_last=False,
    )
    spec = model.teacher.spec
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.bf16)

    bar = _progress_bar(total=config.steps, initial=start_step, enabled=progress)
    model.train()
    step = start_step
    started = time.perf_counter()
    images_seen = 0
    loss_value = math.nan
    with open(out / LOG_FILENAME, "a", buffering=1) as log_file:  # line-buffered: tail -f works
        for clean, augmented, mask in loader:
            clean = normalise_batch(clean.to(device, non_blocking=True), mean, std, config.channels_last)
            augmented = normalise_batch(augmented.to(device, non_blocking=True), mean, std, config.channels_last)
            mask = mask.to(device, non_blocking=True)
            with autocast:
                logits, distill = model.training_step_outputs(clean, augmented)
            seg = segmentation_loss(logits, mask)
            loss = distill.float() + seg
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate(step)
            optimizer.step()
            step += 1
            images_seen += clean.shape[0]
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                msg = f"training diverged at step {step} (loss {loss_value}); lower --lr or disable --bf16"
                raise ConfigError(msg)
            record = {
                "step": step,
                "lr": optimizer.param_groups[0]["lr"],
                "loss": loss_value,
                "distill": float(distill.detach()),
                "seg": float(seg.detach()),
                "seconds": round(time.perf_counter() - started, 3),
            }
            log_file.write(json.dumps(record) + "\n")
            if bar is not None:
                bar.set_postfix(loss=f"{record['loss']:.3f}", kd=f"{record['distill']:.3f}", seg=f"{record['seg']:.3f}")
                bar.update(1)
            if on_step is not None:
                on_step(step, record)
            if snapshot_every and step % snapshot_every == 0:
                (out / SNAPSHOT_DIR).mkdir(exist_ok=True)
                save_model(model, out / SNAPSHOT_DIR / f"step_{step:06d}.safetensors")
            if step % config.checkpoint_every == 0 or step == config.steps:
                log_file.flush()
                save_training_state(out, model, optimizer, step=step, extra={"category": category, "run": run})
    elapsed = time.perf_counter() - started
    if bar is not None:
        bar.close()
    model.eval()
    save_model(model, out / MODEL_FILENAME)

    write_run_artifact(model, config, out, paths=paths, category=category)
    return TrainResult(
        run_dir=out,
        steps=step,
        seconds=elapsed,
        images_per_second=images_seen / elapsed if elapsed > 0 else math.nan,
        final_loss=loss_value,
        steps_run=step - start_step,
    )


def run_options(config: TrainConfig, paths: list[Path]) -> dict:
    """What makes a run this run: every option but --steps and --score, and the training images.

    A constant learning rate lets a schedule be extended or shortened on resume (a cosine one
    is checked separately), and the image-score reduction is post-processing; any other
    change would make the resumed run not the run it claims to be.
    """
    options = config.to_dict()
    del options["steps"], options["score"]
    images = hashlib.sha256(json.dumps([[p.name, p.stat().st_size] for p in paths]).encode())
    return {**options, "images": f"{len(paths)} files, sha256 {images.hexdigest()[:16]}"}


def options_digest(options: dict) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()


def _flatten(options: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_resume(out: Path, config: TrainConfig, options: dict) -> dict:
    """The identity of the run in ``out`` if ``options`` continue it; a typed error naming both otherwise."""
    check_output_folder(out)
    if not (out / CHECKPOINT_FILENAME).is_file():
        msg = f"--resume: {out} holds no checkpoint to resume from; start without --resume"
        raise CheckpointError(msg)
    run = read_training_state(out).get("run")
    if not isinstance(run, dict) or "options_sha256" not in run:
        msg = (
            f"--resume: the checkpoint in {out} carries no run identity (written by an older fractalad-edge), so "
            "nothing shows it was trained with these options; train a new run in a new folder"
        )
        raise RunIdentityError(msg)
    digest = options_digest(options)
    if run["options_sha256"] != digest:
        saved, given = _flatten(run.get("options", {})), _flatten(options)
        differ = [f"{k}: {saved.get(k)!r} -> {given.get(k)!r}" for k in sorted(set(saved) | set(given)) if saved.get(k) != given.get(k)]
        msg = (
            f"--resume: the options differ from those of the run whose checkpoint is in {out}: run {run.get('id', '?')[:12]} "
            f"(options {run['options_sha256'][:12]}) vs the options given ({digest[:12]}); "
            f"{'; '.join(differ[:4]) or 'see config.json'}. Only --steps and --score may change: resume with that "
            "run's options, or train a new run in a new folder"
        )
        raise RunIdentityError(msg)
    if config.lr_schedule != "constant" and run.get("steps") != config.steps:
        msg = (
            f"--resume: the interrupted run's {config.lr_schedule} learning-rate schedule is tied to its "
            f"{run.get('steps')} steps; resume with --steps {run.get('steps')}, or train a new run"
        )
        raise CheckpointError(msg)
    return {key: run[key] for key in ("id", "options_sha256", "options") if key in run}


def _is_training_run(folder: Path) -> bool:
    if any((folder / name).is_file() for name in (CHECKPOINT_FILENAME, CHECKPOINT_STATE, LOG_FILENAME)):
        return True
    try:
        return "train" in json.loads((folder / RUN_CONFIG_FILENAME).read_text())
    except (OSError, ValueError, TypeError):
        return False


def check_new_run_folder(out: Path, *, force: bool) -> None:
    """Refuse an ``out`` that holds anything but a training run (``force``: whose files are removed now)."""
    check_output_folder(out)
    if not out.exists() or folder_is_empty(out):
        return
    if not _is_training_run(out):
        msg = (
            f"--out {out} is not empty and is not a training run; train never writes into a folder of other files. "
            "Choose a new or empty folder"
        )
        raise OutputExistsError(msg)
    if force:
        _remove_run_files(out)
        return
    if (out / METADATA_FILENAME).is_file():
        state = "a finished training run"
    elif (out / CHECKPOINT_FILENAME).is_file():
        state = f"an interrupted training run (checkpoint at step {read_training_state(out).get('step', '?')})"
    else:
        state = "a training run stopped before its first checkpoint"
    msg = (
        f"--out {out} holds {state}; continue it with --resume (same options), replace it with --force "
        f"(only its files: {', '.join(RUN_FILES)}, {SNAPSHOT_DIR}/), or choose a new folder"
    )
    raise OutputExistsError(msg)


def _remove_run_files(out: Path) -> None:
    """Delete what a training run wrote in ``out``, nothing else."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
        for leftover in out.glob(f".{name}.*.tmp"):  # a write interrupted by a kill
            leftover.unlink(missing_ok=True)
    snapshots = out / SNAPSHOT_DIR
    if snapshots.is_dir() and not snapshots.is_symlink():
        for snapshot in snapshots.glob("step_*.safetensors"):
            snapshot.unlink()
        if folder_is_empty(snapshots):
            snapshots.rmdir()


def _truncate_log(path: Path, step: int) -> None:
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _progress_bar(*, total: int, initial: int, enabled: bool):  # noqa: ANN202 - tqdm type is optional
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="train", dynamic_ncols=True)
