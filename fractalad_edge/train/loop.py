"""The plain torch training loop: distillation + segmentation on fractal anomalies."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fractalad_edge.data.datasets import category_name, find_training_images
from fractalad_edge.errors import CheckpointError, ConfigError
from fractalad_edge.models.fractalad import FractalAD, build_model
from fractalad_edge.models.torch_format import MODEL_FILENAME, save_model
from fractalad_edge.train.checkpoint import CHECKPOINT_STATE, load_training_state, save_training_state
from fractalad_edge.train.config import TrainConfig
from fractalad_edge.train.dataset import FractalAnomalyDataset, worker_init
from fractalad_edge.train.losses import segmentation_loss
from fractalad_edge.train.run_artifact import write_run_artifact

log = logging.getLogger(__name__)

CONFIG_FILENAME = "config.json"
LOG_FILENAME = "train_log.jsonl"
SNAPSHOT_DIR = "snapshots"


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
) -> TrainResult:
    """Train FractalAD on the normal images in ``data`` and write a run directory to ``out``.

    The run directory is a ``torch`` artifact (model.safetensors + metadata.json) that
    ``Predictor.load`` and every exporter read, plus config.json, train_log.jsonl and a
    resumable checkpoint. ``snapshot_every`` also keeps the weights every N steps under
    snapshots/, so one run answers "how good is it after k steps" for several budgets.
    """
    data, out = Path(data), Path(out)
    paths = find_training_images(data)
    category = category or category_name(data)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / CONFIG_FILENAME
    if resume:
        if not config_path.is_file() or not (out / CHECKPOINT_STATE).is_file():
            msg = f"--resume: {out} holds no checkpoint to resume from; start without --resume"
            raise CheckpointError(msg)
        saved = TrainConfig.from_dict(json.loads(config_path.read_text())["train"])
        # A constant learning rate lets a schedule be extended or shortened on resume (a cosine
        # one is tied to its length), and the image-score reduction is post-processing; every
        # other option must match or the resumed run would not be the run it claims to be.
        if saved.lr_schedule != "constant" and saved.steps != config.steps:
            msg = (
                f"--resume: the interrupted run's {saved.lr_schedule} learning-rate schedule is tied to its "
                f"{saved.steps} steps; resume with --steps {saved.steps}, or train a new run"
            )
            raise CheckpointError(msg)
        if dataclasses.replace(saved, steps=config.steps, score=config.score) != config:
            msg = (
                f"--resume: the options differ from the interrupted run's {config_path} (only --steps and --score may change); "
                "resume with the same options"
            )
            raise CheckpointError(msg)

    device = resolve_device(config.device)
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
    config_path.write_text(
        json.dumps({"train": config.to_dict(), "data": str(data), "category": category, "num_images": len(paths)}, indent=2)
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
                save_training_state(out, model, optimizer, step=step, extra={"category": category})
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


def _truncate_log(path: Path, step: int) -> None:
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def _progress_bar(*, total: int, initial: int, enabled: bool):  # noqa: ANN202 - tqdm type is optional
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="train", dynamic_ncols=True)
