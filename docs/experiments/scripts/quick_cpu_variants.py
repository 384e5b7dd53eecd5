"""The quick-cpu schedule with a weight average or a final learning-rate anneal (training-bottle-cpu.md).

Trains with ``fractalad_edge.train.loop.train`` and the quick-cpu preset's configuration
(150 x 16, AdamW constant, the bottle defaults) at ``--lr`` (default 1e-3, the preset's
learning rate until 2026-12-01; the preset now uses 2e-3) and one change:

- ``--ema DECAY``: also keeps an exponential moving average of the trained parameters
  (decay ramped as ``min(DECAY, (1 + t) / (10 + t))`` after step t) and writes it as a
  second run, ``OUT-ema``, with its own synthetic thresholds. ``OUT`` is the plain run.
- ``--anneal FRACTION``: the learning rate stays at ``--lr`` and then falls linearly to 0 over
  the last FRACTION of the steps (a warmup-stable-decay schedule without the warmup).

    python docs/experiments/scripts/quick_cpu_variants.py --data $DATA/mvtec_ad/bottle --out runs/q-s0 --seed 0 --ema 0.95
    python docs/experiments/scripts/quick_cpu_variants.py --data $DATA/mvtec_ad/bottle --out runs/w-s0 --seed 0 --anneal 0.2

Evaluate each folder with ``fractalad-edge eval`` and fuse it with
``fractalad-edge train --method fused --init-from``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from fractalad_edge.artifact import read_metadata
from fractalad_edge.data.datasets import category_name, find_training_images
from fractalad_edge.models.fractalad import ModelConfig
from fractalad_edge.models.torch_format import load_model, save_model
from fractalad_edge.synth.anomaly import SynthConfig
from fractalad_edge.train.config import TrainConfig
from fractalad_edge.train.loop import train
from fractalad_edge.train.run_artifact import write_run_artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--ema", type=float, default=None, help="weight-average decay (writes OUT-ema too)")
    parser.add_argument("--anneal", type=float, default=None, help="fraction of the steps annealed linearly to lr 0")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate, student and head (the preset's: 2e-3)")
    args = parser.parse_args()
    anneal = args.anneal

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class AnnealedConfig(TrainConfig):
        def learning_rate(self, step: int) -> float:
            if anneal is None:
                return self.lr
            start = self.steps * (1 - anneal)
            return self.lr if step < start else self.lr * max(0.0, (self.steps - step) / (self.steps - start))

    config = AnnealedConfig(
        model=ModelConfig(), synth=SynthConfig(), steps=args.steps, batch_size=16, lr=args.lr, seed=args.seed
    )

    # The average sees the optimizer's parameters (the student's and the head's, in
    # model.parameters() order) through torch's public optimizer hook; batch-norm
    # statistics are the last step's, as in torch.optim.swa_utils.AveragedModel's default.
    average: list[torch.Tensor] = []
    steps_taken = [0]

    def fold_in(optimizer: torch.optim.Optimizer, *_: object) -> None:
        steps_taken[0] += 1
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not average:
            average.extend(p.detach().clone() for p in params)
            return
        decay = min(args.ema, (1 + steps_taken[0]) / (10 + steps_taken[0]))
        for mean, value in zip(average, params):
            mean.lerp_(value.detach(), 1 - decay)

    if args.ema is not None:
        register_optimizer_step_post_hook(fold_in)
    print(train(config, args.data, args.out, progress=False))
    if args.ema is not None:
        target = args.out.with_name(f"{args.out.name}-ema")
        shutil.copytree(args.out, target)
        model = load_model(args.out, read_metadata(args.out))
        trained = [p for p in model.parameters() if p.requires_grad]
        assert [p.shape for p in trained] == [p.shape for p in average], "parameter order differs from the optimizer's"
        with torch.no_grad():
            for param, mean in zip(trained, average):
                param.copy_(mean)
        save_model(model, target / "model.safetensors")
        write_run_artifact(model, config, target, paths=find_training_images(args.data), category=category_name(args.data))
        print("weight average written to", target)


if __name__ == "__main__":
    main()
